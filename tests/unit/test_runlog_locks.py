"""Run-log and index locks: flock or soft, timeouts that name the holder, dead holders."""

from __future__ import annotations

import errno
import fcntl
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from hpcwrap.errors import ConfigError, LockTimeoutError
from hpcwrap.runlog import RunLog, RunState, create_run, locks
from hpcwrap.runlog.locks import Lock, LockConfig


def _hold(path: str, ready: Event, release: Event) -> None:
    with Lock(Path(path)).held():
        ready.set()
        release.wait(30)


@pytest.fixture(params=["flock", "soft"])
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HPCWRAP_LOCK", request.param)
    return str(request.param)


def test_timeout_names_the_lock_file_and_the_holder(tmp_path: Path, kind: str) -> None:
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    lock_path = tmp_path / "lock"
    proc = ctx.Process(target=_hold, args=(str(lock_path), ready, release))
    proc.start()
    try:
        assert ready.wait(10)
        t = time.monotonic()
        with pytest.raises(LockTimeoutError) as err, Lock(lock_path, timeout=0.3).held():
            pass
        assert 0.25 < time.monotonic() - t < 5
        assert f"{proc.pid}@{socket.gethostname()}" in str(err.value)
        assert str(err.value.lock_file).startswith(str(lock_path))
        assert err.value.holder == f"{proc.pid}@{socket.gethostname()}"
    finally:
        release.set()
        proc.join(10)
    with Lock(lock_path, timeout=2).held():  # free again
        pass


def test_holder_killed_does_not_block_the_next_writer(tmp_path: Path, kind: str) -> None:
    lock_path = tmp_path / "lock"
    code = (
        "import os, sys, time; from pathlib import Path; from hpcwrap.runlog.locks import Lock\n"
        f"cm = Lock(Path({str(lock_path)!r})).held(); cm.__enter__()\n"
        "print('held', flush=True); time.sleep(60)\n"
    )
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"held"
    proc.kill()
    proc.wait()
    # the verdict: taken at all (a lock left by the dead holder raises LockTimeoutError)
    with Lock(lock_path, timeout=5).held():
        pass


def test_soft_lock_on_another_host_is_not_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPCWRAP_LOCK", "soft")
    marker = tmp_path / "lock.soft"
    marker.write_text("4242@some-other-node 777 1700000000\n")
    with pytest.raises(LockTimeoutError) as err, Lock(tmp_path / "lock", timeout=0.2).held():
        pass
    assert err.value.holder == "4242@some-other-node"
    assert "delete the lock file" in str(err.value)
    assert marker.exists()


def test_soft_lock_with_reused_pid_is_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPCWRAP_LOCK", "soft")
    # our own pid, but a different process start time: the holder is long gone
    (tmp_path / "lock.soft").write_text(f"{os.getpid()}@{socket.gethostname()} 1 1700000000\n")
    with Lock(tmp_path / "lock", timeout=2).held():
        pass
    assert not (tmp_path / "lock.soft").exists()


def _try_once(path: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        with Lock(Path(path), timeout=0.2).held():
            out.put("got it")
    except LockTimeoutError:
        out.put("timed out")


def _other_process_gets(path: Path) -> str:
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    proc = ctx.Process(target=_try_once, args=(str(path), out))
    proc.start()
    proc.join(10)
    return str(out.get(timeout=5))


def test_reentrant_in_one_thread(tmp_path: Path, kind: str) -> None:
    lock = Lock(tmp_path / "lock", timeout=0.5)
    with lock.held():
        with Lock(tmp_path / "lock", timeout=0.5).held():  # no self-deadlock
            assert _other_process_gets(tmp_path / "lock") == "timed out"
        # leaving the inner hold does not release the outer one
        assert _other_process_gets(tmp_path / "lock") == "timed out"
    assert _other_process_gets(tmp_path / "lock") == "got it"
    with lock.held():
        pass


def test_env_and_config_choose_the_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCWRAP_LOCK", "bogus")
    with pytest.raises(ConfigError, match="HPCWRAP_LOCK"):
        LockConfig.from_env().kind(tmp_path)
    monkeypatch.delenv("HPCWRAP_LOCK")
    assert LockConfig.from_env("soft").kind(tmp_path) == "soft"  # the ``lock`` setting
    monkeypatch.setenv("HPCWRAP_LOCK", "flock")
    assert LockConfig.from_env("soft").kind(tmp_path) == "flock"  # the environment wins
    monkeypatch.setenv("HPCWRAP_LOCK_TIMEOUT", "7")
    assert LockConfig.from_env().timeout == 7.0
    with pytest.raises(ConfigError):
        LockConfig(mode="nfs")


def test_the_config_is_passed_not_global(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCWRAP_LOCK", "flock")  # for RunLogs without a config of their own
    log = create_run(tmp_path, RunState(task="train", run_type="replication", objective="o"))
    soft = RunLog(log.path, tmp_path, LockConfig(mode="soft"))
    marker = soft.sidecar / "lock.soft"
    with soft.lock().held():
        assert marker.exists()  # this RunLog's locks are soft...
    assert not marker.exists()
    with RunLog(log.path, tmp_path).lock().held():  # ...and no other's became soft
        assert not marker.exists()
    soft.add_status("a soft-locked write")
    assert "a soft-locked write" in log.path.read_text()


def test_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks, "_detected", {})
    assert locks.detect(tmp_path) == "flock"  # a local disk
    monkeypatch.setattr(locks, "_detected", {})
    monkeypatch.setattr(locks, "_mount_options", lambda p: ("lustre", {"rw", "localflock"}))
    assert locks.detect(tmp_path) == "soft"
    monkeypatch.setattr(locks, "_detected", {})
    monkeypatch.setattr(locks, "_mount_options", lambda p: ("nfs4", {"rw", "local_lock=all"}))
    assert locks.detect(tmp_path) == "soft"
    monkeypatch.setattr(locks, "_detected", {})
    monkeypatch.setattr(locks, "_mount_options", lambda p: ("nfs4", {"rw", "local_lock=none"}))

    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)  # the module locks uses
    assert locks.detect(tmp_path) == "soft"
    assert not list(tmp_path.iterdir())  # the probe cleaned up


MOUNTINFO_HOST = """\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
22 27 0:21 / /proc rw,relatime - proc proc rw
40 27 0:50 / /scratch rw,relatime - lustre 10.0.0.1@tcp:/fs rw,localflock
41 40 0:51 / /scratch/with\\040space rw - nfs4 srv:/x rw,local_lock=all
"""
# What a process in a chroot sees: the root's own mount lies outside it and is
# left out, so only what was mounted inside (proc, sys, dev) is listed.
MOUNTINFO_CHROOT = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,mode=755
"""


def test_mount_options_finds_the_mount(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO_HOST)
    root = ("ext4", {"rw", "relatime", "discard"})
    assert locks._mount_options(Path("/scratch/run"), str(info)) == (
        "lustre", {"rw", "relatime", "localflock"})  # fmt: skip
    assert locks._mount_options(Path("/scratch/with space/x"), str(info)) == (
        "nfs4", {"rw", "local_lock=all"})  # fmt: skip
    assert locks._mount_options(Path("/home/u"), str(info)) == root
    assert locks._mount_options(Path("/"), str(info)) == root


def test_mount_options_none_when_no_visible_mount_holds_the_path(tmp_path: Path) -> None:
    """A chroot or container: a defined answer (None), and detection still works."""
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO_CHROOT)
    assert locks._mount_options(tmp_path, str(info)) is None
    assert locks._mount_options(tmp_path, str(tmp_path / "absent")) is None
    # This machine, whatever its layout: a mount with a type, or None, never an error.
    found = locks._mount_options(tmp_path)
    assert found is None or found[0]


def test_detection_without_a_visible_mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks, "_detected", {})
    monkeypatch.setattr(locks, "_mount_options", lambda p: None)
    assert locks.detect(tmp_path) == "flock"  # the probe decides
    assert not list(tmp_path.iterdir())
