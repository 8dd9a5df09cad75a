"""``timeline.md``: one per run_logs folder, a numbered chronological index of its logs.

```
# ARX5 Multitask Timeline
1. `2026-02-20_train.md` — Friday, Feb 20th
2. `2026-02-21_train.md` — Saturday, Feb 21st
```

Adding runs inserts entries in date order (file names sort by date) and
never reorders or drops a line; when an entry goes between others, the
numbers after it are bumped so the list still counts up. Anything else a
person wrote (notes under an entry, other lines) stays where it is.
"""

from __future__ import annotations

import bisect
import re
from datetime import date
from pathlib import Path

from hpcwrap.runlog.dates import timeline_date
from hpcwrap.runlog.indexfile import edit_lines, index_lock_path
from hpcwrap.runlog.locks import Lock, LockConfig

TIMELINE = "timeline.md"
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


def merge_entries(lines: list[str], names: list[str], header: str) -> list[str] | None:
    """``lines`` with entries for ``names`` that are not listed yet; None when nothing to add."""
    entries = _entries(lines)
    listed = {e[3] for e in entries if e[3]}
    new = sorted({n for n in names if n not in listed})
    if not new:
        return None
    if not lines:
        lines = [header]
    elif not entries and not any(ln.startswith("# ") for ln in lines):
        lines = [header, *lines]
    entries = _entries(lines)
    inserts: dict[int, list[str]] = {}
    existing = [e[3] or "" for e in entries]
    is_sorted = all(existing[k] <= existing[k + 1] for k in range(len(existing) - 1))
    for name in new:
        if is_sorted:
            pos = bisect.bisect_right(existing, name) - 1
        else:
            pos = max((k for k, e in enumerate(existing) if e <= name), default=-1)
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


def add_runs(folder: Path, root: Path, names: list[str], *, locks: LockConfig | None = None) -> int:
    """Add ``names`` (``2026-03-11_train.md``, ...) to folder/timeline.md; returns how many."""
    path = Path(folder) / TIMELINE
    header = timeline_header(folder, root)

    def add(lines: list[str]) -> int:
        before = len(_entries(lines))
        merged = merge_entries(lines, names, header)
        if merged is None:
            return 0
        lines[:] = merged
        return len(_entries(merged)) - before

    return edit_lines(path, Lock(index_lock_path(path), config=locks), add)
