"""The exception hierarchy and the one exit-code table.

The library raises these; only ``hpcwrap.cli`` turns them into messages and
exit codes. Each exception subclasses the closest built-in so callers that
know nothing of hpcwrap can still catch it sensibly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar


class HpcwrapError(Exception):
    """Base of every error hpcwrap raises on purpose.

    ``meaning`` is the few words ``hpcwrap --help`` shows beside the exit code
    (see ``EXIT_CODES``); every class listed there sets its own.
    """

    meaning: ClassVar[str] = "other hpcwrap error"


class UsageError(HpcwrapError, ValueError):
    """The command line or an option value is wrong."""

    meaning: ClassVar[str] = "usage error"


class AmbiguousOptionError(UsageError):
    """A long-option prefix that matches several sbatch options (sbatch refuses it too)."""

    def __init__(self, spelled: str, candidates: Sequence[str]) -> None:
        listing = " ".join(f"--{c}" for c in candidates)
        super().__init__(f"option '--{spelled}' is ambiguous for sbatch; possibilities: {listing}")
        self._candidates = tuple(candidates)

    @property
    def candidates(self) -> tuple[str, ...]:
        return self._candidates


class ConfigError(HpcwrapError, ValueError):
    """A config file (hpcwrap.toml, [tool.hpcwrap], a --config file) is unusable."""

    meaning: ClassVar[str] = "config error"

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self._path = path

    @property
    def path(self) -> Path | None:
        return self._path


class RunLogError(HpcwrapError):
    """A run log or its sidecar could not be read or written."""

    meaning: ClassVar[str] = "run-log error"


class RunNotFoundError(RunLogError, FileNotFoundError):
    """No run log matches what was asked for."""

    meaning: ClassVar[str] = "run not found"


class AmbiguousRunError(RunLogError, LookupError):
    """A run prefix matches more than one run log."""

    meaning: ClassVar[str] = "ambiguous run"

    def __init__(self, message: str, candidates: list[Path]) -> None:
        super().__init__(message)
        self._candidates = candidates

    @property
    def candidates(self) -> list[Path]:
        return list(self._candidates)


class RunLogConflictError(RunLogError):
    """The run log could not be merged safely; the update went to a conflict file."""

    meaning: ClassVar[str] = "run-log conflict (update written beside it)"

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


class UnparseableError(RunLogError, ValueError):
    """The text is not a run log hpcwrap can merge into safely (the reason is the message)."""


class LockTimeoutError(HpcwrapError, TimeoutError):
    """A run-log or index lock was not acquired in time."""

    meaning: ClassVar[str] = "lock timeout"

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

    meaning: ClassVar[str] = "other scheduler error"


class SchedulerUnavailableError(SchedulerError, FileNotFoundError):
    """The scheduler's commands (sbatch, squeue, ...) are not installed or not reachable."""

    meaning: ClassVar[str] = "Slurm commands missing"


class SubmitError(SchedulerError):
    """The scheduler refused the submission; ``message`` is what it said."""

    meaning: ClassVar[str] = "sbatch refused the job"

    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self._returncode = returncode

    @property
    def returncode(self) -> int | None:
        return self._returncode


class TransitionError(RunLogError, ValueError):
    """Facts that cannot describe a change of a run's state (an unknown state word, say)."""


class ResumeError(HpcwrapError, RuntimeError):
    """A run cannot be resumed or chained (no job script, a bad --resume-arg, ...)."""

    meaning: ClassVar[str] = "cannot resume"


class HookError(HpcwrapError, RuntimeError):
    """A Slurm prolog/epilog hook refused its input (the hook reports it and exits 0)."""


class HookDeadline(BaseException):
    """A hook ran out of its own time limit (BaseException: no ``except Exception``
    on the way out may swallow it)."""


class CodeStateError(HpcwrapError, RuntimeError):
    """Recording the git state (commit, diff, tag) failed."""

    meaning: ClassVar[str] = "git/code-state error"


class WrapperError(HpcwrapError, RuntimeError):
    """The in-job wrapper could not start or supervise the command."""

    meaning: ClassVar[str] = "wrapper error"


class WandbRefusedError(HpcwrapError, ValueError):
    """``hpcwrap wandb sync`` refused before uploading anything (destination, size, state)."""

    meaning: ClassVar[str] = "W&B sync refused (nothing uploaded)"


class WandbKeyError(WandbRefusedError, PermissionError):
    """No usable W&B key file: missing, empty, or readable by group or others."""

    meaning: ClassVar[str] = "W&B key file missing or unsafe"


class WandbSyncError(HpcwrapError, RuntimeError):
    """``wandb beta sync`` failed, timed out or printed no run URL (nothing marked synced)."""

    meaning: ClassVar[str] = "W&B sync failed"


class MissingExtraError(HpcwrapError, ImportError):
    """A command needs an optional extra that is not installed (``hpcwrap[plots]``)."""

    def __init__(self, message: str, *, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


class PublishError(HpcwrapError):
    """A checkpoint may not be published yet: the passport/signoff gate failed, or a copy
    did not verify (the message names the file and the problem)."""

    meaning: ClassVar[str] = "publish gate refused"


class SensitiveDataError(HpcwrapError):
    """``hpcwrap export --check``: a file still holds something a public log may not."""

    meaning: ClassVar[str] = "sensitive data left in a file"


class RunLogWarning(UserWarning):
    """Something in a sidecar was damaged and has been recovered from."""


# The one exit-code table. Looked up along the exception's MRO, most specific
# first, so a new subclass inherits its parent's code unless listed here.
# 2 matches argparse's own code for usage errors.
EXIT_CODES: dict[type[HpcwrapError], int] = {
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
    ResumeError: 14,
    WandbKeyError: 16,
    WandbRefusedError: 15,
    WandbSyncError: 17,
    PublishError: 18,
    SensitiveDataError: 19,
    HpcwrapError: 1,
}


# Exit codes that are not an error class: a handler's success, and Ctrl-C.
EXIT_OK = 0
EXIT_INTERRUPTED = 130


def exit_code_table() -> list[tuple[int, str]]:
    """(code, meaning) for every exit code the CLI itself uses, in order: --help shows these."""
    rows = [(code, cls.meaning) for cls, code in EXIT_CODES.items()]
    return sorted([(EXIT_OK, "success"), *rows, (EXIT_INTERRUPTED, "interrupted")])


def exit_code_for(exc: BaseException) -> int:
    """The exit code the CLI uses for ``exc`` (1 for anything not in the table)."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1
