"""End to end: the real CLI on real local Ray with the smoke config (real data, real MiniLM
teacher, real tiny training), then the tables, a saved student, resume and the query CLI."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from ray_jobs import results

REPO = Path(__file__).resolve().parents[2]
# Above the 900 s a job subprocess may take, so a slow one reports its own timeout (with its
# output) instead of pytest's SIGALRM ending the test (and every test sharing its fixture).
pytestmark = pytest.mark.timeout(1800)


def cli_env(ray_tmp: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", RAY_AUTH_MODE="disabled",
               TOKENIZERS_PARALLELISM="false", RAY_USAGE_STATS_ENABLED="0",
               RAY_TMPDIR=ray_tmp)  # own Ray temp dir (short: socket paths are limited)
    return env


def run_cli(args: list[str], ray_tmp: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ray_jobs", *args], cwd=REPO,
                          env=cli_env(ray_tmp), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ray_tmp():
    tmp = tempfile.mkdtemp(prefix="rje", dir="/tmp")
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, ray_tmp):
    """`demo --config smoke`: compress then prune, summaries, the PNG."""
    out = tmp_path_factory.mktemp("smoke") / "results"
    proc = run_cli(["demo", "--config", "smoke", f"results_dir={out}"], ray_tmp, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def _q(root, sql):
    return results.query(root, sql).to_pylist()


@pytest.mark.slow
def test_compress_tables(demo_run):
    root, proc = demo_run
    assert "Compression (compress-" in proc.stdout and "CodeBERT-base architecture" in proc.stdout
    assert "kept_epoch" in proc.stdout  # each trained model's best-on-validation epoch of smoke's 2
    search = _q(root, "SELECT * FROM search ORDER BY rank")
    assert len(search) > 1 and [r["selected"] for r in search].count(True) == 1
    assert search[0]["fitness"] == max(r["fitness"] for r in search)
    distill = _q(root, "SELECT * FROM distill ORDER BY trial_key")
    assert [r["trial_key"] for r in distill] == ["bilstm-budget", "student-0"]
    student = distill[1]
    genes = ("layers", "hidden", "heads", "ffn", "vocab")
    assert [student[g] for g in genes] == [search[0][g] for g in genes]
    for row in distill:
        assert row["size_mb"] <= 3.0 + 1e-9  # the budget
        assert 0 <= row["accuracy"] <= 1 and row["retention"] > 0
        assert row["latency_ms"] > 0 and row["teacher_latency_ms"] > 0
        # speed-ups are the measured latencies' ratios (how fast is measured by bench, not tests)
        assert row["speedup_vs_teacher"] == pytest.approx(row["teacher_latency_ms"] / row["latency_ms"])
        assert row["speedup_vs_codebert"] == pytest.approx(row["codebert_latency_ms"] / row["latency_ms"])
        assert row["sweep_id"].startswith("compress-") and len(row["config_hash"]) == 64
        assert row["code_version"] and row["node_id"] and row["device"] == "cpu"
    # each trained model in fp32, int8, int8_emb, and in ONNX Runtime (fp32, int8), on the CPU
    quant = _q(root, "SELECT * FROM quantize WHERE sweep_id LIKE 'compress-%' ORDER BY trial_key, variant")
    assert [(q["trial_key"], q["variant"]) for q in quant] == [
        (k, v) for k in ("bilstm-budget", "student-0", "teacher")
        for v in ("fp32", "int8", "int8_emb", "onnx", "onnx_int8")]
    # every variant of every model has figures: BiLSTM_soft traces to ONNX too (since its LSTM
    # reads padded batches; packed sequences were untraceable)
    assert [(q["trial_key"], q["variant"], q["error"]) for q in quant if q["error"]] == []
    by = {(q["trial_key"], q["variant"]): q for q in quant}
    n_test = distill[0]["n_test"]
    for key in ("bilstm-budget", "student-0", "teacher"):  # the fp32 graph scores as torch does (one pair may flip at a tie)
        assert abs(by[key, "onnx"]["accuracy"] - by[key, "fp32"]["accuracy"]) <= 1 / n_test
        assert by[key, "onnx_int8"]["size_bytes"] < 0.5 * by[key, "onnx"]["size_bytes"]
    # each trained model's folder keeps the graphs its rows scored, ready to ship
    model_dirs = {r["trial_key"]: Path(r["model_dir"]) for r in distill}
    for variant, name in (("onnx", "model.onnx"), ("onnx_int8", "model_int8.onnx")):
        for key in ("bilstm-budget", "student-0"):
            assert (model_dirs[key] / name).stat().st_size == by[key, variant]["size_bytes"]
    for q in quant:
        assert q["model"] == q["trial_key"] and q["error"] is None and q["latency_ms"] > 0
        assert q["sweep_id"] == distill[0]["sweep_id"] and q["device"] == "cpu"
        if q["variant"] == "fp32" and q["kind"] == "teacher":  # the teacher's own test score
            assert q["accuracy"] == pytest.approx(distill[0]["teacher_accuracy"]) and q["retention"] == 1.0
        elif q["variant"] == "fp32":
            fp32 = next(r for r in distill if r["trial_key"] == q["trial_key"])
            assert q["kind"] == fp32["kind"] and q["accuracy"] == fp32["accuracy"] and q["speedup_vs_fp32"] == 1.0
    sizes = {(q["trial_key"], q["variant"]): q["size_bytes"] for q in quant}
    assert sizes["student-0", "int8"] < sizes["student-0", "fp32"] < sizes["teacher", "int8"] < sizes["teacher", "fp32"]
    assert sizes["teacher", "int8_emb"] < 0.5 * sizes["teacher", "int8"]  # MiniLM's 30,522-row word table
    assert "Quantized on the CPU" in proc.stdout


@pytest.mark.slow
def test_epochs_table_is_each_models_learning_curve(demo_run):
    root, _ = demo_run
    curve = _q(root, "SELECT trial_key, model, kind, epoch, valid_accuracy, train_loss, steps, best "
                     "FROM epochs WHERE sweep_id LIKE 'compress-%' ORDER BY trial_key, epoch")
    # smoke.yaml: 2 distillation epochs, 1 fine-tuning epoch of the teacher
    assert [(c["trial_key"], c["epoch"]) for c in curve] == [
        (k, e) for k in ("bilstm-budget", "student-0") for e in (1, 2)] + [("teacher", 1)]
    for c in curve:
        assert c["model"] == c["trial_key"] and c["train_loss"] > 0 and c["steps"] > 0
    # the pruning job's code-to-text fine-tuning (smoke.yaml: 10 steps), one row per tenth
    seq2seq = _q(root, "SELECT * FROM epochs WHERE sweep_id LIKE 'prune-%' ORDER BY epoch")
    assert [(c["trial_key"], c["kind"], c["epoch"], c["steps"]) for c in seq2seq] == [
        ("seq2seq", "seq2seq", e, e) for e in range(1, 11)]
    for c in seq2seq:
        assert c["valid_nll"] > 0 and c["train_loss"] > 0 and c["valid_accuracy"] is None
        assert c["device"] == "cpu" and c["seconds"] > 0
    (teacher,) = _q(root, "SELECT e.valid_accuracy, d.teacher_accuracy, e.device FROM epochs e JOIN distill d "
                          "USING (sweep_id) WHERE e.kind = 'teacher' AND d.trial_key = 'student-0'")
    assert 0 < teacher["valid_accuracy"] <= 1 and teacher["device"] == "cpu"
    # the weights each distill row scored are its best epoch's
    kept = _q(root, "SELECT d.trial_key, any_value(d.valid_accuracy) AS kept, any_value(d.best_epoch) AS epoch, "
                    "max(e.valid_accuracy) AS best, max(e.epoch) FILTER (WHERE e.best) AS last_best "
                    "FROM distill d JOIN epochs e USING (sweep_id, trial_key) GROUP BY 1 ORDER BY 1")
    assert len(kept) == 2
    for k in kept:
        assert k["kept"] == k["best"] and k["epoch"] == k["last_best"]
    # every row says what its steps ran in: a student's epochs as its distill row, fine-tunings too
    ran = _q(root, "SELECT e.trial_key, bool_and(e.precision = d.precision AND e.emulated IS NOT DISTINCT FROM "
                   "d.emulated) AS same FROM epochs e JOIN distill d USING (sweep_id, trial_key) GROUP BY 1 ORDER BY 1")
    assert ran == [{"trial_key": k, "same": True} for k in ("bilstm-budget", "student-0")]
    assert not _q(root, "SELECT * FROM epochs WHERE precision IS NULL")
    # smoke fine-tunes the teacher and the code-to-text model in fp32 (its default): no emulation
    assert _q(root, "SELECT DISTINCT kind, precision, emulated FROM epochs WHERE kind IN ('teacher', 'seq2seq') "
                    "ORDER BY kind") == [{"kind": k, "precision": "fp32", "emulated": None} for k in ("seq2seq", "teacher")]


@pytest.mark.slow
def test_configs_table_joins_every_row_to_its_settings(demo_run):
    root, _ = demo_run
    smoke = yaml.safe_load((REPO / "ray_jobs" / "configs" / "smoke.yaml").read_text())
    configs = _q(root, "SELECT * FROM configs ORDER BY job")
    assert [c["job"] for c in configs] == ["compress", "prune"]
    for c in configs:
        config = json.loads(c["config"])
        assert c["sweep_id"].startswith(c["job"] + "-") and len(c["config_hash"]) == 64
        assert config["results_dir"] == str(root)  # the override, not the YAML's results/smoke
        assert config["distill"]["epochs"] == smoke["distill"]["epochs"]
        assert config["seq2seq"]["lr"] == smoke["seq2seq"]["lr"]
    joined = _q(root, "SELECT d.trial_key, d.config_hash = c.config_hash AS same, "
                      "json_extract(c.config, '$.distill.epochs')::INT AS epochs "
                      "FROM distill d JOIN configs c USING (sweep_id) ORDER BY 1")
    assert joined == [{"trial_key": k, "same": True, "epochs": smoke["distill"]["epochs"]}
                      for k in ("bilstm-budget", "student-0")]
    assert len(_q(root, "SELECT * FROM prune JOIN configs USING (sweep_id)")) == 6


@pytest.mark.slow
def test_saved_student_reloads_and_predicts_the_same(demo_run):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.distill import read_examples
    from training.finetune import encode, predict_logits, scores

    root, _ = demo_run
    row = _q(root, "SELECT * FROM distill WHERE kind = 'student'")[0]
    model = AutoModelForSequenceClassification.from_pretrained(row["model_dir"]).eval()
    tok = AutoTokenizer.from_pretrained(row["model_dir"])
    assert len(tok) == row["vocab"]
    (eval_file,) = (root / "cache" / "eval").glob("*.parquet")
    test, _ = read_examples(eval_file, "test")
    torch.set_num_threads(1)
    enc = encode(tok, test, 64)  # smoke.yaml distill.max_seq_len
    got = scores(predict_logits(model, enc, tok.pad_token_id), [e.label for e in test])
    assert got["accuracy"] == pytest.approx(row["accuracy"])
    assert got["f1"] == pytest.approx(row["f1"])


@pytest.mark.slow
def test_prune_tables_and_plot(demo_run):
    root, proc = demo_run
    rows = _q(root, "SELECT schedule, round, sparsity, nominal_sparsity, test_bleu_greedy, n_train "
                    "FROM prune ORDER BY schedule, round")
    schedules = sorted({r["schedule"] for r in rows})
    assert schedules == ["l1-global_encoder_finetuned_pick_last_b8_r2",
                         "random-global_encoder_finetuned_pick_last_b8_r2"]
    assert [(r["round"]) for r in rows] == [0, 1, 2] * 2  # one row per (schedule, round)
    for r in rows:  # measured by counting zeros: the nominal 0, 20%, 40%
        assert r["sparsity"] == pytest.approx(r["nominal_sparsity"], abs=0.01)
        assert 0 <= r["test_bleu_greedy"] <= 100
        assert r["n_train"] == 200  # smoke.yaml data.max_train: the pairs fine-tuning and repairs saw
    assert "seq2seq fine-tuning step" in proc.stdout + proc.stderr  # the worker's progress reaches the console
    quant = _q(root, "SELECT trial_key, variant FROM quantize WHERE sweep_id LIKE 'prune-%'")
    assert len(quant) == 4 * 3  # four variants x (unpruned + two schedules)
    assert {q["trial_key"] for q in quant} == {"unpruned", *schedules}
    assert "BLEU-4" in proc.stdout and "Quantization" in proc.stdout
    assert "Code-to-text fine-tuning, 10 steps: training loss" in proc.stdout  # the curve's summary line
    (png,) = root.glob("bleu_vs_sparsity-prune-*.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_prune_seeds_restores_the_finished_seed_and_prunes_the_next_from_the_same_model(
        demo_run, tmp_path, ray_tmp):
    from ray_jobs import summary

    root = tmp_path / "results"  # a copy (Tune's experiments too): the other tests count the demo run's rows
    shutil.copytree(demo_run[0], root)
    before = _q(root, "SELECT sweep_id, schedule, round, test_nll FROM prune ORDER BY ALL")
    proc = run_cli(["prune", "--config", "smoke", "--seeds", "0,1", f"results_dir={root}"], ray_tmp, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _q(root, "SELECT p.sweep_id, p.schedule, p.round, p.test_nll, "
                    "json_extract(c.config, '$.prune.seed')::INT AS seed "
                    "FROM prune p JOIN configs c USING (sweep_id) ORDER BY seed, p.schedule, p.round")
    seed0 = [r for r in rows if r["seed"] == 0]
    assert [{k: r[k] for k in before[0]} for r in seed0] == before  # seed 0 is the demo's sweep, restored
    assert [(r["schedule"], r["round"]) for r in rows if r["seed"] == 1] == [
        (r["schedule"], r["round"]) for r in seed0]  # seed 1: the same grid, one row per round
    assert len(list((root / "cache").glob("seq2seq-*"))) == 1  # one code-to-text model, fine-tuned once
    assert "seq2seq fine-tuning step" not in proc.stdout + proc.stderr
    # the seed reached the masks: random pruning's last round differs between the seeds
    sweeps = sorted({r["sweep_id"] for r in rows}, key=lambda s: s != seed0[0]["sweep_id"])
    random_key = next(r["schedule"] for r in rows if r["schedule"].startswith("random"))
    masks = [sorted((root / "pruned" / s / random_key).glob("round_*/masks.safetensors"))[-1] for s in sweeps]
    assert masks[0].parent.name == masks[1].parent.name and masks[0].read_bytes() != masks[1].read_bytes()
    assert proc.stdout.count("=== prune, prune.seed=") == 2
    assert summary.prune_seeds_summary(str(root), sweeps) in proc.stdout


@pytest.mark.slow
def test_same_command_again_resumes_without_duplicates(demo_run, ray_tmp):
    root, _ = demo_run
    before = results.table_counts(root)
    proc = run_cli(["compress", "--config", "smoke", f"results_dir={root}"], ray_tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results.table_counts(root) == before
    assert len(list((root / "table=distill").glob("*.parquet"))) == 1  # one file per sweep


@pytest.mark.slow
def test_a_finished_demo_run_again_rewrites_no_row_and_prepares_no_model(demo_run, tmp_path, ray_tmp):
    """Both sweeps finished: running the demo again restores them and trains nothing, so no row
    changes (not the search rows or the fine-tuning curves either, which a rerun rewrote with
    its own time and code version) and neither the teacher nor the code-to-text model is
    prepared again, even with the cache they were kept in gone."""
    root = tmp_path / "results"  # a copy: the other tests count the demo run's rows
    shutil.copytree(demo_run[0], root)
    shutil.rmtree(root / "cache")

    def tables():  # every column of every row; NaN-safe (json text)
        return {t: json.dumps(_q(root, f"SELECT * FROM {t} ORDER BY ALL"), default=str)
                for t in results.table_names(root)}

    before = tables()
    assert {"search", "epochs", "distill", "prune", "quantize", "configs"} <= set(before)
    proc = run_cli(["demo", "--config", "smoke", f"results_dir={root}"], ray_tmp, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert tables() == before
    output = proc.stdout + proc.stderr
    assert "fine-tune teacher" not in output and "seq2seq fine-tuning step" not in output
    assert not any((root / "cache").glob("*"))  # nothing cached again (no folder at all is fine)
    # a finished sweep whose search rows are gone (their file moved away) writes them again
    searched = _q(root, "SELECT rank, layers, hidden, heads, ffn, vocab, selected FROM search ORDER BY rank")
    shutil.rmtree(root / "table=search")
    proc = run_cli(["compress", "--config", "smoke", f"results_dir={root}"], ray_tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _q(root, "SELECT rank, layers, hidden, heads, ffn, vocab, selected FROM search ORDER BY rank") == searched
    assert "fine-tune teacher" not in proc.stdout + proc.stderr  # its curve is there: not prepared


@pytest.mark.slow
def test_other_quantize_settings_requantize_a_finished_prune_sweep_without_pruning_it_again(
        demo_run, tmp_path, ray_tmp):
    """The quantize section is not part of the pruning sweep's id: the same sweep is restored
    (no round pruned again, its rows unchanged) and its models are quantized under the new
    settings, whose rows replace the earlier ones."""
    root = tmp_path / "results"  # a copy: the other tests count the demo run's rows
    shutil.copytree(demo_run[0], root)

    def prune_rows():
        return json.dumps(_q(root, "SELECT * FROM prune ORDER BY ALL"), default=str)

    before = prune_rows()
    (sid,) = {r["sweep_id"] for r in _q(root, "SELECT DISTINCT sweep_id FROM prune")}
    # one schedule's last round unreadable: the other models' rows are written, exit 1 naming it
    (state, *_) = sorted((root / "pruned" / sid).glob("*/round_*/state.safetensors"), reverse=True)
    intact = state.read_bytes()
    state.write_bytes(b"not safetensors")
    command = ["prune", "--config", "smoke", f"results_dir={root}", "quantize.variants=[fp32,int8]"]
    proc = run_cli(command, ray_tmp)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    broken = state.parents[1].name
    assert f"{broken}: quantize stage: " in proc.stderr and "prune: 1 failed" in proc.stderr
    first = [r for r in _q(root, f"SELECT trial_key, variant, time, quantize_config FROM quantize "
                                 f"WHERE sweep_id = '{sid}' ORDER BY ALL")
             if json.loads(r.pop("quantize_config"))["variants"] == ["fp32", "int8"]]  # the new settings' rows
    assert broken not in {r["trial_key"] for r in first} and "unpruned" in {r["trial_key"] for r in first}
    state.write_bytes(intact)
    proc = run_cli(command, ray_tmp)  # after the repair: only it is quantized
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [r for r in _q(root, f"SELECT trial_key, variant, time FROM quantize WHERE sweep_id = '{sid}' "
                                "ORDER BY ALL") if r["trial_key"] != broken] == first
    assert prune_rows() == before
    quant = _q(root, f"SELECT trial_key, variant, quantize_config FROM quantize WHERE sweep_id = '{sid}'")
    schedules = {r["schedule"] for r in _q(root, "SELECT DISTINCT schedule FROM prune")}
    assert sorted((q["trial_key"], q["variant"]) for q in quant) == sorted(
        (m, v) for m in ["unpruned", *schedules] for v in ("fp32", "int8"))
    assert {json.dumps(json.loads(q["quantize_config"])["variants"]) for q in quant} == {'["fp32", "int8"]'}
    assert len(list((root / "table=prune").glob("*.parquet"))) == 1  # no second pruning sweep


@pytest.mark.slow
def test_a_longer_quantize_list_quantizes_a_finished_compression_sweep_without_distilling_again(
        demo_run, tmp_path, ray_tmp):
    """`distill.quantize` is not part of the compression sweep's id (only whether it lists a
    variant): the same sweep is restored, no model trains, and every saved model and the
    teacher get rows for the variant added, timed beside an fp32 row of the same run."""
    root = tmp_path / "results"  # a copy: the other tests count the demo run's rows
    shutil.copytree(demo_run[0], root)

    def trained():  # every row the training wrote
        return {t: json.dumps(_q(root, f"SELECT * FROM {t} ORDER BY ALL"), default=str)
                for t in ("search", "distill", "epochs", "configs")}

    before = trained()
    (sid,) = {r["sweep_id"] for r in _q(root, "SELECT DISTINCT sweep_id FROM distill")}
    old = _q(root, f"SELECT trial_key, variant, time, quantize_config FROM quantize WHERE sweep_id = '{sid}'")
    assert {json.loads(r["quantize_config"])["variants"] == ["int8", "int8_emb", "onnx", "onnx_int8"] for r in old} == {
        True}  # smoke.yaml's list, as the trials quantized
    # the rows' model_dir name the folder copied from: the copy's own saved models are loaded
    graphs = {f: f.stat().st_mtime_ns for f in (demo_run[0] / "students").rglob("*.onnx")}
    # one model that cannot be loaded (its weights corrupt): the others' rows are written all the
    # same, the job exits 1 naming it after its summary, and the run after the repair does only it
    (baseline,) = (root / "students" / sid).glob("bilstm-*")
    weights = baseline / "model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(b"not safetensors")
    longer = ["compress", "--config", "smoke", f"results_dir={root}", "distill.quantize=[int8,int8_emb,onnx,onnx_int8,bf16]"]
    proc = run_cli(longer, ray_tmp)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{baseline.name}: quantize stage: " in proc.stderr and "compress: 1 failed" in proc.stderr
    assert "bf16" in proc.stdout  # the summary, printed before the exit, shows the written rows
    first = _q(root, f"SELECT trial_key, variant, time FROM quantize WHERE sweep_id = '{sid}' AND variant = 'bf16' "
                         "ORDER BY trial_key")
    assert sorted(r["trial_key"] for r in first) == sorted({r["trial_key"] for r in old} - {baseline.name})
    weights.write_bytes(intact)
    # and a variant whose row holds an error that run wrote (a kernel its machine lacked) is retried
    rows = results.read_rows(root, "quantize", sid)
    (student,) = {r["trial_key"] for r in rows if r["kind"] == "student"}
    for r in rows:
        if (r["trial_key"], r["variant"]) == (student, "int8"):
            r["error"] = "RuntimeError: no kernel"
    results.write_rows(root, "quantize", sid, rows)
    proc = run_cli(longer, ray_tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"retrying 1 variant(s) whose rows from an earlier run hold an error: {student} int8" in proc.stdout
    assert _q(root, f"SELECT trial_key, variant, time FROM quantize WHERE sweep_id = '{sid}' AND variant = 'bf16' "
                    f"AND trial_key NOT IN ('{baseline.name}', '{student}') ORDER BY trial_key") == [
        r for r in first if r["trial_key"] != student]  # not quantized again
    retried = _q(root, f"SELECT time, error FROM quantize WHERE sweep_id = '{sid}' AND trial_key = '{student}'")
    assert {r["error"] for r in retried} == {None}
    assert min(r["time"] for r in retried) > max(r["time"] for r in first)
    assert trained() == before
    assert "fine-tune teacher" not in proc.stdout + proc.stderr
    assert graphs and {f: f.stat().st_mtime_ns for f in graphs} == graphs  # the original's graphs untouched
    quant = _q(root, "SELECT trial_key, variant, time, speedup_vs_fp32, error, quantize_config FROM quantize "
                     f"WHERE sweep_id = '{sid}'")
    assert {json.dumps(json.loads(q["quantize_config"])) for q in quant} == {
        '{"variants": ["int8", "int8_emb", "onnx", "onnx_int8", "bf16"]}'}
    models = {r["trial_key"] for r in old}
    assert "teacher" in models and len(models) >= 3
    assert sorted((q["trial_key"], q["variant"]) for q in quant) == sorted(
        (m, v) for m in models for v in ("fp32", "int8", "int8_emb", "onnx", "onnx_int8", "bf16"))
    assert min(q["time"] for q in quant) > max(r["time"] for r in old)  # every row of the new run
    assert all(q["speedup_vs_fp32"] > 0 for q in quant if q["error"] is None)
    assert len(list((root / "table=distill").glob("*.parquet"))) == 1  # no second compression sweep


@pytest.mark.slow
def test_query_and_tables_cli(demo_run, ray_tmp):
    root, _ = demo_run
    proc = run_cli(["query", "SELECT kind, count(*) AS n FROM distill GROUP BY 1 ORDER BY 1",
                    "--format", "json", f"results_dir={root}"], ray_tmp)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"kind": "bilstm", "n": 1}, {"kind": "student", "n": 1}]
    proc = run_cli(["query", "SELECT kind FROM distill ORDER BY 1", "--format", "csv",
                    f"results_dir={root}"], ray_tmp)
    assert proc.stdout.split() == ["kind", "bilstm", "student"]
    proc = run_cli(["tables", f"results_dir={root}"], ray_tmp)
    assert "distill\t2" in proc.stdout and "prune\t6" in proc.stdout
    proc = run_cli(["query", "SELECT * FROM nosuch", f"results_dir={root}"], ray_tmp)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "nosuch" in proc.stderr


@pytest.mark.slow
def test_compress_seeds_runs_one_sweep_per_seed_then_their_spread(tmp_path, ray_tmp):
    from ray_jobs import summary

    out = tmp_path / "results"
    proc = run_cli(["compress", "--config", "smoke", "--seeds", "0,1", "baselines.bilstm_budget=false",
                    "distill.quantize=[]", f"results_dir={out}"], ray_tmp, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _q(out, "SELECT d.sweep_id, d.trial_key, json_extract(c.config, '$.distill.seed')::INT AS seed "
                   "FROM distill d JOIN configs c USING (sweep_id) ORDER BY seed")
    assert [(r["trial_key"], r["seed"]) for r in rows] == [("student-0", 0), ("student-0", 1)]
    assert rows[0]["sweep_id"] != rows[1]["sweep_id"]
    # the seed reached the training: the two seeds' students differ
    from safetensors.torch import load_file

    dirs = [r["model_dir"] for r in _q(out, "SELECT model_dir FROM distill ORDER BY sweep_id")]
    first, second = (load_file(str(Path(d) / "model.safetensors")) for d in dirs)
    assert first.keys() == second.keys() and any(not first[k].equal(second[k]) for k in first)
    assert len(list((out / "cache" / "teachers").iterdir())) == 1  # one teacher, fine-tuned once
    assert proc.stdout.count("=== compress, distill.seed=") == 2
    assert summary.seeds_summary(str(out), [r["sweep_id"] for r in rows]) in proc.stdout


@pytest.mark.slow
def test_compress_with_the_demos_pair_settings(tmp_path, ray_tmp):
    """`make run`'s compression settings through the real job on smoke's budgets: the
    bi-encoder teacher, students and BiLSTM encoding each side (cosine head), the in-batch
    loss, the demo's precision (auto: bf16 where this CPU computes it natively, else fp32) in
    eager attention, heads of >= 48 dimensions, one-layer students, the words tokenizer."""
    from training.finetune import resolve_precision

    demo = yaml.safe_load((REPO / "ray_jobs" / "configs" / "demo.yaml").read_text())
    d = demo["distill"]
    settings = {"teacher.pair_mode": demo["teacher"]["pair_mode"],
                "search.min_head_size": demo["search"]["min_head_size"],
                "search.max_layers": demo["search"]["max_layers"],
                **{f"distill.{k}": d[k] for k in ("pair_mode", "pair_head", "student_tokenizer", "precision",
                                                  "in_batch_weight", "in_batch_temperature",
                                                  "train_attention")}}
    assert settings["distill.pair_mode"] == "separate" and settings["distill.in_batch_weight"] > 0
    out = tmp_path / "results"
    proc = run_cli(["compress", "--config", "smoke", "distill.quantize=[]", f"results_dir={out}",
                    *(f"{k}={v}" for k, v in settings.items())], ray_tmp, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["kind"]: r for r in _q(out, "SELECT * FROM distill")}
    assert set(rows) == {"student", "bilstm"}
    for row in rows.values():
        assert row["in_batch_weight"] == settings["distill.in_batch_weight"]
        # what the steps ran in: "auto" resolved on this machine
        assert row["precision"] == resolve_precision(settings["distill.precision"], "cpu") and 0 <= row["accuracy"] <= 1
    student = rows["student"]
    assert student["train_attention"] == settings["distill.train_attention"] == "eager"
    assert student["hidden"] // student["heads"] >= settings["search.min_head_size"]
    assert student["layers"] <= settings["search.max_layers"]
    (config,) = _q(out, "SELECT config FROM configs")
    assert json.loads(config["config"])["distill"]["pair_head"] == "cosine"
    # "auto" was resolved once for the sweep, and the sweep's row records to what
    assert json.loads(config["config"])["resolved"] == {"distill.precision": rows["student"]["precision"]}
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(student["model_dir"], trust_remote_code=True)
    assert type(model).__name__ != "BertForSequenceClassification"  # the pair encoder, not a joint model
    assert sum(p.numel() for p in model.parameters()) == student["params"]
