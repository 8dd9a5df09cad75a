"""What earlier runs wrote into the work tree, as their run logs recorded it.

Their checkpoints and config snapshots (Results), read from the newest ``state.json``
files under a run_logs folder (bounded: a submission must stay fast however many runs
a project keeps). ``codestate.capture`` leaves the output folders they lie in out of
the untracked-file count, which otherwise counted every checkpoint of every run.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from hpcwrap.runlog.layout import SIDECAR_DIR
from hpcwrap.runlog.store import STATE_FILE

NEWEST = 100  # run logs read at most (the newest by their state.json's time)


def recorded_outputs(root: Path, limit: int = NEWEST) -> list[Path]:
    """The absolute checkpoint and config-snapshot paths of the newest ``limit`` runs
    under ``root`` (none where it holds no run logs or they cannot be read)."""
    states: list[tuple[float, Path]] = []
    try:
        for path in root.rglob(f"{SIDECAR_DIR}/*/{STATE_FILE}"):
            try:
                states.append((path.stat().st_mtime, path))
            except OSError:
                continue
    except OSError:
        return []
    found: list[Path] = []
    for _, path in sorted(states, reverse=True)[:limit]:
        try:
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        state = doc.get("state") if isinstance(doc, dict) else None
        results = state.get("results") if isinstance(state, dict) else None
        if not isinstance(results, dict):
            continue
        for key in ("checkpoint", "config_snapshot"):
            value = results.get(key)
            if isinstance(value, str) and os.path.isabs(value):
                found.append(Path(value))
    return found


__all__ = ["NEWEST", "recorded_outputs"]
