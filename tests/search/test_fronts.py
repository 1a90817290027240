"""search.fronts against DEAP's own NSGA-II sort and selection: the same lists, faster."""

import random

import pytest
from deap import creator, tools

import search.ga  # creates the DEAP classes
from search.fronts import dominance_matrix, sel_nsga2, sort_nondominated


def _population(n: int, objectives: int, seed: int, levels: int = 6, infeasible: float = 0.3):
    """Individuals on a coarse grid of values (ties, duplicate fitnesses) with some infeasible
    ones at a few violations (Deb's constraint domination decides between those)."""
    rng = random.Random(seed)
    cls = creator.ParetoIndividual if objectives == 2 else creator.ParetoLatencyIndividual
    pop = []
    for i in range(n):
        ind = cls([i, 0, 0, 0, 0])
        ind.fitness.values = tuple(float(rng.randrange(levels)) for _ in range(objectives))
        ind.fitness.violation = float(rng.choice((1, 2, 3))) if rng.random() < infeasible else 0.0
        pop.append(ind)
    return pop


def _ids(front):
    return [id(ind) for ind in front]


@pytest.mark.parametrize("objectives", [2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_the_sort_and_selection_are_deaps(objectives, seed):
    pop = _population(120, objectives, seed)
    for k in (0, 1, 7, 60, 120):
        mine, deaps = sort_nondominated(pop, k), tools.sortNondominated(pop, k)
        assert [_ids(f) for f in mine] == [_ids(f) for f in deaps]
        first = sort_nondominated(pop, k, first_front_only=True)
        assert [_ids(f) for f in first] == [_ids(f) for f in tools.sortNondominated(pop, k, first_front_only=True)]
        assert _ids(sel_nsga2(pop, k)) == _ids(tools.selNSGA2(pop, k))


def test_an_empty_population_sorts_as_in_deap():
    assert sort_nondominated([], 5) == tools.sortNondominated([], 5) == [[]]
    assert sel_nsga2([], 5) == tools.selNSGA2([], 5) == []


def test_constraint_domination():
    """A feasible point dominates every infeasible one, whatever its values; of two infeasible
    ones the nearer to feasible dominates; at equal violations, Pareto dominance."""
    a, b, c, d = (creator.ParetoIndividual([i, 0, 0, 0, 0]) for i in range(4))
    for ind, values, violation in ((a, (5.0, 1.0), 0.0), (b, (1.0, 9.0), 2.0), (c, (1.0, 9.0), 1.0),
                                   (d, (6.0, 1.0), 0.0)):
        ind.fitness.values, ind.fitness.violation = values, violation
    got = dominance_matrix([ind.fitness for ind in (a, b, c, d)])
    # size is minimised, GFLOPs maximised: a (5 MB) dominates d (6 MB, same GFLOPs)
    assert got.tolist() == [[False, True, True, True], [False] * 4, [False, True, False, False],
                            [False, True, True, False]]


def test_a_population_nsga2_cannot_sort_is_refused_before_any_work():
    from search.space import InputError, SearchSpace, teacher_spec

    teacher = teacher_spec("minilm-l6")
    with pytest.raises(InputError, match=r"population: at most 10,000 .* got 10,001"):
        search.ga.pareto(SearchSpace.from_teacher(teacher), teacher, 64, population=10_001)
