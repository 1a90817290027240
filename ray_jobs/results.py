"""Result tables: Arrow schema per table, atomic Parquet files, a Tune sink, DuckDB queries.

Layout: `results_dir/table=NAME/SWEEP_ID.parquet` (hive-partitioned by table, one file per
sweep). A file is always rewritten whole through a temp file and `os.replace`, so readers
never see a partial file, and the sink de-duplicates rows on the table's key, so a resumed
sweep holds each (trial, round) exactly once.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import math
import numbers
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from ray import tune

from training.staging import publish, remove_stale, staging_path

DEFAULT_RESULTS_DIR = "results"  # JobConfig.results_dir's default (query needs no torch)

# Every row of every table carries these (DESIGN: artifacts record their origin).
COMMON = [
    pa.field("sweep_id", pa.string()),
    pa.field("trial_key", pa.string()),  # stable trial identity (survives resume), "" for driver rows
    pa.field("round", pa.int64()),  # 0 when a trial reports once
    pa.field("config_hash", pa.string()),
    pa.field("code_version", pa.string()),
    pa.field("time", pa.timestamp("ms", tz="UTC")),
    pa.field("node_id", pa.string()),
    pa.field("device", pa.string()),
]

_F, _I, _S, _B = pa.float64(), pa.int64(), pa.string(), pa.bool_()
_GENES = [("layers", _I), ("hidden", _I), ("heads", _I), ("ffn", _I), ("vocab", _I)]

# Columns per table beyond COMMON; rows may carry more (types inferred, appended).
COLUMNS: dict[str, list[tuple[str, pa.DataType]]] = {
    "search": [("rank", _I), *_GENES, ("params", _I), ("size_mb", _F), ("gflops", _F),
               ("flops_matmul", _F), ("fitness", _F), ("target_mb", _F), ("selected", _B),
               ("head", _S), ("predicted_ms", _F)],
    "distill": [("kind", _S), ("variant", _S), *_GENES, ("params", _I), ("analytic_params", _I),
                ("size_mb", _F), ("serialized_bytes", _I), ("serialized_mb", _F), ("gflops", _F),
                ("accuracy", _F), ("f1", _F), ("teacher_accuracy", _F), ("teacher_f1", _F),
                ("retention", _F), ("valid_accuracy", _F), ("latency_ms", _F),
                ("latency_p90_ms", _F), ("teacher_latency_ms", _F), ("codebert_latency_ms", _F),
                ("speedup_vs_teacher", _F), ("speedup_vs_codebert", _F),
                # the teacher's CodeBERT speed-up, CodeBERT timed in the teacher's input format
                ("teacher_speedup_vs_codebert", _F), ("latency_rounds", _I),
                ("teacher_size_mb", _F), ("train_seconds", _F), ("model_dir", _S),
                ("in_batch_weight", _F), ("precision", _S), ("attention_dropout", _F),
                ("best_epoch", _I), ("epochs", _I), ("diverged_epoch", _I), ("predicted_ms", _F), ("name", _S), ("pair_mode", _S),
                ("train_attention", _S), ("n_transfer", _I), ("n_test", _I), ("latency_seq_len", _I),
                ("latency_threads", _I), ("latency_runs", _I), ("latency_device", _S),
                # training steps in a bf16 the device emulates (training.models.emulated)
                ("emulated", _B)],
    "prune": [("schedule", _S), ("method", _S), ("scope", _S), ("rewind", _S),
              ("selection", _S), ("select_by", _S), ("batch_size", _I), ("rounds", _I),
              ("rate", _F), ("rate_of", _S), ("iterations_per_round", _I), ("nominal_sparsity", _F),
              ("sparsity", _F), ("valid_bleu_greedy", _F), ("valid_bleu_beam", _F),
              ("test_bleu_greedy", _F), ("test_bleu_beam", _F), ("test_corpus_bleu_greedy", _F),
              ("test_distinct_greedy", _F),
              ("test_nll", _F), ("test_bleu_constant", _F), ("n_train", _I), ("n_test", _I),
              ("beam", _I), ("loss", _F), ("iterations", _I), ("train_seconds", _F), ("dense_size_bytes", _I),
              ("sparse_size_bytes", _I), ("latency_ms", _F), ("latency_p90_ms", _F),
              ("dense_latency_ms", _F), ("speedup_vs_dense", _F),
              ("precision", _S), ("model_sparsity", _F), ("stopped_early", _B),
              ("valid_checks", _S),  # valid_checks: JSON text, the pick_* selections' validation BLEUs
              ("emulated", _B)],  # repair steps in a bf16 the device emulates (training.models.emulated)
    "quantize": [("model", _S), ("variant", _S), ("scope", _S), ("sparsity", _F), ("stored_sparsity", _F), ("bleu_greedy", _F),
                 ("corpus_bleu_greedy", _F),
                 ("bleu_beam", _F), ("distinct_greedy", _F), ("beam", _I), ("bleu_kept", _F), ("n_test", _I),
                 ("nll", _F),
                 ("size_bytes", _I), ("latency_ms", _F), ("latency_p90_ms", _F), ("error", _S),
                 # compression-job rows (a student or BiLSTM_soft per model, on the CPU)
                 ("kind", _S), ("accuracy", _F), ("f1", _F), ("accuracy_kept", _F), ("retention", _F),
                 ("speedup_vs_fp32", _F), ("score_batch", _I), ("latency_threads", _I), ("latency_runs", _I),
                 # a bf16/fp16 variant its device emulates (training.models.emulated): its latency
                 # says nothing of a device with the units
                 ("emulated", _B),
                 # what the rows were quantized under, JSON text: the pruning job's quantize section,
                 # the compression job's variants ({"variants": [...]})
                 ("quantize_config", _S)],
    "bench": [("bench", _S), ("workers", _I), ("trials", _I), ("reuse_actors", _B), ("wall_s", _F),
              ("trial_s", _F), ("efficiency", _F), ("overhead_s", _F),
              ("model", _S), ("dtype", _S), ("batch", _I), ("seq_len", _I), ("median_ms", _F),
              ("p90_ms", _F), ("pairs_per_s", _F), ("speedup_vs_teacher", _F),
              ("speedup_vs_codebert", _F), ("device_name", _S), ("arch", _S), ("speedup_vs_fp32", _F),
              ("threads", _I), ("worker_processes", _I), ("load_1m", _F), ("speedup", _F),  # scaling rows
              ("attention", _S), ("speedup_vs_sdpa", _F),  # train-step rows
              ("emulated", _B),  # latency and train-step rows of a half dtype the device emulates
              # latency-model rows: each shape's GFLOPs, its fitted and leave-one-out predicted ms
              # and the fit's coefficients (search/latency.py)
              ("head", _S), ("gflops", _F), ("predicted_ms", _F), ("loo_ms", _F), ("intercept_ms", _F),
              ("per_layer_ms", _F), ("per_gflop_ms", _F), ("per_layer_head_ms", _F)],
    # the learning curves: one row per trained model x epoch (compression job), one per tenth
    # of the code-to-text fine-tuning's steps (pruning job, trial_key seq2seq: valid_nll)
    "epochs": [("model", _S), ("kind", _S), ("epoch", _I), ("valid_accuracy", _F), ("train_loss", _F),
               ("steps", _I), ("seconds", _F), ("lr", _F), ("best", _B), ("valid_nll", _F),
               # what the steps ran in, and whether the device emulates that bf16: its seconds
               ("precision", _S), ("emulated", _B)],
    # one row per sweep: the whole resolved config (YAML + overrides) as JSON text
    "configs": [("job", _S), ("config", _S)],
}

# Key that identifies a row within one sweep's file (dedup on resume: the last one wins).
KEYS: dict[str, tuple[str, ...]] = {
    "search": ("rank",),
    "quantize": ("trial_key", "variant"),
    "configs": ("job",),
    "epochs": ("trial_key", "epoch"),
}
DEFAULT_KEY = ("trial_key", "round")


class ResultsError(ValueError):
    """Unusable results folder or query."""


def schema(table: str) -> pa.Schema:
    """The Arrow schema of `table` (COMMON + its own columns)."""
    if table not in COLUMNS:
        raise ResultsError(f"{table}: unknown table (known: {', '.join(sorted(COLUMNS))})")
    return pa.schema(COMMON + [pa.field(n, t) for n, t in COLUMNS[table]])


def row_key(table: str, row: dict) -> tuple:
    return tuple(row.get(k) for k in KEYS.get(table, DEFAULT_KEY))


def dedup(table: str, rows: Iterable[dict]) -> list[dict]:
    """Rows with one per key, the last occurrence winning, in first-seen key order."""
    out: dict[tuple, dict] = {}
    for row in rows:
        out[row_key(table, row)] = row
    return list(out.values())


def _time(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    return dt.datetime.fromisoformat(str(value))


def _clean(value: Any) -> Any:
    # NaN from a metric becomes NULL: SQL aggregates then skip it instead of poisoning it.
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def to_arrow(table: str, rows: list[dict]) -> pa.Table:
    """Rows -> Arrow table: known columns cast to the schema, extra columns inferred.

    ResultsError naming the table and column when a value does not fit its column: a
    fraction in an integer column (Arrow would truncate it silently), values of two types in
    one extra column, a column named `table` (the folder's partition value would replace it).
    """
    base = schema(table)
    known = set(base.names)
    extra: list[str] = []
    for row in rows:
        extra += [k for k in row if k not in known and k not in extra]
    if "table" in extra:
        raise ResultsError(f"table {table}: a row has a column named 'table', which names the table "
                           "itself in the views `query` reads (the folder's name): rename it")
    arrays = []
    for f in base:
        values = [_clean(_time(r.get(f.name)) if f.name == "time" else r.get(f.name)) for r in rows]
        arrays.append(_column(table, f.name, values, f.type))
    fields = list(base)
    for name in extra:
        arr = _column(table, name, [_json_safe(r.get(name)) for r in rows])
        arrays.append(arr)
        fields.append(pa.field(name, arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _column(table: str, name: str, values: list, type_: pa.DataType | None = None) -> pa.Array:
    """One column's values as an Arrow array (of `type_`, else inferred); see `to_arrow`."""
    if type_ is not None and pa.types.is_integer(type_):
        fraction = next((v for v in values if isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral)
                         and not float(v).is_integer()), None)  # numpy floats too
        if fraction is not None:
            raise ResultsError(f"table {table}: column {name} holds integers, got {fraction!r}")
    try:
        return pa.array(values, type=type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        kinds = sorted({type(v).__name__ for v in values if v is not None})
        raise ResultsError(f"table {table}: column {name} cannot hold these values "
                           f"(types {', '.join(kinds)}): {str(exc).splitlines()[0]}") from None


def _json_safe(value: Any) -> Any:
    # Nested values of unknown columns are stored as JSON text: one type per column.
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return _clean(value)


def table_dir(results_dir: str | os.PathLike, table: str) -> Path:
    return Path(results_dir) / f"table={table}"


def table_file(results_dir: str | os.PathLike, table: str, sweep_id: str) -> Path:
    return table_dir(results_dir, table) / f"{sweep_id}.parquet"


def _check_keys(table: str, rows: list[dict]) -> None:
    # every column of a table's own key (two quantize rows of one trial without a `variant`
    # would collapse into one); of the default key `trial_key` alone: a distill row has no round
    for column in KEYS.get(table, DEFAULT_KEY[:1]):
        missing = sum(row.get(column) is None for row in rows)
        if missing:
            raise ResultsError(f"table {table}: {missing} of {len(rows)} rows have no {column!r}, a column "
                               "that tells its rows apart")


def write_rows(results_dir: str | os.PathLike, table: str, sweep_id: str, rows: list[dict]) -> Path:
    """Write one sweep's rows of `table` atomically (temp file + os.replace); returns the path.

    Rows without a sweep_id get this sweep's; rows are de-duplicated on the table's key.
    ResultsError for a row without the key's first column (rows without a key would
    collapse into one), and as `to_arrow` says; nothing is written then.
    """
    _check_keys(table, rows)
    path = table_file(results_dir, table, sweep_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, "*.parquet")  # the staging files of writers that were killed
    # Dot-prefixed staging name: never matched by the `*.parquet` glob that queries read.
    tmp = staging_path(path)
    try:
        rows = [{"sweep_id": sweep_id, **r} for r in dedup(table, rows)]
        # page checksums: a garbled page is found when the rows are read back for a resume
        # (without them a page of a column that is all NULL may decode garbage silently)
        pq.write_table(to_arrow(table, rows), tmp, write_page_checksum=True)
        publish(tmp, path)  # flushed to disk, then renamed (a machine crash leaves old or new)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_config(results_dir: str | os.PathLike, job: str, sweep_id: str, config: dict,
                 stamp: dict) -> Path:
    """A sweep's `configs` row: `config` (every setting it ran with) as JSON text beside the
    sweep's stamp, so any row of the other tables joins on sweep_id to the settings that made
    it, e.g. `json_extract_string(config, '$.distill.lr')`. A resumed sweep rewrites the row
    with the config it resumed with (its hashed sections are the same by construction)."""
    row = {**stamp, "trial_key": "", "round": 0, "time": time.time(), "job": job,
           "config": json.dumps(config, sort_keys=True, default=str)}
    return write_rows(results_dir, "configs", sweep_id, [row])


def precisions(results_dir: str | os.PathLike, table: str, sweep_id: str) -> set[str]:
    """The training precisions the sweep's `table` rows name (their `precision`, NULL left out)."""
    return {r.get("precision") for r in read_rows(results_dir, table, sweep_id)} - {None}


def read_rows(results_dir: str | os.PathLike, table: str, sweep_id: str) -> list[dict]:
    """Rows of one sweep's file (empty when there is none); ResultsError naming the file
    when it is not readable Parquet (e.g. truncated by a crash of the machine)."""
    path = table_file(results_dir, table, sweep_id)
    if not path.exists():
        return []
    try:
        return pq.read_table(path, page_checksum_verification=True).to_pylist()
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:  # garbled pages come as OSError (e.g. snappy)
        raise ResultsError(f"table {table}: {path} is not readable Parquet ({str(exc).splitlines()[0]}); "
                           "a damaged file: move it away (the rows it held are lost)") from None


# The running driver's results_dir and stamp per sweep id (RowSink.live). Tune pickles
# the sink with the experiment, and a restored sweep gets that first run's copy back: at
# setup it takes these over, so a resumed sweep's rows carry the resuming code's version
# and land in the folder the resuming command names (the results folder may have moved).
_LIVE: dict[str, tuple[str, dict]] = {}


class RowSink(tune.Callback):
    """Driver-side Tune callback: collects `{"table": NAME, "row": {...}}` results.

    Each trial result carrying a row is stamped with the sweep's identity and upserted;
    the sweep's file for that table is rewritten atomically, so an interrupted driver
    leaves complete tables and a resumed one continues from them.
    """

    def __init__(self, results_dir: str, sweep_id: str, stamp: dict, tables: Iterable[str]):
        self.sweep_id = sweep_id
        self.tables = tuple(tables)
        self.live(results_dir, sweep_id, stamp)
        self._take_live()
        self.rows: dict[str, list[dict]] | None = None  # loaded from disk at setup

    @staticmethod
    def live(results_dir: str | os.PathLike, sweep_id: str, stamp: dict) -> None:
        """Where and with what stamp this driver's rows of `sweep_id` go, for the sink Tune
        restores with an interrupted sweep as much as for a new one."""
        _LIVE[sweep_id] = (str(results_dir), {"sweep_id": sweep_id, **stamp})

    def _take_live(self) -> None:
        if self.sweep_id in _LIVE:
            self.results_dir, self.stamp = _LIVE[self.sweep_id]

    def __getstate__(self) -> dict:
        # Tune pickles the sink with the experiment; rows are re-read from disk on restore.
        return {**self.__dict__, "rows": None}

    def setup(self, **info) -> None:
        self._take_live()
        # Rows written by an earlier, interrupted run of the same sweep.
        self.rows = {t: read_rows(self.results_dir, t, self.sweep_id) for t in self.tables}

    def add(self, table: str, row: dict) -> None:
        if self.rows is None:
            self.setup()
        row = {**row, **self.stamp}
        row.setdefault("round", 0)
        row.setdefault("time", time.time())
        if table not in self.rows:  # a table outside self.tables: read its file once
            self.rows[table] = read_rows(self.results_dir, table, self.sweep_id)
        rows = dedup(table, [*self.rows[table], row])
        write_rows(self.results_dir, table, self.sweep_id, rows)
        self.rows[table] = rows  # only once written: a row that cannot be written would fail every later write

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if isinstance(result.get("row"), dict):
            self.add(result.get("table") or self.tables[0], result["row"])


# ---------------------------------------------------------------- queries


def table_names(results_dir: str | os.PathLike) -> list[str]:
    """Names of the `table=NAME` folders under `results_dir` that hold Parquet files."""
    root = Path(results_dir)
    if not root.is_dir():
        return []
    return sorted(
        p.name.split("=", 1)[1] for p in root.glob("table=?*")  # `table=` names no table
        if p.is_dir() and table_files(p)
    )


def table_files(folder: Path) -> list[Path]:
    """The Parquet files of a `table=NAME` folder, sorted. Hidden names are not the table's:
    pathlib's glob matches them (unlike a shell's), and a copy by macOS onto a foreign disk
    leaves a `._NAME.parquet` of metadata beside each file, which no Parquet reader opens."""
    return sorted(f for f in folder.glob("*.parquet") if not f.name.startswith("."))


def _ident(name: str) -> str:
    """`name` as a quoted SQL identifier: any folder name (quotes included) makes a view."""
    return '"' + name.replace('"', '""') + '"'


def connect(results_dir: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB with one view per table found under `results_dir`.

    ResultsError naming the table when its files cannot be read (DuckDB reads every file's
    schema here, so a corrupt Parquet file is named before any query runs).
    """
    con = duckdb.connect()
    for name in table_names(results_dir):
        source = _table_source(results_dir, name)
        try:
            con.execute(f"CREATE VIEW {_ident(name)} AS SELECT * FROM {source}")
            missing = _declared_missing(con, name)
            if missing:  # every file predates them: NULL columns, so queries naming them still run
                nulls = ", ".join(f"NULL::{_DUCKDB_TYPES[str(t)]} AS {_ident(c)}" for c, t in missing)
                con.execute(f"CREATE OR REPLACE VIEW {_ident(name)} AS SELECT *, {nulls} FROM {source}")
        except duckdb.Error as exc:
            con.close()
            raise ResultsError(f"table {name}: {str(exc).splitlines()[0]}") from None
    return con


def sql_text(value: str) -> str:
    """`value` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _literal_glob(path: str) -> str:
    """A glob pattern that matches `path` alone."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def _table_source(results_dir: str | os.PathLike, name: str) -> str:
    """A FROM clause reading table `name`'s Parquet files, plus its name as column `table`.

    The files are listed here, hive partitioning off: it took every `key=value` folder of a
    path for a column (a `results_dir` under `lr=0.001/` replaced the stored `lr` of every row).
    DuckDB still reads each listed path as a glob pattern, so its `*`, `?` and `[` are written
    as one-character classes (`[*]`): `run[1]` matched no file, or `run1`'s, and `run?` read
    `runX`'s rows too."""
    files = ", ".join(sql_text(_literal_glob(str(f))) for f in table_files(table_dir(results_dir, name)))
    return (f"(SELECT *, {sql_text(name)} AS \"table\" FROM "
            f"read_parquet([{files}], hive_partitioning=false, union_by_name=true))")


# DuckDB's names of the Arrow types the declared columns have
_DUCKDB_TYPES = {"double": "DOUBLE", "int64": "BIGINT", "string": "VARCHAR", "bool": "BOOLEAN",
                 "timestamp[ms, tz=UTC]": "TIMESTAMPTZ"}


def _declared_missing(con: duckdb.DuckDBPyConnection, name: str) -> list[tuple[str, pa.DataType]]:
    """The declared columns of table `name` (`schema`) that its view lacks: a column added
    to the code after every file of the table was written."""
    if name not in COLUMNS:
        return []
    present = {row[0] for row in con.execute(f"DESCRIBE {_ident(name)}").fetchall()}
    return [(f.name, f.type) for f in schema(name) if f.name not in present]


# Statement types that only read: SELECT (WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, UNPIVOT),
# PRAGMA (`table_info`; a setting is a SET) and CALL (table functions); MULTI is what DuckDB makes
# of a PIVOT, and EXPLAIN is checked by what it explains (EXPLAIN ANALYZE runs it).
_READING = {duckdb.StatementType.SELECT, duckdb.StatementType.PRAGMA, duckdb.StatementType.CALL}
_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)


def _only_reads(text: str, kind) -> bool:
    text = _LEADING_COMMENTS.sub("", text)
    if kind == duckdb.StatementType.MULTI:
        return re.match(r"pivot\b", text, re.I) is not None
    if kind == duckdb.StatementType.EXPLAIN:
        explained = re.sub(r"^explain\s+(?:analy[sz]e\s+)?", "", text, count=1, flags=re.I)
        inner = duckdb.extract_statements(explained) if explained != text else []
        return len(inner) == 1 and inner[0].type != duckdb.StatementType.EXPLAIN and _only_reads(
            inner[0].query, inner[0].type)
    return kind in _READING


def check_one_read(sql: str) -> None:
    """ResultsError unless `sql` is one statement that only reads (`_READING`, a PIVOT, or an
    EXPLAIN of one of those). The views read the sweeps' own files: a `COPY ... TO` one of
    them (EXPLAIN ANALYZE runs one too), an ATTACH or a SET would write or change what the
    query reads, and of two statements only the last one's rows were shown."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ResultsError(f"query: {str(exc).splitlines()[0]}") from None
    if not statements:  # empty, or comments only
        raise ResultsError(f"query: no SQL statement in {sql[:60]!r}")
    if len(statements) > 1:
        raise ResultsError(f"query: {len(statements)} statements; give one at a time")
    if not _only_reads(statements[0].query, statements[0].type):
        raise ResultsError(f"query: {statements[0].type.name} statements are refused; the query command only "
                           "reads (SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, PIVOT, PRAGMA, CALL, "
                           "EXPLAIN of those): the tables' files are the sweeps' results")


def query(results_dir: str | os.PathLike, sql: str) -> pa.Table:
    """Run `sql`, one statement that only reads (`check_one_read`), over the tables (each a
    view by its name); ResultsError on a bad query, one that returns no result (empty,
    comments only) included."""
    check_one_read(sql)
    con = connect(results_dir)
    try:
        rel = con.sql(sql)
        return _mark_json(rel.to_arrow_table(), [str(t) == "JSON" for t in rel.types])
    except duckdb.Error as exc:
        raise ResultsError(f"query: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


_JSON_FIELD = {b"duckdb_type": b"JSON"}


def _mark_json(tbl: pa.Table, is_json: list[bool]) -> pa.Table:
    """`tbl` with its DuckDB JSON columns marked (Arrow has them as plain strings), so that
    `--format json` writes their values, not their text (`json_extract(config, '$.distill.lr')`
    is the number 0.0005, not the string "0.0005")."""
    if not any(is_json):
        return tbl
    fields = [f.with_metadata(_JSON_FIELD) if marked else f for f, marked in zip(tbl.schema, is_json, strict=True)]
    return pa.Table.from_arrays(tbl.columns, schema=pa.schema(fields))


def table_counts(results_dir: str | os.PathLike) -> dict[str, int]:
    """Rows per table, over one connection (each connect reads every table's file schemas)."""
    con = connect(results_dir)
    try:
        return {name: con.execute(f"SELECT count(*) FROM {_ident(name)}").fetchone()[0]
                for name in table_names(results_dir)}
    except duckdb.Error as exc:
        raise ResultsError(f"tables: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def _cell(value: Any, null: str = "", *, exact: bool = False) -> str:
    """One cell as text: booleans as DuckDB writes them (`true`), lists and structs as JSON;
    floats to 4 significant digits and times to the second, or with `exact` (csv) as
    stored (a float as Python's shortest repr, a time to the microsecond)."""
    if value is None:
        return null
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if exact else f"{value:.4g}"
    if isinstance(value, dt.datetime):
        return value.isoformat() if exact else value.isoformat(timespec="seconds")
    if isinstance(value, list | dict):
        return json.dumps(_json_value(value), default=str)
    return str(value)


def _json_value(value: Any) -> Any:
    """Numbers stay numbers: a DuckDB decimal of scale 0 (`sum` of an integer column is a
    HUGEINT) an int, exact, others a float; NaN and infinity become null, inside lists and
    structs (`list(nll)`) as well."""
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, decimal.Decimal):
        value = int(value) if value.is_finite() and value.as_tuple().exponent >= 0 else float(value)
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _interval_text(value: Any) -> str:
    """An Arrow month-day-nano interval as DuckDB writes one (`1 year 2 months 3 days
    04:05:06.5`, `-01:30:00`, `00:00:00`); DuckDB keeps microseconds."""
    parts = []
    years = int(value.months / 12)  # toward zero, as C++ division
    for count, unit in ((years, "year"), (value.months - 12 * years, "month"), (value.days, "day")):
        if count:
            parts.append(f"{count} {unit}{'' if abs(count) == 1 else 's'}")
    sign = -1 if value.nanoseconds < 0 else 1
    micros = sign * (abs(value.nanoseconds) // 1000)  # integers: a float quotient was off by one past 2^53
    if micros or not parts:
        sign, micros = ("-" if micros < 0 else ""), abs(micros)
        seconds, fraction = divmod(micros, 1_000_000)
        minutes, seconds = divmod(seconds, 60)
        hours, minutes = divmod(minutes, 60)
        clock = f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}"
        parts.append(clock + (f".{fraction:06d}".rstrip("0") if fraction else ""))
    return " ".join(parts)


def _blob_text(value: bytes) -> str:
    """Bytes as DuckDB writes a BLOB: printable ASCII as itself, other bytes (and the backslash
    and quotes) as \\xHH."""
    return "".join(chr(b) if 32 <= b <= 126 and chr(b) not in "\\'\"" else f"\\x{b:02X}" for b in value)


def _row_tuples(tbl: pa.Table) -> list[tuple]:
    """The rows as tuples, cells by column position: `to_pylist()`'s dicts keep only the last
    of two columns of one name (`SELECT 1 AS a, 2 AS a`, a join's `d.trial_key, c.trial_key`)."""
    columns = zip(tbl.column_names, tbl.columns, strict=True)
    return list(zip(*(_python_values(name, column) for name, column in columns), strict=True))


def _python_values(name: str, column: pa.ChunkedArray) -> list:
    """The column's cells as Python values; ResultsError naming the column when one does not
    fit a Python type (a DuckDB date of 'infinity' or past year 9999 raised a traceback)."""
    try:
        if pa.types.is_interval(column.type):  # Python has no type for them: DuckDB's text
            return [None if v is None else _interval_text(v) for v in column.to_pylist()]
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            return [None if v is None else _blob_text(v) for v in column.to_pylist()]
        return column.to_pylist()
    except (OverflowError, ValueError) as exc:
        raise ResultsError(f"query: column {name!r} holds a value outside what Python's {column.type} "
                           f"can hold ({exc}): cast it to text, e.g. {name}::VARCHAR") from None


def _json_rows(tbl: pa.Table) -> str:
    """One array of row objects; ResultsError for a result with two columns of one name,
    which an object cannot hold apart."""
    names = tbl.column_names
    repeated = next((n for n in names if names.count(n) > 1), None)
    if repeated is not None:
        raise ResultsError(f"--format json: the result has {names.count(repeated)} columns named "
                           f"{repeated!r} and a JSON row object holds one: name them apart with AS "
                           f"(e.g. d.{repeated} AS d_{repeated}, c.{repeated} AS c_{repeated})")
    parse = [f.metadata == _JSON_FIELD for f in tbl.schema]  # DuckDB JSON columns: their values
    rows = [{n: _json_value(json.loads(v) if p and v is not None else v) for n, p, v in zip(names, parse, row, strict=True)}
            for row in _row_tuples(tbl)]
    # strict JSON: a NaN or infinity a query computes becomes null
    return json.dumps(rows, default=str, indent=1, allow_nan=False)


def format_rows(tbl: pa.Table, fmt: str = "table", *, null: str = "NULL") -> str:
    """`table` (aligned text, NULL as `null`: spelled out as DuckDB's shell does, since a
    blank cell reads as an empty string), `csv` (NULL as an empty field), or `json` (one array
    of row objects, NULL as null; refused when two columns share a name). Cells are read by position, so repeated names keep their values."""
    if fmt == "json":
        return _json_rows(tbl)
    rows = _row_tuples(tbl)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(tbl.column_names)
        writer.writerows([[_cell(v, exact=True) for v in row] for row in rows])
        return buf.getvalue().rstrip("\n")
    if fmt != "table":
        raise ResultsError(f"--format: unknown format {fmt!r} (table, csv, json)")
    cells = [[_cell(v, null) for v in row] for row in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(tbl.column_names)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(tbl.column_names, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
