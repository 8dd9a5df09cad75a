"""``hpcwrap log reindex``: rebuild timeline.md and experiments.md from the run logs.

It also brings every log up to its sidecar where the Markdown is behind (an end left
for the next writer, a write that did not finish: ``RunLog.repair``).

Only adds what is missing (entries, rows, empty cells); every line a person
wrote stays. Reads just the few lines it needs from each log (title,
run_type, end_val_loss), so ten thousand logs take seconds. Runs of the same
date go into timeline.md in the order they were created (the ``created``
event at the top of each sidecar's events.jsonl).

A Markdown file with a date in its name that is not ``<date>_<task>.md``
(``train_2026-03-13.md``, the spec's own example of a wrong name) is reported
with the name it should have; ``fix=True`` renames it, and its sidecar, under
the run's lock.
"""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from hpcwrap.errors import HpcwrapError, RunNotFoundError
from hpcwrap.runlog import experiments, layout, timeline
from hpcwrap.runlog.adopt import uncode
from hpcwrap.runlog.handle import RunLog, io_errors, is_run_log_name
from hpcwrap.runlog.layout import CONFLICT_SUFFIX, LOCK_FILE, sidecar_for
from hpcwrap.runlog.locks import Lock, LockConfig
from hpcwrap.runlog.peek import without_markdown
from hpcwrap.runlog.store import EVENTS_FILE

_RUN_TYPE = re.compile(r"^[-*+] +run_type:[ \t]*(.*?)\r?$", re.MULTILINE | re.IGNORECASE)
_VAL = re.compile(r"^[-*+] +end_val_loss:[ \t]*(.*?)\r?$", re.MULTILINE | re.IGNORECASE)
_TITLE = re.compile(r"^# (.*?)\r?$", re.MULTILINE)


@dataclass
class ReindexResult:
    logs: int = 0
    folders: int = 0
    timeline_added: int = 0
    experiment_rows_added: int = 0
    misnamed: list[tuple[Path, Path]] = field(default_factory=list)  # (file, its right name)
    renamed: list[tuple[Path, Path]] = field(default_factory=list)  # done with fix=True
    not_renamed: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)
    # Logs brought up to their sidecar (an end left for the next writer, a write that did
    # not finish), and those that could not be (the lock still held, the folder read-only).
    repaired: list[tuple[Path, str]] = field(default_factory=list)
    not_repaired: list[tuple[Path, str]] = field(default_factory=list)


_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{4}-\d{2}-\d{2})(?!\d)")
_INDEX_FILES = {layout.TIMELINE_FILE, layout.EXPERIMENTS_FILE}


def right_name(name: str) -> str | None:
    """``train_2026-03-13.md`` -> ``2026-03-13_train.md``; None for a right name or a
    file that is no run log (no date in its name, an index, a conflict file)."""
    if not name.endswith(".md") or name in _INDEX_FILES or name.endswith(CONFLICT_SUFFIX):
        return None
    if is_run_log_name(name):
        return None
    stem = name[:-3]
    m = _DATE_IN_NAME.search(stem)
    if m is None:
        return None
    task = (stem[: m.start()] + "_" + stem[m.end() :]).strip("_- ")
    task = re.sub(r"[_\-\s]*_[_\-\s]*|\s+", "_", task)
    if not task:
        return None
    fixed = f"{m.group(1)}_{task}.md"
    return fixed if is_run_log_name(fixed) else None


def created_at(path: Path) -> float | None:
    """When hpcwrap created the run (its sidecar's first event), or None."""
    try:
        with open(sidecar_for(path) / EVENTS_FILE, "rb") as fh:
            first = fh.readline(1 << 16)
        t = json.loads(first).get("t")
        return datetime.fromisoformat(t).timestamp() if isinstance(t, str) else None
    except (OSError, ValueError, AttributeError):
        return None


def rename_run(path: Path, new: Path, locks: LockConfig | None = None) -> None:
    """Rename a run log and its sidecar, holding the run's lock; never over another file."""
    old_side, new_side = sidecar_for(path), sidecar_for(new)
    if new.exists() or new_side.exists():
        raise FileExistsError(f"{new} (or its sidecar) already exists")
    if old_side.is_dir():
        with Lock(old_side / LOCK_FILE, config=locks).held():
            _move(path, new)
            os.rename(old_side, new_side)
    else:
        _move(path, new)


def _move(path: Path, new: Path) -> None:
    try:
        os.link(path, new)  # fails if ``new`` appeared meanwhile: nothing overwritten
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV) or new.exists():
            raise
        os.rename(path, new)  # a filesystem without hard links
        return
    os.unlink(path)


def _experiment_row(path: Path) -> dict[str, str] | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    m = _RUN_TYPE.search(text)
    if not m or m.group(1).strip().strip("`").lower() != "experiment":
        return None
    desc = ""
    t = _TITLE.search(text)
    if t:
        _task, sep, rest = t.group(1).partition(" — ")
        desc = rest.strip() if sep else ""
    val = ""
    v = _VAL.search(text)
    if v:
        raw = uncode(v.group(1).strip()).strip()
        try:
            float(raw)
        except ValueError:
            val = ""
        else:
            val = experiments.escape_cell(raw)  # as written in the log
    return {"description": experiments.escape_cell(desc), "val_loss": val}


def _repair(log: RunLog, result: ReindexResult) -> None:
    lag = log.lag() if sidecar_for(log.path).is_dir() else []
    if not lag:
        return
    try:
        log.repair()
    except HpcwrapError as exc:
        result.not_repaired.append((log.path, str(exc)))
    else:
        result.repaired.append((log.path, "; ".join(lag)))


def reindex(root: Path, *, locks: LockConfig | None = None, fix: bool = False) -> ReindexResult:
    """Add missing timeline entries (per folder) and experiments rows under ``root``;
    report misnamed logs (``fix``: rename them first, sidecar and all)."""
    with io_errors(Path(root)):
        return _reindex(Path(root), locks, fix)


def _reindex(root: Path, locks: LockConfig | None = None, fix: bool = False) -> ReindexResult:
    if not root.is_dir():
        raise RunNotFoundError(f"no run_logs folder at {root}")
    result = ReindexResult()
    rows: list[tuple[str, dict[str, str]]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        for f in sorted(filenames):
            right = right_name(f)
            if right is None:
                continue
            result.misnamed.append((folder / f, folder / right))
            if not fix:
                continue
            try:
                rename_run(folder / f, folder / right, locks)
            except OSError as exc:
                result.not_renamed.append((folder / f, exc.strerror or str(exc)))
            else:
                result.renamed.append((folder / f, folder / right))
                filenames.append(right)
        names = sorted({f for f in filenames if is_run_log_name(f) and (folder / f).is_file()})
        names = sorted([*names, *without_markdown(folder, names)])  # rebuilt by _repair
        if not names:
            continue
        result.folders += 1
        result.logs += len(names)
        for name in names:  # first: a missing Markdown is rebuilt before it is read
            _repair(RunLog(folder / name, root, locks), result)
        created = {n: t for n in names if (t := created_at(folder / n)) is not None}
        result.timeline_added += timeline.add_runs(
            folder, root, names, locks=locks, created=created
        )
        rel = folder.relative_to(root).as_posix()
        for name in names:
            row = _experiment_row(folder / name)
            if row is not None:
                stem = name[:-3]
                rows.append((stem if rel in ("", ".") else f"{rel}/{stem}", row))
    if rows:
        result.experiment_rows_added = experiments.add_rows(root, rows, locks=locks)
    return result
