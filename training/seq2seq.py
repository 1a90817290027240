"""Code-to-text model: a pre-trained encoder + Transformer decoder (CodeXGLUE's Seq2Seq).

As CodeXGLUE `code-to-text/code/model.py`: target tokens are embedded by the encoder's own
embedding module, a post-LN decoder (ReLU, dropout 0.1, `nn.TransformerDecoderLayer`'s
layout) attends to the encoder output, `tanh(dense(h))` feeds an output projection tied to
the encoder's word embeddings; beam search keeps the hypotheses ranked by summed log
probability. Unlike `nn.TransformerDecoder`, each decoder layer caches its self-attention
keys/values and projects the encoder memory for cross-attention once per sequence, so a
decoding step costs one token, not the whole prefix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn

from training.bleu import codexglue_bleu
from training.checks import check_ranges
from training.finetune import (
    DIVERGED_HINT,
    NotCached,
    cache_fields,
    check_precision,
    mixed_precision,
    non_finite_weight,
    optimizer_step,
    pad_right,
    runs_as,
    teacher_identity,
    training_precision,
)
from training.staging import publish, remove_stale, staging_path

# bump when the model, the training recipe or the metrics saved with it change: invalidates
# caches (2: the fine-tuning curve, and train_seconds without its checks; 3: its validation
# pairs a sample across the split's files, `training.data.evaluation_subset`)
SEQ2SEQ_VERSION = 3


@dataclass(frozen=True)
class Seq2SeqConfig:
    decoder_layers: int = 6  # Transformer decoder layers (CodeXGLUE: 6)
    decoder_ffn: int = 2048  # decoder feed-forward width (nn.TransformerDecoderLayer default, as CodeXGLUE)
    dropout: float = 0.1  # decoder dropout (nn.TransformerDecoderLayer default)
    source_len: int = 256  # max source (code) tokens incl. specials (CodeXGLUE)
    target_len: int = 128  # max target (docstring) tokens incl. specials (CodeXGLUE)
    beam: int = 10  # beam size for beam search (CodeXGLUE)
    lr: float = 5e-5  # AdamW learning rate (CodeXGLUE)
    decoder_lr_scale: float = 1.0  # lr multiplier for the freshly initialised decoder (CodeXGLUE: 1)
    weight_decay: float = 0.0  # AdamW weight decay (CodeXGLUE)
    adam_eps: float = 1e-8  # AdamW epsilon (CodeXGLUE)
    max_grad_norm: float = 1.0  # gradient clipping (CodeXGLUE)
    warmup_steps: int = 0  # linear warm-up, then linear decay to 0 (CodeXGLUE: 0 warm-up)
    batch_size: int = 32  # fine-tuning batch size (CodeXGLUE)
    train_steps: int = 8000  # fine-tuning iterations (CodeXGLUE Ruby: 10 epochs x 24927/32 ~ 7800)
    eval_batch_size: int = 32  # generation batch size
    eval_examples: int | None = None  # valid examples scored after fine-tuning; None = all
    seed: int = 0  # decoder init, batch order, dropout
    # Code-to-text sets (CodeSearchNet folders, harvested trees) whose pairs, every split,
    # join the training split; pairs sharing a function or summary with valid/test are dropped.
    train_extra: tuple[str, ...] = ()
    max_train_extra: int | None = None  # cap on the extra pairs (a seeded sample; None = all)
    # training steps (fine-tuning and pruning's repair rounds): "fp32" | "bf16" | "auto" (bf16
    # where native: training.finetune.resolve_precision); generation and scoring stay fp32
    precision: str = "fp32"

    def __post_init__(self) -> None:  # refused when the config is read, not inside a worker
        check_precision(self.precision)
        check_ranges(self, counts=("max_train_extra", "decoder_layers", "decoder_ffn", "beam", "batch_size",
                                   "train_steps", "eval_batch_size", "eval_examples"),
                     positive=("lr", "decoder_lr_scale", "adam_eps", "max_grad_norm"),
                     non_negative=("weight_decay", "warmup_steps"), seeds=("seed",), paths=("train_extra",),
                     token_lengths=("source_len",))
        if self.target_len < 2:  # a start token and at least one generated token
            raise ValueError(f"target_len: must be >= 2, got {self.target_len}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")


class DecoderLayer(nn.Module):
    """Post-LN decoder layer (self-attn, cross-attn, ReLU FFN) with a key/value cache."""

    def __init__(self, width: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.self_q, self.self_k, self.self_v, self.self_out = (nn.Linear(width, width) for _ in range(4))
        self.cross_q, self.cross_k, self.cross_v, self.cross_out = (nn.Linear(width, width) for _ in range(4))
        self.ffn_in, self.ffn_out = nn.Linear(width, ffn), nn.Linear(ffn, width)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(width) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, W) -> (B, h, T, W/h)
        b, t, w = x.shape
        return x.view(b, t, self.heads, w // self.heads).transpose(1, 2)

    @staticmethod
    def _merge(x: torch.Tensor) -> torch.Tensor:  # (B, h, T, dh) -> (B, T, h*dh)
        b, h, t, d = x.shape
        return x.transpose(1, 2).reshape(b, t, h * d)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys/values of the encoder memory (B, S, W): once per sequence."""
        return self._split(self.cross_k(memory)), self._split(self.cross_v(memory))

    def forward(self, x, memory_kv, memory_mask, cache: dict | None = None) -> torch.Tensor:
        """x (B, T, W) new positions; memory_mask (B, 1, 1, S) bool, True = attend.

        cache None: training, causal attention over x. cache dict: incremental decoding,
        x holds the next position only; the dict's "k"/"v" (B, h, T0, dh) grow by one.
        """
        q, k, v = self._split(self.self_q(x)), self._split(self.self_k(x)), self._split(self.self_v(x))
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        p = self.dropout.p if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, is_causal=cache is None, dropout_p=p)
        x = self.norm1(x + self.dropout(self.self_out(self._merge(a))))
        mk, mv = memory_kv
        a = F.scaled_dot_product_attention(self._split(self.cross_q(x)), mk, mv, attn_mask=memory_mask, dropout_p=p)
        x = self.norm2(x + self.dropout(self.cross_out(self._merge(a))))
        return self.norm3(x + self.dropout(self.ffn_out(self.dropout(F.relu(self.ffn_in(x))))))


def position_ids(tokens: torch.Tensor, start: int, padding_idx: int | None) -> torch.Tensor:
    """Positions (B, T) of target tokens that follow `start` earlier ones, as the encoder's own
    embeddings number them: BERT counts from 0; RoBERTa (padding_idx set) from padding_idx + 1,
    its pad tokens at padding_idx. Passed explicitly because transformers renamed the offset
    argument (past_key_values_length, later cache_length)."""
    if padding_idx is None:
        return torch.arange(start, start + tokens.size(1), device=tokens.device).expand_as(tokens)
    real = tokens.ne(padding_idx).long()
    return (real.cumsum(1) + start) * real + padding_idx


class Seq2Seq(nn.Module):
    """Encoder (a transformers BERT/RoBERTa model) + cached Transformer decoder."""

    def __init__(self, encoder: nn.Module, cfg: Seq2SeqConfig, bos_id: int, eos_id: int, pad_id: int):
        super().__init__()
        width, heads = encoder.config.hidden_size, encoder.config.num_attention_heads
        self.encoder = encoder
        self.decoder = nn.ModuleList(
            DecoderLayer(width, heads, cfg.decoder_ffn, cfg.dropout) for _ in range(cfg.decoder_layers)
        )
        self.dense = nn.Linear(width, width)
        embeddings = encoder.get_input_embeddings()
        self.lm_head = nn.Linear(width, embeddings.num_embeddings, bias=False)
        self.lm_head.weight = embeddings.weight  # tied to the encoder's word embeddings
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id

    def _embed(self, tokens: torch.Tensor, start: int) -> torch.Tensor:  # (B, T) -> (B, T, W)
        embeddings = self.encoder.embeddings
        positions = position_ids(tokens, start, getattr(embeddings, "padding_idx", None))
        return embeddings(input_ids=tokens, position_ids=positions)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:  # (..., W) -> (..., V)
        return self.lm_head(torch.tanh(self.dense(h)))

    def start(self, src: torch.Tensor, src_mask: torch.Tensor) -> dict:
        """Decoding state: encode (B, S) once, project the memory for every layer once."""
        memory = self.encoder(input_ids=src, attention_mask=src_mask).last_hidden_state  # (B, S, W)
        return {
            "kv": [layer.memory_kv(memory) for layer in self.decoder],
            "mask": src_mask[:, None, None, :].bool(),  # (B, 1, 1, S)
            "cache": [{} for _ in self.decoder],
            "t": 0,
        }

    def step(self, state: dict, tokens: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (N, V) of the token after `tokens` (N, 1); advances the state."""
        h = self._embed(tokens, state["t"])
        for layer, kv, cache in zip(self.decoder, state["kv"], state["cache"], strict=True):
            h = layer(h, kv, state["mask"], cache)
        state["t"] += 1
        return self._logits(h[:, -1]).float().log_softmax(-1)

    @staticmethod
    def reorder(state: dict, index: torch.Tensor) -> None:
        """Keep rows `index` (N',) of every cached tensor (beam expansion and selection)."""
        state["kv"] = [(k.index_select(0, index), v.index_select(0, index)) for k, v in state["kv"]]
        state["mask"] = state["mask"].index_select(0, index)
        for cache in state["cache"]:
            for key in list(cache):
                cache[key] = cache[key].index_select(0, index)

    def forward(self, src, src_mask, tgt) -> torch.Tensor:
        """Teacher-forced mean cross-entropy of tgt (B, T) = [bos] ... [eos] [pad]*."""
        state = self.start(src, src_mask)
        h = self._embed(tgt[:, :-1], 0)  # (B, T-1, W)
        for layer, kv in zip(self.decoder, state["kv"], strict=True):
            h = layer(h, kv, state["mask"])
        gold = tgt[:, 1:]
        keep = gold != self.pad_id  # project only real target positions: pads cost a V-wide matmul each
        logits = self._logits(h[keep])  # (N, V)
        return F.cross_entropy(logits.float(), gold[keep])

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, src_mask: torch.Tensor, max_len: int, stop: bool = True) -> list[list[int]]:
        """Greedy decoding: generated ids per source (eos and after dropped). stop=False runs
        all max_len - 1 steps (fixed work, for latency measurements)."""
        state = self.start(src, src_mask)
        tokens = torch.full((src.size(0), 1), self.bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
        out = []
        for _ in range(max_len - 1):
            nxt = self.step(state, tokens).argmax(-1)  # (B,)
            nxt = torch.where(done, torch.full_like(nxt, self.eos_id), nxt)
            out.append(nxt)
            done |= nxt == self.eos_id
            tokens = nxt[:, None]
            if stop and bool(done.all()):
                break
        return [_cut(row, self.eos_id) for row in torch.stack(out, 1).tolist()]

    @torch.no_grad()
    def beam_search(self, src: torch.Tensor, src_mask: torch.Tensor, max_len: int, beam: int) -> list[list[int]]:
        """Beam search, hypotheses ranked by summed log-probability with no length penalty, as
        CodeXGLUE's `Beam` ranks them. Not its exact bookkeeping: here a hypothesis ending in
        EOS leaves the beam at once and the beam is refilled with live ones (from the 2*beam
        best continuations), and the search stops when `beam` have finished and none alive can
        beat the best of them (CodeXGLUE's keeps EOS hypotheses in the beam for that step and
        stops once the top one ends in EOS and `beam` have finished), so the chosen output can
        differ on some inputs."""
        b = src.size(0)
        state = self.start(src, src_mask)
        self.reorder(state, torch.arange(b, device=src.device).repeat_interleave(beam))
        tokens = torch.full((b * beam, 1), self.bos_id, dtype=torch.long, device=src.device)
        scores = torch.full((b, beam), -math.inf, device=src.device)
        scores[:, 0] = 0.0  # all beams start identical: expand only the first
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
        for t in range(max_len - 1):
            logp = self.step(state, tokens[:, -1:])  # (b*beam, V)
            vocab = logp.size(-1)
            cand = (scores.view(-1, 1) + logp).view(b, beam * vocab)
            top_s, top_i = cand.topk(2 * beam, dim=1)  # (b, 2*beam)
            rows, new_scores, new_tok = _select_beams(
                top_s.tolist(), top_i.tolist(), vocab, beam, self.eos_id, tokens, finished,
                last=t == max_len - 2,
            )
            index = torch.tensor(rows, device=src.device)
            self.reorder(state, index)
            tokens = torch.cat([tokens[index], torch.tensor(new_tok, device=src.device)[:, None]], 1)
            scores = torch.tensor(new_scores, device=src.device).view(b, beam)
            if all(_beam_done(f, s, beam) for f, s in zip(finished, new_scores[::beam], strict=True)):
                break
        return [max(f, key=lambda x: x[0])[1] if f else [] for f in finished]


def _cut(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids


def _beam_done(finished: list, best_alive: float, beam: int) -> bool:
    # Scores only fall as hypotheses grow, so nothing alive can beat the best finished one.
    return len(finished) >= beam and max(s for s, _ in finished) >= best_alive


def _select_beams(top_s, top_i, vocab, beam, eos, tokens, finished, last):
    """Split the 2*beam best continuations of each source into finished and alive ones."""
    rows, new_scores, new_tok = [], [], []
    for i, (ss, ii) in enumerate(zip(top_s, top_i, strict=True)):
        alive = []
        for s, flat in zip(ss, ii, strict=True):
            row, tok = i * beam + flat // vocab, flat % vocab
            if s == -math.inf:
                continue
            if tok == eos or last:
                ids = tokens[row, 1:].tolist() + ([] if tok == eos else [tok])
                finished[i].append((s, ids))
            elif len(alive) < beam:
                alive.append((s, row, tok))
        while len(alive) < beam:  # pad dead slots: score -inf never wins
            alive.append((-math.inf, i * beam, eos))
        for s, row, tok in alive:
            rows.append(row)
            new_scores.append(s)
            new_tok.append(tok)
    return rows, new_scores, new_tok


# ----------------------------------------------------------------------------- data


def extra_train_pairs(cfg: Seq2SeqConfig, held_out: Sequence, seed: int = 0) -> list:
    """PairTexts of every split of `cfg.train_extra`, minus any sharing a function or a
    summary with `held_out` (those would leak the evaluation); capped by a seeded sample."""
    from training.data import pooled_code_to_text, unseen_sample

    seen = {t for p in held_out for t in (p.source, p.target)}
    extra = [p for path in cfg.train_extra for p in pooled_code_to_text(path)]
    return unseen_sample(extra, lambda p: (p.source, p.target), seen, cfg.max_train_extra, seed)


def training_splits(cfg: Seq2SeqConfig, data) -> dict[str, list]:
    """The task's code-to-text splits, the train split joined by `cfg.train_extra`'s pairs."""
    from training.data import code_to_text_splits

    splits = code_to_text_splits(data)
    if cfg.train_extra:
        splits["train"] = splits["train"] + extra_train_pairs(cfg, splits["valid"] + splits["test"], data.seed)
    return splits


def tokenize_pairs(pairs: Sequence, tokenizer, cfg: Seq2SeqConfig) -> list[tuple[list[int], list[int]]]:
    """(source ids, target ids) per PairText, truncated to source_len / target_len."""
    src = tokenizer([p.source for p in pairs], max_length=cfg.source_len, truncation=True)["input_ids"]
    tgt = tokenizer([p.target for p in pairs], max_length=cfg.target_len, truncation=True)["input_ids"]
    return list(zip(src, tgt, strict=True))


def collate(batch: Sequence[tuple[list[int], list[int]]], pad: int, device="cpu") -> tuple[torch.Tensor, ...]:
    """(src (B, S), src_mask (B, S), tgt (B, T)) padded to the longest in the batch."""
    src, src_mask = pad_right([s for s, _ in batch], pad)
    tgt, _ = pad_right([t for _, t in batch], pad)
    return src.to(device), src_mask.to(device), tgt.to(device)


def batch_stream(examples: Sequence, batch_size: int, seed: int) -> Iterator[list]:
    """Endless shuffled batches (reshuffled every epoch)."""
    rng = random.Random(seed)
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        for i in range(0, len(order) - batch_size + 1 if len(order) >= batch_size else 1, batch_size):
            yield [examples[j] for j in order[i : i + batch_size]]


# ----------------------------------------------------------------------------- training


def make_optimizer(model: Seq2Seq, cfg: Seq2SeqConfig, total_steps: int, lr: float | None = None,
                   warmup_steps: int | None = None):
    """AdamW (encoder at lr, decoder at lr * decoder_lr_scale) + linear warm-up/decay;
    lr and warmup_steps default to cfg's."""
    lr = cfg.lr if lr is None else lr
    warmup = cfg.warmup_steps if warmup_steps is None else warmup_steps
    enc = {id(p) for p in model.encoder.parameters()}
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if id(p) in enc], "lr": lr},
        {"params": [p for p in params if id(p) not in enc], "lr": lr * cfg.decoder_lr_scale},
    ]
    # The fused kernel (same update) is ~9x faster than the foreach one on CPU, where the
    # optimizer step was ~15% of a fine-tuning step; other devices keep the default.
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    opt = torch.optim.AdamW(groups, eps=cfg.adam_eps, weight_decay=cfg.weight_decay, fused=fused or None)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_steps(
    model: Seq2Seq,
    batches: Iterator[list],
    steps: int,
    optimizer,
    scheduler,
    cfg: Seq2SeqConfig,
    *,
    device="cpu",
    after_step: Callable[[int], None] | None = None,
    desc: str = "seq2seq training",
) -> float:
    """Run `steps` optimizer steps; mean training loss. `after_step(i)` (1-based) after each
    (pruning re-applies its masks there, then may evaluate).

    FloatingPointError (naming `desc` and the step) when a loss is not finite, before its
    step, or when a weight is not finite after the last step. Without a gradient scaler one
    such step turns every weight NaN through the clipped gradients; the model would then
    decode empty summaries, score a BLEU near 0 and an NLL the tables store as NULL, and be
    cached or pruned as if it were a bad model rather than a diverged one."""
    model.train()
    total = 0.0
    for i in range(1, steps + 1):
        src, src_mask, tgt = collate(next(batches), model.pad_id, device)
        with mixed_precision(device, cfg.precision):
            loss = model(src, src_mask, tgt)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"{desc}, step {i} of {steps}: loss is {value} ({DIVERGED_HINT})")
        optimizer_step(model, loss, optimizer, cfg.max_grad_norm)
        scheduler.step()
        total += value
        if after_step is not None:
            after_step(i)
            model.train()
    if steps and (bad := non_finite_weight(model)) is not None:  # an infinite gradient with a finite loss
        raise FloatingPointError(f"{desc}, after step {steps}: weight {bad} is not finite ({DIVERGED_HINT})")
    return total / max(1, steps)


@torch.no_grad()
def generate(model: Seq2Seq, tokenizer, examples: Sequence, cfg: Seq2SeqConfig, *, beam: int = 1, device="cpu") -> list[str]:
    """Decoded hypotheses for tokenized examples (greedy when beam == 1)."""
    model.eval()
    out = []
    for i in range(0, len(examples), cfg.eval_batch_size):
        src, src_mask, _ = collate(examples[i : i + cfg.eval_batch_size], model.pad_id, device)
        if beam == 1:
            ids = model.greedy(src, src_mask, cfg.target_len)
        else:
            ids = model.beam_search(src, src_mask, cfg.target_len, beam)
        out += tokenizer.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return out


@torch.no_grad()
def token_nll(model: Seq2Seq, examples: Sequence, cfg: Seq2SeqConfig, *, device="cpu") -> float:
    """Teacher-forced cross-entropy per reference token (nats; exp() is the perplexity) over
    tokenized examples. Unlike BLEU it moves with every change in the model's belief about
    the references, so it ranks compressed models that a weak model's BLEU cannot."""
    model.eval()
    total, tokens = 0.0, 0
    for i in range(0, len(examples), cfg.eval_batch_size):
        src, src_mask, tgt = collate(examples[i : i + cfg.eval_batch_size], model.pad_id, device)
        n = int((tgt[:, 1:] != model.pad_id).sum())
        total += float(model(src, src_mask, tgt)) * n
        tokens += n
    return total / max(1, tokens)


def distinct_fraction(hypotheses: Sequence[str]) -> float:
    """Share of distinct outputs: 1/N when a model writes one summary for every input."""
    return len(set(hypotheses)) / len(hypotheses) if hypotheses else 0.0


def bleu_of(model: Seq2Seq, tokenizer, examples: Sequence, references: Sequence[str], cfg: Seq2SeqConfig, *, beam: int = 1, device="cpu") -> float:
    """CodeXGLUE BLEU of the model's generations against the raw reference strings."""
    return codexglue_bleu(generate(model, tokenizer, examples, cfg, beam=beam, device=device), references)


# ----------------------------------------------------------------------------- artifacts


def build_seq2seq(encoder, tokenizer, cfg: Seq2SeqConfig) -> Seq2Seq:
    """A Seq2Seq around `encoder`, decoder initialised from cfg.seed."""
    torch.manual_seed(cfg.seed)
    return Seq2Seq(encoder, cfg, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)


@dataclass(frozen=True)
class Seq2SeqArtifacts:
    """A fine-tuned code-to-text model on disk (absolute paths; picklable)."""

    model_dir: str  # encoder config.json, tokenizer, pretrained/finetuned .safetensors, meta.json
    key: str  # hash of teacher, data fingerprint, config and SEQ2SEQ_VERSION
    config: Seq2SeqConfig
    data: object  # DataConfig
    teacher: object  # TeacherConfig
    metrics: dict = field(default_factory=dict)  # valid BLEU, loss, seconds of the fine-tuning

    @property
    def pretrained_path(self) -> str:  # state before fine-tuning (pre-trained encoder, fresh decoder)
        return str(Path(self.model_dir) / "pretrained.safetensors")

    @property
    def finetuned_path(self) -> str:
        return str(Path(self.model_dir) / "finetuned.safetensors")


def load_seq2seq(model_dir: str | Path, cfg: Seq2SeqConfig, weights: str | None = "finetuned"):
    """(Seq2Seq, tokenizer) from a model dir; weights "finetuned" | "pretrained" | a path | None."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoder = AutoModel.from_config(AutoConfig.from_pretrained(model_dir))
    model = build_seq2seq(encoder, tokenizer, cfg)
    if weights is not None:
        path = model_dir / f"{weights}.safetensors" if weights in ("finetuned", "pretrained") else Path(weights)
        load_model(model, str(path))
    return model.eval(), tokenizer


# Seq2SeqConfig fields that neither the fine-tuned model nor the metrics stored with it depend
# on: `beam` is read by the pruning and quantization rows' beam BLEU, never by fine_tune (its
# valid BLEU is greedy). Left out of the cache key, so changing them reuses the model.
NOT_IN_KEY = ("beam",)


def artifacts_key(cfg: Seq2SeqConfig, data, teacher) -> str:
    """Hash of what the cached model and its metrics depend on: SEQ2SEQ_VERSION, the config
    (less NOT_IN_KEY), the teacher (`teacher_identity`: a local folder's model files by content,
    a hub id by name), the fingerprint of the data as code-to-text reads it (`code_to_text_view`)
    and the extra data's."""
    from training.data import code_to_text_view, data_fingerprint, extra_fingerprint

    # Only the teacher's model files shape this model (other TeacherConfig fields serve other jobs).
    skip = ("train_extra", "max_train_extra", *NOT_IN_KEY)
    fields = {k: v for k, v in cache_fields(cfg).items() if k not in skip}
    identity = [SEQ2SEQ_VERSION, fields, {"name": teacher_identity(teacher.name)},
                data_fingerprint(code_to_text_view(data))]
    if cfg.train_extra:  # by content, not path; a key without extra data stays what it was
        identity.append(extra_fingerprint(cfg.train_extra, cfg.max_train_extra))
    blob = json.dumps(identity, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def tenths(total: int) -> list[int]:
    """`total` steps cut into at most 10 consecutive chunks of near-equal size (none empty)."""
    parts = min(10, total)
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)] if total else []


def fine_tune(model: Seq2Seq, tokenizer, splits: dict, cfg: Seq2SeqConfig, device="cpu", progress=None) -> dict:
    """Fine-tune on splits["train"]; metrics incl. greedy BLEU on eval_examples of valid
    (`training.data.evaluation_subset`), and `curve`: after each tenth of the steps, one
    record (the job's `epochs` rows):
    epoch (the tenth, 1-10), steps so far, train_loss (the tenth's mean), valid_nll (`token_nll`
    on those valid pairs), seconds since the start, lr (the encoder's). The checks read in eval
    mode and draw no random numbers, so the weights are the same as without them. Also
    precision and emulated (`training.finetune.training_precision`: what the steps ran in).
    progress(message) after each tenth, when given."""
    from training.data import evaluation_subset

    train = tokenize_pairs(splits["train"], tokenizer, cfg)
    valid_pairs = evaluation_subset(splits["valid"], cfg.eval_examples)
    valid = tokenize_pairs(valid_pairs, tokenizer, cfg)
    opt, sched = make_optimizer(model, cfg, cfg.train_steps)
    start = time.perf_counter()
    batches = batch_stream(train, cfg.batch_size, cfg.seed)
    curve, done, loss_sum, train_seconds = [], 0, 0.0, 0.0
    for tenth, steps in enumerate(tenths(cfg.train_steps), 1):
        began = time.perf_counter()
        loss = train_steps(model, batches, steps, opt, sched, cfg, device=device,
                           desc=f"code-to-text fine-tuning, tenth {tenth}")
        train_seconds += time.perf_counter() - began
        done, loss_sum = done + steps, loss_sum + loss * steps
        nll = token_nll(model, valid, cfg, device=device) if valid else float("nan")
        curve.append({"epoch": tenth, "steps": done, "train_loss": loss, "valid_nll": nll,
                      "seconds": time.perf_counter() - start, "lr": sched.get_last_lr()[0]})
        if progress is not None:
            progress(f"seq2seq fine-tuning step {done}/{cfg.train_steps}, {time.perf_counter() - start:.0f} s, "
                     f"loss {loss:.3f}, valid NLL {nll:.3f}")
    bleu = bleu_of(model, tokenizer, valid, [p.target for p in valid_pairs], cfg, device=device)
    return {"train_loss": loss_sum / max(1, done), "train_seconds": train_seconds, "valid_bleu_greedy": bleu,
            "train_examples": len(train), "curve": curve, "device": str(device),
            **training_precision(cfg.precision, device)}


def _diverged_cache(final: Path) -> bool:
    """Whether `final` holds a cached model whose recorded training loss is not finite."""
    meta = final / "meta.json"
    if not meta.exists():
        return False
    loss = json.loads(meta.read_text()).get("metrics", {}).get("train_loss")
    return isinstance(loss, float) and not math.isfinite(loss)


def prepare_seq2seq(cfg: Seq2SeqConfig, data, teacher, work_dir, device: str = "cpu", progress=None,
                    reuse_only: bool = False) -> Seq2SeqArtifacts:
    """Fine-tune the code-to-text model, or reuse the one already under work_dir with the same
    key (teacher, data fingerprint, config). Writes work_dir/seq2seq-KEY atomically.
    progress: optional callable(str) for fine-tuning progress messages. `reuse_only`:
    `training.finetune.NotCached`, naming the folder, where none is cached."""
    from training.models import load_encoder

    resolved = runs_as(cfg, device)  # "auto" keyed and recorded as what it runs in here
    key = artifacts_key(resolved, data, teacher)
    final = Path(work_dir).resolve() / f"seq2seq-{key}"
    remove_stale(final.parent, "seq2seq-*")  # staging folders of fine-tunings that were killed
    if _diverged_cache(final):  # cached before train_steps refused a non-finite loss
        print(f"{final}: its fine-tuning diverged (training loss not finite): fine-tuning again",
              file=sys.stderr, flush=True)
        shutil.rmtree(final)
    if not (final / "meta.json").exists() and reuse_only:
        raise NotCached(f"no fine-tuned code-to-text model cached in {final}")
    if not (final / "meta.json").exists():
        tmp = staging_path(final)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        encoder, tokenizer = load_encoder(teacher.name)
        model = build_seq2seq(encoder, tokenizer, cfg).to(device)
        encoder.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_model(model, str(tmp / "pretrained.safetensors"))
        metrics = fine_tune(model, tokenizer, training_splits(cfg, data), resolved, device, progress)
        save_model(model.cpu(), str(tmp / "finetuned.safetensors"))
        (tmp / "meta.json").write_text(json.dumps({"key": key, "metrics": metrics,
                                                   "config": dataclasses.asdict(resolved)}, indent=1))
        publish(tmp, final, marker="meta.json")  # a concurrent writer that won the race keeps theirs: equivalent
    meta = json.loads((final / "meta.json").read_text())
    return Seq2SeqArtifacts(str(final), key, cfg, data, teacher, meta["metrics"])
