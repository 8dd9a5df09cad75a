"""Checkpoints on disk in the frameworks' layouts, and when each is complete (the rules
are in the package's docstring)."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from hpcwrap.reading.records.hf import _hf_state

_ZIP_TAIL = 64 << 10

_TMP = re.compile(r"(^\.?tmp[-_.]|\.(tmp|part|partial|incomplete)$|[-_.]tmp$)", re.IGNORECASE)
_HF_DIR = re.compile(r"^checkpoint-(\d+)$")
_ACC_DIR = re.compile(r"^(step|checkpoint)_(\d+)$")
_DS_DIR = re.compile(r"^global_step(\d+)$")
_CKPT_STEP = re.compile(r"(?:^|[-_])step=(\d+)")
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth")

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
