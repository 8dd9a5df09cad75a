"""Kill-matrix rows 7, 8, 17 and 18: ends that reach the log without anyone polling.

Each row runs twice, on a cluster whose SlurmUser is not root (``slurm``, the dev
cluster's default): with the admin's node hooks (the shared dev cluster,
test_kill_matrix.py) and without them (a second cluster whose hooks run no hpcwrap,
test_poll_cluster.py). Nobody runs ``hpcwrap poll``: what brings the end in is hpcwrap's
own follow-up job (on by default), the wrapper and the epilog leaving an end they could not
write (runlog/deferred.py), and the next writer applying it.

- (7) a job cancelled while pending (``--begin`` an hour ahead): no node hook runs;
- (8) an array cancelled while pending (``--hold``);
- (17) a running job cancelled while a hung process holds its log's lock, released later;
- (18) a running job cancelled while ``run_logs/`` is read-only, writable a minute later.

Each checks, within 3 minutes of the end (or of the lock's release, or of the folder
becoming writable): state.json's job block, the Markdown's ``state`` line and
``hpcwrap status --json`` all say sacct's state; the end was applied once. Each prints
``ends row N (<mode>): <seconds>`` for the closing note (run with ``-s``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster.conftest import Cluster
from tests.cluster.test_hooks_cluster import script
from tests.cluster.test_wrapper_cluster import project
from tests.waiting import wait_for

PROGRESS = re.compile(r"\bstep (\d+)")
WITHIN_S = 180.0  # the bound: the log says sacct's state within 3 minutes
TOY = ["--steps-per-sec", "20", "--format", "nanogpt"]
BASE = ["--mode", "replication", "--objective", "an end nobody polls for"]


@dataclass
class Site:
    """One cluster as these rows use it."""

    mode: str  # "hooks" or "no hooks"
    as_user: Callable[[list[str], Path], subprocess.CompletedProcess[str]]
    as_root: Callable[[list[str]], subprocess.CompletedProcess[str]]
    popen_as_user: Callable[[list[str], Path], subprocess.Popen[bytes]]
    project: Callable[[str], Path]  # a user-owned copy of examples/, with toy.sh
    hpcwrap: str  # the hpcwrap the user runs

    def slurm_user(self) -> str:
        res = self.as_root(["scontrol", "show", "config"])
        m = re.search(r"^SlurmUser\s*=\s*(\S+)", res.stdout, re.M)
        return m.group(1) if m else "?"

    def submit(self, cwd: Path, *argv: str) -> tuple[str, Path]:
        res = self.as_user([self.hpcwrap, "sbatch", "--parsable", *BASE, *argv], cwd)
        assert res.returncode == 0, res.stdout + res.stderr
        job = res.stdout.strip().splitlines()[-1].split(";")[0]
        m = re.search(r"run log: (\S+)", res.stderr)
        assert job.isdigit() and m, res.stdout + res.stderr
        return job, Path(m.group(1))

    def sacct(self, job: str) -> tuple[str, str, str] | None:
        """(State's first word, ExitCode, End) of the job's newest row, once it ended."""
        res = self.as_root(["sacct", "-X", "-n", "-P", "-j", job, "-o", "State,ExitCode,End"])
        rows = [r.split("|") for r in res.stdout.strip().splitlines() if r.count("|") == 2]
        if not rows or rows[-1][2] in ("", "Unknown"):
            return None
        state, code, end = rows[-1]
        word = state.split()[0]
        return (word, code, end) if word not in ("PENDING", "RUNNING", "REQUEUED") else None

    def status_row(self, cwd: Path, log: Path) -> dict[str, Any]:
        res = self.as_user([self.hpcwrap, "status", "--json", str(log)], cwd)
        assert res.returncode == 0, res.stdout + res.stderr
        rows: list[dict[str, Any]] = json.loads(res.stdout)["runs"]
        return rows[0]


def site_of(
    cluster: Cluster,
    mode: str,
    env: dict[str, str] | None = None,
    as_root: Callable[[list[str]], subprocess.CompletedProcess[str]] | None = None,
) -> Site:
    """``cluster``'s test user, on that cluster or (``env``: its SLURM_CONF...) another."""
    user_env = {**cluster.user_env, **(env or {})}

    def as_user(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        return cluster.run_as_user(argv, cwd=cwd, env=env, timeout=120)

    def popen_as_user(argv: list[str], cwd: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=user_env,
            user=cluster._uid,
            group=cluster._gid,
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a group of its own: killed whole (kill_group)
        )

    def new_project(name: str) -> Path:
        cwd = project(cluster, name)
        script(
            cluster, cwd, "toy.sh",
            "#!/bin/bash\n"
            'exec python3 -u examples/toy_train.py --config examples/config.json "$@"\n',
        )  # fmt: skip
        return cwd

    return Site(
        mode=mode,
        as_user=as_user,
        as_root=as_root or (lambda argv: cluster.run(argv)),
        popen_as_user=popen_as_user,
        project=new_project,
        hpcwrap=cluster.hpcwrap,
    )


@contextlib.contextmanager
def lock_holders() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The hung processes a row starts; killed at its end whatever happened."""
    held: list[subprocess.Popen[bytes]] = []
    try:
        yield held
    finally:
        for p in held:
            kill_group(p)


def kill_group(p: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(p.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(10)


def state_of(log: Path) -> dict[str, Any]:
    data = json.loads((log.parent / ".hpcwrap" / log.stem / "state.json").read_text())
    state: dict[str, Any] = data["state"]
    return state


def md_state(log: Path) -> str | None:
    m = re.search(r"^- state: (\S+)", log.read_text(), re.M)
    return m.group(1) if m else None


def check_slurm_user(site: Site) -> None:
    assert site.slurm_user() != "root", "these rows need a cluster whose SlurmUser is not root"


def agreement(site: Site, cwd: Path, log: Path, want: str) -> list[str]:
    """How the log disagrees with sacct's state ``want`` (empty: it agrees everywhere)."""
    problems = []
    try:
        job = state_of(log)["jobs"][-1]
    except (OSError, ValueError, KeyError, IndexError) as exc:
        return [f"state.json unreadable: {exc!r}"]
    if job.get("state") != want or job.get("slurm_state") != want or not job.get("end"):
        problems.append(f"state.json's block: {job}")
    if md_state(log) != want:
        problems.append(f"the Markdown says {md_state(log)}")
    row = site.status_row(cwd, log)
    if row["state"] != want or row["lag"]:
        problems.append(f"status: {row['state']} {row['lag']}")
    return problems


def once(log: Path) -> None:
    """Every Status entry once: no end applied twice."""
    texts = [s[1] for s in state_of(log)["status"]]
    assert len(texts) == len(set(texts)), texts


def report(row: int, site: Site, seconds: float, what: str) -> None:
    print(f"ends row {row} ({site.mode}): {seconds:.1f} ({what})")


def until_cancelled(site: Site, cwd: Path, log: Path, row: int, once_what: str) -> None:
    """Wait (at most WITHIN_S, nobody polling) for the log to agree with sacct's CANCELLED
    from now on, and report how long it took."""
    t0 = time.monotonic()
    wait_for(lambda: not agreement(site, cwd, log, "CANCELLED"), WITHIN_S,
             f"row {row}: the log saying CANCELLED once {once_what}",
             lambda: agreement(site, cwd, log, "CANCELLED"))  # fmt: skip
    report(row, site, time.monotonic() - t0, f"{once_what} to the Markdown agreeing")


def wait_ended(site: Site, job: str, timeout: float = 240) -> tuple[str, str, str]:
    found = wait_for(lambda: site.sacct(job), timeout, f"sacct's end of job {job}")
    assert found is not None
    return found


# ---------------------------------------------------------------- the rows


def _cancel_pending(site: Site, row: int, *submit: str) -> tuple[Path, str]:
    """Submit, scancel while pending, and wait (at most WITHIN_S, nobody polling) for the
    log to say CANCELLED everywhere; returns the log and the recorded submission time."""
    check_slurm_user(site)
    cwd = site.project(f"ends-row{row:02d}")
    job, log = site.submit(cwd, *submit, "toy.sh", "--steps", "10", *TOY)
    submitted = str(state_of(log)["jobs"][-1]["submitted"])
    assert state_of(log)["submit"]["follow_up_job"], "the follow-up job is on by default"
    assert site.as_user(["scancel", job], cwd).returncode == 0
    t0 = time.monotonic()
    word, _, _ = wait_ended(site, job)
    assert word == "CANCELLED"
    wait_for(lambda: not agreement(site, cwd, log, "CANCELLED"), WITHIN_S,
             f"row {row}: the log saying CANCELLED",
             lambda: agreement(site, cwd, log, "CANCELLED"))  # fmt: skip
    report(row, site, time.monotonic() - t0, "scancel to the log agreeing")
    once(log)
    return log, submitted


def row07_pending_cancelled(site: Site) -> None:
    log, submitted = _cancel_pending(site, 7, "--begin=now+1hour")
    block = state_of(log)["jobs"][-1]
    # Never started: no start, only the submission and the end; not the --begin time.
    assert block.get("start") is None and block["submitted"] == submitted, block
    md = log.read_text()
    assert "(submitted)" in md and "runtime" not in md.split("## Status")[0], md


def row08_pending_array_cancelled(site: Site) -> None:
    log, _ = _cancel_pending(site, 8, "--hold", "--array=0-3")
    assert state_of(log)["jobs"][-1].get("start") is None


def _progress_seen(log: Path) -> bool:
    try:
        state = state_of(log)
    except (OSError, ValueError, KeyError):
        return False
    # the wrapper's progress ("running ..., step 40, ..."), not the command's "--steps"
    return any(PROGRESS.search(s[1]) for s in state.get("status") or [])


def _last_step(log: Path) -> int | None:
    steps = [int(m) for m in PROGRESS.findall(" ".join(
        s[1] for s in state_of(log).get("status") or []
    ))]  # fmt: skip
    return max(steps) if steps else None


def row17_lock_held_at_the_end(site: Site, lock_holder: list[subprocess.Popen[bytes]]) -> None:
    check_slurm_user(site)
    cwd = site.project("ends-row17")
    job, log = site.submit(cwd, "toy.sh", "--steps", "100000", *TOY, "--out-dir", "runs/r17")
    wait_for(lambda: _progress_seen(log), 120, "row 17: progress in the log")
    lock = log.parent / ".hpcwrap" / log.stem / "lock"
    # -o: flock itself holds the lock (its sleep does not), so killing it frees the lock
    hung = site.popen_as_user(["flock", "-o", str(lock), "sleep", "3600"], cwd)
    lock_holder.append(hung)
    wait_for(
        lambda: site.as_user(["flock", "-n", str(lock), "true"], cwd).returncode != 0,
        30,
        "the hung process holding the lock",
    )
    before = _last_step(log)
    time.sleep(3)  # more progress than the log holds
    assert site.as_user(["scancel", job], cwd).returncode == 0
    t0 = time.monotonic()
    word, _, _ = wait_ended(site, job)
    assert word == "CANCELLED"

    def seen() -> list[str]:
        row = site.status_row(cwd, log)
        if row["state"] != "CANCELLED" or not any("end pending" in x for x in row["lag"]):
            return [f"status: {row['state']} {row['lag']}"]
        return []

    wait_for(lambda: not seen(), WITHIN_S, "row 17: status saying CANCELLED, end pending", seen)
    report(17, site, time.monotonic() - t0, "scancel to status saying the end, lock held")
    # The Markdown is not written while the lock is held; it says when the job was last
    # heard from, not a bare RUNNING.
    text = log.read_text()
    assert md_state(log) == "RUNNING" and "- last heard: " in text, text
    row = site.status_row(cwd, log)
    out = "".join(p.read_text(errors="replace")[-3000:] for p in cwd.glob(f"*{job}*.out"))
    events = (log.parent / ".hpcwrap" / log.stem / "events.jsonl").read_text()[-4000:]
    assert row["step"] is not None and (before is None or row["step"] >= before), (out, events)
    kill_group(hung)
    until_cancelled(site, cwd, log, 17, "the lock is released")
    once(log)
    final = state_of(log)["results"].get("final_step")
    assert final is not None and (before is None or final >= before), (final, before)


def row18_run_logs_read_only_at_the_end(site: Site) -> None:
    check_slurm_user(site)
    cwd = site.project("ends-row18")
    job, log = site.submit(cwd, "toy.sh", "--steps", "100000", *TOY, "--out-dir", "runs/r18")
    wait_for(lambda: _progress_seen(log), 120, "row 18: progress in the log")
    folder = log.parent
    os.chmod(folder, 0o555)
    try:
        assert site.as_user(["scancel", job], cwd).returncode == 0
        word, _, _ = wait_ended(site, job)
        assert word == "CANCELLED"
        # The sidecar (a folder of its own) has the end meanwhile: status says it.
        wait_for(lambda: site.status_row(cwd, log)["state"] == "CANCELLED", 60,
                 "row 18: status reading the end from the sidecar",
                 lambda: site.status_row(cwd, log))  # fmt: skip
        assert md_state(log) == "RUNNING"
        time.sleep(max(0.0, 60 - 10))
    finally:
        os.chmod(folder, 0o755)
    until_cancelled(site, cwd, log, 18, "run_logs/ is writable")
    once(log)
