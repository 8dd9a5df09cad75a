"""Telemetry in real Slurm jobs on the two-node dev cluster (submitted as the test user)."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster


def write_script(cluster: Cluster, folder: Path, text: str) -> Path:
    path = folder / "job.sh"
    path.write_text(text)
    pw = pwd.getpwnam(cluster.user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def the_run(folder: Path) -> Path:
    logs = [p for p in (folder / "run_logs").glob("*.md") if p.name != "timeline.md"]
    assert len(logs) == 1, logs
    return logs[0]


def records(sidecar: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(sidecar.glob("telemetry*.jsonl")):
        out.extend(json.loads(x) for x in path.read_text().splitlines() if x.strip())
    return out


def test_every_node_of_a_two_node_job_is_sampled(cluster: Cluster) -> None:
    folder = cluster.user_dir("telemetry-2n")
    script = write_script(
        cluster,
        folder,
        "#!/bin/bash\n"
        "#SBATCH --nodes=2 --ntasks-per-node=1 --time=5 --output=job.out\n"
        f"exec {cluster.hpcwrap} run --telemetry-interval 1 --mode replication "
        "--objective 'two nodes sampled' -- srun --overlap sleep 12\n",
    )
    job = cluster.submit(["sbatch", "--parsable", str(script)], cwd=folder)
    assert cluster.wait_job(job, timeout=180) == "COMPLETED", (folder / "job.out").read_text()
    log = the_run(folder)
    sidecar = log.parent / ".hpcwrap" / log.stem
    recs = records(sidecar)
    nodes = {r["node"] for r in recs}
    assert {"n1", "n2"} <= nodes, (nodes, sorted(p.name for p in sidecar.iterdir()))
    assert (sidecar / "telemetry.jsonl").exists()
    state = json.loads((sidecar / "state.json").read_text())["state"]
    assert set(state["telemetry"]["nodes"]) >= {"n1", "n2"}
    md = log.read_text()
    assert "- cpu_efficiency: `" in md and "- gpu: none (" in md


def busy_core(
    cluster: Cluster, name: str, *, hold_mb: int = 0, launcher: str = "", sbatch: str = ""
) -> tuple[dict[str, Any], float]:
    """A job whose command keeps one core busy for 8 s (holding ``hold_mb`` MB), under
    ``launcher``: its telemetry summary, and the share of the core it really got (below 1
    on a loaded test machine)."""
    folder = cluster.user_dir(name)
    got = folder / "share.txt"
    burn = (
        f"import time\nheld = bytearray({hold_mb} * 2**20)\nt = time.time()\n"
        "while time.time() - t < 8: pass\n"
        f"open({str(got)!r}, 'w').write(repr(time.process_time() / (time.time() - t)))\n"
    )
    (folder / "burn.py").write_text(burn)
    pw = pwd.getpwnam(cluster.user)
    os.chown(folder / "burn.py", pw.pw_uid, pw.pw_gid)
    script = write_script(
        cluster,
        folder,
        "#!/bin/bash\n"
        f"#SBATCH --nodes=1 --ntasks=1 --cpus-per-task=1 {sbatch} --time=5 --output=job.out\n"
        f"exec {cluster.hpcwrap} run --telemetry-interval 1 --mode replication "
        f"--objective '{name}' -- {launcher} {cluster.python} burn.py\n",
    )
    job = cluster.submit(["sbatch", "--parsable", str(script)], cwd=folder)
    assert cluster.wait_job(job, timeout=180) == "COMPLETED", (folder / "job.out").read_text()
    share = min(float(got.read_text()), 1.0)
    log = the_run(folder)
    state = json.loads((log.parent / ".hpcwrap" / log.stem / "state.json").read_text())["state"]
    return state["telemetry"], share


def test_cpu_efficiency_with_one_cpu_per_task(cluster: Cluster) -> None:
    t, share = busy_core(cluster, "telemetry-eff")
    assert t["alloc_cpus"] == 1
    assert t["cpu_efficiency"] > 0.9 * share, (t, share)


def test_a_training_under_srun_is_measured(cluster: Cluster) -> None:
    """`srun python train.py` runs the training under slurmstepd, outside the wrapper's
    process tree: the batch node's samples must still be the training's (CPU and memory),
    not the srun client's (cpu_efficiency 0.14%, peak_rss 9.6 MB before)."""
    t, share = busy_core(cluster, "telemetry-srun", hold_mb=300, launcher="srun",
                         sbatch="--mem=1G")  # fmt: skip
    assert t["cpu_efficiency"] > 0.7 * share, (t, share)
    assert t["peak_rss_bytes"] > 300 * 2**20, t  # the training's 300 MB, not the client's
