"""The run log: Markdown a person can read and edit, kept up to date by hpcwrap.

Public API (docs/run-log-format.md describes the files): ``create_run``, ``open_run``,
``RunLog`` (``read``, ``update``, ``add_status``, ``append_event``), the model
classes, and ``reindex``. Modules: ``model`` (typed state), ``render``
(state -> Markdown items), ``markdown`` (file structure), ``adopt`` (Markdown
-> state), ``merge`` (three-way merge keeping human edits), ``store``
(sidecar state.json + events.jsonl), ``locks``, ``fsio`` (atomic writes),
``timeline``, ``experiments``, ``reindex``, ``handle`` (RunLog itself).
"""

from __future__ import annotations

from hpcwrap.errors import RunLogWarning
from hpcwrap.runlog.handle import (
    CONFLICT_SUFFIX,
    SIDECAR_DIR,
    RunLog,
    create_run,
    list_run_logs,
    open_run,
    sidecar_for,
)
from hpcwrap.runlog.locks import LockConfig
from hpcwrap.runlog.model import JobBlock, Results, RunState, StatusEntry, parse_run_type
from hpcwrap.runlog.reindex import ReindexResult, reindex
from hpcwrap.runlog.render import render_text

__all__ = [
    "CONFLICT_SUFFIX",
    "SIDECAR_DIR",
    "JobBlock",
    "LockConfig",
    "ReindexResult",
    "Results",
    "RunLog",
    "RunLogWarning",
    "RunState",
    "StatusEntry",
    "create_run",
    "list_run_logs",
    "open_run",
    "parse_run_type",
    "reindex",
    "render_text",
    "sidecar_for",
]
