"""The kill matrix: every way a real job ends, and the run log agreeing with Slurm's account.

Each row submits a real job with `hpcwrap sbatch` (the toy trainer, nanoGPT-style output),
ends it one way (time limit, scancel, a --mem kill, a crash, a SIGKILLed wrapper, a
requeue, a node going down, a chain's no-progress guard, a throttled array), and then,
without `hpcwrap poll` or `hpcwrap status` first, waits at most 30 s after Slurm settled
for the log's job block (state.json) to agree with sacct (`sacct -D -X`: each attempt of
a requeued job is its own row, in order):

- ``slurm_state`` is sacct's State word ("CANCELLED by 1000" -> "CANCELLED") and
  ``slurm_exit`` its ExitCode, for that attempt;
- ``state`` is sacct's State, except where hpcwrap documents a word of its own
  (``OWN_WORDS``);
- ``end`` is within 30 s of sacct's End (sacct prints the machine's local time);
- Results' ``final_step`` is not older than the last step the output printed.

Each row prints ``kill-matrix row N: <seconds>``: from sacct's End to the write that made
the log correct (state.json's mtime when first seen correct; negative when the wrapper
wrote its end before Slurm stamped the job's), for the report (run with ``-s``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import ends_rows
from tests.cluster.conftest import DEV_CLUSTER, FINAL_STATES, Cluster
from tests.cluster.test_dev_cluster import dev_cluster, second_cluster_env
from tests.cluster.test_hooks_cluster import script, started
from tests.cluster.test_wrapper_cluster import BASE, project, state_of, submit
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster

# How long after Slurm settled the log may take to agree with it.
SETTLE_S = 30.0

# hpcwrap's own words, where docs/run-log-format.md documents one that differs from sacct's:
# cause -> ((sacct State, sacct ExitCode), hpcwrap's state). A row names its cause; the
# sacct pair is checked too, so a row never applies a word to an end it was not made for
# (a SIGKILLed wrapper is also FAILED 0:9 to sacct, and stays FAILED in the log).
OWN_WORDS: dict[str, tuple[tuple[str, str], str]] = {
    # the training exited 124 on the walltime warning (saved, or here too: saved nothing)
    # before the limit: FAILED 124:0 to sacct, TIMEOUT to hpcwrap (and the chain resumes)
    "exit 124 on the walltime warning": (("FAILED", "124:0"), "TIMEOUT"),
    # slurmstepd killed the job over its --mem (OverMemoryKill): FAILED 0:9 on this cluster
    "memory limit": (("FAILED", "0:9"), "OUT_OF_MEMORY"),
}

# The toy trainer's nanoGPT-style progress lines: "iter N: loss ..." and "step N: train loss".
PRINTED_STEP = re.compile(r"^(?:iter (\d+): loss |step (\d+): train loss )", re.M)

# Toy trainer arguments every row uses (nanoGPT lines, one every 10 steps at 20 steps/s).
TOY = ["--steps-per-sec", "20", "--format", "nanogpt"]


# ---------------------------------------------------------------- Slurm's account


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One row of ``sacct -D -X``: one attempt of the job."""

    state: str  # the first word: "CANCELLED by 1000" -> "CANCELLED"
    raw_state: str
    exit: str
    start: datetime | None
    end: datetime | None

    @property
    def ended(self) -> bool:
        return self.state in FINAL_STATES | {"REQUEUED"} and self.end is not None


def sacct_time(text: str) -> datetime | None:
    """sacct's local time without a zone (this machine's zone), or None ("Unknown")."""
    try:
        return datetime.fromisoformat(text).astimezone()
    except ValueError:
        return None


def attempts(c: Cluster, job_id: str) -> list[Attempt]:
    res = c.run(["sacct", "-D", "-X", "-P", "-n", "-j", job_id, "-o", "State,ExitCode,Start,End"])
    assert res.returncode == 0, res.stderr
    out = []
    for line in res.stdout.splitlines():
        state, code, start, end = line.split("|")
        out.append(Attempt(state.split()[0], state, code, sacct_time(start), sacct_time(end)))
    return out


def ended_attempt(c: Cluster, job_id: str, n: int = 0, timeout: float = 120) -> Attempt:
    """Attempt ``n`` once accounting shows it ended (a requeued job stays in squeue)."""

    def got() -> Attempt | None:
        rows = attempts(c, job_id)
        return rows[n] if len(rows) > n and rows[n].ended else None

    found = wait_for(
        got, timeout, f"sacct's attempt {n} of job {job_id} ending", lambda: attempts(c, job_id)
    )
    assert found is not None
    return found


def final_attempt(c: Cluster, job_id: str, timeout: float = 240) -> Attempt:
    """The job's last attempt, once Slurm is settled on it (``Cluster.wait_job``)."""
    c.wait_job(job_id, timeout=timeout)
    return ended_attempt(c, job_id, len(attempts(c, job_id)) - 1, timeout=30)


def expected_state(attempt: Attempt, cause: str | None = None) -> str:
    if cause is None:
        return attempt.state
    sacct_says, word = OWN_WORDS[cause]
    assert (attempt.state, attempt.exit) == sacct_says, (
        f"row made for {cause!r} ({sacct_says}), but sacct says {attempt}"
    )
    return word


# ---------------------------------------------------------------- the run log's account


def state_json(log: Path) -> Path:
    return log.parent / ".hpcwrap" / log.stem / "state.json"


def iso(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def block_problems(
    block: dict[str, Any], attempt: Attempt, want_state: str | None, what: str
) -> list[str]:
    """How the job block disagrees with sacct's attempt (empty when it agrees).
    ``want_state`` None: hpcwrap's ``state`` is not checked (sacct says nothing of it)."""
    problems = []
    if want_state is not None and block.get("state") != want_state:
        problems.append(f"{what}: state {block.get('state')!r}, expected {want_state!r}")
    if block.get("slurm_state") != attempt.state:
        problems.append(
            f"{what}: slurm_state {block.get('slurm_state')!r}, sacct says {attempt.state!r}"
        )
    if block.get("slurm_exit") != attempt.exit:
        problems.append(
            f"{what}: slurm_exit {block.get('slurm_exit')!r}, sacct says {attempt.exit!r}"
        )
    end = iso(block.get("end"))
    assert attempt.end is not None
    if end is None or abs((end - attempt.end).total_seconds()) > SETTLE_S:
        problems.append(f"{what}: end {block.get('end')!r}, sacct's End {attempt.end}")
    return problems


def last_printed_step(outputs: list[Path]) -> int | None:
    """The step of the last progress line the training printed (the last file last)."""
    last = None
    for path in outputs:
        for m in PRINTED_STEP.finditer(path.read_text(errors="replace")):
            last = int(m.group(1) or m.group(2))
    return last


def results_problems(state: dict[str, Any], outputs: list[Path]) -> list[str]:
    printed = last_printed_step(outputs)
    final = (state.get("results") or {}).get("final_step")
    if printed is not None and (final is None or final < printed):
        return [f"Results final_step {final!r} older than the output's last step {printed}"]
    return []


def settle(
    row: int, log: Path, ended_at: datetime, problems: Callable[[dict[str, Any]], list[str]]
) -> float:
    """Wait (at most SETTLE_S) for ``problems(state)`` to be empty; print and return the
    seconds from ``ended_at`` (sacct's End) to the state.json write that made it so."""

    def now_problems() -> list[str]:
        try:
            state = state_of(log)
        except (OSError, ValueError, KeyError) as exc:
            return [f"state.json unreadable: {exc!r}"]
        return problems(state)

    mtimes: list[float] = []

    def agrees() -> bool:
        try:
            before = state_json(log).stat().st_mtime
        except OSError:
            return False
        if now_problems():
            return False
        # the write that made it so: the one before the read (a later one if it raced)
        mtimes.append(max(before, state_json(log).stat().st_mtime))
        return True

    wait_for(agrees, SETTLE_S, f"row {row}: the run log agreeing with sacct", now_problems)
    seen = (datetime.now(timezone.utc) - ended_at).total_seconds()
    written = mtimes[0] - ended_at.timestamp()
    print(
        f"kill-matrix row {row}: {written:.1f} "
        f"(state.json written {written:.1f} s after sacct End, seen correct {seen:.1f} s after)"
    )
    return written


def running_entry(log: Path, n: int = 1) -> bool:
    """The wrapper of attempt ``n`` recorded progress (a "running, step ..." entry)."""
    try:
        state = state_of(log)
    except (OSError, ValueError, KeyError):
        return False
    jobs = state["jobs"]
    if len(jobs) < n or jobs[n - 1].get("state") != "RUNNING":
        return False
    since = iso(jobs[n - 1].get("start"))
    return any(
        s[1].startswith("running, ") and (since is None or (iso(s[0]) or since) >= since)
        for s in state["status"]
    )


def outputs_of(cwd: Path, job_id: str) -> list[Path]:
    return [cwd / f"slurm-{job_id}.out"]


def single_job_row(
    row: int,
    c: Cluster,
    cwd: Path,
    log: Path,
    job_id: str,
    cause: str | None = None,
) -> Attempt:
    """The common check of a one-attempt job: wait for Slurm, then for the log."""
    attempt = final_attempt(c, job_id)
    want = expected_state(attempt, cause)
    outs = outputs_of(cwd, job_id)

    def problems(state: dict[str, Any]) -> list[str]:
        jobs = state["jobs"]
        if len(jobs) != 1:
            return [f"{len(jobs)} job blocks, expected 1: {jobs}"]
        return block_problems(jobs[0], attempt, want, "job block") + results_problems(state, outs)

    assert attempt.end is not None
    settle(row, log, attempt.end, problems)
    print(f"kill-matrix row {row}: sacct {attempt.raw_state} {attempt.exit}")
    return attempt


def array_script(c: Cluster, cwd: Path, out_dir: str) -> str:
    """The toy for an array: each task saves into its own ``<out_dir>/<task id>`` (tasks
    sharing one folder raced for its ``checkpoints/<step>``, and one crashed: exit 1)."""
    return script(
        c, cwd, "array.sh",
        "#!/bin/bash\n"
        "exec python3 -u examples/toy_train.py --config examples/config.json "
        f'--out-dir {out_dir}/"$SLURM_ARRAY_TASK_ID" "$@"\n',
    )  # fmt: skip


def toy_script(c: Cluster, cwd: Path) -> str:
    """A batch script of the toy without examples/train.sh's own #SBATCH --signal."""
    return script(
        c, cwd, "toy.sh",
        "#!/bin/bash\n"
        'exec python3 -u examples/toy_train.py --config examples/config.json "$@"\n',
    )  # fmt: skip


# ---------------------------------------------------------------- the rows


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.versions
def test_row01_limit_term_handled(cluster: Cluster) -> None:
    """-t 1, no warning: Slurm's TERM at the limit; the training saves on it and exits 124."""
    cwd = project(cluster, "km-row01")
    job_id, log = submit(
        cluster, cwd, *BASE, "--no-walltime-signal", "-t", "1", toy_script(cluster, cwd),
        "--steps", "100000", *TOY, "--ckpt-every", "0", "--ckpt-signal", "TERM",
        "--out-dir", "runs/r1",
    )  # fmt: skip
    attempt = single_job_row(1, cluster, cwd, log, job_id)
    assert attempt.state == "TIMEOUT", attempt
    out = outputs_of(cwd, job_id)[0].read_text()
    assert "received SIGTERM at step" in out, out[-2000:]


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.versions
def test_row02_limit_term_ignored(cluster: Cluster) -> None:
    """-t 1, no warning: the training saves on TERM and trains on; SIGKILL after KillWait."""
    cwd = project(cluster, "km-row02")
    job_id, log = submit(
        cluster, cwd, *BASE, "--no-walltime-signal", "-t", "1", toy_script(cluster, cwd),
        "--steps", "100000", *TOY, "--ckpt-every", "0", "--ckpt-signal", "TERM",
        "--continue-after-signal", "--out-dir", "runs/r2",
    )  # fmt: skip
    attempt = single_job_row(2, cluster, cwd, log, job_id)
    assert attempt.state == "TIMEOUT", attempt
    out = outputs_of(cwd, job_id)[0].read_text()
    assert "received SIGTERM at step" in out, out[-2000:]  # it saw TERM, and trained on


@pytest.mark.versions
def test_row03_scancel_running(cluster: Cluster) -> None:
    cwd = project(cluster, "km-row03")
    job_id, log = submit(
        cluster, cwd, *BASE, "examples/train.sh", "--steps", "100000", *TOY, "--out-dir", "runs/r3"
    )
    wait_for(lambda: running_entry(log), 120, "a first running Status entry")
    res = cluster.run_as_user(["scancel", job_id], cwd=cwd)
    assert res.returncode == 0, res.stderr
    attempt = single_job_row(3, cluster, cwd, log, job_id)
    assert attempt.state == "CANCELLED", attempt


@pytest.mark.versions
def test_row04_mem_limit_kill(cluster: Cluster) -> None:
    cwd = project(cluster, "km-row04")
    job_id, log = submit(
        cluster, cwd, *BASE, "--mem=200M", "examples/train.sh", "--steps", "2000", *TOY,
        "--memory-spike-at-step", "30", "--memory-spike-mb", "800",
        "--memory-spike-seconds", "30", "--out-dir", "runs/r4",
    )  # fmt: skip
    single_job_row(4, cluster, cwd, log, job_id, cause="memory limit")
    out = outputs_of(cwd, job_id)[0].read_text()
    assert "Exceeded job memory limit" in out, out[-2000:]


def test_row05_traceback_exit_1(cluster: Cluster) -> None:
    cwd = project(cluster, "km-row05")
    job_id, log = submit(
        cluster, cwd, *BASE, "examples/train.sh", "--steps", "2000", *TOY,
        "--crash-at-step", "45", "--out-dir", "runs/r5",
    )  # fmt: skip
    attempt = single_job_row(5, cluster, cwd, log, job_id)
    assert (attempt.state, attempt.exit) == ("FAILED", "1:0"), attempt
    assert "Traceback (most recent call last)" in outputs_of(cwd, job_id)[0].read_text()


@pytest.mark.versions
def test_row06_wrapper_sigkilled(cluster: Cluster) -> None:
    """The in-job `hpcwrap run` dies by SIGKILL: it writes nothing more; whatever sacct
    says (the batch step's main process was killed), the log must say it too."""
    cwd = project(cluster, "km-row06")
    job_id, log = submit(
        cluster, cwd, *BASE, "examples/train.sh", "--steps", "100000", *TOY, "--out-dir", "runs/r6"
    )
    pid = int(started(log)["pid"])
    wait_for(lambda: running_entry(log), 120, "a first running Status entry")
    # that pid is this job's `hpcwrap run`, as root sees it
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"hpcwrap" in cmdline and b"run" in cmdline, cmdline
    assert f"SLURM_JOB_ID={job_id}".encode() in environ
    os.kill(pid, signal.SIGKILL)
    single_job_row(6, cluster, cwd, log, job_id)


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.versions
def test_row09_requeue_then_scancel(cluster: Cluster) -> None:
    cwd = project(cluster, "km-row09")
    job_id, log = submit(
        cluster, cwd, *BASE, "--requeue", "examples/train.sh", "--steps", "100000", *TOY,
        "--out-dir", "runs/r9",
    )  # fmt: skip
    wait_for(lambda: running_entry(log, 1), 120, "the first attempt running")
    res = cluster.run(["scontrol", "requeue", job_id])
    assert res.returncode == 0, res.stderr
    first = ended_attempt(cluster, job_id, 0)
    assert first.state == "REQUEUED", first
    assert first.end is not None
    settle(9, log, first.end, lambda s: block_problems(s["jobs"][0], first, "REQUEUED", "block 1"))
    print(f"kill-matrix row 9: sacct attempt 1 {first.raw_state} {first.exit}")

    # Slurm holds the requeued job ~120 s (BeginTime) before it runs again.
    wait_for(lambda: running_entry(log, 2), 240, "the second attempt running")
    res = cluster.run_as_user(["scancel", job_id], cwd=cwd)
    assert res.returncode == 0, res.stderr
    second = final_attempt(cluster, job_id)
    rows = attempts(cluster, job_id)
    assert len(rows) == 2 and rows[0].state == "REQUEUED", rows
    assert second.end is not None

    def problems(state: dict[str, Any]) -> list[str]:
        jobs = state["jobs"]
        if len(jobs) != 2:
            return [f"{len(jobs)} job blocks, expected 2: {jobs}"]
        found = block_problems(jobs[0], rows[0], "REQUEUED", "block 1")
        found += block_problems(jobs[1], second, second.state, "block 2")
        if jobs[1].get("restart_count") != 1:
            found.append(f"block 2: restart_count {jobs[1].get('restart_count')!r}, expected 1")
        if not jobs[0]["execution_id"] == jobs[1]["execution_id"] == job_id:
            found.append(f"execution ids {jobs[0]['execution_id']}, {jobs[1]['execution_id']}")
        return found + results_problems(state, outputs_of(cwd, job_id))

    settle(9, log, second.end, problems)
    print(f"kill-matrix row 9: sacct attempt 2 {second.raw_state} {second.exit}")
    assert second.state == "CANCELLED", second


# ---------------------------------------------------------------- row 10: a second cluster


@pytest.fixture
def node_fail_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """A second dev cluster (own folder, ports and hook spool; hooks ON) whose node n1
    this test may take down. Its hooks run the shared cluster's job venv (this checkout)."""
    cdir = Path(tempfile.mkdtemp(prefix="hpcwrap-killmatrix-", dir="/tmp"))
    cdir.chmod(0o755)
    env = second_cluster_env(cluster, cdir)
    spool = cdir / "hpcwrap-spool"
    env["HPCWRAP_SPOOL"] = str(spool)  # `up` writes it into the hook wrappers
    (cdir / "venv").symlink_to(cluster.dir / "venv")
    try:
        up = dev_cluster(env, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        hooks = (cdir / "hooks" / "epilog.sh").read_text()
        assert f"HPCWRAP_PYTHON='{cdir / 'venv' / 'bin' / 'python'}'" in hooks, hooks
        assert f"HPCWRAP_SPOOL='{spool}'" in hooks, hooks
        yield dataclasses.replace(
            cluster,
            env=env,
            dir=cdir,
            slurm_conf=Path(env["SLURM_CONF"]),
            user_env={
                **cluster.user_env,
                "SLURM_CONF": env["SLURM_CONF"],
                "HPCWRAP_SPOOL": str(spool),
            },
        )
    finally:
        subprocess.run(
            ["bash", str(DEV_CLUSTER), "down"], env=env, capture_output=True, timeout=300
        )
        shutil.rmtree(cdir, ignore_errors=True)


def calls_it_cancelled(text: str) -> bool:
    """A Status entry whose own verdict is "cancelled": an aside in parentheses (e.g. that
    it replaces the wrapper's reading, which was "cancelled") is not the entry's verdict."""
    return re.search(r"cancel", re.sub(r"\([^()]*\)", "", text), re.I) is not None


@pytest.mark.slow  # a second cluster of its own: ~25 s with its up and down
def test_row10_node_down_is_node_fail(node_fail_cluster: Cluster) -> None:
    c = node_fail_cluster
    cwd = project(c, "km-row10")
    job_id, log = submit(
        c, cwd, *BASE, "--requeue", "-w", "n1", "examples/train.sh", "--steps", "100000", *TOY,
        "--out-dir", "runs/r10",
    )  # fmt: skip
    try:
        wait_for(lambda: running_entry(log), 120, "a first running Status entry")
        res = c.run(["scontrol", "update", "nodename=n1", "state=down", "reason=test"])
        assert res.returncode == 0, res.stderr
        first = ended_attempt(c, job_id, 0)
        assert (first.state, first.exit) == ("NODE_FAIL", "0:0"), first
        assert first.end is not None

        def problems(state: dict[str, Any]) -> list[str]:
            found = block_problems(state["jobs"][0], first, "NODE_FAIL", "block 1")
            said = [s for s in state["status"] if calls_it_cancelled(s[1])]
            if said:
                found.append(f"Status calls the node failure cancelled: {said}")
            return found + results_problems(state, outputs_of(cwd, job_id))

        settle(10, log, first.end, problems)
        print(f"kill-matrix row 10: sacct attempt 1 {first.raw_state} {first.exit}")
    finally:
        c.run(["scancel", job_id])  # the requeued attempt waits ~120 s: not for us
        c.run(["scontrol", "update", "nodename=n1", "state=resume"])


# ---------------------------------------------------------------- row 13: a stopped chain

# On resume (HPCWRAP_RESUME_FROM set) it trains nothing: it waits for the walltime warning
# and exits 124 without a checkpoint, so the next successor's no-progress guard stops the
# chain (that successor's wrapper exits 0 at once, without starting the training).
CHAIN_SCRIPT = """#!/bin/bash
if [ -n "${HPCWRAP_RESUME_FROM:-}" ]; then
    exec python3 -u -c '
import signal, sys, time
signal.signal(signal.SIGUSR2, lambda *a: sys.exit(124))
print("chain.sh: resumed; no training, no checkpoint: exit 124 on the warning", flush=True)
time.sleep(600)
'
fi
exec python3 -u examples/toy_train.py --config examples/config.json "$@"
"""


def status_row(c: Cluster, cwd: Path, log: Path) -> dict[str, Any]:
    res = c.run_as_user([c.hpcwrap, "status", "--json", str(log)], cwd=cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    runs: list[dict[str, Any]] = json.loads(res.stdout)["runs"]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.slow
@pytest.mark.long
def test_row13_chain_stopped_by_no_progress_is_not_completed(cluster: Cluster) -> None:
    cwd = project(cluster, "km-row13")
    chain_sh = script(cluster, cwd, "chain.sh", CHAIN_SCRIPT)
    _, log = submit(
        cluster, cwd, *BASE, "--resume", "auto", "--resume-arg", "--resume {checkpoint}",
        "--max-resumes", "3", "-t", "1", chain_sh, "--steps", "100000", *TOY,
        "--ckpt-every", "0", "--out-dir", "runs/r13",
    )  # fmt: skip

    def blocks() -> list[dict[str, Any]]:
        try:
            return list(state_of(log)["jobs"])
        except (OSError, ValueError, KeyError):
            return []

    wait_for(
        lambda: len(blocks()) >= 3 and blocks()[2].get("execution_id"),
        300,
        "the third job (the successor the guard stops)",
        lambda: (blocks(), state_of(log).get("chain")),
    )
    ids = [b["execution_id"] for b in blocks()[:3]]
    last = final_attempt(cluster, ids[2])
    sacct = [attempts(cluster, i)[-1] for i in ids]
    assert last.end is not None
    print(f"kill-matrix row 13: sacct {[(a.raw_state, a.exit) for a in sacct]}")
    rows: list[dict[str, Any]] = []
    asked: list[float] = []

    def problems(state: dict[str, Any]) -> list[str]:
        jobs = state["jobs"]
        if len(jobs) != 3:
            return [f"{len(jobs)} job blocks, expected 3: {jobs}"]
        found = []
        for i in (0, 1):  # both exited 124 on the warning
            want = expected_state(sacct[i], "exit 124 on the walltime warning")
            found += block_problems(jobs[i], sacct[i], want, f"block {i + 1}")
        # the guard's job: sacct's account only (hpcwrap's word for it is its own)
        found += block_problems(jobs[2], sacct[2], None, "block 3")
        chain = state.get("chain") or {}
        if not chain.get("stopped") or "no progress" not in chain["stopped"]:
            found.append(f"chain.stopped {chain.get('stopped')!r}, expected the no-progress guard")
        if chain.get("pending"):
            found.append(f"chain.pending {chain['pending']!r}")
        if found:
            return found
        # only then ask the command under test (it reads the logs alone), once a second
        if not asked or time.monotonic() - asked[-1] >= 1.0:
            asked.append(time.monotonic())
            rows[:] = [status_row(cluster, cwd, log)]
        if rows[0].get("run_state") != "stopped":
            found.append(
                f"hpcwrap status: run_state {rows[0].get('run_state')!r} (state "
                f"{rows[0].get('state')!r}, final {rows[0].get('final')!r}), expected 'stopped'"
            )
        return found

    settle(13, log, last.end, problems)
    print(f"kill-matrix row 13: guard's job block state {blocks()[2].get('state')!r}")


# ---------------------------------------------------------------- row 14: a throttled array


@pytest.mark.slow
def test_row14_throttled_array_block_not_final_early(cluster: Cluster) -> None:
    cwd = project(cluster, "km-row14")
    job_id, log = submit(
        cluster, cwd, *BASE, "--array=0-11%4", array_script(cluster, cwd, "runs/r14"),
        "--steps", "40", *TOY, "--ckpt-every", "0",
    )  # fmt: skip
    tasks = [str(t) for t in range(12)]

    def sacct_tasks() -> dict[str, tuple[str, datetime | None]]:
        """Task id -> (State word, End); a pending range ("5_[4-11%4]") under "pending"."""
        res = cluster.run(["sacct", "-X", "-P", "-n", "-j", job_id, "-o", "JobID,State,End"])
        found: dict[str, tuple[str, datetime | None]] = {}
        for line in res.stdout.splitlines():
            jid, state, end = line.split("|")
            task = jid.partition("_")[2]
            found["pending" if "[" in task else task] = (state.split()[0], sacct_time(end))
        return found

    def squeue_tasks() -> dict[str, str]:
        """Task id -> squeue's state (-r: a pending range one task a line; real time)."""
        res = cluster.run(["squeue", "-h", "-r", "-t", "all", "-j", job_id, "-o", "%i|%T"])
        return {
            jid.partition("_")[2]: state
            for jid, _, state in (line.partition("|") for line in res.stdout.splitlines())
        }

    def not_ended(
        acct: dict[str, tuple[str, datetime | None]], queue: dict[str, str], state: dict[str, Any]
    ) -> list[tuple[str, str]]:
        """Tasks whose end the log (read first) lacks while Slurm, asked after, says they
        have not ended: sacct shows them not final (or pending in a range), or squeue
        does (accounting lags ctld by a second or two: a task sacct does not list yet
        counts as open only while squeue shows it not final, or it is in neither)."""
        recorded = state.get("array_tasks") or {}
        found = []
        for task in tasks:
            if (recorded.get(task) or {}).get("end"):
                continue
            word = acct[task][0] if task in acct else None
            if word is None and "pending" in acct:
                word = "PENDING (a range in sacct)"
            in_queue = queue.get(task)
            if word is not None and word not in FINAL_STATES:
                found.append((task, f"sacct {word}"))
            elif in_queue is not None and in_queue not in FINAL_STATES:
                found.append((task, f"squeue {in_queue}"))
            elif word is None and in_queue is None:
                found.append((task, "in neither sacct nor squeue yet"))
        return found

    early: list[str] = []
    samples = 0

    def all_ended() -> bool:
        nonlocal samples
        try:
            state = state_of(log)
        except (OSError, ValueError, KeyError):
            return False
        # read after the log: a task open here was open when the log was read too
        acct, queue = sacct_tasks(), squeue_tasks()
        samples += 1
        block = state["jobs"][0] if state["jobs"] else {}
        open_tasks = not_ended(acct, queue, state)
        if block.get("state") in FINAL_STATES and open_tasks:
            early.append(f"block {block.get('state')} while {open_tasks}")
        return all(t in acct and acct[t][0] in FINAL_STATES and acct[t][1] for t in tasks)

    wait_for(all_ended, 300, "every task ended in sacct", sacct_tasks, every=0.5)
    print(f"kill-matrix row 14: {samples} samples while the array ran")
    assert not early, early[:5]

    acct = sacct_tasks()
    ended_at = max(end for _, end in acct.values() if end is not None)
    outs = sorted(cwd.glob("slurm-*.out"))

    def problems(state: dict[str, Any]) -> list[str]:
        found = []
        if len(state["jobs"]) != 1:
            return [f"{len(state['jobs'])} job blocks, expected 1"]
        block = state["jobs"][0]
        worst = "COMPLETED" if all(acct[t][0] == "COMPLETED" for t in tasks) else None
        if worst and block.get("state") != worst:
            found.append(f"array block state {block.get('state')!r}, every task {worst}")
        end = iso(block.get("end"))
        if end is None or abs((end - ended_at).total_seconds()) > SETTLE_S:
            found.append(f"array block end {block.get('end')!r}, last task's End {ended_at}")
        recorded = state.get("array_tasks") or {}
        for t in tasks:
            got = recorded.get(t) or {}
            word, t_end = acct[t]
            got_end = iso(got.get("end"))
            if got.get("state") != word:
                found.append(f"task {t}: state {got.get('state')!r}, sacct {word!r}")
            if got_end is None or t_end is None or abs((got_end - t_end).total_seconds()) > 30:
                found.append(f"task {t}: end {got.get('end')!r}, sacct's End {t_end}")
        return found + results_problems(state, outs)

    settle(14, log, ended_at, problems)
    print(f"kill-matrix row 14: sacct {sorted({(w, e is not None) for w, e in acct.values()})}")


# ---------------------------------------------------------------- the walltime warning (issue 26)


def warning_entries(log: Path) -> list[str]:
    return [s[1] for s in state_of(log)["status"] if s[1].startswith("walltime warning")]


@pytest.mark.slow
def test_row11_short_job_that_completes_after_an_early_warning(cluster: Cluster) -> None:
    """-t 2 with the user's own --signal=B:USR2@100: the warning comes while the 40 s
    training runs (Slurm may send it even earlier); it saves and trains on, exits 0."""
    cwd = project(cluster, "km-row11")
    job_id, log = submit(
        cluster, cwd, *BASE, "-t", "2", "--signal=B:USR2@100", toy_script(cluster, cwd),
        "--steps", "800", *TOY, "--ckpt-every", "0", "--continue-after-signal",
        "--out-dir", "runs/r11",
    )  # fmt: skip
    attempt = single_job_row(11, cluster, cwd, log, job_id)
    assert (attempt.state, attempt.exit) == ("COMPLETED", "0:0"), attempt
    out = outputs_of(cwd, job_id)[0].read_text()
    assert "received SIGUSR2 at step" in out, out[-2000:]  # the warning came, and did no harm
    assert warning_entries(log), state_of(log)["status"]


@pytest.mark.slow
@pytest.mark.long
def test_row12_hundred_task_array_completes_with_every_task_in_the_log(cluster: Cluster) -> None:
    """100 tasks, -t 5, hpcwrap's own warning: its lead was the whole limit and it came at
    once, killing tasks that started late (18 of 500, FAILED 0:12); capped at a quarter
    of the limit it leaves them be. (A user's own lead of nearly the whole limit can
    still catch a batch shell in its first milliseconds, before its first line ignores
    the signal: seen for 1 of 100 tasks with --signal=B:USR2@290; nothing inside the job
    runs earlier. Row 11 covers a warning that comes early, mid-training.)"""
    cwd = project(cluster, "km-row12")
    job_id, log = submit(
        cluster, cwd, *BASE, "--array=0-99", "-t", "5", array_script(cluster, cwd, "runs/r12"),
        "--steps", "40", *TOY, "--ckpt-every", "0",
    )  # fmt: skip
    job_sh = (log.parent / ".hpcwrap" / log.stem / "job.sh").read_text()
    assert "#SBATCH --signal=B:USR2@75\n" in job_sh  # 300 s capped at a quarter of 300 s
    tasks = {str(t) for t in range(100)}

    def ended() -> dict[str, tuple[str, str, datetime | None]]:
        res = cluster.run(
            ["sacct", "-X", "-P", "-n", "-j", job_id, "-o", "JobID,State,ExitCode,End"]
        )
        found = {}
        for line in res.stdout.splitlines():
            jid, state, code, end = line.split("|")
            task = jid.partition("_")[2]
            if task in tasks and state.split()[0] in FINAL_STATES:
                found[task] = (state.split()[0], code, sacct_time(end))
        return found

    def all_ended() -> dict[str, tuple[str, str, datetime | None]] | None:
        found = ended()
        return found if len(found) == len(tasks) else None

    acct = wait_for(all_ended, 400, "every task ending in sacct", lambda: len(ended()))
    assert acct is not None
    bad = {t: v for t, v in acct.items() if v[:2] != ("COMPLETED", "0:0")}
    assert not bad, sorted(bad.items())[:5]
    ended_at = max(v[2] for v in acct.values() if v[2] is not None)

    def problems(state: dict[str, Any]) -> list[str]:
        recorded = state.get("array_tasks") or {}
        missing = sorted(tasks - set(recorded), key=int)
        wrong = sorted((t for t in recorded if recorded[t].get("state") != "COMPLETED"), key=int)
        found = [f"tasks missing from the log: {missing[:10]}"] if missing else []
        found += [f"tasks not COMPLETED in the log: {wrong[:10]}"] if wrong else []
        block = state["jobs"][0] if state["jobs"] else {}
        if block.get("state") != "COMPLETED":
            found.append(f"array block {block.get('state')!r}")
        return found

    settle(12, log, ended_at, problems)


@pytest.mark.slow
def test_row15_walltime_signal_usr1_reaches_a_training_that_handles_it(
    cluster: Cluster,
) -> None:
    """--walltime-signal USR1@30 (hpcwrap's option, capped at a quarter of -t 1): the
    wrapper handles USR1 (it was killed by it, FAILED 0:10) and forwards it."""
    cwd = project(cluster, "km-row15")
    job_id, log = submit(
        cluster, cwd, *BASE, "-t", "1", "--walltime-signal", "USR1@30",
        toy_script(cluster, cwd), "--steps", "100000", *TOY, "--ckpt-every", "0",
        "--ckpt-signal", "USR1", "--out-dir", "runs/r15",
    )  # fmt: skip
    job_sh = (log.parent / ".hpcwrap" / log.stem / "job.sh").read_text()
    assert "#SBATCH --signal=B:USR1@15\n" in job_sh and "HPCWRAP_WALLTIME_SIGNAL=USR1\n" in job_sh
    single_job_row(15, cluster, cwd, log, job_id, cause="exit 124 on the walltime warning")
    out = outputs_of(cwd, job_id)[0].read_text()
    assert "received SIGUSR1 at step" in out, out[-2000:]
    assert any("(SIGUSR1)" in t and "forwarded to the training" in t for t in warning_entries(log))


@pytest.mark.slow
def test_row16_a_training_under_srun_gets_the_warning(cluster: Cluster) -> None:
    """The batch script runs the training with srun (a job step, outside the wrapper's
    tree): the wrapper forwards the warning to srun, which relays it to the step."""
    cwd = project(cluster, "km-row16")
    name = script(
        cluster, cwd, "srun.sh",
        "#!/bin/bash\n"
        'srun python3 -u examples/toy_train.py --config examples/config.json "$@"\n',
    )  # fmt: skip
    job_id, log = submit(
        cluster, cwd, *BASE, "-t", "2", "--signal=B:USR2@100", name, "--steps", "100000",
        *TOY, "--ckpt-every", "0", "--out-dir", "runs/r16",
    )  # fmt: skip
    single_job_row(16, cluster, cwd, log, job_id, cause="exit 124 on the walltime warning")
    out = outputs_of(cwd, job_id)[0].read_text()
    assert "received SIGUSR2 at step" in out, out[-2000:]
    assert any("srun" in t or "forwarded to the training" in t for t in warning_entries(log))


# ---------------------------------------------------------------- ends nobody polls for
# Rows 7, 8, 17 and 18 with the admin's hooks (this cluster); test_poll_cluster.py runs
# them on a cluster without. Both clusters' SlurmUser is `slurm`, not root.


def hooks_site(cluster: Cluster) -> ends_rows.Site:
    return ends_rows.site_of(cluster, "hooks")


@pytest.mark.slow
@pytest.mark.versions
def test_row07_pending_job_cancelled_hooks(cluster: Cluster) -> None:
    ends_rows.row07_pending_cancelled(hooks_site(cluster))


@pytest.mark.slow
def test_row08_pending_array_cancelled_hooks(cluster: Cluster) -> None:
    ends_rows.row08_pending_array_cancelled(hooks_site(cluster))


@pytest.mark.slow
@pytest.mark.long
def test_row17_lock_held_by_a_hung_process_at_the_end_hooks(cluster: Cluster) -> None:
    with ends_rows.lock_holders() as held:
        ends_rows.row17_lock_held_at_the_end(hooks_site(cluster), held)


@pytest.mark.slow
@pytest.mark.long
def test_row18_run_logs_read_only_at_the_end_hooks(cluster: Cluster) -> None:
    ends_rows.row18_run_logs_read_only_at_the_end(hooks_site(cluster))
