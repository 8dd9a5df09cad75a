"""The Slurm dev cluster itself (slurm/dev-cluster): what every other cluster test relies on."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import DEV_CLUSTER, Cluster

pytestmark = pytest.mark.cluster

DAEMON_PID_FILES = {
    "munged": "munge/munged.pid",
    "mariadbd": "mariadb/mysqld.pid",
    "slurmdbd": "run/slurmdbd.pid",
    "slurmctld": "run/slurmctld.pid",
    "slurmd-n1": "run/slurmd-n1.pid",
    "slurmd-n2": "run/slurmd-n2.pid",
}


def daemon_pids(cdir: Path) -> dict[str, int]:
    return {name: int((cdir / rel).read_text().strip()) for name, rel in DAEMON_PID_FILES.items()}


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(") ", 1)[1][0] != "Z"


def processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line or environment contains text."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid() or not alive(int(proc.name)):
            continue
        try:
            blob = (proc / "cmdline").read_bytes() + b"\0" + (proc / "environ").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if text.encode() in blob:
            found.append(f"{proc.name} {(proc / 'cmdline').read_bytes()!r}")
    return found


# A node that is up and takes jobs, whatever the jobs of other tests are doing on it.
SCHEDULABLE = frozenset({"idle", "mixed", "allocated", "completing", "planned"})


def node_states(cluster: Cluster) -> dict[str, str]:
    """Each node's state as sinfo prints it, less a trailing ``-``: "planned" by the
    backfill scheduler for a pending job, which other tests' jobs cause when the suite
    runs in parallel (seen: ``mixed-``). Every other flag (``*`` not responding, ...)
    stays, so a node in trouble still fails the check."""
    res = cluster.run(["sinfo", "-h", "-N", "-o", "%N %T"], check=True)
    return {n: s.removesuffix("-") for n, s in (line.split() for line in res.stdout.splitlines())}


@pytest.mark.versions
def test_two_nodes_up_and_schedulable(cluster: Cluster) -> None:
    states = node_states(cluster)
    assert set(states) == {"n1", "n2"}
    # up and taking jobs: idle, or busy with other tests' jobs (they run in parallel)
    assert all(s in SCHEDULABLE for s in states.values()), states
    assert "is UP" in cluster.run(["scontrol", "ping"]).stdout


@pytest.mark.versions
def test_hook_lines_run_this_checkouts_shims(cluster: Cluster) -> None:
    config = cluster.run(["scontrol", "show", "config"], check=True).stdout
    repo = DEV_CLUSTER.parent.parent
    for key in ("Prolog", "Epilog"):
        # 22.05: "Prolog = path"; 23.11 on take several: "Prolog[0] = path"
        m = re.search(rf"^{key}(?:\[0\])?\s*=\s*(\S+)$", config, re.MULTILINE)
        assert m, f"{key} missing from slurm.conf"
        wrapper = Path(m.group(1))
        assert wrapper == cluster.dir / "hooks" / f"{key.lower()}.sh"
        assert os.access(wrapper, os.X_OK), wrapper
        shim = repo / "slurm" / f"{key.lower()}.sh"
        assert os.access(shim, os.X_OK), shim
        assert f"exec '{shim}'" in wrapper.read_text()
        python = Path(cluster.hpcwrap).with_name("python")
        assert f"HPCWRAP_PYTHON='{python}'" in wrapper.read_text()


def test_test_user_is_not_root_and_runs_current_hpcwrap(cluster: Cluster, tmp_path: Path) -> None:
    here = cluster.user_dir("whoami")
    res = cluster.run_as_user(["id", "-u"], cwd=here)
    assert res.returncode == 0 and res.stdout.strip() != "0"
    res = cluster.run_as_user([cluster.hpcwrap, "--version"], cwd=here)
    assert res.returncode == 0, res.stderr
    import hpcwrap

    assert res.stdout.strip() == f"hpcwrap {hpcwrap.__version__}"
    res = cluster.run_as_user(
        [cluster.python, "-c", "import hpcwrap; print(hpcwrap.__file__)"], cwd=here
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().startswith(str(cluster.dir)), res.stdout


@pytest.mark.versions
def test_two_node_job_as_test_user_and_sacct(cluster: Cluster) -> None:
    work = cluster.user_dir("two-node-job")
    script = work / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        "#SBATCH -N 2\n"
        "#SBATCH -t 2\n"
        "#SBATCH -o out-%j.txt\n"
        'echo "batch on $SLURMD_NODENAME as $(id -un)"\n'
        "srun bash -c 'echo \"task $SLURM_PROCID on $SLURMD_NODENAME\"'\n"
    )
    job_id = cluster.submit(["sbatch", "--parsable", "-J", "two-node", str(script)], cwd=work)
    assert job_id.isdigit(), job_id
    assert cluster.wait_job(job_id, timeout=90) == "COMPLETED"

    out = (work / f"out-{job_id}.txt").read_text()
    assert f"batch on n1 as {cluster.user}" in out
    assert sorted(re.findall(r"task \d on (n\d)", out)) == ["n1", "n2"], out

    rows = {r["JobID"]: r for r in cluster.sacct(job_id)}
    job = rows[job_id]
    assert job["State"] == "COMPLETED" and job["ExitCode"] == "0:0"
    assert job["NodeList"] == "n[1-2]" and job["NNodes"] == "2"
    assert job["User"] == cluster.user and job["JobName"] == "two-node"
    assert rows[f"{job_id}.batch"]["NodeList"] == "n1"
    assert rows[f"{job_id}.0"]["NodeList"] == "n[1-2]"


def test_up_twice_is_harmless(cluster: Cluster) -> None:
    before = daemon_pids(cluster.dir)
    res = subprocess.run(
        ["bash", str(DEV_CLUSTER), "up"],
        env={**os.environ, "HPCWRAP_DEV_CLUSTER_DIR": str(cluster.dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("already running") == len(DAEMON_PID_FILES), res.stdout
    assert "config: unchanged" in res.stdout
    assert daemon_pids(cluster.dir) == before
    assert all(alive(pid) for pid in before.values())
    assert set(node_states(cluster)) == {"n1", "n2"}


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections (Linux: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_base() -> tuple[int, int]:
    """A port base (slurmd +1/+2, slurmctld +17, slurmdbd +19) and a DB port (+30)
    that nothing listens on, so concurrent test sessions do not collide. Below the
    ephemeral range: a port free when chosen there could be any outgoing connection's
    a moment later (CI: the restarted slurmd n2 could not bind 34252)."""
    rng = random.Random(os.getpid())
    top = min(40000, _ephemeral_low()) - 50
    for _ in range(50):
        base = rng.randrange(20000, top, 50)
        ports = [base + 1, base + 2, base + 17, base + 19, base + 30]
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base, base + 30
    pytest.fail("no free ports for a second dev cluster")


@pytest.fixture
def second_cluster_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hpcwrap-dc2-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    env = {**os.environ, "HPCWRAP_DEV_CLUSTER_DIR": str(path)}
    subprocess.run(["bash", str(DEV_CLUSTER), "down"], env=env, capture_output=True, timeout=120)
    shutil.rmtree(path, ignore_errors=True)


def second_cluster_env(cluster: Cluster, cdir: Path) -> dict[str, str]:
    port_base, db_port = free_port_base()
    return {
        **cluster.env,
        "HPCWRAP_DEV_CLUSTER_DIR": str(cdir),
        "HPCWRAP_DEV_CLUSTER_PORT_BASE": str(port_base),
        "HPCWRAP_DEV_CLUSTER_DB_PORT": str(db_port),
        "SLURM_CONF": str(cdir / "etc" / "slurm.conf"),
    }


def dev_cluster(env: dict[str, str], verb: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEV_CLUSTER), verb], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_up_after_every_daemon_was_killed(cluster: Cluster, second_cluster_dir: Path) -> None:
    """What CI meets: the session that left the cluster up ended, every daemon was
    SIGKILLed and their pid files stayed. `up` must start them all again."""
    env = second_cluster_env(cluster, second_cluster_dir)
    first = dev_cluster(env, "up")
    assert first.returncode == 0, first.stdout + first.stderr
    killed = daemon_pids(second_cluster_dir)
    for pid in killed.values():
        os.kill(pid, signal.SIGKILL)
    for pid in killed.values():
        for _ in range(100):
            if not alive(pid):
                break
            time.sleep(0.1)
    again = dev_cluster(env, "up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ready" in again.stdout
    now = daemon_pids(second_cluster_dir)
    assert set(now) == set(killed) and all(alive(pid) for pid in now.values())
    assert not set(now.values()) & set(killed.values())


@pytest.mark.slow
def test_down_stops_exactly_its_own_processes(cluster: Cluster, second_cluster_dir: Path) -> None:
    """A second cluster (own folder and ports) beside the main one: `down` on it
    stops all of its processes, a running job's included, and nothing of the main one."""
    cdir = second_cluster_dir
    env = second_cluster_env(cluster, cdir)
    up = dev_cluster(env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    theirs = daemon_pids(cdir)
    ours = daemon_pids(cluster.dir)
    assert not set(theirs.values()) & set(ours.values())

    # A job still running when `down` comes: its slurmstepd must go too.
    work = cluster.user_dir("dc2-job")
    sub = cluster.run_as_user(
        ["sbatch", "--parsable", "-N", "2", "-o", "/dev/null", "--wrap", "srun sleep 600"],
        cwd=work,
        env={"SLURM_CONF": env["SLURM_CONF"]},
    )
    assert sub.returncode == 0, sub.stderr
    conf_marker = f"SLURM_CONF={env['SLURM_CONF']}"
    for _ in range(100):
        if any("slurmstepd" in p for p in processes_mentioning(conf_marker)):
            break
        subprocess.run(["sleep", "0.2"], check=True)
    else:
        pytest.fail("the second cluster's job never started")

    down = dev_cluster(env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [name for name, pid in theirs.items() if alive(pid)]
    assert processes_mentioning(str(cdir)) == []
    # The main cluster is untouched.
    assert all(alive(pid) for pid in ours.values())
    assert daemon_pids(cluster.dir) == ours
    assert "is UP" in cluster.run(["scontrol", "ping"]).stdout
