"""The walltime warning's path to the command (``Settings.walltime_signal``, default USR2;
Slurm sends it with ``--signal=B:USR2@<lead>``).

Recorded, and when forwarding is on, sent to the processes of the command that *handle*
it (their ``SigCgt`` mask in ``/proc``). A process whose default action for the signal is
to die is spared: USR2 would otherwise end an unprepared training minutes before the
limit, and a ``bash`` script waiting on its python would die and orphan it. Without
``/proc`` the whole group gets it. A warning that comes before any process handles it
(an early one, while the training still imports) is held and forwarded once one does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence

from hpcwrap.job.signals import SignalNote, signal_name


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
        "# hpcwrap run: the walltime warning must not end this script (see hpcwrap.job.walltime)",
        f'if [ "$PPID" = "{os.getpid()}" ]; then trap : {signal_name(signum)[3:]}; fi',
        f'BASH_ENV={shlex.quote(user)}; . "$BASH_ENV"' if user else "unset BASH_ENV",
    ]
    fd, path = tempfile.mkstemp(prefix="hpcwrap-bash-env-", suffix=".sh", dir=tmpdir)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


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


class WalltimeForwarder:
    """The warning for one command: where it goes, and the one held until it can go."""

    def __init__(
        self,
        signum: int | None,
        *,
        forward: bool,
        to_all: bool,
        notify: Callable[[SignalNote], None],
        clock: Callable[[], float],
    ) -> None:
        self.signum = signum
        self.forward = forward
        # The user's own --signal without B:. Slurm sends it to the processes of the batch
        # script's process group, not to the command's session (seen on the dev cluster:
        # docs/submitting.md), so the wrapper forwards it as it does hpcwrap's own warning.
        # Where Slurm does reach every process of the job (other process tracking), the
        # command must live through it: a bash script catches it with a no-op
        # (bash_shield), another command starts with it ignored.
        self.to_all = to_all
        self.notify = notify
        self.clock = clock
        self.seen: float | None = None  # monotonic time of the first warning
        self.shield: str | None = None  # the BASH_ENV file of bash_shield, removed at the end
        self._held: tuple[int, str, float] | None = None

    def child_start(
        self, argv: Sequence[str], cwd: str | None, env: Mapping[str, str] | None
    ) -> tuple[Mapping[str, str] | None, int | None]:
        """The command's environment, and the signal it must start with ignored (None:
        none; a bash script catches it instead, through bash_shield: its children get it
        as usual)."""
        ignored = self.signum if self.to_all else None
        if ignored is not None and argv and is_bash_script(os.path.join(cwd or ".", argv[0])):
            shielded = dict(env if env is not None else os.environ)
            with contextlib.suppress(OSError):
                shield = bash_shield(ignored, shielded, shielded.get("TMPDIR"))
                self.shield = shielded["BASH_ENV"] = shield
                return shielded, None
        return env, ignored

    def receive(self, pid: int, now: float, killpg: Callable[[int], bool]) -> None:
        """The warning came (the command runs as process group ``pid``)."""
        assert self.signum is not None
        signum, name = self.signum, signal_name(self.signum)
        first = self.seen is None
        if first:
            self.seen = now
        count = 1 if first else 2
        if not self.forward:
            off = "forwarding is off (forward_walltime_signal)"
            self.notify(SignalNote(signum, name, "walltime", count, now, not_forwarded=off))
            return
        targets = handlers_of(pid, signum)
        if targets is None:
            sent = killpg(signum)
            why = None if sent else "the command has exited"
            self.notify(
                SignalNote(signum, name, "walltime", count, now, group=sent, not_forwarded=why)
            )
            return
        pids = self._send(pid, targets)
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

    def _send(self, pid: int, targets: Sequence[tuple[int, str]]) -> list[int]:
        assert self.signum is not None
        pids: list[int] = []
        for target, _comm in targets:
            if target == pid and self.shield is not None:
                continue  # the script that plays the batch shell: a no-op would end its wait
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, self.signum)
                pids.append(target)
        return pids

    def forward_held(self, pid: int | None, exited: bool) -> SignalNote | None:
        """Forward a held warning once a process of the command handles it. The note says
        so; None while still held (or none is)."""
        if self._held is None or pid is None or exited:
            return None
        signum, name, came = self._held
        pids = self._send(pid, handlers_of(pid, signum) or [])
        if not pids:
            return None
        self._held = None
        now = self.clock()
        return SignalNote(
            signum, name, "walltime", 1, now, forwarded_to=tuple(pids), held_for=now - came
        )

    def cleanup(self) -> None:
        if self.shield is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.shield)
            self.shield = None


__all__ = [
    "RELAYS",
    "WalltimeForwarder",
    "bash_shield",
    "group_members",
    "handlers_of",
    "is_bash_script",
]
