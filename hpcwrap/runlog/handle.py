"""RunLog: the handle every feature writes a run log through; create_run and open_run."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from hpcwrap import redact, textcheck
from hpcwrap.errors import (
    AmbiguousRunError,
    HpcwrapError,
    LockTimeoutError,
    RunLogConflictError,
    RunLogError,
    RunNotFoundError,
    UnparseableError,
    UsageError,
)
from hpcwrap.runlog import deferred, experiments, layout, lifecycle, timeline
from hpcwrap.runlog.adopt import parse_state
from hpcwrap.runlog.dates import iso, now, to_utc
from hpcwrap.runlog.fsio import read_bytes, write_atomic
from hpcwrap.runlog.layout import (
    CONFLICT_SUFFIX,
    LOCK_FILE,
    SIDECAR_DIR,
    conflict_path,
    is_run_log_name,
    name_taken,
    run_folder,
    run_stem,
    sidecar_for,
)
from hpcwrap.runlog.locks import Lock, LockConfig
from hpcwrap.runlog.markdown import Document, join_lines, parse_document
from hpcwrap.runlog.merge import Base, adopt_base, full_base, merge
from hpcwrap.runlog.model import RunState, to_dict
from hpcwrap.runlog.peek import without_markdown
from hpcwrap.runlog.render import render_lines, render_sections
from hpcwrap.runlog.store import (
    Sidecar,
    Snapshot,
    base_delta,
    md_hash,
    state_patch,
    status_patch,
)


@contextlib.contextmanager
def io_errors(what: Path) -> Iterator[None]:
    """Turn a raw OSError (permissions, a full disk, a symlinked lock file) into RunLogError."""
    try:
        yield
    except HpcwrapError:
        raise
    except OSError as exc:
        detail = exc.strerror or str(exc)
        where = exc.filename or what
        raise RunLogError(f"{where}: {detail} (while writing {what})") from exc


def _guess_root(path: Path) -> Path:
    for parent in path.parents:
        if parent.name == "run_logs":
            return parent
    if (path.parent.parent / layout.EXPERIMENTS_FILE).exists():
        return path.parent.parent
    return path.parent


class RunLog:
    """One run log and its sidecar. Cheap to create; every write takes the run's lock."""

    def __init__(
        self, path: Path, root: Path | None = None, locks: LockConfig | None = None
    ) -> None:
        self.path = Path(os.path.abspath(path))
        self.locks = locks  # None: LockConfig.from_env() when a lock is taken
        self._root_given = root is not None
        self.root = Path(os.path.abspath(root)) if root is not None else _guess_root(self.path)
        self.sidecar = sidecar_for(self.path)
        self._store = Sidecar(self.sidecar)

    def __repr__(self) -> str:
        return f"RunLog({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def group(self) -> str | None:
        try:
            rel = self.path.parent.relative_to(self.root)
        except ValueError:
            return None
        text = rel.as_posix()
        return None if text in ("", ".") else text

    @property
    def conflict_path(self) -> Path:
        return conflict_path(self.path)

    @property
    def run_id(self) -> str:
        """The run's name in experiments.md: ``<group>/<name>`` or ``<name>``."""
        return f"{self.group}/{self.name}" if self.group else self.name

    def with_locks(self, locks: LockConfig) -> RunLog:
        """The same run log, taking its locks with ``locks`` (e.g. a shorter wait)."""
        return RunLog(self.path, self.root if self._root_given else None, locks)

    def lock(self) -> Lock:
        return Lock(self.sidecar / LOCK_FILE, config=self.locks)

    # -------------------------------------------------------- reading

    def read(self) -> RunState:
        """The run's state (a hand-written log without sidecar is parsed, nothing written)."""
        return self.read_with_owners()[0]

    def read_with_owners(self) -> tuple[RunState, list[str]]:
        """The state and the keys of the fields a person edited (``mode.objective``, ...).

        For those the Markdown shows the person's text; the state keeps hpcwrap's value.
        """
        md = _read_markdown(self.path)
        snap = self._store.load(md)
        if snap is not None:
            self._use_recorded_root(snap)
            # Ends left for the next writer are the run's state already (deferred.py).
            records = deferred.pending(self.sidecar)
            if records:
                deferred.apply(snap.state, records, _applied(snap))
            return snap.state, sorted(snap.human)
        if md is None:
            raise RunNotFoundError(f"no run log at {self.path}")
        return self._parse_for_adoption(md)[0], []

    def pending_ends(self) -> list[deferred.Pending]:
        """Ends left for the next writer (deferred.py), not yet applied, oldest first."""
        records = deferred.pending(self.sidecar)
        if not records:
            return []
        snap = self._store.load(_read_markdown(self.path))
        applied = _applied(snap) if snap is not None else []
        return [r for r in records if r.name not in applied]

    def _parse_for_adoption(self, md: bytes) -> tuple[RunState, Base]:
        try:
            doc = parse_document(md.decode("utf-8"))
        except (UnicodeDecodeError, UnparseableError):
            state = RunState(name=self.name, group=self.group)
            state.task = self.name.split("_", 1)[1] if "_" in self.name else self.name
            return state, {}
        state = parse_state(doc, self.name, self.group)
        return state, adopt_base(doc, render_sections(state))

    # -------------------------------------------------------- writing

    def _use_recorded_root(self, snap: Snapshot) -> None:
        """A run opened by its path alone: take the run_logs folder from the sidecar."""
        rel = snap.index.get("root")
        if not self._root_given and isinstance(rel, str):
            self.root = Path(os.path.normpath(self.path.parent / rel))

    def _snapshot_locked(self, md: bytes | None) -> Snapshot:
        snap = self._store.load(md)
        if snap is not None:
            self._use_recorded_root(snap)
            return snap
        if md is None:
            raise RunNotFoundError(f"no run log at {self.path}")
        state, base = self._parse_for_adoption(md)
        redact.scrub_state(state)  # the state holds redacted text only (_scrub_changes)
        snap = Snapshot(state=state, base=base, md_hash=md_hash(md))
        event = {
            "t": iso(now()),
            "kind": "adopted",
            "_state": to_dict(state),
            "_base": {k: [a, b] for k, (a, b) in base.items()},
            "_md": snap.md_hash,
        }
        snap.events_size = self._store.append_event(event)
        self._store.save(snap)
        return snap

    def update(
        self,
        mutate: Callable[[RunState], None],
        *,
        event: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> RunState:
        """Change the run's state and bring the Markdown up to date, keeping human edits.

        Under the run's lock: load, ``mutate``, append the event, merge the new
        rendering into the file on disk and replace it atomically, save state.json.
        Raises ``RunLogConflictError`` (the update is kept in the sidecar and
        written to ``<name>.hpcwrap-conflict.md``) and ``LockTimeoutError``.
        """
        with io_errors(self.path):
            return self._update(mutate, event, data)

    def _update(
        self,
        mutate: Callable[[RunState], None],
        event: str | None,
        data: dict[str, Any] | None,
    ) -> RunState:
        self.sidecar.mkdir(parents=True, exist_ok=True)
        with self.lock().held():
            md = _read_markdown(self.path)
            snap = self._snapshot_locked(md)
            before = to_dict(snap.state, with_status=False)
            before_status = [(s.when, s.text) for s in snap.state.status]
            # Ends another writer could not write go in first, once (deferred.py).
            records = deferred.pending(self.sidecar)
            done = deferred.apply(snap.state, records, _applied(snap)) if records else []
            entered = {id(s): s.text for s in snap.state.status}
            mutate(snap.state)
            _scrub_changes(snap.state, entered)
            state = snap.state
            state.status.sort(key=lambda s: to_utc(s.when))  # stable: equal stamps keep order
            patch = state_patch(before, to_dict(state, with_status=False))
            patch.update(status_patch(before_status, state.status))
            sections = render_sections(state)
            status_sec = next(sec for sec in sections if sec.sid == "status")
            whens = [s.when for s in state.status]
            status_times = dict(zip((k for k, _ in status_sec.items), whens, strict=True))

            conflict: str | None = None
            out: bytes | None = None
            new_base = snap.base
            found_human: set[str] = set()
            if md is None:
                # The Markdown was deleted: write it again from the state.
                out = ("\n".join(render_lines(sections)) + "\n").encode()
                new_base = full_base(sections)
            else:
                try:
                    doc = parse_document(md.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    conflict = f"it is not valid UTF-8 (byte {exc.start})"
                except UnparseableError as exc:
                    conflict = str(exc)
                else:
                    res = merge(doc, sections, snap.base, snap.human, status_times)
                    new_base = res.base
                    found_human = res.human - snap.human
                    if res.changed:
                        final = _final_newline(doc, res.lines)
                        out = join_lines(res.lines, doc.newline, final).encode()

            ev: dict[str, Any] = {"t": iso(now()), "kind": event or "update"}
            if data:
                ev.update(redact.scrub({k: v for k, v in data.items() if not k.startswith("_")}))
            if patch:
                ev["_patch"] = patch
            delta = base_delta(snap.base, new_base)
            if delta and conflict is None:
                ev["_base"] = delta
            if found_human:
                ev["_human"] = sorted(found_human)
            if done:
                snap.index[ENDS_APPLIED] = deferred.remember(_applied(snap), done)
                ev["_index"] = {ENDS_APPLIED: snap.index[ENDS_APPLIED]}
                ev["ends_applied"] = [f"{r.by}: {r.why}" for r in records if r.name in done]
            if out is not None and out != md and conflict is None:
                ev["_md"] = md_hash(out)
            nothing = (
                not patch and event is None and "_md" not in ev and not found_human and not done
            )
            if not nothing:
                snap.events_size = self._store.append_event(ev)
            if conflict is not None:
                conflict_file = self.conflict_path
                full = "\n".join(render_lines(sections)) + "\n"
                write_atomic(conflict_file, full.encode())
                self._store.save(snap)
                raise RunLogConflictError(
                    f"{self.path} could not be merged safely ({conflict}); it was left untouched "
                    f"and this update was written to {conflict_file}. Fix or rename the file; "
                    "the next update merges again.",
                    self.path,
                    conflict_file,
                )
            if out is not None and out != md:
                write_atomic(self.path, out)
                snap.md_hash = ev["_md"]
            snap.base = new_base
            snap.human |= found_human
            if experiments.wants_row(state) and not nothing:
                experiments.refresh_run(self.root, self.run_id, state, snap.index, locks=self.locks)
            if not nothing:
                self._store.save(snap)
            if records:
                # applied now, or by an earlier writer that died before removing them
                deferred.remove(self.sidecar, [r.name for r in records])
            return state

    def record(
        self,
        facts: lifecycle.Facts,
        *,
        event: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> RunState:
        """Apply one lifecycle transition under the run's lock (the way writers change state).

        ``event`` names the events.jsonl entry (default: the transition's kind);
        ``data`` is what it carries besides the state patch.
        """

        def mutate(state: RunState) -> None:
            # In place: the state was loaded for this update alone (an error leaves nothing)
            lifecycle.apply_in_place(state, facts)

        return self.update(mutate, event=event or lifecycle.event_kind(facts), data=data)

    def record_or_defer(
        self,
        facts: lifecycle.Ended,
        *,
        by: str,
        event: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> str | None:
        """Record an end, or leave it for the next writer when it cannot be written now
        (the lock is held too long, the folder or disk refuses: deferred.py).

        Returns None when it was written, else why it was left. Raises RunLogError
        when it could not even be left (nothing of the run is writable).
        """
        try:
            self.record(facts, event=event, data=data)
            return None
        except LockTimeoutError as exc:
            why = f"the run's lock was held ({exc})"
        except RunLogError as exc:
            why = f"the log could not be written ({exc})"
        self.leave_end(facts, by=by, why=why)
        return why

    def leave_end(self, facts: lifecycle.Ended, *, by: str, why: str) -> None:
        """Leave an end for the next writer, without the lock (deferred.py); RunLogError
        when even that cannot be written."""
        with io_errors(self.sidecar):
            deferred.leave(self.sidecar, facts, by=by, why=why)

    def repair(self) -> bool:
        """Bring the Markdown and state.json up to the sidecar's events and apply the ends
        left for the next writer (what ``hpcwrap poll`` and ``log reindex`` do for a log
        whose last write did not finish). True when something was written."""
        before = self.lag()
        if not before:
            return False
        self.update(lambda state: None, event="repaired", data={"why": "; ".join(before)})
        return True

    def lag(self) -> list[str]:
        """How the Markdown or state.json is behind the run's facts (empty: in step).

        Cheap enough for every run ``hpcwrap status`` lists: two stats and a listing.
        """
        out: list[str] = []
        records = self.pending_ends() if deferred.has_pending(self.sidecar) else []
        if records:
            out.append(deferred.pending_text(records))
        if self._store.behind():
            out.append(
                "the last write did not reach the Markdown and state.json (the sidecar's "
                "events.jsonl has it)"
            )
        if not self.path.exists() and self._store.exists():
            out.append("the Markdown is missing")
        return out

    def add_status(
        self,
        text: str,
        when: datetime | None = None,
        *,
        event: str = "status",
        data: dict[str, Any] | None = None,
    ) -> None:
        """Append a timestamped Status line (kept in chronological order)."""
        stamp = when if when is not None else now()
        if stamp.tzinfo is None:
            raise UsageError("add_status: 'when' must be timezone-aware")
        payload = {"text": text, **(data or {})}
        self.record(lifecycle.ProgressObserved(stamp, text), event=event, data=payload)

    def append_event(self, kind: str, data: dict[str, Any] | None = None) -> None:
        """Append one event to events.jsonl under the run's lock; the Markdown is not touched."""
        ev: dict[str, Any] = {"t": iso(now()), "kind": kind}
        if data:
            ev.update(redact.scrub({k: v for k, v in data.items() if not k.startswith("_")}))
        with io_errors(self.path):
            self.sidecar.mkdir(parents=True, exist_ok=True)
            with self.lock().held():
                self._store.append_event(ev)


def _scrub_changes(state: RunState, entered: dict[int, str]) -> None:
    """No secret reaches the Markdown, state or events: every field is redacted, and each
    Status entry once, as it enters (``entered``: the entries there before, by identity,
    redacted when they entered; 10,000 of them cost 0.3 s each update otherwise)."""
    redact.scrub_state(state, skip=STATUS_FIELD)
    for entry in state.status:
        if entered.get(id(entry)) != entry.text:
            entry.text = redact.redact_text(entry.text)


STATUS_FIELD = frozenset({"status"})


ENDS_APPLIED = "ends_applied"  # state.json's index: the deferred ends already applied


def _applied(snap: Snapshot) -> list[str]:
    names = snap.index.get(ENDS_APPLIED)
    return [str(n) for n in names] if isinstance(names, list) else []


def _final_newline(doc: Document, lines: list[str]) -> bool:
    """Keep a missing final newline (a truncated last line) while that line is still last."""
    if doc.final_newline or not doc.lines or not lines:
        return True
    return lines[-1] != doc.lines[-1]


# ---------------------------------------------------------------- create / open

_BAD_NAME = re.compile(r"[\x00-\x1f/\\]")


def _check_component(what: str, value: str) -> None:
    textcheck.require_utf8(what, value)
    textcheck.require_name_length(what, value)
    if not value or value.startswith(".") or _BAD_NAME.search(value) or value != value.strip():
        raise UsageError(f"invalid {what} {value!r}: a plain name (no '/', not starting with '.')")


def create_run(
    root: Path, state: RunState, *, when: datetime | None = None, locks: LockConfig | None = None
) -> RunLog:
    """Create a new run log ``<date>_<task>.md`` (``_2``, ``_3``... on collision) under root.

    Also its sidecar, its timeline.md entry and, for experiments, its
    experiments.md row. ``state.name`` is set here.
    """
    with io_errors(Path(root)):
        return _create_run(Path(root), state, when, locks)


def _create_run(
    root: Path, state: RunState, when: datetime | None, locks: LockConfig | None = None
) -> RunLog:
    stamp = to_utc(when) if when is not None else now()
    _check_component("task", state.task)
    if state.group:
        parts = Path(state.group).parts
        if Path(state.group).is_absolute() or not parts:
            raise UsageError(f"invalid group {state.group!r}: a folder name under run_logs/")
        for part in parts:
            _check_component("group", part)
    folder = run_folder(Path(root), state.group)
    folder.mkdir(parents=True, exist_ok=True)
    # The sidecar is never more open than the run_logs folder it lives in (a private
    # run_logs keeps every copy of scripts, configs and diffs private).
    inherit = stat.S_IMODE(folder.stat().st_mode) & 0o777
    (folder / SIDECAR_DIR).mkdir(mode=inherit, exist_ok=True)
    n = 1
    while True:
        name = run_stem(stamp.date(), state.task, n)
        n += 1
        md_path = folder / f"{name}.md"
        if name_taken(md_path):
            continue
        try:
            os.mkdir(sidecar_for(md_path), inherit)  # the name is ours once this succeeds
        except FileExistsError:
            continue
        if md_path.exists():  # written by hand in the meantime
            os.rmdir(sidecar_for(md_path))
            continue
        break
    state.name = name
    redact.scrub_state(state)
    log = RunLog(md_path, root, locks)
    sections = render_sections(state)
    text = "\n".join(render_lines(sections)) + "\n"
    data = text.encode()
    base = full_base(sections)
    snap = Snapshot(state=state, base=base, md_hash=md_hash(data))
    snap.index["root"] = os.path.relpath(log.root, log.path.parent)
    with log.lock().held():
        event = {
            "t": iso(stamp),
            "kind": "created",
            "_state": to_dict(state),
            "_base": {k: [a, b] for k, (a, b) in base.items()},
            "_index": dict(snap.index),
            "_md": snap.md_hash,
        }
        try:
            snap.events_size = log._store.append_event(event)
            write_atomic(md_path, data)
        except BaseException:
            # No run log was written (e.g. the folder is read-only): leave no sidecar
            # that says "created" and takes the name from the next run.
            shutil.rmtree(log.sidecar, ignore_errors=True)
            raise
        if experiments.wants_row(state):
            experiments.refresh_run(log.root, log.run_id, state, snap.index, locks=log.locks)
        log._store.save(snap)
    timeline.add_runs(folder, Path(root), [md_path.name], locks=locks)
    return log


def _search_root(root: Path | None) -> Path:
    if root is not None:
        return Path(root)
    from hpcwrap.config import find_run_logs

    return find_run_logs(Path.cwd())


MARKDOWN_MAX = 32 * 2**20  # a run log is kilobytes; one this big is not read whole


def _read_markdown(path: Path) -> bytes | None:
    """The run log's bytes (None when missing); refused over MARKDOWN_MAX (bounded reads:
    the wrapper must not take a job's memory for a file someone filled)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size > MARKDOWN_MAX:
        raise RunLogError(
            f"{path} is {size:,} bytes, over hpcwrap's cap of {MARKDOWN_MAX:,}: not read "
            "(a run log is normally a few kilobytes); move it aside and run "
            "`hpcwrap log reindex` to rebuild it from its sidecar"
        )
    return read_bytes(path)


def list_run_logs(root: Path) -> list[Path]:
    """Every run log under root (root and its subfolders, not sidecars), a run whose
    Markdown is missing but whose sidecar is whole included (``without_markdown``)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names = [f for f in sorted(filenames) if is_run_log_name(f)]
        names += without_markdown(Path(dirpath), names)
        found.extend(Path(dirpath) / f for f in sorted(names))
    return found


def _check_run_log_name(path: Path) -> None:
    # Opening timeline.md, a conflict file or a script as a run log would rewrite it as one.
    if not is_run_log_name(path.name):
        raise UsageError(
            f"{path} is not a run log: run logs are named <date>_<task>.md "
            "(not timeline.md, experiments.md or a .hpcwrap-conflict.md file)"
        )


def open_run(
    spec: str | Path, root: Path | None = None, *, locks: LockConfig | None = None
) -> RunLog:
    """The run log named by a path, a file name, or a unique prefix of a run name."""
    text = str(spec)
    if not text.strip():
        raise UsageError("empty run name")
    path = Path(text).expanduser()
    if path.is_file():
        _check_run_log_name(path)
        return RunLog(path, root, locks)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; name a run log (.md) in it")
    where = _search_root(root)
    if os.sep in text or "/" in text:
        candidate = where / text
        if candidate.suffix != ".md":
            candidate = candidate.with_name(candidate.name + ".md")
        if candidate.is_file():
            _check_run_log_name(candidate)
            return RunLog(candidate, where, locks)
        raise RunNotFoundError(f"no run log at {path} or {candidate}")
    if not where.is_dir():
        raise RunNotFoundError(f"no run log {text!r}: {where} does not exist")
    stem = text[:-3] if text.endswith(".md") else text
    logs = list_run_logs(where)
    exact = [p for p in logs if p.stem == stem]
    if len(exact) == 1:
        return RunLog(exact[0], where, locks)
    matches = exact or matching_runs(logs, stem)
    if len(matches) == 1:
        return RunLog(matches[0], where, locks)
    if not matches:
        raise RunNotFoundError(
            f"no run log matching {text!r} under {where}"
            + _candidates("; the newest there", newest_first(logs), where)
        )
    raise AmbiguousRunError(
        f"{text!r} matches {len(matches)} run logs under {where}"
        + _candidates("", newest_first(matches), where)
        + "; name one of them",
        matches,
    )


def matching_runs(logs: list[Path], text: str) -> list[Path]:
    """Runs whose name starts with ``text``, or whose task part does (``embed`` finds
    ``2026-11-29_embed.md`` and ``2026-11-29_embed_2.md``)."""
    from hpcwrap.runlog.adopt import name_parts

    out = []
    for p in logs:
        task = name_parts(p)[1]
        if p.stem.startswith(text) or task == text or task.startswith(text):
            out.append(p)
    return out


def newest_first(logs: list[Path]) -> list[Path]:
    """By the date in the name, then by name (``_2`` after the first of a day)."""
    return sorted(logs, key=lambda p: (p.stem[:10], len(p.stem), p.stem), reverse=True)


def _candidates(lead: str, logs: list[Path], where: Path, limit: int = 10) -> str:
    if not logs:
        return f"; {where} holds no run logs yet"
    names = [p.relative_to(where).with_suffix("").as_posix() for p in logs[:limit]]
    more = f" (and {len(logs) - limit} more)" if len(logs) > limit else ""
    return f"{lead}: " + ", ".join(names) + more


__all__ = [
    "CONFLICT_SUFFIX",
    "SIDECAR_DIR",
    "RunLog",
    "RunLogError",
    "create_run",
    "is_run_log_name",
    "list_run_logs",
    "open_run",
    "sidecar_for",
]
