"""`hpcwrap sbatch` end to end without a cluster.

Slurm is faked only at the subprocess boundary: a ``sbatch`` script on PATH
that records the argv and the batch script it was given and answers like
sbatch (tests with ``fake_sbatch`` in their name). The real thing is in
tests/cluster/test_sbatch_cluster.py. The ``local`` scheduler needs no fake:
it really runs the job on this machine, through the real ``hpcwrap run``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcwrap.cli import main
from hpcwrap.runlog import open_run

FAKE_SBATCH = r"""#!/bin/bash
# A stand-in for sbatch: records what it was given, answers per $FAKE_SBATCH.
# The follow-up job (afterany) is recorded apart and answered 5000.
case "$*" in
  *--dependency=afterany:*) printf '%s\0' "$@" > "$FAKE_SBATCH_LOG.follow-up"; echo 5000; exit 0 ;;
esac
printf '%s\0' "$@" > "$FAKE_SBATCH_LOG"
cp -- "${@: -1}" "$FAKE_SBATCH_LOG.job"
case "$FAKE_SBATCH" in
  refuse) echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2
          exit 1 ;;
  cluster) echo "4242;fedcl" ;;
  warn) echo "sbatch: warning: a warning" >&2; echo 4244 ;;
  gate) for _ in $(seq 3000); do [ -e "$FAKE_SBATCH_LOG.go" ] && break; sleep 0.02; done
        echo 4243 ;;
  wait) echo 4245; sleep 0.3; exit 3 ;;
  *) echo 4241 ;;
esac
"""

SCRIPT = '#!/bin/bash\n#SBATCH -t 5\necho "hello from the job: $*"\n'

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True,
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git project with train.sh and a config, a fake sbatch first on PATH."""
    for name in list(os.environ):
        if name.startswith(("SBATCH_", "SLURM_", "HPCWRAP_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "train.sh").write_text(SCRIPT)
    (proj / "conf.yaml").write_bytes(b"lr: 3e-4\r\nbatch: 64\n\xff raw bytes\n")
    (proj / "model.py").write_text("x = 1\n")
    git(proj, "init", "-q", "-b", "main")
    git(proj, "add", ".")
    git(proj, "commit", "-q", "-m", "init")
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir()
    (fake_bin / "sbatch").write_text(FAKE_SBATCH)
    (fake_bin / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SBATCH_LOG", str(tmp_path / "sbatch-argv"))
    monkeypatch.chdir(proj)
    return proj


BASE = ["--mode", "experiment", "--objective", "does it submit?"]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["sbatch", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def fake_argv(project: Path) -> list[str]:
    return (project.parent / "sbatch-argv").read_bytes().decode().split("\0")[:-1]


def test_submit_records_everything_fake_sbatch(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "model.py").write_text("x = 2\n")  # dirty
    (project / "scratch.txt").write_text("untracked\n")
    rc, out, err = cli(
        capsys, *BASE, "--config", "conf.yaml", "--set", "lr=3e-4", "--dataset", "d.parquet",
        "-p", "debug", "train.sh", "a b", "$x",
    )  # fmt: skip
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "Submitted batch job 4241"
    # The follow-up job is on by default: it waits for 4241's end, however it ends.
    follow = (project.parent / "sbatch-argv.follow-up").read_bytes().decode().split("\0")
    assert "--dependency=afterany:4241" in follow
    assert "follow-up job 5000" in err
    log = open_run(lines[1].removeprefix("run log: "))
    state = log.read()
    job = state.jobs[0]
    assert (job.execution_id, job.state, job.cluster) == ("4241", "SUBMITTED", None)
    assert job.submitted is not None
    # what sbatch got: --parsable, the user's options untouched, the job script
    job_sh = log.sidecar / "job.sh"
    assert fake_argv(project) == ["--parsable", "-p", "debug", str(job_sh)]
    assert (project.parent / "sbatch-argv.job").read_bytes() == job_sh.read_bytes()
    text = job_sh.read_text()
    assert f"#SBATCH --comment=hpcwrap:{log.path}\n" in text
    assert "#SBATCH -t 5\n" in text
    snapshot = log.sidecar / "script" / "train.sh"
    assert snapshot.read_bytes() == SCRIPT.encode() and os.access(snapshot, os.X_OK)
    assert text.rstrip().endswith(f"-- {snapshot} 'a b' '$x'")
    # config: byte-exact copy with its sha256
    raw = (project / "conf.yaml").read_bytes()
    assert (log.sidecar / "config" / "conf.yaml").read_bytes() == raw
    assert state.config_facts is not None
    assert state.config_facts.sha256 == hashlib.sha256(raw).hexdigest()
    # code: dirty, diff saved, untracked counted, experiment tag on the base commit
    head = git(project, "rev-parse", "HEAD")
    code = state.code_state
    assert code is not None and code.commit == head and code.dirty
    assert code.untracked == 1
    assert b"x = 2" in (log.sidecar / "code.diff").read_bytes()
    tag = code.tag
    assert tag is not None
    assert tag == f"hpcwrap/{log.name}" and git(project, "rev-parse", tag) == head
    md = log.path.read_text()
    assert "- run_type: experiment" in md
    assert "- script: `train.sh` 'a b' '$x'" in md
    assert "- config: `conf.yaml`" in md and "- dataset: `d.parquet`" in md
    assert "dirty" in md and f".hpcwrap/{log.name}/code.diff" in md
    assert f"tag `{tag}` points at the base commit" in md
    assert "- execution_id: 4241" in md and "- state: SUBMITTED" in md
    # output where sbatch puts it, recorded for later tools
    facts = state.submit
    assert facts is not None
    assert facts.output_path == str(project / "slurm-4241.out")
    assert facts.error is None and facts.job_id == "4241"
    assert facts.sources["time"] == "#SBATCH" and facts.sources["partition"] == ("command line")
    assert log.name in (log.root / "timeline.md").read_text()
    assert log.name in (log.root / "experiments.md").read_text()


def test_array_and_output_pattern_fake_sbatch(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = cli(capsys, *BASE, "--array=0-15%4", "-o", "out/%x-%A_%a.log", "train.sh")
    assert rc == 0
    state = open_run(out.splitlines()[1].removeprefix("run log: ")).read()
    assert state.jobs[0].execution_id == "4241_[0-15]"
    assert state.submit is not None
    assert state.submit.output_path == str(project / "out/train.sh-4241_%a.log")


def test_cluster_and_warnings_fake_sbatch(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SBATCH", "cluster")
    rc, out, _ = cli(capsys, *BASE, "-M", "fedcl", "train.sh")
    assert rc == 0
    assert open_run(out.splitlines()[1][9:]).read().jobs[0].cluster == "fedcl"
    monkeypatch.setenv("FAKE_SBATCH", "warn")
    rc, out, err = cli(capsys, *BASE, "train.sh")
    assert rc == 0 and "sbatch: warning: a warning" in err


def test_json_output_fake_sbatch(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = cli(capsys, "--json", *BASE, "train.sh")
    assert rc == 0
    data = json.loads(out)
    assert data["job_id"] == "4241" and data["execution_id"] == "4241"
    assert Path(data["run_log"]).is_file()
    assert data["output"] == str(project / "slurm-4241.out")
    assert Path(data["job_script"]).name == "job.sh"


def test_refusal_is_recorded_and_tag_removed_fake_sbatch(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SBATCH", "refuse")
    rc, out, err = cli(capsys, *BASE, "-p", "nosuch", "train.sh")
    assert rc == 8
    assert "Invalid partition name specified" in err
    assert out == ""
    logs = sorted((project / "run_logs").glob("*.md"))
    log = open_run(next(p for p in logs if p.name[0].isdigit()))
    state = log.read()
    assert state.jobs[0].state == "SUBMIT_FAILED"
    assert "Invalid partition name specified" in (state.jobs[0].submit_error or "")
    assert git(project, "tag") == ""  # no dangling experiment tag
    md = log.path.read_text()
    assert "- state: SUBMIT_FAILED" in md and "submit error:" in md
    assert "removed: the submission failed" in md
    events = [
        json.loads(x)["kind"] for x in (log.sidecar / "events.jsonl").read_text().split("\n") if x
    ]
    assert events[-1] == "submit_failed"


def test_sbatch_missing(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    only_git = tmp_path / "onlygit"
    only_git.mkdir()
    (only_git / "git").symlink_to(subprocess.run(
        ["sh", "-c", "command -v git"], capture_output=True, text=True).stdout.strip())  # fmt: skip
    monkeypatch.setenv("PATH", str(only_git))
    rc, _, err = cli(capsys, *BASE, "train.sh")
    assert rc == 9
    assert "sbatch not found" in err
    log = open_run(next(p for p in (project / "run_logs").glob("2*.md")))
    assert log.read().jobs[0].state == "SUBMIT_FAILED"
    assert git(project, "tag") == ""


def test_wait_passes_sbatch_status_fake_sbatch(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SBATCH", "wait")
    rc, out, _ = cli(capsys, *BASE, "--wait", "train.sh")
    assert rc == 3  # the job's status, as `sbatch --wait` exits
    assert out.startswith("Submitted batch job 4245\n")
    assert open_run(out.splitlines()[1][9:]).read().jobs[0].execution_id == "4245"


def test_two_submissions_do_not_collide_fake_sbatch(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for _ in range(2):
        rc, out, _ = cli(capsys, *BASE, "train.sh")
        assert rc == 0
        paths.append(out.splitlines()[1][9:])
    assert paths[0] != paths[1]
    assert paths[1].endswith("_2.md")
    tags = git(project, "tag").split()
    assert len(tags) == 2 and tags[1].endswith("_2")


def test_dry_run_writes_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = cli(capsys, *BASE, "--dry-run", "-p", "debug", "train.sh", "x")
    assert rc == 0
    assert "#SBATCH --comment=hpcwrap:" in out and "sbatch --parsable -p debug" in out
    assert not (project / "run_logs").exists()
    assert not (project.parent / "sbatch-argv").exists()
    assert git(project, "tag") == ""
    rc, out, _ = cli(capsys, *BASE, "--dry-run", "--json", "train.sh")
    assert json.loads(out)["dry_run"] is True


def test_dry_run_names_the_run_log_the_submit_then_uses(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a run of the same day and task already there, the dry run names the _2 log the
    real submit makes (it named the existing one: a papercut of issue 36)."""
    rc, out, _ = cli(capsys, *BASE, "train.sh")
    assert rc == 0
    first = out.splitlines()[1][9:]
    rc, out, _ = cli(capsys, *BASE, "--dry-run", "--json", "train.sh")
    assert rc == 0
    predicted = json.loads(out)["run_log"]
    assert predicted != first and predicted.endswith("_2.md")
    rc, out, _ = cli(capsys, *BASE, "train.sh")
    assert rc == 0 and out.splitlines()[1][9:] == predicted


def test_usage_errors_create_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli(capsys, "--objective", "x", "train.sh")
    assert rc == 2 and "--mode" in err
    rc, _, err = cli(capsys, *BASE, "--test-only", "train.sh")
    assert rc == 2 and "submits nothing" in err
    rc, _, err = cli(capsys, *BASE, "--walltime-signal", "BOGUS", "train.sh")
    assert rc == 2 and "walltime-signal" in err
    rc, _, err = cli(capsys, *BASE, "--task=4", "train.sh")
    assert rc == 2 and "--ntasks-per-node=4" in err
    assert not (project / "run_logs").exists()


def test_help(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for words in (["--help"], ["-h"], ["-p", "x", "--help"]):
        rc, out, _ = cli(capsys, *words)
        assert rc == 0 and "how the words are split" in out and "--tasks-per-node" in out
    rc, _, _ = cli(capsys)
    assert rc == 2


def _default_sigint() -> None:
    # A test run started in the background (`cmd &` without job control) inherits
    # SIGINT ignored, and Python then never raises KeyboardInterrupt: a person's
    # terminal sends a Ctrl-C to a process that takes it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(project: Path, env: dict[str, str], *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hpcwrap", "sbatch", *argv],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def _wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _wchan(pid: int) -> str | None:
    """Where the process's main thread sleeps in the kernel; None where that is hidden."""
    try:
        text = Path(f"/proc/{pid}/wchan").read_text().strip()
    except OSError:
        return None
    return text if text and text != "0" else None


# The read(2) system call's number, for /proc/<pid>/syscall where wchan is hidden.
_READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}.get(os.uname().machine)


def _in_read(pid: int) -> bool | None:
    """True while the main thread blocks in read(2), False while it blocks in another
    system call (a wait, a sleep), None while it runs or where neither wchan nor
    /proc/<pid>/syscall shows it."""
    where = _wchan(pid)
    if where is not None:
        return "pipe_read" in where
    try:
        call = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return None
    if not call or _READ_SYSCALL is None or not call[0].isdigit():
        return None  # "running" (between calls), or unknown here
    return call[0] == _READ_SYSCALL


def _can_see_calls(pid: int) -> bool:
    if _wchan(pid) is not None:
        return True
    try:
        return _READ_SYSCALL is not None and bool(Path(f"/proc/{pid}/syscall").read_text())
    except OSError:
        return False


def _wait_read(proc: subprocess.Popen[str], present: bool, timeout: float = 20) -> None:
    """Wait until hpcwrap's main thread blocks in (present) or, having left it, blocks
    outside read(2) on sbatch's output (the Ctrl-C handled: it waits for sbatch). Read
    from wchan's pipe_read, or /proc/<pid>/syscall where the kernel hides wchan; where
    both are hidden, wait a fixed second (the one timing wait left: says so)."""
    if not _can_see_calls(proc.pid):
        time.sleep(1.0)  # neither wchan nor syscall readable here: nothing to wait on
        return
    deadline = time.monotonic() + timeout
    while _in_read(proc.pid) is not present:
        assert proc.poll() is None, f"hpcwrap exited early: {proc.communicate()}"
        assert time.monotonic() < deadline, f"hpcwrap never {'in' if present else 'out of'} read"
        time.sleep(0.02)


def test_ctrl_c_lets_sbatch_finish_and_records_the_job_fake_sbatch(project: Path) -> None:
    # sbatch answers only when told to (FAKE_SBATCH=gate), so the Ctrl-C
    # lands while hpcwrap reads its output, however slow the machine.
    env = {**os.environ, "FAKE_SBATCH": "gate"}
    proc = _start(project, env, *BASE, "train.sh")
    _wait_for(project.parent / "sbatch-argv")
    _wait_read(proc, present=True)  # reading sbatch's output
    proc.send_signal(signal.SIGINT)
    _wait_read(proc, present=False)  # the Ctrl-C taken: waiting for sbatch
    (project.parent / "sbatch-argv.go").touch()  # now sbatch prints its job id
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "job 4243 was submitted" in err
    log = open_run(next((project / "run_logs").glob("2*.md")))
    state = log.read()
    assert state.jobs[0].execution_id == "4243" and state.jobs[0].state == "SUBMITTED"
    assert git(project, "tag") != ""  # the job exists: its tag stays
    assert '"submit_interrupted"' in (log.sidecar / "events.jsonl").read_text()


def test_second_ctrl_c_stops_sbatch_and_says_a_job_may_exist_fake_sbatch(project: Path) -> None:
    env = {**os.environ, "FAKE_SBATCH": "gate"}  # sbatch never answers: it is never told to
    proc = _start(project, env, *BASE, "train.sh")
    _wait_for(project.parent / "sbatch-argv")
    _wait_read(proc, present=True)
    proc.send_signal(signal.SIGINT)
    # The first Ctrl-C handled (hpcwrap has left the read and waits for sbatch)
    # before the second is sent, so the two are not merged into one.
    _wait_read(proc, present=False)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "may still exist" in err
    state = open_run(next((project / "run_logs").glob("2*.md"))).read()
    assert state.jobs[0].state == "SUBMIT_FAILED"
    assert "interrupted" in (state.jobs[0].submit_error or "")
    assert git(project, "tag") != ""  # unknown whether a job exists: tag kept, log says so


def test_local_scheduler_runs_the_job(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(capsys, "--scheduler", "local", *BASE, "train.sh", "x y")
    assert rc == 0, err
    job_id = out.splitlines()[0].removeprefix("Submitted batch job ")
    host, _, pid = job_id.rpartition(":")
    assert host and pid.isdigit()
    output = project / f"slurm-{pid}.out"
    deadline = time.monotonic() + 60
    log = open_run(out.splitlines()[1][9:])
    while time.monotonic() < deadline:
        if log.read().jobs[0].state not in (None, "SUBMITTED", "RUNNING"):
            break
        time.sleep(0.2)
    assert "hello from the job: x y" in output.read_text()
    job = log.read().jobs[0]
    assert job.execution_id == job_id
    assert job.state == "COMPLETED" and job.exit_code == 0


def test_secrets_stay_out_of_the_run_log_fake_sbatch(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = cli(
        capsys, *BASE, "--export=ALL,WANDB_API_KEY=sekrit1", "train.sh",
        "--hf-token=sekrit2", "--password", "sekrit3", "lr=3",
    )  # fmt: skip
    assert rc == 0, err
    # sbatch and the job get everything untouched ...
    assert "--export=ALL,WANDB_API_KEY=sekrit1" in fake_argv(project)
    log = open_run(out.splitlines()[1][9:])
    assert "--hf-token=sekrit2" in (log.sidecar / "job.sh").read_text()
    # ... the run log, its state and its events never see them
    for path in (log.path, log.sidecar / "state.json", log.sidecar / "events.jsonl"):
        assert "sekrit" not in path.read_text(), path
    assert "'--hf-token=***' --password '***' lr=3" in log.path.read_text()
    # job.sh must hold the real arguments to run them: then it is its owner's alone
    job_sh = log.sidecar / "job.sh"
    assert "sekrit2" in job_sh.read_text()
    assert job_sh.stat().st_mode & 0o077 == 0


def test_local_scheduler_state_and_cancel(project: Path) -> None:
    from hpcwrap.scheduler.local import LocalScheduler

    (project / "sleep.sh").write_text("#!/bin/bash\nexec sleep 60\n")
    local = LocalScheduler()
    result = local.submit(project / "sleep.sh", ["-o", "sleep-%j.log"], cwd=project)
    assert (project / f"sleep-{result.job_id.rpartition(':')[2]}.log").exists()
    info = local.job_state(result.job_id)
    assert info is not None and info.state == "RUNNING"
    local.cancel(result.job_id)
    os.waitpid(int(result.job_id.rpartition(":")[2]), 0)  # reap: it is our child here
    assert local.job_state(result.job_id) is None
    assert local.job_state("otherhost:1") is None


def test_users_parsable_prints_exactly_what_sbatch_would_fake_sbatch(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out, err = cli(capsys, *BASE, "--parsable", "train.sh")
    assert rc == 0, err
    assert out == "4241\n"  # jid=$(hpcwrap sbatch --parsable ...) gets the id alone
    assert "hpcwrap: run log: " in err and "Submitted batch job" not in out + err
    monkeypatch.setenv("FAKE_SBATCH", "cluster")
    rc, out, _ = cli(capsys, *BASE, "--parsable", "train.sh")
    assert rc == 0 and out == "4242;fedcl\n"


def test_parsable_with_json_is_refused_fake_sbatch(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = cli(capsys, *BASE, "--json", "--parsable", "train.sh")
    assert rc == 2 and out == ""
    assert "--parsable and --json" in err and "choose one" in err
    assert not (project / "run_logs").exists()  # refused before anything was written


def test_json_refusal_prints_one_error_object_fake_sbatch(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SBATCH", "refuse")
    rc, out, err = cli(capsys, *BASE, "--json", "-p", "nosuch", "train.sh")
    assert rc == 8
    data = json.loads(out)
    assert data["job_id"] is None and data["exit_code"] == 8
    assert "Invalid partition name specified" in data["error"]
    assert open_run(data["run_log"]).read().jobs[0].state == "SUBMIT_FAILED"
    assert "Invalid partition name specified" in err  # the message still goes to stderr


def test_a_refused_experiment_says_so_in_experiments_md_fake_sbatch(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SBATCH", "refuse")
    rc, _, _ = cli(capsys, *BASE, "--task", "bad", "-p", "nosuch", "train.sh")
    assert rc == 8
    monkeypatch.setenv("FAKE_SBATCH", "ok")
    rc, _, _ = cli(capsys, *BASE, "--task", "good", "train.sh")
    assert rc == 0
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
        for line in (project / "run_logs" / "experiments.md").read_text().splitlines()
        if line.startswith("| 2")
    }
    bad = next(v for k, v in rows.items() if k.endswith("_bad"))
    good = next(v for k, v in rows.items() if k.endswith("_good"))
    assert bad[3] == "submit failed" and good[3] == ""


@pytest.mark.parametrize(("script_mode", "folder_mode"), [(0o700, 0o755), (0o755, 0o700)])
def test_copies_are_never_wider_than_their_originals_fake_sbatch(
    project: Path, capsys: pytest.CaptureFixture[str], script_mode: int, folder_mode: int
) -> None:
    """A private script holding a token: its copy and job.sh stay private (before: 0755,
    and another user read the token). A private run_logs keeps its sidecar private."""
    script = project / "s700.sh"
    script.write_text("#!/bin/bash\nexport HF_TOKEN=hf_abcdefghijklmnop\necho hi\n")
    script.chmod(script_mode)
    (project / "run_logs").mkdir(exist_ok=True)
    (project / "run_logs").chmod(folder_mode)
    rc, out, err = cli(capsys, *BASE, "s700.sh")
    assert rc == 0, err
    log = open_run(out.splitlines()[1][9:])
    copy = log.sidecar / "script" / "s700.sh"
    others = 0o077 if script_mode == 0o700 else 0o022
    assert copy.stat().st_mode & others == 0 and copy.stat().st_mode & 0o700 == 0o700
    assert (log.sidecar / "job.sh").stat().st_mode & others == 0
    if folder_mode == 0o700:
        assert log.sidecar.stat().st_mode & 0o077 == 0
        assert log.sidecar.parent.stat().st_mode & 0o077 == 0


BAD_BYTE = os.fsdecode(b"bad\xff")  # a name with a byte that is not UTF-8


@pytest.mark.parametrize("where", ["task", "script", "cwd", "output", "arg", "long task"])
def test_bad_bytes_and_long_names_are_refused_before_anything_is_written_fake_sbatch(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Before: a traceback (UnicodeEncodeError, "str is not valid UTF-8") and empty sidecar
    folders left behind; a 300-character task: "File name too long" after mkdir."""
    args, script, extra = list(BASE), "train.sh", []
    if where == "task":
        args += ["--task", BAD_BYTE]
    elif where == "long task":
        args += ["--task", "a" * 300]
    elif where == "script":
        script = BAD_BYTE + ".sh"
        (project / "train.sh").rename(project / script)
    elif where == "cwd":
        folder = project / BAD_BYTE
        folder.mkdir()
        shutil.copy(project / "train.sh", folder / "train.sh")
        monkeypatch.chdir(folder)
    elif where == "output":
        args += ["-o", BAD_BYTE + "-%j.out"]
    else:
        extra = [BAD_BYTE]
    rc, _, err = cli(capsys, *args, script, *extra)
    assert rc == 2, err
    assert "Traceback" not in err
    said = "300 bytes long: at most 120" if where == "long task" else "bad\\xff"
    assert said in err and ("not valid UTF-8 (byte \\xff)" in err or where == "long task"), err
    assert not list(project.rglob("run_logs")) and not (project.parent / "sbatch-argv").exists()
