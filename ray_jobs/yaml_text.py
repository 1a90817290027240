"""Reading YAML text strictly: config files and `key=value` overrides.

Light (yaml only): `python -m ray_jobs query/tables` read `results_dir=` overrides with it
without the job config's imports (torch).
"""

from __future__ import annotations

import reprlib
from typing import Any

import yaml

from ray_jobs.errors import ConfigError


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice (safe_load keeps the last, silently
    dropping the first setting), at any nesting level. Keys merged in by `<<` may still be
    overridden by an explicit key: that is YAML's merge, not a repeat."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the base class names it
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None, None, f"repeated key {key!r} (first at line {first.start_mark.line + 1})",
                    key_node.start_mark)
        return super().construct_mapping(node, deep)

    def construct_object(self, node, deep=False):
        # PyYAML's scalar constructors raise plain Python errors for values of the right form
        # but impossible (2024-02-30, an int of 5,000 digits, `!!int abc`): a YAML error at
        # the value's line, as every other unreadable value is
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, IndexError, OverflowError) as exc:
            shown = f"{brief(node.value)}: " if isinstance(node, yaml.ScalarNode) else ""
            reason = str(exc).split(";")[0][:100]  # Python's advice on int digits is not the config's
            raise yaml.constructor.ConstructorError(
                None, None, f"{shown}cannot read this {node.tag.rsplit(':', 1)[-1]} ({reason})", node.start_mark) from None

    def construct_yaml_int(self, node):
        # YAML 1.1 reads 010 as octal 8 and 1:30 as base-60 90, a surprise in a config; 0x10
        # and 0b10 say what they are
        text = str(node.value).replace("_", "").lstrip("+-")
        if ":" in text or (len(text) > 1 and text.startswith("0") and text[1].isdigit()):
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r}: YAML 1.1 reads this as {super().construct_yaml_int(node)}, "
                "not decimal (a leading 0 is octal, a colon base 60): write the number plainly, or quote "
                "it if you mean text", node.start_mark)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node):
        if ":" in str(node.value):  # base 60, as for integers
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r}: YAML 1.1 reads this as {super().construct_yaml_float(node)} "
                "(base 60): write the number plainly, or quote it if you mean text", node.start_mark)
        return super().construct_yaml_float(node)


StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)
StrictLoader.add_constructor("tag:yaml.org,2002:float", StrictLoader.construct_yaml_float)


def load_yaml(text: str) -> Any:
    """The YAML in `text`, read by StrictLoader; yaml.YAMLError when it cannot be read."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # a SafeLoader: no arbitrary objects
    except RecursionError:  # PyYAML composes nested lists and mappings recursively
        raise yaml.YAMLError("nested too deeply") from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error as one line: the problem, its 1-based line and column, and the context
    ("while parsing a block mapping" and where that began)."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if problem is None:
        return " ".join(str(exc).split())
    text = f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem
    context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context:
        text += f" ({context}" + (f" at line {cmark.line + 1}, column {cmark.column + 1})" if cmark else ")")
    return text


# YAML aliases can nest one short list into millions of items ("billion laughs"): a full repr
# of such a value took seconds per level before the error could be cut to length
_SHORT = reprlib.Repr()  # keyword settings need Python 3.12
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 3, 8, 8, 200, 200


def flow_yaml(value: Any) -> str:
    """`value` as one line of YAML (lists and tuples in flow style) that `load_yaml` reads back."""
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000, allow_unicode=True).strip()
    return text.removesuffix("...").strip()  # a bare scalar ends its document with "..."


def brief(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters: an error stays one readable line. Lists and
    mappings are shown by `reprlib` (their first items, three levels deep), never in full."""
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
    text = _SHORT.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=value` -> ("a.b", value parsed as a YAML scalar or list). ConfigError naming the
    key when YAML cannot read the value, when it would drop text of it (` #...` is a YAML
    comment: `results_dir=runs/try #2` meant runs/try), or for a bare `~` (YAML's null, not
    the home folder)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not p for p in key.split(".")):
        raise ConfigError(f"{text}: override must look like key.sub=value")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) if isinstance(exc, yaml.MarkedYAMLError) else str(exc)
        raise ConfigError(f"{key}: cannot parse value {brief(raw)}" + (f" ({problem})" if problem else "")) from None
    dropped = _dropped_text(raw)
    if dropped:
        raise ConfigError(f"{key}: YAML reads {brief(dropped)} in the value as a comment and drops it: "
                          f"quote the value ({key}='\"...\"') or leave that out")
    if raw.strip() == "~":
        raise ConfigError(f"{key}: '~' is YAML's null here, not the home folder: write null, or the folder's path")
    return key, value


def _dropped_text(raw: str) -> str | None:
    """What follows the last YAML token of `raw` (a comment), or None."""
    try:
        ends = [t.end_mark.index for t in yaml.scan(raw)
                if not isinstance(t, yaml.StreamStartToken | yaml.StreamEndToken)]
    except yaml.YAMLError:
        return None  # the value was read already: the parse would have named the problem
    return raw[max(ends, default=0):].strip() or None
