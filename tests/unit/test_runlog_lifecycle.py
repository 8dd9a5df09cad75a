"""The lifecycle's transitions and evidence rules, as pure functions (no processes, no files),
plus one round trip through a real run log to see ``RunLog.record`` use them."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from hpcwrap.errors import TransitionError
from hpcwrap.runlog import RunLog, RunState, create_run, lifecycle, render_text
from hpcwrap.runlog.facts import CodeFacts, ConfigFacts
from hpcwrap.runlog.lifecycle import (
    Chained,
    Described,
    Ended,
    ProgressObserved,
    Reconciled,
    Requeued,
    ResultFacts,
    Resumed,
    SignalReceived,
    Source,
    Started,
    Strength,
    SubmitFailed,
    Submitted,
    apply,
    from_slurm,
)

T0 = datetime(2026, 3, 11, 14, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def submitted_state() -> RunState:
    state = RunState(name="2026-03-11_train", run_type="replication", objective="o")
    return apply(state, Submitted(at(0), job_id="12", execution_id="12"))


def running_state() -> RunState:
    return apply(
        submitted_state(),
        Started(at(1), execution_id="12", nodes="n1", in_slurm=True, restart_count=0),
    )


def end_entries(state: RunState) -> list[str]:
    return [s.text for s in state.status]


def wrapper_end(
    state: str = "TIMEOUT",
    minutes: float = 30,
    code: int = 124,
    strength: Strength | None = None,
) -> Ended:
    return Ended(
        at(minutes),
        state,
        Source.WRAPPER,
        execution_id="12",
        exit_code=code,
        start=at(1),
        text=f"{state.lower()} (wrapper)",
        strength=strength,
    )


# ---------------------------------------------------------------- purity


def test_apply_leaves_its_input_untouched() -> None:
    before = running_state()
    snapshot = copy.deepcopy(before)
    after = apply(before, wrapper_end())
    assert before == snapshot
    assert after.jobs[0].state == "TIMEOUT" and before.jobs[0].state == "RUNNING"


def test_not_a_transition_is_refused() -> None:
    with pytest.raises(TransitionError):
        apply(RunState(), object())  # type: ignore[arg-type]


# ---------------------------------------------------------------- submit and start


def test_submitted_fills_the_block_and_keeps_what_the_wrapper_wrote_first() -> None:
    # A fast cluster: the job's wrapper wrote RUNNING before sbatch's answer came back.
    state = apply(RunState(), Started(at(0), execution_id="12", nodes="n1", in_slurm=True))
    state = apply(
        state,
        Submitted(at(1), job_id="12", execution_id="12", cluster="c", output_path="/o/12.out"),
    )
    (job,) = state.jobs
    assert (job.state, job.node, job.start, job.submitted) == ("RUNNING", "n1", at(0), at(1))
    assert job.cluster == "c"
    assert state.submit is not None
    assert (state.submit.job_id, state.submit.output_path) == ("12", "/o/12.out")


def test_submitted_names_an_array_by_its_range() -> None:
    state = apply(RunState(), Submitted(at(0), job_id="7", execution_id="7_[0-3]"))
    assert state.jobs[0].execution_id == "7_[0-3]" and state.jobs[0].state == "SUBMITTED"


def test_submit_failed_replaces_the_pending_block_and_records_the_tag() -> None:
    state = apply(
        submitted_state(),
        SubmitFailed(
            at(2),
            "sbatch: error: invalid partition",
            code=CodeFacts(commit="abc123", tag_removed="t"),
            code_line="abc123",
        ),
    )
    (job,) = state.jobs
    assert job.state == "SUBMIT_FAILED" and job.submit_error == "sbatch: error: invalid partition"
    assert state.code == "abc123" and state.code_state == CodeFacts(
        commit="abc123", tag_removed="t"
    )


def test_described_merges_facts_and_the_code_line() -> None:
    before = RunState(code_state=CodeFacts(commit="a"), config_facts=ConfigFacts(source="c"))
    state = apply(before, Described(code=CodeFacts(commit="a", diff="d"), code_line="L"))
    assert state.code_state == CodeFacts(commit="a", diff="d") and state.code == "L"
    assert state.config_facts == ConfigFacts(source="c")  # not given: kept


def test_a_restart_of_the_same_job_marks_the_previous_attempt_requeued() -> None:
    # Inside the first attempt a requeue looks like a TERM: the wrapper said CANCELLED.
    state = apply(running_state(), wrapper_end("CANCELLED", 5, 143))
    state = apply(
        state, Started(at(6), execution_id="12", nodes="n2", in_slurm=True, restart_count=1)
    )
    first, second = state.jobs
    assert first.state == "REQUEUED" and first.exit_code == 143
    assert second.state == "RUNNING" and second.restart_count == 1 and second.node == "n2"


def test_slurms_sluid_reaches_the_job_block_and_reads_back() -> None:
    # SLURM_JOB_SLUID (Slurm 26.05 on): the Job block names it, and it reads back.
    from hpcwrap.runlog.adopt import parse_state
    from hpcwrap.runlog.markdown import parse_document

    state = apply(
        RunState(task="train", run_type="replication", objective="o"),
        Started(at(1), execution_id="12", nodes="n1", in_slurm=True, sluid="sabc123"),
    )
    assert state.jobs[0].sluid == "sabc123"
    md = render_text(state)
    assert "\n- sluid: sabc123\n" in md
    assert parse_state(parse_document(md), "2026-03-11_train").jobs[0].sluid == "sabc123"
    # no SLUID (before 26.05): no line
    plain = apply(
        RunState(task="train", run_type="replication", objective="o"),
        Started(at(1), execution_id="12", nodes="n1", in_slurm=True),
    )
    assert "sluid" not in render_text(plain)


def test_a_restart_does_not_relabel_a_completed_attempt() -> None:
    state = apply(running_state(), wrapper_end("COMPLETED", 5, 0))
    state = apply(state, Started(at(6), execution_id="12", in_slurm=True, restart_count=1))
    assert [j.state for j in state.jobs] == ["COMPLETED", "RUNNING"]


# ---------------------------------------------------------------- ranking and duplicates


def test_the_same_end_reported_twice_gives_one_entry() -> None:
    state = apply(running_state(), wrapper_end())
    again = apply(state, wrapper_end())
    epilog = apply(again, Ended(at(31), "TIMEOUT", Source.EPILOG, execution_id="12", text="epilog"))
    assert end_entries(epilog) == ["timeout (wrapper)"]
    assert epilog.jobs[0].end == at(30)


def test_a_weaker_verdict_never_replaces_a_final_state() -> None:
    # the training saved on the walltime warning and exited 124: hpcwrap's own word
    state = apply(running_state(), wrapper_end("TIMEOUT", 10, 124, Strength.OWN))
    state = apply(
        state,
        Ended(
            at(11), "FAILED", Source.EPILOG, "12", exit_code=124, text="x", strength=Strength.EXIT
        ),
    )
    assert state.jobs[0].state == "TIMEOUT" and state.jobs[0].exit_code == 124
    assert end_entries(state) == ["timeout (wrapper)"]


def test_the_epilogs_reading_replaces_the_wrappers_guess_from_a_term() -> None:
    # a node failure reaches the wrapper as a TERM with time left: a guess of a cancel
    state = apply(running_state(), wrapper_end("CANCELLED", 10, 143, Strength.GUESS))
    node_fail = Ended(
        at(10.5),
        "NODE_FAIL",
        Source.EPILOG,
        "12",
        start=at(1),
        text="node failure: node n1 failed",
        slurm_state="NODE_FAIL",
        slurm_exit="0:0",
        strength=Strength.READING,
    )
    state = apply(state, node_fail)
    job = state.jobs[0]
    assert (job.state, job.state_source, job.state_basis) == ("NODE_FAIL", "epilog", "reading")
    assert job.end == at(10) and job.exit_code == 143  # the wrapper saw the exit: it stands
    assert (job.slurm_state, job.slurm_exit) == ("NODE_FAIL", "0:0")
    assert end_entries(state) == ["cancelled (wrapper)", "node failure: node n1 failed"]
    # Slurm's own word agrees: no further entry; a later guess changes nothing
    state = apply(state, Reconciled(at(12), "12", "NODE_FAIL", "0:0", end=at(10)))
    state = apply(state, wrapper_end("CANCELLED", 10, 143, Strength.GUESS))
    assert state.jobs[0].state == "NODE_FAIL" and len(end_entries(state)) == 2


def test_slurms_word_replaces_the_epilogs_reading_but_not_hpcwraps_own() -> None:
    state = apply(
        running_state(),
        Ended(at(10), "COMPLETED", Source.EPILOG, "12", exit_code=0, strength=Strength.EXIT),
    )
    state = apply(state, Reconciled(at(11), "12", "PREEMPTED", "0:0", end=at(10)))
    assert state.jobs[0].state == "PREEMPTED" and "replaces the earlier reading" in (
        state.status[-1].text
    )
    own = apply(running_state(), wrapper_end("TIMEOUT", 30, 124, Strength.OWN))
    own = apply(own, Reconciled(at(31), "12", "FAILED", "124:0", end=at(30)))
    assert own.jobs[0].state == "TIMEOUT"


def test_a_stronger_wrapper_verdict_corrects_the_epilog() -> None:
    state = apply(
        running_state(),
        Ended(at(10), "CANCELLED", Source.EPILOG, execution_id="12", exit_code=15, text="e"),
    )
    state = apply(state, wrapper_end("TIMEOUT", 10, 124, Strength.OWN))
    job = state.jobs[0]
    assert job.state == "TIMEOUT" and job.state_source == "wrapper" and job.exit_code == 124


def test_unknown_state_word_is_refused() -> None:
    with pytest.raises(TransitionError, match="unknown state 'DONE'"):
        apply(running_state(), Ended(at(2), "DONE", Source.WRAPPER, execution_id="12"))


# ---------------------------------------------------------------- the scheduler's account


def test_reconciled_closes_a_stale_running_log() -> None:
    # The wrapper was SIGKILLed: the log still says RUNNING, sacct says FAILED.
    state = apply(
        running_state(),
        Reconciled(at(40), "12", "FAILED", "9:0", start=at(1), end=at(20), nodes="n1"),
    )
    job = state.jobs[0]
    assert (job.state, job.state_source, job.end, job.exit_code) == (
        "FAILED",
        "scheduler",
        at(20),
        9,
    )
    assert (job.slurm_state, job.slurm_exit) == ("FAILED", "9:0")
    assert len(state.status) == 1 and "from the scheduler: FAILED" in state.status[0].text
    twice = apply(state, Reconciled(at(41), "12", "FAILED", "9:0", end=at(20)))
    assert len(twice.status) == 1


def test_cancelled_while_pending_is_closed_by_the_scheduler() -> None:
    state = apply(submitted_state(), Reconciled(at(3), "12", "CANCELLED by 1000", "0:0"))
    job = state.jobs[0]
    assert job.state == "CANCELLED" and job.slurm_state == "CANCELLED" and job.end == at(3)


def test_reconciled_keeps_the_wrappers_reading_and_says_why_slurm_differs() -> None:
    state = apply(running_state(), wrapper_end("TIMEOUT", 30, 124, Strength.OWN))
    state = apply(state, Reconciled(at(31), "12", "FAILED", "124:0", end=at(30)))
    job = state.jobs[0]
    assert job.state == "TIMEOUT" and (job.slurm_state, job.slurm_exit) == ("FAILED", "124:0")
    assert job.state_note == "the training stopped on the walltime warning and exited 124"
    text = render_text(state)
    assert "- state: TIMEOUT\n" in text
    assert (
        "- slurm_state: FAILED 124:0 (the training stopped on the walltime warning and exited 124)"
        in text
    )
    assert len(state.status) == 1  # the scheduler's confirmation adds no entry


def test_reconciled_pending_and_running_are_not_ends() -> None:
    state = apply(submitted_state(), Reconciled(at(1), "12", "PENDING"))
    assert state.jobs[0].state == "PENDING" and state.jobs[0].end is None
    state = apply(state, Reconciled(at(2), "12", "RUNNING", start=at(2), nodes="n1"))
    assert state.jobs[0].state == "RUNNING" and state.jobs[0].node == "n1"
    # the wrapper's start comes after the poll's: still the same attempt, one block
    state = apply(state, Started(at(2.5), execution_id="12", nodes="n1", in_slurm=True))
    done = apply(state, Ended(at(9), "COMPLETED", Source.WRAPPER, "12", 0, start=at(2.5)))
    assert len(done.jobs) == 1
    late = apply(done, Reconciled(at(10), "12", "RUNNING"))  # a poll that saw it a moment ago
    assert late.jobs[0].state == "COMPLETED" and late.jobs[0].end == at(9)


def test_from_slurm() -> None:
    assert from_slurm("CANCELLED by 1000") == "CANCELLED"
    assert from_slurm("OUT_OF_MEMORY") == "OUT_OF_MEMORY"
    assert from_slurm("COMPLETING") == "RUNNING"
    with pytest.raises(TransitionError):
        from_slurm("SLEEPING")


def test_requeued_replaces_cancelled_whoever_reports_it() -> None:
    state = apply(running_state(), wrapper_end("CANCELLED", 5, 143))
    state = apply(state, Requeued(at(6), "12", text="requeued by Slurm"))
    assert state.jobs[0].state == "REQUEUED"
    assert end_entries(state) == ["cancelled (wrapper)", "requeued by Slurm"]


# ---------------------------------------------------------------- resume, signals, progress


def test_resumed_appends_a_block() -> None:
    state = apply(running_state(), wrapper_end())
    state = apply(state, Resumed(at(31), "/ck/239"))
    state = apply(state, Submitted(at(31), job_id="13", execution_id="13"))
    first, second = state.jobs
    assert first.execution_id == "12" and first.state == "TIMEOUT"
    assert second.execution_id == "13" and second.resumed_from == "/ck/239"
    assert "## Job (resumed)" in render_text(state)


def test_signal_and_progress_add_status_entries() -> None:
    state = apply(running_state(), ProgressObserved(at(2), "running, step 10"))
    state = apply(state, SignalReceived(at(3), "walltime", "SIGUSR2", "walltime warning"))
    state = apply(state, SignalReceived(at(4), "walltime", "SIGUSR2", None))  # a repeat
    assert end_entries(state) == ["running, step 10", "walltime warning"]


def test_ended_fills_results_and_keeps_a_persons_next_lines() -> None:
    state = running_state()
    state.next = ["ask Ana about the data"]
    facts = Ended(
        at(30),
        "COMPLETED",
        Source.WRAPPER,
        execution_id="12",
        exit_code=0,
        start=at(1),
        results=ResultFacts(
            final_step=200, first_loss=2.5, loss=0.5, checkpoint="/ck/200", has_progress=True
        ),
        next_steps=("generate passport",),
    )
    state = apply(state, facts)
    r = state.results
    assert (r.final_step, r.start_train_loss, r.end_train_loss, r.checkpoint) == (
        200,
        2.5,
        0.5,
        "/ck/200",
    )
    assert state.next == ["ask Ana about the data", "generate passport"]


# ---------------------------------------------------------------- through a real run log


def test_record_writes_the_event_and_the_markdown(tmp_path: Path) -> None:
    log = create_run(tmp_path / "run_logs", RunState(run_type="replication", objective="o"))
    log.record(Submitted(at(0), job_id="12", execution_id="12"), data={"job_id": "12"})
    log.record(Started(at(1), execution_id="12", nodes="n1", in_slurm=True, restart_count=0))
    log.record(Reconciled(at(9), "12", "FAILED", "9:0", end=at(8)))
    reread = RunLog(log.path)
    job = reread.read().jobs[0]
    assert job.state == "FAILED" and job.slurm_exit == "9:0"
    md = log.path.read_text()
    assert "- state: FAILED\n" in md and "- slurm_state: FAILED 9:0\n" in md
    kinds = [orjson.loads(line)["kind"] for line in (log.sidecar / "events.jsonl").open("rb")]
    assert kinds[-3:] == ["submitted", "started", "reconciled"]


def test_every_transition_has_an_event_kind() -> None:
    assert set(lifecycle.EVENT_KIND) == set(lifecycle._APPLY)
    assert len(set(lifecycle.EVENT_KIND.values())) == len(lifecycle.EVENT_KIND)


# ---------------------------------------------------------------- poll's reconciliation


def test_reconciled_pending_reason_gives_one_status_entry_per_change() -> None:
    state = apply(
        submitted_state(), Reconciled(at(1), "12", "PENDING", reason="Priority", text="p1")
    )
    assert state.jobs[0].state == "PENDING" and state.jobs[0].pending_reason == "Priority"
    assert end_entries(state) == ["p1"]
    again = apply(state, Reconciled(at(2), "12", "PENDING", reason="Priority", text="p2"))
    assert end_entries(again) == ["p1"]  # nothing changed: no entry
    moved = apply(again, Reconciled(at(3), "12", "PENDING", reason="Resources", text="p3"))
    assert end_entries(moved) == ["p1", "p3"]
    running = apply(moved, Reconciled(at(4), "12", "RUNNING", nodes="n1", text="r"))
    assert running.jobs[0].pending_reason is None and end_entries(running)[-1] == "r"


def test_reconciled_non_final_leaves_slurm_account_empty() -> None:
    """A passing RUNNING is not Slurm's account: it would go stale beside the wrapper's end."""
    state = apply(running_state(), Reconciled(at(2), "12", "RUNNING", nodes="n1"))
    assert state.jobs[0].slurm_state is None
    ended = apply(state, wrapper_end("COMPLETED", 5, 0))
    assert ended.jobs[0].slurm_state in (None, "COMPLETED")


def test_reconciled_final_clears_the_pending_reason() -> None:
    state = apply(submitted_state(), Reconciled(at(1), "12", "PENDING", reason="JobHeldUser"))
    done = apply(state, Reconciled(at(2), "12", "CANCELLED by 1000", "0:0", end=at(2)))
    assert done.jobs[0].state == "CANCELLED" and done.jobs[0].pending_reason is None
    assert done.jobs[0].slurm_state == "CANCELLED"


def test_a_chain_stops_once_and_its_first_reason_stands() -> None:
    state = apply(running_state(), Chained(at(5), pending="13"))
    state = apply(state, Chained(at(6), stopped="cancelled by hand (hpcwrap cancel)"))
    # the cancelled job's own end, which read the chain before the person's stop
    state = apply(state, Chained(at(7), stopped="job 12 ended CANCELLED", text="stopped"))
    assert state.chain is not None and state.chain.stopped == "cancelled by hand (hpcwrap cancel)"
    assert state.status[-1].text == "stopped"  # what it did stays in Status
    restarted = apply(state, Chained(at(8), pending="14", restart=True, by_hand=True))
    assert restarted.chain is not None and restarted.chain.stopped is None
