"""Benchmark: lock wait under contention, hpcwrap's own lock code vs the ``filelock`` package.

Run: .venv/bin/python tests/bench/bench_locks.py [--quick] [--poll S] [--rev REV] [--dir DIR]
(needs ``filelock``, which hpcwrap does not depend on: ``.venv/bin/pip install filelock``)

Implementations, measured in the same invocation, one after the other for
each writer count:

- ``own``: ``hpcwrap/runlog/locks.py`` as of ``--rev`` (default: the commit
  before issue 9's lock work), loaded from git into a temporary module
  (``--rev-file`` names a copy of it where there is no git checkout);
- ``filelock``: ``filelock.UnixFileLock`` (``flock``) and
  ``filelock.SoftFileLock`` on ``<lock>.soft`` (``soft``), polling every
  ``--poll`` seconds (filelock waits by polling; its default is 50 ms);
- ``checkout``: this checkout's ``hpcwrap.runlog.locks.Lock`` (``--no-checkout``
  leaves it out).

For 1, 8 and 32 concurrent writer processes and each lock kind, every writer
takes the lock ``--per-writer`` times and holds it for an update like a run
log's (read a file, write a temp file, fsync, rename). Printed per row: the
wait (from asking for the lock to holding it) median and p99 over all
acquisitions, the worst wait, and acquisitions per second; then the p99 ratio
filelock/own, the figure issue 9 decides by (above 2x for 32 writers: keep
our own). Asserts only that no update went missing (a broken lock loses some).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType
from typing import Any

from hpcwrap.runlog import locks as checkout

# The last commit before issue 9's lock work (own flock + soft lock, process-wide configure()).
OWN_CODE_REV = "c0123f7bc6f9e8e560e50e3693c3671b10a99c17"
REPO = Path(__file__).resolve().parents[2]
_POLL = [0.001]


def _filelock() -> Any:
    return importlib.import_module("filelock")


def _import_file(path: str, name: str = "hpcwrap_locks_own") -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # @dataclass looks its module up in sys.modules: unregistered, every writer raised
    # and the parent waited for them forever (found measuring issue 31)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _update(data: Path, line: bytes) -> None:
    """A run-log update in small: read, write a temp file, fsync, rename."""
    old = data.read_bytes() if data.exists() else b""
    tmp = data.with_name(data.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, old + line)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, data)


def _held(impl: str, kind: str, lock_path: Path, own_file: str) -> Callable[[], Any]:
    if impl == "filelock":
        filelock = _filelock()
        if kind == "flock":
            fl = filelock.UnixFileLock(lock_path, poll_interval=_POLL[0], fallback_to_soft=False)
        else:
            fl = filelock.SoftFileLock(f"{lock_path}.soft", poll_interval=_POLL[0])
        return lambda: fl.acquire(timeout=600)
    module = checkout if impl == "checkout" else _import_file(own_file)
    lock = module.Lock(lock_path, timeout=600)
    return lambda: lock.held()


def _writer(
    impl: str,
    kind: str,
    own_file: str,
    folder: str,
    writer: int,
    count: int,
    start: Any,
    out: Any,
) -> None:
    data = Path(folder) / "data.txt"
    held: Callable[[], AbstractContextManager[object]] = _held(
        impl, kind, Path(folder) / "lock", own_file
    )
    with held():  # imports and first-use costs are not what is measured
        pass
    waits: list[float] = []
    start.wait()
    for i in range(count):
        t = time.perf_counter()
        with held():
            waits.append(time.perf_counter() - t)
            _update(data, f"writer {writer} update {i}\n".encode())
    out.put(waits)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(
    impl: str, kind: str, own_file: Path, folder: Path, writers: int, per_writer: int
) -> dict[str, float]:
    folder.mkdir(parents=True)
    ctx = mp.get_context("fork")
    start = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_writer,
            args=(impl, kind, str(own_file), str(folder), w, per_writer, start, out),
        )
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    time.sleep(0.3)
    t = time.perf_counter()
    start.set()
    waits: list[float] = []
    for _ in procs:
        waits.extend(out.get(timeout=900))
    wall = time.perf_counter() - t
    for p in procs:
        p.join()
    lines = (folder / "data.txt").read_text().splitlines()
    assert len(lines) == writers * per_writer, f"{impl} {kind}: an update went missing"
    return {
        "median": statistics.median(waits),
        "p99": _pct(waits, 0.99),
        "max": max(waits),
        "rate": len(waits) / wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 acquisitions per writer, not 60")
    ap.add_argument("--per-writer", type=int, default=0, help="acquisitions per writer")
    ap.add_argument("--writers", default="1,8,32", help="writer counts (default: 1,8,32)")
    ap.add_argument("--kinds", default="flock,soft", help="lock kinds (default: flock,soft)")
    ap.add_argument(
        "--poll", type=float, default=_POLL[0], help="filelock's poll interval (default: 0.001 s)"
    )
    ap.add_argument("--rev", default=OWN_CODE_REV, help="git revision of the own lock code")
    ap.add_argument("--rev-file", help="that revision's locks.py as a file (no git needed)")
    ap.add_argument("--no-checkout", action="store_true", help="leave this checkout's out")
    ap.add_argument("--dir", help="folder for the lock files (default: a temp folder)")
    args = ap.parse_args()
    try:
        filelock = _filelock()
    except ImportError:
        print("needs filelock: .venv/bin/pip install filelock", file=sys.stderr)
        return 2
    _POLL[0] = args.poll
    per_writer = args.per_writer or (20 if args.quick else 60)
    impls = ("own", "filelock") + (() if args.no_checkout else ("checkout",))
    base = Path(tempfile.mkdtemp(prefix="hpcwrap-bench-locks-", dir=args.dir))
    try:
        if args.rev_file:
            own_file = Path(args.rev_file).resolve()
        else:
            own_file = base / "locks_own.py"
            own_file.write_text(
                subprocess.run(
                    ["git", "-C", str(REPO), "show", f"{args.rev}:hpcwrap/runlog/locks.py"],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
        print(
            f"lock wait, {per_writer} acquisitions per writer, {os.cpu_count()} CPUs, "
            f"folder {base}\nown = hpcwrap/runlog/locks.py at {args.rev[:12]}; "
            f"filelock {filelock.__version__} polling every {args.poll * 1e3:g} ms"
        )
        ms = 1e3
        for kind in args.kinds.split(","):
            os.environ["HPCWRAP_LOCK"] = kind
            for writers in (int(w) for w in args.writers.split(",")):
                res = {}
                for impl in impls:
                    folder = base / f"{kind}-{writers}-{impl}"
                    res[impl] = r = run(impl, kind, own_file, folder, writers, per_writer)
                    print(
                        f"  {kind:5s} writers={writers:2d} {impl:8s}"
                        f"  median {r['median'] * ms:8.3f} ms  p99 {r['p99'] * ms:8.3f} ms"
                        f"  max {r['max'] * ms:8.1f} ms  {r['rate']:6.0f} acq/s"
                    )
                ratio = res["filelock"]["p99"] / max(res["own"]["p99"], 1e-9)
                print(f"  {kind:5s} writers={writers:2d} p99 filelock/own {ratio:5.2f}x")
                sys.stdout.flush()
    finally:
        os.environ.pop("HPCWRAP_LOCK", None)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
