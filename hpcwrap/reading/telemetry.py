"""Samples, their summary, the Status clause and the warnings: plain code, no threads.

One sample is one JSON-able dict (a line of ``telemetry.jsonl``)::

    {"t": 1764442800.1, "node": "n1", "cpu_s": 812.4, "cpu_cores": 3.96,
     "alloc_cpus": 4, "rss": 2147483648, "read_bytes": 0, "write_bytes": 0,
     "procs": 3, "mem": {"total": ..., "available": ..., "percent": 41.0},
     "mem_limit": 68719476736, "disks": [{"path": ..., "total": ..., "used": ...,
     "free": ..., "free_pct": 12.0}], "gpus": [{"gpu": "0", "util": 97.0,
     "mem_used": ..., "mem_total": ..., "power_w": 612.3, "temp_c": 61,
     "proc_mem": ...}]}

The default interval is 10 s. jobstats samples every 30 s (a Prometheus
scrape) because it keeps every node of a cluster forever; here one job keeps its
own samples, a sample costs about a millisecond (tests/bench/bench_telemetry.py)
and 10 s gives a GPU-idle or disk-full warning within a Status interval while a
day of samples stays a few MB.
"""

from __future__ import annotations

import math
import stat
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcwrap.runlog.telemetry import (
    GIB,
    TELEMETRY_FILE,
    TelemetryFacts,
    gib,
    iter_file,
    record_files,
)

DEFAULT_INTERVAL = 10.0


@dataclass(frozen=True)
class TelemetryConfig:
    interval: float = DEFAULT_INTERVAL
    gpu_idle_util: float = 10.0  # percent: below this the GPUs count as idle
    gpu_idle_after: float = 600.0  # seconds of idle GPUs before the warning
    gpu_mem_full: float = 0.95  # fraction of a GPU's memory
    disk_free_pct: float = 5.0  # warn below this much free space, in percent...
    disk_free_bytes: int = 5 * GIB  # ...or in bytes
    rss_limit_frac: float = 0.9  # RSS of the job's processes vs its memory limit


def _pct(v: float) -> str:
    return f"{v:.0f}%"


def gpu_mem_of(g: Mapping[str, Any]) -> int | None:
    """The GPU memory a sample counts for the job: its processes' where NVML names them,
    else the device's used memory."""
    proc = g.get("proc_mem")
    if isinstance(proc, int) and proc > 0:
        return proc
    used = g.get("mem_used")
    return int(used) if isinstance(used, (int, float)) else None


# ---------------------------------------------------------------- the Status clause


def status_clause(rec: Mapping[str, Any] | None, gpu_none: bool = False) -> list[str]:
    """``["gpu 97% util, 61/80 GiB", "cpu 3.9/4 cores", "rss 12 GiB", "disk 12% free"]``."""
    if not rec:
        return []
    out: list[str] = []
    gpus = rec.get("gpus") or []
    if gpus:
        utils = [float(g["util"]) for g in gpus if g.get("util") is not None]
        used = sum(int(g.get("mem_used") or 0) for g in gpus)
        total = sum(int(g.get("mem_total") or 0) for g in gpus)
        n = f"{len(gpus)}x " if len(gpus) > 1 else ""
        util = f"{_pct(sum(utils) / len(utils))} util" if utils else "util n/a (MIG)"
        mem = f", {gib(used)}/{gib(total)} GiB" if total else ""
        out.append(f"gpu {n}{util}{mem}")
    elif gpu_none:
        out.append("gpu none")
    cores = rec.get("cpu_cores")
    if cores is not None:
        out.append(f"cpu {cores:.1f}/{rec.get('alloc_cpus') or '?'} cores")
    rss = rec.get("rss")
    if rss:
        limit = rec.get("mem_limit")
        out.append(f"rss {gib(rss)}/{gib(limit)} GiB" if limit else f"rss {gib(rss)} GiB")
    disks = rec.get("disks") or []
    if disks:
        worst = min(
            disks, key=lambda d: d.get("free_pct") if d.get("free_pct") is not None else 1e9
        )
        if worst.get("free_pct") is not None:
            out.append(f"disk {_pct(worst['free_pct'])} free")
    return out


# ---------------------------------------------------------------- warnings


@dataclass
class Warning_:
    kind: str  # gpu_idle, gpu_mem, disk, rss
    key: str
    text: str
    data: dict[str, Any]


class WarningPolicy:
    """Warnings a person acts on; each once per episode (re-armed when it clears)."""

    def __init__(self, cfg: TelemetryConfig) -> None:
        self.cfg = cfg
        self._active: set[str] = set()
        self._idle_since: float | None = None
        self._gpu_idle_since: dict[str, float] = {}
        self.issued: list[str] = []

    def _edge(self, key: str, on: bool) -> bool:
        if on and key not in self._active:
            self._active.add(key)
            return True
        if not on:
            self._active.discard(key)
        return False

    def _some_idle(
        self, gpus: Sequence[Mapping[str, Any]], now: float, all_idle: bool
    ) -> list[Warning_]:
        """One GPU idle while the others work (a job that uses 1 of the 4 GPUs it holds)."""
        cfg = self.cfg
        out: list[Warning_] = []
        measured = [g for g in gpus if g.get("util") is not None]
        for g in measured:
            label = str(g.get("gpu"))
            idle = float(g["util"]) < cfg.gpu_idle_util and not all_idle and len(measured) > 1
            since = self._gpu_idle_since.get(label)
            if not idle:
                self._gpu_idle_since.pop(label, None)
            elif since is None:
                self._gpu_idle_since[label] = now
            idle_for = now - since if idle and since is not None else 0.0
            if self._edge(f"gpu_idle:{label}", idle and idle_for >= cfg.gpu_idle_after):
                busy = sum(1 for h in measured if float(h["util"]) >= cfg.gpu_idle_util)
                out.append(
                    Warning_(
                        "gpu_idle",
                        f"gpu_idle:{label}",
                        f"warning: GPU {label} idle: {_pct(float(g['util']))} utilisation for "
                        f"{idle_for / 60.0:.0f} min while {busy} of {len(measured)} GPUs work",
                        {"gpu": label, "util": g["util"], "idle_s": round(idle_for)},
                    )
                )
        return out

    def check(self, rec: Mapping[str, Any], now: float) -> list[Warning_]:
        cfg = self.cfg
        out: list[Warning_] = []
        gpus = rec.get("gpus") or []
        utils = [float(g["util"]) for g in gpus if g.get("util") is not None]
        if utils:
            mean = sum(utils) / len(utils)
            if mean < cfg.gpu_idle_util:
                if self._idle_since is None:
                    self._idle_since = now
                idle_for = now - self._idle_since
            else:
                self._idle_since = None
                idle_for = 0.0
            if self._edge("gpu_idle", idle_for >= cfg.gpu_idle_after):
                mins = idle_for / 60.0
                out.append(
                    Warning_(
                        "gpu_idle",
                        "gpu_idle",
                        f"warning: GPU idle: {_pct(mean)} utilisation for {mins:.0f} min "
                        "while the job runs",
                        {"util": mean, "idle_s": round(idle_for)},
                    )
                )
            out.extend(self._some_idle(gpus, now, all_idle=mean < cfg.gpu_idle_util))
        for g in gpus:
            used, total = g.get("mem_used"), g.get("mem_total")
            if not used or not total:
                continue
            key = f"gpu_mem:{g.get('gpu')}"
            if self._edge(key, used >= cfg.gpu_mem_full * total):
                out.append(
                    Warning_(
                        "gpu_mem",
                        key,
                        f"warning: GPU {g.get('gpu')} memory near full: "
                        f"{gib(used)}/{gib(total)} GiB",
                        {"gpu": g.get("gpu"), "used": used, "total": total},
                    )
                )
        for d in rec.get("disks") or []:
            free, pct = d.get("free"), d.get("free_pct")
            if free is None or pct is None:
                continue
            key = f"disk:{d.get('path')}"
            low = pct < cfg.disk_free_pct or free < cfg.disk_free_bytes
            if self._edge(key, low):
                out.append(
                    Warning_(
                        "disk",
                        key,
                        f"warning: disk nearly full: {gib(free)} GiB free ({_pct(pct)}) "
                        f"on {d.get('path')}",
                        {"path": d.get("path"), "free": free, "free_pct": pct},
                    )
                )
        rss, limit = rec.get("rss"), rec.get("mem_limit")
        if rss and limit and self._edge("rss", rss >= cfg.rss_limit_frac * limit):
            out.append(
                Warning_(
                    "rss",
                    "rss",
                    f"warning: memory near the job's limit: RSS {gib(rss)}/{gib(limit)} GiB "
                    f"({_pct(100.0 * rss / limit)})",
                    {"rss": rss, "limit": limit},
                )
            )
        self.issued.extend(w.text for w in out)
        return out


# ---------------------------------------------------------------- the summary


@dataclass
class _Node:
    samples: int = 0
    peak_rss: int | None = None
    mem_limit: int | None = None
    cpu_s: float | None = None
    alloc: int | None = None
    gpus: int = 0
    disks: list[dict[str, Any]] = field(default_factory=list)
    first_t: float | None = None
    last_t: float | None = None


class Summary:
    """Streams samples (any number of nodes) into the Results summary."""

    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {}
        self.util = array("f")  # every GPU's utilisation of every sample
        self.gpu_mem_peak: int | None = None
        self.gpu_mem_total: int | None = None
        self.mig = False

    def add(self, rec: Mapping[str, Any]) -> None:
        name = str(rec.get("node") or "?")
        n = self.nodes.setdefault(name, _Node())
        n.samples += 1
        t = rec.get("t")
        if isinstance(t, (int, float)):
            n.first_t = t if n.first_t is None else min(n.first_t, t)
            n.last_t = t if n.last_t is None else max(n.last_t, t)
        rss = rec.get("rss")
        if isinstance(rss, int):
            n.peak_rss = rss if n.peak_rss is None else max(n.peak_rss, rss)
        if rec.get("mem_limit"):
            n.mem_limit = int(rec["mem_limit"])
        if rec.get("cpu_s") is not None:
            n.cpu_s = float(rec["cpu_s"])
        if rec.get("alloc_cpus"):
            n.alloc = int(rec["alloc_cpus"])
        if rec.get("disks"):
            n.disks = list(rec["disks"])
        gpus = rec.get("gpus") or []
        n.gpus = max(n.gpus, len(gpus))
        for g in gpus:
            if g.get("util") is not None:
                self.util.append(float(g["util"]))
            elif g.get("gpu") is not None:
                self.mig = True
            mem = gpu_mem_of(g)
            if mem is not None:
                self.gpu_mem_peak = (
                    mem if self.gpu_mem_peak is None else max(self.gpu_mem_peak, mem)
                )
            if g.get("mem_total"):
                self.gpu_mem_total = int(g["mem_total"])

    def facts(
        self,
        *,
        main_node: str,
        walltime: float,
        cpu_time: float | None,
        interval: float,
        gpu_note: str | None,
        warnings: Sequence[str] = (),
    ) -> TelemetryFacts:
        """The summary; ``cpu_time`` overrides the main node's sampled CPU time (the
        wrapper's getrusage of its reaped children counts the last seconds too)."""
        t = TelemetryFacts(samples=sum(n.samples for n in self.nodes.values()))
        t.interval_s = interval
        t.nodes = sorted(self.nodes)
        t.walltime_s = round(walltime, 1)
        t.warnings = list(warnings)
        reasons: dict[str, str] = {}
        main = self.nodes.get(main_node)
        peaks = [n.peak_rss for n in self.nodes.values() if n.peak_rss is not None]
        t.peak_rss_bytes = max(peaks) if peaks else None
        if t.peak_rss_bytes is None:
            reasons["peak_rss_bytes"] = "no sample of the job's processes"
        t.mem_limit_bytes = main.mem_limit if main else None
        # CPU efficiency over all nodes: CPU seconds / (allocated CPUs x walltime)
        total_cpu = 0.0
        total_alloc = 0
        for name, n in self.nodes.items():
            cpu = cpu_time if name == main_node and cpu_time is not None else n.cpu_s
            if cpu is None or not n.alloc:
                continue
            total_cpu += cpu
            total_alloc += n.alloc
        if main_node not in self.nodes and cpu_time is not None:
            total_cpu += cpu_time
        if total_alloc and walltime > 0:
            t.cpu_time_s = round(total_cpu, 2)
            t.alloc_cpus = total_alloc
            t.cpu_efficiency = round(min(total_cpu / (total_alloc * walltime), 1.0), 4)
        else:
            reasons["cpu_efficiency"] = (
                "the run was too short to sample"
                if walltime <= 0 or not self.nodes
                else "no CPU sample"
            )
        disks = main.disks if main and main.disks else []
        if disks:
            worst = min(disks, key=lambda d: int(d.get("free") or 0))
            t.disk_free_bytes_end = int(worst.get("free") or 0)
            t.disk_free_pct_end = worst.get("free_pct")
            t.disk_path = worst.get("path")
        else:
            reasons["disk_free_bytes_end"] = "no disk sampled"
        t.gpus = sum(n.gpus for n in self.nodes.values())
        if self.util:
            vals = sorted(self.util)
            t.gpu_util_mean = round(sum(vals) / len(vals), 1)
            t.gpu_util_p10 = round(_percentile(vals, 10.0), 1)
        if self.gpu_mem_peak is not None:
            t.gpu_mem_peak_bytes = self.gpu_mem_peak
            t.gpu_mem_total_bytes = self.gpu_mem_total
        if t.gpus == 0:
            note = gpu_note or "none (no GPU sampled)"
            t.gpu_note = note
            reasons["gpu"] = note[len("none (") : -1] if note.startswith("none (") else note
        else:
            t.gpu_note = gpu_note
            if not self.util:
                reasons["gpu_util"] = (
                    "MIG devices: NVML gives no utilisation" if self.mig else "not reported"
                )
        t.reasons = reasons
        return t


def summarize_sidecar(sidecar: Path, max_bytes: int | None = None) -> TelemetryFacts | None:
    """The summary from a run's telemetry files alone, for a run whose wrapper could not
    write one (killed at the time limit or by the OOM killer); None without samples.

    ``max_bytes``: files larger than this, and symlinks, are left out (the epilog reads
    them: files in a user's folder are untrusted input).
    """
    records: list[dict[str, Any]] = []
    main_node: str | None = None
    for path in record_files(sidecar):
        try:
            st = path.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or (max_bytes is not None and st.st_size > max_bytes):
            continue
        recs = list(iter_file(path))
        if path.name == TELEMETRY_FILE and recs:
            main_node = str(recs[0].get("node") or "?")
        records.extend(recs)
    if not records:
        return None
    times = [float(r["t"]) for r in records if isinstance(r.get("t"), (int, float))]
    walltime = max(times) - min(times) if times else 0.0
    s = Summary()
    for r in records:
        s.add(r)
    note = next((str(r["gpu_note"]) for r in records if r.get("gpu_note")), None)
    return s.facts(
        main_node=main_node or str(records[0].get("node") or "?"),
        walltime=walltime,
        cpu_time=None,
        interval=DEFAULT_INTERVAL,
        gpu_note=note,
    )


def _percentile(sorted_vals: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_vals:
        return math.nan
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def summarize(
    records: Iterable[Mapping[str, Any]],
    main_node: str,
    walltime: float,
    interval: float = DEFAULT_INTERVAL,
    gpu_note: str | None = None,
) -> TelemetryFacts:
    """The summary of ``records`` alone (``hpcwrap log show`` of an older run, tests)."""
    s = Summary()
    for r in records:
        s.add(r)
    return s.facts(
        main_node=main_node,
        walltime=walltime,
        cpu_time=None,
        interval=interval,
        gpu_note=gpu_note,
    )


__all__ = [
    "DEFAULT_INTERVAL",
    "GIB",
    "Summary",
    "TelemetryConfig",
    "WarningPolicy",
    "Warning_",
    "gib",
    "gpu_mem_of",
    "status_clause",
    "summarize",
    "summarize_sidecar",
]
