"""Walltime-resume chaining: continue a training in a successor job, in the same run log.

How a chain runs (``hpcwrap sbatch --resume auto``; one mechanism, recorded in
``state.chain``): every job of the chain, as its wrapper starts, submits its own
successor with ``--dependency=afternotok:<itself> --kill-on-invalid-dep=yes``
(the same ``job.sh`` and sbatch options, from the run's sidecar). Before the
limit Slurm sends the walltime warning, the training checkpoints and exits, the
job ends TIMEOUT, and the successor starts. If the job is killed hard at its
limit (the wrapper never handled the warning), the successor still starts: it
was submitted long before. A job that ends otherwise (completed, failed, user
scancel) makes its wrapper cancel the successor; a successor that starts
anyway checks the guards and stops the chain, saying why.

The successor's wrapper (``begin``) decides from the run log alone:

- the previous block ended TIMEOUT or PREEMPTED by hpcwrap's reading (not
  Slurm's: a training that saved on the warning and exited 124 is FAILED to
  sacct but TIMEOUT here, and resumes);
- it made progress (a newer step or checkpoint than the block before it);
- ``max_resumes`` is not reached;
- a checkpoint exists (what the wrapper saw saved, else the newest match of
  ``--checkpoint-glob``);
- that checkpoint is not the training's last (an HF ``trainer_state.json`` at its
  ``max_steps``: a job killed at its limit after its final save needs no successor).

Then it opens a ``## Job (resumed)`` block, tells the training where to resume
(``HPCWRAP_RESUME_FROM`` and ``LOAD_CKPT_PATH`` in its environment, and the
``--resume-arg`` template added to its command) and gives every job of the chain
the same ``WANDB_RUN_ID``, so the W&B issue can sync the pieces as one run.

``hpcwrap resume <run>`` submits one such successor by hand (no dependency);
``hpcwrap cancel <run>`` cancels the running job and any waiting successor.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hpcwrap.errors import ResumeError, SchedulerError
from hpcwrap.reading import checkpoints, ownership
from hpcwrap.reading.checkpoints import Choice
from hpcwrap.reading.records import hf as records_hf
from hpcwrap.runlog import RunLog, endings, layout, lifecycle, neighbours
from hpcwrap.runlog.dates import now
from hpcwrap.runlog.facts import ChainFacts
from hpcwrap.runlog.model import JobBlock, RunState
from hpcwrap.scheduler.base import Scheduler
from hpcwrap.scheduler.sbatch_options import slurm_time_seconds
from hpcwrap.submit.submission import (
    Prepared,
    WalltimeSignal,
    load_sbatch_args,
)

ENV_FROM = ("HPCWRAP_RESUME_FROM", "LOAD_CKPT_PATH")
# Set in a successor's submission (the job it follows): a successor the chain no longer
# waits for (its cancel failed, its submission went unrecorded) then knows not to train.
# Never passed on to the training.
ENV_SUCCESSOR_OF = "HPCWRAP_SUCCESSOR_OF"


@dataclass(frozen=True)
class Decision:
    go: bool
    reason: str
    checkpoint: str | None = None
    done: bool = False  # no successor is needed: the training already reached its total


def new_chain(
    *, max_resumes: int, resume_arg: str | None, checkpoint_glob: str | None, mode: str = "auto"
) -> ChainFacts:
    if max_resumes < 0:
        raise ResumeError("--max-resumes must be 0 or more")
    # Without {checkpoint} the words are added as they are: a framework that resumes from
    # its own folder (nanoGPT's --init_from=resume, HF's resume_from_checkpoint=True).
    if resume_arg is not None and not resume_arg.strip():
        raise ResumeError("--resume-arg is empty: give the words that make it resume")
    unknown = sorted(set(re.findall(r"\{[^{}]*\}", resume_arg or "")) - {"{checkpoint}"})
    if unknown:
        raise ResumeError(
            f"--resume-arg {resume_arg!r}: {', '.join(unknown)} is no placeholder; "
            "{checkpoint} is the only one (the checkpoint's path goes there)"
        )
    return ChainFacts(
        mode=mode,
        max_resumes=max_resumes,
        resume_arg=resume_arg,
        checkpoint_glob=checkpoint_glob,
        wandb_run_id=secrets.token_hex(4),
    )


def capped_lead(lead: float, limit: float | None) -> tuple[float, str | None]:
    """The walltime warning's lead, capped at half the limit (Slurm may send it up to 60 s
    early, so a lead as long as the limit would leave no time to train)."""
    if limit is None or limit <= 0 or lead <= limit / 2:
        return lead, None
    capped = max(int(limit / 2), 1)
    return capped, (
        f"walltime warning lead {lead:g} s is more than half the {limit:g} s limit: "
        f"asked for {capped} s before the limit instead"
    )


def cap_walltime_signal(prep: Prepared) -> str | None:
    """Cap the walltime warning of a chained submission at half its time limit.

    hpcwrap's own ``--signal`` default is replaced; a user's ``--signal`` (from the script
    or SBATCH_SIGNAL) is overridden on the command line, which sbatch ranks above both.
    Returns the note for the run log, or None when nothing was capped.
    """
    user = prep.user_resolved()
    limit = slurm_time_seconds(user.get("time"))
    if user.has("signal"):
        value = str(user.get("signal") or "")
        head, _, lead_text = value.rpartition("@") if "@" in value else (value, "", "60")
        try:
            lead = float(lead_text)
        except ValueError:
            return None
        capped, note = capped_lead(lead, limit)
        if note is not None and user.source("signal") != "command line":
            prep.extra_args.append(f"--signal={head}@{int(capped)}")
        return note if user.source("signal") != "command line" else None
    if prep.signal is None:
        return None
    capped, note = capped_lead(prep.signal.lead, limit)
    if note is not None:
        prep.signal = WalltimeSignal(prep.signal.name, capped)
    return note


# ---------------------------------------------------------------- checkpoints


def find_checkpoint(state: RunState, cwd: Path, log: RunLog | None = None) -> Choice:
    """The checkpoint the run resumes from: the newest complete one tied to it across its
    chain (reading/checkpoints.py); never one another run of ``log``'s folder claims, nor
    the one it was started from (``--from``): then ``why_not`` says so."""
    recorded: list[str] = []
    for item in (state.results.checkpoint, *(j.resumed_from for j in reversed(state.jobs))):
        if item and item not in recorded:
            recorded.append(item)
    ties = ownership.build(
        cwd,
        printed=recorded,
        argv=state.submit.command if state.submit is not None else (),
        wandb_dir=state.wandb_local,
    )
    others = neighbours.others_checkpoints(log.root, log.path) if log is not None else []
    chain = state.chain
    return checkpoints.to_resume(
        recorded,
        cwd=cwd,
        checkpoint_glob=chain.checkpoint_glob if chain is not None else None,
        owns=ties.owns,
        claimed_by=checkpoints.claimed(others, cwd),
        started_from=checkpoints.started_from(state.initialised_from),
    )


# ---------------------------------------------------------------- guards


def decide(
    state: RunState,
    job_id: str,
    checkpoint: str | None,
    *,
    by_hand: bool = False,
    why_not: str | None = None,
) -> Decision:
    """Whether the successor ``job_id`` continues the run (see the module docstring).

    ``by_hand``: submitted by ``hpcwrap resume``; a person chose to go on, so how the
    previous job ended and ``--max-resumes`` do not stop it (a checkpoint must exist).
    ``why_not``: why the checkpoint found was refused (find_checkpoint).
    """
    chain = state.chain
    if chain is None:
        return Decision(False, "the run has no resume chain")
    if chain.stopped and not by_hand:
        return Decision(False, f"the chain was stopped: {chain.stopped}")
    if chain.resumes >= chain.max_resumes and not by_hand:
        return Decision(False, f"--max-resumes {chain.max_resumes} reached")
    previous = [j for j in state.jobs if j.execution_id != job_id and j.start is not None]
    if not previous:
        return Decision(False, "no earlier job of this run ran")
    last = previous[-1]
    ended = endings.parse(last.state)
    if not by_hand and (ended is None or not ended.resumable):
        why = last.state or "no recorded end"
        return Decision(
            False, f"the previous job ({last.execution_id}) ended {why}, not at its limit"
        )
    if checkpoint is None:
        if why_not:
            return Decision(False, f"no checkpoint of this run to resume from: {why_not}")
        return Decision(False, "no checkpoint to resume from")
    if (
        last.resumed_from is not None
        and os.path.realpath(last.resumed_from) == os.path.realpath(checkpoint)
        and not _written_during(checkpoint, last)
    ):
        return Decision(
            False,
            f"no progress: job {last.execution_id} saved no newer checkpoint than "
            f"`{checkpoint}`, which it resumed from, nor wrote that one again",
        )
    finished = None if by_hand else records_hf.finished_at(Path(checkpoint))
    if finished is not None:
        step, total = finished
        return Decision(
            False,
            f"the training reached its total before the limit: `{checkpoint}` is step "
            f"{step} of {total}",
            done=True,
        )
    return Decision(True, "continues", checkpoint)


def _written_during(checkpoint: str, job: JobBlock) -> bool:
    """Whether ``job`` wrote the checkpoint it resumed from again (one ``ckpt.pt`` saved
    over and over, nanoGPT's way): the same path is then progress, not a loop. The start
    is kept to the second and the predecessor's last save can fall in that same second:
    a write counts from a second after it (kill-matrix row 13 once read as progress)."""
    written = checkpoints.newest_write(Path(checkpoint))
    return written is not None and job.start is not None and written > job.start.timestamp() + 1.0


def resume_argv(argv: Sequence[str], chain: ChainFacts, checkpoint: str) -> list[str]:
    """The command with the ``--resume-arg`` template filled in and appended."""
    out = list(argv)
    if chain.resume_arg:
        out += [w.replace("{checkpoint}", checkpoint) for w in shlex.split(chain.resume_arg)]
    return out


def chain_env(
    environ: Mapping[str, str], chain: ChainFacts, checkpoint: str | None
) -> dict[str, str]:
    """The training's environment in a chain: where to resume from, one W&B run id."""
    env = dict(environ)
    env.pop(ENV_SUCCESSOR_OF, None)
    if checkpoint is not None:
        for name in ENV_FROM:
            env[name] = checkpoint
    if chain.wandb_run_id and not environ.get("WANDB_RUN_ID"):
        env["WANDB_RUN_ID"] = chain.wandb_run_id
    return env


# ---------------------------------------------------------------- submitting and cancelling


def _clean_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Submitting from inside a job: the job's own SLURM_*/SBATCH_* must not leak into the
    successor (sbatch would take SLURM_JOB_ID-style settings for the new job)."""
    return {
        k: v
        for k, v in environ.items()
        if not k.startswith(("SLURM_", "SBATCH_", "SALLOC_")) or k == "SLURM_CONF"
    }


def _without(args: Sequence[str], options: Sequence[str]) -> list[str]:
    """``args`` without the given long options (``--x=v`` and ``--x v`` forms)."""
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if any(a == f"--{o}" for o in options):
            skip = True
            continue
        if any(a.startswith(f"--{o}=") for o in options):
            continue
        out.append(a)
    return out


def submit_successor(
    log: RunLog,
    scheduler: Scheduler,
    environ: Mapping[str, str],
    *,
    after: str | None,
    workdir: Path,
) -> str:
    """Submit the next job of the chain (``after``: the job it waits for); returns its id."""
    job_sh = log.sidecar / layout.JOB_SCRIPT
    if not job_sh.is_file():
        raise ResumeError(f"{job_sh}: missing; only runs submitted by hpcwrap sbatch can resume")
    args = _without(load_sbatch_args(log), ("dependency", "kill-on-invalid-dep", "array"))
    env = _clean_env(environ)
    env.pop(ENV_SUCCESSOR_OF, None)
    if after is not None:
        args += [f"--dependency=afternotok:{after}", "--kill-on-invalid-dep=yes"]
        env[ENV_SUCCESSOR_OF] = after
    result = scheduler.submit(job_sh, args, env, cwd=workdir)
    return result.job_id


# scancel's words for a job that is gone already: asking again cannot help.
_CANCEL_FINAL = ("already completing or completed", "invalid job id")


def cancel_successor(
    scheduler: Scheduler, job_id: str, tries: int = 3, pause: float = 1.0
) -> str | None:
    """Cancel a waiting successor; the problem in words when it could not be. Asked a few
    times: a controller that is busy for a moment must not let a crash's successor train."""
    problem = ""
    for attempt in range(tries):
        try:
            scheduler.cancel(job_id)
        except SchedulerError as exc:
            problem = str(exc)
            if any(word in problem.lower() for word in _CANCEL_FINAL):
                return problem
        else:
            return None
        if attempt + 1 < tries:
            time.sleep(pause)
    return problem


def workdir_of(state: RunState, log: RunLog) -> Path:
    if state.submit is not None and state.submit.workdir:
        return Path(state.submit.workdir)
    return log.path.parent


def record_successor(
    log: RunLog, job_id: str, after: str | None, when: datetime | None = None
) -> None:
    what = f"waits for job {after} to end at its limit" if after else "submitted by hand"
    log.record(
        lifecycle.Chained(
            when or now(), pending=job_id, text=f"resume: successor job {job_id} {what}"
        ),
        data={"successor": job_id, "after": after},
    )


def stop_chain(log: RunLog, reason: str, *, pending: str | None = None, done: bool = False) -> None:
    """Stop the chain; ``done``: because the training completed (the run is COMPLETED,
    not stopped)."""
    log.record(
        lifecycle.Chained(
            now(),
            pending=pending,
            stopped=reason,
            text=f"resume chain stopped: {reason}",
            done=done,
        ),
        data={"reason": reason},
    )


def resume_by_hand(
    log: RunLog, scheduler: Scheduler, environ: Mapping[str, str], *, extra_sbatch: Sequence[str]
) -> str:
    """``hpcwrap resume``: submit one successor now (no dependency); returns its job id.

    Refused while a job of the run still runs or a successor already waits, and when
    there is no checkpoint to resume from (the successor would only stop).
    """
    state = log.read()
    running = [j.execution_id for j in state.jobs if not lifecycle.is_final(j.state)]
    if any(running):
        raise ResumeError(
            f"job {', '.join(str(r) for r in running)} of this run is not over yet "
            f"(run `hpcwrap cancel {log.name}` first, or wait)"
        )
    if state.chain is not None and state.chain.pending:
        raise ResumeError(f"successor job {state.chain.pending} already waits to resume this run")
    workdir = workdir_of(state, log)
    probe = state
    if state.chain is None:
        probe = dataclasses.replace(state, chain=ChainFacts(mode="manual"))
    choice = find_checkpoint(probe, workdir, log)
    checkpoint = choice.path
    if checkpoint is None:
        if choice.why_not:
            raise ResumeError(
                f"no checkpoint of this run to resume from: {choice.why_not}; to start a "
                "new run from it, `hpcwrap sbatch --from <checkpoint> ...`"
            )
        raise ResumeError(
            "no checkpoint to resume from: the run's Results name none that exists "
            "(and no --checkpoint-glob matched); record one with `hpcwrap log note`"
        )
    if state.chain is None:
        chain = ChainFacts(mode="manual", max_resumes=0, wandb_run_id=secrets.token_hex(4))
        log.record(lifecycle.Described(chain=chain), event="chain")
    args = [*load_sbatch_args(log), *extra_sbatch]
    job_sh = log.sidecar / layout.JOB_SCRIPT
    if not job_sh.is_file():
        raise ResumeError(f"{job_sh}: missing; only runs submitted by hpcwrap sbatch can resume")
    args = _without(args, ("dependency", "kill-on-invalid-dep"))
    result = scheduler.submit(job_sh, args, _clean_env(environ), cwd=workdir)
    log.record(
        lifecycle.Chained(
            now(),
            pending=result.job_id,
            by_hand=True,
            restart=True,
            text=f"resume: job {result.job_id} submitted by hand to continue from `{checkpoint}`",
        ),
        data={"successor": result.job_id, "checkpoint": checkpoint},
    )
    return result.job_id


def cancel_run(log: RunLog, scheduler: Scheduler) -> list[str]:
    """``hpcwrap cancel``: scancel the run's running jobs and its waiting successor."""
    state = log.read()
    newest = {j.execution_id: j for j in state.jobs if j.execution_id}  # its last attempt
    targets = [
        job_id
        for job_id, j in newest.items()
        if job_id.isdigit()
        # a requeued job (Lightning's own requeue, scontrol requeue) pends to run again
        and (not lifecycle.is_final(j.state) or j.state == endings.JobState.REQUEUED)
    ]
    if state.chain is not None and state.chain.pending:
        targets.append(state.chain.pending)
    # the person's stop first: the cancelled job's own end then finds the chain stopped
    log.record(
        lifecycle.Chained(now(), stopped="cancelled by hand (hpcwrap cancel)"),
        event="cancel_asked",
        data={"targets": targets},
    )
    done: list[str] = []
    problems: list[str] = []
    for job_id in dict.fromkeys(targets):
        problem = cancel_successor(scheduler, job_id)
        if problem is None:
            done.append(job_id)
        else:
            problems.append(problem)
    text = "cancelled by hand (hpcwrap cancel): " + (
        ", ".join(f"job {j}" for j in done) if done else "nothing was running or waiting"
    )
    if problems:
        text += "; not cancelled: " + "; ".join(problems)
    log.record(
        lifecycle.ProgressObserved(now(), text),
        event="cancel",
        data={"cancelled": done, "problems": problems},
    )
    if problems and not done:
        raise ResumeError("; ".join(problems))
    return done


# ---------------------------------------------------------------- in the job


@dataclass(frozen=True)
class ChainStart:
    """How a job of a chain starts (job/seams.ChainStart)."""

    stop: bool = False
    argv: list[str] | None = None
    child_env: dict[str, str] | None = None
    resumed: tuple[int, float | None] | None = None
    successor: str | None = None  # the successor this job submitted


def _unexpected(state: RunState, job_id: str, environ: Mapping[str, str]) -> str | None:
    """Why ``job_id`` must not train although it is a successor of this chain: the chain
    stopped or waits for another job (a cancel that failed, a submission that went
    unrecorded). None: it is not a successor the chain gave up on. A requeued attempt
    of a successor that already trained is not one."""
    chain = state.chain
    if chain is None or chain.pending == job_id:
        return None
    ours = {j.execution_id for j in state.jobs}
    marked = environ.get(ENV_SUCCESSOR_OF)
    if job_id not in chain.successors and marked not in ours:
        return None
    if any(j.execution_id == job_id and j.resumed_from for j in state.jobs):
        return None
    if chain.stopped:
        return f"the chain was stopped: {chain.stopped}"
    if chain.pending is not None:
        return f"the chain waits for job {chain.pending}, not for it"
    return "the chain waits for no successor (its submission was not recorded)"


def _check_guessed_end(
    run: RunLog,
    state: RunState,
    job_id: str,
    record: Callable[..., Any],
    scheduler: Scheduler,
    tries: int = 5,
    pause: float = 2.0,
) -> RunState:
    """The successor's check of a previous end that is only the wrapper's guess (a TERM
    whose time left was unknown): Slurm's account of that job, recorded as poll records it
    (a stronger verdict replaces the guess), then the state read again. Accounting may lag
    the end by a second or two: asked a few times."""
    previous = [j for j in state.jobs if j.execution_id != job_id and j.start is not None]
    last = previous[-1] if previous else None
    wanted = last.execution_id if last is not None else None
    if last is None or not wanted:
        return state
    if endings.Strength.named(last.state_basis) is not endings.Strength.GUESS:
        return state
    for attempt in range(tries):
        try:
            rows = [r for r in scheduler.history([wanted], timeout=10) if r.job_id == wanted]
        except SchedulerError:
            rows = []
        if rows and endings.slurm_over(rows[-1].state):
            row = rows[-1]
            record(
                lifecycle.Reconciled(
                    now(), wanted, row.state, slurm_exit=row.exit, end=row.end, nodes=row.node
                ),
                data={"job": wanted, "slurm_state": row.state, "asked_by": job_id},
            )
            try:
                return run.read()
            except Exception:
                return state
        if attempt + 1 < tries:
            time.sleep(pause)
    return state


class JobChain:
    """The walltime-resume chain's steps inside a job (job/seams.Chain): the CLI hands
    one to the wrapper, which imports nothing of the login side."""

    def begin(
        self,
        run: RunLog,
        job_id: str,
        argv: Sequence[str],
        environ: Mapping[str, str],
        record: Callable[..., Any],
        warn: Callable[[str], None],
    ) -> ChainStart | None:
        """A successor checks the guards and opens its ``## Job (resumed)`` block; every
        job submits its own successor. None: not a chained run (or an unreadable log: the
        job still runs)."""
        try:
            state = run.read()
        except Exception:
            return None
        chain = state.chain
        if chain is None:
            return None
        from hpcwrap.scheduler import get_scheduler

        workdir = workdir_of(state, run)
        start = ChainStart()
        unexpected = _unexpected(state, job_id, environ)
        if unexpected is not None:
            record(
                lifecycle.Chained(
                    now(),
                    pending=chain.pending,
                    stopped=None if chain.stopped or chain.pending else unexpected,
                    text=f"resume: job {job_id} did not start the training: {unexpected}",
                ),
                data={"job": job_id, "reason": unexpected},
            )
            return ChainStart(stop=True)
        if chain.pending == job_id:
            state = _check_guessed_end(run, state, job_id, record, get_scheduler("slurm"))
            choice = find_checkpoint(state, workdir, run)
            ckpt = choice.path
            decision = decide(
                state, job_id, ckpt, by_hand=chain.pending_by_hand, why_not=choice.why_not
            )
            if not decision.go or ckpt is None:
                record(
                    lifecycle.Chained(
                        now(),
                        stopped=decision.reason,
                        text=f"resume chain stopped: {decision.reason}; job {job_id} did not "
                        "start the training",
                        done=decision.done,
                    ),
                    data={"job": job_id, "reason": decision.reason},
                )
                return ChainStart(stop=True)
            n = chain.resumes + 1
            record(
                lifecycle.Resumed(
                    now(),
                    resumed_from=ckpt,
                    execution_id=job_id,
                    text=f"resumed: job {job_id} continues from `{ckpt}` "
                    f"(resume {n} of at most {chain.max_resumes})",
                ),
                data={"job": job_id, "checkpoint": ckpt, "resume": n},
            )
            start = ChainStart(
                argv=resume_argv(list(argv), chain, ckpt),
                child_env=chain_env(environ, chain, ckpt),
                resumed=(n + 1, state.results.start_train_loss),
            )
            resumes = n
        elif chain.pending is not None:
            # A successor already waits (this is a requeued attempt of its predecessor).
            return ChainStart(child_env=chain_env(environ, chain, None))
        else:
            start = ChainStart(child_env=chain_env(environ, chain, None))
            resumes = chain.resumes
        if chain.mode == "auto" and not chain.stopped and resumes < chain.max_resumes:
            try:
                successor = submit_successor(
                    run, get_scheduler("slurm"), environ, after=job_id, workdir=workdir
                )
            except Exception as exc:  # the job still trains; the chain says why it ends here
                warn(f"warning: could not submit the resume successor: {exc}")
                record(
                    lifecycle.Chained(
                        now(),
                        stopped=f"the successor could not be submitted: {exc}",
                        text=f"resume chain stopped: the successor could not be submitted: {exc}",
                    )
                )
            else:
                start = dataclasses.replace(start, successor=successor)
                record_successor(run, successor, job_id)
        return start

    def end(
        self,
        run: RunLog,
        job_id: str | None,
        final: str,
        unsure: str | None = None,
        submitted: str | None = None,
    ) -> None:
        """A job that did not end at its limit cancels the waiting successor (a completed
        run, a crash, a user's scancel stop the chain). Where the end is only a guess
        (``unsure``: a TERM whose time left was unknown may be the time limit), the
        successor is left waiting: before it trains it asks Slurm how the job ended.
        ``submitted``: the successor this job submitted, cancelled on such an end even
        when the log cannot be read or does not name it."""
        from hpcwrap.scheduler import get_scheduler

        ended = endings.parse(final)
        if ended is endings.JobState.REQUEUED:
            return  # it runs again under its id (Lightning's requeue): the chain stands aside
        resumable = ended is not None and ended.resumable
        try:
            state = run.read()
        except Exception:
            if submitted is not None and not resumable and not unsure:
                cancel_successor(get_scheduler("slurm"), submitted)
            return
        chain = state.chain
        if chain is None:
            return
        if submitted is not None and submitted != chain.pending and not chain.stopped:
            if resumable or unsure:  # its submission went unrecorded: the chain waits for it
                record_successor(run, submitted, job_id)
                chain.pending = submitted
            else:
                cancel_successor(get_scheduler("slurm"), submitted)
        if chain.stopped:
            if submitted is not None:  # a stopped chain goes nowhere: its successor neither
                cancel_successor(get_scheduler("slurm"), submitted)
            return
        if resumable:
            if chain.pending is None and chain.mode == "auto":
                stop_chain(run, f"--max-resumes {chain.max_resumes} reached")
            return
        if unsure and chain.pending is not None:
            run.record(
                lifecycle.Chained(
                    now(),
                    pending=chain.pending,
                    text=f"resume: successor job {chain.pending} left waiting: job {job_id} "
                    f"reads {final} but {unsure}; the successor asks Slurm before it trains",
                ),
                event="chain",
            )
            return
        reason = f"job {job_id} ended {final}"
        if chain.pending is not None:
            problem = cancel_successor(get_scheduler("slurm"), chain.pending)
            if problem is None:
                reason += f"; successor job {chain.pending} cancelled"
            else:
                reason += f"; successor job {chain.pending} NOT cancelled ({problem})"
        stop_chain(run, reason, done=ended is endings.JobState.COMPLETED)


__all__ = [
    "ENV_FROM",
    "ChainStart",
    "Decision",
    "JobChain",
    "cancel_run",
    "cancel_successor",
    "capped_lead",
    "chain_env",
    "decide",
    "find_checkpoint",
    "new_chain",
    "record_successor",
    "resume_argv",
    "resume_by_hand",
    "stop_chain",
    "submit_successor",
    "workdir_of",
]
