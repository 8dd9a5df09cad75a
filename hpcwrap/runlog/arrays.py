"""The tasks of a Slurm job array share one ``## Job`` block (state side; see lifecycle).

Array tasks are not resumptions: ``hpcwrap sbatch --array=0-3`` records one
block ``<id>_[0-3]`` and every task's wrapper keeps its own facts in
``state.array_tasks[<task id>]`` (start, end, node, state, exit code,
restarts). The block is derived from them, always under the run's lock
(inside a lifecycle transition), so concurrent tasks cannot lose each
other's facts: start is the earliest task start, state RUNNING while any
recorded task runs or an index of the submitted ``--array`` spec has no end record
yet (a throttled ``0-199%16`` starts a few at a time); once all have ended, end is
the latest end, exit code the largest and state the worst one. A requeued task
overwrites its own entry.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from hpcwrap.runlog.endings import JobState, word_of
from hpcwrap.runlog.facts import ArrayTaskFacts, natural_key
from hpcwrap.runlog.model import JobBlock, RunState


class ArrayTask(Protocol):
    """What an array task's transitions need to know (``job.jobenv.JobEnv`` has it all)."""

    @property
    def array_job_id(self) -> str | None: ...
    @property
    def array_task_id(self) -> str | None: ...
    @property
    def array_block_id(self) -> str | None: ...
    @property
    def array_task_count(self) -> int | None: ...
    @property
    def nodes(self) -> str | None: ...
    @property
    def restart_count(self) -> int | None: ...
    @property
    def cluster(self) -> str | None: ...


# Worst first: the block's state when not every task completed.
_WORST = (JobState.FAILED, JobState.OUT_OF_MEMORY, JobState.TIMEOUT, JobState.CANCELLED)
_MAX_NEXT_TASKS = 3  # failing tasks whose suggestions go to Next
_MAX_INDICES = 1_000_000  # an --array spec naming more is not expanded (Slurm's MaxArraySize)


def state_word(state: str) -> str:
    """``COMPLETED`` -> ``completed`` (the first word of an end Status entry)."""
    return word_of(state)


def spec_indices(spec: str | None) -> frozenset[str] | None:
    """The task ids an ``--array`` spec names: ``0-11%4`` -> 0..11, ``1,5-9:2`` -> 1,5,7,9;
    None when there is no spec or it cannot be read (then the recorded tasks decide)."""
    if not spec:
        return None
    ids: set[str] = set()
    for part in spec.split("%", 1)[0].split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+)(?::(\d+))?)?\s*", part)
        if m is None:
            return None
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        step = int(m.group(3)) if m.group(3) is not None else 1
        if hi < lo or step < 1 or len(ids) + (hi - lo) // step + 1 > _MAX_INDICES:
            return None
        ids.update(str(i) for i in range(lo, hi + 1, step))
    return frozenset(ids)


def _is_array_block(job: JobBlock, array_id: str) -> bool:
    eid = job.execution_id
    if eid is None:
        return False
    if eid == array_id or eid.startswith(f"{array_id}_["):
        return True
    # a task's own id, written before `hpcwrap sbatch` named the whole array
    rest = eid[len(array_id) + 1 :] if eid.startswith(f"{array_id}_") else ""
    return rest.isdigit()


def array_block(state: RunState, env: ArrayTask) -> JobBlock:
    """The array's block: found by the array id, else an unnamed last block, else a new one."""
    assert env.array_job_id is not None
    for job in reversed(state.jobs):
        if _is_array_block(job, env.array_job_id):
            return job
    if state.jobs and state.jobs[-1].execution_id is None:
        job = state.jobs[-1]  # made before the submission named it (a race with sbatch)
        job.execution_id = env.array_block_id
        return job
    job = JobBlock(execution_id=env.array_block_id)
    state.jobs.append(job)
    return job


def tasks_of(state: RunState) -> dict[str, ArrayTaskFacts]:
    return dict(state.array_tasks)


def _put_task(state: RunState, task_id: str, entry: ArrayTaskFacts) -> dict[str, ArrayTaskFacts]:
    tasks = tasks_of(state)
    tasks[task_id] = entry
    state.array_tasks = dict(sorted(tasks.items(), key=lambda kv: natural_key(kv[0])))
    return tasks


def record_task_start(state: RunState, env: ArrayTask, start: datetime) -> JobBlock:
    """A task started (or was requeued): its entry is (re)written, the block derived."""
    assert env.array_task_id is not None
    job = array_block(state, env)
    _put_task(
        state,
        env.array_task_id,
        ArrayTaskFacts(
            start=start, node=env.nodes, state=JobState.RUNNING, restart_count=env.restart_count
        ),
    )
    if env.cluster and not job.cluster:
        job.cluster = env.cluster
    derive(job, state)
    return job


def record_task_end(
    state: RunState,
    env: ArrayTask,
    start: datetime,
    end: datetime,
    final: str,
    exit_code: int,
    next_steps: Sequence[str] = (),
) -> tuple[JobBlock, bool]:
    """A task ended. Returns the block and whether this was the array's last task to end.

    Last: no recorded task runs and every task of the submitted spec (or, without
    one, as many as Slurm said the array has) has an end record.
    """
    assert env.array_task_id is not None
    job = array_block(state, env)
    was_running = job.state == JobState.RUNNING or job.end is None
    old = state.array_tasks.get(env.array_task_id) or ArrayTaskFacts()
    entry = ArrayTaskFacts(
        start=old.start or start,
        end=end,
        node=old.node or env.nodes,
        state=final,
        exit_code=exit_code,
        restart_count=env.restart_count,
        next=list(next_steps),
    )
    tasks = _put_task(state, env.array_task_id, entry)
    derive(job, state)
    count = env.array_task_count
    everyone = count is None or len(tasks) >= count
    return job, was_running and job.state != JobState.RUNNING and everyone


def derive(job: JobBlock, state: RunState) -> None:
    """The block's start/end/node/state/exit code from the recorded tasks."""
    tasks = list(state.array_tasks.values())
    if not tasks:
        return
    starts = [t.start for t in tasks if t.start is not None]
    if job.start is not None:
        starts.append(job.start)  # a requeued task keeps the block's first start
    if starts:
        job.start = min(starts)
    nodes = sorted({t.node for t in tasks if t.node}, key=natural_key)
    job.node = ",".join(nodes) or job.node
    restarts = [t.restart_count for t in tasks if t.restart_count is not None]
    if restarts:
        job.restart_count = max(restarts)
    expected = spec_indices(state.submit.array if state.submit is not None else None)
    if any(t.end is None for t in tasks) or (expected and not expected <= state.array_tasks.keys()):
        # a task runs, or one the spec names has not ended yet (throttled, still pending)
        job.state, job.end, job.exit_code = JobState.RUNNING, None, None
        return
    ends = [t.end for t in tasks if t.end is not None]
    job.end = max(ends) if ends else None
    codes = [t.exit_code for t in tasks if t.exit_code is not None]
    job.exit_code = max(codes) if codes else None
    job.state = worst_state([t.state or JobState.FAILED for t in tasks])


def worst_state(states: Sequence[str]) -> str:
    if all(s == JobState.COMPLETED for s in states):
        return JobState.COMPLETED
    for s in _WORST:
        if s in states:
            return s
    return sorted(s for s in states if s != JobState.COMPLETED)[0]


def summary_text(state: RunState, env: ArrayTask, job: JobBlock) -> str:
    """``all 3 tasks ended: 2 completed, 1 failed (task 1); Results from task 2``."""
    tasks = state.array_tasks
    by_state: dict[str, list[str]] = {}
    for tid, t in tasks.items():
        by_state.setdefault(t.state or JobState.FAILED, []).append(tid)
    parts = []
    for st in sorted(by_state, key=lambda s: (s != JobState.COMPLETED, s)):
        ids = by_state[st]
        part = f"{len(ids)} {state_word(st)}"
        if st != JobState.COMPLETED:
            part += " (task " + ", ".join(ids) + ")"
        parts.append(part)
    n = len(tasks)
    count = env.array_task_count
    head = f"all {n} tasks ended" if count in (None, n) else f"{n} of {count} tasks ended"
    text = f"array {job.execution_id}: {head}: " + ", ".join(parts)
    if state.array_results_task is not None:
        text += f"; Results from task {state.array_results_task}"
    return text


def drafted_next(state: RunState) -> list[str]:
    """Next for an array: the failing tasks' suggestions, then the Results task's ones."""
    tasks = state.array_tasks
    out: list[str] = []
    failing = [
        tid for tid, t in tasks.items() if t.state not in (JobState.COMPLETED, JobState.RUNNING)
    ]
    for tid in failing[:_MAX_NEXT_TASKS]:
        out.extend(f"task {tid}: {s}" for s in tasks[tid].next)
    if len(failing) > _MAX_NEXT_TASKS:
        more = len(failing) - _MAX_NEXT_TASKS
        out.append(f"{more} more tasks did not complete: see their Status entries")
    source = state.array_results_task
    if source is not None and source not in failing[:_MAX_NEXT_TASKS]:
        task = tasks.get(source)
        out.extend(f"task {source}: {s}" for s in (task.next if task else []))
    return out


__all__ = [
    "ArrayTask",
    "array_block",
    "derive",
    "drafted_next",
    "record_task_end",
    "record_task_start",
    "spec_indices",
    "state_word",
    "summary_text",
    "tasks_of",
    "worst_state",
]
