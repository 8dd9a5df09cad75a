"""`hpcwrap poll` / `hpcwrap status` and the follow-up job on a real Slurm with accounting.

A second dev cluster in its own folder and ports, with the settings that
differ from the shared one: NO node hooks (HPCWRAP_DEV_CLUSTER_HOOKS=off: the
hook wrappers run no hpcwrap, as on a cluster without an admin) and
MinJobAge=10, so an ended job leaves slurmctld within seconds and only sacct
knows it. Jobs run this checkout's hpcwrap from the shared cluster's job venv.
The wrapper's hook-spool registrations go to the second cluster's own spool,
so the shared cluster's epilog never sees them.

Every `squeue` and `sacct` poll runs goes through counting shims on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpcwrap.runlog import RunLog, lifecycle
from hpcwrap.runlog.model import JobBlock
from tests.cluster import ends_rows
from tests.cluster.conftest import DEV_CLUSTER, Cluster
from tests.cluster.test_dev_cluster import dev_cluster, second_cluster_env
from tests.waiting import wait_for

# Under pytest-xdist each worker that runs a test of this module brings up its own
# second cluster (the module fixture); the last test stops only its worker's controller
# (a worker runs the tests it is given in collection order).
pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SHIM = """#!/bin/sh
echo "{tool} $*" >> "{log}"
exec /usr/bin/{tool} "$@"
"""


@dataclass
class NoHooksCluster:
    """The second cluster, and how the test user works on it."""

    main: Cluster
    dir: Path
    env: dict[str, str]  # for root's Slurm commands
    user_env: dict[str, str]  # added to the test user's environment
    calls_log: Path

    def slurm(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=60)

    def hpcwrap(
        self, work: Path, *argv: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self.main.run_as_user(
            [self.main.hpcwrap, *argv], cwd=work, env=self.user_env, timeout=timeout
        )

    def calls(self) -> list[str]:
        return self.calls_log.read_text().splitlines() if self.calls_log.exists() else []

    def reset_calls(self) -> None:
        self.calls_log.write_text("")
        os.chmod(self.calls_log, 0o666)

    def sacct_state(self, job_id: str) -> tuple[str, str]:
        res = self.slurm("sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode")
        lines = res.stdout.strip().splitlines()
        if not lines:
            return "", ""  # accounting has not recorded the job yet
        state, _, code = lines[-1].partition("|")
        return state, code

    def in_squeue(self, job_id: str) -> bool:
        res = self.slurm("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%i")
        return res.returncode == 0 and job_id in res.stdout.split()

    def wait_final(self, job_id: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state, _ = self.sacct_state(job_id)
            word = state.split()[0] if state else ""
            if word and lifecycle.is_final(lifecycle.from_slurm(word)) and word != "REQUEUED":
                return word
            time.sleep(1)
        raise TimeoutError(f"job {job_id} not final: {self.sacct_state(job_id)}")


@pytest.fixture(scope="module")
def nohooks(cluster: Cluster) -> Iterator[NoHooksCluster]:
    cdir = Path(tempfile.mkdtemp(prefix="hpcwrap-nohooks-", dir="/tmp"))
    cdir.chmod(0o755)
    env = second_cluster_env(cluster, cdir)
    env["HPCWRAP_DEV_CLUSTER_HOOKS"] = "off"
    env["HPCWRAP_DEV_CLUSTER_MIN_JOB_AGE"] = "10"
    try:
        up = dev_cluster(env, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        hooks = (cdir / "hooks" / "epilog.sh").read_text()
        assert "HPCWRAP_PYTHON=''" in hooks  # the shim exits 0 at once: no hook runs
        assert "MinJobAge=10" in (cdir / "etc" / "slurm.conf").read_text()
        spool = cdir / "hpcwrap-spool"
        spool.mkdir(mode=0o1777)
        spool.chmod(0o1777)
        shims = cdir / "shims"
        shims.mkdir(mode=0o755)
        calls = cdir / "slurm-calls.log"
        for tool in ("squeue", "sacct"):
            path = shims / tool
            path.write_text(SHIM.format(tool=tool, log=calls))
            path.chmod(0o755)
        user_env = {
            "SLURM_CONF": env["SLURM_CONF"],
            "HPCWRAP_SPOOL": str(spool),
            "PATH": f"{shims}:{cluster.user_env['PATH']}",
        }
        c = NoHooksCluster(cluster, cdir, env, user_env, calls)
        c.reset_calls()
        yield c
    finally:
        subprocess.run(
            ["bash", str(DEV_CLUSTER), "down"], env=env, capture_output=True, timeout=300
        )
        shutil.rmtree(cdir, ignore_errors=True)


def workdir(c: NoHooksCluster, name: str, follow_up: bool = False) -> Path:
    work = c.main.user_dir(name)
    (work / "hpcwrap.toml").write_text(
        'mode = "replication"\nobjective = "poll on a cluster without hooks"\n'
        # the follow-up job is on by default; these tests show what poll alone does
        + f"follow_up = {'true' if follow_up else 'false'}\n"
    )
    scripts = {
        "ok.sh": "echo step 1 loss 2.5\nsleep 2\n",
        "fail.sh": "echo step 1 loss 2.5\nexit 3\n",
        "long.sh": "echo step 1 loss 2.5\nsleep 600\n",
        "requeue.sh": "echo step 1 loss 2.5\nsleep 20\n",
        "killwrapper.sh": "echo step 1 loss 2.5\nsleep 2\nkill -9 $PPID\nsleep 60\n",
    }
    for name_, body in scripts.items():
        (work / name_).write_text("#!/bin/bash\n" + body)
        (work / name_).chmod(0o755)
    for p in work.iterdir():
        os.chown(p, c.main._uid, c.main._gid)
    return work


def sbatch(c: NoHooksCluster, work: Path, *argv: str) -> tuple[str, Path]:
    res = c.hpcwrap(work, "sbatch", "--parsable", *argv)
    assert res.returncode == 0, res.stdout + res.stderr
    job = res.stdout.strip().splitlines()[-1].split(";")[0]
    log = next(line for line in res.stderr.splitlines() if "run log:" in line)
    return job, Path(log.split("run log:", 1)[1].strip())


def newest(path: Path) -> JobBlock:
    return RunLog(path).read().jobs[-1]


def files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def poll(c: NoHooksCluster, work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return c.hpcwrap(work, "poll", "--json", "--min-interval", "0", *extra)


@pytest.mark.long
@pytest.mark.versions
def test_one_poll_brings_every_log_to_sacct_and_a_second_adds_nothing(
    nohooks: NoHooksCluster,
) -> None:
    c = nohooks
    work = workdir(c, "poll-states")
    jobs: dict[str, tuple[str, Path]] = {}
    jobs["pending"] = sbatch(c, work, "--hold", "ok.sh")
    jobs["cancelled_pending"] = sbatch(c, work, "--hold", "ok.sh")
    jobs["running"] = sbatch(c, work, "long.sh")
    jobs["completed"] = sbatch(c, work, "ok.sh")
    jobs["failed"] = sbatch(c, work, "fail.sh")
    jobs["timeout"] = sbatch(c, work, "-t", "1", "long.sh")
    jobs["killed_wrapper"] = sbatch(c, work, "killwrapper.sh")
    jobs["requeued"] = sbatch(c, work, "requeue.sh")
    assert c.slurm("scancel", jobs["cancelled_pending"][0]).returncode == 0

    # The requeue: once its wrapper has recorded the start, requeue it; it runs again
    # and completes.
    rq, rq_log = jobs["requeued"]
    wait_for(
        lambda: newest(rq_log).state == "RUNNING",
        120,
        f"job {rq}'s wrapper recording its start",
        seen=lambda: (newest(rq_log).state, c.slurm("squeue", "-h", "-j", rq, "-o", "%T").stdout),
    )
    assert c.slurm("scontrol", "requeue", rq).returncode == 0
    for name in ("completed", "failed", "timeout", "killed_wrapper", "requeued"):
        c.wait_final(jobs[name][0], timeout=240)
    c.wait_final(jobs["cancelled_pending"][0])
    # MinJobAge=10: the ended jobs left slurmctld; only sacct knows them now.
    for _ in range(60):
        if not c.in_squeue(jobs["cancelled_pending"][0]) and not c.in_squeue(
            jobs["killed_wrapper"][0]
        ):
            break
        time.sleep(1)
    assert not c.in_squeue(jobs["killed_wrapper"][0])
    assert not c.in_squeue(jobs["cancelled_pending"][0])
    # Stale before the poll: nothing inside those jobs could write their end.
    assert newest(jobs["cancelled_pending"][1]).state == "SUBMITTED"
    assert newest(jobs["killed_wrapper"][1]).state == "RUNNING"
    assert newest(jobs["pending"][1]).state == "SUBMITTED"

    c.reset_calls()
    res = poll(c, work)
    assert res.returncode == 0, res.stdout + res.stderr
    calls = c.calls()
    print("first poll:", res.stdout, "\nSlurm calls:", calls)  # evidence, with pytest -s
    assert [line.split()[0] for line in calls] == ["squeue", "sacct"], calls
    assert "--duplicates" in calls[1]

    for name, (job, path) in jobs.items():
        block = newest(path)
        if name == "pending":
            assert block.state == "PENDING" and block.pending_reason == "JobHeldUser"
            continue
        if name == "running":
            assert block.state == "RUNNING"
            continue
        state, code = c.sacct_state(job)
        assert block.state == lifecycle.from_slurm(state), (name, block, state, code)
    killed = newest(jobs["killed_wrapper"][1])
    assert killed.slurm_state == "FAILED" and killed.slurm_exit == "0:9"
    cancelled = RunLog(jobs["cancelled_pending"][1]).read()
    assert "CANCELLED by" in cancelled.status[-1].text
    requeued = RunLog(jobs["requeued"][1]).read()
    assert [j.state for j in requeued.jobs][-2:] == ["REQUEUED", "COMPLETED"]

    status = c.hpcwrap(work, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert '"JobHeldUser"' in status.stdout

    # The running job's own wrapper keeps writing its run (telemetry, progress): only
    # the other runs' files show whether the second poll wrote anything.
    running = jobs["running"][1]
    own = (str(running), str(running.parent / ".hpcwrap" / running.stem))
    before = {k: v for k, v in files(work / "run_logs").items() if not k.startswith(own)}
    c.reset_calls()
    again = poll(c, work)
    assert again.returncode == 0, again.stderr
    print("second poll:", again.stdout, "\nSlurm calls:", c.calls())
    assert '"written":0' in again.stdout.replace(" ", "")
    assert len([x for x in c.calls() if x.startswith("squeue")]) == 1
    after = {k: v for k, v in files(work / "run_logs").items() if not k.startswith(own)}
    assert after == before

    c.slurm("scancel", jobs["pending"][0], jobs["running"][0])


def test_follow_up_job_closes_a_sigkilled_wrappers_log_without_hooks(
    nohooks: NoHooksCluster,
) -> None:
    c = nohooks
    work = workdir(c, "poll-follow-up", follow_up=True)
    killed, killed_log = sbatch(c, work, "killwrapper.sh")
    ok, ok_log = sbatch(c, work, "ok.sh")
    fu_killed = RunLog(killed_log).read().submit
    fu_ok = RunLog(ok_log).read().submit
    assert fu_killed is not None and fu_killed.follow_up_job
    assert fu_ok is not None and fu_ok.follow_up_job
    c.wait_final(killed)
    c.wait_final(ok)
    # The follow-up of the killed run runs `hpcwrap poll --settle` and closes the log.
    assert c.wait_final(fu_killed.follow_up_job, timeout=180) == "COMPLETED"
    block = newest(killed_log)
    assert block.state == "FAILED" and block.slurm_exit == "0:9"
    assert "the wrapper did not record the end" in RunLog(killed_log).read().status[-1].text
    # The wrapper that wrote its end cancelled its follow-up: it never started.
    state = c.wait_final(fu_ok.follow_up_job)
    assert state == "CANCELLED"
    start = c.slurm("sacct", "-n", "-X", "-P", "-j", fu_ok.follow_up_job, "-o", "Start")
    assert start.stdout.strip() in ("Unknown", "None", "")
    assert newest(ok_log).state == "COMPLETED"


# ---------------------------------------------------------------- ends nobody polls for
# Kill-matrix rows 7, 8, 17 and 18 without the admin's hooks (test_kill_matrix.py runs
# them with): hpcwrap's follow-up job and the ends writers leave bring the end in.
# Before the test that stops this cluster's controller, which must stay the last.


def nohooks_site(c: NoHooksCluster) -> ends_rows.Site:
    return ends_rows.site_of(c.main, "no hooks", c.user_env, lambda argv: c.slurm(*argv))


def test_row07_pending_job_cancelled_no_hooks(nohooks: NoHooksCluster) -> None:
    ends_rows.row07_pending_cancelled(nohooks_site(nohooks))


def test_row08_pending_array_cancelled_no_hooks(nohooks: NoHooksCluster) -> None:
    ends_rows.row08_pending_array_cancelled(nohooks_site(nohooks))


@pytest.mark.long
def test_row17_lock_held_by_a_hung_process_at_the_end_no_hooks(nohooks: NoHooksCluster) -> None:
    with ends_rows.lock_holders() as held:
        ends_rows.row17_lock_held_at_the_end(nohooks_site(nohooks), held)


@pytest.mark.long
def test_row18_run_logs_read_only_at_the_end_no_hooks(nohooks: NoHooksCluster) -> None:
    ends_rows.row18_run_logs_read_only_at_the_end(nohooks_site(nohooks))


def test_slurmctld_stopped_clear_error_logs_unchanged(nohooks: NoHooksCluster) -> None:
    """Last in this module: it stops the second cluster's controller."""
    c = nohooks
    work = workdir(c, "poll-down")
    _, path = sbatch(c, work, "--hold", "ok.sh")
    assert c.slurm("scontrol", "shutdown", "slurmctld").returncode == 0
    wait_for(
        lambda: c.slurm("scontrol", "ping").returncode != 0,
        60,
        "slurmctld to stop",
        seen=lambda: c.slurm("scontrol", "ping").stdout,
    )
    before = files(work / "run_logs")
    res = c.hpcwrap(work, "poll", "--min-interval", "0", "--timeout", "20")
    assert res.returncode == 10, res.stdout + res.stderr
    assert "hpcwrap: error: squeue" in res.stderr
    assert "nothing was changed" in res.stderr
    assert files(work / "run_logs") == before
    assert newest(path).state == "SUBMITTED"
