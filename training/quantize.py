"""Quantization variants of the code-to-text model, unpruned and pruned (Gu et al.), and of
the compression job's classifiers (students, BiLSTM_soft).

fp32 (reference), fp16 (`half()`), torch dynamic int8 of every Linear layer, and int8 that
keeps the tied output projection (and, as dynamic quantization always does, the
embeddings) in fp32. Pruning masks are plain zeros in the weights (training/prune.py), so
pruned models quantize as they are. Sizes are `torch.save` bytes of the state dict: the
one format that holds packed int8 weights, used for every variant so they compare.

Classifiers are scored and timed on the CPU in every variant (the laptop a shipped 3 MB
model answers on; dynamic int8 has CPU kernels only), each against the fp32 model, their
timed runs alternated in the same call (`training.evaluate.interleaved_latency_ms`).
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from training.bleu import codexglue_bleu, corpus_bleu
from training.checks import check_choices, check_ranges
from training.models import emulated
from training.onnx_export import GRAPH_FILES, ONNX_VARIANTS, OnnxClassifier
from training.prune import greedy_call, measured_sparsity, prunable_linears
from training.seq2seq import (
    Seq2Seq,
    Seq2SeqArtifacts,
    distinct_fraction,
    generate,
    load_seq2seq,
    token_nll,
    tokenize_pairs,
)

VARIANTS = ("fp32", "fp16", "int8", "int8_fp32_head")
# each scored beside the fp32 model; onnx / onnx_int8: run by ONNX Runtime (training.onnx_export)
CLASSIFIER_VARIANTS = ("fp16", "bf16", "int8", "int8_emb", *ONNX_VARIANTS)


@dataclass(frozen=True)
class QuantizeConfig:
    variants: tuple[str, ...] = VARIANTS  # fp32 | fp16 | int8 | int8_fp32_head
    test_subset: int | None = None  # test examples for BLEU; None = all
    beam: int | None = None  # beam size of the beam BLEU; None = the seq2seq config's; 1 = greedy only
    latency_runs: int = 20  # timed generations (batch 1, target_len - 1 greedy steps)
    latency_threads: int | None = 1  # torch threads while timing; None = current setting

    def __post_init__(self) -> None:  # refused when the config is read, not after the pruning sweep
        check_choices(self, variants=VARIANTS)
        check_ranges(self, counts=("test_subset", "beam"), timed_runs=("latency_runs",), threads=("latency_threads",))


def variant_device(variant: str, device: str = "cpu") -> str:
    """Where a variant runs: fp32 and fp16 on `device`; int8 on the CPU (torch's dynamic
    int8 kernels are CPU kernels)."""
    return device if variant in ("fp32", "fp16") else "cpu"


def quantize_model(model: Seq2Seq, variant: str, device: str = "cpu") -> Seq2Seq:
    """A quantized copy of `model` on variant_device(variant, device); the original is
    untouched."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    model = copy.deepcopy(model).to(variant_device(variant, device)).eval()
    if variant == "fp32":
        return model
    if variant == "fp16":
        return model.half()
    # The tied lm_head is an nn.Linear: plain int8 quantizes a copy of it (the embedding
    # table itself stays fp32); int8_fp32_head leaves it out.
    return _dynamic_int8(model, include=nn.Linear,
                         skip=("lm_head",) if variant == "int8_fp32_head" else ())


def _dynamic_int8(model: nn.Module, *, include, skip=(), embeddings: bool = False) -> nn.Module:
    """torch dynamic int8 of `model`'s modules of type `include` (names in `skip` left out), in
    place; `embeddings` adds weight-only int8 embedding tables (a float scale and offset per row)."""
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated, still the dynamic int8 path
        warnings.simplefilter("ignore")
        from torch.ao.quantization import (
            default_dynamic_qconfig,
            float_qparams_weight_only_qconfig,
            quantize_dynamic,
        )

        spec = {name: default_dynamic_qconfig for name, m in model.named_modules()
                if isinstance(m, include) and name not in skip}
        if embeddings:
            # HF looks the token-type table up through an expanded (non-contiguous) buffer,
            # which the quantized lookup refuses; it has 1-2 rows, so it stays fp32.
            spec |= {name: float_qparams_weight_only_qconfig for name, m in model.named_modules()
                     if isinstance(m, nn.Embedding) and not name.endswith("token_type_embeddings")}
        return quantize_dynamic(model, spec, dtype=torch.qint8)


def saved_size_bytes(model: nn.Module) -> int:
    """Bytes of `torch.save(model.state_dict())` (tied tensors stored once)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def stored_sparsity(variant_model: nn.Module, scope: str = "encoder") -> float:
    """Fraction of exact zeros in the prunable set's weights as `variant_model` stores them:
    a dynamic int8 Linear's weights where the integer is the zero point (rounding sends every
    weight below half a quantization step there, so an unpruned model has zeros too), fp16 or
    fp32 values else."""
    tensors = []
    for module in prunable_linears(variant_model, scope).values():
        w = module.weight() if callable(module.weight) else module.weight
        tensors.append(w.dequantize() if w.is_quantized else w.detach())  # 0 where the integer is the zero point
    return measured_sparsity(tensors)


def variant_row(model: Seq2Seq, variant: str, tokenizer, examples, refs, cfg: QuantizeConfig, s2s,
                device: str = "cpu", scope: str = "encoder") -> tuple[dict, Seq2Seq | None]:
    """(row, the variant's model or None): BLEU (CodeXGLUE greedy and beam, sacrebleu corpus
    greedy), NLL per reference token and size of one variant of `model`, run on
    variant_device(variant, device) (the row's `device`); a variant that cannot run there gets
    its error in the row instead of figures, and no model. Not timed here: `time_variants`
    times a model's variants against each other. `examples`: the tokenized test split (or an
    `evaluation_subset` of it)."""
    dev = variant_device(variant, device)
    row = {"variant": variant, "error": None, "device": dev, "n_test": len(refs),
           "emulated": emulated(variant, torch.device(dev).type)}
    beam = cfg.beam or s2s.beam
    try:
        q = quantize_model(model, variant, device)
        row["size_bytes"] = saved_size_bytes(q)
        row["stored_sparsity"] = stored_sparsity(q, scope)
        hyps = generate(q, tokenizer, examples, s2s, device=dev)
        row["bleu_greedy"] = codexglue_bleu(hyps, refs)
        row["corpus_bleu_greedy"] = corpus_bleu(hyps, refs)
        row["distinct_greedy"] = distinct_fraction(hyps)  # ~0 when one summary fits all inputs
        row["bleu_beam"] = (codexglue_bleu(generate(q, tokenizer, examples, s2s, beam=beam, device=dev), refs)
                            if beam > 1 else None)
        row["beam"] = beam
        row["nll"] = token_nll(q, examples, s2s, device=dev)
    except (RuntimeError, NotImplementedError) as err:  # e.g. an fp16 kernel missing on this CPU
        row["error"] = _one_line(err)
        return row, None
    return row, q


def time_variants(rows: list[dict], built: dict[str, Seq2Seq], examples, target_len: int,
                  cfg: QuantizeConfig) -> None:
    """Fill the rows of one model's variants (`built`: variant -> its model) with
    latency_ms, latency_p90_ms, latency_threads, latency_runs and speedup_vs_fp32 (fp32's
    median / the row's, only beside fp32 on its device): the variants on one device are timed
    against each other in one call, their blocks alternated (`interleaved_latency_ms`), on
    the input the prune rounds are timed on (`generation_latency`: the first test example,
    `target_len - 1` greedy steps). Timed one after another (until 2026-12-06), a variant's
    figure was minutes from fp32's, its scoring in between; separate calls read pruned
    rounds 1.11-1.18x faster than dense weights computing exactly as fast. A variant whose
    generation fails there gets the error in its row."""
    from training.evaluate import interleaved_latency_ms

    by_variant = {r["variant"]: r for r in rows}
    for dev in dict.fromkeys(by_variant[v]["device"] for v in built):
        names = [v for v in built if by_variant[v]["device"] == dev]
        stats = interleaved_latency_ms({v: greedy_call(built[v], examples, target_len, dev) for v in names},
                                       warmup=1, runs=cfg.latency_runs, threads=cfg.latency_threads,
                                       tolerate=(RuntimeError, NotImplementedError))
        fp32 = stats.get("fp32", {}).get("median_ms")
        for v in names:
            row, timing = by_variant[v], stats[v]
            if "error" in timing:
                row["error"] = _one_line(timing["error"])
                continue
            row |= {"latency_ms": timing["median_ms"], "latency_p90_ms": timing["p90_ms"],
                    "latency_threads": timing["threads"], "latency_runs": timing["runs"],
                    "speedup_vs_fp32": _ratio(fp32, timing["median_ms"])}


def quantize_rows(
    artifacts: Seq2SeqArtifacts,
    cfg: QuantizeConfig,
    *,
    pruned: dict[str, str | Path] | None = None,
    scopes: dict[str, str] | None = None,
    device: str = "cpu",
    unpruned: bool = True,
) -> list[dict]:
    """Rows for every variant of the unpruned fine-tuned model (unless `unpruned` is False)
    and of each pruned model.

    pruned: label -> a state file (e.g. a run_schedule round's state.safetensors). Each row:
    model (label, "unpruned" for the fine-tuned model), variant, device, scope (`scopes[label]`,
    else encoder), sparsity (measured zeros of the scope's prunable set in the fp32 model the
    variants are made from: the pruning's), stored_sparsity (the same set's zeros as the
    variant stores it: `stored_sparsity`), n_test (the test functions scored: `test_subset`),
    bleu_greedy, corpus_bleu_greedy, bleu_beam, beam, nll, size_bytes, latency_ms, latency_p90_ms, latency_threads, latency_runs,
    speedup_vs_fp32 (`time_variants`), bleu_kept (BLEU greedy / the same model's fp32 BLEU
    greedy), error. fp32 and fp16 run on `device`, int8 on the CPU (dynamic int8 is a CPU
    kernel).
    """
    from training.data import code_to_text_splits, evaluation_subset

    sources = {**({"unpruned": None} if unpruned else {}), **(pruned or {})}
    test = evaluation_subset(code_to_text_splits(artifacts.data)["test"], cfg.test_subset)
    rows = []
    for label, state in sources.items():
        model_rows = _model_rows(artifacts, cfg, state, test, (scopes or {}).get(label, "encoder"), device)
        rows += [row | {"model": label} for row in model_rows]
    return rows


def _model_rows(artifacts: Seq2SeqArtifacts, cfg: QuantizeConfig, state: str | Path | None, test,
                scope: str, device: str) -> list[dict]:
    """`quantize_rows`' rows of one model (the fine-tuned one when `state` is None), its
    variants alive together while they are timed and freed on return, before the next loads."""
    s2s = artifacts.config
    model, tok = load_seq2seq(artifacts.model_dir, s2s, weights="finetuned" if state is None else str(state))
    examples, refs = tokenize_pairs(test, tok, s2s), [p.target for p in test]
    sparsity = stored_sparsity(model, scope)  # the fp32 model's: the pruning's zeros
    rows, built = [], {}
    for variant in cfg.variants:
        row, q = variant_row(model, variant, tok, examples, refs, cfg, s2s, device, scope)
        rows.append(row)
        if q is not None:
            built[variant] = q
    time_variants(rows, built, examples, s2s.target_len, cfg)
    base = next((r.get("bleu_greedy") for r in rows if r["variant"] == "fp32"), None)
    for row in rows:
        row.update(scope=scope, sparsity=sparsity, bleu_kept=_ratio(row.get("bleu_greedy"), base))
    return rows


# ---------------------------------------------------------------- classifiers


def quantize_classifier(model: nn.Module, variant: str, example: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """A CPU copy of a sequence classifier (student, BiLSTM_soft, teacher) in `variant`.

    fp32: as it is; fp16 / bf16: every weight cast; int8: torch dynamic int8 of every
    Linear and LSTM (weights int8, activations quantized per call; embeddings and
    LayerNorms stay fp32); int8_emb: int8 plus weight-only int8 embedding tables (a float
    scale and offset per row); onnx / onnx_int8: an `OnnxClassifier` traced on `example`
    (the model's keyword inputs, e.g. one collated test batch). The original is untouched.
    """
    if variant not in ("fp32", *CLASSIFIER_VARIANTS):
        raise ValueError(f"variant must be one of {('fp32', *CLASSIFIER_VARIANTS)}, got {variant!r}")
    model = copy.deepcopy(model).cpu().eval()
    if variant in ONNX_VARIANTS:
        if example is None:
            raise ValueError(f"variant {variant}: needs example inputs to trace the graph")
        return OnnxClassifier(model, variant, example)
    if variant in ("fp16", "bf16"):
        return model.to(torch.float16 if variant == "fp16" else torch.bfloat16)
    if variant.startswith("int8"):
        return _dynamic_int8(model, include=nn.Linear | nn.LSTM, embeddings=variant == "int8_emb")
    return model


def classifier_variant_rows(model: nn.Module, variants: tuple[str, ...], score, time,
                            example: dict[str, torch.Tensor] | None = None,
                            graph_dir: Path | None = None) -> list[dict]:
    """Rows for the fp32 model and each of `variants`, all on the CPU.

    score(model) -> {"accuracy", "f1", "score_batch" (the batch size it scored in, kept in the
    row: dynamic int8 variants pick activation scales per call), ...} on the test split;
    time({variant: model}) ->
    {variant: a `latency_ms` dict, or {"error": exception}} for every variant that scored, timed
    against each other (`training.evaluate.interleaved_latency_ms`); example: inputs the ONNX
    variants are traced on; graph_dir: where each ONNX variant that scored and ran is kept
    (`OnnxClassifier.save`). Each row: variant, device ("cpu"), size_bytes (`torch.save`
    bytes; the graph file's for ONNX variants), accuracy, f1, latency_ms, latency_p90_ms,
    accuracy_kept (accuracy / the fp32 row's), speedup_vs_fp32 (fp32 median / this median),
    latency_threads and latency_runs (how it was timed), emulated (`training.models.emulated`:
    a bf16 or fp16 variant this CPU converts rather than computes; None for the others),
    error (a variant this CPU cannot run gets its error instead of figures).
    """
    rows, built = [], {}
    for variant in ("fp32", *(v for v in variants if v != "fp32")):
        row = {"variant": variant, "device": "cpu", "error": None, "emulated": emulated(variant, "cpu")}
        try:
            if graph_dir is not None and variant in ONNX_VARIANTS:  # an earlier attempt's graph: not this row's
                (Path(graph_dir) / GRAPH_FILES[variant]).unlink(missing_ok=True)
            q = quantize_classifier(model, variant, example)
            row["size_bytes"] = q.size_bytes if isinstance(q, OnnxClassifier) else saved_size_bytes(q)
            row |= {k: v for k, v in score(q).items() if k in ("accuracy", "f1", "score_batch")}
            built[variant] = q
        # e.g. a half kernel missing on this CPU; OSError: a temporary folder it cannot write
        except (RuntimeError, NotImplementedError, OSError) as err:
            row["error"] = _one_line(err)
        rows.append(row)
    timings = time(built) if built else {}
    for row in rows:
        lat = timings.get(row["variant"])
        if lat is None:
            continue
        if "error" in lat:
            row["error"] = _one_line(lat["error"])
            continue
        row["latency_ms"], row["latency_p90_ms"] = lat["median_ms"], lat["p90_ms"]
        row["latency_threads"], row["latency_runs"] = lat.get("threads"), lat.get("runs")  # how it was timed
        if graph_dir is not None and isinstance(built[row["variant"]], OnnxClassifier):
            try:
                built[row["variant"]].save(graph_dir)
            except (RuntimeError, OSError) as err:  # e.g. a full disk: the row keeps its measured figures
                row["error"] = f"graph not kept: {_one_line(err)}"
    base = rows[0]
    for row in rows:  # each ratio from what both rows measured (a timing error leaves accuracy_kept)
        row["accuracy_kept"] = _ratio(row.get("accuracy"), base.get("accuracy"))
        row["speedup_vs_fp32"] = _ratio(base.get("latency_ms"), row.get("latency_ms"))
    return rows


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


def _one_line(err: BaseException) -> str:
    """An exception as one table cell."""
    return " ".join(f"{type(err).__name__}: {err}".split())[:500]
