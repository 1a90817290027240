"""Faults a cluster throws at a sweep: a killed trial worker, an interrupted driver, a
Parquet write killed midway. Real Ray, real (tiny) torch trials, real tables."""

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import ray.cloudpickle

from ray_jobs import results
from ray_jobs.bench import train_mlp
from ray_jobs.config import load_config
from ray_jobs.sweep import Sweep, run_sweep

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

DRIVER = Path(__file__).with_name("fault_driver.py")
TRIALS, ROUNDS = 3, 4  # as in fault_driver.py
pytestmark = pytest.mark.timeout(300)


def _short_tmp(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # Ray's socket paths are limited


# ------------------------------------------------------------ a trial's worker is killed


def _killable_trial(spec, ctx):
    """Round 0, then (first attempt of t0 only) publish its pid and wait to be killed."""
    folder = Path(ctx.params["dir"])
    with (folder / f"starts-{ctx.trial_key}").open("a") as f:
        f.write(f"{os.getpid()}\n")
    for r in range((ctx.state or {}).get("next_round", 0), 2):
        loss = train_mlp(steps=20, batch=16, width=32, seed=r)
        ctx.report({"round": r, "loss": loss, "schedule": ctx.trial_key,
                    "pid": os.getpid()}, state={"next_round": r + 1})
        if ctx.trial_key == "t0" and r == 0 and not (folder / "killed").exists():
            # published whole (renamed into place): the killer never reads a half-written pid
            (folder / "pid.tmp").write_text(str(os.getpid()))
            os.replace(folder / "pid.tmp", folder / "pid")
            time.sleep(120)  # the test kills this process long before


def _kill_once(folder: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (folder / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if (folder / "pid").exists():
        (folder / "killed").touch()
        os.kill(int((folder / "pid").read_text()), signal.SIGKILL)


def test_killed_trial_worker_is_retried_and_sweep_completes(tmp_path, single_node):
    tmp = _short_tmp("rfk")
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=tmp,
             object_store_memory=80 * 1024 * 1024)
    try:
        cfg = load_config(None, [f"results_dir={tmp_path}/res", "failure.max_failures=1"])
        sweep = Sweep(job="fk", sweep_id="fk-1", fn=_killable_trial,
                      trials=[{"trial_key": f"t{i}"} for i in range(2)], tables=("prune",),
                      params={"dir": str(tmp_path)}, stamp={"config_hash": "h", "code_version": "v"})
        killer = threading.Thread(target=_kill_once, args=(tmp_path,), daemon=True)
        killer.start()
        out = run_sweep(cfg, sweep)
        killer.join(timeout=5)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    assert (tmp_path / "killed").exists(), "the trial's worker was never killed"
    assert out.errors == []
    keys = sorted((r["trial_key"], r["round"]) for r in out.rows["prune"])
    assert keys == [("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)]
    killed_pid = int((tmp_path / "pid").read_text())
    starts = (tmp_path / "starts-t0").read_text().split()
    assert len(starts) == 2 and int(starts[0]) == killed_pid  # killed once, retried once
    t0_last = next(r for r in out.rows["prune"] if r["trial_key"] == "t0" and r["round"] == 1)
    assert t0_last["pid"] != killed_pid


# ------------------------------------------------------------ the driver is interrupted


def _driver(results_dir: Path, temp_dir: str, *extra: str) -> subprocess.Popen:
    # Own session: the signal goes to the driver alone, and cleanup can end its whole group.
    return subprocess.Popen(
        [sys.executable, str(DRIVER), str(results_dir), temp_dir, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def _run_to_end(results_dir: Path, temp_dir: str, *extra: str, timeout: float = 120) -> tuple[int, str, str]:
    """Run the driver to its exit: (exit code, stdout, stderr); what it started is ended."""
    proc = _driver(results_dir, temp_dir, *extra)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        _end_group(proc)
    return proc.returncode, out, err


def _end_group(proc: subprocess.Popen) -> None:
    """End what is left of a driver's process group (Ray processes it started)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _rows(results_dir: Path) -> list[dict]:
    try:
        return results.read_rows(results_dir, "prune", "fault-1")
    except (OSError, results.ResultsError):  # a concurrent os.replace: read again
        return []


def _wait_rows(proc, results_dir: Path, n: int, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while len(_rows(results_dir)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the sweep made no progress"
        time.sleep(0.2)


def _lock_free(results_dir: Path) -> bool:
    """Whether the sweep's lock can be taken now (it is let go at once)."""
    try:
        fd = os.open(results_dir / "ray" / "fault-1.lock", os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _interrupt(results_dir: Path, temp_dir: str, sig: int, after_rows: int, *extra: str):
    """Run the driver until the table holds `after_rows` rows, then send `sig`. Returns the
    exit code, stderr, and whether the sweep's lock was free once the driver had exited."""
    proc = _driver(results_dir, temp_dir, *extra)
    try:
        _wait_rows(proc, results_dir, after_rows)
        assert not _lock_free(results_dir)  # the running driver holds it
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
        # Checked before the Ray processes the driver started are ended: they must not hold it.
        free = _lock_free(results_dir)
    finally:
        _end_group(proc)
    assert len(_rows(results_dir)) < TRIALS * ROUNDS, "interrupted too late to test anything"
    return proc.returncode, err, free


def _calls(results_dir: Path) -> list[list[int]]:
    """Per trial, the rounds its function ran, in order, over all runs."""
    files = [results_dir / f"calls-s{i}" for i in range(TRIALS)]
    return [[int(r) for r in f.read_text().split()] if f.exists() else [] for f in files]


@pytest.mark.slow
def test_interrupted_driver_resumes_with_one_row_per_trial_round(tmp_path):
    """SIGINT, re-run the same command; SIGKILL, re-run with --resume; then it completes."""
    results_dir = tmp_path / "res"
    temp_dir = _short_tmp("rfd")
    try:
        rc, err, free = _interrupt(results_dir, temp_dir, signal.SIGINT, 3)
        assert rc == 130 and free, err[-3000:]
        assert not (results_dir / "ray" / "fault-1.lock").exists()  # removed on the way out
        at_sigint = _calls(results_dir)
        rc, _, free = _interrupt(results_dir, temp_dir, signal.SIGKILL, 7)
        assert rc == -signal.SIGKILL
        assert free and (results_dir / "ray" / "fault-1.lock").exists()  # left, but not held
        at_sigkill = _calls(results_dir)
        before_last = {(r["trial_key"], r["round"]) for r in _rows(results_dir)}
        # the results folder moves and the code changes before the last run: Tune restores
        # the first run's row sink, which must not write to the old folder or the old version
        moved = tmp_path / "moved"
        shutil.move(results_dir, moved)
        results_dir, first_dir = moved, results_dir
        rc, out, err = _run_to_end(results_dir, temp_dir, "--resume", "--code-version=v2", timeout=240)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert rc == 0, err[-3000:]
    assert "restored=True" in out
    keys = sorted((r["trial_key"], r["round"]) for r in _rows(results_dir))
    assert keys == [(f"s{i}", r) for i in range(TRIALS) for r in range(ROUNDS)]
    assert results.table_counts(results_dir) == {"prune": TRIALS * ROUNDS}
    assert not first_dir.exists()
    versions = {(r["trial_key"], r["round"]): r["code_version"] for r in _rows(results_dir)}
    new = set(versions) - before_last  # (a round run again after SIGKILL is re-stamped too)
    assert new and all(versions[k] == "v2" for k in new), versions
    # After SIGINT the re-run went on from each trial's last checkpoint, not from round 0.
    # (After SIGKILL Tune restores its last periodic snapshot, so a round may run twice:
    # the table above still holds each exactly once.)
    resumed = 0
    for before, after in zip(at_sigint, at_sigkill, strict=True):
        second_run = after[len(before):]
        if before and second_run:
            assert second_run[0] >= before[-1], (before, second_run)
            resumed += 1
    assert resumed >= 1


@pytest.mark.slow
def test_ctrl_c_between_trials_with_a_concurrency_cap_is_an_interruption(tmp_path):
    """With max_concurrent_trials Tune creates a trial only when another ends: Ctrl-C as s0
    ended left s1 and s2 never created, and the driver exited 0 with s0's rows alone."""
    results_dir = tmp_path / "res"
    temp_dir = _short_tmp("rfc")
    try:
        rc, _, err = _run_to_end(results_dir, temp_dir, "--max-concurrent=1", "--sigint-after=s0")
        assert (results_dir / "sigint-sent").exists()
        assert rc == 130, err[-3000:]
        assert {r["trial_key"] for r in _rows(results_dir)} == {"s0"}  # the others never ran
        rc, out, err = _run_to_end(results_dir, temp_dir, "--max-concurrent=1")
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert rc == 0 and "restored=True" in out, err[-3000:]
    keys = sorted((r["trial_key"], r["round"]) for r in _rows(results_dir))
    assert keys == [(f"s{i}", r) for i in range(TRIALS) for r in range(ROUNDS)]
    assert _calls(results_dir) == [list(range(ROUNDS))] * TRIALS  # s0 was not run again


# ------------------------------------------------------------ a Parquet write is killed

_SLOW_WRITER = textwrap.dedent("""
    import sys, time
    import pyarrow.parquet as pq
    from ray_jobs import results

    def half_then_hang(table, where, **kw):
        # Write the first row group of the new file, then stall: killed here, midway.
        with pq.ParquetWriter(where, table.schema) as writer:
            writer.write_table(table.slice(0, table.num_rows // 2))
            print("WRITING", flush=True)
            time.sleep(120)
            writer.write_table(table.slice(table.num_rows // 2))

    results.pq.write_table = half_then_hang
    rows = [{"trial_key": f"n{i}", "round": 0, "schedule": "new", "sparsity": 0.5}
            for i in range(1000)]
    results.write_rows(sys.argv[1], "prune", "sweep-a", rows)
""")


def test_parquet_write_killed_midway_leaves_no_partial_file(tmp_path):
    old = [{"trial_key": f"o{i}", "round": 0, "schedule": "old", "sparsity": 0.1}
           for i in range(3)]
    results.write_rows(tmp_path, "prune", "sweep-a", old)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "WRITING"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    folder = results.table_dir(tmp_path, "prune")
    partial = [p for p in folder.iterdir() if p.name != "sweep-a.parquet"]
    assert len(partial) == 1 and partial[0].name.startswith(".")  # the killed temp file
    with pytest.raises(pa.ArrowInvalid):
        pq.read_table(partial[0])  # really partial: no footer
    got = results.query(tmp_path, "SELECT schedule, count(*) AS n FROM prune GROUP BY 1")
    assert got.to_pylist() == [{"schedule": "old", "n": 3}]
    assert results.table_counts(tmp_path) == {"prune": 3}
