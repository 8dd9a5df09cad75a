"""Reading progress out of training output: one line at a time.

``core.LineParser`` reads a line with the framework entries of ``frameworks.py`` (one
declarative ``entry.Entry`` per framework: its train and val lines, completed and
started saves, step semantics), then with generic readers (tqdm bars, HF-style dicts,
``key: value`` text, JSON lines), errors, tracebacks and W&B lines. ``text.py`` strips a
line and parses numbers, ``observation.py`` holds ``Observation``, ``generic.py``,
``events.py`` and ``errors.py`` the readers' patterns.
"""

from __future__ import annotations

from hpcwrap.reading.formats.core import LineParser
from hpcwrap.reading.formats.entry import Entry
from hpcwrap.reading.formats.frameworks import ENTRIES
from hpcwrap.reading.formats.observation import ERROR_TEXT_MAX, Observation
from hpcwrap.reading.formats.text import (
    ANSI,
    KEYWORDS,
    NOT_METRIC_PREFIXES,
    parse_number,
    strip_line,
)

__all__ = [
    "ANSI",
    "ENTRIES",
    "ERROR_TEXT_MAX",
    "KEYWORDS",
    "NOT_METRIC_PREFIXES",
    "Entry",
    "LineParser",
    "Observation",
    "parse_number",
    "strip_line",
]
