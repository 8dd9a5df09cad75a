"""The in-job wrapper's reading side while the command runs: the scan thread and progress.

The copy threads hand each chunk to ``on_chunk`` (constant time: a bounded copy goes to
``reading.scan.Scanner``); the scanner updates ``Progress`` and hands what deserves a
Status entry (``Notable``) to the monitor through ``notify``. What is read at the end
(the frameworks' records, the checkpoint and config tied to the run) is
``job/endreading.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from hpcwrap.config import Settings
from hpcwrap.job.sink import LogSink, warn
from hpcwrap.job.status import Write
from hpcwrap.reading.formats import LineParser
from hpcwrap.reading.progress import Progress, Snapshot
from hpcwrap.reading.scan import Scanner

SCAN_JOIN = 10.0  # at the end: how long the last lines may take to read


class Reader:
    """Progress read from the command's output by one scan thread."""

    def __init__(
        self,
        settings: Settings,
        notify: Callable[[object], None],
        sink: LogSink,
        wall: Callable[[], datetime],
        mono: Callable[[], float],
        err: TextIO | None = None,
    ) -> None:
        self.progress = Progress(wall, mono)
        self.scanner = Scanner(LineParser(settings.patterns), self.progress, notify, self._failed)
        self._sink = sink
        self._err = err
        self._thread: threading.Thread | None = None
        self._notify = notify
        self.write_errors: list[str] = []  # passing the output through failed (the end says)

    def on_chunk(self, stream: int, data: bytes) -> None:
        """A copy thread's chunk (never blocks)."""
        self.progress.note_output(stream, len(data))
        self.scanner.offer(stream, data)

    def on_write_error(self, stream: int, exc: OSError, permanent: bool) -> None:
        """A copy thread could not write the output (a full disk, a closed pipe)."""
        name = "stdout" if stream == 1 else "stderr"
        how = "stopped (its output is still drained)" if permanent else "dropped a chunk"
        msg = f"writing the command's {name} failed: {exc.strerror or exc}; {how}"
        self.write_errors.append(msg)
        warn(f"warning: {msg}", self._err)
        self._notify(Write("output_error", {"stream": name, "error": str(exc)}))

    def _failed(self, exc: BaseException, sample: bytes) -> None:
        warn(
            f"warning: reading progress failed ({type(exc).__name__}: {exc}); the output "
            "passes through unchanged and scanning goes on (reported once)",
            self._err,
        )
        self._sink.event(
            "parser_error",
            {"error": f"{type(exc).__name__}: {exc}", "sample": sample.decode("utf-8", "replace")},
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self.scanner.run, name="hpcwrap-scan", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """No more output: read what is queued and the unfinished last lines."""
        self.scanner.close()
        if self._thread is None:
            return
        self._thread.join(timeout=SCAN_JOIN)
        if self._thread.is_alive():
            warn(
                f"warning: reading the output did not finish within {SCAN_JOIN:.0f} s; the end "
                "entry has the progress read so far",
                self._err,
            )

    def snapshot(self) -> Snapshot:
        return self.progress.snapshot()

    def settled(self) -> Snapshot:
        """The progress once the lines already queued are read (before a signal's entry:
        the lines printed just before it count)."""
        self.scanner.settle()
        return self.progress.snapshot()

    def checkpoint_dir(self) -> str | None:
        """Where the training saves: the save in progress, else the last complete one (the
        disk a save is filling matters while it runs)."""
        snap = self.progress.snapshot()
        if snap.pending_save is not None and snap.pending_save.path:
            return snap.pending_save.path
        return snap.checkpoint.path if snap.checkpoint is not None else None


__all__ = ["Reader"]
