"""`precision: auto`, resolved once per sweep where its trials run.

"auto" trains in bf16 where the device computes it natively, else in fp32
(`training.finetune.resolve_precision`). A sweep's id hashes the setting, not what it resolves
to, so without this step a sweep resumed on another machine type (or a cluster whose nodes
differ) would mix precisions in one table. Here a job resolves each "auto" once, in a Ray task
with one trial's resources, before any work; every trial and preparation of the sweep then runs
that precision; the `configs` row records it (its `resolved` entry); and an unfinished sweep is
resumed only where "auto" resolves as it did when the sweep ran.
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


def recorded(results_dir: str, sweep_id: str) -> dict[str, str]:
    """The resolution the sweep's `configs` row records ({} for none: no row, or one written
    before resolutions were recorded)."""
    rows = results.read_rows(results_dir, "configs", sweep_id)
    return json.loads(rows[-1]["config"]).get("resolved", {}) if rows else {}


def pin_auto(cfg: JobConfig, sweep_id: str, keys: tuple[str, ...], finished: bool) -> tuple[JobConfig, dict[str, str]]:
    """`cfg` with each of `keys` set to "auto" replaced by the precision it resolves to for this
    sweep, and that resolution ({} when no key is "auto"). Needs Ray up.

    A finished sweep (it trains nothing) takes the resolution its `configs` row records, where
    it records one. Otherwise one Ray task with a trial's resources resolves them; an unfinished
    sweep whose row records another resolution is refused (ConfigError) before any work: its
    finished trials' rows were trained in the precision it recorded."""
    autos = [key for key in keys if _value(cfg, key) == "auto"]
    if not autos:
        return cfg, {}
    before = recorded(cfg.results_dir, sweep_id)
    if finished and all(key in before for key in autos):
        resolved = {key: before[key] for key in autos}
    else:
        resolved = sweep.call_on_worker(cfg, resolve_here, autos)
        if not finished:
            _check_as_ran(sweep_id, before, resolved)
    for key, precision in resolved.items():
        cfg = _with_value(cfg, key, precision)
    return cfg, resolved


def _check_as_ran(sweep_id: str, before: dict[str, str], now: dict[str, str]) -> None:
    for key, precision in now.items():
        if before.get(key, precision) != precision:
            raise ConfigError(
                f"{key}: auto resolves to {precision} on this cluster's trial workers, but sweep "
                f"{sweep_id} ran it as {before[key]} (bf16 where the device computes it natively, else "
                "fp32), and an unfinished sweep resumes in the precision its finished trials ran in; "
                f"resume it where auto resolves to {before[key]}, or start another sweep: {key}={precision}, "
                "or another results_dir")
