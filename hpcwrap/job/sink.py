"""Writing to the run log from inside the job without ever hurting the job.

Every write is attempted and, when it fails (lock timeout, conflict, full disk,
a log deleted under us), reported once per kind of failure on the wrapper's
stderr; the command keeps running and its exit status is still returned.
Without a run log (it could not be opened) every write is a no-op.

The end is written last: the thread that records the end ``reserve()``s the sink; a
write from any other thread (a monitor or telemetry hook still busy past the wait for
it) is then refused, and one in progress completes first. (Progress entries stop
earlier, at the command's exit: ``Recorder.status``.)
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

from hpcwrap.errors import LockTimeoutError
from hpcwrap.redact import redact_text
from hpcwrap.runlog import RunLog, lifecycle
from hpcwrap.runlog.locks import LockConfig

# Once the run's lock was held past its wait (a hung process holds it), later writes
# wait this long at most: the job's end is not held up by minutes of waits.
STUCK_LOCK_WAIT = 2.0


def warn(message: str, err: TextIO | None = None) -> None:
    """One ``hpcwrap: ...`` line on stderr; never raises."""
    try:
        stream = err if err is not None else sys.stderr
        stream.write(f"hpcwrap: {redact_text(message)}\n")
        stream.flush()
    except Exception:  # stderr itself may be gone; nothing else to do
        pass


class LogSink:
    """A run log (or none) that never raises. Thread-safe (writes are serialised)."""

    def __init__(self, run: RunLog | None, err: TextIO | None = None) -> None:
        self.run = run
        self.err = err
        self.failures = 0
        self._reported: set[str] = set()
        self._lock = threading.Lock()
        self._owner: int | None = None  # the thread recording the end, once reserved
        # The run's lock is stuck (a wait for it timed out, or a write is still waiting):
        # from then on only the end is attempted, so it is left before Slurm's SIGKILL.
        self._stuck = False
        self._full = run  # the run log with the configured waits

    def reserve(self) -> None:
        """From now on only the calling thread writes (waits for a write in progress, at
        most ``STUCK_LOCK_WAIT``: one stuck on a hung run lock must not make the end
        wait until Slurm's SIGKILL; that write then lands, if ever, by its own time)."""
        got = self._lock.acquire(timeout=STUCK_LOCK_WAIT)
        self._owner = threading.get_ident()
        if got:
            self._lock.release()
        else:
            self._stuck = True

    @property
    def enabled(self) -> bool:
        return self.run is not None

    def _fail(self, what: str, exc: BaseException) -> None:
        self.failures += 1
        key = type(exc).__name__
        if key in self._reported:
            return
        self._reported.add(key)
        where = self.run.path if self.run is not None else "?"
        warn(
            f"warning: could not {what} in the run log {where}: {exc} "
            "(the command keeps running; further failures of this kind are not shown)",
            self.err,
        )

    def _attempt(self, what: str, write: Callable[[RunLog], object], end: bool = False) -> bool:
        """Run one write under the lock; True when it went through. ``end``: the end's
        own write, the one still attempted once the run's lock is stuck."""
        run = self.run
        if run is None:
            return False
        me = threading.get_ident()
        if self._owner == me:
            # The end's writer waits a little for another thread's write, then goes on.
            got = self._lock.acquire(timeout=0 if self._stuck else STUCK_LOCK_WAIT)
            self._stuck = self._stuck or not got
        else:
            got = self._lock.acquire()
        try:
            if self._owner is not None and self._owner != me:
                return False  # the end is being recorded: nothing follows it
            if self._stuck and not end and self._owner == me:
                return False  # no write waits behind a stuck lock: the end goes first
            try:
                write(self.run or run)
                if self._owner is None and self._stuck:
                    # the lock is free again (a stall, not a hung holder): full waits back
                    self.run, self._stuck = self._full, False
                return True
            except Exception as exc:  # the job must outlive any run-log failure
                if isinstance(exc, LockTimeoutError):
                    self._stuck = True
                    self._shorten_waits(self.run or run)
                self._fail(what, exc)
                return False
        finally:
            if got:
                self._lock.release()

    def hurry(self) -> None:
        """Wait at most ``STUCK_LOCK_WAIT`` for the lock from now on: after a TERM the
        job has only Slurm's KillWait left, and an end left for the next writer beats an
        end lost to the SIGKILL that follows."""
        if self.run is not None:
            self._shorten_waits(self.run)

    def _shorten_waits(self, run: RunLog) -> None:
        config = run.locks if run.locks is not None else LockConfig.from_env()
        if config.timeout > STUCK_LOCK_WAIT:
            shorter = dataclasses.replace(config, timeout=STUCK_LOCK_WAIT)
            self.run = run.with_locks(shorter)

    def status(
        self,
        text: str,
        when: datetime | None = None,
        *,
        event: str = "status",
        data: dict[str, Any] | None = None,
    ) -> bool:
        return self._attempt(
            "add a Status entry", lambda run: run.add_status(text, when, event=event, data=data)
        )

    def event(self, kind: str, data: dict[str, Any] | None = None) -> bool:
        return self._attempt("append an event", lambda run: run.append_event(kind, data))

    def record(
        self,
        facts: lifecycle.Facts,
        *,
        event: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> bool:
        return self._attempt(
            "update the run", lambda run: run.record(facts, event=event, data=data)
        )

    def record_end(self, facts: lifecycle.Ended, *, data: dict[str, Any] | None = None) -> bool:
        """Record the end, or leave it for the next writer when the log cannot take it now
        (runlog/deferred.py); the wrapper's stderr says which. True when it was kept."""

        def write(run: RunLog) -> None:
            why = run.record_or_defer(facts, by="wrapper", data=data)
            if why is not None:
                warn(f"the end was left for the next writer of {run.path}: {why}", self.err)

        return self._attempt("record the end", write, end=True)


__all__ = ["LogSink", "warn"]
