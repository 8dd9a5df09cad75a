"""The monitor thread: the only writer of the run log while the command runs.

It records the start, then once a tick (or as soon as something arrives in its inbox):
notable progress from the reader, writes from hooks and the copy threads, signal notes
from the supervisor (and a held walltime warning once the training can take it), the
tick hooks, and the Status entries the policy decides on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from hpcwrap.job.reader import Reader
from hpcwrap.job.recorder import Recorder
from hpcwrap.job.signals import SignalNote
from hpcwrap.job.signalstatus import SignalNotes
from hpcwrap.job.sink import warn
from hpcwrap.job.status import TickHook, Write
from hpcwrap.reading.progress import Notable

_STOP = object()


@dataclass(frozen=True)
class MonitorParts:
    recorder: Recorder
    signals: SignalNotes
    reader: Reader
    hooks: Sequence[TickHook]
    tick: float
    start: Callable[[], None]  # first thing in the thread: the start entry, the hooks spool
    forward_held: Callable[[], SignalNote | None]  # the supervisor's held walltime warning


class Monitor(threading.Thread):
    """Status entries, events, tick hooks and signal notes (runs beside the child)."""

    def __init__(self, err: TextIO | None = None) -> None:
        super().__init__(name="hpcwrap-monitor", daemon=True)
        self.inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.parts: MonitorParts | None = None  # given once the supervisor exists
        self.err = err
        self._hook_failed: set[int] = set()

    def notify(self, item: object) -> None:
        self.inbox.put(item)  # SimpleQueue.put is safe from signal handlers

    def begin(self, parts: MonitorParts) -> None:
        self.parts = parts
        self.start()

    def stop(self) -> None:
        self.inbox.put(_STOP)

    def _fields(self, hooks: Sequence[TickHook]) -> list[str]:
        out: list[str] = []
        for i, hook in enumerate(hooks):
            try:
                out.extend(hook.status_fields())
            except Exception as exc:
                self._hook_error(i, hook, exc)
        return out

    def _hook_error(self, i: int, hook: TickHook, exc: BaseException) -> None:
        if i not in self._hook_failed:
            self._hook_failed.add(i)
            warn(f"warning: tick hook {type(hook).__name__} failed: {exc!r}", self.err)

    def _signal(self, p: MonitorParts, note: SignalNote) -> None:
        try:
            p.signals.record(note, p.reader.settled())
        except Exception as exc:
            warn(f"warning: recording {note.name} failed: {exc!r}", self.err)

    def _take(self, p: MonitorParts, item: object) -> None:
        if isinstance(item, Notable):
            snap = p.reader.snapshot()
            p.recorder.policy.notable(item, snap)
            if item.resumed and snap.resumed_from:
                p.recorder.record_resumed_from(snap.resumed_from)
        elif isinstance(item, Write):
            p.recorder.perform(item)
        elif isinstance(item, SignalNote):
            self._signal(p, item)

    def _next(self, tick: float) -> list[object]:
        items: list[object] = []
        try:
            items.append(self.inbox.get(timeout=tick))
            while True:
                items.append(self.inbox.get_nowait())
        except queue.Empty:
            pass
        return items

    def run(self) -> None:
        p = self.parts
        assert p is not None, "Monitor.begin starts the thread"
        p.start()
        stop = False
        while not stop:
            for item in self._next(p.tick):
                if item is _STOP:
                    stop = True
                else:
                    self._take(p, item)
            held = p.forward_held()
            if held is not None:
                self._signal(p, held)
            now = p.recorder.mono()
            for i, hook in enumerate(p.hooks):
                try:
                    hook.tick(now)
                except Exception as exc:
                    self._hook_error(i, hook, exc)
            if stop:
                break  # the end entry is written by the finisher
            snap = p.reader.snapshot()
            for write in p.recorder.policy.decide(now, snap, self._fields(p.hooks)):
                p.recorder.perform(write)


__all__ = ["Monitor", "MonitorParts"]
