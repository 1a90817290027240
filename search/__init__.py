"""search package."""

import os
import sys


def pipe_closed() -> int:
    """A command line's exit after its reader closed stdout (`... | head`): point stdout at
    /dev/null so the interpreter's final flush raises nothing (Python's documented recipe) and
    return 141, the status of a process that SIGPIPE ended (128 + 13), as `yes | head` leaves."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141
