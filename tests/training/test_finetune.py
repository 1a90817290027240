import hashlib
import json
import math
import os
import random
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.training.tiny_teacher import TINY_DATA, tiny_teacher_folder
from training.data import (
    ClsExample,
    classification_splits,
    data_fingerprint,
    split_labeled_unlabeled,
)
from training.distill import DistillConfig
from training.finetune import (
    CODE_SALT,
    FinetuneConfig,
    LoopSettings,
    batch_order,
    cache_fields,
    collate,
    encode,
    finetune_teacher,
    fit,
    num_labels_of,
    resolve_precision,
    teacher_identity,
    teacher_key,
)
from training.models import EMBEDDED_TEACHER, TeacherConfig, embedded_teacher_path

torch.set_num_threads(1)
CFG = FinetuneConfig(epochs=1, batch_size=4, max_seq_len=32, eval_batch_size=8)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return TeacherConfig(name=str(tiny_teacher_folder(tmp_path_factory.mktemp("teacher"))))


def test_finetune_saves_metrics_and_reuses(tmp_path, teacher):
    from training.finetune import NotCached

    with pytest.raises(NotCached, match=f"no fine-tuned teacher cached in {tmp_path.resolve()}/teachers/"):
        finetune_teacher(CFG, TINY_DATA, teacher, tmp_path, reuse_only=True)  # not fine-tuned here
    assert not any((tmp_path / "teachers").glob("*"))
    folder, metrics = finetune_teacher(CFG, TINY_DATA, teacher, tmp_path)
    assert folder.is_absolute() and (folder / "config.json").is_file()
    assert not metrics["reused"] and 0.0 <= metrics["accuracy"] <= 1.0
    train = classification_splits(TINY_DATA)["train"]
    assert metrics["n_labeled"] == len(split_labeled_unlabeled(train, 0.5, 0)[0])
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved["config"]["epochs"] == 1 and saved["key"] == folder.name
    # what its steps ran in, recorded where they ran (the epochs rows of its curve say so)
    assert (saved["precision"], saved["emulated"]) == ("fp32", None)
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    again, metrics2 = finetune_teacher(CFG, TINY_DATA, teacher, tmp_path)
    assert again == folder and metrics2["reused"]
    assert metrics2["accuracy"] == metrics["accuracy"]
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime  # not retrained
    assert finetune_teacher(CFG, TINY_DATA, teacher, tmp_path, reuse_only=True)[0] == folder
    other, _ = finetune_teacher(FinetuneConfig(epochs=1, batch_size=4, max_seq_len=24), TINY_DATA,
                                teacher, tmp_path)
    assert other != folder  # a different config is a different teacher
    # each folder records the length it learnt on, as a student's does: what a shipped scorer
    # (`training.onnx_infer`) truncates to, not the pre-trained tokenizer's 512
    for saved_folder, length in ((folder, 32), (other, 24)):
        tokenizer_config = json.loads((saved_folder / "tokenizer_config.json").read_text())
        assert tokenizer_config["model_max_length"] == length


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


@pytest.mark.parametrize("native, runs_as", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_is_bf16_where_native_else_fp32(teacher, tmp_path, monkeypatch, native, runs_as):
    """"auto" runs, keys and records what this device computes natively: the teacher of the
    explicit precision it resolves to (emulated bf16 ran many times slower than fp32)."""
    import training.finetune

    monkeypatch.setattr(training.finetune, "native_bf16", lambda device_type: native)
    assert resolve_precision("auto", "cpu") == runs_as and resolve_precision("bf16", "cpu") == "bf16"
    seen = set()
    model = torch.nn.Linear(4, 2)
    settings = LoopSettings(epochs=1, lr=1e-2, batch_size=4, warmup_ratio=0.0, weight_decay=0.0,
                            max_grad_norm=1.0, seed=0, precision="auto")
    fit(model, 8, [1] * 8, lambda rows: (seen.add(model(torch.randn(len(rows), 4)).dtype) or
                                         model(torch.randn(len(rows), 4)).float().sum()), lambda: 0.0, settings)
    assert seen == {torch.bfloat16 if native else torch.float32}
    auto = replace(CFG, precision="auto", seed=3)  # a teacher no other test fine-tunes
    _, first = finetune_teacher(auto, TINY_DATA, teacher, tmp_path)
    _, explicit = finetune_teacher(replace(auto, precision=runs_as), TINY_DATA, teacher, tmp_path)
    assert explicit["reused"] and explicit["key"] == first["key"] and first["config"]["precision"] == runs_as


def copy_fresh(folder: Path, to: Path) -> Path:
    """A copy whose files have new times, as a fresh clone or download has."""
    shutil.copytree(folder, to, copy_function=shutil.copy)
    return to


def change_weight(folder: Path) -> None:
    """One weight tensor changed in place (same names, shapes and file size)."""
    tensors = load_file(folder / "model.safetensors")
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def change_config(folder: Path, **fields) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | fields, indent=2))


def test_a_teacher_folder_is_keyed_by_its_model_files_not_its_path(tmp_path, teacher):
    """Weights or config.json replaced in the folder: a new key (not the teacher fine-tuned from
    the old files). The same model files elsewhere, with new times: the same key, as data
    fingerprints leave the path out. Files that are not the model (README.md) do not count."""
    def key_of(folder) -> str:
        return teacher_key(CFG, TINY_DATA, TeacherConfig(name=str(folder)), 2)

    key = teacher_key(CFG, TINY_DATA, teacher, 2)
    copy = copy_fresh(Path(teacher.name), tmp_path / "elsewhere" / "teacher")
    (copy / "README.md").write_text("a model card edit")
    assert key_of(copy) == key
    change_weight(weights := copy_fresh(Path(teacher.name), tmp_path / "weights"))
    change_config(config := copy_fresh(Path(teacher.name), tmp_path / "config"), hidden_dropout_prob=0.2)
    tokens = copy_fresh(Path(teacher.name), tmp_path / "tokenizer")
    vocab = json.loads((tokens / "tokenizer.json").read_text())
    vocab["model"]["vocab"] = {t: i for i, t in enumerate(reversed(list(vocab["model"]["vocab"])))}
    (tokens / "tokenizer.json").write_text(json.dumps(vocab))  # the same model, other token ids
    assert len({key, key_of(weights), key_of(config), key_of(tokens)}) == 4
    assert teacher_identity(EMBEDDED_TEACHER) == teacher_identity(str(embedded_teacher_path()))
    assert teacher_identity(EMBEDDED_TEACHER).startswith("files:")  # the default teacher too


def test_a_hub_teachers_key_is_its_name_as_before():
    hub = TeacherConfig(name="microsoft/codebert-base")
    assert teacher_identity(hub.name) == hub.name
    before = json.dumps({"teacher": hub.name, "teacher_cfg": asdict(hub), "data": data_fingerprint(TINY_DATA),
                         "num_labels": 2, "cfg": cache_fields(CFG), "salt": CODE_SALT}, sort_keys=True)
    assert teacher_key(CFG, TINY_DATA, hub, 2) == hashlib.sha256(before.encode()).hexdigest()[:16]


def test_one_teacher_is_fine_tuned_once_whatever_it_is_called():
    """The preset `codebert-base` is the hub's microsoft/codebert-base: one key, so a GPU
    fine-tuning is not paid twice. `pair_mode` is unused on a single-input task (Devign), so
    it does not change that key; on a pair task it does."""
    hub, preset = TeacherConfig(name="microsoft/codebert-base"), TeacherConfig(name="codebert-base")
    assert teacher_identity(preset.name) == hub.name
    assert teacher_key(CFG, TINY_DATA, preset, 2) == teacher_key(CFG, TINY_DATA, hub, 2)
    bi = replace(hub, pair_mode="separate")
    assert teacher_key(CFG, TINY_DATA, bi, 2, pairs=False) == teacher_key(CFG, TINY_DATA, hub, 2, pairs=False)
    assert teacher_key(CFG, TINY_DATA, bi, 2) != teacher_key(CFG, TINY_DATA, hub, 2)


def test_a_diverged_model_is_never_scored_or_kept():
    """Weights that went NaN (a step whose gradients overflowed): in the first epoch fit fails
    naming the weight, before validation; later, it stops and keeps the best epoch so far."""
    torch.manual_seed(0)
    x = torch.randn(8, 4)
    settings = LoopSettings(epochs=3, lr=1e-3, batch_size=4, warmup_ratio=0.0, weight_decay=0.0,
                            max_grad_norm=1.0, seed=0)

    def run(diverge_from: int):
        model, scored, steps = torch.nn.Linear(4, 2), [], []

        def step_loss(rows):
            steps.append(1)
            loss = model(x[rows]).pow(2).mean()
            # NaN gradients from this epoch's first step on: AdamW writes NaN weights
            return loss * float("nan") if len(steps) > 2 * (diverge_from - 1) else loss

        result = fit(model, 8, [4] * 8, step_loss, lambda: scored.append(1) or len(scored) / 10, settings,
                     desc="diverge")
        return model, result, scored

    with pytest.raises(FloatingPointError, match=r"diverge, epoch 1: weight weight is not finite"):
        run(diverge_from=1)
    model, result, scored = run(diverge_from=3)
    assert (result["best_epoch"], result["diverged_epoch"], len(scored)) == (2, 3, 2)  # epoch 3 never scored
    assert torch.isfinite(model.weight).all()  # epoch 2's weights restored
    _, healthy, _ = run(diverge_from=4)
    assert (healthy["best_epoch"], healthy["diverged_epoch"]) == (3, None)


def test_a_capped_teacher_fine_tunes_on_a_sample_across_the_labeled_half():
    """A file sorted by project (Devign: FFmpeg, then QEMU) made the first max_train one
    project's. The cap takes a seeded sample in the file's order; no cap, or one above the
    count, keeps all; the key of a capped teacher differs from the prefix-taking version's."""
    from training.finetune import capped_labeled

    labeled = [f"ffmpeg-{i}" for i in range(50)] + [f"qemu-{i}" for i in range(50)]
    sample = capped_labeled(labeled, replace(CFG, max_train=10))
    assert len(sample) == 10 and sample == sorted(sample, key=labeled.index)
    assert any(s.startswith("qemu") for s in sample) and any(s.startswith("ffmpeg") for s in sample)
    assert capped_labeled(labeled, replace(CFG, max_train=10)) == sample  # seeded
    assert capped_labeled(labeled, replace(CFG, max_train=10, seed=1)) != sample  # by the run's seed
    assert capped_labeled(labeled, replace(CFG, max_train=None)) == labeled
    assert capped_labeled(labeled, replace(CFG, max_train=1000)) == labeled
    capped = replace(CFG, max_train=10)
    hub = TeacherConfig(name="microsoft/codebert-base")
    prefix_era = json.dumps({"teacher": hub.name, "teacher_cfg": asdict(hub), "data": data_fingerprint(TINY_DATA),
                             "num_labels": 2, "cfg": cache_fields(capped), "salt": CODE_SALT}, sort_keys=True)
    assert teacher_key(capped, TINY_DATA, hub, 2) != hashlib.sha256(prefix_era.encode()).hexdigest()[:16]


def test_a_joint_pair_is_encoded_in_its_order_with_its_segment_ids(teacher):
    """text_a [SEP] text_b, as a user scoring the saved model with tokenizer(a, b) encodes it;
    BERT's segment ids kept (the fixture's tokenizer emits none; MiniLM's does)."""
    from transformers import AutoTokenizer

    tiny = AutoTokenizer.from_pretrained(teacher.name)
    pair = [ClsExample("def add ( a , b )", "Add two numbers.", 1)]
    assert encode(tiny, pair, 32, "joint")["input_ids"][0] == tiny("def add ( a , b )", "Add two numbers.")["input_ids"]
    minilm = AutoTokenizer.from_pretrained(embedded_teacher_path())
    encoded = encode(minilm, pair, 32, "joint")
    assert encoded["token_type_ids"][0] == minilm("def add ( a , b )", "Add two numbers.")["token_type_ids"]
    assert 1 in encoded["token_type_ids"][0]


def test_a_tie_on_validation_keeps_the_earlier_epoch():
    torch.manual_seed(0)
    x, model = torch.randn(8, 4), torch.nn.Linear(4, 2)
    settings = LoopSettings(epochs=3, lr=1e-3, batch_size=4, warmup_ratio=0.0, weight_decay=0.0,
                            max_grad_norm=1.0, seed=0)
    result = fit(model, 8, [4] * 8, lambda rows: model(x[rows]).pow(2).mean(), lambda: 0.5, settings, desc="tie")
    assert result["best_epoch"] == 1


def test_the_label_count_is_the_largest_label_plus_one():
    three = {"train": [ClsExample("a", None, 0), ClsExample("b", None, 2)], "valid": [], "test": []}
    assert num_labels_of(three) == 3
    assert num_labels_of({"train": [ClsExample("a", None, 0)]}) == 2  # a binary task seen with one class


def test_the_best_epoch_is_chosen_on_valid_and_scored_on_test(tmp_path, teacher, monkeypatch):
    from transformers import AutoTokenizer

    import training.finetune as finetune

    scored = []
    predict = finetune.predict_logits
    monkeypatch.setattr(finetune, "predict_logits", lambda model, enc, *a, **k: scored.append(enc["input_ids"])
                        or predict(model, enc, *a, **k))
    finetune_teacher(replace(CFG, epochs=2), TINY_DATA, teacher, tmp_path)
    splits = classification_splits(TINY_DATA)
    tokenizer = AutoTokenizer.from_pretrained(teacher.name)
    valid, test = (encode(tokenizer, splits[s], CFG.max_seq_len)["input_ids"] for s in ("valid", "test"))
    assert valid != test and scored == [valid, valid, test]


def test_a_new_classifier_head_is_drawn_from_the_runs_seed(tmp_path, teacher):
    """A bare encoder (MiniLM, CodeBERT) gets a new head: the same seed gives the same
    fine-tuned teacher whatever the process's random state was."""
    from transformers import AutoModel, AutoTokenizer

    bare = tmp_path / "bare"
    AutoModel.from_pretrained(teacher.name).save_pretrained(bare)
    AutoTokenizer.from_pretrained(teacher.name).save_pretrained(bare)
    weights = []
    for state in (1, 2):
        torch.manual_seed(state)
        folder, _ = finetune_teacher(CFG, TINY_DATA, TeacherConfig(name=str(bare)), tmp_path / f"work{state}")
        weights.append(load_file(folder / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_teacher_folder_cut_short_is_fine_tuned_again(tmp_path, teacher):
    """A folder without metrics.json (a copy cut short) is no finished teacher: replaced."""
    key = teacher_key(CFG, TINY_DATA, teacher, 2)
    partial = tmp_path / "teachers" / key
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")
    folder, metrics = finetune_teacher(CFG, TINY_DATA, teacher, tmp_path)
    assert folder == partial.resolve() and not metrics["reused"] and (folder / "metrics.json").is_file()


def _fit_settings(**kw):
    from training.finetune import LoopSettings
    return LoopSettings(**({"epochs": 2, "lr": 1.0, "batch_size": 4, "warmup_ratio": 0.2, "weight_decay": 0.0,
                            "max_grad_norm": 1.0, "seed": 0} | kw))


def test_linear_warmup_lasts_warmup_ratio_of_the_steps():
    """F01: 20 examples / batch 4 = 5 steps an epoch, 10 in all, 2 of warm-up (0.2): after
    epoch 1 the rate has decayed linearly over 3 of the 8 decay steps."""
    from training.finetune import fit

    model = torch.nn.Linear(2, 2)
    seen = []
    fit(model, 20, [1] * 20, lambda rows: model(torch.ones(len(rows), 2)).sum(), lambda: 0.0,
        _fit_settings(), on_epoch=seen.append)
    assert seen[0]["lr"] == pytest.approx(1.0 * (10 - 5) / (10 - 2))
