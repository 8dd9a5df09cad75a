"""The wrapper's telemetry: a ``TickHook`` that samples every ``interval`` seconds.

It runs on the wrapper's monitor thread (never on the output copy path): the
wrapper calls ``attach`` once the child runs, ``tick`` about once a second,
``status_fields`` for every Status entry and ``finish`` after the child ended,
whose ``TelemetryFacts`` go into Results with the end.

Multi-node jobs: ``attach`` starts one light sampler per other node of the
allocation with ``srun --overlap`` (``python -m hpcwrap.job.telemetry.node``);
each appends its samples, tagged with its node, to its own file in the
sidecar, and ``finish`` stops them and reads their samples into the summary.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import orjson

from hpcwrap.job.sink import warn
from hpcwrap.job.status import Write
from hpcwrap.job.telemetry import host
from hpcwrap.job.telemetry.gpu import GpuSet, open_gpus
from hpcwrap.job.telemetry.nodes import NodeSamplers
from hpcwrap.reading.telemetry import Summary, TelemetryConfig, WarningPolicy, status_clause
from hpcwrap.runlog import layout
from hpcwrap.runlog.telemetry import (
    TelemetryFacts,
    append_record,
    iter_file,
    record_files,
)

Perform = Callable[[Write], None]
CheckpointDir = Callable[[], str | None]


def node_name(environ: Mapping[str, str]) -> str:
    return environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Sampler:
    """One node's samples: the processes, node memory, disks and GPUs."""

    def __init__(
        self,
        procs: host.ProcessSet,
        gpus: GpuSet,
        environ: Mapping[str, str],
        node: str,
        paths: Callable[[], list[str]],
        limit_pid: int | None = None,
    ) -> None:
        self.procs = procs
        self.gpus = gpus
        self.node = node
        self.paths = paths
        self.alloc = host.alloc_cpus(environ)
        self.mem_limit = host.memory_limit(environ, limit_pid)

    def sample(self, with_procs: bool = True) -> dict[str, Any]:
        rec: dict[str, Any] = {"t": round(time.time(), 3), "node": self.node}
        if with_procs:
            rec.update(self.procs.sample())
        rec["alloc_cpus"] = self.alloc
        rec["mem"] = host.node_memory()
        rec["mem_limit"] = self.mem_limit
        rec["disks"] = host.disks(self.paths())
        rec["gpus"] = self.gpus.sample(self.procs.pids)
        return rec


class TelemetryHook:
    """Telemetry for ``WrapperOptions.hooks`` (see the module docstring)."""

    def __init__(
        self,
        cfg: TelemetryConfig,
        environ: Mapping[str, str],
        *,
        sidecar: Path | None = None,
        cwd: Path | None = None,
        err: TextIO | None = None,
        nvml: Any = None,
        start_node_samplers: bool = True,
    ) -> None:
        self.cfg = cfg
        self.environ = dict(environ)
        self.sidecar = sidecar
        self.cwd = cwd or Path.cwd()
        self.err = err
        self._nvml = nvml
        self._start_nodes = start_node_samplers
        self.node = node_name(environ)
        self.summary = Summary()
        self.policy = WarningPolicy(cfg)
        self.last: dict[str, Any] | None = None
        self.gpus: GpuSet | None = None
        self.sampler: Sampler | None = None
        self._perform: Perform | None = None
        self._checkpoint_dir: CheckpointDir | None = None
        self._next = 0.0
        self._t0: float | None = None
        self._cpu0 = 0.0
        self._write_failed = False
        self._nodes: NodeSamplers | None = None
        self.sample_cost: list[float] = []
        self._outputs: list[str] = []

    # -- the wrapper's calls ----------------------------------------------------

    def attach(
        self, pid: int, perform: Perform, checkpoint_dir: CheckpointDir | None = None
    ) -> None:
        """The child runs as ``pid``; ``perform`` writes a Status entry or event."""
        self._perform = perform
        self._checkpoint_dir = checkpoint_dir
        self._t0 = time.monotonic()
        self._cpu0 = _children_cpu()
        self._pid = pid
        self._next = 0.0  # the first sample at the first tick
        if self._start_nodes and self.sidecar is not None:
            self._nodes = NodeSamplers(self.environ, self.sidecar, self.cfg.interval, self.node)
            self._nodes.start(self._emit)

    def _output_folders(self) -> list[str]:
        """The folders of the job's output/error files, as ``hpcwrap sbatch`` recorded them."""
        if self.sidecar is None:
            return []
        try:
            doc = orjson.loads((self.sidecar / layout.STATE_FILE).read_bytes())
            submit = doc["state"].get("submit") or {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return []
        out: list[str] = []
        for key in ("output_path", "error_path"):
            value = submit.get(key) if isinstance(submit, dict) else None
            if isinstance(value, str) and value.startswith("/") and "%" not in value:
                out.append(str(Path(value).parent))
        return out

    def _paths(self) -> list[str]:
        out = [str(self.cwd), *self._outputs]
        if self._checkpoint_dir is not None:
            try:
                ck = self._checkpoint_dir()
            except Exception:
                ck = None
            if ck:
                p = Path(ck)
                p = p if p.is_absolute() else self.cwd / p
                out.append(str(p if p.is_dir() else p.parent))
        if self.sidecar is not None:
            out.append(str(self.sidecar))
        for var in ("TMPDIR", "SCRATCH"):
            if self.environ.get(var):
                out.append(self.environ[var])
        return out

    def _open(self) -> Sampler:
        self._outputs = self._output_folders()
        gpus = open_gpus(self.environ, self._nvml)
        self.gpus = gpus
        discover = host.tree_of(self._pid)
        job_id = self.environ.get("SLURM_JOB_ID")
        if job_id:  # and the job's srun steps on this node, outside the wrapper's tree
            others = host.job_processes(job_id, exclude=[os.getpid()])
            discover = host.with_job(discover, others)
        sampler = Sampler(
            host.ProcessSet(discover),
            gpus,
            self.environ,
            self.node,
            self._paths,
            limit_pid=self._pid,
        )
        if gpus.note:
            # An event only: Results says it (`- gpu: none (reason)`), and every Status
            # clause says `gpu none`; a Status entry of its own would be noise on CPU nodes.
            self._emit(Write("telemetry_note", {"gpu": gpus.note}))
        return sampler

    def tick(self, now: float) -> None:
        if self._perform is None or now < self._next:
            return
        self._next = now + self.cfg.interval
        first = self.sampler is None
        if self.sampler is None:
            self.sampler = self._open()
        t0 = time.perf_counter()
        rec = self.sampler.sample()
        self.sample_cost.append(time.perf_counter() - t0)
        if first and self.gpus is not None and self.gpus.note:
            rec["gpu_note"] = self.gpus.note  # for a summary made from the file alone
        self._keep(rec)
        for w in self.policy.check(rec, now):
            self._emit(Write("telemetry_warning", {"kind": w.kind, **w.data}, w.text))

    def _keep(self, rec: dict[str, Any]) -> None:
        self.last = rec
        self.summary.add(rec)
        if self.sidecar is None:
            return
        try:
            append_record(self.sidecar, rec)
        except OSError as exc:
            if not self._write_failed:
                self._write_failed = True
                warn(f"warning: could not append to telemetry.jsonl: {exc}", self.err)

    def _emit(self, write: Write) -> None:
        if self._perform is not None:
            self._perform(write)

    def status_fields(self) -> list[str]:
        none = self.gpus is not None and not self.gpus.available
        return status_clause(self.last, gpu_none=none)

    def finish(self) -> TelemetryFacts | None:
        """After the child ended: stop the node samplers, one last disk sample, the summary."""
        if self._t0 is None:
            return None
        walltime = time.monotonic() - self._t0
        if self._nodes is not None:
            self._nodes.stop()
        if self.sampler is None:
            self.sampler = self._open()
        rec = self.sampler.sample(with_procs=False)  # the processes are gone; disks, GPUs
        if self.last is not None:
            for k in ("cpu_s", "rss", "read_bytes", "write_bytes"):
                if k in self.last:
                    rec[k] = self.last[k]
        rec["final"] = True
        self._keep(rec)
        if self.sidecar is not None:
            for path in record_files(self.sidecar)[1:]:  # the other nodes' files
                for r in iter_file(path):
                    self.summary.add(r)
        tracked = float(self.last.get("cpu_s") or 0.0) if self.last else 0.0
        cpu = max(_children_cpu() - self._cpu0, tracked)
        gpu_note = self.gpus.note if self.gpus is not None else None
        facts = self.summary.facts(
            main_node=self.node,
            walltime=walltime,
            cpu_time=cpu,
            interval=self.cfg.interval,
            gpu_note=gpu_note,
            warnings=self.policy.issued,
        )
        if self.gpus is not None:
            self.gpus.close()
        return facts


__all__ = ["Sampler", "TelemetryHook", "node_name"]
