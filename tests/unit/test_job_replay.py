"""The same output gives the same Results whatever its pace (issue 28, item 3).

Every sample in tests/unit/job_samples is replayed through the wrapper's scanner
(``Scanner.offer`` then ``read_queued``: the batches the scanner thread would form)
at several paces, and the Results figures must equal those of reading every line.
The pace only changes how chunks fall into batches (the scanner samples by batch, never
by clock), so no test here sleeps. Each pace runs twice: with the wrapper's sampling
threshold, and with every batch sampled (``sparse_hits=0``), which small samples never
reach otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hpcwrap.reading.formats import LineParser
from hpcwrap.reading.progress import Progress
from hpcwrap.reading.scan import SPARSE_HITS, Scanner

SAMPLES = Path(__file__).parent / "job_samples"
NAMES = sorted(p.name for p in SAMPLES.glob("*.log"))

Batches = Iterator[list[bytes]]  # the chunks offered before each read_queued


def burst(data: bytes, _rng: random.Random) -> Batches:
    yield [data]


def by_line(data: bytes, _rng: random.Random) -> Batches:
    for line in data.splitlines(keepends=True):
        yield [line]


def random_chunks(data: bytes, rng: random.Random) -> Batches:
    """Chunks of 1 to 97 bytes (lines and ``\\r`` redraws cut anywhere), a few to a batch."""
    pos = 0
    while pos < len(data):
        batch = []
        for _ in range(rng.randint(1, 8)):
            size = rng.randint(1, 97)
            batch.append(data[pos : pos + size])
            pos += size
        yield [c for c in batch if c]


def at_each_cr(data: bytes, _rng: random.Random) -> Batches:
    """Cut right after every ``\\r`` and read each piece alone (a redraw per read)."""
    pieces = data.split(b"\r")
    for i, piece in enumerate(pieces):
        yield [piece + (b"\r" if i < len(pieces) - 1 else b"")]


def ends_slowly(data: bytes, _rng: random.Random) -> Batches:
    """The first and the last line each read alone, everything between in one batch."""
    lines = data.splitlines(keepends=True)
    if len(lines) < 3:
        yield from by_line(data, _rng)
        return
    yield [lines[0]]
    yield [b"".join(lines[1:-1])]
    yield [lines[-1]]


PACES: dict[str, Callable[[bytes, random.Random], Batches]] = {
    "burst": burst,
    "by_line": by_line,
    "random_chunks": random_chunks,
    "at_each_cr": at_each_cr,
    "ends_slowly": ends_slowly,
}


def results(progress: Progress) -> dict[str, object]:
    """The Results figures the console gives (job/results.figures_of and the checkpoint)."""
    progress.end_of_output(True)
    snap = progress.snapshot()
    ck = snap.checkpoint
    pend = snap.pending_save
    return {
        "final_step": snap.step,
        "start_train_loss": snap.first_loss_text,
        "end_train_loss": snap.loss_text,
        "start_val_loss": snap.first_val_loss_text,
        "end_val_loss": snap.val_loss_text,
        "checkpoint": (ck.path, ck.step) if ck is not None else None,
        "save_not_completed": (pend.path, pend.step) if pend is not None else None,
    }


def _clock() -> Progress:
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return Progress(lambda: when, lambda: 0.0)


def every_line(data: bytes) -> dict[str, object]:
    progress = _clock()
    scanner = Scanner(LineParser(), progress, lambda _n: None, _raise, sample=False)
    scanner.feed(1, data)
    scanner.finish(1)
    return results(progress)


def replay(data: bytes, batches: Batches, sparse_hits: int = SPARSE_HITS) -> dict[str, object]:
    progress = _clock()
    scanner = Scanner(LineParser(), progress, lambda _n: None, _raise, sparse_hits=sparse_hits)
    for chunks in batches:
        for chunk in chunks:
            scanner.offer(1, chunk)
        scanner.read_queued()
    scanner.close()
    assert scanner.read_queued()
    scanner.finish(1)
    assert scanner.skipped_bytes == 0
    return results(progress)


def _raise(exc: BaseException, _sample: bytes) -> None:
    raise exc


@pytest.mark.parametrize("sampled", ["as_wrapper", "every_batch"])
@pytest.mark.parametrize("pace", sorted(PACES))
@pytest.mark.parametrize("name", NAMES)
def test_results_do_not_depend_on_the_pace(name: str, pace: str, sampled: str) -> None:
    data = (SAMPLES / name).read_bytes()
    want = every_line(data)
    hits = 0 if sampled == "every_batch" else SPARSE_HITS
    got = replay(data, PACES[pace](data, random.Random(f"{name}/{pace}")), hits)
    assert got == want, (name, pace, sampled)


def test_openpi_first_loss_whatever_the_pace() -> None:
    """openpi's step=0 line glued behind the bar's first draw, then bars whose postfix says
    another loss (issue 28, item 4: 0.1137 on one replay, 0.1072 on another): the first
    train loss is the step=0 line's at every pace, and so is the last of the series."""

    def line(msg: str) -> str:
        return f"15:11:40.918 [I] {msg:<80} (4242:train_pytorch.py:582)\n"

    out = ["\rTraining:   0%|          | 0/20000 [00:00<?, ?it/s]"]
    out.append(line("step=0 loss=0.4021 lr=2.50e-08 grad_norm=1.20 time=13.1s"))
    for n in range(1, 301):
        loss = 0.1137 if n % 2 else 0.1072
        post = f"1.25it/s, loss={loss:.4f}, lr=2.50e-06, step={n}"
        out.append(f"\rTraining:   0%|          | {n}/20000 [00:{n % 60:02d}<4:13:20, {post}]")
        if n == 200:
            out.append(line("step=199 loss=0.1201 lr=2.49e-06 grad_norm=0.90 time=80.0s"))
    data = "".join(out).encode() + b"\n"
    want = every_line(data)
    assert (want["start_train_loss"], want["end_train_loss"]) == ("0.4021", "0.1201")
    for pace, batches in PACES.items():
        for hits in (SPARSE_HITS, 0):
            got = replay(data, batches(data, random.Random(pace)), hits)
            assert got == want, (pace, hits)
