"""What the wrapper has learned about the training so far.

The scanner thread applies ``Observation``s; the monitor thread takes
``Snapshot``s. Everything is bounded: the loss history is thinned by doubling
its stride when full, errors keep the first few distinct messages with a count.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from hpcwrap.job.formats import Observation

HISTORY_MAX = 512  # points kept per loss series (first point always kept)
ERRORS_MAX = 20  # distinct error messages kept


@dataclass(frozen=True)
class ErrorRecord:
    kind: str
    text: str
    first_seen: datetime
    step: int | None
    count: int = 1


@dataclass(frozen=True)
class Checkpoint:
    path: str | None
    step: int | None
    when: datetime


class LossHistory:
    """(step, value) pairs, bounded: keeps every ``stride``-th point and the newest."""

    def __init__(self, limit: int = HISTORY_MAX) -> None:
        self.limit = max(limit, 4)
        self.points: list[tuple[int | None, float]] = []
        self.stride = 1
        self._seen = 0
        self.last: tuple[int | None, float] | None = None

    def add(self, step: int | None, value: float) -> None:
        if self.last is not None and (
            self.last[1] == value or (self.last[1] != self.last[1] and value != value)
        ):
            # The same value again (a progress bar redrawing its postfix): not a new point.
            return
        self.last = (step, value)
        if self._seen % self.stride == 0:
            self.points.append((step, value))
            if len(self.points) >= self.limit:
                # Keep the first point, thin the rest by two.
                self.points = self.points[:1] + self.points[2::2]
                self.stride *= 2
        self._seen += 1

    def series(self) -> tuple[tuple[int | None, float], ...]:
        pts = list(self.points)
        if self.last is not None and (not pts or pts[-1] != self.last):
            pts.append(self.last)
        return tuple(pts)


@dataclass(slots=True)
class Snapshot:
    """A copy of the progress state (what Status and Results are made from).

    ``Progress`` mutates its own live instance; every ``snapshot()`` is a fresh copy
    that nobody else changes (treat it as read-only).
    """

    version: int = 0
    step: int | None = None
    step_total: int | None = None
    epoch: float | None = None
    loss: float | None = None
    val_loss: float | None = None
    lr: float | None = None
    first_loss: float | None = None
    first_val_loss: float | None = None
    # The same four losses as the training printed them (the run log shows these).
    loss_text: str | None = None
    val_loss_text: str | None = None
    first_loss_text: str | None = None
    first_val_loss_text: str | None = None
    nonfinite_since_step: int | None = None  # first step whose train loss was nan/inf
    nonfinite_seen: bool = False
    progress_marks: int = 0  # grows with every new step (or every loss line when no steps)
    last_progress_wall: datetime | None = None
    last_progress_mono: float | None = None
    step_at_last_progress: int | None = None
    checkpoint: Checkpoint | None = None
    checkpoints_saved: int = 0
    wandb_dir: str | None = None
    wandb_url: str | None = None
    config_path: str | None = None
    errors: tuple[ErrorRecord, ...] = ()
    errors_total: int = 0
    lines: int = 0  # lines the scanner read
    bytes_out: int = 0
    bytes_skipped: int = 0
    last_output_wall: datetime | None = None
    last_output_mono: float | None = None
    train_history: tuple[tuple[int | None, float], ...] = ()
    val_history: tuple[tuple[int | None, float], ...] = ()
    parser_errors: int = 0

    @property
    def has_progress(self) -> bool:
        return self.step is not None or self.loss is not None or self.val_loss is not None

    @property
    def finished_all_steps(self) -> bool:
        return (
            self.step is not None and self.step_total is not None and self.step >= self.step_total
        )


@dataclass
class Notable:
    """Why an observation deserves a Status entry (collected by the scanner)."""

    first_progress: bool = False
    checkpoint: bool = False
    error: ErrorRecord | None = None
    nonfinite: bool = False
    wandb: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.first_progress or self.checkpoint or self.error or self.nonfinite or self.wandb
        )


def _same_wandb_run(known: str | None, seen: str) -> bool:
    """True when ``seen`` names the run folder ``known`` already names.

    wandb prints its run folder several times: absolute in "Run data is saved
    locally in /abs/wandb/offline-run-...", relative to the cwd in "Find logs at:
    ./wandb/offline-run-.../logs" at the end. The later, relative mention must not
    replace the absolute one (the run log is read from other folders).
    """
    if known is None:
        return False
    return known.rstrip("/").rsplit("/", 1)[-1] == seen.rstrip("/").rsplit("/", 1)[-1]


class Progress:
    """Thread-safe progress state. ``apply`` from the scanner, ``snapshot`` from anyone."""

    def __init__(
        self,
        wall: Callable[[], datetime],
        mono: Callable[[], float],
    ) -> None:
        self._wall = wall
        self._mono = mono
        self._lock = threading.Lock()
        self._s = Snapshot()
        self._train = LossHistory()
        self._val = LossHistory()
        self._errors: dict[tuple[str, str], ErrorRecord] = {}
        # Per-stream byte counters, each written by its own copy thread only (no lock
        # needed, no lost updates); index 1 = stdout, 2 = stderr.
        self._bytes = [0, 0, 0]
        self.last_output_mono: float | None = None

    def note_output(self, stream: int, nbytes: int) -> None:
        """Called by a copy thread for every chunk it copied (constant time, no lock)."""
        self._bytes[stream] += nbytes
        self.last_output_mono = self._mono()

    def add_lines(self, n: int) -> None:
        """Lines the scanner read (output it skipped in a flood is not counted)."""
        with self._lock:
            self._s.lines += n

    def snapshot(self) -> Snapshot:
        with self._lock:
            s = replace(self._s)
            train = self._train.series()
            val = self._val.series()
        last_mono = self.last_output_mono
        last_wall = None
        if last_mono is not None:
            # Wall time of the last output, derived from the monotonic clock.
            last_wall = self._wall() - timedelta(seconds=max(self._mono() - last_mono, 0.0))
        return replace(
            s,
            train_history=train,
            val_history=val,
            bytes_out=sum(self._bytes),
            last_output_mono=last_mono,
            last_output_wall=last_wall,
        )

    def add_skipped(self, nbytes: int) -> None:
        with self._lock:
            self._s.bytes_skipped += nbytes

    def add_parser_error(self) -> None:
        with self._lock:
            self._s.parser_errors += 1

    def apply(self, obs: Observation) -> Notable:
        """Fold one observation in; returns what about it is worth a Status entry.

        Mutates the live state in place under the lock (called for every line read,
        so it must be cheap); ``snapshot`` hands out copies.
        """
        notable = Notable()
        with self._lock:
            s = self._s
            had_progress = s.has_progress
            version = s.version
            step = s.step
            if obs.step is not None and obs.step != step:
                step = obs.step
                self._progressed(step)
            if obs.step_total is not None and obs.step_total != s.step_total:
                s.step_total = obs.step_total
                s.version += 1
            if obs.epoch is not None and obs.epoch != s.epoch:
                s.epoch = obs.epoch
                s.version += 1
            if obs.lr is not None and obs.lr != s.lr:
                s.lr = obs.lr
                s.version += 1
            if obs.loss is not None:
                s.loss, s.loss_text = obs.loss, obs.loss_text
                s.version += 1
                self._train.add(step, obs.loss)
                if s.first_loss is None:
                    s.first_loss, s.first_loss_text = obs.loss, obs.loss_text
                if not math.isfinite(obs.loss) and not s.nonfinite_seen:
                    notable.nonfinite = True
                    s.nonfinite_seen = True
                    s.nonfinite_since_step = step
                if step is None:
                    # No step counter in this output: each loss line is the progress.
                    self._progressed(None)
            if obs.val_loss is not None:
                s.val_loss, s.val_loss_text = obs.val_loss, obs.val_loss_text
                s.version += 1
                self._val.add(step, obs.val_loss)
                if s.first_val_loss is None:
                    s.first_val_loss, s.first_val_loss_text = obs.val_loss, obs.val_loss_text
            if obs.checkpoint_saved:
                self._checkpoint(obs, step, notable)
            if obs.wandb_dir is not None and obs.wandb_dir != s.wandb_dir:
                if not _same_wandb_run(s.wandb_dir, obs.wandb_dir):
                    s.wandb_dir = obs.wandb_dir
                    notable.wandb = True
                elif obs.wandb_dir.startswith("/"):
                    s.wandb_dir = obs.wandb_dir  # the same run, now with its full path
            if obs.wandb_url is not None and obs.wandb_url != s.wandb_url:
                s.wandb_url = obs.wandb_url
                notable.wandb = True
            if obs.config_path is not None:
                s.config_path = obs.config_path
            if obs.error is not None:
                self._error(obs, notable)
            if notable.wandb or obs.config_path is not None or obs.error is not None:
                s.version += 1
            if s.version != version and not had_progress and s.has_progress:
                notable.first_progress = True
        return notable

    def _progressed(self, step: int | None) -> None:
        s = self._s
        if step is not None:
            s.step = step
            s.step_at_last_progress = step
        s.progress_marks += 1
        s.last_progress_wall = self._wall()
        s.last_progress_mono = self._mono()
        s.version += 1

    def _checkpoint(self, obs: Observation, step: int | None, notable: Notable) -> None:
        s = self._s
        ckpt_step = obs.checkpoint_step if obs.checkpoint_step is not None else step
        prev = s.checkpoint
        same_save = (
            prev is not None
            and prev.step == ckpt_step
            and (prev.path == obs.checkpoint or None in (prev.path, obs.checkpoint))
        )
        if same_save and prev is not None:
            # "saving at iteration N" then "saved iteration N to X" (or the reverse with
            # "finished saving"): one checkpoint; keep the path that was given.
            if prev.path is None and obs.checkpoint is not None:
                s.checkpoint = replace(prev, path=obs.checkpoint)
        else:
            s.checkpoint = Checkpoint(obs.checkpoint, ckpt_step, self._wall())
            s.checkpoints_saved += 1
            notable.checkpoint = True
        s.version += 1
        if ckpt_step is not None and (step is None or ckpt_step > step):
            # A checkpoint of step N proves step N was reached (HF's bar is throttled).
            self._progressed(ckpt_step)

    def _error(self, obs: Observation, notable: Notable) -> None:
        s = self._s
        assert obs.error is not None
        kind = obs.error_kind or "error"
        key = (kind, obs.error)
        rec = self._errors.get(key)
        if rec is not None:
            self._errors[key] = replace(rec, count=rec.count + 1)
        elif len(self._errors) < ERRORS_MAX:
            rec = ErrorRecord(kind, obs.error, self._wall(), s.step)
            self._errors[key] = rec
            notable.error = rec
        s.errors = tuple(self._errors.values())
        s.errors_total += 1


__all__ = [
    "Checkpoint",
    "ErrorRecord",
    "LossHistory",
    "Notable",
    "Progress",
    "Snapshot",
]
