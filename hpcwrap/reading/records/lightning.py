"""Lightning: ``metrics.csv`` (CSVLogger) and TensorBoard event files (``events.out.tfevents.*``,
read where the optional ``tensorboard`` package is importable)."""

from __future__ import annotations

import csv
import importlib
import io
import struct
from collections.abc import Sequence
from pathlib import Path

from hpcwrap.reading.records.series import STATE_MAX_BYTES, LossSeries, _bounded, _num

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
