"""Teacher fine-tuning on the labeled half, plus the batching and training-loop helpers the
distillation loop shares.

A fine-tuned teacher is saved as `work_dir/teachers/<key>/` (model, tokenizer,
metrics.json) where key = hash(teacher identity, data fingerprint, num_labels, FinetuneConfig):
a second call with the same inputs reuses the folder instead of training again. A teacher
held in a local folder (the embedded MiniLM included) is identified by its model files'
contents (`teacher_identity`), a hub id by its name.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from training.checks import check_ranges
from training.data import (
    ClsExample,
    DataConfig,
    classification_splits,
    data_fingerprint,
    file_hash,
    sample_in_order,
    split_labeled_unlabeled,
)
from training.evaluate import accuracy, f1_score
from training.models import TeacherConfig, emulated, load_teacher, native_bf16, resolve_teacher
from training.staging import publish, remove_stale, staging_path

# bump when training semantics or the saved folder change, so stale caches are not reused
# (v2: the folder's tokenizer records the length the teacher was fine-tuned and scored at)
CODE_SALT = "finetune-v2"


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 3  # passes over the labeled half
    lr: float = 5e-5  # AdamW peak learning rate (after linear warm-up, then linear decay)
    batch_size: int = 16  # examples per optimiser step
    max_seq_len: int = 128  # teacher tokens per (joined) example; longer inputs are truncated
    max_train: int | None = None  # cap on labeled examples used, a seeded sample (None = the whole labeled half)
    warmup_ratio: float = 0.1  # fraction of steps spent warming up the learning rate
    weight_decay: float = 0.01  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping
    eval_batch_size: int = 64  # batch size for validation/test/logits inference
    seed: int = 0  # torch and shuffling seed
    precision: str = "fp32"  # training steps: "fp32" | "bf16" | "auto" (mixed precision, see mixed_precision)

    def __post_init__(self) -> None:  # refused when the config is read, not inside a worker
        check_precision(self.precision)
        check_ranges(self, counts=("epochs", "batch_size", "max_train", "eval_batch_size"), token_lengths=("max_seq_len",),
                     positive=("lr", "max_grad_norm"), non_negative=("weight_decay",),
                     fractions=("warmup_ratio",), seeds=("seed",))


# ---------------------------------------------------------------- mixed precision

PRECISIONS = ("fp32", "bf16")  # what a training step runs in
# A setting may also say "auto": bf16 where the device computes it natively, else fp32. On a CPU
# without AVX512-BF16 or AMX, emulated bf16 matmuls ran at 1.2 GFLOP/s against fp32's 79 (one
# core of a 2-core AMD EPYC without AVX-512, 512 x 512, 2026-12-07), a student's step 12.6x slower.
PRECISION_SETTINGS = (*PRECISIONS, "auto")


def check_precision(precision: str) -> None:
    """Refuse a training precision setting other than PRECISION_SETTINGS (ValueError naming the field)."""
    if precision not in PRECISION_SETTINGS:
        raise ValueError(f"precision: {precision!r} is not one of {PRECISION_SETTINGS}")


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """The precision (one of PRECISIONS) a training step on `device` runs in for the setting
    `precision`: "auto" is bf16 where the device computes bf16 natively (`native_bf16`), else
    fp32; "fp32" and "bf16" are themselves (bf16 is emulated where it is not native)."""
    check_precision(precision)
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(torch.device(device).type) else "fp32"


def training_precision(precision: str, device: str | torch.device) -> dict:
    """What a training's steps ran in, recorded with its rows: {"precision": the setting
    resolved on `device` (`resolve_precision`), "emulated": whether that is a bf16 the device
    emulates (`training.models.emulated`: an explicit bf16 on a CPU without its units, whose
    seconds then measure emulation)}. Computed where the steps run: another node may differ."""
    resolved = resolve_precision(precision, device)
    return {"precision": resolved, "emulated": emulated(resolved, torch.device(device).type)}


def runs_as(cfg, device: str | torch.device):
    """`cfg` (a config with a `precision` setting) with the precision its steps run in on
    `device`: an "auto" model is cached, keyed and recorded as that of the explicit bf16 or fp32."""
    return replace(cfg, precision=resolve_precision(cfg.precision, device))


def cache_fields(cfg) -> dict:
    """asdict(cfg) for a cache key: `precision` only when not fp32, so that the key of an
    fp32 run stays what it was before the field existed (its caches are reused)."""
    fields = asdict(cfg)
    if fields.get("precision") == "fp32":
        del fields["precision"]
    return fields


def mixed_precision(device: str | torch.device, precision: str) -> AbstractContextManager:
    """Context for a training step's forward and loss: bf16 autocast, or nothing for fp32.

    `precision` is a setting (`resolve_precision`: "auto" is bf16 or fp32 by the device).
    Under bf16 matmuls run in bfloat16 while weights, gradients and optimizer state stay
    fp32, so no loss scaling is needed (unlike fp16). Losses should be computed on `.float()`
    logits: CPU autocast leaves log_softmax in bf16. On a CPU without native bf16
    instructions an explicit "bf16" is emulated, many times slower than fp32: a warning says so.
    """
    precision = resolve_precision(precision, device)
    device_type = torch.device(device).type
    if precision == "bf16" and not native_bf16(device_type):
        warnings.warn(f"precision bf16: this {device_type} has no native bf16 support; bf16 steps are "
                      "emulated, many times slower than fp32 (precision auto takes fp32 here)", stacklevel=2)
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


# ---------------------------------------------------------------- encoding and batching


def encode(tokenizer, examples: Sequence[ClsExample], max_seq_len: int, pair_mode: str = "joint") -> dict:
    """Token ids (unpadded lists) of examples: keys input_ids[, token_type_ids][, input_ids_b].

    "joint": one sequence `text_a [SEP] text_b` (longest-first truncation to max_seq_len).
    "separate": text_a and text_b encoded independently, each truncated to max_seq_len.
    """
    a = [e.text_a for e in examples]
    b = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
    if pair_mode == "separate" and b is not None:
        enc_a = tokenizer(a, truncation=True, max_length=max_seq_len)
        enc_b = tokenizer(b, truncation=True, max_length=max_seq_len)
        return {"input_ids": enc_a["input_ids"], "input_ids_b": enc_b["input_ids"]}
    enc = tokenizer(a, b, truncation=True, max_length=max_seq_len) if b else tokenizer(
        a, truncation=True, max_length=max_seq_len)
    out = {"input_ids": enc["input_ids"]}
    if "token_type_ids" in enc and any(any(t) for t in enc["token_type_ids"]):
        out["token_type_ids"] = enc["token_type_ids"]
    return out


def batch_order(lengths: Sequence[int], batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """Index batches of similar lengths (less padding). rng=None: sorted, deterministic.

    With an rng, examples are shuffled, sorted by length within chunks of 50 batches, and
    the batches shuffled: random batches that still pad little.
    """
    idx = list(range(len(lengths)))
    if rng is None:
        idx.sort(key=lambda i: lengths[i])
        return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    rng.shuffle(idx)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(idx), chunk):
        part = sorted(idx[start:start + chunk], key=lambda i: lengths[i])
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def pad_right(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, L), mask (B, L)) right-padded to the longest row; the mask is by length
    (pad ids may occur inside a row)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def collate(encoded: dict, rows: Sequence[int], pad_id: int, device: str = "cpu") -> dict:
    """Padded tensors (B, S) for `rows` of `encoded`, with attention masks."""
    out = {}
    for key, suffix in (("input_ids", ""), ("input_ids_b", "_b")):
        if key not in encoded:
            continue
        ids, mask = pad_right([encoded[key][r] for r in rows], pad_id)
        out[key] = ids.to(device)
        out["attention_mask" + suffix] = mask.to(device)
        if key == "input_ids" and "token_type_ids" in encoded:
            types = torch.zeros_like(ids)
            for i, r in enumerate(rows):
                types[i, :len(encoded["token_type_ids"][r])] = torch.tensor(encoded["token_type_ids"][r])
            out["token_type_ids"] = types.to(device)
    return out


def lengths_of(encoded: dict) -> list[int]:
    return [len(s) + len(encoded.get("input_ids_b", [[]] * len(encoded["input_ids"]))[i])
            for i, s in enumerate(encoded["input_ids"])]


@torch.inference_mode()
def predict_logits(model, encoded: dict, pad_id: int, batch_size: int = 64, device: str = "cpu",
                   desc: str | None = None) -> torch.Tensor:
    """Logits (N, num_labels) in the original example order."""
    model.eval()
    n = len(encoded["input_ids"])
    out = [None] * n
    for rows in tqdm(batch_order(lengths_of(encoded), batch_size, None), desc=desc, leave=False,
                     disable=desc is None):
        logits = model(**collate(encoded, rows, pad_id, device)).logits.float().cpu()
        for r, row_logits in zip(rows, logits, strict=True):
            out[r] = row_logits
    return torch.stack(out) if out else torch.zeros((0, 2))


def scores(logits: torch.Tensor, labels: Sequence[int]) -> dict:
    """{"accuracy", "f1"} of argmax predictions."""
    preds = logits.argmax(dim=-1).tolist()
    return {"accuracy": accuracy(preds, labels), "f1": f1_score(preds, labels, logits.shape[-1])}


# ---------------------------------------------------------------- the training loop


@dataclass(frozen=True)
class LoopSettings:
    """Optimisation settings shared by fine-tuning and distillation (copied from configs)."""

    epochs: int
    lr: float
    batch_size: int
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    seed: int
    precision: str = "fp32"


def optimizer_step(model: nn.Module, loss: torch.Tensor, optimizer, max_grad_norm: float) -> None:
    """Backward `loss`, clip the gradients' global norm, step `optimizer`, drop the gradients."""
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


DIVERGED_HINT = "training diverged: lower the learning rate, or train in fp32"


def non_finite_weight(model: nn.Module) -> str | None:
    """The name of the first weight holding a NaN or an infinity (a diverged model), or None
    (a loss that overflowed once under a gradient scaler, which skips that step, leaves the
    weights finite)."""
    return next((name for name, param in model.named_parameters() if not torch.isfinite(param).all()), None)


def fit(
    model: nn.Module,
    n_examples: int,
    lengths: Sequence[int],
    step_loss: Callable[[list[int]], torch.Tensor],
    validate: Callable[[], float],
    settings: LoopSettings,
    *,
    desc: str = "train",
    on_epoch: Callable[[dict], None] | None = None,
) -> dict:
    """AdamW + linear warm-up/decay; validate after each epoch; keep the best weights.

    `step_loss(rows)` returns the loss of a batch of example indices (run under
    `mixed_precision` of settings.precision on the model's device); `validate()` returns
    the validation accuracy. The best-on-validation state is restored into `model` at the
    end. Returns {"best_valid_accuracy", "best_epoch", "epochs", "train_seconds"}.
    on_epoch(dict) after each epoch: epoch, valid_accuracy, train_loss (the epoch's mean),
    steps (so far), seconds (since the start), lr (at the epoch's end), best (a new best:
    the weights kept so far). Weights that go NaN or infinite end the training: the best
    epoch's are restored and `diverged_epoch` names the epoch (None when none diverged);
    FloatingPointError when it is the first.
    """
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    steps_per_epoch = -(-n_examples // settings.batch_size)
    total = max(1, steps_per_epoch * settings.epochs)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "LayerNorm" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr)
    schedule = get_linear_schedule_with_warmup(optimizer, int(settings.warmup_ratio * total), total)
    best, best_epoch, best_state, diverged = -1.0, 0, None, None
    device = next(model.parameters()).device
    start = time.perf_counter()
    bar = tqdm(total=total, desc=desc, leave=False, mininterval=2.0)
    for epoch in range(1, settings.epochs + 1):
        model.train()
        losses = []
        for rows in batch_order(lengths, settings.batch_size, rng):
            with mixed_precision(device, settings.precision):
                loss = step_loss(rows)
            optimizer_step(model, loss, optimizer, settings.max_grad_norm)
            schedule.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
        if (bad := non_finite_weight(model)) is not None:
            # a diverged model is never scored, kept or cached: stop at the best epoch so far,
            # or fail when there is none
            if best_state is None:
                raise FloatingPointError(f"{desc}, epoch {epoch}: weight {bad} is not finite ({DIVERGED_HINT})")
            diverged = epoch
            print(f"{desc}: weight {bad} not finite after epoch {epoch}: training stopped, the weights "
                  f"of epoch {best_epoch} kept", file=sys.stderr, flush=True)
            break
        valid = validate()
        improved = valid > best
        if improved:  # best-on-validation checkpoint, kept in memory
            best, best_epoch = valid, epoch
            best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch({"epoch": epoch, "valid_accuracy": valid, "train_loss": sum(losses) / len(losses),
                      "steps": epoch * steps_per_epoch, "seconds": time.perf_counter() - start,
                      "lr": schedule.get_last_lr()[0], "best": improved})
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return {"best_valid_accuracy": best, "best_epoch": best_epoch, "epochs": settings.epochs,
            "diverged_epoch": diverged, "train_seconds": time.perf_counter() - start}


def loop_settings(cfg) -> LoopSettings:
    """The LoopSettings fields of a FinetuneConfig/DistillConfig."""
    return LoopSettings(**{k: getattr(cfg, k) for k in LoopSettings.__dataclass_fields__})


# ---------------------------------------------------------------- teacher fine-tuning


def num_labels_of(splits: dict[str, list[ClsExample]]) -> int:
    return max(2, 1 + max(e.label for s in splits.values() for e in s))


# The files of a local teacher folder that define the model and tokenizer transformers loads
# from it (top level only: from_pretrained reads nothing below it): config, weights (single or
# sharded, and the shard index), tokenizer files, and modelling code an auto_map may name.
# Everything else is left out, as it changes without changing the model: README.md,
# .gitattributes, sentence-transformers' pooling files (modules.json, 1_Pooling/, ...), Trainer
# state (training_args.bin, optimizer.pt, trainer_state.json), metrics.json, subfolders.
MODEL_FILES = ("config.json", "model*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin",
               "pytorch_model.bin.index.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
               "*.model", "*.py")


def model_fingerprint(folder: Path) -> str:
    """16-hex hash of the names and contents of `folder`'s MODEL_FILES. Neither the folder's
    path nor file times enter it (as `data_fingerprint`): a copy anywhere, a fresh clone on
    another machine, hash the same; a changed weight, config or vocabulary hashes otherwise."""
    digest = hashlib.sha256()
    named = {f.name for f in folder.iterdir() if any(fnmatchcase(f.name, p) for p in MODEL_FILES)}
    for file in sorted(folder / n for n in named | _indexed_shards(folder)):
        if file.is_file():
            digest.update(f"{file.name}\0{file_hash(file)}\n".encode())
    return digest.hexdigest()[:16]


def _indexed_shards(folder: Path) -> set[str]:
    """The weight files the folder's shard indexes name, whatever their names (transformers
    loads `weights-1.safetensors` when the index says so); an unreadable index names none
    (the teacher's loader refuses it)."""
    shards: set[str] = set()
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        try:
            shards |= {str(v) for v in json.loads((folder / index).read_text())["weight_map"].values()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return {s for s in shards if "/" not in s and s not in ("", ".", "..")}


def teacher_identity(name: str) -> str:
    """What names a teacher in cache keys and sweep ids: for a local folder (the embedded MiniLM
    included) "files:" + its `model_fingerprint`, so replacing its weights or config.json in
    place makes a new key; a hub id: itself, and a preset of one its hub id (`codebert-base`
    and `microsoft/codebert-base` are one teacher, fine-tuned once); an unknown name (refused
    later, by the loader): the name itself. Files are hashed once per process (~0.1 s for
    MiniLM's 90 MB)."""
    try:
        location = resolve_teacher(name)
    except ValueError:
        return name
    return f"files:{model_fingerprint(Path(location))}" if Path(location).is_dir() else location


def _cap_rule(cfg: FinetuneConfig) -> dict:
    # a capped teacher took the labeled half's first max_train before 2026-12-06: not reused
    return {"max_train_pick": "sample"} if cfg.max_train is not None else {}


def capped_labeled(labeled: list, cfg: FinetuneConfig) -> list:
    """The labeled examples the teacher fine-tunes on: at most `max_train`, a seeded sample
    across the labeled half in its order (a file sorted by project or label made its first
    N one project's or one label's)."""
    return sample_in_order(labeled, cfg.max_train, cfg.seed)


def teacher_key(cfg: FinetuneConfig, data: DataConfig, teacher: TeacherConfig, num_labels: int,
                pairs: bool = True) -> str:
    """Hash of everything that determines the fine-tuned teacher. The teacher is its
    `teacher_identity` (a folder's contents, not its path); a hub id's key is what it was.
    On a single-input task (`pairs` False) `pair_mode` is not used, so it is keyed as "joint"."""
    name = teacher_identity(teacher.name)
    used = {"name": name, "pair_mode": teacher.pair_mode if pairs else "joint"}
    blob = json.dumps({"teacher": name, "teacher_cfg": asdict(teacher) | used,
                       "data": data_fingerprint(data), "num_labels": num_labels,
                       "cfg": cache_fields(cfg) | _cap_rule(cfg), "salt": CODE_SALT}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def labeled_half(train: list[ClsExample], data: DataConfig) -> tuple[list, list]:
    """(labeled, unlabeled) halves of the train split, as the data config says."""
    return split_labeled_unlabeled(train, data.labeled_fraction, data.seed)


def _train_teacher(model, tokenizer, labeled, splits, cfg: FinetuneConfig, device: str,
                   pair_mode: str = "joint") -> dict:
    """Fine-tune on `labeled`, pick the best epoch on valid, score on test."""
    pad = tokenizer.pad_token_id
    train_enc = encode(tokenizer, labeled, cfg.max_seq_len, pair_mode)
    valid_enc = encode(tokenizer, splits["valid"], cfg.max_seq_len, pair_mode)
    labels = torch.tensor([e.label for e in labeled])
    loss_fn = nn.CrossEntropyLoss()

    def step_loss(rows):
        logits = model(**collate(train_enc, rows, pad, device)).logits.float()
        return loss_fn(logits, labels[rows].to(device))

    def validate():
        logits = predict_logits(model, valid_enc, pad, cfg.eval_batch_size, device)
        return scores(logits, [e.label for e in splits["valid"]])["accuracy"]

    curve: list[dict] = []  # fit's on_epoch records, one per epoch (the job's epochs table)
    log = fit(model, len(labeled), lengths_of(train_enc), step_loss, validate, loop_settings(cfg),
              desc="fine-tune teacher", on_epoch=curve.append)
    test_enc = encode(tokenizer, splits["test"], cfg.max_seq_len, pair_mode)
    test = scores(predict_logits(model, test_enc, pad, cfg.eval_batch_size, device),
                  [e.label for e in splits["test"]])
    return log | {"accuracy": test["accuracy"], "f1": test["f1"], "n_labeled": len(labeled),
                  "n_valid": len(splits["valid"]), "n_test": len(splits["test"]), "curve": curve}


class NotCached(FileNotFoundError):
    """A fine-tuning asked to reuse its cached model only (`reuse_only`: the teacher's,
    the code-to-text model's) found none: fine-tuned again, it would be another model."""


def finetune_teacher(
    cfg: FinetuneConfig, data: DataConfig, teacher: TeacherConfig, work_dir, *, device: str = "cpu",
    reuse_only: bool = False,
) -> tuple[Path, dict]:
    """Fine-tune (or reuse) the teacher; returns (absolute model folder, metrics).

    metrics: accuracy/f1 on the test split, best_valid_accuracy, best_epoch, train_seconds,
    curve (`fit`'s on_epoch record of each epoch), device, precision and emulated
    (`training_precision`; a teacher cached before 2026-12-08 has neither), key, teacher, reused
    (True when an earlier identical run was found). `reuse_only`: NotCached, naming the folder, where
    no earlier run is found (a teacher fine-tuned again is another teacher).
    """
    cfg = runs_as(cfg, device)  # "auto" keyed and recorded as what it runs in here
    splits = classification_splits(data)
    num_labels = num_labels_of(splits)
    pairs = splits["train"][0].text_b is not None  # single-input tasks: always a plain classifier
    key = teacher_key(cfg, data, teacher, num_labels, pairs)
    folder = Path(work_dir).resolve() / "teachers" / key
    remove_stale(folder.parent)  # staging folders of fine-tunings that were killed
    if (folder / "metrics.json").is_file():
        return folder, json.loads((folder / "metrics.json").read_text()) | {"reused": True}
    if reuse_only:
        raise NotCached(f"no fine-tuned teacher cached in {folder}")
    torch.manual_seed(cfg.seed)
    pair_mode = teacher.pair_mode if pairs else "joint"
    model, tokenizer = load_teacher(teacher.name, num_labels=num_labels, pair_mode=pair_mode)
    model.to(device)
    labeled, _ = labeled_half(splits["train"], data)
    labeled = capped_labeled(labeled, cfg)
    metrics = _train_teacher(model, tokenizer, labeled, splits, cfg, device, pair_mode)
    metrics |= {"key": key, "teacher": teacher.name, "num_labels": num_labels, "pair_mode": pair_mode, "device": device,
                "config": asdict(cfg), "data_fingerprint": data_fingerprint(data),
                **training_precision(cfg.precision, device)}
    tmp = staging_path(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    # recorded, as a student's: what a shipped scorer (training.onnx_infer.PairScorer) truncates
    # to (it read the pre-trained tokenizer's 512 tokens, not the 64 the demo's teacher learnt on)
    tokenizer.model_max_length = cfg.max_seq_len
    tokenizer.save_pretrained(tmp)
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    folder.parent.mkdir(parents=True, exist_ok=True)
    publish(tmp, folder, marker="metrics.json")  # another process that finished first keeps its (equivalent) result
    return folder, json.loads((folder / "metrics.json").read_text()) | {"reused": False}
