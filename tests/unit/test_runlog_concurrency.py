"""Real processes: many writers on one run log and one timeline, and writers killed mid-update."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import re
import signal
import time
from datetime import datetime, timedelta, timezone
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from hpcwrap.runlog import RunState, create_run, open_run
from hpcwrap.runlog.markdown import parse_document
from hpcwrap.runlog.timeline import add_runs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
UTC = timezone.utc
T0 = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)
_ENTRY = re.compile(r"^(\d+)\. `([^`]+)`")


def _leftovers(root: Path) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.name.endswith(("hpcwrap-tmp", ".soft")) or ".stale-" in p.name
    ]


def _writer(md: str, folder: str, root: str, w: int, n: int) -> None:
    log = open_run(md)
    for i in range(n):
        log.add_status(f"writer {w:02d} update {i:02d}", T0 + timedelta(seconds=w * 100 + i))
        add_runs(Path(folder), Path(root), [f"2026-04-{i % 28 + 1:02d}_w{w:02d}_{i:02d}.md"])


def _reader(md: str, timeline: str, stop: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    reads = 0
    last_status = last_entries = 0
    try:
        while True:
            done = os.path.exists(stop)
            text = Path(md).read_text()
            doc = parse_document(text)
            assert doc.title is not None and text.endswith("\n"), "torn run log"
            status = doc.section("status")
            assert status is not None, "no Status section"
            count = len(status.items)
            assert count >= last_status, "status lines went missing"
            last_status = count
            lines = Path(timeline).read_text().splitlines()
            assert lines[0].endswith(" Timeline"), "torn timeline"
            entries = [ln for ln in lines if _ENTRY.match(ln)]
            assert len(entries) >= last_entries, "timeline entries went missing"
            last_entries = len(entries)
            reads += 1
            if done:
                break
        out.put(("ok", reads))
    except Exception as exc:  # reported to the test, which fails with it
        out.put(("error", f"{type(exc).__name__}: {exc}"))


# 32 writers at once is the contention that matters; 12 updates each keep the log short
# (each update re-renders the whole log today: 50 each took 55 s, the issue of cost).
@pytest.mark.parametrize(("lock", "writers", "per_writer"), [("flock", 32, 12), ("soft", 8, 12)])
def test_many_writers_one_log_one_timeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lock: str, writers: int, per_writer: int
) -> None:
    monkeypatch.setenv("HPCWRAP_LOCK", lock)
    root = tmp_path / "run_logs"
    log = create_run(
        root, RunState(task="train", group="grp", run_type="replication", objective="o"), when=T0
    )
    folder = log.path.parent
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    stop = tmp_path / "stop"
    reader = ctx.Process(
        target=_reader, args=(str(log.path), str(folder / "timeline.md"), str(stop), out)
    )
    reader.start()
    procs = [
        ctx.Process(target=_writer, args=(str(log.path), str(folder), str(root), w, per_writer))
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(540)
        assert p.exitcode == 0
    stop.touch()
    verdict, detail = out.get(timeout=60)
    reader.join(30)
    assert verdict == "ok", detail
    assert isinstance(detail, int) and detail > 10  # the reader really watched

    total = writers * per_writer
    expected = {f"writer {w:02d} update {i:02d}" for w in range(writers) for i in range(per_writer)}
    text = log.path.read_text()
    status_lines = [ln for ln in text.splitlines() if " — writer " in ln]
    assert len(status_lines) == total
    assert {ln.split(" — ", 1)[1] for ln in status_lines} == expected
    assert status_lines == sorted(status_lines)  # chronological
    state = open_run(log.path).read()
    assert len(state.status) == total
    events = (log.sidecar / "events.jsonl").read_bytes().splitlines()
    assert len(events) == total + 1
    entries = [_ENTRY.match(ln) for ln in (folder / "timeline.md").read_text().splitlines()]
    found = [m for m in entries if m]
    assert len(found) == total + 1
    assert [int(m.group(1)) for m in found] == list(range(1, total + 2))
    names = [m.group(2) for m in found]
    # chronological: by date; runs of one date in the order they were added (not by name)
    assert [n[:10] for n in names] == sorted(n[:10] for n in names)
    assert len(set(names)) == len(names)
    assert _leftovers(tmp_path) == []


def _kill_target(md: str, start: int, ready: Event) -> None:
    log = open_run(md)
    ready.set()
    k = start
    while True:
        log.add_status(f"kill-test {k:04d}", T0 + timedelta(seconds=k))
        if k % 3 == 0:

            def set_notes(s: RunState, notes: str = f"notes {k}") -> None:
                s.wandb_notes = notes

            log.update(set_notes)
        k += 1


def _statuses(text: str) -> list[int]:
    return [int(m) for m in re.findall(r"— kill-test (\d{4})$", text, re.MULTILINE)]


@pytest.mark.parametrize("lock", ["flock", "soft"])
def test_writer_killed_at_random_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lock: str
) -> None:
    monkeypatch.setenv("HPCWRAP_LOCK", lock)
    monkeypatch.setenv("HPCWRAP_LOCK_TIMEOUT", "10")
    log = create_run(
        tmp_path, RunState(task="train", run_type="replication", objective="o"), when=T0
    )
    ctx = mp.get_context("fork")
    rng = random.Random(1234)
    for _round in range(50):
        before = log.path.read_text()
        n = len([k for k in _statuses(before) if k < 9000])
        ready = ctx.Event()
        proc = ctx.Process(target=_kill_target, args=(str(log.path), n, ready))
        proc.start()
        assert ready.wait(30)
        time.sleep(rng.uniform(0, 0.02))
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
        # the file is a whole version: parses, ends cleanly, statuses contiguous
        text = log.path.read_text()
        doc = parse_document(text)
        assert doc.title is not None and text.endswith("## Next\n")
        got = [k for k in _statuses(text) if k < 9000]
        assert got == list(range(len(got))) and len(got) >= n, text
        # the next writer proceeds (a lock left by the killed writer would make it
        # raise LockTimeoutError: HPCWRAP_LOCK_TIMEOUT is 10 s, the marker grace as long)
        # and nothing is torn or lost after it
        log.add_status(f"kill-test {9000 + _round:04d}", T0 + timedelta(days=30, seconds=_round))
        after = log.path.read_text()
        got_after = [k for k in _statuses(after) if k < 9000]
        assert got_after[: len(got)] == got and got_after == list(range(len(got_after)))
        assert len([k for k in _statuses(after) if k >= 9000]) == _round + 1
        # the machine state agrees with the file
        state = open_run(log.path).read()
        assert [s.text for s in state.status] == [f"kill-test {k:04d}" for k in _statuses(after)]
        # renumber the next child's statuses after what is there now
        log.update(lambda s: None)
    assert _leftovers(tmp_path) == []
