"""Copying the child's output to the wrapper's own stdout/stderr, byte for byte.

One thread per pipe reads with ``os.read`` and writes everything it read with
``os.write`` before reading again: no decoding, no line splitting, no buffering
beyond the chunk in hand, so bytes keep their order and a line the child wrote
reaches the output file as soon as the child wrote it. What happens to the scan
copy (``on_chunk``) never delays the write: it runs after it, and the scanner's
``offer`` does not block.

Write errors on our side never stop the draining of the child's pipe (a child
blocked on a full pipe would hang): EPIPE/EBADF mark that output dead for good,
other errors (ENOSPC, EIO) drop that chunk, both are reported once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable

READ_SIZE = 256 * 1024
# After a small read, wait this long before the next one: a chatty child's lines then
# arrive a few at a time (one read, one write, one hand-off for several lines) instead
# of one thread wake-up per line. 10 ms is far below what a person notices; the child
# keeps writing into the pipe meanwhile (a 1 MiB buffer), so it is never blocked.
COALESCE = 0.01
SMALL_READ = 16 * 1024
PIPE_SIZE = 1024 * 1024  # Linux's default unprivileged maximum (fs.pipe-max-size)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_PERMANENT = frozenset({errno.EPIPE, errno.EBADF, errno.EINVAL})

ChunkHandler = Callable[[int, bytes], None]
WriteErrorHandler = Callable[[int, OSError, bool], None]


def enlarge_pipe(fd: int, size: int = PIPE_SIZE) -> int | None:
    """Ask for a bigger pipe buffer (fewer wake-ups, more slack); best effort."""
    try:
        return fcntl.fcntl(fd, _F_SETPIPE_SZ, size)
    except OSError:
        return None


def same_file(fd_a: int, fd_b: int) -> bool:
    """True when both fds lead to the same file (Slurm's default: one output file)."""
    try:
        a, b = os.fstat(fd_a), os.fstat(fd_b)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _wait_writable(fd: int, timeout: float = 1.0) -> None:
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        poller.poll(int(timeout * 1000))
    except (OSError, ValueError):
        pass


class Pump(threading.Thread):
    """Copies ``src_fd`` to ``dst_fd`` until EOF; hands every chunk to ``on_chunk`` after."""

    def __init__(
        self,
        stream: int,
        src_fd: int,
        dst_fd: int,
        *,
        on_chunk: ChunkHandler | None = None,
        on_write_error: WriteErrorHandler | None = None,
        read_size: int = READ_SIZE,
        coalesce: float = COALESCE,
    ) -> None:
        super().__init__(name=f"hpcwrap-pump-{stream}", daemon=True)
        self.stream = stream
        self.src_fd = src_fd
        self.dst_fd = dst_fd
        self.on_chunk = on_chunk
        self.on_write_error = on_write_error
        self.read_size = read_size
        self.coalesce = coalesce
        self.bytes_in = 0
        self.bytes_dropped = 0
        self.dst_dead = False
        self.read_error: OSError | None = None
        self._reported: set[int] = set()

    def run(self) -> None:
        src = self.src_fd
        read = os.read
        size = self.read_size
        on_chunk = self.on_chunk
        while True:
            try:
                data = read(src, size)
            except BlockingIOError:
                select.select([src], [], [], 1.0)
                continue
            except OSError as exc:  # EINTR is retried by Python itself (PEP 475)
                self.read_error = exc
                break
            if not data:
                break
            self.bytes_in += len(data)
            if self.dst_dead:
                self.bytes_dropped += len(data)
            else:
                self._write(data)
            if on_chunk is not None:
                # Scanning is best effort; the copy must go on whatever happens there.
                with contextlib.suppress(Exception):
                    on_chunk(self.stream, data)
            if len(data) < SMALL_READ and self.coalesce:
                time.sleep(self.coalesce)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        fd = self.dst_fd
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                # Our stdout was handed to us non-blocking: wait, never drop.
                _wait_writable(fd)
                continue
            except OSError as exc:
                permanent = exc.errno in _PERMANENT
                if permanent:
                    self.dst_dead = True
                self.bytes_dropped += len(view)
                if exc.errno not in self._reported:
                    self._reported.add(exc.errno or 0)
                    if self.on_write_error is not None:
                        with contextlib.suppress(Exception):
                            self.on_write_error(self.stream, exc, permanent)
                return
            view = view[n:]


__all__ = ["PIPE_SIZE", "READ_SIZE", "Pump", "enlarge_pipe", "same_file"]


def pumps_for(
    proc: subprocess.Popen[bytes],
    out_fds: tuple[int, int],
    on_chunk: ChunkHandler,
    on_write_error: WriteErrorHandler,
) -> list[Pump]:
    """One copy thread per pipe of ``proc`` (stdout, and stderr unless merged into it),
    writing to ``out_fds`` (the wrapper's stdout and stderr); not started."""
    assert proc.stdout is not None
    streams = [(1, proc.stdout, out_fds[0])]
    if proc.stderr is not None:
        streams.append((2, proc.stderr, out_fds[1]))
    pumps = []
    for stream, pipe, fd in streams:
        enlarge_pipe(pipe.fileno())
        pumps.append(
            Pump(stream, pipe.fileno(), fd, on_chunk=on_chunk, on_write_error=on_write_error)
        )
    return pumps
