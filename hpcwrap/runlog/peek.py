"""Cheap looks at a run's sidecar, without the run-log machinery (handle, lifecycle,
merge): what ``hpcwrap status`` and the epilog's fast path need for a run whose files
are in step, the common case. Each look is a listing, a stat or one bounded read; where
one says the files may be behind, the caller reads the run through ``RunLog``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from hpcwrap.runlog.layout import (
    ENDS_DIR,
    EVENTS_FILE,
    SIDECAR_DIR,
    STATE_FILE,
    STATE_MAX,
    is_run_log_name,
)


def state_doc(sidecar: Path) -> dict[str, Any] | None:
    """state.json as a dict; None when missing, damaged, not a dict or over
    ``STATE_MAX`` (the run is then read through its RunLog, which rebuilds it from
    events.jsonl and says so)."""
    try:
        with open(sidecar / STATE_FILE, "rb") as fh:
            if os.fstat(fh.fileno()).st_size > STATE_MAX:
                return None
            doc = orjson.loads(fh.read())
    except (OSError, orjson.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def in_step(sidecar: Path, doc: dict[str, Any]) -> bool:
    """No end waits for the next writer and events.jsonl is exactly as long as
    state.json (``doc``) accounts for: state.json is the run's whole state."""
    if ends_waiting(sidecar):
        return False
    try:
        return os.stat(sidecar / EVENTS_FILE).st_size == doc.get("events_size")
    except OSError:
        return False


def ends_waiting(sidecar: Path) -> bool:
    """Whether an end waits in ``sidecar`` for the next writer (runlog/deferred.py; cheap:
    one listing, no file read)."""
    try:
        names = os.listdir(sidecar / ENDS_DIR)
    except OSError:
        return False
    return any(n.endswith(".json") and not n.startswith(".") for n in names)


def without_markdown(folder: Path, names: Iterable[str] = ()) -> list[str]:
    """``<run>.md`` names of the runs in ``folder`` whose Markdown is gone but whose
    sidecar state is whole (deleted by hand, or lost in a failed write): still runs,
    found by name and rebuilt by their next writer or ``log reindex``."""
    have = set(names)
    try:
        entries = sorted(os.listdir(folder / SIDECAR_DIR))
    except OSError:
        return []
    out = []
    for stem in entries:
        name = f"{stem}.md"
        if name in have or not is_run_log_name(name):
            continue
        if (folder / SIDECAR_DIR / stem / STATE_FILE).is_file() and not (folder / name).exists():
            out.append(name)
    return out


__all__ = ["ends_waiting", "in_step", "state_doc", "without_markdown"]
