"""Ends that could not be written at once: left for the next writer, applied exactly once.

A job's end must reach its log even when the writer that saw it cannot write it now:
the run's lock is held by a hung process, ``run_logs/`` is read-only for a while, the
epilog's time is up. Then that writer (the epilog, or the wrapper) leaves its ``Ended``
transition as one small file in the sidecar's ``ends/`` folder, written whole (a
temporary name, then a rename: no lock needed, one file per writer and attempt).

- Every writer, under the run's lock, applies the files it finds before its own change,
  in the order they were left, records their names in the events line of that update
  and in state.json, then removes them: an end is applied once (a name already applied
  is only removed; applying an ``Ended`` twice would change nothing anyway).
- Every reader (``RunLog.read``, ``hpcwrap status``) shows them applied, and says the
  end is pending: written to the sidecar, not yet to the Markdown.

The records are the job's user's own files in the user's own folder: a reader trusts
them no more than the Markdown itself (a bad file is skipped with a warning).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from hpcwrap.errors import RunLogWarning
from hpcwrap.runlog import layout, peek
from hpcwrap.runlog.dates import iso, parse_timestamp
from hpcwrap.runlog.endings import Strength
from hpcwrap.runlog.fsio import NOFOLLOW, write_atomic
from hpcwrap.runlog.lifecycle import Ended, ResultFacts, Source, apply_in_place
from hpcwrap.runlog.model import RunState
from hpcwrap.runlog.telemetry import TelemetryFacts, telemetry_from_dict

FORMAT = 1
MAX_BYTES = 256 * 1024  # a record is a few KB; a larger file is not one of ours
KEEP_APPLIED = 64  # names of applied records kept in state.json (exactly once)


@dataclass(frozen=True)
class ArrayTaskRecord:
    """An array task's identity, as ``arrays.ArrayTask`` asks for it (from a record)."""

    array_job_id: str | None = None
    array_task_id: str | None = None
    array_block_id: str | None = None
    array_task_count: int | None = None
    nodes: str | None = None
    restart_count: int | None = None
    cluster: str | None = None


@dataclass(frozen=True)
class Pending:
    """One end left for the next writer."""

    name: str  # the file's name in ``ends/``: unique, and sorts in the order they were left
    facts: Ended
    by: str  # "epilog", "wrapper"
    why: str  # why it was not written at once
    at: datetime  # when it was left


def ends_dir(sidecar: Path) -> Path:
    return sidecar / layout.ENDS_DIR


def _time(raw: Any) -> datetime:
    found = parse_timestamp(str(raw)) if raw else None
    if found is None:
        raise ValueError(f"not a time: {raw!r}")
    return found


def _results(raw: Any) -> ResultFacts | None:
    if not isinstance(raw, dict):
        return None
    known = {f.name for f in dataclasses.fields(ResultFacts)}
    args = {k: v for k, v in raw.items() if k in known and k != "telemetry"}
    tele = raw.get("telemetry")
    telemetry: TelemetryFacts | None = telemetry_from_dict(tele) if isinstance(tele, dict) else None
    return ResultFacts(**args, telemetry=telemetry)


def encode(facts: Ended) -> dict[str, Any]:
    """``facts`` as plain JSON values (times as ISO text, enums by name)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(Ended):
        value = getattr(facts, f.name)
        if f.name == "array":
            fields = dataclasses.fields(ArrayTaskRecord)
            value = None if value is None else {a.name: getattr(value, a.name) for a in fields}
        elif isinstance(value, datetime):
            value = iso(value)
        elif isinstance(value, Source | Strength):
            value = value.name
        elif f.name == "results" and value is not None:
            value = dataclasses.asdict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def decode(raw: dict[str, Any]) -> Ended:
    """The ``Ended`` a record holds; ValueError when it is not one."""
    try:
        when = _time(raw.get("when"))
        start = _time(raw["start"]) if raw.get("start") else None
        array = raw.get("array")
        strength = raw.get("strength")
        return Ended(
            when=when,
            state=str(raw["state"]),
            source=Source[str(raw["source"])],
            execution_id=str(raw["execution_id"]),
            exit_code=int(raw["exit_code"]) if raw.get("exit_code") is not None else None,
            start=start,
            nodes=raw.get("nodes"),
            text=raw.get("text"),
            results=_results(raw.get("results")),
            next_steps=tuple(str(s) for s in raw.get("next_steps") or ()),
            wandb_local=raw.get("wandb_local"),
            wandb_url=raw.get("wandb_url"),
            array=ArrayTaskRecord(**array) if isinstance(array, dict) else None,
            task_prefix=str(raw.get("task_prefix") or ""),
            slurm_state=raw.get("slurm_state"),
            slurm_exit=raw.get("slurm_exit"),
            strength=Strength[str(strength)] if strength else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an end record ({exc})") from None


def leave(sidecar: Path, facts: Ended, *, by: str, why: str) -> Path:
    """Leave ``facts`` for the next writer of the run whose sidecar is ``sidecar``.

    Needs no lock: a new file under a unique name, written whole, then renamed into
    place. Raises OSError when even that cannot be written (a full disk).
    """
    folder = ends_dir(sidecar)
    folder.mkdir(exist_ok=True)
    stamp = time.time_ns()
    job = "".join(c for c in facts.execution_id if c.isalnum() or c in "_-")[:40] or "job"
    name = f"{stamp:020d}-{by}-{job}-{os.getpid()}.json"
    doc = {
        "format": FORMAT,
        "by": by,
        "why": why,
        "at": iso(datetime.fromtimestamp(stamp / 1e9).astimezone()),
        "ended": encode(facts),
    }
    # A new, unique name: no lock needed; written whole, then renamed into place.
    write_atomic(folder / name, orjson.dumps(doc), mode=0o644)
    return folder / name


def _read(path: Path) -> Pending | None:
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    except OSError:
        return None  # applied and removed in the meantime, or not a plain file
    try:
        data = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    try:
        if len(data) > MAX_BYTES:
            raise ValueError("too large")
        doc = orjson.loads(data)
        if not isinstance(doc, dict) or not isinstance(doc.get("ended"), dict):
            raise ValueError("no end in it")
        if isinstance(doc.get("format"), int) and doc["format"] > FORMAT:
            raise ValueError(f"format {doc['format']}, from a newer hpcwrap")
        return Pending(
            name=path.name,
            facts=decode(doc["ended"]),
            by=str(doc.get("by") or "?"),
            why=str(doc.get("why") or ""),
            at=_time(doc.get("at")),
        )
    except (ValueError, orjson.JSONDecodeError) as exc:
        warnings.warn(f"{path}: skipped ({exc})", RunLogWarning, stacklevel=3)
        return None


def pending(sidecar: Path) -> list[Pending]:
    """The ends left in ``sidecar``, oldest first (none: one failed stat, nothing more)."""
    try:
        names = sorted(n for n in os.listdir(ends_dir(sidecar)) if n.endswith(".json"))
    except OSError:
        return []
    found = (_read(ends_dir(sidecar) / n) for n in names if not n.startswith("."))
    return [p for p in found if p is not None]


def has_pending(sidecar: Path) -> bool:
    """Whether any end waits in ``sidecar`` (cheap: a listing, no file read)."""
    return peek.ends_waiting(sidecar)


def apply(state: RunState, records: list[Pending], applied: list[str]) -> list[str]:
    """Apply the records not named in ``applied`` to ``state``; returns their names."""
    done: list[str] = []
    for rec in records:
        if rec.name in applied:
            continue
        apply_in_place(state, rec.facts)
        done.append(rec.name)
    return done


def remove(sidecar: Path, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(OSError):
            os.unlink(ends_dir(sidecar) / name)


def remember(applied: list[str], names: list[str]) -> list[str]:
    """The applied names state.json keeps (the newest ``KEEP_APPLIED``)."""
    return (applied + [n for n in names if n not in applied])[-KEEP_APPLIED:]


def pending_text(records: list[Pending]) -> str:
    """``end pending: left by the epilog at 14:05 UTC (the run's lock was held)``."""
    last = records[-1]
    stamp = last.at.astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"end pending: left by the {last.by} at {stamp} ({last.why}), not yet in the Markdown"


__all__ = [
    "ArrayTaskRecord",
    "Pending",
    "apply",
    "decode",
    "encode",
    "ends_dir",
    "has_pending",
    "leave",
    "pending",
    "pending_text",
    "remember",
    "remove",
]
