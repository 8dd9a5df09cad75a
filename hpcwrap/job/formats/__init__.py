"""Reading progress out of training output: one line at a time.

``core.LineParser`` reads a line with the framework entries of ``frameworks.py`` (one
declarative ``entry.Entry`` per framework: its train and val lines, completed and
started saves, step semantics), then with generic readers (tqdm bars, HF-style dicts,
``key: value`` text, JSON lines), errors, tracebacks and W&B lines.
"""

from __future__ import annotations

from hpcwrap.job.formats.core import (
    ANSI,
    ERROR_TEXT_MAX,
    KEYWORDS,
    LineParser,
    Observation,
    parse_number,
    strip_line,
)
from hpcwrap.job.formats.entry import Entry
from hpcwrap.job.formats.frameworks import ENTRIES

__all__ = [
    "ANSI",
    "ENTRIES",
    "ERROR_TEXT_MAX",
    "KEYWORDS",
    "Entry",
    "LineParser",
    "Observation",
    "parse_number",
    "strip_line",
]
