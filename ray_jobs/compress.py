"""The compression job: teacher -> GA top-k -> a Tune sweep of distillation trials.

    config -> checks (results_dir, data, teacher, sequence lengths, budget) -> search table (every GA
    candidate) -> prepare_teacher (fine-tune or reuse, logits cache; on a worker) ->
    one trial per top-k candidate + BiLSTM_soft baselines -> distill table (and the
    quantize table: each trained model in fp32 and its distill.quantize variants, on the
    CPU; one more trial does the same for the teacher; the epochs table: each trained
    model's and the teacher's fine-tuning's validation accuracy and loss per epoch), students saved under
    results_dir/students/SWEEP_ID/TRIAL_KEY; the configs table holds the job's settings
    -> quantize_stage: the saved models a longer distill.quantize list finds without a
    variant, quantized again (a task per model, each with a trial's resources).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
import torch

from ray_jobs import results, sweep
from ray_jobs.config import JobConfig, code_version, config_hash, identity_hash
from ray_jobs.errors import ConfigError, JobError, check_results_dir
from ray_jobs.precision import COMPRESS_KEYS, pin_auto
from search.cost import reads_pairs
from search.ga import run_ga
from search.latency import LatencyModel
from search.latency import load as load_latency_model
from search.space import InputError, SearchSpace, Teacher, teacher_spec
from training.checks import one_line
from training.data import classification_splits
from training.distill import (
    RECIPE,
    CompressTrainConfig,
    extra_transfer_examples,
    labeled_rows,
    prepare_teacher,
    saved_variant_rows,
    teacher_variant_rows,
    timing_device,
    train_student,
    transfer_examples,
)
from training.evaluate import saved_weights_bytes
from training.finetune import NotCached, labeled_half, num_labels_of
from training.models import BiLSTMSoft, check_teacher_loadable, cost_head

# The sections whose values decide what the compression job computes (its identity).
SECTIONS = ("seed", "data", "teacher", "search", "finetune", "distill", "baselines")


def sweep_id(cfg: JobConfig) -> str:
    """The job's identity: its config sections, the contents of its data and the trials'
    recipe (`training.distill.RECIPE`). Of `distill.quantize` only whether it lists a variant
    (the teacher's trial): a finished sweep run again with another list is restored, and
    `quantize_stage` quantizes its saved models under it, instead of distilling them anew."""
    d = cfg.distill
    ident = identity_hash(cfg, SECTIONS, d.transfer_extra, d.max_transfer_extra, recipe=RECIPE,
                          hashed_as={"distill.quantize": bool(d.quantize)})
    return f"compress-{ident[:12]}"


def check_transfer_extra(cfg: JobConfig, splits: dict) -> None:
    """Extra transfer data: code-search only, readable, and not all held out (before any work)."""
    if not cfg.distill.transfer_extra:
        return
    if cfg.data.task != "code-search":
        raise JobError(f"distill.transfer_extra: extra code-to-text data serves data.task=code-search, "
                       f"not {cfg.data.task!r}")
    if not extra_transfer_examples(cfg.distill, splits["valid"] + splits["test"], cfg.data.seed):
        raise JobError(f"distill.transfer_extra: no pair left in {list(cfg.distill.transfer_extra)} "
                       "once those sharing a text with valid/test are dropped")


def check_halves(cfg: JobConfig, splits: dict) -> None:
    """Both halves of the train split hold examples: the teacher fine-tunes on the labeled
    one, the students distil on the transfer set (before any work); the labeled one holds
    both labels (one class alone fine-tunes a constant teacher)."""
    labeled, _ = labeled_half(splits["train"], cfg.data)
    if not labeled:
        raise JobError(f"data: no labeled example to fine-tune the teacher on ({len(splits['train'])} train "
                       f"examples, labeled_fraction {cfg.data.labeled_fraction})")
    if not transfer_examples(splits["train"], cfg.data, cfg.distill):
        raise JobError(f"data: no unlabeled example to distil on ({len(splits['train'])} train examples, "
                       f"labeled_fraction {cfg.data.labeled_fraction}); distill.transfer_set=all uses both halves")
    labels = {ex.label for ex in labeled}
    if len(labels) == 1:
        raise JobError(f"data: the labeled part the teacher fine-tunes on ({len(labeled)} of {len(splits['train'])} "
                       f"train examples, labeled_fraction {cfg.data.labeled_fraction}) has label {labels.pop()} "
                       "only: a classifier needs both classes to learn from")
    start, stop = labeled_rows(splits["train"], cfg.data, cfg.distill)
    if cfg.distill.hard_weight and start == stop:  # the term would silently never fire
        raise JobError(f"distill.hard_weight: the transfer set holds no labeled row: distill.max_transfer="
                       f"{cfg.distill.max_transfer} keeps only unlabeled ones (the cap takes the unlabeled half first)")


def pair_task(splits: dict) -> bool:
    """Whether the task's examples are pairs (code search, clones), not single inputs (defects)."""
    return bool(splits["train"]) and splits["train"][0].text_b is not None


def check_pair_modes(cfg: JobConfig, splits: dict) -> None:
    """A single-input task (defect) has no pair to encode separately: `separate` is refused,
    not run as `joint` (before any work)."""
    if not splits["train"] or pair_task(splits):
        return
    for key, mode in (("teacher.pair_mode", cfg.teacher.pair_mode), ("distill.pair_mode", cfg.distill.pair_mode)):
        if mode == "separate":
            raise JobError(f"{key}: 'separate' encodes the two texts of a pair apart; data.task="
                           f"{cfg.data.task!r} has one input per example: use 'joint'")


def check_in_batch(cfg: JobConfig) -> None:
    """The in-batch loss needs pairs and a bi-encoder teacher (before any work)."""
    if not cfg.distill.in_batch_weight:
        return
    if cfg.data.task == "defect":
        raise JobError("distill.in_batch_weight: the in-batch loss needs a pair task "
                       "(code-search or clone), not data.task='defect'")
    if cfg.teacher.pair_mode != "separate":
        raise JobError("distill.in_batch_weight: the in-batch loss needs a bi-encoder teacher "
                       f"(teacher.pair_mode=separate), not {cfg.teacher.pair_mode!r}")


def check_bilstm_budget(cfg: JobConfig, splits: dict) -> None:
    """ConfigError before Ray starts when no BiLSTM_soft of `distill.bilstm_vocab` fits
    `search.target_mb`: the bilstm-budget trial failed after the teacher was fine-tuned."""
    if not cfg.baselines.bilstm_budget:
        return
    pair = splits["train"][0].text_b is not None  # as the trial builds it
    try:
        BiLSTMSoft.for_budget(cfg.search.target_mb * 1e6, cfg.distill.bilstm_vocab, num_labels_of(splits), pair=pair)
    except ValueError as err:
        raise ConfigError(f"search.target_mb={cfg.search.target_mb:g}: {err}, the budget BiLSTM_soft baseline's "
                          f"(distill.bilstm_vocab={cfg.distill.bilstm_vocab}; baselines.bilstm_budget=false leaves "
                          "it out)") from None


def teacher_dims(cfg: JobConfig) -> Teacher:
    """The teacher's family and dimensions, without loading weights; JobError if unknown or
    if its weights cannot be reached."""
    try:
        check_teacher_loadable(cfg.teacher.name)
        return teacher_spec(cfg.teacher.name)
    except ValueError as exc:
        raise JobError(f"teacher.name: {exc}") from None


def check_seq_lens(teacher: Teacher, lengths: dict[str, tuple[int | None, int]]) -> None:
    """ConfigError naming the first dotted key whose value is above its limit. `lengths`: key
    -> (value, None when unset; the most the teacher's position table allows for it). Run
    before any work: inside a worker the model fails with an index error far from the key."""
    for key, (value, limit) in lengths.items():
        if value is not None and value > limit:
            raise ConfigError(f"{key}: {value} is above {limit}, the most that teacher {teacher.name!r} "
                              f"allows ({teacher.family}, max_position_embeddings {teacher.max_positions})")


def seq_lens(cfg: JobConfig, teacher: Teacher) -> dict[str, tuple[int | None, int]]:
    """The compression job's lengths and their limits: the teacher's inputs (fine-tuning,
    logits), the students' (their position tables are the teacher's: `Arch.to_hf_config`) and
    the latency inputs both are timed on; each token takes one position."""
    limit = teacher.usable_positions
    return {"finetune.max_seq_len": (cfg.finetune.max_seq_len, limit),
            "search.seq_len": (cfg.search.seq_len, limit),  # FLOPs counted at a length students read
            "distill.max_seq_len": (cfg.distill.max_seq_len, limit),
            "distill.latency_seq_len": (cfg.distill.latency_seq_len, limit)}


def check_codebert_length(cfg: JobConfig) -> None:
    """ConfigError when the CodeBERT-base architecture timed beside each student
    (`distill.measure_codebert`) cannot read the latency inputs: its 512 positions bound them
    whatever the teacher's (a longer teacher passes `seq_lens`)."""
    d = cfg.distill
    key = "distill.latency_seq_len" if d.latency_seq_len else "distill.max_seq_len"
    limit = teacher_spec("codebert-base").usable_positions
    if d.measure_codebert and d.timed_seq_len > limit:
        raise ConfigError(f"{key}: {d.timed_seq_len} is above {limit}, the most the CodeBERT-base architecture timed "
                          f"beside each student reads (distill.measure_codebert); set "
                          f"distill.latency_seq_len to at most {limit} or distill.measure_codebert=false")


def student_head(cfg: JobConfig, splits: dict) -> str:
    """The `search.cost` head of the students this job builds (pair tasks read by a
    bi-encoder student carry its pair head, not the sequence classifier's)."""
    return cost_head(cfg.distill.pair_mode if pair_task(splits) else "joint", cfg.distill.pair_head)


def search_candidates(cfg: JobConfig, teacher: Teacher, num_labels: int, head: str = "sequence") -> list[dict]:
    """The best feasible architectures the GA found, best first (rank 0 = best): every (ffn,
    vocab) point of each (layers, hidden, heads) it explored that can rank among as many as it
    evaluated (population + generations x children); sizes are those of students with `head`
    (`student_head`). ConfigError, before any work, for a budget or cap below the space's
    smallest architecture."""
    s = cfg.search
    try:
        space = SearchSpace.from_teacher(teacher, min_head_size=s.min_head_size, max_layers=s.max_layers)
    except InputError as err:
        raise ConfigError(f"search.{err}") from err  # names min_head_size or max_layers
    seq_len = s.seq_len or cfg.distill.max_seq_len
    latency_model = _latency_model(cfg, head)
    everything = s.population + s.generations * s.children  # archive size bound
    try:
        found = run_ga(
            space, teacher, s.target_mb, seq_len,
            variant=s.variant, population=s.population, generations=s.generations,
            crossover_rate=s.crossover_rate, children=s.children,
            seed=cfg.seed if s.seed is None else s.seed, top_k=everything, max_mb=s.max_mb,
            num_labels=num_labels, head=head, latency_model=latency_model, max_ms=s.max_ms,
        )
    except InputError as err:  # a target, max_mb or max_ms below the smallest architecture
        raise ConfigError(f"search.{err}") from None
    if not found:
        raise JobError(
            f"search.target_mb: no architecture of {teacher.name} fits {s.target_mb} MB"
            + (f" (max_mb {s.max_mb})" if s.max_mb is not None else "")
        )
    return found


def _latency_model(cfg: JobConfig, head: str) -> LatencyModel | None:
    """search.latency_model loaded; ConfigError naming it when missing or malformed (the search
    refuses one fitted on the other input format than the students', or at another seq_len)."""
    if cfg.search.latency_model is None:
        return None
    try:
        model = load_latency_model(cfg.search.latency_model)
    except InputError as err:
        raise ConfigError(f"search.latency_model: {err}") from None
    if differences := timing_differences(cfg, model, head):
        print(f"compress: note: search.latency_model was fitted with {', '.join(differences)}: the rows' "
              "predicted_ms and their measured latency_ms are not timed alike (a budget for another "
              "machine is fine; compare the two only where they are)")
    return model


def timing_differences(cfg: JobConfig, model: LatencyModel, head: str) -> list[str]:
    """Where the latency model's timing settings differ from those the job times its students
    (of the search head `head`) with (head, device, torch threads, tokens an input), each as
    "model's vs job's"; [] when alike."""
    device = timing_device(cfg.distill, "cuda" if cfg.resources.gpus_per_trial > 0 else "cpu")
    threads = cfg.distill.latency_threads or sweep.trial_threads(cfg.resources.cpus_per_trial)
    seq_len = cfg.distill.timed_seq_len
    differences = []
    # a head of the other input format is refused by the search, not noted
    if model.head is not None and model.head != head and model.pair == reads_pairs(head):
        differences.append(f"the {model.head} head vs the job's {head}")
    if model.device != device:
        differences.append(f"device {model.device} vs the job's {device}")
    if device == "cpu" and model.threads is not None and model.threads != threads:
        differences.append(f"{model.threads} thread(s) vs the job's {threads} (distill.latency_threads)")
    if model.seq_len != seq_len:
        differences.append(f"{model.seq_len} tokens an input vs the job's {seq_len} (distill.latency_seq_len)")
    return differences


def selected_ranks(cfg: JobConfig, candidates: list[dict]) -> list[int]:
    """Ranks of the candidates trained as students: the best top_k, or with
    search.distinct_shapes the best of each (layers, hidden, ffn, vocab) until top_k."""
    if not cfg.search.distinct_shapes:
        return list(range(min(cfg.search.top_k, len(candidates))))
    ranks, shapes = [], set()
    for rank, c in enumerate(candidates):
        shape = (c["layers"], c["hidden"], c["ffn"], c["vocab"])
        if shape not in shapes and len(ranks) < cfg.search.top_k:
            shapes.add(shape)
            ranks.append(rank)
    return ranks


def search_rows(cfg: JobConfig, candidates: list[dict]) -> list[dict]:
    chosen = set(selected_ranks(cfg, candidates))
    return [{**c, "rank": i, "trial_key": "", "target_mb": cfg.search.target_mb,
             "selected": i in chosen, "time": time.time(), "device": "",
             "node_id": ""} for i, c in enumerate(candidates)]


def trial_specs(cfg: JobConfig, candidates: list[dict]) -> list[dict]:
    """One spec per selected candidate, plus the enabled BiLSTM_soft baselines, in the order
    Tune starts them."""
    specs = []
    if cfg.baselines.bilstm_paper:  # the longest trial (an H300 LSTM) first: the rest fill in beside it
        specs.append({"trial_key": "bilstm-paper", "candidate": {"kind": "bilstm", "variant": "paper"}})
    specs += [{"trial_key": f"student-{i}", "candidate": {"kind": "student", **candidates[rank]}}
              for i, rank in enumerate(selected_ranks(cfg, candidates))]
    if cfg.baselines.bilstm_budget:
        specs.append({"trial_key": "bilstm-budget",
                      "candidate": {"kind": "bilstm", "variant": "budget",
                                    "target_mb": cfg.search.target_mb}})
    if cfg.distill.quantize:  # the teacher quantized alone: quantize rows only, no distill row
        specs.append({"trial_key": "teacher", "candidate": {"kind": "teacher"}})
    return specs


def distill_trial(spec: dict, ctx: sweep.TrialContext) -> None:
    """Tune trial: distil one candidate and report its rows: one `epochs` row per epoch, its
    quantized variants, its `distill` row (the teacher's trial: its quantized variants only)."""
    torch.set_num_threads(ctx.threads)
    p = ctx.params
    if spec["candidate"]["kind"] == "teacher":
        listed = quantize_config(p["train_cfg"].distill.quantize)
        for variant in teacher_variant_rows(p["artifacts"], p["train_cfg"]):
            ctx.report({**variant, "model": "teacher", "kind": "teacher", "quantize_config": listed}, table="quantize")
        return
    out_dir = Path(p["students_dir"]) / spec["trial_key"]
    kind = spec["candidate"].get("kind", "student")

    def epoch_row(epoch: dict) -> None:  # the learning curve: one epochs row per epoch
        ctx.report({**epoch, "model": spec["trial_key"], "kind": kind}, table="epochs")

    row = train_student(spec["candidate"], p["artifacts"], p["train_cfg"], out_dir,
                        device=ctx.device, progress=epoch_row)
    # The variants first: a trial whose distill row is on disk has its quantize rows too.
    listed = quantize_config(p["train_cfg"].distill.quantize)
    for variant in row.pop("quantize"):
        ctx.report({**variant, "model": spec["trial_key"], "kind": row["kind"], "quantize_config": listed},
                   table="quantize")
    ctx.report({**row, "name": spec["trial_key"], "teacher_size_mb": p["teacher_size_mb"]})


def quantize_config(variants) -> str:
    """A compression trial's or stage's quantize rows' `quantize_config`: the variants they
    were quantized under, as JSON text (`{"variants": [...]}`, as the pruning job's)."""
    return json.dumps({"variants": list(variants)})


def _requantize(artifacts, train_cfg: CompressTrainConfig, model: dict, *, device: str) -> list[dict]:
    """`saved_variant_rows` of one model ({"trial_key", "variants", **its spec}), on the CPU
    (a task with a trial's resources: `sweep.call_as_trials` sets its torch threads)."""
    node = ray.get_runtime_context().get_node_id()
    return [{**row, "trial_key": model["trial_key"], "model": model["trial_key"], "kind": model["kind"],
             "node_id": node, "quantize_config": quantize_config(model["variants"])}
            for row in saved_variant_rows(model, artifacts, train_cfg, model["variants"])]


def quantize_stage(cfg: JobConfig, train_cfg: CompressTrainConfig, artifacts_of: Callable[[], Any], sid: str,
                   stamp: dict, errors: list[str], stale: set[tuple] = frozenset()) -> tuple[list[dict], list[str]]:
    """The sweep's quantize rows, after its trials: each model whose rows lack a variant of
    `distill.quantize` (a finished sweep run again with a longer list: the sweep id does not
    hash the list) is loaded from its folder under results_dir/students/SWEEP_ID (the teacher
    from its fine-tuned cache) and quantized again under the list plus the variants it has, in
    a task with a trial's resources, as its trial did (the models side by side, as the cluster
    holds them); its rows are replaced by the new ones, so that a model's rows
    come from one run (`accuracy_kept` and `speedup_vs_fp32` over the fp32 row timed with them)
    and no row a trial reported goes missing. So is each model whose fp32 row or listed
    variant's row holds an error an earlier run wrote (`stale`: `stale_errors` before the
    sweep; a kernel this machine lacks, say, is retried on the next run, on another machine or
    library), where it can be loaded: one that cannot is left with its rows and a printed line.
    Models of failed trials (`errors`: "KEY: message") are left to the resume that retries
    them. `artifacts_of()` gives the teacher's artifacts, called only when a model is left to
    quantize. JobError, before any is quantized, where a saved folder is gone. Returns the
    sweep's quantize rows and the models whose quantization failed (`stage_failure`): the
    others' rows are written all the same (each model's as it ends, so an interrupt keeps
    those already done), and the next run quantizes the failed ones again
    (their rows still lack a variant, or hold an earlier run's error)."""
    earlier = results.read_rows(cfg.results_dir, "quantize", sid)
    wanted = set(cfg.distill.quantize)
    have: dict[str, set] = {}
    good: dict[str, set] = {}  # the variants whose row is not a stale error
    for row in earlier:
        have.setdefault(row["trial_key"], set()).add(row["variant"])
        if (row["trial_key"], row["variant"], row["time"]) not in stale:
            good.setdefault(row["trial_key"], set()).add(row["variant"])
    failed = {e.split(":", 1)[0] for e in errors}
    students = Path(cfg.results_dir).resolve() / "students" / sid  # where it is now (the folder may have moved)
    specs = {r["trial_key"]: {**{k: r[k] for k in ("kind", "vocab", "pair_mode", "teacher_accuracy")},
                              "model_dir": str(students / r["trial_key"])}
             for r in results.read_rows(cfg.results_dir, "distill", sid)} | {"teacher": {"kind": "teacher"}}
    models = [{**specs[key], "trial_key": key, "variants": [*cfg.distill.quantize, *sorted(variants - wanted - {"fp32"})]}
              for key, variants in sorted(have.items(), key=lambda kv: (kv[0] != "teacher", kv[0]))  # the longest first
              if key in specs and key not in failed]
    todo = [m for m in models if not wanted <= have[m["trial_key"]]]
    # per model, the fp32 or listed variants whose rows are stale errors
    errored = {key: sorted((wanted | {"fp32"}) & variants - good.get(key, set())) for key, variants in have.items()}
    retry = [m for m in models if m not in todo and errored[m["trial_key"]]]
    if gone := [m["model_dir"] for m in todo if "model_dir" in m and not Path(m["model_dir"]).is_dir()]:
        raise JobError(f"compress: distill.quantize lists variants that {len(gone)} saved model(s) of finished sweep "
                       f"{sid} have no rows for, and their folders are gone ({', '.join(gone)}); give the list "
                       "the sweep ran with, or another results_dir to distil anew")
    retried = _retried(retry)
    todo = [m for m in models if m in todo or m in retried]  # in the models' order: the longest first
    if not todo:
        return earlier, []
    try:
        artifacts = artifacts_of()
    except CacheGone as exc:
        if any(m not in retried for m in todo):
            raise
        no_retry(exc.gone)
        return earlier, []
    if retried:
        retrying([f"{m['trial_key']} {v}" for m in retried for v in errored[m["trial_key"]]])
    rows = earlier

    def keep(i: int, outcome: Any) -> None:  # each model's rows as it ends: an interrupt keeps them
        nonlocal rows
        if not isinstance(outcome, Exception):
            rows = replace_model_rows(cfg.results_dir, sid, rows, todo[i]["trial_key"],
                                      [{**r, **stamp, "time": time.time()} for r in outcome])

    outcomes = sweep.call_as_trials(cfg, _requantize, [(artifacts, train_cfg, m) for m in todo], on_result=keep)
    failures = [stage_failure(m["trial_key"], exc) for m, exc in zip(todo, outcomes, strict=True)
                if isinstance(exc, Exception)]
    return results.read_rows(cfg.results_dir, "quantize", sid), failures  # as the sweep's outcome holds them


def replace_model_rows(results_dir: str, sid: str, rows: list[dict], key: str, new: list[dict]) -> list[dict]:
    """`rows` (a sweep's quantize rows) with model `key`'s replaced by `new`, written (both
    jobs' quantize stages, as each model ends); the rows written."""
    rows = [r for r in rows if r["trial_key"] != key] + new
    results.write_rows(results_dir, "quantize", sid, rows)
    return rows


def stage_failure(key: str, exc: Exception) -> str:
    """A model the quantize stage (either job's) failed to quantize, as the job's failures
    name it: "KEY: quantize stage: Type: message" on one line."""
    return f"{key}: quantize stage: {one_line(f'{type(exc).__name__}: {exc}')}"


def _retried(models: list[dict]) -> list[dict]:
    """Of `models`, those left to retry: their saved folder is there (a line printed for
    those whose folder is gone)."""
    there = [m for m in models if "model_dir" not in m or Path(m["model_dir"]).is_dir()]
    if gone := [m["trial_key"] for m in models if m not in there]:
        print(f"quantize stage: no retry of {', '.join(gone)}: saved folder gone", flush=True)
    return there


def stale_errors(results_dir: str, sid: str) -> set[tuple]:
    """(trial_key, variant, time) of the sweep's quantize rows that hold an error, as they are
    before its trials run: the rows an earlier run wrote, which the quantize stage retries."""
    return {(r["trial_key"], r["variant"], r["time"]) for r in results.read_rows(results_dir, "quantize", sid)
            if r.get("error")}


class CacheGone(JobError):
    """`from_cache`'s refusal; `gone` says what is no longer cached (a retry alone names it)."""

    def __init__(self, message: str, gone: str):
        super().__init__(message)
        self.gone = gone


def from_cache(prepare: Callable[..., Any], needs: str, remedy: str) -> Any:
    """`prepare(reuse_only=True)`: the model a finished sweep trained or pruned from, out of its
    cache (both jobs' quantize stages); CacheGone (a JobError) "`needs`, but WHAT IS GONE;
    `remedy`" where it is gone: fine-tuned again, it would be another model."""
    try:
        return prepare(reuse_only=True)
    except NotCached as exc:
        raise CacheGone(f"{needs}, but {exc}; {remedy}", str(exc)) from None


def no_retry(gone: str) -> None:
    """The line a quantize stage prints where the model its retries need is no longer cached: a
    retry alone never refuses a run."""
    print(f"quantize stage: no retry of an earlier run's errors: {gone}", flush=True)


def retrying(variants: list[str]) -> None:
    """The line a quantize stage prints before it retries `variants` ("KEY VARIANT")."""
    print(f"quantize stage: retrying {len(variants)} variant(s) whose rows from an earlier run hold an error: "
          + ", ".join(variants), flush=True)


def cached_teacher(cfg: JobConfig, train_cfg: CompressTrainConfig):
    """The teacher's artifacts from its cache, on a worker: the teacher the finished sweep's
    students were distilled from (`from_cache`)."""
    return from_cache(
        lambda **kwargs: sweep.call_on_worker(cfg, prepare_teacher, train_cfg, cfg.data, cfg.teacher,
                                              str(Path(cfg.results_dir) / "cache"), **kwargs),
        "compress: distill.quantize lists variants the finished sweep's models have no rows for, and they are "
        "quantized against the teacher they were distilled from",
        "give the list the sweep ran with, or another results_dir to distil anew")


def write_curve(results_dir: str, sid: str, metrics: dict, stamp: dict, model: str, precision: str) -> None:
    """A one-off fine-tuning's curve (`metrics["curve"]`) as `epochs` rows with trial_key,
    model and kind `model` ("teacher": the compression job's teacher; "seq2seq": the pruning
    job's code-to-text model), kept beside the rows an earlier run of the same sweep wrote.
    A model fine-tuned before its curve was recorded has none. `precision`: the one the sweep
    runs the model's fine-tuning in ("auto" pinned), which its cache key holds; it names the
    rows of a model cached before its metrics recorded `precision` and `emulated`, and those
    rows' `emulated` stays NULL: it is known only where the steps ran."""
    ran_in = {"precision": metrics.get("precision", precision), "emulated": metrics.get("emulated")}
    curve = [{**stamp, **epoch, **ran_in, "trial_key": model, "model": model, "kind": model,
              "device": metrics.get("device"), "time": time.time()} for epoch in metrics.get("curve", [])]
    if curve:
        earlier = results.read_rows(results_dir, "epochs", sid)
        results.write_rows(results_dir, "epochs", sid, earlier + curve)


def has_curve(results_dir: str, sid: str, model: str) -> bool:
    """Whether the sweep's `epochs` table holds `model`'s fine-tuning curve (`write_curve`)."""
    return any(r.get("trial_key") == model for r in results.read_rows(results_dir, "epochs", sid))


def teacher_size_mb(teacher_dir: str) -> float:
    """Serialised size (MB = 1e6 bytes) of the fine-tuned teacher's safetensors files (NaN: none)."""
    size = saved_weights_bytes(teacher_dir)
    return size / 1e6 if size else float("nan")


def sweep_then_quantize(cfg: JobConfig, job: sweep.Sweep, resume: bool,
                        quantize: Callable[[list[str], set[tuple]], tuple[list[dict], list[str]]]
                        ) -> sweep.SweepOutcome:
    """Run the sweep, then, with a `distill.quantize` list, the quantize stage:
    `quantize(trial_errors, stale)` -> (rows, failures). `stale` is read before the trials
    run, so an error row a trial of this run writes waits for the next run instead of being
    quantized twice in one run. The stage's failures join the outcome's errors: the job exits
    1 naming them, after its summary."""
    stale = stale_errors(cfg.results_dir, job.sweep_id)
    outcome = sweep.run_sweep(cfg, job, resume=resume)
    if cfg.distill.quantize:
        outcome.rows["quantize"], failures = quantize(outcome.errors, stale)
        outcome.errors.extend(failures)
    return outcome


def run(cfg: JobConfig, *, resume: bool = False) -> sweep.SweepOutcome:
    """Run (or resume) the compression job; returns the sweep outcome (rows from disk)."""
    check_results_dir(cfg.results_dir)
    # Cheap input checks first: bad data, teacher or budget fail before Ray starts.
    splits = classification_splits(cfg.data)
    check_halves(cfg, splits)
    check_transfer_extra(cfg, splits)
    check_pair_modes(cfg, splits)
    check_in_batch(cfg)
    teacher = teacher_dims(cfg)
    check_seq_lens(teacher, seq_lens(cfg, teacher))
    check_codebert_length(cfg)
    candidates = search_candidates(cfg, teacher, num_labels_of(splits), student_head(cfg, splits))
    check_bilstm_budget(cfg, splits)  # after the search: a budget no student meets is named by it
    specs = trial_specs(cfg, candidates)
    if not specs:
        raise JobError("compress: nothing to train (search.top_k=0, both baselines off, distill.quantize=[])")
    sid = sweep_id(cfg)
    with sweep.exclusive(cfg, sid):  # a second driver of this sweep is refused before any write
        return _run_sweep(cfg, sid, candidates, specs, resume)


def _run_sweep(cfg: JobConfig, sid: str, candidates: list[dict], specs: list[dict],
               resume: bool) -> sweep.SweepOutcome:
    """The job's part that writes: under the sweep's lock."""
    stamp = {"config_hash": config_hash(cfg, SECTIONS), "code_version": code_version()}
    finished = sweep.check_restore_settings(cfg, sid, len(specs))
    started = sweep.init_ray(cfg)
    try:
        sweep.precheck(cfg)
        pinned, resolved = pin_auto(cfg, sid, COMPRESS_KEYS, finished)
        sweep.record_config(cfg, "compress", sid, stamp, finished, resolved)
        train_cfg = CompressTrainConfig(finetune=pinned.finetune, distill=pinned.distill)
        params = {"artifacts": None, "train_cfg": train_cfg, "teacher_size_mb": None,
                  "students_dir": str(Path(cfg.results_dir) / "students" / sid)}
        # A finished sweep trains nothing when restored: its search rows and teacher curve stay
        # those of the run that trained its students (rewritten, they would carry this run's
        # code version, and a teacher fine-tuned again where its cache was removed), unless
        # they are gone (a table file moved away): then they are written again, as before.
        if not finished or not results.read_rows(cfg.results_dir, "search", sid):
            results.write_rows(cfg.results_dir, "search", sid,
                               [{**r, **stamp} for r in search_rows(cfg, candidates)])
        if not finished or not has_curve(cfg.results_dir, sid, "teacher"):
            artifacts = sweep.call_on_worker(cfg, prepare_teacher, train_cfg, cfg.data, cfg.teacher,
                                             str(Path(cfg.results_dir) / "cache"))
            write_curve(cfg.results_dir, sid, artifacts.teacher_metrics, stamp, "teacher",
                        train_cfg.finetune.precision)
            params.update(artifacts=artifacts, teacher_size_mb=teacher_size_mb(artifacts.teacher_dir))
        job = sweep.Sweep(job="compress", sweep_id=sid, fn=distill_trial,
                          trials=specs, tables=("distill", "quantize", "epochs"),
                          params=params, stamp=stamp, last_table={"teacher": "quantize"})
        return sweep_then_quantize(cfg, job, resume, lambda errors, stale: quantize_stage(
            cfg, train_cfg, lambda: params["artifacts"] or cached_teacher(cfg, train_cfg), sid, stamp, errors, stale))
    finally:
        if started:
            ray.shutdown()
