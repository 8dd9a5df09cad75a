"""A real `hpcwrap sbatch` job on the dev cluster whose script makes a real offline W&B run
(WANDB_MODE=offline, an artifact logged), then `hpcwrap wandb sync --dry-run` on its log.

The job runs the training with the job venv's Python: slurm/dev-cluster installs hpcwrap there
with its wandb extra, as a cluster's training environment has wandb.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """\
#!/bin/bash
#SBATCH -t 5
export WANDB_MODE=offline WANDB_SILENT=false
export WANDB_CACHE_DIR="$PWD/cache" WANDB_CONFIG_DIR="$PWD/config"
exec {python} - <<'EOF'
import os, wandb
run = wandb.init(project="cluster-proj", entity="cluster-team")
for s in range(5):
    run.log({{"loss": 1.0 / (s + 1)}}, step=s)
art = wandb.Artifact("model", type="model")
with open("weights.bin", "wb") as f:
    f.write(os.urandom(100000))
art.add_file("weights.bin")
run.log_artifact(art)
run.finish()
EOF
"""


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            full = Path(dirpath) / name
            h.update(str(full.relative_to(root)).encode())
            if not full.is_symlink():
                h.update(oct(full.stat().st_mode).encode() + full.read_bytes())
    return h.hexdigest()


def test_a_job_offline_wandb_run_is_recorded_and_planned_without_changes(
    cluster: Cluster,
) -> None:
    cwd = cluster.user_dir("wandb-job")
    script = cwd / "train_wandb.sh"
    script.write_text(SCRIPT.format(python=cluster.python))
    pw = pwd.getpwnam(cluster.user)
    os.chown(script, pw.pw_uid, pw.pw_gid)
    res = cluster.run_as_user(
        [cluster.hpcwrap, "sbatch", "--mode", "replication", "--objective", "offline W&B",
         "train_wandb.sh"],
        cwd=cwd,
        env={"SCRATCH": str(cwd / "scratch")},  # sbatch exports it to the job
        timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    job_id = re.search(r"^Submitted batch job (\d+)$", res.stdout, re.M)
    log_line = re.search(r"^run log: (.+)$", res.stdout, re.M)
    assert job_id and log_line, res.stdout
    assert cluster.wait_job(job_id.group(1), timeout=240) == "COMPLETED"
    log = Path(log_line.group(1))
    md = log.read_text()
    local = re.search(r"^- W&B local: `(.+)`$", md, re.M)
    assert local, md
    assert Path(local.group(1)).parent == cwd / "wandb"
    # The wrapper gave the job its own WANDB_DATA_DIR under $SCRATCH: the staging is there.
    data_dir = cwd / "scratch" / f"hpcwrap-wandb-{cluster.user}" / job_id.group(1)
    staging = data_dir / "artifacts" / "staging"
    assert [p.stat().st_size for p in staging.iterdir()] == [100000]
    before = _tree_hash(cwd)
    out = subprocess.run(
        [sys.executable, "-m", "hpcwrap", "wandb", "sync", "--dry-run",
         "--entity", "cluster-team", "--project", "cluster-proj", str(log)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(cwd)},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"[job {job_id.group(1)}]: to sync" in out.stdout
    assert "remove after a successful sync: 1 staged file(s), 97.7 KiB" in out.stdout
    assert _tree_hash(cwd) == before
