"""Reading the scan copy of the output: bounded queue, line splitting, prefilter.

The copy threads hand every chunk they copied to ``Scanner.offer``, which never
blocks: when the scanner has fallen behind by more than ``soft_limit`` bytes, a
chunk is skipped (counted, never parsed) unless it carries a word that may mark a
checkpoint, an error or W&B; past ``hard_limit`` every chunk is skipped. The copy
to the job's output never waits for the scanner.

The scanner thread splits chunks on ``\\n`` and ``\\r`` (each tqdm redraw is a
line), keeps at most ``LINE_MAX`` bytes of an unfinished line (the tail: a 100 MB
line without a newline costs 64 KiB), and decodes only lines that contain one of
the parser's keywords (``formats.KEYWORDS``), found with ``bytes.find`` over the
lower-cased chunk, so a flood of other lines costs little. A parser exception is
reported once and scanning goes on.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator

from hpcwrap.job.formats import KEYWORDS, LineParser
from hpcwrap.job.progress import Notable, Progress

LINE_MAX = 64 * 1024
SOFT_LIMIT = 4 * 1024 * 1024
HARD_LIMIT = 16 * 1024 * 1024

# Words worth scanning a chunk for even when the scanner is behind (case as printed).
_CRITICAL: tuple[bytes, ...] = (
    b"Traceback",
    b"rror",
    b"heckpoint",
    b"wandb",
    b"slurmstepd",
    b"Killed",
    b"CANCELLED",
    b"out of memory",
    b"NCCL",
)

# Above this share of lines with a keyword, splitting the whole chunk is cheaper than
# finding each hit.
_DENSE = 0.25

ParserErrorHandler = Callable[[BaseException, bytes], None]
NotableHandler = Callable[[Notable], None]


def _has_critical(data: bytes) -> bool:
    return any(word in data for word in _CRITICAL)


class _Stream:
    __slots__ = ("partial", "skip_to_eol")

    def __init__(self) -> None:
        self.partial = bytearray()
        self.skip_to_eol = False


def _eol(buf: bytes, pos: int) -> int:
    end = buf.find(b"\n", pos)
    return len(buf) if end < 0 else end


class Scanner:
    """Turns chunks of output into progress. ``run`` is the thread body."""

    def __init__(
        self,
        parser: LineParser,
        progress: Progress,
        on_notable: NotableHandler,
        on_parser_error: ParserErrorHandler,
        *,
        soft_limit: int = SOFT_LIMIT,
        hard_limit: int = HARD_LIMIT,
        line_max: int = LINE_MAX,
    ) -> None:
        self.parser = parser
        self.progress = progress
        self.on_notable = on_notable
        self.on_parser_error = on_parser_error
        self.soft_limit = soft_limit
        self.hard_limit = max(hard_limit, soft_limit)
        self.line_max = line_max
        self._q: queue.SimpleQueue[tuple[int, bytes, bool] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued = 0
        self._gap = {1: False, 2: False}
        self._streams = {1: _Stream(), 2: _Stream()}
        self.skipped_bytes = 0
        self.parsed_lines = 0
        self.parser_errors = 0

    # -- producer side (copy threads) -------------------------------------------

    def offer(self, stream: int, data: bytes) -> None:
        """Queue a chunk for scanning, or skip it when the scanner is behind. Never blocks."""
        n = len(data)
        with self._lock:
            behind = self._queued + n > self.soft_limit
            over_hard = self._queued + n > self.hard_limit
        if behind and (over_hard or not _has_critical(data)):
            with self._lock:
                self._gap[stream] = True
                self.skipped_bytes += n
            self.progress.add_skipped(n)
            return
        with self._lock:
            self._queued += n
            gap = self._gap[stream]
            self._gap[stream] = False
        self._q.put((stream, data, gap))

    def close(self) -> None:
        """No more chunks: the thread finishes what is queued, then the unfinished lines."""
        self._q.put(None)

    # -- consumer side (scanner thread) -----------------------------------------

    def run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                break
            stream, data, gap = item
            with self._lock:
                self._queued -= len(data)
            try:
                self.feed(stream, data, gap)
            except Exception as exc:  # a bug here must never stop the wrapper
                self._parser_error(exc, data[:200])
        for stream in (1, 2):
            self.finish(stream)

    def feed(self, stream: int, data: bytes, gap: bool = False) -> None:
        """Scan one chunk of ``stream`` (synchronously; tests call this directly)."""
        st = self._streams[stream]
        if gap:
            # Output was skipped before this chunk: its first line is a fragment.
            st.partial.clear()
            st.skip_to_eol = True
        last = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if last < 0:
            if not st.skip_to_eol:
                self._keep(st, data)
            return
        head = data[: last + 1]
        tail = data[last + 1 :]
        if st.skip_to_eol:
            first = min(i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0)
            head = head[first + 1 :]
            st.skip_to_eol = False
        elif st.partial:
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
        if st.partial and not st.skip_to_eol:
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
        """Lines of ``head`` (which ends with a line break) that may say something."""
        norm = head.replace(b"\r", b"\n") if b"\r" in head else head
        if self.parser.patterns or self.parser.in_traceback(stream):
            yield from self._all_lines(norm, None)
            return
        low = norm.lower()
        present = [k for k in KEYWORDS if k in low]
        if not present:
            return
        if b"traceback" in present:
            # The exception line that ends it may hold no keyword: read every line.
            yield from self._all_lines(norm, None)
            return
        nlines = low.count(b"\n")
        hits = sum(low.count(k) for k in present)
        if hits > nlines * _DENSE:
            yield from self._all_lines(norm, (low, present))
            return
        starts: set[int] = set()
        for word in present:
            pos = low.find(word)
            while pos >= 0:
                starts.add(low.rfind(b"\n", 0, pos) + 1)
                pos = low.find(word, _eol(low, pos))
        for start in sorted(starts):
            yield norm[start : _eol(norm, start)]

    def _all_lines(self, norm: bytes, filt: tuple[bytes, list[bytes]] | None) -> Iterator[bytes]:
        lines = norm.split(b"\n")
        lines.pop()  # norm ends with a line break: the last piece is empty
        if filt is None:
            yield from lines
            return
        low, present = filt
        for line, low_line in zip(lines, low.split(b"\n"), strict=False):
            if any(k in low_line for k in present):
                yield line

    def _line(self, stream: int, raw: bytes) -> None:
        if not raw:
            return
        if len(raw) > self.line_max:
            raw = raw[-self.line_max :]
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


__all__ = ["HARD_LIMIT", "LINE_MAX", "SOFT_LIMIT", "Scanner"]
