"""No Slurm: run the batch script detached on this machine (workstation, cloud VM).

The same batch script as for Slurm, read the same way: its ``#SBATCH`` lines
and the sbatch options choose the working directory (``--chdir``) and the
output files (``--output``/``--error``, ``%j`` = the process id), so the
output lands where sbatch would put it. Resource options mean nothing here and
are ignored; ``--array`` and ``--dependency`` need Slurm and are refused. The
job id is ``<host>:<pid>``, what ``hpcwrap run`` records outside Slurm: the
batch script ``exec``s it, so the pid is the same process.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from hpcwrap.errors import SchedulerError, SubmitError
from hpcwrap.runlog.endings import JobState
from hpcwrap.scheduler.base import JobInfo, OnSubmitted, SubmitResult
from hpcwrap.scheduler.sbatch_options import (
    default_job_name,
    expand_pattern,
    output_pattern,
    parse_sbatch_args,
    read_directives,
    resolve,
    work_dir,
)

REFUSED = ("array", "dependency")


class LocalScheduler:
    name = "local"

    def command(self, script_path: Path, sbatch_args: Sequence[str]) -> list[str]:
        return ["/bin/bash", str(script_path)]

    def submit(
        self,
        script_path: Path,
        sbatch_args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        on_submitted: OnSubmitted | None = None,
    ) -> SubmitResult:
        environ = dict(os.environ if env is None else env)
        text = script_path.read_text(errors="surrogateescape")
        resolved = resolve(parse_sbatch_args(sbatch_args), read_directives(text), environ)
        for key in REFUSED:
            if resolved.has(key):
                raise SubmitError(f"--{key} needs Slurm; the local scheduler runs one process")
        submit_dir = cwd or Path.cwd()
        workdir = work_dir(resolved, submit_dir)
        job_name = resolved.get("job-name") or default_job_name(str(script_path))
        out_pattern = output_pattern(resolved) or "slurm-%j.out"
        err_pattern = output_pattern(resolved, "error")
        append = (resolved.get("open-mode") or "append") == "append"
        user = getpass.getuser()
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)

        def open_outputs() -> None:  # runs in the child, after fork: getpid() is the job's
            pid = str(os.getpid())
            out = workdir / expand_pattern(out_pattern, job_id=pid, job_name=job_name, user=user)
            fd = os.open(out, flags, 0o644)
            os.dup2(fd, 1)
            if err_pattern:
                err = expand_pattern(err_pattern, job_id=pid, job_name=job_name, user=user)
                fd = os.open(workdir / err, flags, 0o644)
            os.dup2(fd, 2)

        if not workdir.is_dir():
            raise SubmitError(f"--chdir {workdir}: no such directory")
        try:
            proc = subprocess.Popen(
                ["/bin/bash", str(script_path)],
                cwd=workdir,
                env=environ,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=open_outputs,  # the CLI is single-threaded here; it needs the pid
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise SubmitError(f"could not start {script_path} locally: {exc}") from None
        result = SubmitResult(job_id=f"{socket.gethostname()}:{proc.pid}")
        if on_submitted is not None:
            on_submitted(result)
        return result

    def job_state(self, job_id: str) -> JobInfo | None:
        host, _, pid = job_id.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        state = stat.rsplit(")", 1)[-1].split()[0]
        if state in ("Z", "X"):
            return None
        return JobInfo(job_id=job_id, state=JobState.RUNNING, node=host)

    def queue(self, job_ids: Sequence[str], timeout: float = 0.0) -> list[JobInfo]:
        """The local jobs still running (from /proc; no scheduler to ask)."""
        return [info for j in job_ids if (info := self.job_state(j)) is not None]

    def history(self, job_ids: Sequence[str], timeout: float = 0.0) -> list[JobInfo]:
        """No accounting here: an ended local job is known only from its run log."""
        return []

    def cancel(self, job_id: str) -> None:
        host, _, pid = job_id.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            raise SchedulerError(f"{job_id} is not a local job of this machine")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid), signal.SIGTERM)
