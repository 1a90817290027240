"""Readers, validators and task builders of training/data.py, on upstream-format fixtures."""

import gzip
import json
import re
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from training import data
from training.data import (
    ClsExample,
    DataConfig,
    DataError,
    PairText,
    classification_splits,
    code_to_text_splits,
    data_fingerprint,
    default_data_path,
    load_code_to_text,
    split_labeled_unlabeled,
)

FIXTURES = Path(__file__).parent / "fixtures"
C2T = FIXTURES / "code_to_text"
DEVIGN = FIXTURES / "devign"
BCB = FIXTURES / "bigclonebench"


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write_jsonl(path: Path, records: list, gz: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _c2t_record(path: str, code: str, summary: str, partition: str = "train") -> dict:
    return {
        "path": path,
        "code_tokens": code.split(),
        "docstring_tokens": summary.split(),
        "partition": partition,
    }


# ---------------------------------------------------------------- code-to-text


def test_code_to_text_folder_reads_upstream_records():
    splits = load_code_to_text(C2T)
    assert {s: len(v) for s, v in splits.items()} == {"train": 5, "valid": 2, "test": 2}
    first = _records(C2T / "train.jsonl")[0]
    assert splits["train"][0] == PairText(
        " ".join(first["code_tokens"]), " ".join(first["docstring_tokens"])
    )


def test_code_to_text_gz_file_and_subfolder_layouts_agree(tmp_path):
    plain = load_code_to_text(C2T)
    gz_dir = tmp_path / "gz"
    gz_dir.mkdir()
    nested = tmp_path / "nested"  # CodeSearchNet layout: train/ruby_train_0.jsonl.gz
    for split in ("train", "valid", "test"):
        records = _records(C2T / f"{split}.jsonl")
        _write_jsonl(gz_dir / f"{split}.jsonl.gz", records, gz=True)
        (nested / split).mkdir(parents=True)
        _write_jsonl(nested / split / f"ruby_{split}_0.jsonl.gz", records, gz=True)
    assert load_code_to_text(gz_dir) == plain
    assert load_code_to_text(nested) == plain


def test_code_to_text_single_file_uses_partition_field(tmp_path):
    records = [r for s in ("train", "valid", "test") for r in _records(C2T / f"{s}.jsonl")]
    single = _write_jsonl(tmp_path / "all.jsonl", records)
    assert load_code_to_text(single) == load_code_to_text(C2T)


def test_code_to_text_joins_tokens_like_codexglue(tmp_path):
    rec = {
        "code_tokens": ["def", "f", "(", ")", ":", "'a\nb'"],
        "docstring_tokens": ["Do", "it", "\n", ".", "a\nb"],  # CodeXGLUE removes a docstring's newlines
    }
    folder = tmp_path / "d"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        _write_jsonl(folder / f"{split}.jsonl", [rec])
    pair = load_code_to_text(folder)["test"][0]
    assert pair == PairText("def f ( ) : 'a b'", "Do it . ab")


def test_code_to_text_splits_caps_are_seeded():
    cfg = DataConfig(path=str(C2T), max_train=3, max_eval=1, seed=7)
    first, again = code_to_text_splits(cfg), code_to_text_splits(cfg)
    assert first == again
    assert [len(first[s]) for s in ("train", "valid", "test")] == [3, 1, 1]
    full = load_code_to_text(C2T)["train"]
    assert set(first["train"]) <= set(full)
    # a sample across the split, in its order, drawn by the seed: not its first 3 pairs (the
    # first N of a file sorted by project are one project's)
    samples = {tuple(code_to_text_splits(replace(cfg, seed=seed))["train"]) for seed in range(10)}
    assert len(samples) > 1 and all(list(t) == sorted(t, key=full.index) for t in samples)
    assert any(full.index(p) >= 3 for t in samples for p in t)


def test_evaluation_subsets_span_the_split_and_keep_its_first_pair():
    """The prune and quantize rows score a subset of a split sorted by file: a sample across
    its files (the embedded data's first 32 validation pairs came from 4 of 44 files), always with
    the first pair (the input generation is timed on), in order, the same every call."""
    from training.data import evaluation_subset

    valid = data._read_code_to_text(default_data_path())["valid"]  # pairs with their files

    def files(pairs):
        return len({p.group for p in pairs})

    subset = evaluation_subset(valid, 32)
    assert subset == evaluation_subset(valid, 32) and subset[0] == valid[0] and len(subset) == 32
    assert [valid.index(p) for p in subset] == sorted(valid.index(p) for p in subset)
    assert files(valid[:32]) == 4 and files(subset) == 17  # of 44
    assert evaluation_subset(valid, None) == valid == evaluation_subset(valid, len(valid) + 1)
    assert evaluation_subset(valid, 0) == [] and evaluation_subset(valid, 1) == valid[:1]


# ---------------------------------------------------------------- code search


def test_code_search_is_balanced_and_built_from_true_pairs():
    splits = classification_splits(DataConfig(path=str(C2T)))
    pairs = load_code_to_text(C2T)
    for split, examples in splits.items():
        true = {(p.source, p.target) for p in pairs[split]}
        summaries = {p.target for p in pairs[split]}
        assert Counter(e.label for e in examples) == {1: len(pairs[split]), 0: len(pairs[split])}
        for ex in examples:
            assert ((ex.text_a, ex.text_b) in true) == (ex.label == 1)
            assert ex.text_b in summaries  # negatives come from the same split


def test_code_search_prefers_a_negative_from_the_same_file(tmp_path):
    records = [
        _c2t_record("a.py", "def a1 ( ) : pass", "first of file a"),
        _c2t_record("a.py", "def a2 ( ) : pass", "second of file a"),
    ] + [_c2t_record(f"z{i}.py", f"def z{i} ( ) : pass", f"function number {i}") for i in range(20)]
    records += [
        _c2t_record("v.py", "def v ( ) : pass", "valid one", "valid"),
        _c2t_record("w.py", "def w ( ) : pass", "valid two", "valid"),
        _c2t_record("t.py", "def t ( ) : pass", "test one", "test"),
        _c2t_record("u.py", "def u ( ) : pass", "test two", "test"),
    ]
    path = _write_jsonl(tmp_path / "one.jsonl", records)
    for seed in range(5):
        train = classification_splits(DataConfig(path=str(path), seed=seed))["train"]
        negatives = {e.text_a: e.text_b for e in train if e.label == 0}
        assert negatives["def a1 ( ) : pass"] == "second of file a"
        assert negatives["def a2 ( ) : pass"] == "first of file a"


def test_code_search_caps_keep_balance_and_seed_matters():
    cfg = DataConfig(max_train=200, max_eval=50, seed=3)
    splits = classification_splits(cfg)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [200, 50, 50]
    assert Counter(e.label for e in splits["train"]) == {0: 100, 1: 100}
    assert classification_splits(cfg) == splits
    assert (
        classification_splits(DataConfig(max_train=200, max_eval=50, seed=4))["train"]
        != splits["train"]
    )


# ---------------------------------------------------------------- defect and clone


def test_defect_reader():
    splits = classification_splits(DataConfig(path=str(DEVIGN), task="defect"))
    records = _records(DEVIGN / "train.jsonl")
    assert splits["train"] == [ClsExample(r["func"], None, r["target"]) for r in records]
    assert [len(splits[s]) for s in ("valid", "test")] == [2, 2]


def test_clone_reader_tab_and_space_separators(tmp_path):
    splits = classification_splits(DataConfig(path=str(BCB), task="clone"))
    funcs = {r["idx"]: r["func"] for r in _records(BCB / "data.jsonl")}
    assert splits["train"][0] == ClsExample(funcs["101"], funcs["102"], 1)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [4, 2, 2]
    spaced = tmp_path / "bcb"
    shutil.copytree(BCB, spaced)
    for split in ("train", "valid", "test"):
        file = spaced / f"{split}.txt"
        file.write_text(file.read_text().replace("\t", " "))
    assert classification_splits(DataConfig(path=str(spaced), task="clone")) == splits


def test_detect_format():
    assert data.detect_format(C2T) == "code-to-text"
    assert data.detect_format(DEVIGN) == "defect"
    assert data.detect_format(BCB) == "clone"


# ---------------------------------------------------------------- labeled / unlabeled


def test_split_labeled_unlabeled_is_stratified_seeded_and_disjoint():
    examples = [ClsExample(f"x{i}", None, int(i % 4 == 0)) for i in range(400)]  # 100 positives
    labeled, unlabeled = split_labeled_unlabeled(examples, 0.5, seed=1)
    assert Counter(e.label for e in labeled) == {1: 50, 0: 150}
    assert sorted(labeled + unlabeled, key=examples.index) == examples
    assert not set(labeled) & set(unlabeled)
    assert split_labeled_unlabeled(examples, 0.5, seed=1) == (labeled, unlabeled)
    assert split_labeled_unlabeled(examples, 0.5, seed=2)[0] != labeled
    assert len(split_labeled_unlabeled(examples, 0.25, seed=0)[0]) == 100
    with pytest.raises(ValueError, match="fraction"):
        split_labeled_unlabeled(examples, 1.5, seed=0)


# ---------------------------------------------------------------- bad input


def _c2t_folder(tmp_path: Path, train_lines: list) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir()
    good = _records(C2T / "valid.jsonl")
    _write_jsonl(folder / "train.jsonl", train_lines)
    _write_jsonl(folder / "valid.jsonl", good)
    _write_jsonl(folder / "test.jsonl", good)
    return folder


GOOD = {"code_tokens": ["x"], "docstring_tokens": ["y"]}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"train\.jsonl:2: invalid JSON"),
        ("[1, 2]", r"train\.jsonl:2: expected a JSON object"),
        ({"code_tokens": ["x"]}, r"train\.jsonl:2: missing field 'docstring_tokens'"),
        (
            {"code_tokens": "x y", "docstring_tokens": ["y"]},
            r"train\.jsonl:2: field 'code_tokens' must be a list of strings",
        ),
        (
            {"code_tokens": ["x"], "docstring_tokens": []},
            r"train\.jsonl:2: field 'docstring_tokens' is empty",
        ),
        ("[" * 200_000, r"train\.jsonl:2: invalid JSON \(nested too deeply\)"),  # RecursionError
        ('{"n": ' + "1" * 5000 + "}", r"train\.jsonl:2: invalid JSON"),  # int() digit limit
    ],
)
def test_bad_code_to_text_line_names_file_line_and_problem(tmp_path, line, message):
    folder = _c2t_folder(tmp_path, [GOOD, line])
    with pytest.raises(DataError, match=message):
        load_code_to_text(folder)


def test_empty_and_missing_splits_are_errors(tmp_path):
    with pytest.raises(DataError, match="split 'train' is empty"):
        load_code_to_text(_c2t_folder(tmp_path, []))
    (tmp_path / "bad" / "test.jsonl").unlink()
    with pytest.raises(DataError, match="no test.jsonl"):
        load_code_to_text(tmp_path / "bad")
    with pytest.raises(DataError, match="no such file"):
        load_code_to_text(tmp_path / "nowhere")


def test_pooled_extra_data_may_be_a_folder_of_train_only(tmp_path):
    """Extra transfer data pools its splits, so a folder of only train.jsonl is usable (it was
    refused: "no valid.jsonl"); a folder holding no split at all is still refused."""
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(C2T / "train.jsonl", extra / "train.jsonl")
    assert data.pooled_code_to_text(extra) == data.pooled_code_to_text(C2T / "train.jsonl")
    assert len(data.code_search_pairs(extra)) == 2 * len(_records(C2T / "train.jsonl"))
    with pytest.raises(DataError, match="no valid.jsonl"):  # a task's own data needs every split
        load_code_to_text(extra)
    (extra / "train.jsonl").rename(extra / "notes.jsonl")
    with pytest.raises(DataError, match="no split files"):
        data.pooled_code_to_text(extra)


@pytest.mark.parametrize("gz", [False, True])
def test_jsonl_that_is_not_utf8_names_file_and_line(tmp_path, gz):
    folder = _c2t_folder(tmp_path, [])
    name = "train.jsonl.gz" if gz else "train.jsonl"
    (folder / "train.jsonl").unlink()
    raw = (json.dumps(GOOD) + "\n").encode() * 2 + b'{"code_tokens": ["\xff"]}\n'
    (folder / name).write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError, match=rf"{name}:3: not UTF-8 text"):
        load_code_to_text(folder)


def test_bad_gzip_is_a_data_error(tmp_path):
    folder = _c2t_folder(tmp_path, [GOOD])
    (folder / "train.jsonl").unlink()
    (folder / "train.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"train\.jsonl\.gz: cannot read"):
        load_code_to_text(folder)


def test_a_key_given_twice_in_a_record_is_named(tmp_path):
    folder = tmp_path / "devign"
    shutil.copytree(DEVIGN, folder)
    (folder / "valid.jsonl").write_text('{"func": "int f();", "target": 0}\n'
                                        '{"func": "int g();", "target": 0, "target": 1}\n')
    with pytest.raises(DataError, match=r"valid\.jsonl:2: key 'target' given twice in one object"):
        classification_splits(DataConfig(path=str(folder), task="defect"))


def test_a_code_to_text_file_named_data_jsonl_is_not_taken_for_clone_data(tmp_path, capsys):
    file = tmp_path / "data.jsonl"
    shutil.copy(C2T / "train.jsonl", file)
    assert data.detect_format(file) == "code-to-text"
    assert data.detect_format(BCB / "data.jsonl") == data.detect_format(BCB) == "clone"
    with pytest.raises(DataError, match=r"nonexist: no such file or folder"):
        classification_splits(DataConfig(path=str(tmp_path / "nonexist"), task="clone"))


def test_a_gzipped_clone_table_is_named(tmp_path):
    """`validate` and `data.task=clone` said "no train.jsonl, train.jsonl.gz or train/*.jsonl"."""
    import gzip

    folder = tmp_path / "bcb"
    shutil.copytree(BCB, folder)
    (folder / "data.jsonl.gz").write_bytes(gzip.compress((folder / "data.jsonl").read_bytes()))
    (folder / "data.jsonl").unlink()
    message = rf"{folder / 'data.jsonl.gz'}: clone data's data.jsonl is read uncompressed: gunzip it"
    with pytest.raises(DataError, match=message):
        data.detect_format(folder)
    with pytest.raises(DataError, match=message):
        classification_splits(DataConfig(path=str(folder), task="clone"))


def test_bad_defect_records(tmp_path):
    folder = tmp_path / "devign"
    shutil.copytree(DEVIGN, folder)
    for target in (2, True):  # a JSON true is not the label 1
        _write_jsonl(folder / "valid.jsonl", [{"func": "int f();", "target": target}])
        with pytest.raises(DataError, match=r"valid\.jsonl:1: field 'target' must be 0 or 1"):
            classification_splits(DataConfig(path=str(folder), task="defect"))
    _write_jsonl(folder / "valid.jsonl", [{"target": 1}])
    with pytest.raises(DataError, match=r"valid\.jsonl:1: missing field 'func'"):
        classification_splits(DataConfig(path=str(folder), task="defect"))


def test_defect_task_on_code_to_text_data_names_the_missing_field():
    with pytest.raises(DataError, match="missing field 'func'"):
        classification_splits(DataConfig(path=str(C2T), task="defect"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("101\t102", "expected 'idx1 idx2 label'"),
        ("101\t102\t2", "expected 'idx1 idx2 label'"),
        ("101\t999\t1", "idx .999. is not in data.jsonl"),
    ],
)
def test_bad_clone_lines(tmp_path, line, message):
    folder = tmp_path / "bcb"
    shutil.copytree(BCB, folder)
    (folder / "test.txt").write_text("104\t103\t1\n" + line + "\n")
    with pytest.raises(DataError, match=rf"test\.txt:2: {message}"):
        classification_splits(DataConfig(path=str(folder), task="clone"))


def test_clone_split_file_that_is_not_utf8_names_file_and_line(tmp_path, capsys):
    folder = tmp_path / "bcb"
    shutil.copytree(BCB, folder)
    (folder / "valid.txt").write_bytes(b"104\t103\t1\n\xff\xfe1\x000\x00\n")
    with pytest.raises(DataError, match=r"valid\.txt:2: not UTF-8 text"):
        classification_splits(DataConfig(path=str(folder), task="clone"))
    assert data.main(["validate", str(folder)]) == 2
    assert "valid.txt:2: not UTF-8 text" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"code_tokens": "abc", "docstring_tokens": ["b"]}, "field 'code_tokens' must be"),
        ({"func": "int f();", "target": 2}, "field 'target' must be 0 or 1"),
    ],
)
def test_a_bad_record_is_reported_before_an_empty_split(tmp_path, record, message):
    """One record cannot fill three splits; the record's own fault is the useful message."""
    path = _write_jsonl(tmp_path / "one.jsonl", [record])
    with pytest.raises(DataError, match=rf"one\.jsonl:1: {message}"):
        data.validate(path)


def test_config_is_validated():
    """Messages name the field; the job config prefixes its section once (`data.task: ...`)."""
    from ray_jobs.config import ConfigError, load_config

    for field, value, message in (("task", "translate", "unknown task 'translate'"),
                                  ("max_train", 0, "must be an integer >= 1"),
                                  ("labeled_fraction", 1.0, r"must be in \(0, 1\)")):
        with pytest.raises(ValueError, match=f"^{field}: {message}"):
            DataConfig(**{field: value})
        with pytest.raises(ConfigError, match=f"^data.{field}: {message}"):
            load_config(None, [f"data.{field}={value}"])


# ---------------------------------------------------------------- command line, fingerprint


def test_validate_cli_prints_counts(capsys):
    assert data.main(["validate", str(DEVIGN)]) == 0
    out = capsys.readouterr().out
    assert "defect" in out and "train\t4" in out and "test\t2" in out


def test_validate_cli_exits_2_with_one_line(tmp_path, capsys):
    folder = _c2t_folder(tmp_path, [GOOD, {"code_tokens": ["x"]}])
    assert data.main(["validate", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "train.jsonl:2: missing field 'docstring_tokens'" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: command"),
        (["validate"], "required: path"),
        (["check", "x"], "invalid choice: 'check'"),
        (["validate", "x", "--format", "csv"], "invalid choice: 'csv'"),
    ],
)
def test_validate_cli_usage_errors_are_one_line(argv, message, capsys):
    assert data.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "usage:" not in err


def test_fingerprint_follows_content_and_config(tmp_path):
    copy = tmp_path / "c2t"
    shutil.copytree(C2T, copy)
    cfg = DataConfig(path=str(copy))
    fp = data_fingerprint(cfg)
    assert fp == data_fingerprint(DataConfig(path=str(C2T)))  # same content elsewhere
    assert data_fingerprint(DataConfig(path=str(copy), seed=1)) != fp
    for cap in ("max_train", "max_eval"):  # a cap picks other pairs: the caches keyed by it change
        assert data_fingerprint(replace(cfg, **{cap: 2})) != fp
    swapped = tmp_path / "swapped"  # valid's records as test and test's as valid: other splits
    shutil.copytree(C2T, swapped)
    (swapped / "valid.jsonl").write_bytes((C2T / "test.jsonl").read_bytes())
    (swapped / "test.jsonl").write_bytes((C2T / "valid.jsonl").read_bytes())
    assert data_fingerprint(DataConfig(path=str(swapped))) != fp
    records = _records(copy / "test.jsonl")
    records[0]["docstring_tokens"] = ["changed", "summary", "here"]
    _write_jsonl(copy / "test.jsonl", records)
    assert data_fingerprint(cfg) != fp


def test_fingerprint_reads_split_folders_that_are_links_as_the_reader_does(tmp_path):
    """CodeSearchNet's layout with each split a symlink to a folder elsewhere: the reader
    follows the links, the fingerprint hashed no file (two data sets shared every cache)."""
    def linked(name, summary):
        store, data_set = tmp_path / f"{name}-store", tmp_path / name
        data_set.mkdir()
        for split in ("train", "valid", "test"):
            (store / split).mkdir(parents=True)
            records = _records(C2T / f"{split}.jsonl")
            records[0]["docstring_tokens"] = summary.split()
            _write_jsonl(store / split / "part0.jsonl", records)
            (data_set / split).symlink_to(store / split, target_is_directory=True)
        return data_set

    first, second = linked("first", "first summary here"), linked("second", "another summary here")
    assert code_to_text_splits(DataConfig(path=str(first)))["train"] != code_to_text_splits(DataConfig(path=str(second)))["train"]
    assert data_fingerprint(DataConfig(path=str(first))) != data_fingerprint(DataConfig(path=str(second)))
    # a link back up is not followed; a folder reached by two names is read, and hashed, under both
    (tmp_path / "first-store" / "train" / "loop").symlink_to(first, target_is_directory=True)
    (first / "again").symlink_to(tmp_path / "first-store" / "valid", target_is_directory=True)
    assert [f.relative_to(first).as_posix() for f in data._data_files(first)] == [
        "again/part0.jsonl", "test/part0.jsonl", "train/part0.jsonl", "valid/part0.jsonl"]


# ---------------------------------------------------------------- the shipped data set


def test_shipped_data_set_validates_with_licence_and_readme():
    root = default_data_path()
    counts = data.validate(root)
    assert counts["train"] > 4000 and counts["valid"] > 500 and counts["test"] > 500
    assert "Python Software Foundation" in (root / "LICENSE.txt").read_text()
    readme = (root / "README.md").read_text()
    assert "python -m training.harvest" in readme
    assert all(str(n) in readme for n in counts.values())
    assert data.main(["validate", str(root)]) == 0


def test_shipped_data_set_keeps_each_file_in_one_split():
    root = default_data_path()
    paths = {}
    for split in ("train", "valid", "test"):
        with gzip.open(root / f"{split}.jsonl.gz", "rt") as handle:
            for line in handle:
                paths.setdefault(json.loads(line)["path"], set()).add(split)
    assert all(len(splits) == 1 for splits in paths.values())


def test_code_search_needs_two_distinct_summaries_per_split(tmp_path):
    records = [
        _c2t_record("a.py", "def a ( ) : pass", "first function here"),
        _c2t_record("b.py", "def b ( ) : pass", "second function here"),
        _c2t_record("v.py", "def v ( ) : pass", "only valid function", "valid"),
        _c2t_record("t.py", "def t ( ) : pass", "test one", "test"),
        _c2t_record("u.py", "def u ( ) : pass", "test two", "test"),
    ]
    path = _write_jsonl(tmp_path / "one.jsonl", records)
    with pytest.raises(DataError, match="split 'valid' has too few distinct summaries"):
        classification_splits(DataConfig(path=str(path)))


def test_default_data_set_only_serves_code_search():
    with pytest.raises(DataError, match="task 'clone' needs data.path"):
        classification_splits(DataConfig(task="clone"))


def test_clone_fingerprint_covers_the_split_files_beside_data_jsonl(tmp_path):
    """data.path may name the clone set's data.jsonl; its train/valid/test.txt are read too,
    so editing one must change the fingerprint (it keys the teacher and eval caches)."""
    folder = tmp_path / "bcb"
    shutil.copytree(BCB, folder)
    by_file = DataConfig(path=str(folder / "data.jsonl"), task="clone")
    fp = data_fingerprint(by_file)
    assert fp == data_fingerprint(DataConfig(path=str(folder), task="clone"))
    test = folder / "test.txt"
    lines = test.read_text().splitlines()
    test.write_text("\n".join(lines[:-1]) + "\n")
    assert data_fingerprint(by_file) != fp


# ---------------------------------------------------------------- ambiguous or invalid input


@pytest.mark.parametrize("second", ["train.jsonl.gz", "train/part_0.jsonl"])
def test_a_split_held_twice_names_both_copies(tmp_path, second, capsys):
    """train.jsonl beside train.jsonl.gz (two harvests, with and without --no-gzip) or beside
    a train/ folder: reading one copy would silently drop the other."""
    folder = _c2t_folder(tmp_path, [GOOD])
    other = folder / second
    other.parent.mkdir(exist_ok=True)
    _write_jsonl(other, [GOOD, GOOD], gz=second.endswith(".gz"))
    shown = "train/ (1 jsonl files)" if "/" in second else second
    message = rf"bad: split 'train' is held more than once, by train\.jsonl and {re.escape(shown)}"
    for read in (load_code_to_text, data.validate, data.detect_format):
        with pytest.raises(DataError, match=message):
            read(folder)
    assert data.main(["validate", str(folder)]) == 2
    assert "train.jsonl and " in capsys.readouterr().err
    (folder / "train").mkdir(exist_ok=True)  # a folder without jsonl files holds no copy
    if "/" not in second:
        other.unlink()
        assert len(load_code_to_text(folder)["train"]) == 1


def test_a_split_folder_holding_a_file_and_its_gzip_is_refused(tmp_path):
    """`gunzip -k` leaves part_0.jsonl beside part_0.jsonl.gz: both were read, every record twice."""
    folder = _c2t_folder(tmp_path, [GOOD])
    (folder / "train.jsonl").unlink()
    (folder / "train").mkdir()
    _write_jsonl(folder / "train" / "part_0.jsonl", [GOOD, GOOD])
    _write_jsonl(folder / "train" / "part_1.jsonl.gz", [GOOD], gz=True)
    assert len(load_code_to_text(folder)["train"]) == 3  # distinct files are read, each once
    _write_jsonl(folder / "train" / "part_0.jsonl.gz", [GOOD, GOOD], gz=True)
    with pytest.raises(DataError, match=r"part_0\.jsonl\.gz and part_0\.jsonl hold one file twice"):
        load_code_to_text(folder)


def test_a_repeated_defect_idx_names_both_lines(tmp_path):
    """CodeXGLUE's ids are unique: a repeat across splits is a test function also trained on."""
    folder = tmp_path / "devign"
    shutil.copytree(DEVIGN, folder)
    first = _records(DEVIGN / "train.jsonl")[0]
    test = _records(DEVIGN / "test.jsonl")
    _write_jsonl(folder / "test.jsonl", test + [{**first, "target": 1 - first["target"]}])
    with pytest.raises(DataError, match=rf"test\.jsonl:{len(test) + 1}: idx {first['idx']} repeats .*train\.jsonl:1"):
        classification_splits(DataConfig(path=str(folder), task="defect"))


@pytest.mark.parametrize("value", ["dev", "validation", "Test", "", 1])
def test_an_unknown_partition_is_refused_with_its_line(tmp_path, value):
    records = [r for s in ("train", "valid", "test") for r in _records(C2T / f"{s}.jsonl")]
    records[3] = {**records[3], "partition": value}
    path = _write_jsonl(tmp_path / "all.jsonl", records)
    message = rf"all\.jsonl:4: field 'partition' is {re.escape(repr(value))}; expected one of train, valid, test"
    with pytest.raises(DataError, match=message):
        load_code_to_text(path)
    devign = [{"func": f"int f{i}();", "target": i % 2, "partition": "dev" if i == 1 else "train"}
              for i in range(3)]
    with pytest.raises(DataError, match=r"one\.jsonl:2: field 'partition' is 'dev'"):
        data.validate(_write_jsonl(tmp_path / "one.jsonl", devign), "defect")


def test_the_hash_split_is_80_10_10():
    keys = [f"project/module_{i}.py" for i in range(20_000)]
    shares = {s: sum(data.hash_split(k) == s for k in keys) / len(keys) for s in ("train", "valid", "test")}
    assert shares == {"train": pytest.approx(0.8, abs=0.01), "valid": pytest.approx(0.1, abs=0.01),
                      "test": pytest.approx(0.1, abs=0.01)}


def test_a_missing_or_null_partition_still_splits_by_hash(tmp_path):
    records = [{"path": f"m{i}.py", "code_tokens": ["def", f"f{i}"], "docstring_tokens": ["do", str(i)]}
               for i in range(40)]
    records[0]["partition"] = None
    splits = load_code_to_text(_write_jsonl(tmp_path / "all.jsonl", records))
    expected = {s: [i for i in range(40) if data.hash_split(f"m{i}.py") == s] for s in splits}
    assert {s: [int(p.source.split()[1][1:]) for p in v] for s, v in splits.items()} == expected


LONE = json.loads('"\\ud800"')  # JSON allows it; UTF-8 cannot hold it; tokenizers raise TypeError


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"code_tokens": ["def", "f" + LONE], "docstring_tokens": ["y"]}, "code_tokens"),
        ({"code_tokens": ["x"], "docstring_tokens": [LONE]}, "docstring_tokens"),
        ({**GOOD, "path": "a" + LONE + ".py"}, "path"),
        ({**GOOD, "url": "http://x/" + LONE}, "url"),
    ],
)
def test_code_to_text_text_with_a_lone_surrogate_is_refused(tmp_path, record, field):
    folder = _c2t_folder(tmp_path, [GOOD, record])
    with pytest.raises(DataError, match=rf"train\.jsonl:2: field '{field}' holds invalid Unicode"):
        load_code_to_text(folder)
    single = _write_jsonl(tmp_path / "one.jsonl", [{k: v for k, v in record.items() if k != "partition"}])
    with pytest.raises(DataError, match=rf"one\.jsonl:1: field '{field}' holds invalid Unicode"):
        data.validate(single, "code-to-text")


def test_defect_and_clone_text_with_a_lone_surrogate_is_refused(tmp_path):
    folder = tmp_path / "devign"
    shutil.copytree(DEVIGN, folder)
    _write_jsonl(folder / "valid.jsonl", [{"func": "int f();", "target": 1},
                                          {"func": "int g() { return '" + LONE + "'; }", "target": 0}])
    with pytest.raises(DataError, match=r"valid\.jsonl:2: field 'func' holds invalid Unicode"):
        classification_splits(DataConfig(path=str(folder), task="defect"))
    single = _write_jsonl(tmp_path / "one.jsonl", [{"func": "int f();", "target": 1, "idx": LONE}])
    with pytest.raises(DataError, match=r"one\.jsonl:1: field 'idx' holds invalid Unicode"):
        data.validate(single, "defect")
    bcb = tmp_path / "bcb"
    shutil.copytree(BCB, bcb)
    with open(bcb / "data.jsonl", "a") as handle:
        handle.write(json.dumps({"idx": "900", "func": "void f() {" + LONE + "}"}) + "\n")
    n = len((bcb / "data.jsonl").read_text().splitlines())
    with pytest.raises(DataError, match=rf"data\.jsonl:{n}: field 'func' holds invalid Unicode"):
        classification_splits(DataConfig(path=str(bcb), task="clone"))


@pytest.mark.parametrize("repeat", ["102", 102])
def test_a_repeated_clone_idx_names_both_lines(tmp_path, repeat, capsys):
    folder = tmp_path / "bcb"
    shutil.copytree(BCB, folder)
    lines = (folder / "data.jsonl").read_text().splitlines()
    first = next(i for i, line in enumerate(lines, 1) if str(json.loads(line)["idx"]) == "102")
    lines.append(json.dumps({"idx": repeat, "func": "void other() {}"}))
    (folder / "data.jsonl").write_text("\n".join(lines) + "\n")
    message = rf"data\.jsonl:{len(lines)}: idx 102 repeats line {first}"
    with pytest.raises(DataError, match=message):
        classification_splits(DataConfig(path=str(folder), task="clone"))
    assert data.main(["validate", str(folder)]) == 2
    assert f"idx 102 repeats line {first}" in capsys.readouterr().err


@pytest.mark.parametrize("empty_key", [None, ""])
def test_records_with_a_null_or_empty_key_split_by_line_not_all_into_one(tmp_path, empty_key):
    records = [{"path": empty_key, "code_tokens": ["def", f"f{i}"], "docstring_tokens": ["do", str(i)]}
               for i in range(40)]
    splits = load_code_to_text(_write_jsonl(tmp_path / "all.jsonl", records))
    expected = {s: [i for i in range(40) if data.hash_split(str(i + 1)) == s] for s in splits}
    assert {s: [int(p.source.split()[1][1:]) for p in v] for s, v in splits.items()} == expected
    assert all(expected.values())  # before: one hash of "None" (or "") for all 40


def test_a_bom_and_a_lone_carriage_return_are_read_as_whitespace(tmp_path):
    """Editors on Windows write a BOM; a raw \\r between JSON tokens is JSON whitespace, not a
    line break (universal newlines cut the record there)."""
    folder = tmp_path / "bcb"
    shutil.copytree(BCB, folder)
    train = folder / "train.txt"
    train.write_bytes(b"\xef\xbb\xbf" + train.read_bytes())
    assert classification_splits(DataConfig(path=str(folder), task="clone")) == \
        classification_splits(DataConfig(path=str(BCB), task="clone"))
    lines = [json.dumps(r) for r in _records(C2T / "train.jsonl")]
    crlf = tmp_path / "c2t"
    shutil.copytree(C2T, crlf)
    (crlf / "train.jsonl").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(
        line.replace(', "', ',\r "', 1) for line in lines).encode() + b"\r\n")
    assert load_code_to_text(crlf) == load_code_to_text(C2T)


def test_detect_format_reads_past_an_empty_first_file(tmp_path):
    shutil.copytree(C2T, tmp_path / "c2t")
    (tmp_path / "c2t" / "train").mkdir()
    (tmp_path / "c2t" / "train.jsonl").rename(tmp_path / "c2t" / "train" / "b.jsonl")
    (tmp_path / "c2t" / "train" / "a.jsonl").write_text("")
    assert data.detect_format(tmp_path / "c2t") == "code-to-text"


def test_a_record_without_a_path_splits_by_its_url_as_it_is_grouped(tmp_path):
    """With `path` null, a file's functions stay in one split: the url that groups them for
    same-file negatives decides it, as `path` would."""
    records = [{"path": None, "url": f"https://x/m{i // 2}.py", "code_tokens": ["def", f"f{i}"],
                "docstring_tokens": ["do", str(i)]} for i in range(80)]
    splits = load_code_to_text(_write_jsonl(tmp_path / "all.jsonl", records))
    for s, pairs in splits.items():
        assert all(data.hash_split(f"https://x/m{int(p.source.split()[1][1:]) // 2}.py") == s for p in pairs)


# ---------------------------------------------------------------- audit: repeats, leaks, label clashes


def _devign_audit_folder(tmp_path: Path) -> Path:
    base = _records(DEVIGN / "train.jsonl")
    f0, f1, f2 = (r["func"] for r in base[:3])
    rec = lambda i, func, target: {"project": "qemu", "commit_id": "0", "target": target, "func": func, "idx": i}  # noqa: E731
    folder = tmp_path / "devign"
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", [rec(0, f0, 1), rec(1, f1, 0), rec(2, "  " + f0.replace(" ", "\n  "), 1),
                                          rec(7, f1, 0)])
    _write_jsonl(folder / "valid.jsonl", [rec(3, f2, 1), rec(4, f1, 0)])  # line 2: train's lines 2 and 4
    _write_jsonl(folder / "test.jsonl", [rec(5, f2 + " ", 0), rec(6, f1 + ";", 1), rec(8, f2, 0)])  # valid's, relabelled
    return folder


def test_audit_counts_repeats_train_inputs_and_label_clashes_with_their_lines(tmp_path):
    folder = _devign_audit_folder(tmp_path)
    found = data.audit(folder)
    assert found.counts == {"train": 4, "valid": 2, "test": 3} == data.validate(folder)
    # train's line 3 is line 1 reformatted: whitespace does not make a function new
    assert found.repeated == {"train": data.Finding(2, (f"{folder}/train.jsonl:3", f"{folder}/train.jsonl:1")),
                              "valid": data.Finding(0),
                              "test": data.Finding(1, (f"{folder}/test.jsonl:3", f"{folder}/test.jsonl:1"))}
    assert found.in_train == {"valid": data.Finding(1, (f"{folder}/valid.jsonl:2", f"{folder}/train.jsonl:2")),
                              "test": data.Finding(0)}  # test's line 2 differs by a ';'
    assert found.both_labels == data.Finding(1, (f"{folder}/test.jsonl:1", f"{folder}/valid.jsonl:1"))
    assert found.summaries_in_train is None and found.inputs == "functions"


def test_audit_takes_a_clone_pair_in_either_order(tmp_path):
    folder = shutil.copytree(BCB, tmp_path / "bcb")
    found = data.audit(folder)
    # valid's "102 101" is train's "101 102", test's "104 103" train's "103 104"
    assert found.in_train == {"valid": data.Finding(1, (f"{folder}/valid.txt:1", f"{folder}/train.txt:1")),
                              "test": data.Finding(1, (f"{folder}/test.txt:1", f"{folder}/train.txt:2"))}
    assert found.both_labels == data.Finding(0) and found.inputs == "pairs"
    (folder / "test.txt").write_text("104\t103\t1\n105\t101\t1\n106\t102\t0\n")  # train says 101 105 0
    found = data.audit(folder)
    assert found.both_labels == data.Finding(1, (f"{folder}/test.txt:2", f"{folder}/train.txt:3"))
    assert found.repeated["test"] == data.Finding(0)
    (folder / "train.txt").write_text((folder / "train.txt").read_text() + "102 101 1\n")
    assert data.audit(folder).repeated["train"] == data.Finding(1, (f"{folder}/train.txt:5", f"{folder}/train.txt:1"))


def test_audit_of_code_to_text_counts_functions_and_verbatim_summaries(tmp_path):
    folder = tmp_path / "c2t"
    folder.mkdir()
    pair = lambda code, doc: {"code_tokens": code.split(), "docstring_tokens": doc.split()}  # noqa: E731
    _write_jsonl(folder / "train.jsonl", [pair("def f ( ) : pass", "Do f."), pair("def g ( ) : pass", "Do g.")])
    _write_jsonl(folder / "valid.jsonl", [pair("def h ( ) : pass", "Do g."), pair("def f ( ) : pass", "Other.")])
    _write_jsonl(folder / "test.jsonl", [pair("def k ( ) : pass", "Do k.")])
    found = data.audit(folder)
    assert found.in_train == {"valid": data.Finding(1, (f"{folder}/valid.jsonl:2", f"{folder}/train.jsonl:1")),
                              "test": data.Finding(0)}
    assert found.summaries_in_train == {
        "valid": data.Finding(1, (f"{folder}/valid.jsonl:1", f"{folder}/train.jsonl:2")), "test": data.Finding(0)}
    assert found.both_labels is None


def test_validate_cli_prints_the_audit(tmp_path, capsys):
    folder = _devign_audit_folder(tmp_path)
    assert data.main(["validate", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:4] == ["train\t4", "valid\t2", "test\t3"]
    assert lines[4:] == [
        f"functions repeated in their split: train 2, valid 0, test 1 (first: {folder}/train.jsonl:3 repeats "
        f"{folder}/train.jsonl:1)",
        f"functions train also has: valid 1, test 0 (first: {folder}/valid.jsonl:2 is {folder}/train.jsonl:2)",
        f"functions labelled both 0 and 1: 1 (first: {folder}/test.jsonl:1 against {folder}/valid.jsonl:1)",
    ]
