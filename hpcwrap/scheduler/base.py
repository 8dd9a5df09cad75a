"""One interface to a scheduler: submit a batch script, ask a job's state, cancel it.

Backends: ``cli_backend`` (the Slurm commands; the default), ``local`` (no
Slurm: the batch script runs detached on this machine), ``pyslurm_backend``
(optional, job state only, when an importable pyslurm matches the Slurm).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class SubmitResult:
    """A job the scheduler accepted.

    ``job_id`` as the scheduler prints it ("12345"; "<host>:<pid>" for local);
    ``cluster`` when federated/multi-cluster ("12345;cl" from ``--parsable``).
    ``returncode``: sbatch's exit status; not 0 only with ``--wait`` (the job's).
    ``messages``: what sbatch said on stderr (warnings), for the user.
    """

    job_id: str
    cluster: str | None = None
    returncode: int = 0
    messages: str = ""


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: str  # Slurm's state name: PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, ...
    node: str | None = None
    exit_code: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    reason: str | None = None
    # Filled by the batched queries (``queue``/``history``):
    exit: str | None = None  # ``code:signal`` as sacct prints it (final jobs)
    array_job_id: str | None = None  # the array's id for one of its tasks
    array_task_id: str | None = None
    user: str | None = None
    restart_count: int | None = None
    submit: datetime | None = None


class SubmitInterrupted(KeyboardInterrupt):
    """Ctrl-C during a submission, raised once the outcome is as known as it can be.

    ``result``: the job, when sbatch printed its id before or after the
    interrupt (the job exists); None when no id was seen. ``detail`` says what
    happened to sbatch.
    """

    def __init__(self, result: SubmitResult | None, detail: str) -> None:
        super().__init__(detail)
        self.result = result
        self.detail = detail


OnSubmitted = Callable[[SubmitResult], None]


class Scheduler(Protocol):
    name: str

    def command(self, script_path: Path, sbatch_args: Sequence[str]) -> list[str]:
        """The command ``submit`` runs (for --dry-run and the run log)."""
        ...

    def submit(
        self,
        script_path: Path,
        sbatch_args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        on_submitted: OnSubmitted | None = None,
    ) -> SubmitResult:
        """Submit; call ``on_submitted`` as soon as the job id is known (before any --wait).

        Raises SubmitError (refused), SchedulerUnavailableError (no sbatch),
        SchedulerError, SubmitInterrupted (Ctrl-C; the job may or may not exist).
        """
        ...

    def job_state(self, job_id: str) -> JobInfo | None:
        """The job's state now; None when the scheduler no longer knows the job."""
        ...

    def cancel(self, job_id: str) -> None: ...

    def queue(self, job_ids: Sequence[str], timeout: float) -> list[JobInfo]:
        """What the controller knows of these jobs now, in ONE call (``squeue --json``):
        one entry per job or array task, recently ended ones included (``MinJobAge``).
        Raises SchedulerError when the scheduler does not answer within ``timeout``."""
        ...

    def history(self, job_ids: Sequence[str], timeout: float) -> list[JobInfo]:
        """Accounting's rows for these jobs in ONE call (``sacct --duplicates``): every
        attempt of a requeued job (earlier ones REQUEUED), oldest first, array tasks
        one row each. Raises SchedulerError like ``queue``."""
        ...
