"""The samplers of a multi-node job's other nodes: one light sampler per node started
with ``srun --overlap`` (``python -m hpcwrap.job.telemetry.node``); each appends its
samples, tagged with its node, to its own file in the sidecar. Stopped through a stop
file, then a TERM to srun if they did not stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from hpcwrap.job.status import Write


class NodeSamplers:
    """The other nodes' samplers of one job (the batch node is sampled by the hook)."""

    def __init__(
        self, environ: Mapping[str, str], sidecar: Path, interval: float, node: str
    ) -> None:
        self.environ = environ
        self.sidecar = sidecar
        self.interval = interval
        self.node = node
        self._node_proc: subprocess.Popen[bytes] | None = None

    def start(self, emit: Callable[[Write], None]) -> None:
        """Start the samplers of the other nodes (none in a one-node job); ``emit``: how a
        note about them reaches the run log."""
        env = self.environ
        try:
            nnodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or "1")
        except ValueError:
            nnodes = 1
        job = env.get("SLURM_JOB_ID")
        if nnodes < 2 or not job:
            return
        argv = [
            "srun",
            "--overlap",
            f"--nodes={nnodes}",
            f"--ntasks={nnodes}",
            "--ntasks-per-node=1",
            "--cpus-per-task=1",
            "--mem=0",
            "--kill-on-bad-exit=0",
            "--job-name=hpcwrap-telemetry",
            "--quiet",
            sys.executable,
            "-m",
            "hpcwrap.job.telemetry.node",
            "--sidecar",
            str(self.sidecar),
            "--interval",
            str(self.interval),
            "--skip-node",
            self.node,
            "--job",
            job,
            "--stop-file",
            str(self._stop_file()),
        ]
        child_env = {k: v for k, v in env.items() if not k.startswith("SLURM_CPUS_PER_TASK")}
        child_env.pop("SRUN_CPUS_PER_TASK", None)
        log = self.sidecar / "telemetry.nodes.log"
        try:
            with open(log, "ab") as fh:
                self._node_proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=fh,
                    env=child_env,
                    start_new_session=True,
                )
        except OSError as exc:
            emit(
                Write(
                    "telemetry_note",
                    {"error": str(exc)},
                    f"telemetry: the other {nnodes - 1} node(s) are not sampled: "
                    f"srun failed: {exc.strerror or exc}",
                )
            )
            return
        emit(Write("telemetry_nodes", {"nodes": nnodes, "argv": argv}))

    def _stop_file(self) -> Path:
        return self.sidecar / f"telemetry.stop.{os.getpid()}"

    def stop(self) -> None:
        """Ask the samplers to stop (the stop file), then TERM srun if they did not: srun
        SIGKILLs its tasks on TERM, which loses nothing (every sample is written at once)."""
        proc = self._node_proc
        if proc is None:
            return
        self._node_proc = None
        stop = self._stop_file()
        try:
            stop.touch()
            proc.wait(timeout=5.0)
        except (OSError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(OSError):
            stop.unlink()
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGTERM)  # srun forwards it to the samplers
            try:
                proc.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5.0)


__all__ = ["NodeSamplers"]
