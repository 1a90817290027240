"""Range checks for the typed config sections: a bad value is refused when the config is read,
naming the field, instead of failing inside a trial after minutes of work; the one-line
command-line parser of the training CLIs."""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable


def _ok_number(value, ok) -> bool:
    return isinstance(value, int | float) and not math.isnan(value) and ok(value)


_RULES = {
    "counts": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    "positive": (lambda v: _ok_number(v, lambda x: x > 0), "> 0"),
    "non_negative": (lambda v: _ok_number(v, lambda x: x >= 0), ">= 0"),
    "fractions": (lambda v: _ok_number(v, lambda x: 0 <= x <= 1), "in [0, 1]"),
}


def check_ranges(cfg, **groups: Iterable[str]) -> None:
    """ValueError "field: must be ..., got ..." for the first field of `cfg` out of its range.

    groups: counts (integers >= 1), positive (> 0), non_negative (>= 0), fractions ([0, 1]),
    each a list of field names. A tuple field is checked item by item; None (an optional
    setting left to its default) passes.
    """
    for group, names in groups.items():
        ok, want = _RULES[group]
        for name in names:
            value = getattr(cfg, name)
            items = value if isinstance(value, tuple | list) else (value,)
            if any(v is not None and not ok(v) for v in items):
                raise ValueError(f"{name}: must be {want}, got {value!r}")


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


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; we want one line
        raise UsageError(message)
