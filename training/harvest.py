"""Harvest (function, summary) pairs from a Python source tree into CodeXGLUE jsonl.

The recipe is CodeSearchNet's, as CodeXGLUE code-to-text uses it:

- every function is a candidate: top-level, methods, nested, decorated, async;
- the summary is the first sentence of the docstring; it needs >= 3 words and no URL;
- the function needs >= 3 non-blank lines as written (docstring included, as CodeSearchNet
  counts) and a statement besides its docstring;
- ``test*`` functions and the functions inside them, test modules (``test_*.py``,
  ``*_test.py``) and test folders (``test``, ``tests``, ``test_*``, ``*_test``) are skipped;
- identical code (same code tokens, the function's own name stripped of leading underscores:
  a private copy ``_get_version`` is the same code) is kept once, the first in path order;
- train/valid/test is 80/10/10 by a hash of the file's relative path, so no file feeds
  two splits.

``code_tokens`` come from Python's own ``tokenize`` (comments, newlines and indentation
dropped); ``docstring_tokens`` from CodeSearchNet's docstring regex.

Command line: ``python -m training.harvest SRC_DIR --out DIR``, or
``python -m training.harvest --package NAME --out DIR`` for an installed package's source.
Bad input (a missing or empty source, an unknown package, an empty output folder name, an
output folder that cannot be written or that holds a split as a sub-folder, a tree that leaves
any of the three splits empty) prints one line on stderr and exits 2. The split files of an earlier harvest in the output folder are replaced, whichever
format (``.jsonl`` or ``.jsonl.gz``) it wrote, once all three new ones are written: a write
that fails (exit 2) leaves the earlier files as they were. A function whose text is not UTF-8
(a lone surrogate) is dropped and counted; a file that does not parse, or nests deeper than
the parser can, is counted as unparsable.
"""

from __future__ import annotations

import ast
import gzip
import importlib.util
import io
import json
import os
import re
import sys
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from training.checks import OneLineParser, UsageError, one_line
from training.data import hash_split
from training.staging import check_writable_folder, fsync_tree, publish, remove_stale, staging_path

SPLITS = ("train", "valid", "test")
MIN_SUMMARY_WORDS = 3
MIN_FUNCTION_LINES = 3
SKIP_DIRS = {"site-packages", "__pycache__", "test", "tests"}
_SKIP_TOKENS = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
    tokenize.ENCODING,
}
# CodeSearchNet's docstring tokenizer (function_parser/parsers/language_parser.py).
_DOCSTRING_TOKEN = re.compile(
    r"[^\s,'\"`.():\[\]=*;>{\}+-/\\]+|\\+|\.+|\(\)|{\}|\[\]|\(+|\)+|:+|\[+|\]+|{+|\}+|=+|\*+|;+|>+|\++|-+|/+"
)
_URL = re.compile(r"https?://|www\.", re.IGNORECASE)
# A sentence ends at . ! or ? followed by white space, except after these abbreviations.
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)(?<!\bcf)[.!?](?=\s)")


@dataclass
class HarvestStats:
    """What a harvest saw and why candidates were dropped."""

    files: int = 0
    unparsable: int = 0
    functions: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def skipped_dir(name: str) -> bool:
    """Whether a folder is left out: test folders, installed packages, caches."""
    return name in SKIP_DIRS or name.startswith("test_") or name.endswith("_test")


def test_module(name: str) -> bool:
    """Whether a file is a test module by pytest's naming (``test_*.py``, ``*_test.py``)."""
    stem = name.removesuffix(".py")
    return stem.startswith("test_") or stem.endswith("_test")


def source_files(src: Path) -> Iterator[Path]:
    """The .py files under ``src`` in sorted order, skipping test modules, test and package folders."""
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).parts
        if not any(skipped_dir(part) for part in rel[:-1]) and not test_module(rel[-1]) and path.is_file():
            yield path


def first_sentence(docstring: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = re.split(r"\n\s*\n", docstring.strip(), maxsplit=1)[0]
    text = " ".join(paragraph.split())
    match = _SENTENCE_END.search(text)
    return text[: match.end()] if match else text


def docstring_tokens(text: str) -> list[str]:
    """Tokens of a summary, split as CodeSearchNet splits docstrings."""
    return _DOCSTRING_TOKEN.findall(text)


def code_tokens(code: str) -> list[str] | None:
    """Python tokens of ``code`` without comments, newlines or indentation; None if it fails."""
    try:
        tokens = tokenize.generate_tokens(io.StringIO(code).readline)
        return [t.string for t in tokens if t.type not in _SKIP_TOKENS]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None


def _dedent(lines: list[str], col: int) -> list[str]:
    """Remove ``col`` leading columns where they are blank (string bodies may be less indented)."""
    out = []
    for line in lines:
        if not line.strip():
            out.append("\n")
        elif line[:col].isspace():
            out.append(line[col:])
        else:
            out.append(line)
    return out


def _cut(line: str, start: int | None = None, end: int | None = None) -> str:
    """Slice a line by UTF-8 byte offsets (ast column offsets count bytes)."""
    return line.encode("utf-8")[start:end].decode("utf-8", errors="replace")


def _docstring_node(node: ast.AST) -> ast.Expr | None:
    doc = node.body[0] if node.body else None
    if (
        isinstance(doc, ast.Expr)
        and isinstance(doc.value, ast.Constant)
        and isinstance(doc.value.value, str)
    ):
        return doc
    return None


def _function_source(lines: list[str], node: ast.AST) -> tuple[int, str, str]:
    """(first line number, original source, source without docstring) of a function node.

    The source starts at the first decorator and is dedented to the ``def`` column.
    """
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    col = len(_cut(lines[node.lineno - 1], end=node.col_offset))
    span = lines[start - 1 : node.end_lineno]
    original = "".join(_dedent(span, col))
    doc = _docstring_node(node)
    if doc is None:
        return start, original, original
    first, last = doc.lineno - start, doc.end_lineno - start
    head = _cut(span[first], end=doc.col_offset)
    tail = _cut(span[last], start=doc.end_col_offset)
    kept = [head + tail.lstrip(" \t;")] if (head + tail).strip() else []
    code_lines = span[:first] + kept + span[last + 1 :]
    return start, original, "".join(_dedent(code_lines, col))


def function_code(source: str) -> str:
    """`source`, one function as a user pastes it (a method still indented, say), cut as
    `harvest` cuts a file's functions: dedented to its first line's column and without its
    docstring. Not one function that parses: dedented only."""
    source = source.replace("\r\n", "\n").replace("\r", "\n")  # ast's line breaks, as tokenize.open reads them
    lines = [line + "\n" for line in source.split("\n")]  # not \f or \u2028: ast counts \n only
    first = next((line for line in lines if line.strip()), "")
    # the first line's column, not the least indented line's: a string's lines may be less indented
    lines = _dedent(lines, len(first) - len(first.lstrip(" \t")))
    try:
        tree = ast.parse("".join(lines))
    except (SyntaxError, ValueError, RecursionError):  # ValueError: a null byte
        return "".join(lines)
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.FunctionDef | ast.AsyncFunctionDef):
        return _function_source(lines, tree.body[0])[2]
    return "".join(lines)


def _functions(tree: ast.AST) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(dotted qualified name, node) of every function, methods and nested ones included, in
    source order. Iterative: generated code nests expressions deeper than Python's recursion
    limit (a sum of a thousand terms)."""
    stack = [(iter(ast.iter_child_nodes(tree)), "")]  # (children left to visit, their prefix)
    while stack:
        children, prefix = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            continue
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                yield name, child
            stack.append((iter(ast.iter_child_nodes(child)), name + "."))
        else:
            stack.append((iter(ast.iter_child_nodes(child)), prefix))


def _utf8(*texts: str) -> bool:
    """Whether every text encodes as UTF-8 (no lone surrogates), as a jsonl record must."""
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _record(rel: str, name: str, node, lines: list[str], opts: dict) -> dict | str:
    """A CodeXGLUE record for one function, or the reason it is dropped."""
    # a test or a helper defined inside one (a Test* class outside test modules is kept: the
    # standard library's unittest.TestCase is library code)
    if any(part.startswith("test") for part in name.split(".")):
        return "test function"
    docstring = ast.get_docstring(node, clean=True)
    if not docstring:
        return "no docstring"
    summary = first_sentence(docstring)
    if _URL.search(summary):
        return "url in summary"
    if len(summary.split()) < MIN_SUMMARY_WORDS:
        return "short summary"
    if len(node.body) < 2:
        return "no code besides the docstring"
    start, original, code = _function_source(lines, node)
    # CodeSearchNet measures the function as written, docstring included.
    if sum(1 for line in original.splitlines() if line.strip()) < MIN_FUNCTION_LINES:
        return "short function"
    tokens = code_tokens(code)
    if not tokens:
        return "untokenizable"
    if not _utf8(name, original, docstring):  # a docstring's "\ud800" escape: a lone surrogate
        return "not UTF-8"
    return {
        "repo": opts["repo"],
        "path": rel,
        "func_name": name,
        "original_string": original,
        "language": "python",
        "code": code,
        "code_tokens": tokens,
        "docstring": docstring,
        "docstring_tokens": docstring_tokens(summary),
        "url": f"{opts['url_base']}{rel}#L{start}-L{node.end_lineno}",
        "partition": hash_split(rel),
    }


def harvest_file(path: Path, src: Path, opts: dict, stats: HarvestStats) -> Iterator[dict]:
    """The records of one file; a file that does not parse counts as unparsable."""
    rel = path.relative_to(src).as_posix()
    if not _utf8(rel):  # a file name of undecodable bytes: the records could not be written
        stats.unparsable += 1
        return
    try:
        with tokenize.open(path) as handle:  # honours the file's coding cookie
            text = handle.read()
        tree = ast.parse(text, filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError, RecursionError):
        # RecursionError: ast construction recurses on deeply nested generated code
        stats.unparsable += 1
        return
    stats.files += 1
    lines = [line + "\n" for line in text.split("\n")]  # ast counts \n only, not \f
    for name, node in _functions(tree):
        stats.functions += 1
        record = _record(rel, name, node, lines, opts)
        if isinstance(record, str):
            stats.drop(record)
        else:
            yield record


def harvest(
    src: str | Path, *, repo: str | None = None, url_base: str = ""
) -> tuple[dict[str, list[dict]], HarvestStats]:
    """All records of a source tree per split, identical code kept once; and the stats."""
    src = Path(src).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: not a folder")
    opts = {"repo": repo or src.name, "url_base": url_base}
    stats = HarvestStats()
    seen: set[str] = set()
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for path in source_files(src):
        for record in harvest_file(path, src, opts, stats):
            key = dedup_key(record)
            if key in seen:
                stats.drop("duplicate code")
                continue
            seen.add(key)
            stats.kept += 1
            splits[record["partition"]].append(record)
    return splits, stats


def dedup_key(record: dict) -> str:
    """A record's code tokens with the function's own name stripped of leading underscores: a
    private copy (``_get_version`` beside ``get_version``, recursive calls included) is the
    same code. Names are not masked whole: ``ln`` and ``exp`` delegating to ``a.ln()`` and
    ``a.exp()``, or two stubs that raise NotImplementedError, are different functions."""
    own = record["func_name"].rsplit(".", 1)[-1]
    public = own.lstrip("_") or own
    return " ".join(public if token == own else token for token in record["code_tokens"])


def write_jsonl_gz(records: list[dict], path: Path) -> None:
    """Byte-reproducible gzipped jsonl (no timestamp or file name in the gzip header)."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        for record in records:
            gz.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))


def _write_jsonl(records: list[dict], path: Path, gzipped: bool) -> None:
    if gzipped:
        write_jsonl_gz(records, path)
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def _split_name(split: str, gzipped: bool) -> str:
    return f"{split}.jsonl.gz" if gzipped else f"{split}.jsonl"


def write_splits(splits: dict[str, list[dict]], out: Path, gzipped: bool = True) -> list[Path]:
    """Write ``out/{train,valid,test}.jsonl[.gz]``; return the paths written.

    Every split is written to a staging file first, all three are flushed to disk, and only
    then are they renamed into place, back to back: a failed or interrupted write (a full disk,
    Ctrl-C) leaves the earlier harvest's files, never a shortened split that still reads as
    whole (a gzip stream closes cleanly on an exception), nor one new split beside two old
    ones, but for a kill in the microseconds between two renames.
    Like a split file of the same name, which is overwritten, a split file of the other format
    (``train.jsonl`` beside a new ``train.jsonl.gz``, from an earlier harvest with the other
    --no-gzip setting) is replaced: removed once the new one is in place, since a folder that
    holds a split twice cannot be read.
    """
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out, "*.jsonl*")  # the staging files of a harvest that was killed
    staged = {split: (staging_path(out / _split_name(split, gzipped)), records)
              for split, records in splits.items()}
    written = []
    try:
        for staging, records in staged.values():
            _write_jsonl(records, staging, gzipped)
            fsync_tree(staging)  # the slow part, before any rename
        for split, (staging, _) in staged.items():
            path = out / _split_name(split, gzipped)
            publish(staging, path)
            written.append(path)
    finally:
        for staging, _ in staged.values():  # those not published (an exception)
            staging.unlink(missing_ok=True)
    for split in staged:
        (out / _split_name(split, not gzipped)).unlink(missing_ok=True)
    return written


def package_folder(name: str) -> Path:
    """The source folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name) if name.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{name}: not an installed package (a folder with __init__.py)")
    return Path(next(iter(spec.submodule_search_locations)))


def check_no_split_folders(out: Path) -> None:
    """Raise FileExistsError if ``out`` holds a split as a sub-folder of jsonl files (the
    CodeSearchNet layout): the harvest's split files beside it would hold the split twice.
    Harvest never writes such folders, so they are not its to remove."""
    for split in SPLITS:
        sub = out / split
        if sub.is_dir() and any(p.name.endswith((".jsonl", ".jsonl.gz")) for p in sub.iterdir()):
            raise FileExistsError(f"--out {out}: holds split {split!r} as the folder {sub} of jsonl "
                                  "files; the harvest would hold it twice: choose another --out")


def _bad_input(message: str) -> int:
    print(f"python -m training.harvest: error: {one_line(message)}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Harvest SRC (or --package NAME) into --out; bad input: one stderr line, exit status 2."""
    parser = OneLineParser(prog="python -m training.harvest", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="source tree to harvest (with --package: an installed package's name)")
    parser.add_argument("--package", action="store_true",
                        help="SRC names an installed package (e.g. numpy): harvest its folder")
    parser.add_argument("--out", required=True, help="output folder for train/valid/test jsonl")
    parser.add_argument(
        "--repo", default=None, help="the records' repo field (default: SRC_DIR's name)"
    )
    parser.add_argument(
        "--url-base", default="", help="prefix of the records' url (then path#Lstart-Lend)"
    )
    parser.add_argument("--no-gzip", action="store_true", help="write .jsonl instead of .jsonl.gz")
    try:
        args = parser.parse_args(argv)
        for name, value in (("SRC", args.src), ("--out", args.out)):
            if not value.strip():  # Path("") is the current directory (an unset $VAR)
                raise UsageError(f"{name}: must not be empty")
        src = package_folder(args.src) if args.package else Path(args.src)
        if not src.is_dir():  # harvest() checks too; here it is refused before --out is tried
            raise FileNotFoundError(f"{src}: not a folder")
        out = Path(os.path.abspath(args.out))  # `new/../out` makes no folder `new`
        check_writable_folder(out)
        check_no_split_folders(out)
        splits, stats = harvest(src, repo=args.repo or (args.src if args.package else None), url_base=args.url_base)
    except (UsageError, OSError) as err:
        return _bad_input(str(err))
    empty = [s for s, recs in splits.items() if not recs]
    if empty:
        return _bad_input(f"{args.src}: no pairs in split(s) {', '.join(empty)}")
    try:
        written = write_splits(splits, out, gzipped=not args.no_gzip)
    except OSError as err:  # e.g. a full disk: the earlier files are still in place
        return _bad_input(f"--out {args.out}: cannot write the splits ({err.strerror or err})")
    for path in written:
        print(f"wrote {path}")
    counts = " ".join(f"{s}={len(r)}" for s, r in splits.items())
    seen = f"files={stats.files} unparsable={stats.unparsable} functions={stats.functions}"
    print(f"{seen} kept={stats.kept} {counts}")
    print("dropped: " + ", ".join(f"{k}={v}" for k, v in sorted(stats.dropped.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
