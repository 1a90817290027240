"""`python -m ray_jobs bench scaling|latency|train-step|latency-model --tiny` run real trials / real forwards and write
the bench table."""

import json
import os
import re
import subprocess
import sys

import pytest

from ray_jobs import results
from search import cost
from search.space import Arch
from training.models import emulated


def _bench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "ray_jobs", "bench", *args], env=env,
                          capture_output=True, text=True, timeout=360)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_bench_scaling_tiny_writes_rows(tmp_path):
    proc = _bench("scaling", "--tiny", f"results_dir={tmp_path}")
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
    for r in rows:  # the workers' seconds not spent in the trials' own work, per trial
        assert r["overhead_s"] == pytest.approx((r["wall_s"] * r["workers"] - r["trial_s"]) / r["trials"])
    fresh, reused = (next(r for r in rows if r["bench"] == "overhead" and r["reuse_actors"] is v)
                     for v in (False, True))
    # Without reuse every trial gets its own worker process; with reuse they share one.
    assert fresh["worker_processes"] == 2 and reused["worker_processes"] == 1


def test_bench_latency_tiny_times_every_model_dtype_and_batch(tmp_path):
    proc = _bench("latency", "--tiny", "latency_device=cpu", f"results_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pairs/s" in proc.stdout and "vs CodeBERT" in proc.stdout
    rows = results.query(tmp_path, "SELECT * FROM bench WHERE bench = 'latency'").to_pylist()
    models = {"student-0", "student-1", "teacher-arch", "codebert-arch"}
    assert {(r["model"], r["dtype"], r["batch"]) for r in rows} == {
        (m, d, b) for m in models for d in ("float32", "float16") for b in (1, 2)}
    by = {(r["model"], r["dtype"], r["batch"]): r["median_ms"] for r in rows}
    for r in rows:
        assert r["device"] == "cpu" and r["seq_len"] == 8 and r["median_ms"] > 0 and r["code_version"]
        assert r["pairs_per_s"] == pytest.approx(r["batch"] / r["median_ms"] * 1e3)
        assert r["speedup_vs_teacher"] == pytest.approx(by["teacher-arch", r["dtype"], r["batch"]] / r["median_ms"])
        assert r["speedup_vs_codebert"] == pytest.approx(by["codebert-arch", r["dtype"], r["batch"]] / r["median_ms"])
        assert r["emulated"] is emulated(r["dtype"], "cpu")  # float32: None; float16: this CPU's answer
    assert ("(emulated on this device" in proc.stdout) is emulated("float16", "cpu")


def test_a_dtype_that_fails_keeps_the_rows_timed_before_it(tmp_path, monkeypatch, capsys):
    """float16 fails here (as a kernel or an export missing on a machine would): the float32
    rows timed before it are written and shown, and the failure is raised after them."""
    import training.evaluate
    from ray_jobs import bench

    real = training.evaluate._as_dtype

    def no_half(model, vocab, dtype, *args, **kwargs):
        if dtype == "float16":
            raise RuntimeError("no half kernel on this machine")
        return real(model, vocab, dtype, *args, **kwargs)

    monkeypatch.setattr(training.evaluate, "_as_dtype", no_half)
    with pytest.raises(RuntimeError, match="no half kernel"):
        bench.main(["latency", "--tiny", "latency_device=cpu", f"results_dir={tmp_path}",
                    "latency_dtypes=[float32,float16]"])
    rows = results.query(tmp_path, "SELECT * FROM bench").to_pylist()
    assert {r["dtype"] for r in rows} == {"float32"} and len(rows) == 4 * 2  # 4 models x 2 batches
    out, err = capsys.readouterr()
    assert "bench latency: float16 failed (RuntimeError: no half kernel on this machine); the 8 rows" in err
    assert out.count("float32") == 8


# 10^13 pairs of 8 tokens: 640 TB of token ids, beyond a 64-bit process's 128 TB address space,
# so the allocation fails whatever the kernel's overcommit setting
@pytest.mark.parametrize("what, batch", [("latency", "latency_batches=[10000000000000]"),
                                         ("train-step", "step_batch=10000000000000")])
def test_a_batch_the_machine_cannot_hold_fails_in_one_line(tmp_path, what, batch, capsys):
    """The allocator's failure (a traceback before) ends the command with exit 1 and one line."""
    from ray_jobs.__main__ import main

    assert main(["bench", what, "--tiny", "latency_device=cpu", "latency_threads=1", f"results_dir={tmp_path}",
                 "latency_dtypes=[float32]", "step_precisions=[fp32]", "step_attentions=[sdpa]", batch]) == 1
    err = capsys.readouterr().err
    assert f"failed: bench {what}: out of memory (" in err and "lower its batch sizes" in err
    assert "Traceback" not in err


@pytest.mark.slow  # exports and quantizes CodeBERT-base's architecture (about 40 s)
@pytest.mark.parametrize("head, inputs", [("pair_cosine", "tokens a side, pairs encoded separately"),
                                          ("sequence", "tokens, one sequence")])
def test_bench_latency_in_onnx_runtime(tmp_path, head, inputs):
    """The models exported and run by ONNX Runtime, compared with each other at the same dtype."""
    proc = _bench("latency", "--tiny", "latency_device=cpu", "latency_dtypes=[float32,onnx_int8]",
                  "latency_batches=[1]", f"results_dir={tmp_path}", f"latency_head={head}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"8 {inputs} ({head} head)" in proc.stdout
    rows = results.query(tmp_path, "SELECT * FROM bench WHERE bench = 'latency'").to_pylist()
    assert {r["head"] for r in rows} == {head}
    assert {(r["model"], r["dtype"]) for r in rows} == {
        (m, d) for m in ("student-0", "student-1", "teacher-arch", "codebert-arch") for d in ("float32", "onnx_int8")}
    by = {(r["model"], r["dtype"]): r["median_ms"] for r in rows}
    for r in rows:
        assert r["median_ms"] > 0
        assert r["speedup_vs_codebert"] == pytest.approx(by["codebert-arch", r["dtype"]] / r["median_ms"])


def test_onnx_latencies_refuse_a_gpu():
    from training.evaluate import forward_latencies

    with pytest.raises(ValueError, match="ONNX Runtime runs here on the CPU only"):
        forward_latencies({}, seq_len=8, dtypes=("onnx",), device="cuda")


# the demo's bi-encoder; the paper's clone model; codebert-devign's single-sequence students
@pytest.mark.parametrize("head", ["pair_cosine", "pair_concat", "sequence"])
def test_bench_train_step_tiny_times_every_student_precision_and_attention(tmp_path, head):
    proc = _bench("train-step", "--tiny", "latency_device=cpu", "latency_threads=1", f"results_dir={tmp_path}",
                  f"latency_head={head}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "vs fp32" in proc.stdout and "vs sdpa" in proc.stdout and f"({head} head)" in proc.stdout
    assert ("pairs/s" in proc.stdout) == (head != "sequence") and ("inputs/s" in proc.stdout) == (head == "sequence")
    rows = results.query(tmp_path, "SELECT * FROM bench WHERE bench = 'train_step'").to_pylist()
    shapes = ["5,112,2,288,1000", "4,112,2,416,1000", "1,144,2,1536,1000", "1,160,2,1248,1000"]
    # the BiLSTM_soft baselines at each precision, with no attention to switch: the paper's
    # width, and the widest that fits 3 MB (H134 for a pair model's 8x-wide dense input, H153 for one input)
    bilstms = ["BiLSTM H300 V2000", f"BiLSTM H{134 if head != 'sequence' else 153} V2000"]
    assert sorted((r["arch"], r["dtype"], r["attention"] or "") for r in rows) == sorted(
        [(a, p, at) for a in shapes for p in ("fp32", "bf16") for at in ("sdpa", "eager")]
        + [(a, p, "") for a in bilstms for p in ("fp32", "bf16")])
    assert len({r["trial_key"] for r in rows}) == len(rows)  # no row replaces another
    median = {(r["arch"], r["dtype"], r["attention"]): r["median_ms"] for r in rows}
    for r in rows:
        assert r["device"] == "cpu" and r["batch"] == 4 and r["seq_len"] == 8 and r["threads"] == 1 and r["head"] == head
        assert r["median_ms"] > 0 and r["pairs_per_s"] == pytest.approx(4 / r["median_ms"] * 1e3)
        assert r["emulated"] is emulated(r["dtype"], "cpu")
        fp32 = median[r["arch"], "fp32", r["attention"]]
        assert r["speedup_vs_fp32"] == pytest.approx(fp32 / r["median_ms"])
        if r["attention"] is None:
            assert r["model"].startswith("bilstm-") and r["speedup_vs_sdpa"] is None
        else:
            assert r["speedup_vs_sdpa"] == pytest.approx(median[r["arch"], r["dtype"], "sdpa"] / r["median_ms"])
    # the run's settings, joinable to its rows
    (config,) = results.query(tmp_path, "SELECT job, sweep_id, config FROM configs").to_pylist()
    assert config["job"] == "bench" and config["sweep_id"] == rows[0]["sweep_id"]
    assert json.loads(config["config"])["latency_threads"] == 1


@pytest.mark.parametrize("head, built", [("pair_cosine", "PairEncoderForSequenceClassification"),
                                         ("sequence", "BertForSequenceClassification")])
def test_train_step_times_the_students_its_head_names(tmp_path, monkeypatch, head, built):
    """The head reaches the models and the step, not only the rows' label (in-process, one fp32 shape)."""
    import training.distill
    from ray_jobs import bench

    real, seen = training.distill.distill_step_times, {}

    def spy(models, **kwargs):
        seen.update(types={type(m).__name__ for m, _ in models.values()}, head=kwargs["head"],
                    bilstm_pairs={m.pair for m, _ in models.values() if type(m).__name__ == "BiLSTMSoft"})
        return real(models, **kwargs)

    monkeypatch.setattr(training.distill, "distill_step_times", spy)
    assert bench.main(["train-step", "--tiny", "latency_device=cpu", "latency_threads=1", f"results_dir={tmp_path}",
                       f"latency_head={head}", "step_students=[\"1,32,2,64,1000\"]", "step_precisions=[fp32]",
                       "step_attentions=[sdpa]", "step_bilstms=[budget]"]) == 0
    assert seen == {"types": {built, "BiLSTMSoft"}, "head": head, "bilstm_pairs": {head != "sequence"}}
    from search.space import InputError
    with pytest.raises(InputError):  # an unknown head is refused, not timed as a single input
        real({}, batch=2, seq_len=8, precisions=["fp32"], head="cosine")


def test_a_latency_model_that_cannot_be_saved_keeps_its_rows(tmp_path, monkeypatch, capsys):
    from ray_jobs.__main__ import main
    from search import latency

    def unwritable(model, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(latency, "save", unwritable)
    rc = main(["bench", "latency-model", "--tiny", "latency_device=cpu", "latency_threads=1", f"results_dir={tmp_path}"])
    out, err = capsys.readouterr()
    assert rc == 2 and "latency_model_out: cannot write" in err and "the rows are in the bench table" in err
    assert "leave-one-out error: median" in out and "wrote the latency model" not in out
    assert results.table_counts(tmp_path)["bench"] == 6


@pytest.mark.parametrize("head, other", [("pair_cosine", "sequence"), ("sequence", "pair_cosine")])
def test_bench_latency_model_fits_measured_students_and_the_search_reads_it(tmp_path, head, other, capsys):
    from search import latency
    from search.__main__ import main as search_main

    out = tmp_path / "models" / "cpu.json"
    proc = _bench("latency-model", "--tiny", "latency_device=cpu", "latency_threads=1", f"results_dir={tmp_path}",
                  f"latency_model_out={out}", f"latency_head={head}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "leave-one-out error: median" in proc.stdout and f"wrote the latency model to {out}" in proc.stdout
    assert re.search(r"per-head term: (kept|left out) \(mean leave-one-out error [\d.]+% with it, [\d.]+% without\)",
                     proc.stdout)
    model = latency.load(out)
    assert (model.seq_len, model.pair, model.threads, model.device, model.head) == (8, head != "sequence", 1, "cpu", head)
    rows = results.query(tmp_path, "SELECT * FROM bench WHERE bench = 'latency_model'").to_pylist()
    assert len(rows) == len(model.samples) == 6 and len({r["arch"] for r in rows}) == 6
    assert {r["head"] for r in rows} == {head}
    assert sorted(r["median_ms"] for r in rows) == sorted(s["measured_ms"] for s in model.samples)
    assert {r["arch"].split(",")[0] for r in rows} == {"1", "2", "3", "4", "5", "6"}  # the layer counts in turn
    for r in rows:
        layers, _, heads = (int(g) for g in r["arch"].split(",")[:3])
        assert r["predicted_ms"] == pytest.approx(model.predict_ms(layers, r["gflops"], heads=heads))
        # the search predicts from the cost model's total FLOPs: the fit must read the same
        assert r["gflops"] == pytest.approx(cost.flops(Arch(*map(int, r["arch"].split(","))), 8)["total"] / 1e9)
        assert r["p90_ms"] >= r["median_ms"]
        assert r["per_layer_ms"] == model.per_layer_ms and r["loo_ms"] > 0 and r["threads"] == 1
        assert r["per_layer_head_ms"] == model.per_layer_head_ms
    assert any(r["p90_ms"] > r["median_ms"] for r in rows)  # the p90 of distinct timings, not the median
    # what it was made for: a search that reads it
    search = ["--teacher", "minilm-l6", "--seq-len", "8", "--exhaustive", "--top-k", "1", "--latency-model", str(out)]
    assert search_main([*search, "--head", head]) == 0
    assert search_main([*search, "--head", other]) == 2  # a model of the other input format is refused
    assert "latency_model: fitted on" in capsys.readouterr().err
    assert out.stat().st_mode & 0o777 == 0o644 and sorted(p.name for p in out.parent.iterdir()) == ["cpu.json"]


def test_a_bench_into_a_closed_pipe_keeps_its_rows_and_ends_quietly(tmp_path, closed_pipe):
    _, rc, err = closed_pipe([sys.executable, "-m", "ray_jobs", "bench", "latency-model", "--tiny",
                              "latency_device=cpu", "latency_threads=1", f"results_dir={tmp_path}"])
    assert rc == 141 and "Traceback" not in err and "Exception ignored" not in err, err[-2000:]
    assert results.query(tmp_path, "SELECT count(*) AS n FROM bench").to_pylist() == [{"n": 6}]


def test_bench_config_takes_every_bilstm_variant_the_job_builds():
    from ray_jobs.bench import BenchConfig
    from training.models import BiLSTMSoft

    assert BenchConfig(step_bilstms=BiLSTMSoft.VARIANTS).step_bilstms == BiLSTMSoft.VARIANTS


@pytest.mark.parametrize("what, override, named", [
    ("latency-model", "fit_shapes=3", "fit_shapes"),
    ("latency-model", "latency_head=pair", "latency_head"),
    ("latency-model", "fit_max_mb=0.01", "fit_shapes"),  # fewer distinct shapes than asked for
    ("latency-model", "fit_min_head_size=1000", "fit_min_head_size"),
    ("latency-model", "latency_seq_len=513", "latency_seq_len"),
    ("latency", "latency_students=[6x80]", "latency_students"),
    ("latency", "latency_dtypes=[int4]", "latency_dtypes"),
    ("latency", "latency_dtypes=[onnx_int4]", "latency_dtypes"),
    ("latency", "latency_dtypes=[float32,float32]", "latency_dtypes"),  # one row would be dropped
    ("train-step", "step_precisions=[fp32,fp32]", "step_precisions"),
    ("latency", "latency_device=tpu", "latency_device"),
    ("latency", "latency_teacher=/no/such/folder", "latency_teacher"),
    ("train-step", "step_students=[6x80]", "step_students"),
    ("train-step", "step_precisions=[fp16]", "step_precisions"),
    ("train-step", "step_attentions=[flash]", "step_attentions"),
    ("train-step", "step_attentions=[eager,eager]", "step_attentions"),
    ("train-step", "step_attentions=[]", "step_attentions"),  # nothing timed, no rows: refused
    ("train-step", "step_precisions=[]", "step_precisions"),
    ("train-step", "step_students=[]", "step_students"),
    ("train-step", "step_bilstms=[wide]", "step_bilstms"),
    ("train-step", "step_bilstms=[paper,paper]", "step_bilstms"),
    ("train-step", "step_bilstm_mb=0.001", "step_bilstm_mb"),  # no BiLSTM fits 1 kB
    ("train-step", "step_bilstm_mb=0", "step_bilstm_mb"),
    ("latency", "latency_dtypes=[]", "latency_dtypes"),
    ("latency", "latency_students=[]", "latency_students"),
    ("train-step", "step_runs=5", "step_runs"),
    ("latency", "latency_runs=5", "latency_runs"),
    ("latency", "latency_seq_len=513", "latency_seq_len"),  # more than the models' positions: refused, no traceback
    ("train-step", "step_seq_len=100000", "step_seq_len"),
    ("latency", "latency_rounds=0", "latency_rounds"),
    ("latency", "latency_rounds=21", "latency_rounds"),  # more blocks than timed runs
    ("train-step", "latency_rounds=25", "latency_rounds"),
    ("latency", "latency_threads=0", "latency_threads"),
    ("latency", "latency_batches=[0]", "latency_batches"),
    # scaling: refused before Ray starts (workers=[0] started it with 0 CPUs and hung)
    ("scaling", "workers=[]", "workers"),
    ("scaling", "workers=[0]", "workers"),
    # without one worker the smallest count was taken to scale perfectly (speed-up 2.00 at 2)
    ("scaling", "workers=[2,4]", "workers: must include 1"),
    # 4 at once out of 2 trials: efficiency divided by 4 workers that never all ran
    ("scaling", "workers=[1,4]", "workers: 4 concurrent trials asked of a run of trials=2"),
    ("scaling", "trials=0", "trials"),
    ("scaling", "steps=0", "steps"),
    ("scaling", "object_store_mb=10", "object_store_mb"),
    # Ray's own refusal came as a traceback (the jobs named the key already)
    ("scaling", "object_store_mb=100000000", "object_store_mb: 100000000 MiB does not fit this machine"),
])
def test_bench_refuses_bad_requests_by_name(tmp_path, what, override, named):
    proc = _bench(what, "--tiny", override, f"results_dir={tmp_path}")
    assert proc.returncode == 2 and named in proc.stderr
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "table=bench").exists() and not (tmp_path / "table=configs").exists()


@pytest.mark.parametrize("what, out, named", [
    ("latency", "results_dir={file}/sub", "results_dir: {file} is not a folder"),
    ("latency-model", "latency_model_out={file}/model.json", "latency_model_out: {file} is not a folder"),
    ("latency-model", "latency_model_out={tmp}", "latency_model_out: {tmp} is a folder"),
])
def test_bench_refuses_outputs_it_could_not_write_before_timing(tmp_path, monkeypatch, capsys, what, out, named):
    """Checked first: these used to fail after minutes of timing, losing them with a traceback."""
    import training.evaluate
    from ray_jobs.__main__ import main

    monkeypatch.setattr(training.evaluate, "time_calls", lambda *a, **k: pytest.fail("timed before the check"))
    (tmp_path / "a-file").write_text("")
    fill = {"file": tmp_path / "a-file", "tmp": tmp_path / "results"}
    (tmp_path / "results").mkdir()
    args = [out.format(**fill)] + ([] if out.startswith("results_dir") else [f"results_dir={tmp_path / 'results'}"])
    assert main(["bench", what, "--tiny", *args]) == 2
    assert capsys.readouterr().err.strip() == f"error: {named.format(**fill)}"


@pytest.mark.parametrize("override", ["results_dir=", "latency_teacher="])
def test_bench_refuses_an_empty_path(override):
    """An empty results_dir or teacher folder would be the current directory."""
    from ray_jobs.bench import parse_args
    from ray_jobs.errors import ConfigError

    with pytest.raises(ConfigError, match=f"^{override[:-1]}: must not be empty"):
        parse_args(["latency", override])


def test_latency_rounds_is_held_to_the_runs_of_the_command_it_splits():
    """bench latency latency_runs=40 latency_rounds=25 is valid (train-step's 20 step_runs are
    not what it splits); train-step with the same settings is refused."""
    from ray_jobs.bench import BenchConfig, _check_rounds
    from ray_jobs.errors import ConfigError

    cfg = BenchConfig(latency_runs=40, latency_rounds=25)  # accepted when read
    _check_rounds(cfg, "latency_runs")
    _check_rounds(BenchConfig(latency_runs=20, latency_rounds=20), "latency_runs")  # one run a block
    with pytest.raises(ConfigError, match=r"^latency_rounds: at most step_runs \(20\) blocks"):
        _check_rounds(cfg, "step_runs")


def test_bench_runs_started_in_one_second_get_their_own_files():
    from ray_jobs.bench import bench_id

    ids = {bench_id("latency") for _ in range(50)}
    assert len(ids) == 50 and all(i.startswith("bench-latency-20") for i in ids)


def test_shape_sampling_stops_once_the_space_is_spent(monkeypatch):
    """fit_shapes far above the shapes within fit_max_mb: refused after ten passes over the
    layer counts without a new shape, not after 1,000 draws per requested shape (minutes)."""
    from ray_jobs.bench import BenchConfig, _teacher, sample_shapes
    from ray_jobs.config import build_config
    from ray_jobs.errors import ConfigError
    from search import cost

    sizes, heads = [], set()
    size_mb = cost.size_mb
    monkeypatch.setattr(cost, "size_mb", lambda *a, **k: sizes.append(1) or heads.add(k.get("head")) or size_mb(*a, **k))
    cfg = build_config(BenchConfig, {}, ["fit_shapes=5000", "fit_max_mb=0.15", "latency_head=sequence"])
    with pytest.raises(ConfigError, match=r"fit_shapes: found 1 distinct shapes .* not 5000"):
        sample_shapes(cfg, _teacher(cfg))
    assert heads == {"sequence"}  # the cap is on the size of the model timed, its head included
    assert len(sizes) < 30_000  # the draws to its one shape, then 2,000 x 6 layer counts; 5,000,000 before


@pytest.mark.parametrize("device, error", [("cuda:0", None), ("cuda", None), ("cuda:1", "JobError"),
                                           ("cudafoo", "ConfigError"), ("cuda:x", "ConfigError")])
def test_a_cuda_device_this_machine_lacks_is_refused_by_name(monkeypatch, device, error):
    """One (simulated) GPU: cuda:1 raised torch's 'Invalid device id' from get_device_name."""
    import torch

    from ray_jobs.bench import BenchConfig, _device
    from ray_jobs.config import build_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Simulated GPU")
    cfg = build_config(BenchConfig, {}, [f"latency_device={device}"])
    if error is None:
        assert _device(cfg) == (device, "Simulated GPU")
    else:
        with pytest.raises(Exception, match=f"^latency_device.*{device}") as caught:
            _device(cfg)
        assert type(caught.value).__name__ == error


def test_a_sequence_length_is_held_to_the_smallest_position_table():
    from ray_jobs.bench import _check_seq_len
    from ray_jobs.errors import ConfigError
    from search.space import Teacher, teacher_spec

    big = Teacher("big", "bert", 2, 64, 2, 128, 1000, 1024, 2)
    with pytest.raises(ConfigError, match="more than the 512 positions"):
        _check_seq_len("latency_seq_len", 600, [big, teacher_spec("codebert-base")])
