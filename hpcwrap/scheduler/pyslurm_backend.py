"""Optional: job state through pyslurm, only when an importable pyslurm matches this Slurm.

pyslurm X.Y builds only against Slurm X.Y, and PyPI has no pyslurm for the
Slurm releases of Debian 12/13 (see spec/slurm-facts.md), so this backend can
be neither built nor tested on hpcwrap's machines. It is kept tiny on purpose:
submission always goes through sbatch (the only thing that reads ``#SBATCH``
lines exactly as sbatch does), and any pyslurm failure falls back to the
command-line answer. pyslurm is imported only inside these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hpcwrap.scheduler.base import JobInfo
from hpcwrap.scheduler.cli_backend import CliScheduler


def matches(slurm_version: str) -> bool:
    """True when pyslurm imports and its X.Y equals the running Slurm's X.Y."""
    if not slurm_version:
        return False
    try:
        import pyslurm
    except Exception:  # a broken build raises anything at import; then it is not usable
        return False
    version = str(getattr(pyslurm, "__version__", ""))
    return version.split(".")[:2] == slurm_version.split(".")[:2]


class PyslurmScheduler(CliScheduler):
    name = "slurm"  # the same Slurm; only job_state asks through pyslurm

    def job_state(self, job_id: str) -> JobInfo | None:
        try:
            import pyslurm

            job: Any = pyslurm.Job.load(int(job_id.split("_", 1)[0]))  # pyslurm >= 23.2 API
            state = str(job.state)
            node = getattr(job, "nodelist", None) or getattr(job, "nodes", None)
            return JobInfo(job_id=job_id, state=state, node=str(node) if node else None)
        except Exception:  # any pyslurm trouble: ask the Slurm commands instead
            return super().job_state(job_id)

    def queue(self, job_ids: Sequence[str], timeout: float = 60.0) -> list[JobInfo]:
        """The same batched answer as ``squeue --json``, from one ``pyslurm.Jobs.load()``."""
        try:
            import pyslurm

            wanted = {j.split("_", 1)[0] for j in job_ids}
            jobs: Any = pyslurm.Jobs.load()  # pyslurm >= 23.2 API: every job, one RPC
            out = []
            for job in jobs.values():
                array = getattr(job, "array_id", None)
                owner = str(array or job.id)
                if owner not in wanted:
                    continue
                task = getattr(job, "array_task_id", None)
                out.append(
                    JobInfo(
                        job_id=f"{array}_{task}" if array and task is not None else str(job.id),
                        state=str(job.state),
                        node=str(job.nodelist) if getattr(job, "nodelist", None) else None,
                        reason=str(job.state_reason)
                        if getattr(job, "state_reason", None)
                        else None,
                        array_job_id=str(array) if array else None,
                        array_task_id=str(task) if array and task is not None else None,
                        user=str(getattr(job, "user_name", "") or "") or None,
                    )
                )
            return out
        except Exception:  # any pyslurm trouble: ask the Slurm commands instead
            return super().queue(job_ids, timeout)
