"""Genetic search for student architectures (DEAP), its exhaustive check, and a Pareto front.

- `run_ga(..., variant="paper")`: the Compressor paper's Algorithm 1, as written.
- `run_ga(..., variant="default")`: the same fitness and evaluation budget with operators
  that respect the size budget; reaches the true optimum (see `python -m search bench`).
- `exhaustive(...)`: scores every grid point with numpy broadcasting: the true top-k.
- `pareto(...)`: NSGA-II over `OBJECTIVES` (size down, GFLOPs up).

Genomes are index vectors into the `SearchSpace` choice tuples (layers, hidden, heads, ffn,
vocab), so every operator keeps genes inside the space by construction. Fitness is the
paper's GFLOPs - |size_MB - T| with the itemised total FLOPs at the real sequence length and
the size of the fp32 classifier with `num_labels` outputs and the students' `head` (what the
compression job trains; `cost.HEADS`); infeasible points (over `max_mb`, heads not dividing hidden, a head size hidden / heads
below the space's `min_head_size`) score -inf.

All randomness comes from one `random.Random(seed)` per call: no global state is touched,
so runs are reproducible and independent of each other.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from deap import base, creator, tools

from search import cost
from search.space import GENES, SearchSpace, Teacher

VARIANTS = ("paper", "default")
HIDDEN, HEADS, FFN, VOCAB = (GENES.index(g) for g in ("hidden", "heads", "ffn", "vocab"))
# Genes the default variant sets by repair instead of mutation (see `_repair`).
REPAIRED = (FFN, VOCAB)


@dataclass(frozen=True)
class Objective:
    """One NSGA-II objective: `fn(problem, values (n, 5)) -> (n,)`, weight -1 minimise, +1 maximise.

    A measured latency objective is one more entry in `OBJECTIVES` whose `fn` looks the
    genomes up in a latency table or predictor.
    """

    name: str
    weight: float
    fn: Callable


def _size_objective(problem, values):
    return problem.size_mb(values)


def _gflops_objective(problem, values):
    return problem.flops(values)["total"] / 1e9


OBJECTIVES = (
    Objective("size_mb", -1.0, _size_objective),
    Objective("gflops", 1.0, _gflops_objective),
)

# DEAP's creator is global state: the classes are made here, once, at import.
if not hasattr(creator, "ArchFitness"):
    creator.create("ArchFitness", base.Fitness, weights=(1.0,))
    creator.create("ArchIndividual", list, fitness=creator.ArchFitness)
    creator.create("ParetoFitness", base.Fitness, weights=tuple(o.weight for o in OBJECTIVES))
    creator.create("ParetoIndividual", list, fitness=creator.ParetoFitness)


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

    def size_mb(self, values) -> np.ndarray:
        """fp32 size of (n, 5) gene values (or five broadcastable columns)."""
        t = self.teacher
        return cost.size_mb_array(
            *_unpack(values),
            max_positions=t.max_positions,
            type_vocab=t.type_vocab,
            num_labels=self.num_labels,
            head=self.head,
        )

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
        )

    def fitness(self, idx) -> np.ndarray:
        """(n, 5) index genomes -> (n,) fitness."""
        return self.score(self.columns(idx))

    def best_vocab(self, cols) -> np.ndarray:
        """Index of the best vocab for each point of broadcastable gene-value `cols` (their
        vocab column is ignored); shaped like the broadcast of the others.

        FLOPs do not depend on V (the lookup is a gather) and size is linear in V, so the best
        V is the one whose size is nearest the target without passing `max_mb`: one of the two
        choices around the exact solution, or the largest choice under the cap. Closed form.
        """
        vocabs = self.choices[VOCAB]  # (nV,)
        base = self.size_mb([*cols[:VOCAB], 0])  # size without the word embeddings
        per_v = self.size_mb([*cols[:VOCAB], 1]) - base  # MB per vocabulary entry
        last = len(vocabs) - 1
        j = np.searchsorted(vocabs, (self.target_mb - base) / per_v)
        candidates = [np.clip(j - 1, 0, last), np.clip(j, 0, last)]
        if self.max_mb is not None:
            under = np.searchsorted(vocabs, (self.max_mb - base) / per_v, side="right") - 1
            candidates.append(np.clip(under, 0, last))
        best, best_miss = None, None
        for v in candidates:  # 2 or 3 arrays shaped S
            size = base + per_v * vocabs[v]
            miss = np.abs(size - self.target_mb)
            if self.max_mb is not None:
                miss = np.where(size > self.max_mb, np.inf, miss)  # all over: any, it scores -inf
            if best is None:
                best, best_miss = v, miss
            else:
                better = miss < best_miss  # ties keep the smaller vocab
                best, best_miss = np.where(better, v, best), np.where(better, miss, best_miss)
        return best

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
        """Result dicts (genes, params, size_mb, gflops, flops_matmul, fitness, head) of genomes."""
        values = self.values(idx)
        t = self.teacher
        count = cost.params_array(
            *values.T,
            max_positions=t.max_positions,
            type_vocab=t.type_vocab,
            num_labels=self.num_labels,
            head=self.head,
        )
        fl = self.flops(values)
        out = []
        for i, row in enumerate(values):
            genes = dict(zip(GENES, (int(v) for v in row), strict=True))
            out.append(
                genes
                | dict(
                    params=int(count[i]),
                    size_mb=float(count[i]) * cost.BYTES_PER_PARAM["fp32"] / 1e6,
                    gflops=float(fl["total"][i]) / 1e9,
                    flops_matmul=int(fl["matmul"][i]),
                    fitness=float(fitness[i]),
                    head=self.head,
                )
            )
        return out

    def smallest_mb(self) -> float:
        """fp32 size of the space's smallest architecture."""
        return cost.size_mb(self.space.smallest(), self.teacher, self.num_labels, head=self.head)


def _unpack(values):
    """(n, 5) array -> its five columns; a list of five columns passes through."""
    return values.T if isinstance(values, np.ndarray) else values


def _problem(space, teacher, target_mb, seq_len, max_mb, num_labels, head="sequence") -> Problem:
    """Validated problem; ValueError naming the bad argument."""
    if not target_mb > 0:
        raise ValueError(f"target_mb must be positive, got {target_mb}")
    if seq_len <= 0:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    cost.check_head(head)
    problem = Problem(space, teacher, float(target_mb), int(seq_len), max_mb, num_labels, head)
    if max_mb is not None and max_mb < problem.smallest_mb():
        raise ValueError(
            f"max_mb={max_mb} is below the smallest architecture in the space ({problem.smallest_mb():.3f} MB)"
        )
    return problem


def _check_target(problem: Problem) -> None:
    """ValueError when even the space's smallest architecture is over the budget: the fitness
    only penalises |size - T|, so the search would return students far over it."""
    floor = problem.smallest_mb()
    if problem.target_mb < floor:
        a = problem.space.smallest()
        raise ValueError(
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
    return [ranked[int(n * (1.0 - rng.random() ** (1.0 / size)))] for _ in range(k)]


def sel_best_distinct(inds, k):
    """The best k individuals with distinct genomes: duplicates never crowd the population."""
    seen, out = set(), []
    for ind in sorted(inds, key=lambda ind: ind.fitness, reverse=True):
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
    for ind, f in zip(inds, problem.fitness(idx), strict=True):
        ind.fitness.values = (float(f),)
        archive[tuple(ind)] = float(f)


def _paper_child(pop, problem, rng, crossover_rate):
    """Algorithm 1: one-point crossover of two random parents, else tail mutation of one."""
    if rng.random() < crossover_rate:
        a, b = rng.sample(pop, 2)
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
) -> list[dict]:
    """Genetic search; the top-k distinct feasible candidates it evaluated, best first.

    Budget: `population` random genomes, then `generations` x `children` new ones (mu + lambda:
    the best `population` distinct genomes of parents + children survive). Each dict holds
    layers, hidden, heads, ffn, vocab, params, size_mb (fp32), gflops, flops_matmul, fitness,
    head (the classifier head the size counts).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if population < 2 or children < 1 or generations < 0 or top_k < 1:
        raise ValueError(
            "population >= 2, children >= 1, generations >= 0 and top_k >= 1 are required"
        )
    problem = _problem(space, teacher, target_mb, seq_len, max_mb, num_labels, head)
    _check_target(problem)
    rng = random.Random(seed)
    make_child = _paper_child if variant == "paper" else _default_child
    repair = variant == "default"
    archive: dict[tuple, float] = {}  # every genome evaluated -> fitness (for the top-k)

    pop = [init_random(problem.shape, rng) for _ in range(population)]
    _evaluate(problem, pop, archive, repair)
    pop = sel_best_distinct(pop, population)  # ranked best first, as selection expects
    for _ in range(generations):
        kids = [make_child(pop, problem, rng, crossover_rate) for _ in range(children)]
        _evaluate(problem, kids, archive, repair)
        pop = sel_best_distinct(pop + kids, population)
    return _top_k(problem, archive, top_k)


def _top_k(problem: Problem, archive: dict, k: int) -> list[dict]:
    ranked = sorted(((f, g) for g, f in archive.items() if f > -np.inf), reverse=True)[:k]
    if not ranked:
        return []
    return problem.rows([g for _, g in ranked], [f for f, _ in ranked])


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
    **_ga_options,
) -> list[dict]:
    """The true top-k: every grid point scored with numpy broadcasting (no loop over points).

    Accepts (and ignores) the GA's own options (variant, population, seed, ...) so it can be
    called with the same arguments as `run_ga`.
    """
    problem = _problem(space, teacher, target_mb, seq_len, max_mb, num_labels, head)
    _check_target(problem)
    fit = cost.fitness_array(
        *space.grid(),
        teacher=teacher,
        target_mb=problem.target_mb,
        seq_len=problem.seq_len,
        max_mb=max_mb,
        num_labels=num_labels,
        min_head_size=space.min_head_size,
        head=head,
    )  # (nL, nH, nA, nD, nV)
    flat = np.broadcast_to(fit, space.shape()).ravel()
    k = min(top_k, flat.size)
    if k == 1:
        best = np.array([np.argmax(flat)])
    else:
        best = np.argpartition(flat, flat.size - k)[flat.size - k :]
        best = best[np.argsort(-flat[best], kind="stable")]
    best = best[flat[best] > -np.inf]
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
) -> list[dict]:
    """NSGA-II over `OBJECTIVES` (size_mb down, gflops up): the distinct non-dominated set found.

    Each dict holds the genes, params, size_mb, gflops, flops_matmul (fitness is None: there
    is no single target). Points over `max_mb` or infeasible in the space (heads not dividing
    hidden, a head size below `min_head_size`) are dominated by every feasible one.
    """
    # The target is unused here (no scalar fitness); the problem supplies sizes and FLOPs.
    problem = _problem(space, teacher, 1.0, seq_len, max_mb, num_labels, head)
    rng = random.Random(seed)
    cls = creator.ParetoIndividual

    pop = [init_random(problem.shape, rng, cls) for _ in range(population)]
    _evaluate_objectives(problem, pop)
    for _ in range(generations):
        kids = []
        for _ in range(population):
            a, b = rng.sample(pop, 2)
            child = cx_uniform(a, b, rng) if rng.random() < crossover_rate else _individual(a, cls)
            mut_index_step(child, problem.shape, rng)
            kids.append(child)
        _evaluate_objectives(problem, kids)
        pop = tools.selNSGA2(_distinct(pop + kids), population)
    front = tools.sortNondominated(_distinct(pop), len(pop), first_front_only=True)[0]
    front = [ind for ind in front if all(np.isfinite(ind.fitness.values))]
    front.sort(key=lambda ind: ind.fitness.values)
    rows = problem.rows([list(ind) for ind in front], [0.0] * len(front))
    return [row | {"fitness": None} for row in rows]


def _distinct(inds):
    seen = {}
    for ind in inds:
        seen.setdefault(tuple(ind), ind)
    return list(seen.values())


def _evaluate_objectives(problem: Problem, inds):
    """Set each individual's objective values; infeasible ones get the worst possible values."""
    idx = np.array(inds, dtype=np.int64).reshape(-1, 5)
    values = problem.values(idx)
    columns = [np.asarray(o.fn(problem, values), dtype=np.float64) for o in OBJECTIVES]
    bad = ~problem.space.feasible(values[:, HIDDEN], values[:, HEADS])
    if problem.max_mb is not None:
        bad = bad | (problem.size_mb(values) > problem.max_mb)
    for i, ind in enumerate(inds):
        if bad[i]:
            ind.fitness.values = tuple(-np.inf * o.weight for o in OBJECTIVES)
        else:
            ind.fitness.values = tuple(float(c[i]) for c in columns)
