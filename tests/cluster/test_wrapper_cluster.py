"""`hpcwrap run` inside real Slurm jobs (dev cluster, submitted as the non-root test user).

Nothing is faked: `hpcwrap sbatch` (or plain sbatch) submits examples/train.sh, the
toy trainer prints like a real one, Slurm delivers the walltime signal and scancel's
TERM. Run logs are read as root, read only.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import Cluster
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
BASE = ["--mode", "replication", "--objective", "does the toy train under hpcwrap run?"]
SUBMITTED = re.compile(r"^Submitted batch job (\d+)$", re.M)


def project(cluster: Cluster, name: str) -> Path:
    """A user-owned folder holding a copy of examples/ (the repo may be unreadable)."""
    root: Path = cluster.user_dir(name)
    shutil.copytree(REPO / "examples", root / "examples")
    pw = pwd.getpwnam(cluster.user)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [*dirnames, *filenames]:
            os.chown(os.path.join(dirpath, n), pw.pw_uid, pw.pw_gid)
    return root


def submit(cluster: Cluster, cwd: Path, *args: str) -> tuple[str, Path]:
    res = cluster.run_as_user([cluster.hpcwrap, "sbatch", *args], cwd=cwd, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    m = SUBMITTED.search(res.stdout)
    log = re.search(r"^run log: (.+)$", res.stdout, re.M)
    assert m and log, res.stdout
    return m.group(1), Path(log.group(1))


def state_of(log: Path) -> dict[str, Any]:
    data = json.loads((log.parent / ".hpcwrap" / log.stem / "state.json").read_text())
    state: dict[str, Any] = data["state"]
    return state


def events_of(log: Path) -> list[dict[str, Any]]:
    lines = (log.parent / ".hpcwrap" / log.stem / "events.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


def output_file(cwd: Path, job_id: str) -> Path:
    return cwd / f"slurm-{job_id}.out"


@pytest.mark.versions
def test_sbatch_train_sh_fills_status_and_results(cluster: Cluster) -> None:
    cwd = project(cluster, "wrap-e2e")
    job_id, log = submit(
        cluster, cwd, *BASE, "examples/train.sh",
        "--steps", "300", "--steps-per-sec", "40", "--format", "nanogpt", "--out-dir", "runs/e2e",
    )  # fmt: skip
    assert cluster.wait_job(job_id, timeout=180) == "COMPLETED"
    state = state_of(log)
    job = state["jobs"][-1]
    assert job["execution_id"] == job_id
    assert job["state"] == "COMPLETED" and job["exit_code"] == 0
    assert job["node"] in ("n1", "n2") and job["start"] and job["end"]
    assert job["restart_count"] == 0
    texts = [s[1] for s in state["status"]]
    running = [t for t in texts if t.startswith("running, step ")]
    assert running and all("train_loss" in t for t in running), texts
    assert texts[-1].startswith("completed, exit code 0") and "step 300" in texts[-1]
    r = state["results"]
    assert r["final_step"] == 300
    assert r["start_train_loss"] > r["end_train_loss"] > 0
    assert r["start_val_loss"] is not None and r["end_val_loss"] is not None
    assert r["checkpoint"] == str(cwd / "runs" / "e2e" / "checkpoints" / "300")
    assert r["config_snapshot"] and Path(r["config_snapshot"]).is_file()
    assert r["loss_one_liner"].startswith("Train loss fell")
    md = log.read_text()
    assert "- final step: 300" in md and "## Results" in md and "MODEL_PASSPORT.json" in md
    # The output went through untouched to where sbatch put it.
    out = output_file(cwd, job_id).read_text()
    assert "toy_train: finished at step 300/300" in out
    assert out.count("iter ") >= 30
    ended = [e for e in events_of(log) if e["kind"] == "ended"][-1]
    assert ended["state"] == "COMPLETED" and ended["wrapper_cpu_s"] < 5
    # hpcwrap plot from the cluster's job venv (matplotlib is in it), with every loss the
    # output printed (nanoGPT prints one per iter line), not the progress events' few
    res = cluster.run_as_user([cluster.hpcwrap, "plot", str(log)], cwd=cwd)
    assert res.returncode == 0, res.stderr
    printed = len(re.findall(r"^iter \d+: loss", out, re.M))
    assert f"({printed} train / " in res.stderr, (printed, res.stderr)
    assert (log.parent / ".hpcwrap" / log.stem / "plot.png").is_file()


def test_walltime_signal_from_slurm_is_recorded_and_forwarded(cluster: Cluster) -> None:
    cwd = project(cluster, "wrap-walltime")
    # -t 1 with the warning 40 s before: Slurm delivers it within seconds of the start.
    job_id, log = submit(
        cluster, cwd, *BASE, "-t", "1", "--signal=B:USR2@40", "examples/train.sh",
        "--steps", "100000", "--steps-per-sec", "20", "--format", "json", "--ckpt-every", "0",
        "--out-dir", "runs/wt",
    )  # fmt: skip
    cluster.wait_job(job_id, timeout=180)
    state = state_of(log)
    job = state["jobs"][-1]
    assert job["state"] == "TIMEOUT", state["status"]
    assert job["exit_code"] == 124  # the toy's "checkpointed on the signal" exit
    warn = [s[1] for s in state["status"] if s[1].startswith("walltime warning (SIGUSR2)")]
    assert len(warn) == 1, state["status"]
    assert "left (squeue)" in warn[0] and "forwarded to the training (pid " in warn[0]
    # Slurm may send the warning at once (up to 60 s early, slurm-facts.md): the entry
    # names the step when progress was read before it, and says so when none was.
    texts = [s[1] for s in state["status"]]
    before = texts[: texts.index(warn[0])]
    if "no progress recognised yet" in warn[0]:
        assert not any("step " in t for t in before), texts  # truly none seen before it
    else:
        assert "step " in warn[0], warn[0]
    ck = state["results"]["checkpoint"]
    assert ck and (Path(ck) / "trainer_state.json").is_file()
    assert state["next"][0].startswith(f"resume for more steps from `{ck}`")
    ev = next(e for e in events_of(log) if e["kind"] == "walltime_signal")
    assert 0 < ev["time_left_s"] <= 60


def test_scancel_is_forwarded_and_recorded(cluster: Cluster) -> None:
    cwd = project(cluster, "wrap-scancel")
    job_id, log = submit(
        cluster, cwd, *BASE, "examples/train.sh",
        "--steps", "100000", "--steps-per-sec", "20", "--format", "hf", "--out-dir", "runs/c",
    )  # fmt: skip

    def running_entry() -> bool:
        try:
            return any(s[1].startswith("running, ") for s in state_of(log)["status"])
        except (OSError, ValueError, KeyError):
            return False

    wait_for(running_entry, 120, "a first running Status entry")
    res = cluster.run_as_user(["scancel", job_id], cwd=cwd)
    assert res.returncode == 0, res.stderr
    cluster.wait_job(job_id, timeout=120)
    wait_for(lambda: state_of(log)["jobs"][-1]["state"] != "RUNNING", 60, "the end record")
    state = state_of(log)
    job = state["jobs"][-1]
    assert job["state"] == "CANCELLED" and job["exit_code"] == 143
    assert any(
        s[1].startswith("received SIGTERM, forwarded to the command") for s in state["status"]
    )


def test_plain_sbatch_script_with_hpcwrap_run(cluster: Cluster) -> None:
    """No `hpcwrap sbatch`: a batch script of one's own creates its run log in the job."""
    cwd = project(cluster, "wrap-plain")
    script = cwd / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        "#SBATCH --output=plain-%j.out\n"
        f"exec {cluster.hpcwrap} run --mode 'pipeline:toy data' --objective 'plain sbatch' "
        "-- python3 -u examples/toy_train.py --steps 100 --steps-per-sec 50 --format json "
        "--config examples/config.json --out-dir runs/plain\n"
    )
    pw = pwd.getpwnam(cluster.user)
    os.chown(script, pw.pw_uid, pw.pw_gid)
    res = cluster.run_as_user(["sbatch", "--parsable", str(script)], cwd=cwd)
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip().split(";")[0]
    assert cluster.wait_job(job_id, timeout=180) == "COMPLETED"
    logs = list((cwd / "run_logs").glob("*_train.md"))
    assert len(logs) == 1
    state = state_of(logs[0])
    assert state["run_type"] == "pipeline (toy data)"
    job = state["jobs"][-1]
    assert job["execution_id"] == job_id and job["state"] == "COMPLETED"
    assert state["results"]["final_step"] == 100
    out = (cwd / f"plain-{job_id}.out").read_text()
    assert out.startswith("hpcwrap: run log ") and '"step": 100' in out


def test_array_tasks_share_one_job_block(cluster: Cluster) -> None:
    cwd = project(cluster, "wrap-array")
    job_id, log = submit(
        cluster, cwd, *BASE, "--array=0-2", "examples/train.sh",
        "--steps", "60", "--steps-per-sec", "30", "--format", "json", "--out-dir", "runs/a",
    )  # fmt: skip
    for task in range(3):
        assert cluster.wait_job(f"{job_id}_{task}", timeout=120) == "COMPLETED"
    wait_for(lambda: state_of(log)["jobs"][0]["state"] != "RUNNING", 30, "the last task's end")
    state = state_of(log)
    assert len(state["jobs"]) == 1, state["jobs"]
    job = state["jobs"][0]
    assert job["execution_id"] == f"{job_id}_[0-2]"
    assert job["state"] == "COMPLETED" and job["exit_code"] == 0
    assert job["start"] and job["end"] and set(job["node"].split(",")) <= {"n1", "n2"}
    md = log.read_text()
    assert md.count("## Job\n") == 1 and "## Job (resumed)" not in md
    texts = [s[1] for s in state["status"]]
    for task in range(3):
        assert any(t.startswith(f"task {task}: started on n") for t in texts), texts
        done = [t for t in texts if t.startswith(f"task {task}: completed, exit code 0")]
        assert len(done) == 1 and "step 60" in done[0], texts
    assert texts[-1].startswith(f"array {job_id}_[0-2]: all 3 tasks ended: 3 completed; ")
    assert state["results"]["final_step"] == 60
