"""``hpcwrap run``: one command under supervision, its output passed through and read.

This module is the supervision: start the child (with the environment it gets),
handle and forward signals (``supervise``, ``walltime``), wait, return its exit
status. The rest is handed in at start (``parts.build_parts``, or
``WrapperOptions.parts``):

- reading: ``reader`` (the scan thread and progress), ``endreading`` (the records,
  checkpoint and config on disk tied to the run, read at the end);
- recording: ``recorder`` (start, Status, end), ``signalstatus`` (the signals'
  entries), ``endrecord`` (the end's facts and text);
- ``monitor``: the thread that drives both while the child runs;
- ``registration``: the node hooks' spool and the resume chain (``seams.Chain``).

Threads (all daemons, so nothing here can keep the process alive):

- main: starts the child, handles signals, waits for it;
- one copy thread per pipe (``passthrough.Pump``): the output's only path;
- the scanner (``scan.Scanner``): reads progress from a bounded copy;
- the monitor: the only thread that writes the run log while the child runs;
- the finisher: records the end, waited for at most ``final_write_timeout``.

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
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from hpcwrap import earlysignals
from hpcwrap.config import Settings, signal_number
from hpcwrap.errors import ConfigError
from hpcwrap.job import endrecord, followup
from hpcwrap.job import results as res
from hpcwrap.job.endreading import EndReader
from hpcwrap.job.jobenv import JobEnv, job_env, wandb_data_env
from hpcwrap.job.monitor import MonitorParts
from hpcwrap.job.parts import Parts, Wiring, build_parts
from hpcwrap.job.passthrough import Pump, pumps_for, same_file
from hpcwrap.job.registration import register_for_hooks
from hpcwrap.job.seams import Chain
from hpcwrap.job.signals import exit_code, signal_name
from hpcwrap.job.sink import STUCK_LOCK_WAIT, warn
from hpcwrap.job.status import TickHook
from hpcwrap.job.supervise import Supervisor
from hpcwrap.reading.progress import Snapshot
from hpcwrap.runlog import RunLog
from hpcwrap.runlog.dates import now as utc_now
from hpcwrap.runlog.endings import JobState, Verdict
from hpcwrap.runlog.layout import BATCH_IGNORED_ENV, WALLTIME_SIGNAL_ENV, WALLTIME_TARGETS_ENV

LINGER = 10.0  # after the child exits: wait this long for output still in flight
FINAL_WRITE_TIMEOUT = 120.0
TICK = 1.0


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
    parts: Callable[[Wiring], Parts] | None = None  # job/parts.py (None: build_parts)


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


class Wrapper:
    """One supervised run of ``argv``. Use ``run()`` once, from the main thread.

    The supervision is here: the child's start (with the environment it gets), its
    signals, the wait and the end. The parts it is handed at start do the rest: the
    reader (job/reader.py, job/endreading.py), the recorder (job/recorder.py,
    job/signalstatus.py, job/endrecord.py), the monitor thread that drives them
    (job/monitor.py) and the chain and hooks registration (job/registration.py)."""

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
        self.start_mono = self.mono()
        self.start_wall = utc_now()
        parts = (opts.parts or build_parts)(
            Wiring(
                run, self.env, self.settings, opts.environ, opts.cwd, opts.hooks, opts.chain,
                opts.err, self.start_wall, self.start_mono, self.mono, _wall,
            )
        )  # fmt: skip
        self.sink, self.monitor, self.reader = parts.sink, parts.monitor, parts.reader
        self.recorder, self.signals, self.chain = parts.recorder, parts.signals, parts.chain
        self.time_left = parts.time_left
        self.supervisor = Supervisor(
            self.argv, notify=self.monitor.notify, walltime_signal=_walltime_signum(self.settings),
            forward_walltime=self.settings.forward_walltime_signal,
            walltime_to_all=self.warning_to_all, term_grace=opts.term_grace, clock=self.mono,
            merge_streams=same_file(opts.stdout_fd, opts.stderr_fd),
        )  # fmt: skip

    def _monitor_start(self) -> None:
        """The monitor's first work: the limit, the start entry, the hooks' spool."""
        self.time_left.prefetch()  # the limit, known from the start (see TimeLeft.prefetch)
        try:
            self.recorder.record_start(self.argv, self.supervisor.pid, self.time_left.seconds())
        except Exception as exc:  # never fatal
            warn(f"warning: could not record the start: {exc!r}", self.err)
        register_for_hooks(self.env, self.sink, self.opts.environ, self.recorder.status, self.err)

    # -- the run ----------------------------------------------------------------

    def run(self) -> Outcome:
        try:
            return self._run()
        finally:
            # Kept until the end is recorded: a late TERM must not kill us mid-write.
            self.supervisor.restore_signal_handlers()

    def _child_env(self) -> dict[str, str]:
        """The command's environment: the chain's (where to resume), the per-job W&B
        staging folder, unbuffered Python unless the user says otherwise."""
        base = self.chain.child_env if self.chain.child_env is not None else os.environ
        env = wandb_data_env(base, self.env, self.settings.wandb_data_dir)
        env.pop(BATCH_IGNORED_ENV, None)
        if self.settings.unbuffered:
            env.setdefault("PYTHONUNBUFFERED", "1")  # the user's own value stands
        return env

    def _run(self) -> Outcome:
        sup = self.supervisor
        if not self.chain.begin(self.argv, self.opts.environ):
            now = utc_now()
            return Outcome(0, JobState.CANCELLED, self.reader.snapshot(), now, now)
        if self.chain.argv is not None:
            self.argv = sup.argv = list(self.chain.argv)
        sup.env = self._child_env()
        sup.install_signal_handlers()
        undo_batch_ignore(self.opts.environ, sup.walltime_signal)
        try:
            proc = sup.start()
        except OSError as exc:
            return self._failed_to_start(exc)
        out_fds = (self.opts.stdout_fd, self.opts.stderr_fd)
        pumps = pumps_for(proc, out_fds, self.reader.on_chunk, self.reader.on_write_error)
        for p in pumps:
            p.start()
        self._attach_hooks(proc.pid)
        self.reader.start()
        self.monitor.begin(
            MonitorParts(
                self.recorder, self.signals, self.reader, self.opts.hooks, self.opts.tick,
                start=self._monitor_start, forward_held=sup.forward_held,
            )
        )  # fmt: skip
        status = sup.wait()
        end_mono, end_wall = self.recorder.exited()
        self._drain(proc, pumps, end_mono)
        signaled = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        end = res.EndFacts(
            exit_code=exit_code(status),
            signaled=signaled,
            walltime_signal=sup.walltime_seen is not None,
            terminated_by=signal_name(sup.term_signals[0]) if sup.term_signals else None,
            time_left_at_term=self.signals.left_when_terminated(sup.term_at),
            killed_by_us=sup.killed,
        )
        return self._finish(end, end_wall)

    def _drain(self, proc: subprocess.Popen[bytes], pumps: list[Pump], end_mono: float) -> None:
        """After the exit: the output still in flight (the linger), the reader's last
        lines, the monitor's last writes."""
        sup, opts = self.supervisor, self.opts
        until = end_mono + opts.linger
        if sup.kill_at is not None:
            until = max(until, sup.kill_at + 2.0)
        if sup.walltime_seen is not None:
            until = max(until, end_mono + min(self.settings.walltime_lead, 600.0))
        sup.linger(until=until, threads=pumps)
        for p in pumps:
            p.join(timeout=0.2)
        self.reader.finish()
        self.monitor.stop()
        # Still busy (a slow lock): its writes are refused from now on. After a TERM,
        # Slurm's SIGKILL follows within KillWait: the end is not kept waiting for it.
        wait = min(opts.monitor_timeout, STUCK_LOCK_WAIT) if sup.term_signals else None
        self.monitor.join(timeout=wait if wait is not None else opts.monitor_timeout)
        for p in pumps:
            if not p.is_alive():
                _close(proc.stdout if p.stream == 1 else proc.stderr)

    def _attach_hooks(self, pid: int) -> None:
        """Hooks that want the child (telemetry) get its pid and a way to write entries."""
        for hook in self.opts.hooks:
            attach = getattr(hook, "attach", None)
            if attach is not None:
                try:
                    attach(pid, self.recorder.perform, self.reader.checkpoint_dir)
                except Exception as exc:  # never fatal
                    warn(f"warning: tick hook {type(hook).__name__} failed: {exc!r}", self.err)

    def _failed_to_start(self, exc: OSError) -> Outcome:
        code = 127 if isinstance(exc, (FileNotFoundError, NotADirectoryError)) else 126
        why = exc.strerror or str(exc)
        warn(f"error: cannot run {self.argv[0]!r}: {why}", self.err)
        end = res.EndFacts(code, None, False, None, None, False)
        return self._finish(end, utc_now(), failed_start=f"failed to start {self.argv[0]!r}: {why}")

    def _finish(
        self, end: res.EndFacts, end_wall: datetime, failed_start: str | None = None
    ) -> Outcome:
        """Record the end in a thread of its own, waited for at most
        ``final_write_timeout``: the exit status is never held up by the log."""
        # a synchronous save that printed only its start returned if the command exited 0
        self.reader.progress.end_of_output(end.exit_code == 0 and end.signaled is None)
        snap = self.reader.snapshot()
        verdict = res.end_verdict(end, snap)
        state = JobState.FAILED if failed_start else verdict.state
        outcome = Outcome(end.exit_code, state, snap, self.start_wall, end_wall)
        done = threading.Event()

        def finisher() -> None:
            self.sink.reserve()  # handed to this thread: the end is the job's last entry
            try:
                if failed_start:
                    self.recorder.record_start_failed(end, end_wall, failed_start)
                else:
                    self._record_end(end, verdict, snap, end_wall)
                    self.chain.end(state, endrecord.unsure(verdict, end))
                    followup.cancel_after_end(
                        self.sink.run, self.env.in_slurm, self.env.is_array_task
                    )
                outcome.run_log_written = self.sink.enabled and self.sink.failures == 0
            except Exception as exc:
                warn(f"warning: could not record the end of the run: {exc!r}", self.err)
            finally:
                done.set()

        threading.Thread(target=finisher, name="hpcwrap-finish", daemon=True).start()
        if not done.wait(self.opts.final_write_timeout):
            warn(
                "warning: the run log was not written within "
                f"{self.opts.final_write_timeout:.0f} s; exiting with the command's status "
                f"{end.exit_code}",
                self.err,
            )
        outcome.log_failures = self.sink.failures
        return outcome

    def _record_end(
        self, end: res.EndFacts, verdict: Verdict, snap: Snapshot, end_wall: datetime
    ) -> None:
        reader = EndReader(
            self.sink.run, self.sink.event, self.opts.cwd, self.argv, self.env.execution_id,
            array_task=self.env.array_task_id if self.env.is_array_task else None,
            config_globs=self.settings.config_snapshot, err=self.err,
        )  # fmt: skip
        since = time.time() - (self.mono() - self.start_mono)
        self.recorder.end(
            end, verdict, snap, end_wall, reader, since,
            resumed_chain=self.chain.resumed, write_errors=self.reader.write_errors,
        )  # fmt: skip


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


__all__ = ["Outcome", "Wrapper", "WrapperOptions", "run_command"]
