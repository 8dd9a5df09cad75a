"""The one locked edit of timeline.md and experiments.md (runlog/indexfile.py)."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from hpcwrap.errors import LockTimeoutError
from hpcwrap.runlog import experiments, timeline
from hpcwrap.runlog.indexfile import edit_lines, index_lock_path
from hpcwrap.runlog.locks import Lock

CTX = mp.get_context("fork")


@pytest.fixture(params=["flock", "soft"])
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    # The lock kind for this process and the processes it forks.
    monkeypatch.setenv("HPCWRAP_LOCK", request.param)
    return str(request.param)


def _hold(lock_path: str, ready: Event, release: Event) -> None:
    with Lock(Path(lock_path)).held():
        ready.set()
        release.wait(30)


@contextlib.contextmanager
def _held_elsewhere(lock_path: Path) -> Iterator[None]:
    ready, release = CTX.Event(), CTX.Event()
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    proc = CTX.Process(target=_hold, args=(str(lock_path), ready, release))
    proc.start()
    try:
        assert ready.wait(10)
        yield
    finally:
        release.set()
        proc.join(10)


def test_index_lock_names_are_the_ones_earlier_releases_used(tmp_path: Path) -> None:
    # An older hpcwrap writing the same run_logs/ must still exclude a newer one.
    assert index_lock_path(tmp_path / "timeline.md") == tmp_path / ".hpcwrap" / "timeline.lock"
    assert (
        index_lock_path(tmp_path / "experiments.md") == tmp_path / ".hpcwrap" / "experiments.lock"
    )


def test_edit_lines_keeps_line_ends_and_ends_with_a_newline(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "timeline.md"
    path.write_bytes(b"# T\r\n1. a\r\nno final newline")
    lock = Lock(index_lock_path(path))

    def edit(lines: list[str]) -> str:
        assert lines == ["# T", "1. a", "no final newline"]
        lines.append("2. b")
        return "done"

    assert edit_lines(path, lock, edit) == "done"
    assert path.read_bytes() == b"# T\r\n1. a\r\nno final newline\r\n2. b\r\n"


def test_edit_lines_creates_a_missing_file_and_the_lock_folder(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "g" / "timeline.md"
    path.parent.mkdir()
    edit_lines(path, Lock(index_lock_path(path)), lambda lines: lines.append("x"))
    assert path.read_bytes() == b"x\n"
    assert (path.parent / ".hpcwrap").is_dir()


def _edit_that_changes_nothing(lines: list[str]) -> None:
    lines.append("tmp")
    lines.pop()


@pytest.mark.parametrize("edit", [_edit_that_changes_nothing, lambda lines: None])
def test_edit_lines_writes_nothing_when_nothing_changed(
    tmp_path: Path, kind: str, edit: Callable[[list[str]], None]
) -> None:
    path = tmp_path / "experiments.md"
    lock = Lock(index_lock_path(path))
    edit_lines(path, lock, edit)
    assert not path.exists()  # not even an empty file
    path.write_bytes(b"a\r\nb")  # would gain a final newline if rewritten
    before = os.stat(path)
    edit_lines(path, lock, edit)
    after = os.stat(path)
    assert path.read_bytes() == b"a\r\nb"
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_edit_lines_writes_nothing_when_the_edit_fails(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "timeline.md"
    path.write_text("1. a\n")

    def fail(lines: list[str]) -> None:
        lines.clear()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        edit_lines(path, Lock(index_lock_path(path)), fail)
    assert path.read_text() == "1. a\n"
    # ... and the lock was released.
    edit_lines(path, Lock(index_lock_path(path)), lambda lines: lines.append("2. b"))
    assert path.read_text() == "1. a\n2. b\n"


def test_edit_lines_waits_for_the_lock_it_is_given(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "timeline.md"
    lock_path = index_lock_path(path)
    calls: list[list[str]] = []
    with pytest.raises(LockTimeoutError), _held_elsewhere(lock_path):
        edit_lines(path, Lock(lock_path, timeout=0.3), calls.append)
    assert calls == [] and not path.exists()


@pytest.mark.parametrize("which", ["timeline", "experiments"])
def test_both_indexes_edit_under_their_index_lock(
    tmp_path: Path, kind: str, which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # timeline.add_runs and experiments.add_rows go through the same helper and lock file:
    # while another process holds it, they time out and leave the file alone.
    index = tmp_path / f"{which}.md"
    rows = [("r", {"description": "d", "val_loss": ""})]
    lock_path = index_lock_path(index)
    with monkeypatch.context() as short:
        short.setenv("HPCWRAP_LOCK_TIMEOUT", "0.3")
        with pytest.raises(LockTimeoutError) as err, _held_elsewhere(lock_path):
            if which == "timeline":
                timeline.add_runs(tmp_path, tmp_path, ["2026-03-11_t.md"])
            else:
                experiments.add_rows(tmp_path, rows)
    assert str(err.value.lock_file).startswith(str(lock_path))
    assert not index.exists()
    # Free again: both write.
    if which == "timeline":
        assert timeline.add_runs(tmp_path, tmp_path, ["2026-03-11_t.md"]) == 1
        assert "`2026-03-11_t.md`" in index.read_text()
    else:
        assert experiments.add_rows(tmp_path, rows) == 1
        assert index.read_text().endswith("| r | d |  |  |  |\n")


def _append_many(path: str, worker: int, n: int) -> None:
    p = Path(path)
    for i in range(n):
        lock = Lock(index_lock_path(p), timeout=60)

        def append(lines: list[str], line: str = f"{worker}.{i}") -> None:
            lines.append(line)

        edit_lines(p, lock, append)


def test_concurrent_edits_from_processes_lose_nothing(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "timeline.md"
    workers, per_worker = 6, 15
    procs = [
        CTX.Process(target=_append_many, args=(str(path), w, per_worker)) for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = path.read_text().splitlines()
    assert sorted(lines) == sorted(f"{w}.{i}" for w in range(workers) for i in range(per_worker))
    for w in range(workers):  # each writer's own edits in its order
        assert [ln for ln in lines if ln.startswith(f"{w}.")] == [
            f"{w}.{i}" for i in range(per_worker)
        ]
