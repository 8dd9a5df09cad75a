"""The Slurm prolog/epilog hooks without a cluster: the shims and ``hpcwrap.hooks.node`` run as
Slurm runs them (root, ``env -i``, only Slurm's variables), for a run log of a real
non-root user ("nobody"). Hostile inputs each check: exit 0, nothing outside the
user's tree touched (a root-owned canary), the problem reported in the hook log."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hpcwrap.errors import HookError
from hpcwrap.hooks import node as hooks
from hpcwrap.runlog import RunLog, RunState, create_run, endings, lifecycle
from hpcwrap.runlog.endings import JobState
from hpcwrap.runlog.facts import SubmitFacts
from hpcwrap.runlog.model import JobBlock
from hpcwrap.runlog.spool import register_job

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 11, 14, 0, tzinfo=timezone.utc)

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runuser") is None, reason="hooks run as root"
)


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("nodelist", "first"),
    [("n1", "n1"), ("n[1-2]", "n1"), ("gpu[07,09]", "gpu07"), ("a1,b2", "a1"), ("", None)],
)
def test_first_node(nodelist: str, first: str | None) -> None:
    assert hooks.first_node(nodelist) == first


@pytest.mark.parametrize(
    "text",
    [
        "../../etc/passwd",
        "run_logs/2026-03-11_train.md",  # relative
        "/home/u/run_logs/../../../etc/2026-03-11_x.md",
        "/etc/passwd",
        "/home/u/run_logs/2026-03-11_train.md\n/etc/shadow",
        "/x/" + "A" * 10_000 + ".md",
        "",
    ],
)
def test_hostile_run_log_paths_are_refused(text: str) -> None:
    with pytest.raises(HookError):
        hooks.check_run_log_path(text)


def env_of(exit2: str | None, kind: str = "epilog") -> hooks.HookEnv:
    return hooks.HookEnv.from_environ(
        kind,
        {
            "SLURM_JOB_ID": "12",
            "SLURM_JOB_UID": "1000",
            "SLURM_JOB_GID": "1000",
            **({"SLURM_JOB_EXIT_CODE2": exit2} if exit2 else {}),
        },
    )


OE = hooks.OutputEvidence
JS = JobState


@pytest.mark.parametrize(
    ("exit2", "limit_in", "out", "want", "slurm"),
    [
        # what slurmstepd wrote into the output decides first (seen on the dev cluster)
        ("0:0", 3600.0, OE(stepd=JS.TIMEOUT), "TIMEOUT", "TIMEOUT"),
        ("0:15", 3600.0, OE(stepd=JS.CANCELLED), "CANCELLED", "CANCELLED"),
        ("0:9", 3600.0, OE(memory=True, stepd=JS.CANCELLED), "OUT_OF_MEMORY", "FAILED"),
        ("0:0", 3600.0, OE(stepd=JS.PREEMPTED), "PREEMPTED", "PREEMPTED"),
        ("0:0", 3600.0, OE(stepd=JS.REQUEUED), "REQUEUED", "REQUEUED"),
        ("0:0", 3600.0, OE(stepd=JS.NODE_FAIL), "NODE_FAIL", "NODE_FAIL"),
        # else the limit the wrapper read, then Slurm's exit status
        ("0:0", 5.0, OE(), "TIMEOUT", "TIMEOUT"),
        ("0:9", 3600.0, OE(), "FAILED", "FAILED"),
        ("3:0", 3600.0, OE(), "FAILED", "FAILED"),
        ("137:0", 3600.0, OE(), "FAILED", "FAILED"),
        ("0:0", 3600.0, OE(), "COMPLETED", "COMPLETED"),
        ("0:0", None, OE(), "COMPLETED", "COMPLETED"),  # no limit known
    ],
)
def test_epilog_verdict(
    exit2: str, limit_in: float | None, out: hooks.OutputEvidence, want: str, slurm: str
) -> None:
    limit = T0 + timedelta(seconds=limit_in) if limit_in is not None else None
    job = JobBlock(execution_id="12", start=T0 - timedelta(minutes=5), limit_at=limit)
    when = T0 + timedelta(seconds=10)
    verdict = endings.classify(hooks.epilog_evidence(job, env_of(exit2), when, out))
    sacct = "9:0" if exit2 == "137:0" else exit2  # sacct takes 128 off a code >= 128
    assert (verdict.state, verdict.slurm_state, verdict.slurm_exit) == (want, slurm, sacct)


# ---------------------------------------------------------------- as Slurm runs them


@dataclass
class Site:
    """A user's project under a world-walkable temp folder, and root's canary."""

    home: Path
    user: str
    uid: int
    gid: int
    canary: Path
    hook_log: Path
    spool: Path

    def env(self, job_id: str = "12", **extra: str) -> dict[str, str]:
        return {
            "SLURM_JOB_ID": job_id,
            "SLURM_JOB_UID": str(self.uid),
            "SLURM_JOB_GID": str(self.gid),
            "SLURM_JOB_USER": self.user,
            "SLURMD_NODENAME": "n1",
            "SLURM_NODELIST": "n1",
            "SLURM_CLUSTER_NAME": "dev",
            "SLURM_JOB_RESTART_COUNT": "0",
            "SLURM_SCRIPT_CONTEXT": "epilog_slurmd",
            "HPCWRAP_HOOK_LOG": str(self.hook_log),
            "HPCWRAP_SPOOL": str(self.spool),
            "HPCWRAP_PYTHON": sys.executable,
            **extra,
        }

    def chown(self, path: Path) -> None:
        for dirpath, dirnames, filenames in os.walk(path):
            os.chown(dirpath, self.uid, self.gid)
            for n in [*dirnames, *filenames]:
                os.lchown(os.path.join(dirpath, n), self.uid, self.gid)

    def log(self, *jobs: JobBlock) -> RunLog:
        log = create_run(self.home / "run_logs", RunState(run_type="replication", objective="o"))
        if jobs:
            log.update(lambda s: s.jobs.extend(jobs))
        self.chown(self.home / "run_logs")
        return log

    def hook(self, kind: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Slurm's way: the shim, as root, under ``env -i`` with only these variables."""
        shim = REPO / "slurm" / f"{kind}.sh"
        argv = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), "/bin/sh", str(shim)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    def problems(self) -> str:
        return self.hook_log.read_text() if self.hook_log.exists() else ""


@pytest.fixture
def site() -> Iterator[Site]:
    base = Path(tempfile.mkdtemp(prefix="hpcwrap-hooks-"))
    base.chmod(0o755)
    pw = pwd.getpwnam("nobody")
    home = base / "home"
    home.mkdir()
    os.chown(home, pw.pw_uid, pw.pw_gid)
    canary = base / "canary"
    canary.write_text("root's\n")
    canary.chmod(0o644)
    spool = base / "spool"
    spool.mkdir()
    spool.chmod(0o1777)
    try:
        yield Site(home, "nobody", pw.pw_uid, pw.pw_gid, canary, base / "hooks.log", spool)
    finally:
        assert canary.read_text() == "root's\n" and canary.stat().st_uid == 0
        shutil.rmtree(base, ignore_errors=True)


def running(limit_in: float = 3600.0) -> JobBlock:
    start = datetime.now(timezone.utc) - timedelta(minutes=2)
    return JobBlock(
        execution_id="12",
        start=start,
        state="RUNNING",
        state_source="wrapper",
        node="n1",
        limit_at=datetime.now(timezone.utc) + timedelta(seconds=limit_in),
    )


def comment(log: RunLog) -> dict[str, str]:
    return {"SLURM_JOB_COMMENT": f"hpcwrap:{log.path}"}


@needs_root
def test_epilog_closes_a_cancelled_job(site: Site) -> None:
    log = site.log(running())
    res = site.hook("epilog", site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:15"))
    assert res.returncode == 0 and res.stdout == res.stderr == ""
    state = log.read()
    job = state.jobs[0]
    # a TERM with time left and nothing from Slurm in the output: hpcwrap reads a cancel;
    # Slurm labels a batch script killed by a signal FAILED
    assert (job.state, job.state_source, job.slurm_state, job.slurm_exit) == (
        "CANCELLED",
        "epilog",
        "FAILED",
        "0:15",
    )
    assert job.end is not None and job.exit_code == 143
    assert state.status[-1].text.startswith("cancelled (recorded by the epilog: a TERM with time")
    assert log.path.stat().st_uid == site.uid  # written as the user, not root
    assert not site.problems()


@needs_root
def test_epilog_at_the_time_limit_is_timeout_and_twice_is_one_entry(site: Site) -> None:
    log = site.log(running(limit_in=5))
    env = site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:0")
    assert site.hook("epilog", env).returncode == 0
    assert site.hook("epilog", env).returncode == 0  # slurmctld restarts re-run hooks
    state = log.read()
    assert state.jobs[0].state == "TIMEOUT" and state.jobs[0].slurm_state == "TIMEOUT"
    assert sum("recorded by the epilog" in s.text for s in state.status) == 1


@needs_root
def test_epilog_confirms_an_end_the_wrapper_wrote(site: Site) -> None:
    done = running()
    done.state, done.end, done.exit_code = "COMPLETED", datetime.now(timezone.utc), 0
    log = site.log(done)
    entries = len(log.read().status)
    assert site.hook("epilog", site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:0")).returncode == 0
    state = log.read()
    job = state.jobs[0]
    assert job.state == "COMPLETED" and job.state_source == "wrapper"  # the wrapper's reading
    assert (job.slurm_state, job.slurm_exit) == ("COMPLETED", "0:0")  # Slurm's, beside it
    assert len(state.status) == entries  # no second end entry


@needs_root
def test_epilog_finds_memory_kill_in_the_output(site: Site) -> None:
    out = site.home / "slurm-12.out"
    out.write_text(
        "step 10 loss 2\nslurmstepd-n1: error: *** JOB 12 ON n1 CANCELLED AT 2026-11-29T19:40:18"
        " ***\nslurmstepd-n1: error: Exceeded job memory limit\n"
    )
    log = site.log(running())
    log.update(lambda s: setattr(s, "submit", SubmitFacts(output_path=str(out))))
    site.chown(site.home)
    assert site.hook("epilog", site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:9")).returncode == 0
    job = log.read().jobs[0]
    assert job.state == "OUT_OF_MEMORY" and (job.slurm_state, job.slurm_exit) == ("FAILED", "0:9")


@needs_root
def test_only_the_batch_node_writes(site: Site) -> None:
    log = site.log(running())
    env = site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:15", SLURM_NODELIST="n[1-2]")
    assert site.hook("epilog", {**env, "SLURMD_NODENAME": "n2"}).returncode == 0
    assert log.read().jobs[0].state == "RUNNING"
    assert site.hook("epilog", env).returncode == 0
    assert log.read().jobs[0].state == "CANCELLED"


@needs_root
def test_prolog_records_the_start_and_the_wrapper_adopts_it(site: Site) -> None:
    log = site.log(JobBlock(execution_id="12", state="SUBMITTED"))
    assert site.hook("prolog", site.env(**comment(log))).returncode == 0
    job = log.read().jobs[0]
    assert job.state == "RUNNING" and job.state_source == "prolog" and job.start is not None
    log.record(lifecycle.Started(datetime.now(timezone.utc), execution_id="12", in_slurm=True))
    assert len(log.read().jobs) == 1 and log.read().jobs[0].state_source == "wrapper"


@needs_root
def test_plain_sbatch_job_found_through_the_spool(site: Site) -> None:
    log = site.log(running())
    os.seteuid(site.uid)  # the wrapper registers as the job's user
    try:
        assert register_job(site.env(), log.path) is None
    finally:
        os.seteuid(0)
    assert (site.spool / "dev_12").read_text() == f"{log.path}\n"
    assert site.hook("epilog", site.env(SLURM_JOB_EXIT_CODE2="3:0")).returncode == 0
    assert log.read().jobs[0].state == "FAILED"
    assert not (site.spool / "dev_12").exists()  # the epilog removed it


@needs_root
def test_another_users_squat_on_the_spool_changes_nothing_for_the_job(site: Site) -> None:
    """User B writes `dev_12` into the spool before job 12 starts: before, A's wrapper could
    not register (silently) and A's killed job stayed RUNNING. The prolog, as root before
    the job, removes the squat; the wrapper registers; the epilog records the end."""
    log = site.log(running())
    squat = site.spool / "dev_12"
    squat.write_text("/tmp/elsewhere/run_logs/2026-01-01_b.md\n")
    os.chown(squat, 12345, 12345)  # user B
    os.seteuid(site.uid)
    try:
        why = register_job(site.env(), log.path)  # without the prolog: refused, and said
    finally:
        os.seteuid(0)
    assert why is not None and not why.quiet and "another user's" in why
    assert site.hook("prolog", site.env()).returncode == 0
    assert not squat.exists() and "removed a spool file of uid 12345" in site.problems()
    os.seteuid(site.uid)
    try:
        assert register_job(site.env(), log.path) is None
    finally:
        os.seteuid(0)
    assert site.hook("epilog", site.env(SLURM_JOB_EXIT_CODE2="0:9")).returncode == 0
    assert log.read().jobs[0].state not in ("RUNNING", None)


def test_no_spool_folder_is_nothing_to_report(tmp_path: Path) -> None:
    why = register_job({"SLURM_JOB_ID": "12", "HPCWRAP_SPOOL": str(tmp_path / "none")}, tmp_path)
    assert why is not None and why.quiet


@needs_root
def test_a_spool_file_of_another_user_is_refused(site: Site) -> None:
    log = site.log(running())
    (site.spool / "dev_12").write_text(f"{log.path}\n")  # root's, not the job user's
    assert site.hook("epilog", site.env(SLURM_JOB_EXIT_CODE2="3:0")).returncode == 0
    assert log.read().jobs[0].state == "RUNNING"
    assert "spool file is not a regular file of the job's user" in site.problems()


# ---------------------------------------------------------------- hostile cases


def _hostile(site: Site, env: dict[str, str], why: str) -> None:
    res = site.hook("epilog", env)
    assert res.returncode == 0 and res.stdout == res.stderr == ""
    assert why in site.problems(), site.problems()


@needs_root
def test_symlink_at_the_run_log_path_to_a_root_file(site: Site) -> None:
    log = site.log(running())
    log.path.unlink()
    log.path.symlink_to(site.canary)
    _hostile(site, site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:15"), "is a symlink")


@needs_root
def test_symlink_at_the_sidecar_folder(site: Site) -> None:
    log = site.log(running())
    elsewhere = site.home / "elsewhere"
    log.sidecar.rename(elsewhere)
    log.sidecar.symlink_to(elsewhere)
    site.chown(site.home)
    _hostile(site, site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:15"), "is a symlink")


@needs_root
@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("hpcwrap:../../etc/passwd", "not absolute"),
        ("hpcwrap:run_logs/2026-03-11_train.md", "not absolute"),
        ("hpcwrap:/root/run_logs/2026-03-11_train.md", "Permission denied"),
        ("hpcwrap:" + "\x01garbage" * 1250, "too long"),
    ],
)
def test_hostile_comments(site: Site, value: str, why: str) -> None:
    if "/root/" in value:
        root_log = Path("/root/run_logs/2026-03-11_train.md")
        if root_log.exists():
            pytest.skip("a real run log at /root/run_logs")
    _hostile(site, site.env(SLURM_JOB_COMMENT=value, SLURM_JOB_EXIT_CODE2="0:15"), why)


@needs_root
def test_a_run_log_folder_of_another_user(site: Site) -> None:
    log = site.log(running())
    os.chown(log.path.parent, 0, 0)  # root's folder holding the user's log
    _hostile(site, site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:15"), "owned by uid 0")
    assert log.read().jobs[0].state == "RUNNING"


@needs_root
def test_an_unwritable_folder(site: Site) -> None:
    log = site.log(running())
    tree = site.home / "run_logs"
    modes = {p: p.stat().st_mode for p in [tree, *tree.rglob("*")]}
    for p in modes:
        p.chmod(modes[p] & ~0o222)  # the user's whole run-log tree read-only
    try:
        _hostile(site, site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:15"), "Permission denied")
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert log.read().jobs[0].state == "RUNNING"


@needs_root
def test_a_corrupt_state_json(site: Site) -> None:
    log = site.log(running())
    (log.sidecar / "state.json").write_text("{ not json")
    site.chown(site.home)
    res = site.hook("epilog", site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:15"))
    assert res.returncode == 0
    # rebuilt from the events (state.json written anew), then closed
    assert log.read().jobs[0].state == "CANCELLED"


@needs_root
def test_a_hook_whose_lock_is_held_leaves_the_end_for_the_next_writer(site: Site) -> None:
    log = site.log(running())
    lock = log.sidecar / "lock"
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # someone holds the run's lock and never lets go
        t0 = time.monotonic()
        env = site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:15", HPCWRAP_HOOK_TIMEOUT="2")
        res = site.hook("epilog", {**env, "HPCWRAP_LOCK": "flock"})
        took = time.monotonic() - t0
        assert res.returncode == 0 and took < 10
        # Within its limit: the end is left beside the log, and readers see it already.
        pending = log.pending_ends()
        assert [p.by for p in pending] == ["epilog"] and "lock" in pending[0].why
        assert log.read().jobs[0].state == "CANCELLED"
        assert "CANCELLED" not in log.path.read_text()  # the Markdown waits for the lock
        assert log.lag() and "end pending" in log.lag()[0]
    # The next writer applies it, once, and removes it.
    log.add_status("a later entry")
    assert log.pending_ends() == [] and log.lag() == []
    md = log.path.read_text()
    assert "CANCELLED" in md and md.count("recorded by the epilog") == 1
    log.add_status("another entry")
    assert log.path.read_text().count("recorded by the epilog") == 1


@needs_root
def test_a_hook_that_would_run_past_its_limit_stops_itself(site: Site) -> None:
    log = site.log(running())
    with open(log.sidecar / "lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        # A limit below the hook's shortest lock wait (0.5 s): the deadline comes first.
        env = site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:15", HPCWRAP_HOOK_TIMEOUT="0.3")
        t0 = time.monotonic()
        res = site.hook("epilog", {**env, "HPCWRAP_LOCK": "flock"})
        assert res.returncode == 0 and time.monotonic() - t0 < 10
    assert "stopped after 0.3 s" in site.problems()


# ---------------------------------------------------------------- the shim's fast path


@needs_root
def test_a_job_that_is_not_hpcwraps_starts_no_python(site: Site) -> None:
    marker = site.home / "python-started"
    fake = site.home / "fake-python"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    plain = site.env(HPCWRAP_PYTHON=str(fake), SLURM_JOB_COMMENT="my own comment")
    assert site.hook("epilog", plain).returncode == 0
    assert site.hook("prolog", {**plain, "SLURM_JOB_COMMENT": ""}).returncode == 0
    assert not marker.exists()
    # the same shim does start it for an hpcwrap job (so the check can fail)
    ours = {**plain, "SLURM_JOB_COMMENT": "hpcwrap:/x/2026-03-11_t.md"}
    assert site.hook("epilog", ours).returncode == 0
    assert marker.exists()


@needs_root
def test_the_shims_exit_0_on_garbage(site: Site) -> None:
    for kind in ("prolog", "epilog"):
        res = site.hook(kind, {"SLURM_JOB_COMMENT": "hpcwrap:x", "HPCWRAP_PYTHON": sys.executable})
        assert res.returncode == 0
        res = site.hook(kind, {})
        assert res.returncode == 0


@needs_root
@pytest.mark.parametrize(
    "line",
    [
        "*** JOB 12 ON n1 CANCELLED AT 2026-11-29T19:40:22 ***",  # 22.05, 24.11
        # 26.05 (seen in the Slurm matrix; sacct "CANCELLED by 0", exit 0:0 as on 22.05)
        "*** JOB 12 ON n1 CANCELLED AT 2026-11-29T19:40:22 DUE to SIGNAL Terminated ***",
    ],
)
def test_epilog_reads_slurms_cancel_line_from_the_default_output(site: Site, line: str) -> None:
    log = site.log(running())
    (site.home / "slurm-12.out").write_text(f"step 3\nslurmstepd-n1: error: {line}\n")
    site.chown(site.home)
    env = site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:0", SLURM_JOB_WORK_DIR=str(site.home))
    assert site.hook("epilog", env).returncode == 0
    job = log.read().jobs[0]
    assert (job.state, job.slurm_state, job.slurm_exit) == ("CANCELLED", "CANCELLED", "0:0")


@needs_root
def test_array_tasks_are_left_to_their_wrappers(site: Site) -> None:
    log = site.log(JobBlock(execution_id="7_[0-2]", state="SUBMITTED"))
    log.update(lambda s: setattr(s, "submit", SubmitFacts(array="0-2")))
    site.chown(site.home)
    for kind in ("prolog", "epilog"):
        env = site.env(**comment(log), SLURM_JOB_ID="8", SLURM_JOB_EXIT_CODE2="0:0")
        assert site.hook(kind, env).returncode == 0
    state = log.read()
    assert [j.execution_id for j in state.jobs] == ["7_[0-2]"]  # no block per task id
    assert state.jobs[0].state == "SUBMITTED"


@needs_root
def test_epilog_reads_a_requeue_and_the_wrappers_term_does_not_undo_it(site: Site) -> None:
    log = site.log(running())
    (site.home / "slurm-12.out").write_text(
        "slurmstepd-n1: error: *** JOB 12 ON n1 CANCELLED AT 2026-11-29T19:40:22 DUE TO JOB"
        " REQUEUE ***\n"
    )
    site.chown(site.home)
    env = site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:0", SLURM_JOB_WORK_DIR=str(site.home))
    assert site.hook("epilog", env).returncode == 0
    assert log.read().jobs[0].state == "REQUEUED"
    # the wrapper of that attempt, slower under load, then reports the TERM it saw
    start = log.read().jobs[0].start
    log.record(
        lifecycle.Ended(
            datetime.now(timezone.utc), "CANCELLED", lifecycle.Source.WRAPPER, "12", 143, start
        )
    )
    assert log.read().jobs[0].state == "REQUEUED"


@needs_root
def test_a_resumed_job_reads_its_own_output_file(site: Site) -> None:
    """The submission's pattern (slurm-%j.out) filled in with this job's id, not the first's."""
    (site.home / "slurm-11.out").write_text("first job: nothing from slurmstepd\n")
    (site.home / "slurm-12.out").write_text(
        "slurmstepd-n1: error: *** JOB 12 ON n1 CANCELLED AT 2026-11-29T20:53:17 DUE TO TIME"
        " LIMIT ***\n"
    )
    log = site.log(running())
    pattern = str(site.home / "slurm-%j.out")
    submitted = SubmitFacts(
        output=pattern, output_path=str(site.home / "slurm-11.out"), job_id="11"
    )
    log.update(lambda s: setattr(s, "submit", submitted))
    site.chown(site.home)
    assert site.hook("epilog", site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:0")).returncode == 0
    job = log.read().jobs[0]
    assert (job.state, job.slurm_state) == ("TIMEOUT", "TIMEOUT")


def _requeue_epilog(
    site: Site, log: RunLog, requeued_at: datetime | None, exit2: str = "0:15"
) -> None:
    """Job 12's output with slurmstepd's requeue line stamped ``requeued_at`` (None: no
    line, the batch step never launched), then the epilog as Slurm runs it once the
    restart is counted (SLURM_JOB_RESTART_COUNT=1)."""
    text = "{'loss': 2.0}\n"
    if requeued_at is not None:
        stamp = requeued_at.astimezone().strftime("%Y-%m-%dT%H:%M:%S")
        text += (
            f"slurmstepd-n1: error: *** JOB 12 ON n1 CANCELLED AT {stamp} DUE TO JOB REQUEUE ***\n"
        )
    (site.home / "slurm-12.out").write_text(text)
    site.chown(site.home)
    env = site.env(
        **comment(log),
        SLURM_JOB_EXIT_CODE2=exit2,
        SLURM_JOB_WORK_DIR=str(site.home),
        SLURM_JOB_RESTART_COUNT="1",
    )
    assert site.hook("epilog", env).returncode == 0


@needs_root
def test_a_requeued_attempt_cancelled_as_it_started_is_not_read_as_the_requeue(
    site: Site,
) -> None:
    """A requeued job appends to the same output file. Its second attempt, cancelled the
    second it started, has no slurmstepd line of its own (its batch step never ran): the
    first attempt's ``DUE TO JOB REQUEUE`` line is not its end (a CI flake)."""
    first_start = datetime.now(timezone.utc) - timedelta(minutes=5)
    first = dataclasses.replace(
        running(), start=first_start, state="REQUEUED", state_source="epilog", restart_count=0
    )
    second = dataclasses.replace(running(), restart_count=1)
    log = site.log(first, second)
    _requeue_epilog(site, log, first_start + timedelta(seconds=30))
    jobs = log.read().jobs
    assert [j.state for j in jobs] == ["REQUEUED", "CANCELLED"], site.problems()


@needs_root
def test_an_earlier_attempts_epilog_never_closes_the_next_attempts_block(site: Site) -> None:
    first = dataclasses.replace(running(), state="CANCELLED", restart_count=0)
    second = dataclasses.replace(running(), restart_count=2)
    log = site.log(first, second)
    env = site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:15", SLURM_JOB_RESTART_COUNT="1")
    assert site.hook("epilog", env).returncode == 0
    assert log.read().jobs[1].state == "RUNNING"


@needs_root
def test_a_requeued_attempts_epilog_sees_the_next_restart_count_and_closes_its_block(
    site: Site,
) -> None:
    """Slurm has counted the restart by the time the requeued attempt's epilog runs
    (SLURM_JOB_RESTART_COUNT=1 for attempt 0, seen on the dev cluster)."""
    log = site.log(dataclasses.replace(running(), state_source="prolog", restart_count=0))
    _requeue_epilog(site, log, datetime.now(timezone.utc))
    assert [j.state for j in log.read().jobs] == ["REQUEUED"], site.problems()


@needs_root
def test_an_attempt_requeued_before_its_batch_step_launched_is_requeued(site: Site) -> None:
    """Slurm killed it before launching the batch script ("already killed, do not launch
    batch job"): no line in the output, exit 0:0. The restart count the epilog sees is
    the evidence (it read COMPLETED: the requeue cluster test failed in the flake hunt)."""
    log = site.log(dataclasses.replace(running(), state_source="prolog", restart_count=0))
    _requeue_epilog(site, log, None, exit2="0:0")
    assert [j.state for j in log.read().jobs] == ["REQUEUED"], site.problems()


@needs_root
@pytest.mark.parametrize("output", ["none", "an earlier attempt's"])
def test_an_attempt_cancelled_before_its_batch_step_launched_is_not_completed(
    site: Site, output: str
) -> None:
    """scancel the second the prolog recorded the start: Slurm never launches the batch
    step, so no wrapper start, no line in the output, exit 0:0. It did not complete (it
    read COMPLETED: the requeue cluster test's second attempt, a flake-hunt failure)."""
    start = datetime.now(timezone.utc) - timedelta(seconds=3)
    log = site.log(
        dataclasses.replace(running(), start=start, state_source="prolog", restart_count=1)
    )
    if output != "none":  # the first attempt's output, untouched since this one started
        out = site.home / "slurm-12.out"
        out.write_text("{'loss': 2.0}\n")
        old = (start - timedelta(minutes=2)).timestamp()
        os.utime(out, (old, old))
    site.chown(site.home)
    env = site.env(
        **comment(log),
        SLURM_JOB_EXIT_CODE2="0:0",
        SLURM_JOB_WORK_DIR=str(site.home),
        SLURM_JOB_RESTART_COUNT="1",
    )
    assert site.hook("epilog", env).returncode == 0
    job = log.read().jobs[0]
    assert job.state == "CANCELLED", site.problems()
    assert "batch script never ran" in log.path.read_text()


@needs_root
def test_a_job_that_wrote_its_output_and_exited_0_is_completed(site: Site) -> None:
    """The same 0:0 with output written since the start (the wrapper's start lost, say):
    COMPLETED, as before."""
    start = datetime.now(timezone.utc) - timedelta(seconds=30)
    log = site.log(dataclasses.replace(running(), start=start, state_source="prolog"))
    (site.home / "slurm-12.out").write_text("{'loss': 2.0}\ndone\n")
    site.chown(site.home)
    env = site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:0", SLURM_JOB_WORK_DIR=str(site.home))
    assert site.hook("epilog", env).returncode == 0
    assert log.read().jobs[0].state == "COMPLETED", site.problems()


def test_the_next_attempts_start_opens_its_own_block_after_a_prolog_only_attempt() -> None:
    """An attempt requeued before its wrapper started left only the prolog's RUNNING
    block: the next attempt's start (restart count 1) is a new block, the first one
    REQUEUED (the requeue cluster test under load)."""
    from hpcwrap.runlog.lifecycle import Started, apply_in_place

    state = RunState(run_type="replication", objective="o")
    t0 = datetime(2026, 12, 7, 1, 31, 7, tzinfo=timezone.utc)
    apply_in_place(state, Started(t0, "12", "n1", True, restart_count=0, by_prolog=True))
    later = t0 + timedelta(minutes=2)
    apply_in_place(state, Started(later, "12", "n1", True, restart_count=1, by_prolog=True))
    assert [(j.state, j.restart_count) for j in state.jobs] == [("REQUEUED", 0), ("RUNNING", 1)]
    assert state.jobs[1].start == later and state.jobs[0].start == t0


def _stepd(at: datetime, due: str = "") -> str:
    local = at.astimezone().replace(tzinfo=None).isoformat(timespec="seconds")
    return f"slurmstepd-n1: error: *** JOB 12 ON n1 CANCELLED AT {local}{due} ***\n"


@needs_root
def test_epilog_results_come_from_the_outputs_tail_when_it_got_further(site: Site) -> None:
    # the wrapper was SIGKILLed: its events stop at step 1, the output went on to step 10
    log = site.log(running())
    log.append_event("progress", {"step": 1, "train_loss": 0.999, "train_loss_text": "0.9990"})
    out = site.home / "slurm-12.out"
    lines = [f"iter {i}: loss {1 - i / 1000:.4f}, time 10.00ms\n" for i in range(1, 11)]
    out.write_text("".join(lines))
    log.update(lambda s: setattr(s, "submit", SubmitFacts(output_path=str(out))))
    site.chown(site.home)
    assert site.hook("epilog", site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:9")).returncode == 0
    state = log.read()
    assert state.jobs[0].state == "FAILED"
    assert state.results.final_step == 10 and state.results.end_train_loss_text == "0.9900"
    assert state.results.start_train_loss_text == "0.9990"  # the first stays the wrapper's
    assert "last step 10, train_loss 0.9900" in state.status[-1].text


@needs_root
def test_an_unhandled_limit_ends_when_slurm_sent_the_term(site: Site) -> None:
    job = running(limit_in=-20)
    log = site.log(job)
    term_at = (job.start or T0) + timedelta(seconds=60)
    out = site.home / "slurm-12.out"
    out.write_text("iter 1: loss 1.0000, time 1ms\n" + _stepd(term_at, " DUE TO TIME LIMIT"))
    log.update(lambda s: setattr(s, "submit", SubmitFacts(output_path=str(out))))
    site.chown(site.home)
    assert site.hook("epilog", site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:0")).returncode == 0
    ended = log.read().jobs[0]
    assert ended.state == "TIMEOUT" and ended.end == term_at.replace(microsecond=0)


@needs_root
def test_a_node_failure_replaces_the_wrappers_cancel_guess(site: Site) -> None:
    job = running()
    log = site.log(job)
    wrapper_end = (job.start or T0) + timedelta(seconds=30)
    log.record(
        lifecycle.Ended(
            wrapper_end,
            JobState.CANCELLED,
            lifecycle.Source.WRAPPER,
            "12",
            exit_code=143,
            start=job.start,
            text="stopped by SIGTERM with time left, exit code 143",
            strength=endings.Strength.GUESS,
        )
    )
    out = site.home / "slurm-12.out"
    due = " DUE TO NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS"
    out.write_text("iter 1: loss 1.0000, time 1ms\n" + _stepd(wrapper_end, due))
    log.update(lambda s: setattr(s, "submit", SubmitFacts(output_path=str(out))))
    site.chown(site.home)
    assert site.hook("epilog", site.env(**comment(log), SLURM_JOB_EXIT_CODE2="0:0")).returncode == 0
    state = log.read()
    ended = state.jobs[0]
    assert (ended.state, ended.slurm_state, ended.slurm_exit) == ("NODE_FAIL", "NODE_FAIL", "0:0")
    assert ended.end == wrapper_end and ended.exit_code == 143  # what the wrapper saw stands
    assert state.status[-1].text.startswith("node failure: node n1 failed")
    assert not any(e.text.startswith("cancelled") for e in state.status)


def test_slurms_own_end_time_wins_where_the_hook_is_given_it() -> None:
    # SLURM_JOB_END_TIME reaches the hooks from Slurm 23.02 on (not on the 22.05 dev cluster)
    job = running(limit_in=-20)
    start = job.start or T0
    env = hooks.HookEnv.from_environ(
        "epilog",
        {
            "SLURM_JOB_ID": "12",
            "SLURM_JOB_UID": "1000",
            "SLURM_JOB_GID": "1000",
            "SLURM_JOB_END_TIME": str(int(start.timestamp()) + 70),
        },
    )
    line_at = start + timedelta(seconds=60)
    out = hooks.OutputEvidence(stepd=JobState.TIMEOUT, stepd_at=line_at)
    verdict = endings.classify(hooks.epilog_evidence(job, env, start + timedelta(minutes=3), out))
    when = start + timedelta(minutes=3)
    assert hooks.end_time(env, out, verdict, when, start) == env.end_time
    bare = dataclasses.replace(env, end_time=None)
    assert hooks.end_time(bare, out, verdict, when, start) == line_at
    # a line stamped before the attempt started is an earlier attempt's: the epilog's clock
    old = hooks.OutputEvidence(stepd=JobState.TIMEOUT, stepd_at=start - timedelta(hours=1))
    assert hooks.end_time(bare, old, verdict, when, start) == when
    assert hooks.HookEnv.from_environ(
        "epilog", {"SLURM_JOB_ID": "1", "SLURM_JOB_UID": "1", "SLURM_JOB_GID": "1",
                   "SLURM_JOB_END_TIME": "not a time"}
    ).end_time is None  # fmt: skip


def test_slurms_own_start_time_is_the_prologs_where_it_is_given() -> None:
    # SLURM_JOB_START_TIME reaches the prolog from Slurm 23.02 on (seen on 24.11 and 26.05
    # in the Slurm matrix; not on 22.05): the start is then sacct's Start to the second.
    when = T0 + timedelta(seconds=2, microseconds=345)
    base = {"SLURM_JOB_ID": "12", "SLURM_JOB_UID": "1000", "SLURM_JOB_GID": "1000"}
    env = hooks.HookEnv.from_environ(
        "prolog", {**base, "SLURM_JOB_START_TIME": str(int(T0.timestamp()))}
    )
    assert hooks.start_time(env, when) == T0
    assert hooks.start_time(hooks.HookEnv.from_environ("prolog", base), when) == when  # 22.05
    future = dataclasses.replace(env, start_time=when + timedelta(minutes=5))
    assert hooks.start_time(future, when) == when  # not this attempt's: the clock stands
    stale = dataclasses.replace(env, start_time=when - timedelta(hours=1))
    assert hooks.start_time(stale, when) == when


def test_code_readable_by_anyone_or_loaded_before_the_drop() -> None:
    # the epilog loads the output's reader before dropping to the job's user when hpcwrap
    # sits where that user cannot read it (a checkout in root's home)
    base = Path(tempfile.mkdtemp(prefix="hpcwrap-readable-"))  # pytest's tmp is 0700
    try:
        base.chmod(0o755)
        code = base / "home" / "hpcwrap"
        code.mkdir(parents=True)
        (base / "home").chmod(0o755)
        code.chmod(0o755)
        assert hooks.readable_by_anyone(code)
        (base / "home").chmod(0o700)
        assert not hooks.readable_by_anyone(code)
        (base / "home").chmod(0o755)
        code.chmod(0o711)
        assert not hooks.readable_by_anyone(code)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _ended_by_wrapper(tmp_path: Path, slurm_state: str | None) -> RunLog:
    start = datetime.now(timezone.utc) - timedelta(minutes=1)
    done = JobBlock(execution_id="12", start=start, end=start + timedelta(seconds=30))
    done.state, done.exit_code, done.state_source = "COMPLETED", 0, "wrapper"
    done.slurm_state, done.slurm_exit = slurm_state, "0:0" if slurm_state else None
    return create_run(tmp_path / "run_logs", RunState(objective="x", jobs=[done]))


def test_the_epilogs_fast_path_agrees_with_the_full_one(tmp_path: Path) -> None:
    """``confirmed_already`` (state.json alone, no run-log machinery imported) says
    "nothing to add" exactly where ``record_epilog`` would; anything else goes the full way."""
    env, when = env_of("0:0"), datetime.now(timezone.utc)
    log = _ended_by_wrapper(tmp_path / "a", "COMPLETED")
    assert hooks.confirmed_already(log.path, env, when, None)
    assert "nothing to add" in hooks.record_epilog(log, env, when, None)
    # Slurm's account not there yet: the full path adds it
    bare = _ended_by_wrapper(tmp_path / "b", None)
    assert not hooks.confirmed_already(bare.path, env, when, None)
    assert "nothing to add" not in hooks.record_epilog(bare, env, when, None)
    assert hooks.confirmed_already(bare.path, env, when, None)  # now it is
    # events.jsonl past what state.json accounts for, or an end left for the next writer
    log.append_event("note", {"x": 1})
    assert not hooks.confirmed_already(log.path, env, when, None)
    other = _ended_by_wrapper(tmp_path / "c", "COMPLETED")
    ends = other.sidecar / "ends"
    ends.mkdir()
    (ends / "1.json").write_text("{}")
    assert not hooks.confirmed_already(other.path, env, when, None)
    # another attempt's job id: no block of its own
    other_job = dataclasses.replace(env, job_id="13")
    assert not hooks.confirmed_already(log.path, other_job, when, None)


def test_the_hook_imports_no_run_log_handle_for_a_confirmed_end(tmp_path: Path) -> None:
    log = _ended_by_wrapper(tmp_path, "COMPLETED")
    code = (
        "import sys, datetime\n"
        "from pathlib import Path\n"
        "from hpcwrap.hooks import node\n"
        "env = node.HookEnv.from_environ('epilog', {'SLURM_JOB_ID': '12', 'SLURM_JOB_UID': "
        "'1000', 'SLURM_JOB_GID': '1000', 'SLURM_JOB_EXIT_CODE2': '0:0'})\n"
        f"assert node.confirmed_already(Path({str(log.path)!r}), env, "
        "datetime.datetime.now(datetime.timezone.utc), None)\n"
        "heavy = [m for m in ('hpcwrap.runlog.handle', 'hpcwrap.runlog.lifecycle') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    res = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         cwd=REPO)  # fmt: skip
    assert res.returncode == 0, res.stderr


def test_what_the_hook_imports_late_is_loaded_before_the_drop_where_it_must() -> None:
    """Every import inside a function of hooks/node.py is in LOADED_WHEN_WRITING: where the
    job's user cannot read hpcwrap's code (a checkout in root's home; the fresh-machine
    check's layout) those are loaded before the drop, or the hook fails after it."""
    import ast

    tree = ast.parse(Path(hooks.__file__).read_text())
    late: set[str] = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    late.add(full if full.count(".") == 2 else node.module)
            elif isinstance(node, ast.Import):
                late.update(a.name for a in node.names)
    assert late and late <= set(hooks.LOADED_WHEN_WRITING), late
