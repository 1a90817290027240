"""The pruning job: code-to-text model -> a Tune sweep of lottery-ticket schedules -> quantize.

    config -> checks (results_dir, data, teacher, sequence lengths, schedules and their counts) -> prepare_seq2seq (fine-tune
    or reuse; on a worker) -> one trial per schedule (run_schedule reports a row per round)
    -> prune table (and the epochs table: the fine-tuning's curve, trial_key seq2seq)
    -> quantize_rows for the unpruned model and each schedule's last round
    (on a worker) -> quantize table. Pruned states live under results_dir/pruned/SWEEP_ID.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
import torch

from ray_jobs import results, sweep
from ray_jobs.compress import (
    CacheGone,
    check_seq_lens,
    from_cache,
    has_curve,
    no_retry,
    replace_model_rows,
    retrying,
    stage_failure,
    teacher_dims,
    write_curve,
)
from ray_jobs.config import JobConfig, code_version, config_hash, identity_hash
from ray_jobs.errors import JobError, check_results_dir
from ray_jobs.precision import PRUNE_KEYS, pin_auto
from search.space import Teacher
from training.data import code_to_text_splits, code_to_text_view
from training.models import TeacherConfig
from training.prune import (
    RECIPE,
    check_prunes_some_but_not_all,
    prunable_sizes,
    run_schedule,
    schedules,
)
from training.quantize import QuantizeConfig, quantize_rows
from training.seq2seq import extra_train_pairs, prepare_seq2seq

# The sections whose values decide what the pruning sweep computes (its identity). The
# quantization settings are not among them: the quantize stage runs after the sweep, from the
# saved rounds, so a change there re-quantizes a finished sweep's models instead of pruning
# them again (each quantize row's `quantize_config` names the settings it was measured under).
IDENTITY = ("data", "teacher", "seq2seq", "prune")
# Every section the job reads: what the rows' stamps hash (`config_hash`).
SECTIONS = (*IDENTITY, "quantize")


# The dotted keys of SECTIONS `read_settings` resets: two sweeps that differ only in them are one
# job's (a test holds this in step with read_settings).
UNREAD = ("data.task", "data.labeled_fraction", "teacher.pair_mode")


def read_settings(cfg: JobConfig) -> JobConfig:
    """`cfg` with what this job never reads at its defaults: the data's classification fields
    (`code_to_text_view`) and the teacher's pair mode (the top-level seed is outside SECTIONS).
    What the job's identity and stamp hash: a change for the compression job alone in a config
    both jobs read (`demo`) reruns no pruning."""
    return dataclasses.replace(cfg, data=code_to_text_view(cfg.data),
                               teacher=dataclasses.replace(cfg.teacher, pair_mode=TeacherConfig.pair_mode))


def sweep_id(cfg: JobConfig) -> str:
    """The job's identity: the settings its sweep reads (`read_settings`, all but the
    quantize section), the contents of its data and the rounds' recipe (`training.prune.RECIPE`)."""
    s = cfg.seq2seq
    return f"prune-{identity_hash(read_settings(cfg), IDENTITY, s.train_extra, s.max_train_extra, recipe=RECIPE)[:12]}"


def finished_schedules(specs: list[dict], errors: list[str]) -> list[str]:
    """The trial keys of the schedules that did not fail (`errors`: "KEY: message", the sweep's
    failed trials). A failed schedule's last round on disk is partial: quantized now, its rows
    would stand for it after a resume had finished it."""
    return [s["trial_key"] for s in specs if not any(e.startswith(f"{s['trial_key']}:") for e in errors)]


def trial_specs(cfg: JobConfig) -> list[dict]:
    """One spec per schedule of the grid in cfg.prune."""
    grid = schedules(cfg.prune)  # its values were checked when the config was read
    if not grid:
        raise JobError("prune: the schedule grid is empty (a list in the prune section is empty)")
    return [{"trial_key": s["schedule"], "schedule": s} for s in grid]


def check_schedule_counts(cfg: JobConfig, teacher: Teacher) -> None:
    """JobError naming prune.rate when a schedule's round 1 prunes no weight or its last round
    every weight (of the set, or of a matrix layerwise), judged on the prunable matrices'
    sizes from the teacher's and decoder's dimensions: before fine-tuning, not in a trial."""
    for schedule in schedules(cfg.prune):
        sizes = prunable_sizes(schedule["scope"], layers=teacher.layers, hidden=teacher.hidden, ffn=teacher.ffn,
                               decoder_layers=cfg.seq2seq.decoder_layers, decoder_ffn=cfg.seq2seq.decoder_ffn)
        try:
            check_prunes_some_but_not_all(sizes, schedule["rounds"], cfg.prune.rate, cfg.prune.rate_of,
                                          schedule["method"])
        except ValueError as exc:
            raise JobError(f"prune.{exc} (schedule {schedule['schedule']})") from None


def check_train_extra(cfg: JobConfig, splits: dict) -> None:
    """Extra training data: readable (a bad record names its file:line) and not all held out."""
    if cfg.seq2seq.train_extra and not extra_train_pairs(cfg.seq2seq, splits["valid"] + splits["test"]):
        raise JobError(f"seq2seq.train_extra: no pair left in {list(cfg.seq2seq.train_extra)} "
                       "once those sharing a function or summary with valid/test are dropped")


def _progress(message: str) -> None:
    print(message, flush=True)  # a worker's stdout reaches the driver's console through Ray


def prune_trial(spec: dict, ctx: sweep.TrialContext) -> None:
    """Tune trial: the rounds of one schedule, a row per round. A restarted trial resumes
    after the last round saved under `pruned_dir` and reports the saved rounds again (rows
    replace their own round's, so a row lost from a moved table file comes back)."""
    torch.set_num_threads(ctx.threads)
    p = ctx.params
    run_schedule(spec["schedule"], p["artifacts"], p["cfg"].prune,
                 Path(p["pruned_dir"]) / spec["trial_key"], report=ctx.report, device=ctx.device,
                 origin={"node_id": ctx.node_id, "device": ctx.device})


def last_states(pruned_dir: Path, keys: list[str]) -> dict[str, str]:
    """schedule -> state file of its last round (run_schedule keeps only the latest state)."""
    out = {}
    for key in keys:
        states = sorted((pruned_dir / key).glob("round_*/state.safetensors"))
        if states:
            out[key] = str(states[-1])
    return out


def _quantize(artifacts, cfg, pruned, scopes, unpruned, *, device: str) -> list[dict]:
    rows = quantize_rows(artifacts, cfg, pruned=pruned, scopes=scopes, device=device, unpruned=unpruned)
    node = ray.get_runtime_context().get_node_id()
    return [{**r, "node_id": node} for r in rows]  # each row names its device: int8 runs on CPU


def quantize_settings(cfg: QuantizeConfig) -> str:
    """The quantize section as JSON text: each quantize row's `quantize_config`."""
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


def quantize_stage(cfg: JobConfig, artifacts_of: Callable[[], Any], sid: str, keys: list[str],
                   stamp: dict) -> tuple[list[dict], list[str]]:
    """quantize rows for the unpruned model and each schedule's last round: only the models
    without rows under this command's quantize settings are quantized (a resumed sweep whose
    schedule failed before; every model of a finished sweep run again with other settings,
    its pruning restored, not redone); none with `quantize.variants: []` (the stage is off:
    before, it loaded every model for no row; the sweep's rows are returned). A model
    quantized again has its earlier rows replaced: the table holds one quantization per
    model, the latest, which each row's `quantize_config` names. So is a model one of whose rows
    under these settings holds an error (every row here is an earlier run's: the stage is
    their only writer; a kernel this machine lacks, say, is retried on the next run, on
    another machine or library), unless the code-to-text model is no longer cached: a retry
    alone then leaves the rows with a printed line. `artifacts_of()` gives the code-to-text
    model's artifacts, called only when a model is left to quantize. Each model is quantized
    in its own task, one after another (their latencies are not timed against each other's
    load). Returns the sweep's quantize rows and the models whose quantization failed ("KEY:
    quantize stage: message"): the others' rows are written all the same (each model's as it
    ends, so an interrupt keeps those already done), and the next run quantizes the failed
    ones again."""
    if not cfg.quantize.variants:  # the rows of an earlier run stay what the sweep holds
        return results.read_rows(cfg.results_dir, "quantize", sid), []
    settings = quantize_settings(cfg.quantize)
    pruned = last_states(Path(cfg.results_dir) / "pruned" / sid, keys)
    earlier = results.read_rows(cfg.results_dir, "quantize", sid)
    current = [r for r in earlier if r.get("quantize_config") == settings]
    failed = {(r["trial_key"], r["variant"]) for r in current if r.get("error")}
    missing = {"unpruned", *pruned} - {r["trial_key"] for r in current}
    retry = {key for key, _ in failed} & {"unpruned", *pruned}  # a model whose round is there
    if not missing | retry:
        return earlier, []
    try:
        artifacts = artifacts_of()
    except CacheGone as exc:
        if missing:
            raise
        no_retry(exc.gone)
        return earlier, []
    if retry:
        retrying([f"{k} {v}" for k, v in sorted(failed) if k in retry])
    missing |= retry
    scopes = {s["schedule"]: s["scope"] for s in schedules(cfg.prune)}
    # the unpruned model's sparsity over the set the sweep prunes (its natural zeros)
    scopes["unpruned"] = cfg.prune.scopes[0] if len(set(cfg.prune.scopes)) == 1 else "all"
    calls = {**({"unpruned": ({}, True)} if "unpruned" in missing else {}),
             **{k: ({k: v}, False) for k, v in pruned.items() if k in missing}}
    rows, failures = earlier, []
    for key, (state, unpruned) in calls.items():
        try:
            new = sweep.call_on_worker(cfg, _quantize, artifacts, cfg.quantize, state, scopes, unpruned)
        except Exception as exc:  # noqa: BLE001 - named in the job's failures; the others' rows are kept
            failures.append(stage_failure(key, exc))
            continue
        # a requantized model's old rows go; written as each model ends: an interrupt keeps them
        rows = replace_model_rows(cfg.results_dir, sid, rows, key, [
            {**r, **stamp, "trial_key": r["model"], "quantize_config": settings, "time": time.time()} for r in new])
    return rows, failures


def cached_model(prepare: Callable[..., Any]) -> Any:
    """The code-to-text model a finished sweep pruned, from its cache (`compress.from_cache`:
    fine-tuned again, its unpruned rows would be another model's than the schedules were
    pruned from)."""
    return from_cache(prepare, "prune: the finished sweep's models are left to quantize under the command's "
                               "quantize settings, against the code-to-text model its schedules were pruned from",
                      "give the quantize settings the sweep ran with, or another results_dir to prune anew")


def seq_lens(cfg: JobConfig, teacher: Teacher) -> dict[str, tuple[int, int]]:
    """The pruning job's lengths and their limits: the encoder numbers one position per source
    token; the decoder embeds the target tokens with the encoder's embeddings, all but the
    last (never fed back), so target_len may be one above the usable positions."""
    limit = teacher.usable_positions
    return {"seq2seq.source_len": (cfg.seq2seq.source_len, limit),
            "seq2seq.target_len": (cfg.seq2seq.target_len, limit + 1)}


def check_inputs(cfg: JobConfig) -> list[dict]:
    """The job's cheap input checks (results_dir, schedules, data, extra data, teacher,
    sequence lengths): bad input fails before Ray starts (and, in `demo`, before the
    compression job). Its trial specs."""
    check_results_dir(cfg.results_dir)
    specs = trial_specs(cfg)
    check_train_extra(cfg, code_to_text_splits(cfg.data))
    teacher = teacher_dims(cfg)
    check_seq_lens(teacher, seq_lens(cfg, teacher))
    check_schedule_counts(cfg, teacher)
    return specs


def run(cfg: JobConfig, *, resume: bool = False) -> sweep.SweepOutcome:
    """Run (or resume) the pruning job; returns the sweep outcome (rows from disk)."""
    specs = check_inputs(cfg)
    sid = sweep_id(cfg)
    with sweep.exclusive(cfg, sid):  # a second driver of this sweep is refused before any write
        return _run_sweep(cfg, sid, specs, resume)


def _run_sweep(cfg: JobConfig, sid: str, specs: list[dict], resume: bool) -> sweep.SweepOutcome:
    """The job's part that writes: under the sweep's lock."""
    stamp = {"config_hash": config_hash(read_settings(cfg), SECTIONS), "code_version": code_version()}
    finished = sweep.check_restore_settings(cfg, sid, len(specs))
    started = sweep.init_ray(cfg)
    try:
        sweep.precheck(cfg)
        pinned, resolved = pin_auto(cfg, sid, PRUNE_KEYS, finished)
        sweep.record_config(cfg, "prune", sid, stamp, finished, resolved)

        def prepare(**kwargs):
            return sweep.call_on_worker(cfg, prepare_seq2seq, pinned.seq2seq, cfg.data, cfg.teacher,
                                        str(Path(cfg.results_dir) / "cache"), progress=_progress, **kwargs)

        # A finished sweep trains nothing when restored: its model's curve stays that of the run
        # that pruned it (unless it is gone: written again), and the model is prepared only if
        # the quantize stage has work left.
        artifacts = None
        if not finished or not has_curve(cfg.results_dir, sid, "seq2seq"):
            artifacts = prepare()
            write_curve(cfg.results_dir, sid, artifacts.metrics, stamp, "seq2seq", pinned.seq2seq.precision)
        params = {"artifacts": artifacts, "cfg": pinned,
                  "pruned_dir": str(Path(cfg.results_dir) / "pruned" / sid)}
        job = sweep.Sweep(job="prune", sweep_id=sid, fn=prune_trial, trials=specs,
                          tables=("prune",), params=params, stamp=stamp)
        outcome = sweep.run_sweep(cfg, job, resume=resume)
        outcome.rows["quantize"], failures = quantize_stage(
            cfg, (lambda: artifacts) if artifacts else lambda: cached_model(prepare), sid,
            finished_schedules(specs, outcome.errors), stamp)
        outcome.errors.extend(failures)  # the job exits 1 naming them, after its summary
        return outcome
    finally:
        if started:
            ray.shutdown()
