"""Reading the records under a working folder into one ``Records``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from hpcwrap.reading.records.disk import (
    _WEIGHTS,
    FoundCheckpoint,
    Skipped,
    _files,
    _judge,
    _newest,
    _settled,
)
from hpcwrap.reading.records.hf import _hf_series, _hf_state
from hpcwrap.reading.records.lightning import _csv_series, _tb_series, tensorboard_available
from hpcwrap.reading.records.series import LossSeries
from hpcwrap.reading.records.walk import BUDGET_S, ENTRIES_MAX, _Budget, _walk

SLACK_S = 5.0  # mtime tolerance: coarse file-system clocks, a clock read a moment early


@dataclass(frozen=True)
class Records:
    """What the records say; None where they say nothing."""

    final_step: int | None = None
    final_step_source: str | None = None
    max_steps: int | None = None  # the step total the framework planned (HF)
    train: LossSeries | None = None
    val: LossSeries | None = None
    best_checkpoint: str | None = None
    checkpoints: tuple[FoundCheckpoint, ...] = ()  # complete ones, newest first
    skipped: tuple[Skipped, ...] = ()  # checkpoints not complete, with why
    files: tuple[str, ...] = ()  # record files read
    truncated: bool = False  # the time or entry budget ran out
    untied: tuple[Path, ...] = ()  # records and checkpoints left out: not this run's

    @property
    def empty(self) -> bool:
        return self.final_step is None and not self.train and not self.val and not self.checkpoints


def where(path: Path, workdir: Path) -> str:
    """A path as the log shows it: relative to the working folder when under it."""
    try:
        return str(path.relative_to(workdir))
    except ValueError:
        return str(path)


@dataclass
class _Found:
    states: list[tuple[int, float, Path, dict[str, object]]] = field(default_factory=list)
    csvs: list[tuple[float, Path]] = field(default_factory=list)
    tb_dirs: dict[Path, float] = field(default_factory=dict)
    complete: list[FoundCheckpoint] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    untied: list[Path] = field(default_factory=list)


def read_records(
    workdir: Path,
    *,
    since: float | None,
    until: float | None = None,
    settle_s: float = 0.0,
    budget_s: float = BUDGET_S,
    entries: int = ENTRIES_MAX,
    owns: Callable[[Path], bool] | None = None,
) -> Records:
    """The records under ``workdir`` written since ``since`` (epoch seconds; None: all)
    and, with ``owns`` (reading/ownership.py), tied to the run: the others are listed in
    ``untied``, never read."""
    budget = _Budget(entries, time.monotonic() + budget_s)
    floor = -math.inf if since is None else since - SLACK_S
    ceiling = math.inf if until is None else until + SLACK_S
    found = _Found()
    tb = None  # decided on the first event file seen
    for parent, entry in _walk(workdir, budget):
        path = Path(entry.path)
        name = entry.name
        try:
            is_dir = entry.is_dir()
        except OSError:
            continue
        if not is_dir and name == "metrics.csv":
            try:
                mtime = entry.stat().st_mtime
            except OSError:
                continue
            if floor <= mtime and _mine(path, owns, found):
                found.csvs.append((mtime, path))
            continue
        if not is_dir and name == "trainer_state.json":
            # The output folder's own, from Trainer.save_state() at the end.
            try:
                mtime = entry.stat().st_mtime
            except OSError:
                continue
            if not floor <= mtime <= ceiling or not _mine(parent, owns, found):
                continue
            state = _hf_state(parent)
            if state is not None:
                gs = state.get("global_step")
                found.states.append((gs if isinstance(gs, int) else 0, mtime, parent, state))
                # Saved beside its weights under another name than checkpoint-N (a custom
                # layout, or save_model + save_state at the end): a checkpoint too.
                files = _files(parent)
                if any(f[0].endswith(_WEIGHTS) for f in files):
                    newest = max(f[2] for f in files)
                    if newest <= ceiling:
                        step = gs if isinstance(gs, int) else None
                        found.complete.append(FoundCheckpoint(parent, step, "hf", newest))
            continue
        if not is_dir and name.startswith("events.out.tfevents."):
            if tb is None:
                tb = tensorboard_available()
            try:
                mtime = entry.stat().st_mtime
            except OSError:
                continue
            if tb and floor <= mtime and (parent in found.tb_dirs or _mine(parent, owns, found)):
                found.tb_dirs[parent] = max(found.tb_dirs.get(parent, 0.0), mtime)
            continue
        judged = _judge(path, name, parent, is_dir)
        if judged is None:
            continue
        layout, step, why = judged
        newest, files = _newest(path, is_dir)
        if newest < floor:
            continue  # an earlier run's
        if not _mine(path, owns, found):
            continue
        if why is None and newest > ceiling:
            why = "modified after the job's end"
        if why is None and settle_s > 0 and not _settled(path, is_dir, files, settle_s):
            why = "its size is still changing"
        if why is not None:
            found.skipped.append(Skipped(path, why))
            continue
        found.complete.append(FoundCheckpoint(path, step, layout, newest))
        if layout == "hf":
            state = _hf_state(path)
            if state is not None:
                gs = state.get("global_step")
                found.states.append((gs if isinstance(gs, int) else step or 0, newest, path, state))
    return _assemble(found, workdir, budget.out)


def _mine(path: Path, owns: Callable[[Path], bool] | None, found: _Found) -> bool:
    if owns is None or owns(path):
        return True
    found.untied.append(path)
    return False


def _order(c: FoundCheckpoint) -> tuple[int, float]:
    return (c.step if c.step is not None else -1, c.mtime)


def _assemble(found: _Found, workdir: Path, truncated: bool) -> Records:
    rec = Records(
        checkpoints=tuple(sorted(found.complete, key=_order, reverse=True)),
        skipped=tuple(found.skipped),
        truncated=truncated,
        untied=tuple(found.untied),
    )
    files: list[str] = []
    steps: list[tuple[int, str]] = []
    if found.states:
        gs, _, folder, state = max(found.states, key=lambda s: (s[0], s[1]))
        src = where(folder / "trainer_state.json", workdir)
        files.append(src)
        steps.append((gs, src))
        ms = state.get("max_steps")
        best = state.get("best_model_checkpoint")
        rec = replace(
            rec,
            max_steps=ms if isinstance(ms, int) and ms > 0 else None,
            train=_hf_series(state, "loss", src),
            val=_hf_series(state, "eval_loss", src),
            best_checkpoint=best if isinstance(best, str) else None,
        )
    if rec.train is None and rec.val is None:
        logs: list[tuple[float, Path, str]] = [(m, p, "csv") for m, p in found.csvs]
        logs += [(m, p, "tb") for p, m in found.tb_dirs.items()]
        for _, path, kind in sorted(logs, key=lambda x: x[0], reverse=True):
            src = where(path if kind == "csv" else path / "events.out.tfevents.*", workdir)
            train, val, top = _csv_series(path, src) if kind == "csv" else _tb_series(path, src)
            if train is None and val is None:
                continue
            files.append(src)
            if top is not None:
                steps.append((top, src))
            rec = replace(rec, train=train, val=val)
            break
    for ck in rec.checkpoints:
        if ck.step is not None and ck.layout != "hf":
            steps.append((ck.step, where(ck.path, workdir)))
            break
    if steps:
        step, src = max(steps, key=lambda s: s[0])
        rec = replace(rec, final_step=step, final_step_source=src)
    return replace(rec, files=tuple(files))
