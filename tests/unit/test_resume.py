"""Walltime-resume chaining without a cluster: the guards, the lead cap, the checkpoint rule,
what the training is told, and the lifecycle transitions a chain makes (incl. a log kept
by hand in the spec's format)."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hpcwrap.errors import ResumeError
from hpcwrap.reading import checkpoints
from hpcwrap.runlog import RunLog, RunState, create_run, endings, lifecycle
from hpcwrap.runlog.facts import ChainFacts
from hpcwrap.runlog.lifecycle import Chained, Resumed, apply
from hpcwrap.runlog.model import JobBlock, Results
from hpcwrap.scheduler.base import JobInfo
from hpcwrap.scheduler.sbatch_options import slurm_time_seconds
from hpcwrap.submit import resume

T0 = datetime(2026, 3, 11, 14, 0, tzinfo=timezone.utc)
FIXTURES = Path(__file__).parent / "runlog_fixtures"


def ended(job_id: str, state: str, resumed_from: str | None = None) -> JobBlock:
    return JobBlock(
        execution_id=job_id,
        start=T0,
        end=T0 + timedelta(minutes=1),
        state=state,
        resumed_from=resumed_from,
    )


def chained(*jobs: JobBlock, **chain: object) -> RunState:
    return RunState(jobs=list(jobs), chain=ChainFacts(pending="13", **chain))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "checkpoint", "by_hand", "go", "reason"),
    [
        (chained(ended("12", "TIMEOUT")), "/ck/200", False, True, "continues"),
        # hpcwrap's reading decides, not Slurm's: exit 124 on the warning is TIMEOUT here
        (chained(ended("12", "PREEMPTED")), "/ck/200", False, True, "continues"),
        (chained(ended("12", "FAILED")), "/ck/200", False, False, "ended FAILED"),
        (chained(ended("12", "OUT_OF_MEMORY")), "/ck/200", False, False, "OUT_OF_MEMORY"),
        (chained(ended("12", "CANCELLED")), "/ck/200", False, False, "ended CANCELLED"),
        (chained(ended("12", "TIMEOUT")), None, False, False, "no checkpoint"),
        (chained(ended("12", "TIMEOUT"), max_resumes=0), "/ck/2", False, False, "--max-resumes 0"),
        (
            chained(ended("11", "TIMEOUT"), ended("12", "TIMEOUT", "/ck/200"), resumes=1),
            "/ck/200",
            False,
            False,
            "no progress",
        ),
        (chained(ended("12", "TIMEOUT"), stopped="by hand"), "/ck/2", False, False, "stopped"),
        # `hpcwrap resume`: a person chose to go on after a crash
        (chained(ended("12", "FAILED"), max_resumes=0), "/ck/200", True, True, "continues"),
    ],
)
def test_the_guards(
    state: RunState, checkpoint: str | None, by_hand: bool, go: bool, reason: str
) -> None:
    decision = resume.decide(state, "13", checkpoint, by_hand=by_hand)
    assert decision.go is go and reason in decision.reason


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1", 60),
        ("2:30", 150),
        ("1:00:00", 3600),
        ("1-0", 86400),
        ("1-2:03", 93780),
        ("0-0:1:5", 65),
        ("UNLIMITED", None),
        (None, None),
    ],
)
def test_slurm_time(text: str | None, seconds: float | None) -> None:
    assert slurm_time_seconds(text) == seconds


def test_the_warning_lead_is_capped_at_half_the_limit() -> None:
    assert resume.capped_lead(300, 60) == (30, resume.capped_lead(300, 60)[1])
    assert "more than half the 60 s limit" in (resume.capped_lead(300, 60)[1] or "")
    assert resume.capped_lead(300, 3600) == (300, None)
    assert resume.capped_lead(300, None) == (300, None)


def test_what_the_training_is_told() -> None:
    chain = ChainFacts(resume_arg="--resume-from {checkpoint} --strict", wandb_run_id="ab12cd34")
    argv = resume.resume_argv(["python", "train.py", "--lr", "3"], chain, "/ck/a b/200")
    assert argv == ["python", "train.py", "--lr", "3", "--resume-from", "/ck/a b/200", "--strict"]
    env = resume.chain_env({"PATH": "/bin"}, chain, "/ck/200")
    assert env["HPCWRAP_RESUME_FROM"] == env["LOAD_CKPT_PATH"] == "/ck/200"
    assert env["WANDB_RUN_ID"] == "ab12cd34"
    assert resume.chain_env({"WANDB_RUN_ID": "mine"}, chain, None)["WANDB_RUN_ID"] == "mine"


def test_a_resume_arg_without_the_placeholder_is_added_as_it_is() -> None:
    """nanoGPT resumes from its own out_dir (--init_from=resume): no path to fill in."""
    chain = resume.new_chain(max_resumes=2, resume_arg="--init_from=resume", checkpoint_glob=None)
    assert resume.resume_argv(["train.py"], chain, "/ck/1") == ["train.py", "--init_from=resume"]
    with pytest.raises(ResumeError, match="\\{ckpt\\} is no placeholder"):
        resume.new_chain(max_resumes=2, resume_arg="--resume {ckpt}", checkpoint_glob=None)
    with pytest.raises(ResumeError, match="empty"):
        resume.new_chain(max_resumes=2, resume_arg=" ", checkpoint_glob=None)


def test_newest_complete_checkpoint(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    for name in ("100", "200", "300.tmp", "400"):
        (ck / name).mkdir(parents=True)
    (ck / "100" / "model.bin").write_bytes(b"x")
    (ck / "200" / "model.bin").write_bytes(b"x")
    (ck / "300.tmp" / "model.bin").write_bytes(b"x")  # half-written: never chosen
    # 400 is empty (being written): never chosen
    assert checkpoints.newest_match("ck/*", tmp_path) == ck / "200"
    state = RunState(results=Results(checkpoint=str(ck / "100")), chain=ChainFacts())
    # the newest complete one named like what the output said (the record may lag the disk)
    assert resume.find_checkpoint(state, tmp_path).path == str(ck / "200")
    state.results.checkpoint = str(ck / "gone")
    state.chain = ChainFacts(checkpoint_glob="ck/*")
    assert resume.find_checkpoint(state, tmp_path).path == str(ck / "200")


def test_without_drops_an_option_in_both_spellings() -> None:
    args = ["-t", "1", "--dependency", "afterok:3", "--array=0-2", "--dependency=x", "-p", "d"]
    assert resume._without(args, ("dependency", "array")) == ["-t", "1", "-p", "d"]


def test_submitting_from_inside_a_job_drops_the_jobs_own_slurm_variables() -> None:
    env = resume._clean_env(
        {"SLURM_JOB_ID": "12", "SLURM_CONF": "/c", "SBATCH_TIMELIMIT": "1", "HOME": "/h"}
    )
    assert env == {"SLURM_CONF": "/c", "HOME": "/h"}


# ---------------------------------------------------------------- lifecycle of a chain


def test_resumed_opens_a_block_and_counts_the_resume() -> None:
    state = chained(ended("12", "TIMEOUT"), max_resumes=3)
    state = apply(state, Resumed(T0, "/ck/200", execution_id="13", text="resumed: job 13"))
    assert state.jobs[-1].execution_id == "13" and state.jobs[-1].resumed_from == "/ck/200"
    assert state.chain is not None and state.chain.resumes == 1 and state.chain.pending is None
    state = apply(state, Chained(T0, pending="14", text="resume: successor job 14"))
    assert state.chain is not None and state.chain.pending == "14"
    state = apply(state, Chained(T0, stopped="job 13 ended COMPLETED", text="stopped"))
    assert state.chain is not None and state.chain.stopped == "job 13 ended COMPLETED"
    assert [s.text for s in state.status] == [
        "resumed: job 13",
        "resume: successor job 14",
        "stopped",
    ]


def test_a_persons_loss_one_liner_survives_a_resume() -> None:
    state = RunState(results=Results(loss_one_liner="Mine: it learns, slowly."))
    facts = lifecycle.Ended(
        T0,
        "TIMEOUT",
        lifecycle.Source.WRAPPER,
        "12",
        results=lifecycle.ResultFacts(one_liner="Train loss fell.", has_progress=True),
    )
    assert apply(state, facts).results.loss_one_liner == "Mine: it learns, slowly."
    drafted = apply(RunState(), facts)
    again = apply(drafted, facts)
    assert again.results.loss_one_liner == "Train loss fell."  # hpcwrap's own draft updates


def test_a_log_kept_by_hand_is_resumed_with_every_line_kept(tmp_path: Path) -> None:
    src = FIXTURES / "2026-03-11_train_front_cam.md"
    folder = tmp_path / "run_logs" / "arx5"
    folder.mkdir(parents=True)
    path = folder / src.name
    shutil.copy(src, path)
    before = path.read_text().splitlines()
    log = RunLog(path)
    log.record(Resumed(T0, "/shared/ckpt/front_cam/12347/step_300000", execution_id="12348"))
    after = path.read_text().splitlines()
    kept = [line for line in before if line in after]
    assert kept == before  # not one hand-written line lost or changed
    assert after.count("## Job (resumed)") == before.count("## Job (resumed)") + 1
    assert "- resumed from: `/shared/ckpt/front_cam/12347/step_300000`" in after


def test_resumed_adopts_the_block_the_prolog_opened() -> None:
    state = chained(ended("12", "TIMEOUT"), max_resumes=3)
    prolog = lifecycle.Started(T0, execution_id="13", in_slurm=True, by_prolog=True)
    state = apply(state, prolog)
    state = apply(state, Resumed(T0, "/ck/200", execution_id="13"))
    state = apply(state, lifecycle.Started(T0, execution_id="13", in_slurm=True))
    assert [j.execution_id for j in state.jobs] == ["12", "13"]
    assert state.jobs[1].resumed_from == "/ck/200" and state.jobs[1].state == "RUNNING"


def test_a_checkpoint_named_without_a_step_has_no_siblings(tmp_path: Path) -> None:
    """nanoGPT saves `ckpt.pt` into the folder it printed (`saving checkpoint to
    out-pysrc-char`): the newest complete entry beside that folder is anything at all,
    once the run_logs folder; the printed folder itself is the checkpoint."""
    out = tmp_path / "out-pysrc-char"
    out.mkdir()
    (out / "ckpt.pt").write_bytes(b"w")
    (tmp_path / "run_logs").mkdir()
    (tmp_path / "run_logs" / "x.md").write_text("newer than the checkpoint")
    state = RunState(results=Results(checkpoint=str(out)), chain=ChainFacts())
    assert resume.find_checkpoint(state, tmp_path).path == str(out)
    # Numbered alike: the newest step beside it, whatever the prefix and suffix.
    for name in ("checkpoint-500", "checkpoint-900", "step_40.pt", "step_80.pt", "other-9000"):
        path = tmp_path / "hf" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"w")
    state.results.checkpoint = str(tmp_path / "hf" / "checkpoint-500")
    assert resume.find_checkpoint(state, tmp_path).path == str(tmp_path / "hf" / "checkpoint-900")
    state.results.checkpoint = str(tmp_path / "hf" / "step_40.pt")
    assert resume.find_checkpoint(state, tmp_path).path == str(tmp_path / "hf" / "step_80.pt")


class _Accounting:
    """Slurm's accounting as the successor sees it (sacct's rows), at the scheduler seam:
    the real sacct is exercised by the cluster tests."""

    def __init__(self, *answers: list[JobInfo]) -> None:
        self.answers = list(answers)
        self.asked = 0

    def history(self, job_ids: list[str], timeout: float) -> list[JobInfo]:
        self.asked += 1
        return self.answers.pop(0) if self.answers else []


def _guessed(tmp_path: Path) -> RunLog:
    log = create_run(tmp_path / "run_logs", RunState(task="t", run_type="replication",
                                                        objective="x"))  # fmt: skip
    log.record(Chained(T0, pending="13"), event="chain")
    log.record(lifecycle.Started(T0, "12", nodes="n1", in_slurm=True))
    log.record(lifecycle.Ended(T0 + timedelta(minutes=1), "CANCELLED", lifecycle.Source.WRAPPER,
                               "12", exit_code=143, start=T0,
                               strength=endings.Strength.GUESS))  # fmt: skip
    return log


def test_a_guessed_end_leaves_the_successor_waiting(tmp_path: Path) -> None:
    """A TERM whose time left was unknown may be the time limit: the chain is not stopped
    and the successor not cancelled on that guess."""
    log = _guessed(tmp_path)
    resume.JobChain().end(log, "12", "CANCELLED", unsure="a SIGTERM came and the time left "
                          "was unknown")  # fmt: skip
    state = log.read()
    assert state.chain is not None and state.chain.pending == "13" and not state.chain.stopped
    assert "successor job 13 left waiting" in state.status[-1].text


def test_the_successor_asks_slurm_about_a_guessed_end(tmp_path: Path) -> None:
    log = _guessed(tmp_path)
    records: list[object] = []

    def record(facts: object, **kw: object) -> None:
        records.append(facts)
        log.record(facts, **kw)  # type: ignore[arg-type]

    sacct = _Accounting([], [JobInfo("12", "TIMEOUT", node="n1", exit="0:0")])
    state = resume._check_guessed_end(log, log.read(), "13", record, sacct, pause=0)  # type: ignore[arg-type]
    assert sacct.asked == 2  # accounting had no row yet, then the end
    assert state.jobs[0].state == "TIMEOUT"
    assert resume.decide(state, "13", "/ck/200").go
    # A stronger end already recorded (the epilog's): Slurm is not asked.
    again = _Accounting()
    resume._check_guessed_end(log, state, "13", record, again, pause=0)  # type: ignore[arg-type]
    assert again.asked == 0


def test_one_checkpoint_saved_over_and_over_is_progress(tmp_path: Path) -> None:
    """nanoGPT overwrites out_dir/ckpt.pt at every save: a job that resumed from out_dir
    and wrote ckpt.pt again made progress (the chain stopped at 2390 of 4000 before)."""
    out = tmp_path / "out-shakespeare-char"
    out.mkdir()
    (out / "ckpt.pt").write_bytes(b"w" * 8)
    start = datetime.now(timezone.utc) - timedelta(minutes=2)
    old = start.timestamp() - 60
    os.utime(out / "ckpt.pt", (old, old))
    os.utime(out, (old, old))
    job = JobBlock(execution_id="12", start=start, end=start + timedelta(minutes=1),
                   state="TIMEOUT", resumed_from=str(out))  # fmt: skip
    state = RunState(jobs=[ended("11", "TIMEOUT"), job],
                     chain=ChainFacts(pending="13", resumes=1))  # fmt: skip
    stuck = resume.decide(state, "13", str(out))
    assert not stuck.go and "no progress" in stuck.reason  # not written since job 12 began
    # The predecessor's own last save, in the second job 12's start is kept to: no progress
    same = start.timestamp() + 0.5
    os.utime(out / "ckpt.pt", (same, same))
    assert not resume.decide(state, "13", str(out)).go
    (out / "ckpt.pt").write_bytes(b"w" * 9)  # saved again (the folder's own time stays)
    os.utime(out, (old, old))
    assert resume.decide(state, "13", str(out)).go


def test_a_checkpoint_at_the_trainings_total_needs_no_successor(tmp_path: Path) -> None:
    """A job killed at its limit after the HF Trainer saved its last checkpoint: resuming
    would train a step past the total (transformers 5.24 saves checkpoint-6001), so the
    successor does not train and the chain is done, not stopped short."""
    ck = tmp_path / "out_hf" / "checkpoint-6000"
    ck.mkdir(parents=True)
    (ck / "trainer_state.json").write_text('{"global_step": 6000, "max_steps": 6000}')
    state = chained(ended("12", "TIMEOUT"))
    decision = resume.decide(state, "13", str(ck))
    assert not decision.go and decision.done
    assert "reached its total" in decision.reason and "6000 of 6000" in decision.reason
    assert resume.decide(state, "13", str(ck), by_hand=True).go  # a person chose to go on
    (ck / "trainer_state.json").write_text('{"global_step": 5900, "max_steps": 6000}')
    assert resume.decide(state, "13", str(ck)).go
    (ck / "trainer_state.json").write_text('{"global_step": 6000, "max_steps": -1}')
    assert resume.decide(state, "13", str(ck)).go  # an epoch-bounded run: no step total


def test_cancel_stops_a_job_that_requeued_itself(tmp_path: Path) -> None:
    """Lightning's auto-requeue (or scontrol requeue) leaves the job pending to run again
    under the same id: `hpcwrap cancel` cancels it instead of "nothing was running"."""
    log = create_run(tmp_path / "run_logs", RunState(task="t", run_type="replication",
                                                     objective="x"))  # fmt: skip
    log.record(lifecycle.Started(T0, "12", nodes="n1", in_slurm=True))
    log.record(lifecycle.Requeued(T0 + timedelta(minutes=1), "12"))
    assert log.read().jobs[-1].state == "REQUEUED"
    slurm = _Cancels()
    assert resume.cancel_run(log, slurm) == ["12"]  # type: ignore[arg-type]
    assert slurm.cancelled == ["12"]
    assert "cancelled by hand (hpcwrap cancel): job 12" in log.read().status[-1].text


class _Cancels:
    """The scheduler seam's cancel, recorded (the real scancel runs in the cluster tests):
    it fails ``fail`` times with ``error``, then works."""

    def __init__(self, fail: int = 0, error: str = "Socket timed out on send/recv") -> None:
        self.fail, self.error = fail, error
        self.cancelled: list[str] = []

    def cancel(self, job_id: str) -> None:
        from hpcwrap.errors import SchedulerError

        self.cancelled.append(job_id)
        if len(self.cancelled) <= self.fail:
            raise SchedulerError(f"scancel {job_id}: {self.error}")


def test_cancelling_a_successor_is_asked_again_when_the_controller_is_busy() -> None:
    busy = _Cancels(fail=2)
    assert resume.cancel_successor(busy, "13", pause=0) is None  # type: ignore[arg-type]
    assert busy.cancelled == ["13", "13", "13"]
    gone = _Cancels(fail=5, error="Kill job error on job id 13: Invalid job id specified")
    problem = resume.cancel_successor(gone, "13", pause=0)  # type: ignore[arg-type]
    assert problem and "Invalid job id" in problem and gone.cancelled == ["13"]


def _chained_log(tmp_path: Path) -> RunLog:
    log = create_run(tmp_path / "run_logs", RunState(task="t", run_type="replication",
                                                        objective="x"))  # fmt: skip
    log.record(lifecycle.Started(T0, "12", nodes="n1", in_slurm=True))
    log.record(Chained(T0, pending="13"), event="chain")
    return log


def test_every_submitted_successor_is_remembered(tmp_path: Path) -> None:
    log = _chained_log(tmp_path)
    resume.stop_chain(log, "job 12 ended FAILED; successor job 13 NOT cancelled (timeout)")
    state = log.read()
    assert state.chain is not None and state.chain.pending is None
    assert state.chain.successors == ["13"]  # kept through state.json


def test_a_successor_the_chain_gave_up_on_does_not_train(tmp_path: Path) -> None:
    """Its cancel failed (a busy controller) and it started anyway after the crash: before,
    it found no successor waiting and trained as a plain job."""
    log = _chained_log(tmp_path)
    log.record(lifecycle.Ended(T0 + timedelta(minutes=1), "FAILED", lifecycle.Source.WRAPPER,
                               "12", exit_code=1, start=T0))  # fmt: skip
    resume.stop_chain(log, "job 12 ended FAILED; successor job 13 NOT cancelled (timeout)")
    start = resume.JobChain().begin(log, "13", ["train"], {}, log.record, print)
    assert start is not None and start.stop
    assert "job 13 did not start the training: the chain was stopped" in log.read().status[-1].text


def test_a_successor_whose_submission_went_unrecorded_does_not_train(tmp_path: Path) -> None:
    log = create_run(tmp_path / "run_logs", RunState(task="t", run_type="replication",
                     objective="x", chain=ChainFacts(mode="manual")))  # fmt: skip
    log.record(lifecycle.Started(T0, "12", nodes="n1", in_slurm=True))
    plain = resume.JobChain().begin(log, "13", ["train"], {}, log.record, print)
    marked = {resume.ENV_SUCCESSOR_OF: "12"}
    assert plain is not None and not plain.stop and plain.successor is None
    start = resume.JobChain().begin(log, "13", ["train"], marked, log.record, print)
    assert start is not None and start.stop
    state = log.read()
    assert state.chain is not None and "was not recorded" in (state.chain.stopped or "")
    # the marker never reaches the training
    assert resume.ENV_SUCCESSOR_OF not in resume.chain_env(marked, ChainFacts(), "/ck/1")


def test_a_requeued_successor_that_trained_is_not_turned_away(tmp_path: Path) -> None:
    log = _chained_log(tmp_path)
    log.record(Resumed(T0, resumed_from="/ck/100", execution_id="13"))
    log.record(Chained(T0, pending="14"), event="chain")  # 13 submitted its own successor
    start = resume.JobChain().begin(log, "13", ["train"], {resume.ENV_SUCCESSOR_OF: "12"},
                                    log.record, print)  # fmt: skip
    assert start is not None and not start.stop


def test_a_crash_cancels_the_successor_it_submitted_even_when_the_log_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hpcwrap.scheduler

    slurm = _Cancels()
    monkeypatch.setattr(hpcwrap.scheduler, "get_scheduler", lambda name: slurm)
    log = _chained_log(tmp_path)

    def unreadable() -> RunState:
        raise OSError("Stale file handle")

    monkeypatch.setattr(log, "read", unreadable)
    resume.JobChain().end(log, "12", "FAILED", submitted="13")
    assert slurm.cancelled == ["13"]
    # At the limit it is the chain's next job: left alone.
    resume.JobChain().end(log, "12", "TIMEOUT", submitted="13")
    assert slurm.cancelled == ["13"]


def test_a_successor_missing_from_the_log_is_recorded_at_the_limit_and_cancelled_on_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hpcwrap.scheduler

    slurm = _Cancels()
    monkeypatch.setattr(hpcwrap.scheduler, "get_scheduler", lambda name: slurm)
    log = create_run(tmp_path / "run_logs", RunState(task="t", run_type="replication",
                                                        objective="x"))  # fmt: skip
    log.record(lifecycle.Started(T0, "12", nodes="n1", in_slurm=True))
    log.record(Chained(T0), event="chain")  # record_successor's write was lost
    resume.JobChain().end(log, "12", "TIMEOUT", submitted="13")
    chain = log.read().chain
    assert chain is not None and chain.pending == "13" and not chain.stopped
    assert slurm.cancelled == []
    resume.JobChain().end(log, "12", "FAILED", submitted="14")
    chain = log.read().chain
    assert slurm.cancelled == ["14", "13"] and chain is not None
    assert chain.stopped and "successor job 13 cancelled" in chain.stopped


def test_the_chain_stands_aside_for_a_job_that_requeued_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning's own requeue in a chained run: the attempt ends REQUEUED and runs again
    under its id; the successor keeps waiting for its last attempt, nothing is stopped."""
    import hpcwrap.scheduler

    slurm = _Cancels()
    monkeypatch.setattr(hpcwrap.scheduler, "get_scheduler", lambda name: slurm)
    log = _chained_log(tmp_path)
    resume.JobChain().end(log, "12", "REQUEUED", submitted="13")
    chain = log.read().chain
    assert chain is not None and chain.pending == "13" and not chain.stopped
    assert slurm.cancelled == []
    # the requeued attempt starts: no second successor, it trains
    start = resume.JobChain().begin(log, "12", ["train"], {}, log.record, print)
    assert start is not None and not start.stop and start.successor is None
