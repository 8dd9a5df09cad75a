"""Faults and other users on the dev cluster: the run log survives a write that failed
once, and another user's file in the hook spool changes nothing for your job."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.test_hooks_cluster import script, started
from tests.cluster.test_wrapper_cluster import BASE, project, state_of, submit
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster

OTHER_USER = "hpcwrap-other"  # user B, made by the test where missing
SPOOL = Path("/var/spool/hpcwrap")  # the dev cluster's hook spool (slurm/dev-cluster)


def _final(log: Path) -> str | None:
    jobs = state_of(log)["jobs"]
    state = jobs[-1].get("state") if jobs else None
    return state if state not in (None, "SUBMITTED", "PENDING", "RUNNING") else None


def test_a_write_that_failed_once_is_right_after_the_next_write(cluster: Cluster) -> None:
    """`chmod 555 run_logs` mid-job, scancel, `chmod 755`, then a note: before, the note
    took 20 of hpcwrap's fields for a person's edits and the Markdown said RUNNING."""
    cwd = project(cluster, "fault-555")
    job_id, log = submit(
        cluster, cwd, *BASE, "examples/train.sh", "--steps", "100000", "--steps-per-sec", "20"
    )
    started(log)
    (cwd / "run_logs").chmod(0o555)
    try:
        assert cluster.run_as_user(["scancel", job_id], cwd=cwd).returncode == 0
        cluster.wait_job(job_id, timeout=120)
    finally:
        (cwd / "run_logs").chmod(0o755)
    res = cluster.run_as_user([cluster.hpcwrap, "log", "note", log.stem, "after the fault"],
                              cwd=cwd)  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads((log.parent / ".hpcwrap" / log.stem / "state.json").read_text())
    assert doc.get("human") in ([], None), doc.get("human")  # nothing taken for a person's
    text = log.read_text()
    assert "- state: CANCELLED" in text, text
    assert re.search(r"(?m)^- final step: \d+", text), text  # Results filled
    status = cluster.run_as_user([cluster.hpcwrap, "status", "--json"], cwd=cwd)
    assert '"CANCELLED"' in status.stdout, status.stdout


def _other_user(cluster: Cluster) -> str:
    if subprocess.run(["id", OTHER_USER], capture_output=True).returncode != 0:
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER],
            check=True,
            capture_output=True,
        )
    return OTHER_USER


def test_another_users_file_in_the_spool_changes_nothing_for_your_job(cluster: Cluster) -> None:
    """User B writes `<cluster>_<job id>` into the hook spool before A's plain-sbatch job
    (no hpcwrap comment, `hpcwrap run` inside) starts. Before: A's wrapper could not
    register, and when it was killed A's log stayed RUNNING (sacct FAILED 0:9)."""
    other = _other_user(cluster)
    cwd = project(cluster, "fault-squat")
    line = f"{cluster.hpcwrap} run --mode replication --objective squat -- sleep 300"
    name = script(cluster, cwd, "plain.sh", f"#!/bin/bash\n{line}\n")
    res = cluster.run_as_user(["sbatch", "--parsable", "--hold", name], cwd=cwd)
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip().split(";")[0]
    config = cluster.run(["scontrol", "show", "config"]).stdout
    name_of = re.search(r"(?m)^ClusterName\s*=\s*(\S+)", config)
    assert name_of, config
    squat = SPOOL / f"{name_of.group(1)}_{job_id}"
    made = subprocess.run(
        ["runuser", "-u", other, "--", "sh", "-c", f"echo /tmp/b.md > {squat}"],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0 and squat.stat().st_uid != os.getuid(), made.stderr
    assert cluster.run_as_user(["scontrol", "release", job_id], cwd=cwd).returncode == 0
    wait_for(lambda: bool(list(cwd.glob("run_logs/2*_*.md"))), 120, "the run log")
    log = next(cwd.glob("run_logs/2*_*.md"))
    pid: list[int] = []

    def wrapper_started() -> bool:
        events = (log.parent / ".hpcwrap" / log.stem / "events.jsonl").read_text().splitlines()
        pid.extend(json.loads(e)["pid"] for e in events if '"kind": "started"' in e
                   or '"kind":"started"' in e)  # fmt: skip
        return bool(pid)

    wait_for(wrapper_started, 120, "the wrapper's start")
    # the wrapper registers just after it records its start: A's own file, B's gone
    uid = int(subprocess.run(["id", "-u", cluster.user], capture_output=True, text=True,
                             check=True).stdout)  # fmt: skip
    wait_for(lambda: squat.exists() and squat.stat().st_uid == uid, 60, "A's registration")
    os.kill(pid[0], signal.SIGKILL)  # the wrapper dies: only the epilog is left
    cluster.wait_job(job_id, timeout=120)
    wait_for(lambda: _final(log) is not None, 60, "the end, recorded by the epilog")
    assert _final(log) == "FAILED", state_of(log)["jobs"]
    assert not squat.exists()  # the epilog read it and removed it


def test_a_huge_sidecar_file_does_not_get_the_job_killed(cluster: Cluster) -> None:
    """state.json filled to 300 MB mid-job (sparse: nothing on disk), the job at the dev
    cluster's enforced 500 MB: before, the wrapper read it whole at the end (RSS 765 MB)
    and Slurm killed the job for its memory. Now it is not read: the state comes from
    events.jsonl and the job ends as its training did."""
    cwd = project(cluster, "fault-huge")
    job_id, log = submit(
        cluster, cwd, *BASE, "examples/train.sh", "--steps", "200", "--steps-per-sec", "20"
    )
    started(log)
    state_json = log.parent / ".hpcwrap" / log.stem / "state.json"
    with open(state_json, "ab") as fh:
        fh.truncate(300 * 2**20)
    assert cluster.wait_job(job_id, timeout=180) == "COMPLETED"
    wait_for(lambda: _final(log) is not None, 60, "the end in the log")
    assert _final(log) == "COMPLETED"
    assert state_json.stat().st_size < 2**20  # replaced by the next write
    out = (cwd / f"slurm-{job_id}.out").read_text()
    assert "over hpcwrap's cap" in out, out[-2000:]
