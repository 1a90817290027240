"""The compression job's quantize stage: a finished sweep run again under a longer
`distill.quantize` list quantizes its saved models again instead of distilling them anew."""

import dataclasses
import json

import pytest

from ray_jobs import compress, results
from ray_jobs.config import load_config, resolve_config_path
from training.distill import CompressTrainConfig

STAMP = {"config_hash": "h", "code_version": "v"}


def _sweep_on_disk(root, variants=("fp32", "int8")):
    """A finished sweep's rows: two students, a baseline and the teacher, each quantized."""
    models = {"student-0": "student", "student-1": "student", "bilstm-budget": "bilstm", "teacher": "teacher"}
    # model_dir: where the sweep first saved them (the results folder moved since)
    results.write_rows(root, "distill", "compress-x", [
        {"trial_key": k, "kind": kind, "model_dir": f"/moved/{k}", "vocab": 300, "pair_mode": "separate",
         "teacher_accuracy": 0.8, **STAMP} for k, kind in models.items() if kind != "teacher"])
    for k, kind in models.items():
        if kind != "teacher":
            (root / "students" / "compress-x" / k).mkdir(parents=True)
    results.write_rows(root, "quantize", "compress-x", [
        {"trial_key": k, "model": k, "kind": kind, "variant": v, "accuracy": 0.5, **STAMP}
        for k, kind in models.items() for v in variants])


def _stage(cfg, monkeypatch, errors=(), failing=(), with_failures=False, stale=frozenset(), artifacts="artifacts",
           interrupt_after=None):
    asked, prepared = [], []

    def as_trials(cfg_, fn, calls, on_result):  # stands in for the Ray tasks: one per model
        models = [model for _artifacts, _train_cfg, model in calls]
        assert {artifacts for artifacts, _, _ in calls} == {"artifacts"}
        asked.append(models)
        outcomes = [OSError(f"{m['trial_key']}: model.safetensors is corrupt\nsee above") if m["trial_key"] in failing
                    else [{"trial_key": m["trial_key"], "model": m["trial_key"], "kind": m["kind"], "variant": v,
                           "accuracy": 0.75} for v in ["fp32", *m["variants"]]] for m in models]
        for i in reversed(range(len(models))):  # as they end: in another order than asked
            if interrupt_after is not None and len(models) - 1 - i == interrupt_after:
                raise KeyboardInterrupt
            on_result(i, outcomes[i])
        return outcomes

    def artifacts_of():
        prepared.append(1)
        if isinstance(artifacts, Exception):
            raise artifacts
        return artifacts

    monkeypatch.setattr(compress.sweep, "call_as_trials", as_trials)
    train_cfg = CompressTrainConfig(finetune=cfg.finetune, distill=cfg.distill)
    rows, failures = compress.quantize_stage(cfg, train_cfg, artifacts_of, "compress-x", STAMP, list(errors), stale)
    return (rows, asked, prepared, failures) if with_failures else (rows, asked, prepared)


def test_a_longer_list_quantizes_every_saved_model_again_and_replaces_its_rows(tmp_path, monkeypatch):
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "distill.quantize=[bf16,int8]"])
    _sweep_on_disk(tmp_path, ("fp32", "int8", "int8_emb"))
    rows, asked, prepared = _stage(cfg, monkeypatch)
    (models,) = asked
    # one task per model, the teacher's (the longest) first
    assert [m["trial_key"] for m in models] == ["teacher", "bilstm-budget", "student-0", "student-1"]
    # the new list, then the variants the model has and the list dropped: one run for all its rows
    assert {tuple(m["variants"]) for m in models} == {("bf16", "int8", "int8_emb")}
    student = next(m for m in models if m["trial_key"] == "student-0")
    assert student == {"trial_key": "student-0", "kind": "student", "vocab": 300,
                       "model_dir": str(tmp_path.resolve() / "students" / "compress-x" / "student-0"),
                       "pair_mode": "separate", "teacher_accuracy": 0.8, "variants": ["bf16", "int8", "int8_emb"]}
    assert next(m for m in models if m["trial_key"] == "teacher") == {
        "trial_key": "teacher", "kind": "teacher", "variants": ["bf16", "int8", "int8_emb"]}
    on_disk = results.read_rows(tmp_path, "quantize", "compress-x")
    assert sorted((r["trial_key"], r["variant"]) for r in on_disk) == sorted(
        (k, v) for k in ("bilstm-budget", "student-0", "student-1", "teacher")
        for v in ("fp32", "bf16", "int8", "int8_emb"))
    assert {r["accuracy"] for r in on_disk} == {0.75}  # no row of the earlier run left beside them
    assert rows == on_disk and len(prepared) == 1
    _stage(cfg, monkeypatch)  # every variant there now: nothing asked, nothing prepared
    assert len(asked) == 1 and len(prepared) == 1


def test_one_models_failure_loses_none_of_the_others_rows_and_a_rerun_retries_only_it(tmp_path, monkeypatch):
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "distill.quantize=[int8,bf16]"])
    _sweep_on_disk(tmp_path)
    rows, asked, _, failures = _stage(cfg, monkeypatch, failing={"student-1"}, with_failures=True)
    assert failures == ["student-1: quantize stage: OSError: student-1: model.safetensors is corrupt\\nsee above"]
    on_disk = {(r["trial_key"], r["variant"]): r["accuracy"] for r in results.read_rows(tmp_path, "quantize", "compress-x")}
    assert rows == results.read_rows(tmp_path, "quantize", "compress-x")
    for key in ("teacher", "bilstm-budget", "student-0"):  # quantized anew: their new rows are written
        assert {v: on_disk[key, v] for v in ("fp32", "int8", "bf16")} == {"fp32": 0.75, "int8": 0.75, "bf16": 0.75}
    # the failed model keeps its earlier rows, and still lacks bf16
    assert {v: a for (k, v), a in on_disk.items() if k == "student-1"} == {"fp32": 0.5, "int8": 0.5}
    _, again, _, failures = _stage(cfg, monkeypatch, with_failures=True)
    assert [m["trial_key"] for m in again[0]] == ["student-1"] and failures == []


def test_an_interrupted_stage_keeps_the_rows_of_the_models_that_ended(tmp_path, monkeypatch):
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "distill.quantize=[int8,bf16]"])
    _sweep_on_disk(tmp_path)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C after one model ended (the last asked, student-1)
        _stage(cfg, monkeypatch, interrupt_after=1)
    on_disk = {(r["trial_key"], r["variant"]): r["accuracy"] for r in results.read_rows(tmp_path, "quantize", "compress-x")}
    assert {v: a for (k, v), a in on_disk.items() if k == "student-1"} == {"fp32": 0.75, "int8": 0.75, "bf16": 0.75}
    assert {v: a for (k, v), a in on_disk.items() if k == "teacher"} == {"fp32": 0.5, "int8": 0.5}


def test_the_job_exits_naming_the_stages_failures_after_its_summary(tmp_path, monkeypatch, capsys):
    from ray_jobs import jobs
    from ray_jobs.errors import SweepFailed

    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}"])
    outcome = compress.sweep.SweepOutcome(tmp_path / "compress-x", {"distill": []}, [], restored=True)

    def run(cfg_, resume):  # the stage's failure as `compress.run` adds it
        outcome.errors.append("student-1: quantize stage: OSError: corrupt")
        return outcome

    monkeypatch.setattr(compress, "run", run)
    monkeypatch.setattr(jobs.summary, "compress_summary", lambda root, sid: "SUMMARY")
    with pytest.raises(SweepFailed, match=r"^compress: 1 failed \(trials, or models the quantize stage could not "
                                          r"quantize\): student-1: quantize stage: OSError: corrupt$"):
        jobs.run_compress(cfg, resume=False)
    assert "SUMMARY" in capsys.readouterr().out


def _with_error(root, key, variant):
    """The sweep's rows with (key, variant)'s holding an error, as an earlier run wrote it."""
    rows = results.read_rows(root, "quantize", "compress-x")
    for r in rows:
        if (r["trial_key"], r["variant"]) == (key, variant):
            r["error"] = "RuntimeError: no kernel for this CPU"
    results.write_rows(root, "quantize", "compress-x", rows)
    return compress.stale_errors(root, "compress-x")


def test_a_variant_that_failed_in_an_earlier_run_is_retried_with_its_model(tmp_path, monkeypatch, capsys):
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "distill.quantize=[int8]"])
    _sweep_on_disk(tmp_path)
    _with_error(tmp_path, "student-1", "int8")
    stale = _with_error(tmp_path, "teacher", "fp32")  # the row every variant is timed against
    assert {(k, v) for k, v, _time in stale} == {("student-1", "int8"), ("teacher", "fp32")}
    rows, asked, prepared = _stage(cfg, monkeypatch, stale=stale)
    assert [(m["trial_key"], m["variants"]) for m in asked[0]] == [("teacher", ["int8"]), ("student-1", ["int8"])]
    assert ("retrying 2 variant(s) whose rows from an earlier run hold an error: teacher fp32, student-1 int8"
            in capsys.readouterr().out)
    on_disk = {(r["trial_key"], r["variant"]): r for r in results.read_rows(tmp_path, "quantize", "compress-x")}
    assert on_disk["student-1", "int8"]["accuracy"] == 0.75 and on_disk["student-1", "int8"]["error"] is None
    assert on_disk["student-0", "int8"]["accuracy"] == 0.5  # the others untouched


def test_an_error_this_run_wrote_or_a_variant_the_list_dropped_is_not_retried(tmp_path, monkeypatch):
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "distill.quantize=[int8]"])
    _sweep_on_disk(tmp_path, ("fp32", "int8", "int8_emb"))
    _with_error(tmp_path, "student-1", "int8")  # by this run's trial: not in `stale`
    stale = _with_error(tmp_path, "student-0", "int8_emb")  # no longer listed
    assert _stage(cfg, monkeypatch, stale={s for s in stale if s[0] == "student-0"})[1] == []


def test_a_retry_whose_model_cannot_be_loaded_is_skipped_with_a_line_not_refused(tmp_path, monkeypatch, capsys):
    from ray_jobs.errors import JobError

    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "distill.quantize=[int8]"])
    _sweep_on_disk(tmp_path)
    (tmp_path / "students" / "compress-x" / "student-1").rmdir()
    _with_error(tmp_path, "student-1", "int8")
    stale = _with_error(tmp_path, "teacher", "int8")
    # the teacher no longer cached: a retry alone leaves the rows as they are
    gone = compress.CacheGone("compress: ... but no teacher cached; give the list ...", "no teacher cached")
    rows, asked, _ = _stage(cfg, monkeypatch, stale=stale, artifacts=gone)
    out = capsys.readouterr().out
    assert "no retry of student-1: saved folder gone" in out and "retrying" not in out
    assert "quantize stage: no retry of an earlier run's errors: no teacher cached\n" in out
    assert asked == [] and rows == results.read_rows(tmp_path, "quantize", "compress-x")
    # a model lacking a listed variant still needs the teacher: refused as before
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "distill.quantize=[int8,bf16]"])
    (tmp_path / "students" / "compress-x" / "student-1").mkdir()
    with pytest.raises(JobError, match="but no teacher cached; give the list"):
        _stage(cfg, monkeypatch, stale=stale, artifacts=gone)


def test_a_list_the_rows_already_cover_asks_for_nothing(tmp_path, monkeypatch):
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "distill.quantize=[int8]"])
    _sweep_on_disk(tmp_path, ("fp32", "int8", "int8_emb"))  # a shorter list: int8_emb's rows stay
    rows, asked, prepared = _stage(cfg, monkeypatch)
    assert asked == [] and prepared == [] and len(rows) == 4 * 3


def test_models_of_failed_trials_and_models_without_rows_are_left_alone(tmp_path, monkeypatch):
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "distill.quantize=[int8,bf16]"])
    _sweep_on_disk(tmp_path)
    earlier = results.read_rows(tmp_path, "quantize", "compress-x")
    results.write_rows(tmp_path, "quantize", "compress-x",  # student-1 trained but its rows are gone
                       [r for r in earlier if r["trial_key"] != "student-1"])
    _, asked, _ = _stage(cfg, monkeypatch, errors=["student-0: RuntimeError: out of memory"])
    assert [m["trial_key"] for m in asked[0]] == ["teacher", "bilstm-budget"]
    kept = [r for r in results.read_rows(tmp_path, "quantize", "compress-x") if r["trial_key"] == "student-0"]
    assert {(r["variant"], r["accuracy"]) for r in kept} == {("fp32", 0.5), ("int8", 0.5)}


def test_a_saved_folder_gone_is_refused_before_any_model_is_quantized(tmp_path, monkeypatch):
    from ray_jobs.errors import JobError

    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "distill.quantize=[int8,bf16]"])
    _sweep_on_disk(tmp_path)
    (tmp_path / "students" / "compress-x" / "student-1").rmdir()
    with pytest.raises(JobError, match=r"their folders are gone \(.*students/compress-x/student-1\); give the list"):
        _stage(cfg, monkeypatch)


def test_a_teacher_no_longer_cached_is_refused_not_fine_tuned_again(tmp_path, monkeypatch):
    """The stage quantizes against the teacher the students were distilled from: a teacher
    fine-tuned again would be another one (`prepare_teacher(..., reuse_only=True)`)."""
    from ray_jobs.errors import JobError
    from training.finetune import NotCached

    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}"])
    train_cfg = CompressTrainConfig(finetune=cfg.finetune, distill=cfg.distill)
    asked = []

    def on_worker(cfg_, fn, *args, **kwargs):
        asked.append(kwargs)
        raise NotCached("no fine-tuned teacher cached in /x/teachers/k")

    monkeypatch.setattr(compress.sweep, "call_on_worker", on_worker)
    with pytest.raises(JobError, match=r"but no fine-tuned teacher cached in /x/teachers/k; give the list"):
        compress.cached_teacher(cfg, train_cfg)
    assert asked == [{"reuse_only": True}]


def test_the_rows_name_the_variants_they_were_quantized_under(monkeypatch):
    monkeypatch.setattr(compress, "saved_variant_rows", lambda m, artifacts, train_cfg, variants: [
        {"variant": v} for v in ["fp32", *variants]])
    monkeypatch.setattr(compress.ray, "get_runtime_context", lambda: type("C", (), {"get_node_id": lambda self: "n"})())
    model = {"trial_key": "student-0", "kind": "student", "variants": ["int8", "bf16"]}
    rows = compress._requantize("artifacts", None, model, device="cpu")
    assert [json.loads(r.pop("quantize_config")) for r in rows] == [{"variants": ["int8", "bf16"]}] * 3
    assert rows == [{"variant": v, "trial_key": "student-0", "model": "student-0", "kind": "student", "node_id": "n"}
                    for v in ("fp32", "int8", "bf16")]


def test_the_job_runs_the_stage_only_with_a_list(tmp_path):
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}"])
    assert cfg.distill.quantize  # smoke's list: the e2e tests run the stage through the job
    off = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, quantize=()))
    assert compress.sweep_id(off) != compress.sweep_id(cfg)


def test_the_stage_retries_only_errors_written_before_this_runs_trials(tmp_path, monkeypatch):
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "distill.quantize=[int8]"])
    _sweep_on_disk(tmp_path)
    earlier = _with_error(tmp_path, "teacher", "int8")
    job = compress.sweep.Sweep(job="compress", sweep_id="compress-x", fn=None, trials=[], tables=(), params={},
                               stamp=STAMP)

    def run_sweep(cfg_, job_, resume):  # this run's trial writes an error row of its own
        assert resume is True
        _with_error(tmp_path, "student-1", "int8")
        return compress.sweep.SweepOutcome(tmp_path / "compress-x", {"distill": []}, ["bilstm-budget: boom"], restored=False)

    seen = []

    def stage(errors, stale):
        seen.append((list(errors), stale))
        return ["the stage's rows"], ["student-0: quantize stage: OSError: corrupt"]

    monkeypatch.setattr(compress.sweep, "run_sweep", run_sweep)
    outcome = compress.sweep_then_quantize(cfg, job, True, stage)
    assert seen == [(["bilstm-budget: boom"], earlier)]  # not student-1's: that waits for the next run
    assert outcome.rows["quantize"] == ["the stage's rows"]
    assert outcome.errors == ["bilstm-budget: boom", "student-0: quantize stage: OSError: corrupt"]
    off = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, quantize=()))
    assert compress.sweep_then_quantize(off, job, True, stage).errors == ["bilstm-budget: boom"]
    assert len(seen) == 1  # no list: no stage
