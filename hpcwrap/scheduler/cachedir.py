"""Where hpcwrap keeps a user's small caches: ``$XDG_CACHE_HOME/hpcwrap`` (``~/.cache``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def user_cache_dir(environ: Mapping[str, str]) -> Path | None:
    """``$XDG_CACHE_HOME/hpcwrap``, else ``$HOME/.cache/hpcwrap``; None without either."""
    base = environ.get("XDG_CACHE_HOME") or (
        str(Path(environ["HOME"]) / ".cache") if environ.get("HOME") else ""
    )
    return Path(base) / "hpcwrap" if base else None
