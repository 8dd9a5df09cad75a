"""Crash-safe file writes: a whole new version or the old one, never a torn file.

``write_atomic`` writes a temp file in the same folder, fsyncs it, keeps the
old file's permission bits, ``os.replace``s it over the target and fsyncs the
folder. The temp file has a fixed name (``.<name>.hpcwrap-tmp``): every
caller holds the lock for the target, so no two writers share it, and one
left behind by a killed writer is simply reused by the next instead of
piling up.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import Any

import orjson

# Files hpcwrap writes are never opened through a symlink: a run's folders belong to
# its user, and the epilog hook may touch them with more rights than that user.
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.hpcwrap-tmp")


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems refuse fsync on a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def current_umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022  # kernels before 4.7 do not show it; the common default


def copy_mode(source_mode: int) -> int:
    """Permission bits for a copy: never wider than the original's, and the umask applied."""
    return stat.S_IMODE(source_mode) & 0o666 & ~current_umask()


def copy_mode_for(source_mode: int, owner: int) -> int:
    """Permission bits for a copy its owner must use (``owner``: 0o700 to run it, 0o600
    to read it): group and others keep at most the read (and run) bits the original gave
    them, the umask applied, never write. A private script's copy stays private."""
    use = owner & 0o500
    return owner | (stat.S_IMODE(source_mode) & (use >> 3 | use >> 6) & ~current_umask())


def write_atomic(path: Path, data: bytes, *, sync: bool = True, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (caller holds ``path``'s lock).

    The file keeps its permission bits, or gets ``mode`` when one is given.
    """
    tmp = temp_path(path)
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a killed writer's leftover may carry another mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o666)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        write_all(fd, data)
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync:
        fsync_dir(path.parent)


def append_line(path: Path, line: bytes, *, sync: bool = True) -> int:
    """Append one line (``line`` ends with a newline) and return the file's new size.

    If the file's last line is torn (no newline: a writer was killed), a newline
    goes first so the torn line stays on its own and readers can skip it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size:
            rfd = os.open(path, os.O_RDONLY | NOFOLLOW)
            try:
                last = os.pread(rfd, 1, size - 1)
            finally:
                os.close(rfd)
            if last != b"\n":
                line = b"\n" + line
        write_all(fd, line)
        if sync:
            os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
        return size + len(line)
    finally:
        os.close(fd)


def read_bytes(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def tail_records(path: Path, limit: int) -> list[dict[str, Any]]:
    """The JSON objects of the last ``limit`` bytes of a JSON-lines file, oldest first: a
    line the limit cut, or a damaged one, is skipped; [] when the file cannot be read.
    Never follows a symlink (the epilog reads a user's sidecar)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return []
        size = os.fstat(fh.fileno()).st_size
        fh.seek(max(size - limit, 0))
        data = fh.read(limit)
    lines = data.split(b"\n")
    if size > limit:
        lines = lines[1:]  # the first one is cut
    out = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out
