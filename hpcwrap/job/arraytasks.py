"""Array tasks inside the job: the ``task N: `` prefix of their Status entries.

The block bookkeeping (one ``<id>_[range]`` block derived from every task's
facts, under the run's lock) is run-log state and lives in
``hpcwrap.runlog.arrays``; it is re-exported here for the wrapper and tests.
"""

from __future__ import annotations

from hpcwrap.job.jobenv import JobEnv
from hpcwrap.runlog.arrays import (
    array_block,
    derive,
    drafted_next,
    record_task_end,
    record_task_start,
    state_word,
    summary_text,
    tasks_of,
    worst_state,
)


def task_prefix(env: JobEnv) -> str:
    """``task 2: `` for an array task's Status entries, else empty."""
    return f"task {env.array_task_id}: " if env.is_array_task else ""


__all__ = [
    "array_block",
    "derive",
    "drafted_next",
    "record_task_end",
    "record_task_start",
    "state_word",
    "summary_text",
    "task_prefix",
    "tasks_of",
    "worst_state",
]
