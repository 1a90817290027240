"""Exceptions of the jobs, light to import (trial workers import them without torch), and the
one-line command-line parser of the job CLIs."""

import argparse


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


class OneLineParser(argparse.ArgumentParser):  # subparsers are made of the same class
    def error(self, message):  # argparse prints usage + message; bad input is one line, exit 2
        raise JobError(f"{self.prog}: {message}")
