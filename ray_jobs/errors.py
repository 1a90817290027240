"""Exceptions of the jobs, light to import (trial workers import them without torch)."""


class ConfigError(ValueError):
    """A config value or key that cannot be used; the message names the dotted key."""


class JobError(RuntimeError):
    """A job that cannot run as asked (bad input, infeasible resources): exit code 2."""


class ResourceError(JobError):
    """A per-trial resource request that no node of the cluster can satisfy."""


class SweepFailed(RuntimeError):
    """Trials that still failed after `failure.max_failures` retries: exit code 1."""


class SweepInterrupted(RuntimeError):
    """The driver was interrupted; the same command resumes the sweep: exit code 130."""
