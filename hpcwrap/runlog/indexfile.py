"""The shared index files (``timeline.md``, ``experiments.md``): one locked edit for both.

``edit_lines`` is the whole read-change-write: take the index's lock, read
the file (a missing one is empty), let the caller change its lines in place,
and replace the file atomically only when they changed. Line ends are kept
as found (LF or CRLF) and the file always ends with a newline.

The lock is an argument, made by the caller (with whatever ``LockConfig``
it was given), at ``index_lock_path``: ``<folder>/.hpcwrap/<stem>.lock``,
the names every earlier release used, so old and new writers still exclude
each other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hpcwrap.runlog.fsio import read_bytes, write_atomic
from hpcwrap.runlog.layout import SIDECAR_DIR
from hpcwrap.runlog.locks import Lock
from hpcwrap.runlog.markdown import join_lines, split_lines

T = TypeVar("T")


def index_lock_path(path: Path) -> Path:
    """The lock file for the index at ``path``: ``timeline.md`` -> ``.hpcwrap/timeline.lock``."""
    return path.parent / SIDECAR_DIR / f"{path.stem}.lock"


def edit_lines(path: Path, lock: Lock, edit: Callable[[list[str]], T]) -> T:
    """Run ``edit`` on ``path``'s lines under ``lock``; write them back if they changed.

    ``edit`` gets the lines without their ends and changes that list in place;
    its return value is returned. Nothing is written when the lines are the
    same afterwards (nor when ``edit`` raises).
    """
    lock.path.parent.mkdir(parents=True, exist_ok=True)
    with lock.held():
        raw = read_bytes(path)
        text = raw.decode("utf-8", errors="surrogateescape") if raw is not None else ""
        lines, newline, _final = split_lines(text)
        before = list(lines)
        result = edit(lines)
        if lines != before:
            data = join_lines(lines, newline, True).encode("utf-8", errors="surrogateescape")
            write_atomic(path, data)
        return result
