"""`python -m ray_jobs bench scaling --tiny` runs real trials and writes the bench table."""

import os
import subprocess
import sys

import pytest

from ray_jobs import results

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def test_bench_scaling_tiny_writes_rows(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "ray_jobs", "bench", "scaling", "--tiny",
         f"results_dir={tmp_path}"],
        env=env, capture_output=True, text=True, timeout=360,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "efficiency=" in proc.stdout and "per-trial=" in proc.stdout
    rows = results.query(tmp_path, "SELECT * FROM bench ORDER BY trial_key").to_pylist()
    got = {(r["bench"], r["workers"], r["reuse_actors"]) for r in rows}
    assert got == {("scaling", 1, True), ("scaling", 2, True),
                   ("overhead", 1, False), ("overhead", 1, True)}
    for r in rows:
        assert r["wall_s"] > 0 and r["trials"] == 2 and r["sweep_id"] and r["code_version"]
    scaling = [r for r in rows if r["bench"] == "scaling"]
    assert all(r["efficiency"] is not None and r["trial_s"] > 0 for r in scaling)
    fresh, reused = (next(r for r in rows if r["bench"] == "overhead" and r["reuse_actors"] is v)
                     for v in (False, True))
    # Without reuse every trial gets its own worker process; with reuse they share one.
    assert fresh["worker_processes"] == 2 and reused["worker_processes"] == 1
