"""The parts the in-job supervisor is handed at start (``job/wrapper.py``).

``build_parts`` wires the defaults: the reader (what the output says), the recorder and
its signal entries (what reaches the run log), the monitor thread that drives them, the
time left from Slurm, and the chain link. ``WrapperOptions.parts`` takes another
builder (a test's, or a tool that records elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from hpcwrap.config import Settings
from hpcwrap.job.endrecord import EndContext
from hpcwrap.job.jobenv import JobEnv, TimeLeft, task_prefix
from hpcwrap.job.monitor import Monitor
from hpcwrap.job.reader import Reader
from hpcwrap.job.recorder import Recorder
from hpcwrap.job.registration import ChainLink
from hpcwrap.job.seams import Chain
from hpcwrap.job.signalstatus import SignalNotes
from hpcwrap.job.sink import LogSink
from hpcwrap.job.status import StatusConfig, StatusPolicy, TickHook
from hpcwrap.runlog import RunLog


@dataclass(frozen=True)
class Wiring:
    """What every part may need to know about the job."""

    run: RunLog | None
    env: JobEnv
    settings: Settings
    environ: Mapping[str, str]
    cwd: Path
    hooks: Sequence[TickHook]
    chain: Callable[[], Chain] | None
    err: TextIO | None
    start_wall: datetime
    start_mono: float
    mono: Callable[[], float]
    wall: Callable[[], datetime]


@dataclass(frozen=True)
class Parts:
    sink: LogSink
    monitor: Monitor
    reader: Reader
    recorder: Recorder
    signals: SignalNotes
    time_left: TimeLeft
    chain: ChainLink


def build_parts(w: Wiring) -> Parts:
    sink = LogSink(w.run, w.err)
    monitor = Monitor(w.err)
    reader = Reader(w.settings, monitor.notify, sink, w.wall, w.mono, w.err)
    cfg = StatusConfig(
        status_every=w.settings.status_every,
        stall_after=w.settings.stall_after,
        min_interval=w.settings.status_min_interval,
    )
    ctx = EndContext(w.env, task_prefix(w.env), w.start_wall, w.cwd)
    recorder = Recorder(sink, ctx, StatusPolicy(cfg, w.start_mono), w.mono, w.hooks, w.err)
    time_left = TimeLeft(
        w.env.job_id if w.env.in_slurm else None, end_epoch=w.environ.get("SLURM_JOB_END_TIME")
    )
    signals = SignalNotes(recorder, time_left, w.settings.walltime_lead, w.env.in_slurm)
    chain = ChainLink(w.chain, sink, w.env, w.err)
    return Parts(sink, monitor, reader, recorder, signals, time_left, chain)


__all__ = ["Parts", "Wiring", "build_parts"]
