"""`hpcwrap scan` of a real job's output equals what the job's wrapper recorded.

A framework sample (tests/unit/job_samples) is replayed line by line at a
training-like pace by a batch script submitted with `hpcwrap sbatch` on the dev
cluster (as the non-root test user); the run log's Results must equal `hpcwrap scan`
of the job's own slurm-<id>.out.
"""

from __future__ import annotations

import json
import os
import pwd
import re
from pathlib import Path

import pytest

from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster

SAMPLES = Path(__file__).resolve().parents[1] / "unit" / "job_samples"
SUBMITTED = re.compile(r"^Submitted batch job (\d+)$", re.M)

PACE = """#!/bin/bash
#SBATCH --time=00:05:00
#SBATCH --output=slurm-%j.out
#SBATCH --ntasks=1
#SBATCH --mem=512M
# Replays a framework's output line by line, a few lines every 0.05 s, then exits as
# the sampled job did.
exec python3 -c '
import sys, time
lines = open(sys.argv[1], "rb").read().splitlines(keepends=True)
for i, line in enumerate(lines):
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
    if i % 3 == 0:
        time.sleep(0.05)
sys.exit(int(sys.argv[2]))
' "$@"
"""


def _job(cluster: Cluster, name: str, exit_code: int) -> tuple[Path, str, Path]:
    root: Path = cluster.user_dir(f"scan-{name.split('.')[0]}")
    (root / "pace.sh").write_text(PACE)
    (root / "pace.sh").chmod(0o755)
    (root / name).write_bytes((SAMPLES / name).read_bytes())
    pw = pwd.getpwnam(cluster.user)
    for p in (root / "pace.sh", root / name):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    res = cluster.run_as_user(
        [
            cluster.hpcwrap, "sbatch", "--mode", "replication", "--objective",
            f"replay {name}", "pace.sh", name, str(exit_code),
        ],
        cwd=root,
        timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    m = SUBMITTED.search(res.stdout)
    log = re.search(r"^run log: (.+)$", res.stdout, re.M)
    assert m and log, res.stdout
    return root, m.group(1), Path(log.group(1))


@pytest.mark.parametrize(
    ("name", "exit_code", "final"),
    [("megatron_oom_in_save.log", 137, "FAILED"), ("timm.log", 0, "COMPLETED")],
)
def test_results_equal_scan_of_the_jobs_output(
    cluster: Cluster, name: str, exit_code: int, final: str
) -> None:
    root, job_id, log = _job(cluster, name, exit_code)
    assert cluster.wait_job(job_id, timeout=240) in (final, "OUT_OF_MEMORY")
    state = json.loads((log.parent / ".hpcwrap" / log.stem / "state.json").read_text())
    results = state["state"]["results"]
    out = root / f"slurm-{job_id}.out"
    res = cluster.run_as_user([cluster.hpcwrap, "scan", "--json", str(out)], cwd=root)
    assert res.returncode == 0, res.stderr
    scan = json.loads(res.stdout)
    assert results["final_step"] == scan["final_step"]
    assert results["start_train_loss_text"] == scan["first_loss"]
    assert results["end_train_loss_text"] == scan["last_loss"]
    assert results["end_val_loss_text"] == scan["last_val_loss"]
    ck = scan["checkpoint"]
    assert results["checkpoint"] == (ck["path"] if ck else None)
    if name.startswith("megatron"):
        # the save OOM-killed midway is not the checkpoint, and the log says so
        assert ck["step"] == 5000 and scan["pending_save"]["step"] == 6000
        texts = [s[1] for s in state["state"]["status"]]
        assert any("not seen to complete" in t for t in texts), texts
