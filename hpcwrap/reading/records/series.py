"""A loss series read from a framework's file, bounded like the console's."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hpcwrap.reading.progress import HISTORY_MAX

STATE_MAX_BYTES = 64 << 20  # a trainer_state.json / metrics.csv bigger than this is skipped


@dataclass(frozen=True)
class LossSeries:
    """(step, value, text as written) points from one file, bounded like the console's."""

    points: tuple[tuple[int | None, float, str], ...]
    source: str  # the file, as ``where`` shows it
    # Written as the run goes (metrics.csv, event files): complete to the end. Not
    # live: a copy as of a save (trainer_state.json), points logged after it are missing.
    live: bool = True


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
