"""Benchmark: one locked update (``RunLog.add_status``) as the log grows.

Run: .venv/bin/python tests/bench/bench_growth.py [--reps 5]

For logs of 10, 1,000 and 10,000 Status entries: the median time of one ``add_status``
(the newest entry, the common case), and in the same run the baseline of a bare
``flock`` + append + ``fsync`` of the same line. The goal (issue 31): the update at
10,000 entries at most 2x the update at 10. Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hpcwrap.runlog import RunState, create_run
from hpcwrap.runlog.model import StatusEntry

T0 = datetime(2026, 3, 11, 15, 0, tzinfo=timezone.utc)


def _bare(path: Path, line: bytes) -> float:
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, line)
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - t


def measure(reps: int) -> list[tuple[int, float, float]]:
    """(entries, median add_status seconds, median bare flock+append+fsync seconds)."""
    work = Path(tempfile.mkdtemp(prefix="bench_growth_"))
    out = []
    try:
        for n in (10, 1_000, 10_000):
            state = RunState(task=f"g{n}", run_type="replication", objective="bench")
            state.status = [
                StatusEntry(T0 + timedelta(seconds=i), f"running, step {i * 10}, loss 0.{i:05d}")
                for i in range(n)
            ]
            log = create_run(work / "run_logs", state, when=T0)
            times, bare = [], []
            for r in range(reps):
                when = T0 + timedelta(seconds=n + r)
                t = time.perf_counter()
                log.add_status(f"running, step {(n + r) * 10}, loss 0.5", when)
                times.append(time.perf_counter() - t)
                bare.append(_bare(work / "bare.log", b"- a status line of the same size\n"))
            out.append((n, statistics.median(times), statistics.median(bare)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    rows = measure(args.reps)
    print(f"{'entries':>8} {'add_status':>11} {'bare':>8} {'ratio':>7} {'vs 10':>7}")
    first = rows[0][1]
    for n, m, b in rows:
        print(f"{n:>8} {m * 1000:9.1f}ms {b * 1000:6.2f}ms {m / b:6.1f}x {m / first:6.2f}x")


if __name__ == "__main__":
    main()
