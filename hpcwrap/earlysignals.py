"""A walltime warning that arrives while ``hpcwrap run`` is still starting.

job.sh ignores the warning signal until the wrapper handles it (an early one must not
kill the batch shell), and an ignored signal is dropped: one that came during the
wrapper's own start-up (Python, its imports, opening the run log: a second or more on a
loaded node) was lost, and the training was killed at its limit instead of saving
(seen in CI: Slurm may send the warning at once). ``catch`` runs first thing in
``python -m hpcwrap`` and turns the inherited ignore into a note of the arrival; the
supervisor takes those notes as signals received before the command started.
Imports nothing of hpcwrap: it must run before the rest loads.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from types import FrameType

BATCH_IGNORED_ENV = "HPCWRAP_BATCH_IGNORED"  # as runlog/layout.py names it for job.sh
ARRIVED: list[int] = []  # signals noted before the supervisor's own handlers


def _note(signum: int, frame: FrameType | None) -> None:
    ARRIVED.append(signum)


def catch(environ: Mapping[str, str]) -> int | None:
    """Note the batch script's ignored signal instead of dropping it; the signal, or None."""
    name = (environ.get(BATCH_IGNORED_ENV) or "").upper().removeprefix("SIG")
    sig = getattr(signal, f"SIG{name}", None) if name.isalnum() else None
    if not isinstance(sig, signal.Signals) or signal.getsignal(sig) is not signal.SIG_IGN:
        return None
    signal.signal(sig, _note)
    return int(sig)


def is_catcher(handler: object) -> bool:
    return handler is _note


__all__ = ["ARRIVED", "BATCH_IGNORED_ENV", "catch", "is_catcher"]
