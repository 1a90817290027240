"""`python -m ray_jobs bench scaling`: how well Tune sweeps use this machine's cores.

Two measurements, written to the `bench` table and printed:

* scaling: the same set of small, real CPU trials (a fixed torch MLP training, one thread
  each) run with 1 and with 2 concurrent workers; parallel efficiency = T1 / (2 * T2).
* overhead: per-trial cost of Tune itself (trials that do no work), with and without
  `reuse_actors` (a fresh worker process per trial costs a process start and imports).

`python -m ray_jobs bench latency`: forward latency and throughput of the 3 MB students, the
teacher's architecture and CodeBERT-base's (random weights: latency does not depend on values),
each encoding a pair's two sides separately as the compress job's models do (`latency_head`;
`sequence`: one input, CodeBERT-base as a sequence classifier too), at every batch
size and dtype, on this machine's GPU when torch sees one (else its CPU); one `bench` row each,
with the speed-ups against the teacher and CodeBERT architectures measured in the same run
(the models of one dtype and batch timed against each other, in alternated blocks).

`python -m ray_jobs bench train-step`: time of one distillation step (by default the demo's:
32 pairs, both sides, soft-label + in-batch loss, AdamW; `latency_head` `pair_concat` or
`sequence`: the soft-label loss alone) of each student shape at each training precision
(`step_precisions`: fp32, bf16) and attention implementation (`step_attentions`: sdpa,
eager), on the same device choice; one `bench` row each, with the speed-ups over the
same shape's fp32 step (same attention) and over its sdpa step (same precision). The
compress job's BiLSTM_soft baselines (`step_bilstms`: paper width, 3 MB) are timed too, at
each precision with their MSE loss (attention null).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import ray
import torch
from ray import tune

from ray_jobs import results
from ray_jobs.config import build_config, check_object_store, code_version, to_dict
from ray_jobs.errors import (
    ConfigError,
    JobError,
    OneLineParser,
    ResourceError,
    SweepFailed,
    check_results_dir,
)
from ray_jobs.sweep import start_local_ray
from search import printing_to_a_pipe
from search.cost import HEADS, reads_pairs
from search.latency import MIN_SHAPES
from training.checks import check_choices, check_distinct, check_ranges, one_line
from training.evaluate import LATENCY_ROUNDS
from training.models import BiLSTMSoft, emulated

TABLE = "bench"


BILSTM_VARIANTS = BiLSTMSoft.VARIANTS  # the widths the compression job builds


@dataclass(frozen=True)
class BenchConfig:
    results_dir: str = "results"  # the bench table lands under results_dir/table=bench
    trials: int = 16  # trials per scaling run (same set for 1 and 2 workers); 16 amortises Tune's ~5 s sweep start
    steps: int = 4000  # optimiser steps per trial: ~2.5 s of one core each
    batch: int = 64  # rows per step
    width: int = 256  # hidden units of the MLP (work per step ~ batch * width^2)
    overhead_trials: int = 6  # empty trials per overhead run
    workers: tuple[int, ...] = (1, 2)  # concurrent trials compared
    warmup: bool = True  # one untimed sweep first (Ray's worker pool, torch's first import)
    object_store_mb: int = 256  # local cluster only
    # ---- latency: two 3 MB students (layers,hidden,heads,ffn,vocab), its teacher. The shapes the
    # demo's search picks (search.max_layers 1, min_head_size 48); the README's earlier tables
    # were measured on latency_students=["5,112,2,288,1000","4,112,2,416,1000"] (2026-12-05) and
    # its GPU table on ["6,80,8,480,1000","6,48,8,1056,1000"]
    latency_students: tuple[str, ...] = ("1,144,2,1536,1000", "1,160,2,1248,1000")
    latency_teacher: str = "minilm-l6"  # a preset name or a model folder (its config.json)
    latency_seq_len: int = 64  # tokens per side (per input with latency_head=sequence; the demo's max_seq_len)
    latency_batches: tuple[int, ...] = (1, 256)  # 1: interactive latency; 256: throughput
    # fp16 on a CPU is emulated: slower; onnx / onnx_int8: the models in ONNX Runtime (CPU only)
    latency_dtypes: tuple[str, ...] = ("float32", "float16")
    latency_device: str = "auto"  # auto: cuda when torch sees a GPU, else cpu
    # how latency, latency-model and train-step build the students, as the search names heads: "pair_cosine"
    # (the demo's bi-encoder: a pair's two sides encoded separately, mean-pooled, compared by
    # cosine) | "pair_concat" (the paper's clone model, codebert-bigclone.yaml) | "sequence" (one
    # input, codebert-devign.yaml; the references then read one input too)
    latency_head: str = "pair_cosine"
    latency_threads: int | None = None  # CPU threads while timing; None: torch's default
    latency_runs: int = 20  # timed calls per (model, dtype, batch), after 3 untimed
    # blocks each measurement's timed calls are split into, alternated between the models of a
    # dtype and batch and between a train-step shape's precisions and attentions; 1 = one
    # after another, as before 2026-12-05
    latency_rounds: int = LATENCY_ROUNDS
    # ---- train-step (device and threads: latency_device, latency_threads; family: latency_teacher)
    # the two students the demo's search picks without search.max_layers (2 heads of 56) and
    # the two one-layer ones it picks with it (the README's earlier train-step tables add the
    # 8-head "5,112,8,288,1000" and "4,112,8,416,1000")
    step_students: tuple[str, ...] = ("5,112,2,288,1000", "4,112,2,416,1000", "1,144,2,1536,1000",
                                      "1,160,2,1248,1000")
    step_precisions: tuple[str, ...] = ("fp32", "bf16")  # training precisions (distill.precision)
    step_attentions: tuple[str, ...] = ("sdpa", "eager")  # distill.train_attention values timed
    step_batch: int = 32  # pairs (inputs with latency_head=sequence) per step (the demo's distill.batch_size)
    step_seq_len: int = 64  # tokens a side (per input with sequence; the demo's distill.max_seq_len)
    step_runs: int = 20  # timed steps per (student, precision, attention), after 3 untimed
    # the compress job's BiLSTM_soft baselines, timed at the same precisions with their own loss
    # (MSE on the logits, plus the in-batch loss with pair_cosine, as the demo trains them; no
    # attention to switch: `attention` is null): "paper" (Tang et al.'s width) and "budget" (the
    # widest whose fp32 weights fit step_bilstm_mb); [] for none. Vocabulary step_bilstm_vocab
    # (the demo's distill.bilstm_vocab)
    step_bilstms: tuple[str, ...] = ("paper", "budget")
    step_bilstm_mb: float = 3.0
    step_bilstm_vocab: int = 2000
    # ---- latency-model: fit_shapes random students of latency_teacher's space (heads of at least
    # fit_min_head_size dimensions, at most fit_max_mb with latency_head), the layer counts taken
    # in turn, timed at batch 1 as the compress job times a student (latency_seq_len tokens an
    # input; latency_device, latency_threads, latency_runs in latency_rounds alternated blocks);
    # the fitted model is written as JSON to latency_model_out (None:
    # results_dir/latency-model.json) for search.latency_model
    fit_shapes: int = 24
    fit_max_mb: float = 6.0
    fit_min_head_size: int = 1
    fit_seed: int = 0
    latency_model_out: str | None = None

    def __post_init__(self) -> None:  # refused when the command line is read, before Ray or any timing
        check_ranges(self, timed_runs=("latency_runs", "step_runs"),
                     paths=("results_dir", "latency_teacher", "latency_model_out"),
                     counts=("fit_min_head_size", "step_bilstm_vocab"), positive=("fit_max_mb", "step_bilstm_mb"),
                     seeds=("fit_seed",))
        check_choices(self, latency_head=HEADS)
        for variant in self.step_bilstms:
            if variant not in BILSTM_VARIANTS:
                raise ValueError(f"step_bilstms: {variant!r} is not one of {BILSTM_VARIANTS}")
        if self.fit_shapes < MIN_SHAPES:  # three coefficients, and leave-one-out fits of them
            raise ValueError(f"fit_shapes: a latency model needs >= {MIN_SHAPES} shapes, got {self.fit_shapes}")
        # workers=[0] would start Ray with 0 CPUs: a hang; a repeated value would drop a row
        check_ranges(self, counts=("step_batch", "step_seq_len", "latency_seq_len", "trials", "steps", "batch",
                                   "width", "overhead_trials", "workers", "latency_batches",
                                   "latency_rounds"), threads=("latency_threads",))
        check_distinct(self, "workers", "latency_batches", "latency_dtypes", "step_precisions",
                       "step_attentions", "step_bilstms")
        if 1 not in self.workers:  # without it the smallest count was taken to scale perfectly
            raise ValueError(f"workers: must include 1 (speed-up and efficiency are over the one-worker "
                             f"run), got {list(self.workers)}")
        # an empty list would time nothing and write no rows, silently
        for name in ("workers", "latency_batches", "latency_students", "latency_dtypes", "step_students",
                     "step_precisions", "step_attentions"):
            if not getattr(self, name):
                raise ValueError(f"{name}: must not be empty")
        check_object_store(self.object_store_mb)


def train_mlp(steps: int, batch: int, width: int, seed: int) -> float:
    """A fixed small torch training on one thread; returns the final loss."""
    torch.set_num_threads(1)  # one core per trial: concurrency comes from Ray alone
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, generator=gen)  # (B, W)
    y = torch.randint(0, 2, (batch,), generator=gen)  # (B,)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, 2)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


def _work_trial(config: dict) -> None:
    start = time.perf_counter()
    loss = train_mlp(config["steps"], config["batch"], config["width"], config["seed"])
    tune.report(
        {
            "loss": loss,
            "work_s": time.perf_counter() - start,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
        }
    )


def _empty_trial(config: dict) -> None:
    tune.report({"work_s": 0.0, "pid": os.getpid()})


def _sweep(trainable, param_space: dict, concurrency: int, reuse: bool, storage: str) -> dict:
    """Run one Tune sweep; wall seconds and the trials' reported results."""
    load = os.getloadavg()[0]  # other processes' demand: context for a noisy figure
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=reuse),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    start = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - start
    errors = [r.error for r in grid if r.error is not None]
    if errors:
        raise RuntimeError(f"bench trial failed: {errors[0]}")
    return {"wall_s": wall, "metrics": [r.metrics for r in grid], "load_1m": load}


def run_scaling(cfg: BenchConfig, storage: str) -> list[dict]:
    """Rows of the scaling and overhead runs (one row per run)."""
    work_space = {
        "steps": cfg.steps,
        "batch": cfg.batch,
        "width": cfg.width,
        "seed": tune.grid_search(list(range(cfg.trials))),
    }
    rows = []
    if cfg.warmup:
        _sweep(_work_trial, {**work_space, "seed": tune.grid_search([0])}, 1, True, storage)
    for workers in cfg.workers:
        out = _sweep(_work_trial, work_space, workers, True, storage)
        rows.append(_row("scaling", workers, True, cfg.trials, out))
    base = next(r for r in rows if r["workers"] == 1)  # BenchConfig requires it
    for row in rows:
        row["speedup"] = base["wall_s"] / row["wall_s"]
        row["efficiency"] = row["speedup"] / row["workers"]
    empty_space = {"i": tune.grid_search(list(range(cfg.overhead_trials)))}
    for reuse in (False, True):
        out = _sweep(_empty_trial, empty_space, 1, reuse, storage)
        rows.append(_row("overhead", 1, reuse, cfg.overhead_trials, out))
    return rows


def _row(kind: str, workers: int, reuse: bool, trials: int, out: dict) -> dict:
    work = sum(m.get("work_s", 0.0) for m in out["metrics"])
    return {
        "trial_key": f"{kind}-w{workers}-{'reuse' if reuse else 'fresh'}",
        "bench": kind,
        "workers": workers,
        "reuse_actors": reuse,
        "trials": trials,
        "wall_s": out["wall_s"],
        "trial_s": work,  # sum of the trials' own work seconds
        # Seconds per trial not spent in the trial's own work (Tune + process costs).
        "overhead_s": (out["wall_s"] * workers - work) / trials,
        "worker_processes": len({m.get("pid") for m in out["metrics"]}),
        "load_1m": out["load_1m"],  # machine load average when the run started
        "speedup": None,
        "efficiency": None,
    }


def _init_ray(cfg: BenchConfig, temp_dir: str) -> None:
    """Join the cluster in RAY_ADDRESS, else start a private local one with max(workers) CPUs.
    ResourceError when the cluster joined has fewer CPUs than the most workers asked: those
    trials would run fewer at once than the rows say (each trial takes one CPU)."""
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
        cpus = ray.cluster_resources().get("CPU", 0)
        if max(cfg.workers) > cpus:
            ray.shutdown()
            raise ResourceError(f"workers: {max(cfg.workers)} concurrent one-CPU trials asked, but the cluster "
                                f"at RAY_ADDRESS has {cpus:g} CPUs now (nodes an autoscaler has not started count "
                                "none, and timing their start would not measure scaling)")
        return
    start_local_ray(cfg.object_store_mb, "object_store_mb", num_cpus=max(cfg.workers), num_gpus=0,
                    _temp_dir=temp_dir, log_to_driver=False)


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        if r["bench"] == "scaling":
            print(
                f"scaling  workers={r['workers']}  trials={r['trials']}  wall={r['wall_s']:.2f}s"
                f"  work={r['trial_s']:.2f}s  speedup={r['speedup']:.2f}"
                f"  efficiency={100 * r['efficiency']:.1f}%  load={r['load_1m']:.1f}"
            )
        else:
            print(
                f"overhead reuse_actors={r['reuse_actors']!s:5}  trials={r['trials']}"
                f"  per-trial={r['overhead_s']:.2f}s  worker processes={r['worker_processes']}"
            )


def parse_args(argv: list[str]) -> tuple[str, BenchConfig]:
    """(what, config) from the command line; JobError / ConfigError on bad input."""
    parser = OneLineParser(prog="python -m ray_jobs bench", description=__doc__)
    parser.add_argument("what", choices=["scaling", "latency", "train-step", "latency-model"])
    # default=[]: without one argparse counts a `*` positional as required and names it when
    # `what` is missing ("required: what, overrides")
    parser.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                        help="e.g. trials=4 steps=50")
    parser.add_argument("--tiny", action="store_true", help="seconds-long run (tests)")
    args = parser.parse_intermixed_args(argv)
    tiny = ["trials=2", "steps=5", "overhead_trials=2", "warmup=false",
            "latency_seq_len=8", "latency_batches=[1,2]", "step_batch=4", "step_seq_len=8", "fit_shapes=6",
            "fit_max_mb=1.0"] if args.tiny else []
    return args.what, build_config(BenchConfig, {}, tiny + args.overrides)


def main(argv: list[str]) -> int:
    what, cfg = parse_args(argv)
    try:
        return _run(what, cfg)
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        if not _out_of_memory(exc):
            raise
        # `latency_batches=[100000000000]` ended in the allocator's traceback
        raise SweepFailed(f"bench {what}: out of memory ({one_line(str(exc))[:300]}): lower its batch sizes "
                          "or sequence lengths") from None


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation the machine could not satisfy: Python's, or torch's CPU or CUDA allocator's."""
    return isinstance(exc, MemoryError | torch.OutOfMemoryError) or "can't allocate memory" in str(exc)


def _run(what: str, cfg: BenchConfig) -> int:
    results_dir = os.path.abspath(os.path.expanduser(cfg.results_dir))
    _check_outputs(what, cfg, results_dir)
    if what == "latency":
        return run_latency(cfg, results_dir)
    if what == "train-step":
        return run_train_step(cfg, results_dir)
    if what == "latency-model":
        return run_latency_model(cfg, results_dir)
    if max(cfg.workers) > cfg.trials:  # efficiency divides by workers that could never all run
        raise ConfigError(f"workers: {max(cfg.workers)} concurrent trials asked of a run of trials={cfg.trials}: "
                          f"at most {cfg.trials} run at once; raise trials or lower workers")
    sweep_id = bench_id("scaling")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        storage = os.path.join(tmp, "tune")
        _init_ray(cfg, os.path.join(tmp, "ray"))
        try:
            stamp = _stamp(cfg, sweep_id)
            rows = run_scaling(cfg, storage)
        finally:
            ray.shutdown()
    return _write(results_dir, sweep_id, [{**stamp, **r} for r in rows], cfg, stamp, lambda: print_rows(rows))


def _model_out(cfg: BenchConfig, results_dir: str) -> str:
    """Where `bench latency-model` writes the fitted model."""
    if cfg.latency_model_out:
        return os.path.abspath(os.path.expanduser(cfg.latency_model_out))
    return os.path.join(results_dir, "latency-model.json")


def _check_outputs(what: str, cfg: BenchConfig, results_dir: str) -> None:
    """JobError before any timing when the rows (or the latency model) could not be written:
    minutes of measurements would be lost after them."""
    check_results_dir(results_dir)
    if what == "latency-model":
        out = _model_out(cfg, results_dir)
        if os.path.isdir(out):
            raise JobError(f"latency_model_out: {out} is a folder")
        check_results_dir(os.path.dirname(out), "latency_model_out")


def bench_id(kind: str) -> str:
    """A bench run's sweep id: its kind, the UTC second it started (ids sort by time) and
    12 random hex digits, so two runs started in the same second never share (overwrite) a
    file (with 6, the 50 ids its test draws in one second had a 7e-5 chance of sharing one)."""
    return f"bench-{kind}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(6)}"


def _write(results_dir: str, sweep_id: str, rows: list[dict], cfg: BenchConfig, stamp: dict,
           show: Callable[[], None], then: Callable[[], None] | None = None) -> int:
    """Write the bench rows and the run's `configs` row (every setting it ran with), run
    `then` (another file to write), then print them with `show()`: written first, so a reader
    that stops reading (`| head`) loses none and ends the command quietly (exit 141); a failed
    write still prints the measurements."""
    try:
        path = results.write_rows(results_dir, TABLE, sweep_id, rows)
        results.write_config(results_dir, "bench", sweep_id, to_dict(cfg), stamp)
        if then is not None:
            then()
    except BaseException:
        show()  # minutes of measurements: on the screen at least
        raise
    def report() -> int:
        show()
        print(f"wrote {len(rows)} rows to {path}")
        return 0

    return printing_to_a_pipe(report)


def _stamp(cfg: BenchConfig, sweep_id: str, node_id: str | None = None, device: str = "cpu") -> dict:
    """The columns every row carries: origin of the measurement (node_id: Ray's, by default)."""
    tree = to_dict(cfg)
    tree.pop("results_dir")
    blob = json.dumps(tree, sort_keys=True, default=str)
    return {
        "sweep_id": sweep_id,
        "round": 0,
        "config_hash": hashlib.sha256(blob.encode()).hexdigest(),
        "code_version": code_version(),
        "time": time.time(),
        "node_id": ray.get_runtime_context().get_node_id() if node_id is None else node_id,
        "device": device,
    }


# ---------------------------------------------------------------- latency


# After a printed timing of a half dtype this device converts rather than computes.
_EMULATED = "  (emulated on this device: no native units)"


def _device(cfg: BenchConfig) -> tuple[str, str]:
    """(device, its name) from latency_device, refused when this machine lacks it."""
    import torch

    device = cfg.latency_device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", device):
        raise ConfigError(f"latency_device: must be auto, cpu or cuda[:N], got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise JobError(f"latency_device={device}: torch sees no CUDA device on this machine")
    index = int(device.partition(":")[2] or 0)
    if device.startswith("cuda") and index >= torch.cuda.device_count():
        raise JobError(f"latency_device={device}: torch sees {torch.cuda.device_count()} CUDA device(s) "
                       "on this machine (cuda:0 is the first)")
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor() or "cpu"
    return device, name


def _students(key: str, specs: tuple[str, ...]) -> list:
    """Archs of 'layers,hidden,heads,ffn,vocab' strings; ConfigError naming `key`."""
    from search.space import Arch

    try:
        return [Arch(*(int(g) for g in text.split(","))) for text in specs]
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key}: each is 'layers,hidden,heads,ffn,vocab' ({err})") from err


def _teacher(cfg: BenchConfig):
    from search.space import teacher_spec

    try:
        return teacher_spec(cfg.latency_teacher)
    except (OSError, ValueError) as err:
        raise ConfigError(f"latency_teacher: {err}") from err


def _check_rounds(cfg: BenchConfig, runs_key: str) -> None:
    """ConfigError when latency_rounds splits the command's timed runs (`runs_key`: latency_runs
    for latency, step_runs for train-step) into more blocks than there are runs."""
    runs = getattr(cfg, runs_key)
    if cfg.latency_rounds > runs:
        raise ConfigError(f"latency_rounds: at most {runs_key} ({runs}) blocks of timed runs, "
                          f"got {cfg.latency_rounds}")


def _check_seq_len(key: str, seq_len: int, teachers: list) -> None:
    """ConfigError naming `key` when a model of one of `teachers`' families cannot hold
    `seq_len` tokens (its position table), before any model is built or timed."""
    limit = min(t.usable_positions for t in teachers)
    if seq_len > limit:
        names = " and ".join(t.name for t in teachers)
        raise ConfigError(f"{key}: {seq_len} tokens is more than the {limit} positions {names} can use")


def _latency_setup(cfg: BenchConfig):
    """(device, device_name, models), refusing a bad request before any timing."""
    from search.space import teacher_spec
    from training.evaluate import head_models
    from training.onnx_export import ONNX_VARIANTS

    _check_rounds(cfg, "latency_runs")
    teacher = _teacher(cfg)
    _check_seq_len("latency_seq_len", cfg.latency_seq_len, [teacher, teacher_spec("codebert-base")])
    device, name = _device(cfg)
    for dtype in cfg.latency_dtypes:
        if dtype not in ("float32", "float16", "bfloat16", *ONNX_VARIANTS):
            raise ConfigError(f"latency_dtypes: {dtype!r} is not float32, float16, bfloat16, onnx or onnx_int8")
    if device != "cpu" and set(cfg.latency_dtypes) & set(ONNX_VARIANTS):
        raise ConfigError("latency_dtypes: onnx and onnx_int8 run on the CPU here (ONNX Runtime's CPU "
                          f"provider): add latency_device=cpu, got {device}")
    students = _students("latency_students", cfg.latency_students)
    return device, name, head_models(students, teacher, cfg.latency_head, references=True)


def _inputs(pair: bool) -> str:
    """What the bench's latency figures time, after a token count."""
    return "tokens a side, pairs encoded separately" if pair else "tokens, one sequence"


def run_latency(cfg: BenchConfig, results_dir: str) -> int:
    """Time every model at every dtype and batch; print the figures and write the bench rows."""
    from training.evaluate import forward_latencies

    device, device_name, models = _latency_setup(cfg)
    sweep_id = bench_id("latency")
    stamp = _stamp(cfg, sweep_id, node_id=platform.node(), device=device)
    pair = reads_pairs(cfg.latency_head)
    rows, failure = [], None
    for dtype in cfg.latency_dtypes:  # one at a time: a dtype that fails keeps the rows timed before it
        try:
            rows += forward_latencies(models, seq_len=cfg.latency_seq_len, batches=cfg.latency_batches,
                                      dtypes=(dtype,), device=device, runs=cfg.latency_runs,
                                      threads=cfg.latency_threads, rounds=cfg.latency_rounds, pair=pair)
        except (RuntimeError, NotImplementedError, OSError, MemoryError) as exc:  # a kernel or an export this machine lacks
            failure = exc
            kept = f"the {len(rows)} rows timed before it are written" if rows else "nothing was timed before it"
            print(f"bench latency: {dtype} failed ({exc.__class__.__name__}: {one_line(str(exc))}); {kept}",
                  file=sys.stderr)
            break
    rows = [{**stamp, **r, "bench": "latency", "device_name": device_name, "head": cfg.latency_head,
             "emulated": emulated(r["dtype"], device.partition(":")[0]),
             "trial_key": f"latency-{r['model']}-{r['dtype']}-b{r['batch']}"} for r in rows]

    def show() -> None:
        print(f"latency on {device} ({device_name}), {cfg.latency_seq_len} {_inputs(pair)} "
              f"({cfg.latency_head} head)")
        for r in rows:
            print(f"{r['model']:14} {r['dtype']:9} batch={r['batch']:<4} median={r['median_ms']:9.2f} ms"
                  f"  p90={r['p90_ms']:9.2f} ms  {r['pairs_per_s']:10.0f} {'pairs' if pair else 'inputs'}/s"
                  f"  vs teacher {r['speedup_vs_teacher']:6.2f}x  vs CodeBERT {r['speedup_vs_codebert']:6.2f}x"
                  f"{_EMULATED if r['emulated'] else ''}")
    if not rows and failure is not None:
        raise failure
    written = _write(results_dir, sweep_id, rows, cfg, stamp, show)
    if failure is not None:
        raise failure
    return written


# ---------------------------------------------------------------- train-step


def _ratio(speedup: float | None) -> str:
    return f"{speedup:5.2f}x" if speedup else "  n/a"


def run_train_step(cfg: BenchConfig, results_dir: str) -> int:
    """Time one distillation step of every student and BiLSTM_soft baseline at every precision
    (students at every attention too); print and write rows."""
    from training.distill import ATTENTION_IMPLEMENTATIONS, distill_step_times
    from training.evaluate import head_models
    from training.finetune import PRECISIONS

    device, device_name = _device(cfg)
    for precision in cfg.step_precisions:
        if precision not in PRECISIONS:
            raise ConfigError(f"step_precisions: {precision!r} is not one of {PRECISIONS}")
    for attention in cfg.step_attentions:
        if attention not in ATTENTION_IMPLEMENTATIONS:
            raise ConfigError(f"step_attentions: {attention!r} is not one of {ATTENTION_IMPLEMENTATIONS}")
    students = _students("step_students", cfg.step_students)
    _check_rounds(cfg, "step_runs")
    teacher = _teacher(cfg)
    _check_seq_len("step_seq_len", cfg.step_seq_len, [teacher])
    models = head_models(students, teacher, cfg.latency_head)
    shapes = dict(zip(models, cfg.step_students, strict=True))
    for name, (model, vocab) in _bilstms(cfg).items():
        models[name] = model, vocab
        shapes[name] = f"BiLSTM H{model.config['hidden']} V{vocab}"
    sweep_id = bench_id("train-step")
    stamp = _stamp(cfg, sweep_id, node_id=platform.node(), device=device)
    rows = distill_step_times(models, batch=cfg.step_batch, seq_len=cfg.step_seq_len,
                              precisions=cfg.step_precisions, attentions=cfg.step_attentions,
                              head=cfg.latency_head, device=device, runs=cfg.step_runs,
                              threads=cfg.latency_threads, rounds=cfg.latency_rounds)
    rows = [{**stamp, **r, "bench": "train_step", "device_name": device_name, "arch": shapes[r["model"]],
             "head": cfg.latency_head, "emulated": emulated(r["dtype"], device.partition(":")[0]),
             "trial_key": f"train-step-{r['model']}-{r['dtype']}-{r['attention'] or 'lstm'}"}
            for r in rows]

    def show() -> None:
        pair = reads_pairs(cfg.latency_head)
        print(f"distillation step ({cfg.latency_head} head) on {device} ({device_name}), batch {cfg.step_batch} x "
              f"{cfg.step_seq_len} {_inputs(pair)}, {rows[0]['threads'] if rows else '?'} thread(s)")
        for r in rows:
            print(f"{r['model']:13} {r['arch']:18} {r['dtype']:5} {r['attention'] or '-':5} median={r['median_ms']:9.1f} ms"
                  f"  p90={r['p90_ms']:9.1f} ms  {r['pairs_per_s']:8.0f} {'pairs' if pair else 'inputs'}/s"
                  f"  vs fp32 {_ratio(r['speedup_vs_fp32'])}  vs sdpa {_ratio(r['speedup_vs_sdpa'])}"
                  f"{_EMULATED if r['emulated'] else ''}")
    return _write(results_dir, sweep_id, rows, cfg, stamp, show)


def _bilstms(cfg: BenchConfig) -> dict:
    """"bilstm-VARIANT" -> (BiLSTM_soft, vocab) for each of step_bilstms, reading pairs as
    latency_head says; ConfigError naming step_bilstm_mb when no width fits it."""
    import torch

    from training.models import BiLSTMSoft

    torch.manual_seed(0)
    models = {}
    for variant in cfg.step_bilstms:
        try:
            model = BiLSTMSoft.baseline(variant, cfg.step_bilstm_vocab, target_mb=cfg.step_bilstm_mb,
                                        pair=reads_pairs(cfg.latency_head))
        except ValueError as err:  # the variants were checked with the config: the budget fits none
            raise ConfigError(f"step_bilstm_mb: {err}") from err
        models[f"bilstm-{variant}"] = model, cfg.step_bilstm_vocab
    return models


# ---------------------------------------------------------------- latency-model


def sample_shapes(cfg: BenchConfig, teacher) -> list:
    """`fit_shapes` distinct random Archs of `teacher`'s space within fit_max_mb (with latency_head's
    parameters) and fit_min_head_size, layer counts taken in turn (1, 2, ... teacher's, 1, ...;
    a count with no new shape in 200 draws is passed over); ConfigError when the space has too
    few such shapes."""
    import random

    from search import cost
    from search.space import Arch, InputError, SearchSpace

    try:
        space = SearchSpace.from_teacher(teacher, min_head_size=cfg.fit_min_head_size)
    except InputError as err:
        raise ConfigError(f"fit_min_head_size: {err}") from err
    rng = random.Random(cfg.fit_seed)
    layers, found, turn, misses, stale = space.choices()[0], {}, 0, 0, 0
    # until ten passes over every layer count find no new shape: the space is spent (a large
    # fit_shapes drew 1,000 times per requested shape, minutes, before its refusal)
    while len(found) < cfg.fit_shapes and stale < 2000 * len(layers):
        hidden, heads = rng.choice(space.hidden), rng.choice(space.heads)
        arch = Arch(int(layers[turn % len(layers)]), hidden, heads, rng.choice(space.ffn), rng.choice(space.vocab))
        if (space.feasible(hidden, heads) and cost.size_mb(arch, teacher, head=cfg.latency_head) <= cfg.fit_max_mb
                and arch not in found):
            found[arch], turn, misses, stale = None, turn + 1, 0, 0
            continue
        stale += 1
        if (misses := misses + 1) >= 200:  # a layer count with (almost) nothing within fit_max_mb
            turn, misses = turn + 1, 0
    if len(found) < cfg.fit_shapes:
        raise ConfigError(f"fit_shapes: found {len(found)} distinct shapes of {teacher.name} within "
                          f"fit_max_mb={cfg.fit_max_mb} (heads >= {cfg.fit_min_head_size} dimensions), "
                          f"not {cfg.fit_shapes}")
    return list(found)


def run_latency_model(cfg: BenchConfig, results_dir: str) -> int:
    """Time `sample_shapes`' students, fit `search.latency.fit` to them, write the model's JSON
    (latency_model_out) and one bench row per shape; print the fit and its leave-one-out errors."""
    import numpy as np

    from search import cost
    from search import latency as lat
    from training.evaluate import classifier_call, head_models, time_calls

    _check_rounds(cfg, "latency_runs")
    teacher = _teacher(cfg)
    _check_seq_len("latency_seq_len", cfg.latency_seq_len, [teacher])
    device, device_name = _device(cfg)
    archs = sample_shapes(cfg, teacher)
    out = _model_out(cfg, results_dir)
    pair = reads_pairs(cfg.latency_head)
    models = head_models(archs, teacher, cfg.latency_head)
    calls = {name: classifier_call(model, vocab, seq_len=cfg.latency_seq_len, pair=pair, device=device)
             for name, (model, vocab) in models.items()}
    stats = time_calls(calls, warmup=3, runs=cfg.latency_runs, threads=cfg.latency_threads,
                       rounds=cfg.latency_rounds)
    gflops = [cost.flops(a, cfg.latency_seq_len)["total"] / 1e9 for a in archs]
    threads = next(iter(stats.values()))["threads"]
    measured = [a.layers for a in archs], gflops, [stats[n]["median_ms"] for n in models]
    heads = [a.heads for a in archs]
    model = lat.fit(*measured, heads=heads,
                    seq_len=cfg.latency_seq_len, pair=pair, head=cfg.latency_head, threads=threads if device == "cpu" else None,
                    device=device, machine=f"{device_name} ({platform.machine()})",
                    shapes=[dataclasses.asdict(a) for a in archs])
    heads_term = lat.heads_term_errors(*measured, heads)  # what `fit` judged the per-head term by
    sweep_id = bench_id("latency-model")
    stamp = _stamp(cfg, sweep_id, node_id=platform.node(), device=device)
    fit = {name: getattr(model, name) for name in lat.COEFFICIENTS}
    rows = [{**stamp, "bench": "latency_model", "device_name": device_name,
             "trial_key": f"latency-model-{name}", "model": name,
             "arch": ",".join(str(g) for g in a.genes()), "head": cfg.latency_head, "seq_len": cfg.latency_seq_len,
             "batch": 1,
             "threads": stats[name]["threads"], "median_ms": stats[name]["median_ms"],
             "p90_ms": stats[name]["p90_ms"], "gflops": sample["gflops"],
             "predicted_ms": sample["predicted_ms"], "loo_ms": sample["loo_ms"], **fit}
            for (name, a), sample in zip(zip(models, archs, strict=True), model.samples, strict=True)]
    errors = lat.loo_errors(model)

    def show() -> None:
        print(f"latency of {len(archs)} {teacher.name}-family students ({cfg.latency_head} head) on {device} "
              f"({device_name}), batch 1, {cfg.latency_seq_len} {_inputs(pair)}, {threads} thread(s)")
        for r in rows:
            print(f"{r['arch']:22} {r['gflops']:8.4f} GFLOPs  measured {r['median_ms']:8.3f} ms  "
                  f"fit {r['predicted_ms']:8.3f}  left out {r['loo_ms']:8.3f} ms")
        print(f"fit: {model.describe()}")
        print(f"leave-one-out error: median {100 * float(np.median(errors)):.1f}%, max {100 * float(errors.max()):.1f}%")
        if heads_term:
            print(f"per-head term: {'kept' if lat.keeps_heads_term(heads_term) else 'left out'} (mean leave-one-out error "
                  f"{100 * heads_term[0]:.1f}% with it, {100 * heads_term[1]:.1f}% without)")
        if saved:
            print(f"wrote the latency model to {out} (search.latency_model={out} search.max_ms=...)")

    saved = []

    def save() -> None:  # after the rows: a model file that cannot be written loses none of them
        try:
            saved.append(lat.save(model, out))
        except OSError as err:
            raise JobError(f"latency_model_out: cannot write {out}: {err} (the rows are in the bench table)") from None
    return _write(results_dir, sweep_id, rows, cfg, stamp, show, then=save)
