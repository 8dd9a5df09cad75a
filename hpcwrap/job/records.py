"""The frameworks' own records in a job's working tree: evidence beyond the console.

A quiet logger (transformers 5 prints no save line at default verbosity), a
progress display that prints only its final frame (Lightning's Rich bar without a
terminal) or rank-0-only printing leave the console without the evidence. The
frameworks keep it on disk, and this module reads it, bounded in time
(``budget_s``) and in directory entries (``entries``):

- HF Trainer: ``checkpoint-N/trainer_state.json`` (``global_step``, ``max_steps``,
  every logged ``loss`` and ``eval_loss`` with its step in ``log_history``,
  ``best_model_checkpoint``); the one with the highest ``global_step`` is read.
- Lightning: ``metrics.csv`` (CSVLogger, ``lightning_logs/version_N/``), and the
  TensorBoard event files (``events.out.tfevents.*``) where the ``tensorboard``
  package is importable (an optional extra); the newest file is read.
- Checkpoints on disk in the frameworks' layouts, newest complete first.

Only files modified since the job started count (``since``): a rerun in the same
folder never reads the previous run's records.

When a checkpoint is complete, per layout (each writes one file last):

- ``checkpoint-N/`` (HF Trainer): ``trainer_state.json`` is there and parses as
  JSON. The Trainer writes it after the weights, optimizer, scheduler and RNG
  state, in one non-atomic write, so a cut-off file does not parse. A folder of
  another name holding a parseable ``trainer_state.json`` beside a weights file
  counts too (its step is ``global_step``).
- ``*.ckpt`` (Lightning): a torch zip archive whose end-of-central-directory
  record is in its last 64 KiB. Lightning serialises in memory and writes the
  file in one go; a file cut short has no end record. ``epoch=E-step=S.ckpt``
  gives the step; ``last.ckpt`` has none (it sorts after the named ones).
- ``global_stepN/`` (DeepSpeed): the ``latest`` file beside it names this tag or
  a later step (DeepSpeed writes ``latest`` once every rank has saved).
- ``step_N/`` and ``checkpoint_N/`` (accelerate ``save_state``; in
  ``checkpoint_N`` N counts saves, not steps): ``random_states_0.pkl`` is there
  when the folder holds an optimizer state (``save_state`` writes the RNG states
  last); a folder of weights alone needs one weights file
  (``*.safetensors``, ``*.bin``, ``*.pt``, ``*.pth``).
- Every layout: a temporary name (``tmp-checkpoint-N``, ``*.tmp``, ``*.part``,
  ``*.partial``, ``*.incomplete``) is never complete; nor is one with a file
  modified after the job's end (``until``: still being written, or another
  run's); with ``settle_s`` > 0 (reading a job that may still run) its files'
  sizes must not change over that pause.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import math
import os
import re
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from hpcwrap.job.progress import HISTORY_MAX, Checkpoint, Snapshot

if TYPE_CHECKING:
    from hpcwrap.job.scan import ScanReport

BUDGET_S = 2.0  # wall time one reading may take
ENTRIES_MAX = 5000  # directory entries looked at
DEPTH = 5  # levels below the working folder (lightning_logs/version_0/checkpoints/x.ckpt)
SLACK_S = 5.0  # mtime tolerance: coarse file-system clocks, a clock read a moment early
STATE_MAX_BYTES = 64 << 20  # a trainer_state.json / metrics.csv bigger than this is skipped
_ZIP_TAIL = 64 << 10

_TMP = re.compile(r"(^\.?tmp[-_.]|\.(tmp|part|partial|incomplete)$|[-_.]tmp$)", re.IGNORECASE)
_HF_DIR = re.compile(r"^checkpoint-(\d+)$")
_ACC_DIR = re.compile(r"^(step|checkpoint)_(\d+)$")
_DS_DIR = re.compile(r"^global_step(\d+)$")
_CKPT_STEP = re.compile(r"(?:^|[-_])step=(\d+)")
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth")
_SKIP_DIRS = {"wandb", "__pycache__", "node_modules", ".git", "site-packages"}

# Column/tag names for the train and val loss, best first (Lightning's self.log names
# are the user's: these are the common spellings).
_TRAIN_NAMES = (
    "train_loss_step",
    "train_loss",
    "train/loss",
    "loss_step",
    "loss",
    "train_loss_epoch",
)
_VAL_NAMES = (
    "val_loss",
    "val/loss",
    "valid_loss",
    "validation_loss",
    "val_loss_epoch",
    "eval_loss",
)


@dataclass(frozen=True)
class LossSeries:
    """(step, value, text as written) points from one file, bounded like the console's."""

    points: tuple[tuple[int | None, float, str], ...]
    source: str  # the file, as ``where`` shows it
    # Written as the run goes (metrics.csv, event files): complete to the end. Not
    # live: a copy as of a save (trainer_state.json), points logged after it are missing.
    live: bool = True


# How a checkpoint on disk is known to be complete (Checkpoint.evidence), per layout.
EVIDENCE = {
    "hf": "trainer_state.json written (the Trainer writes it last)",
    "lightning": "the archive is whole (its end record is there)",
    "deepspeed": "named by the `latest` file",
    "accelerate": "its RNG states or weights are written (save_state writes RNG last)",
}


@dataclass(frozen=True)
class FoundCheckpoint:
    path: Path
    step: int | None
    layout: str  # "hf" | "lightning" | "deepspeed" | "accelerate"
    mtime: float  # newest file in it


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


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

    @property
    def empty(self) -> bool:
        return self.final_step is None and not self.train and not self.val and not self.checkpoints


# --------------------------------------------------------------------------- the walk


@dataclass
class _Budget:
    entries: int
    deadline: float
    out: bool = False

    def spend(self) -> bool:
        self.entries -= 1
        if self.entries <= 0 or time.monotonic() > self.deadline:
            self.out = True
        return not self.out


def _walk(root: Path, budget: _Budget) -> Iterator[tuple[Path, os.DirEntry[str]]]:
    """Entries under ``root``, breadth first, to DEPTH levels, within the budget."""
    frontier: list[tuple[Path, int]] = [(root, 0)]
    seen: set[tuple[int, int]] = set()
    while frontier and not budget.out:
        folder, depth = frontier.pop(0)
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if not budget.spend():
                return
            yield folder, entry
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if (
                is_dir
                and depth + 1 < DEPTH
                and not entry.name.startswith(".")
                and entry.name not in _SKIP_DIRS
                and not _TMP.search(entry.name)  # being written: judged, never read
                and not _HF_DIR.match(entry.name)  # a checkpoint's insides are read directly
                and not _ACC_DIR.match(entry.name)
                and not _DS_DIR.match(entry.name)
            ):
                frontier.append((Path(entry.path), depth + 1))


def _files(folder: Path) -> list[tuple[str, int, float]]:
    """(name, size, mtime) of the files directly in ``folder``."""
    out = []
    try:
        with os.scandir(folder) as it:
            for e in it:
                try:
                    if e.is_file():
                        st = e.stat()
                        out.append((e.name, st.st_size, st.st_mtime))
                except OSError:
                    continue
    except OSError:
        return []
    return out


# --------------------------------------------------------------------------- checkpoints


def _zip_complete(path: Path) -> bool:
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            f.seek(max(size - _ZIP_TAIL, 0))
            tail = f.read()
        if tail.rfind(b"PK\x05\x06") >= 0:
            return True
        # Not a zip at all: a legacy pickle checkpoint is complete when it is not empty.
        with path.open("rb") as f:
            return size > 0 and f.read(2) != b"PK"
    except OSError:
        return False


def _hf_state(folder: Path) -> dict[str, object] | None:
    path = folder / "trainer_state.json"
    try:
        if path.stat().st_size > STATE_MAX_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _judge(
    path: Path, name: str, parent: Path, is_dir: bool
) -> tuple[str, int | None, str | None] | None:
    """(layout, step, why not complete or None) for a checkpoint name; None: not one."""
    if is_dir:
        clean = _TMP.sub("", name)
        m = _HF_DIR.match(clean)
        if m:
            step = int(m.group(1))
            if clean != name:
                return "hf", step, "a temporary name"
            if _hf_state(path) is None:
                return "hf", step, "no readable trainer_state.json (the Trainer writes it last)"
            return "hf", step, None
        m = _DS_DIR.match(clean)
        if m:
            step = int(m.group(1))
            if clean != name:
                return "deepspeed", step, "a temporary name"
            try:
                latest = (parent / "latest").read_text(encoding="utf-8").strip()
            except OSError:
                return "deepspeed", step, "no `latest` file beside it"
            lm = _DS_DIR.match(latest)
            if latest != name and (lm is None or int(lm.group(1)) < step):
                return "deepspeed", step, f"`latest` names {latest!r}"
            return "deepspeed", step, None
        m = _ACC_DIR.match(clean)
        if m:
            acc_step: int | None = int(m.group(2)) if m.group(1) == "step" else None
            if clean != name:
                return "accelerate", acc_step, "a temporary name"
            names = [f[0] for f in _files(path)]
            if any(n.startswith("optimizer") for n in names):
                if not any(n.startswith("random_states_") for n in names):
                    return (
                        "accelerate",
                        acc_step,
                        "no random_states_*.pkl (save_state writes it last)",
                    )
            elif not any(n.endswith(_WEIGHTS) for n in names):
                return "accelerate", acc_step, "no weights file"
            return "accelerate", acc_step, None
        return None
    if name.endswith(".ckpt") or _TMP.sub("", name).endswith(".ckpt"):
        m = _CKPT_STEP.search(name)
        ck_step = int(m.group(1)) if m else None
        if not name.endswith(".ckpt"):
            return "lightning", ck_step, "a temporary name"
        if not _zip_complete(path):
            return "lightning", ck_step, "the archive has no end record (still being written)"
        return "lightning", ck_step, None
    return None


def _newest(path: Path, is_dir: bool) -> tuple[float, list[tuple[str, int, float]]]:
    if is_dir:
        files = _files(path)
        return max((f[2] for f in files), default=0.0), files
    try:
        st = path.stat()  # follows a last.ckpt link to its target
    except OSError:
        return 0.0, []
    return st.st_mtime, [(path.name, st.st_size, st.st_mtime)]


def _settled(
    path: Path, is_dir: bool, before: list[tuple[str, int, float]], settle_s: float
) -> bool:
    time.sleep(settle_s)
    return _newest(path, is_dir)[1] == before


# --------------------------------------------------------------------------- loss files


def _num(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value


def _bounded(
    points: list[tuple[int | None, float, str]],
) -> tuple[tuple[int | None, float, str], ...]:
    """At most HISTORY_MAX points, evenly thinned; the first and the last always kept."""
    if len(points) <= HISTORY_MAX:
        return tuple(points)
    stride = math.ceil(len(points) / (HISTORY_MAX - 1))
    kept = points[::stride]
    if kept[-1] is not points[-1]:
        kept.append(points[-1])
    return tuple(kept)


def _hf_series(state: dict[str, object], key: str, source: str) -> LossSeries | None:
    history = state.get("log_history")
    if not isinstance(history, list):
        return None
    points: list[tuple[int | None, float, str]] = []
    for entry in history:
        if not isinstance(entry, dict) or key not in entry:
            continue
        raw = entry[key]
        value = _num(raw) if isinstance(raw, str) else raw
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        step = entry.get("step")
        points.append(
            (
                step if isinstance(step, int) else None,
                float(value),
                raw if isinstance(raw, str) else repr(raw),
            )
        )
    return LossSeries(_bounded(points), source, live=False) if points else None


def _pick(columns: Sequence[str], names: Sequence[str], word: str) -> str | None:
    low = {c.lower(): c for c in columns}
    for n in names:
        if n in low:
            return low[n]
    for c in columns:  # any other spelling: "train_mse_loss", "val/ce_loss"
        lc = c.lower()
        if word in lc and "loss" in lc and not lc.endswith("_epoch"):
            return c
    return None


def _csv_series(path: Path, source: str) -> tuple[LossSeries | None, LossSeries | None, int | None]:
    try:
        if path.stat().st_size > STATE_MAX_BYTES:
            return None, None, None
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, None, None
    reader = csv.DictReader(io.StringIO(text))
    cols = reader.fieldnames or []
    tcol = _pick(cols, _TRAIN_NAMES, "train")
    vcol = _pick([c for c in cols if c != tcol], _VAL_NAMES, "val")
    train: list[tuple[int | None, float, str]] = []
    val: list[tuple[int | None, float, str]] = []
    top: int | None = None
    for row in reader:
        raw_step = (row.get("step") or "").strip()
        step = int(float(raw_step)) if raw_step and _num(raw_step) is not None else None
        if step is not None:
            top = step if top is None else max(top, step)
        for col, out in ((tcol, train), (vcol, val)):
            raw = (row.get(col) or "").strip() if col else ""
            value = _num(raw) if raw else None
            if value is not None:
                out.append((step, value, raw))
    return (
        LossSeries(_bounded(train), source) if train else None,
        LossSeries(_bounded(val), source) if val else None,
        top,
    )


def tensorboard_available() -> bool:
    try:
        importlib.import_module("tensorboard.backend.event_processing.event_file_loader")
    except Exception:  # not installed, or broken: the optional extra is not there
        return False
    return True


def _f32_text(value: float) -> str:
    """An event file's float32 as its shortest exact spelling (``0.0298``, not 0.029800000414)."""
    for digits in range(6, 10):
        text = f"{value:.{digits}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == value:
            return text
    return repr(value)


def _tb_series(
    folder: Path, source: str
) -> tuple[LossSeries | None, LossSeries | None, int | None]:
    """Scalars from the event files in ``folder`` (tensorboard's own reader)."""
    event_file_loader = importlib.import_module(
        "tensorboard.backend.event_processing.event_file_loader"
    )

    scalars: dict[str, list[tuple[int | None, float, str]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        try:
            for event in event_file_loader.EventFileLoader(str(path)).Load():
                for v in event.summary.value:
                    if v.HasField("simple_value"):
                        value = float(v.simple_value)
                    elif v.HasField("tensor") and v.tensor.float_val:
                        value = float(v.tensor.float_val[0])
                    else:
                        continue
                    scalars.setdefault(v.tag, []).append((int(event.step), value, _f32_text(value)))
        except Exception:  # a torn event file: keep what was read
            continue
    tcol = _pick(list(scalars), _TRAIN_NAMES, "train")
    vcol = _pick([c for c in scalars if c != tcol], _VAL_NAMES, "val")
    top = max((s for pts in scalars.values() for s, _, _ in pts if s is not None), default=None)
    return (
        LossSeries(_bounded(scalars[tcol]), source) if tcol else None,
        LossSeries(_bounded(scalars[vcol]), source) if vcol else None,
        top,
    )


# --------------------------------------------------------------------------- reading


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


def read_records(
    workdir: Path,
    *,
    since: float | None,
    until: float | None = None,
    settle_s: float = 0.0,
    budget_s: float = BUDGET_S,
    entries: int = ENTRIES_MAX,
) -> Records:
    """The records under ``workdir`` written since ``since`` (epoch seconds; None: all)."""
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
            if floor <= mtime:
                found.csvs.append((mtime, path))
            continue
        if not is_dir and name == "trainer_state.json":
            # The output folder's own, from Trainer.save_state() at the end.
            try:
                mtime = entry.stat().st_mtime
            except OSError:
                continue
            state = _hf_state(parent)
            if state is not None and floor <= mtime <= ceiling:
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
            if tb and floor <= mtime:
                found.tb_dirs[parent] = max(found.tb_dirs.get(parent, 0.0), mtime)
            continue
        judged = _judge(path, name, parent, is_dir)
        if judged is None:
            continue
        layout, step, why = judged
        newest, files = _newest(path, is_dir)
        if newest < floor:
            continue  # an earlier run's
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


def _order(c: FoundCheckpoint) -> tuple[int, float]:
    return (c.step if c.step is not None else -1, c.mtime)


def _assemble(found: _Found, workdir: Path, truncated: bool) -> Records:
    rec = Records(
        checkpoints=tuple(sorted(found.complete, key=_order, reverse=True)),
        skipped=tuple(found.skipped),
        truncated=truncated,
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


# --------------------------------------------------------------------------- merging


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
    from hpcwrap.job import scan  # the scan reader itself needs no records
    from hpcwrap.job.formats import LineParser

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


__all__ = [
    "CONSOLE",
    "EVIDENCE",
    "FoundCheckpoint",
    "LossSeries",
    "Merged",
    "Records",
    "Skipped",
    "merge",
    "read_records",
    "sources_text",
    "tensorboard_available",
    "where",
    "with_records",
]
