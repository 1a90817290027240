"""Range checks for the typed config sections: a bad value is refused when the config is read,
naming the field, instead of failing inside a trial after minutes of work; the one-line
command-line parser of the training CLIs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from search import OptionsOnceParser

# torch.manual_seed takes [-2**63, 2**64 - 1] and raises past it, in every trial; jobs derive
# seeds by adding offsets (seed + i, seed + 100 * i): [0, 2**63 - 1] is non-negative, fits an
# int64 and leaves that headroom below torch's limit
MAX_SEED = 2**63 - 1
MAX_THREADS = 1024  # torch threads a setting may ask for
MIN_TOKENS = 4  # [CLS] a [SEP] b [SEP] holds one token of a pair's text


def one_line(message: str) -> str:
    """An error message as one line, all of it: a newline (a path may hold one) written as \\n,
    so that the path shown is the path given."""
    return message.strip().replace("\r", "\\r").replace("\n", "\\n")


def _ok_number(value, ok) -> bool:
    # NaN and +-inf fail: AdamW with lr=inf trains garbage, and no setting uses inf for "off"
    return isinstance(value, int | float) and _finite(value) and ok(value)


def _finite(value) -> bool:
    return isinstance(value, int) or math.isfinite(value)  # a huge int is finite (isfinite overflows)


_NUMBER_RULES = ("positive", "non_negative", "fractions")
# group -> (test of one value or item, what the error says it must be); a bool never reaches
# these (`_refuse_bools` first), though Python counts True as the int 1
_RULES = {
    "counts": (lambda v: isinstance(v, int) and v >= 1, "must be an integer >= 1"),
    "positive": (lambda v: _ok_number(v, lambda x: x > 0), "must be > 0"),
    "non_negative": (lambda v: _ok_number(v, lambda x: x >= 0), "must be >= 0"),
    "fractions": (lambda v: _ok_number(v, lambda x: 0 <= x <= 1), "must be in [0, 1]"),
    # the latency harness's contract: a median and a p90 of at least 20 timed runs
    "timed_runs": (lambda v: isinstance(v, int) and v >= 20, "must be an integer >= 20"),
    "seeds": (lambda v: isinstance(v, int) and 0 <= v <= MAX_SEED, f"must be an integer in [0, {MAX_SEED}]"),
    # torch.set_num_threads overflows past 2**31 - 1, inside a trial after the fine-tuning;
    # no machine has more cores than this
    "threads": (lambda v: isinstance(v, int) and 1 <= v <= MAX_THREADS, f"must be an integer in [1, {MAX_THREADS}]"),
    # Path("") is the current directory: never what an empty `results_dir=` meant
    "paths": (lambda v: not isinstance(v, str) or v.strip() != "", "must not be empty"),
    # a tokenizer's max_length below its special tokens ([CLS] and [SEP], [SEP] twice in a
    # joint pair) truncates nothing: the whole text reached the model past its positions
    "token_lengths": (lambda v: isinstance(v, int) and v >= MIN_TOKENS,
                      f"must be an integer >= {MIN_TOKENS} (the special tokens and one of the text)"),
}


def check_ranges(cfg, **groups: Iterable[str]) -> None:
    """ValueError "field: must ..., got ..." for the first field of `cfg` out of its range.

    groups: counts (integers >= 1), positive (> 0), non_negative (>= 0), fractions ([0, 1]),
    timed_runs (integers >= 20), seeds (integers in [0, MAX_SEED]), threads (integers in
    [1, MAX_THREADS]), paths (strings that are
    not empty or blank: "field: must not be empty"), token_lengths (a tokenizer's max_length:
    integers >= MIN_TOKENS),
    each a list of field names. The number groups refuse NaN and +-inf ("must be finite" for
    an infinite value). A tuple field is checked item by item; None (an optional setting left
    to its default) passes.
    """
    _refuse_bools(cfg)
    for group, names in groups.items():
        ok, want = _RULES[group]
        for name in names:
            value = getattr(cfg, name)
            items = value if isinstance(value, tuple | list) else (value,)
            bad = [v for v in items if v is not None and not ok(v)]
            if bad and group in _NUMBER_RULES and _is_inf(bad[0]):
                raise ValueError(f"{name}: must be finite, got {value!r}")
            if bad:
                raise ValueError(f"{name}: {want}, got {value!r}")


def _refuse_bools(cfg) -> None:
    """ValueError naming the first field that holds True or False though its type is not a
    bool: Python counts True as 1, so `max_eval=True` would be a cap of one example (the YAML
    reader refuses it by type; the Python API reaches the config directly)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        items = value if isinstance(value, tuple | list) else (value,)
        if "bool" not in str(f.type) and any(isinstance(v, bool) for v in items):
            raise ValueError(f"{f.name}: expected {f.type}, got {value!r}")


def _is_inf(value) -> bool:
    return isinstance(value, float) and math.isinf(value)


def check_choices(cfg, **allowed: tuple) -> None:
    """ValueError naming the first field whose value (or, for a tuple field, any item) is not
    among its allowed values, or whose items repeat (a repeated item would run twice)."""
    for name, options in allowed.items():
        value = getattr(cfg, name)
        items = value if isinstance(value, tuple | list) else (value,)
        bad = [v for v in items if v not in options]
        if bad:
            raise ValueError(f"{name}: {bad[0]!r} is not one of {tuple(options)}")
        check_distinct(cfg, name)


def check_distinct(cfg, *names: str) -> None:
    """ValueError naming the first tuple field whose items repeat (a scalar field passes)."""
    for name in names:
        value = getattr(cfg, name)
        items = list(value) if isinstance(value, tuple | list) else [value]
        if len(set(items)) != len(items):
            raise ValueError(f"{name}: repeated items in {items}")


class UsageError(Exception):
    """Bad command-line input: reported as one stderr line, exit status 2."""


class OneLineParser(OptionsOnceParser):
    def error(self, message):  # argparse prints usage + message; we want one line
        raise UsageError(message)
