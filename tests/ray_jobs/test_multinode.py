"""A sweep across several Ray nodes on one machine: placement and fractional-GPU packing.

ray.cluster_utils.Cluster starts a head with 0 CPUs and 3 worker nodes, each declaring one
fake GPU. Six trials ask for half a GPU each: the GPU, not the CPUs, limits every node to
two trials at once, so the sweep must spread over the nodes and pack two trials per GPU.
"""

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray
import ray._private.ray_constants as ray_constants
import ray.cloudpickle
from ray.cluster_utils import Cluster

from ray_jobs import results
from ray_jobs.bench import train_mlp
from ray_jobs.config import load_config
from ray_jobs.errors import ResourceError
from ray_jobs.sweep import Sweep, precheck, run_sweep

# Trial functions of this module travel to workers by value (tests/ is not on their path).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
NODES, TRIALS = 3, 6


@pytest.fixture(scope="module")
def cluster():
    tmp = tempfile.mkdtemp(prefix="rmn", dir="/tmp")  # short: Ray's socket paths are limited
    with pytest.MonkeyPatch.context() as mp:  # every setting below is put back as it was found
        # Cluster writes its address file under RAY_TMPDIR/ray: keep it out of the shared /tmp/ray.
        mp.setenv("RAY_TMPDIR", tmp)
        os.makedirs(os.path.join(tmp, "ray"))
        # ray.init(address="127.0.0.1:port") rewrites loopback to the machine's public IP,
        # which sandboxes (and careful hosts) block; this makes Ray keep 127.0.0.1.
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        common = {"object_store_memory": 80 * 1024 * 1024, "node_ip_address": "127.0.0.1"}
        c = Cluster()
        try:
            c.add_node(num_cpus=0, num_gpus=0, include_dashboard=False, temp_dir=tmp, **common)  # the head
            for _ in range(NODES):
                # 4 CPUs but 1 GPU: with gpus_per_trial=0.5 the GPU caps a node at 2 trials.
                c.add_node(num_cpus=4, num_gpus=1, **common)
            c.wait_for_nodes()
            ray.init(address=c.address)
            yield c
        finally:  # a node (the head included) that failed to start leaves no half-started cluster
            ray.shutdown()
            c.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)


def _paired_trial(spec, ctx):
    """Real tiny training, then wait (bounded) for a second trial on the same node.

    Each running trial holds a marker file per node; the peak count it sees is how many
    trials shared its node (and so its one GPU) at once.
    """
    node_dir = Path(ctx.params["meet_dir"], ctx.node_id)
    node_dir.mkdir(parents=True, exist_ok=True)
    mine = node_dir / ctx.trial_key
    mine.touch()
    loss = train_mlp(steps=20, batch=16, width=32, seed=spec["seed"])
    peak, deadline = 0, time.monotonic() + 120  # the partner may start late on a loaded machine
    while time.monotonic() < deadline:
        peak = max(peak, len(list(node_dir.iterdir())))
        if peak >= 2:
            break
        time.sleep(0.1)
    time.sleep(1.0)  # let the partner see this marker too before it goes
    mine.unlink()
    ctx.report({"kind": "mlp", "name": ctx.trial_key, "accuracy": -loss,
                "node_peers": peak, "gpu_ids": ",".join(map(str, ray.get_gpu_ids())),
                "pid": os.getpid()})


def test_sweep_spreads_over_nodes_and_packs_half_gpus(cluster, tmp_path):
    cfg = load_config(None, [f"results_dir={tmp_path}/res", "resources.cpus_per_trial=1",
                             "resources.gpus_per_trial=0.5"])
    assert precheck(cfg) == {"cpu": 1.0, "gpu": 0.5}
    sweep = Sweep(job="mn", sweep_id="mn-1", fn=_paired_trial,
                  trials=[{"trial_key": f"t{i}", "seed": i} for i in range(TRIALS)],
                  tables=("distill",), params={"meet_dir": str(tmp_path / "meet")},
                  stamp={"config_hash": "h", "code_version": "v"})
    out = run_sweep(cfg, sweep)
    assert out.errors == []
    tbl = results.query(cfg.results_dir, "SELECT node_id, count(*) AS n, max(node_peers) AS "
                        "peak, min(node_peers) AS low FROM distill GROUP BY node_id")
    per_node = tbl.to_pylist()
    workers = {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")}
    assert {r["node_id"] for r in per_node} <= workers  # never on the 0-CPU head
    assert len(per_node) >= 2
    assert sum(r["n"] for r in per_node) == TRIALS
    # Packing as asked: two half-GPU trials ran together on a node, never three.
    assert all(r["peak"] <= 2 for r in per_node)
    assert any(r["peak"] == 2 for r in per_node)
    rows = out.rows["distill"]
    assert all(r["gpu_ids"] for r in rows)  # each trial got a (fake) GPU
    assert {r["device"] for r in rows} == {"cpu"}  # fake GPUs: torch sees no CUDA


@pytest.mark.parametrize("override, named", [
    ("resources.cpus_per_trial=6", "CPU=6"),  # the cluster has 12 CPUs, no node more than 4
    ("resources.gpus_per_trial=2", "GPU=2"),  # 3 GPUs in all, one per node
])
def test_precheck_refuses_what_no_single_node_holds(cluster, tmp_path, override, named):
    cfg = load_config(None, [f"results_dir={tmp_path}", override])
    with pytest.raises(ResourceError, match=rf"{named}.*CPU=12, GPU=3 in 4 node\(s\)"):
        precheck(cfg)
