"""Benchmark: `hpcwrap status` over 10,000 run logs, `hpcwrap poll` over 200 unfinished runs.

Run: .venv/bin/python tests/bench/bench_status.py [--logs 10000] [--runs 200] [--no-poll]

status: 10,000 run logs (copies of one real run log and its sidecar, a
finished run of 40 Status entries, in 20 groups; 1% of them still running)
are read by ``overview.collect`` in this process (best of 5) and by the
command ``hpcwrap status --all --json`` and ``hpcwrap status`` (wall time of
the whole process, best of 3). Only local files are read.

poll (needs the dev cluster: run as root after ``slurm/dev-cluster up``): 200
held jobs are submitted with plain sbatch, each gets a run log (``Submitted``),
then ``hpcwrap poll`` runs twice with every Slurm call counted through shims:
once while the jobs pend (all 200 logs get PENDING with the reason), and once
after they are cancelled (the 200 final states come from one sacct call).

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hpcwrap.reports import status as overview
from hpcwrap.runlog import RunState, create_run, lifecycle
from hpcwrap.runlog.layout import SIDECAR_DIR

REPO = Path(__file__).resolve().parents[2]
HPCWRAP = str(Path(sys.executable).parent / "hpcwrap")
T0 = datetime(2026, 3, 11, 15, 0, tzinfo=timezone.utc)


def make_template(folder: Path, running: bool) -> Path:
    state = RunState(task="train", run_type="replication", objective="bench")
    log = create_run(folder, state, when=T0)
    log.record(lifecycle.Submitted(T0, job_id="12", execution_id="12"))
    log.record(lifecycle.Started(T0 + timedelta(minutes=1), "12", nodes="n1", in_slurm=True))
    for i in range(40):
        log.add_status(f"running, step {i * 100}, train_loss 1.{i:03d}", T0 + timedelta(minutes=i))
        log.append_event("progress", {"step": i * 100, "train_loss": 1.0 + i / 1000})
    if not running:
        log.record(
            lifecycle.Ended(
                T0 + timedelta(hours=1),
                "COMPLETED",
                lifecycle.Source.WRAPPER,
                "12",
                exit_code=0,
                results=lifecycle.ResultFacts(final_step=4000, loss=1.04, checkpoint="/c/4000.pt"),
            )
        )
    return log.path


def populate(root: Path, count: int) -> None:
    tmpl = root.parent / "templates"
    done = make_template(tmpl / "done", running=False)
    live = make_template(tmpl / "live", running=True)
    for i in range(count):
        src = live if i % 100 == 0 else done
        group = root / f"group{i % 20:02d}"
        name = f"2026-03-{1 + i % 28:02d}_train_{i}"
        (group / SIDECAR_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, group / f"{name}.md")
        shutil.copytree(src.parent / SIDECAR_DIR / src.stem, group / SIDECAR_DIR / name)
    shutil.rmtree(tmpl)


def best(fn: object, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times)


def bench_status(count: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="hpcwrap-bench-status-"))
    try:
        root = work / "run_logs"
        t = time.perf_counter()
        populate(root, count)
        print(f"status: {count} run logs made in {time.perf_counter() - t:.1f} s")
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")
        cache = overview.default_cache_path(root)
        t = time.perf_counter()
        overview.collect([root], root, show_all=True, cache_path=cache)
        first = time.perf_counter() - t
        print(f"  overview.collect, first look (reads every state.json): {first * 1000:.0f} ms")
        lib = best(lambda: overview.collect([root], root, show_all=True), 5)
        print(f"  overview.collect without the row cache (best of 5): {lib * 1000:.0f} ms")
        lib = best(lambda: overview.collect([root], root, show_all=True, cache_path=cache), 5)
        print(f"  overview.collect with the row cache (best of 5): {lib * 1000:.0f} ms")
        for argv in (["status", "--all", "--json"], ["status"]):
            cli = best(
                lambda argv=argv: subprocess.run(
                    [HPCWRAP, *argv, str(root)], stdout=subprocess.DEVNULL, check=True
                ),
                3,
            )
            print(f"  hpcwrap {' '.join(argv)} (whole process): {cli * 1000:.0f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_poll(runs: int) -> None:
    env_text = subprocess.run(
        ["bash", str(REPO / "slurm" / "dev-cluster"), "env"], capture_output=True, text=True
    ).stdout
    env = dict(os.environ)
    for line in env_text.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value.strip("'\"")
    work = Path(tempfile.mkdtemp(prefix="hpcwrap-bench-poll-"))
    shims = work / "shims"
    shims.mkdir()
    calls = work / "calls.log"
    for tool in ("squeue", "sacct", "sbatch", "scancel"):
        (shims / tool).write_text(
            f'#!/bin/sh\necho "{tool}" >> "{calls}"\nexec /usr/bin/{tool} "$@"\n'
        )
        (shims / tool).chmod(0o755)
    env["PATH"] = f"{shims}:{env['PATH']}"
    env["XDG_CACHE_HOME"] = str(work / "cache")
    root = work / "run_logs"
    jobs = []
    try:
        t = time.perf_counter()
        for _ in range(runs):
            out = subprocess.run(
                ["sbatch", "--parsable", "--hold", "-o", "/dev/null", "--wrap", "true"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            job = out.split(";")[0]
            jobs.append(job)
            log = create_run(root, RunState(task="bench", run_type="replication", objective="b"))
            log.record(lifecycle.Submitted(datetime.now(timezone.utc), job, job))
        print(f"poll: {runs} held jobs and their run logs made in {time.perf_counter() - t:.1f} s")

        def poll_once(label: str) -> None:
            calls.write_text("")
            t = time.perf_counter()
            res = subprocess.run(
                [HPCWRAP, "poll", "--min-interval", "0", "--quiet", str(root)],
                env=env,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - t
            seen = calls.read_text().split()
            counts = {k: seen.count(k) for k in ("squeue", "sacct")}
            last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr
            print(f"  {label}: {wall:.2f} s wall, Slurm calls {counts}; {last}")

        poll_once(f"poll while {runs} jobs pend")
        poll_once("poll again (nothing changed)")
        subprocess.run(["scancel", *jobs], env=env, check=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            q = subprocess.run(
                ["squeue", "-h", "-t", "PD", "-j", ",".join(jobs)],
                env=env,
                capture_output=True,
                text=True,
            )
            if not q.stdout.strip():
                break
            time.sleep(1)
        time.sleep(3)  # accounting records the cancels a moment later
        poll_once(f"poll after scancel of all {runs}")
        poll_once("poll again (nothing unfinished)")
    finally:
        if jobs:
            subprocess.run(["scancel", *jobs], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--logs", type=int, default=10000)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--no-poll", action="store_true", help="skip the dev-cluster part")
    args = p.parse_args()
    bench_status(args.logs)
    if not args.no_poll:
        bench_poll(args.runs)


if __name__ == "__main__":
    main()
