"""Starting the command and supervising it: process group, signals, exit status.

The command runs in a session (and process group) of its own, so a terminal's
Ctrl-C reaches only the wrapper, which forwards it; the wrapper never exits
before its child has been reaped.

Signals:
- TERM, INT, HUP: forwarded to the child's whole process group. From the first
  one on, the group gets ``term_grace`` seconds to exit before SIGKILL (shorter
  than Slurm's default KillWait of 30 s, so the wrapper can still record the end);
  a second one is forwarded again, a third one SIGKILLs the group at once.
- the walltime warning signal: job/walltime.py.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

from hpcwrap import earlysignals
from hpcwrap.job.signals import TERMINATING, SignalNote, exit_code, signal_name
from hpcwrap.job.walltime import WalltimeForwarder, handlers_of

TERM_GRACE = 25.0


def _wait_pid(pid: int, timeout: Callable[[], float], tick: Callable[[], None]) -> int:
    """Wait for child ``pid`` to exit (a pidfd wakes us at once where there is one);
    ``tick`` runs between waits of at most ``timeout()`` seconds. The raw wait status."""
    pidfd: int | None = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)
    try:
        while True:
            if pidfd is not None:
                select.select([pidfd], [], [], timeout())
            else:
                time.sleep(min(timeout(), 0.05))
            try:
                wpid, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: nothing better to say
                return 255 << 8
            if wpid == pid:
                return status
            tick()
    finally:
        if pidfd is not None:
            os.close(pidfd)


class Supervisor:
    """Runs one command; forwards signals; reaps it. Use from the main thread only."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        notify: Callable[[SignalNote], None],
        walltime_signal: int | None = None,
        forward_walltime: bool = True,
        walltime_to_all: bool = False,
        merge_streams: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        term_grace: float = TERM_GRACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.argv = list(argv)
        self.notify = notify
        self.walltime_signal = walltime_signal
        self.walltime = WalltimeForwarder(
            walltime_signal, forward=forward_walltime, to_all=walltime_to_all,
            notify=notify, clock=clock,
        )  # fmt: skip
        self.merge_streams = merge_streams
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.term_grace = term_grace
        self.clock = clock
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.status: int | None = None
        self.term_signals: list[int] = []  # TERM/INT/HUP received, in order
        self.term_at: float | None = None  # clock time of the first of them
        self.kill_at: float | None = None
        self.killed = False  # we SIGKILLed the group
        self._pending: list[int] = []  # signals that arrived before the child existed
        self._old: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}

    # -- starting ---------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        # A warning noted while hpcwrap started (earlysignals) is one received before
        # the command started: delivered once it runs, as any other such signal.
        while earlysignals.ARRIVED:
            self._pending.append(earlysignals.ARRIVED.pop(0))
        wanted: list[int] = list(TERMINATING)
        if self.walltime_signal is not None and self.walltime_signal not in wanted:
            wanted.append(self.walltime_signal)
        for sig in wanted:
            current = signal.getsignal(sig)
            if current is signal.SIG_IGN and sig in TERMINATING:
                continue  # started with it ignored (nohup, background job): leave it so
            self._old[sig] = current
            signal.signal(sig, self._on_signal)

    def restore_signal_handlers(self) -> None:
        for sig, old in self._old.items():
            with contextlib.suppress(TypeError, ValueError, OSError):
                signal.signal(sig, old)
        self._old.clear()

    @property
    def walltime_seen(self) -> float | None:
        """Monotonic time of the first walltime warning (None: none came)."""
        return self.walltime.seen

    def start(self) -> subprocess.Popen[bytes]:
        """Start the command (raises OSError as exec would: FileNotFoundError, ...)."""
        cwd = str(self.cwd) if self.cwd is not None else None
        env, ignored = self.walltime.child_start(self.argv, cwd, self.env)
        self.env = dict(env) if env is not None else None
        own = signal.signal(ignored, signal.SIG_IGN) if ignored is not None else None
        try:  # the child inherits it ignored (across exec); the wrapper's handler after
            proc = subprocess.Popen(
                self.argv,
                stdin=None,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if self.merge_streams else subprocess.PIPE,
                start_new_session=True,
                env=self.env,
                cwd=self.cwd,
                bufsize=0,
            )
        finally:
            if ignored is not None:
                signal.signal(ignored, own if own is not None else signal.SIG_DFL)
        self.proc = proc
        self.pid = proc.pid
        for sig in self._pending:
            self._deliver(sig)
        self._pending.clear()
        return proc

    # -- signals ----------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.handle_signal(signum)

    def handle_signal(self, signum: int) -> None:
        """What the handler does (callable directly in tests)."""
        if self.pid is None:
            self._pending.append(signum)
            return
        self._deliver(signum)

    def _killpg(self, signum: int) -> bool:
        if self.pid is None or (self.status is not None and not self.group_alive()):
            return False
        try:
            os.killpg(self.pid, signum)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def _deliver(self, signum: int) -> None:
        now = self.clock()
        name = signal_name(signum)
        if signum == self.walltime_signal and signum not in TERMINATING:
            assert self.pid is not None
            self.walltime.receive(self.pid, now, self._killpg)
            return
        self.term_signals.append(signum)
        if self.term_at is None:
            self.term_at = now
        count = len(self.term_signals)
        if self.kill_at is None:
            self.kill_at = now + self.term_grace
        if count >= 3:
            self._killpg(signal.SIGKILL)
            self.killed = True
            third = "third signal: SIGKILL sent to the group"
            self.notify(SignalNote(signum, name, "terminate", count, now, group=True,
                                   not_forwarded=third))  # fmt: skip
            return
        sent = self._killpg(signum)
        why = None if sent else "the command had already exited"
        self.notify(SignalNote(signum, name, "terminate", count, now, group=sent,
                               not_forwarded=why, kill_at_mono=self.kill_at))  # fmt: skip

    def forward_held(self) -> SignalNote | None:
        """Forward a held walltime warning once a process of the command handles it (call
        it now and then: the monitor's tick). The note says so; None while still held."""
        return self.walltime.forward_held(self.pid, self.status is not None)

    # -- waiting ----------------------------------------------------------------

    def group_alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            os.killpg(self.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def kill_group(self) -> None:
        if self._killpg(signal.SIGKILL):
            self.killed = True
            self.notify(SignalNote(signal.SIGKILL, "SIGKILL", "kill", 1, self.clock(), group=True))

    def _check_deadline(self) -> None:
        if self.kill_at is not None and not self.killed and self.clock() >= self.kill_at:
            self.kill_group()

    def wait(self) -> int:
        """Wait for the child; returns its raw wait status. Honours the kill deadline."""
        assert self.proc is not None and self.pid is not None
        try:
            status = _wait_pid(self.pid, self._wait_timeout, self._check_deadline)
        finally:
            self.walltime.cleanup()
        self.status = status
        self.proc.returncode = os.waitstatus_to_exitcode(status) if status != 255 << 8 else 255
        return status

    def _wait_timeout(self) -> float:
        if self.kill_at is not None and not self.killed:
            return max(min(1.0, self.kill_at - self.clock()), 0.0)
        return 1.0

    def linger(self, *, until: float, threads: Sequence[threading.Thread]) -> None:
        """After the child exited: wait (bounded) for the copy threads to see EOF.

        Returns as soon as they have (no polling delay); meanwhile the kill deadline
        of a forwarded TERM is still enforced on what is left of the group.
        """
        for t in threads:
            while t.is_alive():
                left = until - self.clock()
                if left <= 0:
                    return
                t.join(timeout=min(left, 0.1))
                self._check_deadline()


__all__ = [
    "TERMINATING",
    "TERM_GRACE",
    "SignalNote",
    "Supervisor",
    "exit_code",
    "handlers_of",
    "signal_name",
]
