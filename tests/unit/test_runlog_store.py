"""The sidecar: events carry enough to rebuild; damage and interrupted writes are recovered."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from hpcwrap.errors import RunLogError
from hpcwrap.runlog import (
    JobBlock,
    RunLog,
    RunLogWarning,
    RunState,
    create_run,
    fsio,
    layout,
    open_run,
)
from hpcwrap.runlog import handle as handle_mod
from hpcwrap.runlog.facts import ArrayTaskFacts, natural_key
from hpcwrap.runlog.model import to_dict
from hpcwrap.runlog.store import Sidecar

UTC = timezone.utc
T0 = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)


def _log(tmp_path: Path) -> RunLog:
    state = RunState(
        task="train",
        run_type="replication",
        objective="o",
        jobs=[JobBlock(execution_id="7", node="n1")],
    )
    return create_run(tmp_path, state, when=T0)


def _events(log: RunLog) -> list[dict[str, object]]:
    return [
        orjson.loads(ln) for ln in (log.sidecar / "events.jsonl").read_bytes().splitlines() if ln
    ]


def test_sidecar_layout_and_events(tmp_path: Path) -> None:
    log = _log(tmp_path)
    assert log.sidecar == tmp_path / ".hpcwrap" / "2026-03-11_train"
    log.add_status("running, step 10", T0 + timedelta(minutes=5), data={"step": 10})
    log.append_event("progress", {"step": 20, "loss": 0.5})
    evs = _events(log)
    assert [e["kind"] for e in evs] == ["created", "status", "progress"]
    assert evs[1]["step"] == 10 and evs[1]["text"] == "running, step 10"
    assert evs[1]["_patch"] == {"status+": [["2026-03-11T15:05:00+00:00", "running, step 10"]]}
    assert evs[2] == {"t": evs[2]["t"], "kind": "progress", "step": 20, "loss": 0.5}
    state = orjson.loads((log.sidecar / "state.json").read_bytes())
    assert state["format"] == layout.FORMAT and state["state"]["name"] == "2026-03-11_train"


def test_append_event_does_not_touch_the_markdown(tmp_path: Path) -> None:
    log = _log(tmp_path)
    before = log.path.stat().st_mtime_ns, log.path.read_bytes()
    log.append_event("telemetry", {"gpu": 97})
    assert (log.path.stat().st_mtime_ns, log.path.read_bytes()) == before


def test_nested_extra_changed_in_place_reaches_the_event(tmp_path: Path) -> None:
    # submit changes extra["submit"] in place; the event must still carry the change,
    # or a state.json rebuilt from the events would lose it.
    log = _log(tmp_path)
    log.update(lambda s: s.extra.setdefault("submit", {}).update(output="/o/%j.out"))
    log.update(lambda s: s.extra["submit"].update(job_name="toy"), event="submitted")
    last = _events(log)[-1]
    assert last["kind"] == "submitted"
    changed = {"submit": {"output": "/o/%j.out", "job_name": "toy"}}
    assert last["_patch"] == {"extra{}": {"set": changed, "del": []}}  # the changed key only


def test_events_carry_a_mappings_changed_keys_and_entries_put_between(tmp_path: Path) -> None:
    """A 1,000-task array: each task's event carries its own task and its own Status
    entry, not every task again nor the whole Status list (issue 31: 74 KB per task)."""
    log = _log(tmp_path)

    def task(i: int) -> Callable[[RunState], None]:
        def mutate(s: RunState) -> None:  # as runlog/arrays.py keeps them: natural order
            tasks = {**s.array_tasks, str(i): ArrayTaskFacts(start=T0, next=["x" * 200])}
            s.array_tasks = dict(sorted(tasks.items(), key=lambda kv: natural_key(kv[0])))

        return mutate

    for i in (*range(49, 10, -1), *range(0, 11)):  # tasks start in any order
        log.update(task(i))
    log.add_status("late", T0 + timedelta(hours=1))
    log.add_status("early", T0 + timedelta(minutes=1))  # ends out of order
    events = _events(log)
    assert len(orjson.dumps(events[-3])) < 600, events[-3]  # one task, not fifty
    assert events[-1]["_patch"] == {"status@": [[0, "2026-03-11T15:01:00+00:00", "early"]]}
    expected = to_dict(log.read())
    (log.sidecar / "state.json").unlink()
    with pytest.warns(RunLogWarning):
        assert to_dict(log.read()) == expected  # rebuilt from the events alone


def _churn(log: RunLog) -> None:
    for i in range(5):
        log.add_status(f"step {i}", T0 + timedelta(minutes=i))
    log.add_status("between", T0 + timedelta(minutes=2, seconds=30))
    log.update(lambda s: s.key_settings.update(lr="3e-4"))
    log.update(lambda s: s.key_settings.clear())
    log.update(lambda s: setattr(s.jobs[0], "node", "n9"))
    log.update(lambda s: s.jobs.append(JobBlock(execution_id="8", resumed_from="/c")))
    log.update(lambda s: setattr(s.results, "end_val_loss", float("nan")))


@pytest.mark.parametrize("damage", ["garbage", "empty", "missing", "wrong-shape"])
def test_damaged_state_json_is_rebuilt_from_events(tmp_path: Path, damage: str) -> None:
    log = _log(tmp_path)
    _churn(log)
    expected = to_dict(log.read())
    state_json = log.sidecar / "state.json"
    if damage == "garbage":
        state_json.write_bytes(b'{"format": 1, "state": {"na')
    elif damage == "empty":
        state_json.write_bytes(b"")
    elif damage == "missing":
        state_json.unlink()
    else:
        state_json.write_bytes(b"[1, 2, 3]")
    with pytest.warns(RunLogWarning, match="rebuilding"):
        got = to_dict(open_run(log.path).read())
    assert repr(got) == repr(expected)
    md_before = log.path.read_text()
    with pytest.warns(RunLogWarning):
        log.add_status("after repair", T0 + timedelta(hours=1))
    md = log.path.read_text()
    assert md.startswith(md_before.rstrip("\n").rsplit("## Results", 1)[0].rstrip("\n")[:40])
    assert "— after repair" in md and "- node: n9" in md
    orjson.loads(state_json.read_bytes())  # written back whole


def test_torn_last_event_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    log = _log(tmp_path)
    log.add_status("one", T0)
    events = log.sidecar / "events.jsonl"
    with open(events, "ab") as fh:
        fh.write(b'{"t": "2026-03-11T15:00:00+00:00", "kind": "stat')  # writer killed mid-line
    (log.sidecar / "state.json").unlink()
    with pytest.warns(RunLogWarning) as rec:
        state = open_run(log.path).read()
    assert any("torn last line" in str(w.message) for w in rec)
    assert [s.text for s in state.status] == ["one"]
    with pytest.warns(RunLogWarning):
        log.add_status("two", T0 + timedelta(minutes=1))
    lines = events.read_bytes().split(b"\n")
    assert lines[-3].endswith(b'"kind": "stat')  # the torn line kept, on its own
    assert orjson.loads(lines[-2])["kind"] == "status"


class _Crash(Exception):
    pass


def test_killed_after_the_event_before_the_markdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _log(tmp_path)
    real = fsio.write_atomic

    def crash_on_md(path: Path, data: bytes, *, sync: bool = True) -> None:
        if path == log.path:
            raise _Crash
        real(path, data, sync=sync)

    monkeypatch.setattr(handle_mod, "write_atomic", crash_on_md)
    with pytest.raises(_Crash):
        log.add_status("lost?", T0 + timedelta(minutes=1))
    monkeypatch.setattr(handle_mod, "write_atomic", real)
    assert "lost?" not in log.path.read_text()  # the old version
    log.update(lambda s: setattr(s.jobs[0], "node", "n2"))
    text = log.path.read_text()
    assert "— lost?" in text and "- node: n2\n" in text  # the journaled update is not lost


def test_killed_after_the_markdown_before_state_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _log(tmp_path)

    def crash(self: Sidecar, snap: object) -> None:
        raise _Crash

    real = Sidecar.save
    monkeypatch.setattr(Sidecar, "save", crash)
    with pytest.raises(_Crash):
        log.update(lambda s: setattr(s.jobs[0], "node", "n2"))
    monkeypatch.setattr(Sidecar, "save", real)
    assert "- node: n2\n" in log.path.read_text()  # the new version
    # the next update knows the file holds its own line, not a person's edit
    log.update(lambda s: setattr(s.jobs[0], "node", "n3"))
    assert "- node: n3\n" in log.path.read_text()
    assert log.read().jobs[0].node == "n3"


def test_no_temp_files_left(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _churn(log)
    leftovers = [p for p in tmp_path.rglob("*") if "tmp" in p.name or "stale" in p.name]
    assert leftovers == []


def test_symlinked_lock_file_is_refused_not_followed(tmp_path: Path) -> None:
    from hpcwrap.errors import RunLogError

    log = _log(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    lock = log.sidecar / "lock"
    lock.unlink()
    lock.symlink_to(victim)
    with pytest.raises(RunLogError, match="lock"):
        log.add_status("x", T0)
    assert victim.read_text() == "precious\n"


def test_run_opened_by_path_alone_finds_its_run_logs_folder(tmp_path: Path) -> None:
    root = tmp_path / "logs"  # not called run_logs
    state = RunState(task="train", group="a/b", run_type="experiment", objective="o")
    created = create_run(root, state, when=T0)
    log = open_run(str(created.path))  # as the in-job wrapper does with HPCWRAP_RUN_LOG
    log.update(lambda s: setattr(s.results, "end_val_loss", 0.5))
    assert log.root == root
    assert "| a/b/2026-03-11_train |  | 0.5 |" in (root / "experiments.md").read_text()
    assert not (root / "a" / "experiments.md").exists()


def test_create_that_cannot_write_the_markdown_leaves_no_sidecar_fake_eacces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Faked: tests run as root, for whom a read-only folder is still writable.
    def denied(path: Path, data: bytes) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(handle_mod, "write_atomic", denied)
    with pytest.raises(handle_mod.RunLogError, match="Permission denied"):
        _log(tmp_path)
    monkeypatch.undo()
    assert list((tmp_path / ".hpcwrap").iterdir()) == []
    assert _log(tmp_path).name == "2026-03-11_train"  # the name was not used up


def test_a_state_json_over_the_cap_is_not_loaded_but_rebuilt_from_events(tmp_path: Path) -> None:
    """A 300 MB state.json read at a job's end got the job memory-killed: now it is not
    read at all; the state comes from events.jsonl, and the next write replaces it."""

    log = create_run(tmp_path / "run_logs", RunState(task="t", run_type="replication",
                                                        objective="o"))  # fmt: skip
    log.add_status("before")
    state_json = log.sidecar / "state.json"
    with open(state_json, "ab") as fh:  # sparse: 300 MB on paper, nothing on disk
        fh.truncate(300 * 2**20)
    with pytest.warns(RunLogWarning, match="over hpcwrap's cap"):
        assert [s.text for s in log.read().status] == ["before"]
    with pytest.warns(RunLogWarning):
        log.add_status("after")
    assert state_json.stat().st_size < layout.STATE_MAX
    assert [s.text for s in log.read().status] == ["before", "after"]


def test_an_events_tail_over_the_cap_is_refused_with_the_file_and_size(tmp_path: Path) -> None:
    from hpcwrap.runlog import store

    log = create_run(tmp_path / "run_logs", RunState(task="t", run_type="replication",
                                                        objective="o"))  # fmt: skip
    with open(log.sidecar / "events.jsonl", "ab") as fh:
        fh.truncate((log.sidecar / "events.jsonl").stat().st_size + store.EVENTS_READ_MAX + 1)
    with pytest.raises(RunLogError, match=r"events.jsonl: [\d,]+ bytes to read, over"):
        log.read()


def test_a_markdown_over_the_cap_is_not_read_whole(tmp_path: Path) -> None:
    from hpcwrap.runlog.handle import MARKDOWN_MAX

    log = create_run(tmp_path / "run_logs", RunState(task="t", run_type="replication",
                                                        objective="o"))  # fmt: skip
    with open(log.path, "ab") as fh:
        fh.truncate(MARKDOWN_MAX + 1)
    with pytest.raises(RunLogError, match=r"is [\d,]+ bytes, over hpcwrap's cap.*log reindex"):
        log.read()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_write_that_failed_once_leaves_no_machine_field_for_a_person() -> None:
    """`chmod 555 run_logs` mid-job (as the job's user; root would write anyway), Status
    and the end fail, the end is left for the next writer, `chmod 755`, then a note: the
    log says how the job ended and takes none of hpcwrap's own fields for a person's."""
    import pwd
    import shutil
    import tempfile

    from hpcwrap.runlog import lifecycle

    pw = pwd.getpwnam("nobody")
    tmp_path = Path(tempfile.mkdtemp(prefix="hpcwrap-failed-once-"))  # walkable by nobody
    tmp_path.chmod(0o777)
    t0 = datetime(2026, 3, 11, 14, 0, tzinfo=timezone.utc)
    os.setegid(pw.pw_gid)
    os.seteuid(pw.pw_uid)
    try:
        project = tmp_path / "p"
        project.mkdir()
        log = create_run(project / "run_logs", RunState(task="t", run_type="replication",
                                                           objective="o"))  # fmt: skip
        log.record(lifecycle.Started(t0, "12", nodes="n1", in_slurm=True))
        (project / "run_logs").chmod(0o555)
        with pytest.raises(RunLogError):
            log.add_status("running, step 20", t0 + timedelta(seconds=20))
        end = lifecycle.Ended(t0 + timedelta(minutes=1), "CANCELLED", lifecycle.Source.WRAPPER,
                              "12", exit_code=143, start=t0)  # fmt: skip
        assert log.record_or_defer(end, by="wrapper") is not None  # left for the next writer
        (project / "run_logs").chmod(0o755)
        open_run(log.path).add_status("a person's note")
        state, owned = open_run(log.path).read_with_owners()
        text = log.path.read_text()
    finally:
        os.seteuid(0)
        os.setegid(0)
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert owned == [] and state.jobs[-1].state == "CANCELLED"
    assert "- state: CANCELLED" in text and "running, step 20" in text
