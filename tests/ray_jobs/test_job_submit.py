"""`ray job submit --working-dir`: the smoke compression job on a real Ray head that this
module starts as its own child process (127.0.0.1, no token auth) and ends by its pid; and a
bench that joins that head through RAY_ADDRESS."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ray_jobs import results

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
# Above the sum of the waits below (head 180 s, submit 300 s, job 600 s), so a slow run
# reports which wait ran out instead of pytest's SIGALRM.
pytestmark = pytest.mark.timeout(1200)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # single-node mode keeps every port of the head on 127.0.0.1 (ray_jobs.sweep.loopback_only)
    env.update(RAY_AUTH_MODE="disabled", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", RAY_USAGE_STATS_ENABLED="0", RAY_TMPDIR=tmp)
    return env


def _wait_for_dashboard(address: str, head: subprocess.Popen, env: dict, timeout: float = 180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert head.poll() is None, "ray head exited early"
        probe = subprocess.run([RAY, "job", "list", "--address", address], env=env,
                               capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return
        time.sleep(3)
    raise AssertionError(f"dashboard at {address} did not come up")


def _wait_for_job(address: str, job_id: str, timeout: float = 600) -> tuple[str, str]:
    """(final status, driver logs) of a submitted job, polled through the job SDK."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    deadline = time.time() + timeout
    status = client.get_job_status(job_id)
    while not status.is_terminal() and time.time() < deadline:
        time.sleep(3)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    return ("TIMEOUT" if not status.is_terminal() else JobStatus(status).value), logs


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on 127.0.0.1 with free ports and 2 CPUs, shared by this module's tests;
    yields (dashboard address, env, GCS address: what RAY_ADDRESS names to join it)."""
    tmp = tempfile.mkdtemp(prefix="rjh", dir="/tmp")
    env = _env(tmp)
    dash, gcs = _free_port(), _free_port()
    cmd = [RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--port", str(gcs), "--dashboard-port", str(dash),
           "--dashboard-host", "127.0.0.1", "--include-dashboard", "true",
           "--ray-client-server-port", str(_free_port()),
           "--dashboard-agent-listen-port", str(_free_port()),
           "--num-cpus", "2", "--object-store-memory", str(200 * 1024 * 1024), "--temp-dir", tmp,
           "--disable-usage-stats"]
    head = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        _wait_for_dashboard(address, head, env)
        yield address, env, f"127.0.0.1:{gcs}"
    finally:
        # End exactly the head we started: `ray start --block` stops its own processes on
        # SIGTERM; anything left in its process group (our session) is then killed.
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(timeout=30)
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_ray_job_submit_smoke_compress(ray_head, tmp_path):
    address, env, _ = ray_head
    out = tmp_path / "results"
    job_id = f"compress_smoke_{os.getpid()}"
    submit = subprocess.run(
        [RAY, "job", "submit", "--address", address, "--working-dir", str(REPO),
         "--submission-id", job_id, "--no-wait", "--",
         sys.executable, "-m", "ray_jobs", "compress", "--config", "smoke",
         f"results_dir={out}", "baselines.bilstm_budget=false"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert submit.returncode == 0, submit.stderr[-2000:]
    status, logs = _wait_for_job(address, job_id)
    assert status == "SUCCEEDED", logs[-4000:]
    assert "Compression (compress-" in logs
    rows = results.query(out, "SELECT * FROM distill").to_pylist()
    assert [r["trial_key"] for r in rows] == ["student-0"]
    assert rows[0]["accuracy"] is not None and Path(rows[0]["model_dir"]).is_dir()
    assert rows[0]["code_version"]  # the row names the code that made it


@pytest.mark.slow
def test_bench_scaling_refuses_more_workers_than_the_joined_cluster_has(ray_head, tmp_path):
    """Under RAY_ADDRESS the bench runs on the cluster it joins: 3 one-CPU trials at once on a
    2-CPU head would run 2 at a time while the rows said 3 (efficiency divided by 3)."""
    _, env, gcs = ray_head
    proc = subprocess.run([sys.executable, "-m", "ray_jobs", "bench", "scaling", "--tiny", "trials=3",
                           "workers=[1,3]", f"results_dir={tmp_path}"], env={**env, "RAY_ADDRESS": gcs},
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: workers: 3 concurrent one-CPU trials asked, but the cluster at RAY_ADDRESS has 2 CPUs now" \
        in proc.stderr
    assert not (tmp_path / "table=bench").exists()


@pytest.mark.slow
@pytest.mark.parametrize("job", ["compress", "prune"])
def test_a_gpu_the_joined_cluster_lacks_is_refused_before_any_work(ray_head, tmp_path, job):
    """Under `ray job submit` (RAY_ADDRESS set) the job joins the cluster instead of starting
    one, so the local start's check does not run: the check of the cluster's nodes refuses a
    trial asking for a GPU none has, before any row or cache is written, not a sweep that waits."""
    _, env, gcs = ray_head
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "ray_jobs", job, "--config", "smoke", f"results_dir={out}",
                           "resources.gpus_per_trial=1"], env={**env, "RAY_ADDRESS": gcs}, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: resources: each trial asks for CPU=1, GPU=1 but no node has that; the cluster has CPU=2, "
        "GPU=0 in 1 node(s) (largest node: CPU=2)")
    assert not out.exists() or not any(out.glob("table=*"))
