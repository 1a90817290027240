"""A measured latency model for the search:
milliseconds = a + b * layers + c * GFLOPs + d * layers * heads.

FLOPs alone rank small students badly on a CPU: each layer's layer norms, softmax and the
calls around them are memory-bound work that costs time out of proportion to its FLOPs (a
one-layer student of 84% of a five-layer one's FLOPs answers 1.8x faster). This model adds
a per-layer term (and, where it earns its place, a per-head one) to the FLOPs term, all
fitted by least squares to latencies measured on the machine the students will run on
(`python -m ray_jobs bench latency-model` writes the JSON file). The search then refuses
candidates predicted over `max_ms` and reports every candidate's prediction.

The per-head term prices what each head adds to a layer beyond its FLOPs: its own
(seq x seq) score, mask and softmax tensors and its own small matrix products. At long
sequences it dominates narrow heads (eight heads of 2 dimensions over 400 tokens took 2-3x
the time of one or two heads at similar FLOPs); at 64 tokens it is lost in the noise. So
`fit` keeps it only when it predicts left-out shapes better (`heads_term_errors`).

Pure arithmetic and JSON (numpy only): the search never imports torch. The GFLOPs are the
cost model's (`search.cost.flops_total_array`: one encoder pass at `seq_len`, the sequence
head); a pair student runs two passes, which the fit absorbs because it is fitted on
latencies measured in the format the model records (`pair`).
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from search import not_a_regular_file
from search.cost import HEADS, reads_pairs
from search.space import InputError

FORMAT = "code-compressor latency model"
COEFFICIENTS = ("intercept_ms", "per_layer_ms", "per_gflop_ms", "per_layer_head_ms")
REQUIRED = (*COEFFICIENTS[:3], "seq_len", "pair")  # files written before 2026-12-06 lack the per-head term
MIN_SHAPES = 4  # one more than the coefficients without the heads term: each leave-one-out fit is determined
# the per-head term is kept only if it lowers the mean relative leave-one-out error by more than
# this fraction: a fourth coefficient fits noise too, and equal errors (rounding apart) are no reason
HEADS_TERM_GAIN = 0.01


@dataclass(frozen=True)
class LatencyModel:
    """ms = intercept_ms + per_layer_ms * layers + per_gflop_ms * GFLOPs
    + per_layer_head_ms * layers * heads (all >= 0), for batch 1 at `seq_len` tokens per
    encoded input, on the machine and settings it was fitted on."""

    intercept_ms: float
    per_layer_ms: float
    per_gflop_ms: float
    seq_len: int  # tokens per encoded input the latencies were measured at (and GFLOPs counted at)
    pair: bool  # True: each call encoded a pair's two sides separately (the bi-encoder students)
    per_layer_head_ms: float = 0.0  # 0: fitted without the heads term (or before it existed)
    threads: int | None = None  # CPU threads while timing (None: torch's default)
    device: str = "cpu"
    machine: str = ""  # where it was measured (processor, platform)
    # the search head of the timed students (`search.cost.HEADS`; None: not recorded, as in files
    # written before 2026-12-06). The search checks `pair` only: the pair heads' own cost is tiny
    head: str | None = None
    # the measured shapes: layers, hidden, heads, ffn, vocab, gflops, measured_ms, predicted_ms,
    # loo_ms (predicted by the fit without that shape)
    samples: tuple[dict, ...] = field(default=(), compare=False)

    def __post_init__(self):
        for name in COEFFICIENTS:
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < np.inf:
                raise InputError(f"{name}: must be a finite number >= 0, got {value!r}")
        if not isinstance(self.seq_len, int) or isinstance(self.seq_len, bool) or self.seq_len < 1:
            raise InputError(f"seq_len: must be a positive integer, got {self.seq_len!r}")
        if not isinstance(self.pair, bool):
            raise InputError(f"pair: must be true or false, got {self.pair!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or isinstance(self.threads, bool)
                                         or self.threads < 1):
            raise InputError(f"threads: must be a positive integer or null, got {self.threads!r}")
        for name in ("device", "machine"):
            if not isinstance(getattr(self, name), str):
                raise InputError(f"{name}: must be a string, got {getattr(self, name)!r}")
        if self.head is not None and (self.head not in HEADS or reads_pairs(self.head) != self.pair):
            raise InputError(f"head: must be null or one of {HEADS} that agrees with pair={self.pair}, "
                             f"got {self.head!r}")

    def predict_ms(self, layers, gflops, *, heads):
        """Predicted milliseconds of broadcastable layers, GFLOPs and heads arrays (or numbers)."""
        layers = np.asarray(layers)
        return (self.intercept_ms + self.per_layer_ms * layers + self.per_gflop_ms * np.asarray(gflops)
                + self.per_layer_head_ms * layers * np.asarray(heads))

    def describe(self) -> str:
        """One line: the formula and what it was fitted on."""
        where = f"{self.device}" + (f", {self.threads} thread{'s' * (self.threads != 1)}" if self.threads else "")
        per_head = f" + {self.per_layer_head_ms:.4f} ms/(layer x head)" if self.per_layer_head_ms else ""
        return (f"{self.intercept_ms:.3f} ms + {self.per_layer_ms:.3f} ms/layer + {self.per_gflop_ms:.3f} ms/GFLOP"
                f"{per_head} "
                f"({f'{self.head} head, ' if self.head else ''}{'pair' if self.pair else 'one input'} of "
                f"{self.seq_len} tokens, batch 1, {where}; "
                f"{len(self.samples)} shapes)")


def _solve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient >= 0: the best of the column subsets whose
    unconstrained solution is non-negative (at most four columns: fifteen subsets, exact)."""
    best, best_err = np.zeros(x.shape[1]), float(np.sum(y**2))
    for size in range(1, x.shape[1] + 1):
        for cols in itertools.combinations(range(x.shape[1]), size):
            coef, *_ = np.linalg.lstsq(x[:, cols], y, rcond=None)
            if np.any(coef < 0):
                continue
            err = float(np.sum((y - x[:, cols] @ coef) ** 2))
            if err < best_err:
                best, best_err = np.zeros(x.shape[1]), err
                best[list(cols)] = coef
    return best


def _leave_one_out(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row's prediction by the fit to the other rows: how well it predicts a shape it has not seen."""
    keep = np.ones(len(y), bool)
    loo = np.empty(len(y))
    for i in range(len(y)):
        keep[i] = False
        loo[i] = x[i] @ _solve(x[keep], y[keep])
        keep[i] = True
    return loo


def _design(layers, gflops, heads=None) -> np.ndarray:
    """The fit's columns: 1, layers, GFLOPs, and layers * heads when `heads` are given."""
    layers = np.asarray(layers, float)
    columns = [np.ones(len(layers)), layers, np.asarray(gflops, float)]
    return np.column_stack(columns + ([layers * np.asarray(heads, float)] if heads is not None else []))


def heads_term_errors(layers, gflops, measured_ms, heads) -> tuple[float, float] | None:
    """Mean relative leave-one-out errors of the fits with the per-head term and without it;
    None where the term cannot be judged: fewer than 5 shapes (its leave-one-out fits would be
    undetermined), or one head count for every shape (layers x heads is then a multiple of
    layers, and any split between the two terms is noise)."""
    y = np.asarray(measured_ms, float)
    if len(y) <= len(COEFFICIENTS) or len(set(np.asarray(heads).tolist())) < 2:
        return None
    with_heads, without = (float(np.mean(np.abs(_leave_one_out(_design(layers, gflops, h), y) - y) / y))
                           for h in (heads, None))
    return with_heads, without


def keeps_heads_term(errors: tuple[float, float] | None) -> bool:
    """Whether `heads_term_errors` justify the term: more than HEADS_TERM_GAIN less error."""
    return errors is not None and errors[0] < (1 - HEADS_TERM_GAIN) * errors[1]


def _check_columns(layers, gflops, heads) -> None:
    """InputError unless layers (and heads) are positive integers and GFLOPs finite and >= 0."""
    for name, values in (("layers", layers), ("heads", heads)):
        if values is not None and not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1
                                          for v in values):
            raise InputError(f"{name}: must be positive integers, got {list(values)!r}")
    g = np.asarray(gflops, float)
    if not np.all(np.isfinite(g)) or np.any(g < 0):
        raise InputError(f"gflops: must be finite and >= 0, got {list(gflops)!r}")


def fit(layers, gflops, measured_ms, *, heads=None, **settings) -> LatencyModel:
    """Fit a LatencyModel to measured shapes. layers, gflops, measured_ms and heads: (n,)
    sequences, n >= 4. The per-head term is fitted when `heads` are given and kept when
    `heads_term_errors` say it predicts left-out shapes better (`keeps_heads_term`).
    settings: the other LatencyModel fields (seq_len, pair, threads, device, machine, head) and
    `shapes`, (n,) dicts of genes recorded in `samples` beside each shape's heads, measured,
    predicted and leave-one-out predicted ms (the kept fit's)."""
    shapes = settings.pop("shapes", None)
    n = len(measured_ms)
    if (n < MIN_SHAPES or len(layers) != n or len(gflops) != n or (shapes is not None and len(shapes) != n)
            or (heads is not None and len(heads) != n)):
        raise InputError(f"a latency model needs >= {MIN_SHAPES} measured shapes (columns of equal length: "
                         "leave-one-out fits need more points than coefficients), "
                         f"got {len(layers)}, {len(gflops)}, {n}" + (f", {len(heads)} heads" if heads is not None else ""))
    y = np.asarray(measured_ms, float)
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise InputError("measured latencies must be positive and finite")
    _check_columns(layers, gflops, heads)
    use_heads = heads is not None and keeps_heads_term(heads_term_errors(layers, gflops, y, heads))
    x = _design(layers, gflops, heads if use_heads else None)
    coef, loo = _solve(x, y), _leave_one_out(x, y)
    shapes = shapes if shapes is not None else [{} for _ in y]
    samples = tuple(dict(s) | {"layers": int(x[i, 1]), "gflops": float(x[i, 2]), "measured_ms": float(y[i]),
                               "predicted_ms": float(x[i] @ coef), "loo_ms": float(loo[i])}
                    | ({"heads": int(heads[i])} if heads is not None else {})
                    for i, s in enumerate(shapes))
    coefficients = dict(zip(COEFFICIENTS, (float(c) for c in coef), strict=False))  # no per-head term: 0
    return LatencyModel(**coefficients, samples=samples, **settings)


def loo_errors(model: LatencyModel) -> np.ndarray:
    """Relative leave-one-out errors |loo - measured| / measured of the model's samples."""
    return np.array([abs(s["loo_ms"] - s["measured_ms"]) / s["measured_ms"] for s in model.samples])


def save(model: LatencyModel, path) -> Path:
    """Write `model` as JSON at `path` atomically (a reader sees the old file or the new one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": FORMAT} | asdict(model) | {"samples": list(model.samples)}, indent=1)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would keep it from the other users of a shared results folder
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:  # the rename itself durable
        os.fsync(folder)
    finally:
        os.close(folder)
    return path


def load(path) -> LatencyModel:
    """The LatencyModel in a JSON file `save` wrote; InputError naming the file and what is
    wrong (missing, not JSON (with its line), not a latency model, a missing or unknown key,
    a bad value)."""
    path = Path(path)
    if not_a_regular_file(path):  # a FIFO's read blocks for ever
        raise InputError(f"{path}: not a regular file")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such latency model file (`python -m ray_jobs bench latency-model` "
                         "writes one)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read it: {err}") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: line {err.lineno}: not JSON: {err.msg}") from None
    except RecursionError:  # the decoder recurses once per nested array or object
        raise InputError(f"{path}: not JSON this decoder can read (nested too deeply)") from None
    if not isinstance(data, dict) or data.pop("format", None) != FORMAT:
        raise InputError(f"{path}: not a latency model (its \"format\" is not {FORMAT!r})")
    names = {f.name for f in fields(LatencyModel)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{path}: unknown key {unknown[0]!r}")
    missing = [n for n in REQUIRED if n not in data]
    if missing:
        raise InputError(f"{path}: missing key {missing[0]!r}")
    if not isinstance(data.get("samples", []), list) or not all(isinstance(s, dict) for s in data.get("samples", [])):
        raise InputError(f"{path}: samples: must be a list of objects")
    data["samples"] = tuple(data.get("samples", ()))
    try:
        return LatencyModel(**data)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
