"""`python -m search`: find student architectures for a teacher and a size budget.

    python -m search --teacher codebert-base --target-mb 3 --seq-len 400 --top-k 5 \
        [--seed N] [--variant paper|default] [--exhaustive] [--max-mb X] [--min-head-size N]
        [--max-layers N] [--head sequence|pair_concat|pair_cosine]
        [--latency-model FILE [--max-ms X]] [--history] [--json]
    python -m search --pareto [--teacher T] [--seq-len N] [--seed N] [--max-mb X] [--min-head-size N]
        [--max-layers N] [--head H] [--latency-model FILE [--max-ms X]] [--population N]
        [--generations N] [--json]
    python -m search bench [--teacher codebert-base] [--seq-len 400] [--seeds 20] [--runs 5]

Bad input prints one line on stderr and exits 2; a search that finds no architecture within
the budget says so on stderr and exits 1 (a guard: past the budget checks some architecture
fits, the smallest or with --max-ms the fastest within --max-mb, and the GA and the exhaustive
search find it; the front is never empty either). Any other error is a bug: traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

from search import OptionsOnceParser, printing_to_a_pipe
from search.cost import HEADS
from search.ga import VARIANTS, exhaustive, pareto, run_ga
from search.latency import load as load_latency_model
from search.space import InputError, SearchSpace, teacher_spec

COLUMNS = (
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
)


HISTORY_COLUMNS = ("generation", "explored", "population", "feasible", "best", "median")


class UsageError(Exception):
    """Bad command-line input: reported as one stderr line, exit status 2."""


class _Parser(OptionsOnceParser):
    def error(self, message):  # argparse prints usage + message; we want one line
        raise UsageError(message)


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"must be positive and finite, got {text}")
        return value

    return parse


MAX_SEED = 2**63 - 1  # the jobs' range (training.checks.MAX_SEED; search imports no training)


def _seed(text: str) -> int:
    """A GA seed: an integer in [0, MAX_SEED], as the jobs' seeds (random.Random would take
    -7 as 7, and the header would print a seed the run did not use)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {MAX_SEED}], got {text}")
    return value


def _add_problem_options(p: argparse.ArgumentParser) -> None:
    """The options both commands share: the teacher and the sequence length FLOPs count at."""
    p.add_argument(
        "--teacher", default="codebert-base", help="preset name, config.json or model folder"
    )
    p.add_argument(
        "--seq-len",
        type=_positive(int),
        default=400,
        help="sequence length the FLOPs are counted at",
    )


def _search_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m search",
        description="Architecture search for a compressed student.",
        epilog="Subcommand: `python -m search bench [--teacher T] [--seq-len N] [--seeds N] "
        "[--runs N]` prints the GA's speed and how often it finds the exhaustive optimum "
        "(`python -m search bench --help`).",
    )
    _add_problem_options(p)
    p.add_argument(
        "--target-mb",
        type=_positive(float),
        default=None,
        help="size budget T in MB (1e6 bytes, fp32; default 3)",
    )
    p.add_argument("--top-k", type=_positive(int), default=None, help="distinct candidates to print (default 5)")
    p.add_argument(
        "--seed",
        type=_seed,
        default=None,
        help="seed of the GA's random generator (default: none, so runs differ); "
        "refused with --exhaustive",
    )
    p.add_argument(
        "--variant",
        choices=VARIANTS,
        default=None,
        help="GA variant: the paper's Algorithm 1, or the budget-repairing default (the default)",
    )
    p.add_argument(
        "--exhaustive", action="store_true", help="enumerate the whole space instead of the GA"
    )
    p.add_argument(
        "--pareto",
        action="store_true",
        help="print the NSGA-II front instead (size down, GFLOPs up; with --latency-model, "
        "predicted ms down too): students no other of the space beats on all of them, NSGA-II's "
        "points checked against the whole grid (--target-mb, --top-k and --variant are refused with it)",
    )
    p.add_argument("--population", type=_positive(int), default=None,
                   help="--pareto only: NSGA-II population, the most points the front can hold (default 100, at most 10,000)")
    p.add_argument("--generations", type=_positive(int), default=None,
                   help="--pareto only: NSGA-II generations (default 100)")
    p.add_argument("--max-mb", type=_positive(float), default=None, help="hard cap on size in MB")
    p.add_argument(
        "--min-head-size",
        type=_positive(int),
        default=1,
        help="least hidden/heads of a candidate (GPUs are slow on small heads)",
    )
    p.add_argument(
        "--max-layers",
        type=_positive(int),
        default=None,
        help="most layers a candidate may have (default: the teacher's); small CPU "
        "students train and answer faster with fewer layers than their FLOPs say",
    )
    p.add_argument(
        "--head",
        choices=HEADS,
        default="sequence",
        help="the students' classifier head, which sets their size: the family's sequence "
        "classifier, or a bi-encoder pair model's concat or cosine head (FLOPs stay those of "
        "one single-input pass with the sequence head: a pair model runs two and its own head)",
    )
    p.add_argument(
        "--latency-model",
        default=None,
        metavar="FILE",
        help="a latency model (`python -m ray_jobs bench latency-model` fits one on the machine the "
        "students will run on): each candidate's predicted ms is printed (predicted_ms)",
    )
    p.add_argument(
        "--max-ms",
        type=_positive(float),
        default=None,
        help="latency budget: candidates the latency model predicts slower are infeasible",
    )
    p.add_argument("--history", action="store_true",
                   help="GA only: also print each generation's population (distinct genomes explored so far, "
                   "feasible ones, best and median fitness), DEAP's logbook; a \"history\" list with --json")
    p.add_argument("--json", action="store_true",
                   help='print {"seconds", "candidates"} as JSON ({"seconds", "front"} with --pareto)')
    return p


def _bench_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m search bench", description="GA speed and optimality figures.")
    _add_problem_options(p)
    p.add_argument("--seeds", type=_positive(int), default=20, help="seeds per budget")
    p.add_argument("--runs", type=_positive(int), default=5, help="timed runs for the medians")
    return p


def _table(rows: list[dict], columns=COLUMNS, numbered: bool = True) -> str:
    cells = [[str(i + 1)] * numbered + [_fmt(row[c]) for c in columns] for i, row in enumerate(rows)]
    header = ["#"] * numbered + [*columns]
    widths = [max(len(x) for x in col) for col in zip(header, *cells, strict=True)]
    return "\n".join(
        "  ".join(x.rjust(w) for x, w in zip(line, widths, strict=True))
        for line in [header, *cells]
    )


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def search(argv: list[str]) -> int:
    args = _search_parser().parse_args(argv)
    if args.pareto and args.exhaustive:
        raise UsageError("--pareto and --exhaustive: choose one (the front is searched by NSGA-II)")
    if args.population == 1:
        raise UsageError("--population: NSGA-II needs >= 2, got 1")
    if not args.pareto and (args.population or args.generations):
        raise UsageError("--population and --generations set the NSGA-II front's search: add --pareto")
    if args.exhaustive and args.variant is not None:
        raise UsageError("--variant: the exhaustive search has no GA variant (it enumerates every architecture)")
    if args.history and (args.exhaustive or args.pareto):
        raise UsageError("--history: the logbook is the single-objective GA's (drop --exhaustive / --pareto)")
    if args.exhaustive and args.seed is not None:  # a seed the output would print but not use
        raise UsageError("--seed: the exhaustive search draws nothing at random (it enumerates every architecture)")
    ranking = [flag for flag, value in (("--target-mb", args.target_mb), ("--top-k", args.top_k),
                                        ("--variant", args.variant)) if value is not None]
    if args.pareto and ranking:  # the front has no target and prints every point
        raise UsageError(f"{', '.join(ranking)}: the Pareto front has no size target, ranking or GA variant "
                         "(--max-mb caps its sizes)")
    args.target_mb, args.top_k, args.variant = args.target_mb or 3.0, args.top_k or 5, args.variant or "default"
    teacher = teacher_spec(args.teacher)
    space = SearchSpace.from_teacher(teacher, min_head_size=args.min_head_size,
                                     max_layers=args.max_layers)
    latency_model = None if args.latency_model is None else load_latency_model(args.latency_model)
    if args.pareto:
        return _front(args, teacher, space, latency_model)
    find = exhaustive if args.exhaustive else run_ga
    options = dict(top_k=args.top_k, max_mb=args.max_mb, head=args.head, latency_model=latency_model,
                   max_ms=args.max_ms)
    history = [] if args.history else None
    if not args.exhaustive:
        options |= dict(variant=args.variant, seed=args.seed, history=history)
    start = time.perf_counter()
    rows = find(space, teacher, args.target_mb, args.seq_len, **options)
    seconds = time.perf_counter() - start
    if not rows:
        print(
            f"python -m search: no architecture of {teacher.name} found within "
            f"{args.max_mb or args.target_mb} MB",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps({"seconds": seconds, "candidates": rows} | ({"history": history} if args.history else {})))
        return 0
    how = "exhaustive" if args.exhaustive else f"GA variant={args.variant} seed={args.seed}"
    print(
        f"teacher {teacher.name} ({teacher.family}); target {args.target_mb} MB{_limits(args)}; "
        f"seq_len {args.seq_len}; {how}; {space.size():,} points; {seconds:.3f} s"
    )
    if latency_model is not None:
        print(f"latency model {args.latency_model}: {latency_model.describe()}")
    print(_table(rows, COLUMNS + ("predicted_ms",) * (latency_model is not None)))
    if history is not None:
        print("\nthe population by generation:")
        print(_table(history, HISTORY_COLUMNS, numbered=False))
    return 0


def _limits(args) -> str:
    """The header's list of the search's limits beside the target."""
    cap = f", max {args.max_mb} MB" if args.max_mb else ""
    cap += f", head size >= {args.min_head_size}" if args.min_head_size > 1 else ""
    cap += f", at most {args.max_layers} layer{'s' * (args.max_layers != 1)}" if args.max_layers else ""
    cap += f", {args.head} head" if args.head != "sequence" else ""
    return cap + (f", predicted <= {args.max_ms:g} ms" if args.max_ms else "")


def _front(args, teacher, space, latency_model) -> int:
    """Print the NSGA-II front (`search.ga.pareto`): a table, or JSON with --json."""
    start = time.perf_counter()
    rows = pareto(space, teacher, args.seq_len, seed=args.seed, max_mb=args.max_mb, head=args.head,
                  latency_model=latency_model, max_ms=args.max_ms, population=args.population or 100,
                  generations=args.generations or 100)
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({"seconds": seconds, "front": rows}))
        return 0
    objectives = "size down, GFLOPs up" + (", predicted ms down" if latency_model else "")
    replaced = sum(r["replaced"] for r in rows)
    print(f"teacher {teacher.name} ({teacher.family}); Pareto front ({objectives}){_limits(args)}; "
          f"seq_len {args.seq_len}; NSGA-II seed={args.seed}; {len(rows)} points, {replaced} of them "
          f"put in place of NSGA-II points that a point of the grid beats on every objective; {seconds:.3f} s")
    if latency_model is not None:
        print(f"latency model {args.latency_model}: {latency_model.describe()}")
    columns = tuple(c for c in COLUMNS if c != "fitness") + ("predicted_ms",) * (latency_model is not None)
    print(_table(rows, columns))
    return 0


def _median_seconds(fn, runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `runs` calls (CPU time shows the cost on a busy machine)."""
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def bench(argv: list[str]) -> int:
    """Print GA wall time, hit rate and mean relative gap per variant, and exhaustive time."""
    args = _bench_parser().parse_args(argv)
    teacher = teacher_spec(args.teacher)
    space = SearchSpace.from_teacher(teacher)
    s, budgets = args.seq_len, (3.0, 25.0, 50.0)
    print(
        f"teacher {teacher.name}; seq_len {s}; {space.size():,} points; GA: population 50, 100 generations,"
    )
    print("  50 children a generation, crossover rate 0.6 (5,050 individuals evaluated a run)")
    wall, cpu = _median_seconds(lambda: exhaustive(space, teacher, 3.0, s), args.runs)
    print(
        f"exhaustive: median {wall:.3f} s wall, {cpu:.3f} s CPU of {args.runs} runs (target <= 0.5 s)"
    )
    optimum = {t: exhaustive(space, teacher, t, s)[0] for t in budgets}
    for t, row in optimum.items():
        genes = ", ".join(f"{k}={row[k]}" for k in ("layers", "hidden", "heads", "ffn", "vocab"))
        print(f"  optimum at {t:g} MB: {genes}: fitness {row['fitness']:.4f}")
    for variant in VARIANTS:
        wall, cpu = _median_seconds(
            lambda v=variant: run_ga(space, teacher, 3.0, s, variant=v), args.runs
        )
        print(
            f"GA {variant}: median {wall:.3f} s wall, {cpu:.3f} s CPU of {args.runs} runs at 3 MB"
            " (paper: 1.22 s)"
        )
        for t in budgets:
            best = [
                run_ga(space, teacher, t, s, variant=variant, seed=seed)[0]
                for seed in range(args.seeds)
            ]
            top = optimum[t]["fitness"]
            hits = sum(abs(b["fitness"] - top) <= 1e-9 * abs(top) for b in best)
            gap = statistics.mean((top - b["fitness"]) / abs(top) for b in best)
            worst = min(b["fitness"] for b in best)
            print(
                f"  {t:g} MB: optimum on {hits}/{args.seeds} seeds; mean relative gap {gap:.4f}; "
                f"worst fitness {worst:.4f} vs {top:.4f}"
            )
    extra = (50 + 100 * 50) * len(space.ffn)
    print(
        f"note: the default variant's (ffn, vocab) repair also scores {extra:,} points a run"
        " (one per ffn choice per individual, vectorised)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return printing_to_a_pipe(lambda: bench(argv[1:]) if argv[:1] == ["bench"] else search(argv))
    except (UsageError, InputError) as err:  # anything else is a bug: its traceback shows
        print(f"python -m search: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
