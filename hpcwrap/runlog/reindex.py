"""``hpcwrap log reindex``: rebuild timeline.md and experiments.md from the run logs.

Only adds what is missing (entries, rows, empty cells); every line a person
wrote stays. Reads just the few lines it needs from each log (title,
run_type, end_val_loss), so ten thousand logs take seconds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from hpcwrap.errors import RunNotFoundError
from hpcwrap.runlog import experiments, timeline
from hpcwrap.runlog.adopt import uncode
from hpcwrap.runlog.handle import io_errors, is_run_log_name
from hpcwrap.runlog.locks import LockConfig
from hpcwrap.runlog.render import fmt_float

_RUN_TYPE = re.compile(r"^[-*+] +run_type:[ \t]*(.*?)\r?$", re.MULTILINE | re.IGNORECASE)
_VAL = re.compile(r"^[-*+] +end_val_loss:[ \t]*(.*?)\r?$", re.MULTILINE | re.IGNORECASE)
_TITLE = re.compile(r"^# (.*?)\r?$", re.MULTILINE)


@dataclass
class ReindexResult:
    logs: int = 0
    folders: int = 0
    timeline_added: int = 0
    experiment_rows_added: int = 0


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
            val = fmt_float(float(raw))
        except ValueError:
            val = ""
    return {"description": experiments.escape_cell(desc), "val_loss": val}


def reindex(root: Path, *, locks: LockConfig | None = None) -> ReindexResult:
    """Add missing timeline entries (per folder) and experiments rows under ``root``."""
    with io_errors(Path(root)):
        return _reindex(Path(root), locks)


def _reindex(root: Path, locks: LockConfig | None = None) -> ReindexResult:
    if not root.is_dir():
        raise RunNotFoundError(f"no run_logs folder at {root}")
    result = ReindexResult()
    rows: list[tuple[str, dict[str, str]]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names = sorted(f for f in filenames if is_run_log_name(f))
        if not names:
            continue
        folder = Path(dirpath)
        result.folders += 1
        result.logs += len(names)
        result.timeline_added += timeline.add_runs(folder, root, names, locks=locks)
        rel = folder.relative_to(root).as_posix()
        for name in names:
            row = _experiment_row(folder / name)
            if row is not None:
                stem = name[:-3]
                rows.append((stem if rel in ("", ".") else f"{rel}/{stem}", row))
    if rows:
        result.experiment_rows_added = experiments.add_rows(root, rows, locks=locks)
    return result
