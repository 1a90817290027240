"""`python -m search` run as users run it: in a subprocess."""

import json
import os
import subprocess
import sys

import pytest

KEYS_ORDER = [
    "layers",
    "hidden",
    "heads",
    "ffn",
    "vocab",
    "params",
    "size_mb",
    "gflops",
    "flops_matmul",
    "fitness",
]
KEYS = set(KEYS_ORDER)


def _run(*args, timeout=120):
    env = os.environ | {"PYTHONHASHSEED": "0"}
    return subprocess.run(
        [sys.executable, "-m", "search", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_table_output():
    out = _run(
        "--teacher",
        "codebert-base",
        "--target-mb",
        "3",
        "--seq-len",
        "400",
        "--top-k",
        "5",
        "--seed",
        "0",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert "codebert-base" in lines[0] and "target 3.0 MB" in lines[0]
    assert lines[1].split() == ["#", *KEYS_ORDER]
    assert len(lines) == 2 + 5
    assert lines[2].split()[1:6] == ["12", "96", "8", "64", "1000"]


def test_json_ga_matches_exhaustive():
    common = [
        "--teacher",
        "minilm-l6",
        "--target-mb",
        "10",
        "--seq-len",
        "128",
        "--top-k",
        "3",
        "--json",
    ]
    ga = json.loads(_run(*common, "--seed", "3").stdout)
    ex = json.loads(_run(*common, "--exhaustive").stdout)
    for result in (ga, ex):
        assert set(result) == {"seconds", "candidates"} and result["seconds"] >= 0
        assert len(result["candidates"]) == 3 and all(set(c) == KEYS | {"head"} for c in result["candidates"])
    assert ga["candidates"][0]["fitness"] == pytest.approx(ex["candidates"][0]["fitness"])
    capped = json.loads(_run(*common, "--max-mb", "10", "--variant", "paper", "--seed", "1").stdout)
    assert all(c["size_mb"] <= 10 for c in capped["candidates"])
    wide = json.loads(_run(*common, "--min-head-size", "32", "--seed", "3").stdout)
    assert all(c["hidden"] // c["heads"] >= 32 for c in wide["candidates"])
    assert wide["candidates"][0]["fitness"] < ga["candidates"][0]["fitness"]
    cosine = json.loads(_run(*common, "--head", "pair_cosine", "--exhaustive").stdout)
    assert {c["head"] for c in cosine["candidates"]} == {"pair_cosine"}
    assert {c["head"] for c in ex["candidates"]} == {"sequence"}


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--target-mb", "0"], "--target-mb"),
        (["--target-mb", "-2"], "--target-mb"),
        (["--target-mb", "three"], "--target-mb"),
        (["--target-mb", "0.05", "--max-mb", "0.05"], "smallest"),
        (["--teacher", "no-such-model"], "no-such-model"),
        (["--teacher", "/nonexistent/dir/config.json"], "/nonexistent/dir/config.json"),
        (["--variant", "fast"], "--variant"),
        (["--min-head-size", "0"], "--min-head-size"),
        (["--min-head-size", "5000"], "min_head_size"),
        (["--head", "pooler"], "--head"),
        (["--target-mb", "0.001"], "below the smallest architecture"),
        (["--target-mb", "inf"], "--target-mb"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle):
    out = _run(*args)
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr


def test_bench_prints_its_figures():
    out = _run("bench", "--teacher", "minilm-l6", "--seeds", "2", "--runs", "1")
    assert out.returncode == 0, out.stderr
    assert "exhaustive: median" in out.stdout
    for variant in ("paper", "default"):
        assert f"GA {variant}: median" in out.stdout
    assert out.stdout.count("optimum on") == 6
