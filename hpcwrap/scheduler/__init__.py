"""The scheduler backends behind one interface (see ``base``)."""

from __future__ import annotations

import importlib.util

from hpcwrap.errors import UsageError
from hpcwrap.scheduler.base import JobInfo, Scheduler, SubmitInterrupted, SubmitResult

SCHEDULERS = ("slurm", "local")

__all__ = [
    "SCHEDULERS",
    "JobInfo",
    "Scheduler",
    "SubmitInterrupted",
    "SubmitResult",
    "get_scheduler",
]


def get_scheduler(kind: str = "slurm") -> Scheduler:
    """``slurm``: the Slurm commands (job state through pyslurm when one matching this
    Slurm is importable); ``local``: run on this machine, no Slurm."""
    if kind == "local":
        from hpcwrap.scheduler.local import LocalScheduler

        return LocalScheduler()
    if kind != "slurm":
        raise UsageError(f"unknown scheduler {kind!r}; use one of {', '.join(SCHEDULERS)}")
    from hpcwrap.scheduler.cli_backend import CliScheduler

    cli = CliScheduler()
    # find_spec imports nothing; pyslurm itself loads only if it is there at all.
    if importlib.util.find_spec("pyslurm") is not None:
        from hpcwrap.scheduler.pyslurm_backend import PyslurmScheduler, matches

        if matches(cli.slurm_version()):
            return PyslurmScheduler(cli.sbatch)
    return cli
