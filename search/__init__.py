"""search package."""

import os
import sys
from collections.abc import Callable


def printing_to_a_pipe(run: Callable[[], int]) -> int:
    """run() -> its exit code, stdout flushed before returning. When the reader closes stdout
    (`... | head`), stdout is pointed at /dev/null so the interpreter's final flush raises
    nothing (Python's documented recipe), and the code is 141, the status of a process that
    SIGPIPE ended (128 + 13), as `yes | head` leaves."""
    try:
        rc = run()
        sys.stdout.flush()  # inside the try: what print left in the buffer meets a closed pipe here
        return rc
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
