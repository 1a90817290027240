"""Result tables: schema, atomic one-file-per-sweep writes, dedup, DuckDB queries."""

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from ray_jobs import results


def _rows(n, sweep="s1", **extra):
    return [{"trial_key": f"t{i}", "round": 0, "accuracy": 0.5 + i / 10, "kind": "student",
             "time": 1.7e9 + i, **extra} for i in range(n)]


def test_schema_has_common_columns_and_known_types():
    for table in ("search", "distill", "prune", "quantize", "bench"):
        names = results.schema(table).names
        for col in ("sweep_id", "config_hash", "code_version", "time", "node_id", "device"):
            assert col in names
    with pytest.raises(results.ResultsError, match="nosuch"):
        results.schema("nosuch")


def test_write_is_one_hive_file_per_sweep_and_atomic(tmp_path, monkeypatch):
    path = results.write_rows(tmp_path, "distill", "s1", _rows(2))
    assert path == tmp_path / "table=distill" / "s1.parquet"
    assert pq.read_table(path).num_rows == 2

    def boom(*args, **kwargs):
        raise OSError("disk full")

    # A write that dies midway leaves the previous complete file and no temp file.
    monkeypatch.setattr(results.pq, "write_table", boom)
    with pytest.raises(OSError):
        results.write_rows(tmp_path, "distill", "s1", _rows(3))
    assert sorted(os.listdir(path.parent)) == ["s1.parquet"]
    assert pq.read_table(path).num_rows == 2


def test_dedup_keeps_last_row_per_trial_and_round():
    rows = _rows(2) + [{"trial_key": "t0", "round": 0, "accuracy": 0.9},
                       {"trial_key": "t0", "round": 1, "accuracy": 0.1}]
    out = results.dedup("distill", rows)
    assert [(r["trial_key"], r["round"], r["accuracy"]) for r in out] == [
        ("t0", 0, 0.9), ("t1", 0, 0.6), ("t0", 1, 0.1)]
    q = results.dedup("quantize", [{"trial_key": "a", "variant": "fp16", "bleu": 1},
                                    {"trial_key": "a", "variant": "int8", "bleu": 2},
                                    {"trial_key": "a", "variant": "fp16", "bleu": 3}])
    assert [(r["variant"], r["bleu"]) for r in q] == [("fp16", 3), ("int8", 2)]


def test_extra_columns_are_kept_and_nan_is_null(tmp_path):
    rows = [{"trial_key": "a", "accuracy": float("nan"), "my_metric": 3, "my_ratio": float("nan"),
             "nested": {"x": 1}}]
    results.write_rows(tmp_path, "distill", "s1", rows)
    out = results.read_rows(tmp_path, "distill", "s1")[0]
    assert out["accuracy"] is None and out["my_metric"] == 3
    assert out["my_ratio"] is None  # NULL in a column of no declared type too: avg() skips it
    assert json.loads(out["nested"]) == {"x": 1}


@pytest.mark.parametrize("table, column", [("search", "predicted_ms"), ("distill", "predicted_ms"),
                                           ("bench", "loo_ms"), ("bench", "threads"),
                                           ("distill", "train_attention")])  # null on BiLSTM rows
def test_a_sweep_without_a_value_keeps_the_column_typed_for_every_reader(tmp_path, table, column):
    # a sweep without a latency model writes predicted_ms null on every row; typed null, a later
    # sweep's floats would make pyarrow's dataset reader fail (no cast from double to null)
    import pyarrow.dataset as ds

    results.write_rows(tmp_path, table, "s1", [{"trial_key": "a", "rank": 0, column: None}])
    value = "eager" if column == "train_attention" else 2
    results.write_rows(tmp_path, table, "s2", [{"trial_key": "a", "rank": 0, column: value}])
    values = ds.dataset(tmp_path / f"table={table}", partitioning="hive").to_table().column(column).to_pylist()
    assert sorted(values, key=lambda v: v is not None) == [None, value]


def test_a_column_declared_after_every_file_was_written_reads_as_null(tmp_path):
    """Files written before a column was added to the code: queries (the summaries') that
    name it still run, NULL for those rows, and a newer file's values come through."""
    import pyarrow as pa

    old = results.table_file(tmp_path, "prune", "prune-old")
    old.parent.mkdir(parents=True)
    pq.write_table(pa.table({"sweep_id": ["prune-old"], "trial_key": ["a"], "round": [0], "latency_ms": [80.0]}), old)
    rows = results.query(tmp_path, "SELECT trial_key, speedup_vs_dense FROM prune").to_pylist()
    assert rows == [{"trial_key": "a", "speedup_vs_dense": None}]
    results.write_rows(tmp_path, "prune", "prune-new", [{"trial_key": "b", "round": 0, "speedup_vs_dense": 1.02}])
    rows = results.query(tmp_path, "SELECT trial_key, speedup_vs_dense FROM prune ORDER BY trial_key").to_pylist()
    assert rows == [{"trial_key": "a", "speedup_vs_dense": None}, {"trial_key": "b", "speedup_vs_dense": 1.02}]


def test_sink_upserts_and_resumes_from_disk(tmp_path):
    stamp = {"config_hash": "h", "code_version": "v"}
    sink = results.RowSink(str(tmp_path), "s1", stamp, ("prune",))
    sink.setup()
    for r in (0, 1):
        sink.on_trial_result(0, [], None, {"table": "prune", "row": {"trial_key": "a", "round": r}})
    sink.on_trial_result(0, [], None, {"no": "row"})
    sink.on_trial_result(0, [], None, {"table": "prune", "row": {"trial_key": "once"}})  # no round: round 0
    assert [r["round"] for r in results.read_rows(tmp_path, "prune", "s1") if r["trial_key"] == "once"] == [0]
    # A resumed driver: a fresh (unpickled) sink re-reads the file and re-reports round 1.
    import pickle

    again = pickle.loads(pickle.dumps(sink))
    assert again.rows is None
    again.on_trial_result(0, [], None, {"table": "prune", "row": {"trial_key": "a", "round": 1,
                                                                   "sparsity": 0.1}})
    again.on_trial_result(0, [], None, {"table": "prune", "row": {"trial_key": "a", "round": 2}})
    rows = [r for r in results.read_rows(tmp_path, "prune", "s1") if r["trial_key"] == "a"]
    assert [(r["round"], r["sparsity"]) for r in rows] == [(0, None), (1, 0.1), (2, None)]
    assert {r["sweep_id"] for r in rows} == {"s1"} and {r["config_hash"] for r in rows} == {"h"}
    assert all(r["time"] is not None for r in rows)


def test_the_sink_writes_each_row_to_the_table_it_names(tmp_path):
    """A compression trial reports distill, quantize and epochs rows; the first table is only
    for a row that names none."""
    sink = results.RowSink(str(tmp_path), "s1", {"config_hash": "h", "code_version": "v"}, ("distill", "quantize"))
    sink.on_trial_result(0, [], None, {"table": "quantize", "row": {"trial_key": "t", "variant": "int8"}})
    sink.on_trial_result(0, [], None, {"table": "epochs", "row": {"trial_key": "t", "epoch": 1}})
    sink.on_trial_result(0, [], None, {"row": {"trial_key": "t", "accuracy": 0.5}})
    assert [(t, len(results.read_rows(tmp_path, t, "s1"))) for t in ("distill", "quantize", "epochs")] == [
        ("distill", 1), ("quantize", 1), ("epochs", 1)]
    assert results.read_rows(tmp_path, "quantize", "s1")[0]["variant"] == "int8"


def test_query_views_union_sweeps_and_formats(tmp_path):
    results.write_rows(tmp_path, "distill", "s1", _rows(2, extra_a=1))
    results.write_rows(tmp_path, "distill", "s2", _rows(3))
    results.write_rows(tmp_path, "search", "s1", [{"rank": 0, "fitness": 1.5}])
    (tmp_path / "table=distill" / ".s3.parquet.123.tmp").write_bytes(b"partial")
    assert results.table_counts(tmp_path) == {"distill": 5, "search": 1}
    tbl = results.query(tmp_path, "SELECT sweep_id, count(*) AS n FROM distill GROUP BY 1 ORDER BY 1")
    assert tbl.to_pylist() == [{"sweep_id": "s1", "n": 2}, {"sweep_id": "s2", "n": 3}]
    as_json = json.loads(results.format_rows(tbl, "json"))
    assert as_json == [{"sweep_id": "s1", "n": 2}, {"sweep_id": "s2", "n": 3}]
    assert results.format_rows(tbl, "csv").splitlines() == ["sweep_id,n", "s1,2", "s2,3"]
    odd = results.query(tmp_path, "SELECT 'nan'::DOUBLE AS a, 'inf'::DOUBLE AS b, 1.5 AS c")
    assert json.loads(results.format_rows(odd, "json"), parse_constant=pytest.fail) == [
        {"a": None, "b": None, "c": 1.5}]  # strict JSON: no NaN / Infinity literals
    nested = results.query(tmp_path, "SELECT [1.5, 'nan'::DOUBLE] AS l, {'x': 'inf'::DOUBLE} AS s")
    assert json.loads(results.format_rows(nested, "json"), parse_constant=pytest.fail) == [
        {"l": [1.5, None], "s": {"x": None}}]  # inside lists and structs too (`list(nll)`)
    text = results.format_rows(tbl, "table").splitlines()
    assert text[0].split() == ["sweep_id", "n"] and text[2].split() == ["s1", "2"]
    blanks = results.query(tmp_path, "SELECT NULL::VARCHAR AS missing, '' AS empty, 1 AS one")
    assert results.format_rows(blanks, "table").splitlines()[2] == "NULL            1  "
    assert results.format_rows(blanks, "csv").splitlines()[1] == ",,1"
    with pytest.raises(results.ResultsError, match="query"):
        results.query(tmp_path, "SELECT * FROM nosuch")
    with pytest.raises(results.ResultsError, match="format"):
        results.format_rows(tbl, "xml")


def test_empty_results_dir(tmp_path):
    assert results.table_names(tmp_path / "none") == []
    assert results.table_counts(tmp_path) == {}


@pytest.mark.parametrize("sql", ["", "   ", "-- comment only"])
def test_query_without_a_statement_is_refused(tmp_path, sql):
    results.write_rows(tmp_path, "search", "s1", [{"rank": 0}])
    with pytest.raises(results.ResultsError, match="no SQL statement"):
        results.query(tmp_path, sql)


def test_query_only_reads(tmp_path):
    """The query command cannot write: a COPY onto a sweep's own file emptied its table."""
    results.write_rows(tmp_path, "distill", "s1", _rows(2))
    own = results.table_file(tmp_path, "distill", "s1")
    before = own.read_bytes()
    writes = [f"COPY (SELECT 1 AS x) TO '{own}' (FORMAT parquet)",
              f"EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{own}' (FORMAT parquet)",
              f"ATTACH '{tmp_path / 'x.db'}' AS x", "CREATE TABLE t AS SELECT 1", "SET threads = 1",
              f"EXPORT DATABASE '{tmp_path / 'dump'}'"]
    writes += ["PRAGMA memory_limit = '1GB'", f"-- a comment first\nEXPLAIN ANALYZE COPY distill TO '{own}'"]
    for sql in writes:
        with pytest.raises(results.ResultsError, match="only reads"):
            results.query(tmp_path, sql)
    assert own.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["table=distill"]
    with pytest.raises(results.ResultsError, match="2 statements; give one at a time"):
        results.query(tmp_path, "SELECT 1; SELECT 2")  # only the last one's rows were shown
    reads = ["DESCRIBE distill", "SHOW TABLES", "SUMMARIZE distill", "FROM distill",
             "WITH d AS (SELECT * FROM distill) SELECT count(*) AS n FROM d", "VALUES (1)",
             "PIVOT distill ON sweep_id USING count(*)", "PRAGMA table_info('distill')", "CALL pragma_version()",
             "EXPLAIN SELECT * FROM distill", "/* plan */ EXPLAIN ANALYZE SELECT count(*) FROM distill"]
    for sql in reads:
        assert results.query(tmp_path, sql).num_rows > 0, sql


def test_corrupt_parquet_file_is_named(tmp_path):
    results.write_rows(tmp_path, "distill", "s1", _rows(2))
    bad = tmp_path / "table=search" / "x.parquet"
    bad.parent.mkdir()
    bad.write_text("garbage")
    for call in (lambda: results.query(tmp_path, "SELECT * FROM distill"),
                 lambda: results.table_counts(tmp_path)):
        with pytest.raises(results.ResultsError, match="x.parquet") as err:
            call()
        assert str(err.value).startswith("table search:") and "\n" not in str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "garbled pages"])
def test_a_damaged_sweep_file_is_named_when_its_rows_are_read(tmp_path, damage):
    path = results.write_rows(tmp_path, "distill", "s1", _rows(200))
    data = path.read_bytes()
    middle = slice(len(data) // 3, len(data) // 3 + 64)
    damaged = {"truncated": data[:40],  # as a machine crash can leave it
               "zeroed": bytes(len(data)),
               "garbled pages": data[:middle.start] + bytes(range(64)) + data[middle.stop:]}[damage]
    path.write_bytes(damaged)
    with pytest.raises(results.ResultsError, match=f"table distill: {path} is not readable Parquet"):
        results.read_rows(tmp_path, "distill", "s1")


def test_a_restored_sink_writes_where_and_as_the_resuming_driver_says(tmp_path):
    """Tune restores the sink pickled by the first run: its rows go to the folder and carry
    the stamp of the driver that resumes (the folder moved, the code changed)."""
    import pickle

    sink = results.RowSink(str(tmp_path / "old"), "s-live", {"config_hash": "h", "code_version": "v1"}, ("prune",))
    pickled = pickle.dumps(sink)
    results.RowSink.live(tmp_path / "new", "s-live", {"config_hash": "h", "code_version": "v2"})
    restored = pickle.loads(pickled)
    restored.setup()
    restored.on_trial_result(0, [], None, {"table": "prune", "row": {"trial_key": "a", "round": 0}})
    assert not (tmp_path / "old").exists()
    (row,) = results.read_rows(tmp_path / "new", "prune", "s-live")
    assert row["code_version"] == "v2" and row["sweep_id"] == "s-live"


def test_any_folder_name_is_a_quoted_view(tmp_path):
    results.write_rows(tmp_path, "search", "s1", [{"rank": 0}])
    odd = tmp_path / 'table=a"b'
    (tmp_path / "table=search").rename(odd)
    (tmp_path / "table=").mkdir()  # no name: not a table
    shutil.copy(odd / "s1.parquet", tmp_path / "table=" / "s1.parquet")
    assert results.table_counts(tmp_path) == {'a"b': 1}
    assert results.query(tmp_path, 'SELECT rank FROM "a""b"').to_pylist() == [{"rank": 0}]


def test_key_value_and_glob_folders_in_the_path_change_no_value(tmp_path):
    """DuckDB's hive partitioning took `lr=0.001` in the path for every row's lr, and `[1]`
    in a folder name for a glob character that matched nothing."""
    root = tmp_path / "lr=0.001" / "run[1]"
    results.write_rows(root, "epochs", "s1", [{"trial_key": "t0", "epoch": 1, "lr": 5e-5, "device": "cpu"}])
    results.write_rows(root, "search", "s1", [{"rank": 0}])
    results.write_rows(root, "search", "s2", [{"rank": 1}])
    results.write_rows(tmp_path / "device=gpu0", "epochs", "s1", [{"trial_key": "t0", "epoch": 1, "device": "cpu"}])
    assert results.table_counts(root) == {"epochs": 1, "search": 2}
    assert results.query(root, "SELECT lr, device, \"table\" FROM epochs").to_pylist() == [
        {"lr": 5e-5, "device": "cpu", "table": "epochs"}]
    assert results.query(tmp_path / "device=gpu0", "SELECT device FROM epochs").to_pylist() == [{"device": "cpu"}]
    shutil.copytree(root / "table=search", root / "table=old[1]")  # a stray folder blocks no other table
    assert results.query(root, "SELECT count(*) AS n FROM search").to_pylist() == [{"n": 2}]
    # a listed path is still a glob to DuckDB: `run[1]` read its sibling `run1`, `run?` read `runX` too
    for name, sibling in (("run[1]", "run1"), ("run?", "runX"), ("run*", "runY")):
        results.write_rows(tmp_path / sibling, "search", "s1", [{"rank": 7}])
        results.write_rows(tmp_path / name, "search", "s1", [{"rank": 3}])
        assert results.query(tmp_path / name, "SELECT rank FROM search").to_pylist() == [{"rank": 3}], name


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
@pytest.mark.parametrize("sql", ["SELECT 'infinity'::DATE AS d", "SELECT 'infinity'::TIMESTAMP AS t",
                                 "SELECT DATE '2020-01-01' + INTERVAL 9000 YEAR AS t"])
def test_values_python_cannot_hold_are_a_one_line_error(tmp_path, sql, fmt):
    results.write_rows(tmp_path, "search", "s1", [{"rank": 0}])
    with pytest.raises(results.ResultsError, match="outside what Python"):
        results.format_rows(results.query(tmp_path, sql), fmt)


def test_configs_row_is_the_whole_config_once_per_sweep(tmp_path):
    stamp = {"config_hash": "h" * 64, "code_version": "v1"}
    config = {"results_dir": str(tmp_path), "distill": {"lr": 5e-4, "quantize": ["int8"]}}
    results.write_config(tmp_path, "compress", "compress-abc", config, stamp)
    results.write_config(tmp_path, "compress", "compress-abc", config, stamp)  # a resumed sweep
    results.write_config(tmp_path, "prune", "prune-def", {"seq2seq": {"beam": 3}}, stamp)
    rows = results.query(tmp_path, "SELECT sweep_id, job, config_hash, "
                                   "json_extract(config, '$.distill.lr')::DOUBLE AS lr, "
                                   "json_extract_string(config, '$.distill.quantize[0]') AS q "
                                   "FROM configs ORDER BY job").to_pylist()
    assert rows == [{"sweep_id": "compress-abc", "job": "compress", "config_hash": "h" * 64, "lr": 5e-4, "q": "int8"},
                    {"sweep_id": "prune-def", "job": "prune", "config_hash": "h" * 64, "lr": None, "q": None}]


def test_columns_of_one_name_keep_their_own_values(tmp_path):
    """A join's `d.trial_key, c.trial_key` (the configs row's is ''), or `1 AS a, 2 AS a`:
    table and csv read cells by position; json, whose row objects hold one value per name,
    refuses and says how to name them apart."""
    results.write_rows(tmp_path, "distill", "s1", _rows(2))
    results.write_config(tmp_path, "compress", "s1", {"distill": {"lr": 5e-4}},
                         {"config_hash": "h", "code_version": "v"})
    joined = results.query(tmp_path, "SELECT d.trial_key, c.trial_key, d.accuracy FROM distill d "
                                     "JOIN configs c USING (sweep_id) ORDER BY 1")
    assert results.format_rows(joined, "csv").splitlines() == [
        "trial_key,trial_key,accuracy", "t0,,0.5", "t1,,0.6"]
    text = results.format_rows(joined, "table").splitlines()
    assert [line.split() for line in text[2:]] == [["t0", "0.5"], ["t1", "0.6"]]
    assert text[2].startswith("t0 ")  # the first column holds the distill row's key
    pair = results.query(tmp_path, "SELECT 1 AS a, 2 AS a")
    assert results.format_rows(pair, "csv").splitlines() == ["a,a", "1,2"]
    assert results.format_rows(pair, "table").splitlines()[2].split() == ["1", "2"]
    for tbl, name in ((pair, "a"), (joined, "trial_key")):
        with pytest.raises(results.ResultsError,
                           match=rf"--format json: the result has 2 columns named '{name}'.*AS"):
            results.format_rows(tbl, "json")
    aliased = results.query(tmp_path, "SELECT 1 AS a, 2 AS b")
    assert json.loads(results.format_rows(aliased, "json")) == [{"a": 1, "b": 2}]


def test_a_row_that_cannot_be_written_is_named_and_does_not_block_later_rows(tmp_path):
    sink = results.RowSink(str(tmp_path), "s1", {"config_hash": "h", "code_version": "v"}, ("distill",))
    sink.setup()
    sink.add("distill", {"trial_key": "a", "extra": 1})
    with pytest.raises(results.ResultsError, match=r"table distill: column extra cannot hold these values "
                                                   r"\(types int, str\)"):
        sink.add("distill", {"trial_key": "b", "extra": "x"})
    sink.add("distill", {"trial_key": "c", "extra": 2})  # before: the bad row failed this write too
    assert [(r["trial_key"], r["extra"]) for r in results.read_rows(tmp_path, "distill", "s1")] == [
        ("a", 1), ("c", 2)]


@pytest.mark.parametrize("rows, message", [
    ([{"trial_key": "a", "epochs": 2.5}], r"column epochs holds integers, got 2\.5"),  # Arrow truncates
    ([{"trial_key": "a", "epochs": np.float32(2.5)}], r"column epochs holds integers, got np\.float32\(2\.5\)"),
    ([{"trial_key": "a", "accuracy": "0.9"}], r"column accuracy cannot hold these values \(types str\)"),
    ([{"trial_key": "a"}, {"accuracy": 0.5}, {"accuracy": 0.6}], r"2 of 3 rows have no 'trial_key'"),
    ([{"trial_key": "a", "table": "mine"}], r"a row has a column named 'table'"),
])
def test_values_that_do_not_fit_are_refused_by_column_before_any_write(tmp_path, rows, message):
    with pytest.raises(results.ResultsError, match=message):
        results.write_rows(tmp_path, "distill", "s1", rows)
    assert not (tmp_path / "table=distill" / "s1.parquet").exists()
    results.write_rows(tmp_path, "distill", "s1", [{"trial_key": "a", "epochs": 2.0}])  # a whole float fits
    assert results.read_rows(tmp_path, "distill", "s1")[0]["epochs"] == 2


def test_the_next_write_removes_a_killed_writers_staging_file(tmp_path):
    import subprocess
    import sys

    from training.staging import pid_space

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    folder = tmp_path / "table=distill"
    folder.mkdir()
    stale = folder / f".s1.parquet.tmp-{pid_space()}-{gone}"
    stale.write_bytes(b"half a file")
    results.write_rows(tmp_path, "distill", "s2", _rows(1))
    assert sorted(os.listdir(folder)) == ["s2.parquet"]


def test_each_format_writes_what_duckdb_computed(tmp_path):
    """Sums of integers stay exact integers in json (DuckDB gives a HUGEINT, a Decimal in
    Python); JSON values are values; intervals and blobs read as DuckDB writes them; csv keeps
    every digit and the milliseconds; booleans and lists read as in DuckDB's shell."""
    results.write_rows(tmp_path, "distill", "s1", [
        {"trial_key": "a", "params": 2**62, "time": 1.7e9 + 0.25, "best_epoch": 1, "accuracy": 0.123456789},
        {"trial_key": "b", "params": 10, "time": 1.7e9 + 5400.25, "best_epoch": 2, "accuracy": 0.5}])
    results.write_config(tmp_path, "compress", "s1", {"distill": {"lr": 5e-4, "quantize": ["int8"]}},
                         {"config_hash": "h", "code_version": "v"})
    summed = results.query(tmp_path, "SELECT sum(params) AS p, sum(best_epoch) AS e FROM distill")
    assert json.loads(results.format_rows(summed, "json")) == [{"p": 2**62 + 10, "e": 3}]
    settings = results.query(tmp_path, "SELECT json_extract(config, '$.distill.lr') AS lr, "
                                       "json_extract(config, '$.distill.quantize') AS q, 1.5::DECIMAL(4, 2) AS d FROM configs")
    assert json.loads(results.format_rows(settings, "json")) == [{"lr": 5e-4, "q": ["int8"], "d": 1.5}]
    assert results.format_rows(settings, "csv").splitlines()[1] == '0.0005,"[""int8""]",1.50'
    took = results.query(tmp_path, "SELECT max(time) - min(time) AS took, '\\x00A'::BLOB AS b, "
                                   "true AS t, [1, 2] AS l FROM distill")
    assert json.loads(results.format_rows(took, "json")) == [{"took": "01:30:00", "b": "\\x00A", "t": True, "l": [1, 2]}]
    assert results.format_rows(took, "csv").splitlines()[1] == '01:30:00,\\x00A,true,"[1, 2]"'
    assert results.format_rows(took, "table").splitlines()[2].split() == ["01:30:00", "\\x00A", "true", "[1,", "2]"]
    back = results.query(tmp_path, "SELECT INTERVAL '-14 months' AS i")  # whole years toward zero, as DuckDB
    assert json.loads(results.format_rows(back, "json")) == [{"i": "-1 year -2 months"}]
    rows = results.query(tmp_path, "SELECT time, accuracy FROM distill ORDER BY trial_key")
    assert results.format_rows(rows, "csv").splitlines()[1] == "2023-11-14T22:13:20.250000+00:00,0.123456789"
    assert results.format_rows(rows, "table").splitlines()[2].split() == ["2023-11-14T22:13:20+00:00", "0.1235"]


def test_hidden_files_in_a_table_folder_are_not_read(tmp_path):
    results.write_rows(tmp_path, "distill", "s1", _rows(2))
    (tmp_path / "table=distill" / "._s1.parquet").write_bytes(b"\x00\x05\x16\x07 macOS metadata")
    (tmp_path / "table=prune").mkdir()
    (tmp_path / "table=prune" / "._s1.parquet").write_bytes(b"only metadata")
    assert results.table_names(tmp_path) == ["distill"]
    assert results.table_counts(tmp_path) == {"distill": 2}
    assert results.query(tmp_path, "SELECT count(*) AS n FROM distill").to_pylist() == [{"n": 2}]


def test_rows_without_any_column_of_their_tables_key_are_refused(tmp_path):
    rows = [{"trial_key": "a", "model": "m", "variant": None}, {"trial_key": "a", "model": "m", "variant": None}]
    with pytest.raises(results.ResultsError, match=r"table quantize: 2 of 2 rows have no 'variant'"):
        results.write_rows(tmp_path, "quantize", "s1", rows)  # they would collapse into one
    results.write_rows(tmp_path, "distill", "s1", [{"trial_key": "a"}])  # the default key's round is optional
