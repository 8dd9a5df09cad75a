"""The node Prolog/Epilog hooks on the real dev cluster: every way a job dies, compared
with sacct; hostile jobs leave the nodes idle. Jobs run as the non-root test user; the
hooks run as root, as Slurm runs them (slurm/prolog.sh, slurm/epilog.sh)."""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import signal
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.test_dev_cluster import SCHEDULABLE, node_states
from tests.cluster.test_wrapper_cluster import (
    BASE,
    events_of,
    project,
    state_of,
    submit,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster

LONG = (
    "#!/bin/bash\n"
    "exec python3 -u examples/toy_train.py --config examples/config.json --steps 100000 "
    "--steps-per-sec 20 --format json --out-dir runs/$SLURM_JOB_ID\n"
)


def script(cluster: Cluster, cwd: Path, name: str, text: str) -> str:
    path = cwd / name
    path.write_text(text)
    path.chmod(0o755)
    pw = pwd.getpwnam(cluster.user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return name


def started(log: Path) -> dict[str, Any]:
    """The wrapper's ``started`` event (its pid and its child's)."""
    found: dict[str, Any] = {}

    def seen() -> bool:
        try:
            found.update(next(e for e in events_of(log) if e["kind"] == "started"))
            return any(s[1].startswith("running, ") for s in state_of(log)["status"])
        except (OSError, ValueError, StopIteration):
            return False

    wait_for(seen, 120, "the wrapper's start and a first running entry")
    return found


def sacct_job(cluster: Cluster, job_id: str) -> dict[str, str]:
    return next(r for r in cluster.sacct(job_id) if r["JobID"] == job_id)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def _seconds(elapsed: str) -> int:
    h, m, s = (int(x) for x in elapsed.split("-")[-1].split(":"))
    return h * 3600 + m * 60 + s


def closed(
    cluster: Cluster, job_id: str, log: Path, want: str, ends_expected: int | None = 1
) -> dict[str, Any]:
    """The log's end agrees with sacct: hpcwrap's state, Slurm's state and exit code beside
    it, end and runtime within 60 s of sacct's, one end entry (``ends_expected``; None:
    the caller checks them)."""
    wait_for(lambda: state_of(log)["jobs"][-1]["slurm_state"] is not None, 90, "the epilog")
    state = state_of(log)
    job = state["jobs"][-1]
    row = sacct_job(cluster, job_id)
    assert job["state"] == want, state["status"]
    assert job["slurm_state"] == row["State"].split()[0], (job, row)
    assert job["slurm_exit"] == row["ExitCode"], (job, row)
    end = datetime.fromisoformat(job["end"])
    assert abs((end - _when(row["End"])).total_seconds()) <= 60, (job["end"], row["End"])
    runtime = (end - datetime.fromisoformat(job["start"])).total_seconds()
    assert abs(runtime - _seconds(row["Elapsed"])) <= 60, (runtime, row["Elapsed"])
    ends = [s[1] for s in state["status"] if not s[1].startswith(("running", "received"))]
    assert ends_expected is None or len(ends) == ends_expected, state["status"]
    return state


def idle(cluster: Cluster) -> None:
    """No node drained or down by a hook (busy with other tests' jobs is fine)."""
    states = node_states(cluster)
    assert all(s in SCHEDULABLE for s in states.values()), states


# The wrapper's end after a TERM it cannot tell apart (a scancel, a requeue, a node failure).
TERM_GUESSES = ("stopped by SIGTERM with time left", "stopped by SIGTERM (time left unknown)")


@pytest.mark.slow
@pytest.mark.long
def test_time_limit_while_the_wrapper_cannot_write(cluster: Cluster) -> None:
    cwd = project(cluster, "hook-limit")
    name = script(cluster, cwd, "long.sh", LONG)
    job_id, log = submit(cluster, cwd, *BASE, "--no-walltime-signal", "-t", "1", name)
    wrapper = int(started(log)["pid"])
    # Slurm sends SIGCONT before its TERM, so a stopped wrapper would wake and write:
    # hold the run's lock instead until the wrapper is dead (SIGKILL after KillWait).
    lock = log.parent / ".hpcwrap" / log.stem / "lock"
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        wait_for(lambda: not Path(f"/proc/{wrapper}").exists(), 240, "the wrapper's death")
    assert cluster.wait_job(job_id, timeout=120) == "TIMEOUT"
    # The wrapper, unable to take the lock after the TERM, left its reading for the next
    # writer: TIMEOUT where it saw the TERM come at the limit it read at the start, else
    # a TERM with time left, which the epilog's reading (slurmstepd's line) replaces.
    state = closed(cluster, job_id, log, "TIMEOUT", ends_expected=None)
    ends = [s[1] for s in state["status"] if not s[1].startswith(("running", "received"))]
    if len(ends) == 1:
        assert ends[0].startswith("timeout"), ends
    else:
        assert len(ends) == 2 and ends[0].startswith(TERM_GUESSES), ends
        assert "Slurm stopped it at its time limit (recorded by the epilog" in ends[1]
        assert "replaces the wrapper's reading" in ends[1]
    left = log.parent / ".hpcwrap" / log.stem / "ends"
    assert not left.exists() or not any(left.iterdir())  # the epilog applied it, once
    assert state["results"]["final_step"] is not None  # the wrapper's figures, kept


@pytest.mark.versions
def test_wrapper_sigkilled_is_closed_by_the_epilog(cluster: Cluster) -> None:
    cwd = project(cluster, "hook-kill")
    job_id, log = submit(cluster, cwd, *BASE, script(cluster, cwd, "long.sh", LONG))
    os.kill(int(started(log)["pid"]), signal.SIGKILL)
    cluster.wait_job(job_id, timeout=120)
    state = closed(cluster, job_id, log, "FAILED")
    assert "killed by signal 9" in state["status"][-1][1]
    assert state["results"]["final_step"] is not None  # from the wrapper's last progress


def test_training_child_sigkilled_is_recorded_by_the_wrapper(cluster: Cluster) -> None:
    cwd = project(cluster, "hook-child")
    job_id, log = submit(cluster, cwd, *BASE, script(cluster, cwd, "long.sh", LONG))
    os.kill(int(started(log)["child_pid"]), signal.SIGKILL)  # what the OOM killer does
    cluster.wait_job(job_id, timeout=120)
    state = closed(cluster, job_id, log, "FAILED")
    assert state["jobs"][-1]["state_source"] == "wrapper"
    assert state["status"][-1][1].startswith("failed, exit code 137 (SIGKILL)")


@pytest.mark.versions
def test_scancel_is_confirmed_with_slurms_account(cluster: Cluster) -> None:
    cwd = project(cluster, "hook-scancel")
    job_id, log = submit(cluster, cwd, *BASE, script(cluster, cwd, "long.sh", LONG))
    started(log)
    assert cluster.run_as_user(["scancel", job_id], cwd=cwd).returncode == 0
    cluster.wait_job(job_id, timeout=120)
    state = closed(cluster, job_id, log, "CANCELLED")
    # the wrapper saw only a TERM with time left, or one so early that squeue had not yet
    # said how much was left (a guess); slurmstepd's cancel line, read by the epilog,
    # settles it without a second end entry
    job = state["jobs"][-1]
    assert (job["state_source"], job["state_basis"]) == ("epilog", "reading")
    ends = [s[1] for s in state["status"] if s[1].startswith(TERM_GUESSES)]
    assert len(ends) == 1, state["status"]


@pytest.mark.slow
def test_a_real_memory_limit_kill_is_out_of_memory(cluster: Cluster) -> None:
    cwd = project(cluster, "hook-oom")
    job_id, log = submit(
        cluster, cwd, *BASE, "--mem=200M", "examples/train.sh", "--steps", "100000",
        "--steps-per-sec", "20", "--memory-spike-at-step", "20", "--memory-spike-mb", "600",
        "--memory-spike-seconds", "30", "--out-dir", "runs/oom",
    )  # fmt: skip
    cluster.wait_job(job_id, timeout=180)
    state = closed(cluster, job_id, log, "OUT_OF_MEMORY")
    assert "Exceeded job memory limit" in (cwd / f"slurm-{job_id}.out").read_text()
    assert "an out-of-memory kill" in (state["jobs"][-1]["state_note"] or "")


def test_a_script_that_cannot_start_still_shows_start_and_failure(cluster: Cluster) -> None:
    cwd = project(cluster, "hook-bad")
    res = cluster.run_as_user([cluster.hpcwrap, "log", "new", *BASE, "--task", "bad"], cwd=cwd)
    assert res.returncode == 0, res.stderr
    log = Path(res.stdout.strip())
    bad = script(cluster, cwd, "bad.sh", "#!/nonexistent/interpreter\necho never\n")
    job_id = cluster.submit(["sbatch", "--parsable", f"--comment=hpcwrap:{log}", bad], cwd=cwd)
    cluster.wait_job(job_id, timeout=120)
    state = closed(cluster, job_id, log, "FAILED")
    job = state["jobs"][-1]
    assert job["execution_id"] == job_id and job["start"] and job["node"]


@pytest.mark.versions
def test_plain_sbatch_with_hpcwrap_run_is_found_through_the_spool(cluster: Cluster) -> None:
    cwd = project(cluster, "hook-spool")
    name = script(
        cluster, cwd, "plain.sh",
        f"#!/bin/bash\nexec {cluster.hpcwrap} run --mode replication --objective spool "
        "-- python3 -u examples/toy_train.py --config examples/config.json --steps 100000 "
        "--steps-per-sec 20 --out-dir runs/spool\n",
    )  # fmt: skip
    job_id = cluster.submit(["sbatch", "--parsable", name], cwd=cwd)
    wait_for(lambda: any((cwd / "run_logs").glob("2*.md")), 60, "the run log")
    log = next((cwd / "run_logs").glob("2*.md"))
    os.kill(int(started(log)["pid"]), signal.SIGKILL)
    cluster.wait_job(job_id, timeout=120)
    closed(cluster, job_id, log, "FAILED")


@pytest.mark.parametrize(
    "comment",
    ["hpcwrap:../../etc/passwd", "hpcwrap:run_logs/x.md", "hpcwrap:" + "\x01garbage" * 100],
)
def test_hostile_comments_leave_the_nodes_idle(cluster: Cluster, comment: str) -> None:
    cwd = project(cluster, "hook-hostile")
    name = script(cluster, cwd, "ok.sh", "#!/bin/bash\necho fine\n")
    canary = Path("/etc/passwd").read_bytes()
    job_id = cluster.submit(["sbatch", "--parsable", f"--comment={comment}", name], cwd=cwd)
    assert cluster.wait_job(job_id, timeout=120) == "COMPLETED"
    idle(cluster)
    assert Path("/etc/passwd").read_bytes() == canary


def test_symlinked_run_log_leaves_the_node_idle_and_the_target_alone(cluster: Cluster) -> None:
    cwd = project(cluster, "hook-symlink")
    target = cluster.dir / "log" / "canary"  # root-owned, outside the user's tree
    target.write_text("root's\n")
    job_id, log = submit(cluster, cwd, *BASE, script(cluster, cwd, "long.sh", LONG))
    wrapper = int(started(log)["pid"])
    os.kill(wrapper, signal.SIGSTOP)  # the wrapper must not replace the planted link
    log.unlink()
    log.symlink_to(target)
    pw = pwd.getpwnam(cluster.user)
    os.lchown(log, pw.pw_uid, pw.pw_gid)
    os.kill(wrapper, signal.SIGKILL)
    cluster.wait_job(job_id, timeout=120)
    hooks_log = cluster.dir / "log" / "hooks.log"
    # the epilog's word on this job (its refusal), not a fixed wait
    wait_for(
        lambda: any(
            f"job {job_id}" in line and "is a symlink" in line
            for line in hooks_log.read_text().splitlines()
        ),
        60,
        f"the epilog's refusal of job {job_id}'s symlinked log in {hooks_log}",
        seen=lambda: hooks_log.read_text()[-600:],
    )
    idle(cluster)
    assert target.read_text() == "root's\n" and target.stat().st_uid == 0
    json.loads((log.parent / ".hpcwrap" / log.stem / "state.json").read_text())  # intact
