"""How a job ended: the one place that decides it, for every writer.

The wrapper, the epilog, poll, the follow-up job and resume only gather what they saw
(an ``Evidence``) and call ``classify``; the lifecycle keeps the strongest verdict a
job block was given. Everything else reads the ``JobState`` members' attributes
(``final``, ``failed``, ``resumable``, ``word``) instead of keeping its own set of
state words.

Evidence ranks (``Strength``), weakest first:

1. ``GUESS``: read from when a TERM came (a cancel, or the limit when the time left
   was about nil); from inside, a scancel, a requeue and a node failure look alike.
2. ``EXIT``: the exit status alone (COMPLETED for 0, FAILED otherwise).
3. ``READING``: the epilog's reading of what Slurm left: slurmstepd's ``CANCELLED AT
   ... DUE TO ...`` line for this attempt, a higher restart count, the limit passed.
4. ``SLURM``: Slurm's own word (sacct, squeue).
5. ``OWN``: hpcwrap's own word where the docs define one that differs from sacct's:
   a training that saved on the walltime warning and exited non-zero is TIMEOUT (sacct:
   FAILED 124:0); a memory-limit kill slurmstepd or the kernel reported is
   OUT_OF_MEMORY (sacct: FAILED 0:9 where memory is enforced without cgroups).

A verdict replaces a block's final state only when it is stronger; the scheduler is
always right about whether a job is over, and Slurm's account (``slurm_state``,
``slurm_exit``, as sacct prints them) is kept beside hpcwrap's word.

To add an end cause: a member (and its ``_TRAITS`` row) here, its Slurm names, the
line that shows it (``SLURM_LINES`` / ``_STEPD_CAUSES``) and a ``classify`` rule, a row
of the unit table in tests/unit/test_runlog_endings.py and of the cluster kill matrix
(tests/cluster/test_kill_matrix.py).
"""

from __future__ import annotations

import enum
import re
import signal as _signal
from dataclasses import dataclass
from typing import NamedTuple

from hpcwrap.errors import TransitionError


class JobState(str, enum.Enum):
    """A job block's state in hpcwrap's words (Slurm's end states, each its own).

    A ``str``: members compare equal to the words state.json stores and serialise as them.
    """

    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    DEADLINE = "DEADLINE"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    BOOT_FAIL = "BOOT_FAIL"
    PREEMPTED = "PREEMPTED"
    REQUEUED = "REQUEUED"
    SUBMIT_FAILED = "SUBMIT_FAILED"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def final(self) -> bool:
        """The attempt is over (a REQUEUED attempt is; its job runs again in a new block)."""
        return _TRAITS[self].final

    @property
    def failed(self) -> bool:
        """The training or its node failed (Next: look at the error before resuming)."""
        return _TRAITS[self].failed

    @property
    def resumable(self) -> bool:
        """Stopped by the scheduler with work left: a successor continues from a checkpoint."""
        return _TRAITS[self].resumable

    @property
    def word(self) -> str:
        """How a sentence says it: ``out of memory``, ``node failure``."""
        return _TRAITS[self].word

    @property
    def tone(self) -> str:
        """How a report colours it: ok, active, waiting, bad, stopped."""
        return _TRAITS[self].tone

    @property
    def slurm_names(self) -> tuple[str, ...]:
        """The Slurm job-state words (sacct/squeue) that read as this state."""
        return _TRAITS[self].slurm


class _Traits(NamedTuple):
    final: bool
    failed: bool
    resumable: bool
    word: str
    tone: str
    slurm: tuple[str, ...]


def _t(flags: str, word: str, tone: str, *slurm: str) -> _Traits:
    """``flags``: F final, X failed, R resumable."""
    return _Traits("F" in flags, "X" in flags, "R" in flags, word, tone, slurm)


_RUNNING_NAMES = ("COMPLETING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING", "STAGE_OUT")
_TRAITS: dict[JobState, _Traits] = {
    JobState.SUBMITTED: _t("", "submitted", "waiting"),
    JobState.PENDING: _t("", "pending", "waiting", "PENDING", "CONFIGURING"),
    JobState.RUNNING: _t("", "running", "active", "RUNNING", *_RUNNING_NAMES),
    JobState.COMPLETED: _t("F", "completed", "ok", "COMPLETED"),
    JobState.FAILED: _t("FX", "failed", "bad", "FAILED", "SPECIAL_EXIT"),
    JobState.CANCELLED: _t("F", "cancelled", "stopped", "CANCELLED"),
    JobState.TIMEOUT: _t("FR", "timeout", "bad", "TIMEOUT"),
    JobState.DEADLINE: _t("FR", "deadline", "bad", "DEADLINE"),
    JobState.OUT_OF_MEMORY: _t("FX", "out of memory", "bad", "OUT_OF_MEMORY", "OUT_OF_ME+"),
    JobState.NODE_FAIL: _t("FX", "node failure", "bad", "NODE_FAIL"),
    JobState.BOOT_FAIL: _t("FX", "boot failure", "bad", "BOOT_FAIL"),
    JobState.PREEMPTED: _t("FR", "preempted", "stopped", "PREEMPTED"),
    JobState.REQUEUED: _t("F", "requeued", "stopped", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD"),
    JobState.SUBMIT_FAILED: _t("FX", "submit failed", "bad"),
}

STATES = frozenset(JobState)
FINAL_STATES = frozenset(s for s in JobState if s.final)
_BY_SLURM_NAME = {name: state for state in JobState for name in state.slurm_names}


def parse(word: str | None) -> JobState | None:
    """A state word as stored (``"TIMEOUT"``) as a member; None for none or a word not ours."""
    try:
        return JobState(word) if word else None
    except ValueError:
        return None


def word_of(state: str | None) -> str:
    """How a sentence says a stored state word (``OUT_OF_MEMORY`` -> ``out of memory``)."""
    found = parse(state)
    return found.word if found is not None else (state or "unknown").lower()


def is_final(state: str | None) -> bool:
    found = parse(state)
    return found is not None and found.final


def from_slurm(slurm_state: str) -> JobState:
    """``CANCELLED by 1000`` -> CANCELLED; TransitionError for a word Slurm never prints."""
    word = slurm_word(slurm_state)
    if word not in _BY_SLURM_NAME:
        raise TransitionError(f"unknown Slurm job state {slurm_state!r}")
    return _BY_SLURM_NAME[word]


def slurm_over(slurm_state: str) -> bool:
    """Slurm's word says the job will not run again (final, and not a requeue)."""
    try:
        state = from_slurm(slurm_state)
    except TransitionError:
        return False
    return state.final and state is not JobState.REQUEUED


def slurm_active(slurm_state: str) -> bool:
    """Slurm's word says the job may still change (pending, running, requeued)."""
    try:
        state = from_slurm(slurm_state)
    except TransitionError:
        return False
    return not state.final or state is JobState.REQUEUED


def slurm_word(slurm_state: str) -> str:
    """Slurm's state as sacct's first word: ``CANCELLED by 1000`` -> ``CANCELLED`` ("" for
    none)."""
    return slurm_state.split()[0].upper() if slurm_state.split() else ""


class Strength(enum.IntEnum):
    """How good the evidence behind a verdict is; a stronger verdict replaces a weaker."""

    GUESS = 1
    EXIT = 2
    READING = 3
    SLURM = 4
    OWN = 5

    @classmethod
    def named(cls, name: str | None) -> Strength | None:
        try:
            return cls[name.upper()] if name else None
        except KeyError:
            return None


# ---------------------------------------------------------------- what Slurm and the kernel print

# (kind, pattern, flags): lines slurmstepd or the kernel writes into a job's output.
# One table for the wrapper (text, from the pipe) and the epilog (bytes, the file's tail).
SLURM_LINES: tuple[tuple[str, str, int], ...] = (
    ("time_limit", r"DUE TO TIME LIMIT", 0),
    ("oom_kill", r"oom[-_]kill|Out Of Memory|OOM [Kk]ill", 0),
    ("mem_limit", r"exceeded (?:job |step )?memory limit", re.IGNORECASE),
    ("cancelled", r"\*\*\* (?:JOB|STEP) \S+ ON \S+ CANCELLED AT", 0),
)
MEMORY_KINDS = frozenset({"oom_kill", "mem_limit"})
LINES_TEXT: dict[str, re.Pattern[str]] = {k: re.compile(p, f) for k, p, f in SLURM_LINES}
LINES_BYTES: dict[str, re.Pattern[bytes]] = {
    k: re.compile(p.encode(), f) for k, p, f in SLURM_LINES
}

# slurmstepd's own end line: "*** JOB 28 ON n1 CANCELLED AT <local time> [DUE TO ...] ***";
# 26.05 adds one to a scancel's: "DUE to SIGNAL Terminated" (seen in the Slurm matrix).
STEPD_END = rb"\*\*\* JOB (\d+) ON (\S+) CANCELLED AT (\S+)(?: DUE [Tt][Oo] ([^*]+?))? \*\*\*"
STEPD_END_BYTES = re.compile(STEPD_END)
# The same line for the job or one of its steps, as the command's own output carries it
# (srun prints its step's: "*** STEP 7.0 ON n1 CANCELLED AT <ts> DUE TO JOB REQUEUE ***").
STEPD_LINE_TEXT = re.compile(
    r"\*\*\* (?:JOB|STEP) \S+ ON \S+ CANCELLED AT \S+(?: DUE [Tt][Oo] ([^*]+?))? \*\*\*"
)
# What follows "DUE TO" (22.05: src/slurmd/slurmstepd/req.c), and the end it names.
_STEPD_CAUSES: tuple[tuple[str, JobState], ...] = (
    ("TIME LIMIT", JobState.TIMEOUT),
    ("PREEMPTION", JobState.PREEMPTED),
    ("NODE FAILURE", JobState.NODE_FAIL),
    ("JOB REQUEUE", JobState.REQUEUED),
)


def stepd_cause(due: str) -> JobState:
    """The end a ``CANCELLED AT ... DUE TO <due>`` line names (no ``DUE TO``, or 26.05's
    ``DUE to SIGNAL Terminated``: a scancel)."""
    for text, state in _STEPD_CAUSES:
        if text in due.upper():
            return state
    return JobState.CANCELLED


def lines_seen(text: str) -> frozenset[str]:
    """The kinds of Slurm/kernel line in ``text``."""
    return frozenset(kind for kind, rx in LINES_TEXT.items() if rx.search(text))


def memory_in(data: bytes) -> bool:
    return any(LINES_BYTES[k].search(data) for k in MEMORY_KINDS)


# ---------------------------------------------------------------- the run as a whole

PROLOG = "prolog"  # state_source of a start the node prolog recorded

STOPPED = "stopped"  # a resume chain its guard (or a person) stopped before the training's end


def run_state(last: str | None, chain_stopped: str | None, chain_done: bool) -> str | None:
    """The run's state as a whole: the newest job block's, except ``stopped`` for a resume
    chain stopped before the training finished whose last job nonetheless COMPLETED (a
    successor that exited 0 without training: Slurm saw it complete, the run did not)."""
    if chain_stopped and not chain_done and last == JobState.COMPLETED:
        return STOPPED
    return last


# ---------------------------------------------------------------- evidence and verdict

# A TERM with at most this much time left is Slurm's time-limit kill: Slurm sends it
# once the limit has passed (its checks run every ~30 s), so the time left, counted
# from the limit read at the start, is 0 then; a few seconds of slack for clocks.
NEAR_LIMIT = 15.0
# The exit code of a training that saved a checkpoint on the walltime warning and stopped
# (examples/toy_train.py and the docs' convention; sacct calls it FAILED 124:0).
EXIT_ON_WARNING = 124


@dataclass(frozen=True)
class Evidence:
    """What a writer saw of a job's end; every field may be unknown.

    The wrapper fills the command's exit, the signals it got and the lines it read; the
    epilog fills Slurm's exit status (``SLURM_JOB_EXIT_CODE2``), slurmstepd's line for
    this attempt and the restart count; poll fills Slurm's own word."""

    exit_code: int | None = None  # the command's, or the batch script's as Slurm saw it
    signal: int | None = None  # the signal that ended the batch step (Slurm's exit:signal)
    walltime_warning: bool = False  # the walltime warning arrived
    terminated_by: str | None = None  # "SIGTERM" when the wrapper was asked to stop
    time_left_at_term: float | None = None  # seconds before the limit when that came (None:
    # unknown, e.g. squeue gave no answer at the start)
    finished_all_steps: bool = False  # the training reached its known total
    short_of_total: bool = False  # it printed a total and stopped before reaching it
    lines: frozenset[str] = frozenset()  # kinds of SLURM_LINES seen
    stepd: JobState | None = None  # the end slurmstepd's line names, for this attempt
    restarted: bool = False  # Slurm counted a restart of this attempt (epilog)
    at_limit: bool = False  # the attempt ended at or after its time limit
    never_launched: bool = False  # 0:0 and the batch script never ran
    node: str | None = None
    slurm_state: str | None = None  # Slurm's own word, when known (sacct/squeue)
    slurm_exit: str | None = None  # as sacct prints it


@dataclass(frozen=True)
class Verdict:
    state: JobState
    strength: Strength
    why: str
    exit_code: int | None = None
    slurm_state: str | None = None  # what sacct says (or will say) for the job
    slurm_exit: str | None = None


def sacct_exit(code: int, sig: int = 0) -> str:
    """An exit status as sacct prints it: ``code:signal``, where sacct takes 128 off a code
    of 128 or more (a batch script that exited 137 shows as ``9:0``; seen on the dev cluster)."""
    return f"{code - 128 if code >= 128 else code}:{sig}"


def slurm_account(exit_code: int) -> tuple[str, str]:
    """What sacct records for a batch script that exited with ``exit_code`` by itself
    (no signal from Slurm): ``COMPLETED 0:0``, else ``FAILED <code>:0``."""
    return (JobState.COMPLETED if exit_code == 0 else JobState.FAILED), sacct_exit(exit_code)


def _slurm_exit(ev: Evidence) -> str | None:
    if ev.slurm_exit is not None:
        return ev.slurm_exit
    if ev.signal is not None and ev.exit_code is not None:
        return sacct_exit(ev.exit_code, ev.signal)  # the epilog: Slurm's own exit:signal
    return None


def classify(ev: Evidence) -> Verdict:
    """The end ``ev`` shows, with how strong that reading is and Slurm's account of it."""
    code, sig = ev.exit_code, ev.signal
    slurm_exit = _slurm_exit(ev)
    slurm = slurm_word(ev.slurm_state) if ev.slurm_state else None
    own_code = 128 + sig if sig else code  # a signal's end, as a shell reports it

    def verdict(
        state: JobState, strength: Strength, why: str, account: str | None = None
    ) -> Verdict:
        return Verdict(state, strength, why, own_code, slurm or account, slurm_exit)

    if ev.lines & MEMORY_KINDS:
        return Verdict(
            JobState.OUT_OF_MEMORY,
            Strength.OWN,
            "a memory-limit kill was reported in the output",
            code or 128 + (sig or _signal.SIGKILL),
            slurm or JobState.FAILED,
            slurm_exit,
        )
    # A warning is evidence the limit was near, not that it was reached: only a training
    # that stopped on it (exit 124, the checkpoint-and-exit convention; or exit 0 short of
    # a known total) reads TIMEOUT; otherwise the end is read as if none had come.
    warning_path = ev.walltime_warning and ev.terminated_by is None
    if warning_path and code == EXIT_ON_WARNING and slurm in (None, "FAILED"):
        return verdict(
            JobState.TIMEOUT,
            Strength.OWN,
            f"the training stopped on the walltime warning and exited {code}",
            JobState.FAILED,
        )
    if slurm is not None:
        state = from_slurm(slurm)
        if state.final:
            return verdict(state, Strength.SLURM, f"Slurm says {ev.slurm_state}")
    node = f"node {ev.node}" if ev.node else "a node of the job"
    if ev.stepd is JobState.NODE_FAIL:
        why = f"{node} failed" + ("; Slurm requeued the job" if ev.restarted else "")
        return verdict(JobState.NODE_FAIL, Strength.READING, why, JobState.NODE_FAIL)
    if ev.stepd is JobState.PREEMPTED:
        why = "preempted by Slurm" + ("; requeued" if ev.restarted else "")
        return verdict(JobState.PREEMPTED, Strength.READING, why, JobState.PREEMPTED)
    if ev.stepd is JobState.REQUEUED or ev.restarted:
        why = "Slurm requeued the job (scontrol requeue); it runs again under the same id"
        return verdict(JobState.REQUEUED, Strength.READING, why, JobState.REQUEUED)
    if ev.stepd is JobState.TIMEOUT or "time_limit" in ev.lines:
        return verdict(
            JobState.TIMEOUT, Strength.READING, "Slurm stopped it at its time limit", "TIMEOUT"
        )
    if ev.stepd is JobState.CANCELLED:
        return verdict(JobState.CANCELLED, Strength.READING, "cancelled (scancel)", "CANCELLED")
    if ev.terminated_by is not None:
        left = ev.time_left_at_term
        if left is not None and left <= NEAR_LIMIT:
            why = f"{ev.terminated_by} at the time limit"
            return verdict(JobState.TIMEOUT, Strength.GUESS, why)
        if left is None:
            why = (
                f"{ev.terminated_by}, the time left unknown: a scancel, the time limit, a "
                "requeue or a node failure"
            )
        else:
            why = f"{ev.terminated_by} with time left: a scancel, a requeue or a node failure"
        return verdict(JobState.CANCELLED, Strength.GUESS, why)
    if ev.walltime_warning and code == 0 and ev.short_of_total:
        why = "the training stopped on the walltime warning short of its total and exited 0"
        return verdict(JobState.TIMEOUT, Strength.OWN, why, JobState.COMPLETED)
    if ev.at_limit and not code:
        return verdict(JobState.TIMEOUT, Strength.READING, "ended at its time limit", "TIMEOUT")
    if sig == _signal.SIGTERM:
        return verdict(JobState.CANCELLED, Strength.GUESS, "a TERM with time left", "FAILED")
    if ev.never_launched and not code and not sig:
        why = "its batch script never ran (no wrapper start, no output): cancelled before launch"
        return verdict(JobState.CANCELLED, Strength.READING, why, JobState.CANCELLED)
    if sig:
        return verdict(JobState.FAILED, Strength.EXIT, f"killed by signal {sig}", "FAILED")
    if code:
        return verdict(JobState.FAILED, Strength.EXIT, f"exit code {code}", "FAILED")
    if code == 0:
        return verdict(JobState.COMPLETED, Strength.EXIT, "exit code 0", "COMPLETED")
    return verdict(JobState.FAILED, Strength.GUESS, "no exit status from Slurm", "FAILED")


__all__ = [
    "FINAL_STATES",
    "LINES_BYTES",
    "LINES_TEXT",
    "MEMORY_KINDS",
    "NEAR_LIMIT",
    "SLURM_LINES",
    "STATES",
    "STEPD_END_BYTES",
    "STEPD_LINE_TEXT",
    "STOPPED",
    "Evidence",
    "JobState",
    "Strength",
    "Verdict",
    "classify",
    "from_slurm",
    "is_final",
    "lines_seen",
    "memory_in",
    "parse",
    "run_state",
    "sacct_exit",
    "slurm_account",
    "slurm_active",
    "slurm_over",
    "slurm_word",
    "stepd_cause",
    "word_of",
]
