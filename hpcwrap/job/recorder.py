"""The in-job wrapper's recording side: the lifecycle calls it makes on the run log.

Start, progress Status (``status.StatusPolicy`` decides when), the checkpoint the training
said it resumed from, and the end, all through ``sink.LogSink`` (which never raises).
To record a new event: a ``Write`` from the policy or a hook goes through ``perform``;
a new lifecycle transition is a ``runlog/lifecycle.py`` fact passed to ``sink.record``.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

from hpcwrap.job import endrecord
from hpcwrap.job import results as res
from hpcwrap.job.endreading import EndReader, Findings
from hpcwrap.job.endrecord import EndContext, array_data
from hpcwrap.job.signals import SignalNote
from hpcwrap.job.sink import LogSink, warn
from hpcwrap.job.status import StatusPolicy, TickHook, Write, fmt_num, progress_data
from hpcwrap.reading.progress import Snapshot
from hpcwrap.redact import describe_command
from hpcwrap.runlog import lifecycle
from hpcwrap.runlog.dates import format_runtime
from hpcwrap.runlog.dates import now as utc_now
from hpcwrap.runlog.endings import Verdict


class Recorder:
    """What one job of a run writes to its log, in the order the spec wants."""

    def __init__(
        self,
        sink: LogSink,
        ctx: EndContext,
        policy: StatusPolicy,
        mono: Callable[[], float],
        hooks: Sequence[TickHook] = (),
        err: TextIO | None = None,
    ) -> None:
        self.sink = sink
        self.ctx = ctx
        self.env = ctx.env
        self.prefix = ctx.prefix
        self.policy = policy
        self.mono = mono
        self.hooks = hooks
        self.err = err
        self._exit_lock = threading.Lock()
        self._exited = False  # the command has exited: no more progress entries

    # -- while the command runs -------------------------------------------------

    def exited(self) -> tuple[float, datetime]:
        """The command exited now: no progress entry is stamped after this (``status``)."""
        with self._exit_lock:
            self._exited = True
            return self.mono(), utc_now()

    def status(self, text: str, event: str, data: dict[str, Any]) -> None:
        """A progress Status entry now; an array task's names the task.

        Not once the command has exited: Status entries are kept in time order and the
        end entry is stamped with the exit, so a progress entry written during the
        linger (the reader still busy with the last lines, under load) would follow the
        end. Its figures reach the end entry through the final snapshot instead."""
        with self._exit_lock:
            if self._exited:
                return
            when = utc_now()
        if self.env.is_array_task:
            data = {**data, "array_task": self.env.array_task_id}
        self.sink.status(self.prefix + text, when, event=event, data=data)

    def signal_status(self, note: SignalNote, text: str, event: str, data: dict[str, Any]) -> None:
        """A Status entry about a signal the wrapper received (``SignalReceived``), stamped
        when it was received: written later, it still comes before the end entry."""
        if self.env.is_array_task:
            data = {**data, "array_task": self.env.array_task_id}
        full = self.prefix + text
        received = utc_now() - timedelta(seconds=max(self.mono() - note.mono, 0.0))
        self.sink.record(
            lifecycle.SignalReceived(received, note.kind, note.name, full),
            event=event,
            data={"text": full, **data},
        )

    def perform(self, write: Write) -> None:
        if write.text is not None:
            self.status(write.text, write.event, write.data)
        else:
            self.sink.event(write.event, write.data)

    def record_start(self, argv: Sequence[str], child_pid: int | None, left: float | None) -> None:
        """``left``: seconds to the time limit (None: unknown)."""
        env = self.env
        limit_at = utc_now() + timedelta(seconds=left) if left is not None else None
        text = None
        if env.is_array_task:
            again = f" (restart {env.restart_count})" if env.restart_count else ""
            text = f"{self.prefix}started on {env.nodes}{again}"
        self.sink.record(
            lifecycle.Started(
                when=self.ctx.start_wall,
                execution_id=env.execution_id,
                nodes=env.nodes,
                in_slurm=env.in_slurm,
                restart_count=env.restart_count,
                cluster=env.cluster,
                array=env if env.is_array_task else None,
                text=text,
                limit_at=limit_at,
                sluid=env.sluid,
            ),
            data={
                "execution_id": env.execution_id,
                "node": env.nodes,
                "restart_count": env.restart_count,
                "pid": os.getpid(),
                "child_pid": child_pid,
                "command": describe_command(argv[0], argv[1:]),
                **array_data(env),
            },
        )

    def record_resumed_from(self, said: str) -> None:
        """The training said which checkpoint it continues from (Lightning restoring its
        requeue's hpc_ckpt_N.ckpt or a ``ckpt_path``, nanoGPT's ``--init_from=resume``):
        this job's block gets it as ``resumed from`` unless the chain already named one."""
        cwd = str(self.ctx.cwd)
        path = said if os.path.isabs(said) else os.path.normpath(os.path.join(cwd, said))
        self.sink.record(
            lifecycle.Resumed(
                utc_now(),
                resumed_from=path,
                execution_id=self.env.execution_id,
                text=f"{self.prefix}the training resumed from `{path}` (its own words)",
                said=True,
            ),
            data={"checkpoint": path, "said": said},
        )

    # -- the end ----------------------------------------------------------------

    def record_start_failed(self, end: res.EndFacts, end_wall: datetime, why: str) -> None:
        facts, data = endrecord.start_failed(self.ctx, end, end_wall, why)
        self.sink.record(facts, data=data)

    def end(
        self,
        end: res.EndFacts,
        verdict: Verdict,
        snap: Snapshot,
        end_wall: datetime,
        reader: EndReader,
        since: float,
        *,
        resumed_chain: tuple[int, float | None] | None,
        write_errors: Sequence[str],
    ) -> None:
        """The end entry, last: the policy's entries still due, then what the end read
        (``reader``, files written since ``since``), then the ``Ended`` facts."""
        if end.terminated_by is not None:
            self.sink.hurry()  # every write from here on: Slurm's SIGKILL follows the TERM
        events, errors = self.policy.leftover()
        for ev in events:
            self.perform(ev)
        if snap.version:
            self.sink.event("progress", progress_data(snap))
        found = reader.read(snap, since)
        runtime = format_runtime((end_wall - self.ctx.start_wall).total_seconds())
        facts = endrecord.end_facts(
            self.ctx, end, verdict, found,
            end_wall=end_wall, runtime=runtime, errors=errors,
            one_liner=one_liner(found, verdict.state, resumed_chain),
            kind=res.run_kind(self.sink.run),
        )  # fmt: skip
        data = endrecord.end_data(self.ctx, end, facts, found, runtime, write_errors)
        self.sink.record_end(self._with_hook_summary(facts), data=data)

    def _with_hook_summary(self, facts: lifecycle.Ended) -> lifecycle.Ended:
        """``facts`` with the telemetry summary of the first hook that gives one."""
        for hook in self.hooks:
            finish = getattr(hook, "finish", None)
            if finish is None:
                continue
            try:
                found = finish()
            except Exception as exc:  # never fatal
                warn(f"warning: tick hook {type(hook).__name__} failed: {exc!r}", self.err)
                continue
            if found is not None and facts.results is not None:
                results = dataclasses.replace(facts.results, telemetry=found)
                return dataclasses.replace(facts, results=results)
        return facts


def one_liner(
    found: Findings, final: str, resumed_chain: tuple[int, float | None] | None
) -> str | None:
    """The drafted loss_one_liner; in a resumed job it speaks of the whole chain, then
    of this job's own steps (``resumed_chain``: the jobs so far and the chain's first loss)."""
    snap = found.snap
    if resumed_chain is None:
        return res.loss_one_liner(snap, final)
    text = res.loss_one_liner(res.this_job_only(snap, found.console), final)
    if text is None:
        return text
    jobs, start = resumed_chain
    if start is None or snap.loss is None:
        return text
    return (
        f"Over the {jobs} jobs of this run, train loss went from {fmt_num(start)} to "
        f"{fmt_num(snap.loss)}. In the last job: {text[:1].lower()}{text[1:]}"
    )


__all__ = ["Recorder", "one_liner"]
