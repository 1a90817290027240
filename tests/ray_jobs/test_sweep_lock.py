"""One driver per sweep: a second driver of a running sweep is refused at once and writes
nothing; a dead holder (SIGKILL included) leaves no stale lock."""

import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ray_jobs import results
from ray_jobs.config import load_config
from ray_jobs.errors import JobError
from ray_jobs.sweep import Sweep, exclusive, lock_path, run_sweep

REPO = Path(__file__).resolve().parents[2]
STAMP = {"config_hash": "h", "code_version": "v"}
pytestmark = pytest.mark.timeout(300)

# Another driver holding sweep ARGV[2]'s lock under results_dir ARGV[1] until it is killed.
_HOLDER = """
import sys, time
from types import SimpleNamespace
from ray_jobs.sweep import exclusive
with exclusive(SimpleNamespace(results_dir=sys.argv[1]), sys.argv[2]):
    print("HELD", flush=True)
    time.sleep(600)
"""


def _one_row(spec, ctx):
    ctx.report({"round": 0, "schedule": ctx.trial_key})


def _sweep(sweep_id: str = "lock-1") -> Sweep:
    return Sweep(job="lock", sweep_id=sweep_id, fn=_one_row, trials=[{"trial_key": "s0"}],
                 tables=("prune",), stamp=STAMP)


def _holder(results_dir: Path, sweep_id: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(results_dir), sweep_id], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "HELD"
    return proc


def _files(results_dir: Path) -> list[Path]:
    return sorted(p for p in results_dir.rglob("*") if p.is_file())


def _refusal(sweep_id: str, lock: Path, pid: int | None = None) -> str:
    holder = rf" \(pid {pid} on \S+\)" if pid else ""
    return (rf"^another driver{holder} is running sweep {sweep_id} \(lock {re.escape(str(lock))} held\); "
            "wait for it or stop it$")


def test_lock_is_per_open_file_description_reentrant_and_removed(tmp_path):
    cfg = SimpleNamespace(results_dir=str(tmp_path))
    lock = lock_path(cfg, "s").resolve()
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)  # a second open file description: another driver's
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(JobError, match=_refusal("s", lock)):
            with exclusive(cfg, "s"):
                pass
    finally:
        os.close(fd)
    with exclusive(cfg, "s") as held, exclusive(cfg, "s"):  # the job, then run_sweep inside it
        assert held == lock and lock.read_text().split()[0] == str(os.getpid())
    assert not lock.exists()
    with exclusive(cfg, "s"):  # released: taken again
        pass


def test_a_filesystem_without_locks_warns_and_runs(tmp_path, monkeypatch, capsys):
    """A results_dir on a mount without flock ran jobs before the lock existed: it still does,
    with a warning; any other locking error is refused."""
    import errno

    from ray_jobs import sweep

    cfg = SimpleNamespace(results_dir=str(tmp_path))
    monkeypatch.setattr(sweep.fcntl, "flock", lambda fd, op: (_ for _ in ()).throw(OSError(errno.ENOLCK, "No locks")))
    with exclusive(cfg, "s"):
        pass
    assert "cannot be locked (No locks); nothing stops a second driver" in capsys.readouterr().err
    monkeypatch.setattr(sweep.fcntl, "flock", lambda fd, op: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(JobError, match=r"sweep s: cannot lock .* \(I/O error\)"):
        with exclusive(cfg, "s"):
            pass


def test_second_driver_is_refused_at_once_then_runs_once_the_holder_is_killed(tmp_path, local_ray):
    cfg = load_config(None, [f"results_dir={tmp_path}/res"])
    lock = lock_path(cfg, "lock-1").resolve()
    holder = _holder(tmp_path / "res", "lock-1")
    try:
        t0 = time.monotonic()
        with pytest.raises(JobError, match=_refusal("lock-1", lock, holder.pid)):
            run_sweep(cfg, _sweep())
        # at once: the holder keeps the lock for 600 s, and 30 s leaves room for a stalled CI machine
        assert time.monotonic() - t0 < 30
        assert _files(tmp_path / "res") == [lock]  # the holder's lock file, nothing else
    finally:
        holder.send_signal(signal.SIGKILL)  # a driver dying without cleaning up
        holder.wait(timeout=30)
    assert lock.exists()  # left by the killed holder, but no longer locked
    out = run_sweep(cfg, _sweep())
    assert out.errors == [] and [r["trial_key"] for r in out.rows["prune"]] == ["s0"]
    assert results.table_counts(cfg.results_dir) == {"prune": 1}
    assert not lock.exists()  # removed by the driver that held it last


@pytest.fixture
def no_ray_here():
    """This process without Ray: the module's local Ray (an earlier test's) forwards its
    workers' lines to this process's stderr as they are reaped, and a CI run (2026-12-05) saw
    an idle `_trial_entry` worker's SIGTERM traceback land in a test that counts stderr lines."""
    import ray

    ray.shutdown()


@pytest.mark.parametrize("command", ["prune", "compress", "demo"])
def test_the_jobs_refuse_a_running_sweep_before_any_work(no_ray_here, tmp_path, capsys, monkeypatch, command):
    """The jobs take the lock before their first write, before Ray starts: exit 2, one line.
    (demo: the pruning sweep's lock, before the compression job.)"""
    from ray_jobs import compress, prune, sweep
    from ray_jobs.__main__ import main
    from ray_jobs.config import resolve_config_path

    def no_ray(cfg):
        raise AssertionError("Ray started while another driver runs the sweep")

    monkeypatch.setattr(sweep, "init_ray", no_ray)
    argv = [command, "--config", "smoke", f"results_dir={tmp_path / 'res'}"]
    cfg = load_config(resolve_config_path("smoke"), argv[3:])
    sid = (compress if command == "compress" else prune).sweep_id(cfg)
    holder = _holder(tmp_path / "res", sid)
    try:
        rc = main(argv)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    err = capsys.readouterr().err
    lock = lock_path(cfg, sid).resolve()
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: another driver (pid {holder.pid} on ") and str(lock) in err, err
    assert _files(tmp_path / "res") == [lock]
