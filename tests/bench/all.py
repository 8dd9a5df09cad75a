"""The cost figures of issue 31 in one table: each row now, its goal, whether it is met.

Run: .venv/bin/python tests/bench/all.py [--reps 11]   (as root for the epilog row)

Every ratio has its baseline measured in the same run (bench_startup.py: this
interpreter's ``python -c pass``; bench_growth.py: the update at 10 entries and a bare
flock+append+fsync; bench_hooks.py: ``python -I -c pass`` started as Slurm starts the
epilog). The flood, array and sbatch rows have benchmarks of their own (bench_wrapper.py,
bench_sbatch.py, an array on the dev cluster). Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script

from tests.bench import bench_growth, bench_hooks, bench_startup

Row = tuple[str, str, str, bool]


def _startup(reps: int) -> list[Row]:
    rows = bench_startup.measure(reps)
    out = []
    for name, seconds, ratio, goal in rows[1:]:
        now = f"{ratio:.2f}x python ({seconds * 1000:.0f} ms)"
        out.append((name, now, f"<= {goal:.0f}x", ratio <= goal))
    return out


def _growth(reps: int) -> list[Row]:
    rows = bench_growth.measure(reps)
    first = rows[0][1]
    cells = " / ".join(f"{m * 1000:.1f}" for _n, m, _b in rows)
    growth = rows[-1][1] / first
    name = "add_status at 10 / 1,000 / 10,000 entries"
    return [(name, f"{cells} ms: {growth:.1f}x from 10", "<= 2x", growth <= 2.0)]


def _hooks(reps: int) -> list[Row]:
    name = "epilog, the wrapper recorded the end"
    if os.geteuid() != 0:
        return [(name, "not measured (needs root)", "<= 3x", False)]
    got = bench_hooks.measure(reps)
    ratio = statistics.median(got["shim_ours"]) / statistics.median(got["py"])
    ms = statistics.median(got["shim_ours"])
    return [(name, f"{ratio:.2f}x python -I ({ms:.0f} ms)", "<= 3x", ratio <= 3.0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=11)
    args = ap.parse_args()
    rows = [*_startup(args.reps), *_growth(5), *_hooks(args.reps)]
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'now':<40} {'goal':<7} met")
    for name, now, goal, met in rows:
        print(f"{name:<{width}}  {now:<40} {goal:<7} {'yes' if met else 'no'}")


if __name__ == "__main__":
    main()
