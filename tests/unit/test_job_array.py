"""Array tasks share one Job block: the wrapper against a real run log, Slurm's env faked.

What is faked: only the environment a task gets from Slurm (SLURM_ARRAY_JOB_ID,
SLURM_ARRAY_TASK_ID, SLURM_JOB_ID, ...), given in WrapperOptions.environ or to a
real ``hpcwrap run`` process. The run log, its lock and the toy trainer are real.
The same with a real cluster: tests/cluster/test_wrapper_cluster.py.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from hpcwrap.job.jobenv import job_env, task_prefix
from hpcwrap.job.wrapper import Outcome, WrapperOptions, run_command
from hpcwrap.runlog import JobBlock, RunLog, RunState, create_run
from hpcwrap.runlog import arrays as arraytasks
from hpcwrap.runlog.dates import now

REPO = Path(__file__).resolve().parents[2]
TRAINER = REPO / "examples" / "toy_train.py"
PY = sys.executable
ARRAY = "500"


def array_log(tmp_path: Path) -> RunLog:
    """A run log as `hpcwrap sbatch --array=0-2` leaves it: one block naming the array."""
    state = RunState(task="train", run_type="experiment", objective="three seeds")
    state.jobs.append(JobBlock(execution_id=f"{ARRAY}_[0-2]", submitted=now(), state="SUBMITTED"))
    return create_run(tmp_path / "run_logs", state)


def task_env(task: int, node: str = "n1", restarts: int = 0) -> dict[str, str]:
    return {
        "SLURM_JOB_ID": str(int(ARRAY) + task),  # Slurm gives each task its own job id
        "SLURM_ARRAY_JOB_ID": ARRAY,
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_ARRAY_TASK_MIN": "0",
        "SLURM_ARRAY_TASK_MAX": "2",
        "SLURM_ARRAY_TASK_STEP": "1",
        "SLURM_ARRAY_TASK_COUNT": "3",
        "SLURM_JOB_NODELIST": node,
        "SLURM_RESTART_COUNT": str(restarts),
    }


def toy(tmp_path: Path, task: int, *args: str) -> list[str]:
    return [PY, "-u", str(TRAINER), "--out-dir", str(tmp_path / f"out{task}"),
            "--steps-per-sec", "0", "--format", "json", *args]  # fmt: skip


def wrap(argv: list[str], log: RunLog, tmp_path: Path, environ: dict[str, str]) -> Outcome:
    fd = os.open(tmp_path / "job.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        return run_command(
            argv,
            log,
            WrapperOptions(
                stdout_fd=fd, stderr_fd=fd, err=io.StringIO(), cwd=tmp_path, environ=environ
            ),
        )
    finally:
        os.close(fd)


def texts(log: RunLog) -> list[str]:
    return [s.text for s in log.read().status]


def assert_one_block(log: RunLog) -> JobBlock:
    md = log.path.read_text()
    assert md.count("## Job\n") == 1 and "## Job (resumed)" not in md, md
    jobs = log.read().jobs
    assert len(jobs) == 1
    assert jobs[0].execution_id == f"{ARRAY}_[0-2]"
    return jobs[0]


def test_three_concurrent_hpcwrap_run_processes_fill_one_block(tmp_path: Path) -> None:
    log = array_log(tmp_path)
    nodes = ["n1", "n2", "n1"]
    procs = []
    for task in range(3):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
        env.update(task_env(task, nodes[task]), HPCWRAP_RUN_LOG=str(log.path))
        argv = toy(tmp_path, task, "--steps", "60", "--log-every", "10")
        argv[argv.index("--steps-per-sec") + 1] = "60"  # ~1 s each, so they overlap
        procs.append(
            subprocess.Popen(
                [PY, "-m", "hpcwrap", "run", "--", *argv],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    job = assert_one_block(log)
    assert job.state == "COMPLETED" and job.exit_code == 0
    assert job.node == "n1,n2"
    state = log.read()
    tasks = arraytasks.tasks_of(state)
    assert sorted(tasks) == ["0", "1", "2"]
    starts = [t.start for t in tasks.values()]
    ends = [t.end for t in tasks.values()]
    assert job.start == min(s for s in starts if s) and job.end == max(e for e in ends if e)
    lines = texts(log)
    for task in range(3):
        assert f"task {task}: started on {nodes[task]}" in lines
        done = [t for t in lines if t.startswith(f"task {task}: completed, exit code 0")]
        assert len(done) == 1 and "step 60" in done[0], lines
    summary = [t for t in lines if t.startswith(f"array {ARRAY}_[0-2]: ")]
    assert len(summary) == 1 and summary[0].startswith(
        f"array {ARRAY}_[0-2]: all 3 tasks ended: 3 completed; Results from task "
    ), lines
    source = state.array_results_task
    assert summary[0].endswith(f"task {source}")
    assert state.results.final_step == 60
    assert state.results.loss_one_liner and state.results.loss_one_liner.startswith(
        f"task {source}: "
    )


def test_sequential_tasks_one_fails_block_failed(tmp_path: Path) -> None:
    log = array_log(tmp_path)
    ok = wrap(toy(tmp_path, 0, "--steps", "40"), log, tmp_path, task_env(0))
    assert ok.exit_code == 0
    job = assert_one_block(log)
    # every task seen so far has ended: final for now (task 1 and 2 have not started)
    assert job.state == "COMPLETED" and job.exit_code == 0 and job.end is not None
    # ... but the array's summary waits for all 3 tasks (SLURM_ARRAY_TASK_COUNT)
    assert texts(log)[-1].startswith("task 0: completed, exit code 0")

    bad = wrap(
        toy(tmp_path, 1, "--steps", "40", "--crash-at-step", "20"), log, tmp_path, task_env(1, "n2")
    )
    assert bad.exit_code == 1
    job = assert_one_block(log)
    assert job.state == "FAILED" and job.exit_code == 1

    wrap(toy(tmp_path, 2, "--steps", "30"), log, tmp_path, task_env(2))
    job = assert_one_block(log)
    assert job.state == "FAILED" and job.exit_code == 1, "one failed task fails the array"
    assert job.node == "n1,n2"
    state = log.read()
    assert job.end == arraytasks.tasks_of(state)["2"].end
    lines = texts(log)
    failed = [t for t in lines if t.startswith("task 1: failed, exit code 1")]
    assert len(failed) == 1 and "RuntimeError: toy crash at step 20" in failed[0]
    assert lines[-1] == (
        f"array {ARRAY}_[0-2]: all 3 tasks ended: 2 completed, 1 failed (task 1); "
        "Results from task 2"
    )
    # Results all come from one task (the last to end), never mixed
    assert state.results.final_step == 30
    assert state.array_results_task == "2"
    assert any(n.startswith("task 1: fix the failure first (RuntimeError") for n in state.next)
    assert any(n.startswith("task 2: ") for n in state.next)
    assert sum(t.startswith(f"array {ARRAY}_[0-2]: ") for t in lines) == 1


def test_requeued_task_updates_its_own_entry(tmp_path: Path) -> None:
    log = array_log(tmp_path)
    wrap(toy(tmp_path, 0, "--steps", "20"), log, tmp_path, task_env(0))
    wrap(toy(tmp_path, 1, "--steps", "40", "--crash-at-step", "20"), log, tmp_path, task_env(1))
    first_start = assert_one_block(log).start
    assert log.read().jobs[0].state == "FAILED"
    # Slurm requeued task 1 onto n2: same array id and task id, restart count 1
    again = wrap(toy(tmp_path, 1, "--steps", "40"), log, tmp_path, task_env(1, "n2", 1))
    assert again.exit_code == 0
    job = assert_one_block(log)
    assert job.state == "COMPLETED" and job.exit_code == 0
    assert job.start == first_start and job.restart_count == 1
    tasks = arraytasks.tasks_of(log.read())
    assert sorted(tasks) == ["0", "1"] and tasks["1"].restart_count == 1
    assert tasks["1"].node == "n2" and tasks["1"].state == "COMPLETED"
    assert "task 1: started on n2 (restart 1)" in texts(log)


def test_task_start_before_the_submission_named_the_block(tmp_path: Path) -> None:
    """A fast task may start before `hpcwrap sbatch` records the array id."""
    log = create_run(tmp_path / "run_logs", RunState(task="train", objective="race"))
    wrap(toy(tmp_path, 0, "--steps", "10"), log, tmp_path, task_env(0))
    wrap(toy(tmp_path, 2, "--steps", "10"), log, tmp_path, task_env(2))
    job = assert_one_block(log)  # named from SLURM_ARRAY_TASK_MIN/MAX
    assert job.state == "COMPLETED"
    assert sorted(arraytasks.tasks_of(log.read())) == ["0", "2"]


def test_block_is_running_until_every_started_task_ended() -> None:
    state = RunState(jobs=[JobBlock(execution_id=f"{ARRAY}_[0-2]")])
    t0 = now()
    env = [job_env(task_env(i, f"n{i + 1}")) for i in range(3)]
    arraytasks.record_task_start(state, env[0], t0 + timedelta(seconds=5))
    arraytasks.record_task_start(state, env[1], t0)
    job = state.jobs[0]
    assert job.state == "RUNNING" and job.start == t0 and job.node == "n1,n2"
    _, final = arraytasks.record_task_end(
        state, env[1], t0, t0 + timedelta(seconds=9), "TIMEOUT", 124
    )
    assert not final and job.state == "RUNNING" and job.end is None and job.exit_code is None
    _, final = arraytasks.record_task_end(
        state, env[0], t0, t0 + timedelta(seconds=7), "COMPLETED", 0
    )
    # final for now; not the array's last end: task 2 has not started (3 tasks)
    assert not final and job.state == "TIMEOUT" and job.exit_code == 124
    assert job.end == t0 + timedelta(seconds=9)
    arraytasks.record_task_start(state, env[2], t0 + timedelta(seconds=20))
    assert job.state == "RUNNING" and job.end is None and job.start == t0
    _, final = arraytasks.record_task_end(
        state, env[2], t0, t0 + timedelta(seconds=30), "FAILED", 1
    )
    assert final and job.state == "FAILED" and job.exit_code == 124  # the largest code
    assert job.end == t0 + timedelta(seconds=30) and job.node == "n1,n2,n3"
    assert len(state.jobs) == 1


def test_worst_state_order() -> None:
    assert arraytasks.worst_state(["COMPLETED", "COMPLETED"]) == "COMPLETED"
    assert arraytasks.worst_state(["TIMEOUT", "FAILED", "COMPLETED"]) == "FAILED"
    assert arraytasks.worst_state(["CANCELLED", "TIMEOUT"]) == "TIMEOUT"
    assert arraytasks.worst_state(["OUT_OF_MEMORY", "CANCELLED"]) == "OUT_OF_MEMORY"
    assert arraytasks.worst_state(["COMPLETED", "NODE_FAIL"]) == "NODE_FAIL"


@pytest.mark.parametrize(
    ("extra", "tasks", "block"),
    [
        (
            {
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_MAX": "15",
                "SLURM_ARRAY_TASK_STEP": "4",
            },
            "0-15:4",
            "7_[0-15:4]",
        ),
        ({"SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "3"}, "3", "7_[3]"),
        ({}, None, "7_[3]"),
    ],
)
def test_job_env_array_facts(extra: dict[str, str], tasks: str | None, block: str) -> None:
    env = job_env(
        {"SLURM_JOB_ID": "10", "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "3", **extra}
    )
    assert env.is_array_task and env.execution_id == "7_3"
    assert env.array_tasks == tasks and env.array_block_id == block


def test_job_env_without_array() -> None:
    env = job_env({"SLURM_JOB_ID": "10"})
    assert not env.is_array_task and env.array_block_id is None
    assert task_prefix(env) == ""


@pytest.mark.parametrize(
    ("given", "kept"),
    [("sabc123", "sabc123"), ("", None), ("a b", None), ("x" * 65, None), ("`x`", None)],
)
def test_job_env_sluid_is_a_plain_bounded_word(given: str, kept: str | None) -> None:
    assert job_env({"SLURM_JOB_ID": "10", "SLURM_JOB_SLUID": given}).sluid == kept
    assert job_env({"SLURM_JOB_ID": "10"}).sluid is None
