"""GA operators, the two variants against the exhaustive optimum, and the Pareto front."""

import inspect
import itertools
import random

import numpy as np
import pytest

from search import cost, ga
from search.space import Arch, InputError, SearchSpace, Teacher, teacher_spec

CODEBERT = teacher_spec("codebert-base")
SPACE = SearchSpace.from_teacher(CODEBERT)
KEYS = {
    "layers",
    "hidden",
    "heads",
    "ffn",
    "vocab",
    "params",
    "size_mb",
    "gflops",
    "flops_matmul",
    "fitness",
    "head",
    "predicted_ms",
}


def _inside(ind, shape):
    return len(ind) == len(shape) and all(
        0 <= g < n and isinstance(g, int) for g, n in zip(ind, shape, strict=False)
    )


def test_operators_keep_genes_inside_the_space():
    rng = random.Random(0)
    shape = SPACE.shape()
    for _ in range(2000):
        a, b = ga.init_random(shape, rng), ga.init_random(shape, rng)
        assert _inside(a, shape) and _inside(b, shape)
        for child in (ga.cx_one_point(a, b, rng), ga.cx_uniform(a, b, rng)):
            assert _inside(child, shape)
            assert all(g in (x, y) for g, x, y in zip(child, a, b, strict=False))
        (m,) = ga.mut_tail(ga.cx_uniform(a, b, rng), shape, rng)
        assert _inside(m, shape)
        before = list(a)
        (m,) = ga.mut_index_step(a, shape, rng, genes=[0, 1, 2])
        assert _inside(m, shape) and m[3:] == before[3:]


def test_repair_keeps_genes_inside_never_hurts_and_respects_the_cap():
    problem = ga.Problem(SPACE, CODEBERT, 25.0, 400, max_mb=25.0)
    rng = np.random.default_rng(0)
    idx = np.stack([rng.integers(0, n, 300) for n in SPACE.shape()], axis=-1)  # (300, 5)
    before = problem.fitness(idx)
    ga._repair(problem, idx)
    assert np.all((idx >= 0) & (idx < np.array(SPACE.shape())))
    fit = problem.fitness(idx)
    assert np.all(fit >= before)
    size = problem.size_mb(problem.values(idx))
    assert np.all(size[np.isfinite(fit)] <= 25.0)
    # (ffn, vocab) is the best 2-D choice given the other genes: brute force over all pairs.
    for row in idx[:8]:
        pairs = np.repeat(row[None], len(SPACE.ffn) * len(SPACE.vocab), axis=0)
        pairs[:, 3:] = np.stack(
            np.unravel_index(np.arange(len(pairs)), (len(SPACE.ffn), len(SPACE.vocab))), -1
        )
        assert problem.fitness(row[None])[0] == problem.fitness(pairs).max()


def test_repair_without_a_cap_picks_the_best_pair():
    for target in (3.0, 25.0, 50.0):
        problem = ga.Problem(SPACE, CODEBERT, target, 400)
        rng = np.random.default_rng(int(target))
        idx = np.stack([rng.integers(0, n, 20) for n in SPACE.shape()], axis=-1)
        ga._repair(problem, idx)
        for row in idx:
            pairs = np.repeat(row[None], len(SPACE.ffn) * len(SPACE.vocab), axis=0)
            pairs[:, 3:] = np.stack(
                np.unravel_index(np.arange(len(pairs)), (len(SPACE.ffn), len(SPACE.vocab))), -1
            )
            assert problem.fitness(row[None])[0] == problem.fitness(pairs).max()


def test_selection_keeps_duplicates_out():
    inds = []
    for genes, f in [
        ([0] * 5, 3.0),
        ([0] * 5, 3.0),
        ([1] * 5, 2.0),
        ([0] * 5, 3.0),
        ([2] * 5, 1.0),
    ]:
        ind = ga._individual(genes)
        ind.fitness.values = (f,)
        inds.append(ind)
    chosen = ga.sel_best_distinct(inds, 3)
    assert [list(c) for c in chosen] == [[0] * 5, [1] * 5, [2] * 5]


@pytest.mark.parametrize("target", [3.0, 25.0, 50.0])
def test_default_variant_reaches_the_exhaustive_optimum(target):
    best = ga.exhaustive(SPACE, CODEBERT, target, 400)[0]
    for seed in range(3):
        found = ga.run_ga(SPACE, CODEBERT, target, 400, seed=seed)[0]
        assert found["fitness"] == pytest.approx(best["fitness"], rel=1e-12), seed


def test_paper_optimum_at_3_mb():
    best = ga.exhaustive(SPACE, CODEBERT, 3.0, 400)[0]
    assert (best["layers"], best["hidden"], best["heads"], best["ffn"], best["vocab"]) == (
        12,
        96,
        8,
        64,
        1000,
    )


def test_run_ga_contract():
    rows = ga.run_ga(SPACE, CODEBERT, 3.0, 400, variant="paper", seed=1, top_k=5, generations=20)
    assert len(rows) == 5 and all(set(r) == KEYS for r in rows)
    genomes = [tuple(r[k] for k in ("layers", "hidden", "heads", "ffn", "vocab")) for r in rows]
    assert len(set(genomes)) == 5
    assert [r["fitness"] for r in rows] == sorted((r["fitness"] for r in rows), reverse=True)
    for r in rows:
        arch = Arch(*(r[k] for k in ("layers", "hidden", "heads", "ffn", "vocab")))
        assert SPACE.contains(arch)
        assert r["params"] == cost.params(arch, CODEBERT)
        assert r["flops_matmul"] == cost.flops(arch, 400)["matmul"]
        assert r["fitness"] == pytest.approx(r["gflops"] - abs(r["size_mb"] - 3.0))
    # Seeded: the same seed gives the same answer, for both variants.
    for variant in ga.VARIANTS:
        runs = [
            ga.run_ga(SPACE, CODEBERT, 10.0, 400, variant=variant, seed=7, top_k=3, generations=10)
            for _ in range(2)
        ]
        assert runs[0] == runs[1]
    with pytest.raises(ValueError, match="variant"):
        ga.run_ga(SPACE, CODEBERT, 3.0, 400, variant="nope")
    with pytest.raises(ValueError, match="target_mb"):
        ga.run_ga(SPACE, CODEBERT, 0.0, 400)


def test_max_mb_is_a_hard_cap():
    for find in (ga.run_ga, ga.exhaustive):
        rows = find(SPACE, CODEBERT, 3.0, 400, seed=0, top_k=10, max_mb=3.0)
        assert rows and all(r["size_mb"] <= 3.0 for r in rows)
    best = ga.exhaustive(SPACE, CODEBERT, 3.0, 400, max_mb=3.0)[0]
    assert ga.run_ga(SPACE, CODEBERT, 3.0, 400, seed=0, max_mb=3.0)[0]["fitness"] == pytest.approx(
        best["fitness"]
    )
    with pytest.raises(ValueError, match="smallest"):
        ga.run_ga(SPACE, CODEBERT, 3.0, 400, max_mb=0.05)
    at_cap = ga.exhaustive(SPACE, CODEBERT, 3.0, 400, top_k=1)[0]  # 3.024392 MB: a cap of exactly that keeps it
    for find in (ga.run_ga, ga.exhaustive):
        found = find(SPACE, CODEBERT, at_cap["size_mb"], 400, seed=0, top_k=1, max_mb=at_cap["size_mb"])[0]
        assert _genomes([found]) == _genomes([at_cap]) and found["size_mb"] == at_cap["size_mb"]
    for find in (ga.run_ga, ga.exhaustive):  # a budget nothing meets: refused, not oversized rows
        with pytest.raises(ValueError, match="target_mb=0.05 is below the smallest architecture"):
            find(SPACE, CODEBERT, 0.05, 400)


def test_exhaustive_equals_a_brute_force_loop_on_a_small_space():
    teacher = Teacher("small", "bert", 4, 96, 8, 256, 5000, 128, 2)
    space = SearchSpace(
        layers=(1, 2, 4), hidden=(24, 48, 96), heads=(1, 2, 16), ffn=(64, 256), vocab=(1000, 5000)
    )
    scored = []
    for genes in itertools.product(space.layers, space.hidden, space.heads, space.ffn, space.vocab):
        if genes[1] % genes[2]:
            continue  # infeasible: 16 heads do not divide 24 or 48
        arch = Arch(*genes)
        fit = cost.flops(arch, 64)["total"] / 1e9 - abs(cost.size_mb(arch, teacher) - 0.5)
        scored.append((fit, genes))
    scored.sort(reverse=True)
    rows = ga.exhaustive(space, teacher, 0.5, 64, top_k=4)
    assert [tuple(r[k] for k in ("layers", "hidden", "heads", "ffn", "vocab")) for r in rows] == [
        g for _, g in scored[:4]
    ]
    # Infeasible genomes get a dominated fitness in the GA, not an exception.
    found = ga.run_ga(space, teacher, 0.5, 64, seed=0, top_k=100, generations=5)
    assert all(r["hidden"] % r["heads"] == 0 for r in found)


@pytest.mark.parametrize("target", [3.0, 25.0])
def test_a_head_size_floor_holds_everywhere_and_the_ga_still_finds_the_optimum(target):
    space = SearchSpace.from_teacher(CODEBERT, min_head_size=64)
    best = ga.exhaustive(space, CODEBERT, target, 400, top_k=20)
    unrestricted = ga.exhaustive(SPACE, CODEBERT, target, 400)[0]
    assert unrestricted["hidden"] // unrestricted["heads"] < 64  # the floor does bind here
    assert best[0]["fitness"] < unrestricted["fitness"]
    for seed in range(3):
        found = ga.run_ga(space, CODEBERT, target, 400, seed=seed, top_k=20)
        assert found[0]["fitness"] == pytest.approx(best[0]["fitness"], rel=1e-12), seed
        assert all(r["hidden"] % r["heads"] == 0 and r["hidden"] // r["heads"] >= 64 for r in found)
    assert all(r["hidden"] // r["heads"] >= 64 for r in best)
    front = ga.pareto(space, CODEBERT, 400, seed=0, population=40, generations=10, max_mb=50.0)
    assert front and all(r["hidden"] // r["heads"] >= 64 for r in front)


def test_pareto_front_is_non_dominated_and_distinct():
    front = ga.pareto(SPACE, CODEBERT, 400, seed=0, population=60, generations=30, max_mb=50.0)
    assert len(front) > 5
    points = [(r["size_mb"], r["gflops"]) for r in front]
    assert len(set(points)) == len(points)
    assert all(r["size_mb"] <= 50.0 for r in front)
    for a, b in itertools.permutations(points, 2):
        assert not (b[0] <= a[0] and b[1] >= a[1]), (a, b)  # b never dominates a
    assert points == sorted(points)
    assert [o.name for o in ga.OBJECTIVES] == ["size_mb", "gflops"]


def test_every_front_point_is_unbeaten_on_the_whole_grid():
    """NSGA-II compares within its population: a short run leaves points some student of the
    space beats on both objectives. Each gives way to one that nothing beats (brute force over
    every feasible point, vocab at its least), flagged `replaced`."""
    from search.space import heads_fit

    front = ga.pareto(SPACE, CODEBERT, 400, seed=0, population=40, generations=3, max_mb=50.0)
    L, H, A, D = np.meshgrid(SPACE.layers, SPACE.hidden, SPACE.heads, SPACE.ffn, indexing="ij")
    L, H, A, D = (x.ravel() for x in (L, H, A, D))
    V = np.full_like(L, min(SPACE.vocab))
    size = cost.mb(cost.params_array(L, H, A, D, V, max_positions=CODEBERT.max_positions,
                                     type_vocab=CODEBERT.type_vocab))
    gflops = cost.flops_array(L, H, A, D, V, 400)["total"] / 1e9
    ok = heads_fit(H, A) & (size <= 50.0)
    size, gflops = size[ok], gflops[ok]
    for r in front:
        beaten = (size <= r["size_mb"]) & (gflops >= r["gflops"]) & ((size < r["size_mb"]) | (gflops > r["gflops"]))
        assert not beaten.any(), (r["layers"], r["hidden"], r["heads"], r["ffn"])
    assert any(r["replaced"] for r in front)  # three generations leave NSGA-II far from the front
    # the printed front checked again: a point is not beaten by itself (or its equals), none is replaced
    problem = ga._problem(SPACE, CODEBERT, 1.0, 400, 50.0, 2, "sequence", None, None)
    genomes = [[getattr(SPACE, g).index(r[g]) for g in ("layers", "hidden", "heads", "ffn")] + [0] for r in front]
    assert ga.on_grid_front(problem, genomes) == (genomes, [False] * len(genomes))
    points = [(r["size_mb"], r["gflops"]) for r in front]
    assert points == sorted(points) and len(set(points)) == len(points)


def test_head_decides_the_size_the_search_aims_at():
    """A bi-encoder student's head has no pooler (cosine: 2 parameters): the GA, the exhaustive
    check and the rows size it with that head."""
    minilm = teacher_spec("minilm-l6")
    space = SearchSpace.from_teacher(minilm)
    for head in cost.HEADS:
        rows = ga.exhaustive(space, minilm, 3.0, 64, top_k=3, head=head)
        assert [r["head"] for r in rows] == [head] * 3
        for r in rows:
            arch = Arch(*(r[g] for g in ("layers", "hidden", "heads", "ffn", "vocab")))
            assert r["params"] == cost.params(arch, minilm, head=head)
        found = ga.run_ga(space, minilm, 3.0, 64, seed=0, head=head)[0]
        assert found["fitness"] == pytest.approx(rows[0]["fitness"])  # the GA finds the optimum
    cosine = ga.exhaustive(space, minilm, 3.0, 64, head="pair_cosine")[0]
    plain = ga.exhaustive(space, minilm, 3.0, 64)[0]
    assert cosine["params"] != plain["params"]
    with pytest.raises(ValueError, match="head must be one of"):
        ga.run_ga(space, minilm, 3.0, 64, head="pooler")


GENOME = ("layers", "hidden", "heads", "ffn", "vocab")


def _genomes(rows):
    return [tuple(r[g] for g in GENOME) for r in rows]


def test_repair_judges_a_vocab_at_the_cap_as_the_fitness_does():
    """A cap equal to a point's exact size: the repair must not estimate that vocab over it
    (a linear size estimate did, and picked a worse (ffn, vocab) than the exhaustive one)."""
    minilm = teacher_spec("minilm-l6")
    space = SearchSpace.from_teacher(minilm)
    best = ga.exhaustive(space, minilm, 50.0, 400, max_mb=50.118152)[0]
    assert _genomes([best]) == [(6, 384, 8, 1536, 4000)] and best["params"] * 4 == 50_118_152  # at the cap
    assert best["size_mb"] <= 50.118152
    found = ga.run_ga(space, minilm, 50.0, 400, seed=0, max_mb=50.118152)[0]
    assert _genomes([found]) == _genomes([best]) and found["fitness"] == best["fitness"]
    # Caps at the exact sizes of random points: the repaired block choice is the brute-force best.
    rng = np.random.default_rng(0)
    ffn, vocab = np.meshgrid(np.arange(len(SPACE.ffn)), np.arange(len(SPACE.vocab)), indexing="ij")
    for _ in range(60):
        point = np.array([rng.integers(0, n) for n in SPACE.shape()])
        cap = float(ga.Problem(SPACE, CODEBERT, 1.0, 400).size_mb(SPACE.values(point[None]))[0])
        problem = ga.Problem(SPACE, CODEBERT, cap * rng.choice([0.9, 1.0, 1.1]), 400, max_mb=cap)
        block = np.repeat(point[None], ffn.size, axis=0)
        block[:, 3], block[:, 4] = ffn.ravel(), vocab.ravel()
        repaired = problem.repair(point[None].copy())
        assert problem.fitness(repaired)[0] == problem.fitness(block).max()


def test_violation_is_zero_exactly_where_the_fitness_is_finite():
    space = SearchSpace.from_teacher(CODEBERT, min_head_size=64)
    problem = ga.Problem(space, CODEBERT, 3.0, 400, max_mb=3.0)
    rng = np.random.default_rng(1)
    idx = np.stack([rng.integers(0, n, 5000) for n in space.shape()], axis=-1)
    values = problem.values(idx)
    violation = problem.violation(values)
    assert np.all(violation >= 0)
    assert np.array_equal(violation == 0, np.isfinite(problem.fitness(idx)))
    heads_fit = space.feasible(values[:, 1], values[:, 2])
    over_cap = problem.size_mb(values) > 3.0
    for drawn in (heads_fit & ~over_cap, heads_fit & over_cap, ~heads_fit & ~over_cap):
        assert drawn.any()  # each way of (not) fitting was drawn


def _fitness(violation, value):
    fit = ga.creator.ArchFitness()
    fit.values, fit.violation = (value,), violation
    return fit


def test_infeasible_genomes_rank_by_their_distance_to_feasible():
    near, far, feasible = (_fitness(v, f) for v, f in ((0.1, -np.inf), (2.0, -np.inf), (0.0, -5.0)))
    assert feasible > near > far
    assert feasible.dominates(near) and near.dominates(far) and not far.dominates(near)
    assert sorted([far, feasible, near]) == [far, near, feasible]


@pytest.mark.parametrize("variant", ga.VARIANTS)
def test_a_tight_cap_still_finds_what_fits(variant):
    """Nearly every genome is over a 0.5 MB cap or below a 64-wide head: the searches must
    still reach the few that fit (they used to return nothing)."""
    space = SearchSpace.from_teacher(CODEBERT, min_head_size=64)
    best = ga.exhaustive(space, CODEBERT, 0.5, 400, max_mb=0.5)
    assert _genomes(best) == [(1, 64, 1, 32, 1000)] and space.smallest() == Arch(1, 64, 1, 32, 1000)
    for seed in range(10):  # the top 5 asked, one fits: no row of an infeasible genome fills the list
        found = ga.run_ga(space, CODEBERT, 0.5, 400, seed=seed, max_mb=0.5, variant=variant, top_k=5)
        assert _genomes(found) == _genomes(best), seed
    if variant == "default":  # a cap with more room: it still reaches the exhaustive optimum
        best = ga.exhaustive(space, CODEBERT, 0.6, 400, max_mb=0.6)[0]
        for seed in range(4):
            assert ga.run_ga(space, CODEBERT, 0.6, 400, seed=seed, max_mb=0.6)[0]["fitness"] == best["fitness"]
        # a population of 10 still reaches it: 10 of 10 seeds at 1 MB
        best = ga.exhaustive(space, CODEBERT, 1.0, 400, max_mb=1.0)[0]
        for seed in range(10):
            found = ga.run_ga(space, CODEBERT, 1.0, 400, seed=seed, max_mb=1.0, population=10)[0]
            assert found["fitness"] == best["fitness"], seed
    front = ga.pareto(space, CODEBERT, 400, seed=0, max_mb=2.0, population=50, generations=30)
    assert len(front) > 5 and all(r["size_mb"] <= 2.0 and r["hidden"] // r["heads"] >= 64 for r in front)


@pytest.mark.parametrize("target", [1.5, 3.0, 25.0])
def test_default_top_k_is_the_true_top_k(target):
    """The repair keeps one (ffn, vocab) per (layers, hidden, heads); runners-up sharing a
    triple with a better genome (1.5 MB: #3 L12 H64 A8 D32 beside #2 L12 H64 A8 D64) must
    still be listed."""
    best = ga.exhaustive(SPACE, CODEBERT, target, 400, top_k=12)
    found = ga.run_ga(SPACE, CODEBERT, target, 400, seed=0, top_k=12)
    assert _genomes(found) == _genomes(best)
    assert [r["fitness"] for r in found] == [r["fitness"] for r in best]


def test_top_k_needs_only_the_blocks_that_can_hold_it(monkeypatch):
    scored = []
    real = ga._best_in_blocks
    monkeypatch.setattr(ga, "_best_in_blocks", lambda p, t, k: scored.append(len(t)) or real(p, t, k))
    ga.run_ga(SPACE, CODEBERT, 3.0, 400, seed=0)
    assert scored == [1]  # top-1: the best genome's block


def test_ties_go_to_the_smaller_genome_everywhere():
    """Two vocabularies equally far from the target tie on fitness: every search lists the
    smaller first, whatever k (argpartition used to order them at random)."""
    space = SearchSpace(layers=(1,), hidden=(16,), heads=(1,), ffn=(32,), vocab=(1000, 2000, 3000, 4000))
    small, large = (cost.size_mb(Arch(1, 16, 1, 32, v), CODEBERT) for v in (1000, 2000))
    target = (small + large) / 2
    fit = ga.Problem(space, CODEBERT, target, 400).fitness(np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 1]]))
    assert fit[0] == fit[1]  # the tie is exact
    for k in (1, 2, 3, 4):
        assert [r["vocab"] for r in ga.exhaustive(space, CODEBERT, target, 400, top_k=k)][:2] == [1000, 2000][:k]
    for variant in ga.VARIANTS:
        rows = ga.run_ga(space, CODEBERT, target, 400, seed=0, top_k=2, variant=variant)
        assert [r["vocab"] for r in rows] == [1000, 2000], variant


def test_a_one_point_space_and_bad_populations():
    space = SearchSpace(layers=(1,), hidden=(16,), heads=(1,), ffn=(32,), vocab=(1000,))
    for variant in ga.VARIANTS:
        rows = ga.run_ga(space, CODEBERT, 3.0, 400, seed=0, top_k=3, variant=variant, generations=5)
        assert _genomes(rows) == [(1, 16, 1, 32, 1000)]
    assert _genomes(ga.pareto(space, CODEBERT, 400, seed=0, population=4, generations=3)) == [
        (1, 16, 1, 32, 1000)
    ]
    for bad in (dict(population=1), dict(generations=-1)):
        with pytest.raises(InputError, match="population >= 2"):
            ga.pareto(SPACE, CODEBERT, 400, **bad)
    for name in ("population", "children", "generations"):  # refused before any work
        with pytest.raises(InputError, match=f"{name}: at most 10,000, got 10,001"):
            ga.run_ga(SPACE, CODEBERT, 3.0, 400, **{name: 10_001})
    with pytest.raises(InputError, match="generations: at most 10,000, got 10,001"):
        ga.pareto(SPACE, CODEBERT, 400, generations=10_001)
    with pytest.raises(InputError, match="top_k"):
        ga.exhaustive(SPACE, CODEBERT, 3.0, 400, top_k=0)
    # at 1e308 MB every candidate scored -1e308 (GFLOPs lost to rounding): refused
    for find in (ga.run_ga, ga.exhaustive):
        with pytest.raises(InputError, match=r"target_mb: at most 1,000,000 MB .* got 1e\+308"):
            find(SPACE, CODEBERT, 1e308, 400)
    # above every size in the space the ranking is by GFLOPs + size alone, the same at 1e4 and 1e6
    assert _genomes(ga.exhaustive(SPACE, CODEBERT, 1e6, 400, top_k=5)) == _genomes(
        ga.exhaustive(SPACE, CODEBERT, 1e4, 400, top_k=5))


def test_exhaustive_refuses_unknown_keywords_like_run_ga():
    for find in (ga.run_ga, ga.exhaustive):
        with pytest.raises(TypeError, match="popluation"):
            find(SPACE, CODEBERT, 3.0, 400, popluation=10)
    ga.exhaustive(SPACE, CODEBERT, 3.0, 400, **{o: None for o in ga.GA_OPTIONS})
    shared = set(inspect.signature(ga.exhaustive).parameters) - {"ga_options"}
    own = set(inspect.signature(ga.run_ga).parameters) - shared
    assert own == set(ga.GA_OPTIONS)


def test_bad_input_is_an_input_error():
    for call in (
        lambda: ga.run_ga(SPACE, CODEBERT, 3.0, 400, variant="nope"),
        lambda: ga.run_ga(SPACE, CODEBERT, float("inf"), 400),
        lambda: ga.exhaustive(SPACE, CODEBERT, 3.0, 400, max_mb=float("nan")),
        lambda: ga.run_ga(SPACE, CODEBERT, 3.0, 400, max_mb=float("inf")),  # NaN violations
        lambda: ga.run_ga(SPACE, CODEBERT, 3.0, 400, head="pooler"),
    ):
        with pytest.raises(InputError):
            call()
    # API-only values the CLI and the jobs never pass: each refused by name, no bare ValueError
    for kwargs, named in (({"seq_len": float("nan")}, "seq_len"), ({"seq_len": 400.5}, "seq_len"),
                          ({"num_labels": 0}, "num_labels"), ({"num_labels": 2.5}, "num_labels"),
                          ({"num_labels": 3, "head": "pair_cosine"}, "pair_cosine")):
        args = {"seq_len": 400} | kwargs
        with pytest.raises(InputError, match=named):
            ga.run_ga(SPACE, CODEBERT, 3.0, args.pop("seq_len"), **args)
    assert ga.run_ga(SPACE, CODEBERT, 3.0, 400.0, num_labels=3, population=8, generations=1, seed=0)


def test_a_tournament_draw_of_zero_picks_the_last_not_past_the_end():
    """random() returns 0.0 once in 2**53 draws: the winner's rank then stays below n."""
    import random

    from search.ga import sel_tournament

    class Zero(random.Random):
        def random(self):
            return 0.0

    assert sel_tournament([1, 2, 3], 2, Zero()) == [3, 3]


@pytest.mark.parametrize("variant", ga.VARIANTS)
@pytest.mark.parametrize("max_mb, min_head", [(None, 1), (2.0, 64)])  # all feasible | few feasible at first
def test_the_population_never_loses_its_best_genome(variant, max_mb, min_head):
    """mu + lambda selection (elitism): a generation's best and its count of feasible genomes
    never fall, and the logbook counts every generation and each genome evaluated once."""
    space = SearchSpace.from_teacher(CODEBERT, min_head_size=min_head)
    for seed in range(4):
        history = []
        rows = ga.run_ga(space, CODEBERT, 3.0, 400, variant=variant, seed=seed, max_mb=max_mb,
                         generations=30, top_k=1, history=history)
        assert [h["generation"] for h in history] == list(range(31))
        assert all(h["population"] == 50 for h in history[1:])
        for before, after in itertools.pairwise(history):
            assert after["feasible"] >= before["feasible"]
            assert after["best"] >= before["best"], (variant, seed, before, after)
            assert before["explored"] <= after["explored"] <= before["explored"] + 50
        assert history[-1]["explored"] > history[0]["explored"]  # children were new genomes
        assert history[-1]["best"] <= rows[0]["fitness"]  # the top-k ranks every genome explored
        if variant == "paper":  # no repair: the archive's best was in the population
            assert history[-1]["best"] == rows[0]["fitness"]


def test_generation_stats_of_a_population_with_no_feasible_genome():
    problem = ga.Problem(SPACE, CODEBERT, 3.0, 400, max_mb=0.01)
    pop = [ga.init_random(SPACE.shape(), random.Random(i)) for i in range(5)]
    ga._evaluate(problem, pop, archive := {}, repair=False)
    stats = ga.generation_stats(7, pop, archive)
    assert stats == {"generation": 7, "explored": len(archive), "population": 5, "feasible": 0,
                     "best": None, "median": None}
    pop[0].fitness.violation, pop[0].fitness.values = 0.0, (2.0,)
    pop[1].fitness.violation, pop[1].fitness.values = 0.0, (1.0,)
    pop[2].fitness.violation, pop[2].fitness.values = 0.0, (-3.0,)
    assert ga.generation_stats(7, pop, archive) | {"explored": 0} == {
        "generation": 7, "explored": 0, "population": 5, "feasible": 3, "best": 2.0, "median": 1.0}
