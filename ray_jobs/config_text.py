"""A job config written out as YAML, every key with the comment its dataclass gives it
(`python -m ray_jobs config`): what a job would run with, readable back with `--config`."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import re
import textwrap
import tokenize
from typing import Any

from ray_jobs.yaml_text import flow_yaml

# a field line of a dataclass body: `name: type` or `name: type = default`
_FIELD = re.compile(r"^(\w+)\s*:")
_WIDTH = 96  # comment lines wrap here; values never do


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """Each field of dataclass `cls` -> its comment in the source: the comment lines right above
    the field (no blank line between) and the comment on its own line, joined; fields without
    one are left out. {} when the source cannot be read (a frozen interpreter)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments: dict[int, str] = {}  # line number (1-based) -> comment text
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    body = _body_indent(lines)
    names = {f.name for f in dataclasses.fields(cls)}
    found, pending = {}, []
    for number, line in enumerate(lines, 1):
        stripped, indent = line.strip(), len(line) - len(line.lstrip())
        if stripped.startswith("#") and indent == body and number in comments:  # not a docstring's line
            pending.append(comments[number])
            continue
        match = _FIELD.match(stripped) if indent == body else None
        if match and match.group(1) in names:
            text = " ".join([*pending, comments.get(number, "")]).strip()
            if text:
                found[match.group(1)] = text
        if indent <= body or not stripped:  # a blank line or another statement ends a comment block
            pending = []
    return found


def _body_indent(lines: list[str]) -> int:
    """The indentation of the class body: its first non-blank line after `class ...:` (the
    source starts at the decorators)."""
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("class ")), 0)
    for line in lines[start + 1:]:
        if line.strip():
            return len(line) - len(line.lstrip())
    return 4


def _comment_lines(text: str, indent: str) -> list[str]:
    return [f"{indent}# {part}" for part in textwrap.wrap(text, _WIDTH - len(indent) - 2)]


def _section_lines(obj: Any, depth: int) -> list[str]:
    indent = "  " * depth
    out = []
    notes = field_comments(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in notes:
            out += _comment_lines(notes[f.name], indent)
        if dataclasses.is_dataclass(value):
            out.append(f"{indent}{f.name}:")
            out += _section_lines(value, depth + 1)
        else:
            out.append(f"{indent}{f.name}: {flow_yaml(value)}")
    return out


def config_yaml(cfg: Any, header: str = "") -> str:
    """Dataclass config `cfg` as YAML: every field, nested sections indented, each field's
    source comment above it (`field_comments`); `header` lines first, as comments."""
    lines = [line if line.startswith("#") else f"# {line}" for line in header.splitlines()]
    return "\n".join([*lines, *_section_lines(cfg, 0)]) + "\n"
