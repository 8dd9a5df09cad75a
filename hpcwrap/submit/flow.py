"""What ``hpcwrap sbatch`` does, in order, once its command line is parsed.

1. ``plan``: the preflight of an experiment (the group's last runs; a warning, or with
   ``strict`` a refusal, before repeating a discarded or failed variation), the walltime
   warning to ask for (hpcwrap's lead capped at a quarter of the time limit), the
   submission prepared from the sbatch options and the script's ``#SBATCH`` lines, and
   for ``--resume auto`` a new chain whose warning is capped at half the time limit.
2. ``submit``: the run log written first, sbatch, the job id recorded the moment sbatch
   prints it, then the follow-up job (the ``follow_up`` setting) and the chain's note.

The CLI (cli/sbatch_cmd.py) only parses the words and prints what comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hpcwrap.config import Settings
from hpcwrap.errors import HpcwrapError, UsageError
from hpcwrap.runlog import RunLog
from hpcwrap.runlog.facts import ChainFacts
from hpcwrap.runlog.locks import LockConfig
from hpcwrap.scheduler import SubmitResult, get_scheduler
from hpcwrap.scheduler.base import Scheduler
from hpcwrap.scheduler.sbatch_options import CommandLine
from hpcwrap.submit import followup, preflight, resume, submission
from hpcwrap.submit.request import RunRequest


@dataclass(frozen=True)
class ChainRequest:
    """``--resume auto`` and its settings."""

    max_resumes: int
    resume_arg: str | None = None
    checkpoint_glob: str | None = None


@dataclass(frozen=True)
class SbatchRequest:
    """What ``hpcwrap sbatch``'s command line asked for."""

    command: CommandLine  # sbatch's options, the script and its arguments
    request: RunRequest  # the run's description
    settings: Settings
    cwd: Path
    environ: Mapping[str, str]
    scheduler: str = "slurm"
    strict: bool = False  # refuse a repeat of a discarded or failed variation
    walltime_signal: str | None = None  # --walltime-signal SIG[@LEAD]
    no_walltime_signal: bool = False
    chain: ChainRequest | None = None  # --resume auto


@dataclass
class Plan:
    request: RunRequest
    prep: submission.Prepared
    scheduler: Scheduler
    chain: ChainFacts | None = None
    capped: str | None = None  # the chain's note when its walltime warning was capped


@dataclass
class Submitted:
    outcome: submission.SubmitOutcome
    notes: list[str] = field(default_factory=list)  # hpcwrap's own notes, for stderr
    warnings: list[str] = field(default_factory=list)


def plan(req: SbatchRequest) -> Plan:
    """Steps before anything is written (``--dry-run`` stops after them)."""
    request, settings = req.request, req.settings
    if request.run_type == "experiment":
        root = request.run_logs if request.run_logs.is_absolute() else req.cwd / request.run_logs
        strict = req.strict or settings.preflight == "strict"
        preflight.report(request, root, req.cwd, strict=strict)
    walltime = submission.walltime_signal(settings, req.walltime_signal, req.no_walltime_signal)
    prep = submission.prepare(
        req.command, settings=settings, cwd=req.cwd, env=req.environ, walltime=walltime
    )
    prep.notes.extend(submission.lead_notes(prep, chained=req.chain is not None))
    chain, capped = None, None
    if req.chain is not None:
        if prep.user_resolved().get("array"):
            raise UsageError("--resume auto chains one job after another; not for --array")
        chain = resume.new_chain(
            max_resumes=req.chain.max_resumes,
            resume_arg=req.chain.resume_arg,
            checkpoint_glob=req.chain.checkpoint_glob,
        )
        capped = resume.cap_walltime_signal(prep)
        if capped is not None:
            prep.notes.append(capped)
    return Plan(request, prep, get_scheduler(req.scheduler), chain, capped)


def create_log(planned: Plan, *, locks: LockConfig) -> RunLog:
    """The run log, written before sbatch runs."""
    return submission.create_log(planned.request, planned.prep, locks=locks)


def submit(
    req: SbatchRequest,
    planned: Plan,
    log: RunLog,
    *,
    announce: Callable[[SubmitResult, str, RunLog], None],
) -> Submitted:
    """sbatch and the job id (``announce`` is called the moment sbatch printed it, before
    an ``--wait``); then the follow-up job and the chain's note."""
    outcome = submission.submit_job(
        log, planned.prep, scheduler=planned.scheduler, announce=announce, chain=planned.chain
    )
    done = Submitted(outcome)
    if req.settings.follow_up and planned.scheduler.name == "slurm":
        try:
            fid = followup.submit(outcome.log, outcome.result.job_id)
        except HpcwrapError as exc:
            done.warnings.append(f"{exc}; the run goes on without it")
        else:
            done.notes.append(f"follow-up job {fid} records the end if the job cannot")
    if planned.capped is not None:
        outcome.log.add_status(f"resume chain: {planned.capped}")
    return done


__all__ = ["ChainRequest", "Plan", "SbatchRequest", "Submitted", "create_log", "plan", "submit"]
