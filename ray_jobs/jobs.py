"""Entry points of the CLI's job commands: run, print the summary, map outcomes to codes."""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from ray_jobs import compress, summary, sweep
from ray_jobs.config import JobConfig, load_config
from ray_jobs.errors import ConfigError, SweepFailed
from ray_jobs.sweep import SweepOutcome
from training.checks import MAX_SEED, one_line


def load(path: Path | None, overrides: list[str]) -> JobConfig:
    return load_config(path, overrides)


def _check(name: str, outcome: SweepOutcome) -> None:
    if outcome.errors:
        raise SweepFailed(f"{name}: {len(outcome.errors)} failed (trials, or models the quantize stage could not "
                          "quantize): " + "; ".join(outcome.errors), outcome.sweep_id)


def run_compress(cfg: JobConfig, resume: bool) -> str:
    t0 = time.perf_counter()
    outcome = compress.run(cfg, resume=resume)
    print(f"\ncompress: {len(outcome.rows['distill'])} distill rows in "
          f"{time.perf_counter() - t0:.0f} s -> {cfg.results_dir}", flush=True)
    print(summary.compress_summary(cfg.results_dir, outcome.sweep_id), flush=True)
    _check("compress", outcome)
    return outcome.sweep_id


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2` -> [0, 1, 2]; ConfigError (before any work) unless distinct integers
    in [0, MAX_SEED], the range every config section's `seed` accepts."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds: {text!r} is not a comma-separated list of integers") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: {text!r} repeats a seed")
    out_of_range = [s for s in seeds if not 0 <= s <= MAX_SEED]  # else the sweep fails after the others ran
    if out_of_range:
        raise ConfigError(f"--seeds: {out_of_range[0]} is not in [0, {MAX_SEED}]")
    return seeds


# The config section whose `seed` `--seeds` replaces, per job: the distillation's (student
# initialisation, batch order, dropout) and the pruning's (random masks, repair batch order).
SEEDED_SECTION = {"compress": "distill", "prune": "prune"}


def run_seeds(command: str, cfg: JobConfig, seeds: list[int], resume: bool = False) -> int:
    """The job once per seed (the SEEDED_SECTION's `seed` replaced; each its own sweep,
    resumable alone; what the seed does not touch is shared: the compression job's teacher,
    its logits and the search's shapes, the pruning job's fine-tuned code-to-text model), each
    sweep's summary, then every model's (schedule's) mean and spread across the seeds. A seed
    whose trials fail does not stop the others; SweepFailed at the end names it."""
    from ray_jobs import prune

    section = SEEDED_SECTION[command]
    sweep_of, runner, spread = {
        "compress": (compress.sweep_id, run_compress, summary.seeds_summary),
        "prune": (prune.sweep_id, run_prune, summary.prune_seeds_summary)}[command]
    sweep_ids, failed = [], []
    for seed in seeds:
        print(f"\n=== {command}, {section}.seed={seed} ({len(sweep_ids) + 1} of {len(seeds)}) ===",
              flush=True)
        seed_cfg = replace(cfg, **{section: replace(getattr(cfg, section), seed=seed)})
        try:
            sweep_ids.append(runner(seed_cfg, resume))  # the sweep that ran, as its summary named it
        except SweepFailed as exc:
            sweep_ids.append(exc.sweep_id or sweep_of(seed_cfg))
            failed.append(f"{section}.seed={seed}: {exc}")
    try:
        text = spread(cfg.results_dir, sweep_ids)
    except Exception as exc:  # sweeps not one job's seeds, an unreadable file: said, then the seeds' failures
        if not failed:
            raise
        text = f"no spread across the seeds: {one_line(str(exc))}"
    print("\n" + text, flush=True)
    if failed:
        raise SweepFailed(f"{command} --seeds: {len(failed)} of {len(seeds)} seed(s) failed (trials, or models "
                          "their quantize stage could not quantize) (the table above holds the rows that "
                          "finished): " + "; ".join(failed))
    return 0


def run_prune(cfg: JobConfig, resume: bool) -> str:
    from ray_jobs import prune

    t0 = time.perf_counter()
    outcome = prune.run(cfg, resume=resume)
    sid = outcome.sweep_id
    print(f"\nprune: {len(outcome.rows['prune'])} prune rows, "
          f"{len(outcome.rows.get('quantize', []))} quantize rows in "
          f"{time.perf_counter() - t0:.0f} s -> {cfg.results_dir}", flush=True)
    print(summary.prune_summary(cfg.results_dir, sid), flush=True)
    _check("prune", outcome)
    return sid


def run_demo(cfg: JobConfig, resume: bool) -> None:
    """compress then prune, each summary, and the BLEU-versus-sparsity PNG beside the tables."""
    from ray_jobs import prune

    schedules = prune.check_inputs(cfg)  # a bad pruning setting is refused now, not after the compression job
    # Likewise a pruning sweep another driver runs: its lock is held from here to the end.
    with sweep.exclusive(cfg, prune.sweep_id(cfg)):
        sweep.check_restore_settings(cfg, prune.sweep_id(cfg), len(schedules))
        run_compress(cfg, resume)
        sid = run_prune(cfg, resume)
    png = summary.plot_bleu(cfg.results_dir, sid, Path(cfg.results_dir) / f"bleu_vs_sparsity-{sid}.png")
    if png is not None:
        print(f"plot: {png}")
    # quoted for the shell: the folder is absolute, and may hold spaces or `$`
    print("query the tables: " + shlex.join(["python", "-m", "ray_jobs", "query", "SELECT * FROM distill",
                                             f"results_dir={cfg.results_dir}"]))


def run(command: str, cfg: JobConfig, *, resume: bool = False) -> int:
    runners = {"compress": run_compress, "prune": run_prune, "demo": run_demo}
    runners[command](cfg, resume)
    sys.stdout.flush()
    return 0
