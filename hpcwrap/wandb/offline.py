"""Offline W&B runs: where they are and what their own files say.

An offline run is a folder ``wandb/offline-run-YYYYMMDD_HHMMSS-<id>/`` holding the
run's transaction log ``run-<id>.wandb``: a LevelDB-style record log (a 7-byte
``:W&B`` header, then 32 KiB blocks of records, each with a CRC-32, a length and a
FULL/FIRST/MIDDLE/LAST type) of protobuf ``Record`` messages. The message classes
come from the installed wandb (``wandb.proto.wandb_internal_pb2``); the log itself is
read here, since wandb 0.31 has no Python reader of it any more. From it: the run
id, the entity and project the training passed to ``wandb.init``, its start, the
files of its artifacts still in wandb's staging folder (the manifest's
``local_path``), and the first and last losses of its history.

Offline runs write no config.yaml or wandb-summary.json: the log is the only place
those facts are.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpcwrap.errors import MissingExtraError

OFFLINE_DIR = re.compile(r"^offline-run-(?P<stamp>\d{8}_\d{6})-(?P<id>\w+)$")
HPCWRAP_MARKER = "hpcwrap-synced.json"  # hpcwrap's record of a sync, in the offline run

_BLOCK = 32768
_HEADER = 7
_IDENT = b":W&B"
_MAGIC = 0xBEE1
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4

# History keys read as losses and steps, most specific first.
TRAIN_LOSS_KEYS = ("train/loss", "train_loss", "training_loss", "train/train_loss", "loss")
VAL_LOSS_KEYS = ("val/loss", "val_loss", "eval/loss", "eval_loss", "validation_loss", "valid/loss")
STEP_KEYS = ("train/global_step", "trainer/global_step", "global_step", "step", "_step")


@dataclass(frozen=True)
class StagedFile:
    """A file of an artifact in wandb's staging folder, waiting to be uploaded."""

    path: Path
    size: int | None  # None: the file is gone (its job's scratch was wiped?)
    artifact: str  # ``name:type``


@dataclass
class Series:
    """The first and last value of one history key, as logged (``value_json``)."""

    key: str
    first: float
    first_text: str
    last: float
    last_text: str


@dataclass
class History:
    train: Series | None = None
    val: Series | None = None
    step_key: str | None = None
    final_step: int | None = None
    rows: int = 0


@dataclass
class OfflineRun:
    path: Path
    run_id: str
    wandb_file: Path | None = None
    entity: str | None = None  # what the training passed to wandb.init (may be stale)
    project: str | None = None
    started: datetime | None = None
    staged: list[StagedFile] = field(default_factory=list)
    history: History = field(default_factory=History)
    wandb_synced: bool = False  # wandb's own marker: run-<id>.wandb.synced
    marker: dict[str, Any] | None = None  # hpcwrap's record of an earlier sync
    error: str | None = None  # why the transaction log could not be read (fully)


def is_offline_run_dir(path: Path) -> bool:
    return path.is_dir() and OFFLINE_DIR.match(path.name) is not None


def find_offline_runs(folder: Path) -> list[Path]:
    """The offline run folders in ``folder/wandb`` (and ``folder`` itself if it is a
    ``wandb`` folder), oldest first; symlinks such as ``latest-run`` are left out."""
    found: list[Path] = []
    for where in (folder / "wandb", folder):
        try:
            entries = sorted(where.iterdir())
        except OSError:
            continue
        for p in entries:
            if not p.is_symlink() and is_offline_run_dir(p) and p not in found:
                found.append(p)
    return sorted(found, key=lambda p: p.name)


def _records(path: Path) -> Iterator[bytes]:
    """The records of a W&B transaction log; stops quietly at a torn or corrupt tail
    (a run still writing, or killed mid-write)."""
    with open(path, "rb") as fh:
        head = fh.read(_HEADER)
        if len(head) < _HEADER or head[:4] != _IDENT or struct.unpack("<H", head[4:6])[0] != _MAGIC:
            raise ValueError(f"{path.name} is not a W&B transaction log")
        pos = _HEADER
        parts: list[bytes] = []
        while True:
            left = _BLOCK - pos % _BLOCK
            if left < _HEADER:  # a block's trailer: too short for a header
                if len(fh.read(left)) < left:
                    return
                pos += left
                continue
            hdr = fh.read(_HEADER)
            if len(hdr) < _HEADER:
                return
            crc, length, kind = struct.unpack("<IHB", hdr)
            pos += _HEADER
            if kind == 0 and length == 0:  # zero padding to the block's end
                fh.read(left - _HEADER)
                pos += left - _HEADER
                continue
            data = fh.read(length)
            pos += length
            if len(data) < length or zlib.crc32(data, zlib.crc32(bytes([kind]))) != crc:
                return
            if kind == _FULL:
                yield data
            elif kind == _FIRST:
                parts = [data]
            elif kind == _MIDDLE:
                parts.append(data)
            elif kind == _LAST:
                parts.append(data)
                yield b"".join(parts)
                parts = []


def record_class() -> Any:
    """wandb's protobuf ``Record`` (MissingExtraError without the wandb package)."""
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError as exc:
        raise MissingExtraError(
            "reading offline W&B runs needs the wandb package: pip install 'hpcwrap[wandb]'",
            extra="wandb",
        ) from exc
    return wandb_internal_pb2.Record  # type: ignore[attr-defined]


def _number(text: str) -> float | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class _HistoryReader:
    def __init__(self) -> None:
        self.series: dict[str, Series] = {}
        self.steps: dict[str, float] = {}
        self.rows = 0

    def add(self, items: Any) -> None:
        self.rows += 1
        for item in items:
            key = item.key or "/".join(item.nested_key)
            if key in STEP_KEYS:
                value = _number(item.value_json)
                if value is not None:
                    self.steps[key] = value
            if key not in TRAIN_LOSS_KEYS and key not in VAL_LOSS_KEYS:
                continue
            value = _number(item.value_json)
            if value is None:
                continue
            seen = self.series.get(key)
            if seen is None:
                self.series[key] = Series(key, value, item.value_json, value, item.value_json)
            else:
                seen.last, seen.last_text = value, item.value_json

    def history(self) -> History:
        def pick(keys: tuple[str, ...]) -> Series | None:
            return next((self.series[k] for k in keys if k in self.series), None)

        step_key = next((k for k in STEP_KEYS if k in self.steps), None)
        step = self.steps.get(step_key) if step_key else None
        final = int(step) if step is not None and math.isfinite(step) else None
        return History(pick(TRAIN_LOSS_KEYS), pick(VAL_LOSS_KEYS), step_key, final, self.rows)


def _staged(record: Any) -> list[StagedFile]:
    out = []
    for entry in record.manifest.contents:
        if not entry.local_path:
            continue
        path = Path(entry.local_path)
        # Only wandb's staging copies are transient; a local_path elsewhere is the
        # user's own file (an artifact added by reference or as immutable).
        if path.parent.name != "staging" or path.parent.parent.name != "artifacts":
            continue
        try:
            size: int | None = path.lstat().st_size
        except OSError:
            size = None
        out.append(StagedFile(path, size, f"{record.name}:{record.type}"))
    return out


def read_offline_run(path: Path) -> OfflineRun:
    """What an offline run folder holds (an unreadable log is said in ``error``)."""
    m = OFFLINE_DIR.match(path.name)
    run = OfflineRun(path=path, run_id=m.group("id") if m else path.name)
    logs = sorted(path.glob("run-*.wandb"))
    if not logs:
        run.error = "no run-*.wandb transaction log in it"
        return run
    run.wandb_file = logs[0]
    run.wandb_synced = any(Path(f"{p}.synced").exists() for p in logs)
    marker = path / HPCWRAP_MARKER
    if marker.is_file():
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
            run.marker = data if isinstance(data, dict) else None
        except (OSError, ValueError):
            run.marker = None
    record_cls = record_class()
    history = _HistoryReader()
    try:
        for raw in _records(run.wandb_file):
            rec = record_cls()
            rec.ParseFromString(raw)
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                r = rec.run
                run.run_id = r.run_id or run.run_id
                run.entity = r.entity or None
                run.project = r.project or None
                if r.HasField("start_time") and r.start_time.seconds:
                    stamp = r.start_time.seconds + r.start_time.nanos / 1e9
                    run.started = datetime.fromtimestamp(stamp, timezone.utc)
            elif kind == "history":
                history.add(rec.history.item)
            elif kind == "artifact":
                run.staged += _staged(rec.artifact)
    except (OSError, ValueError) as exc:
        run.error = f"reading {run.wandb_file.name} failed: {exc}"
    except Exception as exc:  # protobuf's DecodeError: a log from a far newer wandb
        run.error = f"reading {run.wandb_file.name} failed: {type(exc).__name__}: {exc}"
    run.history = history.history()
    return run


@dataclass(frozen=True)
class Sizes:
    total: int
    files: int
    largest: tuple[tuple[int, str], ...]  # (bytes, path relative to the folder)


def folder_sizes(path: Path, top: int = 5) -> Sizes:
    """Bytes and files under ``path`` (symlinks not followed) and the ``top`` largest."""
    total = files = 0
    sizes: list[tuple[int, str]] = []
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if not os.path.isfile(full) or os.path.islink(full):
                continue
            total += st.st_size
            files += 1
            sizes.append((st.st_size, os.path.relpath(full, path)))
    sizes.sort(key=lambda s: (-s[0], s[1]))
    return Sizes(total, files, tuple(sizes[:top]))


def fmt_bytes(n: int) -> str:
    """``195.3 KiB``; bytes below 1 KiB as ``812 B``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


__all__ = [
    "HPCWRAP_MARKER",
    "OFFLINE_DIR",
    "History",
    "OfflineRun",
    "Series",
    "Sizes",
    "StagedFile",
    "find_offline_runs",
    "fmt_bytes",
    "folder_sizes",
    "is_offline_run_dir",
    "read_offline_run",
    "record_class",
]
