"""`precision: auto` is resolved once per sweep on the nodes its trials run on, recorded in the
sweep's `configs` row, and an unfinished sweep resumes only where it resolves the same."""

import json
import sys
from dataclasses import replace

import pytest
import ray.cloudpickle

from ray_jobs import results, sweep
from ray_jobs.config import load_config, resolve_config_path, to_dict
from ray_jobs.errors import ConfigError
from ray_jobs.precision import COMPRESS_KEYS, PRUNE_KEYS, pin_auto, ran_as
from training.finetune import resolve_precision

STAMP = {"config_hash": "h", "code_version": "v"}
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test's task functions, on the workers
HERE = resolve_precision("auto", "cpu")  # what this machine's CPU trains "auto" in
OTHER = "fp32" if HERE == "bf16" else "bf16"


def _cfg(tmp_path, *overrides):
    return load_config(None, [f"results_dir={tmp_path}/res", *overrides])


def _no_task(*args, **kwargs):
    raise AssertionError("no Ray task should resolve anything here")


def test_a_setting_without_auto_is_kept_and_resolves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "call_on_worker", _no_task)
    cfg = _cfg(tmp_path, "distill.precision=bf16", "seq2seq.precision=auto")  # auto, but not the job's key
    assert pin_auto(cfg, "compress-x", COMPRESS_KEYS, finished=False) == (cfg, {})


def test_auto_is_resolved_on_the_trial_nodes_and_recorded(local_ray, tmp_path):
    cfg = _cfg(tmp_path, "distill.precision=auto", "finetune.precision=bf16", "seq2seq.precision=auto")
    pinned, resolved = pin_auto(cfg, "compress-1", COMPRESS_KEYS, finished=False)
    assert resolved == {"distill.precision": HERE}
    # only the "auto" key is replaced: the trials and the teacher get an explicit precision
    assert pinned == replace(cfg, distill=replace(cfg.distill, precision=HERE))
    sweep.record_config(cfg, "compress", "compress-1", STAMP, False, resolved)
    config = json.loads(results.read_rows(cfg.results_dir, "configs", "compress-1")[-1]["config"])
    assert config["distill"]["precision"] == "auto" and config["resolved"] == resolved  # the setting and its value
    assert ran_as(cfg.results_dir, "compress-1", ["distill.precision"]) == resolved
    pinned, resolved = pin_auto(cfg, "prune-1", PRUNE_KEYS, finished=False)
    assert resolved == {"seq2seq.precision": HERE} and pinned.seq2seq.precision == HERE
    # resumed where it resolves the same: passes, and the row keeps saying so
    assert pin_auto(cfg, "compress-1", COMPRESS_KEYS, finished=False)[1] == {"distill.precision": HERE}


def _assigned(*, device):
    import ray

    return device, ray.get_runtime_context().get_assigned_resources()


def test_the_resolving_task_runs_with_one_trials_resources_on_each_node(local_ray, tmp_path):
    """Not the preparation's CPUs (resources.prepare_cpus): what a trial gets, where trials run."""
    import ray

    cfg = _cfg(tmp_path, "resources.cpus_per_trial=1", "resources.prepare_cpus=2")
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    assert sweep.call_on_each_node(cfg, _assigned) == {node: ("cpu", {"CPU": 1.0}) for node in nodes}


def _threads(tag, *, device):
    import ray
    import torch

    return tag, device, torch.get_num_threads(), ray.get_runtime_context().get_assigned_resources()


def test_calls_as_trials_run_each_with_one_trials_resources_and_threads(local_ray, tmp_path):
    """The compression job's quantize stage: a task per model, each as a trial (its CPUs and
    torch threads, not the preparation's), the results in the calls' order."""
    cfg = _cfg(tmp_path, "resources.cpus_per_trial=1", "resources.prepare_cpus=2")
    assert sweep.call_as_trials(cfg, _threads, [("a",), ("b",), ("c",)]) == [
        (tag, "cpu", 1, {"CPU": 1.0}) for tag in "abc"]


def _fails_on(tag, *, device):
    if tag == "b":
        raise ValueError("corrupt b")
    return tag


def test_a_failing_call_as_a_trial_loses_none_of_the_others_results(local_ray, tmp_path):
    cfg = _cfg(tmp_path, "resources.cpus_per_trial=1")
    ended = {}
    a, b, c = sweep.call_as_trials(cfg, _fails_on, [("a",), ("b",), ("c",)], on_result=ended.__setitem__)
    assert (a, c) == ("a", "c") and ended == {0: a, 1: b, 2: c}  # each handed over as it ended
    assert type(b) is ValueError and str(b) == "corrupt b"  # the worker's own exception, not Ray's wrapper


def test_where_no_node_fits_a_trial_yet_one_task_runs_where_ray_places_it(local_ray, tmp_path, monkeypatch):
    """An autoscaling cluster (resources.precheck=false) adds the node a trial needs on demand:
    the task itself asks for it, as a trial would."""
    import ray

    cfg = _cfg(tmp_path, "resources.cpus_per_trial=1")
    monkeypatch.setattr(ray, "nodes", lambda: [])  # as Ray lists a cluster whose trial nodes are not up yet
    assert sweep.call_on_each_node(cfg, _assigned) == {"": ("cpu", {"CPU": 1.0})}


def test_auto_is_bf16_only_where_every_trial_node_computes_it(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, "distill.precision=auto")
    for per_node, expected in (({"a": "bf16", "b": "bf16"}, "bf16"), ({"a": "bf16", "b": "fp32"}, "fp32"),
                               ({"a": "fp32"}, "fp32"), ({"": "bf16"}, "bf16")):  # "": no node fits yet
        monkeypatch.setattr(sweep, "call_on_each_node",
                            lambda cfg, fn, keys, per_node=per_node: {n: dict.fromkeys(keys, p) for n, p in per_node.items()})
        assert pin_auto(cfg, f"compress-{expected}", COMPRESS_KEYS, finished=False)[1] == {"distill.precision": expected}


def test_the_job_says_what_auto_trains_in_and_why_fp32_is_slower(tmp_path, monkeypatch, capsys):
    from ray_jobs.precision import resolution_line

    cfg = _cfg(tmp_path, "distill.precision=auto", "finetune.precision=auto")
    monkeypatch.setattr(sweep, "call_on_each_node", lambda cfg, fn, keys: {"a": dict.fromkeys(keys, "fp32")})
    pin_auto(cfg, "compress-x", COMPRESS_KEYS, finished=False)
    assert capsys.readouterr().out == (
        "precision auto: finetune.precision, distill.precision in fp32 (a trial node has no native bf16: "
        "AVX512-BF16, AMX or a GPU's bf16 units; fp32 training steps are slower than native bf16 ones, so the "
        "job takes longer than where bf16 is native)\n")
    assert resolution_line({"finetune.precision": "bf16", "distill.precision": "bf16"}) == (
        "precision auto: finetune.precision, distill.precision in bf16")
    assert resolution_line({"finetune.precision": "bf16", "distill.precision": "fp32"}).startswith(
        "precision auto: finetune.precision in bf16; distill.precision in fp32 (a trial node")
    pin_auto(cfg, "compress-x", COMPRESS_KEYS, finished=True)  # a finished sweep trains nothing: no line
    assert capsys.readouterr().out == ""


def test_an_unfinished_sweep_is_resumed_only_where_auto_resolves_as_it_ran(local_ray, tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, "distill.precision=auto")
    # a sweep that ran its trials on a machine resolving auto otherwise (its folder moved here)
    results.write_config(cfg.results_dir, "compress", "compress-2",
                         to_dict(cfg) | {"resolved": {"distill.precision": OTHER}}, STAMP)
    with pytest.raises(ConfigError, match=rf"^distill.precision: auto resolves to {HERE} on this cluster's trial "
                                          rf"nodes, but sweep compress-2 ran it as {OTHER} .* resume it where "
                                          rf"auto resolves to {OTHER}, or start another sweep: "
                                          rf"distill.precision={HERE}, or another results_dir$"):
        pin_auto(cfg, "compress-2", COMPRESS_KEYS, finished=False)
    # recorded before configs rows held "resolved": its distill rows say what they ran in
    results.write_config(cfg.results_dir, "compress", "compress-3", to_dict(cfg), STAMP)
    results.write_rows(cfg.results_dir, "distill", "compress-3",
                       [{"trial_key": "student-0", "precision": OTHER}, {"trial_key": "bilstm-paper", "precision": None}])
    with pytest.raises(ConfigError, match=rf"^distill.precision: auto resolves to {HERE} .* ran it as {OTHER} "):
        pin_auto(cfg, "compress-3", COMPRESS_KEYS, finished=False)
    # a finished sweep trains nothing: it keeps what it ran in, and no task runs
    monkeypatch.setattr(sweep, "call_on_each_node", _no_task)
    for sid in ("compress-2", "compress-3"):
        pinned, resolved = pin_auto(cfg, sid, COMPRESS_KEYS, finished=True)
        assert resolved == {"distill.precision": OTHER} and pinned.distill.precision == OTHER


def test_a_finished_sweep_resolves_only_what_it_does_not_tell(local_ray, tmp_path):
    cfg = _cfg(tmp_path, "distill.precision=auto", "finetune.precision=auto")
    results.write_config(cfg.results_dir, "compress", "compress-4",
                         to_dict(cfg) | {"resolved": {"finetune.precision": OTHER}}, STAMP)
    pinned, resolved = pin_auto(cfg, "compress-4", COMPRESS_KEYS, finished=True)
    assert resolved == {"finetune.precision": OTHER, "distill.precision": HERE}
    assert (pinned.finetune.precision, pinned.distill.precision) == (OTHER, HERE)


def test_a_sweep_that_tells_nothing_is_resolved_here(local_ray, tmp_path):
    cfg = _cfg(tmp_path, "distill.precision=auto")
    results.write_config(cfg.results_dir, "compress", "compress-5", to_dict(cfg), STAMP)  # no "resolved"
    results.write_rows(cfg.results_dir, "distill", "compress-5",  # rows of two precisions: no one answer
                       [{"trial_key": "student-0", "precision": "bf16"}, {"trial_key": "student-1", "precision": "fp32"}])
    assert ran_as(cfg.results_dir, "compress-5", ["distill.precision"]) == {}
    for finished in (False, True):  # nothing to compare with: what this cluster resolves
        assert pin_auto(cfg, "compress-5", COMPRESS_KEYS, finished)[1] == {"distill.precision": HERE}


@pytest.mark.parametrize("job", ["compress", "prune"])
def test_the_jobs_refuse_such_a_resume_before_any_work(local_ray, tmp_path, monkeypatch, job):
    """The real jobs on smoke's settings: the refusal comes before the teacher or the
    code-to-text model is prepared and before any row is written (the sweep's row is kept)."""
    import importlib

    module = importlib.import_module(f"ray_jobs.{job}")
    key = {"compress": "distill.precision", "prune": "seq2seq.precision"}[job]
    cfg = load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}/res", f"{key}=auto"])
    sid = module.sweep_id(cfg)
    results.write_config(cfg.results_dir, job, sid, to_dict(cfg) | {"resolved": {key: OTHER}}, STAMP)
    # an unfinished sweep on disk: Tune's experiment state is not what this check reads
    monkeypatch.setattr(sweep, "check_restore_settings", lambda *args: False)
    with pytest.raises(ConfigError, match=rf"^{key}: auto resolves to {HERE} .* ran it as {OTHER} "):
        module.run(cfg)
    assert results.table_names(cfg.results_dir) == ["configs"] and ran_as(cfg.results_dir, sid, [key]) == {key: OTHER}
    assert not (tmp_path / "res" / "cache").exists()
