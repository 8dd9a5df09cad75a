"""The follow-up job's in-job side: once the wrapper recorded the end, cancel it.

The follow-up job (submit/followup.py) polls a run whose end nothing inside the job
could write; when the wrapper wrote it, the follow-up is cancelled so it never runs.
An array's follow-up waits for every task, and an end read from a TERM (a scancel, a
requeue or a node failure look alike from inside) leaves it waiting for the real end.
"""

from __future__ import annotations

import os
import subprocess

from hpcwrap.runlog import lifecycle
from hpcwrap.runlog.endings import JobState, Strength
from hpcwrap.runlog.handle import RunLog
from hpcwrap.runlog.model import JobBlock

TIMEOUT = 60.0  # seconds scancel may take


def _term_or_requeue(job: JobBlock) -> bool:
    """The follow-up job stays after an end read from a TERM (a scancel, a requeue or a
    node failure look alike from inside) or a requeue (the job runs again under the same
    id, and afterany waits for its real end)."""
    if job.state == JobState.REQUEUED:
        return True
    return job.state == JobState.CANCELLED or lifecycle.basis_of(job) is Strength.GUESS


def cancel_after_end(run: RunLog | None, in_slurm: bool, array_task: bool) -> str | None:
    """Called by the wrapper once it recorded the end: cancel the run's follow-up job.

    Returns the cancelled job id (None when there was none). Never raises.
    """
    if run is None or not in_slurm or array_task:
        return None
    try:
        state = run.read()
        facts = state.submit
        fid = facts.follow_up_job if facts is not None else None
        if not fid:
            return None
        if state.jobs and _term_or_requeue(state.jobs[-1]):
            return None  # a TERM: scancel or a requeue; the follow-up waits for the real end
        if run.lag():
            return None  # the end waits for the next writer (deferred.py): the follow-up
        subprocess.run(
            ["scancel", fid],
            capture_output=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
            env=dict(os.environ),
        )
        run.append_event("follow_up_cancelled", {"job_id": fid})
        return fid
    except Exception:  # the run's end is written; a follow-up left pending only polls
        return None


__all__ = ["cancel_after_end"]
