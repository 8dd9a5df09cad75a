"""Reading the scan copy of the output: bounded queue, line splitting, prefilter.

The copy threads hand every chunk they copied to ``Scanner.offer``: constant
time, never blocks, never looks into the data. When more than ``queue_limit``
bytes wait, the chunk is skipped (counted as not scanned, never parsed). The
copy to the job's output never waits for the scanner.

The scanner thread works in batches: after a small batch it pauses briefly, so a
chatty child's lines are read a few dozen at a time; a batch bigger than
``SMALL_BATCH`` is a flood, of which only the newest ``FLOOD_TAIL`` bytes per stream
are read before a short sleep, which caps the scanner at a few percent of a core.
It splits on ``\\n`` and ``\\r`` (each tqdm redraw is a line) and behind a progress bar
other text was glued to (a log line written while the bar was drawn), keeps at most
``LINE_MAX`` bytes of an unfinished line (the tail: a 100 MB line without a newline
costs 64 KiB), and decodes only lines containing one of the parser's keywords
(``formats.KEYWORDS``, found with ``bytes.find`` over the lower-cased batch). Lines
with event words (checkpoint, error, W&B, val...) are always read; in a dense batch of
metric-only lines (step/loss/lr/bars), between two event lines, the first and last line
of each kind (a line less its numbers: ``_by_kind``) are read. A parser exception is
reported once and scanning goes on.

The pace of the output only changes how chunks fall into batches, and the reading does
not depend on it: whatever the batches, every line that is the first or the last of its
kind between two event lines is read, so the first and last train loss, the last val
loss, the final step, the step of each save and the last completed checkpoint are those
of reading every line (tests/unit/test_job_replay.py replays every sample at several
paces). Only what is never read can differ: a flood's skipped middle (bytes the
copy threads skip while more than ``queue_limit`` wait, and of a batch over
``SMALL_BATCH`` all but the newest ``FLOOD_TAIL`` bytes per stream, and its oldest while
no train loss is known), counted in ``bytes_skipped``.
"""

from __future__ import annotations

import contextlib
import math
import queue
import re
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from itertools import accumulate
from pathlib import Path
from typing import Any

from hpcwrap.config import Pattern
from hpcwrap.reading.formats import KEYWORDS, LineParser, Observation
from hpcwrap.reading.progress import Checkpoint, Notable, Progress, Snapshot, checkpoint_note

LINE_MAX = 64 * 1024
QUEUE_LIMIT = 2 * 1024 * 1024

# Words that only mark metric lines (sampled in a flood); every other keyword marks an
# event line that is always read. "val" keeps validation lines out of the sampling.
_METRIC_WORDS = frozenset({b"loss", b"step", b"iter", b"epoch", b"epch", b"lr", b"learning", b"%|"})
# What was skipped before a chunk: nothing, part of one line (no line break in it), or
# whole lines (the chunk then starts with a fragment of a line whose start is lost).
GAP_NONE, GAP_IN_LINE, GAP_LINES = 0, 1, 2

# Up to this many metric-word hits in a batch, every metric line is read.
SPARSE_HITS = 64
# After a small batch the scanner pauses this long, so a chatty child's lines are read
# in batches (fewer wake-ups, one keyword search per batch) instead of one thread
# hand-off per line; a flood ends the pause early.
BATCH_PAUSE = 0.05
SMALL_BATCH = 256 * 1024
# A batch bigger than SMALL_BATCH is a flood: only its newest FLOOD_TAIL bytes per
# stream are read (the state needs the latest values), the rest is counted as not
# scanned, and the scanner then sleeps FLOOD_PAUSE. That caps the scanner at a few
# percent of a core whatever the child prints, so the copy keeps the core it needs.
FLOOD_TAIL = 128 * 1024
FLOOD_PAUSE = 0.02
HEAD_BUDGET = 2 * FLOOD_TAIL

ParserErrorHandler = Callable[[BaseException, bytes], None]
NotableHandler = Callable[[Notable], None]


class _Stream:
    __slots__ = ("fragment", "partial", "skip_to_eol")

    def __init__(self) -> None:
        self.partial = bytearray()
        self.skip_to_eol = False
        self.fragment = 0  # bytes of the line fragment seen since a gap


def _eol(buf: bytes, pos: int) -> int:
    end = buf.find(b"\n", pos)
    return len(buf) if end < 0 else end


# Text glued behind a progress bar (a log line written while the bar was drawn and not
# cleared: openpi's "step=0 loss=0.4021 ..." behind "Training:   0%|...| 0/20000 [00:00<?,
# ?it/s]") is a line of its own: read with the bar, one's words would be taken for the
# other's (its loss for the bar's, the bar's step for its own).
# (Split only in the lines that are read: a dense batch of bars costs no regex.)
_GLUED = re.compile(rb"(%\|[^|\n]*\|[^\[\n]*\[[^\]\n]*\])(?=[^\n])")


def _unglued(line: bytes) -> list[bytes]:
    """A line read, as the lines it holds: a progress bar, and the text glued behind it."""
    if b"%|" not in line:
        return [line]
    return _GLUED.sub(rb"\1\n", line).split(b"\n")


def split_lines(data: bytes) -> list[bytes]:
    """The lines the scanner reads in ``data``: split at ``\\n``, at ``\\r`` (each bar
    redraw is a line) and behind a progress bar text was glued to (the last one unfinished
    unless ``data`` ends with a line break)."""
    norm = data.replace(b"\r", b"\n")
    return [piece for line in norm.split(b"\n") for piece in _unglued(line)]


# A line's kind: the line without its digits, blanks, '#' and non-ASCII bytes (the numbers
# and a progress bar's fill), and for a bar its total too (an eval bar and the training bar
# differ only there). Lines of one kind say the same things with other numbers; lines of
# two kinds (a loss dict and HF's summary of averages, a bar and the log line of the
# same step) are sampled apart. No metric word holds a deleted byte: a kind holds one
# whenever its line does.
_NOT_KIND = b"0123456789 \t#" + bytes(range(0x80, 0x100))


def _kinds(norm: bytes, lines: list[bytes]) -> list[bytes]:
    kinds = norm.translate(None, _NOT_KIND).split(b"\n")
    kinds.pop()  # norm ends with a line break
    bars = {k for k in set(kinds) if b"%|" in k}
    if bars:
        for i, k in enumerate(kinds):
            if k in bars:
                line = lines[i]
                at = line.find(b"/", line.find(b"%|"))
                if at >= 0:
                    kinds[i] = k + line[at : line.find(b"[", at)]
    return kinds


def _by_kind(norm: bytes, events: set[int], out: set[int]) -> int:
    """Sample a dense batch: of each run of lines between two event lines (``events``: the
    starts of lines always read), the first and the last line of each kind that holds a
    metric word go to ``out`` (line starts). Returns the metric lines left out.

    Whatever the batches, every line that is the first or last of its kind in its run of
    the whole output is read (a batch cut only adds lines), so the first and last train
    loss, the last val loss and step, and the step before each save line are the same as
    when every line is read; only intermediate points of the history differ.
    """
    lines = norm.split(b"\n")
    lines.pop()
    kinds = _kinds(norm, lines)
    starts = list(accumulate((len(line) + 1 for line in lines), initial=0))
    cuts = sorted(bisect_left(starts, e) for e in events)
    cuts.append(len(lines))
    metric: dict[bytes, bool] = {}
    left_out = 0
    a = 0
    for b in cuts:
        if b > a:
            run = kinds[a:b]
            last = dict(zip(run, range(a, b), strict=True))
            first = dict(zip(reversed(run), range(b - 1, a - 1, -1), strict=True))
            counts = Counter(run)
            for kind, i in first.items():
                has = metric.get(kind)
                if has is None:
                    low = kind.lower()
                    has = metric[kind] = any(w in low for w in _METRIC_WORDS)
                if has:
                    out.add(starts[i])
                    out.add(starts[last[kind]])
                    left_out += max(counts[kind] - 2, 0)
        a = b + 1
    return left_out


class Scanner:
    """Turns chunks of output into progress. ``run`` is the thread body."""

    def __init__(
        self,
        parser: LineParser,
        progress: Progress,
        on_notable: NotableHandler,
        on_parser_error: ParserErrorHandler,
        *,
        queue_limit: int = QUEUE_LIMIT,
        line_max: int = LINE_MAX,
        sample: bool = True,
        sparse_hits: int = SPARSE_HITS,
    ) -> None:
        self.parser = parser
        self.progress = progress
        self.on_notable = on_notable
        self.on_parser_error = on_parser_error
        self.queue_limit = queue_limit
        self.line_max = line_max
        self.sample = sample  # False: every metric line is read (offline, no CPU limit)
        self.sparse_hits = sparse_hits  # up to this many metric-word hits a batch is read whole
        # Bytes of flood heads still to read while no train loss is known: the start of a
        # burst (bounded: output that never prints a loss must not double the flood cost).
        self._head_left = HEAD_BUDGET
        self._q: queue.SimpleQueue[tuple[int, bytes, int] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued = 0
        self._offered = 0  # chunks queued so far, and chunks read: for settle()
        self._read = 0
        self._gap = {1: GAP_NONE, 2: GAP_NONE}  # skipped since the last queued chunk
        self._gap_before_last = {1: GAP_NONE, 2: GAP_NONE}  # ...before the last skipped one
        self._last_skipped: dict[int, bytes | None] = {1: None, 2: None}
        self._wake = threading.Event()
        self._streams = {1: _Stream(), 2: _Stream()}
        self.skipped_bytes = 0
        self.sampled_out = 0  # metric lines of dense floods not parsed
        self.parsed_lines = 0
        self.parser_errors = 0

    # -- producer side (copy threads) -------------------------------------------

    def offer(self, stream: int, data: bytes) -> None:
        """Queue a chunk for scanning, or skip it when the scanner is behind.

        Called by the copy threads after each write: never blocks; looks into
        ``data`` only when skipping it, for a line break (memchr speed).
        """
        n = len(data)
        with self._lock:
            if self._queued + n > self.queue_limit:
                kind = GAP_LINES if b"\n" in data or b"\r" in data else GAP_IN_LINE
                self._gap_before_last[stream] = self._gap[stream]
                self._gap[stream] = max(self._gap[stream], kind)
                self.skipped_bytes += n
                # Kept (one chunk per stream) so the newest output is read once the
                # scanner catches up, even if the child then goes quiet.
                self._last_skipped[stream] = data
                skip = True
            else:
                skip = False
                self._queued += n
                self._offered += 1
                gap = self._gap[stream]
                self._gap[stream] = self._gap_before_last[stream] = GAP_NONE
                self._last_skipped[stream] = None
                wake = self._queued > SMALL_BATCH
        if skip:
            self.progress.add_skipped(n)
            return
        self._q.put((stream, data, gap))
        if wake:
            self._wake.set()

    def settle(self, timeout: float = 0.5) -> bool:
        """Wait (at most ``timeout``) until every chunk queued before this call was read.

        For a moment that names the progress so far (a walltime warning): the lines the
        child printed just before it must count, though the scanner reads in pauses.
        True when it caught up in time."""
        with self._lock:
            target = self._offered
        deadline = time.monotonic() + timeout
        self._wake.set()
        while self._read < target:
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            time.sleep(0.005)
        return True

    def close(self) -> None:
        """No more chunks: the thread finishes what is queued, then the unfinished lines."""
        self._q.put(None)
        self._wake.set()

    # -- consumer side (scanner thread) -----------------------------------------

    def run(self) -> None:
        while True:
            done, flood = self._batch(self._q.get())
            if done:
                break
            if flood:
                time.sleep(FLOOD_PAUSE)
            else:
                # Let a chatty child's lines gather; a flood ends the pause early.
                self._wake.wait(BATCH_PAUSE)
                self._wake.clear()
        for stream in (1, 2):
            self.finish(stream)

    def read_queued(self) -> bool:
        """Read what is queued now as one batch, as ``run`` does after each pause; True
        once the end marker was read. How chunks fall into batches is the only thing the
        pace of the output changes: tests replay output at chosen paces with this, no
        clock and no thread involved."""
        try:
            first = self._q.get_nowait()
        except queue.Empty:
            return False
        return self._batch(first)[0]

    def _batch(self, first: tuple[int, bytes, int] | None) -> tuple[bool, bool]:
        """Read ``first`` and what else is queued (up to the queue limit) as one batch:
        (the end marker was read, the batch was a flood)."""
        batch = [first]
        size = len(first[1]) if first is not None else 0
        while size <= self.queue_limit:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
            if item is not None:
                size += len(item[1])
        flood = size > SMALL_BATCH
        taken = sum(1 for item in batch if item is not None)
        if flood:
            batch = self._head(batch) + self._tails(batch)
        done = self._process(batch)
        self._read += taken
        if self._q.empty():
            self._catch_up()
        return done, flood

    def _catch_up(self) -> None:
        """The queue is empty: read the newest skipped chunk of each stream, if any."""
        with self._lock:
            pending = [
                (st, d, self._gap_before_last[st])
                for st, d in self._last_skipped.items()
                if d is not None
            ]
            for st, _, _ in pending:
                self._last_skipped[st] = None
                # What comes next follows this chunk directly.
                self._gap[st] = self._gap_before_last[st] = GAP_NONE
        for stream, data, gap in pending:
            with self._lock:
                self.skipped_bytes -= len(data)
            self.progress.add_skipped(-len(data))
            try:
                self.feed(stream, data, gap)
            except Exception as exc:  # a bug here must never stop the wrapper
                self._parser_error(exc, data[:200])

    def _head(
        self, batch: list[tuple[int, bytes, int] | None]
    ) -> list[tuple[int, bytes, int] | None]:
        """Before the first train loss is known, a flood's oldest FLOOD_TAIL bytes per
        stream are read too (taken off ``batch``): a burst right at the start must not
        lose the first loss to the flood rule, which keeps only the newest output."""
        if self._head_left <= 0 or self.progress.has_first_loss():
            return []
        head: list[tuple[int, bytes, int] | None] = []
        have = {1: 0, 2: 0}
        for i, item in enumerate(batch):
            if item is None:
                break
            stream, data, gap = item
            need = FLOOD_TAIL - have[stream]
            if need <= 0:
                continue
            if need < len(data):
                # cut at a line break, so the rest starts a line (no gap between them)
                cut = max(data.rfind(b"\n", 0, need), data.rfind(b"\r", 0, need)) + 1
                have[stream] = FLOOD_TAIL  # the head of this stream ends here
                if cut <= 0:
                    continue  # a later chunk of the stream must not be read before this one
                head.append((stream, data[:cut], gap))
                batch[i] = (stream, data[cut:], GAP_NONE)
            else:
                head.append(item)
                batch[i] = (stream, b"", GAP_NONE)
                have[stream] += len(data)
        self._head_left -= sum(len(h[1]) for h in head if h is not None)
        return head  # the bytes moved, not added: the queue count stays right

    def _tails(
        self, batch: list[tuple[int, bytes, int] | None]
    ) -> list[tuple[int, bytes, int] | None]:
        """Of a flood batch keep, per stream, only its newest FLOOD_TAIL bytes."""
        keep: list[tuple[int, bytes, int]] = []
        have = {1: 0, 2: 0}
        cut_gap = {1: GAP_NONE, 2: GAP_NONE}  # what was dropped before what is kept
        dropped = 0
        for item in reversed(batch):
            if item is None:
                continue
            stream, data, gap = item
            need = FLOOD_TAIL - have[stream]
            if need < len(data):
                cut = len(data) - max(need, 0)
                part = data[:cut]
                kind = GAP_LINES if b"\n" in part or b"\r" in part else GAP_IN_LINE
                dropped += cut
                with self._lock:
                    self._queued -= cut
                if need <= 0:
                    cut_gap[stream] = max(cut_gap[stream], kind, gap)
                    continue
                data = data[cut:]
                cut_gap[stream] = max(cut_gap[stream], kind)
            have[stream] += len(data)
            keep.append((stream, data, gap))
        keep.reverse()
        if dropped:
            self.skipped_bytes += dropped
            self.progress.add_skipped(dropped)
        out: list[tuple[int, bytes, int] | None] = []
        seen: set[int] = set()
        for stream, data, gap in keep:
            if stream not in seen:
                seen.add(stream)
                gap = max(gap, cut_gap[stream])
            out.append((stream, data, gap))
        if None in batch:
            out.append(None)
        return out

    def _process(self, batch: list[tuple[int, bytes, int] | None]) -> bool:
        """Feed a batch, joining consecutive chunks of one stream; True at the end marker."""
        pending: list[bytes] = []
        cur_stream, cur_gap = 0, GAP_NONE
        end = False

        def flush() -> None:
            if pending:
                data = pending[0] if len(pending) == 1 else b"".join(pending)
                pending.clear()
                try:
                    self.feed(cur_stream, data, cur_gap)
                except Exception as exc:  # a bug here must never stop the wrapper
                    self._parser_error(exc, data[:200])

        for item in batch:
            if item is None:
                end = True
                break
            stream, data, gap = item
            with self._lock:
                self._queued -= len(data)
            if stream != cur_stream or gap:
                flush()
                cur_stream, cur_gap = stream, gap
            pending.append(data)
        flush()
        return end

    def feed(self, stream: int, data: bytes, gap: int = GAP_NONE) -> None:
        """Scan one chunk of ``stream`` (synchronously; tests call this directly).

        ``gap``: what was skipped before it (GAP_NONE, GAP_IN_LINE, GAP_LINES).
        """
        self.progress.add_lines(data.count(b"\n"))
        st = self._streams[stream]
        if gap == GAP_IN_LINE:
            # Part of one (giant) line was skipped: the line goes on here. Of a giant
            # line only the tail is read anyway; keep what follows the gap.
            st.partial.clear()
            if st.skip_to_eol:
                st.fragment = self.line_max
        elif gap == GAP_LINES:
            # Whole lines were skipped: this chunk starts with a fragment. A short one
            # is dropped (its start, e.g. "step 12|34", would misread); of a long one
            # only the tail is read anyway, as of any giant line.
            st.partial.clear()
            st.skip_to_eol = True
            st.fragment = 0
        last = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if last < 0:
            if st.skip_to_eol:
                st.fragment += len(data)
            self._keep(st, data)
            return
        head = data[: last + 1]
        tail = data[last + 1 :]
        if st.skip_to_eol:
            first = min(i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0)
            if st.fragment + first < self.line_max:
                head = head[first + 1 :]
                st.partial.clear()
            st.skip_to_eol = False
        if st.partial:
            head = bytes(st.partial) + head
            st.partial.clear()
        if head:
            for line in self._candidate_lines(stream, head):
                self._line(stream, line)
        if tail:
            self._keep(st, tail)

    def finish(self, stream: int) -> None:
        """End of ``stream``: read its unfinished last line."""
        st = self._streams[stream]
        if st.partial and (not st.skip_to_eol or st.fragment >= self.line_max):
            line = bytes(st.partial)
            st.partial.clear()
            for cand in self._candidate_lines(stream, line + b"\n"):
                self._line(stream, cand)
        st.partial.clear()

    def _keep(self, st: _Stream, data: bytes) -> None:
        st.partial += data
        excess = len(st.partial) - self.line_max
        if excess > 0:
            del st.partial[:excess]  # keep the newest LINE_MAX bytes of a giant line

    def _candidate_lines(self, stream: int, head: bytes) -> Iterator[bytes]:
        """Lines of ``head`` (which ends with a line break) that may say something.

        Lines with an event word (checkpoint, error, W&B, val...) are always read.
        Lines with only metric words (step, loss, lr, a tqdm bar) are all read while
        they are sparse; in a dense flood of them, between two event lines, the first
        and the last line of each kind are read (``_by_kind``): the state needs the
        newest values (and the very first loss), not every intermediate one, and this
        keeps the scanner's CPU bounded.
        """
        norm = head.replace(b"\r", b"\n") if b"\r" in head else head
        if self.parser.patterns or self.parser.in_traceback(stream):
            yield from self._all_lines(norm)
            return
        low = norm.lower()
        present = [k for k in KEYWORDS if k in low]
        if not present:
            return
        if b"traceback" in present:
            # The exception line that ends it may hold no keyword: read every line.
            yield from self._all_lines(norm)
            return
        starts: set[int] = set()
        metric = [k for k in present if k in _METRIC_WORDS]
        for word in present:
            if word in _METRIC_WORDS:
                continue
            self._hits(low, word, starts)
        if metric:
            hits = sum(low.count(k) for k in metric)
            if hits <= self.sparse_hits or not self.sample:
                for word in metric:
                    self._hits(low, word, starts)
            else:
                self.sampled_out += _by_kind(norm, set(starts), starts)
        for start in sorted(starts):
            yield norm[start : _eol(norm, start)]

    @staticmethod
    def _hits(low: bytes, word: bytes, starts: set[int]) -> None:
        pos = low.find(word)
        while pos >= 0:
            starts.add(low.rfind(b"\n", 0, pos) + 1)
            pos = low.find(word, _eol(low, pos))

    def _all_lines(self, norm: bytes) -> Iterator[bytes]:
        lines = norm.split(b"\n")
        lines.pop()  # norm ends with a line break: the last piece is empty
        yield from lines

    def _line(self, stream: int, line: bytes) -> None:
        if len(line) > self.line_max:
            line = line[-self.line_max :]
        for raw in _unglued(line):
            if raw:
                self._parse(stream, raw)

    def _parse(self, stream: int, raw: bytes) -> None:
        self.parsed_lines += 1
        try:
            obs = self.parser.parse(raw.decode("utf-8", "replace"), stream)
            if obs is None:
                return
            notable = self.progress.apply(obs)
        except Exception as exc:  # a parser bug: report once, keep scanning
            self._parser_error(exc, raw[:200])
            return
        if notable:
            self.on_notable(notable)

    def _parser_error(self, exc: BaseException, sample: bytes) -> None:
        self.parser_errors += 1
        self.progress.add_parser_error()
        if self.parser_errors == 1:
            # The reporter itself failing must not matter either.
            with contextlib.suppress(Exception):
                self.on_parser_error(exc, sample)


# --------------------------------------------------------------------------- offline scan


@dataclass(frozen=True)
class CheckpointReport:
    printed: str | None  # the path as the output printed it
    path: str | None  # resolved against the job's working directory
    step: int | None
    evidence: str  # how it is known to be complete (progress.BY_LINE / BY_PROGRESS)
    source: str  # where it was read: the format entry, or e.g. a record on disk


@dataclass(frozen=True)
class ScanReport:
    """What hpcwrap reads from one output file (the wrapper's reader, run offline).

    ``origin`` says where each figure came from (a format entry such as ``megatron``,
    a generic reader such as ``tqdm`` or ``kv``); other readers (records on disk) can
    add figures with their own origin.
    """

    path: str
    cwd: str  # relative paths were resolved against this folder
    lines: int
    formats: dict[str, int]  # format entry -> lines it read
    final_step: int | None
    step_total: int | None
    epoch: float | None
    first_loss: str | None  # as printed
    last_loss: str | None
    train_losses: int
    first_val_loss: str | None
    last_val_loss: str | None
    val_losses: int
    checkpoint: CheckpointReport | None  # the last completed one
    checkpoints: tuple[CheckpointReport, ...]
    pending_save: CheckpointReport | None  # started, never seen to complete
    checkpoint_note: str | None
    wandb_dir: str | None
    wandb_url: str | None
    config_path: str | None
    errors: tuple[dict[str, Any], ...]  # kind, text, count, step
    error_kinds: tuple[str, ...]
    origin: dict[str, str]
    snapshot: Snapshot = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["snapshot"]
        return out


def resolve_printed(printed: str | None, cwd: Path) -> str | None:
    """A printed path resolved against the job's working directory (``~`` expanded)."""
    if printed is None:
        return None
    path = Path(printed).expanduser()
    return str(path if path.is_absolute() else cwd / path)


def _num_text(text: str | None, value: float | None) -> str | None:
    if text is not None:
        return text
    return None if value is None else repr(value)


def report(
    snap: Snapshot, parser: LineParser, *, path: str, cwd: Path, lines: int | None = None
) -> ScanReport:
    """A ScanReport of a snapshot (the wrapper's or ``scan_file``'s)."""

    def ck(c: Checkpoint | None) -> CheckpointReport | None:
        if c is None:
            return None
        return CheckpointReport(
            c.path, resolve_printed(c.path, cwd), c.step, c.evidence, c.source or "console"
        )

    pend = snap.pending_save
    pending = (
        CheckpointReport(
            pend.path,
            resolve_printed(pend.path, cwd),
            pend.step,
            "started",
            pend.source or "console",
        )
        if pend is not None
        else None
    )
    errors = tuple(
        {"kind": e.kind, "text": e.text, "count": e.count, "step": e.step} for e in snap.errors
    )
    return ScanReport(
        path=path,
        cwd=str(cwd),
        lines=snap.lines if lines is None else lines,
        formats=dict(sorted(parser.matched.items(), key=lambda kv: -kv[1])),
        final_step=snap.step,
        step_total=snap.step_total,
        epoch=snap.epoch,
        first_loss=_num_text(snap.first_loss_text, snap.first_loss),
        last_loss=_num_text(snap.loss_text, snap.loss),
        train_losses=snap.train_count,
        first_val_loss=_num_text(snap.first_val_loss_text, snap.first_val_loss),
        last_val_loss=_num_text(snap.val_loss_text, snap.val_loss),
        val_losses=snap.val_count,
        checkpoint=ck(snap.checkpoint),
        checkpoints=tuple(c for c in (ck(x) for x in snap.checkpoints) if c is not None),
        pending_save=pending,
        checkpoint_note=checkpoint_note(snap),
        wandb_dir=snap.wandb_dir,
        wandb_url=snap.wandb_url,
        config_path=snap.config_path,
        errors=errors,
        error_kinds=tuple(dict.fromkeys(e.kind for e in snap.errors)),
        origin=dict(snap.origin or {}),
        snapshot=snap,
    )


SCAN_CHUNK = 64 * 1024  # what a copy thread hands the scanner at most per read


def scan_file(
    path: str | Path,
    *,
    patterns: Sequence[Pattern] = (),
    cwd: str | Path | None = None,
) -> ScanReport:
    """Read an existing output file with the wrapper's reader (``Scanner.feed``, the same
    chunking as the copy threads); relative paths are resolved against ``cwd`` (default:
    the file's folder, where Slurm writes ``slurm-<id>.out`` for a job run there).

    Raises OSError when the file cannot be read.
    """
    file = Path(path)
    folder = Path(cwd) if cwd is not None else file.resolve().parent
    progress = Progress(lambda: datetime.now(timezone.utc), time.monotonic)
    parser = LineParser(patterns)
    _read_all(file, parser, progress)
    return report(progress.snapshot(), parser, path=str(file), cwd=folder)


def _read_all(file: Path, parser: LineParser, progress: Progress) -> None:
    """Every line of ``file`` through the wrapper's reader (``Scanner.feed``, the same
    chunking as the copy threads). The wrapper samples dense metric lines to bound its
    CPU; here every line is read (the first and last values, events and val lines are
    read by both alike)."""
    failures: list[BaseException] = []
    scanner = Scanner(
        parser, progress, lambda _n: None, lambda exc, _b: failures.append(exc), sample=False
    )
    with open(file, "rb") as fh:
        while chunk := fh.read(SCAN_CHUNK):
            progress.note_output(1, len(chunk))
            scanner.feed(1, chunk)
    scanner.finish(1)


def read_tail(data: bytes, *, budget_s: float, patterns: Sequence[Pattern] = ()) -> Snapshot:
    """What the end of an output file says (the epilog's reading when the wrapper could
    not flush its last progress): every line of ``data`` through the wrapper's reader,
    stopping when ``budget_s`` seconds are spent. The first line may be cut: it is read
    like any other (a cut number reads as no number)."""
    progress = Progress(lambda: datetime.now(timezone.utc), time.monotonic)
    scanner = Scanner(
        LineParser(patterns), progress, lambda _n: None, lambda _e, _b: None, sample=False
    )
    stop = time.monotonic() + budget_s
    for at in range(0, len(data), SCAN_CHUNK):
        if time.monotonic() > stop:
            break
        chunk = data[at : at + SCAN_CHUNK]
        progress.note_output(1, len(chunk))
        scanner.feed(1, chunk)
    scanner.finish(1)
    return progress.snapshot()


class _PointProgress(Progress):
    """Progress that also keeps every (step, loss) and (step, val loss) a line gave: every
    train loss printed (nanoGPT's one-batch ``iter`` losses too, a step's later value
    standing in ``hpcwrap plot``), not only the series Results take their first and last
    from."""

    def __init__(self) -> None:
        super().__init__(lambda: datetime.now(timezone.utc), time.monotonic)
        self.points: dict[str, list[tuple[float, float]]] = {"train_loss": [], "val_loss": []}

    def apply(self, obs: Observation) -> Notable:
        notable = super().apply(obs)
        if obs.loss is not None or obs.val_loss is not None:
            step = obs.step if obs.step is not None else self.snapshot().step
            if step is not None:
                for key, value in (("train_loss", obs.loss), ("val_loss", obs.val_loss)):
                    if value is not None and math.isfinite(value):
                        self.points[key].append((float(step), value))
        return notable


def loss_points(
    path: str | Path, *, patterns: Sequence[Pattern] = ()
) -> dict[str, list[tuple[float, float]]]:
    """Every (step, train loss) and (step, val loss) the output file printed, in order
    (what ``hpcwrap plot`` draws; the run's progress events keep one point in ten
    seconds). A loss printed without a step takes the step the output had reached.

    Raises OSError when the file cannot be read.
    """
    progress = _PointProgress()
    _read_all(Path(path), LineParser(patterns), progress)
    return progress.points


__all__ = [
    "LINE_MAX",
    "QUEUE_LIMIT",
    "CheckpointReport",
    "ScanReport",
    "Scanner",
    "loss_points",
    "read_tail",
    "report",
    "resolve_printed",
    "scan_file",
    "split_lines",
]
