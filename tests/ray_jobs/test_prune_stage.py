"""The pruning job's quantization stage quantizes only the models that have no rows yet under
the command's quantize settings."""

import dataclasses
import json

from ray_jobs import prune, results
from ray_jobs.config import load_config, resolve_config_path


def _last_rounds_on_disk(cfg, root):
    """Each schedule's last round of sweep prune-x on disk (an empty state); the trial keys."""
    keys = [s["trial_key"] for s in prune.trial_specs(cfg)]
    for key in keys:
        (root / "pruned" / "prune-x" / key / "round_002").mkdir(parents=True)
        (root / "pruned" / "prune-x" / key / "round_002" / "state.safetensors").write_bytes(b"")
    return keys


def test_quantize_stage_quantizes_only_the_models_without_rows(tmp_path, monkeypatch):
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}"])
    keys = _last_rounds_on_disk(cfg, tmp_path)
    asked, scopes_asked, prepared = [], [], []

    def artifacts_of():  # the code-to-text model, prepared (a Ray task) only when needed
        prepared.append(1)
        return "artifacts"

    def quantize_on_worker(cfg_, fn, artifacts, qcfg, pruned, scopes, unpruned):
        # stands in for the Ray task, one per model: records what the stage asks for, one fp32 row
        assert artifacts == "artifacts" and len(pruned) + unpruned == 1
        asked.append(["unpruned"] if unpruned else sorted(pruned))
        scopes_asked.append(scopes)
        return [{"model": m, "variant": "fp32", "bleu_greedy": 1.0}
                for m in (["unpruned"] if unpruned else []) + sorted(pruned)]

    monkeypatch.setattr(prune.sweep, "call_on_worker", quantize_on_worker)
    stamp = {"config_hash": "h", "code_version": "v"}
    first, failures = prune.quantize_stage(cfg, artifacts_of, "prune-x", keys[:1], stamp)  # the second schedule failed
    assert asked == [["unpruned"], keys[:1]] and {r["trial_key"] for r in first} == {"unpruned", keys[0]}
    assert failures == []
    rows, _ = prune.quantize_stage(cfg, artifacts_of, "prune-x", keys, stamp)  # resumed: it finished
    assert asked[2:] == [[k] for k in keys[1:]]
    assert sorted(r["trial_key"] for r in rows) == sorted(["unpruned", *keys])
    assert sorted(r["trial_key"] for r in results.read_rows(tmp_path, "quantize", "prune-x")) == sorted(
        ["unpruned", *keys])
    prune.quantize_stage(cfg, artifacts_of, "prune-x", keys, stamp)  # all there: nothing asked
    assert len(asked) == len(keys) + 1 and len(prepared) == 2  # nor the model prepared
    # each model's sparsity is counted over its schedule's scope; the unpruned model's over
    # the sweep's one scope, or over every prunable weight when the sweep has several
    assert scopes_asked[0] == {**{s["schedule"]: s["scope"] for s in prune.schedules(cfg.prune)},
                               "unpruned": cfg.prune.scopes[0]}
    mixed = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path / 'mixed'}",
                                                        "prune.scopes=[encoder,decoder]"])
    prune.quantize_stage(mixed, artifacts_of, "prune-y", [], stamp)
    assert scopes_asked[-1]["unpruned"] == "all"


def test_other_quantize_settings_requantize_every_model_and_replace_its_rows(tmp_path, monkeypatch):
    """A finished sweep run again with other quantize settings (the same sweep id): each model
    is quantized again under them, and its rows of the earlier settings are replaced, not
    kept beside the new ones (a variant dropped from the list leaves no row behind)."""
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "quantize.variants=[fp32,int8]"])
    keys = _last_rounds_on_disk(cfg, tmp_path)
    asked = []

    def quantize_on_worker(cfg_, fn, artifacts, qcfg, pruned, scopes, unpruned):
        asked.append((sorted(pruned), unpruned, qcfg.variants))
        assert len(pruned) + unpruned == 1
        return [{"model": m, "variant": v, "bleu_greedy": 1.0}
                for m in (["unpruned"] if unpruned else []) + sorted(pruned) for v in qcfg.variants]

    monkeypatch.setattr(prune.sweep, "call_on_worker", quantize_on_worker)
    stamp = {"config_hash": "h", "code_version": "v"}
    prune.quantize_stage(cfg, lambda: "artifacts", "prune-x", keys, stamp)
    again = dataclasses.replace(cfg, quantize=dataclasses.replace(cfg.quantize, variants=("fp32", "fp16")))
    prune.quantize_stage(again, lambda: "artifacts", "prune-x", keys, stamp)
    # every model, under the new settings
    assert asked[len(keys) + 1:] == [([], True, ("fp32", "fp16"))] + [([k], False, ("fp32", "fp16")) for k in keys]
    rows = results.read_rows(tmp_path, "quantize", "prune-x")
    assert sorted((r["trial_key"], r["variant"]) for r in rows) == sorted(
        (m, v) for m in ["unpruned", *keys] for v in ("fp32", "fp16"))  # int8's rows are gone
    assert {r["quantize_config"] for r in rows} == {prune.quantize_settings(again.quantize)}
    assert json.loads(rows[0]["quantize_config"])["variants"] == ["fp32", "fp16"]
    prune.quantize_stage(again, lambda: "artifacts", "prune-x", keys, stamp)  # the same settings: nothing
    assert len(asked) == 2 * (len(keys) + 1)


def test_a_model_with_a_variant_that_failed_in_an_earlier_run_is_quantized_again(tmp_path, monkeypatch, capsys):
    import pytest

    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "quantize.variants=[fp32,int8]"])
    keys = [s["trial_key"] for s in prune.trial_specs(cfg)]
    assert len(keys) >= 2
    for key in keys:
        (tmp_path / "pruned" / "prune-x" / key / "round_002").mkdir(parents=True)
        (tmp_path / "pruned" / "prune-x" / key / "round_002" / "state.safetensors").write_bytes(b"")
    asked = []

    def quantize_on_worker(cfg_, fn, artifacts, qcfg, pruned, scopes, unpruned):
        asked.append((sorted(pruned), unpruned))
        return [{"model": m, "variant": v, "bleu_greedy": 1.0, "error": "RuntimeError: no kernel" if m != "unpruned"
                 and v == "int8" and len(asked) <= len(keys) + 1 else None}
                for m in (["unpruned"] if unpruned else []) + sorted(pruned) for v in qcfg.variants]

    monkeypatch.setattr(prune.sweep, "call_on_worker", quantize_on_worker)
    stamp = {"config_hash": "h", "code_version": "v"}
    prune.quantize_stage(cfg, lambda: "artifacts", "prune-x", keys, stamp)  # every schedule's int8 fails

    def gone():
        raise prune.CacheGone("prune: ... but no code-to-text model cached; give ...", "no code-to-text model cached")

    assert len(prune.quantize_stage(cfg, gone, "prune-x", keys, stamp)[0]) == 2 * (len(keys) + 1)
    out = capsys.readouterr().out
    assert "quantize stage: no retry of an earlier run's errors: no code-to-text model cached\n" in out
    assert "retrying" not in out
    # the next run retries them, but not a schedule whose trial failed in it
    prune.quantize_stage(cfg, lambda: "artifacts", "prune-x", keys[:1], stamp)
    assert asked[len(keys) + 1:] == [([keys[0]], False)]
    assert f"retrying 1 variant(s) whose rows from an earlier run hold an error: {keys[0]} int8\n" in capsys.readouterr().out
    prune.quantize_stage(cfg, lambda: "artifacts", "prune-x", keys, stamp)
    assert asked[len(keys) + 2:] == [([k], False) for k in keys[1:]]
    rows = results.read_rows(tmp_path, "quantize", "prune-x")
    assert sorted((r["trial_key"], r["variant"]) for r in rows) == sorted(
        (m, v) for m in ["unpruned", *keys] for v in ("fp32", "int8"))
    assert [r["error"] for r in rows] == [None] * len(rows)
    prune.quantize_stage(cfg, lambda: "artifacts", "prune-x", keys, stamp)  # none left to retry
    assert len(asked) == 2 * len(keys) + 1
    # a model without rows under the settings still needs the model: refused as before
    other = dataclasses.replace(cfg, quantize=dataclasses.replace(cfg.quantize, variants=("fp32",)))
    with pytest.raises(prune.CacheGone, match="no code-to-text model cached; give"):
        prune.quantize_stage(other, gone, "prune-x", keys, stamp)


def test_one_models_failure_loses_none_of_the_others_rows_and_a_rerun_quantizes_only_it(tmp_path, monkeypatch):
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "quantize.variants=[fp32,int8]"])
    keys = _last_rounds_on_disk(cfg, tmp_path)
    asked = []

    def quantize_on_worker(cfg_, fn, artifacts, qcfg, pruned, scopes, unpruned):
        (model,) = ["unpruned"] if unpruned else pruned
        asked.append(model)
        if model == keys[0] and len(asked) <= len(keys) + 1:
            raise OSError("state.safetensors is corrupt\nsee above")
        return [{"model": model, "variant": v, "bleu_greedy": 1.0} for v in qcfg.variants]

    monkeypatch.setattr(prune.sweep, "call_on_worker", quantize_on_worker)
    rows, failures = prune.quantize_stage(cfg, lambda: "artifacts", "prune-x", keys, {})
    assert failures == [f"{keys[0]}: quantize stage: OSError: state.safetensors is corrupt\\nsee above"]
    on_disk = results.read_rows(tmp_path, "quantize", "prune-x")
    assert sorted((r["trial_key"], r["variant"]) for r in rows) == sorted((r["trial_key"], r["variant"]) for r in on_disk)
    assert sorted((r["trial_key"], r["variant"]) for r in rows) == sorted(
        (m, v) for m in ["unpruned", *keys[1:]] for v in ("fp32", "int8"))  # the others' rows are written
    rows, failures = prune.quantize_stage(cfg, lambda: "artifacts", "prune-x", keys, {})
    assert asked[len(keys) + 1:] == [keys[0]] and failures == []
    assert len(rows) == 2 * (len(keys) + 1)


def test_a_code_to_text_model_no_longer_cached_is_refused_not_fine_tuned_again():
    """A finished sweep's models quantized under other settings: the unpruned model must be the
    one its schedules were pruned from (`prepare_seq2seq(..., reuse_only=True)`)."""
    import pytest

    from ray_jobs.errors import JobError
    from training.finetune import NotCached

    asked = []

    def prepare(**kwargs):
        asked.append(kwargs)
        raise NotCached("no fine-tuned code-to-text model cached in /x/seq2seq-k")

    with pytest.raises(JobError, match=r"but no fine-tuned code-to-text model cached in /x/seq2seq-k; give the "
                                       r"quantize settings the sweep ran with"):
        prune.cached_model(prepare)
    assert asked == [{"reuse_only": True}]
    assert prune.cached_model(lambda **kwargs: kwargs) == {"reuse_only": True}


def test_no_variants_turn_the_stage_off(tmp_path, monkeypatch):
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "quantize.variants=[]"])

    def quantize_on_worker(*args):
        raise AssertionError("quantize.variants=[] loaded the models to quantize")

    def artifacts_of():
        raise AssertionError("quantize.variants=[] prepared the code-to-text model")

    monkeypatch.setattr(prune.sweep, "call_on_worker", quantize_on_worker)
    keys = [s["trial_key"] for s in prune.trial_specs(cfg)]
    assert prune.quantize_stage(cfg, artifacts_of, "prune-x", keys, {"config_hash": "h", "code_version": "v"}) == ([], [])
    assert results.table_names(tmp_path) == []  # no empty quantize table either
    # a finished sweep run again with the stage off: its rows of an earlier run are the outcome's
    results.write_rows(tmp_path, "quantize", "prune-x", [{"trial_key": "unpruned", "variant": "fp32"}])
    assert [r["variant"] for r in prune.quantize_stage(cfg, artifacts_of, "prune-x", keys, {})[0]] == ["fp32"]


def test_the_keys_the_pruning_job_does_not_read_are_exactly_those_read_settings_resets(tmp_path):
    """`prune.UNREAD` (what a seeds' spread ignores in the recorded configs) in step with
    `read_settings` (what the sweep id hashes)."""
    from ray_jobs.config import to_dict
    from ray_jobs.summary import _flat

    base = load_config(resolve_config_path("demo"), [f"results_dir={tmp_path}"])
    changed = load_config(resolve_config_path("demo"), [f"results_dir={tmp_path}", "data.task=clone",
                                                        "data.labeled_fraction=0.3", "teacher.pair_mode=joint"])
    assert prune.sweep_id(changed) == prune.sweep_id(base)  # demo's teacher.pair_mode is separate
    off_default = load_config(resolve_config_path("demo"), [f"results_dir={tmp_path}", "data.task=clone",
                                                            "data.labeled_fraction=0.3"])
    raw, read = _flat(to_dict(off_default)), _flat(to_dict(prune.read_settings(off_default)))
    assert {k for k in raw if raw[k] != read[k]} == set(prune.UNREAD)


def test_a_failed_schedule_is_not_quantized_as_if_it_had_finished():
    """Its last round on disk is partial; the error names its trial key before a colon, so
    `s_r1` is not taken for the failed `s_r10`."""
    specs = [{"trial_key": k} for k in ("l1_r1", "l1_r10", "random_r1")]
    assert prune.finished_schedules(specs, []) == ["l1_r1", "l1_r10", "random_r1"]
    assert prune.finished_schedules(specs, ["l1_r10: RuntimeError: boom"]) == ["l1_r1", "random_r1"]


def test_a_restarted_schedule_trial_passes_on_every_round_run_schedule_reports(tmp_path, monkeypatch):
    """A restarted trial whose last checkpoint named round 2 passes on every row `run_schedule`
    reports, the saved rounds 0 and 1 included (that `run_schedule` re-reports the rounds saved
    on disk is tested in tests/training/test_prune.py): each row replaces its own round's, and
    a row lost with a moved table file comes back. The trial used to pass on only the rounds
    from its checkpoint's on."""
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}"])
    saved_rounds = 2  # rounds 0 and 1 on disk; the schedule has 3

    def run_schedule(schedule, artifacts, prune_cfg, out_dir, *, report, device, origin):
        assert origin == {"node_id": "n0", "device": "cpu"}  # saved with each new round's row
        for r in range(3):  # as the real one: the saved rounds re-reported, then the rest run
            report({"round": r, "saved": r < saved_rounds})

    monkeypatch.setattr(prune, "run_schedule", run_schedule)
    reported = []

    class Restarted:
        threads, device, node_id = 1, "cpu", "n0"
        state = {"next_round": saved_rounds}  # a checkpoint of the run before
        params = {"artifacts": None, "cfg": cfg, "pruned_dir": str(tmp_path)}

        def report(self, row, **_):
            reported.append(row["round"])

    spec = prune.trial_specs(cfg)[0]
    prune.prune_trial(spec, Restarted())
    assert reported == [0, 1, 2]


def test_an_interrupted_stage_keeps_the_rows_of_the_models_it_finished(tmp_path, monkeypatch):
    import pytest

    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", "quantize.variants=[fp32]"])
    keys = _last_rounds_on_disk(cfg, tmp_path)

    def quantize_on_worker(cfg_, fn, artifacts, qcfg, pruned, scopes, unpruned):
        if not unpruned:
            raise KeyboardInterrupt  # Ctrl-C while the second model quantizes: not a model's failure
        return [{"model": "unpruned", "variant": "fp32", "bleu_greedy": 1.0}]

    monkeypatch.setattr(prune.sweep, "call_on_worker", quantize_on_worker)
    with pytest.raises(KeyboardInterrupt):
        prune.quantize_stage(cfg, lambda: "artifacts", "prune-x", keys, {})
    assert [(r["trial_key"], r["variant"]) for r in results.read_rows(tmp_path, "quantize", "prune-x")] == [
        ("unpruned", "fp32")]
