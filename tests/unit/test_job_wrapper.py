"""The wrapper and a real run log: the toy trainer in every format, failures, signals."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hpcwrap.config import Settings
from hpcwrap.job.wrapper import Outcome, WrapperOptions, run_command
from hpcwrap.runlog import RunLog, RunState, create_run
from tests.waiting import SignalWhen, child_until, wait_for

REPO = Path(__file__).resolve().parents[2]
TRAINER = REPO / "examples" / "toy_train.py"
PY = sys.executable


def new_log(tmp_path: Path) -> RunLog:
    state = RunState(task="train", run_type="replication", objective="does it train?")
    return create_run(tmp_path / "run_logs", state)


def toy(tmp_path: Path, *args: str) -> list[str]:
    return [
        PY,
        "-u",
        str(TRAINER),
        "--out-dir",
        str(tmp_path / "out"),
        "--steps-per-sec",
        "0",
        *args,
    ]


def wrap(
    argv: list[str],
    log: RunLog | None,
    tmp_path: Path,
    settings: Settings | None = None,
    messages: io.StringIO | None = None,
    **options: Any,
) -> tuple[Outcome, bytes, str]:
    """Run ``argv`` under the wrapper with its output in ``tmp_path/job.out``: the outcome,
    the output and the wrapper's own messages. ``options``: more WrapperOptions."""
    out_path = tmp_path / "job.out"
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    messages = messages if messages is not None else io.StringIO()
    opts: dict[str, Any] = {"cwd": tmp_path, "environ": {}, **options}
    try:
        outcome = run_command(
            argv,
            log,
            WrapperOptions(
                settings=settings or Settings(),
                stdout_fd=fd,
                stderr_fd=fd,
                err=messages,
                **opts,
            ),
        )
    finally:
        os.close(fd)
    return outcome, out_path.read_bytes(), messages.getvalue()


def events(log: RunLog) -> list[dict[str, object]]:
    lines = (log.sidecar / "events.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


@pytest.mark.parametrize("fmt", ["hf", "nanogpt", "lightning", "json"])
def test_toy_trainer_each_format_fills_the_log(tmp_path: Path, fmt: str) -> None:
    log = new_log(tmp_path)
    argv = toy(
        tmp_path,
        "--format",
        fmt,
        "--steps",
        "200",
        "--log-every",
        "10",
        "--eval-every",
        "50",
        "--ckpt-every",
        "100",
    )
    argv[argv.index("--steps-per-sec") + 1] = "250"
    # the command ends once its first progress entry is in the log (under load the
    # wrapper's monitor may take longer than the toy's second)
    waiter = child_until((log.path, "— running, step "))
    script = f"{shlex.join(argv)}; rc=$?; {shlex.quote(PY)} -c {shlex.quote(waiter)}; exit $rc"
    outcome, _, msgs = wrap(["bash", "-c", script], log, tmp_path)
    assert outcome.exit_code == 0, msgs
    assert msgs == ""
    state = log.read()
    job = state.jobs[-1]
    assert job.state == "COMPLETED" and job.exit_code == 0
    assert job.start is not None and job.end is not None and job.node
    texts = [s.text for s in state.status]
    assert texts[0].startswith("running, step ") and "train_loss " in texts[0]
    assert texts[-1].startswith("completed, exit code 0, after ")
    assert "step 200" in texts[-1] and "ckpt step 200" in texts[-1]
    r = state.results
    assert r.final_step == 200
    assert r.start_train_loss is not None and r.end_train_loss is not None
    assert r.start_train_loss > r.end_train_loss  # the toy's loss falls
    assert r.start_val_loss is not None and r.end_val_loss is not None
    assert r.checkpoint == str(tmp_path / "out" / "checkpoints" / "200")
    assert r.config_snapshot is not None and "config_resolved" in r.config_snapshot
    assert Path(r.config_snapshot).is_file()
    assert r.loss_one_liner and r.loss_one_liner.startswith("Train loss fell")
    assert any("MODEL_PASSPORT.json" in n for n in state.next)
    md = log.path.read_text()
    assert "- final step: 200" in md and "## Results" in md
    kinds = [e["kind"] for e in events(log)]
    assert "started" in kinds and "ended" in kinds and "checkpoint" in kinds
    assert len(kinds) < 40  # coalesced, not one event per line


def test_crash_is_failed_with_the_exception(tmp_path: Path) -> None:
    log = new_log(tmp_path)
    outcome, out, _ = wrap(
        toy(tmp_path, "--steps", "100", "--crash-at-step", "60", "--ckpt-every", "50"),
        log,
        tmp_path,
    )
    assert outcome.exit_code == 1
    state = log.read()
    assert state.jobs[-1].state == "FAILED"
    end = state.status[-1].text
    assert end.startswith("failed, exit code 1") and "RuntimeError: toy crash at step 60" in end
    assert any(n.startswith("fix the failure first (RuntimeError") for n in state.next)
    assert any("resume from" in n for n in state.next)  # the step-50 checkpoint
    assert b"Traceback (most recent call last)" in out


def test_oom_and_nan_are_flagged(tmp_path: Path) -> None:
    log = new_log(tmp_path)
    # json: an explicit step on every line (HF's step comes from a throttled tqdm bar).
    wrap(
        toy(
            tmp_path,
            "--format",
            "json",
            "--steps",
            "100",
            "--nan-at-step",
            "40",
            "--oom-at-step",
            "80",
        ),
        log,
        tmp_path,
    )
    state = log.read()
    text = " | ".join(s.text for s in state.status)
    assert "non-finite since step 40" in text
    assert "CUDA out of memory at step 70" in text  # the last step printed before it
    assert state.results.end_train_loss is not None and math.isnan(state.results.end_train_loss)
    assert state.results.loss_one_liner and "diverged" in state.results.loss_one_liner


@pytest.mark.timeout(60)
def test_walltime_signal_recorded_and_forwarded(tmp_path: Path) -> None:
    log = new_log(tmp_path)
    argv = toy(tmp_path, "--steps", "100000", "--log-every", "5", "--ckpt-every", "0")
    argv[argv.index("--steps-per-sec") + 1] = "200"

    # once the toy prints a loss its USR2 handler is installed (and the wrapper's)
    sender = SignalWhen(tmp_path / "job.out", b"'loss'", signal.SIGUSR2)
    outcome, _, _ = wrap(argv, log, tmp_path)
    sender.check()
    assert outcome.exit_code == 124  # the toy's "checkpointed on the signal" exit
    state = log.read()
    assert state.jobs[-1].state == "TIMEOUT"
    warn = [s.text for s in state.status if s.text.startswith("walltime warning (SIGUSR2)")]
    assert len(warn) == 1
    assert "forwarded to the training (pid " in warn[0] and "step " in warn[0]
    assert state.results.checkpoint and Path(state.results.checkpoint).is_dir()
    assert state.next[0].startswith("resume for more steps from")


DISPOSITION = "import signal; print('child', signal.getsignal(signal.SIGUSR1).name)"


@pytest.mark.parametrize("kind", ["bash script", "python"])
def test_own_signal_without_b_spares_the_script_and_reaches_what_it_starts(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--signal=USR1@N`` without ``B:``: Slurm signals every process but the batch shell,
    and under the wrapper the user's script is not that shell. A bash script catches it
    with a no-op (so its children, srun or Lightning, get it as usual: Lightning installs
    no requeue handler over an ignored USR1); another command starts with it ignored."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the shield file is written
    if kind == "bash script":
        script = tmp_path / "train.sh"
        script.write_text(
            f'#!/bin/bash\n{PY} -c "{DISPOSITION}"\nkill -USR1 $$\necho alive; echo "$BASH_ENV"\n'
        )
        script.chmod(0o755)
        argv = [str(script)]
    else:
        argv = [PY, "-c", DISPOSITION]
    outcome, out, _ = wrap(
        argv,
        None,
        tmp_path,
        settings=Settings(walltime_signal="USR1"),
        environ={"HPCWRAP_WALLTIME_TARGETS": "all"},
    )
    assert outcome.exit_code == 0, out
    if kind == "bash script":
        assert b"child SIG_DFL" in out and b"alive" in out
        assert f"{tmp_path}/hpcwrap-bash-env-".encode() not in out  # not passed on
        assert not list(tmp_path.glob("hpcwrap-bash-env-*"))  # removed at the end
    else:
        assert b"child SIG_IGN" in out


CATCHER = (
    "import signal, time\n"
    "got = []\n"
    "signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))\n"
    "print('ready', flush=True)\n"
    "deadline = time.monotonic() + 20\n"
    "while not got and time.monotonic() < deadline:\n"
    "    time.sleep(0.01)\n"
    "print('child got', got, flush=True)\n"
)


@pytest.mark.timeout(60)
def test_own_signal_without_b_is_forwarded_past_the_script_to_what_handles_it(
    tmp_path: Path,
) -> None:
    """Seen on the dev cluster: Slurm's --signal without B: does not reach the command's
    session, so the wrapper forwards it (Lightning's requeue under hpcwrap never fired).
    The script itself is skipped: a no-op trap would end its ``wait`` early."""
    (tmp_path / "catcher.py").write_text(CATCHER)
    script = tmp_path / "train.sh"
    script.write_text(f"#!/bin/bash\n{PY} {tmp_path}/catcher.py &\nwait\necho wait rc $?\n")
    script.chmod(0o755)
    sender = SignalWhen(tmp_path / "job.out", b"ready", signal.SIGUSR1)
    outcome, out, _ = wrap(
        [str(script)],
        None,
        tmp_path,
        settings=Settings(walltime_signal="USR1"),
        environ={"HPCWRAP_WALLTIME_TARGETS": "all"},
    )
    sender.check()
    assert outcome.exit_code == 0, out
    assert b"child got [10]" in out and b"wait rc 0" in out, out


def test_the_block_names_what_the_training_says_it_resumed_from(tmp_path: Path) -> None:
    """Lightning restoring its requeue's checkpoint: the requeued attempt's block says
    ``resumed from`` (relative paths against the job's folder, nanoGPT's out_dir)."""
    log = new_log(tmp_path)
    lines = "Resuming training from out-char\\nRestoring states from the checkpoint path at /x.ckpt"
    wrap([PY, "-c", f"print('{lines}')"], log, tmp_path)
    state = log.read()
    assert state.jobs[-1].resumed_from == str(tmp_path / "out-char")  # the first one said
    said = [s.text for s in state.status if "resumed from" in s.text]
    assert said == [f"the training resumed from `{tmp_path / 'out-char'}` (its own words)"]


LATE_CATCHER = "import time\nprint('importing', flush=True)\ntime.sleep(1.5)\n" + CATCHER


@pytest.mark.timeout(60)
def test_an_early_warning_is_held_until_the_training_handles_it(tmp_path: Path) -> None:
    """Slurm may send the warning at once, while the training still imports (Lightning
    installs its handler seconds in): it is forwarded once a process handles it."""
    log = new_log(tmp_path)
    (tmp_path / "late.py").write_text(LATE_CATCHER)
    sender = SignalWhen(tmp_path / "job.out", b"importing", signal.SIGUSR1)
    outcome, out, _ = wrap(
        [PY, str(tmp_path / "late.py")], log, tmp_path, settings=Settings(walltime_signal="USR1")
    )
    sender.check()
    assert outcome.exit_code == 0 and b"child got [10]" in out, out
    texts = [s.text for s in log.read().status if s.text.startswith("walltime warning")]
    assert len(texts) == 2, texts
    assert "held until one does" in texts[0]
    assert re.match(
        r"walltime warning \(SIGUSR1\) forwarded to the training \(pid \d+\) ", texts[1]
    )
    assert "after it came, once it handled it" in texts[1]


def test_a_warning_during_the_wrappers_start_is_noted_not_dropped() -> None:
    """job.sh ignores the warning until the wrapper handles it; one that came while the
    wrapper was still starting was dropped (CI: the toy then died at its limit, 143)."""
    from hpcwrap import earlysignals

    old = signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # as job.sh leaves it
    try:
        assert earlysignals.catch({"HPCWRAP_BATCH_IGNORED": "USR2"}) == signal.SIGUSR2
        os.kill(os.getpid(), signal.SIGUSR2)
        assert earlysignals.ARRIVED == [signal.SIGUSR2]
        assert earlysignals.catch({}) is None  # nothing named: nothing changed
    finally:
        signal.signal(signal.SIGUSR2, old)
        earlysignals.ARRIVED.clear()


@pytest.mark.timeout(60)
def test_a_warning_noted_at_start_is_recorded_and_reaches_the_training(tmp_path: Path) -> None:
    from hpcwrap import earlysignals

    log = new_log(tmp_path)
    argv = toy(tmp_path, "--steps", "100000", "--log-every", "5", "--ckpt-every", "0")
    argv[argv.index("--steps-per-sec") + 1] = "200"
    earlysignals.ARRIVED.append(signal.SIGUSR2)  # it came before the wrapper's handler
    try:
        outcome, _, _ = wrap(argv, log, tmp_path)
    finally:
        earlysignals.ARRIVED.clear()
    assert outcome.exit_code == 124  # the toy saved on the (held, then forwarded) warning
    warn = [s.text for s in log.read().status if s.text.startswith("walltime warning")]
    assert warn and "held until one does" in warn[0], warn


def test_run_log_failure_never_changes_the_exit_status(tmp_path: Path) -> None:
    log = new_log(tmp_path)
    shutil.rmtree(log.sidecar)
    log.sidecar.write_text("not a folder")  # every run-log write now fails
    outcome, out, msgs = wrap(
        [PY, "-c", "print('step 1 loss 1.0'); raise SystemExit(7)"], log, tmp_path
    )
    assert outcome.exit_code == 7
    assert out == b"step 1 loss 1.0\n"
    assert "could not" in msgs and outcome.log_failures > 0


def test_second_job_block_for_a_requeue(tmp_path: Path) -> None:
    log = new_log(tmp_path)
    wrap([PY, "-c", "print('step 1 loss 1.0')"], log, tmp_path)
    wrap([PY, "-c", "print('step 2 loss 0.5')"], log, tmp_path)
    state = log.read()
    assert len(state.jobs) == 2
    assert all(j.state == "COMPLETED" for j in state.jobs)
    # start losses keep the first job's values, end losses the last one's
    assert state.results.start_train_loss == 1.0 and state.results.end_train_loss == 0.5


def test_hpcwrap_run_cli_creates_a_log(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HPCWRAP_RUN_LOG"}
    proc = subprocess.run(
        [
            PY,
            "-m",
            "hpcwrap",
            "run",
            "--mode",
            "replication",
            "--objective",
            "smoke",
            "--execution-id",
            "vm-1/europe-west4-a",
            "--",
            *toy(tmp_path, "--steps", "50"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    logs = list((tmp_path / "run_logs").glob("*_train.md"))
    assert len(logs) == 1
    md = logs[0].read_text()
    assert "- execution_id: vm-1/europe-west4-a" in md
    assert "- run_type: replication" in md
    assert "completed, exit code 0" in md


def test_relative_wandb_dir_is_recorded_absolute(tmp_path: Path) -> None:
    log = new_log(tmp_path)
    run_dir = tmp_path / "wandb" / "offline-run-20261128_191005-wbl7vi7t"
    run_dir.mkdir(parents=True)
    line = "wandb: Find logs at: wandb/offline-run-20261128_191005-wbl7vi7t/logs"
    wrap([PY, "-c", f"print('step 1 loss 1.0'); print({line!r})"], log, tmp_path)
    state = log.read()
    assert state.jobs[-1].wandb_local == str(run_dir)
    assert state.wandb_local == str(run_dir)


@pytest.mark.timeout(60)
def test_exit_124_on_the_warning_is_timeout_with_slurms_failed_beside_it(tmp_path: Path) -> None:
    """sacct will say FAILED 124:0 for this job: the log says TIMEOUT and why Slurm differs."""
    log = new_log(tmp_path)
    argv = toy(tmp_path, "--steps", "100000", "--log-every", "5", "--ckpt-every", "0")
    argv[argv.index("--steps-per-sec") + 1] = "200"

    out_path = tmp_path / "job.out"
    sender = SignalWhen(out_path, b"'loss'", signal.SIGUSR2)
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        outcome = run_command(
            argv,
            log,
            WrapperOptions(
                stdout_fd=fd,
                stderr_fd=fd,
                err=io.StringIO(),
                cwd=tmp_path,
                # a Slurm job without squeue here: the time left stays unknown
                environ={"SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "n1", "PATH": "/nonexistent"},
            ),
        )
    finally:
        os.close(fd)
    sender.check()
    assert outcome.exit_code == 124
    job = log.read().jobs[-1]
    assert (job.state, job.slurm_state, job.slurm_exit) == ("TIMEOUT", "FAILED", "124:0")
    md = log.path.read_text()
    assert "- state: TIMEOUT\n" in md
    assert "- slurm_state: FAILED 124:0 (the training stopped on the walltime warning" in md


def test_no_slurm_account_line_when_slurm_agrees(tmp_path: Path) -> None:
    log = new_log(tmp_path)
    wrap([PY, "-c", "print('step 1 loss 1.0'); raise SystemExit(3)"], log, tmp_path)
    job = log.read().jobs[-1]
    assert job.state == "FAILED" and job.slurm_state is None
    assert "slurm_state" not in log.path.read_text()


def _toy_with_hook(
    tmp_path: Path, log: RunLog, hook: object, *, monitor_timeout: float, tick: float
) -> Outcome:
    """Five steps of the toy under the wrapper with one tick hook (in this process)."""
    out = os.open(tmp_path / "job.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        return run_command(
            toy(tmp_path, "--steps", "5"),
            log,
            WrapperOptions(
                stdout_fd=out,
                stderr_fd=out,
                err=io.StringIO(),
                cwd=tmp_path,
                environ={},
                hooks=[hook],  # type: ignore[list-item]
                monitor_timeout=monitor_timeout,
                tick=tick,
            ),
        )
    finally:
        os.close(out)


class _LateHook:
    """A tick hook stuck in its tick when the command ends (as a telemetry sample can be
    under load), that writes a Status entry once the end has been recorded."""

    def __init__(self) -> None:
        self.attached = threading.Event()
        self.release = threading.Event()
        self.wrote: list[str] = []
        self.perform = None

    def attach(self, pid, perform, checkpoint_dir) -> None:  # the wrapper's optional method
        self.perform = perform
        self.attached.set()

    def tick(self, now: float) -> None:
        if self.perform is None or self.wrote:
            return
        assert self.release.wait(60), "the test never released the hook"
        from hpcwrap.job.status import Write

        self.perform(Write("status", {}, text="late progress entry from the monitor"))
        self.wrote.append("done")

    def status_fields(self) -> list[str]:
        return []


def test_a_monitor_write_after_the_end_is_refused(tmp_path: Path) -> None:
    """The end entry is the job's last: a monitor thread that outlives the wait for it
    (a slow lock, a stuck sample) cannot append a progress entry after it."""
    log = new_log(tmp_path)
    hook = _LateHook()
    outcome = _toy_with_hook(tmp_path, log, hook, monitor_timeout=0.5, tick=0.05)
    assert outcome.exit_code == 0 and hook.attached.is_set()
    ended = log.read().status[-1].text
    assert ended.startswith("completed, exit code 0"), ended
    hook.release.set()  # the stuck monitor now writes its entry: too late
    wait_for(lambda: hook.wrote, 30, "the hook's late write (else the test proves nothing)")
    texts = [s.text for s in log.read().status]
    assert texts[-1] == ended and "late progress entry from the monitor" not in texts


class _AfterExitHook:
    """A tick hook that writes a progress entry just after the command has exited, while
    the wrapper still lingers (a reader busy with the last lines under load)."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.perform = None
        self.wrote = False

    def attach(self, pid, perform, checkpoint_dir) -> None:  # the wrapper's optional method
        self.pid, self.perform = pid, perform

    def tick(self, now: float) -> None:
        if self.pid is None or self.perform is None or self.wrote:
            return
        if os.path.exists(f"/proc/{self.pid}"):
            return  # still running (or not reaped yet)
        time.sleep(0.2)  # well inside the linger: makes the wrong order likely without the fix
        from hpcwrap.job.status import Write

        self.perform(Write("status", {}, text="progress entry after the exit"))
        self.wrote = True

    def status_fields(self) -> list[str]:
        return []


def test_no_progress_entry_is_stamped_after_the_exit(tmp_path: Path) -> None:
    """Status entries are kept in time order and the end entry is stamped with the exit:
    a progress entry written during the linger would sort after the end (the CI failure
    of test_sequential_tasks_one_fails_block_failed). It is not written at all."""
    log = new_log(tmp_path)
    hook = _AfterExitHook()
    outcome = _toy_with_hook(tmp_path, log, hook, monitor_timeout=5.0, tick=0.02)
    assert outcome.exit_code == 0 and hook.wrote, "the hook never wrote (proves nothing)"
    texts = [s.text for s in log.read().status]
    assert texts[-1].startswith("completed, exit code 0"), texts
    assert "progress entry after the exit" not in texts


@pytest.mark.parametrize("unbuffered", [True, False])
def test_a_killed_python_training_keeps_what_it_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unbuffered: bool
) -> None:
    """nanoGPT's train.py prints with plain print(): under the wrapper its stdout is a pipe,
    so block-buffered, and a SIGKILL at the limit lost every line. PYTHONUNBUFFERED=1 is
    set for the command unless the user set it (or `unbuffered = false`)."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    code = (
        "import os, signal\n"
        "for i in range(1, 4):\n"
        "    print(f'iter {i * 10}: loss {3.0 - i / 10:.4f}, time 10.0ms, mfu 1.00%')\n"
        "print('saving checkpoint to out-shakespeare-char')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    outcome, out, _ = wrap([PY, "-c", code], None, tmp_path, Settings(unbuffered=unbuffered))
    if unbuffered:
        assert b"iter 30: loss 2.7000" in out and outcome.snapshot.step == 30
    else:  # the buffered lines died with the process: what the setting prevents
        assert b"iter 30" not in out and outcome.snapshot.step is None
    assert os.environ.get("PYTHONUNBUFFERED") is None  # the wrapper's own stays as it was
