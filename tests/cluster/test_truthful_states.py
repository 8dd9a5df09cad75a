"""The log's end state agrees with Slurm's account (real dev cluster, real limits, requeue).

The toy trainer handles no TERM, so at the time limit Slurm's TERM kills it; with
``--no-walltime-signal`` no warning comes first. sacct is the reference.
"""

from __future__ import annotations

import os
import pwd

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.test_wrapper_cluster import BASE, project, state_of, submit
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.mark.slow
@pytest.mark.long
def test_an_unhandled_time_limit_is_timeout_as_sacct_says(cluster: Cluster) -> None:
    cwd = project(cluster, "truth-timeout")
    # examples/train.sh asks for its own warning (#SBATCH --signal); this one asks for none.
    script = cwd / "long.sh"
    script.write_text(
        "#!/bin/bash\n"
        "exec python3 -u examples/toy_train.py --config examples/config.json --steps 100000 "
        "--steps-per-sec 20 --format json --out-dir runs/t\n"
    )
    pw = pwd.getpwnam(cluster.user)
    os.chown(script, pw.pw_uid, pw.pw_gid)
    job_id, log = submit(cluster, cwd, *BASE, "--no-walltime-signal", "-t", "1", "long.sh")
    assert cluster.wait_job(job_id, timeout=240) == "TIMEOUT"
    wait_for(lambda: state_of(log)["jobs"][-1]["state"] != "RUNNING", 60, "the end record")
    state = state_of(log)
    job = state["jobs"][-1]
    assert job["state"] == "TIMEOUT", state["status"]
    assert not any(s[1].startswith("walltime warning") for s in state["status"])
    assert state["status"][-1][1].startswith("timeout, exit code 143")


@pytest.mark.slow
@pytest.mark.long
def test_a_requeued_attempt_is_requeued_not_cancelled(cluster: Cluster) -> None:
    cwd = project(cluster, "truth-requeue")
    job_id, log = submit(
        cluster, cwd, *BASE, "--requeue", "examples/train.sh",
        "--steps", "100000", "--steps-per-sec", "20", "--format", "hf", "--out-dir", "runs/r",
    )  # fmt: skip

    def running(n: int) -> bool:
        try:
            jobs = state_of(log)["jobs"]
        except (OSError, ValueError, KeyError):
            return False
        return len(jobs) >= n and jobs[n - 1]["state"] == "RUNNING"

    wait_for(lambda: running(1), 120, "the first attempt running")
    res = cluster.run(["scontrol", "requeue", job_id])
    assert res.returncode == 0, res.stderr
    wait_for(lambda: running(2), 240, "the second attempt running")
    cluster.run_as_user(["scancel", job_id], cwd=cwd)
    assert cluster.wait_job(job_id, timeout=120) == "CANCELLED"
    wait_for(lambda: state_of(log)["jobs"][-1]["state"] != "RUNNING", 60, "the end record")
    first, second = state_of(log)["jobs"]
    assert first["state"] == "REQUEUED", first
    assert first["execution_id"] == second["execution_id"] == job_id
    assert second["restart_count"] == 1 and second["state"] == "CANCELLED"
    # Slurm's own account of the first attempt says the same
    rows = cluster.run(
        ["sacct", "-a", "-n", "-X", "-P", "--duplicates", "-j", job_id, "-o", "State"]
    ).stdout.split()
    assert rows[0] == "REQUEUED", rows
