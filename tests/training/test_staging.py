"""Staging paths of atomic writes: a killed writer's are removed by the next writer, a live
process's and another machine's never."""

import os

from training.staging import pid_alive, pid_space, remove_stale, staging_path


def test_staging_path_names_this_process_beside_the_final_path(tmp_path):
    path = staging_path(tmp_path / "round_003")
    assert path.parent == tmp_path and path.name == f".round_003.tmp-{pid_space()}-{os.getpid()}"
    assert pid_space() == staging_path(tmp_path / "x").name.split("-")[1] and len(pid_space()) == 8


def test_pid_alive(stale):
    assert pid_alive(os.getpid()) and pid_alive(os.getppid())
    assert not pid_alive(stale.exited_pid())
    assert pid_alive(0) and pid_alive(-1)  # never signal a process group: count them alive


def test_remove_stale_removes_only_dead_writers_staging_in_this_pid_space(tmp_path, stale):
    dead_dir = stale.staged(tmp_path / "seq2seq-abc", stale.exited_pid())
    dead_file = stale.staged(tmp_path / "x.parquet", stale.exited_pid(), folder=False)
    live = stale.staged(tmp_path / "seq2seq-def", os.getppid())
    elsewhere = stale.staged(tmp_path / "seq2seq-abc", stale.exited_pid(), space="f" * 8)
    other_name = stale.staged(tmp_path / "model-abc", stale.exited_pid())  # not the pattern's
    final = tmp_path / "seq2seq-abc"
    final.mkdir()
    ours = staging_path(tmp_path / "seq2seq-ghi")
    ours.mkdir()
    assert remove_stale(tmp_path, "seq2seq-*") == [dead_dir]
    assert remove_stale(tmp_path, "*.parquet") == [dead_file]
    assert not dead_dir.exists() and not dead_file.exists()
    assert all(p.exists() for p in (live, elsewhere, other_name, final, ours))
    assert remove_stale(tmp_path / "missing") == []
