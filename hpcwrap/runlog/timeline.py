"""``timeline.md``: one per run_logs folder, a numbered chronological index of its logs.

```
# ARX5 Multitask Timeline
1. `2026-02-20_train.md` — Friday, Feb 20th
2. `2026-02-21_train.md` — Saturday, Feb 21st
```

Adding runs inserts entries in chronological order: by the date in the file
name, and runs of the same date in the order they were created (a new run goes
after every run of its date; ``log reindex`` places a missing one by its
creation time, read from its sidecar). It never reorders or drops a line; when
an entry goes between others, the numbers after it are bumped so the list still
counts up. Anything else a person wrote (notes under an entry, other lines)
stays where it is.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from hpcwrap.runlog import layout
from hpcwrap.runlog.dates import timeline_date
from hpcwrap.runlog.indexfile import edit_lines, index_lock_path
from hpcwrap.runlog.locks import Lock, LockConfig

TIMELINE = layout.TIMELINE_FILE
_ENTRY = re.compile(r"^(\d+)\.(\s+)(.*)$")
_MD_NAME = re.compile(r"`?([^`\s]+\.md)`?")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})_")


def title_words(name: str) -> str:
    """``arx5_multitask`` -> ``ARX5 Multitask``; ``run_logs`` -> ``Run Logs``."""
    words = [w for w in re.split(r"[_\-\s]+", name) if w]
    out = []
    for word in words:
        if any(c.isdigit() for c in word):
            out.append(word.upper())
        else:
            out.append(word[:1].upper() + word[1:])
    return " ".join(out) or "Run Logs"


def timeline_header(folder: Path, root: Path) -> str:
    return f"# {title_words(Path(folder).name or Path(root).name)} Timeline"


def entry_text(name: str) -> str:
    """``\\`2026-02-20_train.md\\` — Friday, Feb 20th`` (without the number)."""
    m = _DATE.match(name)
    if m:
        try:
            day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            return f"`{name}`"
        return f"`{name}` — {timeline_date(day)}"
    return f"`{name}`"


def _entries(lines: list[str]) -> list[tuple[int, int, int, str | None]]:
    """(start, end, number, file name) of each numbered entry; end covers indented lines below."""
    out = []
    i = 0
    n = len(lines)
    while i < n:
        m = _ENTRY.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < n and lines[j][:1] in (" ", "\t") and lines[j].strip():
            j += 1
        found = _MD_NAME.search(m.group(3))
        out.append((i, j, int(m.group(1)), found.group(1) if found else None))
        i = j
    return out


def _day(name: str) -> str:
    m = _DATE.match(name)
    return m.group(0) if m else ""


def _position(
    existing: list[str],
    days: list[str],
    in_order: bool,
    name: str,
    created: Mapping[str, float],
) -> int:
    """Index of the entry a new entry for ``name`` goes after (-1: before them all)."""
    day, when = _day(name), created.get(name)

    def goes_after(k: int) -> bool:
        if days[k] != day:
            return days[k] < day
        theirs = created.get(existing[k])
        return when is None or theirs is None or theirs <= when

    if not in_order:
        return max((k for k in range(len(existing)) if goes_after(k)), default=-1)
    lo = bisect.bisect_left(days, day)
    hi = bisect.bisect_right(days, day)
    for k in range(hi - 1, lo - 1, -1):  # the same date: by creation, where known
        if goes_after(k):
            return k
    return lo - 1


def merge_entries(
    lines: list[str],
    names: list[str],
    header: str,
    created: Mapping[str, float] | None = None,
) -> list[str] | None:
    """``lines`` with entries for ``names`` that are not listed yet; None when nothing to add.

    ``created``: when each run was created (seconds), where known. A new entry goes
    after the last entry of an earlier or the same date, but before an entry of its
    date that was created after it (when both times are known).
    """
    created = created or {}
    entries = _entries(lines)
    listed = {e[3] for e in entries if e[3]}
    order = {n: i for i, n in enumerate(names)}
    new = sorted(
        {n for n in names if n not in listed},
        key=lambda n: (_day(n), created.get(n, float("inf")), order[n]),
    )
    if not new:
        return None
    if not lines:
        lines = [header]
    elif not entries and not any(ln.startswith("# ") for ln in lines):
        lines = [header, *lines]
    entries = _entries(lines)
    inserts: dict[int, list[str]] = {}
    existing = [e[3] or "" for e in entries]
    days = [_day(e) for e in existing]
    in_order = all(days[k] <= days[k + 1] for k in range(len(days) - 1))
    for name in new:
        pos = _position(existing, days, in_order, name, created)
        if pos >= 0:
            anchor = entries[pos][1] - 1
        elif entries:
            anchor = entries[0][0] - 1
        else:
            anchor = len(lines) - 1
            while anchor > 0 and not lines[anchor].strip():
                anchor -= 1
        inserts.setdefault(anchor, []).append(name)

    out: list[str] = []
    previous = 0  # number of the previous entry in the output

    def emit_new(name: str) -> None:
        nonlocal previous
        previous += 1
        out.append(f"{previous}. {entry_text(name)}")

    for name in inserts.get(-1, ()):
        emit_new(name)
    for i, line in enumerate(lines):
        m = _ENTRY.match(line)
        if m:
            number = int(m.group(1))
            if number <= previous:
                number = previous + 1
                line = f"{number}.{m.group(2)}{m.group(3)}"
            previous = number
        out.append(line)
        for name in inserts.get(i, ()):
            emit_new(name)
    return out


def add_runs(
    folder: Path,
    root: Path,
    names: list[str],
    *,
    locks: LockConfig | None = None,
    created: Mapping[str, float] | None = None,
) -> int:
    """Add ``names`` (``2026-03-11_train.md``, ...) to folder/timeline.md; returns how many.

    ``created`` (when each was created, where known) orders runs of the same date.
    """
    path = Path(folder) / TIMELINE
    header = timeline_header(folder, root)

    def add(lines: list[str]) -> int:
        before = len(_entries(lines))
        merged = merge_entries(lines, names, header, created)
        if merged is None:
            return 0
        lines[:] = merged
        return len(_entries(merged)) - before

    return edit_lines(path, Lock(index_lock_path(path), config=locks), add)
