"""One node's sampler for a multi-node job: ``python -m hpcwrap.job.telemetry.node``.

Started by the wrapper with ``srun --overlap --ntasks-per-node=1`` on every node of
the allocation; the copy on the wrapper's own node (``--skip-node``) exits at once.
It samples the job's processes on its node (by their cgroup), node memory, the
sidecar's disk and the GPUs the step sees, and appends each sample, tagged with
the node, to ``telemetry.<node>.jsonl`` in the sidecar. It stops within half a
second once ``--stop-file`` exists (the wrapper's way: srun answers a TERM by
killing its tasks), on TERM/INT/HUP, when its parent goes away, or after
``--max-seconds``. It never writes the run log.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hpcwrap.job.telemetry.node")
    p.add_argument("--sidecar", required=True)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--skip-node", default=None)
    p.add_argument("--job", default=None)
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--stop-file", default=None)
    args = p.parse_args(argv)

    from hpcwrap.job.telemetry import host
    from hpcwrap.job.telemetry.gpu import open_gpus
    from hpcwrap.job.telemetry.hook import Sampler, node_name
    from hpcwrap.runlog.telemetry import append_record

    node = node_name(os.environ)
    if args.skip_node and node == args.skip_node:
        return 0
    sidecar = Path(args.sidecar)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    gpus = open_gpus(os.environ)
    procs = host.ProcessSet(host.job_processes(args.job, exclude=[os.getpid()]))
    sampler = Sampler(procs, gpus, os.environ, node, lambda: [str(sidecar)])
    parent = os.getppid()
    stop_file = Path(args.stop_file) if args.stop_file else None
    deadline = None if args.max_seconds is None else time.monotonic() + args.max_seconds
    first = True
    while not stop.is_set():
        rec = sampler.sample()
        if first and gpus.note:
            rec["gpu_note"] = gpus.note
        first = False
        try:
            append_record(sidecar, rec, node=node)
        except OSError as exc:
            print(f"hpcwrap telemetry on {node}: {exc}", file=sys.stderr)
            return 1
        if os.getppid() != parent or (deadline is not None and time.monotonic() >= deadline):
            break
        until = time.monotonic() + args.interval
        while not stop.is_set() and time.monotonic() < until:
            if stop_file is not None and stop_file.exists():
                stop.set()
            else:
                stop.wait(min(0.5, max(until - time.monotonic(), 0.0)))
    gpus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
