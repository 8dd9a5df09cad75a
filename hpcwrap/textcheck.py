"""Text that must go into the run log's UTF-8 files, checked before anything is written.

Linux hands a file name or argument with bytes that are not UTF-8 to Python as surrogate
escapes (``b"\\xff"`` -> ``"\\udcff"``); the run log, state.json and events.jsonl are UTF-8
and cannot hold them. hpcwrap refuses such a value with its name and the byte, before it
creates a file, instead of failing half way with a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

from hpcwrap.errors import UsageError

# A task or group becomes part of file names: <date>_<task>_<n>.md, its sidecar folder,
# temporary and lock names beside it. NAME_MAX is 255 bytes on Linux file systems.
NAME_BYTES_MAX = 120


def bad_byte(value: str) -> int | None:
    """The first byte of ``value`` that is not UTF-8 (from a surrogate escape), or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return value[exc.start].encode("utf-8", "surrogateescape")[0]
    return None


def require_utf8(what: str, value: str) -> None:
    """Refuse ``value`` (``what``: how the user knows it) when it holds non-UTF-8 bytes."""
    byte = bad_byte(value)
    if byte is not None:
        shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise UsageError(
            f"{what} '{shown}' is not valid UTF-8 (byte \\x{byte:02x}): the run log is UTF-8 "
            "text and cannot record it; rename it (or pass the value another way)"
        )


def require_all_utf8(what: str, values: Iterable[str]) -> None:
    for value in values:
        require_utf8(what, value)


def require_name_length(what: str, value: str) -> None:
    """A task or group name short enough for the file names made from it."""
    size = len(value.encode("utf-8", "surrogateescape"))
    if size > NAME_BYTES_MAX:
        raise UsageError(
            f"{what} is {size} bytes long: at most {NAME_BYTES_MAX} (it names the run log's "
            f"file and folder): {value[:40]!r}..."
        )


__all__ = ["NAME_BYTES_MAX", "bad_byte", "require_all_utf8", "require_name_length", "require_utf8"]
