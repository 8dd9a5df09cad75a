"""Waiting for a condition, never for a fixed time: what tests use to order events.

A test that sleeps a fixed time and then acts (send a signal, read a file) passes on
an idle machine and fails on a loaded one, where the child has not started yet. These
helpers wait for the evidence itself (a line in the output, a file, a state) with a
deadline, and a deadline that expires says what was seen.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline (a test failure, with what was seen)."""


def wait_for(
    check: Callable[[], T],
    timeout: float,
    what: str,
    seen: Callable[[], object] | None = None,
    every: float = 0.2,
) -> T:
    """Call ``check`` until it returns something true; return that. On the deadline, raise
    WaitTimeout naming ``what`` and, where given, what ``seen()`` says was there."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            detail = ""
            if seen is not None:
                try:
                    detail = f"; seen: {seen()!r}"
                except Exception as exc:  # what was seen could not be read: say so
                    detail = f"; seen: unreadable ({exc!r})"
            raise WaitTimeout(f"{what}: not seen within {timeout:.0f} s{detail}")
        time.sleep(every)


def file_contains(path: Path, marker: bytes) -> bool:
    try:
        return marker in path.read_bytes()
    except OSError:
        return False


class SignalWhen(threading.Thread):
    """Send ``sig`` to this process ``times`` times (``gap`` s apart) once ``path`` holds
    ``marker``: the child announced it is ready (its handler installed, training begun).

    ``sent_at`` holds the monotonic time of each signal sent; ``error`` what went wrong
    (the marker never came: no signal is sent then, and the test fails on its own
    verdict or through ``check()``).
    """

    def __init__(
        self,
        path: Path,
        marker: bytes,
        sig: int,
        times: int = 1,
        gap: float = 0.3,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(name=f"signal-when-{marker!r}", daemon=True)
        self.path, self.marker, self.sig = path, marker, sig
        self.times, self.gap, self.timeout = times, gap, timeout
        self.sent_at: list[float] = []
        self.error: str | None = None
        self.start()

    def run(self) -> None:
        try:
            wait_for(
                lambda: file_contains(self.path, self.marker),
                self.timeout,
                f"{self.marker!r} in {self.path}",
                seen=lambda: self.path.read_bytes()[-300:] if self.path.exists() else None,
            )
        except WaitTimeout as exc:
            self.error = str(exc)
            return
        for i in range(self.times):
            if i:
                time.sleep(self.gap)  # spacing between repeats, not an ordering wait
            self.sent_at.append(time.monotonic())
            os.kill(os.getpid(), self.sig)

    def check(self) -> None:
        """Fail the test if the signal was never sent."""
        self.join(self.timeout + 5)
        assert self.error is None and len(self.sent_at) == self.times, self.error


def child_until(
    *needles: tuple[Path, str],
    lines: tuple[Path, int] | None = None,
    busy: bool = False,
    timeout: float = 60.0,
    more_lines: tuple[Path, int] | None = None,
) -> str:
    """Python source for a child that keeps running (asleep, or with a core busy) until
    each ``(path, text)`` is in its file, ``lines`` = (path, n) has n lines and
    ``more_lines`` = (path, n) has n lines more than when the child got here (samples
    taken after what came before, e.g. an allocation): what the test then checks is
    written while the child runs, however loaded the machine (a fixed sleep left it to
    chance). On the timeout it exits, and the test's own assertions fail with what was
    written."""
    checks = [f"{text!r} in _read({str(path)!r})" for path, text in needles]
    if lines is not None:
        checks.append(f"_read({str(lines[0])!r}).count(chr(10)) >= {lines[1]}")
    base = ""
    if more_lines is not None:
        base = f"_base = _read({str(more_lines[0])!r}).count(chr(10))\n"
        checks.append(f"_read({str(more_lines[0])!r}).count(chr(10)) >= _base + {more_lines[1]}")
    cond = " and ".join(checks) or "True"
    step = "pass" if busy else "time.sleep(0.05)"
    return (
        "import time\n"
        "def _read(p):\n"
        "    try:\n"
        "        return open(p).read()\n"
        "    except OSError:\n"
        "        return ''\n"
        f"{base}"
        f"_deadline = time.time() + {timeout}\n"
        f"while not ({cond}) and time.time() < _deadline:\n"
        f"    {step}\n"
    )
