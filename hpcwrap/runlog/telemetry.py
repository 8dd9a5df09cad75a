"""Telemetry in the sidecar: the typed summary (``TelemetryFacts``) and the records file.

``telemetry.jsonl`` holds one JSON object per sample, appended as it is taken
(``append_record``). The batch node's sampler (the wrapper) writes
``telemetry.jsonl``; the sampler of every other node of the allocation writes
``telemetry.<node>.jsonl``: one writer per file, so no two nodes append to the
same file over a network filesystem (O_APPEND is not atomic across NFS clients).
``read_records`` reads them all, skipping torn or damaged lines, in time order.

Records are small (a few hundred bytes) and written without fsync: a sample lost
in a crash costs nothing, a flush per sample would cost the filesystem.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

from hpcwrap.runlog import layout
from hpcwrap.runlog.facts import facts_to_dict
from hpcwrap.runlog.fsio import append_line

TELEMETRY_FILE = layout.TELEMETRY_FILE
GIB = 1 << 30
# The Results lines of the summary (render.py shows them after the spec's own lines).
RESULTS_LABELS = ("gpu", "cpu_efficiency", "peak_rss", "disk_free_end", "plot")
_NODE_FILE = re.compile(r"^telemetry\.([A-Za-z0-9._-]+)\.jsonl$")
_SAFE_NODE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class TelemetryFacts:
    """The telemetry summary of a run (``hpcwrap.job.telemetry``) for Results and --json.

    A ``None`` measure was not measured; ``reasons`` says why, keyed by the measure
    (``"gpu"`` for every GPU measure). Bytes are bytes, utilisation is percent,
    ``cpu_efficiency`` is CPU time / (allocated CPUs x walltime), 0..1.
    """

    samples: int = 0
    interval_s: float | None = None
    nodes: list[str] = field(default_factory=list)
    peak_rss_bytes: int | None = None
    mem_limit_bytes: int | None = None
    cpu_efficiency: float | None = None
    cpu_time_s: float | None = None
    alloc_cpus: int | None = None
    walltime_s: float | None = None
    disk_free_bytes_end: int | None = None
    disk_free_pct_end: float | None = None
    disk_path: str | None = None
    gpus: int = 0
    gpu_util_mean: float | None = None
    gpu_util_p10: float | None = None
    gpu_mem_peak_bytes: int | None = None
    gpu_mem_total_bytes: int | None = None
    gpu_note: str | None = None  # "none (NVML library not found)", "MIG: no utilisation"
    warnings: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    plot: str | None = None  # the PNG of ``hpcwrap plot``, relative to the run log's folder


_INTS = {
    "samples",
    "peak_rss_bytes",
    "mem_limit_bytes",
    "alloc_cpus",
    "disk_free_bytes_end",
    "gpus",
    "gpu_mem_peak_bytes",
    "gpu_mem_total_bytes",
}
_FLOATS = {
    "interval_s",
    "cpu_efficiency",
    "cpu_time_s",
    "walltime_s",
    "disk_free_pct_end",
    "gpu_util_mean",
    "gpu_util_p10",
}


def telemetry_to_dict(t: TelemetryFacts) -> dict[str, Any]:
    return facts_to_dict(t)


def telemetry_from_dict(raw: Mapping[str, Any]) -> TelemetryFacts:
    """The inverse of ``telemetry_to_dict``; unknown keys ignored, bad values dropped."""
    t = TelemetryFacts()
    for f in fields(t):
        if f.name not in raw:
            continue
        value = raw[f.name]
        try:
            if f.name in _INTS:
                if value is None and f.name not in ("samples", "gpus"):
                    setattr(t, f.name, None)
                elif value is not None:
                    setattr(t, f.name, int(value))
            elif f.name in _FLOATS:
                setattr(t, f.name, None if value is None else float(value))
            elif f.name in ("nodes", "warnings"):
                setattr(t, f.name, [str(v) for v in value] if isinstance(value, list) else [])
            elif f.name == "reasons":
                if isinstance(value, Mapping):
                    t.reasons = {str(k): str(v) for k, v in value.items()}
            else:
                setattr(t, f.name, None if value is None else str(value))
        except (TypeError, ValueError):
            continue
    return t


def gib(n: float) -> str:
    """``61``, ``1.2``, ``0.05`` (GiB, 2 significant digits below 10)."""
    v = n / GIB
    if v >= 10:
        return f"{v:.0f}"
    if v >= 0.995:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.2g}"


# ---------------------------------------------------------------- Results lines


def results_lines(t: TelemetryFacts) -> list[tuple[str, str]]:
    """(label, value) pairs for Results: gpu, cpu_efficiency, peak_rss, disk_free_end, plot."""
    out: list[tuple[str, str]] = []
    if t.gpus and (t.gpu_util_mean is not None or t.gpu_mem_peak_bytes is not None):
        parts = []
        if t.gpu_util_mean is not None and t.gpu_util_p10 is not None:
            parts.append(f"util mean {t.gpu_util_mean:.0f}%, p10 {t.gpu_util_p10:.0f}%")
        else:
            parts.append("util n/a (" + t.reasons.get("gpu_util", "not reported") + ")")
        if t.gpu_mem_peak_bytes is not None:
            total = f"/{gib(t.gpu_mem_total_bytes)}" if t.gpu_mem_total_bytes else ""
            parts.append(f"peak memory {gib(t.gpu_mem_peak_bytes)}{total} GiB")
        n = f" ({t.gpus} GPUs)" if t.gpus > 1 else ""
        out.append(("gpu", "`" + ", ".join(parts) + "`" + n))
    elif t.gpu_note:
        out.append(("gpu", t.gpu_note))
    if t.cpu_efficiency is not None:
        busy = (t.cpu_time_s or 0.0) / t.walltime_s if t.walltime_s else 0.0
        out.append(
            (
                "cpu_efficiency",
                f"`{100 * t.cpu_efficiency:.0f}%` ({busy:.1f} of {t.alloc_cpus} allocated CPUs "
                "busy on average)",
            )
        )
    if t.peak_rss_bytes is not None:
        lim = f" of a {gib(t.mem_limit_bytes)} GiB limit" if t.mem_limit_bytes else ""
        out.append(("peak_rss", f"`{gib(t.peak_rss_bytes)} GiB`{lim}"))
    if t.disk_free_bytes_end is not None:
        pct = f" ({t.disk_free_pct_end:.0f}%)" if t.disk_free_pct_end is not None else ""
        out.append(("disk_free_end", f"`{gib(t.disk_free_bytes_end)} GiB`{pct} on `{t.disk_path}`"))
    if t.plot:
        out.append(("plot", f"`{t.plot}`"))
    return out


def results_items(t: TelemetryFacts) -> list[tuple[str, str]]:
    """The Results items (``results.<label>``, ``- label: value``) the run log shows."""
    return [(f"results.{label}", f"- {label}: {value}") for label, value in results_lines(t)]


def json_block(t: TelemetryFacts | None) -> dict[str, Any]:
    """The ``telemetry`` object of ``hpcwrap log show --json``: every measure, null with a
    reason where not measured."""
    keys = (
        "peak_rss_bytes",
        "cpu_efficiency",
        "disk_free_bytes_end",
        "gpu_util_mean",
        "gpu_util_p10",
        "gpu_mem_peak_bytes",
    )
    if t is None:
        return {
            **{k: None for k in keys},
            "reasons": {k: "no telemetry recorded for this run" for k in keys},
        }
    out: dict[str, Any] = {k: getattr(t, k) for k in keys}
    reasons: dict[str, str] = {}
    for k in keys:
        if out[k] is not None:
            continue
        if k.startswith("gpu_"):
            reasons[k] = t.reasons.get("gpu") or t.reasons.get("gpu_util") or "not measured"
        else:
            reasons[k] = t.reasons.get(k, "not measured")
    out.update(
        {
            "reasons": reasons,
            "gpu_note": t.gpu_note,
            "gpus": t.gpus,
            "gpu_mem_total_bytes": t.gpu_mem_total_bytes,
            "cpu_time_s": t.cpu_time_s,
            "alloc_cpus": t.alloc_cpus,
            "walltime_s": t.walltime_s,
            "mem_limit_bytes": t.mem_limit_bytes,
            "disk_free_pct_end": t.disk_free_pct_end,
            "disk_path": t.disk_path,
            "samples": t.samples,
            "interval_s": t.interval_s,
            "nodes": t.nodes,
            "warnings": t.warnings,
            "plot": t.plot,
        }
    )
    return out


# ---------------------------------------------------------------- the records


def node_file_name(node: str | None) -> str:
    """``telemetry.jsonl`` for the batch node (``None``), ``telemetry.<node>.jsonl`` else."""
    if not node:
        return TELEMETRY_FILE
    safe = _SAFE_NODE.sub("_", node).strip("._") or "node"
    return f"telemetry.{safe}.jsonl"


def append_record(sidecar: Path, record: Mapping[str, Any], node: str | None = None) -> int:
    """Append one sample to the sidecar's telemetry file; returns the file's new size.

    ``node`` names another node's file (see the module docstring). The sidecar
    folder must exist (the run log's does).
    """
    line = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return append_line(sidecar / node_file_name(node), line + b"\n", sync=False)


def record_files(sidecar: Path) -> list[Path]:
    """The telemetry files of a run: the batch node's first, then the others by name."""
    out: list[Path] = []
    main = sidecar / TELEMETRY_FILE
    if main.is_file():
        out.append(main)
    try:
        others = sorted(p for p in sidecar.iterdir() if _NODE_FILE.match(p.name))
    except OSError:
        others = []
    return out + [p for p in others if p.is_file()]


def iter_file(path: Path) -> Iterator[dict[str, Any]]:
    """The records of one file; torn or damaged lines are skipped."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed by the with below; open may fail alone)
    except OSError:
        return
    with fh:
        for line in fh:
            if not line.endswith(b"\n"):
                continue  # a record still being written (or torn)
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                yield rec


def read_records(sidecar: Path) -> list[dict[str, Any]]:
    """Every telemetry record of the run, all nodes, ordered by their ``t`` (epoch s)."""
    records: list[dict[str, Any]] = []
    for path in record_files(sidecar):
        records.extend(iter_file(path))
    records.sort(key=lambda r: float(r.get("t") or 0.0))
    return records


__all__ = [
    "GIB",
    "RESULTS_LABELS",
    "TELEMETRY_FILE",
    "TelemetryFacts",
    "append_record",
    "gib",
    "iter_file",
    "json_block",
    "node_file_name",
    "read_records",
    "record_files",
    "results_items",
    "results_lines",
    "telemetry_from_dict",
    "telemetry_to_dict",
]
