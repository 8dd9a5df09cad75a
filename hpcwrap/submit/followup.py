"""No admin? Still recorded: a tiny follow-up job per run that polls the run's log.

Most users cannot install the node hooks (prolog/epilog in slurm.conf). With
the ``follow_up`` setting, ``hpcwrap sbatch`` also submits a follow-up job
(``--dependency=afterany:<id>``: it may start once the run's job has ended,
however it ended) with minimal resources and a short limit, which runs
``hpcwrap poll --settle <run>``: sacct's final state and exit go into the log
when nothing inside the job could write them (a SIGKILLed wrapper, a job
cancelled while pending, a node failure). When the wrapper wrote the end
itself, it cancels the follow-up job (job/followup.py), so in the common case it
never runs.

Its cost: one extra short job in the queue per run (it pends while the run
does; it needs no GPU). It has no ``hpcwrap:`` comment, so the node hooks (if
any) never take it for a run. An array's follow-up waits for every task and
is not cancelled by a task's wrapper, and a wrapper that was sent a TERM (a
scancel, or a requeue: the job runs again) leaves it waiting for the real end.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from hpcwrap.errors import SchedulerError
from hpcwrap.runlog import lifecycle
from hpcwrap.runlog.facts import SubmitFacts
from hpcwrap.runlog.handle import RunLog

# Seconds the follow-up keeps at it: accounting records the end a moment after the
# dependency fires, and a log whose lock is held or whose folder is read-only for a while
# gets its end once it can be written. Under its time limit (minutes).
SETTLE = 240
LIMIT = "5"
MEMORY = "100M"
TIMEOUT = 60.0


def command(run_log: Path, python: str) -> str:
    """What the follow-up job runs."""
    return " ".join(
        shlex.quote(x)
        for x in (
            python,
            "-m",
            "hpcwrap",
            "poll",
            "--settle",
            str(SETTLE),
            "--min-interval",
            "0",
            str(run_log),
        )
    )


def sbatch_argv(job_id: str, run_log: Path, python: str, partition: str | None = None) -> list[str]:
    argv = [
        "sbatch",
        "--parsable",
        f"--dependency=afterany:{job_id}",
        "--kill-on-invalid-dep=yes",
        f"--time={LIMIT}",
        f"--mem={MEMORY}",
        "--nodes=1",
        "--ntasks=1",
        "--cpus-per-task=1",
        f"--job-name=hpcwrap-follow-up-{job_id}",
        "--output=/dev/null",
        f"--chdir={run_log.parent}",
    ]
    if partition:
        argv.append(f"--partition={partition}")
    argv += ["--wrap", f"exec {command(run_log, python)}"]
    return argv


def submit(
    log: RunLog,
    job_id: str,
    *,
    python: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Submit the follow-up job of ``log``'s job ``job_id`` and record its id; returns it."""
    state = log.read()
    facts = state.submit or SubmitFacts()
    argv = sbatch_argv(job_id, log.path, python or sys.executable, facts.partition)
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except FileNotFoundError:
        raise SchedulerError("sbatch not found: no follow-up job submitted") from None
    except subprocess.TimeoutExpired:
        raise SchedulerError(f"sbatch did not answer within {TIMEOUT:.0f} s") from None
    lines = proc.stdout.strip().splitlines()
    fid = lines[-1].split(";")[0].strip() if lines else ""
    if proc.returncode != 0 or not fid.isdigit():
        raise SchedulerError(f"the follow-up job was refused: {proc.stderr.strip() or fid}")
    new = log.read().submit or SubmitFacts()
    new.follow_up_job = fid
    log.record(
        lifecycle.Described(submit=new),
        event="follow_up_submitted",
        data={"job_id": fid, "after": job_id},
    )
    return fid


__all__ = ["SETTLE", "TIMEOUT", "command", "sbatch_argv", "submit"]
