"""The default backend: Slurm's own commands (sbatch, squeue, sacct, scancel).

sbatch runs in its own session so that a Ctrl-C at the terminal reaches
hpcwrap only: hpcwrap then lets sbatch finish (it takes a moment) and knows
whether a job exists, instead of killing sbatch halfway through its RPC and
never knowing. A second Ctrl-C stops sbatch at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

from hpcwrap.errors import SchedulerError, SchedulerUnavailableError, SubmitError
from hpcwrap.scheduler.base import JobInfo, OnSubmitted, SubmitInterrupted, SubmitResult

_PARSABLE = re.compile(r"^(\d+)(?:;(\S+))?$")
QUERY_TIMEOUT = 60.0
INTERRUPT_GRACE = 30.0  # how long a Ctrl-C'd submission may still take to finish


def parse_parsable(line: str) -> SubmitResult | None:
    """``"12345"`` or ``"12345;cluster"`` (``sbatch --parsable``) -> SubmitResult."""
    m = _PARSABLE.match(line.strip())
    if not m:
        return None
    return SubmitResult(job_id=m.group(1), cluster=m.group(2))


def _slurm_time(text: str) -> datetime | None:
    text = text.strip()
    if not text or text in ("Unknown", "N/A", "None"):
        return None
    try:
        return datetime.fromisoformat(text).astimezone()
    except ValueError:
        return None


def _drain(stream: IO[bytes], sink: list[bytes]) -> None:
    for chunk in iter(lambda: stream.read(4096), b""):
        sink.append(chunk)


class CliScheduler:
    name = "slurm"

    def __init__(self, sbatch: str = "sbatch", env: Mapping[str, str] | None = None) -> None:
        """``env``: the environment for the Slurm commands (default: this process's)."""
        self.sbatch = sbatch
        self.env = dict(env) if env is not None else None

    # ------------------------------------------------------------ helpers

    def _tool(self, name: str) -> str:
        tool = self.sbatch if name == "sbatch" else name
        found = shutil.which(tool, path=(self.env or {}).get("PATH"))
        if found is None:
            raise SchedulerUnavailableError(
                f"{tool} not found on PATH: is Slurm installed here (or a module loaded)?"
            )
        return found

    def _query(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self._tool(argv[0]), *argv[1:]],
                capture_output=True,
                text=True,
                timeout=QUERY_TIMEOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SchedulerError(f"{argv[0]} did not answer in {QUERY_TIMEOUT:.0f} s") from None

    def slurm_version(self) -> str:
        """``"22.05.8"`` from ``sbatch --version``; "" when it cannot be told."""
        try:
            proc = self._query([self.sbatch, "--version"])
        except SchedulerError:
            return ""
        m = re.search(r"(\d+\.\d+(?:\.\d+)?)", proc.stdout)
        return m.group(1) if m else ""

    # ------------------------------------------------------------ submit

    def command(self, script_path: Path, sbatch_args: Sequence[str]) -> list[str]:
        return [self.sbatch, "--parsable", *sbatch_args, str(script_path)]

    def submit(
        self,
        script_path: Path,
        sbatch_args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        on_submitted: OnSubmitted | None = None,
    ) -> SubmitResult:
        argv = self.command(script_path, sbatch_args)
        argv[0] = self._tool("sbatch")
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env) if env is not None else self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise SchedulerUnavailableError(f"cannot run {argv[0]}: {exc.strerror}") from None
        assert proc.stdout is not None and proc.stderr is not None
        err: list[bytes] = []
        reader = threading.Thread(target=_drain, args=(proc.stderr, err), daemon=True)
        seen: SubmitResult | None = None
        out_lines: list[str] = []
        # Everything after Popen is inside the try: a Ctrl-C that lands while the
        # reader starts must still find out whether sbatch made a job.
        try:
            reader.start()
            for raw in proc.stdout:
                line = raw.decode(errors="replace")
                out_lines.append(line)
                if seen is None:
                    seen = parse_parsable(line)
                    if seen is not None and on_submitted is not None:
                        on_submitted(seen)
            rc = proc.wait()
        except KeyboardInterrupt:
            raise self._interrupted(proc, seen, on_submitted) from None
        finally:
            if reader.ident is not None:
                reader.join(timeout=5)
        messages = b"".join(err).decode(errors="replace").strip()
        if seen is None:
            if rc == 0:
                raise SchedulerError(
                    "sbatch exited 0 but printed no job id: "
                    + ("".join(out_lines).strip() or messages or "(no output)")
                )
            raise SubmitError(messages or f"sbatch failed with exit status {rc}", rc)
        return SubmitResult(seen.job_id, seen.cluster, rc, messages)

    def _interrupted(
        self,
        proc: subprocess.Popen[bytes],
        seen: SubmitResult | None,
        on_submitted: OnSubmitted | None,
    ) -> SubmitInterrupted:
        """Ctrl-C: find out whether sbatch made a job, then report it."""
        if seen is not None:
            # Only `--wait` keeps sbatch running after the id: stop waiting, the job goes on.
            _stop(proc)
            return SubmitInterrupted(seen, f"stopped waiting for job {seen.job_id}")
        assert proc.stdout is not None
        try:
            proc.wait(timeout=INTERRUPT_GRACE)
            rest = proc.stdout.read().decode(errors="replace")
            detail = "sbatch finished after the interrupt"
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            _stop(proc)
            rest = ""
            detail = "sbatch was stopped before it printed a job id; a job may still exist"
        for line in rest.splitlines():
            found = parse_parsable(line)
            if found is not None:
                if on_submitted is not None:
                    on_submitted(found)
                return SubmitInterrupted(found, f"{detail}: job {found.job_id} was submitted")
        if proc.returncode is not None and proc.returncode >= 0 and "stopped" not in detail:
            detail += f" (exit status {proc.returncode}) without a job id: no job was submitted"
        return SubmitInterrupted(None, detail)

    # ------------------------------------------------------------ queries

    def job_state(self, job_id: str) -> JobInfo | None:
        proc = self._query(["squeue", "-h", "-j", job_id, "-o", "%i|%T|%N|%S|%r"])
        if proc.returncode == 0:
            for line in proc.stdout.splitlines():
                parts = line.split("|")
                if len(parts) == 5 and parts[0].strip() == job_id:
                    return JobInfo(
                        job_id=job_id,
                        state=parts[1].strip(),
                        node=parts[2].strip() or None,
                        start=_slurm_time(parts[3]),
                        reason=parts[4].strip() or None,
                    )
        acct = self._query(
            [
                "sacct",
                "-n",
                "-P",
                "-X",
                "-j",
                job_id,
                "-o",
                "JobID,State,ExitCode,NodeList,Start,End",
            ]
        )
        if acct.returncode != 0:
            return None
        for line in acct.stdout.splitlines():
            parts = line.split("|")
            if len(parts) == 6 and parts[0].strip() == job_id:
                code = parts[2].split(":", 1)[0]
                return JobInfo(
                    job_id=job_id,
                    state=parts[1].split()[0] if parts[1].strip() else "UNKNOWN",
                    node=parts[3].strip() or None,
                    exit_code=int(code) if code.isdigit() else None,
                    start=_slurm_time(parts[4]),
                    end=_slurm_time(parts[5]),
                )
        return None

    def cancel(self, job_id: str) -> None:
        proc = self._query(["scancel", job_id])
        if proc.returncode != 0:
            raise SchedulerError(f"scancel {job_id}: {proc.stderr.strip()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop sbatch: SIGINT to its process group (its own session), then SIGKILL."""
    if proc.poll() is not None:
        return
    for sig, grace in ((signal.SIGINT, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
