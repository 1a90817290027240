"""`python -m ray_jobs compress|prune|demo|config|query|tables|bench ...`

    compress [--config FILE] [--resume] [--seeds 0,1,..] [key=value ...]
                                                          search + distillation sweep (one per
                                                          distillation seed, then their spread)
    prune    [--config FILE] [--resume] [--seeds 0,1,..] [key=value ...]
                                                          pruning schedules sweep (one per
                                                          pruning seed, then their spread)
    demo     [--config FILE] [--resume] [key=value ...]   compress, prune, summary + plot
                                                          (default config: configs/demo.yaml)
    config   [--config FILE] [key=value ...]              the settings those jobs would run
                                                          with: every key as YAML, its comment
                                                          above it (readable back by --config)
    query SQL [--format table|csv|json] [--config FILE] [results_dir=...]
    tables    [--config FILE] [results_dir=...]
    bench ...                                             see `python -m ray_jobs bench -h`

Exit codes: 0 done, 1 trials failed for good or models a quantize stage could not quantize
(their names on stderr; the others' rows are written) (or a crash: a traceback, e.g. the teacher's
fine-tuning out of GPU memory), 2 bad input (one line on stderr naming the culprit), 130
interrupted (run the same command again to resume; a driver `ray job stop` ends exits 15,
by Ray's SIGTERM handler).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
from pathlib import Path

from ray_jobs import results
from ray_jobs.errors import (
    ConfigError,
    JobError,
    OneLineParser,
    SweepFailed,
    SweepInterrupted,
    absolute_path,
    path_exists,
)
from ray_jobs.yaml_text import parse_override
from search import printing_to_a_pipe
from training.checks import one_line

JOBS = ("compress", "prune", "demo")


def _config_name(text: str) -> str:
    """--config's value: a file or a shipped config's name; an empty one (`--config "$UNSET"`)
    is refused, not read as no --config at all."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="python -m ray_jobs", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name in JOBS:
        p = sub.add_parser(name, help=f"run the {name} job")
        p.add_argument("--config", type=_config_name, help="YAML file or shipped config name (smoke, demo, ...)")
        p.add_argument("--resume", action="store_true",
                       help="resume the interrupted sweep (running the same command does too)")
        if name in ("compress", "prune"):
            section = "distill" if name == "compress" else "prune"
            p.add_argument("--seeds", help=f"comma-separated seeds ({section}.seed): one sweep each, "
                                           "then the mean and spread of each row's figures")
        p.add_argument("overrides", nargs="*", default=[], metavar="key=value")
    c = sub.add_parser("config", help="print every setting a job with this --config and these overrides "
                                      "would run with, as YAML that --config reads back")
    c.add_argument("--config", type=_config_name, help="YAML file or shipped config name (smoke, demo, ...)")
    c.add_argument("overrides", nargs="*", default=[], metavar="key=value")
    q = sub.add_parser("query", help="SQL over the result tables (DuckDB; each table a view)")
    q.add_argument("sql")
    q.add_argument("--format", default="table", choices=("table", "csv", "json"))
    q.add_argument("--config", type=_config_name)
    q.add_argument("overrides", nargs="*", default=[], metavar="results_dir=PATH")
    t = sub.add_parser("tables", help="list the result tables and their row counts")
    t.add_argument("--config", type=_config_name)
    t.add_argument("overrides", nargs="*", default=[], metavar="results_dir=PATH")
    sub.add_parser("bench", help="benchmarks (ray_jobs.bench)", add_help=False)
    return ap


def _results_dir(config: str | None, overrides: list[str]) -> Path:
    """results_dir for query/tables: the last results_dir=PATH override (its value read as the
    jobs read it: `parse_override`), else the config's, read and checked as the jobs read it (a
    config that is not a mapping or a results_dir that is not a string: ConfigError), else the
    default."""
    value = None
    for text in overrides:
        if text.partition("=")[0].strip() != "results_dir" or "=" not in text:
            raise ConfigError(f"{text}: only results_dir=PATH applies here")
        _, value = parse_override(text)
        if not isinstance(value, str):
            raise ConfigError(f"results_dir: expected a path, got {value!r}")
        if not value.strip():  # Path("") is the current directory
            raise ConfigError("results_dir: must not be empty")
    if config:
        # The job config's own reader and types; importing it costs the torch import, so
        # only a query that names a config pays it.
        from ray_jobs.config import JobConfig, build_config, read_yaml

        data = read_yaml(_config_path(config))
        if value is None and "results_dir" in data:
            value = build_config(JobConfig, {"results_dir": data["results_dir"]}).results_dir
    return Path(absolute_path(results.DEFAULT_RESULTS_DIR if value is None else value, "results_dir"))


def _config_path(name: str | None) -> Path | None:
    if name is None:
        return None
    from ray_jobs.config import resolve_config_path  # imports torch: job commands and --config only

    return resolve_config_path(name)


def _existing_results_dir(args) -> Path:
    """The results folder query/tables read; JobError when it does not exist (a mistyped path
    must not read as a folder without results)."""
    root = _results_dir(args.config, args.overrides)
    if not path_exists(root, "results_dir"):
        raise JobError(f"results_dir: no such folder {root}")
    if not root.is_dir():
        raise JobError(f"results_dir: {root} is not a folder")
    return root


def _query(args) -> int:
    root = _existing_results_dir(args)
    if not results.table_names(root):
        raise JobError(f"results_dir: no tables under {root}")
    print(results.format_rows(results.query(root, args.sql), args.format))
    return 0


def _tables(args) -> int:
    root = _existing_results_dir(args)  # an existing folder without tables: an empty listing, exit 0
    counts = results.table_counts(root)
    if not counts:
        print(f"no tables under {root}")
    for name, n in counts.items():
        print(f"{name}\t{n}")
    return 0


def _listing(args) -> int:
    """query or tables; a reader that closes the pipe (`| head`) ends it quietly (exit 141).
    Only these here: a job's BrokenPipeError is another pipe's fault, and shows (the bench
    guards its own printing, after its rows are written)."""
    return printing_to_a_pipe(lambda: _query(args) if args.command == "query" else _tables(args))


def _job(args) -> int:
    from ray_jobs import jobs  # imports torch and the training stack

    config = args.config or ("demo" if args.command == "demo" else None)
    seeds = jobs.parse_seeds(args.seeds) if getattr(args, "seeds", None) is not None else None
    if seeds is not None:
        seed_key = f"{jobs.SEEDED_SECTION[args.command]}.seed"
        if any(o.partition("=")[0].strip() == seed_key for o in args.overrides):
            raise ConfigError(f"--seeds and {seed_key}=... both set the {args.command} job's seed: give one")
    cfg = jobs.load(_config_path(config), args.overrides)
    if seeds is not None:
        return jobs.run_seeds(args.command, cfg, seeds, resume=args.resume)
    return jobs.run(args.command, cfg, resume=args.resume)


def _show_config(args) -> int:
    """The config a compress or prune job with these arguments reads (a demo job's defaults to
    `demo` where this defaults to none), written out by `config_text.config_yaml`."""
    from ray_jobs import jobs
    from ray_jobs.config_text import config_yaml

    cfg = jobs.load(_config_path(args.config), args.overrides)
    command = one_line(shlex.join(["python", "-m", "ray_jobs", "config", *(["--config", args.config] if args.config else []),
                                   *args.overrides]))
    about = ("The settings a compress or prune job given these arguments runs with: the defaults, the "
             "file's values and the overrides, paths made absolute; each key's comment is its dataclass's. "
             "`--config` reads this file back.")
    print(config_yaml(cfg, "\n".join([command, *textwrap.wrap(about, 94)])), end="")
    return 0


def _bad_input_types() -> tuple[type, ...]:
    from training.data import DataError

    return (ConfigError, JobError, results.ResultsError, DataError)


def _parse(argv: list[str]) -> argparse.Namespace:
    """The command line of a non-bench command; JobError (one line, exit 2) when unusable."""
    parser = _parser()
    # key=value overrides may follow options too (`query SQL --format json results_dir=X`).
    args, extra = parser.parse_known_args(argv)
    if any(t.startswith("-") or "=" not in t for t in extra):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = list(getattr(args, "overrides", None) or []) + extra
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = None
    try:
        args = None if argv[:1] == ["bench"] else _parse(argv)
        if args is None:
            from ray_jobs import bench

            return bench.main(argv[1:])
        if args.command in ("query", "tables"):
            return _listing(args)
        if args.command == "config":
            return printing_to_a_pipe(lambda: _show_config(args))
        return _job(args)
    except SweepInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        resumable = args is not None and args.command in JOBS  # a bench run or a query starts over
        print("interrupted" + (": run the same command again to resume" if resumable else ""), file=sys.stderr)
        return 130
    except SweepFailed as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if isinstance(exc, _bad_input_types()):
            # one line, all of it: a newline (in a path, say) written as \n, not cut there
            print(f"error: {one_line(str(exc))}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
