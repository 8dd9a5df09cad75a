"""Errors a line reports (CUDA out of memory, NCCL timeouts and errors, Slurm time-limit,
oom-kill and memory-limit lines, crashes) and Python tracebacks with their exception line."""

from __future__ import annotations

import re

from hpcwrap.reading.formats.observation import ERROR_TEXT_MAX
from hpcwrap.runlog import endings

# Lower-case words one of which every error line below contains (a cheap first check).
_ERROR_HINTS: tuple[str, ...] = (
    "time limit",
    "oom",
    "out of memory",
    "outofmemory",
    "memory limit",
    "cancelled",
    "nccl",
    "watchdog",
    "killed",
    "segmentation",
    "fatal python",
    "bus error",
    "core dumped",
)

# (kind, regex) — the first that matches names the error. Slurm's and the kernel's own
# lines come from runlog/endings.py, where the epilog reads the same ones.
_ERRORS: tuple[tuple[str, re.Pattern[str]], ...] = (
    *((kind, endings.LINES_TEXT[kind]) for kind, _, _ in endings.SLURM_LINES),
    (
        "cuda_oom",
        re.compile(
            r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory"
            r"|RESOURCE_EXHAUSTED: Out of memory",
        ),
    ),
    (
        "nccl_timeout",
        re.compile(
            r"Watchdog caught collective operation timeout|NCCL[^\n]{0,80}\btimed out\b"
            r"|\bNCCL timeout\b",
        ),
    ),
    (
        "nccl_error",
        re.compile(
            r"NCCL error|ncclInternalError|ncclSystemError|ncclUnhandledCudaError"
            r"|ncclRemoteError|NCCL communicator was aborted"
        ),
    ),
    ("killed", re.compile(r"^(?:.*line \d+:\s+\d+\s+)?Killed\b")),
    ("crash", re.compile(r"Segmentation fault|Fatal Python error|Bus error|core dumped")),
)

# Anywhere in the line: it is often glued behind a progress bar that had no newline.
_TRACEBACK = re.compile(r"Traceback \(most recent call last\):")
_TB_CHAIN = re.compile(
    r"^(?:During handling of the above exception|The above exception was the direct cause)"
)
# The exception line that ends a traceback: "torch.OutOfMemoryError: CUDA out of ..."
_EXC_LINE = re.compile(r"^(?P<exc>(?:[A-Za-z_]\w*\.)*(?P<name>[A-Z]\w*))(?P<colon>:(?:\s.*)?)?$")
_EXC_SUFFIX = re.compile(r"(?:Error|Exception|Interrupt|Exit|Iteration|Warning|Fault|Failure)$")
_NOT_EXC = frozenset({"INFO", "WARNING", "WARN", "DEBUG", "ERROR", "CRITICAL", "NOTE", "TODO"})
_TB_MAX_LINES = 400  # a traceback longer than this is given up on (bounded state)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_TEXT_MAX else text[: ERROR_TEXT_MAX - 3] + "..."


class _Traceback:
    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines = 0
