"""What the supervisor tells the rest of the wrapper about signals: ``SignalNote``s,
signal names and exit statuses as a shell reports them."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

TERMINATING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


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


__all__ = ["TERMINATING", "SignalNote", "exit_code", "signal_name"]
