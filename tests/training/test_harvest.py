"""training/harvest.py on a small source tree written by the test."""

import gzip
import json
import shutil
import textwrap
from pathlib import Path

import pytest

from training import data, harvest
from training.data import hash_split

MAIN = '''\
"""Module docstring."""
import functools


def top(x):
    """Add one to a number. More detail follows here."""
    # a comment that is not a token
    y = x + 1
    return y


class Box:
    """A box."""

    def put(self, item):
        """Store an item in the box.

        Long description.
        """
        self.item = item
        return self

    @functools.lru_cache(maxsize=None)
    def cached(self, key):
        """Look up a key with a cache."""
        value = key * 2
        return value

    async def fetch(self, url):
        """Fetch something from somewhere asynchronously."""
        await url.wait()
        return url


def outer(a):
    """Build an inner helper function."""
    def inner(b):
        """Multiply both numbers together."""
        c = a * b
        return c
    return inner


def no_doc(a):
    b = a
    return b


def one_word(a):
    """Compute."""
    b = a
    return b


def with_url(a):
    """See https://example.com for the details."""
    b = a
    return b


def test_something(a):
    """Check that something works well."""
    assert a
    return a


def test_nested(a):
    """Check a value with a helper."""
    def check(value):
        """Assert that the value is a true one."""
        assert value
        return value
    return check(a)


class TestResult:
    """Library code with a Test name, as unittest.TestResult."""

    def add_error(self, error):
        """Record an error in the result."""
        self.errors.append(error)
        return self


def only_doc():
    """This function has a docstring only."""


def short(a): "Return the argument unchanged."; return a
'''

DUPLICATE = '''\
def top(x):
    """Add one to a number, again."""
    # the same code as main.top: kept once
    y = x + 1
    return y


def _top(x):
    """Add one to a number, under another name."""
    # the same code as main.top but for its name: kept once too
    y = x + 1
    return y


def ln(a):
    """Take the natural logarithm of a number."""
    b = a
    return b.ln()


def exp(a):
    """Take the exponential of a number."""
    b = a
    return b.exp()
'''

FILLER = '''\
def helper_{n}(value):
    """Return the value plus {n} for module {n}."""
    result = value + {n}
    return result
'''


def _name_in(split: str, stem: str) -> str:
    """A file name whose path hashes into ``split``."""
    return next(f"{stem}{i}.py" for i in range(1000) if hash_split(f"{stem}{i}.py") == split)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "pkg" / "tests").mkdir(parents=True)
    (src / "pkg" / "idle_test").mkdir()
    (src / "pkg" / "main.py").write_text(MAIN)
    (src / "pkg" / "zdup.py").write_text(DUPLICATE)
    (src / "pkg" / "tests" / "test_main.py").write_text(FILLER.format(n=99))
    (src / "pkg" / "test_util.py").write_text(FILLER.format(n=97))  # a test module outside test folders
    (src / "pkg" / "idle_test" / "helpers.py").write_text(FILLER.format(n=98))
    (src / "broken.py").write_text("def broken(:\n")
    for n, split in enumerate(("train", "valid", "test")):
        (src / _name_in(split, "mod")).write_text(FILLER.format(n=n))
    return src


def _by_name(records: dict) -> dict:
    return {r["func_name"]: r for recs in records.values() for r in recs}


def test_harvest_keeps_methods_nested_decorated_async(tree):
    splits, stats = harvest.harvest(tree)
    by_name = _by_name(splits)
    main = {k for k, r in by_name.items() if r["path"] == "pkg/main.py"}
    assert main == {"top", "Box.put", "Box.cached", "Box.fetch", "outer", "outer.inner", "TestResult.add_error"}
    assert by_name["Box.cached"]["code"].startswith(
        "@functools.lru_cache(maxsize=None)\ndef cached"
    )
    assert by_name["Box.fetch"]["code"].startswith("async def fetch(self, url):")
    assert stats.unparsable == 1
    assert stats.dropped["duplicate code"] == 2  # zdup.top, and zdup._top: main.top renamed
    # names are not masked whole: two delegating wrappers that differ only in their name stay
    assert {k for k, r in by_name.items() if r["path"] == "pkg/zdup.py"} == {"ln", "exp"}
    assert stats.dropped["test function"] == 3  # test_something, test_nested and its helper
    assert {"no docstring", "short summary", "url in summary", "test function"} <= set(
        stats.dropped
    )


def test_harvest_skips_test_folders_and_paths_are_relative(tree):
    paths = {r["path"] for recs in harvest.harvest(tree)[0].values() for r in recs}
    assert "pkg/main.py" in paths
    assert not any("tests/" in p or "idle_test/" in p for p in paths)
    assert "pkg/test_util.py" not in paths
    assert not any(p.startswith("/") for p in paths)


def test_record_fields_follow_codexglue(tree):
    rec = _by_name(harvest.harvest(tree, repo="me/src", url_base="https://x/")[0])["top"]
    assert list(rec) == [
        "repo",
        "path",
        "func_name",
        "original_string",
        "language",
        "code",
        "code_tokens",
        "docstring",
        "docstring_tokens",
        "url",
        "partition",
    ]
    assert rec["repo"] == "me/src" and rec["language"] == "python"
    assert rec["url"] == "https://x/pkg/main.py#L5-L9"
    assert '"""Add one' in rec["original_string"]
    assert (
        rec["code"]
        == "def top(x):\n    # a comment that is not a token\n    y = x + 1\n    return y\n"
    )
    assert rec["code_tokens"] == [
        "def",
        "top",
        "(",
        "x",
        ")",
        ":",
        "y",
        "=",
        "x",
        "+",
        "1",
        "return",
        "y",
    ]
    assert rec["docstring"].startswith("Add one to a number. More detail")
    assert rec["docstring_tokens"] == ["Add", "one", "to", "a", "number", "."]
    assert rec["partition"] == hash_split("pkg/main.py")


def test_method_is_dedented_and_summary_is_first_sentence(tree):
    rec = _by_name(harvest.harvest(tree)[0])["Box.put"]
    assert rec["code"] == "def put(self, item):\n    self.item = item\n    return self\n"
    assert rec["docstring_tokens"] == ["Store", "an", "item", "in", "the", "box", "."]
    inner = _by_name(harvest.harvest(tree)[0])["outer.inner"]
    assert inner["code"].startswith("def inner(b):\n    c = a * b")


def test_split_is_by_file_and_deterministic(tree):
    splits, _ = harvest.harvest(tree)
    assert all(splits[s] for s in harvest.SPLITS)
    for split, records in splits.items():
        assert all(r["partition"] == split == hash_split(r["path"]) for r in records)
    buckets = [hash_split(f"file{i}.py") for i in range(2000)]
    assert 0.75 < buckets.count("train") / 2000 < 0.85
    assert 0.07 < buckets.count("valid") / 2000 < 0.13 and 0.07 < buckets.count("test") / 2000 < 0.13


def test_first_sentence_and_tokens():
    assert harvest.first_sentence("Do x, e.g. y. Then z.") == "Do x, e.g. y."
    assert (
        harvest.first_sentence("Line one\n  continues here.\n\nOther") == "Line one continues here."
    )
    assert harvest.docstring_tokens("Return self.x (or None).") == [
        "Return",
        "self",
        ".",
        "x",
        "(",
        "or",
        "None",
        ")",
        ".",
    ]
    code = "def f(a):  # note\n    return a\n"
    assert harvest.code_tokens(code) == ["def", "f", "(", "a", ")", ":", "return", "a"]


def test_cli_writes_gzipped_splits_that_validate(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert harvest.main([str(tree), "--out", str(out)]) == 0
    assert "kept=" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "test.jsonl.gz",
        "train.jsonl.gz",
        "valid.jsonl.gz",
    ]
    counts = data.validate(out)
    splits, _ = harvest.harvest(tree)
    assert counts == {s: len(r) for s, r in splits.items()}
    first = json.loads(gzip.open(out / "train.jsonl.gz", "rt").readline())
    assert first["repo"] == "src"
    again = tmp_path / "again"
    harvest.main([str(tree), "--out", str(again)])
    assert all(
        (out / n).read_bytes() == (again / n).read_bytes()
        for n in ("train.jsonl.gz", "test.jsonl.gz")
    )


def test_cli_refuses_a_tree_with_an_empty_split(tmp_path, capsys):
    src = tmp_path / "one"
    src.mkdir()
    (src / _name_in("train", "m")).write_text(textwrap.dedent(FILLER.format(n=1)))
    assert harvest.main([str(src), "--out", str(tmp_path / "o" / "deeper")]) == 2
    err = capsys.readouterr().err
    assert "no pairs in split(s) valid, test" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()  # the --out check leaves no folder behind
    assert harvest.main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "missing: not a folder" in capsys.readouterr().err


def test_cli_harvests_an_installed_package_by_name(tree, tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    shutil.copytree(tree, site / "harvpkg")
    (site / "harvpkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    assert harvest.package_folder("harvpkg") == site / "harvpkg"
    assert harvest.main(["harvpkg", "--package", "--out", str(tmp_path / "by-name")]) == 0
    assert harvest.main([str(site / "harvpkg"), "--out", str(tmp_path / "by-path")]) == 0
    assert all((tmp_path / "by-name" / n).read_bytes() == (tmp_path / "by-path" / n).read_bytes()
               for n in ("train.jsonl.gz", "valid.jsonl.gz", "test.jsonl.gz"))
    capsys.readouterr()
    assert harvest.main(["no_such_package", "--package", "--out", str(tmp_path / "o")]) == 2
    assert "no_such_package: not an installed package" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["afile", "afile/sub"])
def test_cli_refuses_an_unusable_out_before_harvesting(tree, tmp_path, monkeypatch, capsys, out):
    (tmp_path / "afile").write_text("")

    def no_harvest(*args, **kwargs):
        raise AssertionError("harvested before checking --out")

    monkeypatch.setattr(harvest, "harvest", no_harvest)
    assert harvest.main([str(tree), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / out}: " in err and err.count("\n") == 1
    assert harvest.main(["--package", "json", "--out", str(tmp_path / out)]) == 2


@pytest.mark.parametrize("argv, named", [(["", "--out", "o"], "SRC"), (["--package", " ", "--out", "o"], "SRC"),
                                         (["TREE", "--out", ""], "--out")])
def test_an_empty_src_or_out_is_refused_not_read_as_the_current_folder(tree, tmp_path, monkeypatch, capsys,
                                                                        argv, named):
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)  # `Path("")` is here: it harvested or wrote the current folder
    assert harvest.main([str(tree) if a == "TREE" else a for a in argv]) == 2
    assert capsys.readouterr().err.endswith(f"error: {named}: must not be empty\n")
    assert list(here.iterdir()) == []


def test_an_out_through_a_new_folder_and_dotdot_is_harvested_and_leaves_no_folder(tree, tmp_path, monkeypatch,
                                                                                  capsys):
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    assert harvest.main([str(tree), "--out", "new/../out"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in here.iterdir()) == ["out"]  # `new` made by the check, removed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: src, --out"),
        (["src"], "required: --out"),
        (["s", "--out", "o", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_cli_usage_errors_are_one_line(argv, message, capsys):
    assert harvest.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "usage:" not in err


@pytest.mark.parametrize("first", [["--no-gzip"], []])
def test_a_second_harvest_in_the_other_format_replaces_the_first(tree, tmp_path, first, capsys):
    """harvest A --no-gzip, then harvest B (gzipped) into the same --out: the folder must hold
    B only, not A's train.jsonl beside B's train.jsonl.gz (a split held twice)."""
    other = tmp_path / "other"
    shutil.copytree(tree, other)
    (other / _name_in("train", "extra")).write_text(FILLER.format(n=7))
    out = tmp_path / "out"
    assert harvest.main([str(tree), "--out", str(out), *first]) == 0
    second = [] if first else ["--no-gzip"]
    assert harvest.main([str(other), "--out", str(out), *second]) == 0
    suffix = ".jsonl" if second else ".jsonl.gz"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}{suffix}" for s in harvest.SPLITS)
    splits, _ = harvest.harvest(other)
    assert data.validate(out) == {s: len(r) for s, r in splits.items()}
    capsys.readouterr()


def test_cli_refuses_an_out_that_holds_a_split_folder(tree, tmp_path, monkeypatch, capsys):
    out = tmp_path / "csn"
    (out / "valid").mkdir(parents=True)
    (out / "valid" / "python_valid_0.jsonl.gz").write_bytes(b"")

    def no_harvest(*args, **kwargs):
        raise AssertionError("harvested before checking --out")

    monkeypatch.setattr(harvest, "harvest", no_harvest)
    assert harvest.main([str(tree), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: holds split 'valid' as the folder" in err and err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["valid"]


def test_a_lone_surrogate_is_dropped_and_a_deep_expression_does_not_stop_the_harvest(tree):
    """A docstring's "\\ud800" escape decodes to a lone surrogate, which no UTF-8 jsonl can
    hold; generated code can nest deeper than Python's recursion limit (ast's visitors recurse)."""
    (tree / _name_in("train", "surrogate")).write_text(
        'def odd(x):\n    """Return the \\ud800 value of x here."""\n    y = x\n    return y\n'
    )
    (tree / _name_in("train", "generated")).write_text(
        "TABLE = " + " + ".join(["x"] * 1200) + "\n\n" + FILLER.format(n=5)
    )
    before = harvest.harvest(tree)[1].unparsable
    (tree / _name_in("train", "toodeep")).write_text("TABLE = " + " + ".join(["x"] * 20_000) + "\n")
    splits, stats = harvest.harvest(tree)
    names = _by_name(splits)
    assert "odd" not in names and stats.dropped["not UTF-8"] == 1
    assert "helper_5" in names  # the function after the 1,200-term sum
    assert stats.unparsable == before + 1  # 20,000 terms: ast.parse's own RecursionError, counted


def test_a_failed_write_leaves_the_earlier_harvest_whole(tree, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert harvest.main([str(tree), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tree / _name_in("train", "more")).write_text(FILLER.format(n=8))
    write = harvest._write_jsonl
    calls = []

    def disk_full_on_the_second(records, path, gzipped):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        write(records, path, gzipped)

    monkeypatch.setattr(harvest, "_write_jsonl", disk_full_on_the_second)
    capsys.readouterr()
    assert harvest.main([str(tree), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot write the splits (No space left on device)" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no staging file left either


def test_no_split_is_replaced_until_all_three_are_on_disk(tree, tmp_path, monkeypatch, capsys):
    """A flush that fails on the last split (an I/O error) leaves the earlier harvest's three
    splits, not a new train beside an old valid and test."""
    import os

    out = tmp_path / "out"
    assert harvest.main([str(tree), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tree / _name_in("train", "more")).write_text(FILLER.format(n=8))
    fsync = os.fsync

    def failing_on_the_test_split(fd):
        if ".test.jsonl" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(5, "Input/output error")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_on_the_test_split)
    capsys.readouterr()
    assert harvest.main([str(tree), "--out", str(out)]) == 2
    assert "Input/output error" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no staging file left either
