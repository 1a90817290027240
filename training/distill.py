"""Knowledge distillation: soft-label loss, teacher-logit cache, student training, and the
job-facing API (`prepare_teacher`, `train_student`) that ray_jobs wraps in Tune trials.

Flow: prepare_teacher fine-tunes (or reuses) the teacher on the labeled half, computes its
logits on the unlabeled half once per (teacher, data) and caches them as Parquet; every
train_student call reads that cache, trains a student with its own BPE vocabulary, scores it
on the test split, measures latency (student, teacher, CodeBERT architecture side by side),
scores and times its quantized variants on the CPU (`DistillConfig.quantize`) and saves it.

Saved students load with `AutoModelForSequenceClassification.from_pretrained(dir)` and
`AutoTokenizer.from_pretrained(dir)`; "separate" pair-mode students carry their model code
(`pair_encoder.py` and an `auto_map` in config.json), so stock transformers loads them with
`from_pretrained(dir, trust_remote_code=True)` (to AutoTokenizer too, which reads config.json
and would otherwise ask; no flag is needed once `training.models` is imported), and they take
`input_ids_b`/`attention_mask_b`; BiLSTM baselines load with
`training.models.BiLSTMSoft.from_pretrained(dir)`. Tokenize with `truncation=True`: the
tokenizer records the length the student was trained and scored at (`model_max_length`),
and transformers only warns about longer inputs (longer than the position table, they fail).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from search import cost
from search.space import Arch, Teacher, teacher_spec
from training.checks import check_distinct, check_ranges
from training.data import (
    ClsExample,
    DataConfig,
    classification_splits,
    code_search_pairs,
    data_fingerprint,
    extra_fingerprint,
    sample_in_order,
    unseen_sample,
)
from training.evaluate import (
    LATENCY_ROUNDS,
    classifier_call,
    classifier_latencies,
    codebert_arch_calls,
    interleaved_latency_ms,
    random_inputs,
    saved_weights_bytes,
    time_calls,
    timing_row,
)
from training.finetune import (
    CODE_SALT,
    FinetuneConfig,
    check_precision,
    collate,
    encode,
    finetune_teacher,
    fit,
    labeled_half,
    lengths_of,
    loop_settings,
    mixed_precision,
    model_fingerprint,
    optimizer_step,
    pad_right,
    predict_logits,
    scores,
    training_precision,
)
from training.models import (
    BiLSTMSoft,
    PairEncoderConfig,
    PairEncoderForSequenceClassification,
    TeacherConfig,
    build_student,
    cost_head,
)
from training.onnx_export import ONNX_VARIANTS
from training.quantize import CLASSIFIER_VARIANTS, classifier_variant_rows
from training.staging import publish, remove_stale, staging_path
from training.tokenizer import MAX_VOCAB, MIN_VOCAB, train_tokenizer

# the label of a transfer row whose gold label the setting does not know (the unlabeled half)
UNKNOWN_LABEL = -100

# how a student computes attention during distillation (`DistillConfig.train_attention`)
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")


@dataclass(frozen=True)
class DistillConfig:
    temperature: float = 2.0  # softmax temperature T of the soft-label loss
    # weight of cross-entropy on the gold labels the setting knows: those of the labeled half's
    # rows of the transfer set (transfer_set: all); the unlabeled half's are not used (paper: 0);
    # the students' loss only: BiLSTM_soft keeps Tang et al.'s MSE on logits
    hard_weight: float = 0.0
    epochs: int = 10  # passes over the transfer set
    lr: float = 5e-4  # AdamW peak learning rate (students start from random weights)
    batch_size: int = 32  # examples per optimiser step
    max_seq_len: int = 128  # student tokens per example (per input in "separate" pair mode)
    warmup_ratio: float = 0.1  # fraction of steps spent warming up the learning rate
    weight_decay: float = 0.01  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping
    pair_mode: str = "joint"  # "joint": one joined sequence | "separate": two encodes, one head
    pair_head: str = "concat"  # separate mode: "concat" ([CLS] vectors, paper) | "cosine" (mean-pooled)
    # students' attention-probability dropout; None = the teacher family's (0.1). On a CPU, 0
    # drops the mask draws and lets torch take its fused attention kernel in fp32 steps
    attention_dropout: float | None = None
    # how students compute attention during distillation (validation included; scoring, timing
    # and saved models keep transformers' default, "sdpa"): "sdpa" | "eager" (matmul + softmax).
    # On the 2-core CPU a bf16 step of the demo's students took 1.15-1.17x less time in "eager"
    # (`python -m ray_jobs bench train-step`, README); unmeasured on GPUs, where sdpa's fused
    # kernels are built for long sequences
    train_attention: str = "sdpa"
    # student (and BiLSTM) vocabularies: "words" = byte-level BPE over identifiers split into
    # lower-case words (code and docstrings share tokens) | "bytes" = plain byte-level BPE
    student_tokenizer: str = "words"
    transfer_set: str = "unlabeled"  # "unlabeled": the paper's half | "all": both halves, teacher logits
    max_transfer: int | None = None  # cap on transfer examples, a seeded sample of each half (None = all)
    # code-search only: more unlabeled data for the transfer set. Code-to-text sets (folders or
    # files, e.g. from `python -m training.harvest`), every split, paired as the task pairs
    # functions and summaries; pairs sharing a function or summary with valid/test are dropped.
    transfer_extra: tuple[str, ...] = ()
    max_transfer_extra: int | None = None  # cap on the extra pairs (a seeded sample; None = all)
    # Pair tasks with a bi-encoder teacher: weight of the in-batch listwise loss (0 = off).
    # Every text_a of a batch is scored against every text_b of it, by the teacher (cached
    # pooled vectors) and by the student; the student matches the teacher's distributions.
    in_batch_weight: float = 0.0
    in_batch_temperature: float = 1.0  # softmax temperature of the in-batch loss (on logit margins)
    bilstm_lr: float = 1e-3  # BiLSTM_soft learning rate (MSE on teacher logits)
    bilstm_epochs: int | None = None  # None -> same as epochs
    bilstm_vocab: int = 5000  # BPE vocabulary of the paper-width BiLSTM_soft
    latency_seq_len: int | None = None  # tokens per input when timing; None -> max_seq_len
    latency_runs: int = 20  # timed runs (median and p90 reported), >= 20
    latency_warmup: int = 3  # untimed warm-up runs
    # blocks each model's timed runs are split into, alternated between the models a row
    # compares (student, teacher, CodeBERT arch; a model's quantized variants); 1 = one model
    # after another, as before 2026-12-05
    latency_rounds: int = LATENCY_ROUNDS
    latency_threads: int | None = None  # torch threads while timing; None -> the worker's setting
    # where student, teacher and CodeBERT arch are timed: "trial" (the device the trial trained
    # on, a GPU where it has one) | "cpu" (the CPU whatever the trial's device: the paper's
    # speed-ups are CPU timings)
    latency_device: str = "trial"
    measure_codebert: bool = True  # also time the CodeBERT-base architecture (random weights)
    eval_batch_size: int = 64  # batch size for validation/test inference
    seed: int = 0  # torch and shuffling seed
    precision: str = "fp32"  # training steps: "fp32" | "bf16" | "auto" (training.finetune.resolve_precision)
    # Post-training variants of each trained model, scored and timed on the CPU beside its
    # fp32 self (quantize table): "int8" (dynamic int8 Linear/LSTM) | "int8_emb" (int8 and
    # int8 embedding tables) | "fp16" | "bf16" (training.quantize.quantize_classifier) |
    # "onnx" | "onnx_int8" (ONNX Runtime, training.onnx_export; a student's folder keeps the
    # graphs its rows scored, model.onnx / model_int8.onnx)
    quantize: tuple[str, ...] = ("int8", "int8_emb")

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"pair_mode": ("joint", "separate"), "pair_head": ("concat", "cosine"),
               "transfer_set": ("unlabeled", "all"), "student_tokenizer": ("words", "bytes"),
               "train_attention": ATTENTION_IMPLEMENTATIONS, "latency_device": ("trial", "cpu")}

    @property
    def timed_seq_len(self) -> int:
        """Tokens per input when timing: latency_seq_len, else max_seq_len."""
        return self.latency_seq_len or self.max_seq_len

    def __post_init__(self) -> None:  # refused when the config is read, not inside a trial
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {allowed}")
        check_precision(self.precision)
        unknown = [v for v in self.quantize if v not in CLASSIFIER_VARIANTS]
        if unknown:
            raise ValueError(f"quantize: {unknown} not among {CLASSIFIER_VARIANTS}")
        check_distinct(self, "quantize")
        check_ranges(self, counts=("epochs", "batch_size", "max_transfer", "max_transfer_extra", "bilstm_epochs",
                                   "latency_seq_len", "eval_batch_size", "latency_rounds"),
                     positive=("lr", "temperature", "bilstm_lr", "max_grad_norm", "in_batch_temperature"),
                     non_negative=("hard_weight", "weight_decay", "latency_warmup", "in_batch_weight"),
                     fractions=("warmup_ratio",), timed_runs=("latency_runs",), seeds=("seed",),
                     paths=("transfer_extra",), token_lengths=("max_seq_len",), threads=("latency_threads",))
        if not MIN_VOCAB <= self.bilstm_vocab <= MAX_VOCAB:
            raise ValueError(f"bilstm_vocab: a byte-level BPE needs >= {MIN_VOCAB} tokens, and at most {MAX_VOCAB:,} "
                             f"are allowed, got {self.bilstm_vocab:,}")
        if self.attention_dropout is not None and not 0 <= self.attention_dropout < 1:
            raise ValueError(f"attention_dropout: must be in [0, 1) or None, got {self.attention_dropout}")
        if self.latency_rounds > self.latency_runs:
            raise ValueError(f"latency_rounds: at most latency_runs ({self.latency_runs}) blocks of timed runs, "
                             f"got {self.latency_rounds}")
        if self.hard_weight and self.transfer_set != "all":  # the unlabeled half's labels are unknown
            raise ValueError("hard_weight: the hard-label term trains on gold labels, and only the labeled "
                             "half has them in this setting: add distill.transfer_set=all (its rows join "
                             "the transfer set and the term uses their labels)")
        if self.in_batch_weight and self.pair_mode != "separate":
            raise ValueError("in_batch_weight: the in-batch loss scores every text_a against every "
                             "text_b of a batch, so it needs pair_mode 'separate'")


@dataclass(frozen=True)
class CompressTrainConfig:
    """The two training sections of a compression job (ray_jobs composes them from YAML)."""

    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


@dataclass(frozen=True)
class TeacherArtifacts:
    """What every student trial needs; picklable, all paths absolute."""

    teacher_dir: str  # fine-tuned teacher (model + tokenizer + metrics.json)
    logits_path: str  # Parquet: text_a, text_b, label, logits (transfer set)
    eval_path: str  # Parquet: split ("valid" | "test"), text_a, text_b, label
    work_dir: str  # caches (student tokenizers)
    teacher: Teacher  # family and dimensions of the teacher (its encoder for a bi-encoder)
    teacher_pair_mode: str  # "joint" | "separate": how the teacher reads a pair
    num_labels: int
    teacher_metrics: dict  # accuracy, f1, best_valid_accuracy, ... of the fine-tuned teacher
    vectors_path: str | None = None  # Parquet: the teacher's unit vectors of each transfer row (in-batch loss)
    # transfer rows [start, stop) from the labeled half: the only gold labels the setting knows
    # (the hard-label term's rows; none unless transfer_set is "all")
    labeled_rows: tuple[int, int] = (0, 0)


class SoftLabelLoss(nn.Module):
    """T^2 * KL(softmax(p/T) || softmax(q/T)), p = teacher logits, q = student logits.

    forward(student_logits (B, C), teacher_logits (B, C), labels (B,) | None) -> scalar.
    Averaged over the batch. With `hard_weight` > 0, adds hard_weight * the sum of CE(q, label)
    over the rows whose label is not UNKNOWN_LABEL, divided by the batch size: each known row
    weighs the same whatever else its batch holds.
    T^2 keeps gradient magnitudes comparable across temperatures (Hinton et al.).
    """

    def __init__(self, temperature: float = 2.0, hard_weight: float = 0.0):
        super().__init__()
        self.temperature = temperature
        self.hard_weight = hard_weight

    def forward(self, student_logits, teacher_logits, labels=None):
        t = self.temperature
        log_q = torch.log_softmax(student_logits / t, dim=-1)  # (B, C)
        log_p = torch.log_softmax(teacher_logits / t, dim=-1)  # (B, C)
        kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()
        loss = t * t * kl
        if self.hard_weight and labels is not None:  # rows of unknown label take no part in it
            ce = nn.functional.cross_entropy(student_logits, labels, ignore_index=UNKNOWN_LABEL, reduction="sum")
            loss = loss + self.hard_weight * ce / len(labels)  # per row of the batch, as the KL term
        return loss


def in_batch_loss(student_scores, teacher_scores, temperature: float = 1.0):
    """Listwise distillation over a batch of pairs: scalar.

    scores (B, B): [i, j] = logit margin (match - no match) of (text_a i, text_b j). For each
    text_a, T^2 * KL(softmax(teacher row / T) || softmax(student row / T)); the same for each
    text_b over the columns; the mean of both directions. The pointwise loss sees one
    text_b per text_a; this one also teaches how the batch's other texts rank against it.
    """
    rowwise = SoftLabelLoss(temperature)  # each row a distribution over the batch
    return (rowwise(student_scores, teacher_scores) + rowwise(student_scores.T, teacher_scores.T)) / 2


def in_batch_terms(model, batch: dict, teacher_margins: torch.Tensor, weight: float, temperature: float,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(pair logits (B, C), weight * in_batch_loss) of a pair model reading a collated batch's
    two sides separately; teacher_margins (B, B) as `in_batch_loss` takes them. Both fp32."""
    u = model.pool(batch["input_ids"], batch["attention_mask"])
    v = model.pool(batch["input_ids_b"], batch["attention_mask_b"])
    # The heads and the losses in fp32 whatever the steps' precision: under bf16 autocast the
    # B x B scores (scale 20 cosines) came out bf16, off by up to ~0.07, and their log_softmax too.
    with torch.autocast(device_type=u.device.type, enabled=False):
        u, v = u.float(), v.float()
        margins, logits = model.pair_margins(u, v), model.pair_logits(u, v)  # (B, B), (B, C)
        return logits, weight * in_batch_loss(margins, teacher_margins.float(), temperature)


@contextmanager
def attention_implementation(model, implementation: str):
    """Run the block with `model`'s attention computed by `implementation` (one of
    ATTENTION_IMPLEMENTATIONS), then restore the model's own. Models without transformers
    attention (BiLSTM_soft) and models already in `implementation` are left as they are.
    RuntimeError when transformers does not switch (it may only warn)."""
    encoder = model.encoder if isinstance(model, PairEncoderForSequenceClassification) else model
    if not hasattr(encoder, "set_attn_implementation") or encoder.config._attn_implementation == implementation:
        yield
        return
    own = encoder.config._attn_implementation
    encoder.set_attn_implementation(implementation)
    try:
        if encoder.config._attn_implementation != implementation:
            raise RuntimeError(f"train_attention: transformers kept {type(encoder).__name__}'s attention "
                               f"{encoder.config._attn_implementation!r}, not {implementation!r}")
        yield
    finally:
        encoder.set_attn_implementation(own)


def _distill_step(model, vocab: int, *, head: str, batch: int, seq_len: int, precision: str, device: str):
    """The step `distill_step_times` describes, on `model` (built with the search head `head`)
    already on `device`, with its own optimizer: a function of no arguments."""
    inputs = random_inputs(vocab, seq_len, pair=cost.reads_pairs(head), device=device, batch=batch)
    gen = torch.Generator().manual_seed(0)
    teacher_logits = torch.randn(batch, 2, generator=gen).to(device)  # (B, 2)
    teacher_margins = torch.randn(batch, batch, generator=gen).to(device)  # (B, B)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    # a BiLSTM_soft learns the logits by MSE (Tang et al.), as `distill_model` trains it
    logit_loss = nn.MSELoss() if isinstance(model, BiLSTMSoft) else SoftLabelLoss(2.0)

    def step():
        with mixed_precision(device, precision):
            if head == "pair_cosine":  # the demo's bi-encoder: its in-batch loss beside the soft labels
                logits, extra = in_batch_terms(model, inputs, teacher_margins, 2.0, 2.0)
            else:  # the soft-label loss alone, as `distill_model` trains these heads without the
                # in-batch loss (codebert-devign.yaml, codebert-bigclone.yaml: a joint teacher)
                logits, extra = model(**inputs).logits.float(), 0.0
            loss = logit_loss(logits, teacher_logits) + extra
        optimizer_step(model, loss, optimizer, 1.0)

    return step


def _step_stats(model, vocab: int, *, head: str, batch: int, seq_len: int, precisions: Sequence[str],
                attentions: Sequence[str | None], device: str, runs: int, warmup: int, threads: int | None,
                rounds: int) -> dict[str, dict]:
    """"attention/precision" -> `latency_ms` stats of `model`'s step, timed against each other
    on one copy of the model per attention (each in its implementation), one optimizer each."""
    with ExitStack() as switched:
        copies = {attention: copy.deepcopy(model).to(device).train() for attention in attentions}
        for attention, twin in copies.items():
            switched.enter_context(attention_implementation(twin, attention))
        steps = {f"{attention}/{precision}": _distill_step(twin, vocab, head=head, batch=batch, seq_len=seq_len,
                                                           precision=precision, device=device)
                 for attention, twin in copies.items() for precision in precisions}
        return interleaved_latency_ms(steps, warmup=warmup, runs=runs, threads=threads, inference=False,
                                      rounds=rounds)


def distill_step_times(models: dict[str, tuple[nn.Module, int]], *, batch: int, seq_len: int,
                       precisions: Sequence[str], attentions: Sequence[str] = ("sdpa",),
                       head: str = "pair_cosine", device: str = "cpu", runs: int = 20, warmup: int = 3,
                       threads: int | None = None, rounds: int = LATENCY_ROUNDS) -> list[dict]:
    """Time one distillation step of every student (name -> (model, vocab size), built with the
    search head `head`: `training.evaluate.head_models(students, teacher, head)`) at every
    training precision and attention implementation. A BiLSTM_soft (reading pairs as the head
    says) is timed at every precision with its MSE loss, under attention None.

    With `pair_cosine` the step is the demo's: both sides of `batch` random pairs of `seq_len`
    tokens encoded under `mixed_precision`, the soft-label loss plus the in-batch loss (weight 2,
    temperature 2) against random teacher scores, backward, clipping and AdamW. With
    `pair_concat` (both sides, one concatenated head) or `sequence` (one input of `seq_len`
    tokens) the loss is the soft-label one alone: `distill_model` adds the in-batch loss only
    with a bi-encoder teacher and `in_batch_weight` > 0, which the paper's settings
    (`codebert-devign.yaml`, `codebert-bigclone.yaml`) do not have. InputError for an unknown
    head. A model's precisions and
    attentions are timed against each other (`interleaved_latency_ms`, `rounds` blocks each;
    one copy of the model per attention). One row each: model, dtype (the precision),
    attention, batch, seq_len, median_ms, p90_ms, pairs_per_s, threads, speedup_vs_fp32 (the
    same model's fp32 median with the same attention over this one's) and speedup_vs_sdpa
    (the same model's sdpa median at the same precision over this one's); None where the
    reference was not timed.
    """
    cost.check_head(head)  # an unknown head would take the single-input step silently
    rows = []
    for name, (model, vocab) in models.items():
        # the copies and optimizers live in the call only: the device is free for the next model
        # no transformers attention to switch (BiLSTM_soft): one copy, under attention None
        timed = (None,) if isinstance(model, BiLSTMSoft) else tuple(attentions)
        stats = _step_stats(model, vocab, head=head, batch=batch, seq_len=seq_len, precisions=precisions,
                            attentions=timed, device=device, runs=runs, warmup=warmup,
                            threads=threads, rounds=rounds)
        rows += [timing_row(name, p, batch, seq_len, stats[f"{a}/{p}"]) | {"attention": a}
                 for a in timed for p in precisions]
    median = {(r["model"], r["dtype"], r["attention"]): r["median_ms"] for r in rows}
    for r in rows:
        fp32 = median.get((r["model"], "fp32", r["attention"]))
        sdpa = median.get((r["model"], r["dtype"], "sdpa"))
        r["speedup_vs_fp32"] = fp32 / r["median_ms"] if fp32 else None
        r["speedup_vs_sdpa"] = sdpa / r["median_ms"] if sdpa else None
    return rows


# ---------------------------------------------------------------- caches


def _write_parquet(table: pa.Table, path: Path) -> None:
    tmp = staging_path(path)
    pq.write_table(table, tmp)
    publish(tmp, path)  # atomic and durable: readers never see half a file


def _examples_table(examples: list[ClsExample], **columns) -> pa.Table:
    return pa.table({"text_a": [e.text_a for e in examples], "text_b": [e.text_b for e in examples],
                     "label": pa.array([e.label for e in examples], pa.int64()), **columns})


def read_examples(path, split: str | None = None) -> tuple[list[ClsExample], list | None]:
    """(examples, logits rows or None) from a cache Parquet file."""
    table = pq.read_table(path)
    if split is not None:
        table = table.filter(pc.equal(table["split"], split))
    cols = table.to_pydict()
    examples = [ClsExample(a, b, int(y)) for a, b, y in zip(cols["text_a"], cols["text_b"], cols["label"],
                                                           strict=True)]
    return examples, cols.get("logits")


def transfer_examples(train: list[ClsExample], data: DataConfig, cfg: DistillConfig) -> list[ClsExample]:
    """The distillation (transfer) set: the unlabeled half, or both halves ("all"): the
    unlabeled half first, then the labeled one (`labeled_rows` says where). A `max_transfer`
    cap takes a seeded sample (`data.seed`) of each half in its order, the unlabeled half's
    first: its first N rows were one project's or one label's in a file sorted by them."""
    labeled, unlabeled = labeled_half(train, data)
    if cfg.transfer_set == "unlabeled":  # validated choice
        labeled = []
    cap = cfg.max_transfer
    if cap is None:
        return unlabeled + labeled
    kept = sample_in_order(unlabeled, cap, data.seed)
    return kept + sample_in_order(labeled, cap - len(kept), data.seed) if cap > len(kept) else kept


def labeled_rows(train: list[ClsExample], data: DataConfig, cfg: DistillConfig) -> tuple[int, int]:
    """Rows [start, stop) of `transfer_examples` that come from the labeled half (the teacher's
    fine-tuning data), whose gold labels the setting knows; (0, 0) when it holds none."""
    if cfg.transfer_set != "all":
        return 0, 0
    _, unlabeled = labeled_half(train, data)
    stop = len(transfer_examples(train, data, cfg))
    return min(len(unlabeled), stop), stop


def extra_transfer_examples(cfg: DistillConfig, held_out: list[ClsExample], seed: int = 0) -> list[ClsExample]:
    """Code-search pairs of `cfg.transfer_extra`, minus any that share a text with `held_out`.

    A function or summary that also occurs in the task's valid/test split would leak the
    evaluation into the transfer set, so such pairs are dropped. Capped by a seeded sample.
    """
    seen = {t for e in held_out for t in (e.text_a, e.text_b) if t}
    extra = [e for i, path in enumerate(cfg.transfer_extra) for e in code_search_pairs(path, seed + 100 * i)]
    return unseen_sample(extra, lambda e: (e.text_a, e.text_b), seen, cfg.max_transfer_extra, seed)


def encode_order(examples: list[ClsExample]) -> list[str]:
    """The distinct texts of `examples`, shortest first (batches of similar lengths pad
    less), ties by the text itself: a set's order changes with PYTHONHASHSEED, and with it
    each batch's padding and so the vectors' last bits, which a BiLSTM_soft amplified into
    1-2 accuracy points between otherwise identical runs."""
    return sorted({t for e in examples for t in (e.text_a, e.text_b)}, key=lambda t: (len(t), t))


@torch.inference_mode()
def _bi_encoder_vectors(model, tokenizer, examples: list[ClsExample], max_len: int, batch_size: int,
                        device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled vectors (N, H) of each example's text_a and text_b; each distinct text encoded
    once (its pairs share texts)."""
    texts = encode_order(examples)
    ids = tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]
    model.eval()
    pooled = []
    for start in tqdm(range(0, len(ids), batch_size), desc="teacher logits", leave=False, mininterval=2.0):
        x, mask = pad_right(ids[start:start + batch_size], tokenizer.pad_token_id)
        pooled.append(model.pool(x.to(device), mask.to(device)).float())
    vectors = torch.cat(pooled)  # (T, H)
    row = {t: i for i, t in enumerate(texts)}
    a = torch.tensor([row[e.text_a] for e in examples], device=vectors.device)
    b = torch.tensor([row[e.text_b] for e in examples], device=vectors.device)
    return vectors[a], vectors[b]


@torch.inference_mode()
def _pair_logits_chunked(model, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.pair_logits(a[i:i + 4096], b[i:i + 4096]).cpu() for i in range(0, len(a), 4096)])


def _vector_column(vectors: torch.Tensor) -> pa.Array:
    flat = pa.array(vectors.float().cpu().numpy().reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def _write_vectors(model, a: torch.Tensor, b: torch.Tensor, path: Path) -> None:
    """Unit vectors of a cosine-head bi-encoder, with its scale and bias as table metadata."""
    if model.config.head != "cosine":
        raise ValueError(f"in_batch_weight: the teacher's pair head is {model.config.head!r}; "
                         "the in-batch loss needs the bi-encoder's cosine head")
    a, b = nn.functional.normalize(a, dim=-1), nn.functional.normalize(b, dim=-1)
    table = pa.table({"vec_a": _vector_column(a), "vec_b": _vector_column(b)})
    meta = {"cos_scale": model.cos_scale.item(), "cos_bias": model.cos_bias.item()}
    _write_parquet(table.replace_schema_metadata({"teacher_head": json.dumps(meta)}), path)


def read_teacher_vectors(path) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(unit vectors of text_a (N, H), of text_b (N, H), scale, bias) from a vectors cache;
    the teacher's logit margin of (a_i, b_j) is scale * a_i . b_j + bias."""
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"teacher_head"])

    def matrix(name):
        column = table[name].combine_chunks()
        return torch.from_numpy(column.flatten().to_numpy().reshape(len(column), column.type.list_size).copy())

    return matrix("vec_a"), matrix("vec_b"), meta["cos_scale"], meta["cos_bias"]


def teacher_logits(teacher_dir, examples: list[ClsExample], cfg: FinetuneConfig, path: Path,
                   device: str = "cpu", pair_mode: str = "joint", vectors_path: Path | None = None) -> Path:
    """Teacher logits on `examples`, computed once and cached as Parquet at `path`; with
    `vectors_path`, also a bi-encoder teacher's unit vectors of each example (ValueError
    for any other teacher)."""
    if path.is_file() and (vectors_path is None or vectors_path.is_file()):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir).to(device)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    if isinstance(model, PairEncoderForSequenceClassification):
        a, b = _bi_encoder_vectors(model, tokenizer, examples, cfg.max_seq_len, cfg.eval_batch_size, device)
        logits = _pair_logits_chunked(model, a, b)
        if vectors_path is not None:
            _write_vectors(model, a, b, vectors_path)
    elif vectors_path is not None:
        raise ValueError("in_batch_weight: the in-batch loss needs a bi-encoder teacher "
                         "(teacher.pair_mode=separate)")
    else:
        enc = encode(tokenizer, examples, cfg.max_seq_len, pair_mode)
        logits = predict_logits(model, enc, tokenizer.pad_token_id, cfg.eval_batch_size, device,
                                desc="teacher logits")  # (N, C)
    if not path.is_file():  # only the vectors were missing: the cached logits stay
        _write_parquet(_examples_table(examples, logits=pa.array(logits.tolist(), pa.list_(pa.float32()))), path)
    return path


def teacher_dims(teacher_dir) -> Teacher:
    """Family and dimensions of a saved teacher (of its encoder when it is a bi-encoder)."""
    config = json.loads((Path(teacher_dir) / "config.json").read_text())
    if config.get("model_type") == PairEncoderConfig.model_type:
        return Teacher.from_hf_config(config["encoder"], name=str(teacher_dir))
    return teacher_spec(str(teacher_dir))


def prepare_teacher(cfg: CompressTrainConfig, data: DataConfig, teacher: TeacherConfig, work_dir,
                    *, device: str = "cpu", reuse_only: bool = False) -> TeacherArtifacts:
    """Fine-tune or reuse the teacher, cache its transfer-set logits and the eval splits.
    `reuse_only`: `finetune_teacher`'s (NotCached rather than fine-tune it again)."""
    work = Path(work_dir).resolve()
    for cache in ("logits", "eval"):  # staging files of cache writers that were killed
        remove_stale(work / cache, "*.parquet")
    teacher_dir, metrics = finetune_teacher(cfg.finetune, data, teacher, work, device=device, reuse_only=reuse_only)
    splits = classification_splits(data)
    transfer = transfer_examples(splits["train"], data, cfg.distill)
    # the fine-tuned weights too, not only the key they were fine-tuned under: a teacher
    # fine-tuned again into its folder (deleted, or on a GPU's non-deterministic kernels) has
    # other logits, and a cache of the old ones beside the new teacher's vectors mixed two teachers
    identity = {"teacher": metrics["key"], "teacher_files": model_fingerprint(Path(teacher_dir)),
                "transfer_set": cfg.distill.transfer_set, "max_transfer": cfg.distill.max_transfer}
    if cfg.distill.max_transfer is not None:  # the cap's sample, not its first N (an uncapped key stays)
        identity["cap_rule"] = "sample_in_order"
    if cfg.distill.transfer_extra:  # the key of a run without extra data stays what it was
        transfer += extra_transfer_examples(cfg.distill, splits["valid"] + splits["test"], data.seed)
        identity["extra"] = extra_fingerprint(cfg.distill.transfer_extra, cfg.distill.max_transfer_extra)
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    vectors_path = None
    if cfg.distill.in_batch_weight:
        if not transfer or transfer[0].text_b is None:
            raise ValueError(f"in_batch_weight: the in-batch loss needs a pair task, not data.task={data.task!r}")
        vectors_path = work / "logits" / f"{key}-vectors.parquet"
    logits_path = teacher_logits(teacher_dir, transfer, cfg.finetune, work / "logits" / f"{key}.parquet",
                                 device, metrics["pair_mode"], vectors_path)
    # CODE_SALT: a change to how splits are built refits the teacher (its key has the salt)
    # and must not leave the students scored on the cached splits of before
    eval_path = work / "eval" / f"{data_fingerprint(data)[:16]}-{CODE_SALT}.parquet"
    if not eval_path.is_file():
        eval_path.parent.mkdir(parents=True, exist_ok=True)
        rows = splits["valid"] + splits["test"]
        names = ["valid"] * len(splits["valid"]) + ["test"] * len(splits["test"])
        _write_parquet(_examples_table(rows, split=names), eval_path)
    return TeacherArtifacts(
        labeled_rows=labeled_rows(splits["train"], data, cfg.distill),
        teacher_dir=str(teacher_dir), logits_path=str(logits_path), eval_path=str(eval_path),
        work_dir=str(work), teacher=teacher_dims(teacher_dir), teacher_pair_mode=metrics["pair_mode"],
        num_labels=int(metrics["num_labels"]), teacher_metrics=metrics,
        vectors_path=str(vectors_path) if vectors_path else None,
    )


# What a compression trial computes for a given config; it joins the compression job's sweep
# id. 2: BiLSTM_soft reads padded batches with oneDNN's LSTM (bf16 under autocast), so the same
# config trains its baselines to other figures (1: packed sequences, the LSTM left in fp32).
# 3: a capped teacher (finetune.max_train) fine-tunes on a seeded sample of the labeled half,
# not its first N, so its students learn from another teacher; a diverged model stops at its
# best epoch (`fit`). 4: under bf16 steps the in-batch loss's teacher targets, the students'
# pair heads and the loss itself are computed in fp32 (the CPU's bf16 autocast rounded them);
# a `max_transfer` cap takes a seeded sample, not the first N rows.
RECIPE = 4


# ---------------------------------------------------------------- student training


def _texts(examples: list[ClsExample]) -> list[str]:
    return [t for e in examples for t in (e.text_a, e.text_b) if t]


def distill_model(model, tokenizer, transfer, logits, valid, cfg: DistillConfig, *, device: str,
                  mse: bool = False, on_epoch=None, desc: str = "distill", teacher_vectors=None,
                  labeled_rows: tuple[int, int] = (0, 0)) -> dict:
    """Train `model` on teacher `logits` (N, C) of `transfer`; best-on-valid weights kept.

    mse=False: SoftLabelLoss (students); mse=True: MSE on logits (BiLSTM_soft, Tang et al.).
    teacher_vectors (`read_teacher_vectors` of `transfer`) with cfg.in_batch_weight > 0 adds
    `in_batch_loss` (the model must read pairs separately: `pool` and `pair_logits`).
    The hard-label term (cfg.hard_weight) sees the gold labels of `labeled_rows` only.
    """
    separate = isinstance(model, PairEncoderForSequenceClassification) or getattr(model, "pair", False)
    pair_mode = "separate" if separate else "joint"
    pad = tokenizer.pad_token_id
    train_enc = encode(tokenizer, transfer, cfg.max_seq_len, pair_mode)
    valid_enc = encode(tokenizer, valid, cfg.max_seq_len, pair_mode)
    targets = torch.tensor(logits, dtype=torch.float32)  # (N, C)
    labels = torch.full((len(transfer),), UNKNOWN_LABEL)  # the unlabeled half's labels are not used
    start, stop = labeled_rows
    if stop > len(transfer):  # a split computed otherwise than the cached transfer set's
        raise ValueError(f"labeled_rows {labeled_rows} beyond the {len(transfer)} transfer rows")
    labels[start:stop] = torch.tensor([e.label for e in transfer[start:stop]], dtype=labels.dtype)
    loss_fn = nn.MSELoss() if mse else SoftLabelLoss(cfg.temperature, cfg.hard_weight)

    in_batch = bool(cfg.in_batch_weight) and teacher_vectors is not None
    if in_batch and pair_mode != "separate":
        raise ValueError("in_batch_weight: the in-batch loss needs a model that reads pairs separately")
    if in_batch:
        vec_a, vec_b, scale, bias = teacher_vectors

    def step_loss(rows):
        batch = collate(train_enc, rows, pad, device)
        if in_batch:
            # the targets in fp32: the vectors live on the CPU, where bf16 autocast (a CPU job's
            # steps) rounded this matmul to bf16, so a student near the teacher chased rounding
            with torch.autocast(device_type="cpu", enabled=False):
                teacher_margins = (scale * vec_a[rows] @ vec_b[rows].T + bias).to(device)  # (B, B)
            out, extra = in_batch_terms(model, batch, teacher_margins, cfg.in_batch_weight,
                                        cfg.in_batch_temperature)
        else:
            out, extra = model(**batch).logits.float(), 0.0
        if mse:
            return loss_fn(out, targets[rows].to(device)) + extra
        return loss_fn(out, targets[rows].to(device), labels[rows].to(device)) + extra

    def validate():
        out = predict_logits(model, valid_enc, pad, cfg.eval_batch_size, device)
        return scores(out, [e.label for e in valid])["accuracy"]

    settings = loop_settings(cfg)
    if mse:
        settings = type(settings)(**asdict(settings) | {"lr": cfg.bilstm_lr,
                                                        "epochs": cfg.bilstm_epochs or cfg.epochs})
    with attention_implementation(model, cfg.train_attention):
        result = fit(model, len(transfer), lengths_of(train_enc), step_loss, validate, settings,
                     desc=desc, on_epoch=on_epoch)
    return result | {"pair_mode": pair_mode}


def _build(candidate: dict, artifacts: TeacherArtifacts, transfer, cfg: DistillConfig):
    """(model, tokenizer, row fields) for a GA candidate or a BiLSTM baseline."""
    kind = candidate.get("kind", "student")
    texts = _texts(transfer)
    cache = Path(artifacts.work_dir) / "tokenizers"
    words = cfg.student_tokenizer == "words"
    pairs = transfer[0].text_b is not None  # pair task: students and BiLSTMs read two inputs
    if kind == "student":
        arch = Arch(*(int(candidate[g]) for g in ("layers", "hidden", "heads", "ffn", "vocab")))
        tokenizer = train_tokenizer(texts, arch.vocab, cache_dir=cache, words=words)
        pair_mode = cfg.pair_mode if pairs else "joint"
        model = build_student(arch, artifacts.teacher, artifacts.num_labels, pair_mode,
                              pad_token_id=tokenizer.pad_token_id, pair_head=cfg.pair_head,
                              attention_dropout=cfg.attention_dropout)
        head = cost_head(pair_mode, cfg.pair_head)
        fields = {"size_mb": cost.size_mb(arch, artifacts.teacher, artifacts.num_labels, head=head),
                  "analytic_params": cost.params(arch, artifacts.teacher, artifacts.num_labels, head=head),
                  "gflops": candidate.get("gflops"),
                  "predicted_ms": candidate.get("predicted_ms"),  # the search's latency model, if any
                  "attention_dropout": _encoder_config(model).attention_probs_dropout_prob,
                  "train_attention": cfg.train_attention}
        return model, tokenizer, fields | dict(zip(("layers", "hidden", "heads", "ffn", "vocab"),
                                                   arch.genes(), strict=True))
    if kind != "bilstm":
        raise ValueError(f"candidate kind must be 'student' or 'bilstm', got {kind!r}")
    variant = candidate.get("variant", "paper")
    vocab = int(candidate.get("vocab", cfg.bilstm_vocab))
    tokenizer = train_tokenizer(texts, vocab, cache_dir=cache, words=words)
    # pair tasks: the paper's siamese pair model
    model = BiLSTMSoft.baseline(variant, vocab, target_mb=candidate.get("target_mb"),
                                num_labels=artifacts.num_labels, pad_id=tokenizer.pad_token_id, pair=pairs)
    n = sum(p.numel() for p in model.parameters())
    fields = {"variant": variant, "vocab": vocab, "hidden": model.config["hidden"],
              "size_mb": n * 4 / 1e6, "analytic_params": n, "gflops": None, "predicted_ms": None}
    return model, tokenizer, fields


def _encoder_config(model):
    """The transformers config of a student's encoder (a pair model wraps one)."""
    return model.encoder.config if isinstance(model, PairEncoderForSequenceClassification) else model.config


def timing_device(cfg: DistillConfig, trial_device: str) -> str:
    """The device a trial's student, teacher and CodeBERT arch are timed on (`latency_device`)."""
    return "cpu" if cfg.latency_device == "cpu" else trial_device


def _latencies(model, vocab: int, artifacts: TeacherArtifacts, cfg: DistillConfig, pair: bool,
               device: str) -> dict:
    """Student, teacher and CodeBERT-architecture latency at the same settings, their timed
    runs alternated (`interleaved_latency_ms`, `cfg.latency_rounds` blocks each). Each model
    reads its own input format; CodeBERT's is the student's (`speedup_vs_codebert`) and, when
    the teacher's differs (a joint teacher, separate students), also timed in the teacher's
    (`teacher_speedup_vs_codebert`: CodeBERT's ms in that format / the teacher's)."""
    seq = cfg.timed_seq_len
    teacher_model = AutoModelForSequenceClassification.from_pretrained(artifacts.teacher_dir)
    # each model is timed on its own input format: `seq` tokens per sequence it encodes
    teacher_pair = artifacts.teacher_pair_mode == "separate"
    calls = {"student": classifier_call(model, vocab, seq_len=seq, pair=pair, device=device),
             "teacher": classifier_call(teacher_model, artifacts.teacher.vocab, seq_len=seq, device=device,
                                        pair=teacher_pair)}
    if cfg.measure_codebert:
        # the same input format as the student (two encodes when it encodes a pair separately)
        # and, when it differs, the teacher's, for the teacher's own speed-up
        codebert = codebert_arch_calls(seq_len=seq, device=device, num_labels=artifacts.num_labels,
                                       pairs=tuple(dict.fromkeys((pair, teacher_pair))))
        calls["codebert"] = (codebert[pair], None)
        if teacher_pair != pair:
            calls["codebert_teacher_format"] = (codebert[teacher_pair], None)
    stats = time_calls(calls, warmup=cfg.latency_warmup, runs=cfg.latency_runs, threads=cfg.latency_threads,
                       rounds=cfg.latency_rounds)
    student, teacher = stats["student"], stats["teacher"]
    row = {"latency_ms": student["median_ms"], "latency_p90_ms": student["p90_ms"],
           "teacher_latency_ms": teacher["median_ms"], "latency_seq_len": seq,
           "latency_threads": student["threads"], "latency_runs": student["runs"],
           "latency_rounds": cfg.latency_rounds,
           "speedup_vs_teacher": teacher["median_ms"] / student["median_ms"]}
    row |= {"codebert_latency_ms": None, "speedup_vs_codebert": None, "teacher_speedup_vs_codebert": None}
    if "codebert" in stats:
        teacher_format = stats.get("codebert_teacher_format", stats["codebert"])
        row |= {"codebert_latency_ms": stats["codebert"]["median_ms"],
                "speedup_vs_codebert": stats["codebert"]["median_ms"] / student["median_ms"],
                "teacher_speedup_vs_codebert": teacher_format["median_ms"] / teacher["median_ms"]}
    return row


def train_student(candidate: dict, artifacts: TeacherArtifacts, cfg: CompressTrainConfig, out_dir, *,
                  device: str = "cpu", progress: Callable[[dict], None] | None = None) -> dict:
    """Distil one candidate, score it on test, time it, save it under `out_dir`; one flat row.

    candidate: a GA dict (layers, hidden, heads, ffn, vocab[, gflops, ...]) or
    {"kind": "bilstm", "variant": "paper" | "budget", "target_mb": float, "vocab": int}.
    progress(dict) is called after each epoch (`training.finetune.fit`'s on_epoch: epoch,
    valid_accuracy, train_loss, steps, seconds, lr, best; and the row's precision and emulated,
    `training.finetune.training_precision`).
    row["quantize"] holds the quantize-table rows of the trained model (`_variant_rows`):
    fp32 and each of cfg.distill.quantize, scored and timed on the CPU; [] when none.
    """
    dcfg = cfg.distill
    torch.manual_seed(dcfg.seed)
    transfer, logits = read_examples(artifacts.logits_path)
    valid, _ = read_examples(artifacts.eval_path, "valid")
    test, _ = read_examples(artifacts.eval_path, "test")
    model, tokenizer, fields = _build(candidate, artifacts, transfer, dcfg)
    model.to(device)
    is_bilstm = isinstance(model, BiLSTMSoft)
    vectors = read_teacher_vectors(artifacts.vectors_path) if artifacts.vectors_path else None
    ran_in = training_precision(dcfg.precision, device)  # on each epoch's row too: its seconds
    on_epoch = (lambda epoch: progress({**epoch, **ran_in})) if progress else None
    log = distill_model(model, tokenizer, transfer, logits, valid, dcfg, device=device, mse=is_bilstm,
                        on_epoch=on_epoch, desc=f"distill {candidate.get('kind', 'student')}",
                        teacher_vectors=vectors, labeled_rows=artifacts.labeled_rows)
    test_enc = encode(tokenizer, test, dcfg.max_seq_len, log["pair_mode"])
    result = scores(predict_logits(model, test_enc, tokenizer.pad_token_id, dcfg.eval_batch_size, device),
                    [e.label for e in test])
    out = Path(out_dir).resolve()
    model.save_pretrained(out)
    tokenizer.model_max_length = dcfg.max_seq_len  # recorded: what a shipped scorer truncates to
    tokenizer.save_pretrained(out)
    teacher_acc = artifacts.teacher_metrics["accuracy"]
    row = {"kind": candidate.get("kind", "student"), "variant": fields.pop("variant", None), **fields,
           "params": sum(p.numel() for p in model.parameters()),
           "serialized_bytes": saved_weights_bytes(out),  # as written
           "accuracy": result["accuracy"], "f1": result["f1"],
           "teacher_accuracy": teacher_acc, "teacher_f1": artifacts.teacher_metrics["f1"],
           "retention": result["accuracy"] / teacher_acc if teacher_acc else None,
           "valid_accuracy": log["best_valid_accuracy"], "best_epoch": log["best_epoch"],
           "epochs": log["epochs"], "diverged_epoch": log.get("diverged_epoch"),
           "train_seconds": log["train_seconds"], "pair_mode": log["pair_mode"],
           "n_transfer": len(transfer), "n_test": len(test), "device": device, "model_dir": str(out),
           "in_batch_weight": dcfg.in_batch_weight if vectors is not None else 0.0,
           **ran_in}  # "auto" resolved; an emulated bf16's train_seconds measure emulation
    row["serialized_mb"] = row["serialized_bytes"] / 1e6
    row["latency_device"] = timing_device(dcfg, device)
    row |= _latencies(model, fields["vocab"], artifacts, dcfg, log["pair_mode"] == "separate",
                      row["latency_device"])
    row["quantize"] = _variant_rows(model, fields["vocab"], test_enc, test, tokenizer.pad_token_id, dcfg,
                                    log["pair_mode"] == "separate", teacher_acc, graph_dir=out)
    return row


def teacher_variant_rows(artifacts: TeacherArtifacts, cfg: CompressTrainConfig) -> list[dict]:
    """quantize-table rows of the fine-tuned teacher: fp32 and each of cfg.distill.quantize,
    scored on the test split and timed on the CPU as the students are (what quantizing the
    teacher alone gives, beside what distillation gives); [] when none."""
    model = AutoModelForSequenceClassification.from_pretrained(artifacts.teacher_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(artifacts.teacher_dir)
    test, _ = read_examples(artifacts.eval_path, "test")
    test_enc = encode(tokenizer, test, cfg.finetune.max_seq_len, artifacts.teacher_pair_mode)
    return _variant_rows(model, artifacts.teacher.vocab, test_enc, test, tokenizer.pad_token_id, cfg.distill,
                         artifacts.teacher_pair_mode == "separate", artifacts.teacher_metrics["accuracy"])


def saved_variant_rows(model: dict, artifacts: TeacherArtifacts, cfg: CompressTrainConfig,
                       variants: Sequence[str]) -> list[dict]:
    """quantize-table rows of a model a trial trained and saved, fp32 and each of `variants`,
    scored and timed as its trial did (`_variant_rows` with cfg.distill's settings, under the
    torch threads the caller set: the trial's); its ONNX graphs are written into its folder
    again. model: {"kind": "teacher"} (the fine-tuned teacher: `teacher_variant_rows`), or a
    `distill` row's kind ("student" | "bilstm"), vocab, pair_mode and teacher_accuracy (its
    retention's denominator, as in its row) with model_dir, the folder it is saved in now."""
    cfg = CompressTrainConfig(finetune=cfg.finetune, distill=replace(cfg.distill, quantize=tuple(variants)))
    if model["kind"] == "teacher":
        return teacher_variant_rows(artifacts, cfg)
    folder = Path(model["model_dir"])
    loaded = (BiLSTMSoft.from_pretrained(folder) if model["kind"] == "bilstm"
              else AutoModelForSequenceClassification.from_pretrained(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    test, _ = read_examples(artifacts.eval_path, "test")
    test_enc = encode(tokenizer, test, cfg.distill.max_seq_len, model["pair_mode"])
    return _variant_rows(loaded, model["vocab"], test_enc, test, tokenizer.pad_token_id, cfg.distill,
                         model["pair_mode"] == "separate", model["teacher_accuracy"], graph_dir=folder)


def _tracing_rows(encoded: dict, pad_id: int) -> dict:
    """The ONNX variants' tracing input: the shortest and the longest test example, so that
    the trace pads one of them (one example when the split holds one)."""
    lengths = lengths_of(encoded)
    rows = sorted({lengths.index(min(lengths)), lengths.index(max(lengths))})
    return collate(encoded, rows, pad_id)


def _variant_rows(model, vocab: int, test_enc: dict, test, pad_id: int, cfg: DistillConfig, pair: bool,
                  teacher_acc: float | None, graph_dir: Path | None = None) -> list[dict]:
    """quantize-table rows of a trained model: fp32 and each of cfg.quantize, on the CPU; the
    ONNX variants' graphs are kept in `graph_dir` (a student's saved folder), if given."""
    if not cfg.quantize:
        return []
    labels = [e.label for e in test]
    kw = dict(seq_len=cfg.timed_seq_len, pair=pair, warmup=cfg.latency_warmup,
              runs=cfg.latency_runs, threads=cfg.latency_threads, rounds=cfg.latency_rounds,
              tolerate=(RuntimeError, NotImplementedError))  # a variant's failure is its row's error
    rows = classifier_variant_rows(
        model, cfg.quantize,
        # dynamic int8 picks its activation scales per call: the batch is part of the figure
        score=lambda q: scores(predict_logits(q, test_enc, pad_id, cfg.eval_batch_size), labels)
        | {"score_batch": cfg.eval_batch_size},
        time=lambda built: classifier_latencies({v: (q, vocab) for v, q in built.items()}, **kw),
        example=_tracing_rows(test_enc, pad_id) if set(cfg.quantize) & set(ONNX_VARIANTS) else None,
        graph_dir=graph_dir)
    for row in rows:
        row["retention"] = row["accuracy"] / teacher_acc if teacher_acc and row.get("accuracy") is not None else None
    return rows
