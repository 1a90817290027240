"""A small real sweep as a command, for the driver-interrupt tests (not collected by pytest).

    python tests/ray_jobs/fault_driver.py RESULTS_DIR RAY_TEMP_DIR [--resume] [--code-version=V]
        [--max-concurrent=N] [--sigint-after=KEY]

Runs the jobs' sweep runner on a private local Ray: TRIALS trials of ROUNDS rounds, each
round a tiny real torch training, one `prune`-table row per round, checkpointed by round.
`--max-concurrent` sets `resources.max_concurrent_trials`; with `--sigint-after=KEY` trial KEY
sends the driver SIGINT as it returns (once: a marker file in RESULTS_DIR), a Ctrl-C between
two trials.
Exit codes follow `python -m ray_jobs`: 0 done, 2 refused (one `error:` line: another driver
runs the sweep, its experiment state is unreadable), 130 interrupted. Prints "restored=..."
"""

import os
import signal
import sys
import time
from pathlib import Path

import ray

from ray_jobs.bench import train_mlp
from ray_jobs.config import load_config
from ray_jobs.errors import JobError, SweepInterrupted
from ray_jobs.sweep import Sweep, loopback_only, run_sweep

TRIALS, ROUNDS = 3, 4


def rounds_trial(spec, ctx):
    """One row per round; restarts at the round after its last checkpoint."""
    start = (ctx.state or {}).get("next_round", 0)
    for r in range(start, ROUNDS):
        loss = train_mlp(steps=30, batch=16, width=32, seed=r)
        time.sleep(0.7)  # a round long enough to be interrupted in the middle of the sweep
        with Path(ctx.params["log_dir"], f"calls-{ctx.trial_key}").open("a") as f:
            f.write(f"{r}\n")
        ctx.report({"round": r, "loss": loss, "schedule": ctx.trial_key},
                   state={"next_round": r + 1})
    sent = Path(ctx.params["log_dir"], "sigint-sent")
    if ctx.trial_key == ctx.params["sigint_after"] and not sent.exists():
        sent.touch()
        os.kill(ctx.params["driver_pid"], signal.SIGINT)


def _option(argv: list[str], name: str, default: str | None) -> str | None:
    return next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")), default)


def main(argv: list[str]) -> int:
    results_dir, temp_dir = argv[0], argv[1]
    version = _option(argv, "code-version", "v")
    concurrent = _option(argv, "max-concurrent", "null")
    cfg = load_config(None, [f"results_dir={results_dir}", "resources.cpus_per_trial=1",
                             f"resources.max_concurrent_trials={concurrent}"])
    loopback_only()
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp_dir,
             object_store_memory=80 * 1024 * 1024)
    sweep = Sweep(job="fault", sweep_id="fault-1", fn=rounds_trial,
                  trials=[{"trial_key": f"s{i}"} for i in range(TRIALS)], tables=("prune",),
                  params={"log_dir": results_dir, "driver_pid": os.getpid(),
                          "sigint_after": _option(argv, "sigint-after", None)},
                  stamp={"config_hash": "h", "code_version": version})
    try:
        out = run_sweep(cfg, sweep, resume="--resume" in argv)
    except (SweepInterrupted, KeyboardInterrupt) as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        ray.shutdown()
    print(f"restored={out.restored} errors={out.errors}", flush=True)
    return 0 if not out.errors else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
