"""Human summaries of a sweep's tables, and the BLEU-versus-sparsity plot."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from ray_jobs import results
from ray_jobs.errors import ConfigError
from ray_jobs.results import sql_text
from training.staging import publish, staging_path

# A `distill` row's shape, as the summaries print it (NULL for a row of no known kind).
_ARCH_SQL = """CASE WHEN kind = 'student'
                    THEN format('L{} H{} A{} D{} V{}', layers, hidden, heads, ffn, vocab)
                    WHEN kind = 'bilstm' THEN format('BiLSTM H{} V{}', hidden, vocab) END"""


def _text(tbl: pa.Table) -> str:
    """A summary's aligned table: a blank cell has nothing to show (a teacher has no genes, a
    seed summary of one sweep no spread)."""
    return results.format_rows(tbl, null="")


def compress_summary(results_dir: str, sweep_id: str) -> str:
    """Teacher and each student: size, accuracy, retention, latency, speed-ups; then the
    quantized variants (shown also when no student or baseline finished)."""
    names = results.table_names(results_dir)
    sid = sql_text(sweep_id)
    has_rows = "distill" in names and results.query(
        results_dir, f"SELECT count(*) AS n FROM distill WHERE sweep_id = {sid}").column("n")[0].as_py()
    lines = _distill_lines(results_dir, sweep_id) if has_rows else [f"compress: no distill rows in {sweep_id}"]
    if "quantize" in names:
        lines += _variant_lines(results_dir, sweep_id, names)
    return "\n".join(lines)


def _distill_lines(results_dir: str, sweep_id: str) -> list[str]:
    sid = sql_text(sweep_id)
    teacher = results.query(results_dir, f"""
        SELECT 'teacher' AS model, 'teacher' AS kind, NULL AS arch,
               any_value(teacher_size_mb) AS size_mb, any_value(teacher_accuracy) AS accuracy,
               1.0 AS retention, median(teacher_latency_ms) AS latency_ms,
               1.0 AS speedup_vs_teacher,
               median(teacher_speedup_vs_codebert) AS speedup_vs_codebert,
               NULL AS kept_epoch
        FROM distill WHERE sweep_id = {sid}""")
    students = results.query(results_dir, f"""
        SELECT trial_key AS model, kind, {_ARCH_SQL} AS arch,
               serialized_mb AS size_mb, accuracy, retention, latency_ms,
               speedup_vs_teacher, speedup_vs_codebert,
               format('{{}}/{{}}', best_epoch, epochs) AS kept_epoch
        FROM distill WHERE sweep_id = {sid} ORDER BY kind DESC, model""")
    codebert = results.query(results_dir, f"""
        -- the students' own: a pair BiLSTM_soft beside joint students has CodeBERT timed as a pair
        SELECT median(codebert_latency_ms) FILTER (WHERE kind = 'student') AS ms,
               any_value(latency_seq_len) AS seq,
               any_value(latency_threads) AS threads,
               -- where they were timed (rows before latency_device: the trial's device)
               string_agg(DISTINCT coalesce(latency_device, device), ', ') AS devices
        FROM distill WHERE sweep_id = {sid}""").to_pylist()[0]
    table = pa.concat_tables([teacher.cast(students.schema), students])
    lines = [f"Compression ({sweep_id}): sizes in MB (serialised), latency in ms "
             f"(batch 1, sequence {codebert['seq']}, {codebert['threads']} thread(s)"
             f"{', on ' + codebert['devices'] if codebert['devices'] else ''})",
             _text(table),
             "teacher: its latency is the median of its timings in the trials; each speed-up is "
             "timed within its own trial, side by side, so it need not equal the ratio of two rows' ms"]
    if codebert["ms"] is not None:
        lines.append(f"CodeBERT-base architecture at the same settings, in the students' input format: "
                     f"{codebert['ms']:.1f} ms")
    still = [r["trial_key"] for r in results.query(results_dir, f"""
        SELECT trial_key FROM distill WHERE sweep_id = {sid} AND best_epoch = epochs AND epochs > 1
        ORDER BY kind DESC, trial_key""").to_pylist()]
    if still:  # best-on-validation at the last of several epochs: more epochs may still pay
        lines.append(f"kept_epoch: the best-on-validation epoch scored; {', '.join(still)} kept the last "
                     "epoch, still improving when training stopped")
    steps = results.query(results_dir, f"""
        SELECT precision || CASE WHEN emulated THEN ', emulated' ELSE '' END AS precision, models FROM (
            SELECT precision, bool_or(emulated) AS emulated,
                   string_agg(trial_key, ', ' ORDER BY kind DESC, trial_key) AS models FROM distill
            WHERE sweep_id = {sid} AND precision IS NOT NULL GROUP BY precision) ORDER BY 1""").to_pylist()
    if steps:  # what `auto` resolved to here (bf16 only where native): the train seconds depend on it
        lines.append("distillation steps in " + "; ".join(
            r["precision"] if len(steps) == 1 else f"{r['precision']} ({r['models']})" for r in steps))
    return lines


def _variant_lines(results_dir: str, sweep_id: str, names: list[str]) -> list[str]:
    """The quantize rows of a compression sweep (the CPU, whatever device the trials had);
    `names`: the folder's tables."""
    sid = sql_text(sweep_id)
    variants = results.query(results_dir, f"""
        SELECT model, variant, size_bytes / 1e6 AS size_mb, accuracy, accuracy_kept, retention,
               latency_ms, speedup_vs_fp32, score_batch, left(error, 60) AS error
        FROM quantize WHERE sweep_id = {sid} ORDER BY kind DESC, model, variant = 'fp32' DESC, variant""")
    if not variants.num_rows:
        return []
    settings = results.query(results_dir, f"""
        SELECT any_value(latency_seq_len) AS seq, any_value(latency_threads) AS threads
        FROM distill WHERE sweep_id = {sid}""").to_pylist()[0] if "distill" in names else {"seq": None}
    timing = (f"batch 1, sequence {settings['seq']}, {settings['threads']} thread(s)" if settings["seq"]
              else "batch 1")
    return ["Quantized on the CPU (size: torch.save bytes, the graph file's for onnx variants; "
            f"latency in ms on the CPU, {timing}; speed-up over the same model in fp32, their timed "
            "runs alternated; accuracy scored in batches: dynamic int8 variants set their activation "
            "scales per batch, of `score_batch` pairs)",
            _text(variants), *_emulated_line(results_dir, sid)]


def _emulated_line(results_dir: str, sid: str) -> list[str]:
    """A line naming the quantize variants of the sweep (`sid`: its SQL text) that their device
    emulated (the rows' `emulated`), whose latency is no measure of a device with the units."""
    rows = results.query(results_dir, f"""
        SELECT variant, string_agg(DISTINCT device, ', ' ORDER BY device) AS devices FROM quantize
        WHERE sweep_id = {sid} AND emulated GROUP BY variant ORDER BY variant""").to_pylist()
    if not rows:
        return []
    named = "; ".join(f"{r['variant']} on {r['devices']}" for r in rows)
    return [f"emulated: {named}: that device has no native units for it (bf16: AVX512-BF16 or AMX; "
            "fp16: AVX512-FP16 or AMX-FP16) and converts each operand, so their latencies say nothing "
            "of a device that has them"]


def _flat(config: dict, prefix: str = "") -> dict[str, object]:
    """A nested config as dotted key -> value."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _of_sections(key: str, sections: tuple[str, ...]) -> bool:
    """Whether a flattened `configs` key is a setting of `sections`, or what the sweep resolved
    one to (`resolved.distill.precision`: `ray_jobs.precision`)."""
    parts = key.split(".")
    return parts[0] in sections or (parts[0] == "resolved" and len(parts) > 1 and parts[1] in sections)


def check_seed_sweeps(results_dir: str, sweep_ids: list[str], seed_key: str,
                      sections: tuple[str, ...], unread: tuple[str, ...] = (), rows_table: str | None = None
                      ) -> list[str]:
    """The sweep ids, each once (a sweep named twice counts once); ConfigError unless the sweeps ran one job's settings under distinct values of `seed_key`
    (e.g. "distill.seed"), as their `configs` rows record them: the settings of `sections`
    (those the job's sweep id hashes) but the dotted keys `unread` (which the job resets
    before hashing, the pruning job's `UNREAD`, or which the spread does not read, the
    compression job's `distill.quantize`) compared where both sweeps record them; a sweep
    without a `configs` row is not checked. What the sweeps resolved "auto" to counts as a
    setting, and so do the precisions their `rows_table` rows say they trained in (a sweep
    recorded before resolutions were). A spread over sweeps of other epochs or precisions, or
    of one seed twice, is not a seed's."""
    sweep_ids = list(dict.fromkeys(sweep_ids))
    if "configs" not in results.table_names(results_dir):
        return sweep_ids
    recorded = {}
    for sid in sweep_ids:
        rows = results.read_rows(results_dir, "configs", sid)
        if rows:
            recorded[sid] = {k: v for k, v in _flat(json.loads(rows[-1]["config"])).items()
                             if _of_sections(k, sections) and k not in unread}
            if rows_table and (ran := ", ".join(sorted(results.precisions(results_dir, rows_table, sid)))):
                recorded[sid][f"{rows_table} rows' precision"] = ran
    seeds: dict[object, str] = {}
    for sid, settings in recorded.items():
        seed = settings.get(seed_key)
        if seed in seeds:
            raise ConfigError(f"summary: sweeps {seeds[seed]} and {sid} ran the same {seed_key} ({seed}): "
                             "not two seeds")
        seeds[seed] = sid
    (first, base), *others = recorded.items() or [(None, {})]
    for sid, other in others:
        differ = sorted(k for k in base.keys() & other.keys() if k != seed_key and base[k] != other[k])
        if differ:
            shown = ", ".join(f"{k} ({base[k]!r} against {other[k]!r})" for k in differ[:3])
            raise ConfigError(f"summary: sweeps {first} and {sid} differ in {shown}"
                             f"{f' and {len(differ) - 3} more' if len(differ) > 3 else ''}, not only in "
                             f"{seed_key}: their spread is not a seed's")
    return sweep_ids


def _across_sweeps(results_dir: str, sweep_ids: list[str], table: str, select: str, order: str,
                   heading: str, empty: str) -> str:
    """`select` over `table`'s rows of the sweeps (GROUP BY ALL ORDER BY `order`), under the
    line "Across N `heading`"; `empty` when there is nothing to show."""
    if not sweep_ids or table not in results.table_names(results_dir):
        return empty
    ids = ", ".join(sql_text(s) for s in sweep_ids)
    rows = results.query(results_dir, f"SELECT {select} FROM {table} WHERE sweep_id IN ({ids}) "
                                      f"GROUP BY ALL ORDER BY {order}")
    if not rows.num_rows:
        return empty
    return f"Across {len(sweep_ids)} {heading}\n{_text(rows)}"


def seeds_summary(results_dir: str, sweep_ids: list[str]) -> str:
    """Each model's test accuracy and retention across the sweeps of one compression job run
    under several distillation seeds: mean, sample standard deviation (blank for one seed),
    range. A model is its trial_key, shape and teacher accuracy (the search's seed, not the
    distillation's, picks the shapes; sweeps of different teachers stay apart). ConfigError for
    sweeps whose recorded settings differ in more than distill.seed (`check_seed_sweeps`)."""
    from ray_jobs.compress import SECTIONS  # the job's modules import torch and Ray: only here

    # not the quantized variants, which the spread does not read (a finished sweep quantized
    # again under a longer list keeps the configs row it ran with)
    sweep_ids = check_seed_sweeps(results_dir, sweep_ids, "distill.seed", SECTIONS, ("distill.quantize",),
                                  rows_table="distill")
    return _across_sweeps(results_dir, sweep_ids, "distill", f"""
        trial_key AS model, kind, {_ARCH_SQL} AS arch,
        count(*) AS seeds, avg(accuracy) AS mean_accuracy, stddev_samp(accuracy) AS sd_accuracy,
        avg(retention) AS mean_retention, min(retention) AS min_retention,
        max(retention) AS max_retention, teacher_accuracy""", "kind DESC, model",
        f"distillation seeds ({', '.join(sweep_ids)}): test accuracy (mean, sample standard "
        "deviation) and retention (mean, min, max) per model", "compress: no distill rows")


# What a `prune` row's `sparsity` counts, per scope (training.prune.prunable_weights).
_SCOPE_WORDS = {"encoder": "encoder", "decoder": "decoder", "all": "encoder + decoder"}
# A pruned round timed below this speed-up over the dense model is reported as no faster.
# Its weights are zeros in dense matrices and its generation runs the same steps, so it does
# the dense model's work; timed beside it while the other trial shares the cores, rounds read
# 0.92-1.13x across three make runs (2026-12-06; 1.13 in the third, so 1.1 was too tight).
NO_FASTER_BELOW = 1.2


def _scopes(results_dir: str, sweep_id: str) -> list[str]:
    """The scopes of the sweep's `prune` rows, sorted (a row without one left out)."""
    return [r["scope"] for r in results.query(results_dir, f"""
        SELECT DISTINCT scope FROM prune WHERE sweep_id = {sql_text(sweep_id)} AND scope IS NOT NULL
        ORDER BY scope""").to_pylist()]


def sparsity_label(scopes: list[str]) -> str:
    """What `sparsity` measures for rows of these scopes: "encoder sparsity", "decoder
    sparsity", "encoder + decoder sparsity" (scope all), or, for mixed scopes, each row's."""
    if len(scopes) == 1:
        return f"{_SCOPE_WORDS.get(scopes[0], scopes[0])} sparsity"
    return "sparsity of each schedule's scope" if scopes else "sparsity"


def prune_summary(results_dir: str, sweep_id: str) -> str:
    """BLEU versus sparsity per schedule, with sizes (the saved dense file and the sparse
    estimate) and latency against the schedule's dense round 0; and the quantization table."""
    names = results.table_names(results_dir)
    sid = sql_text(sweep_id)
    curve = seq2seq_curve_line(results_dir, sweep_id) if "epochs" in names else None
    lines = [curve] if curve else []
    if "prune" in names:
        # each round's latency beside the dense model's, their runs alternated in one call
        tbl = results.query(results_dir, f"""
            SELECT schedule, scope, round, round(sparsity, 3) AS sparsity,
                   round(model_sparsity, 3) AS model_sparsity, test_bleu_greedy,
                   test_bleu_beam, round(test_distinct_greedy, 2) AS distinct, round(test_nll, 3) AS nll,
                   valid_bleu_greedy,
                   dense_size_bytes / 1e6 AS disk_mb, sparse_size_bytes / 1e6 AS sparse_est_mb,
                   latency_ms, dense_latency_ms, round(speedup_vs_dense, 2) AS speedup_vs_dense
            FROM prune WHERE sweep_id = {sid} ORDER BY schedule, round""")
        label = sparsity_label(_scopes(results_dir, sweep_id))
        lines += [f"Pruning ({sweep_id}): BLEU-4 (CodeXGLUE, 0-100) versus {label} "
                  "(measured zeros of the scope's prunable weights: its Linear matrices; embeddings, "
                  "biases and LayerNorms are never pruned); model_sparsity: zeros among all the "
                  "model's parameters",
                  "disk_mb: the round's weights as saved (safetensors bytes, pruned weights stored as "
                  "zeros); sparse_est_mb: an estimate that no file has (1-bit mask + non-zero values of "
                  "the pruned matrices)",
                  "latency_ms: one greedy generation (batch 1, the first test example); dense_latency_ms: the "
                  "dense fine-tuned model's, their runs alternated in the same call; speedup_vs_dense: dense "
                  "over this round's (round 0: the dense model against its copy, the timing's own noise)",
                  _text(tbl)]
        lines += _speed_line(tbl)
        floor = results.query(results_dir, f"SELECT max(test_bleu_constant) AS b FROM prune "
                                           f"WHERE sweep_id = {sid}").column("b")[0].as_py()
        if floor is not None:
            lines.append(f"One constant summary for every test function (the best frequent training "
                         f"target) scores {floor:.2f}: BLEU near it does not show the model reading the code.")
    if "quantize" in names:
        tbl = results.query(results_dir, f"""
            SELECT model, variant, scope, round(sparsity, 3) AS sparsity, bleu_greedy, bleu_beam,
                   round(distinct_greedy, 2) AS distinct, bleu_kept, round(nll, 3) AS nll,
                   size_bytes / 1e6 AS size_mb, device, latency_threads AS threads,
                   latency_ms, speedup_vs_fp32, error
            FROM quantize WHERE sweep_id = {sid}
            ORDER BY model = 'unpruned' DESC, model, variant <> 'fp32', variant""")
        lines += ["Quantization (size_mb: torch.save bytes of the variant's weights; latency: one greedy "
                  "generation at batch 1 on the row's device; speedup_vs_fp32: against fp32 timed beside it "
                  "on that device)", _text(tbl), *_emulated_line(results_dir, sid)]
    return "\n".join(lines) if lines else "prune: no rows"


def _speed_line(tbl: pa.Table) -> list[str]:
    """One line on the pruned rounds' speed-up over the dense model timed beside them (none
    without one), with round 0's ratio (the timing's own noise), saying "no faster" when every
    one is below NO_FASTER_BELOW or within that noise (below round 0's widest deviation from
    1x, either way: 0.7x there makes 1.4x no more than noise)."""
    rows = [r for r in tbl.select(["round", "speedup_vs_dense"]).to_pylist() if r["speedup_vs_dense"] is not None]
    speed = [r["speedup_vs_dense"] for r in rows if r["round"] > 0]
    if not speed:
        return []
    line = f"Pruned rounds run at {min(speed):.2f}-{max(speed):.2f}x the dense model's speed, timed beside it"
    if noise := [r["speedup_vs_dense"] for r in rows if r["round"] == 0]:
        line += f" (the dense model beside its copy, round 0: {min(noise):.2f}-{max(noise):.2f}x)"
    # the noise's widest deviation from 1x either way (1/x of a slow-down), if wider than the fixed bar
    bar = max([NO_FASTER_BELOW, *noise, *(1 / n for n in noise if n > 0)])
    if max(speed) < bar:
        line += ": no faster (pruned weights are zeros in dense matrices, which no kernel skips)"
    return [line + "."]


def prune_seeds_summary(results_dir: str, sweep_ids: list[str]) -> str:
    """Each schedule's rounds across the sweeps of one pruning job run under several pruning
    seeds (random masks, repair batch order; the fine-tuned model is shared): measured
    sparsity, and the test BLEU (greedy, beam) and NLL as mean and sample standard deviation
    (blank for one seed). Round 0 is the dense model, the same in every seed. Below it, where
    a sweep holds schedules alike but for the method, their per-seed differences
    (`_paired_methods`). ConfigError for sweeps whose recorded settings differ in more than
    prune.seed (`check_seed_sweeps`)."""
    from ray_jobs.prune import IDENTITY, UNREAD  # the job's modules import torch and Ray: only here

    # the sweeps' pruning settings; not their quantize section, which the spread does not read
    # (a finished sweep quantized again keeps the configs row it ran with)
    sweep_ids = check_seed_sweeps(results_dir, sweep_ids, "prune.seed", IDENTITY, UNREAD, rows_table="prune")
    spread = _across_sweeps(results_dir, sweep_ids, "prune", """
        schedule, round, count(*) AS seeds, round(avg(sparsity), 3) AS sparsity,
        avg(test_bleu_greedy) AS greedy, stddev_samp(test_bleu_greedy) AS sd_greedy,
        avg(test_bleu_beam) AS beam, stddev_samp(test_bleu_beam) AS sd_beam,
        avg(test_nll) AS nll, stddev_samp(test_nll) AS sd_nll""", "schedule, round",
        f"pruning seeds ({', '.join(sweep_ids)}): test BLEU-4 greedy and beam, and test NLL "
        "(nats/token), as mean and sample standard deviation per schedule and round", "prune: no prune rows")
    paired = _paired_methods(results_dir, sweep_ids)
    return f"{spread}\n{paired}" if paired else spread


def _paired_methods(results_dir: str, sweep_ids: list[str]) -> str | None:
    """Two methods' rounds compared seed by seed: schedules alike but for the method, in one
    sweep, share their rounds' random draws (`training.prune._seed`), so the per-seed
    difference is the methods' own. Its mean, sample standard deviation and the seeds where
    the first method (alphabetically) leads on all three measures; None without such pairs."""
    ids = ", ".join(sql_text(s) for s in sweep_ids)
    if not ids or "prune" not in results.table_names(results_dir):
        return None
    rows = results.query(results_dir, f"""
        WITH p AS (SELECT sweep_id, method, substr(schedule, length(method) + 2) AS rest, round,
                          test_bleu_greedy AS g, test_bleu_beam AS b, test_nll AS n
                   FROM prune WHERE sweep_id IN ({ids}) AND round > 0),
             d AS (SELECT a.method || ' - ' || o.method AS methods, a.rest AS schedule, round,
                          a.g - o.g AS dg, a.b - o.b AS db, o.n - a.n AS dn
                   FROM p a JOIN p o USING (sweep_id, rest, round) WHERE a.method < o.method)
        SELECT methods, schedule, round, count(*) AS seeds,
               avg(dg) AS greedy, stddev_samp(dg) AS sd_greedy, avg(db) AS beam, stddev_samp(db) AS sd_beam,
               avg(dn) AS nll, stddev_samp(dn) AS sd_nll, count_if(dg > 0 AND db > 0 AND dn > 0) AS ahead
        FROM d GROUP BY ALL ORDER BY methods, schedule, round""")
    if not rows.num_rows:
        return None
    return ("Paired by seed (a seed's schedules share its masks' random draws and batch order since "
            "training.prune.RECIPE 4, and its dropout since RECIPE 5): first method minus second per seed, mean and sample standard "
            "deviation; BLEU higher and NLL lower count as ahead (nll: the second's minus the first's); "
            f"ahead: seeds where the first leads on all three\n{_text(rows)}")


def seq2seq_curve_line(results_dir: str, sweep_id: str) -> str | None:
    """One line on the code-to-text fine-tuning's curve (the sweep's `seq2seq` epochs rows):
    valid NLL and training loss in the first and last tenth; None when there are no rows."""
    rows = results.query(results_dir, f"""
        SELECT epoch, steps, train_loss, valid_nll FROM epochs
        WHERE sweep_id = {sql_text(sweep_id)} AND trial_key = 'seq2seq' ORDER BY epoch""").to_pylist()
    if not rows:
        return None
    first, last = rows[0], rows[-1]
    nll = "  ".join(_3f(r["valid_nll"]) for r in rows)
    return (f"Code-to-text fine-tuning, {last['steps']} steps: training loss {_3f(first['train_loss'])} "
            f"(first tenth) -> {_3f(last['train_loss'])} (last); valid NLL after each tenth: {nll}")


def _3f(value: float | None) -> str:
    """Three decimals, or "n/a" for NULL: the tables store NaN (no validation pairs, a loss
    that diverged) as NULL."""
    return "n/a" if value is None else f"{value:.3f}"


def plot_bleu(results_dir: str, sweep_id: str, path: str | Path) -> Path | None:
    """PNG of test BLEU (greedy) against measured sparsity, one line per schedule."""
    if "prune" not in results.table_names(results_dir):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results.query(results_dir, f"""
        SELECT schedule, sparsity, test_bleu_greedy AS bleu FROM prune
        WHERE sweep_id = {sql_text(sweep_id)} ORDER BY schedule, sparsity""").to_pylist()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in sorted({r["schedule"] for r in rows}):
        pts = [(r["sparsity"] * 100, r["bleu"]) for r in rows if r["schedule"] == name]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xlabel(f"{sparsity_label(_scopes(results_dir, sweep_id))} (%)")
    ax.set_ylabel("test BLEU-4 (greedy)")
    ax.set_title(f"BLEU versus sparsity ({sweep_id})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    staging = staging_path(path)  # an interrupt leaves no half-written PNG under the final name
    fig.savefig(staging, dpi=120, format="png")
    plt.close(fig)
    publish(staging, path)
    return path
