"""Genetic search for student architectures (DEAP), its exhaustive check, and a Pareto front.

- `run_ga(..., variant="paper")`: the Compressor paper's Algorithm 1, as written.
- `run_ga(..., variant="default")`: the same fitness and evaluation budget with operators
  that respect the size budget; reaches the true optimum (see `python -m search bench`).
- `exhaustive(...)`: scores every grid point with numpy broadcasting: the true top-k.
- `pareto(...)`: NSGA-II over `OBJECTIVES` (size down, GFLOPs up), with a latency model
  `LATENCY_OBJECTIVE` too (predicted ms down).

Genomes are index vectors into the `SearchSpace` choice tuples (layers, hidden, heads, ffn,
vocab), so every operator keeps genes inside the space by construction. Fitness is the
paper's GFLOPs - |size_MB - T| with the itemised total FLOPs at the real sequence length and
the size of the fp32 classifier with `num_labels` outputs and the students' `head` (what the
compression job trains; `cost.HEADS`); infeasible points (over `max_mb`, heads not dividing
hidden, a head size hidden / heads below the space's `min_head_size`) score -inf, and the
searches rank them by how far they are from feasible (`ConstrainedFitness`).

Ties break the same way in every result (GA top-k, exhaustive, front): the smaller genome
(index vector, compared gene by gene) comes first.

All randomness comes from one `random.Random(seed)` per call: no global state is touched,
so runs are reproducible and independent of each other.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from deap import base, creator

from search import cost
from search.fronts import MAX_POPULATION, sel_nsga2, sort_nondominated
from search.latency import LatencyModel
from search.space import GENES, Arch, InputError, SearchSpace, Teacher, is_whole

VARIANTS = ("paper", "default")
HIDDEN, HEADS, FFN, VOCAB = (GENES.index(g) for g in ("hidden", "heads", "ffn", "vocab"))
# Genes the default variant sets by repair instead of mutation (see `_repair`).
REPAIRED = (FFN, VOCAB)
# run_ga's own options, which `exhaustive` accepts and ignores (a test holds them in step).
GA_OPTIONS = ("variant", "population", "generations", "crossover_rate", "children", "seed", "history")
# (layers, hidden, heads) triples whose (ffn, vocab) blocks are scored at once by `_top_k`:
# 256 x 96 x 50 points at most, about 10 MB an array.
BLOCK_CHUNK = 256


@dataclass(frozen=True)
class Objective:
    """One NSGA-II objective: `fn(problem, values (n, 5)) -> (n,)`, weight -1 minimise, +1 maximise."""

    name: str
    weight: float
    fn: Callable


def _size_objective(problem, values):
    return problem.size_mb(values)


def _gflops_objective(problem, values):
    return problem.gflops(values)


OBJECTIVES = (
    Objective("size_mb", -1.0, _size_objective),
    Objective("gflops", 1.0, _gflops_objective),
)
# the third objective of a front searched with a latency model (`Problem.predicted_ms`)
LATENCY_OBJECTIVE = Objective("predicted_ms", -1.0, lambda problem, values: problem.predicted_ms(values))


class ConstrainedFitness(base.Fitness):
    """A DEAP fitness under Deb's constraint-domination: `violation` (0 for a feasible genome,
    else how far it is from feasible: `Problem.violation`) ranks before the objectives.

    A feasible genome beats, and dominates, every infeasible one; of two infeasible ones the
    nearer to feasible wins. Without it every infeasible genome ties at -inf, and a search
    started among them (a tight cap, a large head-size floor) drifts blindly.
    """

    violation = 0.0

    def key(self):
        """Sort key: feasibility first (less violation is better), then the weighted values."""
        return (-self.violation, self.wvalues)

    def __hash__(self):
        return hash(self.key())

    def __eq__(self, other):
        return self.key() == other.key()

    def __ne__(self, other):
        return self.key() != other.key()

    def __lt__(self, other):
        return self.key() < other.key()

    def __le__(self, other):
        return self.key() <= other.key()

    def __gt__(self, other):
        return self.key() > other.key()

    def __ge__(self, other):
        return self.key() >= other.key()

    def __deepcopy__(self, memo):
        copy = super().__deepcopy__(memo)
        copy.violation = self.violation
        return copy

    def dominates(self, other, obj=slice(None)):
        if self.violation != other.violation:
            return self.violation < other.violation
        return super().dominates(other, obj)


# DEAP's creator is global state: the classes are made here, once, at import.
if not hasattr(creator, "ArchFitness"):
    creator.create("ArchFitness", ConstrainedFitness, weights=(1.0,))
    creator.create("ArchIndividual", list, fitness=creator.ArchFitness)
    creator.create("ParetoFitness", ConstrainedFitness, weights=tuple(o.weight for o in OBJECTIVES))
    creator.create("ParetoIndividual", list, fitness=creator.ParetoFitness)
    creator.create("ParetoLatencyFitness", ConstrainedFitness,
                   weights=tuple(o.weight for o in (*OBJECTIVES, LATENCY_OBJECTIVE)))
    creator.create("ParetoLatencyIndividual", list, fitness=creator.ParetoLatencyFitness)


# ---------------------------------------------------------------- the problem


@dataclass(frozen=True)
class Problem:
    """Scores index genomes: (n, 5) int arrays of indices into the space's choices."""

    space: SearchSpace
    teacher: Teacher
    target_mb: float
    seq_len: int
    max_mb: float | None = None
    num_labels: int = 2
    head: str = "sequence"  # the students' classifier head (`cost.HEADS`): it decides the size
    latency_model: LatencyModel | None = None  # predicts each candidate's ms (`predicted_ms`)
    max_ms: float | None = None  # candidates predicted slower are infeasible (needs latency_model)

    def __post_init__(self):
        # Cached once: the GA asks for them thousands of times.
        object.__setattr__(self, "choices", self.space.choices())
        object.__setattr__(self, "shape", self.space.shape())

    def columns(self, idx) -> list[np.ndarray]:
        """(n, 5) index genomes -> five (n,) gene-value columns."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1, 5)
        return [c[idx[:, g]] for g, c in enumerate(self.choices)]

    def values(self, idx) -> np.ndarray:
        """(n, 5) index genomes -> (n, 5) gene values."""
        return np.stack(self.columns(idx), axis=-1)

    def params(self, values) -> np.ndarray:
        """Parameter count (int64) of (n, 5) gene values (or five broadcastable columns)."""
        t = self.teacher
        return cost.params_array(
            *_unpack(values),
            max_positions=t.max_positions,
            type_vocab=t.type_vocab,
            num_labels=self.num_labels,
            head=self.head,
        )

    def size_mb(self, values) -> np.ndarray:
        """fp32 size of (n, 5) gene values (or five broadcastable columns)."""
        return cost.mb(self.params(values))

    def flops(self, values) -> dict:
        """Itemised FLOPs of (n, 5) gene values."""
        return cost.flops_array(*_unpack(values), self.seq_len, num_labels=self.num_labels)

    def score(self, cols) -> np.ndarray:
        """Fitness of five broadcastable gene-value columns; -inf when infeasible."""
        return cost.fitness_array(
            *cols,
            teacher=self.teacher,
            target_mb=self.target_mb,
            seq_len=self.seq_len,
            max_mb=self.max_mb,
            num_labels=self.num_labels,
            min_head_size=self.space.min_head_size,
            head=self.head,
            latency_model=self.latency_model,
            max_ms=self.max_ms,
        )

    def gflops(self, values) -> np.ndarray:
        """Itemised total GFLOPs of (n, 5) gene values."""
        return self.flops(values)["total"] / 1e9

    def predicted_ms(self, values, gflops=None) -> np.ndarray | None:
        """The latency model's ms of (n, 5) gene values (`gflops`: theirs, when the caller has
        them); None without a model."""
        if self.latency_model is None:
            return None
        return self.latency_model.predict_ms(values[:, 0], self.gflops(values) if gflops is None else gflops,
                                             heads=values[:, HEADS])

    def fitness(self, idx) -> np.ndarray:
        """(n, 5) index genomes -> (n,) fitness."""
        return self.score(self.columns(idx))

    def violation(self, values) -> np.ndarray:
        """How far (n, 5) gene values are from feasible, (n,): 0 exactly where the fitness is
        finite; else the space's `head_violation` plus the size's relative excess over `max_mb`
        and the predicted latency's over `max_ms`."""
        out = self.space.head_violation(values[:, HIDDEN], values[:, HEADS])
        if self.max_mb is not None:
            size = self.size_mb(values)
            out = out + np.where(size > self.max_mb, (size - self.max_mb) / self.max_mb, 0.0)
        if self.max_ms is not None:
            ms = self.predicted_ms(values)
            out = out + np.where(ms > self.max_ms, (ms - self.max_ms) / self.max_ms, 0.0)
        return out

    def best_vocab(self, cols) -> np.ndarray:
        """Index of the best vocab for each point of broadcastable gene-value `cols` (their
        vocab column is ignored); shaped like the broadcast of the others. Ties: the smaller.

        FLOPs do not depend on V (the lookup is a gather), so the best V is the one whose size
        misses the target least without passing `max_mb` (`cost.size_miss`). Size grows with V,
        so it is one of the two choices around the target or the largest within the cap. The
        parameter count is linear in V, so integer arithmetic finds those exactly
        (`cost.max_params_within`), and they are judged on their sizes as the fitness judges them.
        """
        vocabs = self.choices[VOCAB]  # (nV,)
        base = self.params([*cols[:VOCAB], 0])  # (S) parameters without the word embeddings
        per_v = self.params([*cols[:VOCAB], 1]) - base  # (S) parameters per vocabulary entry
        below_target = cost.max_params_within(self.target_mb, strict=True)
        first_over = np.searchsorted(vocabs, (below_target - base) // per_v + 1)  # size >= T
        candidates = [first_over - 1, first_over]
        if self.max_mb is not None:
            within = cost.max_params_within(self.max_mb)
            candidates.append(np.searchsorted(vocabs, (within - base) // per_v, side="right") - 1)
        candidates = np.clip(np.stack(np.broadcast_arrays(*candidates)), 0, len(vocabs) - 1)
        size = cost.mb(base + per_v * vocabs[candidates])  # (k, S)
        miss = cost.size_miss(size, self.target_mb, self.max_mb)
        # the least miss; among equal misses, the smaller vocab
        return np.where(miss == miss.min(axis=0), candidates, len(vocabs)).min(axis=0)

    def repair(self, idx: np.ndarray) -> np.ndarray:
        """Set each genome's (ffn, vocab) to the fittest pair given its other genes, in place.

        For every ffn choice the best vocab is closed-form (`best_vocab`), so the exact 2-D
        choice costs one fitness evaluation per ffn choice: (n, nD) points, vectorised.
        """
        cols = [c[:, None] for c in self.columns(idx)]  # five (n, 1)
        cols[FFN] = self.choices[FFN][None, :]  # (1, nD)
        vocab = self.best_vocab(cols)  # (n, nD) indices
        cols[VOCAB] = self.choices[VOCAB][vocab]
        ffn = np.argmax(self.score(cols), axis=1)  # (n,); ties -> the smallest ffn
        idx[:, FFN] = ffn
        idx[:, VOCAB] = vocab[np.arange(len(idx)), ffn]
        return idx

    def rows(self, idx, fitness) -> list[dict]:
        """Result dicts (genes, params, size_mb, gflops, flops_matmul, fitness, head,
        predicted_ms: None without a latency model) of genomes."""
        values = self.values(idx)
        count = self.params(values)
        fl = self.flops(values)
        ms = self.predicted_ms(values, fl["total"] / 1e9)
        out = []
        for i, row in enumerate(values):
            genes = dict(zip(GENES, (int(v) for v in row), strict=True))
            out.append(
                genes
                | dict(
                    params=int(count[i]),
                    size_mb=float(cost.mb(count[i])),  # the size the fitness judged
                    gflops=float(fl["total"][i]) / 1e9,
                    flops_matmul=int(fl["matmul"][i]),
                    fitness=float(fitness[i]),
                    head=self.head,
                    predicted_ms=None if ms is None else float(ms[i]),
                )
            )
        return out

    def smallest_mb(self) -> float:
        """fp32 size of the space's smallest architecture."""
        return cost.size_mb(self.space.smallest(), self.teacher, self.num_labels, head=self.head)

    def floor_points(self) -> np.ndarray:
        """(n, 5) gene values: every feasible (hidden, heads) pair with layers, ffn and vocab at
        their least choices. Neither size nor predicted ms falls as layers, ffn or vocab grow
        (parameters grow with each, FLOPs with layers and ffn; the latency model's coefficients
        are >= 0, so for a fixed (hidden, heads) its ms = a + (b + d * heads) * layers + c * GFLOPs
        does not fall as layers grow), so the space's least predicted ms, and whether any point
        meets both max_mb and max_ms, are decided among these few points."""
        layers, hidden, heads, ffn, vocab = self.space.choices()
        h, a = (g.ravel() for g in np.meshgrid(hidden, heads, indexing="ij"))
        fits = self.space.feasible(h, a)
        n = int(fits.sum())
        if n == 0:
            self.space.smallest()  # raises the InputError that names the space's heads and hidden
            raise InputError("no (hidden, heads) of the space is feasible")
        return np.column_stack([np.full(n, layers[0]), h[fits], a[fits], np.full(n, ffn[0]), np.full(n, vocab[0])])

    def fastest(self, within_max_mb: bool = False) -> tuple[Arch, float] | None:
        """The architecture the latency model predicts fastest (the least hidden on ties) and
        its predicted ms, among those within max_mb with `within_max_mb` (None: there is none).
        Exact over the space, heads choices of any kind included."""
        points = self.floor_points()
        ms = self.predicted_ms(points)
        if within_max_mb and self.max_mb is not None:
            ms = np.where(cost.mb(self.params(points)) <= self.max_mb, ms, np.inf)
        i = int(np.argmin(ms))
        return (Arch(*(int(g) for g in points[i])), float(ms[i])) if ms[i] < np.inf else None

    def seed_arch(self) -> Arch | None:
        """A point within max_mb and max_ms: the space's smallest without a latency budget, else
        the fastest point within max_mb; None when no point meets both."""
        if self.max_ms is None:
            return self.space.smallest()
        found = self.fastest(within_max_mb=True)
        return found[0] if found is not None and found[1] <= self.max_ms else None


def _unpack(values):
    """(n, 5) array -> its five columns; a list of five columns passes through."""
    return values.T if isinstance(values, np.ndarray) else values


def _check_finite_latency(problem: Problem) -> None:
    """InputError when the latency model's finite coefficients overflow for some architecture
    of the space (its predictions then reached the results and `--json` as Infinity). The
    prediction does not fall as layers, ffn or vocab grow (`Problem.floor_points`), so the
    largest of each beside every (hidden, heads) pair bounds them all."""
    layers, _, _, ffn, vocab = problem.space.choices()
    ceiling = problem.floor_points().copy()
    ceiling[:, 0], ceiling[:, 3], ceiling[:, 4] = max(layers), max(ffn), max(vocab)
    with np.errstate(over="ignore", invalid="ignore"):
        ms = problem.predicted_ms(ceiling)
    if not np.isfinite(ms).all():
        a = Arch(*(int(g) for g in ceiling[int(np.flatnonzero(~np.isfinite(ms))[0])]))
        raise InputError(f"latency_model: its coefficients predict no finite latency for L{a.layers} H{a.hidden} "
                         f"A{a.heads} D{a.ffn} V{a.vocab} of the space (they overflow)")


def _positive_whole(value) -> bool:
    """A whole number >= 1 (`is_whole`)."""
    return is_whole(value) and value >= 1


def _problem(space, teacher, target_mb, seq_len, max_mb, num_labels, head="sequence", latency_model=None,
             max_ms=None) -> Problem:
    """Validated problem; InputError naming the bad argument. Past it, `Problem.seed_arch` is
    feasible (within `max_mb` and `max_ms`, its heads fit): every search has a candidate."""
    if not 0 < target_mb < np.inf:
        raise InputError(f"target_mb must be positive and finite, got {target_mb}")
    check_target_mb(target_mb)
    if not _positive_whole(seq_len):  # NaN passed every comparison, then int() raised a bare ValueError
        raise InputError(f"seq_len must be a positive whole number, got {seq_len}")
    if not _positive_whole(num_labels):
        raise InputError(f"num_labels must be a positive whole number, got {num_labels}")
    if head == "pair_cosine" and num_labels != 2:  # its scale and bias give "no match" / "match"
        raise InputError(f"head pair_cosine scores two classes (match or not): num_labels must be 2, got {num_labels}")
    if seq_len > teacher.usable_positions:  # a student of the family could not read it
        raise InputError(f"seq_len {seq_len} is above {teacher.usable_positions}, the positions a "
                         f"{teacher.family} model of {teacher.name} can use")
    cost.check_head(head)
    _check_latency(latency_model, max_ms, seq_len, head)
    problem = Problem(space, teacher, float(target_mb), int(seq_len), max_mb, int(num_labels), head, latency_model,
                      None if max_ms is None else float(max_ms))
    if max_mb is not None and not max_mb < np.inf:  # (size - cap) / cap would be NaN
        raise InputError(f"max_mb={max_mb} must be finite (no cap: leave it unset)")
    if max_mb is not None and not max_mb >= problem.smallest_mb():
        raise InputError(
            f"max_mb={max_mb} is below the smallest architecture in the space ({problem.smallest_mb():.3f} MB)"
        )
    if latency_model is not None:
        _check_finite_latency(problem)
    if max_ms is not None:
        a, fastest = problem.fastest()
        if not max_ms >= fastest:
            raise InputError(
                f"max_ms={max_ms:g} is below the fastest architecture in the space: L{a.layers} H{a.hidden} "
                f"A{a.heads} D{a.ffn} is predicted at {fastest:.3f} ms ({latency_model.describe()})"
            )
        if problem.seed_arch() is None:  # each cap alone is met, by different points
            raise InputError(
                f"max_mb={max_mb:g} and max_ms={max_ms:g}: no architecture in the space meets both (the fastest, "
                f"L{a.layers} H{a.hidden} A{a.heads} D{a.ffn} V{a.vocab}, is "
                f"{cost.mb(problem.params(np.array([a.genes()]))[0]):g} MB; {latency_model.describe()})"
            )
    return problem


def _check_latency(latency_model, max_ms, seq_len, head) -> None:
    """InputError for a budget without a model, or a model of other inputs than the students'."""
    if max_ms is not None and not 0 < max_ms < np.inf:
        raise InputError(f"max_ms must be positive and finite, got {max_ms}")
    if max_ms is not None and latency_model is None:
        raise InputError("max_ms: needs a latency model to predict candidates' latency "
                         "(`python -m ray_jobs bench latency-model` fits one)")
    if latency_model is not None and latency_model.seq_len != seq_len:
        raise InputError(f"latency_model: fitted at seq_len {latency_model.seq_len}, the search counts "
                         f"FLOPs at {seq_len}: refit it at {seq_len}")
    pair = cost.reads_pairs(head)  # a bi-encoder student encodes both sides of a pair
    if latency_model is not None and latency_model.pair != pair:
        fitted = "pairs encoded separately" if latency_model.pair else "single sequences"
        wanted = "pairs encoded separately" if pair else "single sequences"
        raise InputError(f"latency_model: fitted on {fitted}; students with the {head} head read {wanted}")


def _check_target(problem: Problem) -> None:
    """InputError when even the space's smallest architecture is over the budget: the fitness
    only penalises |size - T|, so the search would return students far over it."""
    floor = problem.smallest_mb()
    if problem.target_mb < floor:
        a = problem.space.smallest()
        raise InputError(
            f"target_mb={problem.target_mb:g} is below the smallest architecture in the space "
            f"({floor:.3f} MB: L{a.layers} H{a.hidden} A{a.heads} D{a.ffn} V{a.vocab})"
        )


# ---------------------------------------------------------------- operators


def _individual(genes, cls=None):
    return (cls or creator.ArchIndividual)([int(g) for g in genes])


def init_random(shape, rng: random.Random, cls=None):
    """A genome drawn uniformly from a grid of `shape` (choices per gene)."""
    return _individual((rng.randrange(n) for n in shape), cls)


def cx_one_point(a, b, rng: random.Random):
    """One-point crossover: the child takes a's genes before a random cut, b's after it."""
    cut = rng.randrange(1, len(a))
    return _individual(list(a[:cut]) + list(b[cut:]), type(a))


def cx_uniform(a, b, rng: random.Random):
    """Uniform crossover: each gene from either parent with probability 1/2."""
    return _individual((x if rng.random() < 0.5 else y for x, y in zip(a, b, strict=True)), type(a))


def mut_tail(ind, shape, rng: random.Random):
    """The paper's mutation: pick a cut, re-sample every gene after it uniformly. In place."""
    cut = rng.randrange(len(ind))
    for g in range(cut, len(ind)):
        ind[g] = rng.randrange(shape[g])
    return (ind,)


def mut_index_step(ind, shape, rng: random.Random, genes=None):
    """Move one or more genes a few choices up or down (clipped to the space). In place.

    Each gene in `genes` moves with probability 1/len(genes), at least one always moves; the
    step is 1 half of the time, else uniform in [2, max(2, n // 4)] (n: the gene's choices).
    """
    genes = range(len(ind)) if genes is None else genes
    p = 1.0 / len(genes)
    moving = [g for g in genes if rng.random() < p] or [genes[int(rng.random() * len(genes))]]
    for g in moving:
        big = max(2, shape[g] // 4)  # largest step
        step = 1 if rng.random() < 0.5 else 2 + int(rng.random() * (big - 1))
        sign = 1 if rng.random() < 0.5 else -1
        ind[g] = min(max(ind[g] + sign * step, 0), shape[g] - 1)
    return (ind,)


def sel_tournament(ranked, k, rng: random.Random, size=3):
    """k winners of `size`-way tournaments (DEAP's selTournament, seeded, without its cost).

    `ranked` is sorted best first (as `sel_best_distinct` returns it), so a tournament's
    winner is the entrant with the smallest rank: floor(n * min of `size` uniforms), and the
    min of `size` uniforms is distributed as 1 - u ** (1 / size): one draw per tournament.
    """
    n = len(ranked)
    # random() may return 0.0 (a chance of 2**-53), which would rank n: capped, not redrawn,
    # so every seed keeps its draws
    return [ranked[min(n - 1, int(n * (1.0 - rng.random() ** (1.0 / size))))] for _ in range(k)]


def sel_best_distinct(inds, k):
    """The best k individuals with distinct genomes: duplicates never crowd the population."""
    seen, out = set(), []
    for ind in sorted(inds, key=lambda ind: ind.fitness.key(), reverse=True):
        key = tuple(ind)
        if key not in seen:
            seen.add(key)
            out.append(ind)
            if len(out) == k:
                break
    return out


# ---------------------------------------------------------------- the GA


def _repair(problem: Problem, idx: np.ndarray) -> np.ndarray:
    """The default variant's budget-respecting repair of (n, 5) genomes, in place.

    The size term couples the genes: a wider `hidden` only pays if `ffn` or `vocab` shrinks
    at once, which single-gene mutations cannot do. So after variation, (ffn, vocab) take
    their fittest values given the other genes, and the GA searches layers, hidden and heads.
    """
    return problem.repair(idx)


def _evaluate(problem: Problem, inds, archive: dict, repair: bool):
    """Score individuals in one vectorised call (repairing them first when asked)."""
    idx = np.array(inds, dtype=np.int64).reshape(-1, 5)  # (n, 5)
    if repair:
        _repair(problem, idx)
        for ind, row in zip(inds, idx.tolist(), strict=True):
            ind[:] = row
    fitness = problem.fitness(idx)
    for ind, f in zip(inds, fitness.tolist(), strict=True):
        ind.fitness.values = (f,)
        archive[tuple(ind)] = f
    bad = np.flatnonzero(~np.isfinite(fitness))  # only these need a violation (default 0)
    for i, v in zip(bad, problem.violation(problem.values(idx[bad])).tolist(), strict=True):
        inds[i].fitness.violation = v


def _seed_feasible(problem: Problem, pop: list, evaluate) -> None:
    """When no genome of the random first population is feasible, `Problem.seed_arch`
    replaces its last one, in place: it is always feasible (`_problem`), so the search has a
    feasible point to grow from and never comes back empty-handed."""
    if any(ind.fitness.violation == 0 for ind in pop):
        return
    pop[-1] = _individual(problem.space.index_of(problem.seed_arch()), type(pop[-1]))
    evaluate(pop[-1:])


def _two_parents(pop, rng: random.Random):
    """Two different random parents, or the only one twice: a population holds one distinct
    genome when the space has one point."""
    return rng.sample(pop, 2) if len(pop) > 1 else [pop[0], pop[0]]


def _paper_child(pop, problem, rng, crossover_rate):
    """Algorithm 1: one-point crossover of two random parents, else tail mutation of one."""
    if rng.random() < crossover_rate:
        a, b = _two_parents(pop, rng)
        return cx_one_point(a, b, rng)
    child = _individual(rng.choice(pop))
    mut_tail(child, problem.shape, rng)
    return child


def _default_child(pop, problem, rng, crossover_rate):
    """Tournament parents, uniform crossover, then an index-step mutation of a free gene."""
    if rng.random() < crossover_rate:
        a, b = sel_tournament(pop, 2, rng)
        child = cx_uniform(a, b, rng)
    else:
        child = _individual(sel_tournament(pop, 1, rng)[0])
    free = [g for g in range(len(GENES)) if g not in REPAIRED and problem.shape[g] > 1]
    mut_index_step(child, problem.shape, rng, genes=free or None)
    return child


# The single-objective GA breeds its genomes one at a time in Python, each generation's children
# held at once: `children=1e30` grew a job's driver by 2.5 GB in 40 s without a line of output.
MAX_GA_SIZE = {"population": 10_000, "children": 10_000, "generations": 10_000}


def check_ga_size(**sizes: int) -> None:
    """InputError naming the first of `sizes` (population, children, generations) above its
    MAX_GA_SIZE: refused before any work, not a driver that allocates for ever."""
    for name, value in sizes.items():
        if value > MAX_GA_SIZE[name]:
            raise InputError(f"{name}: at most {MAX_GA_SIZE[name]:,}, got {value:,}")


# The fitness GFLOPs - |size - T| holds T's magnitude: at T = 1e308 MB every candidate scored
# -1e308, its GFLOPs lost to rounding (the ranking was genome order). 1e6 MB (1 TB) is far above
# any model the spaces build and keeps GFLOPs differences of 1e-9 in float64.
MAX_TARGET_MB = 1e6


def check_target_mb(target_mb: float) -> None:
    """InputError for a size budget above MAX_TARGET_MB (the fitness could not rank by GFLOPs)."""
    if target_mb > MAX_TARGET_MB:
        raise InputError(f"target_mb: at most {MAX_TARGET_MB:,.0f} MB (1 TB; above it the fitness "
                         f"GFLOPs - |size - T| loses GFLOPs to rounding), got {target_mb!r}")


def run_ga(
    space: SearchSpace,
    teacher: Teacher,
    target_mb: float,
    seq_len: int,
    *,
    variant: str = "default",
    population: int = 50,
    generations: int = 100,
    crossover_rate: float = 0.6,
    children: int = 50,
    seed: int | None = None,
    top_k: int = 1,
    max_mb: float | None = None,
    num_labels: int = 2,
    head: str = "sequence",
    latency_model: LatencyModel | None = None,
    max_ms: float | None = None,
    history: list | None = None,
) -> list[dict]:
    """Genetic search; the top-k distinct feasible candidates it explored, best first (ties:
    the smaller genome first). Never empty: `Problem.seed_arch` fits (else InputError), and
    the first population holds it when no random genome is feasible.

    Budget: `population` random genomes, then `generations` x `children` new ones (mu + lambda:
    the best `population` distinct genomes of parents + children survive). The paper variant
    explores the genomes it evaluates; the default variant explores, for each (layers, hidden,
    heads) it evaluates, the whole (ffn, vocab) block its repair searched (`_top_k`). Each dict
    holds layers, hidden, heads, ffn, vocab, params, size_mb (fp32), gflops, flops_matmul,
    fitness, head (the classifier head the size counts), predicted_ms (`latency_model`'s; None
    without one). With `max_ms`, candidates predicted slower are infeasible.

    `history`, a list, receives one `generation_stats` dict per generation (0: the first
    population), as DEAP's logbook would: the population's convergence.
    """
    if variant not in VARIANTS:
        raise InputError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if population < 2 or children < 1 or generations < 0 or top_k < 1:
        raise InputError(
            "population >= 2, children >= 1, generations >= 0 and top_k >= 1 are required"
        )
    check_ga_size(population=population, children=children, generations=generations)
    problem = _problem(space, teacher, target_mb, seq_len, max_mb, num_labels, head, latency_model, max_ms)
    _check_target(problem)
    rng = random.Random(seed)
    make_child = _paper_child if variant == "paper" else _default_child
    repair = variant == "default"
    archive: dict[tuple, float] = {}  # every genome evaluated -> fitness (for the top-k)

    def evaluate(inds):
        _evaluate(problem, inds, archive, repair)

    pop = [init_random(problem.shape, rng) for _ in range(population)]
    evaluate(pop)
    _seed_feasible(problem, pop, evaluate)
    pop = sel_best_distinct(pop, population)  # ranked best first, as selection expects
    _log(history, 0, pop, archive)
    for generation in range(1, generations + 1):
        kids = [make_child(pop, problem, rng, crossover_rate) for _ in range(children)]
        evaluate(kids)
        pop = sel_best_distinct(pop + kids, population)  # mu + lambda: the best parents stay
        _log(history, generation, pop, archive)
    return _top_k(problem, archive, top_k, blocks=repair)


def generation_stats(generation: int, pop: list, archive: dict) -> dict:
    """One generation's logbook entry: the distinct genomes evaluated so far (`archive`, as
    repaired), the population's size and feasible genomes, and its best and median fitness over
    those (None when none is feasible)."""
    fitness = sorted(ind.fitness.values[0] for ind in pop if ind.fitness.violation == 0)
    return {
        "generation": generation,
        "explored": len(archive),
        "population": len(pop),
        "feasible": len(fitness),
        "best": fitness[-1] if fitness else None,
        "median": float(np.median(fitness)) if fitness else None,
    }


def _log(history: list | None, generation: int, pop: list, archive: dict) -> None:
    if history is not None:
        history.append(generation_stats(generation, pop, archive))


def _top_k(problem: Problem, archive: dict, k: int, blocks: bool) -> list[dict]:
    """Rows of the k best feasible genomes explored, best first; ties: the smaller genome first.

    With `blocks` (the default variant) the explored points are the whole (ffn, vocab) blocks
    of the archive's (layers, hidden, heads) triples: its repair searched each block exactly
    but kept only the best point, so without them a runner-up that shares a triple with a
    better genome could never be listed.
    """
    ranked = sorted((-f, g) for g, f in archive.items() if f > -np.inf)  # (-fitness, genome)
    if blocks:
        ranked = _block_points(problem, ranked, k)
    ranked = ranked[:k]
    if not ranked:
        return []
    return problem.rows([g for _, g in ranked], [-f for f, _ in ranked])


def _block_points(problem: Problem, ranked: list, k: int) -> list:
    """The k best (-fitness, genome) of the (ffn, vocab) blocks of `ranked`'s triples, sorted.

    `ranked` (sorted) holds each block's best point, the repair's choice. A block whose best is
    below the k-th best of `ranked` holds no top-k point: it is not scored (for k = 1, only the
    best genome's block is).
    """
    floor = ranked[k - 1][0] if len(ranked) >= k else np.inf
    triples = sorted(g[:FFN] for f, g in ranked if f <= floor)
    out = []
    for start in range(0, len(triples), BLOCK_CHUNK):
        out += _best_in_blocks(problem, triples[start : start + BLOCK_CHUNK], k)
    return sorted(out)[:k]


def _best_in_blocks(problem: Problem, triples: list, k: int) -> list:
    """The k best feasible (-fitness, genome) over every (ffn, vocab) of sorted index `triples`."""
    t = np.array(triples, dtype=np.int64)  # (m, 3)
    cols = [c[t[:, g]][:, None, None] for g, c in enumerate(problem.choices[:FFN])]  # (m, 1, 1)
    cols += [problem.choices[FFN][None, :, None], problem.choices[VOCAB][None, None, :]]
    shape = (len(t), len(problem.choices[FFN]), len(problem.choices[VOCAB]))
    # Raveled in genome order (triples sorted, then ffn, vocab): position ties are genome ties.
    flat = np.broadcast_to(problem.score(cols), shape).ravel()
    best = _best_flat(flat, k)
    i, d, v = np.unravel_index(best, shape)
    return [
        (-float(flat[b]), (*triples[i_], int(d_), int(v_)))
        for b, i_, d_, v_ in zip(best, i, d, v, strict=True)
    ]


def _best_flat(flat: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest finite values of 1-D `flat`, best first. Ties: the smaller
    position first, also where they straddle the k-th place (argpartition picks at random)."""
    if k == 1:
        best = np.array([np.argmax(flat)])  # argmax: the first of the largest
        return best[flat[best] > -np.inf]
    # Only feasible points: under a tight cap nearly all are -inf, and partitioning millions
    # of equal values is slow (3 s on the paper's grid).
    finite = np.flatnonzero(flat > -np.inf)
    values = flat[finite]
    k = min(k, len(values))
    if k == 0:
        return finite
    kth = np.partition(values, len(values) - k)[len(values) - k]  # the k-th largest value
    above = finite[values > kth]
    best = np.concatenate([above, finite[values == kth][: k - len(above)]])
    return best[np.lexsort((best, -flat[best]))]


# ---------------------------------------------------------------- exhaustive


def exhaustive(
    space: SearchSpace,
    teacher: Teacher,
    target_mb: float,
    seq_len: int,
    *,
    top_k: int = 1,
    max_mb: float | None = None,
    num_labels: int = 2,
    head: str = "sequence",
    latency_model: LatencyModel | None = None,
    max_ms: float | None = None,
    **ga_options,
) -> list[dict]:
    """The true top-k: every grid point scored with numpy broadcasting (no loop over points).
    Ties: the smaller genome first.

    Accepts (and ignores) the GA's own options (`GA_OPTIONS`: variant, population, seed, ...)
    so it can be called with the same arguments as `run_ga`; any other keyword is a TypeError,
    as it is for `run_ga`.
    """
    unknown = sorted(set(ga_options) - set(GA_OPTIONS))
    if unknown:
        raise TypeError(f"exhaustive() got an unexpected keyword argument {unknown[0]!r}")
    if top_k < 1:
        raise InputError(f"top_k >= 1 is required, got {top_k}")
    problem = _problem(space, teacher, target_mb, seq_len, max_mb, num_labels, head, latency_model, max_ms)
    _check_target(problem)
    fit = problem.score(space.grid())  # (nL, nH, nA, nD, nV)
    flat = np.broadcast_to(fit, space.shape()).ravel()  # raveled in genome order
    best = _best_flat(flat, top_k)
    return problem.rows(space.unravel(best), flat[best])


# ---------------------------------------------------------------- Pareto front


def pareto(
    space: SearchSpace,
    teacher: Teacher,
    seq_len: int,
    *,
    population: int = 100,
    generations: int = 100,
    crossover_rate: float = 0.6,
    seed: int | None = None,
    max_mb: float | None = None,
    num_labels: int = 2,
    head: str = "sequence",
    latency_model: LatencyModel | None = None,
    max_ms: float | None = None,
) -> list[dict]:
    """NSGA-II over `OBJECTIVES` (size_mb down, gflops up), and with `latency_model` over
    `LATENCY_OBJECTIVE` too (predicted_ms down): the distinct non-dominated set found, each
    point then checked against the whole grid (`on_grid_front`): one that another point of
    the space beats gives way to a point nothing beats, and its row says `replaced` True.

    Each dict holds the genes, params, size_mb, gflops, flops_matmul, predicted_ms (None
    without a latency model; fitness is None: there is no single target), vocab at its least
    choice (it only adds size), sorted by the objectives in order (size, then GFLOPs, then ms),
    then by genome. Points over `max_mb` or `max_ms` or infeasible in the space (heads not
    dividing hidden, a head size below `min_head_size`) are dominated by every feasible one, and by those nearer to feasible
    (`ConstrainedFitness`). Never empty, as `run_ga`.
    """
    if population < 2 or generations < 0:
        raise InputError(
            f"population >= 2 and generations >= 0 are required, got {population}, {generations}"
        )
    check_ga_size(generations=generations)
    if population > MAX_POPULATION:  # refused before any work, not hours of sorting later
        raise InputError(f"population: at most {MAX_POPULATION:,} (NSGA-II's dominance matrix over "
                         f"parents and children grows with its square), got {population:,}")
    # The target is unused here (no scalar fitness); the problem supplies sizes and FLOPs.
    problem = _problem(space, teacher, 1.0, seq_len, max_mb, num_labels, head, latency_model, max_ms)
    rng = random.Random(seed)
    objectives = OBJECTIVES if latency_model is None else (*OBJECTIVES, LATENCY_OBJECTIVE)
    cls = creator.ParetoIndividual if latency_model is None else creator.ParetoLatencyIndividual

    def evaluate(inds):
        _evaluate_objectives(problem, inds, objectives)

    pop = [init_random(problem.shape, rng, cls) for _ in range(population)]
    evaluate(pop)
    _seed_feasible(problem, pop, evaluate)
    for _ in range(generations):
        kids = []
        for _ in range(population):
            a, b = _two_parents(pop, rng)
            child = cx_uniform(a, b, rng) if rng.random() < crossover_rate else _individual(a, cls)
            mut_index_step(child, problem.shape, rng)
            kids.append(child)
        evaluate(kids)
        pop = sel_nsga2(_distinct(pop + kids), population)
    front = sort_nondominated(_distinct(pop), len(pop), first_front_only=True)[0]
    # The vocabulary moves only the size (no objective but size reads it): the least one
    # dominates the others, so each front point takes it and the front is filtered again.
    slim = [_individual([*ind[:VOCAB], 0], cls) for ind in front if ind.fitness.violation == 0]
    evaluate(slim)
    slim = _distinct(slim)
    front = sort_nondominated(slim, len(slim), first_front_only=True)[0] if slim else []
    genomes, replaced = on_grid_front(problem, [list(ind) for ind in front], objectives)
    keys = _objective_matrix(problem, problem.values(np.array(genomes, dtype=np.int64).reshape(-1, 5)), objectives)
    order = sorted(range(len(genomes)), key=lambda i: (tuple(keys[i]), genomes[i]))  # size first
    rows = problem.rows([genomes[i] for i in order], [0.0] * len(order))
    return [row | {"fitness": None, "replaced": replaced[i]} for row, i in zip(rows, order, strict=True)]


def _objective_matrix(problem: Problem, values: np.ndarray, objectives, weighted: bool = False) -> np.ndarray:
    """(n, objectives) values of (n, 5) gene values; `weighted`: times each weight, so that
    larger is better in every column."""
    return np.stack([(o.weight if weighted else 1.0) * np.asarray(o.fn(problem, values), dtype=np.float64)
                     for o in objectives], axis=1)


def on_grid_front(problem: Problem, genomes: list[list[int]], objectives=OBJECTIVES,
                  ) -> tuple[list[list[int]], list[bool]]:
    """NSGA-II's front checked against every feasible point of the grid (vocab at its least):
    a genome some point beats on every objective (NSGA-II compares within its population only)
    gives way to the best of those that beat it, ordered by the objectives in turn, which no
    point beats (a point beating it would beat the genome too, and come before it). Returns
    (the distinct genomes, whether each replaced one of NSGA-II's)."""
    if not genomes:
        return [], []
    shape = problem.shape
    grid = np.indices(shape[:VOCAB]).reshape(VOCAB, -1).T
    grid = np.concatenate([grid, np.zeros((len(grid), 1), dtype=grid.dtype)], axis=1)
    values = problem.values(grid)
    feasible = problem.violation(values) == 0
    grid, values = grid[feasible], values[feasible]
    # objective columns with "larger is better" for each (the weight's sign)
    better = _objective_matrix(problem, values, objectives, weighted=True)
    own = _objective_matrix(problem, problem.values(np.array(genomes, dtype=np.int64)), objectives, weighted=True)
    replaced: dict[tuple[int, ...], bool] = {}  # genome -> replaced, in first-seen order
    for genome, point in zip(genomes, own, strict=True):
        beats = np.all(better >= point, axis=1) & np.any(better > point, axis=1)
        if beats.any():
            rivals = np.flatnonzero(beats)
            # the first of the rivals by objective 1, then 2, ... (lexsort keys run last-first)
            genome = grid[rivals[np.lexsort(tuple(-better[rivals, k] for k in reversed(range(better.shape[1]))))[0]]]
        key = tuple(int(g) for g in genome)
        replaced[key] = replaced.get(key, False) or bool(beats.any())
    return [list(k) for k in replaced], list(replaced.values())


def _distinct(inds):
    seen = {}
    for ind in inds:
        seen.setdefault(tuple(ind), ind)
    return list(seen.values())


def _evaluate_objectives(problem: Problem, inds, objectives=OBJECTIVES):
    """Set each individual's objective values and its violation (0 when feasible): an
    infeasible one keeps its values, but `ConstrainedFitness` ranks it behind every feasible one."""
    idx = np.array(inds, dtype=np.int64).reshape(-1, 5)
    values = problem.values(idx)
    columns = _objective_matrix(problem, values, objectives)
    violation = problem.violation(values)
    for i, ind in enumerate(inds):
        ind.fitness.values = tuple(float(v) for v in columns[i])
        ind.fitness.violation = float(violation[i])
