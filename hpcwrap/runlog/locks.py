"""One lock per run log and per shared index, chosen for the filesystem they live on.

Two kinds:

- ``flock``: ``fcntl.flock`` on a lock file. The kernel drops it when the
  holder dies, so a dead process can never block anyone. Used wherever flock
  is coherent across the machines that share the folder: local disks, NFS
  (Linux emulates flock with NFS byte-range locks), Lustre/GPFS mounted with
  ``flock``.
- ``soft``: an exclusively created marker file holding ``pid@host start``.
  Used where flock is missing or only local to one client: Lustre mounted
  ``localflock``/``noflock``, NFS mounted ``local_lock=flock|all``, or a
  filesystem whose flock call fails. A marker left by a dead process on this
  host is broken automatically (the pid is gone, or now belongs to a process
  that started later); a holder on another host cannot be checked from here,
  so a waiter times out naming the marker and its holder.

The kind and the wait are a ``LockConfig`` handed to whoever makes locks
(``RunLog(locks=...)``, ``open_run``, ``create_run``, ``reindex``, the index
edits); nothing is configured process-wide. Without one,
``LockConfig.from_env()`` is read when the lock is taken. The kind is, in
order: ``HPCWRAP_LOCK=flock|soft`` in the environment, then the ``lock``
setting of hpcwrap.toml where the caller passed it, then detection per
filesystem (``auto``). Every machine that writes the same run_logs/ must end
up with the same kind; set ``HPCWRAP_LOCK`` cluster-wide when in doubt. The
wait is ``HPCWRAP_LOCK_TIMEOUT`` seconds (default 60), then
``LockTimeoutError`` names the lock file and the last holder.

Why not the ``filelock`` package (4.3.1 measured, tests/bench/bench_locks.py,
figures in docs/development.md): its UnixFileLock waits by polling; under 32
concurrent writers its p99 wait stayed within 2x of the kernel queue's used
here only when polling every millisecond (1.2x-2.5x; 6.7x at 5 ms). Its
SoftFileLock kept up, but it creates its marker empty and writes the holder
after; a writer killed in between leaves an empty marker that filelock never
breaks (it reads it as a pre-3.22 holder), so the run log stays locked until
a person deletes it (tests/unit/test_runlog_concurrency.py kills writers at
random points and caught it). And filelock's fixes to that lock's stale-lock
break (4.2.1, 4.2.6, October 2026) need Python 3.11; hpcwrap supports 3.10.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hpcwrap.errors import ConfigError, LockTimeoutError
from hpcwrap.runlog.fsio import NOFOLLOW

LOCK_ENV = "HPCWRAP_LOCK"
TIMEOUT_ENV = "HPCWRAP_LOCK_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
MODES = ("auto", "flock", "soft")
# A soft marker still empty after this long was left by a writer killed while creating it.
EMPTY_MARKER_GRACE = 10.0

_detected: dict[int, str] = {}  # st_dev -> kind
_held = threading.local()
_Release = Callable[[], None]


@dataclass(frozen=True)
class LockConfig:
    """The lock kind (``auto|flock|soft``) and the default wait in seconds."""

    mode: str = "auto"
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"lock: expected one of {', '.join(MODES)}, got {self.mode!r}")
        if not (self.timeout >= 0 and math.isfinite(self.timeout)):
            raise ConfigError(f"lock timeout: expected seconds, got {self.timeout!r}")

    @classmethod
    def from_env(cls, mode: str = "auto", timeout: float = DEFAULT_TIMEOUT) -> LockConfig:
        """``mode`` (hpcwrap.toml's ``lock``) and ``timeout``, under the environment now."""
        env = os.environ.get(LOCK_ENV, "").strip()
        if env and env not in MODES:
            raise ConfigError(f"{LOCK_ENV}={env!r}: expected one of {', '.join(MODES)}")
        raw = os.environ.get(TIMEOUT_ENV)
        if raw:
            try:
                timeout = float(raw)
            except ValueError:
                raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: expected seconds") from None
        return cls(mode=env or mode, timeout=timeout)

    def kind(self, folder: Path) -> str:
        """``flock`` or ``soft`` for the locks in ``folder``."""
        return detect(folder) if self.mode == "auto" else self.mode


def _mount_options(
    path: Path, mountinfo: str = "/proc/self/mountinfo"
) -> tuple[str, set[str]] | None:
    """(fstype, mount + superblock options) of the mount holding ``path``.

    None when no visible mount holds it: in a chroot (or a container whose
    root is no mount of its own) mountinfo lists only the mounts inside the
    root, not the one the root lives on, and some sandboxes have no
    mountinfo at all. The caller then relies on its flock probe alone.
    """
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as fh:
            entries = fh.read().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best: tuple[int, str, set[str]] | None = None
    for line in entries:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        rfields = right.split()
        if len(fields) < 6 or len(rfields) < 3:
            continue
        mount_point = fields[4].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if not inside:
            continue
        if best is None or len(mount_point) >= best[0]:
            opts = set(fields[5].split(",")) | set(rfields[2].split(","))
            best = (len(mount_point), rfields[0], opts)
    return (best[1], best[2]) if best else None


def detect(folder: Path) -> str:
    """``flock`` or ``soft`` for a folder, from its mount options and a probe."""
    try:
        dev = os.stat(folder).st_dev
    except OSError:
        dev = -1
    if dev in _detected:
        return _detected[dev]
    kind = "flock"
    mount = _mount_options(folder)
    if mount is not None:
        fstype, opts = mount
        if fstype.startswith("lustre") and opts & {"localflock", "noflock"}:
            kind = "soft"
        if fstype.startswith("nfs") and opts & {"local_lock=flock", "local_lock=all"}:
            kind = "soft"
    if kind == "flock":
        probe = folder / f".hpcwrap-lockprobe-{os.getpid()}"
        try:
            fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(probe)
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                kind = "soft"
    _detected[dev] = kind
    return kind


# ---------------------------------------------------------------- holders

_HOST = socket.gethostname()


def _start_ticks(pid: int) -> str | None:
    """Process start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


_SELF_START: dict[int, str | None] = {}  # by pid: a forked child must not reuse its parent's


def holder_id() -> str:
    """``pid@host start`` for this process."""
    pid = os.getpid()
    if pid not in _SELF_START:
        _SELF_START[pid] = _start_ticks(pid)
    start = _SELF_START[pid]
    return f"{pid}@{_HOST}" + (f" {start}" if start else "")


def _holder_is_dead(text: str) -> bool:
    """True only when the holder is on this host and provably gone."""
    parts = text.split()  # "pid@host start-ticks epoch"
    if not parts:
        return False
    who = parts[0]
    start = parts[1] if len(parts) > 2 else None
    pid_s, at, host = who.partition("@")
    if not at or host != _HOST or not pid_s.isdigit():
        return False
    pid = int(pid_s)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    if start:
        now_start = _start_ticks(pid)
        if now_start is not None and now_start != start:
            return True  # the pid was reused
    return False


def _read_holder(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(200).strip()
    except OSError:
        return None
    return text.split(" ", 1)[0] or None


# ---------------------------------------------------------------- the lock


def _wait_flock(fd: int, timeout: float) -> bool:
    """Wait for a contended flock in the kernel's queue, not by polling; False on timeout.

    A helper thread makes the blocking ``flock`` call (the lock belongs to the
    open file, not the thread) while this thread waits with a timeout. On a
    timeout the helper is abandoned: if it gets the lock later it closes the
    file at once, which releases it. Waiting in the kernel wakes a waiter as
    soon as the holder lets go; polling left some writers starving for a
    second under 32-way contention (see tests/bench/bench_runlog.py).
    """
    done = threading.Event()
    guard = threading.Lock()
    state: dict[str, object] = {"abandoned": False, "error": None}

    def waiter() -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            state["error"] = exc
        with guard:
            if state["abandoned"]:
                os.close(fd)
                return
            done.set()

    threading.Thread(target=waiter, name="hpcwrap-flock-wait", daemon=True).start()
    try:
        got = done.wait(timeout)
    except BaseException:
        got = False
        with guard:
            if not done.is_set():
                state["abandoned"] = True
        if done.is_set():
            os.close(fd)
        raise
    with guard:
        if not done.is_set():
            state["abandoned"] = True
            return False
    error = state["error"]
    if isinstance(error, OSError):
        os.close(fd)
        raise error
    return got or done.is_set()


class Lock:
    """A lock on one file path. Reentrant within a thread; use as a context manager."""

    def __init__(
        self, path: Path, timeout: float | None = None, config: LockConfig | None = None
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.config = config  # None: LockConfig.from_env() when the lock is taken

    def _key(self) -> str:
        return f"{os.getpid()}:{self.path}"  # a forked child holds nothing of its parent's

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        counts: dict[str, int] = getattr(_held, "counts", None) or {}
        _held.counts = counts
        key = self._key()
        if counts.get(key):
            counts[key] += 1
            try:
                yield
            finally:
                counts[key] -= 1
            return
        config = self.config if self.config is not None else LockConfig.from_env()
        kind = config.kind(self.path.parent)
        timeout = config.timeout if self.timeout is None else self.timeout
        release = self._acquire_soft(timeout) if kind == "soft" else self._acquire_flock(timeout)
        counts[key] = 1
        try:
            yield
        finally:
            counts[key] = 0
            release()

    def _timeout(self, lock_file: Path, timeout: float, kind: str) -> LockTimeoutError:
        holder = _read_holder(lock_file)
        who = f"held by {holder}" if holder else "holder unknown"
        hint = ""
        if kind == "soft":
            hint = "; if that process is gone (it may be on another host), delete the lock file"
        return LockTimeoutError(
            f"timed out after {timeout:g}s waiting for the lock {lock_file} ({who}){hint}",
            lock_file,
            holder,
        )

    def _acquire_flock(self, timeout: float) -> _Release:
        lock_file = self.path
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not _wait_flock(fd, timeout):  # fd now belongs to the abandoned waiter
                raise self._timeout(lock_file, timeout, "flock") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            # Name the holder for anyone who times out waiting (waiters never truncate).
            os.ftruncate(fd, 0)
            os.pwrite(fd, (holder_id() + "\n").encode(), 0)
        except OSError:
            pass  # naming the holder is a courtesy; the lock is held either way

        def release() -> None:
            os.close(fd)  # closing drops the flock

        return release

    def _acquire_soft(self, timeout: float) -> _Release:
        marker = self.path.with_name(self.path.name + ".soft")
        deadline = time.monotonic() + timeout
        delay = 0.001
        note = (holder_id() + f" {time.time():.0f}\n").encode()
        while True:
            if _create_marker(marker, note):
                break
            self._break_if_stale(marker)
            now = time.monotonic()
            if now >= deadline:
                raise self._timeout(marker, timeout, "soft")
            time.sleep(min(delay * (0.5 + random.random()), deadline - now))
            delay = min(delay * 1.5, 0.01)

        def release() -> None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(marker)

        return release

    @staticmethod
    def _break_if_stale(marker: Path) -> None:
        try:
            st = os.stat(marker)
            with open(marker, encoding="utf-8", errors="replace") as fh:
                text = fh.read(200)
        except OSError:
            return
        stale = (
            _holder_is_dead(text)
            if text.strip()
            else (time.time() - st.st_mtime > EMPTY_MARKER_GRACE)
        )
        if not stale:
            return
        # Move it aside first so two breakers cannot both delete a fresh marker.
        aside = marker.with_name(f"{marker.name}.stale-{os.getpid()}")
        try:
            os.rename(marker, aside)
        except OSError:
            return
        try:
            with open(aside, encoding="utf-8", errors="replace") as fh:
                moved = fh.read(200)
            if moved != text:  # someone else's fresh marker: put it back if we can
                with contextlib.suppress(OSError):
                    os.link(aside, marker, follow_symlinks=False)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(aside)


def _create_marker(marker: Path, note: bytes) -> bool:
    """Create ``marker`` holding ``note`` atomically; False if it exists already.

    The note is written to a private file first and hard-linked into place, so
    a writer killed at any point never leaves an empty marker that nobody can
    attribute (link(2) is atomic on NFS too). Filesystems without hard links
    fall back to O_EXCL + write.
    """
    private = marker.with_name(f"{marker.name}.{socket.gethostname()}.{os.getpid()}")
    try:
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW, 0o666)
        try:
            os.write(fd, note)
        finally:
            os.close(fd)
        try:
            os.link(private, marker, follow_symlinks=False)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(private)
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o666)
    except FileExistsError:
        return False
    try:
        os.write(fd, note)
    finally:
        os.close(fd)
    return True
