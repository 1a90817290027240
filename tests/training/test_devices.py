"""Every job-facing training stage on each device: the CPU everywhere, CUDA where torch sees a
GPU (marked `gpu`; skipped elsewhere). Each test runs one stage on the device and holds its
output to the CPU: a model trained on the GPU, reloaded on the CPU, predicts what the row says;
cached teacher logits equal a CPU forward; pruned zeros stay exact; fp16 runs on the GPU."""

import time
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import training.models  # noqa: F401  (registers the pair model with the Auto classes)
from tests.training.conftest import tiny_config
from tests.training.tiny_teacher import TINY_DATA, tiny_teacher_folder
from training.data import DataConfig, PairText
from training.distill import (
    CompressTrainConfig,
    DistillConfig,
    prepare_teacher,
    read_examples,
    read_teacher_vectors,
    train_student,
)
from training.evaluate import codexglue_bleu, latency_ms
from training.finetune import FinetuneConfig, collate, encode, resolve_precision
from training.models import BiLSTMSoft, TeacherConfig, emulated, native_bf16
from training.prune import PruneConfig, measured_sparsity, prunable_weights, run_schedule, schedules
from training.quantize import QuantizeConfig, quantize_rows
from training.seq2seq import generate, load_seq2seq, prepare_seq2seq, tokenize_pairs

torch.set_num_threads(1)
CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])
DEVICES = ["cpu", CUDA]
MAX_LEN = 32
CFG = CompressTrainConfig(
    finetune=FinetuneConfig(epochs=2, batch_size=4, max_seq_len=MAX_LEN, eval_batch_size=8),
    distill=DistillConfig(epochs=2, batch_size=4, max_seq_len=MAX_LEN, latency_seq_len=16,
                          latency_runs=20, measure_codebert=False, bilstm_vocab=300,
                          pair_mode="separate", pair_head="cosine", in_batch_weight=1.0),
)
STUDENT = {"layers": 1, "hidden": 16, "heads": 2, "ffn": 32, "vocab": 300, "gflops": 0.001}


def _cpu_logits(folder, examples, pair_mode: str) -> torch.Tensor:
    """Logits (N, C) of a saved classifier reloaded on the CPU."""
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    enc = encode(tok, examples, MAX_LEN, pair_mode)
    with torch.no_grad():
        return model(**collate(enc, list(range(len(examples))), tok.pad_token_id)).logits


@pytest.fixture(scope="module", params=DEVICES)
def teacher_on(request, tmp_path_factory):
    """(device, TeacherArtifacts): a bi-encoder teacher fine-tuned and its logits and vectors
    cached on the device."""
    work = tmp_path_factory.mktemp(f"teacher-{request.param}")
    teacher = TeacherConfig(name=str(tiny_teacher_folder(work / "pretrained")), pair_mode="separate")
    return request.param, prepare_teacher(CFG, TINY_DATA, teacher, work / "work", device=request.param)


def test_teacher_cache_equals_a_cpu_forward(teacher_on):
    device, art = teacher_on
    transfer, logits = read_examples(art.logits_path)
    direct = _cpu_logits(art.teacher_dir, transfer, "separate")
    assert torch.allclose(torch.tensor(logits), direct, atol=1e-4)
    vec_a, vec_b, scale, bias = read_teacher_vectors(art.vectors_path)
    assert torch.allclose(scale * (vec_a * vec_b).sum(-1) + bias, direct[:, 1] - direct[:, 0], atol=1e-4)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
@pytest.mark.parametrize("candidate", [STUDENT, {"kind": "bilstm", "variant": "budget", "target_mb": 0.5}],
                         ids=["student", "bilstm"])
def test_distilled_model_reloads_on_cpu_and_scores_as_its_row(teacher_on, candidate, precision, tmp_path):
    """bf16 (mixed precision) trains fp32 weights: the saved model is an fp32 model whose fp32
    predictions on the CPU give its row's accuracy, as an fp32-trained one."""
    device, art = teacher_on
    cfg = replace(CFG, distill=replace(CFG.distill, precision=precision))
    epochs = []
    row = train_student(candidate, art, cfg, tmp_path / "model", device=device, progress=epochs.append)
    # the row says what the steps ran in: "auto" resolved on the device, as each epoch's row does
    assert row["device"] == device and row["in_batch_weight"] == 1.0
    assert row["precision"] == resolve_precision(precision, device) != "auto"
    # an explicit bf16 on a device without its units says its steps were emulated; auto never is
    assert row["emulated"] is emulated(row["precision"], torch.device(device).type)
    assert (row["emulated"] is True) == (precision == "bf16" and not native_bf16(torch.device(device).type))
    assert {(e["precision"], e["emulated"]) for e in epochs} == {(row["precision"], row["emulated"])}
    assert {t.dtype for t in load_file(f"{row['model_dir']}/model.safetensors").values()} == {torch.float32}
    assert row["latency_ms"] > 0 and row["teacher_latency_ms"] > 0
    # the int8 variants are made on the CPU from a copy: a CUDA-trained student's rows are no errors
    assert [r["variant"] for r in row["quantize"]] == ["fp32", *CFG.distill.quantize]
    assert {r.get("error") for r in row["quantize"]} == {None}, row["quantize"]
    test, _ = read_examples(art.eval_path, "test")
    if candidate.get("kind") == "bilstm":
        model, tok = BiLSTMSoft.from_pretrained(row["model_dir"]).eval(), AutoTokenizer.from_pretrained(row["model_dir"])
        with torch.no_grad():
            logits = model(**collate(encode(tok, test, MAX_LEN, "separate"), list(range(len(test))),
                                     tok.pad_token_id)).logits
    else:
        logits = _cpu_logits(row["model_dir"], test, "separate")
    correct = (logits.argmax(-1) == torch.tensor([e.label for e in test])).float().mean().item()
    assert correct == pytest.approx(row["accuracy"])


@pytest.mark.parametrize("device", DEVICES)
def test_latency_stops_the_clock_only_when_the_work_is_done(device, monkeypatch):
    """The harness times finished work: on CUDA it synchronises around each call (kernels run
    asynchronously; a host clock alone would time only their launch), so the device is idle
    whenever the clock is read. Checked at each reading, not by how long anything took."""
    x = torch.randn(*(2 * [2048 if device == "cuda" else 64]), device=device)  # ~ms of GPU work a call
    calls = []

    def work():
        calls.append(1)
        for _ in range(8):
            x @ x

    def idle() -> bool:
        return device != "cuda" or torch.cuda.current_stream().query()

    readings, clock = [], time.perf_counter

    def watched_clock():
        readings.append(idle())
        return clock()

    monkeypatch.setattr(time, "perf_counter", watched_clock)
    stats = latency_ms(work, warmup=2, runs=20)
    monkeypatch.undo()
    assert len(calls) == 22 and len(readings) == 40  # 2 untimed calls, then a start and a stop per run
    assert all(readings)
    assert stats["runs"] == 20 and stats["median_ms"] <= stats["p90_ms"]


@pytest.fixture(scope="module", params=DEVICES)
def seq2seq_on(request, seq2seq_teacher, seq2seq_data, tmp_path_factory):
    """(device, Seq2SeqArtifacts): the tiny code-to-text model fine-tuned on the device."""
    art = prepare_seq2seq(tiny_config(train_steps=100), DataConfig(path=seq2seq_data),
                          TeacherConfig(name=seq2seq_teacher), tmp_path_factory.mktemp(f"s2s-{request.param}"),
                          device=request.param)
    return request.param, art


def test_generation_on_the_device_equals_the_cpu(seq2seq_on, tiny):
    device, art = seq2seq_on
    model, tok = load_seq2seq(art.model_dir, art.config)
    examples = tokenize_pairs([PairText(c, d) for c, d in tiny.PAIRS], tok, art.config)
    on_cpu = {beam: generate(model, tok, examples, art.config, beam=beam) for beam in (1, 3)}
    model.to(device)
    for beam in (1, 3):
        assert generate(model, tok, examples, art.config, beam=beam, device=device) == on_cpu[beam]
    assert codexglue_bleu(on_cpu[1], [d for _, d in tiny.PAIRS]) > 50  # fine-tuned on the device: memorised


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_pruned_zeros_stay_exact_on_the_device(seq2seq_on, precision, tmp_path):
    device, art = seq2seq_on
    art = replace(art, config=replace(art.config, precision=precision))  # the repair steps' precision
    cfg = PruneConfig(methods=("l1-global",), rewinds=("finetuned",), selections=("pick_best",), batch_sizes=(6,),
                      rounds=(2,), iterations_per_round=4, rate=0.25, eval_every=2, valid_subset=4,
                      test_subset=4, beam=2, lr=1e-3)
    rows = []
    run_schedule(schedules(cfg)[0], art, cfg, tmp_path / "trial", report=rows.append, device=device)
    assert [r["sparsity"] for r in rows] == pytest.approx([0.0, 0.25, 0.5], abs=1e-3)
    assert {r["precision"] for r in rows} == {resolve_precision(precision, device)} != {"auto"}
    assert {r["emulated"] for r in rows} == {emulated(rows[0]["precision"], torch.device(device).type)}
    model, _ = load_seq2seq(art.model_dir, art.config, weights=str(tmp_path / "trial" / "round_002" / "state.safetensors"))
    weights = prunable_weights(model, "encoder")
    masks = load_file(str(tmp_path / "trial" / "round_002" / "masks.safetensors"))
    assert measured_sparsity(weights.values()) == pytest.approx(0.5, abs=1e-3)
    assert all(bool((w[~masks[n].bool()] == 0).all()) for n, w in weights.items())


def test_quantized_variants_run_where_they_can(seq2seq_on):
    device, art = seq2seq_on
    rows = {r["variant"]: r for r in quantize_rows(art, QuantizeConfig(beam=1, latency_runs=20), device=device)}
    assert {v: r["device"] for v, r in rows.items()} == {
        "fp32": device, "fp16": device, "int8": "cpu", "int8_fp32_head": "cpu"}
    # fp16 kernels exist on every CUDA device, and torch has CPU ones: every variant runs
    assert {v: r["error"] for v, r in rows.items()} == dict.fromkeys(rows)
    # whether the row's device converts fp16 rather than computing it: said in the row
    from training.models import emulated

    assert {v: r["emulated"] for v, r in rows.items()} == {
        "fp32": None, "fp16": emulated("fp16", torch.device(device).type), "int8": None, "int8_fp32_head": None}
    assert rows["fp32"]["bleu_greedy"] > 50  # the tiny model memorised its pairs
    for r in rows.values():
        assert r["bleu_kept"] == pytest.approx(1.0, abs=0.1) and r["latency_ms"] <= r["latency_p90_ms"]
