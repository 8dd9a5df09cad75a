"""What ties a job to the world outside the wrapper: the node hooks' spool and the
walltime-resume chain's in-job steps (handed in through ``job/seams.Chain``).

``register_for_hooks`` names the run log in the node's hook spool, so the epilog finds
the job even without an hpcwrap comment. ``ChainLink`` runs the chain's steps: before
the command (guards, the resumed block, the successor; maybe "do not train") and after
the end (stop the chain or cancel the waiting successor).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from hpcwrap.job.jobenv import JobEnv
from hpcwrap.job.seams import Chain
from hpcwrap.job.sink import LogSink, warn
from hpcwrap.runlog import spool
from hpcwrap.runlog.spool import register_job


def register_for_hooks(
    env: JobEnv,
    sink: LogSink,
    environ: Mapping[str, str],
    status: Callable[[str, str, dict[str, str]], None],
    err: TextIO | None = None,
) -> None:
    """Name the run log in the node's hook spool (``status``: how a warning reaches Status)."""
    if not env.in_slurm or sink.run is None:
        return
    try:
        why = register_job(environ, sink.run.path)
    except Exception as exc:  # never fatal
        why = spool.NotRegistered(repr(exc))
    if why is not None and not why.quiet:  # said in the log: the epilog will not see it
        text = (
            f"warning: not registered with the node hooks ({why}): if this job is killed, "
            "its end reaches the log only through its follow-up job or `hpcwrap poll`"
        )
        warn(text, err)
        status(text, "hooks_unregistered", {"why": str(why)})


@dataclass
class ChainLink:
    """One job's part in a resume chain (``factory``: the CLI's ``JobChain``; None: no
    chain step runs, as in tests and a wrapper outside ``hpcwrap run``)."""

    factory: Callable[[], Chain] | None
    sink: LogSink
    env: JobEnv
    err: TextIO | None = None
    argv: list[str] | None = None  # the command with the resume argument
    child_env: dict[str, str] | None = None  # the training's environment
    resumed: tuple[int, float | None] | None = None  # (jobs so far, the chain's first loss)
    successor: str | None = None  # the chain's successor this job submitted

    def _chain(self) -> Chain | None:
        """The chain's steps when this job's run log has a chain (the factory imports the
        login side's code only then: most runs have no chain)."""
        run, env = self.sink.run, self.env
        if self.factory is None or run is None or not env.in_slurm or env.is_array_task:
            return None
        try:
            if run.read().chain is None:
                return None
        except Exception:  # a log that cannot be read: no chain, the job still runs
            return None
        return self.factory()

    def begin(self, argv: Sequence[str], environ: Mapping[str, str]) -> bool:
        """Before the command starts. False: this job must not train (the chain stopped)."""
        chain, run, job_id = self._chain(), self.sink.run, self.env.job_id
        if chain is None or run is None or job_id is None:
            return True
        start = chain.begin(
            run, job_id, argv, environ, self.sink.record, lambda message: warn(message, self.err)
        )
        if start is None:
            return True
        if start.argv is not None:
            self.argv = list(start.argv)
        if start.child_env is not None:
            self.child_env = dict(start.child_env)
        self.resumed = start.resumed
        self.successor = start.successor
        return not start.stop

    def end(self, final: str, unsure: str | None = None) -> None:
        """After the end is recorded: a job that did not end at its limit cancels the
        waiting successor (a completed run, a crash, a user's scancel stop the chain);
        ``unsure``: why the end is only a guess (the successor then checks it)."""
        chain, run = self._chain(), self.sink.run
        if chain is None and self.successor is not None and self.factory is not None:
            chain = self.factory()  # the log cannot be read now; the successor is known
        if chain is not None and run is not None:
            chain.end(run, self.env.job_id, final, unsure, self.successor)


__all__ = ["ChainLink", "register_for_hooks"]
