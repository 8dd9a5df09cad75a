"""``hpcwrap status``: what is done, running and left, from local files only.

One row per run log, read from its sidecar's ``state.json`` (plus the tail of
``events.jsonl`` and ``telemetry.jsonl`` for runs not yet over: the last step,
loss and checkpoint the wrapper saw, and the last GPU sample). Nothing here asks
the scheduler: ``hpcwrap poll`` does that and writes what it learns into the
logs, which this then reads. Fast enough for 10,000 logs: state.json is read
with orjson and only the fields shown are converted.

``report`` is the three-part summary the spec asks for during long jobs (done /
running / remaining, with the last scheduler and log evidence and its age), in
Markdown.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from hpcwrap.runlog import endings, layout, peek
from hpcwrap.runlog.endings import JobState
from hpcwrap.runlog.fsio import tail_records
from hpcwrap.runlog.layout import SIDECAR_DIR, is_run_log_name
from hpcwrap.runlog.peek import without_markdown

TAIL_BYTES = 32768  # how much of events.jsonl / telemetry.jsonl a running run's row reads
JSON_SCHEMA_VERSION = 1
CACHE_FORMAT = 1


@dataclass
class RunRow:
    """One run as ``hpcwrap status`` shows it (``--json`` gives these fields)."""

    path: str
    name: str
    group: str | None = None
    mode: str | None = None
    state: str | None = None  # the newest job block's state (hpcwrap's words)
    # The run as a whole: ``state``, or ``stopped`` for a resume chain stopped before the
    # training's end (its last job may have COMPLETED); ``stopped_why`` says why.
    run_state: str | None = None
    stopped_why: str | None = None
    state_source: str | None = None
    slurm_state: str | None = None
    slurm_exit: str | None = None
    pending_reason: str | None = None
    job_ids: list[str] = field(default_factory=list)
    submitted: str | None = None
    start: str | None = None
    end: str | None = None
    limit_at: str | None = None
    elapsed_s: float | None = None
    left_s: float | None = None
    step: int | None = None
    loss: float | str | None = None
    progress_at: str | None = None  # when that step/loss was seen
    gpu_util: float | None = None
    checkpoint: str | None = None
    wandb: str | None = None  # "synced", "offline", or None
    wandb_url: str | None = None
    last_status: str | None = None
    last_status_at: str | None = None
    final: bool = False
    problem: str | None = None  # the sidecar could not be read
    # A job not over in its log: when anything was last heard from it (a Status entry,
    # progress, a telemetry sample), to tell a quiet job from one whose end is not written.
    last_heard: str | None = None
    # How the Markdown (and state.json) are behind what the sidecar holds: an end left for
    # the next writer, an update that did not finish. ``hpcwrap poll`` and
    # ``hpcwrap log reindex`` write it; the row shows the sidecar's state meanwhile.
    lag: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- finding logs


def find_logs(targets: Sequence[Path]) -> list[Path]:
    """Run logs named by ``targets``: run-log files, or folders searched recursively."""
    return [Path(p) for p in _find(targets)]


def _find(targets: Sequence[Path]) -> list[str]:
    found: list[str] = []
    for target in targets:
        if target.is_dir():
            found.extend(_walk(str(target)))
        elif target.is_file():
            found.append(str(target))
    return found


def _walk(root: str) -> Iterable[str]:
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        names = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if name.endswith(".md"):
                if is_run_log_name(name):
                    names.append(name)
                    yield entry.path
            elif entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.path)
        # runs whose Markdown is gone but whose sidecar is whole are still runs
        for name in without_markdown(Path(folder), names):
            yield os.path.join(folder, name)
        stack.extend(reversed(subdirs))


# ---------------------------------------------------------------- one row


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def state_dict(path: Path) -> dict[str, Any] | None:
    """The ``state`` object of the run's state.json (None: no usable sidecar)."""
    doc = peek.state_doc(path.parent / SIDECAR_DIR / path.stem)
    if doc is not None and isinstance(doc.get("state"), dict):
        state: dict[str, Any] = doc["state"]
        return state
    return None


def _fallback_state(path: Path) -> dict[str, Any] | None:
    """A log without a readable state.json: parse it the slow way (nothing is written)."""
    from hpcwrap.runlog.handle import RunLog
    from hpcwrap.runlog.model import to_dict

    try:
        return to_dict(RunLog(path).read())
    except Exception:  # a hand-written file hpcwrap cannot read: shown as unreadable
        return None


def read_row(path: Path, root: Path | None = None, now: datetime | None = None) -> RunRow:
    sidecar = path.parent / SIDECAR_DIR / path.stem
    doc = peek.state_doc(sidecar)
    state = doc["state"] if doc is not None and isinstance(doc.get("state"), dict) else None
    if state is None:
        state = _fallback_state(path)
    group = None
    if root is not None:
        try:
            rel = path.parent.relative_to(root).as_posix()
            group = None if rel in ("", ".") else rel
        except ValueError:
            group = None
    row = RunRow(path=str(path), name=path.stem, group=group)
    if state is None:
        row.problem = "no readable state (state.json missing or damaged)"
        return row
    in_step = doc is not None and peek.in_step(sidecar, doc) and path.exists()
    if not _looks_final(state) and not in_step:
        state = _with_lag(path, state, row)
    row.group = state.get("group") or group
    row.mode = state.get("run_type") or None
    jobs = [j for j in state.get("jobs") or [] if isinstance(j, dict)]
    row.job_ids = [str(j["execution_id"]) for j in jobs if j.get("execution_id")]
    if jobs:
        job = jobs[-1]
        row.state = job.get("state")
        row.state_source = job.get("state_source")
        row.slurm_state = job.get("slurm_state")
        row.slurm_exit = job.get("slurm_exit")
        row.pending_reason = job.get("pending_reason")
        row.submitted = job.get("submitted")
        row.start = job.get("start")
        row.end = job.get("end")
        row.limit_at = job.get("limit_at")
    # A requeued job runs again under the same id (its next block comes with the restart).
    row.final = endings.is_final(row.state) and row.state != JobState.REQUEUED
    raw_chain = state.get("chain")
    chain: dict[str, Any] = raw_chain if isinstance(raw_chain, dict) else {}
    stopped = chain.get("stopped") if isinstance(chain.get("stopped"), str) else None
    row.run_state = endings.run_state(row.state, stopped, bool(chain.get("done")))
    if row.run_state == endings.STOPPED:
        row.stopped_why = stopped
    results = state.get("results") or {}
    row.step = results.get("final_step")
    row.loss = results.get("end_train_loss")
    row.checkpoint = results.get("checkpoint")
    if row.step is not None or row.loss is not None:
        row.progress_at = row.end
    telemetry = state.get("telemetry")
    if isinstance(telemetry, dict):
        row.gpu_util = telemetry.get("gpu_util_mean")
    if state.get("wandb_synced"):
        row.wandb, row.wandb_url = "synced", state.get("wandb_synced")
    elif state.get("wandb_local"):
        row.wandb = "offline"
    status = state.get("status") or []
    if status and isinstance(status[-1], list) and len(status[-1]) == 2:
        row.last_status_at, row.last_status = status[-1][0], status[-1][1]
    if not row.final and not endings.is_final(row.state):
        _live_evidence(path, row)
        row.last_heard = _last_heard(path, row)
    _times(row, now or datetime.now(timezone.utc))
    return row


def _looks_final(state: dict[str, Any]) -> bool:
    jobs = state.get("jobs")
    last = jobs[-1] if isinstance(jobs, list) and jobs else None
    return isinstance(last, dict) and endings.is_final(last.get("state"))


def _with_lag(path: Path, state: dict[str, Any], row: RunRow) -> dict[str, Any]:
    """A run not over in state.json: is an end waiting, or did the last write not finish?
    Then the row shows the sidecar's whole state (what the next writer will write)."""
    from hpcwrap.runlog.handle import RunLog
    from hpcwrap.runlog.model import to_dict

    try:
        log = RunLog(path)
        row.lag = log.lag()
        return to_dict(log.read()) if row.lag else state
    except Exception:  # a reader: the row stays as state.json has it
        return state


def _last_heard(path: Path, row: RunRow) -> str | None:
    """The newest sign of life from the job: a Status entry, progress, a telemetry sample."""
    seen = [t for t in (row.last_status_at, row.progress_at, row.start) if t]
    try:
        mtime = os.stat(path.parent / SIDECAR_DIR / path.stem / layout.TELEMETRY_FILE).st_mtime
        seen.append(datetime.fromtimestamp(mtime, timezone.utc).isoformat())
    except OSError:
        pass
    parsed = [p for p in (_parse_time(t) for t in seen) if p is not None]
    return max(parsed).isoformat() if parsed else None


def _live_evidence(path: Path, row: RunRow) -> None:
    """The last progress, checkpoint and GPU sample a running run's sidecar holds."""
    sidecar = path.parent / SIDECAR_DIR / path.stem
    want_progress, want_ckpt = True, row.checkpoint is None
    for ev in reversed(tail_records(sidecar / layout.EVENTS_FILE, TAIL_BYTES)):
        if not (want_progress or want_ckpt):
            break
        if want_progress and ("step" in ev or "train_loss" in ev):
            row.step = ev.get("step", row.step)
            row.loss = ev.get("train_loss", row.loss)
            row.progress_at = ev.get("t")
            want_progress = False
        if want_ckpt and ev.get("kind") == "checkpoint" and ev.get("path"):
            row.checkpoint = str(ev["path"])
            want_ckpt = False
    samples = tail_records(sidecar / layout.TELEMETRY_FILE, 8192)
    if samples:
        row.gpu_util = _gpu_util(samples[-1])


def _gpu_util(sample: Any) -> float | None:
    """The mean GPU utilisation of one telemetry sample (the sampler's field names vary)."""
    if not isinstance(sample, dict):
        return None
    for key in ("gpu_util", "gpu_util_mean", "gpu_util_pct"):
        value = sample.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    gpus = sample.get("gpus")
    if isinstance(gpus, list):
        utils = [
            float(g[k])
            for g in gpus
            if isinstance(g, dict)
            for k in ("util", "gpu_util", "utilization")
            if isinstance(g.get(k), (int, float))
        ]
        if utils:
            return sum(utils) / len(utils)
    return None


def _times(row: RunRow, now: datetime) -> None:
    start = _parse_time(row.start)
    end = _parse_time(row.end)
    if start is not None:
        row.elapsed_s = max(0.0, ((end or now) - start).total_seconds())
    limit = _parse_time(row.limit_at)
    if limit is not None and not row.final:
        row.left_s = max(0.0, (limit - now).total_seconds())


def sort_key(row: RunRow) -> str:
    return row.end or row.start or row.submitted or row.name


def _state_json(md_path: str) -> str:
    folder, name = os.path.split(md_path)
    return os.path.join(folder, SIDECAR_DIR, name[:-3], layout.STATE_FILE)


def default_cache_path(root: Path) -> Path | None:
    """Where the rows of finished runs under ``root`` are kept between calls (per user)."""
    base = os.environ.get("XDG_CACHE_HOME") or (
        os.path.join(os.environ["HOME"], ".cache") if os.environ.get("HOME") else ""
    )
    if not base:
        return None
    key = hashlib.sha1(os.path.abspath(root).encode(), usedforsecurity=False).hexdigest()[:16]
    return Path(base) / "hpcwrap" / f"status-{key}.json"


def _load_cache(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            doc = orjson.loads(fh.read())
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT:
        return {}
    rows = doc.get("rows")
    return rows if isinstance(rows, dict) else {}


def _save_cache(path: Path | None, rows: dict[str, Any]) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(orjson.dumps({"format": CACHE_FORMAT, "rows": rows}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: no cache, same answer


def collect(
    targets: Sequence[Path],
    root: Path | None = None,
    *,
    show_all: bool = False,
    last_finished: int = 10,
    now: datetime | None = None,
    cache_path: Path | None = None,
) -> list[RunRow]:
    """Rows of every unfinished run and the last ``last_finished`` finished ones (or all).

    ``cache_path``: rows of FINISHED runs are kept there, keyed by their state.json's
    mtime, size and inode, so a second look at 10,000 logs reads only what changed (a
    finished run's row depends on its state.json alone).
    """
    when = now or datetime.now(timezone.utc)
    cache = _load_cache(cache_path)
    fresh: dict[str, Any] = {}
    rows: list[RunRow] = []
    for path in _find(targets):
        try:
            st = os.stat(_state_json(path))
            key: list[int] | None = [st.st_mtime_ns, st.st_size, st.st_ino]
        except OSError:
            key = None
        hit = cache.get(path) if key is not None else None
        if hit is not None and hit[0] == key:
            row = RunRow(**hit[1])
        else:
            row = read_row(Path(path), root, when)
        if key is not None and row.final:
            fresh[path] = [key, row]
        rows.append(row)
    if cache_path is not None and (
        fresh.keys() != cache.keys() or any(cache[k][0] != v[0] for k, v in fresh.items())
    ):
        _save_cache(cache_path, fresh)
    rows.sort(key=sort_key)
    if show_all:
        return rows
    finished = [r for r in rows if r.final]
    keep = {id(r) for r in finished[-last_finished:]} if last_finished > 0 else set()
    return [r for r in rows if not r.final or id(r) in keep]


# ---------------------------------------------------------------- text


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def _ago(stamp: str | None, now: datetime) -> str:
    when = _parse_time(stamp)
    return "-" if when is None else age((now - when).total_seconds()) + " ago"


def _loss(value: float | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# A running job silent longer than this shows when it was last heard from.
QUIET_AFTER_S = 600.0


def state_text(row: RunRow, now: datetime | None = None) -> str:
    text = row.state or "?"
    if row.run_state == endings.STOPPED:
        text = "STOPPED"
    if row.state == JobState.PENDING and row.pending_reason:
        text += f" ({row.pending_reason})"
    if any(lag.startswith("end pending") for lag in row.lag):
        text += " (end pending)"
    elif row.lag:
        text += " (log behind)"
    heard = _parse_time(row.last_heard)
    if row.state == JobState.RUNNING and heard is not None:
        quiet = ((now or datetime.now(timezone.utc)) - heard).total_seconds()
        if quiet > QUIET_AFTER_S:
            text += f" (last heard {heard.strftime('%H:%M')} UTC)"
    return text


COLUMNS = (
    "RUN",
    "GROUP",
    "MODE",
    "STATE",
    "JOB",
    "ELAPSED",
    "LEFT",
    "STEP",
    "LOSS",
    "SEEN",
    "GPU",
    "CHECKPOINT",
    "W&B",
)

_COLOURS = {"ok": "32", "active": "36", "waiting": "33", "bad": "31", "stopped": "35"}


def table_cells(row: RunRow, now: datetime) -> list[str]:
    ckpt = row.checkpoint or "-"
    if len(ckpt) > 40:
        ckpt = "…" + ckpt[-39:]
    gpu = "-" if row.gpu_util is None else f"{row.gpu_util:.0f}%"
    return [
        row.name,
        row.group or "-",
        row.mode or "-",
        state_text(row, now) if not row.problem else "unreadable",
        ",".join(row.job_ids[-2:]) or "-",
        age(row.elapsed_s),
        age(row.left_s),
        "-" if row.step is None else str(row.step),
        _loss(row.loss),
        _ago(row.progress_at, now) if row.progress_at else "-",
        gpu,
        ckpt,
        row.wandb or "-",
    ]


def _tone(run_state: str | None) -> str | None:
    if run_state == endings.STOPPED:
        return "stopped"
    found = endings.parse(run_state)
    return found.tone if found is not None else None


def render_table(rows: Sequence[RunRow], *, colour: bool, now: datetime | None = None) -> str:
    when = now or datetime.now(timezone.utc)
    cells = [list(COLUMNS)] + [table_cells(r, when) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = []
    for n, (row_cells, row) in enumerate(zip(cells, [None, *rows], strict=True)):
        parts = [c.ljust(w) for c, w in zip(row_cells, widths, strict=True)]
        tone = _tone(row.run_state or row.state) if row is not None else None
        if colour and tone is not None:
            parts[3] = f"\x1b[{_COLOURS[tone]}m{parts[3]}\x1b[0m"
        if colour and n == 0:
            parts = [f"\x1b[1m{p}\x1b[0m" for p in parts]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def render_report(
    rows: Sequence[RunRow],
    now: datetime | None = None,
    asked: dict[str, float] | None = None,
) -> str:
    """The spec's status update: what is done, running and remaining, with evidence.

    ``asked``: when Slurm last answered poll (``squeue``/``sacct`` -> epoch seconds).
    """
    when = now or datetime.now(timezone.utc)
    done = [r for r in rows if r.final]
    running = [r for r in rows if r.state == JobState.RUNNING]
    left = [r for r in rows if not r.final and r.state != JobState.RUNNING]
    out = [f"## Status ({when.strftime('%Y-%m-%d %H:%M UTC')})", ""]
    if asked:
        said = ", ".join(
            f"{tool} {age(when.timestamp() - t)} ago" for tool, t in sorted(asked.items())
        )
        out += [f"Scheduler evidence: hpcwrap poll last asked Slurm: {said}.", ""]
    else:
        out += ["Scheduler evidence: none recorded here (run `hpcwrap poll`).", ""]

    def evidence(r: RunRow) -> str:
        bits = [f"chain: stopped ({r.stopped_why})"] if r.stopped_why else []
        if r.slurm_state:
            slurm = " ".join(x for x in (r.slurm_state, r.slurm_exit) if x)
            bits.append(f"Slurm: {slurm}")
        if r.step is not None or r.loss is not None:
            bits.append(
                f"step {r.step if r.step is not None else '?'}, loss {_loss(r.loss)} "
                f"({_ago(r.progress_at, when)})"
            )
        if r.last_status:
            text = r.last_status if len(r.last_status) <= 100 else r.last_status[:99] + "…"
            bits.append(f"last status {_ago(r.last_status_at, when)}: {text}")
        if r.last_heard and not r.final:
            heard = _parse_time(r.last_heard)
            stamp = heard.strftime("%H:%M UTC") if heard else r.last_heard
            bits.append(f"last heard from the job at {stamp}")
        bits += r.lag
        return "; ".join(bits) or "no evidence yet"

    def job(r: RunRow) -> str:
        return f"job {r.job_ids[-1]}" if r.job_ids else "no job"

    out.append(f"**Done** ({len(done)})")
    out += [f"- `{r.name}` {job(r)}: {state_text(r, when)} — {evidence(r)}" for r in done] or [
        "- none"
    ]
    out += ["", f"**Running** ({len(running)})"]
    out += [
        f"- `{r.name}` {job(r)}: running {age(r.elapsed_s)}, {age(r.left_s)} left — {evidence(r)}"
        for r in running
    ] or ["- none"]
    out += ["", f"**Remaining** ({len(left)})"]
    out += [f"- `{r.name}` {job(r)}: {state_text(r, when)} — {evidence(r)}" for r in left] or [
        "- none"
    ]
    return "\n".join(out) + "\n"


def to_json(rows: Sequence[RunRow], now: datetime | None = None) -> bytes:
    when = now or datetime.now(timezone.utc)
    doc = {"schema": JSON_SCHEMA_VERSION, "generated": when.isoformat(), "runs": list(rows)}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"  # dataclasses natively


__all__ = [
    "COLUMNS",
    "JSON_SCHEMA_VERSION",
    "RunRow",
    "collect",
    "find_logs",
    "read_row",
    "render_report",
    "render_table",
    "state_dict",
    "to_json",
]
