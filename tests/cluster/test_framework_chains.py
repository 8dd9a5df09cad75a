"""Real framework trainings continued over Slurm time limits on the dev cluster, each with
the exact recipe docs/resume.md gives (the scripts below are those recipes):

- Lightning's own SLURM requeue under ``srun`` (``SLURMEnvironment(auto_requeue=True)``,
  ``#SBATCH --signal=SIGUSR1@60``): one ``## Job (resumed)`` block per attempt, each
  resumed from the ``hpc_ckpt_N.ckpt`` Lightning says it restored;
- Lightning under hpcwrap's chain (``--resume auto``, ``fit(ckpt_path=...)`` from
  ``HPCWRAP_RESUME_FROM``);
- HF Trainer under hpcwrap's chain with ``resume_from_checkpoint`` from
  ``HPCWRAP_RESUME_FROM`` (no ``--resume-arg``, no ``--checkpoint-glob``; ``True`` would
  take a checkpoint-N a kill left half-written: docs/resume.md).

Each reaches its exact total over at least three jobs (two attempts for Lightning's
requeue: Slurm holds a requeued job 121 s), every end equal to Slurm's (or different by
design), telemetry read from the training under ``srun``. The trainings are tiny CPU models
paced with a sleep per step; they need the frameworks extra, from this test run's own
Python where the test user can run it, else from a venv built once for the cluster.
"""

from __future__ import annotations

import fcntl
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import REPO, Cluster
from tests.cluster.test_hooks_cluster import script
from tests.cluster.test_resume_cluster import assert_slurm_agrees, chain_done
from tests.cluster.test_wrapper_cluster import BASE, project, state_of, submit
from tests.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.frameworks, pytest.mark.slow, pytest.mark.long]

TRAINERS = Path(__file__).parent / "trainers"
FRAMEWORK_SCRIPTS = REPO / "tests" / "frameworks" / "scripts"
IMPORTS = "import torch, transformers, datasets, pytorch_lightning"
# The dev cluster enforces memory (OverMemoryKill) with 500 MB per CPU by default: an HF
# run peaks near it (480 MB seen) and was once killed at its start in CI.
MEM = ("--mem", "2G")
OFFLINE = (
    "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1\n"
    'export HF_HOME="$PWD/.hf_home"\n'
)


def _frameworks_pins() -> list[str]:
    """The frameworks extra's pins, as pyproject.toml lists them (one per line)."""
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"(?ms)^frameworks = \[(.*?)^\]", text)
    assert block, "pyproject.toml: no frameworks extra"
    return re.findall(r'"([^"]+)"', block.group(1))


@pytest.fixture(scope="session")
def framework_python(cluster: Cluster) -> str:
    """A Python with the frameworks extra that the test user's jobs can run."""
    if any(importlib.util.find_spec(m) is None for m in ("torch", "pytorch_lightning")):
        pytest.skip("the frameworks extra is not installed: pip install -e '.[frameworks]'")
    probe = cluster.run_as_user([sys.executable, "-c", IMPORTS], cwd=cluster.tmp_root, timeout=300)
    if probe.returncode == 0:
        return sys.executable
    # This checkout's venv is not readable by the test user (a clone under /root): build
    # one for the jobs, once per cluster and set of pins.
    venv = cluster.dir / "frameworks-venv"
    pins = _frameworks_pins()
    stamp = venv / ".pins"
    with open(cluster.dir / "frameworks-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.is_file() and stamp.read_text() == "\n".join(pins)):
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            pip = [str(venv / "bin" / "pip"), "install", "-q", *pins]
            subprocess.run(pip, check=True, timeout=1200)
            subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
            stamp.write_text("\n".join(pins))
    return str(venv / "bin" / "python")


def _copy(cluster: Cluster, src: Path, cwd: Path) -> None:
    script(cluster, cwd, src.name, src.read_text())


def _sacct_attempts(cluster: Cluster, job_id: str) -> list[str]:
    """Every attempt of a job in accounting, oldest first (``--duplicates``)."""
    res = cluster.run(
        ["sacct", "-a", "-n", "-X", "-P", "--duplicates", "-j", job_id, "-o", "State"]
    )
    return [line.split()[0] for line in res.stdout.split() if line]


def _steps_of(out: Path, rx: str) -> list[int]:
    return [int(m) for m in re.findall(rx, out.read_text(errors="replace"))]


def _assert_telemetry(state: dict[str, Any]) -> None:
    """Telemetry read from the training under srun, not from the srun client or the
    wrapper (before: 0% CPU and 12 MB): torch alone is 200 MB and more."""
    tele = state["telemetry"]
    assert tele["peak_rss_bytes"] >= 100 * 2**20 and tele["cpu_efficiency"] > 0.05, tele


def test_lightning_requeue_under_srun(cluster: Cluster, framework_python: str) -> None:
    cwd = project(cluster, "fw-lightning-requeue")
    _copy(cluster, TRAINERS / "lightning_chain.py", cwd)
    total = 2000  # more than one attempt trains (the warning comes at most 60 s in)
    recipe = (
        "#!/bin/bash\n#SBATCH --signal=SIGUSR1@60\n#SBATCH --ntasks=1\n" + OFFLINE
        + f"srun {framework_python} lightning_chain.py --requeue --max-steps {total} --pace 0.03\n"
    )  # fmt: skip
    name = script(cluster, cwd, "train.sh", recipe)
    job_id, log = submit(cluster, cwd, *BASE, *MEM, "-t", "2", name)

    def over() -> bool:
        jobs = state_of(log)["jobs"]
        return bool(jobs) and jobs[-1].get("state") == "COMPLETED"

    wait_for(over, 1200, "the last attempt to complete", lambda: state_of(log)["jobs"])
    state = state_of(log)
    jobs = state["jobs"]
    # Two attempts at least: 2,000 steps are more than one attempt trains before the
    # warning (at most 60 s in). Not three: Slurm holds a requeued job 121 s before it may
    # start again, so each attempt costs 2.5 minutes of the suite (the two hpcwrap chains
    # below and the nanoGPT one go three jobs deep).
    assert len(jobs) >= 2, [(j["state"], j.get("resumed_from")) for j in jobs]
    assert [j["state"] for j in jobs] == ["REQUEUED"] * (len(jobs) - 1) + ["COMPLETED"]
    assert {j["execution_id"] for j in jobs} == {job_id}
    cluster.wait_job(job_id, timeout=120)
    assert _sacct_attempts(cluster, job_id) == [j["state"] for j in jobs]
    for n, job in enumerate(jobs[1:], start=1):  # each attempt names Lightning's checkpoint
        assert job["resumed_from"] == str(cwd / f"hpc_ckpt_{n}.ckpt"), job
    assert log.read_text().count("## Job (resumed)") == len(jobs) - 1
    assert state["results"]["final_step"] == total
    assert state.get("chain") is None  # nothing of hpcwrap's own chain
    _assert_telemetry(state)
    out = cwd / f"slurm-{job_id}.out"
    steps = _steps_of(out, r"(?m)^step (\d+):")
    print(f"chain lightning-requeue: {len(jobs)} attempts, steps printed {steps[0]}..{steps[-1]}")


def test_lightning_under_hpcwraps_chain_with_ckpt_path(
    cluster: Cluster, framework_python: str
) -> None:
    cwd = project(cluster, "fw-lightning-chain")
    _copy(cluster, TRAINERS / "lightning_chain.py", cwd)
    total = 6000  # about 25 steps a second: at most about 2,200 a -t 1 job
    recipe = (
        "#!/bin/bash\n" + OFFLINE
        + f"exec {framework_python} lightning_chain.py --max-steps {total} --every 100 "
        "--pace 0.03\n"
    )  # fmt: skip
    name = script(cluster, cwd, "train.sh", recipe)
    _, log = submit(
        cluster, cwd, *BASE, *MEM, "--resume", "auto", "--max-resumes", "6", "-t", "1", name
    )
    _assert_chain(cluster, log, total, r"/checkpoints/step=\d+\.ckpt$", "lightning-chain")


def test_hf_trainer_under_hpcwraps_chain_resumes_from_hpcwraps_checkpoint(
    cluster: Cluster, framework_python: str
) -> None:
    cwd = project(cluster, "fw-hf-chain")
    _copy(cluster, FRAMEWORK_SCRIPTS / "hf_train.py", cwd)
    total = 6000  # about 25 steps a second: at most about 2,200 a -t 1 job
    recipe = (
        "#!/bin/bash\n" + OFFLINE
        + f'exec {framework_python} hf_train.py --steps {total} --every 100 --pace 0.03 "$@"\n'
    )  # fmt: skip
    name = script(cluster, cwd, "train.sh", recipe)
    _, log = submit(
        cluster, cwd, *BASE, *MEM, "--resume", "auto", "--max-resumes", "6", "-t", "1", name,
    )  # fmt: skip
    _assert_chain(cluster, log, total, r"/out_hf/checkpoint-\d+$", "hf-chain")


def _assert_chain(cluster: Cluster, log: Path, total: int, resumed_rx: str, name: str) -> None:
    """An hpcwrap chain that reached its total: three jobs or more in one log, each
    successor resumed from a checkpoint of the kind ``resumed_rx`` names.

    One ending is a race the chain must get right: the job killed at its limit just after
    the training's final save (HF's checkpoint-<total>). Its successor then does not
    train (resuming would take the HF Trainer one step past the total) and the chain is
    done, not stopped."""
    wait_for(lambda: chain_done(log), 1200, "the chain to end", lambda: state_of(log)["jobs"])
    state = state_of(log)
    jobs, chain = state["jobs"], state["chain"]
    early = "the training reached its total before the limit" in chain["stopped"]
    trained = jobs[:-1] if early else jobs
    assert len(trained) >= 3, [(j["state"], j.get("resumed_from")) for j in jobs]
    last = "TIMEOUT" if early else "COMPLETED"
    assert [j["state"] for j in trained] == ["TIMEOUT"] * (len(trained) - 1) + [last]
    assert_slurm_agrees(cluster, jobs)
    for job in trained[1:]:
        assert re.search(resumed_rx, job["resumed_from"]), job
    assert log.read_text().count("## Job (resumed)") == len(jobs) - 1
    assert state["results"]["final_step"] == total
    if early:
        assert jobs[-1]["state"] == "COMPLETED" and not jobs[-1].get("resumed_from"), jobs[-1]
        assert chain["done"] and f"of {total}" in chain["stopped"], chain
    else:
        assert chain["stopped"].startswith(f"job {jobs[-1]['execution_id']} ended COMPLETED")
    _assert_telemetry(state)
    _print_jobs(name, jobs)


def _print_jobs(name: str, jobs: list[dict[str, Any]]) -> None:
    """For the note: each job's wall time and the step it resumed from."""
    for job in jobs:
        frm = Path(job.get("resumed_from") or "-").name
        print(
            f"chain {name}: job {job['execution_id']} {job['state']} "
            f"{job.get('start')} to {job.get('end')}, resumed from {frm}"
        )
