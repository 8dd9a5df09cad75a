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

import importlib
from typing import TYPE_CHECKING, Any

# The public names load on first use (PEP 562): importing one module of the package
# (``hpcwrap.runlog.endings`` for a hook, ``layout`` for status) must not load the
# handle, the merge and the indexes with it (start-up: tests/bench/bench_startup.py).
_WHERE: dict[str, str] = {
    "RunLogWarning": "hpcwrap.errors",
    "CONFLICT_SUFFIX": "hpcwrap.runlog.handle",
    "SIDECAR_DIR": "hpcwrap.runlog.handle",
    "RunLog": "hpcwrap.runlog.handle",
    "create_run": "hpcwrap.runlog.handle",
    "list_run_logs": "hpcwrap.runlog.handle",
    "open_run": "hpcwrap.runlog.handle",
    "sidecar_for": "hpcwrap.runlog.handle",
    "LockConfig": "hpcwrap.runlog.locks",
    "JobBlock": "hpcwrap.runlog.model",
    "Results": "hpcwrap.runlog.model",
    "RunState": "hpcwrap.runlog.model",
    "StatusEntry": "hpcwrap.runlog.model",
    "parse_run_type": "hpcwrap.runlog.model",
    "ReindexResult": "hpcwrap.runlog.reindex",
    "reindex": "hpcwrap.runlog.reindex",
    "render_text": "hpcwrap.runlog.render",
}

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        # a submodule not imported yet (``from hpcwrap.runlog import lifecycle``)
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # the submodule exists; something it imports does not
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


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
