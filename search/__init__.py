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


# Where the shell hands a command a pipe with its writer (`--config <(...)`, `/dev/stdin`)
_HANDED_PIPES = ("/dev/fd/", "/proc/", "/dev/stdin")


def not_a_regular_file(path) -> bool:
    """Whether `path` exists but is no regular file: a named FIFO or a device, whose read
    blocks for ever when nothing writes to it, or a folder. A pipe the shell hands over
    (`_HANDED_PIPES`) has its writer and is read. False where that cannot be asked (a name
    too long): the read that follows names that error."""
    if str(path).startswith(_HANDED_PIPES):
        return False
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
        words = argv[:argv.index("--")] if "--" in argv else argv
        given: dict[argparse.Action, list[str]] = {}
        for word in words:
            action = self._option_of(word)
            if isinstance(action, argparse._StoreAction):
                given.setdefault(action, []).append(word)
        for action, words_of in given.items():
            if len(words_of) > 1:
                self.error(f"argument {'/'.join(action.option_strings)}: given {len(words_of)} times "
                           f"({', '.join(words_of)}); give it once")
        return super().parse_known_args(args, namespace)

    def _option_of(self, word: str) -> argparse.Action | None:
        """The option `word` names as argparse reads it: whole, `--name=value`, or a long
        name's unique prefix (`--conf` for `--config`)."""
        if not word.startswith("-") or word == "-":
            return None
        name = word.split("=", 1)[0] if word.startswith("--") else word
        options = self._option_string_actions
        if name in options:
            return options[name]
        if self.allow_abbrev and name.startswith("--"):
            matches = {options[o] for o in options if o.startswith(name)}
            return matches.pop() if len(matches) == 1 else None
        return None
