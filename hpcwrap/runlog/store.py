"""The sidecar of one run: ``state.json`` and the append-only ``events.jsonl``.

``state.json`` (orjson, replaced atomically) holds the RunState, the merge base
(see ``merge.py``), the keys a person owns, and ``events_size``: the length
of events.jsonl it already accounts for.

Every event line is ``{"t": <iso>, "kind": <kind>, ...data}``. Events written
by an update also carry what rebuilding needs, under underscore keys:

- ``_state`` + ``_base``: a full snapshot (the ``created`` and ``adopted`` events);
- ``_patch``: the top-level RunState fields that changed, new value whole, except
  a mapping, whose changed keys only go (``{"array_tasks{}": {"set": {...}, "del":
  [...]}}``), a list that grew, whose new items only go (``{"next+": [...]}``), and
  Status: ``{"status+": [[iso, text], ...]}`` at the end,
  ``{"status@": [[index, iso, text], ...]}`` between older entries (format 2);
- ``_base``: merge-base entries that changed (``null`` = dropped);
- ``_human``: keys newly owned by a person;
- ``_md``: hash of the Markdown this update wrote.

An update appends its event first, then replaces the Markdown, then
state.json. Loading reads state.json and replays only the events past
``events_size`` (normally none), so a writer killed between those steps
loses nothing, and nothing re-reads the whole event log. A corrupt or missing
state.json is rebuilt from the events with a warning; a torn last event line
is skipped with a warning.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from hpcwrap.errors import RunLogError
from hpcwrap.errors import RunLogWarning as RunLogWarning

# Defined in hpcwrap.errors with the exceptions; importable from here as before.
from hpcwrap.runlog import layout
from hpcwrap.runlog.dates import iso
from hpcwrap.runlog.facts import natural_key
from hpcwrap.runlog.fsio import append_line, read_bytes, write_atomic
from hpcwrap.runlog.layout import STATE_MAX
from hpcwrap.runlog.merge import Base
from hpcwrap.runlog.model import RunState, StatusEntry, from_dict, to_dict

STATE_FILE = layout.STATE_FILE
EVENTS_FILE = layout.EVENTS_FILE
# The sidecar's format (state.json's "format"; events carry the same facts). A newer one
# is refused, never overwritten; an older one is read by ``from_dict``'s defaults and, when
# a change needs more, a step in MIGRATIONS (none yet: format 2 only adds patch kinds).
FORMAT = layout.FORMAT
# Bounded reads: state.json no bigger than layout.STATE_MAX; nor is more than this of
# events.jsonl read at once.
EVENTS_READ_MAX = 64 * 2**20


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _check_format(path: Path, found: object) -> None:
    if isinstance(found, int) and found > FORMAT:
        raise RunLogError(
            f"{path}: written by a newer hpcwrap (sidecar format {found}; this one reads up "
            f"to {FORMAT}): upgrade hpcwrap to update this run log"
        )


@dataclass
class Snapshot:
    state: RunState
    base: Base = field(default_factory=dict)
    human: set[str] = field(default_factory=set)
    events_size: int = 0
    md_hash: str | None = None
    index: dict[str, Any] = field(default_factory=dict)  # rows hpcwrap last wrote in indexes


def md_hash(data: bytes | None) -> str | None:
    if data is None:
        return None
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def encode_base(base: Base) -> dict[str, Any]:
    return {
        k: (line if line == canon and line is not None else [line, canon])
        for k, (line, canon) in base.items()
    }


def decode_base(raw: dict[str, Any]) -> Base:
    out: Base = {}
    for key, value in raw.items():
        if isinstance(value, str):
            out[key] = (value, value)
        elif isinstance(value, list) and len(value) == 2:
            out[key] = (value[0], value[1])
    return out


def state_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The top-level fields of ``new`` that differ from ``old``: a mapping (an array's
    ``array_tasks``) as its changed keys only (``"<field>{}"``), so that a 1,000-task
    array's events carry each task's own change, not every task again."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if before == value:
            continue
        if isinstance(before, list) and isinstance(value, list) and value[: len(before)] == before:
            patch[key + "+"] = value[len(before) :]  # a list that grew: what it gained
        elif isinstance(before, dict) and isinstance(value, dict):
            patch.update(_mapping_patch(key, before, value))
        else:
            patch[key] = value
    return patch


def _mapping_patch(key: str, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    changed = {k: v for k, v in after.items() if k not in before or before[k] != v}
    gone = [k for k in before if k not in after]
    rebuilt = {k: v for k, v in before.items() if k not in gone}
    rebuilt.update(changed)
    patch: dict[str, Any] = {"set": changed, "del": gone}
    if list(rebuilt) != list(after):
        if list(after) != sorted(after, key=natural_key):
            return {key: after}  # an order the patch cannot say: whole
        patch["sorted"] = True  # kept in natural order (an array's tasks: runlog/arrays.py)
    return {key + "{}": patch}


def status_patch(before: list[tuple[datetime, str]], after: list[StatusEntry]) -> dict[str, Any]:
    """``{"status+": [...]}`` for appended entries; ``{"status@": [[i, iso, text], ...]}``
    for entries put between older ones (the tasks of an array end out of order);
    ``{"status": [...]}`` whole only where older ones changed or went."""
    now_ = [(s.when, s.text) for s in after]
    if now_ == before:
        return {}
    n = len(before)
    if now_[:n] == before:
        return {"status+": [[iso(w), t] for w, t in now_[n:]]}
    inserted: list[list[Any]] = []
    j = 0
    for i, item in enumerate(now_):
        if j < n and item == before[j]:
            j += 1
        else:
            inserted.append([i, iso(item[0]), item[1]])
    if j == n:
        return {"status@": inserted}
    return {"status": [[iso(w), t] for w, t in now_]}


def apply_patch(data: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if key.endswith("+") and isinstance(value, list):
            data[key[:-1]] = list(data.get(key[:-1]) or []) + list(value)
        elif key == "status@":
            status = list(data.get("status") or [])
            for i, when, text in value:  # ascending final positions
                status.insert(i, [when, text])
            data["status"] = status
        elif key.endswith("{}") and isinstance(value, dict):
            field_ = key[:-2]
            mapping = dict(data.get(field_) or {})
            for gone in value.get("del") or []:
                mapping.pop(gone, None)
            mapping.update(value.get("set") or {})
            if value.get("sorted"):
                mapping = dict(sorted(mapping.items(), key=lambda kv: natural_key(kv[0])))
            data[field_] = mapping
        else:
            data[key] = value


def base_delta(old: Base, new: Base) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    for key, value in new.items():
        if old.get(key) != value:
            line, canon = value
            delta[key] = line if line == canon and line is not None else [line, canon]
    for key in old:
        if key not in new:
            delta[key] = None
    return delta


def apply_base_delta(base: Base, delta: dict[str, Any]) -> None:
    for key, value in delta.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, str):
            base[key] = (value, value)
        elif isinstance(value, list) and len(value) == 2:
            base[key] = (value[0], value[1])


def _default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return str(obj)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default, option=orjson.OPT_NON_STR_KEYS)


class Sidecar:
    """Reads and writes one run's sidecar folder (the caller holds the run's lock for writes)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.state_path = folder / STATE_FILE
        self.events_path = folder / EVENTS_FILE

    def exists(self) -> bool:
        return self.state_path.exists() or self.events_path.exists()

    def behind(self) -> bool:
        """An update appended its event and died (or failed) before writing the Markdown
        and state.json: events.jsonl holds a change state.json does not account for.
        (Plain events, e.g. the wrapper's progress lines, carry no change.)"""
        try:
            size = self.events_path.stat().st_size
        except OSError:
            return False
        raw = read_bytes(self.state_path)
        recorded = 0
        if raw is not None:
            try:
                doc = orjson.loads(raw)
                recorded = int(doc.get("events_size") or 0) if isinstance(doc, dict) else 0
            except (ValueError, TypeError, AttributeError):
                return True
        if size <= recorded:
            return False
        try:
            with open(self.events_path, "rb") as fh:
                fh.seek(recorded)
                tail = fh.read()
        except OSError:
            return False
        return any(key in tail for key in (b'"_patch"', b'"_state"', b'"_md"'))

    # -------------------------------------------------------- writing

    def append_event(self, event: dict[str, Any]) -> int:
        """Append one event line; returns events.jsonl's new size."""
        return append_line(self.events_path, dumps(event) + b"\n")

    def save(self, snap: Snapshot) -> None:
        doc = {
            "format": FORMAT,
            "events_size": snap.events_size,
            "md_hash": snap.md_hash,
            "human": sorted(snap.human),
            "index": snap.index,
            "state": to_dict(snap.state, native_times=True),
            "base": encode_base(snap.base),
        }
        write_atomic(self.state_path, dumps(doc))

    # -------------------------------------------------------- reading

    def load(self, md: bytes | None) -> Snapshot | None:
        """The current snapshot, or None when this run has no sidecar yet.

        ``md`` is the Markdown on disk (to tell whether an interrupted update
        got as far as writing it).
        """
        big = _size(self.state_path)
        if big is not None and big > STATE_MAX:
            warnings.warn(
                f"{self.state_path} is {big:,} bytes, over hpcwrap's cap of {STATE_MAX:,}: not "
                f"loaded; rebuilding the state from {self.events_path.name}",
                RunLogWarning,
                stacklevel=3,
            )
            return self.rebuild(md)
        raw = read_bytes(self.state_path)
        if raw is None:
            if not self.events_path.exists():
                return None
            warnings.warn(
                f"{self.state_path} is missing; rebuilding it from {self.events_path.name}",
                RunLogWarning,
                stacklevel=3,
            )
            return self.rebuild(md)
        try:
            doc = orjson.loads(raw)
            if not isinstance(doc, dict) or not isinstance(doc.get("state"), dict):
                raise ValueError("not a state document")
            _check_format(self.state_path, doc.get("format"))
            snap = Snapshot(
                state=from_dict(doc["state"]),
                base=decode_base(doc.get("base") or {}),
                human=set(doc.get("human") or []),
                events_size=int(doc.get("events_size") or 0),
                md_hash=doc.get("md_hash"),
                index=dict(doc.get("index") or {}),
            )
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            warnings.warn(
                f"{self.state_path} is damaged ({exc}); rebuilding it from {self.events_path.name}",
                RunLogWarning,
                stacklevel=3,
            )
            return self.rebuild(md)
        try:
            size = self.events_path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size > snap.events_size:
            events = self._read_events(snap.events_size)
            self._replay(snap, events, md)
            snap.events_size = size
        return snap

    def rebuild(self, md: bytes | None) -> Snapshot | None:
        events = self._read_events(0)
        start = None
        for i, ev in enumerate(events):
            if "_state" in ev:
                start = i
        if start is None:
            warnings.warn(
                f"{self.events_path} has no snapshot to rebuild from; adopting the Markdown",
                RunLogWarning,
                stacklevel=3,
            )
            return None
        snap = Snapshot(state=RunState())
        self._replay(snap, events[start:], md)
        try:
            snap.events_size = self.events_path.stat().st_size
        except FileNotFoundError:
            snap.events_size = 0
        return snap

    def _read_events(self, offset: int) -> list[dict[str, Any]]:
        size = _size(self.events_path)
        if size is not None and size - offset > EVENTS_READ_MAX:
            raise RunLogError(
                f"{self.events_path}: {size - offset:,} bytes to read, over hpcwrap's cap of "
                f"{EVENTS_READ_MAX:,}: left untouched (move it aside, or remove the run)"
            )
        try:
            with open(self.events_path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        out: list[dict[str, Any]] = []
        lines = data.split(b"\n")
        torn_tail = not data.endswith(b"\n")
        for n, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                ev = orjson.loads(line)
            except orjson.JSONDecodeError:
                where = "torn last line" if (n == len(lines) - 1 and torn_tail) else "bad line"
                warnings.warn(
                    f"{self.events_path}: skipping a {where} ({len(line)} bytes)",
                    RunLogWarning,
                    stacklevel=4,
                )
                continue
            if isinstance(ev, dict):
                out.append(ev)
        return out

    @staticmethod
    def _replay(snap: Snapshot, events: list[dict[str, Any]], md: bytes | None) -> None:
        data = to_dict(snap.state)
        disk_hash = md_hash(md)
        # Which of these updates' Markdown writes reached the file: those up to the last
        # whose hash the file has. None did when the file is still the one state.json
        # knew (each write failed: a read-only folder, a full disk); the base must then
        # keep the old lines, or a line never written would pass for a person's edit.
        written_upto = max(
            (i for i, ev in enumerate(events) if "_md" in ev and ev["_md"] == disk_hash),
            default=-1 if disk_hash == snap.md_hash else len(events),
        )
        for i, ev in enumerate(events):
            if "_state" in ev and isinstance(ev["_state"], dict):
                data = dict(ev["_state"])
                snap.base = decode_base(ev.get("_base") or {})
                snap.human = set(ev.get("_human") or [])
                snap.index = dict(ev.get("_index") or {})
                if "_md" in ev:
                    snap.md_hash = ev["_md"]
                continue
            patch = ev.get("_patch")
            if isinstance(patch, dict):
                apply_patch(data, patch)
            snap.human.update(ev.get("_human") or [])
            if isinstance(ev.get("_index"), dict):
                snap.index.update(ev["_index"])
            delta = ev.get("_base")
            if isinstance(delta, dict) and ("_md" not in ev or i <= written_upto):
                apply_base_delta(snap.base, delta)
                if "_md" in ev:
                    snap.md_hash = ev["_md"]
        snap.state = from_dict(data)
