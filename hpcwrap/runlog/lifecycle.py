"""Every change of a run's state, as pure functions, and the one set of evidence rules.

Writers (``hpcwrap sbatch``, the in-job wrapper, the epilog hook, poll,
resume) never edit run-log state by hand: they describe what they saw as a
*facts* object and call ``RunLog.record(facts)``, which applies ``apply`` under
the run's lock. ``apply(state, facts)`` returns a new ``RunState`` and leaves
its input untouched, so every rule here is tested without files or processes.

The transitions: ``Described`` (machine facts about what the run is),
``Submitted``, ``SubmitFailed``, ``Started`` (a first start, or
a restart after a requeue), ``SignalReceived`` (walltime warning, TERM),
``ProgressObserved`` (a Status entry), ``Ended`` (the verdict of runlog/endings.py
and who saw it), ``Requeued``, ``Resumed`` (a new ``## Job (resumed)`` block),
``Chained`` (a successor submitted or cancelled, the chain stopped) and
``Reconciled`` (the scheduler's answer for a run whose log may be stale);
``Published`` comes from ``hpcwrap publish record``, ``Plotted`` from ``hpcwrap plot``;
``WandbFound`` and ``WandbSynced`` come from ``hpcwrap wandb sync``; ``FiguresRead``
(Results' figures from a record other than the output, where the log has none) from
``hpcwrap wandb sync`` (the offline history) and ``hpcwrap scan --into``.

Evidence rules (the verdicts themselves come from ``runlog/endings.classify``):

- A job block keeps hpcwrap's reading of why the job ended (``state``: one word
  of ``STATES``) apart from Slurm's own account (``slurm_state``, ``slurm_exit``
  as sacct prints them); where the two differ, ``state_note`` says why.
- A final state is replaced only by a stronger verdict (``Strength``, kept as the
  block's ``state_basis``): Slurm's own word > the epilog's reading of slurmstepd's
  lines > the exit status > the wrapper's guess from a TERM; hpcwrap's own word
  (a walltime-warning exit, a memory kill) stands over Slurm's. A non-final state is
  always replaced by a final one. The scheduler is always right about *whether* a
  job is over, its exit code and its times.
- The same end reported twice gives one Status entry.
- A requeue is REQUEUED, not CANCELLED: the restart of the same job id (a higher
  restart count) proves it, over a cancel read from the TERM.
"""

from __future__ import annotations

import contextlib
import copy
import enum
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from hpcwrap.errors import TransitionError
from hpcwrap.runlog import arrays, endings
from hpcwrap.runlog.facts import ChainFacts, CodeFacts, ConfigFacts, SubmitFacts
from hpcwrap.runlog.model import JobBlock, Results, RunState, StatusEntry
from hpcwrap.runlog.telemetry import TelemetryFacts

# A TERM with little time left is the limit (see runlog/endings.py, where ends are decided).
NEAR_LIMIT = endings.NEAR_LIMIT
FINAL_STATES = endings.FINAL_STATES
STATES = endings.STATES
PROLOG = endings.PROLOG  # state_source of a start the node prolog recorded
JobState = endings.JobState
Strength = endings.Strength
from_slurm = endings.from_slurm
is_final = endings.is_final
sacct_exit = endings.sacct_exit
slurm_account = endings.slurm_account


class Source(enum.IntEnum):
    """Who saw an end (recorded as ``state_source``); how good the evidence was is the
    verdict's ``Strength`` (``state_basis``), which decides what replaces what."""

    SCHEDULER = 1
    EPILOG = 2
    WRAPPER = 3

    @classmethod
    def of(cls, name: str | None) -> Source:
        """The source recorded on a block; a final state without one came from the wrapper
        (every writer before this module was the wrapper or the submitter)."""
        if name == PROLOG:
            return cls.EPILOG  # the node hooks rank alike
        try:
            return cls[name.upper()] if name else cls.WRAPPER
        except KeyError:
            return cls.WRAPPER

    @property
    def strength(self) -> Strength:
        """The strength of an end this source recorded without saying how it knew (and of
        blocks written before verdicts carried one: the old order, wrapper first)."""
        return {
            Source.SCHEDULER: Strength.SLURM,
            Source.EPILOG: Strength.READING,
            Source.WRAPPER: Strength.EXIT,
        }[self]


def basis_of(job: JobBlock) -> Strength:
    """How strong the evidence behind the block's state is."""
    found = Strength.named(job.state_basis)
    if found is not None:
        return found
    if job.state_source is None or Source.of(job.state_source) is Source.WRAPPER:
        return Strength.OWN  # written before verdicts had a strength: the wrapper ranked first
    return Source.of(job.state_source).strength


# ---------------------------------------------------------------- facts


@dataclass(frozen=True)
class Submitted:
    """sbatch accepted the job and printed its id."""

    when: datetime
    job_id: str
    execution_id: str  # ``12`` or ``12_[0-3]`` for an array
    cluster: str | None = None
    output_path: str | None = None  # the output file with the job id filled in
    error_path: str | None = None


@dataclass(frozen=True)
class Described:
    """Machine facts about what the run is, learnt after the log was created: the code
    state's diff and experiment tag, the copied config, the effective sbatch settings."""

    code: CodeFacts | None = None  # each given one replaces what was recorded
    config: ConfigFacts | None = None
    submit: SubmitFacts | None = None
    chain: ChainFacts | None = None
    code_line: str | None = None  # the Config ``code`` line, when those facts change it


@dataclass(frozen=True)
class Published:
    """``hpcwrap publish record``: the checkpoints went public; the ``## HuggingFace`` section.

    ``verdict_reason`` is SIGNOFF.json's, copied verbatim (given for ``soft_signal``).
    """

    repo: str
    uploaded: str
    includes: str
    verdict: str
    verdict_reason: str | None = None


@dataclass(frozen=True)
class SubmitFailed:
    """No job: sbatch refused, was missing, or the submission was interrupted."""

    when: datetime
    message: str
    code: CodeFacts | None = None  # the code facts after the experiment tag was removed
    code_line: str | None = None  # the Config ``code`` line after the tag went


@dataclass(frozen=True)
class Started:
    """The wrapper started the command (a first start, or a restart after a requeue)."""

    when: datetime
    execution_id: str
    nodes: str | None = None
    in_slurm: bool = False
    restart_count: int | None = None
    cluster: str | None = None
    array: arrays.ArrayTask | None = None  # set for an array task
    text: str | None = None  # a Status entry to add (array tasks say which task started)
    limit_at: datetime | None = None  # when the job's time limit falls
    by_prolog: bool = False  # the node prolog saw the start (before any wrapper ran)
    sluid: str | None = None  # Slurm's unique id of this run (26.05 on)


@dataclass(frozen=True)
class SignalReceived:
    """A signal reached the wrapper: ``walltime`` warning, ``terminate``, ``kill`` (grace over)."""

    when: datetime
    kind: str
    signal: str
    text: str | None = None  # the Status entry; None for a repeat that only goes to events


@dataclass(frozen=True)
class ProgressObserved:
    """A Status entry backed by what the run printed (step, loss, a checkpoint, an error)."""

    when: datetime
    text: str


@dataclass(frozen=True)
class ResultFacts:
    """What the end writes into Results (None: nothing new seen)."""

    final_step: int | None = None
    first_loss: float | None = None
    loss: float | None = None
    first_val_loss: float | None = None
    val_loss: float | None = None
    one_liner: str | None = None
    checkpoint: str | None = None
    config_snapshot: str | None = None
    config_fallback: str | None = None  # the submitted --config copy, when no snapshot is known
    has_progress: bool = False
    telemetry: TelemetryFacts | None = None  # the sampled GPU/CPU/disk summary
    # The losses as printed (``3.0000``), shown in Results in place of the floats.
    first_loss_text: str | None = None
    loss_text: str | None = None
    first_val_loss_text: str | None = None
    val_loss_text: str | None = None
    config_copy: str | None = None  # hpcwrap's copy of the config snapshot (sidecar)
    # Which figures came from the framework's own records, not the output (job/records).
    figures_from: str | None = None


@dataclass(frozen=True)
class Ended:
    """The run's command (or its job) ended; ``source`` says who saw it."""

    when: datetime
    state: str
    source: Source
    execution_id: str
    exit_code: int | None = None
    start: datetime | None = None  # the attempt's start, to find its block
    nodes: str | None = None
    text: str | None = None  # the Status entry
    results: ResultFacts | None = None
    next_steps: tuple[str, ...] = ()
    wandb_local: str | None = None
    wandb_url: str | None = None
    array: arrays.ArrayTask | None = None
    task_prefix: str = ""  # "task 2: " for an array task
    # Slurm's account (as sacct will print it), where the writer knows it.
    slurm_state: str | None = None
    slurm_exit: str | None = None
    # How strong the evidence is (endings.classify); None: the source's default.
    strength: Strength | None = None


@dataclass(frozen=True)
class Requeued:
    """Slurm requeued the job: the attempt is over, the same job id will run again."""

    when: datetime
    execution_id: str
    source: Source = Source.SCHEDULER
    text: str | None = None


@dataclass(frozen=True)
class Resumed:
    """A successor job continues the run: a new ``## Job (resumed)`` block."""

    when: datetime
    resumed_from: str | None
    execution_id: str | None = None
    text: str | None = None  # a Status entry: which job continues from what
    # The training's own word (a console line), not a chain's successor: it names what
    # this job's newest block continued from, when nothing named it yet; no new block.
    said: bool = False


@dataclass(frozen=True)
class Chained:
    """The resume chain changed: a successor was submitted, cancelled, or the chain stopped."""

    when: datetime
    pending: str | None = None  # the successor now waiting (None: none waits any more)
    stopped: str | None = None  # why the chain stopped (recorded in Status too)
    text: str | None = None
    by_hand: bool = False  # the successor was submitted by `hpcwrap resume`
    restart: bool = False  # `hpcwrap resume` starts the chain again after a stop
    done: bool = False  # stopped because a job of the chain completed the training


@dataclass(frozen=True)
class Reconciled:
    """The scheduler's account of a job (squeue/sacct), for a log that may be stale."""

    when: datetime
    execution_id: str
    slurm_state: str  # as sacct prints it: ``CANCELLED by 1000``
    slurm_exit: str | None = None  # ``124:0``
    start: datetime | None = None
    end: datetime | None = None
    nodes: str | None = None
    reason: str | None = None  # squeue's reason a pending job waits (Priority, Resources, ...)
    # A Status entry for a change of a job not yet over (SUBMITTED -> PENDING, a new
    # pending reason, PENDING -> RUNNING); added only when something did change.
    text: str | None = None


@dataclass(frozen=True)
class Plotted:
    """``hpcwrap plot`` drew the run's curves into ``path`` (relative to the run log)."""

    path: str


@dataclass(frozen=True)
class WandbFound:
    """Offline W&B runs found by looking in the run's working folder (the training's output
    did not name them): each ``(execution_id, folder)`` goes to that job block."""

    when: datetime
    pieces: tuple[tuple[str | None, str], ...]


@dataclass(frozen=True)
class WandbSynced:
    """``hpcwrap wandb sync`` uploaded the offline runs ``locals`` as the one run at ``url``."""

    when: datetime
    url: str
    locals: tuple[str, ...]
    public_url: str | None = None  # the same run mirrored to a public project
    text: str | None = None  # a Status entry


@dataclass(frozen=True)
class FiguresRead:
    """Results' figures read from another record than the job's output (W&B offline
    history, ``hpcwrap scan --into``); applied only where the log has no losses yet."""

    results: ResultFacts
    source: str  # where the figures came from, as the log says it


Facts = (
    Described
    | Published
    | Submitted
    | SubmitFailed
    | Started
    | SignalReceived
    | ProgressObserved
    | Ended
    | Requeued
    | Resumed
    | Chained
    | Reconciled
    | Plotted
    | WandbFound
    | WandbSynced
    | FiguresRead
)

EVENT_KIND: dict[type, str] = {
    Described: "described",
    Published: "published",
    Submitted: "submitted",
    SubmitFailed: "submit_failed",
    Started: "started",
    SignalReceived: "signal",
    ProgressObserved: "status",
    Ended: "ended",
    Requeued: "requeued",
    Resumed: "resumed",
    Chained: "chained",
    Reconciled: "reconciled",
    Plotted: "plotted",
    WandbFound: "wandb_found",
    WandbSynced: "wandb_synced",
    FiguresRead: "figures_read",
}


# ---------------------------------------------------------------- helpers


def _block_for(state: RunState, execution_id: str | None) -> JobBlock | None:
    """The newest block of this execution (or a not yet named one)."""
    for job in reversed(state.jobs):
        if execution_id is not None and job.execution_id == execution_id:
            return job
    if state.jobs and state.jobs[-1].execution_id is None:
        return state.jobs[-1]
    return None


def _is_this_attempt(job: JobBlock, execution_id: str, start: datetime | None = None) -> bool:
    """``job`` is the block of the attempt that started at ``start`` (None: one not started).

    A start the scheduler filled in (a poll saw the job running before the wrapper
    wrote) does not make the block another attempt's.
    """
    if job.execution_id not in (None, execution_id):
        return False
    if job.start is None or job.start == start:
        return True
    # A start the scheduler or the prolog filled in: the wrapper's start adopts it.
    return job.state_source in ("scheduler", PROLOG) and not is_final(job.state)


def _same_job(block_id: str | None, job_id: str) -> bool:
    """``12_[0-3]`` and ``12`` name the same submission; ``12`` and ``123`` do not."""
    if block_id is None:
        return True
    return block_id == job_id or block_id.startswith(f"{job_id}_")


def state_note(job: JobBlock) -> str | None:
    """One short clause on why hpcwrap's state and Slurm's differ (None when they agree)."""
    if not job.slurm_state or not job.state:
        return None
    try:
        slurm: str = from_slurm(job.slurm_state)
    except TransitionError:
        slurm = job.slurm_state
    if slurm == job.state or not is_final(slurm):
        return None
    code = (job.slurm_exit or "").split(":")[0]
    if job.state == JobState.TIMEOUT and slurm in (JobState.FAILED, JobState.COMPLETED):
        return f"the training stopped on the walltime warning and exited {code or 'non-zero'}"
    if job.state == JobState.TIMEOUT and slurm == JobState.CANCELLED:
        return "the TERM came at the time limit"
    if job.state == JobState.CANCELLED and slurm == JobState.FAILED:
        return "the training exited non-zero after a TERM"
    if job.state == JobState.OUT_OF_MEMORY:
        return "an out-of-memory kill was seen in the output"
    if job.state == JobState.REQUEUED:
        return "the job was requeued and ran again"
    source = Source.of(job.state_source).name.lower()
    return f"hpcwrap's reading from what the {source} saw"


def _set_end(job: JobBlock, state: str, source: Source, strength: Strength | None = None) -> bool:
    """Apply the ranking (runlog/endings.py); True when ``state`` became the block's state.

    A non-final state is always replaced by a final one and never replaces one; a final
    state is replaced only by a stronger verdict."""
    if state not in STATES:
        raise TransitionError(f"unknown state {state!r} (one of {', '.join(sorted(STATES))})")
    strength = strength if strength is not None else source.strength
    current = job.state
    if current == state:
        if is_final(state) and strength > basis_of(job):
            job.state_source, job.state_basis = source.name.lower(), strength.name.lower()
        return False
    if is_final(current) and (not is_final(state) or strength <= basis_of(job)):
        return False
    job.state = state
    job.state_source = source.name.lower()
    job.state_basis = strength.name.lower() if is_final(state) else None
    return True


def _merge_next(state: RunState, drafted: Sequence[str]) -> None:
    """Next: the person's lines kept, hpcwrap's earlier drafts replaced by these."""
    kept = [n for n in state.next if n not in state.next_drafted]
    state.next = kept + [s for s in drafted if s not in kept]
    state.next_drafted = list(drafted)


def _fill_results(state: RunState, r: ResultFacts, prefix: str, array_task: str | None) -> None:
    _telemetry(state, r)
    res = state.results
    if array_task is not None and r.has_progress:
        # The last task with progress gives all of Results: never one task's start
        # loss beside another's end loss.
        state.results = res = Results()
        state.array_results_task = array_task
        res.checkpoint = r.checkpoint
    if r.final_step is not None:
        res.final_step = r.final_step
    if res.start_train_loss is None and r.first_loss is not None:
        res.start_train_loss, res.start_train_loss_text = r.first_loss, r.first_loss_text
    if r.loss is not None:
        res.end_train_loss, res.end_train_loss_text = r.loss, r.loss_text
    if res.start_val_loss is None and r.first_val_loss is not None:
        res.start_val_loss, res.start_val_loss_text = r.first_val_loss, r.first_val_loss_text
    if r.val_loss is not None:
        res.end_val_loss, res.end_val_loss_text = r.val_loss, r.val_loss_text
    # A loss_one_liner a person wrote (in the file, or in a log kept by hand) stays.
    mine = res.loss_one_liner is None or res.loss_one_liner == state.one_liner_drafted
    if r.one_liner and mine:
        res.loss_one_liner = prefix + r.one_liner
        state.one_liner_drafted = res.loss_one_liner
    if r.checkpoint:
        res.checkpoint = r.checkpoint
    if r.config_snapshot:
        res.config_snapshot = r.config_snapshot
    elif res.config_snapshot is None and r.config_fallback is not None and not r.config_copy:
        res.config_snapshot = r.config_fallback
    if r.config_copy:
        res.config_copy = r.config_copy
    if r.figures_from:
        res.figures_from = r.figures_from


# ---------------------------------------------------------------- transitions
# Each takes the state to change in place (a copy made by ``apply``) and the facts.


def _telemetry(state: RunState, r: ResultFacts) -> None:
    if r.telemetry is not None:
        plot = state.telemetry.plot if state.telemetry is not None else None
        state.telemetry = copy.deepcopy(r.telemetry)
        if state.telemetry.plot is None:
            state.telemetry.plot = plot


def _described(state: RunState, f: Described) -> None:
    if f.code is not None:
        state.code_state = copy.deepcopy(f.code)
    if f.config is not None:
        state.config_facts = copy.deepcopy(f.config)
    if f.submit is not None:
        state.submit = copy.deepcopy(f.submit)
    if f.chain is not None:
        state.chain = copy.deepcopy(f.chain)
    if f.code_line is not None:
        state.code = f.code_line


def _published(state: RunState, f: Published) -> None:
    verdict = f"`{f.verdict}`"
    if f.verdict_reason:
        verdict += f" — verdict_reason: {f.verdict_reason}"
    hf = dict(state.huggingface)  # a person's own lines in the section stay
    hf.update(
        {
            "repo": f.repo,
            "uploaded checkpoints": f.uploaded,
            "includes": f.includes,
            "signoff verdict": verdict,
        }
    )
    state.huggingface = hf


def _submitted(state: RunState, f: Submitted) -> None:
    job = next(
        (
            j
            for j in reversed(state.jobs)
            if not is_final(j.state) and _same_job(j.execution_id, f.job_id)
        ),
        None,
    )
    if job is None:
        job = JobBlock()
        state.jobs.append(job)
    # Fill, never replace: on a fast cluster the job's own wrapper may already
    # have written start/node/RUNNING into this block.
    job.execution_id = f.execution_id  # ours names the whole array: 12_[0-3]
    job.cluster = job.cluster or f.cluster
    job.submitted = job.submitted or f.when
    if job.state is None:
        job.state, job.state_source = JobState.SUBMITTED, Source.WRAPPER.name.lower()
    submit = copy.deepcopy(state.submit) if state.submit is not None else SubmitFacts()
    submit.job_id = f.job_id
    submit.output_path = f.output_path or submit.output_path
    submit.error_path = f.error_path or submit.error_path
    state.submit = submit


def _submit_failed(state: RunState, f: SubmitFailed) -> None:
    job = JobBlock(
        submitted=f.when,
        state=JobState.SUBMIT_FAILED,
        submit_error=f.message,
        state_source=Source.WRAPPER.name.lower(),
    )
    if state.jobs and not is_final(state.jobs[-1].state) and state.jobs[-1].start is None:
        state.jobs[-1] = job  # the block this submission was for
    else:
        state.jobs.append(job)
    if f.code is not None:
        state.code_state = copy.deepcopy(f.code)
    if f.code_line is not None:
        state.code = f.code_line


def _started(state: RunState, f: Started) -> None:
    if f.array is not None:
        arrays.record_task_start(state, f.array, f.when)
        if f.text:
            state.status.append(StatusEntry(f.when, f.text))
        return
    job = state.jobs[-1] if state.jobs else None
    # A higher restart count is a new attempt even where the last block was opened by
    # the prolog and never closed (an attempt requeued before its wrapper started).
    restarted = (
        job is not None
        and job.execution_id == f.execution_id
        and f.restart_count is not None
        and f.restart_count > (job.restart_count or 0)
    )
    if job is None or restarted or not _is_this_attempt(job, f.execution_id):
        if restarted and job is not None and job.state in (None, JobState.CANCELLED):
            # the restart proves the requeue: Slurm ran the job again (over a cancel read
            # from a TERM, or from a batch step that never launched)
            _set_end(job, JobState.REQUEUED, Source.WRAPPER, Strength.SLURM)
        elif restarted and job is not None and not is_final(job.state):
            _set_end(job, JobState.REQUEUED, Source.WRAPPER, Strength.SLURM)
        job = JobBlock(execution_id=f.execution_id)
        state.jobs.append(job)
    job.execution_id = job.execution_id or f.execution_id
    if f.by_prolog and job.state == JobState.RUNNING and job.state_source == "wrapper":
        return  # the wrapper's own start came first: it stands
    job.start, job.end, job.exit_code = f.when, None, None
    job.state, job.state_basis = JobState.RUNNING, None
    job.state_source = PROLOG if f.by_prolog else Source.WRAPPER.name.lower()
    job.node = f.nodes
    job.limit_at = f.limit_at or job.limit_at
    if f.in_slurm:
        job.restart_count = f.restart_count
        if f.cluster and not job.cluster:
            job.cluster = f.cluster
        job.sluid = f.sluid or job.sluid
    if f.text:
        state.status.append(StatusEntry(f.when, f.text))


def _signal_received(state: RunState, f: SignalReceived) -> None:
    if f.text:
        state.status.append(StatusEntry(f.when, f.text))


def _progress_observed(state: RunState, f: ProgressObserved) -> None:
    state.status.append(StatusEntry(f.when, f.text))


def _ended(state: RunState, f: Ended) -> None:
    array_final: JobBlock | None = None
    if f.array is not None:
        job, all_ended = arrays.record_task_end(
            state,
            f.array,
            f.start or f.when,
            f.when,
            f.state,
            f.exit_code if f.exit_code is not None else 1,
            f.next_steps,
        )
        array_final = job if all_ended else None
    else:
        found = _block_for(state, f.execution_id)
        if (
            found is not None
            and f.start is not None
            and not _is_this_attempt(found, f.execution_id, f.start)
        ):
            # a later attempt (a requeue) runs in the newest block: find ours by its start
            found = next((j for j in reversed(state.jobs) if j.start == f.start), None)
        if found is None:
            found = JobBlock(execution_id=f.execution_id, start=f.start, node=f.nodes)
            state.jobs.append(found)
        job = found
        was_final = is_final(job.state)
        new_end = _set_end(job, f.state, f.source, f.strength)
        if not new_end and was_final:
            # the same end reported again, or weaker evidence: one entry; Slurm's account
            # (the epilog's confirmation) goes beside it where none was known
            if f.slurm_state is not None and job.slurm_state is None:
                job.slurm_state, job.slurm_exit = f.slurm_state, f.slurm_exit
                job.state_note = state_note(job)
            return
        job.execution_id = job.execution_id or f.execution_id
        job.start = job.start or f.start
        job.node = job.node or f.nodes
        if job.end is None or not was_final:
            job.end = f.when  # a better reading of an end keeps the time it was seen
        if f.exit_code is not None and (
            job.exit_code is None or not was_final or f.source is Source.WRAPPER
        ):
            job.exit_code = f.exit_code  # the command's own exit, where the wrapper saw it
        if f.slurm_state is not None:
            job.slurm_state, job.slurm_exit = f.slurm_state, f.slurm_exit
        job.state_note = state_note(job)
    if f.wandb_local:
        job.wandb_local = job.wandb_local or f.wandb_local
        state.wandb_local = state.wandb_local or f.wandb_local
    if f.wandb_url:
        job.wandb_synced = job.wandb_synced or f.wandb_url
        state.wandb_synced = state.wandb_synced or f.wandb_url
    if f.results is not None:
        _fill_results(
            state,
            f.results,
            f.task_prefix,
            f.array.array_task_id if f.array is not None else None,
        )
    drafted = arrays.drafted_next(state) if f.array is not None else list(f.next_steps)
    if f.results is not None or drafted:
        _merge_next(state, drafted)
    if f.text:
        state.status.append(StatusEntry(f.when, f.text))
    if array_final is not None and f.array is not None:
        # at the array's end, which a task that wrote before us may have set
        summary = arrays.summary_text(state, f.array, array_final)
        state.status.append(StatusEntry(array_final.end or f.when, summary))


def _requeued(state: RunState, f: Requeued) -> None:
    job = _block_for(state, f.execution_id)
    if job is None:
        return
    if _set_end(job, JobState.REQUEUED, f.source):
        job.end = job.end or f.when
        job.state_note = state_note(job)
        if f.text:
            state.status.append(StatusEntry(f.when, f.text))


def _resumed(state: RunState, f: Resumed) -> None:
    if f.said:
        said = next((j for j in reversed(state.jobs) if j.execution_id == f.execution_id), None)
        if said is not None and said.resumed_from is None:
            said.resumed_from = f.resumed_from
            if f.text:
                state.status.append(StatusEntry(f.when, f.text))
        return
    block = None
    if f.execution_id is not None:
        # the successor's own block, if the node prolog (or a poll) already opened it
        block = next((j for j in state.jobs if j.execution_id == f.execution_id), None)
    if block is None or is_final(block.state):
        block = JobBlock(execution_id=f.execution_id, submitted=f.when)
        state.jobs.append(block)
    block.submitted = block.submitted or f.when
    block.resumed_from = f.resumed_from
    if state.chain is not None:
        chain = copy.deepcopy(state.chain)
        chain.resumes += 1
        if chain.pending == f.execution_id:
            chain.pending, chain.pending_by_hand = None, False
        state.chain = chain
    if f.text:
        state.status.append(StatusEntry(f.when, f.text))


def _chained(state: RunState, f: Chained) -> None:
    chain = copy.deepcopy(state.chain) if state.chain is not None else ChainFacts()
    chain.pending = f.pending
    if f.pending is not None and f.pending not in chain.successors:
        chain.successors = [*chain.successors, f.pending]
    chain.pending_by_hand = f.by_hand if f.pending is not None else False
    if f.restart:
        chain.stopped, chain.done = None, False
    if f.stopped is not None and chain.stopped is None:
        # A chain stops once and its first reason stands (its Status entries all stay):
        # `hpcwrap cancel` records the person's stop before its scancel, and the cancelled
        # job's own end, which read the chain a moment earlier, must not replace it.
        chain.stopped, chain.done = f.stopped, f.done
    state.chain = chain
    if f.text:
        state.status.append(StatusEntry(f.when, f.text))


def _reconciled(state: RunState, f: Reconciled) -> None:
    job = _block_for(state, f.execution_id)
    if job is None:
        return
    if f.start is not None and job.start is not None and job.start != f.start:
        # an earlier attempt of a requeued job, named by its exact start (the epilog's
        # confirmation of the attempt it ran after), not the newest attempt's block
        job = next(
            (j for j in state.jobs if j.execution_id == f.execution_id and j.start == f.start),
            job,
        )
    word = from_slurm(f.slurm_state)
    if is_final(word):  # a passing PENDING/RUNNING would go stale beside a later end
        job.slurm_state = endings.slurm_word(f.slurm_state)
        job.slurm_exit = f.slurm_exit or job.slurm_exit
    # The scheduler is right about times and the exit code; fill what is missing.
    job.start = job.start or f.start
    job.node = job.node or f.nodes
    if is_final(word):
        if job.exit_code is None and f.slurm_exit:
            with contextlib.suppress(ValueError):
                job.exit_code = int(f.slurm_exit.split(":")[0])
        earlier = job.state if is_final(job.state) else None
        if _set_end(job, word, Source.SCHEDULER):
            job.end = job.end or f.end or f.when
            state.status.append(
                StatusEntry(f.end or f.when, _reconciled_text(job, f.slurm_state, earlier))
            )
        elif job.end is None:
            job.end = f.end
    elif not is_final(job.state):
        before = (job.state, job.pending_reason)
        _set_end(job, word, Source.SCHEDULER)
        job.pending_reason = f.reason if word == JobState.PENDING else None
        if f.text and (job.state, job.pending_reason) != before:
            state.status.append(StatusEntry(f.when, f.text))
    if is_final(job.state):
        job.pending_reason = None
    job.state_note = state_note(job)


def _reconciled_text(job: JobBlock, slurm_state: str, before: str | None = None) -> str:
    code = f", exit {job.slurm_exit}" if job.slurm_exit else ""
    word = endings.parse(job.state)
    head = f"{word.word if word else 'ended'} (from the scheduler: {slurm_state}{code})"
    if before is not None:
        was = endings.parse(before)
        return f"{head}; replaces the earlier reading ({was.word if was else before})"
    return f"{head}; the wrapper did not record the end"


def _plotted(state: RunState, f: Plotted) -> None:
    if state.telemetry is None:
        state.telemetry = TelemetryFacts()
    state.telemetry.plot = f.path


def _wandb_found(state: RunState, f: WandbFound) -> None:
    for execution_id, local in f.pieces:
        job = next((j for j in state.jobs if j.execution_id == execution_id), None)
        if job is not None and not job.wandb_local:
            job.wandb_local = local  # what the output named stays
    named = [j.wandb_local for j in state.jobs if j.wandb_local]
    state.wandb_local = state.wandb_local or (named[0] if named else None)


def _wandb_synced(state: RunState, f: WandbSynced) -> None:
    # Replaced, not filled: a forced sync again gives the run's new URL.
    for job in state.jobs:
        if job.wandb_local and job.wandb_local in f.locals:
            job.wandb_synced = f.url
    state.wandb_synced = f.url
    state.wandb_local = state.wandb_local or (f.locals[0] if f.locals else None)
    if f.public_url:
        state.wandb_public = f.public_url
    if f.text:
        state.status.append(StatusEntry(f.when, f.text))


def _figures_read(state: RunState, f: FiguresRead) -> None:
    res, r = state.results, f.results
    printed = any(
        v is not None for v in (res.start_train_loss, res.end_train_loss, res.end_val_loss)
    )
    if printed:
        return  # what the training printed stands
    res.start_train_loss, res.start_train_loss_text = r.first_loss, r.first_loss_text
    res.end_train_loss, res.end_train_loss_text = r.loss, r.loss_text
    res.start_val_loss, res.start_val_loss_text = r.first_val_loss, r.first_val_loss_text
    res.end_val_loss, res.end_val_loss_text = r.val_loss, r.val_loss_text
    if res.final_step is None:
        res.final_step = r.final_step
    res.figures_from = f.source


_APPLY: dict[type, Any] = {
    Described: _described,
    Published: _published,
    Submitted: _submitted,
    SubmitFailed: _submit_failed,
    Started: _started,
    SignalReceived: _signal_received,
    ProgressObserved: _progress_observed,
    Ended: _ended,
    Requeued: _requeued,
    Resumed: _resumed,
    Chained: _chained,
    Reconciled: _reconciled,
    Plotted: _plotted,
    WandbFound: _wandb_found,
    WandbSynced: _wandb_synced,
    FiguresRead: _figures_read,
}


def apply(state: RunState, facts: Facts) -> RunState:
    """The state after ``facts``; ``state`` itself is not changed."""
    new = copy.deepcopy(state)
    apply_in_place(new, facts)
    return new


def apply_in_place(state: RunState, facts: Facts) -> None:
    """``apply`` on ``state`` itself (``RunLog.record`` uses it on the copy it holds locked)."""
    try:
        step = _APPLY[type(facts)]
    except KeyError:
        raise TransitionError(f"not a transition: {type(facts).__name__}") from None
    step(state, facts)


def event_kind(facts: Facts) -> str:
    return EVENT_KIND[type(facts)]


def replace_state(target: RunState, new: RunState) -> None:
    """Make ``target`` equal to ``new`` field by field (for callers holding ``target``)."""
    for f in fields(RunState):
        setattr(target, f.name, getattr(new, f.name))


__all__ = [
    "FINAL_STATES",
    "NEAR_LIMIT",
    "STATES",
    "Chained",
    "Described",
    "Ended",
    "Facts",
    "FiguresRead",
    "JobState",
    "Plotted",
    "ProgressObserved",
    "Published",
    "Reconciled",
    "Requeued",
    "ResultFacts",
    "Resumed",
    "SignalReceived",
    "Source",
    "Started",
    "Strength",
    "SubmitFailed",
    "Submitted",
    "TransitionError",
    "WandbFound",
    "WandbSynced",
    "apply",
    "apply_in_place",
    "basis_of",
    "event_kind",
    "from_slurm",
    "is_final",
    "replace_state",
    "sacct_exit",
    "slurm_account",
    "state_note",
]
