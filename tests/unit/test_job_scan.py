"""The scanner: bounded memory, never blocking the copy, skipping when behind."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest

from hpcwrap.reading.formats import LineParser, Observation
from hpcwrap.reading.progress import LossHistory, Progress
from hpcwrap.reading.scan import LINE_MAX, Scanner


def make(limit: int = 1 << 20) -> tuple[Scanner, Progress, list[BaseException]]:
    progress = Progress(lambda: datetime.now(timezone.utc), time.monotonic)
    errors: list[BaseException] = []
    scanner = Scanner(
        LineParser(), progress, lambda n: None, lambda e, b: errors.append(e), queue_limit=limit
    )
    return scanner, progress, errors


def test_giant_line_without_newline_keeps_bounded_buffer() -> None:
    scanner, progress, _ = make()
    chunk = b"y" * (1 << 20)
    for _ in range(20):  # 20 MB, no newline
        scanner.feed(1, chunk)
        assert len(scanner._streams[1].partial) <= LINE_MAX
    scanner.feed(1, b" step 3 loss 0.5\n")
    assert progress.snapshot().step == 3


def test_cr_floods_are_lines() -> None:
    scanner, progress, _ = make()
    data = b"".join(
        b"\r%3d%%|#   | %d/1000 [00:01<00:02, 9.1it/s]" % (i // 10, i) for i in range(1000)
    )
    scanner.feed(2, data + b"\n")
    assert progress.snapshot().step == 999


def test_offer_skips_when_behind_and_counts() -> None:
    scanner, progress, _ = make(limit=1000)
    plain = b"x" * 600 + b"\n"
    scanner.offer(1, plain)  # queued: 601
    scanner.offer(1, plain)  # would be 1202 > limit: skipped, counted, stream marked
    assert scanner.skipped_bytes == len(plain)
    assert progress.snapshot().bytes_skipped == len(plain)
    assert scanner._gap[1] == 2 and scanner._gap[2] == 0  # lines were skipped on stdout


def test_flood_batch_reads_only_the_newest_tail() -> None:
    scanner, progress, _ = make(limit=64 << 20)
    first = b"step 1 loss 9.0\n"
    middle = b"".join(b"step %d loss 5.0\n" % i for i in range(2, 200_000))
    last = b"step 200000 loss 0.5\n"
    for part in (first, middle, last):
        scanner.offer(1, part)
    scanner.close()
    t = threading.Thread(target=scanner.run)
    t.start()
    t.join(10)
    snap = progress.snapshot()
    assert snap.step == 200_000 and snap.loss == 0.5
    assert scanner.skipped_bytes > len(middle) // 2  # most of the flood was not scanned
    assert snap.bytes_skipped == scanner.skipped_bytes


def test_gap_drops_the_fragment_after_it() -> None:
    scanner, progress, _ = make()
    scanner.feed(1, b"step 5 loss 1.0\nstep 12")  # "step 12" is unfinished...
    scanner.feed(1, b"34 loss 9.9\nstep 6 loss 0.9\n", gap=2)  # ...and lines were skipped
    snap = progress.snapshot()
    assert snap.step == 6 and snap.loss == 0.9
    assert [v for _, v in snap.train_history] == [1.0, 0.9]  # "34 loss 9.9" was not read


def test_gap_inside_a_giant_line_keeps_its_tail() -> None:
    scanner, progress, _ = make()
    scanner.feed(1, b"y" * 100_000)
    scanner.feed(1, b"y" * 200_000, gap=1)  # the middle of the giant line was skipped
    scanner.feed(1, b"y" * 1000 + b" step 9 loss 0.1\n")
    assert progress.snapshot().step == 9


def test_thread_processes_queue_then_unfinished_line() -> None:
    scanner, progress, _ = make()
    t = threading.Thread(target=scanner.run)
    t.start()
    scanner.offer(1, b"step 1 loss 2.0\n")
    scanner.offer(2, b"step 2 loss 1.5")  # no newline: read at close
    scanner.close()
    t.join(5)
    assert not t.is_alive()
    assert progress.snapshot().step == 2


def test_settle_reads_what_was_queued_before_it() -> None:
    # The scanner reads in pauses; a walltime warning must name the step printed just before.
    scanner, progress, _ = make()
    t = threading.Thread(target=scanner.run)
    t.start()
    try:
        scanner.offer(1, b"step 1 loss 2.0\n")
        deadline = time.monotonic() + 5
        while progress.snapshot().step != 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        scanner.offer(1, b"step 2 loss 1.5\n")  # lands in the thread's pause
        assert scanner.settle(timeout=5)
        assert progress.snapshot().step == 2
    finally:
        scanner.close()
        t.join(5)


def test_settle_gives_up_when_nothing_reads() -> None:
    scanner, _, _ = make()  # no thread
    scanner.offer(1, b"step 1 loss 2.0\n")
    assert scanner.settle(timeout=0.05) is False


def test_parser_exception_is_reported_once_and_scanning_goes_on() -> None:
    scanner, progress, errors = make()
    real = scanner.parser.parse
    calls = {"n": 0}

    def flaky(raw: str, stream: int = 2) -> Observation | None:
        calls["n"] += 1
        if "boom" in raw:
            raise ValueError("parser bug")
        return real(raw, stream)

    scanner.parser.parse = flaky  # type: ignore[method-assign]
    scanner.feed(1, b"step 1 loss boom\nstep 2 loss boom\nstep 3 loss 0.5\n")
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
    assert scanner.parser_errors == 2
    assert progress.snapshot().step == 3


def test_loss_history_is_bounded_and_keeps_ends() -> None:
    h = LossHistory(limit=64)
    for i in range(100_000):
        h.add(i, 1.0 / (i + 1))
    pts = h.series()
    assert len(pts) <= 65
    assert pts[0] == (0, 1.0)
    assert pts[-1] == (99_999, 1.0 / 100_000)


def test_wandb_dir_keeps_the_absolute_path_of_the_same_run() -> None:
    # What wandb 0.31 really prints for an offline run started in /w: the absolute
    # folder at init, then the same folder relative to the cwd at the end.
    scanner, progress, _ = make()
    scanner.feed(
        2,
        b"wandb: Run data is saved locally in /w/runs/wandb/offline-run-20261128_191005-wbl7vi7t\n"
        b"wandb: wandb sync /w/runs/wandb/offline-run-20261128_191005-wbl7vi7t\n"
        b"wandb: Find logs at: ./runs/wandb/offline-run-20261128_191005-wbl7vi7t/logs\n",
    )
    assert progress.snapshot().wandb_dir == "/w/runs/wandb/offline-run-20261128_191005-wbl7vi7t"
    # a new run (a second wandb.init) does replace it
    scanner.feed(2, b"wandb: Find logs at: ./runs/wandb/offline-run-20261128_200000-zzzz/logs\n")
    assert progress.snapshot().wandb_dir == "./runs/wandb/offline-run-20261128_200000-zzzz"


def test_flood_at_the_start_keeps_the_first_loss() -> None:
    """A burst bigger than a flood batch right at the start: the newest values and the
    very first train loss are both read (the middle may be skipped)."""
    progress = Progress(lambda: datetime.now(timezone.utc), time.monotonic)
    scanner = Scanner(LineParser(), progress, lambda n: None, lambda e, b: None)
    lines = [f"step {i}: loss {10 - i / 10000:.4f}\n".encode() for i in range(1, 40001)]
    scanner.offer(1, b"".join(lines))
    scanner.close()
    scanner.run()
    snap = progress.snapshot()
    assert snap.first_loss == pytest.approx(10 - 1 / 10000)
    assert snap.step == 40000 and snap.loss == pytest.approx(10 - 4)
    assert snap.bytes_skipped > 0  # the middle was skipped: the flood rule still holds


def test_flood_head_keeps_the_order_of_a_stream() -> None:
    """The head of a flood ends at its first chunk that has no line break within it: a
    later chunk of the same stream is never read before that one."""
    scanner, progress, _ = make(limit=64 << 20)
    scanner.offer(1, b"x" * 100 + b"\n")
    scanner.offer(1, b"y" * 300_000 + b" step 3 loss 2.0\n")  # a flood: over SMALL_BATCH
    scanner.offer(1, b"step 5 loss 1.0\n")
    scanner.close()
    assert scanner.read_queued()
    scanner.finish(1)
    snap = progress.snapshot()
    assert (snap.step, snap.loss) == (5, 1.0)


def test_dense_batch_reads_the_last_line_of_each_kind() -> None:
    """A dense batch is sampled by kind (a line less its numbers): the last train loss is
    the last loss dict's even where HF's summary of averages and an eval bar follow it."""
    scanner, progress, _ = make()
    bar = "{:3d}%|#         | {}/{} [00:01<00:02, 9.1it/s]"
    out = []
    for step in range(1, 101):
        out.append("\r" + bar.format(step, step, 100))
        loss = f"{{'loss': {3 / step:.4f}, 'learning_rate': 1e-05, 'epoch': {step / 100:.2f}}}"
        out.append("\r" + loss + "\n")
    out.append("\r{'train_runtime': 9.5, 'train_samples_per_second': 84.2, 'train_steps_per_second"
               "': 10.5, 'train_loss': 0.4321, 'epoch': 1.0}\n")  # fmt: skip
    out.extend("\r" + bar.format(n * 10, n, 10) for n in range(11))  # an eval bar
    scanner.feed(2, "".join(out).encode() + b"\n")
    snap = progress.snapshot()
    assert scanner.sampled_out > 0
    assert (snap.first_loss, snap.loss, snap.step) == (3.0, 0.03, 100)


def test_dense_batch_ends_with_the_last_step_line_not_wandbs_summary() -> None:
    """W&B's end-of-run history/summary follows a dense batch of step lines in one pipe:
    the last "loss" line of the batch is W&B's, so the sampled last line must be the
    training's own (a real offline run under `hpcwrap run ... 2>&1` showed it)."""
    scanner, progress, _ = make()
    steps = b"".join(b"step %d: loss %.4f\n" % (s, 3.0 / s) for s in range(1, 41))
    summary = b"wandb: \nwandb: Run history:\nwandb: loss \xe2\x96\x88\xe2\x96\x81\n"
    summary += b"wandb: \nwandb: Run summary:\nwandb: loss 0.42\nwandb: step 40\n"
    scanner.feed(1, steps + summary)
    snap = progress.snapshot()
    assert scanner.sampled_out > 0  # dense: sampled, not every line read
    assert snap.first_loss == pytest.approx(3.0)
    assert snap.step == 40 and snap.loss == pytest.approx(0.075)
