"""The generic sweep runner on a real local Ray: rows once, retries, resume, pre-check."""

import json
import pickle
import re
import shutil
import signal
from pathlib import Path

import pytest

from ray_jobs import results
from ray_jobs.config import load_config
from ray_jobs.errors import JobError
from ray_jobs.sweep import (
    ResourceError,
    Sweep,
    _check_rows_kept,
    _reported_rows,
    check_resources,
    check_restore_settings,
    precheck,
    record_config,
    restorable,
    run_sweep,
)

STAMP = {"config_hash": "h", "code_version": "v"}


def _round_trial(marker_dir: str):
    """Reports one row per round with a checkpoint; fails once after round 1 when a marker
    file `fail-<trial_key>` exists (the marker is consumed: the retry succeeds)."""

    def fn(spec, ctx):
        start = (ctx.state or {}).get("next_round", 0)
        log = Path(marker_dir, f"calls-{ctx.trial_key}")
        for r in range(start, spec["rounds"]):
            with log.open("a") as f:
                f.write(f"{r}\n")
            ctx.report({"round": r, "sparsity": r / 10, "schedule": ctx.trial_key},
                       state={"next_round": r + 1})
            marker = Path(marker_dir, f"fail-{ctx.trial_key}")
            if r == 1 and marker.exists():
                marker.unlink()
                raise RuntimeError("injected failure")

    return fn


def _sweep(marker_dir, trials=3, rounds=3, sweep_id="t-1"):
    return Sweep(job="t", sweep_id=sweep_id, fn=_round_trial(str(marker_dir)),
                 trials=[{"trial_key": f"s{i}", "rounds": rounds} for i in range(trials)],
                 tables=("prune",), stamp=STAMP)


def _calls(marker_dir, key):
    return Path(marker_dir, f"calls-{key}").read_text().split()


def test_check_resources_pure():
    nodes = [{"CPU": 4.0}, {"CPU": 2.0, "GPU": 1.0}]
    check_resources({"cpu": 2, "gpu": 0.5}, nodes)
    check_resources({"cpu": 4, "gpu": 0}, nodes)
    with pytest.raises(ResourceError, match=r"CPU=4, GPU=1.*CPU=6, GPU=1 in 2 node\(s\)"):
        check_resources({"cpu": 4, "gpu": 1}, nodes)  # no single node has both
    with pytest.raises(ResourceError, match="GPU=1"):
        check_resources({"cpu": 1, "gpu": 1}, [{"CPU": 2.0}])


def test_precheck_refuses_gpu_on_cpu_cluster(local_ray, tmp_path):
    cfg = load_config(None, [f"results_dir={tmp_path}", "resources.gpus_per_trial=1"])
    with pytest.raises(ResourceError, match="GPU=1.*CPU=2"):
        precheck(cfg)
    cfg = load_config(None, [f"results_dir={tmp_path}", "resources.cpus_per_trial=3"])
    with pytest.raises(ResourceError, match="CPU=3"):
        precheck(cfg)
    precheck(load_config(None, [f"results_dir={tmp_path}", "resources.cpus_per_trial=0.5"]))


def test_sweep_retries_a_failed_trial_from_its_checkpoint(local_ray, tmp_path):
    cfg = load_config(None, [f"results_dir={tmp_path}/res", "failure.max_failures=1"])
    Path(tmp_path, "fail-s1").touch()
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGUSR1)
    out = run_sweep(cfg, _sweep(tmp_path))
    # Tune's handlers are gone with the sweep: the next Ctrl-C interrupts what comes after it
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGUSR1)) == handlers
    assert out.errors == [] and not out.restored
    rows = out.rows["prune"]
    assert sorted((r["trial_key"], r["round"]) for r in rows) == [
        (f"s{i}", r) for i in range(3) for r in range(3)]
    assert _calls(tmp_path, "s1") == ["0", "1", "2"]  # the retry resumed at round 2
    assert {r["device"] for r in rows} == {"cpu"} and all(r["node_id"] for r in rows)
    assert results.table_counts(cfg.results_dir) == {"prune": 9}


def test_errored_sweep_resumes_when_run_again(local_ray, tmp_path):
    cfg = load_config(None, [f"results_dir={tmp_path}/res", "failure.max_failures=0"])
    Path(tmp_path, "fail-s0").touch()
    first = run_sweep(cfg, _sweep(tmp_path, trials=2, rounds=4, sweep_id="t-2"))
    assert len(first.errors) == 1 and first.errors[0].startswith("s0:")
    assert len(first.rows["prune"]) == 2 + 4  # s0 stopped after rounds 0 and 1
    second = run_sweep(cfg, _sweep(tmp_path, trials=2, rounds=4, sweep_id="t-2"))
    assert second.restored and second.errors == []
    keys = [(r["trial_key"], r["round"]) for r in second.rows["prune"]]
    assert sorted(keys) == [(f"s{i}", r) for i in range(2) for r in range(4)]
    assert _calls(tmp_path, "s0") == ["0", "1", "2", "3"]  # resumed, not redone
    assert _calls(tmp_path, "s1") == ["0", "1", "2", "3"]  # finished trials are not rerun
    assert results.table_counts(cfg.results_dir) == {"prune": 8}


def test_resume_with_a_setting_tune_keeps_from_the_first_run_is_refused(local_ray, tmp_path):
    from ray_jobs.config import to_dict
    from ray_jobs.errors import ConfigError

    def settings(*overrides):
        return load_config(None, [f"results_dir={tmp_path}/res", "failure.max_failures=0", *overrides])

    cfg = settings()
    check_restore_settings(cfg, "t-3", 1)  # nothing on disk yet: nothing to compare
    results.write_config(cfg.results_dir, "t", "t-3", to_dict(cfg), STAMP)  # as the jobs do
    Path(tmp_path, "fail-s0").touch()
    assert run_sweep(cfg, _sweep(tmp_path, trials=1, rounds=3, sweep_id="t-3")).errors  # interrupted by an error
    check_restore_settings(cfg, "t-3", 1)  # the same settings: fine
    for override, named in (("failure.max_failures=2", "failure.max_failures: sweep t-3 ran with 0"),
                            ("resources.max_concurrent_trials=1", "resources.max_concurrent_trials=null"),
                            # the finished trials' threads and device
                            ("resources.cpus_per_trial=2", "resources.cpus_per_trial=1"),
                            ("resources.gpus_per_trial=0.5", "resources.gpus_per_trial=0")):
        with pytest.raises(ConfigError, match=named):
            check_restore_settings(settings(override), "t-3", 1)
    assert not run_sweep(cfg, _sweep(tmp_path, trials=1, rounds=3, sweep_id="t-3")).errors  # resumed, finished
    check_restore_settings(settings("failure.max_failures=2"), "t-3", 1)  # a finished sweep runs nothing again
    # ... unless it holds fewer trials than the job has: Tune created the rest only when one ended
    with pytest.raises(ConfigError, match="failure.max_failures: sweep t-3 ran with 0"):
        check_restore_settings(settings("failure.max_failures=2"), "t-3", 2)


def test_a_finished_sweep_keeps_its_configs_row(local_ray, tmp_path):
    """Restoring a finished sweep runs nothing: its `configs` row keeps the settings its rows ran
    under, whatever unhashed settings (threads, say) the command now gives; an unfinished one's
    row is rewritten as it resumes."""
    def settings(*overrides):
        return load_config(None, [f"results_dir={tmp_path}/res", "failure.max_failures=0", *overrides])

    def recorded() -> list:
        rows = results.read_rows(f"{tmp_path}/res", "configs", "t-4")
        return [json.loads(r["config"])["resources"]["prepare_cpus"] for r in rows]

    def record(cfg) -> None:  # as the jobs do: the restore check says whether the sweep is finished
        record_config(cfg, "t", "t-4", STAMP, check_restore_settings(cfg, "t-4", 1))

    record(settings())  # nothing on disk yet: written
    Path(tmp_path, "fail-s0").touch()
    assert run_sweep(settings(), _sweep(tmp_path, trials=1, rounds=2, sweep_id="t-4")).errors
    record(settings("resources.prepare_cpus=2"))  # unfinished: rewritten
    assert recorded() == [2.0]
    record(settings())
    assert not run_sweep(settings(), _sweep(tmp_path, trials=1, rounds=2, sweep_id="t-4")).errors
    record(settings("resources.prepare_cpus=2"))  # finished: kept
    assert recorded() == [None]


def _mark_last_results_not_done(experiment: Path) -> int:
    """Rewrite the saved experiment state as Tune sometimes leaves it under load: trials
    TERMINATED whose last result says done=False. Returns how many trials it changed."""
    changed = 0
    for state_file in experiment.glob("experiment_state-*.json"):
        state = json.loads(state_file.read_text())
        for entry in state["trial_data"]:
            runtime = json.loads(entry[1])
            runtime["last_result"]["done"] = False
            entry[1] = json.dumps(runtime)
            changed += 1
        state_file.write_text(json.dumps(state))
    return changed


def test_finished_sweep_is_finished_even_when_last_results_say_not_done(local_ray, tmp_path):
    cfg = load_config(None, [f"results_dir={tmp_path}/res"])
    first = run_sweep(cfg, _sweep(tmp_path, trials=2, rounds=2, sweep_id="t-3"))
    assert first.errors == []
    assert _mark_last_results_not_done(Path(cfg.results_dir, "ray", "t-3")) >= 2
    again = run_sweep(cfg, _sweep(tmp_path, trials=2, rounds=2, sweep_id="t-3"))  # no SweepInterrupted
    assert again.restored and again.errors == []
    assert _calls(tmp_path, "s0") == ["0", "1"]  # nothing was rerun
    assert results.table_counts(cfg.results_dir) == {"prune": 4}


def _cut(file: Path) -> None:
    """Truncate `file` to half, as a driver killed while Tune copied it leaves it."""
    with file.open("r+b") as f:
        f.truncate(file.stat().st_size // 2)


def _experiment(folder: Path) -> Path:
    """The files Tune restores from, as a finished first session and a later one left them."""
    folder.mkdir()
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"_run_config": "x" * 2000}))
    for session in ("2026-01-01_00-00-00", "2026-01-02_00-00-00"):
        (folder / f"experiment_state-{session}.json").write_text(json.dumps({"trial_data": ["x" * 2000]}))
        (folder / f"basic-variant-state-{session}.json").write_bytes(pickle.dumps({"s": "x" * 2000}))
    return folder


@pytest.mark.parametrize("damage, named", [
    ("experiment_state-2026-01-02_00-00-00.json", "Unterminated string"),  # the newest: the one Tune reads
    ("tuner.pkl", "expected 2000 bytes"),
    ("basic-variant-state-2026-01-02_00-00-00.json", "expected 2000 bytes"),  # a pickle despite its name
])
def test_restorable_refuses_a_state_file_cut_short(tmp_path, damage, named):
    folder = _experiment(tmp_path / "t-9")
    assert restorable(folder)
    _cut(folder / "experiment_state-2026-01-01_00-00-00.json")  # an older session's: Tune does not read it
    assert restorable(folder)
    _cut(folder / damage)
    refusal = (rf"^Tune's experiment state {re.escape(str(folder / damage))} is unreadable \({named}.*\): "
               rf"remove the folder {re.escape(str(folder))} and run the command again; the sweep then reruns "
               "every trial from its start.*no row is duplicated")
    with pytest.raises(JobError, match=refusal):
        restorable(folder)


def test_restorable_without_tuner_or_experiment_state(tmp_path):
    folder = _experiment(tmp_path / "t-9")
    for state in folder.glob("experiment_state-*.json"):
        state.unlink()
    with pytest.raises(JobError, match=rf"^{re.escape(str(folder))} holds no Tune experiment state"):
        restorable(folder)
    (folder / "tuner.pkl").unlink()
    assert not restorable(folder)  # nothing to restore: a new sweep
    assert not restorable(tmp_path / "none")


def test_cut_experiment_state_is_refused_then_rerun_without_duplicates(local_ray, tmp_path):
    """The state a killed driver cut short: refused before any work, with what to do; doing it
    reruns every trial and leaves each row once."""
    cfg = load_config(None, [f"results_dir={tmp_path}/res"])
    assert run_sweep(cfg, _sweep(tmp_path, trials=2, rounds=2, sweep_id="t-5")).errors == []
    experiment = Path(cfg.results_dir, "ray", "t-5")
    state = sorted(experiment.glob("experiment_state-*.json"))[-1]
    _cut(state)
    refusal = (rf"^Tune's experiment state {re.escape(str(state))} is unreadable .*: remove the folder "
               rf"{re.escape(str(experiment))} and run the command again")
    with pytest.raises(JobError, match=refusal):
        check_restore_settings(cfg, "t-5", 2)
    with pytest.raises(JobError, match=refusal) as refused:
        run_sweep(cfg, _sweep(tmp_path, trials=2, rounds=2, sweep_id="t-5"))
    assert "\n" not in str(refused.value)
    assert _calls(tmp_path, "s0") == ["0", "1"]  # refused before any trial ran
    shutil.rmtree(experiment)  # as the message says
    again = run_sweep(cfg, _sweep(tmp_path, trials=2, rounds=2, sweep_id="t-5"))
    assert not again.restored and again.errors == []
    assert _calls(tmp_path, "s0") == ["0", "1", "0", "1"]  # every trial ran again from its start
    assert sorted((r["trial_key"], r["round"]) for r in again.rows["prune"]) == [
        (f"s{i}", r) for i in range(2) for r in range(2)]
    assert results.table_counts(cfg.results_dir) == {"prune": 4}  # each row replaced, none duplicated


def test_a_cut_trial_checkpoint_starts_the_trial_over(tmp_path, monkeypatch, capsys):
    """Tune copies checkpoints in place: a crash can cut the state file. The trial restarts
    (None) instead of failing on every resume with a JSON error."""
    from ray import tune

    from ray_jobs import sweep as sweep_module

    folder = tmp_path / "checkpoint"
    folder.mkdir()
    state = folder / sweep_module._STATE_FILE
    monkeypatch.setattr(sweep_module.tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(str(folder)))
    state.write_text(json.dumps({"next_round": 2}))
    assert sweep_module._restored_state() == {"next_round": 2}
    state.write_text('{"next_ro')
    assert sweep_module._restored_state() is None
    assert "is unreadable (JSONDecodeError); the trial starts from its beginning" in capsys.readouterr().err


def test_lost_rows_are_checked_in_the_table_each_trial_ends_with(tmp_path):
    """A student's quantize rows do not stand in for its lost distill row; the teacher's trial
    ends with quantize rows only."""
    sweep = Sweep(job="compress", sweep_id="c-1", fn=lambda spec, ctx: None,
                  trials=[{"trial_key": "student-0"}, {"trial_key": "teacher"}],
                  tables=("distill", "quantize", "epochs"), last_table={"teacher": "quantize"})
    quantize = [{"trial_key": "student-0"}, {"trial_key": "teacher"}]
    _check_rows_kept(sweep, tmp_path, {"distill": [{"trial_key": "student-0"}], "quantize": quantize,
                                       "epochs": []}, ["student-0", "teacher"])
    with pytest.raises(JobError, match=r"rows of trial\(s\) student-0 \(distill: 1 row\) are in no table file"):
        _check_rows_kept(sweep, tmp_path, {"distill": [], "quantize": quantize, "epochs": []},
                         ["student-0", "teacher"])
    with pytest.raises(JobError, match=r"trial\(s\) teacher \(quantize: 1 row\) "):
        _check_rows_kept(sweep, tmp_path, {"distill": [{"trial_key": "student-0"}], "quantize": quantize[:1],
                                           "epochs": []}, ["student-0", "teacher"])


def test_lost_rows_are_every_reported_row_not_only_the_last(tmp_path):
    """A student whose distill row is kept but whose epochs rows are gone has lost rows."""
    sweep = Sweep(job="compress", sweep_id="c-2", fn=lambda spec, ctx: None,
                  trials=[{"trial_key": "student-0"}], tables=("distill", "epochs"))
    reported = {("epochs", ("student-0", 1)): "student-0", ("epochs", ("student-0", 2)): "student-0",
                ("distill", ("student-0", 0)): "student-0"}
    kept = {"distill": [{"trial_key": "student-0", "round": 0}],
            "epochs": [{"trial_key": "student-0", "epoch": 1}, {"trial_key": "student-0", "epoch": 2}]}
    _check_rows_kept(sweep, tmp_path, kept, ["student-0"], reported)
    with pytest.raises(JobError, match=r"rows of trial\(s\) student-0 \(epochs: 1 row\) are in no table"):
        _check_rows_kept(sweep, tmp_path, {**kept, "epochs": kept["epochs"][:1]}, ["student-0"], reported)


def test_reported_rows_are_read_from_finished_trials_result_files(tmp_path):
    """A finished trial's result lines, keyed as RowSink stores them (its default round and,
    for a result naming no table, its default table); an unfinished trial's and a cut line skipped."""
    lines = {"t1_00000-s0": [{"trial_id": "t1_00000", "table": "epochs", "row": {"trial_key": "s0", "epoch": 1}},
                             {"trial_id": "t1_00000", "row": {"trial_key": "s0"}}],
             "t1_00001-s1": [{"trial_id": "t1_00001", "table": "prune", "row": {"trial_key": "s1", "round": 2}}]}
    for folder, results_of in lines.items():
        Path(tmp_path, folder).mkdir()
        text = "".join(json.dumps(r) + "\n" for r in results_of) + '{"trial_id": "t1_0'  # a line cut short
        Path(tmp_path, folder, "result.json").write_text(text)
    assert _reported_rows(tmp_path, {"t1_00000": "s0"}, "prune") == {
        ("epochs", ("s0", 1)): "s0", ("prune", ("s0", 0)): "s0"}


def test_finished_sweep_missing_an_early_round_is_refused(local_ray, tmp_path):
    """Tune's result files name every row a finished trial reported: a sweep that kept each
    trial's last round but lost an earlier one is refused, not a success with rows missing."""
    cfg = load_config(None, [f"results_dir={tmp_path}/res"])
    assert run_sweep(cfg, _sweep(tmp_path, trials=2, rounds=3, sweep_id="t-7")).errors == []
    rows = results.read_rows(cfg.results_dir, "prune", "t-7")
    results.write_rows(cfg.results_dir, "prune", "t-7",
                       [r for r in rows if (r["trial_key"], r["round"]) != ("s1", 0)])
    with pytest.raises(JobError, match=r"rows of trial\(s\) s1 \(prune: 1 row\) are in no table file"):
        run_sweep(cfg, _sweep(tmp_path, trials=2, rounds=3, sweep_id="t-7"))
    results.write_rows(cfg.results_dir, "prune", "t-7", rows)
    assert sorted(r["round"] for r in run_sweep(cfg, _sweep(tmp_path, trials=2, rounds=3, sweep_id="t-7"))
                  .rows["prune"]) == [0, 0, 1, 1, 2, 2]


def test_finished_sweep_whose_rows_were_removed_is_refused_then_rerun(local_ray, tmp_path):
    """Restored, a finished sweep runs nothing: rows lost from its table are named, with what to
    do, instead of a success that prints what is left."""
    cfg = load_config(None, [f"results_dir={tmp_path}/res"])
    assert run_sweep(cfg, _sweep(tmp_path, trials=2, rounds=2, sweep_id="t-6")).errors == []
    table = results.table_file(cfg.results_dir, "prune", "t-6")
    kept = [r for r in results.read_rows(cfg.results_dir, "prune", "t-6") if r["trial_key"] == "s0"]
    results.write_rows(cfg.results_dir, "prune", "t-6", kept)  # s1's rows gone (a file moved back, say)
    experiment = Path(cfg.results_dir, "ray", "t-6")
    with pytest.raises(JobError, match=rf"sweep t-6 finished, but rows of trial\(s\) s1 \(prune: 2 rows\) .*"
                                       rf"remove the folder {re.escape(str(experiment))}"):
        run_sweep(cfg, _sweep(tmp_path, trials=2, rounds=2, sweep_id="t-6"))
    assert _calls(tmp_path, "s1") == ["0", "1"]  # nothing ran
    shutil.rmtree(experiment)
    run_sweep(cfg, _sweep(tmp_path, trials=2, rounds=2, sweep_id="t-6"))
    assert table.exists() and results.table_counts(cfg.results_dir) == {"prune": 4}
