"""The scheduler's account of many jobs at once, rate-limited per user (what poll asks).

One ``queue`` call (``squeue --json``) for every job, then one ``history`` call
(``sacct --duplicates``) for the jobs the controller no longer shows as active.
The answers are kept in a cache file per user, cluster and run-logs folder; within
``min_interval`` seconds of the last real call the cached answer is used instead of
asking again, so poll from cron or a shell loop never asks slurmctld/slurmdbd more
than once per interval. Jobs the cached answer does not cover are reported as not
asked, with whose poll asked last and when (a lab account is shared by several people:
keyed by the folder too, one person's poll of their runs never answers for another's).
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from hpcwrap.runlog import endings
from hpcwrap.runlog.fsio import read_bytes, write_atomic
from hpcwrap.runlog.locks import Lock
from hpcwrap.scheduler.base import JobInfo, Scheduler
from hpcwrap.scheduler.cachedir import user_cache_dir
from hpcwrap.scheduler.cli_backend import base_id

DEFAULT_MIN_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
CACHE_FORMAT = 1


def is_active(info: JobInfo) -> bool:
    """squeue's word for the job says it may still change (anything else: ask accounting)."""
    return endings.slurm_active(info.state)


@dataclass
class SlurmView:
    """What the scheduler said of the jobs asked about, grouped by base job id."""

    queue: dict[str, list[JobInfo]] = field(default_factory=dict)
    history: dict[str, list[JobInfo]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=lambda: {"squeue": 0, "sacct": 0})
    asked_at: dict[str, float] = field(default_factory=dict)  # epoch of the answer used
    asked_by: dict[str, str] = field(default_factory=dict)  # whose poll got it: user@host pid
    not_asked: set[str] = field(default_factory=set)  # ids the rate limit left unasked
    covered_queue: set[str] = field(default_factory=set)
    covered_history: set[str] = field(default_factory=set)


def default_cache_path(env: dict[str, str] | None = None, root: Path | None = None) -> Path | None:
    """``$XDG_CACHE_HOME/hpcwrap/slurm-<key>.json``: one per user, cluster config and
    run-logs folder (``root``, where the runs polled are)."""
    environ = env if env is not None else dict(os.environ)
    folder = user_cache_dir(environ)
    if folder is None:
        return None
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    key = f"{user}\0{environ.get('SLURM_CONF', '')}\0{environ.get('SLURM_CLUSTERS', '')}"
    if root is not None:
        key += f"\0{os.path.abspath(root)}"
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:16]
    return folder / f"slurm-{digest}.json"


def asker() -> str:
    """Whose poll this is, as the cache records it: ``user@host pid N``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def last_asked(cache_path: Path | None) -> dict[str, float]:
    """When this user's poll last really asked squeue and sacct (epoch seconds), from the
    cache file alone (``hpcwrap status --report`` shows it; nothing is asked)."""
    raw = read_bytes(cache_path) if cache_path is not None else None
    try:
        doc = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    out: dict[str, float] = {}
    if isinstance(doc, dict):
        for tool in ("squeue", "sacct"):
            part = doc.get(tool)
            if isinstance(part, dict) and isinstance(part.get("t"), (int, float)):
                out[tool] = float(part["t"])
    return out


def _enc(info: JobInfo) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(info).items()}


def _dec(raw: dict[str, Any]) -> JobInfo:
    values = dict(raw)
    for key in ("start", "end", "submit"):
        if isinstance(values.get(key), str):
            values[key] = datetime.fromisoformat(values[key])
    known = JobInfo.__dataclass_fields__
    return JobInfo(**{k: v for k, v in values.items() if k in known})


def _group(entries: Sequence[JobInfo]) -> dict[str, list[JobInfo]]:
    out: dict[str, list[JobInfo]] = {}
    for info in entries:
        out.setdefault(base_id(info.array_job_id or info.job_id), []).append(info)
    return out


class BatchQuery:
    """Asks ``scheduler`` about many jobs with at most one squeue and one sacct per interval."""

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        cache_path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scheduler = scheduler
        self.min_interval = min_interval
        self.timeout = timeout
        self.cache_path = cache_path
        self.clock = clock

    def ask(self, job_ids: Sequence[str]) -> SlurmView:
        ids = sorted({base_id(j) for j in job_ids if j})
        if not ids:
            return SlurmView()
        if self.cache_path is None:
            return self._ask(ids, {})
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            lock = Lock(self.cache_path.with_suffix(".lock"), timeout=2 * self.timeout + 10)
            with lock.held():
                cache = self._load()
                view = self._ask(ids, cache)
                self._save(cache)
                return view
        except OSError:
            return self._ask(ids, {})  # no usable cache folder: ask, without a cache

    # ------------------------------------------------------------ cache

    def _load(self) -> dict[str, Any]:
        assert self.cache_path is not None
        raw = read_bytes(self.cache_path)
        if raw is None:
            return {}
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {}
        if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT:
            return {}
        return doc

    def _save(self, cache: dict[str, Any]) -> None:
        assert self.cache_path is not None
        cache["format"] = CACHE_FORMAT
        write_atomic(self.cache_path, orjson.dumps(cache))

    def _fresh(self, part: dict[str, Any] | None, now: float) -> bool:
        if not part or self.min_interval <= 0:
            return False
        t = part.get("t")
        return isinstance(t, (int, float)) and 0 <= now - t < self.min_interval

    # ------------------------------------------------------------ asking

    def _cached(
        self,
        command: str,
        ids: list[str],
        cache: dict[str, Any],
        view: SlurmView,
        now: float,
        fetch: Callable[[list[str], float], list[JobInfo]],
    ) -> tuple[list[JobInfo], set[str]]:
        """One command's answer for ``ids``: the cached one while fresh (and the ids it
        covered), else a new call, cached with the time it was asked."""
        part = cache.get(command)
        if self._fresh(part, now):
            assert part is not None
            view.asked_at[command] = float(part["t"])
            if isinstance(part.get("by"), str):
                view.asked_by[command] = part["by"]
            # "jobs": the squeue part's key in caches written by earlier builds
            rows = part.get("rows") or part.get("jobs") or []
            return [_dec(e) for e in rows], set(part.get("ids") or [])
        entries = fetch(ids, self.timeout)
        view.calls[command] += 1
        by = asker()
        cache[command] = {"t": now, "ids": ids, "rows": [_enc(e) for e in entries], "by": by}
        view.asked_at[command] = now
        view.asked_by[command] = by
        return entries, set(ids)

    def _ask(self, ids: list[str], cache: dict[str, Any]) -> SlurmView:
        view = SlurmView()
        now = self.clock()
        entries, covered = self._cached("squeue", ids, cache, view, now, self.scheduler.queue)
        view.queue = {k: v for k, v in _group(entries).items() if k in ids}
        view.covered_queue = covered & set(ids)
        view.not_asked = set(ids) - covered

        ended = [
            j for j in ids if j in covered and not any(is_active(e) for e in view.queue.get(j, []))
        ]
        if not ended:
            return view
        rows, hcovered = self._cached("sacct", ended, cache, view, now, self.scheduler.history)
        view.not_asked |= set(ended) - hcovered
        view.history = {k: v for k, v in _group(rows).items() if k in ended}
        view.covered_history = hcovered & set(ended)
        return view


__all__ = [
    "DEFAULT_MIN_INTERVAL",
    "DEFAULT_TIMEOUT",
    "BatchQuery",
    "SlurmView",
    "asker",
    "default_cache_path",
    "is_active",
    "last_asked",
]
