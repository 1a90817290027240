"""Lottery-ticket pruning of the code-to-text model (Gu et al.): what is prunable, the four
methods, masks, rounds with rewinding and round selection.

Masks are our own boolean tensors, not `torch.nn.utils.prune`: a pruned entry is written
as an exact 0 in the weight itself and re-zeroed after every optimizer step, so the model
stays a plain module (deep-copyable, quantizable, saved as is) and sparsity is measured by
counting zeros. Rewinding writes `checkpoint * mask` into the surviving weights.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from training.bleu import codexglue_bleu, constant_summary, corpus_bleu
from training.checks import check_choices, check_distinct, check_ranges
from training.data import evaluation_subset
from training.finetune import training_precision
from training.seq2seq import (
    Seq2Seq,
    Seq2SeqArtifacts,
    batch_stream,
    collate,
    distinct_fraction,
    generate,
    load_seq2seq,
    make_optimizer,
    token_nll,
    tokenize_pairs,
    train_steps,
    training_splits,
)
from training.staging import publish, remove_stale, staging_path

METHODS = ("l1-global", "l1-layerwise", "random-global", "random-layerwise")
SCOPES = ("encoder", "decoder", "all")
REWINDS = ("pretrained", "finetuned", "none")
SELECTIONS = ("pick_last", "pick_best", "pick_best_nostop")
SELECT_BY = ("bleu", "nll")
RATE_OF = ("original", "remaining")


@dataclass(frozen=True)
class PruneConfig:
    methods: tuple[str, ...] = METHODS  # criterion-granularity: l1|random x global|layerwise
    scopes: tuple[str, ...] = ("encoder",)  # encoder | decoder | all (paper: encoder)
    rewinds: tuple[str, ...] = ("pretrained", "finetuned")  # rewind target: pretrained | finetuned | none
    selections: tuple[str, ...] = SELECTIONS  # round selection (see run_schedule)
    batch_sizes: tuple[int, ...] = (8, 16)  # fine-tuning batch sizes (paper: 8 and 16)
    rounds: tuple[int, ...] = (9,)  # pruning rounds per schedule (9 x 10% of original -> 90%)
    iterations_per_round: int = 3000  # fine-tuning iterations per round (paper: 3000)
    rate: float = 0.1  # fraction pruned per round
    rate_of: str = "original"  # "original": round r is r*rate sparse; "remaining": 1-(1-rate)^r
    eval_every: int = 100  # iterations between validation checks (paper: 100)
    # what the checks measure on the validation subset: "bleu" (greedy BLEU, the paper's) or
    # "nll" (teacher-forced NLL per reference token, lower is better: for a model whose BLEU
    # sits at the constant-summary floor, where BLEU checks only pick noise)
    select_by: str = "bleu"
    valid_subset: int = 200  # fixed validation examples for selection and the row's valid BLEU
    test_subset: int | None = None  # test examples for the row's test BLEU; None = all
    beam: int | None = None  # beam size of the row's beam BLEU; None = the seq2seq config's
    lr: float | None = None  # fine-tuning lr per round; None = the seq2seq config's
    # linear warm-up steps of each round (then linear decay to 0 at the round's end); the
    # seq2seq warm-up is not reused: it may exceed a short round (CodeXGLUE: 0)
    warmup_steps: int = 0
    latency_runs: int = 20  # timed generations (batch 1, target_len - 1 greedy steps)
    latency_threads: int | None = 1  # torch threads while timing; None = current setting
    seed: int = 0  # random pruning and batch order

    def __post_init__(self) -> None:  # refused when the config is read, not inside a trial
        _check(self.select_by in SELECT_BY, f"select_by: {self.select_by!r} not in {SELECT_BY}")
        check_choices(self, methods=METHODS, scopes=SCOPES, rewinds=REWINDS, selections=SELECTIONS,
                      rate_of=RATE_OF)
        check_distinct(self, "batch_sizes", "rounds")
        _check(len(self.rounds) > 0, "rounds: must not be empty")  # before the rate check's max()
        check_ranges(self, counts=("batch_sizes", "rounds", "iterations_per_round", "eval_every",
                                   "valid_subset", "test_subset", "beam"),
                     positive=("lr",), non_negative=("warmup_steps",), timed_runs=("latency_runs",),
                     seeds=("seed",), threads=("latency_threads",))
        _check(0 < self.rate < 1, f"rate: must be in (0, 1), got {self.rate}")
        if self.rate_of == "original":  # round r removes r * rate of the original weights
            _check(self.rate * max(self.rounds, default=0) < 1,
                   f"rate: {self.rate} x {max(self.rounds)} rounds prunes every weight (rate_of original)")


# What a schedule's rounds compute for a given config; it joins the pruning job's sweep id.
# 2: rewinding restores the whole model, and repairs zero the pruned entries' gradients (1:
# only the pruned matrices were rewound; their gradients reached clipping and AdamW).
# 3: valid and test subsets are seeded samples across the split's files, not its first pairs.
# 4: a round's masks and batch order are seeded from the round and prune.seed, not the
# schedule's name as well: the schedules of a sweep are paired (see _seed).
# 5: dropout is seeded per round too (it carried over from the previous round's repair, whose
# early stop differs between schedules).
RECIPE = 5


# ----------------------------------------------------------------------------- masks


def prunable_weights(model: Seq2Seq, scope: str = "encoder") -> dict[str, nn.Parameter]:
    """Weights of the Linear layers pruning may touch, by parameter name.

    encoder: attention query/key/value, attention output dense, intermediate dense and
    output dense of every encoder layer (pooler, embeddings, biases, LayerNorms kept);
    decoder: every Linear of the decoder layers (not the tied output projection);
    all: both.
    """
    return {f"{name}.weight": module.weight for name, module in prunable_linears(model, scope).items()
            if isinstance(module, nn.Linear)}


def prunable_linears(model: nn.Module, scope: str = "encoder") -> dict[str, nn.Module]:
    """The Linear modules of `prunable_weights`, by module name, also where quantization
    replaced them (a dynamic int8 Linear is no nn.Linear)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    roots = {"encoder": ("encoder.encoder.",), "decoder": ("decoder.",),
             "all": ("encoder.encoder.", "decoder.")}[scope]
    return {name: module for name, module in model.named_modules()
            if name.startswith(roots) and (isinstance(module, nn.Linear) or type(module).__name__ == "Linear")}


def nominal_sparsity(round_: int, rate: float, rate_of: str) -> float:
    """Target fraction of the prunable set that is zero after `round_` rounds."""
    if rate_of == "original":
        return min(1.0, round_ * rate)
    if rate_of == "remaining":
        return 1.0 - (1.0 - rate) ** round_
    raise ValueError(f"rate_of must be 'original' or 'remaining', got {rate_of!r}")


def _scores(w: torch.Tensor, mask: torch.Tensor, criterion: str, gen: torch.Generator) -> torch.Tensor:
    """Keep-priority per entry; entries already pruned score -1 (below every survivor)."""
    if criterion == "l1":
        s = w.detach().abs().float()
    elif criterion == "random":
        s = torch.rand(w.shape, generator=gen)
    else:
        raise ValueError(f"criterion must be l1 or random, got {criterion!r}")
    return torch.where(mask, s.cpu(), torch.full_like(s.cpu(), -1.0))


def _lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices of the k lowest scores (exactly k, ties broken by topk)."""
    return torch.topk(scores.flatten(), k, largest=False).indices if k > 0 else torch.empty(0, dtype=torch.long)


def compute_masks(
    weights: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    sparsity: float,
    method: str,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """New masks (bool, True = keep) with exactly round(sparsity * n) entries pruned, nested
    in the old masks. method "l1|random-global|layerwise": global ranks the whole set under
    one threshold; layerwise prunes the same fraction of every matrix."""
    criterion, granularity = method.split("-")
    gen = torch.Generator().manual_seed(seed)
    scores = {n: _scores(w, masks[n], criterion, gen) for n, w in weights.items()}
    new = {n: torch.ones(w.shape, dtype=torch.bool) for n, w in weights.items()}
    if granularity == "global":
        flat = torch.cat([s.flatten() for s in scores.values()])
        drop = _lowest(flat, round(sparsity * flat.numel()))
        keep = torch.ones(flat.numel(), dtype=torch.bool)
        keep[drop] = False
        offset = 0
        for n, s in scores.items():
            new[n] = keep[offset : offset + s.numel()].view(s.shape)
            offset += s.numel()
    elif granularity == "layerwise":
        for n, s in scores.items():
            new[n].view(-1)[_lowest(s, round(sparsity * s.numel()))] = False
    else:
        raise ValueError(f"granularity must be global or layerwise, got {method!r}")
    return new


@torch.no_grad()
def apply_masks(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> None:
    """Write exact zeros where masks are False."""
    for n, w in weights.items():
        w.masked_fill_(~masks[n].to(w.device), 0.0)


@torch.no_grad()
def rewind(model: nn.Module, weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
           checkpoint: str | Path) -> None:
    """The whole model takes the checkpoint's values (a safetensors state file), as lottery
    tickets are rewound: the prunable set's survivors, and every tensor outside the set
    (biases, LayerNorms, embeddings, the unpruned side); pruned entries stay 0."""
    load_model(model, str(checkpoint))  # copies into the parameters where they are (device, dtype)
    apply_masks(weights, masks)


@contextmanager
def masked_gradients(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]):
    """Inside: each prunable weight's gradient is zero at its pruned entries, so gradient
    clipping measures the survivors' norm only and AdamW's moments of pruned entries stay 0
    (`apply_masks` after each step still writes the zeros)."""
    def zero_pruned(keep: torch.Tensor):
        return lambda grad: grad * keep

    hooks = [w.register_hook(zero_pruned(masks[n].to(w.device))) for n, w in weights.items()]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def prunable_sizes(scope: str, *, layers: int, hidden: int, ffn: int, decoder_layers: int,
                   decoder_ffn: int) -> list[int]:
    """The entry counts of `prunable_weights(model, scope)`'s matrices, from the dimensions
    alone (the job checks its schedules with them before fine-tuning anything)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    encoder = [hidden * hidden] * 4 + [hidden * ffn] * 2  # query, key, value, output; intermediate, output
    decoder = [hidden * hidden] * 8 + [hidden * decoder_ffn] * 2  # self and cross attention; ffn
    parts = {"encoder": encoder * layers, "decoder": decoder * decoder_layers}
    return parts["encoder"] + parts["decoder"] if scope == "all" else parts[scope]


def check_prunes_some_but_not_all(sizes: Sequence[int], rounds: int, rate: float, rate_of: str,
                                  method: str) -> None:
    """ValueError when round 1 would prune no weight of the prunable matrices of these
    `sizes` (a rate too small for them) or the last round every weight of the set (global)
    or of a matrix (layerwise): `rate_of: remaining` never reaches 1 in theory, but counts
    are rounded."""
    pooled = method.endswith("-global")  # one threshold over the set, else one per matrix (`compute_masks`)
    pools, unit = ([sum(sizes)], "set") if pooled else (list(sizes), "matrix")
    first, last = nominal_sparsity(1, rate, rate_of), nominal_sparsity(rounds, rate, rate_of)
    if rounds >= 1 and max(round(first * n) for n in pools) == 0:
        raise ValueError(f"rate: {rate} prunes no weight in round 1 ({min(pools):,} weights per {unit})")
    full = [n for n in pools if round(last * n) >= n]
    if full:
        raise ValueError(f"rate: {rate} x {rounds} rounds (rate_of {rate_of}) prunes every weight of a "
                         f"{unit} of {full[0]:,} by the last round")


def measured_sparsity(tensors) -> float:
    """Fraction of exact zeros over the given tensors."""
    tensors = list(tensors)
    zeros = sum(int((t == 0).sum()) for t in tensors)
    return zeros / max(1, sum(t.numel() for t in tensors))


def sparse_size_bytes(dense: int, weights: dict[str, torch.Tensor]) -> int:
    """Size with the prunable matrices stored sparse: a 1-bit keep mask plus the nonzero
    values at their dtype; every other tensor dense (`dense`: the model's safetensors bytes)."""
    for w in weights.values():
        nnz = int((w != 0).sum())
        dense += nnz * w.element_size() + math.ceil(w.numel() / 8) - w.numel() * w.element_size()
    return dense


# ----------------------------------------------------------------------------- schedules


def schedules(cfg: PruneConfig) -> list[dict]:
    """The grid: one dict per method x scope x rewind x selection x batch size x rounds."""
    out = []
    for m, sc, rw, sel, bs, r in itertools.product(
        cfg.methods, cfg.scopes, cfg.rewinds, cfg.selections, cfg.batch_sizes, cfg.rounds
    ):
        sid = f"{m}_{sc}_{rw}_{sel}_b{bs}_r{r}"
        out.append({"schedule": sid, "method": m, "scope": sc, "rewind": rw, "selection": sel, "batch_size": bs, "rounds": r})
    return out


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _seed(purpose: str, round_: int, base: int) -> int:
    """A round's seed for `purpose` (masks: random scores; batches: the repair's batch order;
    dropout: torch's generator during the repair) from the round and the config's seed alone.
    The schedules of one sweep share them (common random numbers), so L1 and random, or two
    rewinds, differ by their rule and not by the batches or dropout masks their repairs drew,
    and a schedule of 3 rounds repeats one of 2 rounds before its third."""
    digest = hashlib.sha256(f"{purpose}:{round_}:{base}".encode()).hexdigest()
    return int(digest[:12], 16)


# ----------------------------------------------------------------------------- rounds


@dataclass
class _Context:
    """Everything a round needs, loaded once per schedule."""

    model: Seq2Seq
    tokenizer: object
    weights: dict
    train: list
    valid: list
    valid_refs: list
    test: list
    test_refs: list
    s2s: object  # Seq2SeqConfig
    device: str
    # test BLEU of the best input-independent summary (chosen on training data): BLEU's floor
    constant_bleu: float
    dense: Seq2Seq | None = None  # the fine-tuned model, unpruned: each round is timed against it


def _context(artifacts: Seq2SeqArtifacts, cfg: PruneConfig, scope: str, device: str) -> _Context:
    model, tok = load_seq2seq(artifacts.model_dir, artifacts.config)
    model.to(device)
    splits = training_splits(artifacts.config, artifacts.data)  # repairs train on what fine-tuning saw
    valid = evaluation_subset(splits["valid"], cfg.valid_subset)
    test = evaluation_subset(splits["test"], cfg.test_subset)
    s2s = artifacts.config
    test_refs = [p.target for p in test]
    constant = constant_summary([p.target for p in splits["train"]])
    return _Context(
        model, tok, prunable_weights(model, scope), tokenize_pairs(splits["train"], tok, s2s),
        tokenize_pairs(valid, tok, s2s), [p.target for p in valid],
        tokenize_pairs(test, tok, s2s), test_refs, s2s, device,
        codexglue_bleu([constant] * len(test_refs), test_refs), copy.deepcopy(model).eval(),
    )


def _generate(ctx: _Context, split: str, beam: int) -> tuple[list[str], list[str]]:
    """(hypotheses, references) on the fixed valid or test subset."""
    examples, refs = (ctx.valid, ctx.valid_refs) if split == "valid" else (ctx.test, ctx.test_refs)
    return generate(ctx.model, ctx.tokenizer, examples, ctx.s2s, beam=beam, device=ctx.device), refs


def _bleu(ctx: _Context, split: str, beam: int) -> float:
    return codexglue_bleu(*_generate(ctx, split, beam))


def _valid_check(ctx: _Context, select_by: str) -> float:
    if select_by == "nll":
        return token_nll(ctx.model, ctx.valid, ctx.s2s, device=ctx.device)
    return _bleu(ctx, "valid", 1)


class RoundSelector:
    """The round-selection rule over a round's validation checks (scores: higher is better).

    observe(score) -> (keep, stop): keep the model as the round's selection (pick_best and
    pick_best_nostop: a new best; pick_last keeps the model it stops on, never a snapshot);
    stop when the score is worse than both previous ones (never for pick_best_nostop).
    """

    def __init__(self, selection: str):
        _check(selection in SELECTIONS, f"selection {selection!r} not in {SELECTIONS}")
        self.selection, self.history = selection, []

    def observe(self, score: float) -> tuple[bool, bool]:
        h = self.history
        keep = self.selection != "pick_last" and all(score > s for s in h)
        stop = self.selection != "pick_best_nostop" and len(h) >= 2 and score < h[-1] and score < h[-2]
        h.append(score)
        return keep, stop


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fine_tune_round(ctx: _Context, masks, schedule: dict, cfg: PruneConfig, seed: int) -> dict:
    """Fine-tune `iterations_per_round` (masks re-applied after every step) with the
    schedule's round selection; leaves the selected model in ctx.model.

    A check every `eval_every` iterations on the fixed validation subset: greedy BLEU, or NLL
    per reference token with `select_by: nll` (lower is better). pick_last: stop when a check
    is worse than both previous ones, keep the last model; pick_best: same stop, keep the best
    checked model; pick_best_nostop: run all iterations, keep the best. `valid_checks` holds
    the raw check values.
    """
    n = cfg.iterations_per_round
    masks = {k: m.to(ctx.weights[k].device) for k, m in masks.items()}  # once, not every step
    opt, sched = make_optimizer(ctx.model, ctx.s2s, n, lr=cfg.lr, warmup_steps=cfg.warmup_steps)
    batches = batch_stream(ctx.train, schedule["batch_size"], seed)
    checks, selector, best_state, done, losses = [], RoundSelector(schedule["selection"]), None, 0, []
    start = time.perf_counter()
    while done < n:
        k = min(cfg.eval_every, n - done)
        with masked_gradients(ctx.weights, masks):
            losses.append(train_steps(ctx.model, batches, k, opt, sched, ctx.s2s, device=ctx.device,
                                      after_step=lambda _: apply_masks(ctx.weights, masks),
                                      desc=f"pruning repair, iterations {done + 1}-{done + k}") * k)
        done += k
        checks.append(_valid_check(ctx, cfg.select_by))
        keep, stop = selector.observe(checks[-1] if cfg.select_by == "bleu" else -checks[-1])
        if keep:
            best_state = _snapshot(ctx.model)
        if stop:
            break
    seconds = time.perf_counter() - start
    if best_state is not None:
        ctx.model.load_state_dict(best_state)
    return {
        "loss": sum(losses) / max(1, done), "iterations": done, "train_seconds": seconds,
        "valid_checks": checks, "stopped_early": done < n,
    }


def generation_latency(model: Seq2Seq, test: Sequence[tuple[list[int], list[int]]], target_len: int, *,
                       runs: int, threads: int | None, device: str = "cpu") -> dict:
    """`latency_ms` of one greedy generation by `model` on the code-to-text latency input:
    the `quantize` rows' `latency_ms` come from here, the `prune` rows' from the same call
    timed beside the dense model's (`round_latencies`).

    The input is the first example of the test split (`test`: the tokenized pairs of
    `code_to_text_splits(data)["test"]`, or any `evaluation_subset` of it, so `test_subset` does not
    change it; its source truncated to `source_len`), batch 1. Source length sets the cost of
    the encoder and of every step's cross-attention, so one fixed input makes a schedule's
    rounds and the same model's quantize fp32 row time the same work. `target_len - 1` greedy
    steps whatever the model emits (stop=False), after one untimed warm-up generation.
    """
    from training.evaluate import latency_ms

    return latency_ms(greedy_call(model, test, target_len, device), warmup=1, runs=runs, threads=threads)


def greedy_call(model: Seq2Seq, test, target_len: int, device: str) -> Callable[[], object]:
    """`generation_latency`'s timed call: `model` (put in eval mode) generating greedily from
    the first test example (also `training.quantize.time_variants`')."""
    if not test:
        raise ValueError("generation latency: the test split is empty (no latency input)")
    src, mask, _ = collate(test[:1], model.pad_id, device)
    model.eval()
    return lambda: model.greedy(src, mask, target_len, stop=False)


def round_latencies(model: Seq2Seq, dense: Seq2Seq, test, target_len: int, *, runs: int, threads: int | None,
                    device: str = "cpu") -> dict:
    """`generation_latency`'s timing of a round's model and of the dense fine-tuned model,
    their blocks alternated in one call (`interleaved_latency_ms`): latency_ms, latency_p90_ms,
    dense_latency_ms and speedup_vs_dense (dense / round). The round-0 rows compare the dense
    model with its copy: their ratio shows the timing's own noise. Timed in separate calls
    (each round against its schedule's round 0, minutes apart, the other trial in another
    phase), pruned rounds read 1.11-1.18x faster than dense weights they compute exactly as fast."""
    from training.evaluate import interleaved_latency_ms

    calls = {name: greedy_call(m, test, target_len, device) for name, m in (("round", model), ("dense", dense))}
    times = interleaved_latency_ms(calls, warmup=1, runs=runs, threads=threads)
    return {"latency_ms": times["round"]["median_ms"], "latency_p90_ms": times["round"]["p90_ms"],
            "dense_latency_ms": times["dense"]["median_ms"],
            "speedup_vs_dense": times["dense"]["median_ms"] / times["round"]["median_ms"]}


def evaluate_round(ctx: _Context, cfg: PruneConfig) -> dict:
    """BLEU (valid/test, greedy/beam), test NLL per reference token, sparsity, sizes and
    generation latency of ctx.model, the latter beside the dense model's (`round_latencies`)."""
    from training.evaluate import serialized_size_bytes

    beam = cfg.beam or ctx.s2s.beam
    lat = round_latencies(ctx.model, ctx.dense, ctx.test, ctx.s2s.target_len, runs=cfg.latency_runs,
                          threads=cfg.latency_threads, device=ctx.device)
    test_greedy, test_refs = _generate(ctx, "test", 1)
    return {
        "sparsity": measured_sparsity(ctx.weights.values()),
        "model_sparsity": measured_sparsity(p for p in ctx.model.parameters()),
        "valid_bleu_greedy": _bleu(ctx, "valid", 1),
        "valid_bleu_beam": _bleu(ctx, "valid", beam),
        "test_bleu_greedy": codexglue_bleu(test_greedy, test_refs),
        "test_corpus_bleu_greedy": corpus_bleu(test_greedy, test_refs),  # sacrebleu's, beside it
        "test_distinct_greedy": distinct_fraction(test_greedy),  # ~0: one summary for all inputs
        "test_bleu_beam": _bleu(ctx, "test", beam),
        "test_nll": token_nll(ctx.model, ctx.test, ctx.s2s, device=ctx.device),
        "test_bleu_constant": ctx.constant_bleu,  # BLEU at or below it is noise
        "n_test": len(ctx.test),  # the functions scored (`test_subset`): a quantize row may score others
        "beam": beam,
        "dense_size_bytes": (dense := serialized_size_bytes(ctx.model)),
        "sparse_size_bytes": sparse_size_bytes(dense, ctx.weights),  # the model serialised once
        **lat,
    }


def _round_dir(out_dir: Path, r: int) -> Path:
    return out_dir / f"round_{r:03d}"


def _save_round(out_dir: Path, r: int, row: dict, model: nn.Module, masks: dict, device: str) -> None:
    """round_RRR/{row.json, state.safetensors, masks.safetensors, rng.safetensors}, atomically
    (`row`'s dense and sparse sizes set from the state file's bytes first);
    earlier states are dropped (only the latest is needed to resume). rng: torch's generator
    states after the round (`rng_state`), so that a resumed schedule draws the dropout masks
    an uninterrupted one would."""
    final, tmp = _round_dir(out_dir, r), staging_path(_round_dir(out_dir, r))
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "state.safetensors"))
    # "as saved": the file's bytes. `serialized_size_bytes` keeps one name of a tied pair and no
    # header metadata; save_model writes the dropped name as metadata (80 bytes here)
    saved = (tmp / "state.safetensors").stat().st_size
    row["sparse_size_bytes"] += saved - row["dense_size_bytes"]
    row["dense_size_bytes"] = saved
    save_file({n: m.to(torch.uint8).contiguous() for n, m in masks.items()}, str(tmp / "masks.safetensors"))
    save_file(rng_state(device), str(tmp / "rng.safetensors"))
    (tmp / "row.json").write_text(json.dumps(row, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    if not publish(tmp, final):  # on disk before the earlier states it supersedes are dropped
        raise RuntimeError(f"pruning round {r}: {final} could not be emptied to save the round "
                           "(earlier rounds' states kept)")
    for prev in range(r):
        for name in ("state.safetensors", "masks.safetensors", "rng.safetensors"):
            (_round_dir(out_dir, prev) / name).unlink(missing_ok=True)


def rng_state(device: str) -> dict[str, torch.Tensor]:
    """torch's generator states that a round's training draws from (dropout): the CPU's, and
    the device's on CUDA. Reading them draws nothing."""
    state = {"cpu": torch.get_rng_state()}
    if torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: str) -> None:
    """Restore what `rng_state` read (a CUDA state only onto a CUDA device)."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _completed(out_dir: Path) -> int:
    """Last round with a saved state, -1 when none."""
    done = [int(p.name[6:]) for p in out_dir.glob("round_*") if (p / "state.safetensors").exists()]
    return max(done, default=-1)


def load_round(out_dir: str | Path, round_: int, artifacts: Seq2SeqArtifacts):
    """(model, masks) saved after `round_` (only the latest round keeps its state)."""
    d = _round_dir(Path(out_dir), round_)
    model, _ = load_seq2seq(artifacts.model_dir, artifacts.config, weights=str(d / "state.safetensors"))
    masks = {n: m.bool() for n, m in load_file(str(d / "masks.safetensors")).items()}
    return model, masks


def run_schedule(
    schedule: dict,
    artifacts: Seq2SeqArtifacts,
    cfg: PruneConfig,
    out_dir,
    *,
    report: Callable[[dict], None],
    device: str = "cpu",
    origin: dict | None = None,
) -> None:
    """Lottery-ticket rounds of one schedule; report(row) once per round.

    Round 0 evaluates the dense fine-tuned model. Round r >= 1: prune the prunable set to
    nominal_sparsity(r) from the previous round's selected model (masks nested), rewind the
    survivors (pretrained / finetuned checkpoint, or keep them: none), fine-tune with masks
    and round selection, evaluate. State is saved per round under out_dir; a re-run resumes
    after the last completed round and re-reports the rounds already done (rows identical).
    The rounds it then runs compute what an uninterrupted run computes: each repair seeds
    torch's global generator, which dropout draws from, from its round (`_seed`); its state is
    also saved with each round and restored on resume. Resuming from disk alone (not from the
    round a trial checkpoint names) re-reports every saved round: each row replaces its own
    round's, and a row lost from the tables (a damaged table file moved away) comes back.
    `origin` (the job passes the node id and device) is saved with each new round's row, with
    the time the round ended: a re-reported round keeps where and when it ran.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir, "round_*")  # staging folders of rounds whose process was killed
    ctx = _context(artifacts, cfg, schedule["scope"], device)
    masks = {n: torch.ones(w.shape, dtype=torch.bool) for n, w in ctx.weights.items()}
    last = _completed(out_dir)
    for r in range(0, last + 1):
        report(json.loads((_round_dir(out_dir, r) / "row.json").read_text()))
    if last >= 0:
        saved = _round_dir(out_dir, last)
        load_model(ctx.model, str(saved / "state.safetensors"))
        ctx.model.to(device)
        masks = {n: m.bool() for n, m in load_file(str(saved / "masks.safetensors")).items()}
        if (saved / "rng.safetensors").is_file():
            set_rng_state(load_file(str(saved / "rng.safetensors")), device)
    check_prunes_some_but_not_all([w.numel() for w in ctx.weights.values()], schedule["rounds"], cfg.rate,
                                  cfg.rate_of, schedule["method"])
    checkpoint = _rewind_checkpoint(artifacts, schedule["rewind"])
    for r in range(last + 1, schedule["rounds"] + 1):
        row = _run_round(ctx, masks, checkpoint, schedule, cfg, r)
        masks = row.pop("_masks")
        row |= {**(origin or {}), "time": time.time()}
        _save_round(out_dir, r, row, ctx.model, masks, device)
        report(row)


def _rewind_checkpoint(artifacts: Seq2SeqArtifacts, target: str) -> str | None:
    """The state file a round rewinds the model to (None: `none`, no rewinding)."""
    if target == "none":
        return None
    return artifacts.pretrained_path if target == "pretrained" else artifacts.finetuned_path


def _run_round(ctx: _Context, masks, checkpoint, schedule: dict, cfg: PruneConfig, r: int) -> dict:
    nominal = nominal_sparsity(r, cfg.rate, cfg.rate_of)
    train = {"loss": None, "iterations": 0, "train_seconds": 0.0, "valid_checks": [], "stopped_early": False}
    if r > 0:
        masks = compute_masks(ctx.weights, masks, nominal, schedule["method"], _seed("masks", r, cfg.seed))
        apply_masks(ctx.weights, masks)
        if checkpoint is not None:
            rewind(ctx.model, ctx.weights, masks, checkpoint)
        # dropout too: seeded per round, not carried from the previous round, whose early stop
        # (pick_best, pick_last) may have drawn more or fewer masks in one schedule than another
        torch.manual_seed(_seed("dropout", r, cfg.seed))
        try:
            train = fine_tune_round(ctx, masks, schedule, cfg, _seed("batches", r, cfg.seed))
        except FloatingPointError as exc:  # which round of which method diverged
            raise FloatingPointError(f"round {r} ({schedule['method']}): {exc}") from None
    row = {**schedule, "round": r, "nominal_sparsity": nominal, "select_by": cfg.select_by,
           "rate": cfg.rate, "rate_of": cfg.rate_of, "iterations_per_round": cfg.iterations_per_round,
           "n_train": len(ctx.train), **training_precision(ctx.s2s.precision, ctx.device),  # the repair steps'
           **train, **evaluate_round(ctx, cfg)}
    row["valid_checks"] = json.dumps(row["valid_checks"])
    return {**row, "_masks": masks}

