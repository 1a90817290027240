"""Exceptions of the jobs, light to import (trial workers import them without torch), the
one-line command-line parser of the job CLIs, and the check that a results folder can be
written (the bench runs it before timing, without importing the training stack)."""

import os
from pathlib import Path

from search import OptionsOnceParser


class ConfigError(ValueError):
    """A config value or key that cannot be used; the message names the dotted key."""


class JobError(RuntimeError):
    """A job that cannot run as asked (bad input, infeasible resources): exit code 2."""


class ResourceError(JobError):
    """A per-trial resource request that no node of the cluster can satisfy."""


class SweepFailed(RuntimeError):
    """Trials that still failed after `failure.max_failures` retries: exit code 1. `sweep_id`:
    the sweep they belong to, whose finished rows are kept (None: not one sweep's)."""

    def __init__(self, message: str, sweep_id: str | None = None):
        super().__init__(message)
        self.sweep_id = sweep_id


class SweepInterrupted(RuntimeError):
    """The driver was interrupted; the same command resumes the sweep: exit code 130."""


class OneLineParser(OptionsOnceParser):  # subparsers are made of the same class
    def error(self, message):  # argparse prints usage + message; bad input is one line, exit 2
        raise JobError(f"{self.prog}: {message}")


def check_results_dir(results_dir: str, key: str = "results_dir") -> None:
    """JobError naming `key` unless the folder exists and is writable or can be created;
    creates nothing."""
    path = Path(results_dir)
    probe = path
    while not path_exists(probe, key) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise JobError(f"{key}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise JobError(f"{key}: cannot write to {path} ({probe} is not writable)")


def path_exists(path: Path, key: str) -> bool:
    """`path.exists()`, or JobError naming `key` when a folder above it may not be entered
    (where `Path.exists` raises PermissionError instead of answering)."""
    try:
        return path.exists()
    except PermissionError:
        # the outermost folder on the way that this user may not enter (search permission)
        blocked = next((p for p in reversed(path.parents) if not os.access(p, os.X_OK)), path.parent)
        raise JobError(f"{key}: cannot reach {path}: {blocked} may not be entered by this user") from None


def absolute_path(path: str, key: str) -> str:
    """`path` made absolute (`~` expanded); ConfigError naming `key` when it cannot be (a
    `~user` this machine does not know, a NUL byte)."""
    try:
        return str(Path(path).expanduser().resolve())
    except (RuntimeError, ValueError, OSError) as exc:
        raise ConfigError(f"{key}: {path[:80]!r}: {exc}") from None

