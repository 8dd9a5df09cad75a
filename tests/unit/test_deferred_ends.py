"""Ends a writer could not write at once (runlog/deferred.py): left beside the log, shown
by every reader, applied once by the next writer; a log behind its sidecar is repaired.

The lock is held by a real second process (flock); a write that fails is a real OSError
from the file system where that can be made without root's override (a full disk is
simulated by an OSError(ENOSPC) from the atomic write, which is where it would come).
"""

from __future__ import annotations

import errno
import fcntl
import multiprocessing
import os
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from hpcwrap.errors import RunLogWarning
from hpcwrap.job.sink import STUCK_LOCK_WAIT, LogSink
from hpcwrap.reports import status as overview
from hpcwrap.runlog import RunLog, RunState, create_run, deferred, lifecycle
from hpcwrap.runlog.endings import Strength
from hpcwrap.runlog.locks import LockConfig
from hpcwrap.runlog.telemetry import TelemetryFacts

T0 = datetime(2026, 3, 11, 14, 0, tzinfo=timezone.utc)
FLOCK = LockConfig(mode="flock", timeout=0.3)


def running_log(root: Path, job_id: str = "77") -> RunLog:
    log = create_run(root, RunState(task="train", run_type="replication", objective="x"), when=T0)
    log = log.with_locks(FLOCK)
    log.record(lifecycle.Submitted(T0, job_id=job_id, execution_id=job_id))
    log.record(lifecycle.Started(T0 + timedelta(minutes=1), job_id, nodes="n1", in_slurm=True))
    return log


def ended(job_id: str = "77", state: str = "TIMEOUT", **kw: object) -> lifecycle.Ended:
    args: dict[str, object] = {
        "when": T0 + timedelta(minutes=30),
        "state": state,
        "source": lifecycle.Source.EPILOG,
        "execution_id": job_id,
        "exit_code": 0,
        "start": T0 + timedelta(minutes=1),
        "text": f"{state.lower()} (recorded by the epilog: at the limit)",
        "results": lifecycle.ResultFacts(final_step=1200, loss=0.75, has_progress=True),
        "slurm_state": state,
        "slurm_exit": "0:0",
        "strength": Strength.READING,
    }
    args.update(kw)
    return lifecycle.Ended(**args)  # type: ignore[arg-type]


def _hold(path: str, ready: Event, stop: Event) -> None:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        ready.set()
        stop.wait(60)


@pytest.fixture
def held_lock() -> Iterator[object]:
    """A second process that takes a run's lock and keeps it (a hung writer)."""
    procs: list[tuple[multiprocessing.process.BaseProcess, Event]] = []

    def hold(log: RunLog) -> None:
        ctx = multiprocessing.get_context("fork")
        ready, stop = ctx.Event(), ctx.Event()
        p = ctx.Process(target=_hold, args=(str(log.sidecar / "lock"), ready, stop))
        p.start()
        assert ready.wait(10)
        procs.append((p, stop))

    def release() -> None:
        for p, stop in procs:
            stop.set()
            p.join(10)
        procs.clear()

    hold.release = release  # type: ignore[attr-defined]
    yield hold
    release()


def test_an_end_record_round_trips_every_field() -> None:
    facts = ended(
        results=lifecycle.ResultFacts(
            final_step=5,
            first_loss=2.5,
            loss=0.5,
            loss_text="0.5000",
            checkpoint="/ck/5.pt",
            has_progress=True,
            telemetry=TelemetryFacts(samples=3, peak_rss_bytes=1024, nodes=["n1"]),
        ),
        next_steps=("resume from /ck/5.pt",),
        array=deferred.ArrayTaskRecord(array_job_id="9", array_task_id="2", array_task_count=4),
        task_prefix="task 2: ",
        wandb_local="/w/offline-run-1",
    )
    assert deferred.decode(deferred.encode(facts)) == facts
    with pytest.raises(ValueError, match="not an end record"):
        deferred.decode({"state": "COMPLETED"})


def test_an_end_left_is_read_at_once_and_written_once_by_the_next_writer(
    tmp_path: Path,
) -> None:
    log = running_log(tmp_path / "run_logs")
    md_before = log.path.read_bytes()
    deferred.leave(log.sidecar, ended(), by="epilog", why="the run's lock was held")
    # Readers see the end already; the Markdown is untouched until a writer takes the lock.
    assert log.read().jobs[-1].state == "TIMEOUT"
    assert log.read().results.final_step == 1200
    assert log.path.read_bytes() == md_before
    assert [p.by for p in log.pending_ends()] == ["epilog"]
    assert log.lag() and log.lag()[0].startswith("end pending: left by the epilog")
    log.add_status("the next writer")
    md = log.path.read_text()
    assert "- state: TIMEOUT" in md and "recorded by the epilog" in md
    assert log.pending_ends() == [] and log.lag() == []
    assert not any(deferred.ends_dir(log.sidecar).iterdir())
    events = (log.sidecar / "events.jsonl").read_text()
    assert '"ends_applied"' in events
    # Applied once: the same entry is not written again by later writers.
    log.add_status("another writer")
    assert log.path.read_text().count("recorded by the epilog") == 1


def test_a_record_already_applied_is_only_removed(tmp_path: Path) -> None:
    """A writer that died after writing but before removing the file: the next one
    recognises it by name and removes it without applying it again."""
    log = running_log(tmp_path / "run_logs")
    left = deferred.leave(log.sidecar, ended(), by="epilog", why="the lock was held")
    data = left.read_bytes()
    log.add_status("applies it")
    left.write_bytes(data)  # as if the removal never happened
    log.record(lifecycle.Ended(T0 + timedelta(hours=1), "FAILED", lifecycle.Source.SCHEDULER,
                               "77", strength=Strength.GUESS))  # fmt: skip
    state = log.read()
    assert not left.exists()
    assert state.jobs[-1].state == "TIMEOUT"
    assert sum("recorded by the epilog" in s.text for s in state.status) == 1


def test_record_or_defer_leaves_the_end_while_another_process_holds_the_lock(
    tmp_path: Path, held_lock: object
) -> None:
    log = running_log(tmp_path / "run_logs")
    held_lock(log)  # type: ignore[operator]
    why = log.record_or_defer(ended(state="COMPLETED"), by="wrapper")
    assert why is not None and "lock" in why
    assert log.read().jobs[-1].state == "COMPLETED"
    assert "COMPLETED" not in log.path.read_text()
    held_lock.release()  # type: ignore[attr-defined]
    assert log.repair() is True
    assert "- state: COMPLETED" in log.path.read_text()
    assert log.repair() is False  # in step: nothing written


def test_a_failed_markdown_write_is_seen_as_lag_and_repaired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = running_log(tmp_path / "run_logs")
    import hpcwrap.runlog.handle as handle
    from hpcwrap.runlog.fsio import write_atomic as real

    def full_disk(path: Path, data: bytes, **kw: object) -> None:
        if path == log.path:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(handle, "write_atomic", full_disk)  # where the handle writes it
    why = log.record_or_defer(ended(state="CANCELLED"), by="epilog")
    assert why is not None and "No space left" in why
    # The event reached events.jsonl (state replays it) and the end was also left: once.
    lag = log.lag()
    assert any("did not reach the Markdown" in x for x in lag), lag
    assert overview.read_row(log.path).state == "CANCELLED"
    assert overview.read_row(log.path).lag == lag
    monkeypatch.setattr(handle, "write_atomic", real)
    assert log.repair() is True
    md = log.path.read_text()
    assert "- state: CANCELLED" in md and md.count("recorded by the epilog") == 1
    assert log.lag() == [] and overview.read_row(log.path).lag == []


def test_a_damaged_record_is_skipped_with_a_warning(tmp_path: Path) -> None:
    log = running_log(tmp_path / "run_logs")
    folder = deferred.ends_dir(log.sidecar)
    folder.mkdir()
    (folder / "00000000000000000001-epilog-77-1.json").write_bytes(b"{ not json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert log.read().jobs[-1].state == "RUNNING"
    assert any(issubclass(w.category, RunLogWarning) for w in caught)


def test_the_sink_shortens_its_waits_once_the_lock_was_held_and_leaves_the_end(
    tmp_path: Path, held_lock: object
) -> None:
    log = running_log(tmp_path / "run_logs").with_locks(LockConfig(mode="flock", timeout=1.0))
    held_lock(log)  # type: ignore[operator]
    err = (tmp_path / "err").open("w")
    sink = LogSink(log, err)
    assert sink.status("progress") is False  # waited its 1 s, then gave up
    assert sink.run is not None and sink.run.locks is not None
    assert sink.run.locks.timeout == min(1.0, STUCK_LOCK_WAIT)
    assert sink.record_end(ended(state="COMPLETED", source=lifecycle.Source.WRAPPER)) is True
    err.close()
    assert "left for the next writer" in (tmp_path / "err").read_text()
    assert log.read().jobs[-1].state == "COMPLETED"
    assert [p.by for p in log.pending_ends()] == ["wrapper"]


def test_status_shows_last_heard_and_the_markdown_says_it_for_a_running_job(
    tmp_path: Path,
) -> None:
    log = running_log(tmp_path / "run_logs")
    log.add_status("step 10 loss 2.0", T0 + timedelta(minutes=5))
    row = overview.read_row(log.path, now=T0 + timedelta(hours=1))
    assert row.last_heard == (T0 + timedelta(minutes=5)).isoformat()
    assert "last heard 14:05 UTC" in overview.state_text(row, T0 + timedelta(hours=1))
    assert "last heard 14:05" not in overview.state_text(row, T0 + timedelta(minutes=6))
    assert "- last heard: 2026-03-11 14:05 UTC (no end recorded yet)" in log.path.read_text()
    log.record(ended(state="COMPLETED"))
    assert "last heard" not in log.path.read_text()


def test_no_pending_ends_is_one_listing(tmp_path: Path) -> None:
    log = running_log(tmp_path / "run_logs")
    assert deferred.has_pending(log.sidecar) is False
    assert deferred.pending(log.sidecar) == []
    os.makedirs(deferred.ends_dir(log.sidecar))
    (deferred.ends_dir(log.sidecar) / ".x.json.tmp").write_text("half")  # a leave() in flight
    assert deferred.has_pending(log.sidecar) is False


def test_log_reindex_repairs_a_log_behind_its_sidecar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpcwrap.cli import main

    root = tmp_path / "run_logs"
    log = running_log(root)
    deferred.leave(log.sidecar, ended(), by="epilog", why="the run's lock was held")
    assert main(["log", "reindex", str(root)]) == 0
    assert "brought up to its sidecar (end pending" in capsys.readouterr().err
    assert "- state: TIMEOUT" in log.path.read_text() and log.lag() == []


def test_two_failed_markdown_writes_then_a_good_one_write_the_whole_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wrapper's end and the epilog's both fail to write the Markdown (run_logs/ is
    read-only): the next writer still writes every line the Markdown lacks. (The merge
    base must not take a write that never reached the file for one that did: the line
    would then pass for a person's edit and stay RUNNING for good.)"""
    log = running_log(tmp_path / "run_logs")
    import hpcwrap.runlog.handle as handle
    from hpcwrap.runlog.fsio import write_atomic as real

    def read_only(path: Path, data: bytes, **kw: object) -> None:
        if path == log.path:
            raise OSError(errno.EACCES, "Permission denied", str(path))
        real(path, data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(handle, "write_atomic", read_only)
    wrapper = ended(state="CANCELLED", source=lifecycle.Source.WRAPPER, strength=Strength.GUESS,
                    text="cancelled (a TERM)")  # fmt: skip
    assert log.record_or_defer(wrapper, by="wrapper") is not None
    assert log.record_or_defer(ended(state="CANCELLED"), by="epilog") is not None
    monkeypatch.setattr(handle, "write_atomic", real)
    assert log.repair() is True
    md = log.path.read_text()
    assert "- state: CANCELLED" in md and "last heard" not in md, md
    assert log.read().jobs[-1].state_source == "epilog"  # the stronger reading of the two
    assert log.read_with_owners()[1] == []  # no line taken for a person's edit


def test_the_end_does_not_wait_behind_a_write_stuck_on_a_hung_lock(
    tmp_path: Path, held_lock: object
) -> None:
    """A progress write from another thread waits its whole lock timeout on a hung lock;
    the end (after a TERM: Slurm's KillWait) is left within seconds all the same."""
    import threading
    import time

    log = running_log(tmp_path / "run_logs").with_locks(LockConfig(mode="flock", timeout=30))
    held_lock(log)  # type: ignore[operator]
    sink = LogSink(log, (tmp_path / "err").open("w"))
    stuck = threading.Thread(target=sink.status, args=("progress",), daemon=True)
    stuck.start()
    time.sleep(0.5)  # the progress write is waiting for the run's lock
    t0 = time.monotonic()
    sink.reserve()
    sink.hurry()
    assert sink.record_end(ended(state="CANCELLED", source=lifecycle.Source.WRAPPER)) is True
    assert time.monotonic() - t0 < 10
    assert [p.by for p in log.pending_ends()] == ["wrapper"]
    held_lock.release()  # type: ignore[attr-defined]
    stuck.join(40)
