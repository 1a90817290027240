"""Analytic cost model of a BERT-family sequence classifier: parameters, size, FLOPs.

Pure arithmetic (numpy only). Every function takes gene values that may be Python ints or
numpy arrays broadcast against each other, so the exhaustive search scores the whole grid
with a handful of array operations; the `Arch` wrappers return plain numbers.

Assumptions (held against the real modules by tests/search/test_cost.py):
- The model is transformers' `RobertaForSequenceClassification` / `BertForSequenceClassification`
  built from `Arch.to_hf_config(teacher)`, in eval mode (dropout is free), batch 1, no padding.
  Parameters and size also cover the bi-encoder pair students (`head`, see `HEADS`); FLOPs
  are always one encoder pass with the sequence classifier's head (a pair model runs two
  passes and its own head).
- A matmul of (m x k) by (k x n) costs 2mnk FLOPs (a multiply and an add per term), as
  `torch.utils.flop_counter.FlopCounterMode` counts it; a bias add costs mn and is not a matmul.
- The embedding lookup is a gather: 0 FLOPs (ELECTRA's count of 2HV per token is a known
  defect of the paper's cost model). Word, position and token-type embeddings are summed.
- Non-matmul constants follow ELECTRA's `flops_computation.py`: softmax 5 per score (max,
  subtract, exp, sum, divide), LayerNorm 5 per element (mean, subtract, square+mean, divide,
  scale+shift ~ 5), GELU / tanh 8 per element. They are estimates; only the matmul part is
  exact.
- FLOPs are counted at the caller's real sequence length (the paper hard-codes 514).

Gene names: L layers, H hidden, A heads, D ffn, V vocab; s sequence length; n labels.
"""

from __future__ import annotations

import numpy as np

from search.space import Arch, InputError, Teacher, heads_fit

BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "int8": 1}
# The classifier heads a student can carry (`training.models.build_student`):
# "sequence": the family's sequence classifier, pooler / classifier.dense (H*H + H) + output (H*n + n);
# "pair_concat": a bi-encoder without pooler, dense over [u; v] (2H*H + H) + output (H*n + n);
# "pair_cosine": a bi-encoder without pooler, s*cos(u, v) + b (2 parameters).
HEADS = ("sequence", "pair_concat", "pair_cosine")
SOFTMAX_FLOPS = 5  # per attention score
LAYER_NORM_FLOPS = 5  # per normalised element
ACTIVATION_FLOPS = 8  # per GELU / tanh output

# Keys of `flops()` whose value is a pure matmul count, and the item names in order.
MATMUL_ITEMS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "out_proj",
    "attn_scores",
    "attn_context",
    "ffn",
    "head",
)
ITEMS = (
    "embeddings",
    "q_proj",
    "k_proj",
    "v_proj",
    "out_proj",
    "attn_scores",
    "softmax",
    "attn_context",
    "ffn",
    "activation",
    "layernorm",
    "residual",
    "head",
)


# ---------------------------------------------------------------- parameters (exact)


def check_head(head: str) -> None:
    """InputError unless `head` is one of `HEADS`."""
    if head not in HEADS:
        raise InputError(f"head must be one of {HEADS}, got {head!r}")


def reads_pairs(head: str) -> bool:
    """Whether students with `head` encode a pair's two sides separately (the `pair_` heads:
    bi-encoders, two encoder passes a pair) rather than one input."""
    return head.startswith("pair_")


def head_params_array(H, num_labels: int = 2, head: str = "sequence"):
    """Parameters of the classifier head over hidden size H (broadcast; int64); see `HEADS`."""
    check_head(head)
    H = np.asarray(H, dtype=np.int64)
    out = H * num_labels + num_labels
    if head == "sequence":
        return (H * H + H) + out
    if head == "pair_concat":
        return (2 * H * H + H) + out
    return np.zeros_like(H) + 2


def params_array(L, H, A, D, V, *, max_positions: int, type_vocab: int, num_labels: int = 2,
                 head: str = "sequence"):
    """Parameter count, broadcast over gene arrays (int64). A does not change the count.

    embeddings: V*H word + P*H position + T*H token type + 2H LayerNorm
    per layer:  4(H*H + H) query/key/value/output dense + 2H LayerNorm
                + (H*D + D) intermediate + (D*H + H) output dense + 2H LayerNorm
    head:       (H*H + H) RoBERTa classifier.dense / BERT pooler.dense
                + (H*n + n) RoBERTa classifier.out_proj / BERT classifier
    (The two families' heads differ in structure, not in count.) Other heads: `HEADS`.
    """
    del A  # heads split H; they add no parameters
    L, H, D, V = (np.asarray(x, dtype=np.int64) for x in (L, H, D, V))
    embeddings = (V + max_positions + type_vocab) * H + 2 * H
    per_layer = 4 * (H * H + H) + 2 * H + (H * D + D) + (D * H + H) + 2 * H
    return embeddings + L * per_layer + head_params_array(H, num_labels, head)


def params(arch: Arch, teacher: Teacher, num_labels: int = 2, head: str = "sequence") -> int:
    """Exact `sum(p.numel())` of the teacher-family classifier built from `arch` with `head`."""
    return int(
        params_array(
            *arch.genes(),
            max_positions=teacher.max_positions,
            type_vocab=teacher.type_vocab,
            num_labels=num_labels,
            head=head,
        )
    )


def size_mb_array(
    L, H, A, D, V, *, max_positions: int, type_vocab: int, num_labels: int = 2, dtype: str = "fp32",
    head: str = "sequence",
):
    """Size in MB (bytes / 1e6) at `dtype` bytes per parameter, broadcast over gene arrays."""
    count = params_array(
        L, H, A, D, V, max_positions=max_positions, type_vocab=type_vocab, num_labels=num_labels,
        head=head,
    )
    return mb(count, dtype)


def mb(count, dtype: str = "fp32"):
    """Size in MB (bytes / 1e6) of `count` parameters at `dtype` bytes each (broadcast)."""
    if dtype not in BYTES_PER_PARAM:
        raise InputError(f"dtype must be one of {sorted(BYTES_PER_PARAM)}, got {dtype!r}")
    return count * (BYTES_PER_PARAM[dtype] / 1e6)


def max_params_within(limit_mb: float, strict: bool = False) -> int:
    """The largest parameter count whose fp32 `mb` is at most `limit_mb` (below it, with
    `strict`), exactly: a search can then compare integer counts where the fitness compares
    float sizes, and judge a size at the limit as the fitness does."""
    if not limit_mb / mb(1) < 2**62:  # far above any count in a search space; int64-safe
        return 2**62
    count = max(int(limit_mb / mb(1)), 0)  # within a few of the answer: float rounding

    def fits(c):
        return mb(c) < limit_mb if strict else mb(c) <= limit_mb

    while fits(count + 1):
        count += 1
    while count >= 0 and not fits(count):
        count -= 1
    return count


def size_mb(arch: Arch, teacher: Teacher, num_labels: int = 2, dtype: str = "fp32",
            head: str = "sequence") -> float:
    """Weights' size in MB (1e6 bytes): params x bytes per parameter (fp32 4, fp16 2, int8 1).

    int8 assumes every parameter is stored in one byte (scales and zero points ignored).
    """
    return float(
        size_mb_array(
            *arch.genes(),
            max_positions=teacher.max_positions,
            type_vocab=teacher.type_vocab,
            num_labels=num_labels,
            dtype=dtype,
            head=head,
        )
    )


# ---------------------------------------------------------------- FLOPs (forward, batch 1)


def flops_array(L, H, A, D, V, seq_len: int, *, num_labels: int = 2) -> dict:
    """Itemised forward FLOPs, broadcast over gene arrays (float64; exact below 2**53).

    Returns {item: array} for `ITEMS`, plus "matmul" (the part FlopCounterMode counts) and
    "total". Per-layer items are already multiplied by L. V does not appear: the lookup is a
    gather.
    """
    del V
    s = float(seq_len)
    L, H, A, D = (np.asarray(x, dtype=np.float64) for x in (L, H, A, D))
    proj = L * (2 * s * H * H + s * H)  # (s,H)@(H,H): 2sH^2 matmul + sH bias, per layer
    items = {
        # word + position + token-type sum: 2 adds per element; + its LayerNorm below
        "embeddings": 2 * s * H,
        "q_proj": proj,
        "k_proj": proj,
        "v_proj": proj,
        "out_proj": proj,
        # per head (s,dh)@(dh,s): 2 s^2 dh -> 2 s^2 H over A heads; + scale by 1/sqrt(dh)
        # on each of the A s^2 scores (eager adds no mask when there is no padding)
        "attn_scores": L * (2 * s * s * H + A * s * s),
        "softmax": L * (SOFTMAX_FLOPS * A * s * s),
        # per head (s,s)@(s,dh): 2 s^2 dh -> 2 s^2 H
        "attn_context": L * (2 * s * s * H),
        # (s,H)@(H,D) + (s,D)@(D,H): 4sHD matmul; biases sD + sH
        "ffn": L * (4 * s * H * D + s * D + s * H),
        "activation": L * (ACTIVATION_FLOPS * s * D),  # GELU on (s,D)
        # embedding LayerNorm + 2 per layer, each over (s,H)
        "layernorm": LAYER_NORM_FLOPS * s * H * (1 + 2 * L),
        "residual": L * (2 * s * H),  # two residual adds of (s,H) per layer
        # first token only: dense (1,H)@(H,H) + bias + tanh, then (1,H)@(H,n) + bias
        "head": 2 * H * H + H + ACTIVATION_FLOPS * H + 2 * H * num_labels + num_labels,
    }
    matmul = (
        L * (4 * 2 * s * H * H)  # q, k, v, out projections
        + L * (2 * 2 * s * s * H)  # scores and context
        + L * (4 * s * H * D)  # ffn
        + 2 * H * H
        + 2 * H * num_labels  # head
    )
    total = sum(items.values())
    return items | {"matmul": matmul, "total": total}


def flops_total_array(L, H, A, D, seq_len: int, *, num_labels: int = 2):
    """`flops_array(...)["total"]` in few array operations (the exhaustive search's hot path).

    The items of `flops_array` collected by monomial; tests hold the two equal.
    """
    s, n = float(seq_len), num_labels
    L, H, A, D = (np.asarray(x, dtype=np.float64) for x in (L, H, A, D))
    per_layer_h = (
        4 * s  # projection biases
        + 4 * s * s  # scores + context matmuls
        + s  # ffn output bias
        + 2 * LAYER_NORM_FLOPS * s  # two LayerNorms
        + 2 * s  # residuals
    )
    per_layer_d = s + ACTIVATION_FLOPS * s  # ffn intermediate bias + GELU
    head_h = 1 + ACTIVATION_FLOPS + 2 * n
    outside = (2 * s + LAYER_NORM_FLOPS * s + head_h + 2 * H) * H + n  # embeddings, LN, head
    per_layer = (
        (8 * s * H + 4 * s * D + per_layer_h) * H
        + per_layer_d * D
        + (1 + SOFTMAX_FLOPS) * s * s * A
    )
    return L * per_layer + outside


def flops(arch: Arch, seq_len: int, *, num_labels: int = 2) -> dict:
    """Itemised forward FLOPs of `arch` at batch 1 and `seq_len` tokens: {item: int}, plus
    "matmul" (equals FlopCounterMode on the eager model) and "total"."""
    if seq_len <= 0:
        raise InputError(f"seq_len must be positive, got {seq_len}")
    return {
        k: int(round(float(v)))
        for k, v in flops_array(*arch.genes(), seq_len, num_labels=num_labels).items()
    }


def size_miss(size, target_mb: float, max_mb=None):
    """The fitness's size penalty |size - T| in MB (broadcast), inf over `max_mb`.

    The one place the penalty and the cap's comparison are written: the GA's (ffn, vocab)
    repair ranks vocabularies with it, so it judges a size at the cap exactly as the fitness does.
    """
    miss = np.abs(size - target_mb)
    return miss if max_mb is None else np.where(size > max_mb, np.inf, miss)


def fitness_array(
    L,
    H,
    A,
    D,
    V,
    *,
    teacher: Teacher,
    target_mb: float,
    seq_len: int,
    max_mb=None,
    num_labels: int = 2,
    min_head_size: int = 1,
    head: str = "sequence",
    latency_model=None,
    max_ms=None,
):
    """The paper's fitness GFLOPs - |size_MB - T|, broadcast over gene arrays.

    GFLOPs is the itemised total; size is the fp32 classifier with `head` and `num_labels`
    outputs (what the compression job trains). Points over `max_mb`, or whose heads do not
    divide hidden into heads of at least `min_head_size` (`heads_fit`), or predicted slower
    than `max_ms` by `latency_model` (`search.latency.LatencyModel`; max_ms needs one), get
    -inf (dominated, never an exception).
    """
    size = size_mb_array(
        L,
        H,
        A,
        D,
        V,
        max_positions=teacher.max_positions,
        type_vocab=teacher.type_vocab,
        num_labels=num_labels,
        head=head,
    )  # no A: on the full grid (L, H, 1, D, V)
    miss = size_miss(size, target_mb, max_mb)
    gflops = (
        flops_total_array(L, H, A, D, seq_len, num_labels=num_labels) / 1e9
    )  # no V: (L, H, A, D, 1)
    feasible = heads_fit(H, A, min_head_size)
    if max_ms is not None:
        feasible = feasible & (latency_model.predict_ms(L, gflops, heads=A) <= max_ms)
    gflops = np.where(feasible, gflops, -np.inf)
    # Masks are applied to the two smaller factors; only this difference spans the whole grid.
    return gflops - miss
