"""NSGA-II's non-dominated sort and selection with numpy: DEAP's results, not its O(M N^2)
Python loop.

`tools.sortNondominated` compares every pair of fitnesses in Python: about 19 s a generation
for a population of 2,000 on one core, so `--pareto --population 5000` with the default 100
generations would run for hours. Here the dominance matrix is built by numpy in row blocks,
and the fronts are peeled from it in the order DEAP's algorithm visits them, so
`sort_nondominated` and `sel_nsga2` return the very lists `tools.sortNondominated` and
`tools.selNSGA2` return (a test compares them on random and constrained populations). The
memory is one byte per pair of distinct fitnesses: 400 MB at 20,000 (`MAX_POPULATION`).
"""

from __future__ import annotations

from itertools import chain
from operator import attrgetter

import numpy as np
from deap import tools

# NSGA-II's population at most: its parents and children, 2 x this many distinct fitnesses,
# make a dominance matrix of (2 x 10,000)^2 bytes = 400 MB.
MAX_POPULATION = 10_000
_BLOCK = 512  # rows of the dominance matrix computed at once: 512 x n x objectives comparisons


def _fitness_groups(individuals) -> tuple[list, list[list]]:
    """(distinct fitnesses in first-seen order, the individuals of each): DEAP's grouping,
    by the fitness's own equality (`ConstrainedFitness`: violation and weighted values)."""
    groups: dict = {}
    for ind in individuals:
        groups.setdefault(ind.fitness, []).append(ind)
    return list(groups), list(groups.values())


def dominance_matrix(fits) -> np.ndarray:
    """(n, n) bools: [i, j] when fitness i dominates fitness j. Under Deb's constraints
    (`violation`, 0 when feasible; absent: 0) a smaller violation dominates; at equal
    violations, no worse on every weighted value and better on one (`Fitness.dominates`)."""
    w = np.array([f.wvalues for f in fits], dtype=np.float64).reshape(len(fits), -1)
    v = np.array([getattr(f, "violation", 0.0) for f in fits], dtype=np.float64)
    out = np.empty((len(fits), len(fits)), dtype=bool)
    for start in range(0, len(fits), _BLOCK):
        rows = slice(start, start + _BLOCK)
        a, b = w[rows, None, :], w[None, :, :]
        pareto = (a >= b).all(axis=2) & (a > b).any(axis=2)
        same = v[rows, None] == v[None, :]
        out[rows] = np.where(same, pareto, v[rows, None] < v[None, :])
    return out


def sort_nondominated(individuals, k: int, first_front_only: bool = False) -> list[list]:
    """`tools.sortNondominated(individuals, k, first_front_only)`, the same fronts in the same
    order for finite objective values (DEAP ties a NaN with everything; here a NaN never
    dominates: `pareto` never makes one): the first front is its fitnesses in first-seen order; each later one lists a fitness
    when the last of the previous front's members (in that front's order) that dominates it
    is visited, those of one visit in first-seen order."""
    if k == 0:
        return []
    if not individuals:
        return [[]]  # as DEAP
    fits, members = _fitness_groups(individuals)
    dominates = dominance_matrix(fits)
    beaten_by = dominates.sum(axis=0)  # how many fitnesses dominate each
    current = np.flatnonzero(beaten_by == 0)
    fronts = [list(chain.from_iterable(members[i] for i in current))]
    if first_front_only:
        return fronts
    done, wanted = len(fronts[0]), min(len(individuals), k)
    while done < wanted:
        rows = dominates[current]  # (front, n): which fitnesses each member dominates
        beaten_by -= rows.sum(axis=0)
        freed = np.flatnonzero(rows.any(axis=0) & (beaten_by == 0))
        # the member of `current` (by position) whose visit brought each count to 0: its last dominator
        last = rows.shape[0] - 1 - np.argmax(rows[::-1][:, freed], axis=0)
        current = freed[np.lexsort((freed, last))]
        fronts.append(list(chain.from_iterable(members[i] for i in current)))
        done += len(fronts[-1])
    return fronts


def sel_nsga2(individuals, k: int) -> list:
    """`tools.selNSGA2(individuals, k)` on `sort_nondominated`'s fronts: whole fronts while they
    fit, then the last one's most isolated members (crowding distance, DEAP's own)."""
    fronts = sort_nondominated(individuals, k)
    for front in fronts:
        tools.emo.assignCrowdingDist(front)
    chosen = list(chain(*fronts[:-1]))
    rest = k - len(chosen)
    if rest > 0:
        chosen.extend(sorted(fronts[-1], key=attrgetter("fitness.crowding_dist"), reverse=True)[:rest])
    return chosen
