"""Staging paths of atomic writes: a killed writer's are removed by the next writer, a live
process's and another machine's never."""

import os
from pathlib import Path

import pytest

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


def test_publish_flushes_the_bytes_before_the_rename_and_the_rename_after(tmp_path, monkeypatch):
    from training import staging

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", str(b))) or real_replace(a, b))
    final = tmp_path / "teacher"
    tmp = staging.staging_path(final)
    (tmp / "sub").mkdir(parents=True)
    (tmp / "config.json").write_text("{}")
    (tmp / "sub" / "w.bin").write_bytes(b"w")
    assert staging.publish(tmp, final) is True
    replaced = events.index(("replace", str(final)))
    flushed = {path for kind, path in events[:replaced] if kind == "fsync"}
    assert {str(tmp / "config.json"), str(tmp / "sub" / "w.bin"), str(tmp), str(tmp / "sub")} <= flushed
    assert ("fsync", str(tmp_path)) in events[replaced:]  # the rename itself
    assert (final / "sub" / "w.bin").read_bytes() == b"w" and not tmp.exists()


def test_publish_keeps_a_folder_another_writer_published_first_and_replaces_a_file(tmp_path):
    from training.staging import publish, staging_path

    final = tmp_path / "seq2seq-key"
    (final).mkdir()
    (final / "meta.json").write_text("theirs")
    mine = staging_path(final)
    mine.mkdir()
    (mine / "meta.json").write_text("mine")
    assert publish(mine, final) is False  # their equivalent result stays; no error, no leftover
    assert (final / "meta.json").read_text() == "theirs" and not mine.exists()
    table = tmp_path / "logits.parquet"
    table.write_text("old")
    staged = staging_path(table)
    staged.write_text("new")
    assert publish(staged, table) is True and table.read_text() == "new" and not staged.exists()


def test_publish_replaces_a_folder_without_the_marker_its_readers_look_for(tmp_path):
    """A cache folder cut short (an interrupted copy of results_dir) has no marker: every run
    refitted, lost the "race" to it, then failed reading the marker. It is replaced."""
    from training.staging import publish, staging_path

    final = tmp_path / "teachers" / "key"
    final.mkdir(parents=True)
    (final / "config.json").write_text("a copy cut short")
    mine = staging_path(final)
    mine.mkdir()
    (mine / "config.json").write_text("mine")
    (mine / "metrics.json").write_text("{}")
    assert publish(mine, final, marker="metrics.json") is True
    assert (final / "config.json").read_text() == "mine" and (final / "metrics.json").is_file()
    assert sorted(p.name for p in final.parent.iterdir()) == ["key"]  # nothing set aside is left
    theirs = staging_path(final)  # a complete folder with the marker still wins the race
    theirs.mkdir()
    (theirs / "metrics.json").write_text("other")
    assert publish(theirs, final, marker="metrics.json") is False and (final / "config.json").is_file()


def test_a_whole_folder_published_while_an_incomplete_one_is_removed_is_kept(tmp_path, monkeypatch):
    """Two writers find an incomplete folder; the other one replaces it with its whole folder
    between this one's look for the marker and its move of the folder aside. The whole folder
    (a reader may be inside it) is put back and kept, not removed."""
    import os
    import shutil

    from training import staging

    final = tmp_path / "teachers" / "key"
    final.mkdir(parents=True)
    (final / "config.json").write_text("a copy cut short")
    mine = staging.staging_path(final)
    mine.mkdir()
    (mine / "config.json").write_text("mine")
    (mine / "metrics.json").write_text("{}")
    rename, raced = os.rename, []

    def the_other_writer_publishes_first(src, dst):
        if Path(src) == final and not raced:
            raced.append(True)
            shutil.rmtree(final)
            final.mkdir()
            (final / "config.json").write_text("theirs")
            (final / "metrics.json").write_text("{}")
        rename(src, dst)

    monkeypatch.setattr(staging.os, "rename", the_other_writer_publishes_first)
    assert staging.publish(mine, final, marker="metrics.json") is False and raced
    assert (final / "config.json").read_text() == "theirs"
    assert sorted(p.name for p in final.parent.iterdir()) == ["key"]  # mine removed, nothing set aside


def test_publish_raises_a_rename_failure_that_is_not_a_lost_race(tmp_path, monkeypatch):
    """Only "a non-empty folder is there" means another writer won; a permission or device
    error is raised (a pruning round's state would otherwise vanish quietly)."""
    import errno

    from training.staging import publish, staging_path

    final = tmp_path / "round_002"
    final.mkdir()
    (final / "row.json").write_text("left by a failed removal")
    mine = staging_path(final)
    mine.mkdir()

    def denied(src, dst):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(OSError, match="Permission denied"):
        publish(mine, final)
    assert mine.exists()  # nothing removed on a failure it does not understand


def test_another_users_process_counts_as_alive(monkeypatch):
    """os.kill answers PermissionError for a process we may not signal: it exists, and its
    staging folder is not ours to remove."""
    def not_ours(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", not_ours)
    assert pid_alive(12345)


def test_a_stale_staging_link_is_removed_and_its_target_left_alone(tmp_path, stale):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep").write_text("not the writer's")
    dead = stale.staged(tmp_path / "seq2seq-abc", stale.exited_pid(), folder=False)
    dead.unlink()
    dead.symlink_to(target, target_is_directory=True)
    assert remove_stale(tmp_path, "seq2seq-*") == [dead]
    assert not dead.is_symlink() and (target / "keep").read_text() == "not the writer's"
