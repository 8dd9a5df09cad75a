"""The Status entries for the signals the wrapper got (the supervisor's ``SignalNote``s).

A walltime warning says how much time was left and where it went; a TERM remembers the
time left (a TERM at the limit is Slurm's time-limit kill, one with time left is not:
runlog/endings.py); a third TERM and the end of the grace period say what was killed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hpcwrap.job.jobenv import TimeLeft, describe_seconds
from hpcwrap.job.recorder import Recorder
from hpcwrap.job.signals import SignalNote
from hpcwrap.job.status import progress_fields
from hpcwrap.reading.progress import Snapshot
from hpcwrap.runlog.dates import now as utc_now


class SignalNotes:
    """Writes one Status entry (or event) per signal note, through the recorder."""

    def __init__(
        self, recorder: Recorder, time_left: TimeLeft, walltime_lead: float, in_slurm: bool
    ) -> None:
        self.recorder = recorder
        self.time_left = time_left
        self.walltime_lead = walltime_lead
        self.in_slurm = in_slurm
        self.mono: Callable[[], float] = recorder.mono
        self.left_at_term: float | None = None  # at the first TERM (None: unknown)
        self.walltime_left: float | None = None

    def record(self, note: SignalNote, snap: Snapshot) -> None:
        """``snap``: the progress once the lines printed before the signal were read."""
        fields_ = ", ".join(progress_fields(snap)) or "no progress recognised yet"
        data: dict[str, Any] = {
            "signal": note.name,
            "count": note.count,
            "step": snap.step,
            "forwarded_to": list(note.forwarded_to) or ("group" if note.group else None),
        }
        if note.not_forwarded:
            data["not_forwarded"] = note.not_forwarded
        rec = self.recorder
        if note.kind == "walltime":
            if self._walltime(note, fields_, data):
                return
        elif note.kind == "terminate":
            self._terminate(note, fields_, data)
        else:
            text = f"grace period over: SIGKILL sent to the command's process group; {fields_}"
            rec.signal_status(note, text, "signal", data)
        rec.policy.wrote_status(self.mono())

    def _walltime(self, note: SignalNote, fields_: str, data: dict[str, Any]) -> bool:
        """True: no Status entry was written (a repeated warning: an event only)."""
        rec = self.recorder
        if note.held_for is not None:
            pids = ", ".join(map(str, note.forwarded_to))
            text = (
                f"walltime warning ({note.name}) forwarded to the training (pid {pids}) "
                f"{describe_seconds(note.held_for)} after it came, once it handled it; {fields_}"
            )
            rec.signal_status(note, text, "walltime_signal", {**data, "held_s": note.held_for})
            return True
        left = self.time_left.seconds()
        if left is None:
            left_text = (
                f"{describe_seconds(self.walltime_lead)} left (the configured lead; "
                "Slurm may send it up to 60 s early)"
            )
        else:
            left_text = f"{describe_seconds(left)} left (squeue)"
            self.walltime_left = left
        data["time_left_s"] = left
        if note.forwarded_to:
            fwd = "forwarded to the training (pid " + ", ".join(map(str, note.forwarded_to)) + ")"
        elif note.group:
            fwd = "forwarded to the command's process group"
        else:
            fwd = f"not forwarded: {note.not_forwarded}"
        if note.count > 1:
            rec.sink.event("walltime_signal", data)
            return True
        text = f"walltime warning ({note.name}), {left_text}; {fields_}; {fwd}"
        rec.signal_status(note, text, "walltime_signal", data)
        return False

    def _terminate(self, note: SignalNote, fields_: str, data: dict[str, Any]) -> None:
        rec = self.recorder
        if self.in_slurm:
            left = self.time_left.seconds()
            data["time_left_s"] = left
            if self.left_at_term is None:
                self.left_at_term = left
        if note.count > 2:
            text = f"received {note.name} a third time: SIGKILL sent to the command; {fields_}"
            rec.signal_status(note, text, "signal", data)
            return
        again = " again" if note.count > 1 else ""
        fwd = "forwarded to the command" if note.group else f"not forwarded: {note.not_forwarded}"
        kill = ""
        if note.kill_at_mono is not None:
            kill_wall = utc_now() + timedelta(seconds=max(note.kill_at_mono - self.mono(), 0))
            kill = f", SIGKILL at {kill_wall.strftime('%H:%M:%S')} unless it exits"
        text = f"received {note.name}{again}, {fwd}{kill}; {fields_}"
        rec.signal_status(note, text, "signal", data)

    def left_when_terminated(self, term_at: float | None) -> float | None:
        """The time left when the first TERM came: as noted when it came, else counted
        from the limit read at the start (a monitor stuck on a held lock never handles the
        TERM's note, and a TERM at the limit must not read as one with time left)."""
        if self.left_at_term is not None or term_at is None or not self.in_slurm:
            return self.left_at_term
        return self.time_left.at(term_at)


__all__ = ["SignalNotes"]
