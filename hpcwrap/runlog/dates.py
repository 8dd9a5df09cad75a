"""Timestamps as run logs show them: ISO for machines, the spec's human forms for people.

Everything hpcwrap renders is in UTC, on purpose: the login node and the
compute nodes that write one log may sit in different time zones, and a log
re-rendered on another machine must not shift its lines. ISO stamps carry
``+00:00``; Status lines (``2026-03-11 15:00 — ...``) and human dates are the
UTC wall clock.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def now() -> datetime:
    """The current time, tz-aware UTC, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def to_utc(dt: datetime) -> datetime:
    """``dt`` in UTC; a naive ``dt`` is taken as UTC already."""
    tz = dt.tzinfo
    if tz is timezone.utc:
        return dt
    if tz is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def iso(dt: datetime) -> str:
    """``2026-03-11T15:00:00+00:00`` (UTC, seconds; microseconds only when present)."""
    return to_utc(dt).isoformat()


def ordinal(day: int) -> str:
    """1st 2nd 3rd 4th ... 11th 12th 13th ... 21st 22nd 23rd ... 31st."""
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _as_date(d: date | datetime) -> date:
    if isinstance(d, datetime):
        return to_utc(d).date()
    return d


def human_date(d: date | datetime) -> str:
    """``Wednesday, Feb 25th, 2026``."""
    day = _as_date(d)
    return f"{_DAYS[day.weekday()]}, {_MONTHS[day.month - 1]} {ordinal(day.day)}, {day.year}"


def timeline_date(d: date | datetime) -> str:
    """``Friday, Feb 20th`` (timeline entries leave the year to the file name)."""
    day = _as_date(d)
    return f"{_DAYS[day.weekday()]}, {_MONTHS[day.month - 1]} {ordinal(day.day)}"


def status_stamp(dt: datetime) -> str:
    """``2026-03-11 15:00``: the minute stamp that starts a Status line (UTC)."""
    return to_utc(dt).strftime("%Y-%m-%d %H:%M")


def format_runtime(seconds: float) -> str:
    """``HH:MM:SS``; hours may exceed 24; negative or NaN durations read as 00:00:00."""
    if seconds != seconds or seconds <= 0:  # NaN compares unequal to itself
        return "00:00:00"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


_LOOSE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)


def parse_timestamp(text: str) -> datetime | None:
    """Read the timestamps people and hpcwrap write; ``None`` when it is not one.

    Accepts ISO 8601 (``2026-03-11T15:00:00+00:00``), ``2026-03-12 15:00 UTC``,
    ``2026-03-12 15:00`` (taken as UTC, like every stamp hpcwrap writes) and a
    bare date. Backticks around the value are ignored.
    """
    value = text.strip().strip("`").strip()
    if not value:
        return None
    match = _LOOSE.match(value)
    if match:
        year, month, day, hour, minute, second, frac, zone = match.groups()
        try:
            dt = datetime(
                int(year),
                int(month),
                int(day),
                int(hour),
                int(minute),
                int(second or 0),
                int((frac or "0").ljust(6, "0")),
            )
        except ValueError:
            return None
        tz = timezone.utc
        if zone and zone.upper() not in ("Z", "UTC", "GMT"):
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        return dt.replace(tzinfo=tz)
    try:
        day_only = date.fromisoformat(value)
    except ValueError:
        return None
    return datetime(day_only.year, day_only.month, day_only.day, tzinfo=timezone.utc)
