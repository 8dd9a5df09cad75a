"""Benchmark: how long a person's shell waits for hpcwrap's short commands.

Run: .venv/bin/python tests/bench/bench_startup.py [--reps 21]

Whole-process wall times (median of ``--reps``, ms), each as a ratio to this
interpreter's own start (``python -c pass``) measured in the same run, interleaved so
that a noisy neighbour hits both alike:

- ``hpcwrap --version`` and ``--help`` (goal: 2x or less),
- ``hpcwrap status`` over one run log, ``hpcwrap log note`` on a log of 10 and of
  10,000 Status entries (goal: 3x or less).

``python -m hpcwrap`` is timed, not the console script: the same code, without the
installer's launcher. Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hpcwrap.runlog import RunState, create_run
from hpcwrap.runlog.model import StatusEntry

PY = sys.executable
HPCWRAP = [PY, "-m", "hpcwrap"]
T0 = datetime(2026, 3, 11, 15, 0, tzinfo=timezone.utc)


def _once(argv: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t


def _log(root: Path, entries: int) -> str:
    state = RunState(task=f"s{entries}", run_type="replication", objective="bench")
    state.status = [
        StatusEntry(T0 + timedelta(seconds=i), f"running, step {i * 10}, train_loss 0.{i:05d}")
        for i in range(entries)
    ]
    return create_run(root, state, when=T0).path.name


def measure(reps: int) -> list[tuple[str, float, float, float]]:
    """(figure, median seconds, ratio to ``python -c pass``, goal ratio) for each row,
    the baseline first (ratio 1)."""
    work = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    try:
        one = work / "one"
        _log(one / "run_logs", 0)
        notes = work / "notes"
        small, big = _log(notes / "run_logs", 10), _log(notes / "run_logs", 10_000)
        rows: list[tuple[str, list[str], Path, float]] = [
            ("hpcwrap --version", [*HPCWRAP, "--version"], work, 2.0),
            ("hpcwrap --help", [*HPCWRAP, "--help"], work, 2.0),
            ("hpcwrap status (1 log)", [*HPCWRAP, "status"], one, 3.0),
            ("hpcwrap log note (10 entries)", [*HPCWRAP, "log", "note", small, "x"], notes, 3.0),
            ("hpcwrap log note (10,000)", [*HPCWRAP, "log", "note", big, "x"], notes, 3.0),
        ]
        base: list[float] = []
        times: dict[str, list[float]] = {name: [] for name, *_ in rows}
        for _ in range(reps):
            base.append(_once([PY, "-c", "pass"], work))
            for name, argv, cwd, _goal in rows:
                times[name].append(_once(argv, cwd))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    b = statistics.median(base)
    out = [("python -c pass (baseline)", b, 1.0, 1.0)]
    for name, _argv, _cwd, goal in rows:
        m = statistics.median(times[name])
        out.append((name, m, m / b, goal))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=21)
    args = ap.parse_args()
    print(f"bench_startup: Python {sys.version.split()[0]}, {args.reps} runs each")
    print(f"{'':32} {'median':>9} {'ratio':>7} {'goal':>6}")
    for name, m, ratio, goal in measure(args.reps):
        print(f"{name:32} {m * 1000:7.1f}ms {ratio:6.2f}x {goal:5.1f}x")


if __name__ == "__main__":
    main()
