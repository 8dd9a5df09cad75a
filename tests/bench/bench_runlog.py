"""Benchmark: locked run-log updates under contention, and `log reindex` of 10,000 logs.

Run: .venv/bin/python tests/bench/bench_runlog.py [--quick] [--dir DIR]

For 1, 8 and 32 concurrent writer processes it measures the latency of one
``RunLog.add_status`` (lock, load state, merge, append the event, replace the
Markdown and state.json with fsync) and, in the same run with the same
processes, two baselines appending the same status line bytes to a plain file:
``fcntl.flock`` + append, and ``fcntl.flock`` + append + fsync. Each writer
count gets a fresh log, so the log sizes are comparable. Then it times
``reindex`` over 10,000 hand-written logs (first run: all timeline entries
and experiments rows written; second run: nothing to add).

Prints figures only (median, p99, ratio to the baselines); asserts nothing.
"""

from __future__ import annotations

import argparse
import fcntl
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

from hpcwrap.runlog import RunState, create_run, open_run, reindex, render_text
from hpcwrap.runlog.model import Results

T0 = datetime(2026, 3, 11, 15, 0, tzinfo=timezone.utc)


def _line(writer: int, i: int) -> str:
    return f"running, step {i * 100}, train_loss 0.{writer:02d}{i:03d} (writer {writer})"


def _runlog_writer(
    path: str, writer: int, count: int, start: Event, out: Queue[list[float]]
) -> None:
    log = open_run(path)
    lat = []
    start.wait()
    for i in range(count):
        t = time.perf_counter()
        log.add_status(_line(writer, i), T0 + timedelta(seconds=writer * 1000 + i))
        lat.append(time.perf_counter() - t)
    out.put(lat)


def _bare_writer(
    path: str, writer: int, count: int, sync: bool, start: Event, out: Queue[list[float]]
) -> None:
    lat = []
    start.wait()
    for i in range(count):
        data = f"- 2026-03-11 15:00 — {_line(writer, i)}\n".encode()
        t = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, data)
        if sync:
            os.fsync(fd)
        os.close(fd)
        lat.append(time.perf_counter() - t)
    out.put(lat)


def _run(
    target: Callable[..., None], args_list: list[tuple[object, ...]]
) -> tuple[list[float], float]:
    ctx = mp.get_context("fork")
    start = ctx.Event()
    out: Queue[list[float]] = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, start, out)) for a in args_list]
    for p in procs:
        p.start()
    time.sleep(0.2)
    t = time.perf_counter()
    start.set()
    lat: list[float] = []
    for _ in procs:
        lat.extend(out.get())
    wall = time.perf_counter() - t
    for p in procs:
        p.join()
    return lat, len(lat) / wall


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[k]


def bench_updates(base: Path, writers: int, per_writer: int) -> None:
    root = base / f"w{writers}" / "run_logs"
    log = create_run(
        root,
        RunState(task="train", description="bench", run_type="replication", objective="bench"),
        when=T0,
    )
    lat, rate = _run(_runlog_writer, [(str(log.path), w, per_writer) for w in range(writers)])
    bare, brate = _run(
        _bare_writer,
        [(str(base / f"w{writers}" / "bare.log"), w, per_writer, False) for w in range(writers)],
    )
    bare_sync, srate = _run(
        _bare_writer,
        [
            (str(base / f"w{writers}" / "bare_sync.log"), w, per_writer, True)
            for w in range(writers)
        ],
    )
    final = log.path.read_text()
    assert final.count(" (writer ") == writers * per_writer, "an update went missing"
    med, p99 = statistics.median(lat), _pct(lat, 0.99)
    bmed, bp99 = statistics.median(bare), _pct(bare, 0.99)
    smed, sp99 = statistics.median(bare_sync), _pct(bare_sync, 0.99)
    ms = 1e3
    print(
        f"writers={writers:2d} updates={len(lat):4d}\n"
        f"  runlog update        median {med * ms:8.3f} ms  p99 {p99 * ms:8.3f} ms"
        f"  ({rate:7.0f} updates/s)\n"
        f"  flock+append         median {bmed * ms:8.3f} ms  p99 {bp99 * ms:8.3f} ms"
        f"  ({brate:7.0f}/s)  -> ratio median {med / bmed:6.0f}x  p99 {p99 / bp99:5.0f}x\n"
        f"  flock+append+fsync   median {smed * ms:8.3f} ms  p99 {sp99 * ms:8.3f} ms"
        f"  ({srate:7.0f}/s)  -> ratio median {med / smed:6.1f}x  p99 {p99 / sp99:5.1f}x"
    )
    sys.stdout.flush()


def bench_reindex(base: Path, count: int) -> None:
    root = base / "reindex" / "run_logs"
    groups = 10
    t = time.perf_counter()
    for i in range(count):
        folder = root / f"group_{i % groups}"
        folder.mkdir(parents=True, exist_ok=True)
        day = T0 + timedelta(days=i // groups // 5)
        name = f"{day.date().isoformat()}_train_{i}"
        state = RunState(
            name=name,
            task=f"train_{i}",
            description=f"variation {i}",
            run_type="experiment" if i % 2 else "replication",
            objective="bench",
            results=Results(end_val_loss=0.01 * (i % 97)),
        )
        (folder / f"{name}.md").write_text(render_text(state))
    made = time.perf_counter() - t
    t = time.perf_counter()
    first = reindex(root)
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    second = reindex(root)
    t2 = time.perf_counter() - t
    print(
        f"reindex {first.logs} logs in {first.folders} folders: first run {t1:.2f} s "
        f"({first.timeline_added} timeline entries, "
        f"{first.experiment_rows_added} experiments rows), "
        f"second run {t2:.2f} s ({second.timeline_added} + {second.experiment_rows_added} added); "
        f"writing the logs took {made:.2f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer updates and logs")
    parser.add_argument("--dir", help="folder to work in (default: a temp folder)")
    args = parser.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="hpcwrap-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    lock = os.environ.get("HPCWRAP_LOCK", "auto")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, folder {base}, lock {lock}")
    try:
        plan = [(1, 200), (8, 40), (32, 15)] if not args.quick else [(1, 30), (8, 5), (32, 2)]
        for writers, per in plan:
            bench_updates(base, writers, per)
        bench_reindex(base, 1000 if args.quick else 10_000)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
