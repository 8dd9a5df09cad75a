"""``hpcwrap poll``: bring stale run logs up to date from the scheduler.

For every run whose newest job is not over in its log, one batched question
to Slurm (``scheduler.batch``: one ``squeue --json`` for all of them, one
``sacct --duplicates`` for those the controller no longer shows as active,
rate-limited per user), then one ``lifecycle.Reconciled`` per job whose account
changed: a pending job gets its reason, a job that left the queue without an
end record gets sacct's final state and exit (NODE_FAIL, PREEMPTED, BOOT_FAIL,
DEADLINE included), and the evidence rules of ``runlog/lifecycle.py`` decide
what is written. A run whose account did not change is not written at all, so
a second poll adds nothing.

The scheduler is asked before any log is touched: when Slurm does not answer
(``SchedulerError``), no log changes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from hpcwrap.errors import HpcwrapError, LockTimeoutError, RunLogError, TransitionError
from hpcwrap.reports import status as overview
from hpcwrap.runlog import lifecycle
from hpcwrap.runlog.dates import iso
from hpcwrap.runlog.endings import JobState, slurm_over, slurm_word, word_of
from hpcwrap.runlog.handle import RunLog
from hpcwrap.runlog.locks import LockConfig
from hpcwrap.runlog.model import JobBlock, RunState, to_dict
from hpcwrap.scheduler.base import JobInfo
from hpcwrap.scheduler.batch import BatchQuery, SlurmView, is_active
from hpcwrap.scheduler.cli_backend import base_id


@dataclass
class Change:
    """What poll did (or saw) for one job of one run."""

    run: str  # the run log's path
    execution_id: str
    before: str | None
    after: str | None
    slurm: str | None = None  # the scheduler's word, as printed ("CANCELLED by 1001 0:0")
    written: bool = False
    note: str | None = None  # why nothing was written (not found, accounting lags...)
    requeues: int = 0  # earlier attempts sacct --duplicates shows as REQUEUED


@dataclass
class PollResult:
    runs: int = 0  # unfinished runs looked at
    changes: list[Change] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=lambda: {"squeue": 0, "sacct": 0})
    asked_at: dict[str, float] = field(default_factory=dict)
    asked_by: dict[str, str] = field(default_factory=dict)  # whose poll got each answer
    not_asked: list[str] = field(default_factory=list)  # run paths the rate limit left out
    errors: list[tuple[str, HpcwrapError]] = field(default_factory=list)  # logs not written

    @property
    def written(self) -> list[Change]:
        return [c for c in self.changes if c.written]

    def to_json(self) -> dict[str, object]:
        return {
            "schema": 1,
            "runs": self.runs,
            "written": len(self.written),
            "slurm_calls": dict(self.calls),
            "asked_at": {
                k: datetime.fromtimestamp(v, timezone.utc).isoformat()
                for k, v in self.asked_at.items()
            },
            "asked_by": dict(self.asked_by),
            "not_asked": self.not_asked,
            "changes": [c.__dict__ for c in self.changes],
            "errors": [{"run": run, "error": str(exc)} for run, exc in self.errors],
        }


_SLURM_ID = re.compile(r"^\d+(?:_(?:\d+|\[[^\]]*\]))?(?:;\S+)?$")


def is_slurm_id(execution_id: str) -> bool:
    """``12``, ``12_3``, ``12_[0-3]``, ``12;cluster``; not ``<host>:<pid>`` (local) nor
    what ``log new --execution-id`` recorded for work outside Slurm (``vm-1/zone``)."""
    return bool(_SLURM_ID.match(execution_id))


def open_blocks(state: dict[str, object] | RunState) -> list[str]:
    """Execution ids of a run's job blocks not yet over in its log (Slurm jobs only)."""
    if isinstance(state, RunState):
        jobs = [{"execution_id": j.execution_id, "state": j.state} for j in state.jobs]
    else:
        raw = state.get("jobs")
        jobs = [j for j in raw if isinstance(j, dict)] if isinstance(raw, list) else []
    out = []
    for job in jobs:
        exec_id = job.get("execution_id")
        if not exec_id or not is_slurm_id(str(exec_id)):
            continue
        if not lifecycle.is_final(job.get("state")):
            out.append(str(exec_id))
    return out


def unfinished(paths: Sequence[Path]) -> list[tuple[Path, list[str]]]:
    """The runs (and their open job ids) among ``paths``, from state.json alone."""
    found = []
    for path in paths:
        state = overview.state_dict(path)
        if state is None:
            state = overview._fallback_state(path)
        if state is None:
            continue
        ids = open_blocks(state)
        if ids:
            found.append((path, ids))
    return found


def waiting_successors(paths: Sequence[Path]) -> dict[Path, str]:
    """The chains' successors the logs say wait (not yet a job block of their own): Slurm
    may cancel one before it starts (a dependency that can never be met), and nothing
    inside a job sees that."""
    found: dict[Path, str] = {}
    for path in paths:
        state = overview.state_dict(path)
        chain = state.get("chain") if state is not None else None
        if not isinstance(chain, dict) or chain.get("stopped") or not chain.get("pending"):
            continue
        pending = str(chain["pending"])
        jobs = state.get("jobs") if state is not None else None
        blocks = [j for j in jobs if isinstance(j, dict)] if isinstance(jobs, list) else []
        if is_slurm_id(pending) and all(str(j.get("execution_id")) != pending for j in blocks):
            found[path] = pending
    return found


# ---------------------------------------------------------------- what Slurm says


def _latest_per_task(rows: Sequence[JobInfo]) -> dict[str, JobInfo]:
    """The newest row of each job/task id (sacct --duplicates lists older attempts first)."""
    out: dict[str, JobInfo] = {}
    for row in rows:
        out[row.job_id] = row
    return out


def _array_account(
    queue: Sequence[JobInfo], history: Sequence[JobInfo]
) -> tuple[JobInfo | None, str | None]:
    """One account for a whole array: active while any task is; at the end the first
    task that did not complete gives the state (all COMPLETED: COMPLETED)."""
    active = [e for e in queue if is_active(e)]
    if active:
        running = [e for e in active if slurm_word(e.state) != JobState.PENDING]
        pick = running[0] if running else active[0]
        return pick, None
    rows = list(_latest_per_task(history).values())
    if not rows:
        return None, "accounting has no record of it yet"
    if not all(slurm_over(r.state) for r in rows):
        return None, "some tasks are not over in accounting yet"
    bad = [r for r in rows if slurm_word(r.state) != JobState.COMPLETED]
    pick = bad[0] if bad else rows[-1]
    starts = [r.start for r in rows if r.start is not None]
    ends = [r.end for r in rows if r.end is not None]
    return (
        JobInfo(
            job_id=pick.job_id,
            state=pick.state,
            exit=pick.exit,
            start=min(starts) if starts else None,
            end=max(ends) if ends else None,
            node=pick.node,
        ),
        None,
    )


def account(execution_id: str, view: SlurmView) -> tuple[JobInfo | None, str | None, int]:
    """The scheduler's newest account of one job: (info, why none, earlier requeued attempts)."""
    bid = base_id(execution_id)
    queue = view.queue.get(bid, [])
    history = view.history.get(bid, [])
    if "_" in execution_id:
        info, why = _array_account(queue, history)
        return info, why, 0
    own_q = [e for e in queue if e.job_id == bid]
    own_h = [r for r in history if r.job_id == bid]
    requeues = sum(1 for r in own_h[:-1] if slurm_word(r.state) == JobState.REQUEUED)
    active = [e for e in own_q if is_active(e)]
    if active:
        return active[-1], None, requeues
    if own_h:
        return own_h[-1], None, requeues
    if own_q:
        return None, f"{own_q[-1].state} in squeue; accounting has no record of it yet", 0
    if bid in view.covered_history or bid in view.covered_queue:
        return None, "neither squeue nor sacct knows this job", 0
    return None, "not asked (rate limit)", 0


def _evidence(info: JobInfo, source: str, at: float | None) -> str:
    stamp = datetime.fromtimestamp(at, timezone.utc).strftime("%H:%M:%S UTC") if at else "now"
    return f"{source} at {stamp}"


def reconcile_facts(
    job: JobBlock, info: JobInfo, view: SlurmView, when: datetime
) -> lifecycle.Reconciled:
    word = slurm_word(info.state)
    from_queue = info.exit is None  # sacct rows carry an exit code; squeue entries do not
    source = "squeue" if from_queue else "sacct"
    at = view.asked_at.get(source)
    text = None
    reason = info.reason if word == JobState.PENDING else None
    try:
        ours: str = lifecycle.from_slurm(info.state)
    except TransitionError:
        ours = word
    if ours == JobState.PENDING:
        text = f"pending ({reason or 'no reason given'}); {_evidence(info, source, at)}"
    elif ours == JobState.RUNNING:
        where = f" on {info.node}" if info.node else ""
        since = f" since {iso(info.start)}" if info.start else ""
        text = f"running{where}{since} ({info.state}); {_evidence(info, source, at)}"
    final = slurm_over(info.state)
    # squeue gives a pending job its expected start (a --begin time, the backfill's
    # guess): not a start. A job that ended without ever running has none either: no node
    # was ever assigned (squeue then shows the cancel time as its start; parse_sacct
    # already leaves it out).
    started = ours == JobState.RUNNING or (final and bool(info.node))
    return lifecycle.Reconciled(
        when=when,
        execution_id=job.execution_id or info.job_id,
        slurm_state=info.state,
        slurm_exit=info.exit if final else None,
        start=info.start if started else None,
        end=info.end if final else None,
        nodes=info.node,
        reason=reason,
        text=text,
    )


# ---------------------------------------------------------------- one poll


def _same(a: RunState, b: RunState) -> bool:
    return to_dict(a) == to_dict(b)


def poll_runs(
    paths: Sequence[Path],
    query: BatchQuery,
    *,
    root: Path | None = None,
    locks: LockConfig | None = None,
    every: float | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> PollResult:
    """One poll of the run logs at ``paths`` (only the unfinished ones are looked at)."""
    todo = unfinished(paths)
    successors = waiting_successors(paths)
    named = {p for p, _ in todo}
    todo += [(p, []) for p in successors if p not in named]
    result = PollResult(runs=len(todo))
    ids = sorted({base_id(i) for _, open_ids in todo for i in open_ids} | set(successors.values()))
    view = query.ask(ids)  # may raise SchedulerError: then nothing below runs
    result.calls = dict(view.calls)
    result.asked_at = dict(view.asked_at)
    result.asked_by = dict(view.asked_by)
    for path, open_ids in todo:
        try:
            _poll_one(path, open_ids, view, result, root, locks, every, now)
            if path in successors:
                _successor_gone(RunLog(path, root, locks), successors[path], view, now(), result)
        except (RunLogError, LockTimeoutError) as exc:
            # One log that cannot be written (a conflict, a lock held too long) does
            # not stop the others; the CLI reports it and exits non-zero.
            result.errors.append((str(path), exc))
    return result


def _poll_one(
    path: Path,
    open_ids: list[str],
    view: SlurmView,
    result: PollResult,
    root: Path | None,
    locks: LockConfig | None,
    every: float | None,
    now: Callable[[], datetime],
) -> None:
    log = RunLog(path, root, locks)
    blocked: HpcwrapError | None = None
    lag = log.lag()
    if lag:
        # The last write did not finish, or an end waits for the lock: the Markdown and
        # state.json get what the sidecar already holds.
        try:
            log.repair()
        except (RunLogError, LockTimeoutError) as exc:
            blocked = exc  # still behind; Slurm's account is still read below
        else:
            note = "repaired: " + "; ".join(lag)
            result.changes.append(Change(str(path), "", None, None, written=True, note=note))
    state = log.read()
    if any(base_id(i) in view.not_asked for i in open_ids):
        result.not_asked.append(str(path))
    for exec_id in open_ids:
        job = next((j for j in reversed(state.jobs) if j.execution_id == exec_id), None)
        if job is None:
            continue
        info, why, requeues = account(exec_id, view)
        change = Change(str(path), exec_id, job.state, job.state, requeues=requeues)
        result.changes.append(change)
        if info is None:
            change.note = why
            continue
        change.slurm = " ".join(x for x in (info.state, info.exit) if x)
        facts = reconcile_facts(job, info, view, now())
        try:
            new = lifecycle.apply(state, facts)
        except TransitionError as exc:
            change.note = str(exc)
            continue
        if _same(new, state):
            continue
        if blocked is not None:
            _leave(log, job, facts, change, blocked)  # no second wait for the same lock
            continue
        try:
            state = log.record(facts, data={"source": "poll", "slurm": change.slurm})
        except (RunLogError, LockTimeoutError) as exc:
            _leave(log, job, facts, change, exc)
            raise
        after = next((j for j in reversed(state.jobs) if j.execution_id == exec_id), None)
        change.after = after.state if after is not None else None
        change.written = True
    if blocked is not None:
        raise blocked
    if every:
        _periodic(log, state, every, now(), result)


def _successor_gone(
    log: RunLog, successor: str, view: SlurmView, when: datetime, result: PollResult
) -> None:
    """A chain's successor that ended without ever starting stops the chain, in words."""
    info, _, _ = account(successor, view)
    if info is None or not slurm_over(info.state) or info.node:
        return  # still waiting, unknown, or it ran (its own block says how it ended)
    state = log.read()
    chain = state.chain
    if chain is None or chain.stopped or chain.pending != successor:
        return  # settled meanwhile
    why = (
        f"successor job {successor} ended before it started (Slurm: {info.state}; with "
        "--kill-on-invalid-dep Slurm cancels a successor whose dependency can never be met)"
    )
    log.record(
        lifecycle.Chained(when, pending=None, stopped=why, text=f"resume chain stopped: {why}"),
        event="chain",
        data={"source": "poll", "successor": successor, "slurm": info.state},
    )
    result.changes.append(
        Change(str(log.path), successor, "PENDING", slurm_word(info.state), written=True,
               note="resume chain stopped")
    )  # fmt: skip


def _leave(
    log: RunLog, job: JobBlock, facts: lifecycle.Reconciled, change: Change, why: HpcwrapError
) -> None:
    """Slurm's end of a job the log cannot take now, left for the next writer: readers see
    it at once (deferred.py). Only an end, and only where the log has none yet."""
    if facts.end is None or lifecycle.is_final(job.state):
        return
    log.leave_end(_as_ended(job, facts), by="poll", why=str(why))
    change.after, change.note = slurm_word(facts.slurm_state), f"left for the next writer: {why}"


def _as_ended(job: JobBlock, facts: lifecycle.Reconciled) -> lifecycle.Ended:
    """Slurm's final account of a job as the end a writer leaves (same words and strength
    as the reconciliation it stands for)."""
    word = lifecycle.from_slurm(facts.slurm_state)
    code = (facts.slurm_exit or "").split(":")[0]
    return lifecycle.Ended(
        when=facts.end or facts.when,
        state=word,
        source=lifecycle.Source.SCHEDULER,
        execution_id=facts.execution_id,
        exit_code=int(code) if code.isdigit() else None,
        start=job.start,  # the block's own: the end goes to this attempt's block
        nodes=facts.nodes,
        text=(
            f"{word_of(word)} (from the scheduler: {facts.slurm_state}"
            f"{f', exit {facts.slurm_exit}' if facts.slurm_exit else ''}); "
            "the wrapper did not record the end"
        ),
        slurm_state=slurm_word(facts.slurm_state),
        slurm_exit=facts.slurm_exit,
    )


def _periodic(log: RunLog, state: RunState, every: float, when: datetime, res: PollResult) -> None:
    """``--every``: a Status entry for a running run whose last one is older than ``every``."""
    if not state.jobs or state.jobs[-1].state != JobState.RUNNING:
        return
    last = max((s.when for s in state.status), default=None)
    if last is not None and (when - last).total_seconds() < every:
        return
    row = overview.read_row(log.path, log.root, when)
    bits = [f"running {overview.age(row.elapsed_s)}"]
    if row.left_s is not None:
        bits.append(f"{overview.age(row.left_s)} left")
    if row.step is not None or row.loss is not None:
        seen = overview._ago(row.progress_at, when)
        bits.append(f"last progress step {row.step}, loss {overview._loss(row.loss)} ({seen})")
    else:
        bits.append("no progress seen in the output yet")
    if row.gpu_util is not None:
        bits.append(f"GPU {row.gpu_util:.0f}%")
    text = "; ".join(bits) + " (poll)"
    log.record(lifecycle.ProgressObserved(when, text), event="status", data={"source": "poll"})
    res.changes.append(
        Change(
            str(log.path),
            state.jobs[-1].execution_id or "",
            JobState.RUNNING,
            JobState.RUNNING,
            written=True,
        )
    )


def _behind(paths: Sequence[Path]) -> bool:
    return any(RunLog(p).lag() for p in paths)


def settle(
    paths: Sequence[Path],
    query: BatchQuery,
    *,
    wait: float,
    root: Path | None = None,
    locks: LockConfig | None = None,
    interval: float = 3.0,
    sleep: Callable[[float], None] = time.sleep,
) -> PollResult:
    """Poll until every job asked about is final in its log and every log is in step with
    its sidecar, or ``wait`` seconds passed (the follow-up job: accounting records an end
    a moment after the dependency fires; a log whose folder was read-only or whose lock
    was held gets its end as soon as it can be written)."""
    deadline = time.monotonic() + wait
    total = PollResult()
    while True:
        res = poll_runs(paths, query, root=root, locks=locks)
        total.runs = max(total.runs, res.runs)
        total.changes += [c for c in res.changes if c.written or time.monotonic() >= deadline]
        for k, v in res.calls.items():
            total.calls[k] = total.calls.get(k, 0) + v
        total.asked_at = res.asked_at
        total.asked_by = res.asked_by
        if not (unfinished(paths) or _behind(paths)) or time.monotonic() >= deadline:
            total.changes += [c for c in res.changes if not c.written and c not in total.changes]
            return total
        sleep(interval)


__all__ = [
    "Change",
    "PollResult",
    "account",
    "open_blocks",
    "poll_runs",
    "settle",
    "unfinished",
    "waiting_successors",
]
