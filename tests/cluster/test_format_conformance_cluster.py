"""A run log made by `hpcwrap sbatch` on the dev cluster conforms to docs/run-log-format.md."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.test_wrapper_cluster import project, state_of, submit
from tests.format_conformance import check

pytestmark = pytest.mark.cluster

SCRIPT = (
    "#!/bin/bash\n"
    "exec python3 -u examples/toy_train.py --config examples/config.json --steps 60 "
    "--steps-per-sec 0 --log-every 5 --eval-every 20 --ckpt-every 20 --out-dir out\n"
)


def wait_final(log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = state_of(log)["jobs"]
        if jobs and jobs[-1].get("state") in ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"):
            return
        time.sleep(0.5)
    raise AssertionError(f"{log} never recorded the end")


def test_sbatch_run_log_conforms(cluster: Cluster) -> None:
    proj = project(cluster, "format-conformance")
    script = proj / "train.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    import os
    import pwd

    pw = pwd.getpwnam(cluster.user)
    os.chown(script, pw.pw_uid, pw.pw_gid)
    job_id, log = submit(
        cluster,
        proj,
        "--mode",
        "replication",
        "--objective",
        "does the sbatch log follow the format document?",
        "--description",
        "conformance",
        "--config",
        "examples/config.json",
        "--dataset",
        "/data/toy/toy.parquet",
        "--set",
        "lr=3e-4",
        "-p",
        "debug",
        "-t",
        "2",
        "train.sh",
    )
    assert cluster.wait_job(job_id) == "COMPLETED"
    wait_final(log)
    md = log.read_text()
    assert check(md, slurm=True) == [], md
    assert f"- execution_id: {job_id}\n" in md
