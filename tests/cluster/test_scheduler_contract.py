"""The scheduler interface's batched queries (what poll needs), against the real dev cluster.

The contract runs for every backend: the command-line one always; the pyslurm
one only when an importable pyslurm matches the running Slurm, which it cannot
here (no pyslurm release matches Slurm 22.05, see spec/slurm-facts.md): that
case is skipped with the reason printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from hpcwrap.scheduler.base import Scheduler
from hpcwrap.scheduler.cli_backend import CliScheduler
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster


def _cli(cluster: Cluster) -> Scheduler:
    return CliScheduler(env=cluster.env)


def _pyslurm(cluster: Cluster) -> Scheduler:
    from hpcwrap.scheduler.pyslurm_backend import PyslurmScheduler, matches

    version = CliScheduler(env=cluster.env).slurm_version()
    if not matches(version):
        pytest.skip(
            f"no importable pyslurm matching Slurm {version or '?'}: pyslurm X.Y builds only "
            "against Slurm X.Y and none exists for 22.05 (spec/slurm-facts.md)"
        )
    return PyslurmScheduler(env=cluster.env)


@pytest.mark.parametrize("make", [_cli, _pyslurm], ids=["cli", "pyslurm"])
def test_queue_and_history_answer_many_jobs_in_one_call(
    cluster: Cluster, make: Callable[[Cluster], Scheduler]
) -> None:
    sched = make(cluster)
    work = cluster.user_dir("contract")
    held = [
        cluster.submit(
            ["sbatch", "--parsable", "--hold", "-o", "/dev/null", "--wrap", "true"], work
        )
        for _ in range(3)
    ]
    array = cluster.submit(
        ["sbatch", "--parsable", "--hold", "-a", "0-2", "-o", "/dev/null", "--wrap", "true"], work
    )
    try:
        queue = sched.queue([*held, f"{array}_[0-2]"], 30)
        by_id = {q.job_id: q for q in queue}
        for job in held:
            assert by_id[job].state == "PENDING" and by_id[job].reason == "JobHeldUser"
        assert any(q.array_job_id == array for q in queue)
        assert all(q.user == cluster.user for q in queue)
    finally:
        cluster.run(["scancel", *held, array])
    for job in held:
        cluster.wait_job(job)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = sched.history([*held, array], 30)
        cancelled = {r.job_id for r in rows if r.state.startswith("CANCELLED")}
        if set(held) <= cancelled and any(r.array_job_id == array for r in rows):
            break
        time.sleep(1)
    done = {r.job_id: r for r in rows}
    for job in held:
        assert done[job].state.startswith("CANCELLED by"), done[job]
        assert done[job].exit == "0:0" and done[job].start is None  # never started
    assert any(r.array_job_id == array for r in rows)
