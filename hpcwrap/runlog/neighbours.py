"""The other runs of a run-logs folder: when they were alive (reading/ownership.py's
"alone") and which checkpoints their Results claim (reading/checkpoints.py).

A file a run did not name can still be its own when no other run of the same folder was
alive while it was written. Each other run's state.json says when its jobs ran; a job
that started and has no end counts as alive (a log left open by a killed job makes the
answer "not alone": files then need a stronger tie, never a weaker one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from hpcwrap.runlog import layout
from hpcwrap.runlog.dates import parse_timestamp
from hpcwrap.runlog.endings import is_final
from hpcwrap.runlog.handle import list_run_logs


def _time(value: Any) -> datetime | None:
    return parse_timestamp(value) if isinstance(value, str) else None


def _state(md: Path) -> dict[str, Any]:
    path = layout.sidecar_for(md) / layout.STATE_FILE
    try:
        with open(path, "rb") as fh:
            doc = orjson.loads(fh.read())
        state = doc["state"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return state if isinstance(state, dict) else {}


def _jobs(md: Path) -> list[dict[str, Any]]:
    jobs = _state(md).get("jobs")
    return [j for j in jobs if isinstance(j, dict)] if isinstance(jobs, list) else []


def _windows(jobs: list[dict[str, Any]]) -> list[tuple[float, float | None]]:
    out: list[tuple[float, float | None]] = []
    for job in jobs:
        start, end = _time(job.get("start")), _time(job.get("end"))
        if start is None:
            continue  # never started
        if end is None and is_final(job.get("state")):
            continue  # over, its end unknown: as before, not alive
        out.append((start.timestamp(), end.timestamp() if end is not None else None))
    return out


def others_windows(root: Path, this: Path) -> list[tuple[float, float | None]]:
    """When the other runs under ``root`` had a job alive: ``(start, end)`` as Unix times,
    end None while a job may still run (reading/ownership.py's "alone", file by file)."""
    me = os.path.abspath(this)
    out: list[tuple[float, float | None]] = []
    for md in list_run_logs(root):
        if os.path.abspath(md) != me:
            out += _windows(_jobs(md))
    return out


@dataclass(frozen=True)
class Claim:
    """Another run's checkpoint (its Results name it) and until when that run wrote:
    ``until`` is its last job's end as a Unix time, None while a job of it may still run."""

    run: str
    checkpoint: str
    until: float | None


def others_checkpoints(root: Path, this: Path) -> list[Claim]:
    """The checkpoints the other runs under ``root`` claim (reading/checkpoints.py: another
    run's checkpoint is never this one's)."""
    me = os.path.abspath(this)
    found: list[Claim] = []
    for md in list_run_logs(root):
        if os.path.abspath(md) == me:
            continue
        state = _state(md)
        results = state.get("results")
        checkpoint = results.get("checkpoint") if isinstance(results, dict) else None
        if not isinstance(checkpoint, str) or not checkpoint:
            continue
        until: float | None = None
        jobs = _jobs(md)
        if jobs and all(is_final(j.get("state")) for j in jobs):
            ends = [t for t in (_time(j.get("end")) for j in jobs) if t is not None]
            until = max(ends).timestamp() if ends else None
        found.append(Claim(md.stem, checkpoint, until))
    return found


__all__ = ["Claim", "others_checkpoints", "others_windows"]
