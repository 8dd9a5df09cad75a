"""``run_logs/experiments.md``: the comparison table of experiment runs.

```
# Experiments
| run | description | val_loss | status | notes |
|-----|-------------|----------|--------|-------|
| 2026-03-11_train | front cam, default LR | 0.028 | keep | baseline |
```

hpcwrap fills ``run``, ``description`` and ``val_loss``, and ``status`` only
with ``submit failed`` for a run that never ran and ``chain stopped`` for a resume
chain stopped before the training's end. A cell is only (re)written
while it is empty or still holds what hpcwrap last wrote there, so a person's
verdict in ``status`` (keep, discard, ...) and ``notes`` are never touched.
Columns a person added are kept (new rows get them empty).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hpcwrap.runlog import endings, layout
from hpcwrap.runlog.endings import JobState
from hpcwrap.runlog.indexfile import edit_lines, index_lock_path
from hpcwrap.runlog.locks import Lock, LockConfig
from hpcwrap.runlog.model import RunState
from hpcwrap.runlog.render import fmt_float, one_line

T = TypeVar("T")

EXPERIMENTS = layout.EXPERIMENTS_FILE
COLUMNS = ("run", "description", "val_loss", "status", "notes")
FILLED = ("description", "val_loss", "status")
NEVER_RAN = "submit failed"
CHAIN_STOPPED = "chain stopped"  # a resume chain stopped before the training's end
HEADER = [
    "# Experiments",
    "| " + " | ".join(COLUMNS) + " |",
    "|" + "|".join("-" * (len(c) + 2) for c in COLUMNS) + "|",
]
_SPLIT = re.compile(r"(?<!\\)\|")
_LINK = re.compile(r"^\[([^\]]*)\]\([^)]*\)$")


def wants_row(state: RunState) -> bool:
    return state.run_type.strip().lower() == "experiment"


def escape_cell(text: str) -> str:
    return one_line(text).replace("|", "\\|")


def row_values(state: RunState) -> dict[str, str]:
    loss = state.results.end_val_loss
    val = "" if loss is None else fmt_float(loss) if not math.isinf(loss) else repr(loss)
    printed = state.results.end_val_loss_text
    if loss is not None and printed and printed.strip():
        val = escape_cell(printed)  # as the training printed it, like the run log shows it
    never_ran = bool(state.jobs) and all(j.state == JobState.SUBMIT_FAILED for j in state.jobs)
    chain = state.chain
    whole = endings.run_state(
        state.jobs[-1].state if state.jobs else None,
        chain.stopped if chain is not None else None,
        chain.done if chain is not None else False,
    )
    status = NEVER_RAN if never_ran else CHAIN_STOPPED if whole == endings.STOPPED else ""
    return {"description": escape_cell(state.description), "val_loss": val, "status": status}


def cells(line: str) -> list[str]:
    parts = _SPLIT.split(line.strip())
    if parts and parts[0].strip() == "":
        parts = parts[1:]
    if parts and parts[-1].strip() == "":
        parts = parts[:-1]
    return [p.strip() for p in parts]


def run_cell(text: str) -> str:
    value = text.strip().strip("`").strip()
    m = _LINK.match(value)
    return m.group(1).strip("`") if m else value


def _row_line(values: list[str]) -> str:
    return "| " + " | ".join(values) + " |"


class Table:
    """The first table in experiments.md whose header has a ``run`` column."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.header = -1
        self.columns: list[str] = []
        self.rows: dict[str, int] = {}  # run -> line index
        self.end = -1  # index of the last table line
        for i, line in enumerate(lines):
            if line.lstrip().startswith("|"):
                cols = [c.lower() for c in cells(line)]
                if "run" in cols:
                    self.header = i
                    self.columns = cols
                    break
        if self.header < 0:
            return
        self.end = self.header
        i = self.header + 1
        while i < len(lines) and lines[i].lstrip().startswith("|"):
            self.end = i
            row = cells(lines[i])
            if i == self.header + 1 and all(set(c) <= set("-: ") for c in row):
                i += 1
                continue
            run_idx = self.columns.index("run")
            if run_idx < len(row):
                self.rows.setdefault(run_cell(row[run_idx]), i)
            i += 1

    def ensure(self) -> None:
        if self.header >= 0:
            return
        lines = self.lines
        while lines and not lines[-1].strip():
            lines.pop()
        if lines:
            lines.append("")
            lines.extend(HEADER[1:])
        else:
            lines.extend(HEADER)
        self.__init__(lines)  # type: ignore[misc]

    def fill(self, run: str, values: dict[str, str], last: dict[str, str] | None) -> dict[str, str]:
        """Add or refresh ``run``'s row; returns the cells hpcwrap now stands behind."""
        self.ensure()
        idx = self.rows.get(run)
        if idx is None:
            if last is not None and last.get("_row") == "written":
                return last  # the person removed the row: leave it out
            row = ["" for _ in self.columns]
            row[self.columns.index("run")] = run
            for col in FILLED:
                if col in self.columns and col in values:
                    row[self.columns.index(col)] = values[col]
            self.end += 1
            self.lines.insert(self.end, _row_line(row))
            self.rows[run] = self.end
            return {**values, "_row": "written"}
        row = cells(self.lines[idx])
        row += [""] * (len(self.columns) - len(row))
        kept = dict(values)
        changed = False
        for col in FILLED:
            if col not in self.columns or col not in values:
                continue
            k = self.columns.index(col)
            current = row[k]
            mine = (last or {}).get(col)
            if current == values[col]:
                continue
            if current == "" or current == mine:
                row[k] = values[col]
                changed = True
            # else: a person's value, theirs now (it differs from what hpcwrap wrote)
        if changed:
            self.lines[idx] = _row_line(row)
        kept["_row"] = "written"
        return kept


def _edit(root: Path, fn: Callable[[Table], T], locks: LockConfig | None) -> T:
    """``fn`` on root/experiments.md's table, under its lock; written back if it changed."""
    path = Path(root) / EXPERIMENTS
    lock = Lock(index_lock_path(path), config=locks)
    return edit_lines(path, lock, lambda lines: fn(Table(lines)))


def refresh_run(
    root: Path,
    run_id: str,
    state: RunState,
    index: dict[str, Any],
    *,
    locks: LockConfig | None = None,
) -> None:
    """Bring ``run_id``'s row in root/experiments.md up to date.

    ``index`` (the run's sidecar keeps it) remembers what hpcwrap last wrote.
    """
    values = row_values(state)
    last = index.get("experiments")
    if isinstance(last, dict) and all(last.get(k) == v for k, v in values.items()):
        return  # nothing new to say; do not even take the lock
    written = _edit(root, lambda table: table.fill(run_id, values, last), locks)
    index["experiments"] = written


def add_rows(
    root: Path, rows: list[tuple[str, dict[str, str]]], *, locks: LockConfig | None = None
) -> int:
    """Rows for runs not in the table yet, and empty cells filled (``log reindex``)."""

    def fn(table: Table) -> int:
        added = 0
        for run, values in rows:
            had = run in table.rows
            table.fill(run, values, None)
            added += 0 if had else 1
        return added

    return _edit(root, fn, locks)
