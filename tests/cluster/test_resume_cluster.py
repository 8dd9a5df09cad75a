"""Walltime-resume chains on the real dev cluster: `-t 1` jobs of the toy trainer, each
stopped by Slurm's warning (or killed hard at its limit), continued by a successor job in
the same run log; the guards that stop a chain; `hpcwrap resume` and `hpcwrap cancel`."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import pwd
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.test_hooks_cluster import script, started
from tests.cluster.test_wrapper_cluster import (
    BASE,
    events_of,
    project,
    state_of,
    submit,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster

TRAINERS = Path(__file__).parent / "trainers"


def ids(cluster: Cluster) -> tuple[int, int]:
    pw = pwd.getpwnam(cluster.user)
    return pw.pw_uid, pw.pw_gid


# 20 steps/s, a checkpoint every 100 steps: a -t 1 job trains a few hundred steps
# before the warning (asked for 30 s before the limit: the lead is capped at half).
TRAIN = [
    "examples/train.sh", "--steps-per-sec", "20", "--ckpt-every", "100", "--format", "json",
    "--out-dir", "runs/chain",
]  # fmt: skip
CHAIN = ["--resume", "auto", "--resume-arg", "--resume {checkpoint}", "-t", "1"]


def chain_done(log: Path) -> bool:
    """The chain has said its last word: its last job is final and the chain is stopped.

    The job's end and the chain's stop are two writes (the epilog or the wrapper records
    the end, then the wrapper stops the chain): waiting for the end alone read the
    chain between the two (a CI failure: ``stopped`` still None)."""
    try:
        state = state_of(log)
    except (OSError, ValueError):
        return False
    chain = state.get("chain") or {}
    last = state["jobs"][-1] if state["jobs"] else {}
    final = last.get("state") not in (None, "SUBMITTED", "PENDING", "RUNNING")
    return bool(final and not chain.get("pending") and chain.get("stopped"))


# Where hpcwrap's reading and Slurm's word differ by design (docs/run-log-format.md, the
# endings): a training that caught the TERM at its limit and exited 0 (Lightning does) is
# COMPLETED to Slurm and TIMEOUT here; one that finished its last step while Slurm's
# limit check already ran (seen: 76 s into a -t 1 job) is TIMEOUT to Slurm and COMPLETED
# here. Anything else must agree.
_BY_DESIGN = {("TIMEOUT", "COMPLETED"), ("COMPLETED", "TIMEOUT")}


def assert_slurm_agrees(cluster: Cluster, jobs: list[dict[str, Any]]) -> None:
    for job in jobs:
        slurm = cluster.wait_job(job["execution_id"])
        assert slurm == job["state"] or (job["state"], slurm) in _BY_DESIGN, (slurm, job)


def blocks(log: Path) -> list[dict[str, Any]]:
    return list(state_of(log)["jobs"])


def checkpoint_steps(log: Path) -> list[str]:
    return [Path(j["resumed_from"]).name for j in blocks(log) if j.get("resumed_from")]


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.versions
def test_three_job_chain_completes_in_one_run_log(cluster: Cluster) -> None:
    cwd = project(cluster, "chain-three")
    # Slurm checks limits about every 30 s, so the warning comes 25 to 60 s into a -t 1
    # job: 500 to 1,250 steps at 20 steps/s (one job did 1,100: 1,500 steps then took
    # two jobs, a flake-hunt failure). 2,600 steps need three jobs or more, whatever
    # the timer does, and at most six (max-resumes leaves room).
    total = 2600
    _, log = submit(
        cluster, cwd, *BASE, *CHAIN, "--max-resumes", "8", *TRAIN, "--steps", str(total)
    )
    wait_for(lambda: chain_done(log), 900, "the chain to finish")
    state = state_of(log)
    jobs = state["jobs"]
    assert len(jobs) >= 3, state["status"]
    assert jobs[-1]["state"] == "COMPLETED", state["status"]
    assert all(j["state"] == "TIMEOUT" for j in jobs[:-1]), [j["state"] for j in jobs]
    assert state["results"]["final_step"] == total
    # each resumed block starts from the checkpoint the block before it saved last
    ends = [t for t in (s[1] for s in state["status"]) if t.startswith(("timeout,", "completed,"))]
    assert len(ends) == len(jobs), ends
    for (before, after), end in zip(itertools.pairwise(jobs), ends, strict=False):
        m = re.search(r"ckpt step (\d+)", end)
        assert m and after["resumed_from"], (end, after)
        assert Path(after["resumed_from"]).name == m.group(1), (end, after)
        assert after["execution_id"] != before["execution_id"]
    md = log.read_text()
    assert md.count("## Job (resumed)") == len(jobs) - 1
    # the run continued, not restarted: the toy names the checkpoint it resumed from
    outs = sorted(cwd.glob("slurm-*.out"))
    assert any("Resuming" in p.read_text() or "resum" in p.read_text() for p in outs[1:])
    texts = [s[1] for s in state["status"]]
    assert sum(t.startswith("resumed: job ") for t in texts) == len(jobs) - 1
    assert state["chain"]["stopped"].startswith(f"job {jobs[-1]['execution_id']} ended COMPLETED")
    one_liner = state["results"]["loss_one_liner"]
    assert one_liner.startswith(f"Over the {len(jobs)} jobs of this run")


@pytest.mark.slow
@pytest.mark.long
def test_chain_goes_on_when_the_wrapper_could_not_write_at_the_limit(cluster: Cluster) -> None:
    """No warning at all, and the wrapper cannot write when Slurm kills the job at its limit
    (the run's lock is held until the wrapper is dead): the successor, submitted when the
    job started, still continues from the last periodic checkpoint (the epilog's TIMEOUT)."""
    cwd = project(cluster, "chain-hard")
    long = script(
        cluster, cwd, "long.sh",
        "#!/bin/bash\nexec python3 -u examples/toy_train.py --config examples/config.json "
        '--steps-per-sec 20 --ckpt-every 100 --format json --out-dir runs/hard "$@"\n',
    )  # fmt: skip
    _, log = submit(
        cluster, cwd, *BASE, "--resume", "auto", "--max-resumes", "1", "--no-walltime-signal",
        "-t", "1", "--resume-arg", "--resume {checkpoint}", long, "--steps", "100000",
    )  # fmt: skip
    wrapper = int(started(log)["pid"])
    wait_for(lambda: (state_of(log).get("chain") or {}).get("pending"), 60, "the successor")
    # a first checkpoint is on record (a hard kill at the limit comes long after one)
    wait_for(lambda: any(e["kind"] == "checkpoint" for e in events_of(log)), 60, "a checkpoint")
    lock = log.parent / ".hpcwrap" / log.stem / "lock"
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        wait_for(lambda: not Path(f"/proc/{wrapper}").exists(), 240, "the wrapper's death")

    # (the node prolog opens job 2's block first; the wrapper then marks it resumed)
    def seen() -> dict[str, Any]:
        state = state_of(log)
        pending = (state.get("chain") or {}).get("pending")
        queue = (
            cluster.run(["squeue", "-h", "-o", "%i %T %r", "-j", str(pending)]) if pending else None
        )
        return {
            "jobs": [
                (b.get("execution_id"), b.get("state"), b.get("resumed_from")) for b in blocks(log)
            ],
            "chain": state.get("chain"),
            "status": [s[1] for s in state.get("status", [])][-4:],
            "squeue": queue.stdout.strip() if queue is not None else None,
        }

    wait_for(
        lambda: len(blocks(log)) >= 2 and blocks(log)[1].get("resumed_from"), 240, "job 2", seen
    )
    first, second = blocks(log)[:2]
    assert first["state"] == "TIMEOUT" and first["state_source"] == "epilog", first
    assert second["resumed_from"] and Path(second["resumed_from"]).name.isdigit()
    # the newest checkpoint on disk, though the record stopped at an earlier one
    assert int(Path(second["resumed_from"]).name) > 100
    cluster.run(["scancel", second["execution_id"]])


@pytest.mark.slow
def test_a_term_whose_time_left_is_unknown_leaves_the_successor_waiting(
    cluster: Cluster,
) -> None:
    """squeue gives the wrapper no answer at the start (a busy controller: a CI failure),
    so at the limit's TERM it cannot tell a time limit from a scancel: it must not cancel
    the successor on that guess. The successor checks how the job really ended (the
    epilog's TIMEOUT, else sacct's) and resumes."""
    cwd = project(cluster, "chain-unknown-left")
    real = cluster.run_as_user(["bash", "-c", "command -v squeue"], cwd=cwd).stdout.strip()
    (cwd / "bin").mkdir()
    script(
        cluster, cwd, "bin/squeue",
        f'#!/bin/bash\n[[ "$*" == *%L* ]] && exit 1\nexec {real} "$@"\n',
    )  # fmt: skip
    long = script(
        cluster, cwd, "long.sh",
        "#!/bin/bash\nexec python3 -u examples/toy_train.py --config examples/config.json "
        '--steps-per-sec 20 --ckpt-every 100 --format json --out-dir runs/unknown "$@"\n',
    )  # fmt: skip
    path = f"{cwd / 'bin'}:{cluster.user_env['PATH']}"
    res = cluster.run_as_user(
        [cluster.hpcwrap, "sbatch", *BASE, *CHAIN, "--max-resumes", "1",
         "--no-walltime-signal", long, "--steps", "100000"],
        cwd=cwd, env={"PATH": path}, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    log = Path(re.search(r"^run log: (.+)$", res.stdout, re.M).group(1))  # type: ignore[union-attr]

    def seen() -> object:
        state = state_of(log)
        return [(b.get("execution_id"), b.get("state"), b.get("resumed_from")) for b in
                state["jobs"]], [s[1] for s in state["status"]][-4:]  # fmt: skip

    wait_for(lambda: len(blocks(log)) >= 2 and blocks(log)[1].get("resumed_from"), 300,
             "job 2 resuming", seen)  # fmt: skip
    texts = [s[1] for s in state_of(log)["status"]]
    assert any("(time left unknown)" in t for t in texts), "\n".join(texts)
    assert any("left waiting" in t for t in texts), texts
    assert blocks(log)[0]["state"] == "TIMEOUT"
    cluster.run(["scancel", blocks(log)[1]["execution_id"]])


def test_a_crash_does_not_resume_and_the_successor_is_cancelled(cluster: Cluster) -> None:
    cwd = project(cluster, "chain-crash")
    _, log = submit(
        cluster, cwd, *BASE, *CHAIN, *TRAIN, "--steps", "100000", "--crash-at-step", "30"
    )
    wait_for(lambda: chain_done(log), 240, "the chain to stop")
    state = state_of(log)
    assert len(state["jobs"]) == 1 and state["jobs"][0]["state"] == "FAILED"
    stopped = state["chain"]["stopped"]
    assert stopped.startswith(f"job {state['jobs'][0]['execution_id']} ended FAILED")
    assert "cancelled" in stopped
    successor = json.dumps(state["status"])
    assert "resume chain stopped" in successor


def test_a_successor_whose_cancel_failed_starts_but_does_not_train(cluster: Cluster) -> None:
    """A crash, and scancel fails (a controller too busy to answer, faked by a failing
    scancel on the job's PATH; the only fake here): the successor starts once the crashed
    job is over. Before, it found no successor waiting and trained as a plain job."""
    cwd = project(cluster, "chain-nocancel")
    fake = cwd / "fakebin"
    fake.mkdir()
    busy = "echo 'scancel: error: Socket timed out on send/recv operation' >&2"
    script(cluster, fake, "scancel", f"#!/bin/sh\n{busy}\nexit 1\n")
    env = {"PATH": f"{fake}:{cluster.user_env['PATH']}"}
    res = cluster.run_as_user(
        [cluster.hpcwrap, "sbatch", *BASE, *CHAIN, *TRAIN, "--steps", "100000",
         "--crash-at-step", "30"],
        cwd=cwd, env=env, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    log = Path(re.search(r"^run log: (.+)$", res.stdout, re.M).group(1))  # type: ignore[union-attr]
    wait_for(lambda: len(blocks(log)) == 2 and chain_done(log), 240, "the successor to stop")
    state = state_of(log)
    first, second = state["jobs"]
    assert first["state"] == "FAILED" and "NOT cancelled" in state["chain"]["stopped"]
    assert second["execution_id"] == state["chain"]["successors"][0]
    assert not second.get("resumed_from") and second["state"] != "FAILED"
    texts = [s[1] for s in state["status"]]
    assert any(
        t.startswith(f"resume: job {second['execution_id']} did not start the training: "
                     "the chain was stopped")
        for t in texts
    ), texts  # fmt: skip
    # the toy never ran in the successor: its output has no step
    out = cwd / f"slurm-{second['execution_id']}.out"
    wait_for(out.is_file, 30, "the successor's output")
    assert '"step"' not in out.read_text()


# A fake of the HF Trainer's last moments (the framework itself is slow to start): its
# final checkpoint saved, then killed at the limit before it could exit.
_SAVED_LAST = """#!/bin/bash
exec python3 -c '
import json, os, signal, time
signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # the walltime warning: past saving
os.makedirs("out_hf/checkpoint-50")
with open("out_hf/checkpoint-50/trainer_state.json", "w") as f:
    json.dump({"global_step": 50, "max_steps": 50}, f)
print("Saving model checkpoint to out_hf/checkpoint-50", flush=True)
time.sleep(600)
'
"""


@pytest.mark.slow
def test_fake_hf_killed_after_its_last_save_needs_no_successor(cluster: Cluster) -> None:
    """A CI run's HF chain ended at step 6001 of 6000: its job was killed at the limit after
    saving checkpoint-6000, and the successor resumed from it (transformers trains one step
    more). The successor now sees the checkpoint is the training's last and does not train."""
    cwd = project(cluster, "chain-last-save")
    name = script(cluster, cwd, "train.sh", _SAVED_LAST)
    _, log = submit(cluster, cwd, *BASE, *CHAIN, "--checkpoint-glob", "out_hf/checkpoint-*", name)
    wait_for(lambda: chain_done(log), 300, "the chain to end", lambda: state_of(log)["jobs"])
    state = state_of(log)
    first, second = state["jobs"]
    assert first["state"] == "TIMEOUT" and second["state"] == "COMPLETED", state["jobs"]
    assert not second.get("resumed_from")
    chain = state["chain"]
    assert chain["done"], chain
    assert "the training reached its total before the limit" in chain["stopped"]
    assert "step 50 of 50" in chain["stopped"]
    out = cwd / f"slurm-{second['execution_id']}.out"
    wait_for(out.is_file, 30, "the successor's output")
    assert "Saving model checkpoint" not in out.read_text()  # the training never ran again
    res = cluster.run_as_user([cluster.hpcwrap, "status", "--all"], cwd=cwd, timeout=60)
    assert "stopped" not in res.stdout, res.stdout  # the run is done, not stopped short


def test_max_resumes_zero_stops_after_the_first_job(cluster: Cluster) -> None:
    cwd = project(cluster, "chain-max")
    _, log = submit(cluster, cwd, *BASE, *CHAIN, "--max-resumes", "0", *TRAIN, "--steps", "100000")
    wait_for(lambda: chain_done(log), 300, "the first job to end")
    state = state_of(log)
    assert len(state["jobs"]) == 1 and state["jobs"][0]["state"] == "TIMEOUT"
    assert state["chain"]["stopped"] == "--max-resumes 0 reached"


def test_user_scancel_stops_the_chain_and_resume_cancel_by_hand(cluster: Cluster) -> None:
    cwd = project(cluster, "chain-cancel")
    # -t 5: the warning (capped at 150 s, Slurm may send it 60 s early) comes well after
    # the scancel below, so the job is still the first one when it is cancelled.
    resume_auto = ["--resume", "auto", "--resume-arg", "--resume {checkpoint}", "-t", "5"]
    job_id, log = submit(cluster, cwd, *BASE, *resume_auto, *TRAIN, "--steps", "100000")
    started(log)
    wait_for(lambda: (state_of(log).get("chain") or {}).get("pending"), 60, "the successor")
    ckpt = cwd / "runs" / "chain" / "checkpoints" / "100"
    wait_for(lambda: (ckpt / "trainer_state.json").is_file(), 60, "a first checkpoint")
    assert cluster.run_as_user(["scancel", job_id], cwd=cwd).returncode == 0
    wait_for(lambda: chain_done(log), 120, "the chain to stop")
    state = state_of(log)
    assert state["jobs"][-1]["state"] == "CANCELLED" and len(state["jobs"]) == 1
    assert "ended CANCELLED" in state["chain"]["stopped"]
    # by hand: resume from the newest checkpoint, then cancel it
    res = cluster.run_as_user([cluster.hpcwrap, "resume", str(log)], cwd=cwd)
    assert res.returncode == 0, res.stderr
    new_id = res.stdout.split()[3]
    # The prolog records the start before the wrapper records what it resumed from: wait
    # for the wrapper's word (resumed, or the chain stopped), not for the start alone.
    wait_for(
        lambda: (
            len(blocks(log)) == 2 and bool(blocks(log)[1].get("resumed_from") or chain_done(log))
        ),
        120,
        "the resume",
    )
    second = blocks(log)[1]
    assert second["execution_id"] == new_id and second["resumed_from"], state_of(log)
    res = cluster.run_as_user([cluster.hpcwrap, "cancel", str(log)], cwd=cwd)
    assert res.returncode == 0 and new_id in res.stdout, res.stdout + res.stderr
    cluster.wait_job(new_id, timeout=120)
    wait_for(lambda: blocks(log)[1]["state"] == "CANCELLED", 60, "the cancel recorded")
    assert "cancelled by hand" in state_of(log)["chain"]["stopped"]


@pytest.mark.slow
@pytest.mark.long
def test_a_nanogpt_shaped_training_chains_to_its_total(cluster: Cluster) -> None:
    """A trainer written as nanoGPT's train.py is (plain print() without flush, one
    ckpt.pt saved over in a relative out_dir, `--init_from=resume`, no signal handler),
    chained with `-t 1` over three jobs to its exact total, with nothing done by hand:
    no `python -u`, no --checkpoint-glob, no path in --resume-arg."""
    cwd = project(cluster, "chain-nanogpt")
    shutil.copy(TRAINERS / "nanogpt_like.py", cwd / "train.py")
    os.chown(cwd / "train.py", *ids(cluster))
    line = 'exec python3 train.py --out_dir=out-shakespeare-char "$@"'
    name = script(cluster, cwd, "nanogpt.sh", f"#!/bin/bash\n{line}\n")
    # 10 iterations a second, killed at the limit 60 to 90 s in: at most about 900 a job
    # (a run of 1,500 once took two jobs), so 2,500 need three or more
    total = 2500
    _, log = submit(
        cluster, cwd, *BASE, "--resume", "auto", "--max-resumes", "6", "-t", "1",
        "--resume-arg", "--init_from=resume", name, f"--max_iters={total}",
    )  # fmt: skip
    wait_for(lambda: chain_done(log), 900, "the chain to end", lambda: checkpoint_steps(log))
    state = state_of(log)
    jobs = state["jobs"]
    out = str(cwd / "out-shakespeare-char")
    assert len(jobs) >= 3, [(j["execution_id"], j["state"]) for j in jobs]
    assert [j["state"] for j in jobs] == ["TIMEOUT"] * (len(jobs) - 1) + ["COMPLETED"]
    assert_slurm_agrees(cluster, jobs)  # every job's end is Slurm's, or differs by design
    assert all(j["resumed_from"] == out for j in jobs[1:]), jobs
    assert log.read_text().count("## Job (resumed)") == len(jobs) - 1
    assert state["results"]["final_step"] == total
    assert state["results"]["checkpoint"] == out
    assert state["chain"]["stopped"].startswith(f"job {jobs[-1]['execution_id']} ended COMPLETED")
    # the train-loss series is nanoGPT's eval estimate, first and last
    assert state["results"]["start_train_loss_text"] == "5.1000"
    last = (cwd / f"slurm-{jobs[-1]['execution_id']}.out").read_text()
    assert f"step {total}: train loss {state['results']['end_train_loss_text']}," in last
    # For the note: each job's steps, its wall time, and the steps redone after a resume.
    iters = [
        [int(m) for m in re.findall(r"(?m)^iter (\d+):", (cwd / f"slurm-{j['execution_id']}.out")
                                    .read_text())]
        for j in jobs
    ]  # fmt: skip
    for i, job in enumerate(jobs):
        redone = iters[i - 1][-1] - iters[i][0] if i else 0
        span = f"iters {iters[i][0]}-{iters[i][-1]}, {job.get('start')} to {job.get('end')}"
        print(f"chain nanogpt: job {job['execution_id']} {job['state']}, {span}; redone {redone}")
