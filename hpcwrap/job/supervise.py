"""Starting the command and supervising it: process group, signals, exit status.

The command runs in a session (and process group) of its own, so a terminal's
Ctrl-C reaches only the wrapper, which forwards it; the wrapper never exits
before its child has been reaped.

Signals:
- TERM, INT, HUP: forwarded to the child's whole process group. From the first
  one on, the group gets ``term_grace`` seconds to exit before SIGKILL (shorter
  than Slurm's default KillWait of 30 s, so the wrapper can still record the end);
  a second one is forwarded again, a third one SIGKILLs the group at once.
- the walltime warning signal (``Settings.walltime_signal``, default USR2; Slurm
  sends it with ``--signal=B:USR2@<lead>``): recorded, and when forwarding is on,
  sent to the processes of the command that *handle* it (their ``SigCgt`` mask in
  ``/proc``). A process whose default action for the signal is to die is spared:
  USR2 would otherwise end an unprepared training minutes before the limit, and a
  ``bash`` script waiting on its python would die and orphan it. Without
  ``/proc`` the whole group gets it.
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
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from hpcwrap import earlysignals

TERM_GRACE = 25.0
TERMINATING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def is_bash_script(path: str) -> bool:
    """``path`` is bash itself or a script whose ``#!`` line names bash."""
    if os.path.basename(path) == "bash":
        return True
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return False
    return first.startswith(b"#!") and b"bash" in first


def bash_shield(signum: int, environ: Mapping[str, str], tmpdir: str | None = None) -> str:
    """A ``BASH_ENV`` file that makes the command's own bash script (the wrapper's child,
    told by its ``$PPID``) catch ``signum`` with a no-op, then hands the user's own
    ``BASH_ENV`` on. Under the wrapper the user's script stands for Slurm's batch shell,
    which a ``--signal`` without ``B:`` spares: where Slurm (or the wrapper's forwarding)
    does reach the script, it lives through the signal as under plain sbatch. A caught
    signal is reset to its default across exec, so what the script starts (``srun``,
    Lightning's trainer) gets the signal as usual; an ignored one would be inherited
    ignored, and Lightning installs no requeue handler over an ignored SIGUSR1."""
    import shlex
    import tempfile

    user = environ.get("BASH_ENV")
    lines = [
        "# hpcwrap run: the walltime warning must not end this script (see hpcwrap.job.supervise)",
        f'if [ "$PPID" = "{os.getpid()}" ]; then trap : {signal_name(signum)[3:]}; fi',
        f'BASH_ENV={shlex.quote(user)}; . "$BASH_ENV"' if user else "unset BASH_ENV",
    ]
    fd, path = tempfile.mkstemp(prefix="hpcwrap-bash-env-", suffix=".sh", dir=tmpdir)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 255


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@dataclass(frozen=True)
class SignalNote:
    """A signal the wrapper received, and what it did with it."""

    signum: int
    name: str
    kind: str  # "terminate" | "walltime" | "kill" (grace ran out)
    count: int  # how many signals of this kind so far
    mono: float
    forwarded_to: tuple[int, ...] = ()  # pids; empty with group=True means the group
    group: bool = False
    not_forwarded: str | None = None  # why it was not forwarded
    kill_at_mono: float | None = None  # when the group gets SIGKILL unless it exits
    held_for: float | None = None  # forwarded this many seconds after it came (held)


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(pgrp, comm) of ``pid`` from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    close = data.rfind(b")")
    if close < 0:
        return None
    comm = data[data.find(b"(") + 1 : close].decode("utf-8", "replace")
    rest = data[close + 2 :].split()
    try:
        return int(rest[2]), comm
    except (IndexError, ValueError):
        return None


RELAYS = frozenset({"srun"})  # they pass the signals they get on to their job step


def _catches(pid: int, signum: int, comm: str = "") -> bool:
    """``pid`` catches ``signum`` (a handler: SigCgt), blocks it in its main thread to
    read it in another with sigwait/signalfd (SigBlk), or is ``srun``, which relays it to
    its job step's tasks: a training under ``srun`` in the batch script gets the warning."""
    if comm in RELAYS:
        return True
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(("SigCgt:", "SigBlk:")) and (
                    int(line.split()[1], 16) >> (signum - 1) & 1
                ):
                    return True
    except (OSError, ValueError, IndexError):
        pass
    return False


def group_members(pgid: int) -> list[tuple[int, str]] | None:
    """(pid, comm) of every process in group ``pgid``; None when /proc cannot tell."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    out: list[tuple[int, str]] = []
    for name in names:
        if not name.isdigit():
            continue
        st = _proc_stat(int(name))
        if st is not None and st[0] == pgid:
            out.append((int(name), st[1]))
    return out


def handlers_of(pgid: int, signum: int) -> list[tuple[int, str]] | None:
    """Members of group ``pgid`` that catch ``signum``; None when /proc cannot tell."""
    members = group_members(pgid)
    if members is None or not members:
        return None if members is None else []
    return [(pid, comm) for pid, comm in members if _catches(pid, signum, comm)]


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
        self.forward_walltime = forward_walltime
        # The user's own --signal without B:. Slurm sends it to the processes of the batch
        # script's process group, not to the command's session (seen on the dev cluster:
        # docs/submitting.md), so the wrapper forwards it as it does hpcwrap's own warning.
        # Where Slurm does reach every process of the job (other process tracking), the
        # command must live through it: a bash script catches it with a no-op
        # (bash_shield), another command starts with it ignored.
        self.walltime_to_all = walltime_to_all
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
        self.walltime_seen: float | None = None  # monotonic time of the first walltime signal
        self.kill_at: float | None = None
        self.killed = False  # we SIGKILLed the group
        self._pending: list[int] = []  # signals that arrived before the child existed
        self._shield: str | None = None  # the BASH_ENV file of bash_shield, removed at the end
        # A walltime warning that came before any process of the command handled it (an
        # early one, while the training still imports): forwarded once one does.
        self._held: tuple[int, str, float] | None = None
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

    def start(self) -> subprocess.Popen[bytes]:
        """Start the command (raises OSError as exec would: FileNotFoundError, ...)."""
        ignored = self.walltime_signal if self.walltime_to_all else None
        if (
            ignored is not None
            and self.argv
            and is_bash_script(os.path.join(self.cwd or ".", self.argv[0]))
        ):
            # a bash script catches it instead (bash_shield): its children get it as usual
            env = dict(self.env if self.env is not None else os.environ)
            with contextlib.suppress(OSError):
                self._shield = bash_shield(ignored, env, env.get("TMPDIR"))
                env["BASH_ENV"] = self._shield
                self.env = env
                ignored = None
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
            self._walltime(signum, name, now)
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
            self.notify(
                SignalNote(
                    signum,
                    name,
                    "terminate",
                    count,
                    now,
                    group=True,
                    not_forwarded="third signal: SIGKILL sent to the group",
                )
            )
            return
        sent = self._killpg(signum)
        self.notify(
            SignalNote(
                signum,
                name,
                "terminate",
                count,
                now,
                group=sent,
                not_forwarded=None if sent else "the command had already exited",
                kill_at_mono=self.kill_at,
            )
        )

    def _walltime(self, signum: int, name: str, now: float) -> None:
        first = self.walltime_seen is None
        if first:
            self.walltime_seen = now
        count = 1 if first else 2
        if not self.forward_walltime:
            self.notify(
                SignalNote(
                    signum,
                    name,
                    "walltime",
                    count,
                    now,
                    not_forwarded="forwarding is off (forward_walltime_signal)",
                )
            )
            return
        assert self.pid is not None
        targets = handlers_of(self.pid, signum)
        if targets is None:
            sent = self._killpg(signum)
            self.notify(
                SignalNote(
                    signum,
                    name,
                    "walltime",
                    count,
                    now,
                    group=sent,
                    not_forwarded=None if sent else "the command has exited",
                )
            )
            return
        pids = self._send(targets, signum)
        reason = None
        if not pids:
            reason = (
                f"no process of the command handles {name} yet (its default action would end "
                "the training early); held until one does"
            )
            self._held = (signum, name, now)
        self.notify(
            SignalNote(
                signum, name, "walltime", count, now, forwarded_to=tuple(pids), not_forwarded=reason
            )
        )

    def _send(self, targets: Sequence[tuple[int, str]], signum: int) -> list[int]:
        pids: list[int] = []
        for pid, _comm in targets:
            if pid == self.pid and self._shield is not None:
                continue  # the script that plays the batch shell: a no-op would end its wait
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
                pids.append(pid)
        return pids

    def forward_held(self) -> SignalNote | None:
        """Forward a held walltime warning once a process of the command handles it (call
        it now and then: the monitor's tick). The note says so; None while still held."""
        if self._held is None or self.pid is None or self.status is not None:
            return None
        signum, name, came = self._held
        pids = self._send(handlers_of(self.pid, signum) or [], signum)
        if not pids:
            return None
        self._held = None
        now = self.clock()
        return SignalNote(
            signum, name, "walltime", 1, now, forwarded_to=tuple(pids), held_for=now - came
        )

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
        pid = self.pid
        pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            pidfd = os.pidfd_open(pid)
        try:
            while True:
                timeout = 1.0
                if self.kill_at is not None and not self.killed:
                    timeout = max(min(timeout, self.kill_at - self.clock()), 0.0)
                if pidfd is not None:
                    select.select([pidfd], [], [], timeout)
                else:
                    time.sleep(min(timeout, 0.05))
                try:
                    wpid, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # reaped elsewhere: nothing better to say
                    wpid, status = pid, 255 << 8
                if wpid == pid:
                    break
                self._check_deadline()
        finally:
            if pidfd is not None:
                os.close(pidfd)
            if self._shield is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._shield)
                self._shield = None
        self.status = status
        self.proc.returncode = os.waitstatus_to_exitcode(status) if status != 255 << 8 else 255
        return status

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
    "group_members",
    "handlers_of",
    "signal_name",
]
