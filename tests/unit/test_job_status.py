"""When Status entries and events are written (a fake clock drives the policy)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hpcwrap.job.status import StatusConfig, StatusPolicy, Write, progress_fields
from hpcwrap.reading.formats import Observation
from hpcwrap.reading.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.base = datetime(2026, 3, 11, 15, 0, tzinfo=timezone.utc)

    def mono(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return self.base + timedelta(seconds=self.t - 1000.0)

    def advance(self, seconds: float) -> None:
        self.t += seconds


def setup(**cfg: float) -> tuple[Clock, Progress, StatusPolicy]:
    clock = Clock()
    progress = Progress(clock.wall, clock.mono)
    conf = StatusConfig(
        status_every=cfg.get("status_every", 1800.0),
        stall_after=cfg.get("stall_after", 1200.0),
        min_interval=cfg.get("min_interval", 60.0),
        progress_event_every=cfg.get("progress_event_every", 10.0),
    )
    return clock, progress, StatusPolicy(conf, clock.mono())


def feed(progress: Progress, policy: StatusPolicy, obs: Observation) -> None:
    n = progress.apply(obs)
    progress.note_output(1, 20)
    if n:
        policy.notable(n, progress.snapshot())


def statuses(writes: list[Write]) -> list[str]:
    return [w.text for w in writes if w.text is not None]


def test_first_progress_then_rate_limited() -> None:
    clock, progress, policy = setup()
    feed(progress, policy, Observation(step=0, step_total=100))
    assert statuses(policy.decide(clock.mono(), progress.snapshot())) == []  # a bar at 0/N only
    clock.advance(1)
    feed(progress, policy, Observation(step=10, loss=2.31))
    out = statuses(policy.decide(clock.mono(), progress.snapshot()))
    assert out == ["running, step 10/100, train_loss 2.31"]
    # A checkpoint 5 s later must wait for the minimum interval...
    clock.advance(5)
    feed(progress, policy, Observation(step=20, loss=1.5, checkpoint="c/20", checkpoint_saved=True))
    assert statuses(policy.decide(clock.mono(), progress.snapshot())) == []
    for _ in range(30):  # ...while lines keep coming
        clock.advance(1)
        feed(progress, policy, Observation(step=progress.snapshot().step + 1, loss=1.4))  # type: ignore[operator]
        assert statuses(policy.decide(clock.mono(), progress.snapshot())) == []
    clock.advance(30)
    out = statuses(policy.decide(clock.mono(), progress.snapshot()))
    assert out == ["running, step 50/100, train_loss 1.4, ckpt step 20"]


def test_chatty_job_stays_bounded() -> None:
    clock, progress, policy = setup(min_interval=60.0)
    n_status = n_events = 0
    for i in range(36_000):  # an hour at 10 lines/s, every line a checkpoint and an error
        clock.advance(0.1)
        feed(
            progress,
            policy,
            Observation(
                step=i,
                loss=1.0,
                checkpoint=f"c/{i}",
                checkpoint_saved=True,
                error=f"e{i % 5}",
                error_kind="exception",
            ),
        )
        writes = policy.decide(clock.mono(), progress.snapshot())
        n_status += len(statuses(writes))
        n_events += len(writes)
    assert n_status <= 61
    assert n_events <= 61 + 360 * 2 + 20  # progress + checkpoint events at most every 10 s


def test_progress_events_coalesced() -> None:
    clock, progress, policy = setup(progress_event_every=10.0)
    kinds: list[str] = []
    for i in range(100):
        clock.advance(1)
        feed(progress, policy, Observation(step=i, loss=1.0 / (i + 1)))
        kinds += [w.event for w in policy.decide(clock.mono(), progress.snapshot())]
    assert 9 <= kinds.count("progress") <= 11


def test_stall_detection_with_fake_clock() -> None:
    clock, progress, policy = setup(stall_after=1200.0, status_every=1e9)
    feed(progress, policy, Observation(step=2400, loss=0.085))
    assert statuses(policy.decide(clock.mono(), progress.snapshot()))  # first progress
    last_step_wall = clock.wall()
    clock.advance(1199)
    progress.note_output(1, 10)  # output goes on (e.g. eval chatter), but no new step
    assert statuses(policy.decide(clock.mono(), progress.snapshot())) == []
    clock.advance(2)
    out = statuses(policy.decide(clock.mono(), progress.snapshot()))
    hhmm = last_step_wall.strftime("%H:%M")
    assert out == [f"stalled? no new step since step 2400 at {hhmm} (train_loss 0.085)"]
    clock.advance(3600)  # reported once per episode
    assert statuses(policy.decide(clock.mono(), progress.snapshot())) == []
    feed(progress, policy, Observation(step=2401, loss=0.08))
    clock.advance(1300)
    assert len(statuses(policy.decide(clock.mono(), progress.snapshot()))) == 1  # a new episode


def test_stall_without_any_progress_means_no_output() -> None:
    clock, progress, policy = setup(stall_after=600.0, status_every=1e9)
    clock.advance(601)
    out = statuses(policy.decide(clock.mono(), progress.snapshot()))
    assert out and out[0].startswith("stalled? no output since")


def test_periodic_status_every() -> None:
    clock, progress, policy = setup(status_every=1800.0, stall_after=1e9)
    feed(progress, policy, Observation(step=1, loss=3.0))
    policy.decide(clock.mono(), progress.snapshot())
    got = []
    for _ in range(7200):
        clock.advance(1)
        feed(progress, policy, Observation(step=progress.snapshot().step + 1, loss=2.0))  # type: ignore[operator]
        got += statuses(policy.decide(clock.mono(), progress.snapshot()))
    assert len(got) == 4
    assert all(t.startswith("running, step ") and "train_loss 2" in t for t in got)


def test_error_and_nan_flagged() -> None:
    clock, progress, policy = setup()
    feed(progress, policy, Observation(step=5, loss=float("nan")))
    feed(
        progress,
        policy,
        Observation(error="torch.OutOfMemoryError: CUDA out of memory.", error_kind="cuda_oom"),
    )
    writes = policy.decide(clock.mono(), progress.snapshot())
    text = statuses(writes)[0]
    assert "train_loss nan (non-finite since step 5)" in text
    assert "CUDA out of memory at step 5" in text
    assert {w.event for w in writes} >= {"error", "nonfinite_loss", "status"}


def test_signal_status_counts_for_the_interval() -> None:
    clock, progress, policy = setup()
    feed(progress, policy, Observation(step=1, loss=1.0))
    policy.wrote_status(clock.mono())
    assert statuses(policy.decide(clock.mono(), progress.snapshot())) == []


def test_progress_fields_forms() -> None:
    _, progress, _ = setup()
    progress.apply(Observation(epoch=1.5))
    assert progress_fields(progress.snapshot()) == ["epoch 1.5"]
    progress.apply(Observation(step=7, val_loss=0.25, checkpoint=None, checkpoint_saved=True))
    assert progress_fields(progress.snapshot()) == ["step 7", "val_loss 0.25", "ckpt step 7"]
