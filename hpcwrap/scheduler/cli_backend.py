"""The default backend: Slurm's own commands (sbatch, squeue, sacct, scancel).

sbatch runs in its own session so that a Ctrl-C at the terminal reaches
hpcwrap only: hpcwrap then lets sbatch finish (it takes a moment) and knows
whether a job exists, instead of killing sbatch halfway through its RPC and
never knowing. A second Ctrl-C stops sbatch at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
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

    def _run(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """One Slurm command, its output captured; TimeoutExpired when it does not answer."""
        return subprocess.run(
            [self._tool(argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=self.env,
            check=False,
        )

    def _query(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        try:
            return self._run(argv, QUERY_TIMEOUT)
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

    # ------------------------------------------------------------ batched queries (poll)

    def _batch(self, argv: Sequence[str], timeout: float) -> str:
        """Run one query with ``timeout``; its stdout, or SchedulerError saying why not."""
        try:
            proc = self._run(argv, timeout)
        except subprocess.TimeoutExpired:
            raise SchedulerError(
                f"{argv[0]} did not answer within {timeout:g} s (slurmctld/slurmdbd busy or "
                "unreachable); nothing was changed"
            ) from None
        if proc.returncode != 0:
            detail = (proc.stderr.strip() or proc.stdout.strip() or "no message").splitlines()
            raise SchedulerError(
                f"{argv[0]} failed (exit {proc.returncode}): {detail[-1]}; nothing was changed"
            )
        return proc.stdout

    def queue(self, job_ids: Sequence[str], timeout: float = QUERY_TIMEOUT) -> list[JobInfo]:
        # squeue --json ignores -j/-u on 22.05 and answers every job: filter here.
        out = self._batch(["squeue", "--json"], timeout)
        return parse_squeue_json(out, job_ids)

    def history(self, job_ids: Sequence[str], timeout: float = QUERY_TIMEOUT) -> list[JobInfo]:
        if not job_ids:
            return []
        argv = [
            "sacct",
            "-n",
            "-P",
            f"--delimiter={SACCT_DELIMITER}",
            "-X",
            "--duplicates",
            "-j",
            ",".join(sorted(set(job_ids))),
            "-o",
            ",".join(SACCT_FIELDS),
        ]
        return parse_sacct(self._batch(argv, timeout), job_ids)

    def cancel(self, job_id: str) -> None:
        proc = self._query(["scancel", job_id])
        if proc.returncode != 0:
            raise SchedulerError(f"scancel {job_id}: {proc.stderr.strip()}")


SACCT_FIELDS = (
    "JobID",
    "JobIDRaw",
    "State",
    "ExitCode",
    "Start",
    "End",
    "NodeList",
    "Reason",
    "Submit",
    "User",
)
SACCT_DELIMITER = "\x1f"  # unit separator: no field sacct prints holds it


def _epoch(value: object) -> datetime | None:
    if isinstance(value, dict):  # newer Slurm: {"set": true, "number": ...}
        value = value.get("number") if value.get("set", True) else None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return None
    return datetime.fromtimestamp(value, tz=timezone.utc)


def _text(value: object) -> str | None:
    if isinstance(value, list):  # newer Slurm: job_state is a list of flags
        value = value[0] if value else None
    if value is None:
        return None
    text = str(value).strip()
    return None if text in ("", "None", "(null)") else text


def _number(value: object) -> int | None:
    if isinstance(value, dict):
        value = value.get("number") if value.get("set", True) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def base_id(job_id: str) -> str:
    """``12_[0-3]``, ``12_3``, ``12+1`` or ``12;cl`` -> ``12``."""
    return re.split(r"[_+;.]", job_id, maxsplit=1)[0]


def parse_squeue_json(text: str, job_ids: Sequence[str]) -> list[JobInfo]:
    """The entries of ``squeue --json`` that belong to ``job_ids`` (array tasks included)."""
    try:
        doc = json.loads(text)
        jobs = doc["jobs"]
        if not isinstance(jobs, list):
            raise TypeError("jobs is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise SchedulerError(f"squeue --json printed something unexpected ({exc})") from None
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if errors:
        # slurmctld down: squeue --json exits 0 with no jobs and this (seen on 22.05)
        first = errors[0] if isinstance(errors[0], dict) else {}
        what = first.get("description") or first.get("error") or str(errors[0])
        raise SchedulerError(
            f"squeue could not ask slurmctld: {what} ({first.get('source', 'squeue')}); "
            "nothing was changed"
        )
    wanted = {base_id(j) for j in job_ids}
    out: list[JobInfo] = []
    for job in jobs:
        if not isinstance(job, dict):
            continue
        jid = str(_number(job.get("job_id")) or "")
        array = _number(job.get("array_job_id")) or 0
        owner = str(array) if array else jid
        if owner not in wanted:
            continue
        task = _number(job.get("array_task_id"))
        pending_tasks = _text(job.get("array_task_string"))
        shown = jid
        if array and task is not None and not (array == int(jid or 0) and pending_tasks):
            shown = f"{array}_{task}"
        elif array and pending_tasks:
            shown = f"{array}_[{pending_tasks}]"
        out.append(
            JobInfo(
                job_id=shown,
                state=_text(job.get("job_state")) or "UNKNOWN",
                node=_text(job.get("nodes")),
                start=_epoch(job.get("start_time")),
                end=_epoch(job.get("end_time")),
                reason=_text(job.get("state_reason")),
                array_job_id=str(array) if array else None,
                array_task_id=str(task) if array and task is not None else None,
                user=_text(job.get("user_name")),
                restart_count=_number(job.get("restart_cnt")),
                submit=_epoch(job.get("submit_time")),
            )
        )
    return out


def parse_sacct(text: str, job_ids: Sequence[str]) -> list[JobInfo]:
    """``sacct -P -X --duplicates`` rows (``SACCT_FIELDS``) of ``job_ids``, in sacct's order."""
    wanted = {base_id(j) for j in job_ids}
    out: list[JobInfo] = []
    for line in text.splitlines():
        values = line.split(SACCT_DELIMITER)
        if len(values) != len(SACCT_FIELDS):
            continue
        row = dict(zip(SACCT_FIELDS, values, strict=True))
        shown = row["JobID"].strip()
        if base_id(shown) not in wanted:
            continue
        array, _, task = shown.partition("_")
        code = row["ExitCode"].split(":", 1)[0]
        # A job cancelled while pending shows its cancel time as Start (seen on 22.05);
        # it never started: no nodes were ever assigned.
        never_ran = row["NodeList"].strip() in ("", "None assigned")
        out.append(
            JobInfo(
                job_id=shown,
                state=row["State"].strip() or "UNKNOWN",  # "CANCELLED by 1000" kept whole
                node=_text(row["NodeList"]) if row["NodeList"] != "None assigned" else None,
                exit_code=int(code) if code.isdigit() else None,
                exit=row["ExitCode"].strip() or None,
                start=None if never_ran else _slurm_time(row["Start"]),
                end=_slurm_time(row["End"]),
                reason=_text(row["Reason"]),
                array_job_id=array if task else None,
                array_task_id=task if task and not task.startswith("[") else None,
                user=_text(row["User"]),
                submit=_slurm_time(row["Submit"]),
            )
        )
    return out


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
