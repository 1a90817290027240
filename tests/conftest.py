"""Suite-wide settings: offline hub, no Ray token auth, no tokenizer threads, no usage stats.
(Torch threads are set per module: most training test modules take one at import.)"""

import os
import subprocess
import sys

import pytest

# Set before any test module imports transformers or ray.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


_EXIT: dict[str, int] = {}


def pytest_sessionfinish(session, exitstatus):
    _EXIT["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the test process with pytest's own exit status once everything is reported: a
    fresh-clone `make test` (2026-12-06, 749 passed) then died with SIGSEGV in the
    interpreter's teardown of the native libraries (Ray's, torch's threads), and make saw a
    failure after every test had passed."""
    if "status" in _EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT["status"])


@pytest.fixture
def closed_pipe():
    """run(argv, cwd=None, read=0): start `argv` with block-buffered stdout (as under a shell
    pipe), read `read` lines of it and close the pipe, as `| head -N` does; (the lines, exit
    code, stderr). With read=0 the pipe's read end is closed before the program starts: its
    every write, the interpreter's last flush included, meets a closed pipe."""
    def run(argv: list[str], cwd=None, read: int = 0) -> tuple[list[str], int, str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        if read == 0:
            reader, writer = os.pipe()
            os.close(reader)
            try:
                proc = subprocess.run(argv, stdout=writer, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
                                      timeout=120)
            finally:
                os.close(writer)
            return [], proc.returncode, proc.stderr
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
        lines = [proc.stdout.readline() for _ in range(read)]
        proc.stdout.close()
        err = proc.stderr.read()
        return lines, proc.wait(timeout=120), err

    return run
