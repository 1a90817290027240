"""Suite-wide settings: offline hub, no Ray token auth, one torch thread per test process."""

import os
import subprocess

import pytest

# Set before any test module imports transformers or ray.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture
def read_first_line_and_close():
    """run(argv, cwd=None): start `argv`, read one line of its stdout and close the pipe, as
    `| head -1` does; (the line, exit code, stderr)."""
    def run(argv: list[str], cwd=None) -> tuple[str, int, str]:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
        line = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        return line, proc.wait(timeout=120), err

    return run
