"""A thin generic Ray Tune runner: one trial per spec, rows to tables, resumable.

    run_sweep(cfg, Sweep(...)) ->
        the sweep's lock (exclusive: one driver per sweep; a job takes it before Ray starts) ->
        ray up (join the cluster or start a local one) -> resource pre-check ->
        Tuner (with_resources, reuse_actors, FailureConfig) or Tuner.restore -> fit ->
        rows read back from the sweep's Parquet files (the state on disk, not the grid).

The trial function is `fn(spec, ctx)`: `spec` is one entry of `Sweep.trials` (a dict
with a stable "trial_key"), `ctx` a TrialContext whose `report(row)` sends a table row
(and optionally a small checkpoint state) to the driver-side RowSink.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import pickletools
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray import tune

from ray_jobs import results
from ray_jobs.errors import ConfigError, JobError, ResourceError, SweepInterrupted

if TYPE_CHECKING:  # config imports training (torch): trial workers need not
    from ray_jobs.config import JobConfig, ResourcesConfig

__all__ = ["JobError", "ResourceError", "Sweep", "SweepOutcome", "TrialContext", "init_ray",
           "precheck", "check_resources", "check_restore_settings", "record_config", "exclusive", "restorable",
           "run_sweep", "call_on_worker", "call_on_each_node"]

_STATE_FILE = "trial_state.json"
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's single-node mode (loopback_only)


@dataclass(frozen=True)
class Sweep:
    """What to run: `fn(spec, ctx)` once per spec in `trials` (each with a "trial_key"). Every
    trial reports at least one row before it finishes: a finished trial without one is taken
    for lost rows (`_check_rows_kept`)."""

    job: str  # "compress" | "prune" | ...: names the experiment folder
    sweep_id: str  # stable across re-runs of the same command: the resume key
    fn: Callable[[dict, TrialContext], None]
    trials: list[dict]
    tables: tuple[str, ...]  # tables the trials report rows to; the first is the default
    params: dict[str, Any] = field(default_factory=dict)  # large/shared objects for fn
    stamp: dict[str, Any] = field(default_factory=dict)  # config_hash, code_version
    # the table a trial reports its last row to, by trial key, where it is not the first of
    # `tables` (a finished trial without a row there has lost rows: `_check_rows_kept`)
    last_table: dict[str, str] = field(default_factory=dict)

    def final_table(self, trial_key: str) -> str:
        """The table trial `trial_key` reports its last row to."""
        return self.last_table.get(trial_key, self.tables[0])


@dataclass
class SweepOutcome:
    path: Path  # the Tune experiment folder
    rows: dict[str, list[dict]]  # per table, read back from disk
    errors: list[str]  # "trial_key: error" for trials that failed for good
    restored: bool

    @property
    def sweep_id(self) -> str:
        """The sweep that ran (its experiment folder's name, `experiment_path`): what its rows
        carry, even when its inputs changed on disk while it ran and `sweep_id(cfg)` would now
        name another."""
        return self.path.name


@dataclass
class TrialContext:
    """What a trial function sees besides its spec."""

    trial_key: str
    table: str
    device: str  # "cuda" when Ray assigned a GPU that torch can use, else "cpu"
    threads: int  # torch threads: the trial's whole-CPU share
    node_id: str
    params: dict[str, Any]
    state: dict | None  # the state of the trial's last checkpoint (after a retry/resume)

    def report(self, row: dict, *, table: str | None = None, state: dict | None = None) -> None:
        """Send `row` to `table`; `state` (small, JSON) is checkpointed for a restart."""
        row = {"trial_key": self.trial_key, "node_id": self.node_id, "device": self.device,
               "time": time.time(), **row}
        metrics = {"table": table or self.table, "row": row}
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, _STATE_FILE).write_text(json.dumps(state))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


# ---------------------------------------------------------------- cluster


def init_ray(cfg: JobConfig) -> bool:
    """Connect to Ray; returns True when this call started it (the caller shuts it down).

    Already initialised (tests, the cluster helper): reuse. RAY_ADDRESS set (`ray job
    submit` sets it for the driver): join that cluster. Otherwise start a private local
    one without the dashboard, in Ray's single-node mode (`loopback_only`), after checking
    the trial request against the node it would start (ResourceError before Ray starts).
    That check runs whatever `resources.precheck` says: the setting is for clusters whose
    autoscaler adds nodes on demand, and nothing adds one to a private cluster (a GPU
    request there waited forever).
    """
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
        return True
    res = cfg.resources
    node = _local_node(res)
    if node is not None:  # refused before Ray starts (and prints its start-up lines)
        _check_fits(cfg, [node])
    start_local_ray(res.object_store_mb, "resources.object_store_mb", num_cpus=res.num_cpus, num_gpus=res.num_gpus)
    if node is None:  # Ray's resolution unavailable: the started node itself
        try:
            _check_fits(cfg, alive_nodes())
        except ResourceError:
            ray.shutdown()
            raise
    return True


def start_local_ray(object_store_mb: int, key: str, **init) -> None:
    """Start a private local Ray (loopback only, no dashboard) with `init`'s other ray.init
    arguments; ConfigError naming `key` when the object store does not fit this machine (Ray
    checks it against the node's memory before it starts)."""
    loopback_only()
    try:
        ray.init(address="local", include_dashboard=False, object_store_memory=object_store_mb * 1024 * 1024,
                 **init)
    except ValueError as exc:
        if "object store" not in str(exc).lower():
            raise
        raise ConfigError(f"{key}: {object_store_mb} MiB does not fit this machine "
                          f"({' '.join(str(exc).split())})") from None


def _local_node(res: ResourcesConfig) -> dict[str, float] | None:
    """CPU and GPU of the local node `ray.init` would start with these settings, as Ray itself
    resolves them (cores, cgroup limits, visible GPUs, RAY_OVERRIDE_RESOURCES); None when that
    private API (Ray 2.60) is missing or fails: precheck then runs once Ray is up."""
    try:
        from ray._private.resource_and_label_spec import ResourceAndLabelSpec

        spec = ResourceAndLabelSpec(num_cpus=res.num_cpus, num_gpus=res.num_gpus).resolve(
            is_head=True, node_ip_address="127.0.0.1")
    except Exception:
        return None
    # A started node lists only the resources it has: no "GPU" key on a CPU-only node.
    return {k: float(v) for k, v in (("CPU", spec.num_cpus), ("GPU", spec.num_gpus)) if v}


def loopback_only() -> None:
    """Make the next local Ray start bind every port to 127.0.0.1 (a private head).

    Ray 2.60 turns a 127.0.0.1 node address into the machine's IP
    (services.resolve_ip_for_localhost) and its gRPC servers then listen on all interfaces,
    unless clustering is off: `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, Ray's single-node mode
    (the default on macOS/Windows). Ray reads it once at import, so the driver's copy is set
    too; the environment variable carries it to GCS, raylet, agents and workers.
    """
    os.environ[SINGLE_NODE_ENV] = "0"
    from ray._private import ray_constants  # private: the flag has no public setter

    ray_constants.ENABLE_RAY_CLUSTER = False


def trial_request(cfg: JobConfig) -> dict[str, float]:
    """Per-trial Tune resource request from config (its values checked when it was read)."""
    return {"cpu": cfg.resources.cpus_per_trial, "gpu": cfg.resources.gpus_per_trial}


def alive_nodes() -> list[dict[str, float]]:
    """Resources of each alive node of the connected cluster."""
    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def _fmt(res: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(res.items()) if k in ("CPU", "GPU")) or "nothing"


def _fits(request: dict[str, float], node: dict[str, float]) -> bool:
    """Whether a node with resources `node` (Ray's names) can hold one trial's `request`."""
    return node.get("CPU", 0.0) >= request.get("cpu", 0.0) and node.get("GPU", 0.0) >= request.get("gpu", 0.0)


def check_resources(request: dict[str, float], nodes: list[dict[str, float]]) -> None:
    """Raise ResourceError unless some node can hold one trial's request.

    Tune would otherwise leave an infeasible trial pending forever.
    """
    if any(_fits(request, node) for node in nodes):
        return
    need = {k: v for k, v in (("CPU", request.get("cpu", 0.0)), ("GPU", request.get("gpu", 0.0))) if v > 0}
    total: dict[str, float] = {}
    for node in nodes:
        for k in ("CPU", "GPU"):
            total[k] = total.get(k, 0.0) + node.get(k, 0.0)
    largest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)), default={})
    raise ResourceError(
        f"resources: each trial asks for {_fmt(need)} but no node has that; the cluster has "
        f"{_fmt(total) if nodes else 'no alive nodes'} in {len(nodes)} node(s) "
        f"(largest node: {_fmt(largest)})"
    )


def _check_fits(cfg: JobConfig, nodes: list[dict[str, float]]) -> dict[str, float]:
    """The trial request; ResourceError unless a trial and the preparation task fit a node."""
    request = trial_request(cfg)
    check_resources(request, nodes)
    if cfg.resources.prepare_cpus is not None:
        check_resources({**request, "cpu": cfg.resources.prepare_cpus}, nodes)
    return request


def precheck(cfg: JobConfig) -> dict[str, float]:
    """The trial request, checked against the connected cluster (unless disabled)."""
    if cfg.resources.precheck:
        return _check_fits(cfg, alive_nodes())
    return trial_request(cfg)


# Settings an unfinished sweep resumes only with the values it ran with. Tune takes the first
# two from the interrupted run, not from the resuming command (they are pickled with the
# experiment: each trial's max_failures, TuneConfig.max_concurrent_trials); the trials' CPUs and
# GPUs set their torch threads and device, under which the finished trials' rows were trained
# and timed, so one sweep's rows would mix two settings.
RESUMED_AS_RAN = (("failure", "max_failures"), ("resources", "max_concurrent_trials"),
                   ("resources", "cpus_per_trial"), ("resources", "gpus_per_trial"))


def experiment_path(cfg: JobConfig, sweep_id: str) -> Path:
    """The sweep's Tune experiment folder (Tune's storage is `results_dir/ray`)."""
    return Path(cfg.results_dir) / "ray" / sweep_id


def _saved_trials(cfg: JobConfig, sweep_id: str) -> list | None:
    """The trials of the sweep's experiment on disk, or None when there is none to restore."""
    path = experiment_path(cfg, sweep_id)
    return tune.ExperimentAnalysis(str(path)).trials if restorable(path) else None


def _all_finished(trials: list, n_trials: int) -> bool:
    # With max_concurrent_trials Tune creates a trial only when another ends: an interrupted
    # sweep can hold fewer than its n_trials, every one of them finished.
    return len(trials) >= n_trials and all(t.status == "TERMINATED" for t in trials)


def check_restore_settings(cfg: JobConfig, sweep_id: str, n_trials: int) -> bool:
    """ConfigError, before any work, when an interrupted sweep on disk would be resumed with
    a RESUMED_AS_RAN setting other than the one it ran with: Tune would silently keep the
    old value while the `configs` table recorded the new one, or the resumed trials would run
    on other threads or another device than the finished ones. Values in effect: each trial's
    max_failures as Tune saved it; the others from the `configs` row. A finished sweep (all
    its `n_trials` trials finished) reruns no trial when restored: any values pass. Returns
    whether the sweep on disk is finished (`record_config` takes it)."""
    trials = _saved_trials(cfg, sweep_id)
    if trials is None:
        return False
    if _all_finished(trials, n_trials):
        return True
    rows = results.read_rows(cfg.results_dir, "configs", sweep_id)
    ran_with = {"failure": {"max_failures": trials[0].max_failures} if trials else {},
                "resources": json.loads(rows[-1]["config"]).get("resources", {}) if rows else {}}
    for section, key in RESUMED_AS_RAN:
        if key not in ran_with[section]:
            continue
        before, now = ran_with[section][key], getattr(getattr(cfg, section), key)
        if before != now:
            raise ConfigError(f"{section}.{key}: sweep {sweep_id} ran with {json.dumps(before)}, and an "
                              "unfinished sweep resumes with the settings it ran with (Ray keeps some from the "
                              f"first run; its rows were measured under the others); give {section}.{key}="
                              f"{json.dumps(before)}, or another results_dir for a new sweep")
    return False


def record_config(cfg: JobConfig, job: str, sweep_id: str, stamp: dict, finished: bool,
                  resolved: dict[str, str] | None = None) -> None:
    """The sweep's `configs` row (`results.write_config`): every setting it runs with. Not
    rewritten for a finished sweep that has one: restoring it reruns none of its trials, and
    settings that its id does not hash (resources, say) would otherwise claim rows measured
    under others. (A pruning sweep whose quantization stage was cut short, or that is run again
    with other quantize settings, quantizes under the command's settings; those rows record
    their device, threads and `quantize_config`.) `finished`: what
    `check_restore_settings` returned for the sweep. `resolved`: what settings decided on the
    workers resolved to (`ray_jobs.precision.pin_auto`), recorded as the config's "resolved"."""
    if finished and results.read_rows(cfg.results_dir, "configs", sweep_id):
        return
    from ray_jobs.config import to_dict  # the config module imports the training stack

    config = to_dict(cfg) | ({"resolved": resolved} if resolved else {})
    results.write_config(cfg.results_dir, job, sweep_id, config, stamp)


# The files Tune 2.60 restores an experiment from (of each pattern the newest by name, as
# Tune picks it) and their format ("basic-variant-state" is a pickle despite its name).
# Tune's syncer copies them into the experiment folder in place, not through a temp file,
# so a driver killed during a copy leaves one truncated.
_RESTORED_FROM = (("tuner.pkl", "pickle"), ("experiment_state-*.json", "json"),
                  ("basic-variant-state-*.json", "pickle"), ("searcher-state-*.pkl", "pickle"),
                  ("callback-states-*.pkl", "pickle"))


def restorable(path: Path) -> bool:
    """Whether Tune would restore the experiment at `path` (Tuner.can_restore: its tuner.pkl
    exists); JobError naming the file when one it restores from is unreadable or the experiment
    state is missing. Tune would log that error, start the experiment afresh without the trials'
    configs (they are not in tuner.pkl) and fail with a traceback."""
    if not tune.Tuner.can_restore(str(path)):
        return False
    for pattern, kind in _RESTORED_FROM:
        files = sorted(path.glob(pattern))
        if files and (problem := _unreadable(files[-1], kind)):
            _refuse_restore(path, f"Tune's experiment state {files[-1]} is unreadable ({problem}; cut "
                                  "short by a driver killed while Tune copied it?)")
        if not files and pattern.startswith("experiment_state"):
            _refuse_restore(path, f"{path} holds no Tune experiment state ({pattern}; its driver was "
                                  "killed before Tune saved one?)")
    return True


def _unreadable(file: Path, kind: str) -> str | None:
    """Why `file` is not a whole JSON document or pickle stream; None when it is one."""
    try:
        data = file.read_bytes()
        if kind == "json":
            json.loads(data)
        else:
            for _ in pickletools.genops(data):  # walks the opcodes to STOP; loads nothing
                pass
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def _refuse_restore(path: Path, what: str) -> None:
    # Without the experiment folder the sweep starts afresh: every trial runs again from its
    # start (its checkpoints were in the folder) and the sink upserts its rows on the table
    # keys, so each replaces the earlier row with the same key instead of adding one.
    raise JobError(f"{what}: remove the folder {path} and run the command again; the sweep then reruns "
                   "every trial from its start, and each row it reports replaces the table row with the "
                   "same key (no row is duplicated)")


# ---------------------------------------------------------------- one driver per sweep

# Lock files this process holds, by path: a job takes its sweep's lock before its first
# write, and run_sweep (which every job calls) takes it again without refusing itself.
_HELD: dict[Path, int] = {}


def lock_path(cfg: JobConfig, sweep_id: str) -> Path:
    """The sweep's lock file: beside its experiment folder, not in it, so that removing the
    folder (what an unreadable experiment state asks for) never removes a held lock."""
    return experiment_path(cfg, sweep_id).with_name(f"{sweep_id}.lock")


@contextmanager
def exclusive(cfg: JobConfig, sweep_id: str) -> Iterator[Path]:
    """Hold sweep `sweep_id`'s lock (its path) for the block; JobError at once, before any work,
    when another driver holds it. Re-entrant within a process.

    Two drivers of one sweep would run the same Tune experiment in one folder, and each row
    sink rewrites whole tables from the rows it read at setup: the last writer wins. The lock
    is an exclusive flock, which the kernel releases when its holder dies (SIGKILL included):
    a resume after a crash never meets a stale lock, only a leftover file it locks again. The
    holder removes the file on its way out, so a refused job (an infeasible request) leaves
    no file under results_dir.
    """
    path = lock_path(cfg, sweep_id).resolve()
    if path in _HELD:
        yield path
        return
    _HELD[path] = _lock(path, sweep_id)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)  # still locked: a driver that opened it retries (_lock)
        os.close(_HELD.pop(path))


def _lock(path: Path, sweep_id: str) -> int:
    """An open descriptor of the file at `path` holding its exclusive flock; its holder is
    written in it."""
    while True:
        fd = _flock(path, sweep_id)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the file locked was removed by the holder that just left: lock the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    return fd


def _flock(path: Path, sweep_id: str) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Python opens descriptors non-inheritable: the Ray processes this driver starts do
        # not hold the lock once it has died.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise JobError(f"sweep {sweep_id}: cannot create its lock file {path} ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JobError(f"another driver{_holder(path)} is running sweep {sweep_id} (lock {path} held); "
                       "wait for it or stop it") from None
    except OSError as exc:
        if exc.errno in _NO_FLOCK:  # a filesystem without flock (some FUSE or network mounts)
            print(f"warning: sweep {sweep_id}: {path.parent} cannot be locked ({exc.strerror}); "
                  "nothing stops a second driver of this sweep", file=sys.stderr, flush=True)
            return fd
        os.close(fd)
        raise JobError(f"sweep {sweep_id}: cannot lock {path} ({exc.strerror})") from None
    return fd


# flock errors meaning "this filesystem has no locks", not "someone holds it": jobs that ran on
# such a results_dir before the lock existed still run there (with a warning)
_NO_FLOCK = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP)


def _holder(path: Path) -> str:
    """" (pid N on HOST)" from the lock file, "" when it does not say."""
    try:
        pid, host = path.read_text().split()[:2]
    except (OSError, ValueError):
        return ""
    return f" (pid {pid} on {host})"


# ---------------------------------------------------------------- trials


def _device() -> str:
    gpus = ray.get_gpu_ids()
    if not gpus:
        return "cpu"
    import torch  # only when Ray gave this worker a GPU

    if torch.cuda.is_available():
        return "cuda"
    # a GPU Ray counts but torch cannot use (`resources.num_gpus` declared on a machine
    # without CUDA, or a CPU build of torch): said once per task, the rows say device cpu
    print(f"sweep: Ray gave this task GPU {gpus} but torch sees no CUDA device; it runs on the CPU",
          file=sys.stderr, flush=True)
    return "cpu"


def _restored_state() -> dict | None:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        file = Path(folder, _STATE_FILE)
        if not file.exists():
            return None
        try:
            return json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            # Tune copies checkpoints in place (no fsync, no rename): a machine crash can leave
            # the file cut short. The trial then starts over instead of failing every resume.
            print(f"sweep: trial checkpoint {file} is unreadable ({exc.__class__.__name__}); "
                  "the trial starts from its beginning", file=sys.stderr, flush=True)
            return None


def trial_threads(cpus: float) -> int:
    """torch threads of a trial (or preparation task) holding `cpus` Ray CPUs: its whole-CPU
    share, at least 1."""
    return max(1, math.floor(cpus))


def _trial_entry(config: dict, *, fn: Callable, table: str, cpus: float, params: dict) -> None:
    """The Tune function trainable: build the context and run `fn` on this trial's spec."""
    spec = config["trial"]
    ctx = TrialContext(
        trial_key=spec["trial_key"],
        table=table,
        device=_device(),
        threads=trial_threads(cpus),
        node_id=ray.get_runtime_context().get_node_id(),
        params=params,
        state=_restored_state(),
    )
    fn(spec, ctx)


def _trial_name(trial) -> str:
    return f"{trial.trial_id}-{trial.config['trial']['trial_key']}"


def _remote_entry(fn: Callable, cpus: float, args: tuple, kwargs: dict) -> Any:
    # A preparation step (teacher fine-tuning) runs where a trial would, with its device.
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(trial_threads(cpus))
    return fn(*args, device=_device(), **kwargs)


def call_on_worker(cfg: JobConfig, fn: Callable, *args, **kwargs) -> Any:
    """`fn(*args, device=..., **kwargs)` as a Ray task with one trial's resources
    (CPUs: resources.prepare_cpus when set: the one-off preparation runs alone).

    Exceptions raised by `fn` propagate with their own type (Ray's task error subclasses it).
    """
    request = trial_request(cfg)
    if cfg.resources.prepare_cpus is not None:
        request["cpu"] = cfg.resources.prepare_cpus
    return _get_cause(_task(request).remote(fn, request["cpu"], args, kwargs))


def call_as_trials(cfg: JobConfig, fn: Callable, calls: list[tuple],
                   on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """`fn(*args, device=...)` for each `args` of `calls`, each a Ray task with exactly one
    trial's resources (its threads and device), side by side as the cluster holds them, as
    trials run; in the calls' order, each one's result, or the exception it raised (its own
    type, as `call_on_worker` raises it; Ray's own error where its task or worker died): every
    call runs to its end, so that one failing call loses none of the others' results.
    `on_result(i, result)`, if given, is called on the driver as each call ends (in the order
    they end), so that a caller can keep each result before the others finish."""
    request = trial_request(cfg)
    refs = [_task(request).remote(fn, request["cpu"], args, {}) for args in calls]
    index = {ref: i for i, ref in enumerate(refs)}
    settled: list[Any] = [None] * len(refs)
    pending = refs
    while pending:
        (ref,), pending = ray.wait(pending, num_returns=1)
        i = index[ref]
        settled[i] = _settled(ref)
        if on_result:
            on_result(i, settled[i])
    return settled


def _settled(ref) -> Any:
    """`_get_cause(ref)`, or the exception it raises."""
    try:
        return _get_cause(ref)
    except Exception as exc:
        return exc


def call_on_each_node(cfg: JobConfig, fn: Callable, *args) -> dict[str, Any]:
    """node id -> `fn(*args, device=...)` run there in a Ray task with exactly one trial's
    resources, on each alive node that can hold a trial; where none can yet (an autoscaling
    cluster adds one on demand), {"": the result of one such task wherever Ray places it}."""
    request = trial_request(cfg)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and _fits(request, n["Resources"])]
    if not nodes:
        return {"": _get_cause(_task(request).remote(fn, request["cpu"], args, {}))}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    refs = {node: _task(request, NodeAffinitySchedulingStrategy(node, soft=False)).remote(fn, request["cpu"], args, {})
            for node in nodes}
    return {node: _get_cause(ref) for node, ref in refs.items()}


def _task(request: dict[str, float], strategy: Any = "DEFAULT"):
    return ray.remote(_remote_entry).options(num_cpus=request["cpu"], num_gpus=request["gpu"], max_retries=0,
                                             scheduling_strategy=strategy)


def _get_cause(ref) -> Any:
    """ray.get(ref), re-raising the worker's own exception: its message is the one line users need."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, Exception):
            raise exc.cause from None
        raise


def _check_trials(trials: list[dict]) -> None:
    keys = [t.get("trial_key") for t in trials]
    if not trials or None in keys or len(set(keys)) != len(keys):
        raise JobError(f"sweep: trials need distinct trial_key values, got {keys}")


def _tuner(cfg: JobConfig, sweep: Sweep, trainable, storage: Path, resume: bool):
    """(Tuner, restored): restore the experiment when one is on disk, else a new one."""
    path = storage / sweep.sweep_id
    results.RowSink.live(cfg.results_dir, sweep.sweep_id, sweep.stamp)
    if restorable(path):
        tuner = tune.Tuner.restore(
            str(path), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
        return tuner, True
    if resume:
        print(f"nothing to resume at {path}; starting the sweep", flush=True)
    sink = results.RowSink(cfg.results_dir, sweep.sweep_id, sweep.stamp, sweep.tables)
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(sweep.trials)},
        tune_config=tune.TuneConfig(
            reuse_actors=True,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
            max_concurrent_trials=cfg.resources.max_concurrent_trials,
        ),
        run_config=tune.RunConfig(
            name=sweep.sweep_id,
            storage_path=str(storage),
            failure_config=tune.FailureConfig(max_failures=cfg.failure.max_failures),
            callbacks=[sink],
            verbose=1,  # status table only: rows go to the tables, not the console
        ),
    )
    return tuner, False


def _outcome(cfg: JobConfig, sweep: Sweep, path: Path, grid, restored: bool) -> SweepOutcome:
    rows = {t: results.read_rows(cfg.results_dir, t, sweep.sweep_id) for t in sweep.tables}
    # Whether a trial finished is its status in the experiment state on disk: Tune can
    # record a TERMINATED trial whose last result still says done=False (seen under load),
    # which made a finished sweep look interrupted on the next run.
    trials = tune.ExperimentAnalysis(str(path)).trials
    status = {t.config.get("trial", {}).get("trial_key", "?"): t.status for t in trials}
    errors, unfinished = [], []
    for res in grid:
        key = (res.config or {}).get("trial", {}).get("trial_key", "?")
        if res.error is not None:
            errors.append(f"{key}: {str(res.error).strip().splitlines()[-1]}")
        elif status.get(key) != "TERMINATED":
            unfinished.append(key)
    # With max_concurrent_trials Tune creates a trial only when one ends: an interrupt just
    # after a trial ended leaves the rest uncreated, in no result and no state, and the sweep
    # looked finished (exit 0, their rows missing). A resume creates them (Tune saves the grid's
    # position with the experiment).
    unfinished += [t["trial_key"] for t in sweep.trials
                   if t["trial_key"] not in status and t["trial_key"] not in unfinished]
    if unfinished:  # a resume also retries the errored ones (resume_errored=True)
        raise SweepInterrupted(
            f"{sweep.job}: interrupted with {len(unfinished)} unfinished and {len(errors)} "
            "failed trial(s); run the same command again (or with --resume) to continue"
        )
    finished = {t.trial_id: t.config.get("trial", {}).get("trial_key", "?") for t in trials if t.status == "TERMINATED"}
    reported = _reported_rows(path, finished, sweep.tables[0])
    on_disk = {**rows, **{t: results.read_rows(cfg.results_dir, t, sweep.sweep_id)
                          for t in {table for table, _ in reported} - set(rows)}}
    _check_rows_kept(sweep, path, on_disk, list(finished.values()), reported)
    return SweepOutcome(path=path, rows=rows, errors=errors, restored=restored)


def _reported_rows(path: Path, finished: dict[str, str], default_table: str) -> dict[tuple[str, tuple], str]:
    """(table, row key) -> trial key of every row the finished trials (Tune's trial id -> trial
    key) reported in their latest run, read from each trial's `result.json` in the experiment
    folder `path`: Tune appends each result there within one driver's run (a retry's
    included), but a trial resumed without a Tune checkpoint starts the file anew, so rows of
    an earlier, interrupted run are not listed. A row without a table went to `default_table`
    (RowSink's). A trial folder without the file adds nothing."""
    reported = {}
    for result_file in sorted(path.glob("*/result.json")):
        for line in result_file.read_text(errors="replace").splitlines():
            try:
                result = json.loads(line)
            except ValueError:  # a line cut short by a crash: its row is checked on its rerun
                continue
            row = result.get("row") if isinstance(result, dict) else None
            if not isinstance(row, dict) or result.get("trial_id") not in finished:
                continue
            table = result.get("table") or default_table
            # the sink's default round (RowSink.add), so that the key is the stored row's
            reported[(table, results.row_key(table, {"round": 0, **row}))] = finished[result["trial_id"]]
    return reported


def _check_rows_kept(sweep: Sweep, path: Path, rows: dict[str, list[dict]], finished: list[str],
                     reported: dict[tuple[str, tuple], str] | None = None) -> None:
    """JobError when a trial Tune records as finished has lost rows: one it reported
    (`reported`, from `_reported_rows`) is in no table file, or it has no row in the table it
    reports its last row to (`sweep.last_table`, else the first of `sweep.tables`; the check
    that holds when Tune's result files are gone too).

    Every reported row is written when it arrives, so the rows were lost after (a table file
    moved or removed): a restored finished sweep would run nothing and exit 0 with rows
    missing. Checked per table and row key: a student's `quantize` rows do not stand in for its
    lost `distill` row, nor its distill row for its lost `epochs` rows."""
    held = {(table, results.row_key(table, r)) for table, table_rows in rows.items() for r in table_rows}
    lost: dict[str, Counter] = {}  # trial key -> table -> rows lost
    for (table, key), trial in (reported or {}).items():
        if (table, key) not in held:
            lost.setdefault(trial, Counter())[table] += 1
    last_rows = {(table, r.get("trial_key")) for table, table_rows in rows.items() for r in table_rows}
    for k in finished:
        if (sweep.final_table(k), k) not in last_rows and sweep.final_table(k) not in lost.get(k, {}):
            lost.setdefault(k, Counter())[sweep.final_table(k)] = 1
    if lost:
        where = ", ".join(f"{k} ({_row_counts(lost[k])})" for k in sorted(lost))
        raise JobError(f"{sweep.job}: sweep {sweep.sweep_id} finished, but rows of trial(s) {where} are in no "
                       f"table file (a table file of the sweep moved or removed?): remove the folder "
                       f"{path} and run the command again to recompute them; each row replaces the row of the "
                       "same key (none duplicated)")


def _row_counts(per_table: Counter) -> str:
    """"distill: 1 row, epochs: 3 rows"."""
    return ", ".join(f"{table}: {n} row{'s' * (n != 1)}" for table, n in sorted(per_table.items()))


@contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """Inside, Tune may install its SIGINT and SIGUSR1 handlers; on leaving, the caller's are
    back. Tune restores them only when it receives the signal, so after a sweep that ended
    normally the next Ctrl-C (the prune job's quantize stage, `demo`'s next job, the next
    seed) only printed "ending Ray Tune run" and was otherwise ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Tune installs nothing outside the main thread, and signal.signal would refuse
        return
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, getattr(signal, "SIGUSR1", None)) if sig}
    try:
        yield
    finally:
        for sig, handler in kept.items():
            if handler is not None:  # None: installed outside Python, which signal.signal cannot restore
                signal.signal(sig, handler)


def run_sweep(cfg: JobConfig, sweep: Sweep, *, resume: bool = False) -> SweepOutcome:
    """Run (or resume) `sweep` on the connected Ray cluster; rows land in its tables.

    Ray must be initialised (init_ray) and the request pre-checked (precheck) by the
    caller, so that infeasible jobs are refused before any expensive preparation. The
    sweep's lock (exclusive) is held throughout; a job takes it earlier, before its first
    write, so that a second driver is refused before any work.
    """
    _check_trials(sweep.trials)
    request = trial_request(cfg)
    storage = experiment_path(cfg, sweep.sweep_id).parent
    with exclusive(cfg, sweep.sweep_id):
        trainable = tune.with_resources(
            tune.with_parameters(
                _trial_entry, fn=sweep.fn, table=sweep.tables[0], cpus=request["cpu"],
                params=sweep.params,
            ),
            request,
        )
        tuner, restored = _tuner(cfg, sweep, trainable, storage, resume)
        with _signal_handlers_kept():
            grid = tuner.fit()
        return _outcome(cfg, sweep, experiment_path(cfg, sweep.sweep_id), grid, restored)
