"""`hpcwrap poll` and `hpcwrap status` against fake squeue/sacct at the subprocess boundary.

The fakes are shell scripts on PATH that print a prepared answer and count
their calls, so the batched queries, the rate limit, the time limits and the
"Slurm unreachable: logs untouched" rule are tested without a cluster (the
cluster tests do the same against the real dev cluster).
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from hpcwrap.cli import main
from hpcwrap.errors import SchedulerError
from hpcwrap.reports import poll
from hpcwrap.reports import status as overview
from hpcwrap.runlog import RunLog, RunState, create_run, lifecycle
from hpcwrap.runlog.facts import ChainFacts
from hpcwrap.scheduler.batch import BatchQuery
from hpcwrap.scheduler.cli_backend import (
    SACCT_DELIMITER,
    CliScheduler,
    parse_sacct,
    parse_squeue_json,
)

T0 = datetime(2026, 3, 11, 14, 0, tzinfo=timezone.utc)
D = SACCT_DELIMITER


@dataclass
class FakeSlurm:
    folder: Path

    def answer(self, squeue: list[dict[str, object]], sacct: list[str]) -> None:
        (self.folder / "squeue.json").write_text(json.dumps({"jobs": squeue}))
        (self.folder / "sacct.txt").write_text("".join(line + "\n" for line in sacct))

    def calls(self, tool: str) -> list[str]:
        log = self.folder / f"{tool}.calls"
        return log.read_text().splitlines() if log.exists() else []

    def fail(self, tool: str, how: str) -> None:
        (self.folder / f"{tool}.fail").write_text(how)


FAKE = """#!/bin/sh
echo "$*" >> "{dir}/{tool}.calls"
if [ -f "{dir}/{tool}.fail" ]; then
    case "$(cat "{dir}/{tool}.fail")" in
        slow) sleep 5 ;;
        errors) cat "{dir}/errors.json"; exit 0 ;;
        *) echo "{tool}: error: Unable to contact slurm controller (connect failure)" >&2; exit 1 ;;
    esac
fi
cat "{dir}/{out}"
"""


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlurm]:
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    for tool, out in (("squeue", "squeue.json"), ("sacct", "sacct.txt")):
        script = bindir / tool
        script.write_text(FAKE.format(dir=bindir, tool=tool, out=out))
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    errors = {"description": "Failed while looking for jobs", "source": "slurm_load_jobs"}
    (bindir / "errors.json").write_text(json.dumps({"errors": [errors], "jobs": []}))
    fake = FakeSlurm(bindir)
    fake.answer([], [])
    yield fake


def squeue_job(job_id: int, state: str, reason: str = "None", **kw: object) -> dict[str, object]:
    job: dict[str, object] = {
        "job_id": job_id,
        "job_state": state,
        "state_reason": reason,
        "array_job_id": 0,
        "array_task_id": None,
        "user_name": "u",
        "start_time": 0,
        "end_time": 0,
        "submit_time": 1773237600,
        "nodes": "",
        "restart_cnt": 0,
    }
    job.update(kw)
    return job


def sacct_row(job_id: str, state: str, exit_code: str = "0:0", nodes: str = "n1") -> str:
    return D.join(
        [
            job_id,
            job_id,
            state,
            exit_code,
            "2026-03-11T14:01:00",
            "2026-03-11T14:05:00",
            nodes,
            "None",
            "2026-03-11T14:00:00",
            "u",
        ]
    )


def make_run(root: Path, job_id: str, *, running: bool = False) -> RunLog:
    state = RunState(task="train", run_type="replication", objective="poll test")
    log = create_run(root, state, when=T0)
    log.record(lifecycle.Submitted(T0, job_id=job_id, execution_id=job_id))
    if running:
        log.record(lifecycle.Started(T0 + timedelta(minutes=1), job_id, nodes="n1", in_slurm=True))
    return log


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def query(min_interval: float = 0.0, timeout: float = 10.0) -> BatchQuery:
    return BatchQuery(
        CliScheduler(),
        min_interval=min_interval,
        timeout=timeout,
        cache_path=Path(os.environ["XDG_CACHE_HOME"]) / "hpcwrap" / "slurm-test.json",
    )


# ---------------------------------------------------------------- parsing


def test_squeue_json_filters_to_the_jobs_asked_and_names_array_tasks() -> None:
    text = json.dumps(
        {
            "jobs": [
                squeue_job(5, "PENDING", "Priority"),
                squeue_job(6, "RUNNING", start_time=1773237660, nodes="n1"),
                squeue_job(7, "PENDING", "JobHeldUser", array_job_id=7, array_task_string="0,2-3"),
                squeue_job(8, "COMPLETED", array_job_id=7, array_task_id=1, nodes="n2"),
                squeue_job(99, "RUNNING"),
            ]
        }
    )
    got = {j.job_id: j for j in parse_squeue_json(text, ["5", "6", "7_[0-3]"])}
    assert set(got) == {"5", "6", "7_[0,2-3]", "7_1"}
    assert got["5"].reason == "Priority"
    assert got["6"].start == datetime(2026, 3, 11, 14, 1, tzinfo=timezone.utc)
    assert got["7_1"].array_job_id == "7" and got["7_1"].array_task_id == "1"
    with pytest.raises(SchedulerError):
        parse_squeue_json("not json", ["5"])


def test_sacct_rows_keep_every_attempt_and_the_whole_state() -> None:
    text = "\n".join(
        [
            sacct_row("12", "REQUEUED", "0:15"),
            sacct_row("12", "COMPLETED"),
            sacct_row("13", "CANCELLED by 1000", "0:0", "None assigned"),
            sacct_row("14_2", "NODE_FAIL", "0:0"),
            "garbage line",
        ]
    )
    rows = parse_sacct(text, ["12", "13", "14_[0-3]"])
    assert [(r.job_id, r.state) for r in rows] == [
        ("12", "REQUEUED"),
        ("12", "COMPLETED"),
        ("13", "CANCELLED by 1000"),
        ("14_2", "NODE_FAIL"),
    ]
    assert rows[2].node is None and rows[2].exit == "0:0"
    assert rows[3].array_job_id == "14" and rows[3].array_task_id == "2"


# ---------------------------------------------------------------- poll


def test_one_poll_brings_every_log_to_slurms_state_with_one_call_each(
    tmp_path: Path, fake_slurm: FakeSlurm
) -> None:
    root = tmp_path / "run_logs"
    pending = make_run(root, "101")
    running = make_run(root, "102")
    cancelled = make_run(root, "103")
    node_fail = make_run(root, "104", running=True)
    timeout = make_run(root, "105", running=True)
    requeued = make_run(root, "106", running=True)
    preempted = make_run(root, "107", running=True)
    fake_slurm.answer(
        [
            squeue_job(101, "PENDING", "QOSMaxGRESPerUser"),
            squeue_job(102, "RUNNING", start_time=1773237660, nodes="n2"),
            squeue_job(999, "RUNNING"),
        ],
        [
            sacct_row("103", "CANCELLED by 1000", "0:0", "None assigned"),
            sacct_row("104", "NODE_FAIL", "0:0"),
            sacct_row("105", "TIMEOUT", "0:0"),
            sacct_row("106", "REQUEUED", "0:15"),
            sacct_row("106", "COMPLETED", "0:0"),
            sacct_row("107", "PREEMPTED", "0:15"),
        ],
    )
    logs = overview.find_logs([root])
    result = poll.poll_runs(logs, query(), root=root)
    assert result.calls == {"squeue": 1, "sacct": 1}
    assert len(fake_slurm.calls("squeue")) == 1 and len(fake_slurm.calls("sacct")) == 1
    assert "--duplicates" in fake_slurm.calls("sacct")[0]
    assert "103,104,105,106,107" in fake_slurm.calls("sacct")[0]  # only the ended ones
    want = {
        pending: "PENDING",
        running: "RUNNING",
        cancelled: "CANCELLED",
        node_fail: "NODE_FAIL",
        timeout: "TIMEOUT",
        requeued: "COMPLETED",
        preempted: "PREEMPTED",
    }
    for log, state in want.items():
        assert log.read().jobs[-1].state == state, log.name
    assert pending.read().jobs[-1].pending_reason == "QOSMaxGRESPerUser"
    assert "pending (QOSMaxGRESPerUser)" in pending.read().status[-1].text
    assert "CANCELLED by 1000" in cancelled.read().status[-1].text
    assert cancelled.read().jobs[-1].slurm_state == "CANCELLED"
    assert running.read().jobs[-1].node == "n2"
    requeue_change = next(c for c in result.changes if c.execution_id == "106")
    assert requeue_change.requeues == 1

    before = snapshot(root)
    again = poll.poll_runs(logs, query(), root=root)
    assert again.written == []
    assert snapshot(root) == before  # a second poll adds nothing, not even an event
    assert again.calls == {"squeue": 1, "sacct": 0}  # every run left is still active


def test_rate_limit_reuses_the_cached_answer(tmp_path: Path, fake_slurm: FakeSlurm) -> None:
    root = tmp_path / "run_logs"
    make_run(root, "201")
    make_run(root, "202")
    fake_slurm.answer([squeue_job(201, "PENDING", "Priority")], [sacct_row("202", "FAILED", "3:0")])
    logs = overview.find_logs([root])
    first = poll.poll_runs(logs, query(min_interval=30), root=root)
    assert first.calls == {"squeue": 1, "sacct": 1}
    second = poll.poll_runs(logs, query(min_interval=30), root=root)
    assert second.calls == {"squeue": 0, "sacct": 0}
    assert len(fake_slurm.calls("squeue")) == 1 and len(fake_slurm.calls("sacct")) == 1
    # a job the cached answer does not cover is reported, not asked about
    make_run(root, "203")
    third = poll.poll_runs(overview.find_logs([root]), query(min_interval=30), root=root)
    assert third.calls == {"squeue": 0, "sacct": 0}
    assert any("203" in c.execution_id and "rate limit" in (c.note or "") for c in third.changes)


def test_two_people_on_one_account_do_not_rate_limit_each_other(
    tmp_path: Path, fake_slurm: FakeSlurm, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lab account shared by two people: one's poll of their run-logs folder must not
    leave the other's runs "not asked (rate limit)"; within one folder, the not-asked
    line says whose poll asked and when."""
    mine, theirs = tmp_path / "alice" / "run_logs", tmp_path / "bob" / "run_logs"
    make_run(mine, "301")
    make_run(theirs, "302")
    fake_slurm.answer(
        [squeue_job(301, "PENDING", "Priority"), squeue_job(302, "PENDING", "Resources")], []
    )
    assert main(["poll", str(mine), "--min-interval", "30"]) == 0
    capsys.readouterr()
    assert main(["poll", str(theirs), "--min-interval", "30", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["not_asked"] == [] and doc["slurm_calls"]["squeue"] == 1, doc
    assert doc["asked_by"]["squeue"].endswith(f"pid {os.getpid()}")
    # the same folder again, with a run the first answer did not cover: not asked, and
    # the line names the poll that did ask
    make_run(mine, "303")
    assert main(["poll", str(mine), "--min-interval", "30"]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"1 run\(s\) not asked: .* \(by \S+@\S+ pid \d+ at \d\d:\d\d:\d\d UTC\)", out
    ), out


@pytest.mark.parametrize("how", ["down", "slow", "errors"])
def test_slurm_unreachable_or_slow_leaves_every_log_untouched(
    tmp_path: Path, fake_slurm: FakeSlurm, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "run_logs"
    make_run(root, "301")
    make_run(root, "302", running=True)
    fake_slurm.fail("squeue", how)
    limit = 0.5 if how == "slow" else 20.0  # a loaded machine may start the fake slowly
    before = snapshot(root)
    with pytest.raises(SchedulerError) as err:
        poll.poll_runs(overview.find_logs([root]), query(timeout=limit), root=root)
    expected = {
        "down": "Unable to contact",
        "slow": "did not answer within",
        "errors": "Failed while looking for jobs",  # squeue --json exits 0 when slurmctld is down
    }[how]
    assert expected in str(err.value)
    assert snapshot(root) == before
    rc = main(["poll", "--run-logs", str(root), "--timeout", str(limit), "--min-interval", "0"])
    assert rc == 10
    assert "squeue" in capsys.readouterr().err
    assert snapshot(root) == before


def test_poll_cli_json_counts_calls(
    tmp_path: Path, fake_slurm: FakeSlurm, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "run_logs"
    make_run(root, "401")
    fake_slurm.answer([], [sacct_row("401", "BOOT_FAIL", "0:0")])
    assert main(["poll", str(root), "--json", "--min-interval", "0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["slurm_calls"] == {"squeue": 1, "sacct": 1}
    assert doc["written"] == 1 and doc["changes"][0]["after"] == "BOOT_FAIL"  # its own state


# ---------------------------------------------------------------- status


STATUS_KEYS = {
    "run_state",
    "stopped_why",
    "path",
    "name",
    "group",
    "mode",
    "state",
    "state_source",
    "slurm_state",
    "slurm_exit",
    "pending_reason",
    "job_ids",
    "submitted",
    "start",
    "end",
    "limit_at",
    "elapsed_s",
    "left_s",
    "step",
    "loss",
    "progress_at",
    "gpu_util",
    "checkpoint",
    "wandb",
    "wandb_url",
    "last_status",
    "last_status_at",
    "final",
    "problem",
    "last_heard",
    "lag",
}


def test_status_json_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "run_logs"
    log = make_run(root, "501", running=True)
    log.append_event("progress", {"step": 40, "train_loss": 1.25})
    done = make_run(root, "502", running=True)
    done.record(
        lifecycle.Ended(
            T0 + timedelta(minutes=9),
            "COMPLETED",
            lifecycle.Source.WRAPPER,
            "502",
            exit_code=0,
            results=lifecycle.ResultFacts(final_step=100, loss=0.5, checkpoint="/ck/100.pt"),
        )
    )
    assert main(["status", str(root), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == 1 and isinstance(doc["generated"], str)
    rows = {r["job_ids"][-1]: r for r in doc["runs"]}
    for row in rows.values():
        assert set(row) == STATUS_KEYS
    assert rows["501"]["state"] == "RUNNING" and rows["501"]["step"] == 40
    assert rows["501"]["loss"] == 1.25 and rows["501"]["progress_at"]
    assert rows["502"]["final"] and rows["502"]["checkpoint"] == "/ck/100.pt"
    assert rows["502"]["step"] == 100 and rows["502"]["elapsed_s"] == 480.0


def test_status_table_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "run_logs"
    make_run(root, "601")
    make_run(root, "602", running=True)
    pend = make_run(root, "603")
    pend.record(lifecycle.Reconciled(T0, "603", "PENDING", reason="Priority"))
    monkeypatch.setenv("NO_COLOR", "1")
    assert main(["status", str(root)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["RUN", "GROUP", "MODE", "STATE"]
    assert "PENDING (Priority)" in out and "\x1b[" not in out
    assert len({line.index("replication") for line in lines[1:]}) == 1  # aligned
    assert main(["status", str(root), "--report"]) == 0
    report = capsys.readouterr().out
    assert "**Done** (0)" in report and "**Running** (1)" in report
    assert "**Remaining** (2)" in report and "Priority" in report
    assert "Scheduler evidence: none recorded here" in report


def test_report_says_when_slurm_last_answered(tmp_path: Path, fake_slurm: FakeSlurm) -> None:
    root = tmp_path / "run_logs"
    make_run(root, "611")
    fake_slurm.answer([squeue_job(611, "PENDING", "Priority")], [])
    assert main(["poll", str(root), "--min-interval", "0"]) == 0
    from hpcwrap.scheduler.batch import default_cache_path, last_asked

    asked = last_asked(default_cache_path(root=root))
    assert set(asked) == {"squeue"}
    report = overview.render_report(overview.collect([root], root), asked=asked)
    assert re.search(r"hpcwrap poll last asked Slurm: squeue \d+s ago", report)


def test_status_default_shows_unfinished_and_last_ten_finished(tmp_path: Path) -> None:
    root = tmp_path / "run_logs"
    for n in range(12):
        log = make_run(root, str(700 + n), running=True)
        log.record(
            lifecycle.Ended(
                T0 + timedelta(minutes=n + 2), "FAILED", lifecycle.Source.WRAPPER, str(700 + n)
            )
        )
    make_run(root, "799")
    rows = overview.collect([root], root)
    assert len(rows) == 11 and sum(not r.final for r in rows) == 1
    assert "700" not in {r.job_ids[-1] for r in rows}
    assert len(overview.collect([root], root, show_all=True)) == 13


def test_status_reads_only_state_json(tmp_path: Path) -> None:
    """No lock, no write: a read-only run_logs folder is fine."""
    root = tmp_path / "run_logs"
    make_run(root, "801")
    before = snapshot(root)
    mode = root.stat().st_mode
    try:
        for p in [root, *root.rglob("*")]:
            if p.is_dir():
                p.chmod(0o555)
        rows = overview.collect([root], root)
    finally:
        for p in [root, *root.rglob("*")]:
            if p.is_dir():
                p.chmod(mode)
    assert rows[0].state == "SUBMITTED"
    assert snapshot(root) == before
    assert orjson.loads(overview.to_json(rows))["runs"][0]["job_ids"] == ["801"]


def test_status_row_cache_follows_every_change(tmp_path: Path) -> None:
    """Finished rows come from the cache only while their state.json is unchanged."""
    root = tmp_path / "run_logs"
    log = make_run(root, "901", running=True)
    end = T0 + timedelta(minutes=5)
    log.record(lifecycle.Ended(end, "FAILED", lifecycle.Source.WRAPPER, "901", exit_code=1))
    cache = overview.default_cache_path(root)
    assert cache is not None and str(tmp_path) in str(cache)
    first = overview.collect([root], root, cache_path=cache)
    assert cache.exists() and first[0].state == "FAILED"
    again = overview.collect([root], root, cache_path=cache)
    assert again == first
    log.record(lifecycle.Reconciled(T0 + timedelta(minutes=6), "901", "FAILED", "1:0", end=end))
    changed = overview.collect([root], root, cache_path=cache)
    assert changed[0].slurm_state == "FAILED" and changed[0].slurm_exit == "1:0"
    cache.write_bytes(b"damaged")
    assert overview.collect([root], root, cache_path=cache) == changed


def test_only_slurm_job_ids_are_asked_about(tmp_path: Path, fake_slurm: FakeSlurm) -> None:
    """A local run (<host>:<pid>) or a `log new --execution-id vm-1/zone` is never sent to
    squeue/sacct (sacct would refuse the whole call)."""
    assert [poll.is_slurm_id(i) for i in ("12", "12_3", "12_[0-3%2]", "12;gpu")] == [True] * 4
    assert not any(poll.is_slurm_id(i) for i in ("host:123", "vm-1/us-central1-a", "12a"))
    root = tmp_path / "run_logs"
    for exec_id in ("host:123", "vm-1/us-central1-a"):
        log = create_run(root, RunState(task="x", run_type="replication", objective="o"))
        log.record(lifecycle.Submitted(T0, job_id=exec_id, execution_id=exec_id))
    result = poll.poll_runs(overview.find_logs([root]), query(), root=root)
    assert result.runs == 0 and fake_slurm.calls("squeue") == []


def test_array_job_is_over_when_every_task_is(tmp_path: Path, fake_slurm: FakeSlurm) -> None:
    root = tmp_path / "run_logs"
    log = create_run(root, RunState(task="arr", run_type="replication", objective="o"))
    log.record(lifecycle.Submitted(T0, job_id="50", execution_id="50_[0-2]"))
    fake_slurm.answer(
        [squeue_job(51, "RUNNING", array_job_id=50, array_task_id=1, nodes="n1")],
        [sacct_row("50_0", "COMPLETED"), sacct_row("50_2", "COMPLETED")],
    )
    poll.poll_runs(overview.find_logs([root]), query(), root=root)
    assert log.read().jobs[-1].state == "RUNNING"
    fake_slurm.answer(
        [],
        [
            sacct_row("50_0", "COMPLETED"),
            sacct_row("50_1", "FAILED", "2:0"),
            sacct_row("50_2", "COMPLETED"),
        ],
    )
    poll.poll_runs(overview.find_logs([root]), query(), root=root)
    block = log.read().jobs[-1]
    assert block.state == "FAILED" and block.slurm_exit == "2:0"


def test_every_adds_a_progress_entry_only_when_the_last_is_older(
    tmp_path: Path, fake_slurm: FakeSlurm
) -> None:
    root = tmp_path / "run_logs"
    log = make_run(root, "61", running=True)
    log.append_event("progress", {"step": 300, "train_loss": 0.75})
    fake_slurm.answer([squeue_job(61, "RUNNING", start_time=1773237660, nodes="n1")], [])
    late = T0 + timedelta(hours=2)
    poll.poll_runs(overview.find_logs([root]), query(), root=root, every=1800, now=lambda: late)
    texts = [s.text for s in log.read().status]
    assert "step 300, loss 0.75" in texts[-1] and texts[-1].endswith("(poll)")
    poll.poll_runs(overview.find_logs([root]), query(), root=root, every=1800, now=lambda: late)
    assert [s.text for s in log.read().status] == texts  # not again within the interval


def test_colour_only_on_a_terminal_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hpcwrap.cli.status_cmd import use_colour

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_colour(Tty()) and not use_colour(object())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Tty())
    row = overview.RunRow(path="p", name="n", state="FAILED", final=True)
    assert "\x1b[31m" in overview.render_table([row], colour=True)


def test_a_log_that_cannot_be_written_does_not_stop_the_others(
    tmp_path: Path, fake_slurm: FakeSlurm, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "run_logs"
    broken = make_run(root, "71")
    fine = make_run(root, "72")
    broken.path.write_bytes(b"\xff\xfe not utf-8")  # hpcwrap never overwrites what it cannot parse
    fake_slurm.answer([], [sacct_row("71", "FAILED", "1:0"), sacct_row("72", "FAILED", "1:0")])
    assert main(["poll", str(root), "--min-interval", "0"]) == 6  # RunLogConflictError
    assert fine.read().jobs[-1].state == "FAILED"
    assert f"{broken.path} not updated" in capsys.readouterr().err


def test_a_requeued_newest_attempt_is_not_done(tmp_path: Path) -> None:
    root = tmp_path / "run_logs"
    log = make_run(root, "81", running=True)
    log.record(lifecycle.Requeued(T0 + timedelta(minutes=3), "81"))
    row = overview.collect([root], root)[0]
    assert row.state == "REQUEUED" and not row.final
    assert "**Remaining** (1)" in overview.render_report([row])


def test_a_chain_its_guard_stopped_reads_stopped_not_completed(tmp_path: Path) -> None:
    # the guard's job exited 0 without training: Slurm saw it COMPLETE, the run did not
    root = tmp_path / "run_logs"
    log = make_run(root, "133", running=True)
    log.record(lifecycle.Chained(T0, stopped="no progress: job 132 saved no newer checkpoint"))
    log.record(
        lifecycle.Ended(
            T0 + timedelta(minutes=2), "COMPLETED", lifecycle.Source.EPILOG, "133", exit_code=0
        )
    )
    row = overview.read_row(log.path, root)
    assert (row.state, row.run_state) == ("COMPLETED", "stopped")
    assert row.stopped_why == "no progress: job 132 saved no newer checkpoint"
    assert "STOPPED" in overview.render_table([row], colour=False)
    assert "chain: stopped (no progress: job 132" in overview.render_report([row])
    # a chain that stopped because the training completed is COMPLETED
    done = make_run(root, "140", running=True)
    done.record(lifecycle.Chained(T0, stopped="job 140 ended COMPLETED", done=True))
    done.record(
        lifecycle.Ended(
            T0 + timedelta(minutes=2), "COMPLETED", lifecycle.Source.WRAPPER, "140", exit_code=0
        )
    )
    assert overview.read_row(done.path, root).run_state == "COMPLETED"


def test_a_pending_jobs_expected_start_is_not_its_start(
    tmp_path: Path, fake_slurm: FakeSlurm
) -> None:
    """squeue gives a pending job (--begin, backfill) its expected start; the log keeps
    only the submission until the job runs, and a job cancelled pending has no start."""
    root = tmp_path / "run_logs"
    log = make_run(root, "701")
    later = int((T0 + timedelta(hours=1)).timestamp())
    fake_slurm.answer([squeue_job(701, "PENDING", "BeginTime", start_time=later)], [])
    poll.poll_runs([log.path], query(), root=root)
    job = log.read().jobs[-1]
    assert job.state == "PENDING" and job.start is None
    fake_slurm.answer([], [sacct_row("701", "CANCELLED by 1000", "0:0", nodes="None assigned")])
    poll.poll_runs([log.path], query(), root=root)
    job = log.read().jobs[-1]
    assert job.state == "CANCELLED" and job.start is None and job.end is not None
    md = log.path.read_text()
    assert "(submitted)" in md and "runtime" not in md.split("## Job", 1)[1].split("##")[0]


def test_poll_repairs_a_log_whose_last_write_did_not_finish(
    tmp_path: Path, fake_slurm: FakeSlurm
) -> None:
    from hpcwrap.runlog import deferred

    root = tmp_path / "run_logs"
    log = make_run(root, "702", running=True)
    end = lifecycle.Ended(
        T0 + timedelta(minutes=9), "TIMEOUT", lifecycle.Source.EPILOG, "702", text="timeout (x)"
    )
    deferred.leave(log.sidecar, end, by="epilog", why="the run's lock was held")
    fake_slurm.answer([], [sacct_row("702", "TIMEOUT", "0:0")])
    result = poll.poll_runs([log.path], query(), root=root)
    assert any(c.note and c.note.startswith("repaired: end pending") for c in result.changes)
    assert "- state: TIMEOUT" in log.path.read_text() and log.lag() == []


def test_poll_leaves_slurms_end_when_the_lock_is_held(
    tmp_path: Path, fake_slurm: FakeSlurm
) -> None:
    """A hung process holds the run's lock: poll cannot write, so it leaves sacct's end for
    the next writer; status reads it at once, and the next poll writes it, once."""
    import subprocess
    import time

    from hpcwrap.runlog.locks import LockConfig

    root = tmp_path / "run_logs"
    log = make_run(root, "703", running=True)
    lock = log.sidecar / "lock"
    hung = subprocess.Popen(
        ["flock", "-o", str(lock), "sleep", "60"]
    )  # -o: its sleep holds nothing
    try:
        for _ in range(100):
            if subprocess.run(["flock", "-n", str(lock), "true"]).returncode != 0:
                break
            time.sleep(0.05)
        fake_slurm.answer([], [sacct_row("703", "CANCELLED by 1000", "0:15")])
        short = LockConfig(mode="flock", timeout=0.2)
        result = poll.poll_runs([log.path], query(), root=root, locks=short)
        assert result.errors and "left for the next writer" in (result.changes[-1].note or "")
        assert [p.by for p in log.pending_ends()] == ["poll"]
        row = overview.read_row(log.path)
        assert row.state == "CANCELLED" and row.slurm_state == "CANCELLED" and row.lag
        again = poll.poll_runs([log.path], query(), root=root, locks=short)
        assert again.errors and len(log.pending_ends()) == 1  # not left twice
    finally:
        hung.kill()
        hung.wait()
    poll.poll_runs([log.path], query(), root=root)
    assert log.lag() == [] and "- state: CANCELLED" in log.path.read_text()
    texts = [s.text for s in log.read().status]
    assert sum("from the scheduler" in t for t in texts) == 1, texts


def test_a_successor_slurm_cancelled_before_it_started_stops_the_chain(
    tmp_path: Path, fake_slurm: FakeSlurm
) -> None:
    """Job 140 completed but its wrapper was killed before it cancelled successor 141;
    Slurm cancelled 141 (its afternotok dependency can never be met). The chain's last
    line no longer says 141 waits."""
    root = tmp_path / "run_logs"
    log = make_run(root, "140", running=True)
    log.record(lifecycle.Chained(T0, pending="141", text="resume: successor job 141 waits"))
    log.record(lifecycle.Ended(T0 + timedelta(minutes=2), "COMPLETED", lifecycle.Source.EPILOG,
                               "140", exit_code=0))  # fmt: skip
    fake_slurm.answer([], [sacct_row("141", "CANCELLED by 0", nodes="None assigned")])
    assert poll.waiting_successors([log.path]) == {log.path: "141"}
    res = poll.poll_runs([log.path], query())
    chain = log.read().chain
    assert chain is not None and chain.pending is None
    assert (
        chain.stopped is not None and "successor job 141 ended before it started" in chain.stopped
    )
    assert any(c.note == "resume chain stopped" for c in res.changes)
    assert poll.waiting_successors([log.path]) == {}
    # Still pending in squeue: nothing is written.
    other = make_run(root, "150", running=True)
    other.record(lifecycle.Chained(T0, pending="151"))
    fake_slurm.answer([squeue_job(151, "PENDING", "Dependency")], [])
    before = snapshot(root)
    poll.poll_runs([other.path], query())
    assert (other.read().chain or ChainFacts()).pending == "151"
    assert snapshot(root) == before
