"""``hpcwrap plot``'s drawing: the run's loss curves (every point its jobs' output files
printed) and GPU/CPU telemetry into one PNG (matplotlib, the ``plots`` extra)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpcwrap.config import Pattern
from hpcwrap.errors import MissingExtraError
from hpcwrap.runlog import layout

PLOT_FILE = layout.PLOT_FILE

# Past this many points a loss series is thinned (every k-th kept, the last too), and
# the figure says so; below it every logged point is drawn.
MAX_POINTS = 5000


def pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError(
            "hpcwrap plot needs matplotlib, which is not installed: "
            "pip install 'hpcwrap[plots]' (the 'plots' extra), then run it again",
            extra="plots",
        ) from None
    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    return plt


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def loss_series(sidecar: Path) -> dict[str, list[tuple[float, float]]]:
    """(step, loss) pairs of ``train_loss`` and ``val_loss`` from the progress events."""
    from hpcwrap.runlog.telemetry import iter_file

    out: dict[str, dict[float, float]] = {"train_loss": {}, "val_loss": {}}
    for ev in iter_file(sidecar / layout.EVENTS_FILE):
        if ev.get("kind") not in ("progress", "status", "ended"):
            continue
        step = _float(ev.get("step"))
        if step is None:
            continue
        for key in out:
            v = _float(ev.get(key))
            if v is not None:
                out[key][step] = v
    return {k: sorted(v.items()) for k, v in out.items()}


def output_files(state: Any) -> list[Path]:
    """The output file of each job of the run that is still there (as the epilog finds
    it: ``sbatch_options.output_file_of``)."""
    import getpass

    from hpcwrap.scheduler.sbatch_options import output_file_of

    if state.submit is None:
        return []
    found: list[Path] = []
    for job in state.jobs:
        if not job.execution_id or not str(job.execution_id).isdigit():
            continue
        path = output_file_of(
            state.submit, str(job.execution_id), getpass.getuser(), state.submit.workdir
        )
        if path is not None and Path(path).is_file() and Path(path) not in found:
            found.append(Path(path))
    return found


def logged_losses(
    state: Any, sidecar: Path, patterns: Sequence[Pattern] = ()
) -> tuple[dict[str, list[tuple[float, float]]], str]:
    """Every logged loss point of the run and where they came from: its jobs' output
    files, read as the wrapper reads them (with the project's own ``patterns``); else
    its progress events."""
    from hpcwrap.reading.scan import loss_points

    files = output_files(state)
    merged: dict[str, dict[float, float]] = {"train_loss": {}, "val_loss": {}}
    for path in files:
        try:
            points = loss_points(path, patterns=patterns)
        except OSError:
            continue
        for key, pts in points.items():
            merged[key].update(pts)  # a resumed job's later value for a step stands
    if any(merged.values()):
        names = ", ".join(p.name for p in files)
        return {k: sorted(v.items()) for k, v in merged.items()}, f"from {names}"
    return loss_series(sidecar), "from the progress events"


def thinned(points: list[tuple[float, float]]) -> tuple[list[tuple[float, float]], int]:
    """At most about MAX_POINTS of ``points`` (every k-th, and the last); k (1: all)."""
    k = -(-len(points) // MAX_POINTS) if len(points) > MAX_POINTS else 1
    if k == 1:
        return points, 1
    kept = points[::k]
    if kept[-1] != points[-1]:
        kept.append(points[-1])
    return kept, k


def draw(
    run_title: str,
    sidecar: Path,
    output: Path,
    state: Any = None,
    patterns: Sequence[Pattern] = (),
) -> dict[str, int]:
    """Write the PNG; returns how many points each panel got."""
    from hpcwrap.runlog.telemetry import GIB, read_records

    plt = pyplot()
    if state is not None:
        losses, source = logged_losses(state, sidecar, patterns)
    else:
        losses, source = loss_series(sidecar), "from the progress events"
    records = read_records(sidecar)
    t0 = min((float(r["t"]) for r in records if r.get("t")), default=0.0)
    fig, axes = plt.subplots(3, 1, figsize=(9, 10), constrained_layout=True)
    ax = axes[0]
    notes = [f"loss {source}"]
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        pts, k = thinned(losses[key])
        if k > 1:
            notes.append(f"{label}: every {k}th of {len(losses[key])} points shown")
        if pts:
            ax.plot([s for s, _ in pts], [v for _, v in pts], marker=".", label=label)
    ax.text(0.99, 0.99, "; ".join(notes), ha="right", va="top", fontsize="small",
            transform=ax.transAxes)  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(run_title)
    if losses["train_loss"] or losses["val_loss"]:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no loss recorded", ha="center", va="center", transform=ax.transAxes)
    gpu_points = 0
    series: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for r in records:
        when = (float(r.get("t") or t0) - t0) / 60.0
        for g in r.get("gpus") or []:
            name = f"{r.get('node', '?')} gpu {g.get('gpu')}"
            xs, util, mem = series.setdefault(name, ([], [], []))
            xs.append(when)
            u = _float(g.get("util"))
            util.append(u if u is not None else math.nan)
            m = g.get("proc_mem") or g.get("mem_used")
            mem.append(float(m) / GIB if isinstance(m, (int, float)) else math.nan)
            gpu_points += 1
    ax_util, ax_mem = axes[1], axes[2]
    if series:
        for name, (xs, util, mem) in series.items():
            ax_util.plot(xs, util, label=name)
            ax_mem.plot(xs, mem, label=name)
        ax_util.set_ylabel("GPU utilisation (%)")
        ax_util.set_ylim(0, 105)
        ax_mem.set_ylabel("GPU memory (GiB)")
        ax_util.legend(fontsize="small")
    else:
        nodes: dict[str, tuple[list[float], list[float], list[float]]] = {}
        for r in records:
            xs, cores, rss = nodes.setdefault(str(r.get("node", "?")), ([], [], []))
            xs.append((float(r.get("t") or t0) - t0) / 60.0)
            c = _float(r.get("cpu_cores"))
            cores.append(c if c is not None else math.nan)
            rss.append(float(r.get("rss") or 0) / GIB)
        for name, (xs, cores, rss) in nodes.items():
            ax_util.plot(xs, cores, label=name)
            ax_mem.plot(xs, rss, label=name)
        ax_util.set_ylabel("CPU cores busy (no GPU sampled)")
        ax_mem.set_ylabel("RSS (GiB)")
        if nodes:
            ax_util.legend(fontsize="small")
    ax_mem.set_xlabel("minutes since the first sample")
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return {
        "train_loss": len(losses["train_loss"]),
        "val_loss": len(losses["val_loss"]),
        "gpu_points": gpu_points,
        "samples": len(records),
    }


__all__ = [
    "MAX_POINTS",
    "PLOT_FILE",
    "draw",
    "logged_losses",
    "loss_series",
    "output_files",
    "pyplot",
    "thinned",
]
