"""The host side of a sample, through psutil: the job's processes, node memory, disks.

``ProcessSet`` keeps one ``psutil.Process`` per pid between samples (a pid
reused by another process is told apart by its create time), so CPU use is the
difference of CPU times between two samples over the wall time between them.
CPU time and I/O bytes of processes that have exited are kept, so the totals
only grow. Which processes: the wrapper's child and all its descendants
(``tree_of``), and, in a Slurm job, also the job's other processes on the node
(``job_processes``: a training started with ``srun`` runs under slurmstepd, outside the
wrapper's tree); the sampler on another node takes the job's processes there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil


@dataclass
class _Tracked:
    proc: psutil.Process
    cpu: float = 0.0  # user+system seconds at the last sample
    read: int = 0
    write: int = 0


class ProcessSet:
    """CPU, RSS and I/O of a changing set of processes; ``discover`` names them."""

    def __init__(self, discover: Callable[[], Iterable[psutil.Process]]) -> None:
        self.discover = discover
        self._tracked: dict[tuple[int, float], _Tracked] = {}
        self._gone_cpu = 0.0
        self._gone_read = 0
        self._gone_write = 0
        self._last_cpu: float | None = None
        self._last_wall: float | None = None
        self.pids: set[int] = set()

    def sample(self, wall: float | None = None) -> dict[str, Any]:
        """``cpu_s`` (total CPU seconds so far, exited processes included), ``cpu_cores``
        (cores busy since the last sample), ``rss``, ``read_bytes``, ``write_bytes``,
        ``procs``."""
        wall = time.monotonic() if wall is None else wall
        seen: dict[tuple[int, float], _Tracked] = {}
        try:
            procs = list(self.discover())
        except (psutil.Error, OSError):
            procs = []
        rss = 0
        for p in procs:
            try:
                with p.oneshot():
                    key = (p.pid, p.create_time())
                    t = self._tracked.get(key) or _Tracked(p)
                    ct = p.cpu_times()
                    t.cpu = ct.user + ct.system
                    rss += p.memory_info().rss
                    try:
                        io = p.io_counters()
                        t.read, t.write = io.read_bytes, io.write_bytes
                    except (psutil.AccessDenied, AttributeError, NotImplementedError):
                        pass
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            seen[key] = t
        for key, t in self._tracked.items():
            if key not in seen:  # exited: keep what it used
                self._gone_cpu += t.cpu
                self._gone_read += t.read
                self._gone_write += t.write
        self._tracked = seen
        self.pids = {k[0] for k in seen}
        cpu_s = self._gone_cpu + sum(t.cpu for t in seen.values())
        cores = None
        if self._last_cpu is not None and self._last_wall is not None and wall > self._last_wall:
            cores = max(cpu_s - self._last_cpu, 0.0) / (wall - self._last_wall)
        self._last_cpu, self._last_wall = cpu_s, wall
        return {
            "cpu_s": round(cpu_s, 3),
            "cpu_cores": None if cores is None else round(cores, 3),
            "rss": rss,
            "read_bytes": self._gone_read + sum(t.read for t in seen.values()),
            "write_bytes": self._gone_write + sum(t.write for t in seen.values()),
            "procs": len(seen),
        }


def _has_proc_children() -> bool:
    """Whether this kernel lists children in /proc/<pid>/task/<tid>/children."""
    return os.path.exists(f"/proc/self/task/{os.getpid()}/children")


PROC_CHILDREN = _has_proc_children()


def _child_pids(pid: int) -> list[int]:
    """The children of every thread of ``pid`` (none when it is gone)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                out.extend(int(x) for x in fh.read().split())
        except (OSError, ValueError):
            continue
    return out


def tree_of(pid: int) -> Callable[[], list[psutil.Process]]:
    """The process ``pid`` and its descendants (the wrapper's child's tree).

    Read from /proc/<pid>/task/*/children, which costs per process of the tree;
    psutil's ``children()`` reads every process of the node (about 12 us each).
    """
    cache: dict[int, psutil.Process] = {}
    root: list[psutil.Process] = []

    def with_psutil() -> list[psutil.Process]:
        if not root:
            root.append(psutil.Process(pid))
        r = root[0]
        try:
            return [r, *r.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def discover() -> list[psutil.Process]:
        if not PROC_CHILDREN:
            return with_psutil()
        pids = [pid]
        i = 0
        while i < len(pids) and len(pids) < 100_000:
            pids.extend(_child_pids(pids[i]))
            i += 1
        out: list[psutil.Process] = []
        for q in pids:
            proc = cache.get(q)
            if proc is not None and not proc.is_running():  # the pid was reused
                proc = None
            if proc is None:
                try:
                    proc = psutil.Process(q)
                except psutil.Error:
                    continue
                cache[q] = proc
            out.append(proc)
        alive = set(pids)
        for q in [q for q in cache if q not in alive]:
            del cache[q]
        return out

    return discover


def job_processes(job_id: str | None, exclude: Sequence[int] = ()) -> Callable[[], list[Any]]:
    """The processes of Slurm job ``job_id`` on this node owned by this user: by their
    cgroup (``job_<id>/``) where Slurm keeps one per job, else by their environment's
    ``SLURM_JOB_ID`` (proctrack/linuxproc: no cgroup; every process Slurm starts for the
    job, srun's steps included, carries it). A process that says neither is not the job's:
    another job of the same user may share the node. ``exclude``: pids left out (the
    sampler itself, the wrapper)."""
    uid = os.getuid()
    mark = f"job_{job_id}/" if job_id else None
    skip = set(exclude)

    def discover() -> list[psutil.Process]:
        out: list[psutil.Process] = []
        for p in psutil.process_iter(["uids"]):
            try:
                if p.pid in skip or p.info["uids"] is None or p.info["uids"].real != uid:
                    continue
                if mark is not None and not _of_job(p, job_id or "", mark):
                    continue
                out.append(p)
            except (psutil.Error, OSError):
                continue
        return out

    return discover


def _of_job(p: psutil.Process, job_id: str, mark: str) -> bool:
    cg = _cgroup_text(p.pid)
    if cg is not None and "job_" in cg:
        return mark in cg + "/"
    try:
        return p.environ().get("SLURM_JOB_ID") == job_id
    except (psutil.Error, OSError):
        return False


def with_job(
    tree: Callable[[], list[psutil.Process]], job: Callable[[], list[psutil.Process]]
) -> Callable[[], list[psutil.Process]]:
    """The wrapper's tree and the job's other processes on this node, each once."""

    def discover() -> list[psutil.Process]:
        out = tree()
        have = {p.pid for p in out}
        return out + [p for p in job() if p.pid not in have]

    return discover


def _cgroup_text(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


# ---------------------------------------------------------------- node and disks


def node_memory() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    return {"total": int(vm.total), "available": int(vm.available), "percent": float(vm.percent)}


def disks(paths: Iterable[str]) -> list[dict[str, Any]]:
    """Usage of each distinct filesystem among ``paths`` (the first path names it)."""
    out: list[dict[str, Any]] = []
    devs: set[int] = set()
    for path in paths:
        try:
            dev = os.stat(path).st_dev
            if dev in devs:
                continue
            du = psutil.disk_usage(path)
        except OSError:
            continue
        devs.add(dev)
        free_pct = 100.0 * du.free / du.total if du.total else None
        out.append(
            {
                "path": path,
                "total": int(du.total),
                "used": int(du.used),
                "free": int(du.free),
                "free_pct": None if free_pct is None else round(free_pct, 2),
            }
        )
    return out


def alloc_cpus(environ: Mapping[str, str]) -> int:
    """CPUs of the job on this node: ``SLURM_CPUS_ON_NODE``, else the CPUs this process
    may run on (the machine's, unless an affinity mask or cpuset narrows them)."""
    raw = environ.get("SLURM_CPUS_ON_NODE", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return psutil.cpu_count() or 1


def _cgroup_limit(pid: int) -> int | None:
    """memory.max (v2) or memory.limit_in_bytes (v1) of ``pid``'s cgroup, if limited."""
    text = _cgroup_text(pid)
    if not text:
        return None
    best: int | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        ctrl, rel = parts[1], parts[2].strip()
        if ctrl == "":
            cands = [Path("/sys/fs/cgroup") / rel.lstrip("/") / "memory.max"]
        elif "memory" in ctrl.split(","):
            cands = [Path("/sys/fs/cgroup/memory") / rel.lstrip("/") / "memory.limit_in_bytes"]
        else:
            continue
        for cand in cands:
            # the limit may sit on a parent (the job's cgroup above the step's)
            for folder in [cand.parent, *cand.parent.parents]:
                if folder == Path("/sys/fs/cgroup") or folder == Path("/sys/fs/cgroup/memory"):
                    break
                try:
                    raw = (folder / cand.name).read_text().strip()
                except OSError:
                    continue
                if raw.isdigit() and int(raw) < 1 << 60:
                    best = int(raw) if best is None else min(best, int(raw))
    return best


def memory_limit(environ: Mapping[str, str], pid: int | None = None) -> int | None:
    """The job's memory limit on this node in bytes: its cgroup's, else Slurm's
    ``SLURM_MEM_PER_NODE`` / ``SLURM_MEM_PER_CPU`` x CPUs (MiB); None when unlimited."""
    found: list[int] = []
    limit = _cgroup_limit(pid if pid is not None else os.getpid())
    if limit is not None:
        found.append(limit)
    per_node = environ.get("SLURM_MEM_PER_NODE", "").strip()
    per_cpu = environ.get("SLURM_MEM_PER_CPU", "").strip()
    if per_node.isdigit() and int(per_node) > 0:
        found.append(int(per_node) << 20)
    elif per_cpu.isdigit() and int(per_cpu) > 0:
        found.append((int(per_cpu) << 20) * alloc_cpus(environ))
    return min(found) if found else None


__all__ = [
    "ProcessSet",
    "alloc_cpus",
    "disks",
    "job_processes",
    "memory_limit",
    "node_memory",
    "tree_of",
    "with_job",
]
