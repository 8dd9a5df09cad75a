"""What the in-job wrapper gets handed at start instead of importing it.

job/ runs on the compute node and imports nothing of the login side (submit/) or the
hooks: the walltime-resume chain's in-job steps come in through ``Chain``, which the
CLI wires to ``submit.resume.JobChain`` (``WrapperOptions.chain``). Without one (tests,
a wrapper outside ``hpcwrap run``) no chain step runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from hpcwrap.runlog.handle import RunLog

Record = Callable[..., Any]  # LogSink.record: (facts, *, event=None, data=None) -> bool


class ChainStart(Protocol):
    """How this job of a chain starts: train (maybe resumed) or stop."""

    @property
    def stop(self) -> bool: ...  # the chain stopped: this job must not train
    @property
    def argv(self) -> Sequence[str] | None: ...  # the command with the resume argument
    @property
    def child_env(self) -> Mapping[str, str] | None: ...  # the training's environment
    @property
    def resumed(self) -> tuple[int, float | None] | None: ...  # (jobs so far, first loss)
    @property
    def successor(self) -> str | None: ...  # the successor job this job submitted


class Chain(Protocol):
    def begin(
        self,
        run: RunLog,
        job_id: str,
        argv: Sequence[str],
        environ: Mapping[str, str],
        record: Record,
        warn: Callable[[str], None],
    ) -> ChainStart | None:
        """Before the command starts: check the guards, open the resumed block, submit
        the successor. None: not a chained run."""
        ...

    def end(
        self,
        run: RunLog,
        job_id: str | None,
        final: str,
        unsure: str | None = None,
        submitted: str | None = None,
    ) -> None:
        """After the end is recorded: stop the chain or cancel the waiting successor
        (``unsure``: why the end is a guess; the successor is then left to check it;
        ``submitted``: the successor this job submitted, known even if the log is not)."""
        ...


__all__ = ["Chain", "ChainStart", "Record"]
