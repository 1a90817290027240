"""`precision: auto`, resolved once per sweep on the nodes its trials run on.

"auto" trains in bf16 where the device computes it natively, else in fp32
(`training.finetune.resolve_precision`). A sweep's id hashes the setting, not what it resolves
to, so without this step a sweep resumed on another machine type (or a cluster whose nodes
differ) would mix precisions in one table. Here a job resolves each "auto" once before any
work: a Ray task with exactly one trial's resources on each alive node that can hold a trial,
bf16 only where every one of them computes it natively (a trial on one that does not would
emulate bf16, many times slower than fp32). Every trial and preparation of the sweep then runs
that precision; the `configs` row records it (its `resolved` entry); and an unfinished sweep
is resumed only where "auto" resolves as it ran.
"""

from __future__ import annotations

import dataclasses
import json

from ray_jobs import results, sweep
from ray_jobs.config import JobConfig
from ray_jobs.errors import ConfigError

# The dotted keys of each job's training precisions.
COMPRESS_KEYS = ("finetune.precision", "distill.precision")
PRUNE_KEYS = ("seq2seq.precision",)
# The table whose rows say what a key's steps ran in (their `precision`): a sweep recorded
# before `configs` rows held `resolved` (2026-12-07) still tells what it ran in.
_ROWS_OF = {"distill.precision": "distill", "seq2seq.precision": "prune"}


def _value(cfg: JobConfig, dotted: str):
    section, key = dotted.split(".")
    return getattr(getattr(cfg, section), key)


def _with_value(cfg: JobConfig, dotted: str, value) -> JobConfig:
    section, key = dotted.split(".")
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{key: value})})


def resolve_here(keys: list[str], *, device: str) -> dict[str, str]:
    """What "auto" resolves to on `device` of this process's machine, for each key (a worker runs it)."""
    from training.finetune import resolve_precision  # torch: on the worker only

    return {key: resolve_precision("auto", device) for key in keys}


def ran_as(results_dir: str, sweep_id: str, keys: list[str]) -> dict[str, str]:
    """What the sweep on disk ran each of `keys` in, where it tells: the resolution its
    `configs` row records, else the one precision its rows of the key's table name (none for a
    key whose rows name none, or several)."""
    rows = results.read_rows(results_dir, "configs", sweep_id)
    found = json.loads(rows[-1]["config"]).get("resolved", {}) if rows else {}
    for key in keys:
        if key not in found and key in _ROWS_OF:
            named = results.precisions(results_dir, _ROWS_OF[key], sweep_id)
            if len(named) == 1:
                found[key] = named.pop()
    return {key: found[key] for key in keys if key in found}


def resolve_on_cluster(cfg: JobConfig, keys: list[str]) -> dict[str, str]:
    """Each key's "auto" for the whole cluster: bf16 where every node that can hold a trial
    resolves it to bf16 (`sweep.call_on_each_node`), else fp32."""
    per_node = sweep.call_on_each_node(cfg, resolve_here, keys)
    return {key: "bf16" if all(found[key] == "bf16" for found in per_node.values()) else "fp32" for key in keys}


def pin_auto(cfg: JobConfig, sweep_id: str, keys: tuple[str, ...], finished: bool) -> tuple[JobConfig, dict[str, str]]:
    """`cfg` with each of `keys` set to "auto" replaced by the precision it resolves to for this
    sweep, and that resolution ({} when no key is "auto"). Needs Ray up.

    A finished sweep (it trains nothing) keeps what it ran in (`ran_as`); the keys it does not
    tell are resolved on the cluster. Otherwise every key is (`resolve_on_cluster`), and an
    unfinished sweep that ran a key otherwise is refused (ConfigError) before any work: its
    finished trials' rows were trained in what it ran."""
    autos = [key for key in keys if _value(cfg, key) == "auto"]
    if not autos:
        return cfg, {}
    before = ran_as(cfg.results_dir, sweep_id, autos)
    if finished:
        todo = [key for key in autos if key not in before]
        resolved = before | (resolve_on_cluster(cfg, todo) if todo else {})
    else:
        resolved = resolve_on_cluster(cfg, autos)
        _check_as_ran(sweep_id, before, resolved)
        print(resolution_line(resolved), flush=True)
    for key in autos:
        cfg = _with_value(cfg, key, resolved[key])
    return cfg, {key: resolved[key] for key in autos}


def resolution_line(resolved: dict[str, str]) -> str:
    """What the sweep's "auto" keys train in, as the job prints it before any training: fp32
    also says why, and what it costs: a user on a CPU without bf16 units (most laptops) sees why
    the demo's jobs take longer than their 12 minutes (the README measures by how much)."""
    by_precision = {p: [k for k, q in resolved.items() if q == p] for p in sorted(set(resolved.values()))}
    said = "; ".join(f"{', '.join(keys)} in {p}" for p, keys in by_precision.items())
    line = f"precision auto: {said}"
    if "fp32" in by_precision:
        line += (" (a trial node has no native bf16: AVX512-BF16, AMX or a GPU's bf16 units; fp32 training "
                 "steps are slower than native bf16 ones, so the job takes longer than where bf16 is native)")
    return line


def _check_as_ran(sweep_id: str, before: dict[str, str], now: dict[str, str]) -> None:
    """ConfigError naming the first key the sweep ran (`before`) in other than `now`."""
    for key, precision in now.items():
        if before.get(key, precision) != precision:
            raise ConfigError(
                f"{key}: auto resolves to {precision} on this cluster's trial nodes, but sweep "
                f"{sweep_id} ran it as {before[key]} (bf16 where every trial node computes it natively, "
                "else fp32), and an unfinished sweep resumes in the precision its finished trials ran in; "
                f"resume it where auto resolves to {before[key]}, or start another sweep: {key}={precision}, "
                "or another results_dir")
