"""`python -m search` run as users run it: in a subprocess."""

import json
import os
import subprocess
import sys

import pytest

import search.__main__ as cli

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


def _with(args: list[str], option: str, value: str) -> list[str]:
    """`args` with `option`'s value replaced (an option may be given once)."""
    i = args.index(option)
    return [*args[:i + 1], value, *args[i + 2:]]


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
    assert [line.split()[0] for line in lines[2:]] == ["1", "2", "3", "4", "5"]  # ranks counted from 1


def test_the_seed_makes_a_ga_run_repeatable_and_another_seed_another_run():
    def candidates(seed):
        out = _run("--teacher", "codebert-base", "--variant", "paper", "--seed", seed, "--json")
        return json.loads(out.stdout)["candidates"]

    assert candidates("1") == candidates("1") != candidates("2")  # the paper variant stops short of the optimum


def test_max_layers_keeps_every_candidate_within_it():
    common = ["--teacher", "minilm-l6", "--target-mb", "3", "--seq-len", "64", "--top-k", "4", "--json"]
    free = json.loads(_run(*common, "--exhaustive").stdout)["candidates"]
    assert max(c["layers"] for c in free) > 1  # the fitness prefers deeper students when free
    for how in (["--exhaustive"], ["--seed", "0"]):
        capped = json.loads(_run(*common, "--max-layers", "1", *how).stdout)["candidates"]
        assert len(capped) == 4 and {c["layers"] for c in capped} == {1}
    out = _run("--teacher", "minilm-l6", "--max-layers", "2", "--exhaustive", "--top-k", "1")
    assert "at most 2 layers" in out.stdout.splitlines()[0]


def test_a_latency_budget_keeps_every_candidate_predicted_within_it(tmp_path):
    from search import latency

    model = latency.LatencyModel(1.0, 1.0, 0.0, seq_len=64, pair=True, threads=1)  # 1 ms + 1 ms a layer
    path = latency.save(model, tmp_path / "latency.json")
    common = ["--teacher", "minilm-l6", "--target-mb", "3", "--seq-len", "64", "--top-k", "4",
              "--head", "pair_cosine", "--latency-model", str(path)]
    for how in (["--exhaustive"], ["--seed", "0"]):
        rows = json.loads(_run(*common, "--max-ms", "2.5", "--json", *how).stdout)["candidates"]
        assert len(rows) == 4 and {c["layers"] for c in rows} == {1} and {c["predicted_ms"] for c in rows} == {2.0}
    out = _run(*common, "--exhaustive")
    lines = out.stdout.splitlines()
    assert lines[1].startswith(f"latency model {path}: 1.000 ms + 1.000 ms/layer")
    assert lines[2].split() == ["#", *KEYS_ORDER, "predicted_ms"]
    assert float(lines[3].split()[-1]) == 1 + int(lines[3].split()[1])
    for bad, message in ((["--max-ms", "1.5"], "below the fastest architecture"),
                         (["--head", "sequence"], "fitted on pairs encoded separately"),
                         (["--latency-model", str(tmp_path / "none.json")], "no such latency model file")):
        out = _run(*(_with(common, *bad) if bad[0] in common else [*common, *bad]))
        assert out.returncode == 2 and message in out.stderr and len(out.stderr.splitlines()) == 1
    out = _run("--teacher", "minilm-l6", "--seq-len", "64", "--max-ms", "3")
    assert out.returncode == 2 and "max_ms: needs a latency model" in out.stderr


def test_pareto_prints_the_front_with_predicted_ms(tmp_path):
    from search import latency

    path = latency.save(latency.LatencyModel(0.5, 0.6, 25.0, seq_len=64, pair=True), tmp_path / "latency.json")
    common = ["--teacher", "minilm-l6", "--seq-len", "64", "--head", "pair_cosine", "--max-mb", "3", "--pareto",
              "--seed", "0", "--generations", "20", "--population", "30"]
    front = json.loads(_run(*common, "--latency-model", str(path), "--json").stdout)["front"]
    assert 1 < len(front) <= 30 and all(r["size_mb"] <= 3 and r["predicted_ms"] > 0 for r in front)
    assert [r["size_mb"] for r in front] == sorted(r["size_mb"] for r in front)
    lines = _run(*common).stdout.splitlines()
    assert "Pareto front (size down, GFLOPs up), max 3.0 MB" in lines[0]
    plain = json.loads(_run(*common, "--json").stdout)["front"]  # the same front: its replaced points counted
    assert f"{len(plain)} points, {sum(r['replaced'] for r in plain)} of them put in place" in lines[0]
    assert 0 < sum(r["replaced"] for r in plain) < len(plain)
    assert lines[1].split() == ["#", *(k for k in KEYS_ORDER if k != "fitness")]
    for bad in (["--exhaustive"], ["--pareto"]):  # --pareto twice is fine; with --exhaustive refused
        out = _run(*common, *bad)
        assert out.returncode == (2 if bad == ["--exhaustive"] else 0)
    out = _run("--teacher", "minilm-l6", "--population", "30")
    assert out.returncode == 2 and "add --pareto" in out.stderr
    out = _run(*_with(common, "--population", "1"))
    assert out.returncode == 2 and "--population: NSGA-II needs >= 2" in out.stderr
    # the GA's ranking options mean nothing to the front: refused, not ignored
    out = _run(*common, "--target-mb", "3", "--variant", "paper")
    assert out.returncode == 2 and out.stderr.startswith("python -m search: error: --target-mb, --variant: ")
    assert "--top-k:" in _run(*common, "--top-k", "3").stderr


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
        assert len(result["candidates"]) == 3 and all(set(c) == KEYS | {"head", "predicted_ms"} for c in result["candidates"])
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
        (["--max-layers", "0"], "--max-layers"),
        (["--head", "pooler"], "--head"),
        (["--target-mb", "0.001"], "below the smallest architecture"),
        (["--target-mb", "inf"], "--target-mb"),
        (["--seq-len", "100000"], "seq_len 100000 is above 512"),  # no student could read it
        (["--seq-len", "514", "--exhaustive"], "seq_len 514 is above 512"),
        (["--seed", "-7"], "--seed: must be an integer in [0, "),  # random.Random(-7) is Random(7)
        (["--exhaustive", "--variant", "paper"], "--variant: the exhaustive search has no GA variant"),
        (["--exhaustive", "--seed", "3"], "--seed: the exhaustive search draws nothing at random"),
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


def test_a_tight_cap_prints_what_fits():
    """Nearly nothing fits 0.5 MB with 64-wide heads; the GA used to print an empty table."""
    out = _run("--target-mb", "0.5", "--max-mb", "0.5", "--min-head-size", "64", "--seed", "0")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[2].split()[1:6] == ["1", "64", "1", "32", "1000"]


def test_a_teacher_with_bad_dimensions_is_bad_input(tmp_path):
    config = {"model_type": "bert", "num_hidden_layers": 6, "hidden_size": 384,
              "num_attention_heads": 12, "intermediate_size": 1536, "vocab_size": 30522,
              "max_position_embeddings": 10**20, "type_vocab_size": 2}
    (tmp_path / "config.json").write_text(json.dumps(config))
    out = _run("--teacher", str(tmp_path))
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "max_position_embeddings" in out.stderr


def test_a_list_model_type_and_an_overflowing_latency_model_are_bad_input(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": ["bert"]}))
    model = tmp_path / "huge.json"  # finite coefficients whose predictions overflow to inf
    model.write_text(json.dumps({"format": "code-compressor latency model", "intercept_ms": 1e308,
                                 "per_layer_ms": 1e308, "per_gflop_ms": 1e308, "seq_len": 400, "pair": False}))
    for args, needle in ((["--teacher", str(tmp_path)], "model_type ['bert'] is not one of"),
                         (["--latency-model", str(model), "--max-ms", "5"], "predict no finite latency"),
                         (["--latency-model", str(model), "--pareto"], "predict no finite latency")):
        out = _run(*args)
        assert out.returncode == 2 and out.stdout == "" and out.stderr.strip().splitlines() == [
            out.stderr.strip()], args
        assert needle in out.stderr, out.stderr


def test_a_latency_model_that_overflows_for_some_architectures_is_bad_input(tmp_path):
    """The fastest point predicted a finite time, the largest ones inf: --json printed Infinity."""
    model = tmp_path / "big.json"
    model.write_text(json.dumps({"format": "code-compressor latency model", "intercept_ms": 1.0,
                                 "per_layer_ms": 1e308, "per_gflop_ms": 1e307, "seq_len": 400, "pair": False}))
    out = _run("--latency-model", str(model), "--exhaustive", "--top-k", "1", "--json")
    assert out.returncode == 2 and out.stdout == "", out.stdout[-300:]
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "predict no finite latency for L12" in out.stderr


@pytest.mark.parametrize("deep", ["teacher", "latency-model"])
def test_unreadable_paths_and_json_nested_too_deeply_are_bad_input(tmp_path, deep):
    nested = tmp_path / "deep.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    for args in ([f"--{deep}", str(nested)], [f"--{deep}", "a" * 300]):
        out = _run(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-500:]
        assert out.stderr.strip().splitlines() == [out.stderr.strip()]


def test_an_option_given_twice_is_refused():
    out = _run("--target-mb", "3", "--target-mb=5")  # argparse kept 5, silently
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == ("python -m search: error: argument --target-mb: given 2 times "
                                  "(--target-mb, --target-mb=5); give it once")
    out = _run("--target-m", "3", "--target-mb", "5")  # an abbreviation is the same option
    assert out.returncode == 2 and "argument --target-mb: given 2 times (--target-m, --target-mb)" in out.stderr
    assert _run("--target-m", "3", "--teacher", "minilm-l6", "--seq-len", "64", "--top-k", "1").returncode == 0


def test_internal_errors_are_not_reported_as_bad_input(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(cli, "run_ga", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        cli.main(["--seed", "0"])


def test_nothing_found_is_an_error(monkeypatch, capsys):
    monkeypatch.setattr(cli, "run_ga", lambda *args, **kwargs: [])
    assert cli.main(["--target-mb", "2", "--seed", "0"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1
    assert "no architecture of codebert-base found within 2.0 MB" in out.err


def test_help_names_the_bench_subcommand_and_every_option():
    out = _run("--help")
    assert out.returncode == 0 and "python -m search bench" in out.stdout
    for parser in (cli._search_parser(), cli._bench_parser()):
        assert all(action.help for action in parser._actions), parser.prog
    usage = cli.__doc__.split("python -m search bench", 1)[1].splitlines()[0]
    assert "--seeds" in usage and "--runs" in usage


@pytest.mark.parametrize("top_k, read", [(3, 0), (3000, 1)])  # all in stdout's buffer | past a pipe's
def test_a_reader_that_closes_the_pipe_ends_the_output_quietly(closed_pipe, top_k, read):
    lines, rc, err = closed_pipe([sys.executable, "-m", "search", "--teacher", "minilm-l6", "--exhaustive",
                                  "--top-k", str(top_k)], read=read)
    assert (rc, err) == (141, "") and all(line.startswith("teacher minilm-l6") for line in lines)


def test_history_logs_each_generation_in_the_table_and_in_json():
    args = ("--teacher", "minilm-l6", "--seq-len", "64", "--seed", "3", "--top-k", "1")
    table = _run(*args, "--history")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    start = lines.index("the population by generation:")
    assert lines[start + 1].split() == list(cli.HISTORY_COLUMNS)
    logged = json.loads(_run(*args, "--history", "--json").stdout)
    history = logged["history"]
    assert [h["generation"] for h in history] == list(range(101))
    assert [line.split()[0] for line in lines[start + 2:]] == [str(g) for g in range(101)]
    assert lines[start + 2].split()[4] == f"{history[0]['best']:.4f}"
    assert logged["candidates"] == json.loads(_run(*args, "--json").stdout)["candidates"]
    assert "history" not in json.loads(_run(*args, "--json").stdout)
    for other in ("--exhaustive", "--pareto"):
        refused = _run("--history", other)
        assert refused.returncode == 2 and "--history: the logbook is the single-objective GA's" in refused.stderr
