import json
import math
import os
import random
from dataclasses import replace

import pytest
import torch

from tests.training.tiny_teacher import TINY_DATA, tiny_teacher_folder
from training.data import classification_splits, split_labeled_unlabeled
from training.distill import DistillConfig
from training.finetune import (
    FinetuneConfig,
    LoopSettings,
    batch_order,
    cache_fields,
    collate,
    finetune_teacher,
    fit,
    teacher_key,
)
from training.models import TeacherConfig

torch.set_num_threads(1)
CFG = FinetuneConfig(epochs=1, batch_size=4, max_seq_len=32, eval_batch_size=8)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return TeacherConfig(name=str(tiny_teacher_folder(tmp_path_factory.mktemp("teacher"))))


def test_finetune_saves_metrics_and_reuses(tmp_path, teacher):
    folder, metrics = finetune_teacher(CFG, TINY_DATA, teacher, tmp_path)
    assert folder.is_absolute() and (folder / "config.json").is_file()
    assert not metrics["reused"] and 0.0 <= metrics["accuracy"] <= 1.0
    train = classification_splits(TINY_DATA)["train"]
    assert metrics["n_labeled"] == len(split_labeled_unlabeled(train, 0.5, 0)[0])
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved["config"]["epochs"] == 1 and saved["key"] == folder.name
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    again, metrics2 = finetune_teacher(CFG, TINY_DATA, teacher, tmp_path)
    assert again == folder and metrics2["reused"]
    assert metrics2["accuracy"] == metrics["accuracy"]
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime  # not retrained
    other, _ = finetune_teacher(FinetuneConfig(epochs=1, batch_size=4, max_seq_len=24), TINY_DATA,
                                teacher, tmp_path)
    assert other != folder  # a different config is a different teacher


def test_a_killed_fine_tunings_staging_folder_is_removed(tmp_path, teacher, stale):
    dead = stale.staged(tmp_path / "teachers" / "0123456789abcdef", stale.exited_pid())
    live = stale.staged(tmp_path / "teachers" / "0123456789abcdef", os.getppid())  # another process, alive
    folder, _ = finetune_teacher(CFG, TINY_DATA, teacher, tmp_path)
    assert not dead.exists() and live.exists()
    assert sorted(p.name for p in folder.parent.iterdir()) == sorted([folder.name, live.name])


def test_finetune_changes_the_weights(tmp_path, teacher):
    from transformers import AutoModelForSequenceClassification

    folder, _ = finetune_teacher(FinetuneConfig(epochs=2, batch_size=2, max_seq_len=32, lr=1e-3),
                                 TINY_DATA, teacher, tmp_path)
    before = AutoModelForSequenceClassification.from_pretrained(teacher.name).classifier.weight
    after = AutoModelForSequenceClassification.from_pretrained(folder).classifier.weight
    assert not torch.allclose(before, after)


def test_teacher_fine_tuning_learns_its_labeled_examples(tmp_path, teacher):
    """30 epochs of one-example steps take the training loss from chance (ln 2) to memorised.
    (The folder keeps the best-on-validation epoch: on the fixture's 4 valid pairs, epoch 1.)"""
    cfg = FinetuneConfig(epochs=30, batch_size=1, max_seq_len=32, eval_batch_size=8, lr=1e-2)
    _, metrics = finetune_teacher(cfg, TINY_DATA, teacher, tmp_path)
    losses = [c["train_loss"] for c in metrics["curve"]]
    assert len(losses) == 30 and losses[0] == pytest.approx(math.log(2), abs=0.05)
    assert max(losses[-5:]) < losses[0] / 10


def test_batch_order_covers_every_example_once():
    lengths = [random.Random(i).randrange(1, 50) for i in range(103)]
    for rng in (None, random.Random(0)):
        batches = batch_order(lengths, 8, rng)
        assert sorted(i for b in batches for i in b) == list(range(103))
        assert all(len(b) <= 8 for b in batches)
    sorted_batches = batch_order(lengths, 8, None)
    flat = [lengths[i] for b in sorted_batches for i in b]
    assert flat == sorted(flat)


def test_collate_pads_and_masks():
    enc = {"input_ids": [[0, 5, 2], [0, 2]], "input_ids_b": [[0, 7, 7, 2], [0, 2]]}
    batch = collate(enc, [0, 1], pad_id=1)
    assert batch["input_ids"].tolist() == [[0, 5, 2], [0, 2, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["attention_mask_b"].sum().item() == 6


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_fit_runs_steps_in_the_configured_precision_on_fp32_weights(precision, dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    x, y = torch.randn(64, 8), (torch.arange(64) % 2)
    x[y == 1] += 3.0  # well separated: the loss must fall
    seen, losses = set(), []

    def step_loss(rows):
        logits = model(x[rows])
        seen.add(logits.dtype)
        loss = torch.nn.functional.cross_entropy(logits.float(), y[rows])
        losses.append(loss.item())
        return loss

    settings = LoopSettings(epochs=10, lr=1e-2, batch_size=8, warmup_ratio=0.0, weight_decay=0.0,
                            max_grad_norm=1.0, seed=0, precision=precision)
    fit(model, 64, [1] * 64, step_loss, lambda: 0.0, settings)
    assert seen == {dtype}  # every step's matmuls ran in the configured precision
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert sum(losses[-8:]) < sum(losses[:8]) / 2


def test_precision_is_checked_and_fp32_keeps_the_cache_key(teacher):
    with pytest.raises(ValueError, match="precision: 'fp16'"):
        FinetuneConfig(precision="fp16")  # fp16 training would need loss scaling: not offered
    with pytest.raises(ValueError, match="precision: 'half'"):
        DistillConfig(precision="half")
    assert "precision" not in cache_fields(CFG)  # fp32 teachers cached before the field still match
    assert cache_fields(replace(CFG, precision="bf16"))["precision"] == "bf16"
    assert teacher_key(CFG, TINY_DATA, teacher, 2) != teacher_key(replace(CFG, precision="bf16"),
                                                                  TINY_DATA, teacher, 2)
