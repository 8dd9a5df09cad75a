"""Merging the records into the console's Snapshot, and the text naming each figure's source."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from hpcwrap.reading.progress import Checkpoint, Snapshot
from hpcwrap.reading.records.disk import EVIDENCE
from hpcwrap.reading.records.read import Records, read_records, where

if TYPE_CHECKING:
    from hpcwrap.reading.scan import ScanReport

CONSOLE = "console"


@dataclass(frozen=True)
class Merged:
    snap: Snapshot
    sources: dict[str, str]  # figure -> "console" or the file / folder it came from


def _close(a: float, b: float) -> bool:
    return a == b or (
        math.isfinite(a) and math.isfinite(b) and abs(a - b) <= 1e-3 * max(abs(a), abs(b), 1e-12)
    )


def merge(snap: Snapshot, rec: Records, workdir: Path) -> Merged:
    """``snap`` with the records' figures where the console lacks them or disagrees.

    Final step: the records' where the console has none, a smaller one (the
    records prove the run got further: a bar counting batches of an epoch), or
    one beyond the framework's planned total (a ``datasets`` map bar's 2048).
    Losses: the records' first, last and history, as the framework holds them
    (the console's are rounded for display, or a progress bar's latest value);
    a figure equal to the console's is named as the console's. Only where the
    records are a copy as of the last save (trainer_state.json) and the console
    logged past it (killed after that save) does the console keep the series.
    Checkpoint: the newest complete one on disk where the console named none (or
    one that is not there), or an older step than it.
    """
    s = snap
    src: dict[str, str] = {}
    out: dict[str, object] = {}
    # -- final step
    cstep = s.step
    rstep = rec.final_step
    step = cstep
    if rstep is not None and (
        cstep is None or cstep < rstep or (rec.max_steps is not None and cstep > rec.max_steps)
    ):
        step = rstep
        out["step"] = rstep
        out["step_total"] = rec.max_steps
        src["final step"] = rec.final_step_source or ""
    elif cstep is not None:
        src["final step"] = CONSOLE
        if rec.max_steps is not None and s.step_total != rec.max_steps:
            out["step_total"] = rec.max_steps
    # -- losses
    for kind, series, hist in (
        ("train", rec.train, s.train_history),
        ("val", rec.val, s.val_history),
    ):
        first_f, last_f = (
            ("first_loss", "loss") if kind == "train" else ("first_val_loss", "val_loss")
        )
        start_key, end_key = f"start_{kind}_loss", f"end_{kind}_loss"
        cfirst: float | None = getattr(s, first_f)
        clast: float | None = getattr(s, last_f)
        if series is None or not series.points:
            if cfirst is not None:
                src[start_key] = src[end_key] = CONSOLE
            continue
        pts = series.points
        # The console logged past the records' last point (killed after the last save).
        console_later = bool(
            not series.live
            and hist
            and hist[-1][0] is not None
            and pts[-1][0] is not None
            and hist[-1][0] > pts[-1][0]
            and (step is None or hist[-1][0] <= step)
        )
        if console_later:
            src[start_key] = src[end_key] = CONSOLE
            continue
        # One story per series: the records' first, last and history together (the
        # one-liner's trend must tell of the same values as Results).
        for key, fname, (_, value, text) in (
            (start_key, first_f, pts[0]),
            (end_key, last_f, pts[-1]),
        ):
            if (cfirst if fname == first_f else clast) == value:
                src[key] = CONSOLE  # the same figure: kept as the console printed it
            else:
                src[key] = series.source
                out[fname], out[fname + "_text"] = value, text
        out[f"{kind}_history"] = tuple((p[0], p[1]) for p in pts)
    # -- checkpoint
    ck = s.checkpoint
    disk = rec.checkpoints[0] if rec.checkpoints else None
    console_ok = ck is not None and ck.path is not None and _exists(ck.path, workdir)
    if disk is not None and (
        not console_ok
        or (
            ck is not None and ck.step is not None and disk.step is not None and disk.step > ck.step
        )
    ):
        when = datetime.fromtimestamp(disk.mtime, tz=timezone.utc)
        out["checkpoint"] = Checkpoint(
            str(disk.path), disk.step, when, evidence=EVIDENCE[disk.layout], source="records"
        )
        pend = s.pending_save
        if pend is not None and (pend.step is None or (disk.step or -1) >= pend.step):
            out["pending_save"] = None  # the save the console saw start is complete on disk
        src["checkpoint"] = f"on disk ({where(disk.path, workdir)}, newest complete)"
    elif ck is not None:
        src["checkpoint"] = CONSOLE
    if not out:
        return Merged(snap, src)
    origin = dict(s.origin or {})
    for figure, field_name in (
        ("final step", "step"),
        ("end_train_loss", "loss"),
        ("end_val_loss", "val_loss"),
        ("checkpoint", "checkpoint"),
    ):
        if src.get(figure, CONSOLE) != CONSOLE:
            origin[field_name] = src[figure]
    if "checkpoint" in out and disk is not None:
        origin["checkpoint"] = f"{where(disk.path, workdir)} on disk"
    out["origin"] = origin
    return Merged(replace(s, **out), src)  # type: ignore[arg-type]


def _exists(printed: str, workdir: Path) -> bool:
    p = Path(printed).expanduser()
    return (p if p.is_absolute() else workdir / p).exists()


def sources_text(sources: dict[str, str]) -> str | None:
    """``final step, end_train_loss from out/checkpoint-150/trainer_state.json; ...``.

    None when everything came from the console (the usual case says nothing).
    """
    if all(v == CONSOLE for v in sources.values()):
        return None
    groups: dict[str, list[str]] = {}
    for figure, source in sources.items():
        groups.setdefault(source, []).append(figure)
    parts = []
    for source, figures in groups.items():
        what = ", ".join(figures)
        if source == CONSOLE:
            parts.append(f"{what} from the console")
        elif source.startswith("on disk"):
            parts.append(f"{what} {source}")
        else:
            parts.append(f"{what} from {source}")
    return "; ".join(parts)


def with_records(rep: ScanReport, workdir: Path, output: Path) -> ScanReport:
    """``hpcwrap scan OUTPUT --workdir DIR``: the scan report with the records' figures
    where the output lacks them or disagrees, each figure's file named in ``origin``.

    The job's start is not known after the fact: every record counts that was written
    up to the output file's last write (later ones are another run's); where that
    write is recent (the job may still run) a checkpoint's files must keep their
    sizes for half a second.
    """
    from hpcwrap.reading import scan  # the scan reader itself needs no records
    from hpcwrap.reading.formats import LineParser

    try:
        until: float | None = output.stat().st_mtime
    except OSError:
        until = None
    settle = 0.5 if until is not None and time.time() - until < 60 else 0.0
    workdir = workdir.resolve()
    found = read_records(workdir, since=None, until=until, settle_s=settle)
    merged = merge(rep.snapshot, found, workdir)
    if merged.snap is rep.snapshot:
        return rep
    # a fresh parser: report() reads only which entries matched, kept from the first report
    redone = scan.report(merged.snap, LineParser(()), path=rep.path, cwd=Path(rep.cwd))
    return replace(redone, formats=rep.formats, lines=rep.lines)
