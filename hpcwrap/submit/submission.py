"""``hpcwrap sbatch`` as a library: build the batch script, record the run, submit it.

The flow (``submit``):

1. ``prepare``: read the user's script (refusing what sbatch would refuse),
   its ``#SBATCH`` lines and the sbatch options, decide what hpcwrap adds.
   Nothing is written yet; ``--dry-run`` stops here.
2. The run log is created (``newrun.create_run_from_request``: code state,
   config copy, experiment tag), then the sidecar gets ``script/<name>`` (a
   byte-exact snapshot of the user's script, run by its own shebang) and
   ``job.sh`` (the batch script, exactly what sbatch gets).
3. ``sbatch --parsable`` (via the scheduler backend); the job id is written
   to the Job block (state SUBMITTED) the moment sbatch prints it.
4. A refusal is recorded as state SUBMIT_FAILED with sbatch's message, the
   experiment tag is removed, and the error goes up. A Ctrl-C leaves the log
   saying what is known: the job id if sbatch printed one, else that the
   submission was interrupted.

The batch script (``batch_script``)::

    #!/bin/bash
    # (fixed comment lines)
    #SBATCH --job-name=<script name>          hpcwrap's defaults, lowest precedence:
    #SBATCH --comment=hpcwrap:<run log .md>   the user's own setting anywhere wins
    #SBATCH --open-mode=append
    #SBATCH --signal=B:USR2@300
    #SBATCH ...                               the user's #SBATCH lines, verbatim
    export HPCWRAP_RUN_LOG=<run log .md>
    exec <python> -m hpcwrap run --log "$HPCWRAP_RUN_LOG" -- <snapshot> <args...>

The user's script is not changed and still works with plain sbatch.
"""

from __future__ import annotations

import getpass
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from hpcwrap import __version__, textcheck
from hpcwrap.config import Settings, parse_duration, signal_number
from hpcwrap.errors import (
    ConfigError,
    SchedulerError,
    SubmitError,
    UsageError,
)
from hpcwrap.redact import describe_command, redact_argv
from hpcwrap.runlog import RunLog, layout, lifecycle
from hpcwrap.runlog.dates import now
from hpcwrap.runlog.facts import (
    ChainFacts,
    CodeFacts,
    SubmitFacts,
    facts_from_dict,
    facts_to_dict,
)
from hpcwrap.runlog.fsio import copy_mode_for
from hpcwrap.runlog.locks import LockConfig
from hpcwrap.runlog.outputs import recorded_outputs
from hpcwrap.scheduler.base import Scheduler, SubmitInterrupted, SubmitResult
from hpcwrap.scheduler.sbatch_options import (
    NOT_A_SUBMISSION,
    CommandLine,
    Directives,
    Resolved,
    SignalSpec,
    array_range,
    check_batch_script,
    default_job_name,
    directive,
    expand_pattern,
    output_pattern,
    parse_sbatch_args,
    parse_signal_value,
    read_directives,
    resolve,
    signal_word,
    slurm_time_seconds,
    walltime_signal_value,
    work_dir,
)
from hpcwrap.submit import codestate
from hpcwrap.submit.newrun import (
    code_line,
    create_run_from_request,
    sidecar_rel,
    write_exact,
)
from hpcwrap.submit.request import RunRequest

# Re-exported for callers of this module; defined once in runlog.layout.
COMMENT_PREFIX = layout.COMMENT_PREFIX
SCRIPT_DIR = layout.SCRIPT_DIR
JOB_SCRIPT = layout.JOB_SCRIPT


@dataclass(frozen=True)
class WalltimeSignal:
    """``--signal=B:<name>@<lead>`` that hpcwrap adds by default (None: add none)."""

    name: str
    lead: float

    @property
    def value(self) -> str:
        return walltime_signal_value(self.name, self.lead)


def walltime_signal(
    settings: Settings, spec: str | None = None, disabled: bool = False
) -> WalltimeSignal | None:
    """The walltime warning to ask for: ``--walltime-signal SIG[@LEAD]`` over the settings."""
    if disabled or (spec is None and not settings.walltime_warning):
        return None
    name, lead = settings.walltime_signal, settings.walltime_lead
    if spec is not None:
        sig, at, lead_text = spec.partition("@")
        name = sig.strip() or name
        try:
            if at:
                lead = parse_duration(lead_text.strip(), "--walltime-signal lead")
            signal_number(name)
        except ConfigError as exc:
            raise UsageError(f"--walltime-signal {spec!r}: {exc}") from None
    return WalltimeSignal(name, lead)


@dataclass
class Prepared:
    """Everything decided before anything is written."""

    script: str  # as the user gave it
    script_path: Path  # absolute
    script_bytes: bytes
    script_args: tuple[str, ...]
    directives: Directives
    cmdline: CommandLine
    job_name: str
    signal: WalltimeSignal | None
    submit_dir: Path
    env: Mapping[str, str]
    notes: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)  # hpcwrap's, after the user's options
    script_mode: int = 0o644  # the original's permission bits: its copies are never wider

    def defaults(self, run_log: Path) -> list[tuple[str, str]]:
        """hpcwrap's (option, value) defaults for this run."""
        out = [
            ("job-name", self.job_name),
            ("comment", layout.comment_for(run_log)),
            ("open-mode", "append"),
        ]
        if self.signal is not None:
            out.append(("signal", self.signal.value))
        return out

    def resolved(self, run_log: Path) -> Resolved:
        defaults = parse_sbatch_args([f"--{k}={v}" for k, v in self.defaults(run_log)])
        return resolve(self.cmdline.opts, self.directives, self.env, defaults=defaults)

    def user_resolved(self) -> Resolved:
        return resolve(self.cmdline.opts, self.directives, self.env)

    def warning(self) -> SignalSpec | None:
        """The walltime warning the job will get, resolved once: the user's own --signal
        (command line, ``#SBATCH``, SBATCH_SIGNAL) over hpcwrap's; None: none."""
        user = self.user_resolved()
        if user.has("signal"):
            return parse_signal_value(str(user.get("signal") or ""))
        if self.signal is None:
            return None
        return SignalSpec(signal_word(self.signal.name), self.signal.lead, batch_only=True)

    def split_defaults(self, run_log: Path) -> tuple[list[str], list[str]]:
        """hpcwrap's defaults as ``#SBATCH`` lines, and the few that cannot be one.

        A value with a line break (a hostile run-log path) cannot go in an
        ``#SBATCH`` line; it goes on the command line instead, and only when
        the user set that option nowhere, so the user's setting still wins.
        """
        user = self.user_resolved()
        lines: list[str] = []
        argv: list[str] = []
        for option, value in self.defaults(run_log):
            line = directive(option, value)
            if line is not None:
                lines.append(line)
            elif not user.has(option):
                argv.append(f"--{option}={value}")
        return lines, argv

    def sbatch_args(self, run_log: Path) -> list[str]:
        """The sbatch options hpcwrap passes (the scheduler adds --parsable and job.sh)."""
        return [*self.split_defaults(run_log)[1], *self.cmdline.sbatch, *self.extra_args]


def prepare(
    cmdline: CommandLine,
    *,
    settings: Settings,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    walltime: WalltimeSignal | None = None,
) -> Prepared:
    """Read the script and the options; refuse what cannot be a submission. Writes nothing."""
    environ = dict(os.environ) if env is None else dict(env)
    for o in cmdline.opts:
        if o.key in NOT_A_SUBMISSION:
            raise UsageError(f"{o.spelled}: {NOT_A_SUBMISSION[o.key or '']}")
        if o.key == "wrap":
            raise UsageError(
                "--wrap is not supported: hpcwrap records and snapshots a script file; "
                "put the command in a script (#!/bin/bash + the command) and submit that"
            )
    if cmdline.script is None:
        raise UsageError(
            "missing the batch script: hpcwrap sbatch [hpcwrap options] [sbatch options] "
            "script.sh [args] (a script on standard input is not supported)"
        )
    script = cmdline.script
    # Everything the run log records from the command line and the folder, checked
    # before anything is written (textcheck: non-UTF-8 bytes cannot be recorded).
    textcheck.require_utf8("the working folder", str(cwd))
    textcheck.require_utf8("the batch script", script)
    textcheck.require_all_utf8("the sbatch option", cmdline.sbatch)
    textcheck.require_all_utf8("the option", cmdline.own)
    textcheck.require_all_utf8("the script argument", cmdline.script_args)
    path = Path(os.path.abspath(cwd / Path(script).expanduser()))
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UsageError(_missing_script(cmdline, script)) from None
    except IsADirectoryError:
        raise UsageError(f"{script}: is a folder, not a batch script") from None
    except OSError as exc:
        raise UsageError(f"{script}: cannot read it: {exc.strerror}") from None
    check_batch_script(data, script)
    text = data.decode("utf-8", errors="surrogateescape")
    directives = read_directives(text, script)
    for key, why in NOT_A_SUBMISSION.items():
        if any(o.key == key for o in parse_sbatch_args(directives.args)):
            raise UsageError(f"{script}: #SBATCH --{key}: {why}")
    prep = Prepared(
        script=script,
        script_path=path,
        script_bytes=data,
        script_mode=mode,
        script_args=cmdline.script_args,
        directives=directives,
        cmdline=cmdline,
        job_name=default_job_name(script),
        signal=walltime,
        submit_dir=Path(os.path.abspath(cwd)),
        env=environ,
    )
    prep.notes.extend(_notes(prep))
    return prep


def _missing_script(cmdline: CommandLine, script: str) -> str:
    msg = f"{script}: no such batch script"
    unknown = [o for o in cmdline.opts if o.spec is None and o.spelled != ":"]
    if unknown and "=" not in unknown[-1].tokens[0]:
        msg += (
            f" (hpcwrap took it for the script because {unknown[-1].spelled} is not an "
            f"sbatch option it knows; write it as {unknown[-1].spelled}=VALUE if it takes one)"
        )
    return msg


def _notes(prep: Prepared) -> list[str]:
    notes = []
    for o in prep.cmdline.opts:
        if o.spec is None and o.spelled != ":":
            notes.append(
                f"{o.spelled} is not an sbatch option hpcwrap knows; passed to sbatch untouched"
            )
    user = prep.user_resolved()
    if user.has("comment"):
        notes.append(
            f"your --comment ({user.source('comment')}) is kept; the job does not carry "
            "hpcwrap's comment, so node hooks cannot find this run by its comment"
        )
    if prep.signal is not None and user.has("signal"):
        notes.append(f"your --signal ({user.source('signal')}) replaces hpcwrap's walltime signal")
    if user.hetjob:
        notes.append("heterogeneous job: hpcwrap records the first component's settings")
    return notes


# ---------------------------------------------------------------- the batch script


def _ignore_early_warning(prep: Prepared) -> list[str]:
    """Lines that keep the walltime warning from killing the batch shell before
    ``hpcwrap run`` handles it, and tell the wrapper which signal it is: Slurm may send
    it at once (a limit shorter than the lead, or up to 60 s early), and its default
    action ended such jobs FAILED 0:12. Ignored across the exec until the wrapper installs
    its handler; with ``B:`` the wrapper gives the command the default back
    (``layout.BATCH_IGNORED_ENV``); without it Slurm signals every process, and the
    command starts with it ignored until it installs its own handler."""
    warning = prep.warning()
    if warning is None:
        return []
    name = warning.name
    lines = [
        "# The walltime warning, as resolved at submission; an early one must not kill this",
        "# shell before hpcwrap run handles it.",
        f"trap '' {name}",
        f"export {layout.WALLTIME_SIGNAL_ENV}={name}",
        f"export {layout.WALLTIME_TARGETS_ENV}={'batch' if warning.batch_only else 'all'}",
    ]
    if warning.batch_only:
        lines.append(f"export {layout.BATCH_IGNORED_ENV}={name}")
    return lines


def lead_notes(prep: Prepared, *, chained: bool = False) -> list[str]:
    """hpcwrap's own warning lead capped at a quarter of the time limit (Slurm may send it
    up to 60 s early: on a short job an early warning is normal, and does no harm); a
    user's own ``--signal`` kept as given, with a note when its lead is over half (in a
    resume chain ``resume.cap_walltime_signal`` caps that one at half instead)."""
    user = prep.user_resolved()
    limit = slurm_time_seconds(user.get("time"))
    if limit is None or limit <= 0:
        return []
    if user.has("signal"):
        if chained:
            return []
        mine = parse_signal_value(str(user.get("signal") or ""))
        if mine is not None and mine.lead > limit / 2:
            return [
                f"your --signal ({user.source('signal')}) asks for the warning {mine.lead:g} s "
                f"before a {limit:g} s limit: kept as given; it may come at once"
            ]
        return []
    if prep.signal is None or prep.signal.lead <= limit / 4:
        return []
    capped = max(int(limit / 4), 1)
    note = (
        f"walltime warning lead {prep.signal.lead:g} s is more than a quarter of the "
        f"{limit:g} s limit: asked for {capped} s before the limit instead"
    )
    prep.signal = WalltimeSignal(prep.signal.name, capped)
    return [note]


def batch_script(prep: Prepared, *, run_log: Path, snapshot: Path, python: str) -> str:
    """The batch script submitted for this run (see the module docstring)."""
    q = shlex.quote
    own_lines, _ = prep.split_defaults(run_log)
    command = [q(python), "-m", "hpcwrap", "run", "--log", '"$HPCWRAP_RUN_LOG"', "--"]
    command += [q(str(snapshot)), *(q(a) for a in prep.script_args)]
    lines = [
        "#!/bin/bash",
        f"# Batch script written by hpcwrap {__version__}: it runs a snapshot of the user's",
        "# script under `hpcwrap run`, which keeps the run log up to date.",
        "# hpcwrap's defaults come first: the script's #SBATCH lines below, SBATCH_*",
        "# variables and sbatch command-line options all take precedence over them.",
        *own_lines,
        "# The script's own #SBATCH lines, verbatim:",
        *prep.directives.lines,
        *_ignore_early_warning(prep),
        "export HPCWRAP_RUN_LOG=" + q(str(run_log)),
        "exec " + " ".join(command),
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- what the log records


def execution_id(result: SubmitResult, resolved: Resolved) -> str:
    """``12345``, or ``12345_[0-15]`` for an array job."""
    spec = resolved.get("array")
    return f"{result.job_id}_[{array_range(spec)}]" if spec else result.job_id


def submit_facts(
    prep: Prepared, run_log: Path, result: SubmitResult | None = None
) -> dict[str, Any]:
    """The effective sbatch settings, for ``state.submit`` (read by later tools).

    ``output``/``error``: absolute filename patterns; ``output_path``/``error_path``:
    the same with what is known filled in (%j %A %x %u); ``error`` None means stderr
    goes to the output file. ``sources`` says where each setting came from.
    """
    res = prep.resolved(run_log)
    workdir = work_dir(res, prep.submit_dir)
    array = bool(res.get("array"))
    job_name = res.get("job-name") or prep.job_name
    user = getpass.getuser()
    job_id = result.job_id if result else None
    facts: dict[str, Any] = {
        "workdir": str(workdir),
        "job_name": job_name,
        "comment_is_hpcwrap": layout.run_log_from_comment(res.get("comment")) is not None
        and res.source("comment") == "hpcwrap",
    }
    for which in ("output", "error"):
        pattern = output_pattern(res, which)
        if pattern is None:
            facts[which] = facts[which + "_path"] = None
            continue
        full = pattern if os.path.isabs(pattern) else str(workdir / pattern)
        facts[which] = full
        facts[which + "_path"] = expand_pattern(
            full, job_id=job_id, job_name=job_name, user=user, array=array
        )
    for key in ("array", "time", "partition", "nodes", "open-mode", "signal", "dependency"):
        facts[key.replace("-", "_")] = res.get(key)
    facts["wait"] = res.has("wait")
    facts["sources"] = {k: s.source for k, s in res.settings.items()}
    return facts


# ---------------------------------------------------------------- submit


@dataclass(frozen=True)
class SubmitOutcome:
    log: RunLog
    result: SubmitResult
    execution_id: str
    job_script: Path
    facts: dict[str, Any]
    notes: tuple[str, ...]


Announce = Callable[[SubmitResult, str, RunLog], None]


def _remove_tag(code: CodeFacts | None) -> str | None:
    if code is None or not code.tag or not code.repo or not code.commit:
        return None
    try:
        removed = codestate.delete_tag(Path(code.repo), code.tag, code.commit)
    except Exception:  # a failure to clean up must not hide the submission error
        removed = False
    return code.tag if removed else None


def record_failure(log: RunLog, message: str, *, attempted: datetime, remove_tag: bool) -> None:
    """Job block SUBMIT_FAILED with ``message``; the experiment tag removed."""
    code = log.read().code_state
    tag = _remove_tag(code) if remove_tag else None
    after: CodeFacts | None = None
    if code is not None and tag is not None:
        after = replace(
            code, tag=None, tag_removed=tag, tag_note=f"tag `{tag}` removed: the submission failed"
        )
    log.record(
        lifecycle.SubmitFailed(
            attempted, message, code=after, code_line=code_line(after) if after else None
        ),
        data={"error": message, "tag_removed": [tag] if tag else []},
    )


def write_job_files(log: RunLog, prep: Prepared, *, python: str | None = None) -> Path:
    """The sidecar's ``script/<name>`` snapshot and ``job.sh``; returns job.sh's path."""
    snapshot = log.sidecar / SCRIPT_DIR / prep.script_path.name
    # Copies are never wider than the original: a private script (an HF token in it)
    # stays private in its copy and in job.sh, which names it.
    write_exact(snapshot, prep.script_bytes, mode=copy_mode_for(prep.script_mode, 0o700))
    job_sh = log.sidecar / JOB_SCRIPT
    text = batch_script(prep, run_log=log.path, snapshot=snapshot, python=python or sys.executable)
    # The batch script must carry the real arguments; when one looks secret, keep
    # the file to its owner (the run log, state and events only see "***").
    secret = redact_argv(prep.script_args) != list(prep.script_args)
    job_mode = 0o600 if secret else copy_mode_for(prep.script_mode, 0o600)
    write_exact(job_sh, text.encode("utf-8", errors="surrogateescape"), job_mode)
    return job_sh


def submit(
    request: RunRequest,
    prep: Prepared,
    *,
    scheduler: Scheduler,
    python: str | None = None,
    when: datetime | None = None,
    announce: Announce | None = None,
    locks: LockConfig | None = None,
) -> SubmitOutcome:
    """Create the run log, then submit its job (``submit_job``); see the module docstring."""
    log = create_log(request, prep, when=when, locks=locks)
    return submit_job(log, prep, scheduler=scheduler, python=python, announce=announce)


def create_log(
    request: RunRequest,
    prep: Prepared,
    *,
    when: datetime | None = None,
    locks: LockConfig | None = None,
) -> RunLog:
    """The run log of a submission, written before anything is submitted."""
    return create_run_from_request(
        request,
        script=describe_command(prep.script, prep.script_args),
        cwd=prep.submit_dir,
        when=when,
        locks=locks,
    )


def save_sbatch_args(log: RunLog, args: Sequence[str]) -> Path:
    """The submission's sbatch options beside job.sh (0600: they may hold real secrets);
    a successor of a resume chain is submitted with them."""
    path = log.sidecar / layout.SBATCH_ARGS
    write_exact(path, "\0".join(args).encode("utf-8", "surrogateescape"), mode=0o600)
    return path


def load_sbatch_args(log: RunLog) -> list[str]:
    try:
        raw = (log.sidecar / layout.SBATCH_ARGS).read_bytes()
    except FileNotFoundError:
        return []
    text = raw.decode("utf-8", "surrogateescape")
    return [a for a in text.split("\0") if a] if text else []


def _prepare_job(
    log: RunLog,
    prep: Prepared,
    scheduler: Scheduler,
    python: str | None,
    chain: ChainFacts | None,
) -> tuple[Path, list[str]]:
    """The sidecar's job files, and the submission recorded as about to happen."""
    job_sh = write_job_files(log, prep, python=python)
    args = prep.sbatch_args(log.path)
    save_sbatch_args(log, args)
    command = redact_argv(scheduler.command(job_sh, args))
    facts = submit_facts(prep, log.path)
    facts.update(
        scheduler=scheduler.name,
        command=command,
        job_script=sidecar_rel(log, job_sh),
        script_snapshot=sidecar_rel(log, job_sh.parent / SCRIPT_DIR / prep.script_path.name),
        notes=list(prep.notes),
    )
    log.record(
        lifecycle.Described(submit=facts_from_dict(SubmitFacts, facts), chain=chain),
        event="submitting",
        data={"command": command},
    )
    return job_sh, args


def submit_job(
    log: RunLog,
    prep: Prepared,
    *,
    scheduler: Scheduler,
    python: str | None = None,
    announce: Announce | None = None,
    chain: ChainFacts | None = None,
) -> SubmitOutcome:
    """Submit a job script for an existing run log (a new run, or the next job of one).

    Writes job.sh, the script snapshot and the sbatch options (``sbatch.args``, for
    resumed jobs) into the sidecar, records the effective sbatch settings (and the
    resume chain, with ``chain``), runs sbatch and records the job id the moment
    sbatch prints it (``Submitted``), or the failure (``SubmitFailed``).
    """
    attempted = now()
    try:
        job_sh, args = _prepare_job(log, prep, scheduler, python, chain)
    except BaseException as exc:
        why = (
            "submit interrupted (Ctrl-C) before sbatch ran: no job"
            if isinstance(exc, KeyboardInterrupt)
            else f"hpcwrap could not prepare the job: {exc}"
        )
        record_failure(log, why, attempted=attempted, remove_tag=True)
        raise

    seen: list[tuple[SubmitResult, str]] = []
    resolved = prep.resolved(log.path)

    def on_submitted(result: SubmitResult) -> None:
        exec_id = execution_id(result, resolved)
        done = submit_facts(prep, log.path, result)
        log.record(
            lifecycle.Submitted(
                when=now(),
                job_id=result.job_id,
                execution_id=exec_id,
                cluster=result.cluster,
                output_path=done["output_path"],
                error_path=done["error_path"],
            ),
            data={"job_id": result.job_id, "cluster": result.cluster, "execution_id": exec_id},
        )
        seen.append((result, exec_id))
        if announce is not None:
            announce(result, exec_id, log)

    try:
        result = scheduler.submit(
            job_sh, args, prep.env, cwd=prep.submit_dir, on_submitted=on_submitted
        )
    except SubmitInterrupted as exc:
        if exc.result is None:
            may_exist = "may still exist" in exc.detail
            record_failure(
                log,
                f"submit interrupted (Ctrl-C): {exc.detail}",
                attempted=attempted,
                remove_tag=not may_exist,
            )
        else:
            log.append_event("submit_interrupted", {"detail": exc.detail, "job_id_seen": True})
        raise
    except KeyboardInterrupt:
        if seen:
            log.append_event("submit_interrupted", {"job_id_seen": True})
        else:
            record_failure(
                log,
                "submit interrupted (Ctrl-C) before a job id was seen; a job may still exist",
                attempted=attempted,
                remove_tag=False,
            )
        raise
    except SchedulerError as exc:
        # SubmitError, SchedulerUnavailableError or another SchedulerError: the same
        # type goes up, its message saying where the failure was recorded.
        record_failure(log, str(exc), attempted=attempted, remove_tag=True)
        raise _with_log_path(exc, log.path) from None
    exec_id = seen[0][1] if seen else execution_id(result, resolved)
    final = log.read().submit
    facts_now = facts_to_dict(final) if final is not None else {}
    return SubmitOutcome(log, result, exec_id, job_sh, facts_now, tuple(prep.notes))


def _with_log_path(exc: SchedulerError, path: Path) -> SchedulerError:
    message = f"{exc}\nrecorded as submit failed in {path}"
    if isinstance(exc, SubmitError):
        return SubmitError(message, exc.returncode)
    return type(exc)(message)


# ---------------------------------------------------------------- --dry-run


@dataclass(frozen=True)
class DryRun:
    run_log: Path  # the first free name, as create_run picks it (a race may take it)
    job_script: str
    command: list[str]
    code: str
    facts: dict[str, Any]
    notes: tuple[str, ...]


def dry_run(
    request: RunRequest,
    prep: Prepared,
    *,
    scheduler: Scheduler,
    python: str | None = None,
    when: datetime | None = None,
) -> DryRun:
    """What ``submit`` would write and run, writing nothing."""
    root = (
        request.run_logs if request.run_logs.is_absolute() else prep.submit_dir / request.run_logs
    )
    md = layout.predicted_log(root, request.group, (when or now()).date(), request.task)
    sidecar = layout.sidecar_for(md)
    snapshot = sidecar / SCRIPT_DIR / prep.script_path.name
    text = batch_script(prep, run_log=md, snapshot=snapshot, python=python or sys.executable)
    command = scheduler.command(sidecar / JOB_SCRIPT, prep.sbatch_args(md))
    code = codestate.capture(
        prep.submit_dir, exclude=[root], outputs=recorded_outputs(root)
    ).summary()
    return DryRun(md, text, command, code, submit_facts(prep, md), tuple(prep.notes))
