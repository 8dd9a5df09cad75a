"""`hpcwrap sbatch` against the real dev cluster, submitting as the non-root test user.

Nothing is faked: real sbatch, real slurmctld/slurmd, the real `hpcwrap run`
in the job. Where hpcwrap must behave exactly as sbatch, the same submission
is made with plain sbatch and Slurm's own view of both jobs is compared.
Run logs are read from state.json and the Markdown directly (as root, read
only: nothing here may leave root-owned files in the user's run_logs).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hpcwrap.scheduler.cli_backend import CliScheduler
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}
BASE = ["--mode", "replication", "--objective", "does hpcwrap sbatch behave like sbatch?"]
SUBMITTED = re.compile(r"^Submitted batch job (\d+)$", re.M)


def _own(cluster: Cluster, path: Path) -> None:
    pw = pwd.getpwnam(cluster.user)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def write(cluster: Cluster, path: Path, text: str, mode: int = 0o755) -> Path:
    """A file (and its folders) owned by the test user."""
    missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in missing:
        _own(cluster, p)
    path.write_text(text)
    path.chmod(mode)
    _own(cluster, path)
    return path


def as_user(cluster: Cluster, cwd: Path, *argv: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return cluster.run_as_user(list(argv), cwd=cwd, env={**GIT_ENV, **(env or {})},
                               timeout=timeout)  # fmt: skip


def hpcwrap_sbatch(cluster: Cluster, cwd: Path, *args: str, env: dict[str, str] | None = None,
                   ok: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    res = as_user(cluster, cwd, cluster.hpcwrap, "sbatch", *args, env=env)
    if ok:
        assert res.returncode == 0, f"{args}: {res.stdout}{res.stderr}"
    return res


def job_id_of(res: subprocess.CompletedProcess[str]) -> str:
    m = SUBMITTED.search(res.stdout)
    assert m, res.stdout + res.stderr
    return m.group(1)


def run_log_of(res: subprocess.CompletedProcess[str]) -> Path:
    m = re.search(r"^run log: (.+)$", res.stdout, re.M)
    assert m, res.stdout
    return Path(m.group(1))


def state_of(md: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((md.parent / ".hpcwrap" / md.stem / "state.json").read_text())
    return data["state"]  # type: ignore[no-any-return]


def scontrol(cluster: Cluster, job_id: str) -> dict[str, str]:
    res = cluster.run(["scontrol", "show", "job", "-o", job_id])
    assert res.returncode == 0, res.stderr
    line = res.stdout.splitlines()[0]
    # Key=Value pairs; values may hold spaces (paths), so split before each " Key="
    parts = re.split(r" (?=[A-Za-z][A-Za-z:/]*=)", line.strip())
    pairs = (p.split("=", 1) for p in parts if "=" in p)
    return {k: v.strip() for k, v in pairs}


def wait_file(path: Path, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return path.read_text(errors="replace")
        time.sleep(0.3)
    raise AssertionError(f"{text!r} never appeared in {path}")


def git_project(cluster: Cluster, name: str, script: str, script_name: str = "train.sh") -> Path:
    proj = cluster.user_dir(name)
    write(cluster, proj / script_name, script)
    write(cluster, proj / "model.py", "width = 64\n", 0o644)
    for cmd in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "init"]):
        res = as_user(cluster, proj, "git", *cmd)
        assert res.returncode == 0, res.stderr
    return proj


SCRIPT = """#!/bin/bash
#SBATCH --time=2
#SBATCH --job-name=from_script
echo "job $SLURM_JOB_ID on $(hostname) in $PWD"
printf '<%s>\\n' "$@"
"""


@pytest.mark.versions
def test_job_id_recorded_at_once_and_output_where_sbatch_puts_it(cluster: Cluster) -> None:
    proj = git_project(cluster, "sbatch-basic", SCRIPT)
    res = hpcwrap_sbatch(cluster, proj, *BASE, "-p", "debug", "train.sh", "one")
    job_id = job_id_of(res)
    md = run_log_of(res)
    # read the moment the command returns: the job id is already there
    state = state_of(md)
    assert state["jobs"][0]["execution_id"] == job_id
    assert state["jobs"][0]["submitted"]
    assert f"- execution_id: {job_id}" in md.read_text()
    assert md.parent == proj / "run_logs"
    info = scontrol(cluster, job_id)
    assert info["Comment"] == f"hpcwrap:{md}"
    assert info["JobName"] == "from_script"
    assert info["UserId"].startswith(cluster.user)

    plain = cluster.submit(["sbatch", "--parsable", "-p", "debug", "train.sh", "one"], cwd=proj)
    assert cluster.wait_job(job_id) == "COMPLETED"
    assert cluster.wait_job(plain) == "COMPLETED"
    # same place, same name pattern as plain sbatch
    ours, theirs = scontrol(cluster, job_id), scontrol(cluster, plain)
    assert ours["StdOut"] == str(proj / f"slurm-{job_id}.out")
    assert theirs["StdOut"] == str(proj / f"slurm-{plain}.out")
    assert ours["WorkDir"] == theirs["WorkDir"] == str(proj)
    out = wait_file(proj / f"slurm-{job_id}.out", "<one>")
    plain_out = wait_file(proj / f"slurm-{plain}.out", "<one>")
    # Same output but for the job id (only there: the folder's name may hold its digits).
    assert out.replace(f"job {job_id} ", "job N ") == plain_out.replace(f"job {plain} ", "job N ")
    assert state_of(md)["submit"]["output_path"] == str(proj / f"slurm-{job_id}.out")
    assert (proj / f"slurm-{job_id}.out").stat().st_uid == pwd.getpwnam(cluster.user).pw_uid


@pytest.mark.versions
def test_same_slurm_view_as_plain_sbatch_precedence(cluster: Cluster) -> None:
    """#SBATCH vs command line vs SBATCH_*: Slurm sees the same job either way."""
    script = """#!/bin/bash
#SBATCH -J script_name
#SBATCH --time=7 -N 1
#SBATCH --output=logs-%x-%j.out
#SBATCH --comment=user_comment
#SBATCH --time=9
echo hi
"""
    proj = cluster.user_dir("sbatch-precedence")
    write(cluster, proj / "train.sh", script)
    opts = ["-H", "-J", "cli_name", "--nodes=2", "-e", "err-%j.txt"]
    env = {"SBATCH_TIMELIMIT": "4", "SBATCH_PARTITION": "debug"}
    res = hpcwrap_sbatch(cluster, proj, *BASE, *opts, "train.sh", env=env)
    ours = job_id_of(res)
    theirs = cluster.submit(["sbatch", "--parsable", *opts, "train.sh"], cwd=proj, env=env)
    try:
        a, b = scontrol(cluster, ours), scontrol(cluster, theirs)
        for key in ("JobName", "TimeLimit", "NumNodes", "Partition", "Comment", "WorkDir"):
            assert a[key] == b[key], key
        assert a["JobName"] == "cli_name" and a["TimeLimit"] == "00:04:00"
        assert a["Comment"] == "user_comment"  # the user's comment wins over hpcwrap's
        # The same file pattern, each with its own job id where the %j was (a
        # plain replace of the id would also hit digits in the temp folder's name).
        for key, pattern in (("StdOut", "logs-cli_name-%j.out"), ("StdErr", "err-%j.txt")):
            assert a[key] == str(proj / pattern.replace("%j", ours)), key
            assert b[key] == str(proj / pattern.replace("%j", theirs)), key
        assert "your --comment" in res.stderr
        facts = state_of(run_log_of(res))["submit"]
        assert facts["sources"]["time"] == "environment (SBATCH_TIMELIMIT)"
        assert facts["sources"]["job-name"] == "command line"
        assert facts["output_path"] == str(proj / f"logs-cli_name-{ours}.out")
    finally:
        cluster.run(["scancel", ours, theirs])


@pytest.mark.versions
def test_array_job(cluster: Cluster) -> None:
    proj = git_project(cluster, "sbatch-array", "#!/bin/bash\necho task $SLURM_ARRAY_TASK_ID\n")
    res = hpcwrap_sbatch(cluster, proj, *BASE, "--array=0-2", "-t", "2", "train.sh")
    job_id = job_id_of(res)
    state = state_of(run_log_of(res))
    assert state["jobs"][0]["execution_id"] == f"{job_id}_[0-2]"
    assert state["submit"]["output_path"] == str(proj / f"slurm-{job_id}_%a.out")
    for task in range(3):
        tid = f"{job_id}_{task}"
        assert cluster.wait_job(tid) == "COMPLETED", tid
        wait_file(proj / f"slurm-{job_id}_{task}.out", f"task {task}")


HOSTILE_ARGS = ["a b", "it's", 'say "hi"', "$HOME", "$(id)", "`id`", "two\nlines", "", "*"]


def test_hostile_arguments_and_script_path(cluster: Cluster) -> None:
    proj = cluster.user_dir("sbatch-hostile")
    script = write(
        cluster, proj / "my dir" / "run it's.sh", "#!/bin/bash\nprintf '<%s>\\n' \"$@\"\n"
    )
    res = hpcwrap_sbatch(cluster, proj, *BASE, "-t", "2", str(script.relative_to(proj)),
                         *HOSTILE_ARGS)  # fmt: skip
    job_id = job_id_of(res)
    assert cluster.wait_job(job_id) == "COMPLETED"
    expected = "".join(f"<{a}>\n" for a in HOSTILE_ARGS)
    out = wait_file(proj / f"slurm-{job_id}.out", "<*>")
    assert expected in out
    assert scontrol(cluster, job_id)["JobName"] == "run it's.sh"
    md = run_log_of(res).read_text()
    assert "- script: `my dir/run it's.sh` 'a b'" in md
    assert "$'two\\nlines'" in md


def test_rejection_is_recorded_without_job_or_tag(cluster: Cluster) -> None:
    proj = git_project(cluster, "sbatch-reject", SCRIPT)
    args = ["--mode", "experiment", "--objective", "x", "-p", "nosuchpartition", "train.sh"]
    res = hpcwrap_sbatch(cluster, proj, *args, ok=False)
    assert res.returncode == 8, res.stderr
    assert "invalid partition" in res.stderr.lower()
    md = next((proj / "run_logs").glob("2*.md"))
    job = state_of(md)["jobs"][0]
    assert job["state"] == "SUBMIT_FAILED" and job["execution_id"] is None
    assert "invalid partition" in job["submit_error"].lower()
    assert "- state: SUBMIT_FAILED" in md.read_text()
    assert as_user(cluster, proj, "git", "tag").stdout.strip() == ""
    jobs = cluster.run(["squeue", "-h", "-u", cluster.user, "-o", "%k"]).stdout
    assert str(md) not in jobs


def test_experiment_dirty_tree_tag_and_reapplicable_diff(cluster: Cluster) -> None:
    proj = git_project(cluster, "sbatch-experiment", SCRIPT)
    write(cluster, proj / "model.py", "width = 128  # the experiment\n", 0o644)
    write(cluster, proj / "notes.txt", "untracked\n", 0o644)
    args = ["--mode", "experiment", "--objective", "is 128 wider better?", "-t", "2", "train.sh"]
    res = hpcwrap_sbatch(cluster, proj, *args)
    md = run_log_of(res)
    state = state_of(md)
    head = as_user(cluster, proj, "git", "rev-parse", "HEAD").stdout.strip()
    tag = state["code_state"]["tag"]
    assert tag == f"hpcwrap/{md.stem}"
    assert as_user(cluster, proj, "git", "rev-parse", tag).stdout.strip() == head
    text = md.read_text()
    assert f"tag `{tag}` points at the base commit" in text
    assert state["code_state"]["untracked"] == 1
    diff = md.parent / state["code_state"]["diff"]
    # a clean checkout of the tag + the saved diff gives back the submitted code
    clone = cluster.user_dir("sbatch-experiment-clone") / "c"
    assert as_user(cluster, clone.parent, "git", "clone", "-q", str(proj), "c").returncode == 0
    assert as_user(cluster, clone, "git", "checkout", "-q", tag).returncode == 0
    applied = as_user(cluster, clone, "git", "apply", str(diff))
    assert applied.returncode == 0, applied.stderr
    assert (clone / "model.py").read_text() == "width = 128  # the experiment\n"
    assert cluster.wait_job(job_id_of(res)) == "COMPLETED"


def test_two_submissions_in_the_same_second(cluster: Cluster) -> None:
    proj = git_project(cluster, "sbatch-concurrent", SCRIPT)
    args = ["--mode", "experiment", "--objective", "race", "-t", "2", "--hold", "train.sh"]
    results: list[subprocess.CompletedProcess[str]] = []
    gate = threading.Barrier(2)

    def go() -> None:
        gate.wait()
        results.append(hpcwrap_sbatch(cluster, proj, *args))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [job_id_of(r) for r in results]
    try:
        logs = [run_log_of(r) for r in results]
        assert len(set(ids)) == 2 and len(set(logs)) == 2
        for job_id, md in zip(ids, logs, strict=True):
            assert state_of(md)["jobs"][0]["execution_id"] == job_id
            assert scontrol(cluster, job_id)["Comment"] == f"hpcwrap:{md}"
        tags = as_user(cluster, proj, "git", "tag").stdout.split()
        assert sorted(tags) == sorted(f"hpcwrap/{md.stem}" for md in logs)
        timeline = (proj / "run_logs" / "timeline.md").read_text()
        assert all(md.name in timeline for md in logs)
        # the scheduler backend reads the same jobs back (squeue, then sacct)
        slurm = CliScheduler(env=cluster.env)
        info = slurm.job_state(ids[0])
        assert info is not None and info.state == "PENDING" and info.reason == "JobHeldUser"
        slurm.cancel(ids[0])
        assert cluster.wait_job(ids[0]) == "CANCELLED"
        after = slurm.job_state(ids[0])
        assert after is not None and after.state == "CANCELLED"
        assert slurm.job_state("999999") is None
    finally:
        cluster.run(["scancel", *ids])


def _slurm_version(cluster: Cluster) -> tuple[int, int]:
    out = cluster.run(["sbatch", "--version"]).stdout  # "slurm-wlm 24.11.5"
    m = re.search(r"(\d+)\.(\d+)", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


@pytest.mark.versions
def test_an_option_newer_than_22_05_written_with_a_space(cluster: Cluster) -> None:
    """--tres-per-task (Slurm 23.11 on) splits as the installed sbatch splits it; on 22.05,
    which lacks it, its value is taken for the script and the message says why."""
    proj = git_project(cluster, "sbatch-newer-option", SCRIPT)
    args = [*BASE, "--tres-per-task", "cpu:2", "train.sh", "one"]
    if _slurm_version(cluster) < (23, 11):
        res = hpcwrap_sbatch(cluster, proj, *args, ok=False)
        assert res.returncode == 2, res.stdout + res.stderr
        assert "cpu:2: no such batch script" in res.stderr
        assert "--tres-per-task is not an sbatch option it knows" in res.stderr
        return
    res = hpcwrap_sbatch(cluster, proj, *args)
    job_id = job_id_of(res)
    assert cluster.wait_job(job_id) == "COMPLETED"
    assert "<one>" in wait_file(proj / f"slurm-{job_id}.out", "<one>")
    # "TresPerTask=cpu:2" on 24.11 and 26.05
    assert "cpu:2" in scontrol(cluster, job_id).get("TresPerTask", "").replace("=", ":")


SLUID_SCRIPT = """#!/bin/bash
#SBATCH --time=2
echo "sluid=<${SLURM_JOB_SLUID:-}>"
"""


@pytest.mark.versions
def test_the_runs_sluid_is_in_its_job_block_where_slurm_gives_one(cluster: Cluster) -> None:
    """Slurm 26.05 tells the job its SLUID (SLURM_JOB_SLUID): the Job block names it, and
    it is sacct's. 24.11 keeps a SLUID in accounting but does not tell the job (seen in
    the Slurm matrix), and 22.05 has none: no line."""
    proj = git_project(cluster, "sbatch-sluid", SLUID_SCRIPT)
    res = hpcwrap_sbatch(cluster, proj, *BASE, "train.sh")
    job_id, md = job_id_of(res), run_log_of(res)
    assert cluster.wait_job(job_id) == "COMPLETED"
    told = re.search(r"sluid=<(.*)>", wait_file(proj / f"slurm-{job_id}.out", "sluid=<"))
    assert told is not None
    if not told.group(1):
        assert "\n- sluid:" not in md.read_text()
        assert state_of(md)["jobs"][0].get("sluid") is None
        return
    sluid = told.group(1)
    asked = cluster.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "SLUID"])
    assert asked.stdout.strip() == sluid, asked
    assert state_of(md)["jobs"][0]["sluid"] == sluid
    assert f"\n- sluid: {sluid}\n" in md.read_text()
