"""The exception hierarchy and the one exit-code table.

The library raises these; only ``hpcwrap.cli`` turns them into messages and
exit codes. Each exception subclasses the closest built-in so callers that
know nothing of hpcwrap can still catch it sensibly.
"""

from __future__ import annotations

from pathlib import Path


class HpcwrapError(Exception):
    """Base of every error hpcwrap raises on purpose."""


class UsageError(HpcwrapError, ValueError):
    """The command line or an option value is wrong."""


class ConfigError(HpcwrapError, ValueError):
    """A config file (hpcwrap.toml, [tool.hpcwrap], a --config file) is unusable."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self._path = path

    @property
    def path(self) -> Path | None:
        return self._path


class RunLogError(HpcwrapError):
    """A run log or its sidecar could not be read or written."""


class RunNotFoundError(RunLogError, FileNotFoundError):
    """No run log matches what was asked for."""


class AmbiguousRunError(RunLogError, LookupError):
    """A run prefix matches more than one run log."""

    def __init__(self, message: str, candidates: list[Path]) -> None:
        super().__init__(message)
        self._candidates = candidates

    @property
    def candidates(self) -> list[Path]:
        return list(self._candidates)


class RunLogConflictError(RunLogError):
    """The run log could not be merged safely; the update went to a conflict file."""

    def __init__(self, message: str, original: Path, conflict: Path) -> None:
        super().__init__(message)
        self._original = original
        self._conflict = conflict

    @property
    def original(self) -> Path:
        return self._original

    @property
    def conflict(self) -> Path:
        return self._conflict


class LockTimeoutError(HpcwrapError, TimeoutError):
    """A run-log or index lock was not acquired in time."""

    def __init__(self, message: str, lock_file: Path, holder: str | None = None) -> None:
        super().__init__(message)
        self._lock_file = lock_file
        self._holder = holder

    @property
    def lock_file(self) -> Path:
        return self._lock_file

    @property
    def holder(self) -> str | None:
        return self._holder


class SchedulerError(HpcwrapError, RuntimeError):
    """Talking to the scheduler failed."""


class SchedulerUnavailableError(SchedulerError, FileNotFoundError):
    """The scheduler's commands (sbatch, squeue, ...) are not installed or not reachable."""


class SubmitError(SchedulerError):
    """The scheduler refused the submission; ``message`` is what it said."""

    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self._returncode = returncode

    @property
    def returncode(self) -> int | None:
        return self._returncode


class CodeStateError(HpcwrapError, RuntimeError):
    """Recording the git state (commit, diff, tag) failed."""


class WrapperError(HpcwrapError, RuntimeError):
    """The in-job wrapper could not start or supervise the command."""


# The one exit-code table. Looked up along the exception's MRO, most specific
# first, so a new subclass inherits its parent's code unless listed here.
# 2 matches argparse's own code for usage errors.
EXIT_CODES: dict[type[BaseException], int] = {
    UsageError: 2,
    ConfigError: 3,
    RunNotFoundError: 4,
    AmbiguousRunError: 5,
    RunLogConflictError: 6,
    LockTimeoutError: 7,
    SubmitError: 8,
    SchedulerUnavailableError: 9,
    SchedulerError: 10,
    CodeStateError: 11,
    WrapperError: 12,
    RunLogError: 13,
    HpcwrapError: 1,
}


def exit_code_for(exc: BaseException) -> int:
    """The exit code the CLI uses for ``exc`` (1 for anything not in the table)."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1
