"""CLI bad input: one line on stderr naming the culprit, exit code 2, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ray_jobs", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, culprit", [
    (["compress", "--config", "smoke", "search.topk=1"], "search.topk"),
    (["compress", "--config", "no-such-config.yaml"], "no-such-config.yaml"),
])
def test_bad_config_is_one_line_exit_2(args, culprit):
    proc = _cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and culprit in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv, culprit", [
    (["config", "--config", "smoke", "--config", "demo"], "argument --config: given 2 times"),  # ran demo
    (["compress", "--seeds", "0", "--seeds=1", "--config", "smoke"], "argument --seeds: given 2 times"),
    (["query", "SELECT 1", "--format", "csv", "--format", "json"], "argument --format: given 2 times"),
    (["config", "--conf", "smoke", "--config", "demo"], "argument --config: given 2 times (--conf, --config)"),
    (["bench", "latency", "--tiny", "--tiny", "--tiny", "latency_runs=1", "latency_runs=2", "--what"],
     "unrecognized arguments: --what"),  # flags and overrides may repeat (the last override wins)
])
def test_an_option_given_twice_is_refused(capsys, tmp_path, argv, culprit):
    """argparse keeps an option's last value: `--config smoke --config demo` ran the demo."""
    rc, out, err = _main(capsys, *argv)
    assert rc == 2 and _one_error_line(err, culprit), err
    assert out == ""


def test_query_without_tables(tmp_path):
    proc = _cli("query", "SELECT 1", f"results_dir={tmp_path}")
    assert proc.returncode == 2 and str(tmp_path) in proc.stderr
    proc = _cli("tables", "results_dir=x", "seed=3")
    assert proc.returncode == 2 and "seed=3" in proc.stderr


def _main(capsys, *argv):
    """`python -m ray_jobs ARGV` in this process: (exit code, stdout, stderr)."""
    from ray_jobs.__main__ import main

    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error_line(err: str, culprit: str) -> bool:
    lines = err.splitlines()
    return len(lines) == 1 and lines[0].startswith("error:") and culprit in lines[0]


@pytest.mark.parametrize("argv, culprit", [
    (["query", "SELECT 1", "--format", "xml"], "xml"),
    (["compress", "--bogus"], "--bogus"),
    (["tables", "--config"], "--config"),
    (["bench", "bogus"], "bogus"),
    (["bench", "scaling", "--nope"], "--nope"),
    (["compress", "--config", "smoke", "--seeds", "0,x"], "--seeds"),
    (["compress", "--config", "smoke", "--seeds", "1,2,1"], "repeats a seed"),
    (["demo", "--config", "smoke", "--seeds", "0,1"], "--seeds"),  # compress and prune only
    (["compress", "--config", "smoke", "--seeds", "0,1", "distill.seed=2"], "distill.seed"),
    (["compress", "--config", "smoke", "--seeds", "0,1", "distill.seed =2"], "distill.seed"),  # was replaced
    (["prune", "--config", "smoke", "--seeds", "0,1", "prune.seed=2"], "prune.seed"),
    # a seed torch refuses failed every trial of its sweep, after the earlier seeds had run
    (["compress", "--config", "smoke", "--seeds", "0,18446744073709551617"], "--seeds"),
    (["prune", "--config", "smoke", "--seeds", "-1,0"], "--seeds"),
    (["tables", "results_dir="], "results_dir: must not be empty"),  # not the current directory
    # `--config "$UNSET"`: not read as no --config (the job would run on the defaults)
    (["compress", "--config", "", "search.top_k=0"], "--config: must not be empty"),
    (["tables", "--config="], "--config: must not be empty"),
    (["compress", "--config", "smoke", "seed=010"], "YAML 1.1 reads this as 8"),
    (["compress", "--config", "smoke", "data.max_train=1:30"], "YAML 1.1 reads this as 90"),
    (["compress", "--config", "smoke", "resources.gpus_per_trial=1.5"], "resources.gpus_per_trial: 1.5"),
    (["compress", "--config", "smoke", "distill.quantize=" + "[" * 600 + "]" * 600],
     "(1202 characters) (nested too deeply)"),  # PyYAML's RecursionError, a traceback before
    (["compress", "--config", "smoke", "distill.lr=.inf"], "distill.lr: must be finite"),
    (["compress", "--config", "smoke", "distill={epochs: 2}"], "distill.epochs=2"),
    ([], "command"),
])
def test_usage_errors_are_one_line_exit_2(capsys, argv, culprit):
    rc, out, err = _main(capsys, *argv)
    assert rc == 2 and _one_error_line(err, culprit), err
    assert out == ""


def test_query_refuses_empty_sql_and_corrupt_files(capsys, tmp_path):
    from ray_jobs import results

    results.write_rows(tmp_path, "distill", "s1", [{"trial_key": "a"}])
    for sql in ("", "   ", "-- comment only"):
        rc, _, err = _main(capsys, "query", sql, f"results_dir={tmp_path}")
        assert rc == 2 and _one_error_line(err, "no SQL statement"), err
    bad = tmp_path / "table=search" / "x.parquet"
    bad.parent.mkdir()
    bad.write_text("garbage")
    for argv in (["query", "SELECT * FROM distill"], ["tables"]):
        rc, _, err = _main(capsys, *argv, f"results_dir={tmp_path}")
        assert rc == 2 and _one_error_line(err, str(bad)), err


@pytest.mark.parametrize("text, culprit", [
    ("results_dir: 5\n", "results_dir"),
    ("results_dir:\n", "results_dir"),
    ("results_dir: [a]\n", "results_dir"),
    ("- results_dir\n- x\n", "top level must be a mapping"),
])
def test_query_and_tables_read_the_config_as_the_jobs_do(capsys, tmp_path, text, culprit):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    for argv in (["tables"], ["query", "SELECT 1"]):
        rc, _, err = _main(capsys, *argv, "--config", str(config))
        assert rc == 2 and _one_error_line(err, culprit), err


def test_query_and_tables_refuse_a_results_dir_that_does_not_exist(capsys, tmp_path):
    missing = tmp_path / "reslts"  # a typo must not read as "no results yet"
    for argv in (["tables"], ["query", "SELECT 1"]):
        rc, out, err = _main(capsys, *argv, f"results_dir={missing}")
        assert (rc, out) == (2, "") and _one_error_line(err, f"results_dir: no such folder {missing}"), err
    a_file = tmp_path / "results.parquet"
    a_file.write_text("")
    for argv in (["tables"], ["query", "SELECT 1"]):  # it exists: "no such folder" misled
        rc, out, err = _main(capsys, *argv, f"results_dir={a_file}")
        assert (rc, out) == (2, "") and _one_error_line(err, f"results_dir: {a_file} is not a folder"), err
    a_file.unlink()
    assert _main(capsys, "tables", f"results_dir={tmp_path}") == (0, f"no tables under {tmp_path}\n", "")
    rc, _, err = _main(capsys, "query", "SELECT 1", f"results_dir={tmp_path}")
    assert rc == 2 and _one_error_line(err, "results_dir: no tables under"), err


def test_an_error_about_a_path_with_a_newline_shows_that_path(capsys, tmp_path):
    """The one error line once stopped at the newline, losing the problem; then joined the
    lines with a space, naming another path. The newline is written as \\n."""
    rc, out, err = _main(capsys, "tables", f'results_dir="{tmp_path}/a\\nb"')
    assert (rc, out) == (2, "") and _one_error_line(err, f"results_dir: no such folder {tmp_path}/a\\nb"), err


def test_query_and_tables_read_results_dir_as_the_jobs_do(capsys, tmp_path):
    """The value is YAML, as a job's override: quoted it may hold ' #'; unquoted ' #...' was cut
    off by the jobs (a comment) and kept by query, so the two read different folders."""
    from ray_jobs import results

    folder = tmp_path / "try #2"
    results.write_rows(folder, "search", "s1", [{"rank": 0}])
    assert _main(capsys, "tables", f'results_dir="{folder}"') == (0, "search\t1\n", "")
    for value, culprit in ((str(folder), "results_dir: YAML reads '#2' in the value as a comment"),
                           ("~nouser-here/res", "results_dir: '~nouser-here/res': "),
                           ("~", "results_dir: '~' is YAML's null here"), ("7", "results_dir: expected a path")):
        rc, _, err = _main(capsys, "tables", f"results_dir={value}")
        assert rc == 2 and _one_error_line(err, culprit), err


def test_tables_reads_results_dir_from_the_config(capsys, tmp_path):
    from ray_jobs import results

    results.write_rows(tmp_path / "res", "search", "s1", [{"rank": 0}, {"rank": 1}])
    config = tmp_path / "c.yaml"
    config.write_text(f"results_dir: {tmp_path / 'res'}\n")
    assert _main(capsys, "tables", "--config", str(config)) == (0, "search\t2\n", "")
    # an override wins over the file, as in the jobs
    results.write_rows(tmp_path / "other", "search", "s1", [{"rank": 0}])
    assert _main(capsys, "tables", "--config", str(config), f"results_dir={tmp_path / 'other'}") == (
        0, "search\t1\n", "")


def test_compress_seeds_runs_every_seed_and_names_the_one_that_failed(capsys, monkeypatch, tmp_path):
    """A seed whose trials fail does not stop the next; the spread covers the rows that finished
    and the command fails naming the seed (run_compress stands in for the Ray job here)."""
    from ray_jobs import compress, jobs, results
    from ray_jobs.__main__ import main
    from ray_jobs.errors import SweepFailed

    ran = []

    def fake_run_compress(cfg, resume):
        ran.append(cfg.distill.seed)
        results.write_rows(cfg.results_dir, "distill", compress.sweep_id(cfg), [
            {"trial_key": "student-0", "kind": "student", "layers": 1, "hidden": 32, "heads": 1, "ffn": 64,
             "vocab": 300, "accuracy": 0.5 + cfg.distill.seed / 10, "retention": 0.9, "teacher_accuracy": 0.8}])
        if cfg.distill.seed == 1:
            raise SweepFailed("compress: 1 trial(s) failed: bilstm-budget: boom")
        return compress.sweep_id(cfg)

    monkeypatch.setattr(jobs, "run_compress", fake_run_compress)
    rc = main(["compress", "--config", "smoke", "--seeds", "1,2", f"results_dir={tmp_path}"])
    out, err = capsys.readouterr()
    assert rc == 1 and ran == [1, 2]
    assert "distill.seed=1: compress: 1 trial(s) failed" in err and "distill.seed=2" not in err
    spread = out.split("Across 2 distillation seeds")[1].splitlines()[3].split()
    assert spread[:2] == ["student-0", "student"] and spread[-7] == "2" and float(spread[-6]) == 0.65


@pytest.mark.parametrize("text", ["0,18446744073709551617", "-1,0", f"0,{2**63}"])
def test_parse_seeds_refuses_what_the_configs_refuse(text):
    """Each seed is checked before the first sweep starts, not when its turn comes."""
    from ray_jobs.errors import ConfigError
    from ray_jobs.jobs import parse_seeds

    with pytest.raises(ConfigError, match="^--seeds: "):
        parse_seeds(text)
    assert parse_seeds(f"0,{2**63 - 1}") == [0, 2**63 - 1]


def test_query_shows_each_of_two_columns_of_one_name(capsys, tmp_path):
    from ray_jobs import results

    results.write_rows(tmp_path, "distill", "s1", [{"trial_key": "a"}])
    rc, out, err = _main(capsys, "query", "SELECT 1 AS a, 2 AS a", "--format", "csv", f"results_dir={tmp_path}")
    assert (rc, out, err) == (0, "a,a\n1,2\n", "")
    rc, out, _ = _main(capsys, "query", "SELECT 1 AS a, 2 AS a", f"results_dir={tmp_path}")
    assert rc == 0 and out.splitlines()[2].split() == ["1", "2"]
    rc, out, err = _main(capsys, "query", "SELECT 1 AS a, 2 AS a", "--format", "json", f"results_dir={tmp_path}")
    assert rc == 2 and out == "" and _one_error_line(err, "2 columns named 'a'") and " AS " in err, err


@pytest.mark.parametrize("rows, read", [(10, 0), (200000, 1)])  # all in stdout's buffer | past a pipe's
def test_query_into_a_closed_pipe_ends_quietly(tmp_path, closed_pipe, rows, read):
    from ray_jobs import results

    results.write_rows(tmp_path, "search", "s1", [{"rank": 0}])
    lines, rc, err = closed_pipe([sys.executable, "-m", "ray_jobs", "query", f"SELECT * FROM range({rows})",
                                  f"results_dir={tmp_path}"], REPO, read=read)
    assert (rc, err) == (141, "") and [line.strip() for line in lines] == ["range"] * read


@pytest.mark.parametrize("job", ["compress", "prune"])
def test_the_summary_names_the_sweep_that_ran(job, capsys, monkeypatch, tmp_path):
    """Its inputs changed on disk while it ran (a refitted latency model, edited data):
    `sweep_id(cfg)` now names another sweep, but the summary and the return value are the
    one whose rows were written (compress.run / prune.run stand in for the Ray job here)."""
    from ray_jobs import compress, jobs, prune, summary
    from ray_jobs.config import CONFIG_DIR, load_config
    from ray_jobs.sweep import SweepOutcome

    module = {"compress": compress, "prune": prune}[job]
    ran = tmp_path / "ray" / f"{job}-0123456789ab"
    monkeypatch.setattr(module, "run", lambda cfg, resume: SweepOutcome(ran, {"distill": [], "prune": []}, [], False))
    monkeypatch.setattr(module, "sweep_id", lambda cfg: f"{job}-changed00000")
    shown = []
    monkeypatch.setattr(summary, f"{job}_summary", lambda results_dir, sid: shown.append(sid) or "")
    runner = {"compress": jobs.run_compress, "prune": jobs.run_prune}[job]
    cfg = load_config(CONFIG_DIR / "smoke.yaml", [f"results_dir={tmp_path}"])
    assert runner(cfg, False) == ran.name
    assert shown == [ran.name]
    spread = {"compress": "seeds_summary", "prune": "prune_seeds_summary"}[job]
    monkeypatch.setattr(summary, spread, lambda results_dir, sids: shown.append(sids) or "")
    assert jobs.run_seeds(job, cfg, [3]) == 0 and shown[-1] == [ran.name]


def test_a_refused_spread_does_not_hide_the_seeds_that_failed(capsys, monkeypatch, tmp_path):
    """`--seeds`: when the spread is refused (the sweeps are not one job's seeds) after a seed
    failed, the failure is still reported (SweepFailed, exit 1) and the refusal said; with no
    failed seed the refusal is the error (a bad input: one line, exit 2)."""
    from ray_jobs import jobs, summary
    from ray_jobs.config import CONFIG_DIR, load_config
    from ray_jobs.errors import ConfigError, SweepFailed

    def run_prune(cfg, resume):
        if cfg.prune.seed == 1:
            raise SweepFailed("1 of 2 trials failed", sweep_id="prune-seed1")
        return f"prune-seed{cfg.prune.seed}"

    asked = []

    def refuse(results_dir, sids):
        asked.append(sids)  # the failed seed's sweep as its SweepFailed named it, not as its config names it now
        raise ConfigError("summary: sweeps prune-seed0 and prune-seed1 differ in prune.rate")

    monkeypatch.setattr(jobs, "run_prune", run_prune)
    monkeypatch.setattr(summary, "prune_seeds_summary", refuse)
    cfg = load_config(CONFIG_DIR / "smoke.yaml", [f"results_dir={tmp_path}"])
    with pytest.raises(SweepFailed, match=r"1 of 2 seed\(s\) failed \(trials, or models their quantize stage could not quantize\) .*prune.seed=1: 1 of 2 trials failed"):
        jobs.run_seeds("prune", cfg, [0, 1])
    assert "no spread across the seeds: summary: sweeps prune-seed0 and prune-seed1 differ" in capsys.readouterr().out
    assert asked == [["prune-seed0", "prune-seed1"]]
    with pytest.raises(ConfigError, match="differ in prune.rate"):
        jobs.run_seeds("prune", cfg, [0, 2])


@pytest.mark.skipif(os.geteuid() != 0, reason="becomes another user (nobody) to be refused a folder")
def test_a_results_dir_behind_a_folder_the_user_may_not_enter_is_refused_by_name(tmp_path):
    """`Path.exists` raises PermissionError there instead of answering: every job's first check
    (`check_results_dir`) and query/tables named it in a traceback. Imported as root, run as
    nobody, to whom the pytest folder is closed."""
    results_dir, warm = tmp_path / "sub" / "results", tmp_path / "open"
    warm.mkdir()
    code = ("import contextlib, io, os, sys\n"
            "from ray_jobs.__main__ import main\n"
            "from ray_jobs.errors import JobError, check_results_dir\n"
            # as root first: the command's lazy imports, from a checkout nobody may not be able to read
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "    main(['tables', 'results_dir=' + sys.argv[3]])\n"
            "    main(['tables', 'results_dir=' + sys.argv[3] + '/missing'])  # the refusal's path too\n"
            "try:\n"
            "    os.setgid(65534); os.setuid(65534)\n"
            "except PermissionError:\n"
            "    os._exit(77)\n"
            "try:\n"
            "    check_results_dir(sys.argv[2].split('=', 1)[1])\n"
            "except JobError as exc:\n"
            "    print(exc)\n"
            "code = main(sys.argv[1:3])\n"
            "sys.stdout.flush(); sys.stderr.flush()\n"
            "os._exit(code)  # not Ray's exit hook: its lazy imports may be unreadable to nobody\n")
    proc = subprocess.run([sys.executable, "-c", code, "tables", f"results_dir={results_dir}", str(warm)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode == 77:
        pytest.skip("this root may not become another user")
    said = f"results_dir: cannot reach {results_dir}: "
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout.startswith(said) and "may not be entered by this user" in proc.stdout
    assert proc.stderr.strip().startswith(f"error: {said}") and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, missing", [(["bench"], "what"), (["query"], "sql")])
def test_usage_error_names_only_the_missing_argument(capsys, argv, missing):
    """The key=value overrides are optional: the usage error names only what is missing (it
    said "required: what, overrides")."""
    from ray_jobs.__main__ import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"the following arguments are required: {missing}") and len(err.splitlines()) == 1
