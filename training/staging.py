"""Staging paths of atomic writes, and the removal of those a killed writer left behind.

A writer builds `.NAME.tmp-SPACE-PID` beside NAME, then `os.replace`s it into place; a
process killed in between leaves it behind. `remove_stale` (called by the next writer into
the same folder) removes those whose process is gone. SPACE names the processes a pid
refers to (this kernel's boot and pid namespace): results folders may be shared between
nodes, where a pid seen from another machine or container says nothing, so a temp from
another SPACE is never removed.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

_TEMP = re.compile(r"\.(?P<name>.+)\.tmp-(?P<space>[0-9a-f]{8})-(?P<pid>\d+)")


@functools.cache
def pid_space() -> str:
    """8 hex digits naming the processes whose pids this process can check (same kernel
    boot, same pid namespace); the host name where /proc cannot tell."""
    try:
        ident = Path("/proc/sys/kernel/random/boot_id").read_text().strip() + os.readlink("/proc/self/ns/pid")
    except OSError:
        ident = socket.gethostname()
    return hashlib.sha256(ident.encode()).hexdigest()[:8]


def staging_path(final: Path) -> Path:
    """Where this process stages `final` before `os.replace(staging, final)`."""
    return final.with_name(f".{final.name}.tmp-{pid_space()}-{os.getpid()}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists here (another user's counts as alive)."""
    if pid <= 0:  # os.kill(0, ...) would signal our own process group
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder: Path, pattern: str = "*") -> list[Path]:
    """Remove the staging paths in `folder` of names matching `pattern` (a glob on NAME)
    written in this pid space by a process that no longer exists; the removed paths."""
    removed = []
    for path in Path(folder).glob(f".{pattern}.tmp-*"):
        match = _TEMP.fullmatch(path.name)
        if match is None or match["space"] != pid_space() or pid_alive(int(match["pid"])):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def publish(staging: Path, final: Path, marker: str | None = None) -> bool:
    """Put `staging` (a file or folder this process wrote) in place as `final`, durably: its
    bytes are flushed to disk before the rename and the rename after it, so after a machine
    crash `final` is whole or absent, never a name over half-written bytes (the caches are
    reused when their name exists). A file replaces an older `final`. A folder that another
    writer published first is kept (an equivalent result: the name is its key) and `staging`
    removed; False then, True when this one was published. With `marker` (the file a
    reader's reuse check looks for), a `final` folder without it was not written by this
    code (a copy cut short, say): it is replaced instead of kept."""
    fsync_tree(staging)
    for _ in range(2):
        try:
            os.replace(staging, final)
            break
        except OSError as err:
            # only "a non-empty folder is there": any other failure (permissions, another
            # device) is raised, not mistaken for a writer that won
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not (staging.is_dir() and final.is_dir()):
                raise
            if marker is None or (final / marker).is_file():
                shutil.rmtree(staging, ignore_errors=True)  # a concurrent writer's folder won the race
                return False
            _remove_incomplete(final, marker)
    else:
        raise OSError(errno.ENOTEMPTY, f"{final}: an incomplete folder came back while it was replaced")
    _fsync_folder(final.parent)
    return True


def _remove_incomplete(final: Path, marker: str) -> None:
    """Move `final` aside (one atomic rename: a reader sees it whole or absent) and remove it.
    A concurrent writer may have moved or replaced it first: then there is nothing to do. What
    was moved may be a whole folder (with `marker`) that another writer published after the
    caller looked: it is put back, or, when yet another folder took the name meanwhile,
    removed as the loser of that race."""
    # a name of its own each time: an earlier removal that left files would block the rename
    aside = staging_path(final.with_name(f"{final.name}.incomplete-{uuid.uuid4().hex[:8]}"))
    try:
        os.rename(final, aside)
    except FileNotFoundError:
        return
    if (aside / marker).is_file():
        try:
            os.rename(aside, final)  # the caller's next replace then finds it whole and yields
            return
        except OSError:
            pass
    shutil.rmtree(aside, ignore_errors=True)


def fsync_tree(path: Path) -> None:
    """Flush a file's bytes, or every file and folder of a tree, to disk."""
    files = [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file()]
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if path.is_dir():
        for folder in [path, *(p for p in path.rglob("*") if p.is_dir())]:
            _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some network/FUSE filesystems refuse a folder fsync: the data is written
        pass
    finally:
        os.close(fd)


def check_writable_folder(out: Path, name: str = "--out") -> None:
    """Raise OSError naming `name` unless `out` is, or can be made, a folder this process can
    write in; leaves no trace (folders it made to check are removed). Run before the work, so
    that a bad output folder is refused before it, not after."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{name} {out}: exists and is not a folder")
    out = Path(os.path.abspath(out))  # `new/../x`: no `..` step to create, then to remove
    created = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise OSError(f"{name} {out}: cannot write there ({err.strerror or err})") from None
    finally:
        for folder in created:  # the writer makes them again; a refused run leaves nothing
            if folder.is_dir():
                folder.rmdir()

