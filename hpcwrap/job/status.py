"""When to write Status entries and events, and what they say.

``StatusPolicy`` is pure: it is given the time (an injectable monotonic clock),
progress snapshots and notable observations, and answers with ``Write``s. The
monitor thread performs them. Rules:

- a Status entry at the first progress, at each checkpoint, on a new error, on a
  first nan/inf loss, every ``status_every``, when the run looks stalled (no new
  step for ``stall_after``: ``stalled? no new step since step N at HH:MM``), and
  at the end;
- entries are at least ``min_interval`` apart; reasons that arrive sooner wait
  and are folded into the next entry, so a chatty job cannot bloat the log
  (signals and the end are written at once);
- events.jsonl gets a coalesced ``progress`` event at most every
  ``progress_event_every`` seconds, and each checkpoint (coalesced the same way),
  distinct error, W&B directory and signal.

Extra Status fields (GPU telemetry, later) come from ``TickHook``s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from hpcwrap.reading.progress import Checkpoint, ErrorRecord, Notable, Snapshot

PROGRESS_EVENT_EVERY = 10.0


class TickHook(Protocol):
    """A periodic hook of the wrapper's monitor thread (telemetry plugs in here).

    ``tick`` is called about once a second with the monotonic time, never from the
    copy path; ``status_fields`` adds short fields (``"gpu 97%"``) to every Status
    entry. Exceptions are reported once and the hook is kept.

    Two optional methods, looked up by the wrapper: ``attach(pid, perform,
    checkpoint_dir)`` once the child runs (its pid, a way to write a Status entry
    or event, the last checkpoint path printed), and ``finish()`` after it ended,
    whose ``TelemetryFacts`` go into Results with the end
    (``hpcwrap.job.telemetry.hook.TelemetryHook`` has both).
    """

    def tick(self, now: float) -> None: ...

    def status_fields(self) -> list[str]: ...


@dataclass(frozen=True)
class Write:
    """One thing to write: a Status entry (``text`` set) or an event only."""

    event: str
    data: dict[str, Any] = field(default_factory=dict)
    text: str | None = None


@dataclass(frozen=True)
class StatusConfig:
    status_every: float = 1800.0
    stall_after: float = 1200.0
    min_interval: float = 60.0
    progress_event_every: float = PROGRESS_EVENT_EVERY


def fmt_num(value: float) -> str:
    """4 significant digits; nan/inf spelled as such."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def hhmm(dt: datetime | None) -> str:
    """``15:04`` in UTC, as the Status stamps are."""
    if dt is None:
        return "?"
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%H:%M")


def checkpoint_text(ckpt: Checkpoint | None) -> str | None:
    if ckpt is None:
        return None
    if ckpt.step is not None:
        return f"ckpt step {ckpt.step}"
    if ckpt.path:
        return f"ckpt {ckpt.path.rstrip('/').rsplit('/', 1)[-1]}"
    return "ckpt saved"


def progress_fields(snap: Snapshot) -> list[str]:
    """``["step 2400/10000", "train_loss 0.085", "val_loss 0.091", "ckpt step 2000"]``."""
    out: list[str] = []
    if snap.step is not None:
        total = f"/{snap.step_total}" if snap.step_total else ""
        out.append(f"step {snap.step}{total}")
    elif snap.epoch is not None:
        out.append(f"epoch {fmt_num(snap.epoch)}")
    if snap.loss is not None:
        text = f"train_loss {fmt_num(snap.loss)}"
        if not math.isfinite(snap.loss) and snap.nonfinite_since_step is not None:
            text += f" (non-finite since step {snap.nonfinite_since_step})"
        elif not math.isfinite(snap.loss):
            text += " (non-finite)"
        out.append(text)
    elif snap.nonfinite_seen:
        out.append("train_loss was nan/inf")
    if snap.val_loss is not None:
        out.append(f"val_loss {fmt_num(snap.val_loss)}")
    ck = checkpoint_text(snap.checkpoint)
    if ck:
        out.append(ck)
    return out


def no_progress_text(snap: Snapshot) -> str:
    if snap.bytes_out == 0:
        return "no output yet"
    return (
        f"no progress lines recognised yet ({snap.lines} lines of output, "
        f"last at {hhmm(snap.last_output_wall)})"
    )


def error_text(err: ErrorRecord, limit: int = 160) -> str:
    label = {
        "cuda_oom": "CUDA out of memory",
        "nccl_timeout": "NCCL timeout",
        "nccl_error": "NCCL error",
        "time_limit": "Slurm time limit",
        "oom_kill": "killed by the out-of-memory handler",
        "mem_limit": "memory limit exceeded",
        "cancelled": "cancelled by Slurm",
        "killed": "a process was killed",
        "crash": "crash",
        "exception": "exception",
        "traceback": "Python traceback",
    }.get(err.kind, err.kind)
    text = err.text if len(err.text) <= limit else err.text[: limit - 3] + "..."
    at = f" at step {err.step}" if err.step is not None else ""
    return f"{label}{at}: {text}"


def running_text(
    snap: Snapshot, extra: Sequence[str] = (), errors: Sequence[ErrorRecord] = ()
) -> str:
    fields_ = progress_fields(snap)
    head = "running, " + ", ".join(fields_) if fields_ else "running, " + no_progress_text(snap)
    if extra:
        head += ", " + ", ".join(extra)
    if errors:
        head += "; " + "; ".join(error_text(e) for e in errors[:3])
        if len(errors) > 3:
            head += f"; +{len(errors) - 3} more errors"
    return head


def stall_text(snap: Snapshot, extra: Sequence[str] = ()) -> str:
    if snap.step is not None:
        head = f"stalled? no new step since step {snap.step} at {hhmm(snap.last_progress_wall)}"
    elif snap.progress_marks:
        head = f"stalled? no new loss line since {hhmm(snap.last_progress_wall)}"
    else:
        head = f"stalled? no output since {hhmm(snap.last_output_wall)}"
    rest = [f for f in progress_fields(snap) if not f.startswith("step ")] + list(extra)
    return head + (f" ({', '.join(rest)})" if rest else "")


def progress_data(snap: Snapshot) -> dict[str, Any]:
    """The ``progress`` event's fields (non-finite floats as strings, JSON has none)."""

    def num(v: float | None) -> float | str | None:
        if v is None or math.isfinite(v):
            return v
        return repr(v)

    data: dict[str, Any] = {
        "step": snap.step,
        "step_total": snap.step_total,
        "epoch": num(snap.epoch),
        "train_loss": num(snap.loss),
        "val_loss": num(snap.val_loss),
        # as printed: the epilog fills Results from these when the wrapper could not
        "train_loss_text": snap.loss_text,
        "val_loss_text": snap.val_loss_text,
        "lr": num(snap.lr),
        "lines": snap.lines,
        "bytes": snap.bytes_out,
    }
    if snap.bytes_skipped:
        data["bytes_not_scanned"] = snap.bytes_skipped
    return {k: v for k, v in data.items() if v is not None}


def checkpoint_data(ckpt: Checkpoint) -> dict[str, Any]:
    return {"path": ckpt.path, "step": ckpt.step}


class StatusPolicy:
    """Decides what to write, given the time and the progress. Not thread-safe."""

    def __init__(self, cfg: StatusConfig, start: float) -> None:
        self.cfg = cfg
        self.start = start
        self.last_status: float | None = None
        self._last_event = -math.inf
        self._event_version = 0
        self._reasons: set[str] = set()
        self._errors: list[ErrorRecord] = []
        self._pending_ckpt: Checkpoint | None = None
        self._last_ckpt_event = -math.inf
        self._stall_key: object = None
        self._events: list[Write] = []
        self._first_done = False

    def notable(self, n: Notable, snap: Snapshot) -> None:
        """Remember why the next Status entry is due (and queue the matching events)."""
        if n.checkpoint:
            self._reasons.add("checkpoint")
            self._pending_ckpt = snap.checkpoint
        if n.error is not None:
            self._reasons.add("error")
            self._errors.append(n.error)
            self._events.append(
                Write("error", {"kind": n.error.kind, "text": n.error.text, "step": n.error.step})
            )
        if n.nonfinite:
            self._reasons.add("non-finite loss")
            self._events.append(
                Write(
                    "nonfinite_loss", {"step": snap.nonfinite_since_step, "loss": repr(snap.loss)}
                )
            )
        if n.wandb:
            self._events.append(Write("wandb", {"local": snap.wandb_dir, "url": snap.wandb_url}))

    def wrote_status(self, now: float) -> None:
        """A Status entry was written outside ``decide`` (signals): it counts for the interval."""
        self.last_status = now

    def _can(self, now: float) -> bool:
        return self.last_status is None or now - self.last_status >= self.cfg.min_interval

    def _stalled(self, now: float, snap: Snapshot) -> object:
        """A key for the stall episode, or None when not stalled."""
        if snap.progress_marks:
            ref = snap.last_progress_mono
            key: object = ("progress", snap.progress_marks)
        else:
            ref = snap.last_output_mono
            key = ("output", snap.bytes_out)
        if ref is None:
            ref = self.start
        if now - ref < self.cfg.stall_after:
            return None
        return key

    def decide(self, now: float, snap: Snapshot, extra: Sequence[str] = ()) -> list[Write]:
        out = self._events
        self._events = []
        if (
            snap.version != self._event_version
            and now - self._last_event >= self.cfg.progress_event_every
        ):
            out.append(Write("progress", progress_data(snap)))
            self._event_version = snap.version
            self._last_event = now
        if (
            self._pending_ckpt is not None
            and now - self._last_ckpt_event >= self.cfg.progress_event_every
        ):
            data = checkpoint_data(self._pending_ckpt)
            data["saved"] = snap.checkpoints_saved
            out.append(Write("checkpoint", data))
            self._pending_ckpt = None
            self._last_ckpt_event = now
        if not self._first_done and (
            snap.loss is not None
            or snap.val_loss is not None
            or (snap.step and now - self.start >= self.cfg.min_interval)
        ):
            # The first loss is the first real evidence; a bare step counter (a tqdm
            # bar at 0/N) only counts once it has been moving for a while.
            self._first_done = True
            self._reasons.add("first progress")
        if not self._can(now):
            return out
        stall = self._stalled(now, snap)
        since = now - (self.last_status if self.last_status is not None else self.start)
        if self._reasons:
            reasons = sorted(self._reasons)
            errors = list(self._errors)
            self._reasons.clear()
            self._errors.clear()
            out.append(
                Write(
                    "status",
                    {"reasons": reasons, **progress_data(snap)},
                    running_text(snap, extra, errors),
                )
            )
        elif stall is not None and stall != self._stall_key:
            self._stall_key = stall
            out.append(Write("stalled", progress_data(snap), stall_text(snap, extra)))
        elif since >= self.cfg.status_every:
            text = stall_text(snap, extra) if stall is not None else running_text(snap, extra)
            out.append(Write("status", {"reasons": ["periodic"], **progress_data(snap)}, text))
        else:
            return out
        self.last_status = now
        return out

    def leftover(self) -> tuple[list[Write], list[ErrorRecord]]:
        """Events still queued and errors not yet in a Status entry (for the end entry)."""
        events, errors = self._events, list(self._errors)
        self._events = []
        if self._pending_ckpt is not None:
            events.append(Write("checkpoint", checkpoint_data(self._pending_ckpt)))
            self._pending_ckpt = None
        return events, errors


__all__ = [
    "StatusConfig",
    "StatusPolicy",
    "TickHook",
    "Write",
    "checkpoint_text",
    "error_text",
    "fmt_num",
    "hhmm",
    "progress_data",
    "progress_fields",
    "running_text",
    "stall_text",
]
