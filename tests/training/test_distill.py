import ast
import json
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from search.space import Arch, teacher_spec
from tests.training.standalone import standalone_logits
from tests.training.tiny_teacher import FIXTURE, TINY_DATA, tiny_teacher_folder
from training.data import ClsExample, DataConfig, classification_splits, split_labeled_unlabeled
from training.distill import (
    UNKNOWN_LABEL,
    CompressTrainConfig,
    DistillConfig,
    SoftLabelLoss,
    TeacherArtifacts,
    distill_model,
    extra_transfer_examples,
    in_batch_loss,
    prepare_teacher,
    read_examples,
    read_teacher_vectors,
    saved_variant_rows,
    teacher_variant_rows,
    train_student,
)
from training.evaluate import accuracy, f1_score
from training.finetune import FinetuneConfig, collate, encode, predict_logits
from training.models import (
    BiLSTMSoft,
    PairEncoderConfig,
    PairEncoderForSequenceClassification,
    TeacherConfig,
    build_student,
)
from training.tokenizer import train_tokenizer

torch.set_num_threads(1)
CFG = CompressTrainConfig(
    finetune=FinetuneConfig(epochs=1, batch_size=4, max_seq_len=32, eval_batch_size=8),
    distill=DistillConfig(epochs=2, batch_size=4, max_seq_len=32, latency_seq_len=16,
                          measure_codebert=False, bilstm_vocab=300),
)
STUDENT = {"layers": 1, "hidden": 16, "heads": 2, "ffn": 32, "vocab": 300, "gflops": 0.001}


def test_soft_label_loss_matches_the_formula():
    torch.manual_seed(0)
    q, p = torch.randn(4, 3), torch.randn(4, 3)  # student, teacher logits (B, C)
    t = 3.0
    expected = t * t * torch.nn.functional.kl_div(
        torch.log_softmax(q / t, -1), torch.softmax(p / t, -1), reduction="batchmean")
    assert SoftLabelLoss(t)(q, p).item() == pytest.approx(expected.item(), rel=1e-5)
    assert SoftLabelLoss(t)(p, p).item() == pytest.approx(0.0, abs=1e-6)
    labels = torch.tensor([0, 1, 2, 0])
    hard = SoftLabelLoss(t, hard_weight=0.5)(q, p, labels)
    ce = torch.nn.functional.cross_entropy(q, labels)
    assert hard.item() == pytest.approx(expected.item() + 0.5 * ce.item(), rel=1e-5)
    assert SoftLabelLoss(t)(q, p, labels).item() == pytest.approx(expected.item(), rel=1e-5)
    # rows of unknown label (the unlabeled half) take no part in the hard-label term
    # and each known row weighs 1 / batch, as the KL term's rows do, however many its batch holds
    partly = torch.tensor([0, UNKNOWN_LABEL, 2, UNKNOWN_LABEL])
    ce_known = torch.nn.functional.cross_entropy(q[[0, 2]], labels[[0, 2]], reduction="sum") / 4
    assert SoftLabelLoss(t, hard_weight=0.5)(q, p, partly).item() == pytest.approx(
        expected.item() + 0.5 * ce_known.item(), rel=1e-5)
    assert SoftLabelLoss(t, hard_weight=0.5)(q, p, torch.full((4,), UNKNOWN_LABEL)).item() == pytest.approx(
        expected.item(), rel=1e-5)


def test_soft_label_loss_gradient_pulls_student_towards_teacher():
    q = torch.zeros(1, 2, requires_grad=True)
    SoftLabelLoss(2.0)(q, torch.tensor([[3.0, 0.0]])).backward()
    assert q.grad[0, 0] < 0 < q.grad[0, 1]  # descent raises the teacher's preferred class


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    teacher = TeacherConfig(name=str(tiny_teacher_folder(tmp_path_factory.mktemp("teacher"))))
    return prepare_teacher(CFG, TINY_DATA, teacher, tmp_path_factory.mktemp("work"))


def test_artifacts_are_picklable_and_logits_cached(artifacts, tmp_path):
    again = pickle.loads(pickle.dumps(artifacts))
    assert isinstance(again, TeacherArtifacts) and again == artifacts
    transfer, logits = read_examples(artifacts.logits_path)
    unlabeled = split_labeled_unlabeled(classification_splits(TINY_DATA)["train"], 0.5, 0)[1]
    assert transfer == unlabeled and len(logits) == len(unlabeled) and len(logits[0]) == 2
    teacher = AutoModelForSequenceClassification.from_pretrained(artifacts.teacher_dir).eval()
    tok = AutoTokenizer.from_pretrained(artifacts.teacher_dir)
    enc = encode(tok, transfer[:1], CFG.finetune.max_seq_len)
    with torch.no_grad():
        direct = teacher(**collate(enc, [0], tok.pad_token_id)).logits[0]
    assert torch.allclose(direct, torch.tensor(logits[0]), atol=1e-4)


def test_second_prepare_reuses_teacher_and_logits(artifacts):
    mtime = Path(artifacts.logits_path).stat().st_mtime_ns
    teacher = TeacherConfig(name=artifacts.teacher_metrics["teacher"])
    again = prepare_teacher(CFG, TINY_DATA, teacher, artifacts.work_dir)
    assert again.logits_path == artifacts.logits_path and again.teacher_metrics["reused"]
    assert Path(again.logits_path).stat().st_mtime_ns == mtime
    assert prepare_teacher(CFG, TINY_DATA, teacher, artifacts.work_dir, reuse_only=True) == again


def test_reuse_only_refuses_to_fine_tune_a_teacher_not_cached(artifacts, tmp_path):
    from training.finetune import NotCached

    teacher = TeacherConfig(name=artifacts.teacher_metrics["teacher"])
    with pytest.raises(NotCached):
        prepare_teacher(CFG, TINY_DATA, teacher, tmp_path, reuse_only=True)


@pytest.mark.parametrize("first, then", [({}, {"transfer_set": "all"}), ({"max_transfer": 3}, {"max_transfer": 4})])
def test_a_transfer_set_of_other_pairs_gets_its_own_logits(artifacts, first, then, tmp_path):
    """The logits cache holds the transfer set's pairs: another set (the labeled half joined,
    another cap) is computed anew, not read from the cache of the first one. (In a copy of the
    shared work folder: other tests count its cache files.)"""
    teacher = TeacherConfig(name=artifacts.teacher_metrics["teacher"])
    work = shutil.copytree(artifacts.work_dir, tmp_path / "work")
    one, other = (prepare_teacher(replace(CFG, distill=replace(CFG.distill, **change)), TINY_DATA, teacher, work)
                  for change in (first, then))
    assert other.teacher_metrics["reused"] and other.logits_path != one.logits_path
    assert read_examples(other.logits_path)[0] != read_examples(one.logits_path)[0]


def test_a_teacher_fine_tuned_again_gets_its_own_logits(tmp_path):
    """The logits cache is keyed by the fine-tuned weights, not only by the key they were
    fine-tuned under: a teacher fine-tuned again into its folder (non-deterministic GPU
    kernels, a deleted folder) would have read the old teacher's logits."""
    teacher = TeacherConfig(name=str(tiny_teacher_folder(tmp_path / "teacher")))
    first = prepare_teacher(CFG, TINY_DATA, teacher, tmp_path / "work")
    model = AutoModelForSequenceClassification.from_pretrained(first.teacher_dir)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    model.save_pretrained(first.teacher_dir)  # the same folder, other weights
    again = prepare_teacher(CFG, TINY_DATA, teacher, tmp_path / "work")
    assert again.teacher_metrics["reused"] and again.logits_path != first.logits_path
    assert read_examples(again.logits_path)[1] != read_examples(first.logits_path)[1]


def test_killed_cache_writers_staging_files_are_removed(artifacts, stale):
    work = Path(artifacts.work_dir)
    logits, eval_ = Path(artifacts.logits_path), Path(artifacts.eval_path)
    dead = [stale.staged(p, stale.exited_pid(), folder=False) for p in (logits, eval_)]
    live = stale.staged(logits, os.getppid(), folder=False)  # another process, alive
    prepare_teacher(CFG, TINY_DATA, TeacherConfig(name=artifacts.teacher_metrics["teacher"]), work)
    assert not any(p.exists() for p in dead) and live.exists()
    assert sorted(p.name for p in (work / "logits").iterdir()) == sorted([logits.name, live.name])
    live.unlink()  # the module's other tests read this folder


def _tiny_pair_model(kind: str, tokenizer):
    torch.manual_seed(0)
    if kind == "bilstm":
        return BiLSTMSoft(300, embed=32, hidden=32, dense=32, pair=True, pad_id=tokenizer.pad_token_id)
    return build_student(Arch(1, 16, 2, 32, 300), teacher_spec("minilm-l6"), 2, "separate",
                         pad_token_id=tokenizer.pad_token_id, pair_head="cosine")


@pytest.mark.parametrize("kind", ["student", "bilstm"])
def test_distillation_pulls_the_student_to_the_teachers_logits(kind):
    """100 steps on the training pairs (each 40 times, one epoch): the student's soft-label KL
    to a confident teacher's logits on them falls far below where it started. The student
    learns from SoftLabelLoss, the BiLSTM_soft from MSE; both are held to the KL."""
    train = classification_splits(TINY_DATA)["train"]
    logits = [[3.0, -3.0] if e.label == 0 else [-3.0, 3.0] for e in train]  # (N, 2)
    tokenizer = train_tokenizer([t for e in train for t in (e.text_a, e.text_b)], 300)
    cfg = DistillConfig(epochs=1, batch_size=4, max_seq_len=32, lr=5e-3, bilstm_lr=3e-2, warmup_ratio=0.0)
    model = _tiny_pair_model(kind, tokenizer)
    enc = encode(tokenizer, train, 32, "separate")

    def kl():
        student = predict_logits(model, enc, tokenizer.pad_token_id, 8)
        return SoftLabelLoss(cfg.temperature)(student, torch.tensor(logits)).item()

    before = kl()
    distill_model(model, tokenizer, train * 40, logits * 40, train, cfg, device="cpu", mse=kind == "bilstm")
    assert before > 1.0 and kl() < before / 20


def _bi_encoder_teacher(train, scale: float = 5.0, bias: float = -1.0):
    """A synthetic bi-encoder teacher of the pairs: a seeded unit vector (8,) per distinct text.
    (logits (N, 2) of each pair, `read_teacher_vectors`' tuple)."""
    texts = sorted({t for e in train for t in (e.text_a, e.text_b)})
    gen = torch.Generator().manual_seed(0)
    vectors = nn.functional.normalize(torch.randn(len(texts), 8, generator=gen), dim=-1)  # (T, 8)
    vec_a, vec_b = (vectors[[texts.index(getattr(e, side)) for e in train]] for side in ("text_a", "text_b"))
    margins = scale * (vec_a * vec_b).sum(-1) + bias
    return [[0.0, m] for m in margins.tolist()], (vec_a, vec_b, scale, bias)


@pytest.mark.parametrize("kind", ["student", "bilstm"])
def test_an_in_batch_step_adds_the_weighted_in_batch_loss_to_the_pointwise_loss(kind):
    """One step over all the pairs (no dropout, so the recorded loss is a function of the
    weights): the loss `fit` records is the pointwise loss (soft-label for a student, MSE for
    the BiLSTM_soft) plus in_batch_weight x in_batch_loss, both of the model before the step."""
    train = classification_splits(TINY_DATA)["train"]
    logits, vectors = _bi_encoder_teacher(train)
    tokenizer = train_tokenizer([t for e in train for t in (e.text_a, e.text_b)], 300)
    torch.manual_seed(0)
    if kind == "bilstm":
        model = BiLSTMSoft(300, embed=16, hidden=16, dense=16, pair=True, pad_id=tokenizer.pad_token_id,
                           dropout=0.0)
    else:
        encoder = {"model_type": "bert", "vocab_size": 300, "hidden_size": 16, "num_hidden_layers": 1,
                   "num_attention_heads": 2, "intermediate_size": 32, "hidden_dropout_prob": 0.0,
                   "attention_probs_dropout_prob": 0.0, "pad_token_id": tokenizer.pad_token_id}
        model = PairEncoderForSequenceClassification(PairEncoderConfig(encoder=encoder, head="cosine",
                                                                       pooling="mean"))
    cfg = DistillConfig(epochs=1, batch_size=len(train), max_seq_len=32, pair_mode="separate", pair_head="cosine",
                        in_batch_weight=2.0, in_batch_temperature=2.0)
    batch = collate(encode(tokenizer, train, 32, "separate"), list(range(len(train))), tokenizer.pad_token_id)
    vec_a, vec_b, scale, bias = vectors
    with torch.no_grad():
        u = model.pool(batch["input_ids"], batch["attention_mask"])  # (N, H)
        v = model.pool(batch["input_ids_b"], batch["attention_mask_b"])
        pointwise_loss = nn.functional.mse_loss if kind == "bilstm" else SoftLabelLoss(cfg.temperature)
        pointwise = pointwise_loss(model.pair_logits(u, v), torch.tensor(logits))
        teacher_margins = scale * vec_a @ vec_b.T + bias  # (N, N)
        listwise = in_batch_loss(model.pair_margins(u, v), teacher_margins, cfg.in_batch_temperature)
    epochs = []
    distill_model(model, tokenizer, train, logits, train, cfg, device="cpu", mse=kind == "bilstm",
                  on_epoch=epochs.append, teacher_vectors=vectors)
    assert epochs[0]["steps"] == 1 and listwise.item() > 0.01
    assert epochs[0]["train_loss"] == pytest.approx(pointwise.item() + 2.0 * listwise.item(), rel=1e-5)


@pytest.mark.parametrize("kind", ["student", "bilstm"])
def test_in_batch_targets_heads_and_loss_stay_fp32_in_bf16_steps(kind, monkeypatch):
    """bf16 autocast on the CPU rounds a matmul's output to bf16: the teacher's in-batch
    margins (scale x unit vectors) came out bf16 and the student chased the rounding."""
    import training.distill as distill_module

    train = classification_splits(TINY_DATA)["train"]
    logits, vectors = _bi_encoder_teacher(train, scale=20.0, bias=-8.0)
    tokenizer = train_tokenizer([t for e in train for t in (e.text_a, e.text_b)], 300)
    torch.manual_seed(0)
    if kind == "bilstm":
        model = BiLSTMSoft(300, embed=16, hidden=16, dense=16, pair=True, pad_id=tokenizer.pad_token_id)
    else:
        encoder = {"model_type": "bert", "vocab_size": 300, "hidden_size": 16, "num_hidden_layers": 1,
                   "num_attention_heads": 2, "intermediate_size": 32, "pad_token_id": tokenizer.pad_token_id}
        model = PairEncoderForSequenceClassification(PairEncoderConfig(encoder=encoder, head="cosine", pooling="mean"))
    cfg = DistillConfig(epochs=1, batch_size=len(train), max_seq_len=32, pair_mode="separate", pair_head="cosine",
                        in_batch_weight=2.0, in_batch_temperature=2.0, precision="bf16")
    seen = []
    loss = distill_module.in_batch_loss

    def recording(student, teacher, temperature):
        seen.append((student.dtype, teacher.clone(), torch.is_autocast_enabled("cpu")))
        return loss(student, teacher, temperature)
    monkeypatch.setattr(distill_module, "in_batch_loss", recording)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU without native bf16 warns; autocast runs all the same
        distill_model(model, tokenizer, train, logits, train, cfg, device="cpu", mse=kind == "bilstm",
                      teacher_vectors=vectors)
    (student_dtype, teacher, autocast), = seen
    vec_a, vec_b, scale, bias = vectors
    full = scale * vec_a @ vec_b.T + bias  # fp32; the step's batch is a permutation of all rows
    assert student_dtype == teacher.dtype == torch.float32 and not autocast
    torch.testing.assert_close(teacher.flatten().sort().values, full.flatten().sort().values, rtol=0, atol=1e-5)


def _reload_logits(folder, test, pair_mode):
    import training.models  # noqa: F401  (registers the pair model with the Auto classes)

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    enc = encode(tok, test, 32, pair_mode)
    with torch.no_grad():
        return model(**collate(enc, list(range(len(test))), tok.pad_token_id)).logits


@pytest.mark.parametrize("pair_mode", ["joint", "separate"])
def test_train_student_row_and_reload(artifacts, tmp_path, pair_mode):
    cfg = replace(CFG, distill=replace(CFG.distill, pair_mode=pair_mode))
    seen = []
    row = train_student(STUDENT | {"predicted_ms": 1.25}, artifacts, cfg, tmp_path / "s", progress=seen.append)
    assert row["predicted_ms"] == 1.25  # the search's latency prediction, beside the measured latency_ms
    assert [s["epoch"] for s in seen] == [1, 2]
    assert set(seen[0]) == {"epoch", "valid_accuracy", "train_loss", "steps", "seconds", "lr", "best",
                            "precision", "emulated"}
    assert {(s["precision"], s["emulated"]) for s in seen} == {(row["precision"], row["emulated"])} == {("fp32", None)}
    assert seen[0]["best"] and 0 < seen[0]["seconds"] < seen[1]["seconds"] and seen[1]["steps"] == 2 * seen[0]["steps"]
    assert [s["epoch"] for s in seen if s["best"]][-1] == row["best_epoch"]
    assert max(s["valid_accuracy"] for s in seen) == row["valid_accuracy"]
    assert seen[1]["lr"] < seen[0]["lr"]  # linear decay after the warm-up
    for key in ("layers", "hidden", "heads", "ffn", "vocab", "params", "size_mb", "serialized_bytes",
                "gflops", "accuracy", "f1", "teacher_accuracy", "retention", "latency_ms",
                "teacher_latency_ms", "speedup_vs_teacher", "train_seconds", "device"):
        assert key in row, key
    assert row["pair_mode"] == pair_mode and row["device"] == row["latency_device"] == "cpu"
    assert row["attention_dropout"] == 0.1  # the family's default
    assert row["train_attention"] == "sdpa"  # transformers' default
    assert row["size_mb"] * 1e6 <= row["serialized_bytes"] < row["size_mb"] * 1e6 + 100_000
    # the bytes written, not a re-serialisation without save_pretrained's metadata
    assert row["serialized_bytes"] == sum(f.stat().st_size for f in Path(row["model_dir"]).glob("*.safetensors"))
    assert row["teacher_accuracy"] == artifacts.teacher_metrics["accuracy"] > 0  # 0.5 on the fixture
    assert row["retention"] == pytest.approx(row["accuracy"] / row["teacher_accuracy"])
    test, _ = read_examples(artifacts.eval_path, "test")
    logits = _reload_logits(row["model_dir"], test, pair_mode)
    preds = logits.argmax(-1).tolist()
    assert sum(p == e.label for p, e in zip(preds, test, strict=True)) / len(test) == row["accuracy"]
    assert row["f1"] == f1_score(preds, [e.label for e in test])
    if pair_mode == "separate":  # the job's folder carries its model code: stock transformers loads it
        elsewhere = standalone_logits(row["model_dir"], [e.text_a for e in test],
                                      [e.text_b for e in test], cwd=tmp_path, max_len=32)
        assert torch.allclose(elsewhere, logits, atol=1e-5)
    _check_variant_rows(row, test, pair_mode)


def _check_variant_rows(row, test, pair_mode):
    """fp32, int8 and int8_emb rows (the default distill.quantize); the int8 accuracy is
    the saved model's, quantized again here."""
    from training.quantize import quantize_classifier

    by = {r["variant"]: r for r in row["quantize"]}
    assert list(by) == ["fp32", "int8", "int8_emb"] and {r["error"] for r in by.values()} == {None}
    assert by["fp32"]["accuracy"] == row["accuracy"] and by["fp32"]["accuracy_kept"] == 1.0
    assert {r["score_batch"] for r in by.values()} == {CFG.distill.eval_batch_size}  # the batch each scored in
    assert by["int8_emb"]["size_bytes"] < by["int8"]["size_bytes"] < by["fp32"]["size_bytes"]
    for variant in ("int8", "int8_emb"):  # each timed beside the fp32 model
        assert by[variant]["speedup_vs_fp32"] == by["fp32"]["latency_ms"] / by[variant]["latency_ms"]
        assert by[variant]["latency_ms"] <= by[variant]["latency_p90_ms"]
    assert row["teacher_accuracy"] > 0
    assert by["int8"]["retention"] == pytest.approx(by["int8"]["accuracy"] / row["teacher_accuracy"])
    if row["kind"] == "bilstm":
        model, tok = BiLSTMSoft.from_pretrained(row["model_dir"]), AutoTokenizer.from_pretrained(row["model_dir"])
    else:
        model = AutoModelForSequenceClassification.from_pretrained(row["model_dir"])
        tok = AutoTokenizer.from_pretrained(row["model_dir"])
    enc = encode(tok, test, 32, pair_mode)
    with torch.no_grad():
        logits = quantize_classifier(model, "int8")(**collate(enc, list(range(len(test))), tok.pad_token_id)).logits
    preds = logits.argmax(-1).tolist()
    assert sum(p == e.label for p, e in zip(preds, test, strict=True)) / len(test) == by["int8"]["accuracy"]


@pytest.mark.parametrize("candidate, pair_mode", [(STUDENT, "joint"), (STUDENT, "separate"),
                                                  ({"kind": "bilstm", "variant": "budget", "target_mb": 0.5}, "separate")])
def test_a_saved_model_quantized_again_scores_as_its_trial_did(artifacts, tmp_path, candidate, pair_mode,
                                                               monkeypatch):
    """`saved_variant_rows` (a finished sweep quantized under a longer list) loads the folder a
    trial saved and scores each variant the trial scored alike, plus the new ones, and times
    them in the trial's input format."""
    import training.distill as distill

    cfg = replace(CFG, distill=replace(CFG.distill, pair_mode=pair_mode))
    row = train_student(candidate, artifacts, cfg, tmp_path / "m")
    timed, real = [], distill.classifier_latencies
    monkeypatch.setattr(distill, "classifier_latencies", lambda *a, **kw: timed.append(kw["pair"]) or real(*a, **kw))
    again = saved_variant_rows(row, artifacts, cfg, ["int8", "int8_emb", "bf16"])
    assert timed == [pair_mode == "separate"]
    trial, by = {r["variant"]: r for r in row["quantize"]}, {r["variant"]: r for r in again}
    assert list(by) == ["fp32", "int8", "int8_emb", "bf16"] and {r["error"] for r in by.values()} == {None}
    for variant in trial:
        assert by[variant]["accuracy"] == trial[variant]["accuracy"], variant
        assert by[variant]["size_bytes"] == trial[variant]["size_bytes"], variant
        assert by[variant]["retention"] == pytest.approx(trial[variant]["retention"]), variant
    assert by["bf16"]["speedup_vs_fp32"] == by["fp32"]["latency_ms"] / by["bf16"]["latency_ms"]  # timed beside fp32


def test_the_teacher_quantized_again_is_its_trials_quantization(artifacts):
    rows = saved_variant_rows({"kind": "teacher"}, artifacts, CFG, ["int8"])
    trial = teacher_variant_rows(artifacts, replace(CFG, distill=replace(CFG.distill, quantize=("int8",))))
    assert [(r["variant"], r["accuracy"], r["size_bytes"]) for r in rows] == [
        (r["variant"], r["accuracy"], r["size_bytes"]) for r in trial]


@pytest.mark.parametrize("variant", ["paper", "budget"])
def test_bilstm_baseline(artifacts, tmp_path, variant):
    row = train_student({"kind": "bilstm", "variant": variant, "target_mb": 0.5}, artifacts, CFG,
                        tmp_path / "b")
    assert row["kind"] == "bilstm" and row["variant"] == variant
    if variant == "budget":
        assert row["params"] * 4 <= 0.5e6
    else:
        assert row["hidden"] == BiLSTMSoft.PAPER_WIDTH["hidden"]
    model = BiLSTMSoft.from_pretrained(row["model_dir"])
    assert sum(p.numel() for p in model.parameters()) == row["params"]
    assert model.pair and row["pair_mode"] == "separate"  # code-search pairs: the siamese model
    _check_variant_rows(row, read_examples(artifacts.eval_path, "test")[0], "separate")


def test_unknown_candidate_kind_refused(artifacts, tmp_path):
    with pytest.raises(ValueError, match="kind"):
        train_student({"kind": "cnn"}, artifacts, CFG, tmp_path)


def test_bi_encoder_teacher_pipeline(tmp_path):
    teacher = TeacherConfig(name=str(tiny_teacher_folder(tmp_path / "t")), pair_mode="separate")
    art = prepare_teacher(CFG, TINY_DATA, teacher, tmp_path / "work")
    assert art.teacher_pair_mode == "separate" and art.teacher.family == "bert"
    row = train_student(STUDENT, art, CFG, tmp_path / "s")
    assert row["teacher_latency_ms"] > 0 and 0.0 <= row["accuracy"] <= 1.0
    _check_teacher_variant_rows(art)


def test_teacher_variant_rows(artifacts):
    _check_teacher_variant_rows(artifacts)


def _check_teacher_variant_rows(art):
    rows = {r["variant"]: r for r in teacher_variant_rows(art, CFG)}
    assert list(rows) == ["fp32", "int8", "int8_emb"] and {r["error"] for r in rows.values()} == {None}
    assert rows["fp32"]["accuracy"] == pytest.approx(art.teacher_metrics["accuracy"])  # its fine-tuning's test score
    assert rows["fp32"]["retention"] == pytest.approx(1.0)
    assert rows["int8"]["size_bytes"] < rows["fp32"]["size_bytes"] and rows["int8"]["latency_ms"] > 0
    assert teacher_variant_rows(art, replace(CFG, distill=replace(CFG.distill, quantize=()))) == []


_ORDER_SCRIPT = """
from training.data import ClsExample
from training.distill import encode_order
texts = [f"def f{i:02d}(): pass" for i in range(40)] + ["x", "yy", "zz"]
print(encode_order([ClsExample(a, b, 1) for a, b in zip(texts, texts[::-1])]))
"""


def test_teacher_encode_order_does_not_depend_on_the_hash_seed():
    """The teacher's texts are batched in one order in every process (the batches' padding
    shapes the cached vectors' last bits), ties in length broken by the text."""

    def order(seed: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        return subprocess.run([sys.executable, "-c", _ORDER_SCRIPT], env=env, check=True,
                              capture_output=True, text=True).stdout
    first = order("1")
    assert first == order("2") == order("3")
    texts = ast.literal_eval(first)
    assert texts == sorted(texts, key=lambda t: (len(t), t)) and len(texts) == 43


def _extra_set(tmp_path):
    """A code-to-text file: 6 new functions in two files, plus a copy of a test function."""
    rows = [{"path": f"m{i % 2}.py", "code_tokens": ["def", f"f{i}", "(", ")", ":", "return", str(i)],
             "docstring_tokens": ["Return", "the", "number", str(i), "."], "partition": "train"}
            for i in range(6)]
    test_record = json.loads((FIXTURE / "test.jsonl").read_text().splitlines()[0])
    rows.append(test_record | {"partition": "train"})
    path = tmp_path / "extra.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_extra_transfer_pairs_drop_held_out_texts_and_cap(tmp_path):
    splits = classification_splits(TINY_DATA)
    held = splits["valid"] + splits["test"]
    cfg = DistillConfig(transfer_extra=(str(_extra_set(tmp_path)),))
    extra = extra_transfer_examples(cfg, held)
    # 6 new functions x (positive, same-file negative); the test function's pairs are dropped
    assert sorted(e.label for e in extra) == [0] * 6 + [1] * 6
    assert not {t for e in extra for t in (e.text_a, e.text_b)} & {t for e in held for t in (e.text_a, e.text_b)}
    assert {e.text_a for e in extra} == {f"def f{i} ( ) : return {i}" for i in range(6)}
    capped = extra_transfer_examples(replace(cfg, max_transfer_extra=5), held)
    assert len(capped) == 5 and set(capped) <= set(extra)


def test_the_hard_label_term_sees_only_the_labeled_halfs_gold_labels(tmp_path, monkeypatch):
    """The unlabeled half's labels are unknown in this setting: hard_weight needs
    transfer_set=all, and its cross-entropy sees exactly the labeled half's rows, each epoch."""
    from training.finetune import labeled_half

    with pytest.raises(ValueError, match="hard_weight: .*transfer_set=all"):
        DistillConfig(hard_weight=0.5)
    cfg = replace(CFG, distill=replace(CFG.distill, hard_weight=0.5, transfer_set="all", epochs=1))
    teacher = TeacherConfig(name=str(tiny_teacher_folder(tmp_path / "t")))
    art = prepare_teacher(cfg, TINY_DATA, teacher, tmp_path / "work")
    start, stop = art.labeled_rows
    labeled, unlabeled = labeled_half(classification_splits(TINY_DATA)["train"], TINY_DATA)
    transfer, _ = read_examples(art.logits_path)
    assert (start, stop) == (len(unlabeled), len(transfer)) and transfer[start:stop] == labeled and labeled
    assert prepare_teacher(CFG, TINY_DATA, teacher, tmp_path / "work").labeled_rows == (0, 0)
    seen = []
    cross_entropy = torch.nn.functional.cross_entropy

    def spy(logits, labels, *args, **kwargs):
        assert kwargs.get("ignore_index") == UNKNOWN_LABEL
        seen.extend(label for label in labels.tolist() if label != UNKNOWN_LABEL)
        return cross_entropy(logits, labels, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy)
    train_student(STUDENT, art, cfg, tmp_path / "s")
    assert sorted(seen) == sorted(e.label for e in labeled)  # one epoch: each labeled row once, no other


def test_extra_transfer_joins_the_cache_with_bi_encoder_logits(tmp_path):
    teacher = TeacherConfig(name=str(tiny_teacher_folder(tmp_path / "t")), pair_mode="separate")
    base = prepare_teacher(CFG, TINY_DATA, teacher, tmp_path / "work")
    cfg = replace(CFG, distill=replace(CFG.distill, transfer_extra=(str(_extra_set(tmp_path)),)))
    art = prepare_teacher(cfg, TINY_DATA, teacher, tmp_path / "work")
    assert art.logits_path != base.logits_path and art.teacher_dir == base.teacher_dir
    base_examples, _ = read_examples(base.logits_path)
    examples, logits = read_examples(art.logits_path)
    assert examples[:len(base_examples)] == base_examples and len(examples) == len(base_examples) + 12
    # each distinct text encoded once gives the logits of the model's own forward on every pair
    model = AutoModelForSequenceClassification.from_pretrained(art.teacher_dir).eval()
    tok = AutoTokenizer.from_pretrained(art.teacher_dir)
    with torch.no_grad():
        direct = model(**collate(encode(tok, examples, 32, "separate"), list(range(len(examples))),
                                 tok.pad_token_id)).logits
    assert torch.allclose(torch.tensor(logits), direct, atol=1e-5)


def test_in_batch_loss_is_listwise_kl_both_ways():
    torch.manual_seed(0)
    student, teacher = torch.randn(4, 4), torch.randn(4, 4)  # [i, j]: text_a i with text_b j
    t = 2.0

    def kl(s, p):
        return torch.nn.functional.kl_div(torch.log_softmax(s / t, -1), torch.softmax(p / t, -1),
                                          reduction="batchmean")

    expected = t * t * (kl(student, teacher) + kl(student.T, teacher.T)) / 2
    assert in_batch_loss(student, teacher, t).item() == pytest.approx(expected.item(), rel=1e-5)
    assert in_batch_loss(teacher, teacher, t).item() == pytest.approx(0.0, abs=1e-6)
    # a margin shift shared by the whole batch (the head's bias) changes no distribution
    assert in_batch_loss(student + 5.0, teacher, t).item() == pytest.approx(expected.item(), rel=1e-4)


def test_in_batch_loss_gradient_raises_the_teachers_best_match():
    student = torch.zeros(2, 2, requires_grad=True)
    in_batch_loss(student, torch.tensor([[4.0, 0.0], [0.0, 4.0]])).backward()
    assert student.grad[0, 0] < 0 < student.grad[0, 1]


def _tiny_pair_models():
    encoder = {"model_type": "bert", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1,
               "num_attention_heads": 2, "intermediate_size": 32}
    yield from (PairEncoderForSequenceClassification(PairEncoderConfig(encoder=encoder, head=head,
                                                                       pooling=pool))
                for head, pool in (("cosine", "mean"), ("concat", "cls")))
    yield BiLSTMSoft(50, embed=8, hidden=8, dense=12, pair=True)


@pytest.mark.parametrize("model", list(_tiny_pair_models()), ids=["cosine", "concat", "bilstm"])
def test_pair_margins_score_every_pair_as_forward_does(model):
    torch.manual_seed(0)
    model.eval()
    a, b = torch.randint(1, 50, (3, 7)), torch.randint(1, 50, (3, 5))  # 3 text_a, 3 text_b
    with torch.no_grad():
        u, v = model.pool(a, torch.ones_like(a)), model.pool(b, torch.ones_like(b))
        margins, diagonal = model.pair_margins(u, v), model.pair_logits(u, v)
        assert torch.allclose(diagonal, model(input_ids=a, input_ids_b=b).logits, atol=1e-5)
        for j in range(3):  # column j: every text_a against text_b j
            direct = model(input_ids=a, input_ids_b=b[j].expand(3, -1)).logits
            assert torch.allclose(margins[:, j], direct[:, 1] - direct[:, 0], atol=1e-5)


def test_in_batch_config_refused_without_separate_pairs(artifacts):
    with pytest.raises(ValueError, match="pair_mode"):
        DistillConfig(in_batch_weight=1.0)  # joint students read one sequence per pair
    with pytest.raises(ValueError, match="in_batch_temperature"):
        DistillConfig(pair_mode="separate", in_batch_weight=1.0, in_batch_temperature=0.0)
    cfg = replace(CFG, distill=replace(CFG.distill, pair_mode="separate", in_batch_weight=1.0))
    with pytest.raises(ValueError, match="bi-encoder teacher"):  # the module teacher is joint
        prepare_teacher(cfg, TINY_DATA, TeacherConfig(name=artifacts.teacher_dir),
                        Path(artifacts.work_dir))


def test_in_batch_distillation_with_a_bi_encoder_teacher(tmp_path):
    teacher = TeacherConfig(name=str(tiny_teacher_folder(tmp_path / "t")), pair_mode="separate")
    cfg = replace(CFG, distill=replace(CFG.distill, pair_mode="separate", pair_head="cosine",
                                       in_batch_weight=1.0))
    art = prepare_teacher(cfg, TINY_DATA, teacher, tmp_path / "work")
    base = prepare_teacher(CFG, TINY_DATA, teacher, tmp_path / "work")
    assert art.logits_path == base.logits_path and base.vectors_path is None
    # the cached unit vectors give back the teacher's own logit margins on every pair
    _, logits = read_examples(art.logits_path)
    vec_a, vec_b, scale, bias = read_teacher_vectors(art.vectors_path)
    assert vec_a.shape == vec_b.shape == (len(logits), 32)
    assert torch.allclose(vec_a.norm(dim=-1), torch.ones(len(logits)), atol=1e-5)
    margins = torch.tensor([row[1] - row[0] for row in logits])
    assert torch.allclose(scale * (vec_a * vec_b).sum(-1) + bias, margins, atol=1e-4)
    for candidate in (STUDENT, {"kind": "bilstm", "variant": "budget", "target_mb": 0.5}):
        row = train_student(candidate, art, cfg, tmp_path / candidate.get("kind", "student"))
        assert row["in_batch_weight"] == 1.0 and 0.0 <= row["accuracy"] <= 1.0
    assert train_student(STUDENT, base, cfg, tmp_path / "plain")["in_batch_weight"] == 0.0



@pytest.mark.parametrize("bad", [{"attention_dropout": 1.0}, {"attention_dropout": -0.1},
                                 {"quantize": ("int8", "int4")}, {"train_attention": "flash"}])
def test_distill_config_refuses_bad_values_naming_the_field(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        DistillConfig(**bad)


def _one_step_student(pair_mode: str, tokenizer):
    """A dropout-free tiny BERT student (the recorded loss is then a function of the weights),
    reading pairs separately (cosine head) or joined."""
    torch.manual_seed(0)
    encoder = {"model_type": "bert", "vocab_size": 300, "hidden_size": 16, "num_hidden_layers": 1,
               "num_attention_heads": 2, "intermediate_size": 32, "hidden_dropout_prob": 0.0,
               "attention_probs_dropout_prob": 0.0, "pad_token_id": tokenizer.pad_token_id}
    if pair_mode == "separate":
        return PairEncoderForSequenceClassification(PairEncoderConfig(encoder=encoder, head="cosine",
                                                                       pooling="mean"))
    from transformers import BertConfig, BertForSequenceClassification
    return BertForSequenceClassification(BertConfig(**{k: v for k, v in encoder.items() if k != "model_type"}))


@pytest.mark.parametrize("pair_mode", ["separate", "joint"])
def test_students_train_with_the_configured_attention_and_keep_their_own(pair_mode, monkeypatch):
    """distill.train_attention="eager": the training steps run transformers' eager attention
    (counted at its function), the loss is the one sdpa computes, and the student comes back
    with its own implementation (scoring, timing and saving use it); "sdpa" never calls eager
    attention in a training step."""
    from transformers.models.bert import modeling_bert

    train_calls = []
    eager = modeling_bert.eager_attention_forward

    def counted(module, *args, **kwargs):
        train_calls.append(module.training)
        return eager(module, *args, **kwargs)

    monkeypatch.setattr(modeling_bert, "eager_attention_forward", counted)
    train = classification_splits(TINY_DATA)["train"]
    logits, vectors = _bi_encoder_teacher(train)
    tokenizer = train_tokenizer([t for e in train for t in (e.text_a, e.text_b)], 300)
    losses, seen = {}, {}
    for attention in ("sdpa", "eager"):
        model = _one_step_student(pair_mode, tokenizer)
        encoder = model.encoder if pair_mode == "separate" else model
        cfg = DistillConfig(epochs=1, batch_size=len(train), max_seq_len=32, pair_mode=pair_mode,
                            pair_head="cosine", in_batch_weight=2.0 if pair_mode == "separate" else 0.0,
                            train_attention=attention)
        epochs = []
        train_calls.clear()
        distill_model(model, tokenizer, train, logits, train, cfg, device="cpu", teacher_vectors=vectors,
                      on_epoch=lambda e, enc=encoder, out=epochs: out.append(e | {"impl": enc.config._attn_implementation}))
        losses[attention] = epochs[0]["train_loss"]
        seen[attention] = (any(train_calls), not all(train_calls), epochs[0]["impl"],
                           encoder.config._attn_implementation)
    assert seen["eager"] == (True, True, "eager", "sdpa")  # training steps and validation
    assert seen["sdpa"] == (False, False, "sdpa", "sdpa")
    assert losses["eager"] == pytest.approx(losses["sdpa"], rel=1e-5)


def test_attention_implementation_restores_the_students_own_after_an_error():
    from training.distill import attention_implementation

    tokenizer = train_tokenizer([e.text_a for e in classification_splits(TINY_DATA)["train"]], 300)
    student = _one_step_student("separate", tokenizer)
    with pytest.raises(KeyError), attention_implementation(student, "eager"):
        assert student.encoder.config._attn_implementation == "eager"
        raise KeyError("a failing step")
    assert student.encoder.config._attn_implementation == "sdpa"
    bilstm = BiLSTMSoft(300, embed=8, hidden=8, dense=8, pair=True)
    with attention_implementation(bilstm, "eager"):  # no transformers attention: left as it is
        pass


def test_latency_device_cpu_times_a_gpu_trial_on_the_cpu():
    """The paper's speed-ups are CPU timings: `latency_device: cpu` keeps a GPU trial's
    latency figures on the CPU; "trial" (the default) times where the trial trained."""
    from training.distill import timing_device

    assert timing_device(replace(CFG.distill, latency_device="cpu"), "cuda:0") == "cpu"
    assert timing_device(CFG.distill, "cuda:0") == "cuda:0"
    with pytest.raises(ValueError, match=r"latency_device: 'gpu' is not one of \('trial', 'cpu'\)"):
        replace(CFG.distill, latency_device="gpu")


@pytest.mark.parametrize("teacher_mode", ["joint", "separate"])
def test_latencies_time_codebert_in_the_teachers_format_for_the_teachers_speedup(artifacts, monkeypatch,
                                                                                 teacher_mode):
    """Separate students are compared with CodeBERT reading two encodes; a joint teacher with
    CodeBERT reading one joined sequence (half the work: the same ratio would read ~2x). The
    row's p90, threads and sequence length are the student's timing's, at latency_seq_len."""
    import training.distill as distill

    formats, medians = [], {"student": 2.0, "teacher": 20.0}
    two, one = (lambda: "two encodes"), (lambda: "one encode")

    def codebert_calls(*, seq_len, device, num_labels, pairs):
        formats.append(pairs)  # one CodeBERT model per call, however many formats
        return {pair: (two if pair else one) for pair in pairs}

    def timed(calls, **kw):
        assert kw["rounds"] == 4  # the config's latency_rounds
        ms = {name: medians.get(name) or (400.0 if fn is two else 200.0) for name, (fn, _) in calls.items()}
        return {name: {"median_ms": ms[name], "p90_ms": 1.5 * ms[name], "runs": 20, "threads": 3} for name in calls}

    monkeypatch.setattr(distill, "codebert_arch_calls", codebert_calls)
    monkeypatch.setattr(distill, "time_calls", timed)
    student = build_student(Arch(**{k: STUDENT[k] for k in ("layers", "hidden", "heads", "ffn", "vocab")}),
                            teacher_spec("minilm-l6"), 2, "separate", pair_head="cosine")
    cfg = replace(CFG.distill, measure_codebert=True)
    row = distill._latencies(student, 300, replace(artifacts, teacher_pair_mode=teacher_mode), cfg, True, "cpu")
    assert row["speedup_vs_codebert"] == 200.0 and row["speedup_vs_teacher"] == 10.0
    if teacher_mode == "joint":
        assert formats == [(True, False)] and row["teacher_speedup_vs_codebert"] == 10.0
    else:  # the same format: one CodeBERT timing serves both
        assert formats == [(True,)] and row["teacher_speedup_vs_codebert"] == 20.0
    assert row["latency_rounds"] == 4 and row["codebert_latency_ms"] == 400.0
    assert row["latency_p90_ms"] == 3.0 and row["latency_threads"] == 3
    assert row["latency_seq_len"] == cfg.timed_seq_len == 16  # latency_seq_len, not max_seq_len


def test_a_transfer_cap_samples_each_half_in_its_order_unlabeled_first():
    """`distill.max_transfer` took the first N rows: one project's or one label's in a file
    sorted by them. It takes a seeded sample of the unlabeled half, then of the labeled one."""
    from training.distill import labeled_rows, transfer_examples
    from training.finetune import labeled_half

    train = [ClsExample(f"code {i}", f"query {i}", int(i >= 50)) for i in range(100)]  # sorted by label
    data = DataConfig(labeled_fraction=0.5, seed=3)
    labeled, unlabeled = labeled_half(train, data)
    capped = transfer_examples(train, data, DistillConfig(max_transfer=20))
    assert len(capped) == 20 and capped != unlabeled[:20]
    assert capped == [e for e in unlabeled if e in capped]  # a subset, in the half's order
    assert {e.label for e in capped} == {0, 1}
    assert transfer_examples(train, data, DistillConfig(max_transfer=20)) == capped  # seeded
    both = DistillConfig(transfer_set="all", max_transfer=len(unlabeled) + 10)
    every = transfer_examples(train, data, both)
    assert every[:len(unlabeled)] == unlabeled and len(every) == len(unlabeled) + 10
    assert every[len(unlabeled):] == [e for e in labeled if e in every]
    assert labeled_rows(train, data, both) == (len(unlabeled), len(unlabeled) + 10)
    assert transfer_examples(train, data, DistillConfig()) == unlabeled


def _pairs():
    splits = classification_splits(TINY_DATA)
    train = splits["train"]
    tokenizer = train_tokenizer([t for e in train for t in (e.text_a, e.text_b)], 300)
    logits = [[2.0, -2.0] if e.label == 0 else [-2.0, 2.0] for e in train]
    return splits, tokenizer, logits


def test_bilstm_soft_trains_for_bilstm_epochs_not_epochs():
    """D11: distill.bilstm_epochs sets the BiLSTM_soft's epochs (None -> epochs)."""
    splits, tokenizer, logits = _pairs()
    train = splits["train"]
    model = _tiny_pair_model("bilstm", tokenizer)
    seen = []
    cfg = DistillConfig(epochs=3, bilstm_epochs=1, batch_size=8, max_seq_len=32)
    log = distill_model(model, tokenizer, train, logits, train, cfg, device="cpu", mse=True, on_epoch=seen.append)
    assert len(seen) == 1 and log["epochs"] == 1


def test_best_epoch_is_chosen_on_validation_accuracy():
    """D14: each epoch's `valid_accuracy` is the accuracy of the model's predictions on valid
    (not its F1), and the kept weights score the best of them."""
    splits, tokenizer, logits = _pairs()
    train, valid = splits["train"], splits["valid"]
    valid_enc = encode(tokenizer, valid, 32, "separate")
    labels = [e.label for e in valid]
    torch.manual_seed(0)
    model = _tiny_pair_model("student", tokenizer)
    seen = []

    def record(epoch):
        preds = predict_logits(model, valid_enc, tokenizer.pad_token_id, 8).argmax(-1).tolist()
        seen.append((epoch["valid_accuracy"], accuracy(preds, labels)))

    cfg = DistillConfig(epochs=4, batch_size=4, max_seq_len=32, lr=5e-3)
    log = distill_model(model, tokenizer, train, logits, valid, cfg, device="cpu", on_epoch=record)
    assert all(reported == pytest.approx(measured) for reported, measured in seen), seen
    kept = predict_logits(model, valid_enc, tokenizer.pad_token_id, 8).argmax(-1).tolist()
    assert accuracy(kept, labels) == pytest.approx(max(m for _, m in seen)) == pytest.approx(log["best_valid_accuracy"])


@pytest.mark.parametrize("candidate", [STUDENT | {"vocab": 280}, {"kind": "bilstm", "variant": "budget", "target_mb": 0.5}],
                         ids=["student", "bilstm"])
def test_row_sizes_are_in_megabytes_of_fp32_weights(artifacts, tmp_path, candidate):
    """D20/D21: serialized_mb is serialized_bytes / 1e6; a BiLSTM_soft's size_mb is its fp32
    parameters' (4 bytes each), as a student's analytic size is. D31: a student whose vocabulary
    is smaller than the teacher's (300) is timed on its own ids. D35: the saved tokenizer records
    the length the student was trained at."""
    from transformers import AutoTokenizer

    cfg = replace(CFG, distill=replace(CFG.distill, epochs=1, quantize=()))
    row = train_student(candidate, artifacts, cfg, tmp_path / "m")
    assert AutoTokenizer.from_pretrained(row["model_dir"]).model_max_length == cfg.distill.max_seq_len
    assert row["serialized_mb"] == pytest.approx(row["serialized_bytes"] / 1e6)
    assert row["size_mb"] == pytest.approx(row["params"] * 4 / 1e6)


def test_variant_rows_time_at_the_rows_settings_and_retain_against_the_teacher(monkeypatch):
    """D24/D25/D26: the quantize rows are timed at the trial's latency settings (timed_seq_len,
    latency_warmup) and their retention is accuracy / the teacher's accuracy."""
    import training.distill as distill

    splits, tokenizer, _ = _pairs()
    test = splits["test"]
    torch.manual_seed(0)
    model = build_student(Arch(1, 16, 2, 32, 300), teacher_spec("minilm-l6"), 2, "joint",
                          pad_token_id=tokenizer.pad_token_id)
    enc = encode(tokenizer, test, 32, "joint")
    seen = {}

    def fake_latencies(models, **kw):
        seen.update(kw)
        return {v: {"median_ms": 1.0, "p90_ms": 2.0, "runs": 20, "threads": 1} for v in models}

    monkeypatch.setattr(distill, "classifier_latencies", fake_latencies)
    cfg = DistillConfig(max_seq_len=32, latency_seq_len=16, latency_warmup=5, quantize=("int8",))
    rows = distill._variant_rows(model, 300, enc, test, tokenizer.pad_token_id, cfg, False, teacher_acc=0.8)
    assert seen["seq_len"] == 16 and seen["warmup"] == 5
    assert rows[0]["accuracy"] > 0
    for row in rows:
        assert row["retention"] == pytest.approx(row["accuracy"] / 0.8)


def test_teacher_variant_rows_score_at_the_teachers_fine_tuning_length(artifacts, monkeypatch):
    """D33: the teacher's quantize rows encode the test split at finetune.max_seq_len."""
    import training.distill as distill
    from training.distill import teacher_variant_rows

    lengths, real = [], distill.encode
    monkeypatch.setattr(distill, "encode", lambda tok, ex, n, *a: lengths.append(n) or real(tok, ex, n, *a))
    cfg = replace(CFG, distill=replace(CFG.distill, max_seq_len=16))
    monkeypatch.setattr(distill, "_variant_rows", lambda *a, **k: [])
    teacher_variant_rows(artifacts, cfg)
    assert lengths == [CFG.finetune.max_seq_len] != [16]


def test_a_bilstm_step_is_timed_with_its_mse_loss(monkeypatch):
    """D29: bench train-step times a BiLSTM_soft's step with the MSE it distils with."""
    import training.distill as distill

    def refused(*a, **k):
        raise AssertionError("a BiLSTM_soft step took the soft-label loss")

    monkeypatch.setattr(distill, "SoftLabelLoss", refused)
    model = BiLSTMSoft(300, embed=8, hidden=8, dense=8, pair=False)
    distill._distill_step(model, 300, head="sequence", batch=2, seq_len=4, precision="fp32", device="cpu")()
