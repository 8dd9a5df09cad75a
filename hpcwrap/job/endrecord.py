"""The end of a job as the wrapper records it: the ``Ended`` facts, their Status text and
the ``ended`` event's data, from the verdict (runlog/endings.py) and what the end read
(job/endreading.py). Pure functions: ``job/recorder.py`` writes what they build.
"""

from __future__ import annotations

import dataclasses
import math
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hpcwrap.job import results as res
from hpcwrap.job.endreading import Findings
from hpcwrap.job.jobenv import JobEnv
from hpcwrap.job.signals import signal_name
from hpcwrap.job.status import error_text, hhmm, progress_data, progress_fields
from hpcwrap.reading.progress import Snapshot, checkpoint_note
from hpcwrap.runlog import lifecycle
from hpcwrap.runlog.endings import JobState, Strength, Verdict


@dataclass(frozen=True)
class EndContext:
    """Who ended: the job, its task prefix and its start."""

    env: JobEnv
    prefix: str  # ``task <N>: `` for an array task
    start_wall: datetime
    cwd: Path


def array_data(env: JobEnv) -> dict[str, Any]:
    if not env.is_array_task:
        return {}
    return {"array_task": env.array_task_id, "array": env.array_block_id}


def end_facts(
    ctx: EndContext,
    end: res.EndFacts,
    verdict: Verdict,
    found: Findings,
    *,
    end_wall: datetime,
    runtime: str,
    errors: Sequence[Any],
    one_liner: str | None,
    kind: res.RunKind | None,
) -> lifecycle.Ended:
    """The wrapper's ``Ended``: the verdict, its Status text, Results and Next."""
    env, snap, final = ctx.env, found.snap, verdict.state
    text = ctx.prefix + end_text(verdict, end, snap, runtime, errors)
    if found.sources:
        text += f"; sources: {found.sources}"
    if found.left_out:
        text += f"; {found.left_out}"
    # The batch script exits with our status: unless a TERM came (Slurm's word then
    # depends on why: the epilog reads it), sacct's account goes beside ours (exit
    # 124 on the walltime-warning path is FAILED 124:0 to sacct).
    slurm: tuple[str, str] | tuple[None, None] = (None, None)
    if env.in_slurm and not env.is_array_task and end.terminated_by is None:
        slurm = lifecycle.slurm_account(end.exit_code)
    return lifecycle.Ended(
        when=end_wall,
        state=final,
        source=lifecycle.Source.WRAPPER,
        execution_id=env.execution_id,
        exit_code=end.exit_code,
        start=ctx.start_wall,
        nodes=env.nodes,
        text=text,
        results=dataclasses.replace(
            res.figures_of(snap),
            one_liner=one_liner,
            checkpoint=found.checkpoint,
            config_snapshot=found.config_snapshot,
            config_copy=found.config_copy,
            figures_from=found.sources,
        ),
        next_steps=tuple(res.next_steps(final, found.checkpoint, snap, kind)),
        wandb_local=full_path(snap.wandb_dir, ctx.cwd),
        wandb_url=snap.wandb_url,
        array=env if env.is_array_task else None,
        task_prefix=ctx.prefix,
        slurm_state=slurm[0],
        slurm_exit=slurm[1],
        strength=verdict.strength,
    )


def end_data(
    ctx: EndContext,
    end: res.EndFacts,
    facts: lifecycle.Ended,
    found: Findings,
    runtime: str,
    write_errors: Sequence[str],
) -> dict[str, Any]:
    """The ``ended`` event's data: the facts' figures and the wrapper's own costs."""
    snap = found.snap
    data: dict[str, Any] = {
        "exit_code": end.exit_code,
        "state": facts.state,
        "runtime": runtime,
        **progress_data(snap),
        "checkpoint": found.checkpoint,
        "config_snapshot": found.config_snapshot,
        "text": facts.text,
        **array_data(ctx.env),
    }
    if end.signaled is not None:
        data["signal"] = signal_name(end.signaled)
    usage = resource.getrusage(resource.RUSAGE_SELF)  # the wrapper alone, not the child
    data["wrapper_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
    data["wrapper_maxrss_kb"] = peak_rss_kb(usage.ru_maxrss)
    if snap.bytes_skipped:
        data["bytes_not_scanned"] = snap.bytes_skipped
    if write_errors:
        data["output_errors"] = list(write_errors[:5])
    if snap.checkpoint is not None and snap.checkpoint.path:
        data["checkpoint_printed"] = snap.checkpoint.path  # before resolving
    if snap.pending_save is not None:
        data["save_not_completed"] = {
            "path": snap.pending_save.path,
            "step": snap.pending_save.step,
        }
    return data


def start_failed(
    ctx: EndContext, end: res.EndFacts, end_wall: datetime, why: str
) -> tuple[lifecycle.Ended, dict[str, Any]]:
    """The command could not be started (not found, not executable)."""
    env = ctx.env
    facts = lifecycle.Ended(
        when=end_wall,
        state=JobState.FAILED,
        source=lifecycle.Source.WRAPPER,
        execution_id=env.execution_id,
        exit_code=end.exit_code,
        start=ctx.start_wall,
        nodes=env.nodes,
        text=f"{ctx.prefix}failed, exit code {end.exit_code}: {why}",
        array=env if env.is_array_task else None,
        task_prefix=ctx.prefix,
    )
    data = {"exit_code": end.exit_code, "state": JobState.FAILED, "error": why, **array_data(env)}
    return facts, data


def unsure(verdict: Verdict, end: res.EndFacts) -> str | None:
    """Why the wrapper cannot tell a time limit from a cancel (None: it can): a TERM came
    and squeue never said how much time was left."""
    if verdict.strength is Strength.GUESS and end.terminated_by and end.time_left_at_term is None:
        return f"a {end.terminated_by} came and the time left was unknown"
    return None


def end_text(
    verdict: Verdict,
    end: res.EndFacts,
    snap: Snapshot,
    runtime: str,
    pending_errors: Sequence[Any] = (),
) -> str:
    final = verdict.state
    word = final.word
    if final is JobState.CANCELLED and verdict.strength is Strength.GUESS:
        # From inside, a scancel, a requeue and a node failure all arrive as a TERM: the
        # epilog (or poll) names which; the entry does not claim a cancel.
        left = "with time left" if end.time_left_at_term is not None else "(time left unknown)"
        word = f"stopped by {end.terminated_by or 'SIGTERM'} {left}"
    head = f"{word}, exit code {end.exit_code}"
    if end.signaled is not None:
        head += f" ({signal_name(end.signaled)})"
    parts = [head, f"after {runtime}", *progress_fields(snap)]
    text = ", ".join(parts)
    if final is JobState.TIMEOUT and end.walltime_signal:
        text += "; stopped after the walltime warning"
    elif final is JobState.CANCELLED and end.terminated_by and verdict.strength > Strength.GUESS:
        text += f"; stopped by {end.terminated_by}"
    if snap.errors and final != JobState.COMPLETED:
        text += "; " + error_text(snap.errors[0])
        if len(snap.errors) > 1:
            text += f" (+{len(snap.errors) - 1} more)"
    note = checkpoint_note(snap)  # a save never completed, or only starts are printed
    if note:
        text += "; " + note
    if snap.nonfinite_seen and snap.loss is not None and math.isfinite(snap.loss):
        text += "; the loss was nan/inf at some point"
    if not snap.has_progress and snap.bytes_out:
        text += f"; no progress lines recognised in {snap.lines} lines of output"
    if snap.last_progress_wall is not None and final != JobState.COMPLETED:
        text += f"; last new step at {hhmm(snap.last_progress_wall)}"
    return text


def full_path(printed: str | None, cwd: Path) -> str | None:
    """A path the command printed relative to its cwd, made absolute when it exists there."""
    if not printed:
        return None
    path = res.resolve_path(printed, cwd)
    return str(path) if path.exists() else printed


def peak_rss_kb(fallback: int) -> int:
    """This process's own peak RSS in KiB (VmHWM), else ``fallback``.

    Not ru_maxrss alone: Linux carries it across execve, so a wrapper started
    by a big parent (fork + exec) would report the parent's size.
    """
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return fallback


__all__ = [
    "EndContext",
    "array_data",
    "end_data",
    "end_facts",
    "end_text",
    "full_path",
    "peak_rss_kb",
    "start_failed",
    "unsure",
]
