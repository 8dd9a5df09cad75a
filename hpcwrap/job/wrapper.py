"""``hpcwrap run``: one command under supervision, its output passed through and read.

Threads (all daemons, so nothing here can keep the process alive):

- main: starts the child, handles signals (``supervise``), waits for it;
- one copy thread per pipe (``passthrough.Pump``): the output's only path;
- the scanner (``scan.Scanner``): reads progress from a bounded copy;
- the monitor: Status entries and events (``status.StatusPolicy``), tick hooks,
  signal notes; the only thread that writes the run log while the child runs.

When stdout and stderr of the wrapper lead to the same file (Slurm's default
single output file), the child gets one pipe for both, so the order between
its stdout and stderr lines stays exactly as it wrote them.

A run-log failure never changes the exit status: the wrapper exits with the
child's (128+N when signal N killed it).

The tasks of a job array share one Job block (``runlog/arrays.py``); their Status
entries start with ``task <N>: ``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import resource
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from hpcwrap import earlysignals
from hpcwrap.config import Settings, signal_number
from hpcwrap.errors import ConfigError
from hpcwrap.job import followup
from hpcwrap.job import results as res
from hpcwrap.job.jobenv import (
    JobEnv,
    TimeLeft,
    describe_seconds,
    job_env,
    task_prefix,
    wandb_data_env,
)
from hpcwrap.job.passthrough import Pump, enlarge_pipe, same_file
from hpcwrap.job.seams import Chain
from hpcwrap.job.sink import STUCK_LOCK_WAIT, LogSink, warn
from hpcwrap.job.status import (
    StatusConfig,
    StatusPolicy,
    TickHook,
    Write,
    error_text,
    fmt_num,
    hhmm,
    progress_data,
    progress_fields,
)
from hpcwrap.job.supervise import SignalNote, Supervisor, exit_code, signal_name
from hpcwrap.reading import checkpoints, ownership, records
from hpcwrap.reading.formats import LineParser
from hpcwrap.reading.progress import Notable, Progress, Snapshot, checkpoint_note
from hpcwrap.reading.scan import Scanner
from hpcwrap.redact import describe_command
from hpcwrap.runlog import RunLog, lifecycle, neighbours, spool
from hpcwrap.runlog.dates import format_runtime
from hpcwrap.runlog.dates import now as utc_now
from hpcwrap.runlog.endings import JobState, Strength, Verdict
from hpcwrap.runlog.layout import BATCH_IGNORED_ENV, WALLTIME_SIGNAL_ENV, WALLTIME_TARGETS_ENV
from hpcwrap.runlog.spool import register_job

LINGER = 10.0  # after the child exits: wait this long for output still in flight
FINAL_WRITE_TIMEOUT = 120.0
TICK = 1.0
_STOP = object()


def _wall() -> datetime:
    return datetime.now().astimezone()


@dataclass
class WrapperOptions:
    settings: Settings = field(default_factory=Settings)
    execution_id: str | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)
    hooks: Sequence[TickHook] = ()
    stdout_fd: int = 1
    stderr_fd: int = 2
    err: TextIO | None = None  # where the wrapper's own messages go (default sys.stderr)
    linger: float = LINGER
    term_grace: float = 25.0
    tick: float = TICK
    final_write_timeout: float = FINAL_WRITE_TIMEOUT
    monitor_timeout: float = 30.0  # how long the end waits for the monitor's last writes
    # The resume chain's in-job steps (job/seams.py), made when a run has a chain; the
    # CLI wires it: job/ imports nothing of the login side.
    chain: Callable[[], Chain] | None = None


@dataclass
class Outcome:
    """What ``run_command`` did (for tests and the CLI)."""

    exit_code: int
    state: str
    snapshot: Snapshot
    start: datetime
    end: datetime
    log_failures: int = 0
    run_log_written: bool = False


def undo_batch_ignore(environ: Mapping[str, str], handled: int | None) -> None:
    """The batch script ignored the walltime signal until this wrapper handles it
    (``submit._ignore_early_warning``). Where the wrapper handles another signal, the
    ignored one goes back to its default, so the command never inherits it ignored."""
    name = environ.get(BATCH_IGNORED_ENV)
    if not name:
        return
    try:
        sig = signal_number(name)
    except ConfigError:
        return
    current = signal.getsignal(sig)
    if sig != handled and (current is signal.SIG_IGN or earlysignals.is_catcher(current)):
        signal.signal(sig, signal.SIG_DFL)


def job_warning(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """The settings with the job's walltime warning as its submission resolved it
    (``HPCWRAP_WALLTIME_SIGNAL`` in job.sh: hpcwrap's default, ``--walltime-signal`` or
    the script's own ``--signal``): one signal for the batch script and the wrapper."""
    name = environ.get(WALLTIME_SIGNAL_ENV)
    if not name:
        return settings
    try:
        signal_number(name)
    except ConfigError:
        return settings
    return dataclasses.replace(settings, walltime_signal=name)


def _walltime_signum(settings: Settings) -> int | None:
    try:
        return signal_number(settings.walltime_signal)
    except ConfigError:
        return None


class Monitor(threading.Thread):
    """Status entries, events, tick hooks and signal notes (runs beside the child)."""

    def __init__(self, wrapper: Wrapper) -> None:
        super().__init__(name="hpcwrap-monitor", daemon=True)
        self.w = wrapper
        self.inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._hook_failed: set[int] = set()

    def notify(self, item: object) -> None:
        self.inbox.put(item)  # SimpleQueue.put is safe from signal handlers

    def stop(self) -> None:
        self.inbox.put(_STOP)

    def _fields(self) -> list[str]:
        out: list[str] = []
        for i, hook in enumerate(self.w.opts.hooks):
            try:
                out.extend(hook.status_fields())
            except Exception as exc:
                self._hook_error(i, hook, exc)
        return out

    def _hook_error(self, i: int, hook: TickHook, exc: BaseException) -> None:
        if i not in self._hook_failed:
            self._hook_failed.add(i)
            warn(f"warning: tick hook {type(hook).__name__} failed: {exc!r}", self.w.err)

    def run(self) -> None:
        w = self.w
        w.time_left.prefetch()  # the limit, known from the start (see TimeLeft.prefetch)
        try:
            w.record_start()
        except Exception as exc:  # never fatal
            warn(f"warning: could not record the start: {exc!r}", w.err)
        w.register_for_hooks()
        stop = False
        while not stop:
            items: list[object] = []
            try:
                items.append(self.inbox.get(timeout=w.opts.tick))
                while True:
                    items.append(self.inbox.get_nowait())
            except queue.Empty:
                pass
            for item in items:
                if item is _STOP:
                    stop = True
                elif isinstance(item, Notable):
                    snap = w.progress.snapshot()
                    w.policy.notable(item, snap)
                    if item.resumed and snap.resumed_from:
                        w.record_resumed_from(snap.resumed_from)
                elif isinstance(item, Write):
                    w.perform(item)
                elif isinstance(item, SignalNote):
                    try:
                        w.on_signal(item)
                    except Exception as exc:
                        warn(f"warning: recording {item.name} failed: {exc!r}", w.err)
            held = w.supervisor.forward_held() if hasattr(w, "supervisor") else None
            if held is not None:
                try:
                    w.on_signal(held)
                except Exception as exc:
                    warn(f"warning: recording {held.name} failed: {exc!r}", w.err)
            now = w.mono()
            for i, hook in enumerate(w.opts.hooks):
                try:
                    hook.tick(now)
                except Exception as exc:
                    self._hook_error(i, hook, exc)
            if stop:
                break  # the end entry is written by the finisher
            snap = w.progress.snapshot()
            for write in w.policy.decide(now, snap, self._fields()):
                w.perform(write)


class Wrapper:
    """One supervised run of ``argv``. Use ``run()`` once, from the main thread."""

    def __init__(self, argv: Sequence[str], run: RunLog | None, opts: WrapperOptions) -> None:
        if not argv:
            raise ValueError("empty command")
        self.argv = list(argv)
        self.opts = opts
        self.settings = job_warning(opts.settings, opts.environ)
        # The user's own --signal without B: (Supervisor.walltime_to_all says what changes)
        self.warning_to_all = opts.environ.get(WALLTIME_TARGETS_ENV) == "all"
        self.err = opts.err
        self.mono: Callable[[], float] = time.monotonic
        self.env: JobEnv = job_env(opts.environ, opts.execution_id)
        self.sink = LogSink(run, opts.err)
        self.progress = Progress(_wall, self.mono)
        self.parser = LineParser(self.settings.patterns)
        self.start_mono = self.mono()
        self.start_wall = utc_now()
        self.policy = StatusPolicy(
            StatusConfig(
                status_every=self.settings.status_every,
                stall_after=self.settings.stall_after,
                min_interval=self.settings.status_min_interval,
            ),
            self.start_mono,
        )
        self.monitor = Monitor(self)
        self.time_left = TimeLeft(
            self.env.job_id if self.env.in_slurm else None,
            end_epoch=opts.environ.get("SLURM_JOB_END_TIME"),
        )
        self.left_at_term: float | None = None  # at the first TERM (None: unknown)
        self.walltime_left: float | None = None
        self.write_errors: list[str] = []
        self.prefix = task_prefix(self.env)
        self.child_env: dict[str, str] | None = None  # None: the wrapper's own environment
        self.resumed_chain: tuple[int, float | None] | None = None  # (jobs, chain start loss)
        self.successor: str | None = None  # the chain's successor this job submitted
        self._exit_lock = threading.Lock()
        self._exited = False  # the command has exited: no more progress entries

    # -- callbacks from other threads -------------------------------------------

    def _on_chunk(self, stream: int, data: bytes) -> None:
        self.progress.note_output(stream, len(data))
        self.scanner.offer(stream, data)

    def _on_write_error(self, stream: int, exc: OSError, permanent: bool) -> None:
        name = "stdout" if stream == 1 else "stderr"
        how = "stopped (its output is still drained)" if permanent else "dropped a chunk"
        msg = f"writing the command's {name} failed: {exc.strerror or exc}; {how}"
        self.write_errors.append(msg)
        warn(f"warning: {msg}", self.err)
        self.monitor.notify(Write("output_error", {"stream": name, "error": str(exc)}))

    def _on_parser_error(self, exc: BaseException, sample: bytes) -> None:
        warn(
            f"warning: reading progress failed ({type(exc).__name__}: {exc}); the output "
            "passes through unchanged and scanning goes on (reported once)",
            self.err,
        )
        self.sink.event(
            "parser_error",
            {"error": f"{type(exc).__name__}: {exc}", "sample": sample.decode("utf-8", "replace")},
        )

    # -- run-log writes (monitor thread, then the finisher) ---------------------

    def status(self, text: str, event: str, data: dict[str, Any]) -> None:
        """A progress Status entry now; an array task's names the task.

        Not once the command has exited: Status entries are kept in time order and the
        end entry is stamped with the exit, so a progress entry written during the
        linger (the reader still busy with the last lines, under load) would follow the
        end. Its figures reach the end entry through the final snapshot instead."""
        with self._exit_lock:
            if self._exited:
                return
            when = utc_now()
        if self.env.is_array_task:
            data = {**data, "array_task": self.env.array_task_id}
        self.sink.status(self.prefix + text, when, event=event, data=data)

    def signal_status(self, note: SignalNote, text: str, event: str, data: dict[str, Any]) -> None:
        """A Status entry about a signal the wrapper received (``SignalReceived``), stamped
        when it was received: written later, it still comes before the end entry."""
        if self.env.is_array_task:
            data = {**data, "array_task": self.env.array_task_id}
        full = self.prefix + text
        received = utc_now() - timedelta(seconds=max(self.mono() - note.mono, 0.0))
        self.sink.record(
            lifecycle.SignalReceived(received, note.kind, note.name, full),
            event=event,
            data={"text": full, **data},
        )

    def perform(self, write: Write) -> None:
        if write.text is not None:
            self.status(write.text, write.event, write.data)
        else:
            self.sink.event(write.event, write.data)

    # -- walltime-resume chains (hpcwrap.submit.resume) ---------------------------------

    def _chain(self) -> Chain | None:
        """The chain's in-job steps, when this job's run log has a chain (the factory
        imports the login side's code only then: most runs have no chain)."""
        run, env = self.sink.run, self.env
        if self.opts.chain is None or run is None or not env.in_slurm or env.is_array_task:
            return None
        try:
            if run.read().chain is None:
                return None
        except Exception:  # a log that cannot be read: no chain, the job still runs
            return None
        return self.opts.chain()

    def begin_chain(self) -> Outcome | None:
        """Before the command starts, in a chained run (``WrapperOptions.chain``): the
        chain's guards, the resumed block and the successor. Returns an Outcome when this
        job must not train (the chain stopped)."""
        chain, run, job_id = self._chain(), self.sink.run, self.env.job_id
        if chain is None or run is None or job_id is None:
            return None
        start = chain.begin(
            run,
            job_id,
            self.argv,
            self.opts.environ,
            self.sink.record,
            lambda message: warn(message, self.err),
        )
        if start is None:
            return None
        if start.argv is not None:
            self.argv = list(start.argv)
        if start.child_env is not None:
            self.child_env = dict(start.child_env)
        if start.resumed is not None:
            self.resumed_chain = start.resumed
        self.successor = start.successor
        if start.stop:
            end = utc_now()
            return Outcome(0, JobState.CANCELLED, self.progress.snapshot(), end, end)
        return None

    def _left_at_term(self, term_at: float | None) -> float | None:
        """The time left when the first TERM came: as the monitor noted it, else counted
        from the limit read at the start (a monitor stuck on a held lock never handles the
        TERM's note, and a TERM at the limit must not read as one with time left)."""
        if self.left_at_term is not None or term_at is None or not self.env.in_slurm:
            return self.left_at_term
        return self.time_left.at(term_at)

    def end_chain(self, final: str, unsure: str | None = None) -> None:
        """After the end is recorded: a job that did not end at its limit cancels the
        waiting successor (a completed run, a crash, a user's scancel stop the chain);
        ``unsure``: why the end is only a guess (the successor then checks it)."""
        chain, run = self._chain(), self.sink.run
        if chain is None and self.successor is not None and self.opts.chain is not None:
            chain = self.opts.chain()  # the log cannot be read now; the successor is known
        if chain is not None and run is not None:
            chain.end(run, self.env.job_id, final, unsure, self.successor)

    def record_resumed_from(self, said: str) -> None:
        """The training said which checkpoint it continues from (Lightning restoring its
        requeue's hpc_ckpt_N.ckpt or a ``ckpt_path``, nanoGPT's ``--init_from=resume``):
        this job's block gets it as ``resumed from`` unless the chain already named one."""
        path = said if os.path.isabs(said) else os.path.normpath(os.path.join(self.opts.cwd, said))
        self.sink.record(
            lifecycle.Resumed(
                utc_now(),
                resumed_from=path,
                execution_id=self.env.execution_id,
                text=f"{self.prefix}the training resumed from `{path}` (its own words)",
                said=True,
            ),
            data={"checkpoint": path, "said": said},
        )

    def register_for_hooks(self) -> None:
        """Name the run log in the node's hook spool, so the epilog finds this job even
        without an hpcwrap comment (plain sbatch of a script that runs ``hpcwrap run``)."""
        if not self.env.in_slurm or self.sink.run is None:
            return
        try:
            why = register_job(self.opts.environ, self.sink.run.path)
        except Exception as exc:  # never fatal
            why = spool.NotRegistered(repr(exc))
        if why is not None and not why.quiet:  # said in the log: the epilog will not see it
            text = (
                f"warning: not registered with the node hooks ({why}): if this job is killed, "
                "its end reaches the log only through its follow-up job or `hpcwrap poll`"
            )
            warn(text, self.err)
            self.status(text, "hooks_unregistered", {"why": str(why)})

    def record_start(self) -> None:
        env = self.env
        start = self.start_wall
        left = self.time_left.seconds()
        limit_at = utc_now() + timedelta(seconds=left) if left is not None else None
        text = None
        if env.is_array_task:
            again = f" (restart {env.restart_count})" if env.restart_count else ""
            text = f"{self.prefix}started on {env.nodes}{again}"
        self.sink.record(
            lifecycle.Started(
                when=start,
                execution_id=env.execution_id,
                nodes=env.nodes,
                in_slurm=env.in_slurm,
                restart_count=env.restart_count,
                cluster=env.cluster,
                array=env if env.is_array_task else None,
                text=text,
                limit_at=limit_at,
            ),
            data={
                "execution_id": env.execution_id,
                "node": env.nodes,
                "restart_count": env.restart_count,
                "pid": os.getpid(),
                "child_pid": self.supervisor.pid,
                "command": describe_command(self.argv[0], self.argv[1:]),
                **self._array_data(),
            },
        )

    def _array_data(self) -> dict[str, Any]:
        if not self.env.is_array_task:
            return {}
        return {"array_task": self.env.array_task_id, "array": self.env.array_block_id}

    def on_signal(self, note: SignalNote) -> None:
        self.scanner.settle()  # the lines printed just before the signal count
        snap = self.progress.snapshot()
        fields_ = ", ".join(progress_fields(snap)) or "no progress recognised yet"
        data: dict[str, Any] = {
            "signal": note.name,
            "count": note.count,
            "step": snap.step,
            "forwarded_to": list(note.forwarded_to) or ("group" if note.group else None),
        }
        if note.not_forwarded:
            data["not_forwarded"] = note.not_forwarded
        if note.kind == "walltime" and note.held_for is not None:
            pids = ", ".join(map(str, note.forwarded_to))
            text = (
                f"walltime warning ({note.name}) forwarded to the training (pid {pids}) "
                f"{describe_seconds(note.held_for)} after it came, once it handled it; {fields_}"
            )
            self.signal_status(note, text, "walltime_signal", {**data, "held_s": note.held_for})
            return
        if note.kind == "walltime":
            left = self.time_left.seconds()
            if left is None:
                left_text = (
                    f"{describe_seconds(self.settings.walltime_lead)} left (the configured lead; "
                    "Slurm may send it up to 60 s early)"
                )
            else:
                left_text = f"{describe_seconds(left)} left (squeue)"
                self.walltime_left = left
            data["time_left_s"] = left
            if note.forwarded_to:
                fwd = (
                    "forwarded to the training (pid " + ", ".join(map(str, note.forwarded_to)) + ")"
                )
            elif note.group:
                fwd = "forwarded to the command's process group"
            else:
                fwd = f"not forwarded: {note.not_forwarded}"
            if note.count > 1:
                self.sink.event("walltime_signal", data)
                return
            text = f"walltime warning ({note.name}), {left_text}; {fields_}; {fwd}"
            self.signal_status(note, text, "walltime_signal", data)
        elif note.kind == "terminate":
            if self.env.in_slurm:
                left = self.time_left.seconds()
                data["time_left_s"] = left
                if self.left_at_term is None:
                    self.left_at_term = left
            if note.count > 2:
                self.signal_status(
                    note,
                    f"received {note.name} a third time: SIGKILL sent to the command; {fields_}",
                    "signal",
                    data,
                )
            else:
                again = " again" if note.count > 1 else ""
                fwd = (
                    "forwarded to the command"
                    if note.group
                    else f"not forwarded: {note.not_forwarded}"
                )
                kill = ""
                if note.kill_at_mono is not None:
                    kill_wall = utc_now() + timedelta(
                        seconds=max(note.kill_at_mono - self.mono(), 0)
                    )
                    kill = f", SIGKILL at {kill_wall.strftime('%H:%M:%S')} unless it exits"
                self.signal_status(
                    note, f"received {note.name}{again}, {fwd}{kill}; {fields_}", "signal", data
                )
        else:
            self.signal_status(
                note,
                f"grace period over: SIGKILL sent to the command's process group; {fields_}",
                "signal",
                data,
            )
        self.policy.wrote_status(self.mono())

    # -- the run ----------------------------------------------------------------

    def run(self) -> Outcome:
        try:
            return self._run()
        finally:
            # Kept until the end is recorded: a late TERM must not kill us mid-write.
            if hasattr(self, "supervisor"):
                self.supervisor.restore_signal_handlers()

    def _run(self) -> Outcome:
        opts = self.opts
        merge = same_file(opts.stdout_fd, opts.stderr_fd)
        self.scanner = Scanner(
            self.parser, self.progress, self.monitor.notify, self._on_parser_error
        )
        self.supervisor = Supervisor(
            self.argv,
            notify=self.monitor.notify,
            walltime_signal=_walltime_signum(self.settings),
            forward_walltime=self.settings.forward_walltime_signal,
            walltime_to_all=self.warning_to_all,
            merge_streams=merge,
            term_grace=opts.term_grace,
            clock=self.mono,
        )
        sup = self.supervisor
        stopped = self.begin_chain()
        if stopped is not None:
            return stopped
        sup.argv = self.argv
        base = self.child_env if self.child_env is not None else os.environ
        sup.env = wandb_data_env(base, self.env, self.settings.wandb_data_dir)  # per-job staging
        sup.env.pop(BATCH_IGNORED_ENV, None)
        if self.settings.unbuffered:
            sup.env.setdefault("PYTHONUNBUFFERED", "1")  # the user's own value stands
        sup.install_signal_handlers()
        undo_batch_ignore(self.opts.environ, sup.walltime_signal)
        try:
            proc = sup.start()
        except OSError as exc:
            return self._failed_to_start(exc)
        assert proc.stdout is not None
        pumps = [
            Pump(
                1,
                proc.stdout.fileno(),
                opts.stdout_fd,
                on_chunk=self._on_chunk,
                on_write_error=self._on_write_error,
            )
        ]
        enlarge_pipe(proc.stdout.fileno())
        if proc.stderr is not None:
            enlarge_pipe(proc.stderr.fileno())
            pumps.append(
                Pump(
                    2,
                    proc.stderr.fileno(),
                    opts.stderr_fd,
                    on_chunk=self._on_chunk,
                    on_write_error=self._on_write_error,
                )
            )
        for p in pumps:
            p.start()
        self._attach_hooks(proc.pid)
        scan_thread = threading.Thread(target=self.scanner.run, name="hpcwrap-scan", daemon=True)
        scan_thread.start()
        self.monitor.start()

        status = sup.wait()
        with self._exit_lock:  # no progress entry is stamped after end_wall (status())
            self._exited = True
            end_mono = self.mono()
            end_wall = utc_now()
        until = end_mono + opts.linger
        if sup.kill_at is not None:
            until = max(until, sup.kill_at + 2.0)
        if sup.walltime_seen is not None:
            until = max(until, end_mono + min(self.settings.walltime_lead, 600.0))
        sup.linger(until=until, threads=pumps)
        for p in pumps:
            p.join(timeout=0.2)
        self.scanner.close()
        scan_thread.join(timeout=10.0)
        if scan_thread.is_alive():
            warn(
                "warning: reading the output did not finish within 10 s; the end "
                "entry has the progress read so far",
                self.err,
            )
        self.monitor.stop()
        # Still busy (a slow lock): its writes are refused from now on. After a TERM,
        # Slurm's SIGKILL follows within KillWait: the end is not kept waiting for it.
        wait = min(opts.monitor_timeout, STUCK_LOCK_WAIT) if sup.term_signals else None
        self.monitor.join(timeout=wait if wait is not None else opts.monitor_timeout)
        for p in pumps:
            if not p.is_alive():
                _close(proc.stdout if p.stream == 1 else proc.stderr)

        code = exit_code(status)
        signaled = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        end = res.EndFacts(
            exit_code=code,
            signaled=signaled,
            walltime_signal=sup.walltime_seen is not None,
            terminated_by=signal_name(sup.term_signals[0]) if sup.term_signals else None,
            time_left_at_term=self._left_at_term(sup.term_at),
            killed_by_us=sup.killed,
        )
        return self._finish(end, end_wall)

    def _attach_hooks(self, pid: int) -> None:
        """Hooks that want the child (telemetry) get its pid and a way to write entries."""

        def checkpoint_dir() -> str | None:
            # The disk a save is filling matters while it runs, before it counts as complete.
            snap = self.progress.snapshot()
            if snap.pending_save is not None and snap.pending_save.path:
                return snap.pending_save.path
            return snap.checkpoint.path if snap.checkpoint is not None else None

        for hook in self.opts.hooks:
            attach = getattr(hook, "attach", None)
            if attach is not None:
                try:
                    attach(pid, self.perform, checkpoint_dir)
                except Exception as exc:  # never fatal
                    warn(f"warning: tick hook {type(hook).__name__} failed: {exc!r}", self.err)

    def _with_hook_summary(self, facts: lifecycle.Ended) -> lifecycle.Ended:
        """``facts`` with the telemetry summary of the first hook that gives one."""
        for hook in self.opts.hooks:
            finish = getattr(hook, "finish", None)
            if finish is None:
                continue
            try:
                found = finish()
            except Exception as exc:  # never fatal
                warn(f"warning: tick hook {type(hook).__name__} failed: {exc!r}", self.err)
                continue
            if found is not None and facts.results is not None:
                results = dataclasses.replace(facts.results, telemetry=found)
                return dataclasses.replace(facts, results=results)
        return facts

    def _failed_to_start(self, exc: OSError) -> Outcome:
        code = 127 if isinstance(exc, (FileNotFoundError, NotADirectoryError)) else 126
        why = exc.strerror or str(exc)
        warn(f"error: cannot run {self.argv[0]!r}: {why}", self.err)
        end = res.EndFacts(code, None, False, None, None, False)
        return self._finish(end, utc_now(), failed_start=f"failed to start {self.argv[0]!r}: {why}")

    def _finish(
        self, end: res.EndFacts, end_wall: datetime, failed_start: str | None = None
    ) -> Outcome:
        # a synchronous save that printed only its start returned if the command exited 0
        self.progress.end_of_output(end.exit_code == 0 and end.signaled is None)
        snap = self.progress.snapshot()
        verdict = res.end_verdict(end, snap)
        state = JobState.FAILED if failed_start else verdict.state
        outcome = Outcome(end.exit_code, state, snap, self.start_wall, end_wall)
        done = threading.Event()

        def finisher() -> None:
            self.sink.reserve()  # handed to this thread: the end is the job's last entry
            try:
                if failed_start:
                    self.record_start_failed(end, end_wall, failed_start)
                else:
                    self.record_end(end, verdict, snap, end_wall)
                    self.end_chain(state, _unsure(verdict, end))
                    followup.cancel_after_end(
                        self.sink.run, self.env.in_slurm, self.env.is_array_task
                    )
                outcome.run_log_written = self.sink.enabled and self.sink.failures == 0
            except Exception as exc:
                warn(f"warning: could not record the end of the run: {exc!r}", self.err)
            finally:
                done.set()

        t = threading.Thread(target=finisher, name="hpcwrap-finish", daemon=True)
        t.start()
        if not done.wait(self.opts.final_write_timeout):
            warn(
                "warning: the run log was not written within "
                f"{self.opts.final_write_timeout:.0f} s; exiting with the command's status "
                f"{end.exit_code}",
                self.err,
            )
        outcome.log_failures = self.sink.failures
        return outcome

    # -- the end ----------------------------------------------------------------

    def record_start_failed(self, end: res.EndFacts, end_wall: datetime, why: str) -> None:
        env = self.env
        self.sink.record(
            lifecycle.Ended(
                when=end_wall,
                state=JobState.FAILED,
                source=lifecycle.Source.WRAPPER,
                execution_id=env.execution_id,
                exit_code=end.exit_code,
                start=self.start_wall,
                nodes=env.nodes,
                text=f"{self.prefix}failed, exit code {end.exit_code}: {why}",
                array=env if env.is_array_task else None,
                task_prefix=self.prefix,
            ),
            data={
                "exit_code": end.exit_code,
                "state": JobState.FAILED,
                "error": why,
                **self._array_data(),
            },
        )

    def record_end(
        self, end: res.EndFacts, verdict: Verdict, snap: Snapshot, end_wall: datetime
    ) -> None:
        final = verdict.state
        if end.terminated_by is not None:
            self.sink.hurry()  # every write from here on: Slurm's SIGKILL follows the TERM
        events, errors = self.policy.leftover()
        for ev in events:
            self.perform(ev)
        if snap.version:
            self.sink.event("progress", progress_data(snap))
        cwd = self.opts.cwd
        since = time.time() - (self.mono() - self.start_mono)
        console = snap  # before the records: what this job printed
        ties = self._ties(snap, cwd, since)
        untied: list[Path] = []
        snap, sources = self._with_records(snap, cwd, since, ties, untied)
        checkpoint = self._checkpoint_path(snap, cwd, since, ties, untied)
        config_snapshot, config_copy = self._config_snapshot(
            snap, cwd, since, checkpoint, ties, untied
        )
        if config_snapshot is None and self.sink.run is not None:
            # No resolved config seen: hpcwrap's copy of --config is the one kept.
            copy = res.submitted_config_copy(self.sink.run.sidecar, None)
            config_copy = res.relative_to_log(copy, self.sink.run.path) if copy else None
        kind = res.run_kind(self.sink.run)
        runtime = format_runtime((end_wall - self.start_wall).total_seconds())
        text = self.prefix + end_text(verdict, end, snap, runtime, errors)
        if sources:
            text += f"; sources: {sources}"
        left_out = ownership.untied_text(untied, cwd)
        if left_out:
            text += f"; {left_out}"
        env = self.env
        # The batch script exits with our status: unless a TERM came (Slurm's word then
        # depends on why: the epilog reads it), sacct's account goes beside ours (exit
        # 124 on the walltime-warning path is FAILED 124:0 to sacct).
        slurm: tuple[str, str] | tuple[None, None] = (None, None)
        if env.in_slurm and not env.is_array_task and end.terminated_by is None:
            slurm = lifecycle.slurm_account(end.exit_code)
        facts = lifecycle.Ended(
            when=end_wall,
            state=final,
            source=lifecycle.Source.WRAPPER,
            execution_id=env.execution_id,
            exit_code=end.exit_code,
            start=self.start_wall,
            nodes=env.nodes,
            text=text,
            results=dataclasses.replace(
                res.figures_of(snap),
                one_liner=self._one_liner(snap, final, console),
                checkpoint=checkpoint,
                config_snapshot=config_snapshot,
                config_copy=config_copy,
                figures_from=sources,
            ),
            next_steps=tuple(res.next_steps(final, checkpoint, snap, kind)),
            wandb_local=_full_path(snap.wandb_dir, cwd),
            wandb_url=snap.wandb_url,
            array=env if env.is_array_task else None,
            task_prefix=self.prefix,
            slurm_state=slurm[0],
            slurm_exit=slurm[1],
            strength=verdict.strength,
        )
        data: dict[str, Any] = {
            "exit_code": end.exit_code,
            "state": final,
            "runtime": runtime,
            **progress_data(snap),
            "checkpoint": checkpoint,
            "config_snapshot": config_snapshot,
            "text": text,
            **self._array_data(),
        }
        if end.signaled is not None:
            data["signal"] = signal_name(end.signaled)
        usage = resource.getrusage(resource.RUSAGE_SELF)  # the wrapper alone, not the child
        data["wrapper_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
        data["wrapper_maxrss_kb"] = peak_rss_kb(usage.ru_maxrss)
        if snap.bytes_skipped:
            data["bytes_not_scanned"] = snap.bytes_skipped
        if self.write_errors:
            data["output_errors"] = self.write_errors[:5]
        if snap.checkpoint is not None and snap.checkpoint.path:
            data["checkpoint_printed"] = snap.checkpoint.path  # before resolving
        if snap.pending_save is not None:
            data["save_not_completed"] = {
                "path": snap.pending_save.path,
                "step": snap.pending_save.step,
            }
        facts = self._with_hook_summary(facts)
        self.sink.record_end(facts, data=data)

    def _ties(self, snap: Snapshot, cwd: Path, since: float) -> ownership.Ties:
        """What ties a file on disk to this run (reading/ownership.py); ``since``: when
        the job started (Unix time)."""
        run = self.sink.run

        windows: list[tuple[float, float | None]] | None = None

        def alone(path: Path) -> bool:
            nonlocal windows
            if run is None:
                return False
            try:
                if windows is None:
                    windows = neighbours.others_windows(run.root, run.path)
                written = path.stat().st_mtime
            except Exception:  # unknown: not alone (a file then needs a stronger tie)
                return False
            if written < since:
                return False  # there before the run: someone else's, whoever was alive
            # a second either side: the logs keep times to the second
            return not any(
                start - 1 <= written and (end is None or written <= end + 1)
                for start, end in windows
            )

        printed = [
            snap.checkpoint.path if snap.checkpoint is not None else None,
            snap.pending_save.path if snap.pending_save is not None else None,
            snap.config_path,
        ]
        task = self.env.array_task_id if self.env.is_array_task else None
        origin = None
        if run is not None:
            try:
                origin = checkpoints.started_from(run.read().initialised_from)
            except Exception:  # an unreadable log: no --from to keep apart
                origin = None
        return ownership.build(
            cwd, printed=printed, argv=self.argv, wandb_dir=snap.wandb_dir, task_id=task,
            alone=alone, started_from=origin,
        )  # fmt: skip

    def _with_records(
        self, snap: Snapshot, cwd: Path, since: float, ties: ownership.Ties, untied: list[Path]
    ) -> tuple[Snapshot, str | None]:
        """``snap`` with the frameworks' own records where the console lacks the
        evidence or disagrees, and which figure came from where (never fatal). Only
        records tied to this run are read; the others go to ``untied``."""
        if self.env.is_array_task:
            # The tasks of an array share the working folder and run side by side: the
            # records there may be another task's, so a task's Results stay the console's.
            return snap, None
        try:
            found = records.read_records(cwd, since=since, until=time.time(), owns=ties.owns)
            untied.extend(found.untied)
            merged = records.merge(snap, found, cwd)
        except Exception as exc:  # the end is recorded from the console alone
            warn(f"warning: could not read the framework's records: {exc!r}", self.err)
            return snap, None
        if found.files or found.checkpoints or found.skipped:
            self.sink.event(
                "records",
                {
                    "files": list(found.files),
                    "checkpoints": [str(c.path) for c in found.checkpoints[:5]],
                    "not_complete": [f"{k.path}: {k.reason}" for k in found.skipped[:5]],
                    "sources": merged.sources,
                },
            )
        return merged.snap, records.sources_text(merged.sources)

    def _one_liner(self, snap: Snapshot, final: str, console: Snapshot) -> str | None:
        """The drafted loss_one_liner; in a resumed job it speaks of the whole chain, then
        of this job's own steps."""
        if self.resumed_chain is None:
            return res.loss_one_liner(snap, final)
        text = res.loss_one_liner(res.this_job_only(snap, console), final)
        if text is None:
            return text
        jobs, start = self.resumed_chain
        if start is None or snap.loss is None:
            return text
        return (
            f"Over the {jobs} jobs of this run, train loss went from {fmt_num(start)} to "
            f"{fmt_num(snap.loss)}. In the last job: {text[:1].lower()}{text[1:]}"
        )

    def _checkpoint_path(
        self, snap: Snapshot, cwd: Path, since: float, ties: ownership.Ties, untied: list[Path]
    ) -> str | None:
        ck = snap.checkpoint
        if ck is None:
            return None
        if ck.path:
            # resolved against the job's cwd (the event keeps it as printed)
            path = checkpoints.resolve(ck.path, cwd)
            if not ties.owns(path):
                untied.append(path)  # the checkpoint it was started from (--from)
                return None
            return str(path)
        if ck.step is not None:
            found = checkpoints.for_step(
                ck.step, cwd=cwd, since=since, owns=ties.owns, untied=untied
            )
            if found is not None:
                return str(found)
        return None

    def _config_snapshot(
        self,
        snap: Snapshot,
        cwd: Path,
        since: float,
        checkpoint: str | None,
        ties: ownership.Ties,
        untied: list[Path],
    ) -> tuple[str | None, str | None]:
        """The resolved config the run wrote, and hpcwrap's copy of it (relative to the log):
        one the run printed, or one tied to it (reading/ownership.py)."""
        near = [p for p in (checkpoint, snap.wandb_dir) if p]
        found = res.find_config_snapshot(
            self.settings.config_snapshot,
            cwd=cwd,
            announced=snap.config_path,
            near=near,
            since=since,
            owns=ties.owns,
            untied=untied,
        )
        if found is None:
            return None, None
        if self.sink.run is not None:
            copy = res.keep_config_copy(found, self.sink.run.sidecar, self.env.execution_id)
            if copy is not None:
                self.sink.event("config_snapshot", {"source": str(found), "copy": str(copy)})
                return str(found), res.relative_to_log(copy, self.sink.run.path)
        return str(found), None


def _unsure(verdict: Verdict, end: res.EndFacts) -> str | None:
    """Why the wrapper cannot tell a time limit from a cancel (None: it can): a TERM came
    and squeue never said how much time was left."""
    if verdict.strength is Strength.GUESS and end.terminated_by and end.time_left_at_term is None:
        return f"a {end.terminated_by} came and the time left was unknown"
    return None


def end_text(
    verdict: Verdict,
    end: res.EndFacts,
    snap: Snapshot,
    runtime: str,
    pending_errors: Sequence[Any] = (),
) -> str:
    final = verdict.state
    word = final.word
    if final is JobState.CANCELLED and verdict.strength is Strength.GUESS:
        # From inside, a scancel, a requeue and a node failure all arrive as a TERM: the
        # epilog (or poll) names which; the entry does not claim a cancel.
        left = "with time left" if end.time_left_at_term is not None else "(time left unknown)"
        word = f"stopped by {end.terminated_by or 'SIGTERM'} {left}"
    head = f"{word}, exit code {end.exit_code}"
    if end.signaled is not None:
        head += f" ({signal_name(end.signaled)})"
    parts = [head, f"after {runtime}", *progress_fields(snap)]
    text = ", ".join(parts)
    if final is JobState.TIMEOUT and end.walltime_signal:
        text += "; stopped after the walltime warning"
    elif final is JobState.CANCELLED and end.terminated_by and verdict.strength > Strength.GUESS:
        text += f"; stopped by {end.terminated_by}"
    if snap.errors and final != JobState.COMPLETED:
        text += "; " + error_text(snap.errors[0])
        if len(snap.errors) > 1:
            text += f" (+{len(snap.errors) - 1} more)"
    note = checkpoint_note(snap)  # a save never completed, or only starts are printed
    if note:
        text += "; " + note
    if snap.nonfinite_seen and snap.loss is not None and math.isfinite(snap.loss):
        text += "; the loss was nan/inf at some point"
    if not snap.has_progress and snap.bytes_out:
        text += f"; no progress lines recognised in {snap.lines} lines of output"
    if snap.last_progress_wall is not None and final != JobState.COMPLETED:
        text += f"; last new step at {hhmm(snap.last_progress_wall)}"
    return text


def _full_path(printed: str | None, cwd: Path) -> str | None:
    """A path the command printed relative to its cwd, made absolute when it exists there."""
    if not printed:
        return None
    path = res.resolve_path(printed, cwd)
    return str(path) if path.exists() else printed


def peak_rss_kb(fallback: int) -> int:
    """This process's own peak RSS in KiB (VmHWM), else ``fallback``.

    Not ru_maxrss alone: Linux carries it across execve, so a wrapper started
    by a big parent (fork + exec) would report the parent's size.
    """
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return fallback


def _close(f: Any) -> None:
    try:
        if f is not None:
            f.close()
    except OSError:
        pass


def run_command(
    argv: Sequence[str], run: RunLog | None, opts: WrapperOptions | None = None
) -> Outcome:
    """Run ``argv`` under the wrapper; see the module docstring. Main thread only."""
    return Wrapper(argv, run, opts or WrapperOptions()).run()


__all__ = ["Outcome", "Wrapper", "WrapperOptions", "end_text", "run_command"]
