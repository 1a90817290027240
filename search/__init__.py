"""search package."""

import argparse
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


def not_a_regular_file(path) -> bool:
    """Whether `path` exists but is no regular file (a FIFO or device, whose read blocks for
    ever, or a folder). False where that cannot be asked (a name too long): the read that
    follows names that error."""
    try:
        return os.path.exists(path) and not os.path.isfile(path)
    except OSError:
        return False


class OptionsOnceParser(argparse.ArgumentParser):
    """An ArgumentParser whose options that take one value may be given once: argparse keeps
    the last (`--config smoke --config demo` ran the demo config, `--seeds 0 --seeds 7` seed 7
    alone), so a repeat is refused through `error`. Flags and key=value overrides may repeat."""

    def parse_known_args(self, args=None, namespace=None):
        argv = sys.argv[1:] if args is None else list(args)
        single = [a for a in self._actions if isinstance(a, argparse._StoreAction) and a.option_strings]
        words = argv[:argv.index("--")] if "--" in argv else argv
        for action in single:
            given = [w for w in words if w in action.option_strings
                     or any(w.startswith(f"{o}=") for o in action.option_strings if o.startswith("--"))]
            if len(given) > 1:
                self.error(f"argument {'/'.join(action.option_strings)}: given {len(given)} times "
                           f"({', '.join(given)}); give it once")
        return super().parse_known_args(args, namespace)
