"""Slurm Prolog/Epilog entry points: record a job's start and end even when the wrapper could not.

``slurm/prolog.sh`` and ``slurm/epilog.sh`` (the shims Slurm runs, as root, on
every node of every job) decide in the shell whether a job is an hpcwrap job
(its comment starts with ``hpcwrap:``, or its wrapper registered it in the
node's spool folder) and only then run ``python -I -m hpcwrap.hooks prolog|epilog``.

Everything the job controls is hostile here: the comment, the spool file, the
paths in them, the run-log folder and every file in it. So this module:

- validates the run-log path (absolute, normalised, a ``<date>_<task>.md`` name,
  no control characters, bounded length) before anything else;
- drops to the job's uid, gid and groups before it opens anything in the
  user's tree or takes a lock there (what it can then reach, the user could
  reach anyway), and refuses a log, folder, sidecar, state or lock that is a
  symlink or is not owned by the job's user;
- never calls a Slurm command (Slurm's own advice) and reads only its
  environment and what the wrapper left behind;
- stops itself after ``HPCWRAP_HOOK_TIMEOUT`` seconds (default 20), well under
  any sane ``PrologEpilogTimeout``;
- always exits 0 (a failing epilog drains the node) and reports its own
  problems to syslog and, where the shim names one, a root-owned log file.

On a job of several nodes only the first node of the allocation (where the
batch step runs) writes; the lifecycle rules make a repeated end one entry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import pwd
import re
import signal
import stat
import syslog
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

# Everything imported here, before the hook drops to the job's user: after the drop
# the code may not be readable (a checkout in root's home, as in the fresh-machine root).
from hpcwrap.errors import HookDeadline, HookError
from hpcwrap.redact import redact_text
from hpcwrap.runlog import endings, layout, peek
from hpcwrap.runlog.dates import format_runtime, now
from hpcwrap.runlog.endings import JobState
from hpcwrap.runlog.fsio import tail_records
from hpcwrap.runlog.model import JobBlock, RunState, from_dict
from hpcwrap.runlog.spool import CLUSTER_NAME, JOB_ID, clear_squatted, spool_dir, spool_name
from hpcwrap.scheduler.sbatch_options import output_file_of

if TYPE_CHECKING:
    from hpcwrap.runlog.handle import RunLog
    from hpcwrap.runlog.telemetry import TelemetryFacts

# The epilog of a job whose wrapper recorded the end (the common case) decides from
# state.json alone (``confirmed_already``); the run-log machinery (handle, lifecycle,
# merge: two thirds of the hook's start) is imported only where something is written.
LOADED_WHEN_WRITING = (
    "hpcwrap.runlog.handle",
    "hpcwrap.runlog.lifecycle",
    "hpcwrap.runlog.locks",
    "hpcwrap.reading.scan",
    "hpcwrap.reading.telemetry",
)

DEFAULT_TIMEOUT = 20.0
# Of the hook's time, the longest it waits for the run's lock: then it leaves the end for
# the next writer (runlog/deferred.py) while it still has time to.
LOCK_WAIT_SHARE = 0.4
MAX_LOCK_WAIT = 8.0
MAX_PATH = 4096
MAX_SPOOL_FILE = 4096
# Of the job's output: Slurm's lines and the last progress (1 MiB reads in ~0.3 s here).
TAIL_BYTES = 1024 * 1024
MEMORY_TAIL = 64 * 1024  # the end of that tail, searched for the memory-limit kill
TAIL_READ_BUDGET = 3.0  # seconds the epilog spends reading progress from that tail
EVENTS_BUDGET = 8 * 1024 * 1024  # bytes of events.jsonl read for the last progress
TELEMETRY_MAX_BYTES = 64 * 1024 * 1024  # a telemetry file larger than this is left out
_STEPD_END = endings.STEPD_END_BYTES  # "*** JOB 28 ON n1 CANCELLED AT <ts> [DUE TO ...] ***"


@dataclass(frozen=True)
class HookEnv:
    """What Slurm tells a node Prolog/Epilog (22.05), validated."""

    kind: str  # "prolog" | "epilog"
    job_id: str
    uid: int
    gid: int
    user: str | None
    comment: str | None
    node: str | None
    nodelist: str | None
    cluster: str | None
    restart_count: int
    exit_code2: str | None  # "exit:signal" (epilog only)
    end_time: datetime | None = None  # Slurm's end of the job (SLURM_JOB_END_TIME, 23.02+)
    start_time: datetime | None = None  # Slurm's start (SLURM_JOB_START_TIME, 23.02+)

    @classmethod
    def from_environ(cls, kind: str, env: Mapping[str, str]) -> HookEnv:
        job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or ""
        if not JOB_ID.match(job_id):
            raise HookError(f"no valid SLURM_JOB_ID ({job_id[:40]!r})")
        try:
            uid, gid = int(env["SLURM_JOB_UID"]), int(env["SLURM_JOB_GID"])
        except (KeyError, ValueError):
            raise HookError("no valid SLURM_JOB_UID / SLURM_JOB_GID") from None
        cluster = env.get("SLURM_CLUSTER_NAME")
        try:
            restarts = int(env.get("SLURM_JOB_RESTART_COUNT") or 0)
        except ValueError:
            restarts = 0
        return cls(
            kind=kind,
            job_id=job_id,
            uid=uid,
            gid=gid,
            user=env.get("SLURM_JOB_USER"),
            comment=env.get("SLURM_JOB_COMMENT"),
            node=env.get("SLURMD_NODENAME"),
            nodelist=env.get("SLURM_NODELIST") or env.get("SLURM_JOB_NODELIST"),
            cluster=cluster if cluster and CLUSTER_NAME.match(cluster) else None,
            restart_count=max(restarts, 0),
            exit_code2=env.get("SLURM_JOB_EXIT_CODE2"),
            end_time=_epoch(env.get("SLURM_JOB_END_TIME")),
            start_time=_epoch(env.get("SLURM_JOB_START_TIME")),
        )


def _epoch(text: str | None) -> datetime | None:
    """A Slurm epoch-seconds time from the environment (None: absent or not a sane time)."""
    try:
        value = int(text or "")
    except ValueError:
        return None
    if value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def first_node(nodelist: str | None) -> str | None:
    """The first node of a Slurm node list: ``n[1-2],m3`` -> ``n1``, ``gpu[07,09]`` -> ``gpu07``."""
    if not nodelist:
        return None
    m = re.match(r"^([^,\[]+)(?:\[([^\]]*)\])?", nodelist.strip())
    if m is None:
        return None
    prefix, ranges = m.group(1), m.group(2)
    if ranges is None:
        return prefix
    first = re.split(r"[-,]", ranges, maxsplit=1)[0]
    return prefix + first


def check_run_log_path(text: str) -> Path:
    """A run-log path from a comment or spool file, or HookError saying what is wrong."""
    if not text or len(text) > MAX_PATH:
        raise HookError("run-log path empty or too long")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise HookError("run-log path holds control characters")
    if not text.startswith("/"):
        raise HookError("run-log path is not absolute")
    if os.path.normpath(text) != text or "/../" in f"{text}/":
        raise HookError("run-log path is not normalised")
    path = Path(text)
    if not layout.is_run_log_name(path.name):
        raise HookError("not a run-log file name (<date>_<task>.md)")
    return path


# ---------------------------------------------------------------- safety


def readable_by_anyone(folder: Path) -> bool:
    """``folder`` and every folder above it can be entered by others, and it can be read."""
    try:
        if not os.stat(folder).st_mode & stat.S_IROTH:
            return False
        return all(os.stat(p).st_mode & stat.S_IXOTH for p in (folder, *folder.parents))
    except OSError:
        return False


def drop_privileges(uid: int, gid: int, user: str | None) -> None:
    """Become the job's user for good (groups, gid, uid), before touching its files."""
    if os.geteuid() != 0:
        if os.geteuid() != uid:
            raise HookError(f"running as uid {os.geteuid()}, not root nor the job's {uid}")
        return
    if uid == 0:
        raise HookError("a job of root: hooks do not act for root")
    name = user
    with contextlib.suppress(KeyError):
        name = pwd.getpwuid(uid).pw_name
    groups = os.getgrouplist(name, gid) if name else [gid]
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise HookError("could not drop to the job's user")


def _owned_plain(path: Path, uid: int, *, folder: bool, missing_ok: bool = False) -> bool:
    """``path`` is not a symlink, is a folder/file as expected and belongs to ``uid``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if missing_ok:
            return False
        raise HookError(f"{path.name}: missing") from None
    if stat.S_ISLNK(st.st_mode):
        raise HookError(f"{path.name}: is a symlink")
    if folder != stat.S_ISDIR(st.st_mode) or (not folder and not stat.S_ISREG(st.st_mode)):
        raise HookError(f"{path.name}: not a {'folder' if folder else 'regular file'}")
    if st.st_uid != uid:
        raise HookError(f"{path.name}: owned by uid {st.st_uid}, not the job's user")
    return True


def check_tree(log: Path, uid: int) -> None:
    """The run log, its folder, the sidecar and its files: plain, and the user's."""
    _owned_plain(log.parent, uid, folder=True)
    _owned_plain(log, uid, folder=False)
    side = layout.sidecar_for(log)
    _owned_plain(side.parent, uid, folder=True)
    _owned_plain(side, uid, folder=True)
    for name in (
        layout.STATE_FILE,
        layout.EVENTS_FILE,
        layout.LOCK_FILE,
        f"{layout.LOCK_FILE}.soft",
    ):
        _owned_plain(side / name, uid, folder=False, missing_ok=True)


def read_spool(env: HookEnv, environ: Mapping[str, str]) -> Path | None:
    """The run log the job's wrapper registered, checked like a comment (owner too)."""
    path = spool_dir(environ) / spool_name(env.job_id, env.cluster)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HookError(f"spool file: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != env.uid:
            raise HookError("spool file is not a regular file of the job's user")
        data = os.read(fd, MAX_SPOOL_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SPOOL_FILE:
        raise HookError("spool file too long")
    try:
        text = data.decode("utf-8").rstrip("\n")
    except UnicodeDecodeError:
        raise HookError("spool file is not UTF-8") from None
    return check_run_log_path(text)


def remove_spool(env: HookEnv, environ: Mapping[str, str]) -> None:
    with contextlib.suppress(OSError):
        os.unlink(spool_dir(environ) / spool_name(env.job_id, env.cluster))


# ---------------------------------------------------------------- reading what the wrapper left


@dataclass
class LastProgress:
    step: int | None = None
    first_loss: float | None = None
    loss: float | None = None
    first_val_loss: float | None = None
    val_loss: float | None = None
    checkpoint: str | None = None
    oom_seen: bool = False
    # the losses as the training printed them (the progress events carry the text)
    first_loss_text: str | None = None
    loss_text: str | None = None
    first_val_loss_text: str | None = None
    val_loss_text: str | None = None


def _text(value: Any) -> str | None:
    """A printed number from an event: short text only (the events are job-controlled)."""
    return value if isinstance(value, str) and 0 < len(value) <= 40 else None


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def last_progress(log: RunLog) -> LastProgress:
    """The wrapper's last progress and checkpoint events (events.jsonl, bounded read)."""
    out = LastProgress()
    for ev in tail_records(log.sidecar / layout.EVENTS_FILE, EVENTS_BUDGET):
        kind = ev.get("kind")
        if kind in ("progress", "status"):
            loss, val = _num(ev.get("train_loss")), _num(ev.get("val_loss"))
            if isinstance(ev.get("step"), int):
                out.step = ev["step"]
            loss_text, val_text = _text(ev.get("train_loss_text")), _text(ev.get("val_loss_text"))
            if loss is not None:
                if out.first_loss is None:
                    out.first_loss, out.first_loss_text = loss, loss_text
                out.loss, out.loss_text = loss, loss_text
            if val is not None:
                if out.first_val_loss is None:
                    out.first_val_loss, out.first_val_loss_text = val, val_text
                out.val_loss, out.val_loss_text = val, val_text
        elif kind == "checkpoint" and isinstance(ev.get("path"), str):
            out.checkpoint = ev["path"]
    return out


@dataclass(frozen=True)
class OutputEvidence:
    """What slurmstepd wrote straight into the job's output file (never through the
    wrapper's pipe) for this attempt: the memory-limit kill, how Slurm cancelled the job
    and when; and the file's tail, where the last progress is."""

    memory: bool = False
    stepd: JobState | None = None  # the end slurmstepd's CANCELLED line names
    stepd_at: datetime | None = None  # that line's time (when Slurm sent the TERM)
    stepd_node: str | None = None
    # The file was written since the attempt started (False: not, or no file: the batch
    # step never launched; None: unknown, no start or no file path to look at).
    written: bool | None = None
    tail: bytes = b""


def _stepd_time(raw: bytes) -> datetime | None:
    """slurmstepd's ``CANCELLED AT`` time: the node's local time, no zone."""
    try:
        return datetime.fromisoformat(raw.decode()).astimezone()
    except (ValueError, OverflowError, OSError):  # the file is the job's: any bytes
        return None


def _this_attempt(tail: bytes, job_id: str, since: datetime | None) -> bytes:
    """The part of ``tail`` written by the attempt that started at ``since``.

    A requeued job runs again with the same id and appends to the same output file: the
    earlier attempt's ``DUE TO JOB REQUEUE`` line (or its memory kill) is not this
    attempt's end. An attempt cancelled the second it started has no line of its own
    (its batch step never ran), and read the earlier one as its own (a flake of the
    requeue cluster test under load). Lines stamped before ``since`` end the cut."""
    if since is None:
        return tail
    start = since.replace(microsecond=0)
    cut = 0
    for m in _STEPD_END.finditer(tail):
        at = _stepd_time(m.group(3))
        if m.group(1).decode() == job_id and at is not None and at < start:
            cut = m.end()
    return tail[cut:]


def output_evidence(
    state: RunState,
    env: HookEnv,
    work_dir: str | None,
    since: datetime | None = None,
    this_attempt: bool = False,
) -> OutputEvidence:
    """The tail of this job's output file: the submission's pattern filled in for this job
    (a resumed job has its own id), else Slurm's default one in the work folder; with
    ``this_attempt``, only what the attempt that started at ``since`` wrote
    (``_this_attempt``). ``written`` says whether the file changed since ``since``."""
    path = output_file_of(state.submit, env.job_id, env.user, work_dir)
    if path is None:
        return OutputEvidence()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return OutputEvidence(written=False if since is not None else None)
    except OSError:
        return OutputEvidence()
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            return OutputEvidence()
        fh.seek(max(info.st_size - TAIL_BYTES, 0))
        tail = fh.read(TAIL_BYTES)
    if this_attempt:
        tail = _this_attempt(tail, env.job_id, since)
    # the same clock (the node's): slurmstepd writes the file after the prolog's start
    written = info.st_mtime >= since.timestamp() - 1.0 if since is not None else None
    ends = [m for m in _STEPD_END.finditer(tail) if m.group(1).decode() == env.job_id]
    last = ends[-1] if ends else None
    return OutputEvidence(
        written=written,
        memory=endings.memory_in(tail[-MEMORY_TAIL:]),
        stepd=endings.stepd_cause((last.group(4) or b"").decode()) if last else None,
        stepd_at=_stepd_time(last.group(3)) if last else None,
        stepd_node=last.group(2).decode(errors="replace")[:64] if last else None,
        tail=tail,
    )


# ---------------------------------------------------------------- inference


def _exit_parts(exit2: str | None) -> tuple[int | None, int | None]:
    """``"99:0"`` -> (99, 0); ``"0:9"`` -> (0, 9)."""
    if not exit2 or ":" not in exit2:
        return None, None
    code, _, sig = exit2.partition(":")
    try:
        return int(code), int(sig)
    except ValueError:
        return None, None


def epilog_evidence(
    job: JobBlock, env: HookEnv, when: datetime, out: OutputEvidence, *, confirm: bool = False
) -> endings.Evidence:
    """What the epilog knows of the end of ``job``'s attempt, for ``endings.classify``.

    Slurm's exit status (``SLURM_JOB_EXIT_CODE2``), slurmstepd's line and the memory
    kill in this attempt's output, and the restart count: Slurm counts the restart
    before a requeued attempt's epilog runs (checked on the dev cluster), and an attempt
    requeued before its batch step launched has no line in the output and exits 0:0.
    Unless ``confirm`` (the wrapper recorded the end, and saw how it ended), also whether
    it ended at the limit the wrapper read at the start, and whether the batch script
    never ran (0:0, no wrapper start, nothing written since the attempt started: Slurm
    killed it before launch, "already killed, do not launch batch job").
    """
    code, sig = _exit_parts(env.exit_code2)
    # The epilog runs after the job's processes are gone: at the limit means after it.
    at_limit = job.limit_at is not None and when >= job.limit_at - timedelta(
        seconds=endings.NEAR_LIMIT
    )
    never_ran = job.state_source == endings.PROLOG and out.written is False
    return endings.Evidence(
        exit_code=code,
        signal=sig,
        lines=frozenset({"mem_limit"}) if out.memory else frozenset(),
        stepd=out.stepd,
        restarted=env.restart_count > (job.restart_count or 0),
        at_limit=at_limit and not confirm,
        never_launched=never_ran and not confirm,
        node=out.stepd_node or env.node,
    )


def end_time(
    env: HookEnv,
    out: OutputEvidence,
    verdict: endings.Verdict,
    when: datetime,
    start: datetime | None,
) -> datetime:
    """When the attempt ended: Slurm's own end time where the hook's environment gives it
    (23.02+), else when slurmstepd's line says Slurm stopped it (the TERM: the epilog
    runs KillWait or more later), else the epilog's clock. Never before the start (the
    line's time is the node's, to the second; the file is the job's)."""
    floor = start - timedelta(seconds=1) if start is not None else None
    line = out.stepd_at if verdict.strength >= endings.Strength.READING else None
    for at in (env.end_time, line):
        if at is not None and (floor is None or at >= floor):
            return min(at, when)
    return when


def start_time(env: HookEnv, when: datetime) -> datetime:
    """When the attempt started: Slurm's own start where the prolog's environment gives it
    (23.02+; the Start sacct reports, to the second), else the prolog's clock. A value in
    the future or far in the past is not this attempt's: the clock stands."""
    at = env.start_time
    if at is not None and when - timedelta(minutes=10) <= at <= when:
        return at
    return when


def _our_block(state: RunState, job_id: str, restart_count: int = 0) -> JobBlock | None:
    """This attempt's block: the newest of the job whose restart count is not above the
    epilog's. (A requeued attempt's epilog already sees the next count, checked on the
    dev cluster: attempt 0's epilog had SLURM_JOB_RESTART_COUNT=1.) A later attempt's
    block is never closed with this attempt's end."""
    for job in reversed(state.jobs):
        if job.execution_id == job_id and (job.restart_count or 0) <= restart_count:
            return job
    return None


def _is_array_run(log: RunLog) -> bool:
    state = log.read()
    return bool(state.submit is not None and state.submit.array) or bool(state.array_tasks)


def record_prolog(log: RunLog, env: HookEnv, when: datetime) -> None:
    from hpcwrap.runlog import lifecycle

    log.record(
        lifecycle.Started(
            when=when,
            execution_id=env.job_id,
            nodes=env.nodelist,
            in_slurm=True,
            restart_count=env.restart_count,
            cluster=env.cluster,
            by_prolog=True,
        ),
        event="prolog",
        data={"node": env.node, "nodes": env.nodelist, "restart_count": env.restart_count},
    )


def _telemetry_summary(log: RunLog) -> TelemetryFacts | None:
    """The telemetry summary from the run's samples (the wrapper wrote none); never raises."""
    from hpcwrap.reading.telemetry import summarize_sidecar

    try:
        return summarize_sidecar(log.sidecar, max_bytes=TELEMETRY_MAX_BYTES)
    except Exception:  # the epilog never fails over telemetry
        return None


def _progress(log: RunLog, out: OutputEvidence, work_dir: str | None) -> LastProgress:
    """The last progress: the wrapper's events, or the output's tail where it got further
    (the wrapper flushes its events every few seconds; a SIGKILL loses the rest)."""
    last = last_progress(log)
    if not out.tail:
        return last
    try:  # imported here: the epilog's fast path (the wrapper recorded the end) skips it
        from hpcwrap.reading.scan import read_tail
    except Exception:  # the reader cannot be imported after the drop: events only
        return last
    snap = read_tail(out.tail, budget_s=TAIL_READ_BUDGET)
    if snap.step is None or (last.step is not None and snap.step < last.step):
        return last
    last.step = snap.step
    if snap.loss is not None:
        last.loss, last.loss_text = snap.loss, snap.loss_text
        if last.first_loss is None:
            last.first_loss, last.first_loss_text = snap.first_loss, snap.first_loss_text
    if snap.val_loss is not None:
        last.val_loss, last.val_loss_text = snap.val_loss, snap.val_loss_text
        if last.first_val_loss is None:
            last.first_val_loss = snap.first_val_loss
            last.first_val_loss_text = snap.first_val_loss_text
    ck = snap.checkpoint
    if ck is not None and ck.path:
        folder = Path(work_dir) if work_dir else None
        path = Path(ck.path)
        last.checkpoint = str(folder / path if folder and not path.is_absolute() else path)
    return last


def record_epilog(log: RunLog, env: HookEnv, when: datetime, work_dir: str | None) -> str:
    """Close the job's block if the wrapper did not, and put Slurm's own account of the
    end beside hpcwrap's; where the epilog's reading is stronger than the wrapper's
    (slurmstepd's line over a TERM), it replaces it. Returns what was done (for the
    hook's log)."""
    from hpcwrap.runlog import lifecycle

    state = log.read()
    job = _our_block(state, env.job_id, env.restart_count)
    if job is None:
        return "no block for this job (this attempt) in the run log"
    # a restarted attempt reads only what it wrote itself (the file is appended to)
    restarted = (job.restart_count or 0) > 0
    out = output_evidence(state, env, work_dir, since=job.start, this_attempt=restarted)
    wrapper_ended = lifecycle.is_final(job.state)
    verdict = endings.classify(epilog_evidence(job, env, when, out, confirm=wrapper_ended))
    data = {"state": verdict.state, "why": verdict.why, "exit_code2": env.exit_code2}
    if wrapper_ended and job.slurm_state and verdict.strength <= lifecycle.basis_of(job):
        return f"already {job.state} with Slurm's account: nothing to add ({verdict.why})"
    if wrapper_ended:
        # The wrapper wrote the end: Slurm's account goes beside it, and a stronger
        # reading (a node failure or a requeue, which reach the wrapper as a TERM)
        # replaces its own; its figures and end time stand.
        left = log.record_or_defer(
            lifecycle.Ended(
                when=job.end or when,
                state=verdict.state,
                source=lifecycle.Source.EPILOG,
                execution_id=env.job_id,
                start=job.start,
                text=(
                    f"{verdict.state.word}: {verdict.why} (recorded by the epilog, Slurm exit "
                    f"{env.exit_code2 or '?'}; replaces the wrapper's reading: "
                    f"{endings.word_of(job.state)})"
                ),
                slurm_state=verdict.slurm_state,
                slurm_exit=verdict.slurm_exit,
                strength=verdict.strength,
            ),
            by="epilog",
            event="epilog",
            data={**data, "confirmed": job.state},
        )
        return f"already {job.state}: epilog read {verdict.state} ({verdict.why})" + _left(left)
    last = _progress(log, out, work_dir)
    end = end_time(env, out, verdict, when, job.start)
    runtime = format_runtime((end - job.start).total_seconds()) if job.start else "?"
    parts = [f"{verdict.state.word} (recorded by the epilog: {verdict.why})"]
    parts.append(f"Slurm exit {env.exit_code2 or '?'}, after {runtime}")
    if last.step is not None:
        parts.append(f"last step {last.step}")
    if last.loss is not None:
        parts.append(f"train_loss {last.loss_text or f'{last.loss:.4g}'}")
    parts.append("the wrapper did not record the end")
    left = log.record_or_defer(
        lifecycle.Ended(
            when=end,
            state=verdict.state,
            source=lifecycle.Source.EPILOG,
            execution_id=env.job_id,
            exit_code=verdict.exit_code,
            start=job.start,
            nodes=env.nodelist,
            text=", ".join(parts),
            results=lifecycle.ResultFacts(
                final_step=last.step,
                first_loss=last.first_loss,
                loss=last.loss,
                first_val_loss=last.first_val_loss,
                val_loss=last.val_loss,
                checkpoint=last.checkpoint,
                has_progress=last.step is not None,
                first_loss_text=last.first_loss_text,
                loss_text=last.loss_text,
                first_val_loss_text=last.first_val_loss_text,
                val_loss_text=last.val_loss_text,
                telemetry=_telemetry_summary(log),
            ),
            slurm_state=verdict.slurm_state,
            slurm_exit=verdict.slurm_exit,
            strength=verdict.strength,
        ),
        by="epilog",
        event="epilog",
        data=data,
    )
    return f"recorded {verdict.state} ({verdict.why})" + _left(left)


def confirmed_already(path: Path, env: HookEnv, when: datetime, work_dir: str | None) -> bool:
    """Whether the epilog has nothing to add, decided from state.json alone: the wrapper
    recorded this attempt's end, Slurm's account is beside it, and the epilog's reading
    is no stronger (``record_epilog`` would say "nothing to add"). False wherever the
    full path must look: an end left for the next writer, events.jsonl past what
    state.json accounts for, an array, a state written before verdicts had a strength,
    anything unreadable."""
    sidecar = layout.sidecar_for(path)
    doc = peek.state_doc(sidecar)
    if doc is None or doc.get("format") != layout.FORMAT or not peek.in_step(sidecar, doc):
        return False
    try:
        state = from_dict(doc["state"])
    except Exception:  # the full path reads it the careful way
        return False
    if state.array_tasks or (state.submit is not None and state.submit.array):
        return False
    job = _our_block(state, env.job_id, env.restart_count)
    if job is None or not job.slurm_state or not endings.is_final(job.state):
        return False
    basis = endings.Strength.named(job.state_basis)
    if basis is None and job.state_source in (None, "wrapper"):
        basis = endings.Strength.OWN  # lifecycle.basis_of: the wrapper's end, unranked
    if basis is None:
        return False
    restarted = (job.restart_count or 0) > 0
    out = output_evidence(state, env, work_dir, since=job.start, this_attempt=restarted)
    verdict = endings.classify(epilog_evidence(job, env, when, out, confirm=True))
    return verdict.strength <= basis


def _left(why: str | None) -> str:
    return f"; left for the next writer: {why}" if why else ""


# ---------------------------------------------------------------- entry point


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    def expired(signum: int, frame: FrameType | None) -> None:
        raise HookDeadline(f"stopped after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Reporter:
    """The hook's own messages: syslog, and a root-owned log file opened before the drop."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.file: TextIO | None = None
        path = environ.get("HPCWRAP_HOOK_LOG")
        if path:
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                self.file = os.fdopen(fd, "a", encoding="utf-8", errors="replace")

    def __call__(self, message: str) -> None:
        line = redact_text(message)[:2000]
        with contextlib.suppress(Exception):
            syslog.openlog("hpcwrap-hook", 0, syslog.LOG_DAEMON)
            syslog.syslog(syslog.LOG_NOTICE, line)
        if self.file is not None:
            with contextlib.suppress(Exception):
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
                self.file.write(f"{stamp} {line}\n")
                self.file.flush()


def lock_wait(limit: float) -> float:
    """How long the hook waits for a run's lock, of its ``limit`` seconds."""
    return max(0.5, min(limit * LOCK_WAIT_SHARE, MAX_LOCK_WAIT))


def run_hook(
    kind: str, environ: Mapping[str, str], report: Reporter, limit: float = DEFAULT_TIMEOUT
) -> str:
    env = HookEnv.from_environ(kind, environ)
    first = first_node(env.nodelist)
    if env.node and first and env.node != first:
        return f"job {env.job_id}: not the batch node ({env.node}, first is {first})"
    from_comment = layout.run_log_from_comment(env.comment)
    path = check_run_log_path(from_comment) if from_comment is not None else None
    if not readable_by_anyone(Path(__file__).parents[1]):
        # hpcwrap installed where the job's user cannot read it (a checkout in root's
        # home): what the hook loads only when it writes is loaded now, while it still can
        # be. Otherwise it loads only then (an epilog that confirms an end needs none).
        for name in LOADED_WHEN_WRITING:
            importlib.import_module(name)
    if kind == "prolog" and path is None:
        # Still root: a spool file of this job's name that is not the job user's was
        # squatted by another user to keep the wrapper from registering.
        squatter = clear_squatted(spool_dir(environ), spool_name(env.job_id, env.cluster), env.uid)
        if squatter is not None:
            report(f"job {env.job_id}: removed a spool file of uid {squatter} named for this job")
    drop_privileges(env.uid, env.gid, env.user)
    if path is None:
        path = read_spool(env, environ)
    if path is None:
        return f"job {env.job_id}: not an hpcwrap job"
    check_tree(path, env.uid)
    when = now()
    work_dir = environ.get("SLURM_JOB_WORK_DIR")
    if kind == "epilog" and confirmed_already(path, env, when, work_dir):
        remove_spool(env, environ)
        return f"job {env.job_id} epilog: {path}: the wrapper's end and Slurm's account stand"
    from hpcwrap.runlog.handle import RunLog
    from hpcwrap.runlog.locks import LockConfig

    # The lock's kind as every writer picks it; the wait bounded by the hook's own time.
    log = RunLog(path, locks=dataclasses.replace(LockConfig.from_env(), timeout=lock_wait(limit)))
    if environ.get("SLURM_ARRAY_JOB_ID") or _is_array_run(log):
        # The tasks of an array share one block, derived by their wrappers under the
        # lock (runlog/arrays.py); a task's own job id has no block of its own.
        remove_spool(env, environ)
        return f"job {env.job_id} {kind}: {path}: an array task, left to its wrapper and poll"
    if kind == "prolog":
        record_prolog(log, env, start_time(env, when))
        done = "start recorded"
    else:
        done = record_epilog(log, env, when, work_dir)
        remove_spool(env, environ)
    return f"job {env.job_id} {kind} (exit {env.exit_code2 or '-'}): {path}: {done}"


def main(kind: str, environ: Mapping[str, str] | None = None) -> int:
    """Run one hook; always 0. Problems go to syslog / HPCWRAP_HOOK_LOG, never to Slurm."""
    env = dict(os.environ if environ is None else environ)
    report = Reporter(env)
    try:
        limit = float(env.get("HPCWRAP_HOOK_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        limit = DEFAULT_TIMEOUT
    try:
        limit = max(min(limit, 120.0), 0.1)
        with deadline(limit):
            if kind not in ("prolog", "epilog"):
                raise HookError(f"unknown hook {kind!r}")
            done = run_hook(kind, env, report, limit)
        if env.get("HPCWRAP_HOOK_VERBOSE"):
            report(done)
    except BaseException as exc:  # a hook must never fail: report it, exit 0
        report(f"{kind} hook, job {env.get('SLURM_JOB_ID', '?')}: {type(exc).__name__}: {exc}")
    return 0
