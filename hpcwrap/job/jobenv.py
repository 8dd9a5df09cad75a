"""Facts about where the wrapper runs: Slurm job id, nodes, restarts, time left.

Inside Slurm these come from the job's environment; anywhere else the
execution id is ``<host>:<pid>`` (or what ``--execution-id`` says, e.g. an
instance name and zone). An array task's execution id is ``<array>_<task>``;
its run log's block is the whole array's (``<array>_[0-3]``). Slurm 22.05 has
no ``SLURM_JOB_END_TIME``, so the time left before the limit is asked of
``squeue`` — at most once per wrapper, and only when a signal makes it matter.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

_DURATION = re.compile(r"^(?:(?P<d>\d+)-)?(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+)$")


@dataclass(frozen=True)
class JobEnv:
    in_slurm: bool
    execution_id: str
    job_id: str | None = None  # the Slurm job id to ask squeue about
    nodes: str | None = None
    restart_count: int | None = None
    cluster: str | None = None
    array_job_id: str | None = None  # set for an array task only
    array_task_id: str | None = None
    array_tasks: str | None = None  # "0-3" (from SLURM_ARRAY_TASK_MIN/MAX/STEP)
    array_task_count: int | None = None
    sluid: str | None = None  # Slurm's unique id of this run (SLURM_JOB_SLUID, 26.05 on)

    @property
    def is_array_task(self) -> bool:
        return self.array_job_id is not None and self.array_task_id is not None

    @property
    def array_block_id(self) -> str | None:
        """The whole array's execution id, as ``hpcwrap sbatch`` writes it: ``123_[0-3]``."""
        if not self.is_array_task:
            return None
        return f"{self.array_job_id}_[{self.array_tasks or self.array_task_id}]"


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def job_env(environ: Mapping[str, str], execution_id: str | None = None) -> JobEnv:
    """What the environment says about this execution."""
    job_id = environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID")
    host = socket.gethostname()
    if not job_id:
        return JobEnv(
            in_slurm=False,
            execution_id=execution_id or f"{host}:{os.getpid()}",
            nodes=host,
        )
    array_id = environ.get("SLURM_ARRAY_JOB_ID")
    task_id = environ.get("SLURM_ARRAY_TASK_ID")
    default_id = f"{array_id}_{task_id}" if array_id and task_id else job_id
    restarts = _int(environ.get("SLURM_RESTART_COUNT"))
    if restarts is None:
        restarts = _int(environ.get("SLURM_JOB_RESTART_COUNT"))
    is_array = bool(array_id and task_id)
    return JobEnv(
        in_slurm=True,
        execution_id=execution_id or default_id,
        job_id=job_id,
        nodes=environ.get("SLURM_JOB_NODELIST") or environ.get("SLURMD_NODENAME") or host,
        restart_count=restarts if restarts is not None else 0,
        cluster=environ.get("SLURM_CLUSTER_NAME") or None,
        array_job_id=array_id if is_array else None,
        array_task_id=task_id if is_array else None,
        array_tasks=_array_tasks(environ) if is_array else None,
        array_task_count=_int(environ.get("SLURM_ARRAY_TASK_COUNT")) if is_array else None,
        sluid=_sluid(environ.get("SLURM_JOB_SLUID")),
    )


_SLUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def _sluid(text: str | None) -> str | None:
    """SLURM_JOB_SLUID as the run log may show it (a bounded plain word, else nothing)."""
    text = (text or "").strip()
    return text if _SLUID.fullmatch(text) else None


def _array_tasks(environ: Mapping[str, str]) -> str | None:
    """``0-3`` or ``0-15:4`` from Slurm's MIN/MAX/STEP (a list like ``1,5,7`` shows as its span)."""
    lo = _int(environ.get("SLURM_ARRAY_TASK_MIN"))
    hi = _int(environ.get("SLURM_ARRAY_TASK_MAX"))
    if lo is None or hi is None:
        return None
    if lo == hi:
        return str(lo)
    step = _int(environ.get("SLURM_ARRAY_TASK_STEP"))
    return f"{lo}-{hi}" + (f":{step}" if step and step > 1 else "")


def parse_slurm_duration(text: str) -> float | None:
    """``"1-02:03:04"``, ``"02:03:04"``, ``"03:04"`` -> seconds; UNLIMITED etc. -> None."""
    m = _DURATION.match(text.strip())
    if m is None:
        return None
    d, h, mi, s = (int(m.group(k) or 0) for k in ("d", "h", "m", "s"))
    return float(((d * 24 + h) * 60 + mi) * 60 + s)


class TimeLeft:
    """The job's time left, asked of squeue at most once; then counted down locally."""

    def __init__(
        self, job_id: str | None, *, timeout: float = 10.0, end_epoch: str | None = None
    ) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self._lock = threading.Lock()
        self._asked = False
        self._end_mono: float | None = None
        self.error: str | None = None
        # SLURM_JOB_END_TIME (Slurm 23.02+; not in 22.05): no question to ask at all.
        end = _int(end_epoch)
        if job_id and end is not None and end > 0:
            self._asked = True
            self._end_mono = time.monotonic() + (end - time.time())

    def prefetch(self) -> None:
        """Ask now, at the job's start: at the time-limit TERM the job is COMPLETING and
        squeue prints ``INVALID``, so a first question then would get no answer."""
        self.seconds()

    def seconds(self) -> float | None:
        """Seconds left, or None when unknown (not in Slurm, squeue failed, no limit)."""
        with self._lock:
            if not self._asked:
                self._asked = True
                self._ask()
            if self._end_mono is None:
                return None
            return max(self._end_mono - time.monotonic(), 0.0)

    def at(self, mono: float) -> float | None:
        """Seconds left at ``mono`` (time.monotonic) by what is known already; never asks
        squeue (at the end the job is COMPLETING and squeue has no answer)."""
        with self._lock:
            end = self._end_mono
        return max(end - mono, 0.0) if end is not None else None

    def _ask(self) -> None:
        if not self.job_id:
            return
        squeue = shutil.which("squeue")
        if squeue is None:
            self.error = "squeue not found"
            return
        try:
            out = subprocess.run(
                [squeue, "-h", "-j", self.job_id, "-o", "%L"],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            self.error = f"squeue failed: {exc}"
            return
        if out.returncode != 0:
            self.error = f"squeue failed: {out.stderr.strip()[:200]}"
            return
        left = parse_slurm_duration(
            out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
        )
        if left is not None:
            self._end_mono = time.monotonic() + left


# A folder of the user's choice for per-job W&B data (beside hpcwrap.toml's wandb_data_dir).
WANDB_DATA_ROOT_ENV = "HPCWRAP_WANDB_DATA_DIR"


def wandb_data_env(
    environ: Mapping[str, str], job: JobEnv, configured: str | None = None
) -> dict[str, str]:
    """``environ`` plus this job's own ``WANDB_DATA_DIR`` on scratch.

    wandb stages artifact payloads in ``$WANDB_DATA_DIR/artifacts/staging`` (default
    ``~/.local/share/wandb``, the home quota) until an upload succeeds; a folder per job
    keeps them off the home quota and lets ``hpcwrap wandb sync`` clean up only this job's.
    The folder is ``<root>/hpcwrap-wandb-<user>/<job>``, root being the configured folder, else
    ``$SCRATCH`` (it outlives the job: a sync after the job still finds the payload), else
    ``$TMPDIR``, else the system's temp folder. A WANDB_DATA_DIR the user set is kept.
    """
    env = dict(environ)
    if env.get("WANDB_DATA_DIR"):
        return env
    root = (
        env.get(WANDB_DATA_ROOT_ENV)
        or configured
        or env.get("SCRATCH")
        or env.get("TMPDIR")
        or tempfile.gettempdir()
    )
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", job.execution_id).strip("._") or "job"
    # The user in the name: a shared /tmp holds every user's folders side by side.
    folder = f"hpcwrap-wandb-{_user()}"
    env["WANDB_DATA_DIR"] = os.path.join(os.path.expanduser(root), folder, name)
    return env


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def describe_seconds(seconds: float) -> str:
    """``about 5 min``, ``about 40 s``, ``about 2.5 h``."""
    if seconds < 90:
        return f"about {round(seconds):d} s"
    if seconds < 5400:
        return f"about {round(seconds / 60):d} min"
    return f"about {seconds / 3600:.1f} h"


def task_prefix(env: JobEnv) -> str:
    """``task 2: `` for an array task's Status entries, else empty."""
    return f"task {env.array_task_id}: " if env.is_array_task else ""


__all__ = [
    "WANDB_DATA_ROOT_ENV",
    "JobEnv",
    "TimeLeft",
    "describe_seconds",
    "job_env",
    "parse_slurm_duration",
    "task_prefix",
    "wandb_data_env",
]
