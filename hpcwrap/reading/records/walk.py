"""The bounded walk of the working folder: breadth first, to DEPTH levels, within a time and
entry budget."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hpcwrap.reading.records.disk import _ACC_DIR, _DS_DIR, _HF_DIR, _TMP

BUDGET_S = 2.0  # wall time one reading may take
ENTRIES_MAX = 5000  # directory entries looked at
DEPTH = 5  # levels below the working folder (lightning_logs/version_0/checkpoints/x.ckpt)
_SKIP_DIRS = {"wandb", "__pycache__", "node_modules", ".git", "site-packages"}


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
