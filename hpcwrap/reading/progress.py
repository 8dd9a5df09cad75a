"""What the wrapper has learned about the training so far.

The scanner thread applies ``Observation``s; the monitor thread takes
``Snapshot``s. Everything is bounded: the loss history is thinned by doubling
its stride when full, errors keep the first few distinct messages with a count.

The train loss is one series from start to end: where a framework entry names the line
of its train-loss series (its ``train`` pattern, or a user pattern's ``loss``), the
first and last train loss and the history come from those lines alone. Other lines'
losses (a progress bar's postfix, nanoGPT's one-batch ``iter N: loss`` lines) stand in
until the first such line, and wholly in a run that prints none.
"""

from __future__ import annotations

import math
import posixpath
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from hpcwrap.reading.formats import Observation

HISTORY_MAX = 512  # points kept per loss series (first point always kept)
ERRORS_MAX = 20  # distinct error messages kept


@dataclass(frozen=True)
class ErrorRecord:
    kind: str
    text: str
    first_seen: datetime
    step: int | None
    count: int = 1


CHECKPOINTS_MAX = 50  # completed checkpoints listed (the newest kept)

# How a checkpoint is known to be complete.
BY_LINE = "completion line"  # the framework printed that the save finished
BY_PROGRESS = "start line, then training went on"  # it prints only the start of a save
BY_EXIT = "start line, then the command exited 0"


@dataclass(frozen=True)
class Checkpoint:
    path: str | None  # as printed (relative paths are resolved by whoever knows the cwd)
    step: int | None
    when: datetime
    evidence: str = BY_LINE
    source: str | None = None  # the framework entry that read it


@dataclass(frozen=True)
class PendingSave:
    """A save that started and has not been seen to complete (not a checkpoint)."""

    path: str | None
    step: int | None
    when: datetime
    on_progress: bool  # it completes once training goes on (a synchronous save)
    source: str | None = None


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
    checkpoint: Checkpoint | None = None  # the last COMPLETED checkpoint
    checkpoints_saved: int = 0
    checkpoints: tuple[Checkpoint, ...] = ()  # completed ones, oldest first (bounded)
    pending_save: PendingSave | None = None  # a started save not seen to complete
    train_count: int = 0  # train loss lines read
    val_count: int = 0  # val loss lines read
    origin: dict[str, str] | None = None  # figure -> the format entry or reader it came from
    wandb_dir: str | None = None
    wandb_url: str | None = None
    config_path: str | None = None
    resumed_from: str | None = None  # the checkpoint the training said it continues from
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
    resumed: bool = False  # the training said which checkpoint it continues from

    def __bool__(self) -> bool:
        return bool(
            self.first_progress
            or self.checkpoint
            or self.error
            or self.nonfinite
            or self.wandb
            or self.resumed
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


def _folder(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] if "/" in path.rstrip("/") else ""


def _inside(part: str | None, save: str | None) -> bool:
    """True when the file ``part`` belongs to the save at ``save`` (its folder, or a
    file beside it: nanochat's model_N.pt and optim_N_rankR.pt)."""
    if part is None or save is None:
        return part is None
    folder = _folder(part)
    return folder == save.rstrip("/") or folder == _folder(save) or part == save


def _same_save(pend: PendingSave, path: str | None, step: int | None) -> bool:
    if step is not None and pend.step is not None and step != pend.step:
        return False
    return path is None or pend.path is None or path == pend.path


def _completes(pend: PendingSave, path: str | None, step: int | None, tag: str | None) -> bool:
    """Whether a completion line is the end of the started save ``pend``."""
    if tag is not None:
        return pend.path is None or pend.path.rstrip("/").endswith("/" + tag) or pend.path == tag
    if step is not None and pend.step is not None and step != pend.step:
        return False
    return path is None or pend.path is None or path == pend.path or _inside(pend.path, path)


def checkpoint_note(snap: Snapshot) -> str | None:
    """What the run log should say about saves beside the last completed checkpoint:
    a started save that never completed, or a framework that prints only starts."""
    pend = snap.pending_save
    if pend is not None:
        what = f"step {pend.step}" if pend.step is not None else (pend.path or "a checkpoint")
        where = f" ({pend.path})" if pend.path and pend.step is not None else ""
        return f"a save of {what}{where} started but was not seen to complete: not counted"
    ck = snap.checkpoint
    if ck is not None and ck.evidence in (BY_PROGRESS, BY_EXIT):
        who = ck.source or "the training"
        return f"{who} prints only the start of a save: the checkpoint counts ({ck.evidence})"
    return None


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
        self._series = False  # a line the framework names its train-loss series was read
        self._val = LossHistory()
        self._errors: dict[tuple[str, str], ErrorRecord] = {}
        self._checkpoints: list[Checkpoint] = []
        self._origin: dict[str, str] = {}
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
            s = replace(self._s, checkpoints=tuple(self._checkpoints), origin=dict(self._origin))
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

    def has_first_loss(self) -> bool:
        return self._s.first_loss is not None  # one read of a field: no lock needed

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
            went_on = obs.went_on
            origin = self._origin
            fmt = obs.format or ""
            if obs.step is not None and obs.step != step:
                went_on = went_on or step is not None or s.pending_save is not None
                step = obs.step
                self._progressed(step)
                origin["step"] = fmt
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
                went_on = True
                s.version += 1
                if obs.series and not self._series:
                    # The framework's own train-loss line: from here on the series is
                    # these lines alone, from their first (nanoGPT's "step N: train loss"
                    # estimates, not its one-batch "iter N: loss" lines).
                    self._series = True
                    self._train = LossHistory()
                    s.first_loss = s.first_loss_text = None
                    s.train_count = 0
                if obs.series or not self._series:
                    s.loss, s.loss_text = obs.loss, obs.loss_text
                    s.train_count += 1
                    origin["loss"] = fmt
                    self._train.add(step, obs.loss)
                    if s.first_loss is None:
                        s.first_loss, s.first_loss_text = obs.loss, obs.loss_text
                # any loss line: a batch that diverged is news even beside the series
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
                s.val_count += 1
                origin["val_loss"] = fmt
                went_on = True
                self._val.add(step, obs.val_loss)
                if s.first_val_loss is None:
                    s.first_val_loss, s.first_val_loss_text = obs.val_loss, obs.val_loss_text
            pend = s.pending_save
            if (
                went_on
                and pend is not None
                and pend.on_progress
                and not obs.checkpoint_started
                and not obs.checkpoint_part
            ):
                # A synchronous save that printed only its start: training went on after
                # it, so it returned. (A save's own lines are not the training going on.)
                self._complete(pend.path, pend.step, BY_PROGRESS, pend.source, notable)
                s.pending_save = None
            saves = obs.checkpoint_saved or obs.checkpoint_started or obs.checkpoint_part
            if saves and self._save_line(obs, step, notable):
                origin["checkpoint"] = fmt
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
            if obs.resumed_from is not None and s.resumed_from is None:
                s.resumed_from = obs.resumed_from
                notable.resumed = True
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

    def end_of_output(self, exited_ok: bool) -> None:
        """The command ended. A synchronous save that printed only its start returned
        if the command then exited 0; any other started save stays not completed."""
        with self._lock:
            pend = self._s.pending_save
            if exited_ok and pend is not None and pend.on_progress:
                self._complete(pend.path, pend.step, BY_EXIT, pend.source, Notable())
                self._s.pending_save = None
                self._s.version += 1

    def _save_line(self, obs: Observation, step: int | None, notable: Notable) -> bool:
        """A line about a save: it started, a part of it was written, or it completed.
        False for a file that is neither (a part of the save under way, a tokenizer
        file on its own)."""
        s = self._s
        ckpt_step = obs.checkpoint_step if obs.checkpoint_step is not None else step
        path = obs.checkpoint
        if path is None and obs.checkpoint_layout is not None and ckpt_step is not None:
            path = obs.checkpoint_layout.format(step=ckpt_step)
        pend = s.pending_save
        s.version += 1
        if obs.checkpoint_part:
            if pend is not None and _inside(path, pend.path):
                return False  # one file of the save under way
            if pend is not None and pend.on_progress:
                # a save of another folder started: the pending one returned
                self._complete(pend.path, pend.step, BY_PROGRESS, pend.source, notable)
                s.pending_save = None
            if not obs.checkpoint_weights or path is None:
                return False  # a config or tokenizer file alone is no checkpoint
            # the weights saved on their own (save_pretrained, save_model): their folder
            # is the checkpoint, not the last file written into it
            folder = posixpath.dirname(path.rstrip("/")) or "."
            self._complete(folder, ckpt_step, BY_LINE, obs.format, notable)
            return True
        if obs.checkpoint_started:
            if pend is not None and pend.on_progress and not _same_save(pend, path, ckpt_step):
                # the next save started: the previous synchronous one returned
                self._complete(pend.path, pend.step, BY_PROGRESS, pend.source, notable)
            if pend is not None and _same_save(pend, path, ckpt_step):
                # a second start line of the same save: keep what each says
                path = path or pend.path
                ckpt_step = ckpt_step if ckpt_step is not None else pend.step
            s.pending_save = PendingSave(
                path, ckpt_step, self._wall(), obs.checkpoint_on_progress, obs.format
            )
            return True
        # completed: it may name only a tag or nothing; the started save gives the rest
        if pend is not None and _completes(pend, path, ckpt_step, obs.checkpoint_tag):
            if path is None or (obs.checkpoint_tag and pend.path):
                path = pend.path
            if obs.checkpoint_step is None and pend.step is not None:
                ckpt_step = pend.step
            s.pending_save = None
        self._complete(path, ckpt_step, BY_LINE, obs.format, notable)
        return True

    def _complete(
        self,
        path: str | None,
        ckpt_step: int | None,
        evidence: str,
        source: str | None,
        notable: Notable,
    ) -> None:
        s = self._s
        step = s.step
        for known in self._checkpoints:
            if path is not None and known.path == path and known.step == ckpt_step:
                return  # re-printed (timm lists its kept checkpoints after every save)
        prev = s.checkpoint
        same_save = (
            prev is not None
            and prev.step == ckpt_step
            and (prev.path == path or None in (prev.path, path))
        )
        if same_save and prev is not None:
            # one save announced twice (with and without its path): keep the path given
            if prev.path is None and path is not None:
                s.checkpoint = replace(prev, path=path)
                self._checkpoints[-1] = s.checkpoint
            return
        ck = Checkpoint(path, ckpt_step, self._wall(), evidence, source)
        self._checkpoints.append(ck)
        if len(self._checkpoints) > CHECKPOINTS_MAX:
            del self._checkpoints[0]
        s.checkpoints_saved += 1
        last_step = prev.step if prev is not None else None
        if ckpt_step is not None and last_step is not None and ckpt_step < last_step:
            return  # an older one listed again after a newer one: not the last
        s.checkpoint = ck
        notable.checkpoint = True
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
    "BY_EXIT",
    "BY_LINE",
    "BY_PROGRESS",
    "Checkpoint",
    "ErrorRecord",
    "LossHistory",
    "Notable",
    "PendingSave",
    "Progress",
    "Snapshot",
    "checkpoint_note",
]
