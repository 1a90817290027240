"""Readers, validators and task builders for the CodeXGLUE data formats.

Formats (exactly as upstream ships them):

- code-to-text: jsonl (or jsonl.gz) records with at least ``code_tokens`` and
  ``docstring_tokens`` (lists of strings). A folder holds ``train``, ``valid`` and ``test``
  each as one of ``NAME.jsonl``, ``NAME.jsonl.gz`` or a sub-folder ``NAME/`` of such files
  (the CodeSearchNet layout); a split held in two of these ways is an error. A single file
  is split by its records' ``partition`` field (``train``, ``valid`` or ``test``; another
  value is an error), or, where that is missing, 80/10/10 by a hash of the record's
  ``path`` (so a file of code never feeds two splits).
- defect (Devign): jsonl records ``{"func": str, "target": 0|1, ...}``; same folder and
  single-file rules (the hash key is ``idx``, else the line number).
- clone (BigCloneBench): a folder with ``data.jsonl`` of ``{"func", "idx"}`` and split files
  ``train.txt``, ``valid.txt``, ``test.txt`` of ``idx1 idx2 label`` lines (tab or space).
  Each ``idx`` appears once in ``data.jsonl``.

Every reading error is a :class:`DataError` whose message starts ``path:line:``. Text that
cannot be encoded as UTF-8 (a lone surrogate such as JSON's ``"\\ud800"``) is one.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from training.checks import OneLineParser, UsageError, check_ranges, one_line

SPLITS = ("train", "valid", "test")
TASKS = ("code-search", "defect", "clone")
FORMATS = ("code-to-text", "defect", "clone")
_TASK_FORMAT = {"code-search": "code-to-text", "defect": "defect", "clone": "clone"}
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class DataConfig:
    """Which data a job reads and how much of it."""

    path: str | None = None  # None -> embedded default data set (training/datasets/)
    task: str = "code-search"  # "code-search" | "defect" | "clone" (classification jobs)
    max_train: int | None = None  # cap on the train split (seeded sample), None = all
    max_eval: int | None = None  # cap on valid and on test
    labeled_fraction: float = 0.5  # paper: half fine-tunes the teacher, half is distillation data
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task: unknown task {self.task!r}; expected one of {TASKS}")
        check_ranges(self, paths=("path",), seeds=("seed",), counts=("max_train", "max_eval"))  # None: no cap
        if not 0.0 < self.labeled_fraction < 1.0:
            raise ValueError(
                f"labeled_fraction: must be in (0, 1), got {self.labeled_fraction}"
            )


class DataError(ValueError):
    """Bad input data; the message reads ``path:line: what is wrong`` (or ``path: ...``)."""


@dataclass(frozen=True)
class ClsExample:
    """One classification example; ``text_b`` is None for single-input tasks (defect)."""

    text_a: str
    text_b: str | None
    label: int


@dataclass(frozen=True)
class PairText:
    """One code-to-text pair: ``" ".join(code_tokens)`` -> ``" ".join(docstring_tokens)``."""

    source: str
    target: str


@dataclass(frozen=True)
class _Pair:
    """A code-to-text pair plus the file it came from (for same-file negatives)."""

    pair: PairText
    group: str


def default_data_path() -> Path:
    """Folder of the embedded default data set (CPython 3.11 stdlib, code-to-text)."""
    return Path(__file__).resolve().parent / "datasets" / "cpython311"


# ---------------------------------------------------------------- low-level reading


def _open_text(path: Path):
    """Text of a (gzipped) file: a leading BOM dropped (utf-8-sig), lines ended by \\n only
    (a lone \\r is JSON whitespace, not the end of a record; \\r\\n still ends one)."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="\n")
    return open(path, encoding="utf-8-sig", newline="\n")


def _undecodable_line(path: Path) -> int | None:
    """Number of the first line of ``path`` that is not UTF-8; None if none is found."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return lineno
    except (OSError, EOFError, zlib.error):
        pass
    return None


def _read_error(path: Path, err: Exception) -> DataError:
    """A failure to read ``path`` as a DataError; bytes that are not UTF-8 name their line."""
    if isinstance(err, UnicodeDecodeError):
        # The text reader decodes in blocks, so its position does not give the line: rescan.
        line = _undecodable_line(path)
        where = f"{path}:{line}" if line else str(path)
        return DataError(f"{where}: not UTF-8 text ({err.reason})")
    return DataError(f"{path}: cannot read ({err})")


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's dict; _RepeatedKey naming a key given twice (json keeps the last,
    silently: `"target": 0, "target": 1` read as 1)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        raise _RepeatedKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return obj


def _json_object(line: str, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(line, object_pairs_hook=_unique_keys)
    except _RepeatedKey as err:
        raise DataError(f"{where}: key {str(err)!r} given twice in one object") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: invalid JSON ({err.msg})") from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise DataError(f"{where}: invalid JSON ({err})") from None
    except RecursionError:  # the decoder recurses once per nested array or object
        raise DataError(f"{where}: invalid JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object")
    return obj


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) of a jsonl(.gz) file; blank lines are skipped."""
    try:
        with _open_text(path) as handle:
            for lineno, line in enumerate(handle, start=1):
                if line.strip():
                    yield lineno, _json_object(line, f"{path}:{lineno}")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:
        raise _read_error(path, err) from None


def _field(obj: dict, name: str, where: str) -> Any:
    if name not in obj:
        raise DataError(f"{where}: missing field {name!r}")
    return obj[name]


def _unicode(text: str, name: str, where: str) -> str:
    """`text` unchanged, or DataError if it cannot be encoded (a lone surrogate such as JSON's
    "\\ud800"): tokenizers fail on it later, far from the record, so it is refused here."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"{where}: field {name!r} holds invalid Unicode (a lone surrogate)") from None
    return text


def _token_text(obj: dict, name: str, where: str, newline: str = " ") -> str:
    """Join a token-list field as CodeXGLUE's code-to-text reader does: a newline inside the
    code becomes a space, inside the docstring nothing (`newline=""`: `foo\nbar` is `foobar`)."""
    tokens = _field(obj, name, where)
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise DataError(f"{where}: field {name!r} must be a list of strings")
    text = _unicode(" ".join(" ".join(tokens).replace("\n", newline).split()), name, where)
    if not text:
        raise DataError(f"{where}: field {name!r} is empty")
    return text


def _first_key(obj: dict, names: tuple[str, ...], where: str) -> str | None:
    """The first of ``names`` the record holds, not null or empty, as checked text; else None."""
    name = next((n for n in names if obj.get(n) not in (None, "")), None)
    return None if name is None else _unicode(str(obj[name]), name, where)


def _group(obj: dict, where: str) -> str:
    """What groups a code-to-text record with its file's others: its ``path``, else its
    ``url``, else its own ``file:line``."""
    return _first_key(obj, ("path", "url"), where) or where


def hash_split(key: str) -> str:
    """train/valid/test, 80/10/10, by a stable hash of ``key`` (a record's id, a file's
    relative path: the harvest splits files by it too)."""
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % 100
    return "train" if bucket < 80 else "valid" if bucket < 90 else "test"


def _split_sources(path: Path, split: str) -> dict[str, list[Path]]:
    """Each way ``path`` holds ``split`` (``NAME.jsonl``, ``NAME.jsonl.gz``, ``NAME/``) -> its files."""
    sources = {p.name: [p] for p in (path / f"{split}{sfx}" for sfx in _JSONL_SUFFIXES) if p.is_file()}
    sub = path / split
    nested = sorted(p for p in sub.iterdir() if p.name.endswith(_JSONL_SUFFIXES)) if sub.is_dir() else []
    plain = {p.name for p in nested}
    twice = next((p for p in nested if p.name.endswith(".gz") and p.name.removesuffix(".gz") in plain), None)
    if twice is not None:  # `gunzip -k` leaves both: every record would be read twice
        raise DataError(f"{sub}: {twice.name} and {twice.name.removesuffix('.gz')} hold one file twice: keep one")
    if nested:
        sources[f"{split}/ ({len(nested)} jsonl files)"] = nested
    return sources


def _split_files(path: Path, every_split: bool = True) -> dict[str, list[Path]]:
    """Map each split to its jsonl files: a folder's NAME.jsonl[.gz] or NAME/*.jsonl[.gz].

    A split held twice (e.g. train.jsonl beside train.jsonl.gz, left by two harvests with and
    without --no-gzip) is refused: reading one copy would silently ignore the other. A
    missing split is refused, unless `every_split` is False (pooled extra data: a folder of
    only train.jsonl), where only a folder without any split is.
    """
    files: dict[str, list[Path]] = {}
    for split in SPLITS:
        sources = _split_sources(path, split)
        if not sources and not every_split:
            files[split] = []
            continue
        if not sources:
            raise DataError(f"{path}: no {split}.jsonl, {split}.jsonl.gz or {split}/*.jsonl")
        if len(sources) > 1:
            raise DataError(f"{path}: split {split!r} is held more than once, by "
                            f"{' and '.join(sources)}: keep one")
        files[split] = next(iter(sources.values()))
    if not any(files.values()):
        raise DataError(f"{path}: no split files: expected train, valid or test as NAME.jsonl, "
                        "NAME.jsonl.gz or NAME/*.jsonl")
    return files


def _records(path: Path, key_field: str, every_split: bool = True) -> dict[str, list[tuple[str, int, dict]]]:
    """Records (file, line, object) per split of a jsonl file or folder (a split may be empty;
    a folder may lack a split's files only where `every_split` is False)."""
    out: dict[str, list[tuple[str, int, dict]]] = {s: [] for s in SPLITS}
    if path.is_dir():
        for split, files in _split_files(path, every_split).items():
            for file in files:
                out[split].extend((str(file), n, obj) for n, obj in _iter_jsonl(file))
    elif path.is_file():
        for n, obj in _iter_jsonl(path):
            out[_partition(obj, key_field, f"{path}:{n}", n)].append((str(path), n, obj))
    else:
        raise DataError(f"{path}: no such file or folder")
    return out


def _partition(obj: dict, key_field: str, where: str, lineno: int) -> str:
    """The split of a record of a single file: its ``partition`` field, or, only where that
    is missing (or null), a hash of ``key_field`` (a code-to-text record's ``path``, else its
    ``url``, as ``_group`` groups it; where those are missing, null or empty, of the line
    number: one shared key would send every such record to one split). A partition of
    another name (``dev``, ``validation``) is refused rather than hashed into any split."""
    split = obj.get("partition")
    if split is None:
        names = (key_field, "url") if key_field == "path" else (key_field,)
        return hash_split(_first_key(obj, names, where) or str(lineno))
    if split not in SPLITS:
        raise DataError(f"{where}: field 'partition' is {split!r}; expected one of "
                        f"{', '.join(SPLITS)} (or no field: a hash of {key_field!r} decides)")
    return split


def _require_splits(path: Path, splits: dict[str, list], key_field: str) -> None:
    """Refuse an empty split. Called once the records are checked, so that a malformed record
    (which may be why a small file's split is empty) is what gets reported."""
    for split, items in splits.items():
        if not items:
            how = (
                ""
                if path.is_dir()
                else f" (records go by 'partition', else a hash of {key_field!r})"
            )
            raise DataError(f"{path}: split {split!r} is empty{how}")


# ---------------------------------------------------------------- format readers


def _note_places(places: dict | None, split: str, recs: list[tuple[str, int, dict]]) -> None:
    """The `places` a reader was given (the audit's; None on the jobs' path, which keeps no
    string per example) receive each of the split's records' ``file:line``, in order."""
    if places is not None:
        places[split] = [f"{f}:{n}" for f, n, _ in recs]


def _read_code_to_text(path: Path, every_split: bool = True, places: dict | None = None) -> dict[str, list[_Pair]]:
    splits = {}
    for split, recs in _records(path, "path", every_split).items():
        _note_places(places, split, recs)
        pairs = []
        for file, n, obj in recs:
            where = f"{file}:{n}"
            pair = PairText(
                _token_text(obj, "code_tokens", where), _token_text(obj, "docstring_tokens", where, newline="")
            )
            pairs.append(_Pair(pair, _group(obj, where)))
        splits[split] = pairs
    if every_split:
        _require_splits(path, splits, "path")
    return splits


def _label(obj: dict, name: str, where: str) -> int:
    value = _field(obj, name, where)
    if isinstance(value, bool) or value not in (0, 1):
        raise DataError(f"{where}: field {name!r} must be 0 or 1, got {value!r}")
    return int(value)


def _code(obj: dict, where: str) -> str:
    func = _field(obj, "func", where)
    if not isinstance(func, str) or not func.strip():
        raise DataError(f"{where}: field 'func' must be a non-empty string")
    return _unicode(func, "func", where)


def _check_unique_ids(records: dict[str, list[tuple[str, int, dict]]]) -> None:
    """DataError naming both lines when an `idx` repeats, in one split or across two (CodeXGLUE's
    ids are unique: a repeat is a function counted twice, or tested on after training on it)."""
    first: dict[str, str] = {}
    for recs in records.values():
        for f, n, obj in recs:
            if "idx" in obj and not isinstance(obj["idx"], dict | list):
                key = str(obj["idx"])
                if key in first:
                    raise DataError(f"{f}:{n}: idx {key} repeats {first[key]}")
                first[key] = f"{f}:{n}"


def _read_defect(path: Path, places: dict | None = None) -> dict[str, list[ClsExample]]:
    splits = {}
    records = _records(path, "idx")
    _check_unique_ids(records)
    for split, recs in records.items():
        _note_places(places, split, recs)
        splits[split] = [
            ClsExample(_code(obj, f"{f}:{n}"), None, _label(obj, "target", f"{f}:{n}"))
            for f, n, obj in recs
        ]
    _require_splits(path, splits, "idx")
    return splits


def _refuse_gzipped_clone_table(folder: Path) -> None:
    if (folder / "data.jsonl.gz").is_file() and not (folder / "data.jsonl").is_file():
        raise DataError(f"{folder / 'data.jsonl.gz'}: clone data's data.jsonl is read uncompressed: gunzip it")


def _clone_folder(path: Path) -> Path:
    if not path.exists():  # a typo: not "needs a folder with ..."
        raise DataError(f"{path}: no such file or folder")
    folder = path.parent if path.is_file() and path.name == "data.jsonl" else path
    _refuse_gzipped_clone_table(folder)
    if not (folder / "data.jsonl").is_file():
        raise DataError(
            f"{path}: clone data needs a folder with data.jsonl and train/valid/test.txt"
        )
    return folder


def _read_clone_functions(file: Path) -> dict[str, str]:
    """idx -> function of a data.jsonl; a repeated idx is refused (the split files could not
    say which of the two functions they mean)."""
    funcs: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for n, obj in _iter_jsonl(file):
        where = f"{file}:{n}"
        idx = _field(obj, "idx", where)
        if isinstance(idx, bool) or not isinstance(idx, (str, int)):
            raise DataError(f"{where}: field 'idx' must be a string or integer")
        key = _unicode(str(idx), "idx", where)
        if key in first_line:
            raise DataError(f"{where}: idx {key} repeats line {first_line[key]}")
        first_line[key] = n
        funcs[key] = _code(obj, where)
    return funcs


def _clone_pair(line: str, where: str, funcs: dict[str, str]) -> ClsExample:
    parts = line.split()
    if len(parts) != 3 or parts[2] not in ("0", "1"):
        raise DataError(f"{where}: expected 'idx1 idx2 label' with label 0 or 1")
    for idx in parts[:2]:
        if idx not in funcs:
            raise DataError(f"{where}: idx {idx!r} is not in data.jsonl")
    return ClsExample(funcs[parts[0]], funcs[parts[1]], int(parts[2]))


def _read_clone_pairs(file: Path, funcs: dict[str, str], lines: list | None = None) -> list[ClsExample]:
    """The split file's pairs; `lines`, when given, receives each pair's line number."""
    examples = []
    try:
        with _open_text(file) as handle:
            for n, line in enumerate(handle, start=1):
                if line.strip():
                    examples.append(_clone_pair(line, f"{file}:{n}", funcs))
                    if lines is not None:
                        lines.append(n)
    except (OSError, UnicodeDecodeError) as err:
        raise _read_error(file, err) from None
    if not examples:
        raise DataError(f"{file}: split is empty")
    return examples


def _read_clone(path: Path, places: dict | None = None) -> dict[str, list[ClsExample]]:
    folder = _clone_folder(path)
    funcs = _read_clone_functions(folder / "data.jsonl")
    splits = {}
    for split in SPLITS:
        file = folder / f"{split}.txt"
        if not file.is_file():
            raise DataError(f"{folder}: no {split}.txt")
        lines = [] if places is not None else None
        splits[split] = _read_clone_pairs(file, funcs, lines)
        if places is not None:
            places[split] = [f"{file}:{n}" for n in lines]
    return splits


_READERS = {"code-to-text": _read_code_to_text, "defect": _read_defect, "clone": _read_clone}


def _read(fmt: str, path: Path, places: dict | None = None) -> dict[str, list]:
    """Every split of a data set of format `fmt` (DataError on bad data); `places`, when
    given, receives each split's records' ``file:line``."""
    if fmt not in _READERS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    return _READERS[fmt](path, places=places)


def detect_format(path: str | Path) -> str:
    """Which of FORMATS a file or folder holds, judged from data.jsonl or its first record."""
    path = Path(path)
    # a data.jsonl file is clone data's function table only beside its split files (a
    # code-to-text or defect file may have that name too)
    if (path / "data.jsonl").is_file() or (path.name == "data.jsonl" and (path.parent / "train.txt").is_file()):
        return "clone"
    if (path / "train.txt").is_file():  # clone split files: not "no train.jsonl" for a gzipped table
        _refuse_gzipped_clone_table(path)
    if path.is_dir():
        files = _split_files(path)["train"]
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"{path}: no such file or folder")
    for file in files:  # the first record of the split: an empty first file says nothing
        for n, obj in _iter_jsonl(file):
            if "code_tokens" in obj or "docstring_tokens" in obj:
                return "code-to-text"
            if "func" in obj and "target" in obj:
                return "defect"
            raise DataError(
                f"{file}:{n}: unknown record format: expected code_tokens/docstring_tokens "
                "(code-to-text) or func/target (defect)"
            )
    raise DataError(f"{files[0] if len(files) == 1 else path}: split 'train' is empty")


# ---------------------------------------------------------------- tasks


def _resolve(path: str | Path | None) -> Path:
    return default_data_path() if path is None else Path(path).expanduser()


# One seed for every evaluation subset: every job, round and --seeds run scores the same pairs.
SUBSET_SEED = 0


def evaluation_subset(items: Sequence, size: int | None) -> list:
    """At most `size` items of a split for scoring (None: all): its first item (the input
    the jobs time generation on), then a seeded sample of the rest, in their original order.
    Not a leading slice: the splits are sorted by file, and the first 32 validation pairs of
    the embedded data came from 4 of its 44 files (the first 256 test pairs from 18 of 38)."""
    if size is None or size >= len(items):
        return list(items)
    return [items[0], *sample_in_order(items[1:], size - 1, SUBSET_SEED)] if size else []


def sample_in_order(items: Sequence, cap: int | None, seed: int) -> list:
    """A seeded sample of at most ``cap`` items, in their original order."""
    if cap is None or cap >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), cap))
    return [items[i] for i in keep]


def _split_cap(cfg: DataConfig, split: str) -> int | None:
    return cfg.max_train if split == "train" else cfg.max_eval


def load_code_to_text(path: str | Path) -> dict[str, list[PairText]]:
    """All code-to-text pairs of a jsonl(.gz) file or train/valid/test folder, per split."""
    return {s: [p.pair for p in pairs] for s, pairs in _read_code_to_text(_resolve(path)).items()}


def code_to_text_splits(cfg: DataConfig) -> dict[str, list[PairText]]:
    """Code-to-text pairs of ``cfg.path`` per split, capped by max_train / max_eval."""
    splits = load_code_to_text(_resolve(cfg.path))
    return {s: sample_in_order(p, _split_cap(cfg, s), cfg.seed + i) for i, (s, p) in enumerate(splits.items())}


def _negative_index(
    i: int, pairs: list[_Pair], by_group: dict[str, list[int]], rng: random.Random
) -> int | None:
    """Index of another pair whose summary differs, preferring one of the same file."""
    target = pairs[i].pair.target
    same = [j for j in by_group[pairs[i].group] if j != i and pairs[j].pair.target != target]
    if same:
        return rng.choice(same)
    for _ in range(100):  # a random other pair; summaries rarely collide
        j = rng.randrange(len(pairs))
        if j != i and pairs[j].pair.target != target:
            return j
    return None


def _code_search_groups(pairs: list[_Pair], seed: int) -> list[list[ClsExample]]:
    """Per pair: [positive, negative] (code, summary, label) examples, in a seeded order.

    The negative pairs the function with the summary of another function of the same
    list, preferably from the same file (a harder negative).
    """
    rng = random.Random(seed)
    by_group: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        by_group.setdefault(p.group, []).append(i)
    groups = []
    for i, p in enumerate(pairs):
        j = _negative_index(i, pairs, by_group, rng)
        if j is not None:
            negative = ClsExample(p.pair.source, pairs[j].pair.target, 0)
            groups.append([ClsExample(p.pair.source, p.pair.target, 1), negative])
    rng.shuffle(groups)
    return groups


def _code_search_split(pairs: list[_Pair], cap: int | None, seed: int) -> list[ClsExample]:
    groups = _code_search_groups(pairs, seed)
    flat = [ex for g in groups for ex in g]
    if cap is not None:
        flat = flat[:cap]  # groups are shuffled, so any prefix is a balanced seeded sample
    random.Random(seed + 1).shuffle(flat)
    return flat


def _code_search_splits(path: Path, cfg: DataConfig) -> dict[str, list[ClsExample]]:
    splits = {}
    for i, (split, pairs) in enumerate(_read_code_to_text(path).items()):
        examples = _code_search_split(pairs, _split_cap(cfg, split), cfg.seed + i)
        if not examples:  # e.g. a single pair: no other summary to pair it with
            raise DataError(
                f"{path}: split {split!r} has too few distinct summaries for code-search negatives"
            )
        splits[split] = examples
    return splits


def code_search_pairs(path: str | Path, seed: int = 0) -> list[ClsExample]:
    """Code-search examples of every split of a code-to-text set, pooled (unlabeled use).

    Each function gives a positive and a (preferably same-file) negative, as the task's
    splits are built; distillation ignores the labels. A malformed record names its file:line.
    """
    splits = _read_code_to_text(_resolve(path), every_split=False)  # pooled: a split may be empty
    return [ex for i, pairs in enumerate(splits.values()) for ex in _code_search_split(pairs, None, seed + i)]


def pooled_code_to_text(path: str | Path) -> list[PairText]:
    """The code-to-text pairs of every split of a jsonl file or folder, pooled (extra training
    data; a split may be empty). A malformed record names its file:line."""
    return [p.pair for pairs in _read_code_to_text(_resolve(path), every_split=False).values() for p in pairs]


def unseen_sample(items: Sequence, texts, held_out_texts: set, cap: int | None, seed: int) -> list:
    """Extra data kept apart from the evaluation: the items none of whose `texts(item)` is in
    `held_out_texts` (a shared function or summary would leak valid/test into training),
    then at most `cap` of them (a seeded sample; None = all)."""
    kept = [item for item in items if held_out_texts.isdisjoint(texts(item))]
    return random.Random(seed).sample(kept, cap) if cap is not None and len(kept) > cap else kept


def extra_fingerprint(paths: Sequence[str], cap: int | None) -> list:
    """What identifies extra data in a cache key: its files' contents (not paths) and the cap."""
    return [[data_fingerprint(DataConfig(path=p)) for p in paths], cap]


def classification_splits(cfg: DataConfig) -> dict[str, list[ClsExample]]:
    """Train/valid/test examples of ``cfg.task`` read from ``cfg.path``, caps applied.

    code-search is built from code-to-text data; defect reads Devign jsonl; clone reads a
    BigCloneBench folder. The embedded default data set is code-to-text: code-search only.
    """
    path = _resolve(cfg.path)
    if cfg.task == "code-search":
        return _code_search_splits(path, cfg)
    if cfg.path is None:
        raise DataError(
            f"{path}: the embedded default data set is code-to-text; task {cfg.task!r} "
            "needs data.path to point at its own data"
        )
    reader = _read_defect if cfg.task == "defect" else _read_clone
    splits = reader(path)
    return {s: sample_in_order(e, _split_cap(cfg, s), cfg.seed + i) for i, (s, e) in enumerate(splits.items())}


def split_labeled_unlabeled(examples: Sequence, fraction: float, seed: int) -> tuple[list, list]:
    """Split into (labeled, unlabeled), stratified by ``.label`` where items have one.

    Each label class contributes round(fraction * its size) items to the labeled part,
    chosen with a seeded generator; both parts keep the input order. The unlabeled part
    keeps its objects as they are: distillation simply ignores their labels.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    rng = random.Random(seed)
    by_label: dict[Any, list[int]] = {}
    for i, ex in enumerate(examples):
        by_label.setdefault(getattr(ex, "label", None), []).append(i)
    labeled: set[int] = set()
    for label in sorted(by_label, key=repr):
        idx = by_label[label]
        labeled.update(rng.sample(idx, round(fraction * len(idx))))
    first = [ex for i, ex in enumerate(examples) if i in labeled]
    second = [ex for i, ex in enumerate(examples) if i not in labeled]
    return first, second


# ---------------------------------------------------------------- fingerprint


def _data_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    # os.walk follows linked folders as the readers do (`_split_sources`: a `train/` that is a
    # symlink); Path.rglob did not, and such a data set hashed no file at all, so different
    # data shared one teacher, its logits and a sweep id. A folder reached by two names is
    # hashed under both, as the readers read both; only a link back to a folder above is not
    # followed (a cycle). Sorted: the hash does not follow the file system's listing order.
    top = os.fspath(path)
    above = {top: {os.path.realpath(top)}}  # each folder's real path and those of its parents
    found = []
    for root, folders, names in os.walk(top, followlinks=True):
        chain = above.pop(root)
        real = {f: os.path.realpath(os.path.join(root, f)) for f in folders}
        folders[:] = [f for f in sorted(folders) if real[f] not in chain]
        above.update({os.path.join(root, f): chain | {real[f]} for f in folders})
        found += [Path(root, n) for n in names if n.endswith((".jsonl", ".jsonl.gz", ".txt"))]
    return sorted(p for p in found if p.is_file())


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_hash(path: Path) -> str:
    """sha256 (hex) of a file's bytes, computed once per (path, size, mtime) in this process:
    contents only, so the same bytes anywhere hash the same (no path or time in the value)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def code_to_text_view(cfg: DataConfig) -> DataConfig:
    """`cfg` with the fields the code-to-text readers never read (`task`, `labeled_fraction`:
    the classification jobs') at their defaults. The code-to-text model and the prune job are
    keyed by it, so a change for the compression job alone in the data section the jobs share
    (`demo`) does not fine-tune the code-to-text model and prune it again."""
    return replace(cfg, task=DataConfig.task, labeled_fraction=DataConfig.labeled_fraction)


def data_fingerprint(cfg: DataConfig) -> str:
    """Stable 16-hex hash of the data files' contents and of ``cfg`` (minus its path).

    The path itself is left out so that moving a data set keeps its caches valid. Clone data
    named by its data.jsonl is read with the split files beside it: the folder is hashed.
    """
    path = _resolve(cfg.path)
    if cfg.task == "clone" and path.is_file():
        path = _clone_folder(path)
    digest = hashlib.sha256()
    if path.is_file():  # the rule that splits one file's records changed at 2384197 (null keys)
        digest.update(b"single-file split rule 2\n")
    for file in _data_files(path):
        rel = file.name if file == path else file.relative_to(path).as_posix()
        digest.update(f"{rel}\0{file_hash(file)}\n".encode())
    fields = {k: v for k, v in asdict(cfg).items() if k != "path"}
    digest.update(json.dumps(fields, sort_keys=True).encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- command line


def validate(path: str | Path, fmt: str | None = None) -> dict[str, int]:
    """Read a data set completely; return its example counts per split or raise DataError."""
    path = Path(path)
    return {s: len(v) for s, v in _read(fmt or detect_format(path), path).items()}


@dataclass(frozen=True)
class Finding:
    """How many examples a check found, and the first one's place beside the place it
    repeats, shares or contradicts (``file:line`` each; None when the count is 0)."""

    count: int
    first: tuple[str, str] | None = None


@dataclass(frozen=True)
class Audit:
    """What `audit` found in a data set, beside its counts per split.

    Inputs are compared with whitespace collapsed (a function reformatted is the same
    function); a clone pair is its two functions in either order. `repeated`: examples whose
    input an earlier one of the same split has; `in_train`: valid and test examples whose input
    train has (what a model is tested on after training on it); `both_labels`: inputs labelled
    0 in one place and 1 in another, anywhere (None for code-to-text, which has no labels);
    `summaries_in_train`: code-to-text's valid and test pairs whose summary, verbatim, a
    train pair has (None for the labelled formats).
    """

    counts: dict[str, int]
    inputs: str
    repeated: dict[str, Finding]
    in_train: dict[str, Finding]
    both_labels: Finding | None
    summaries_in_train: dict[str, Finding] | None


def _digest(text: str) -> bytes:
    return hashlib.blake2b(" ".join(text.split()).encode("utf-8"), digest_size=16).digest()


def _keyed(fmt: str, path: Path) -> tuple[dict[str, list[tuple[str, Any, int | None]]], dict | None]:
    """Each split's (place, input key, label), and code-to-text's (place, summary key)."""
    places: dict[str, list[str]] = {}
    splits = _read(fmt, path, places)
    if fmt == "code-to-text":
        def keyed(text_of) -> dict:
            return {s: [(w, _digest(text_of(p.pair)), None) for w, p in zip(places[s], ps, strict=True)]
                    for s, ps in splits.items()}

        return keyed(lambda pair: pair.source), keyed(lambda pair: pair.target)
    digests: dict[str, bytes] = {}  # clone pairs share functions: each is normalised once

    def side(text: str) -> bytes:
        if text not in digests:
            digests[text] = _digest(text)
        return digests[text]

    def key(ex: ClsExample) -> tuple:
        return tuple(sorted(side(t) for t in (ex.text_a, ex.text_b) if t is not None))

    return {s: [(w, key(ex), ex.label) for w, ex in zip(places[s], exs, strict=True)] for s, exs in splits.items()}, None


def _repeated(items: list) -> Finding:
    first_place: dict = {}
    count, first = 0, None
    for where, key, _ in items:
        if key in first_place:
            count += 1
            first = first or (where, first_place[key])
        else:
            first_place[key] = where
    return Finding(count, first)


def _shared_with_train(splits: dict[str, list]) -> dict[str, Finding]:
    train: dict = {}
    for where, key, _ in splits["train"]:
        train.setdefault(key, where)
    found = {}
    for split in ("valid", "test"):
        hits = [(where, train[key]) for where, key, _ in splits[split] if key in train]
        found[split] = Finding(len(hits), hits[0] if hits else None)
    return found


def _both_labels(splits: dict[str, list]) -> Finding:
    seen: dict = {}  # key -> (label, place) of its first example
    clashes: dict = {}
    for split in SPLITS:
        for where, key, label in splits[split]:
            label0, where0 = seen.setdefault(key, (label, where))
            if label != label0 and key not in clashes:
                clashes[key] = (where, where0)
    return Finding(len(clashes), next(iter(clashes.values()), None))


def audit(path: str | Path, fmt: str | None = None) -> Audit:
    """Read a data set completely (DataError as `validate`) and report its repeats, the valid
    and test inputs train also holds, and the inputs given both labels (`Audit`)."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    splits, summaries = _keyed(fmt, path)
    return Audit(
        counts={s: len(v) for s, v in splits.items()},
        inputs={"code-to-text": "functions", "defect": "functions", "clone": "pairs"}[fmt],
        repeated={s: _repeated(v) for s, v in splits.items()},
        in_train=_shared_with_train(splits),
        both_labels=None if fmt == "code-to-text" else _both_labels(splits),
        summaries_in_train=None if summaries is None else _shared_with_train(summaries),
    )


def _findings_line(what: str, counts: str, findings: list[Finding], relation: str) -> str:
    first = next((f.first for f in findings if f.first), None)
    return f"{what}: {counts}" + (f" (first: {first[0]} {relation} {first[1]})" if first else "")


def _per_split_line(what: str, findings: dict[str, Finding], relation: str) -> str:
    counts = ", ".join(f"{split} {f.count}" for split, f in findings.items())
    return _findings_line(what, counts, list(findings.values()), relation)


def audit_lines(found: Audit) -> list[str]:
    """`audit`'s findings as the CLI prints them, one line each."""
    lines = [
        _per_split_line(f"{found.inputs} repeated in their split", found.repeated, "repeats"),
        _per_split_line(f"{found.inputs} train also has", found.in_train, "is"),
    ]
    if found.both_labels is not None:
        clash = found.both_labels
        lines.append(_findings_line(f"{found.inputs} labelled both 0 and 1", str(clash.count), [clash], "against"))
    if found.summaries_in_train is not None:
        lines.append(_per_split_line("summaries train also has, verbatim", found.summaries_in_train, "is"))
    return lines


def main(argv: list[str] | None = None) -> int:
    """``validate PATH [--format F]``: 0, counts per split and the audit's lines (`audit_lines`);
    bad input or data: one stderr line naming the problem (a record's file:line), exit status 2."""
    parser = OneLineParser(prog="python -m training.data")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate", help="check a data file or folder; print counts per split and an audit "
                           "(repeats, inputs train also holds, label clashes)")
    check.add_argument("path")
    check.add_argument("--format", choices=FORMATS, default=None, help="default: detected")
    try:
        args = parser.parse_args(argv)
        fmt = args.format or detect_format(args.path)
        found = audit(args.path, fmt)
    except (UsageError, DataError, OSError) as err:
        print(f"python -m training.data: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    print(f"{args.path}: {fmt}")
    for split, count in found.counts.items():
        print(f"{split}\t{count}")
    print("\n".join(audit_lines(found)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
