"""Benchmark: what telemetry costs.

Run: .venv/bin/python tests/bench/bench_telemetry.py [--seconds 60] [--samples 200]

1. One full sample (the job's process tree through psutil, node memory, the disks,
   the GPUs): median and p90 in microseconds, with N = 1, 10, 50 and 200 child
   processes, with this machine's NVML (here: whatever it has, often none) and
   with a stand-in NVML of 8 GPUs (the Python side of NVML's calls; a real
   driver's calls cost more, measured on a GPU machine by tests/gpu/).
2. The wrapper's own CPU time (``wrapper_cpu_s`` of its ``ended`` event:
   getrusage(RUSAGE_SELF), the child's CPU not in it) over ``--seconds`` with an
   idle child (``sleep``), at the default interval and with telemetry off, in the
   same run; the difference as a share of one core.

Prints figures only; asserts nothing (figures depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hpcwrap.job.telemetry import host
from hpcwrap.job.telemetry.gpu import GpuSet, open_gpus
from hpcwrap.job.telemetry.hook import Sampler
from hpcwrap.reading.telemetry import DEFAULT_INTERVAL
from hpcwrap.runlog import RunState, create_run

PY = sys.executable


class StandInNvml:
    """A stand-in for pynvml with ``n`` GPUs (no driver): the Python cost of sampling."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, n: int) -> None:
        self.devs = [{"i": i} for i in range(n)]

    def nvmlInit(self) -> None:  # pynvml's names
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devs)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> Any:
        return self.devs[i]

    def nvmlDeviceGetPciInfo(self, h: Any) -> Any:
        return SimpleNamespace(busId=f"0000:{h['i']:02x}:00.0")

    def nvmlDeviceGetUUID(self, h: Any) -> str:
        return f"GPU-{h['i']}"

    def nvmlDeviceGetName(self, h: Any) -> str:
        return "stand-in"

    def nvmlDeviceGetMigMode(self, h: Any) -> tuple[int, int]:
        return (0, 0)

    def nvmlDeviceGetMemoryInfo(self, h: Any) -> Any:
        return SimpleNamespace(used=1 << 30, total=80 << 30)

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:
        return SimpleNamespace(gpu=97)

    def nvmlDeviceGetPowerUsage(self, h: Any) -> int:
        return 500_000

    def nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> int:
        return 60

    def nvmlDeviceGetComputeRunningProcesses(self, h: Any) -> list[Any]:
        return [SimpleNamespace(pid=1, usedGpuMemory=1 << 30)]


def sample_cost(n_children: int, gpus: GpuSet, samples: int) -> tuple[float, float]:
    code = (
        "import subprocess, sys, time\n"
        f"ps = [subprocess.Popen(['sleep', '600']) for _ in range({n_children - 1})]\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([PY, "-c", code])
    try:
        procs = host.ProcessSet(host.tree_of(parent.pid))
        deadline = time.monotonic() + 30
        while procs.sample()["procs"] < n_children and time.monotonic() < deadline:
            time.sleep(0.05)
        sampler = Sampler(
            procs, gpus, {}, "bench", lambda: [str(Path.cwd()), tempfile.gettempdir()]
        )
        costs = []
        for _ in range(samples):
            t0 = time.perf_counter()
            sampler.sample()
            costs.append((time.perf_counter() - t0) * 1e6)
        costs.sort()
        return statistics.median(costs), costs[int(0.9 * (len(costs) - 1))]
    finally:
        subprocess.run(["pkill", "-P", str(parent.pid)], check=False)
        parent.kill()
        parent.wait()


def wrapper_cpu(seconds: float, interval: float) -> float:
    with tempfile.TemporaryDirectory() as d:
        log = create_run(
            Path(d) / "run_logs",
            RunState(task="train", run_type="replication", objective="bench"),
        )
        subprocess.run(
            [
                PY,
                "-m",
                "hpcwrap",
                "run",
                "--log",
                str(log.path),
                "--telemetry-interval",
                str(interval),
                "--",
                "sleep",
                str(seconds),
            ],
            cwd=d,
            check=True,
            stderr=subprocess.DEVNULL,
        )
        for line in (log.sidecar / "events.jsonl").read_text().splitlines():
            ev = json.loads(line)
            if ev.get("kind") == "ended":
                return float(ev["wrapper_cpu_s"])
    raise RuntimeError("no ended event")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()

    real = open_gpus({})
    print(f"this machine's NVML: {real.note or f'{len(real.gpus)} GPU(s)'}")
    print("1. one full sample (process tree, node memory, disks, GPUs), microseconds")
    print(
        f"{'children':>9} {'NVML here: median':>18} {'p90':>7} {'stand-in 8 GPUs':>16} {'p90':>7}"
    )
    for n in (1, 10, 50, 200):
        med, p90 = sample_cost(n, real, args.samples)
        fake = open_gpus({}, StandInNvml(8))
        fmed, fp90 = sample_cost(n, fake, args.samples)
        print(f"{n:>9} {med:>18.0f} {p90:>7.0f} {fmed:>16.0f} {fp90:>7.0f}")
    real.close()

    print(f"2. the wrapper's own CPU over {args.seconds:.0f} s with an idle child (sleep)")
    on = wrapper_cpu(args.seconds, DEFAULT_INTERVAL)
    off = wrapper_cpu(args.seconds, 0)
    share = 100.0 * (on - off) / args.seconds
    print(f"   telemetry every {DEFAULT_INTERVAL:.0f} s: wrapper CPU {on:.3f} s")
    print(f"   telemetry off:          wrapper CPU {off:.3f} s")
    print(
        f"   telemetry's share of one core: {share:.3f} % "
        f"(the whole wrapper: {100.0 * on / args.seconds:.3f} %)"
    )


if __name__ == "__main__":
    main()
