"""Final state, the drafted loss_one_liner, Next, and finding files the run wrote."""

from __future__ import annotations

import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from hpcwrap.job.results import (
    EndFacts,
    final_state,
    find_config_snapshot,
    loss_one_liner,
    next_steps,
    this_job_only,
)
from hpcwrap.job.status import fmt_num
from hpcwrap.reading import checkpoints
from hpcwrap.reading.formats import Observation
from hpcwrap.reading.progress import Progress, Snapshot


def snap_of(
    train: list[float], val: list[float] | None = None, step_every: int = 100, **extra: object
) -> Snapshot:
    progress = Progress(lambda: datetime.now(timezone.utc), time.monotonic)
    for i, loss in enumerate(train):
        progress.apply(Observation(step=(i + 1) * step_every, loss=loss))
    for i, v in enumerate(val or []):
        progress.apply(Observation(step=(i + 1) * step_every * 5, val_loss=v))
    for key, value in extra.items():
        progress.apply(Observation(**{key: value}))  # type: ignore[arg-type]
    return progress.snapshot()


def end(code: int = 0, **kw: Any) -> EndFacts:
    base: dict[str, Any] = dict(
        exit_code=code,
        signaled=None,
        walltime_signal=False,
        terminated_by=None,
        time_left_at_term=None,
        killed_by_us=False,
    )
    base.update(kw)
    return EndFacts(**base)


def decay(n: int, a: float = 2.3, b: float = 0.4) -> list[float]:
    return [b + (a - b) * math.exp(-4 * i / n) for i in range(n)]


@pytest.mark.parametrize(
    ("facts", "snap_kw", "want"),
    [
        (end(0), {}, "COMPLETED"),
        (end(1), {}, "FAILED"),
        (end(143, terminated_by="SIGTERM"), {}, "CANCELLED"),
        (end(143, terminated_by="SIGTERM", time_left_at_term=0.0), {}, "TIMEOUT"),
        (end(124, walltime_signal=True), {}, "TIMEOUT"),
        # a warning is evidence the limit was near, not that it was reached: exit 0 after
        # it is a completion, unless the training printed a total it did not reach
        (end(0, walltime_signal=True), {}, "COMPLETED"),
        (end(0, walltime_signal=True), {"step": 100, "step_total": 100}, "COMPLETED"),
        (end(0, walltime_signal=True), {"step": 40, "step_total": 100}, "TIMEOUT"),
        (end(1, walltime_signal=True), {}, "FAILED"),
        (
            end(137, signaled=9),
            {"error": "srun: error: n1: task 0: Out Of Memory", "error_kind": "oom_kill"},
            "OUT_OF_MEMORY",
        ),
        (
            end(1),
            {
                "error": "*** STEP 1.0 ON n1 CANCELLED AT x DUE TO TIME LIMIT ***",
                "error_kind": "time_limit",
            },
            "TIMEOUT",
        ),
    ],
)
def test_final_state(facts: EndFacts, snap_kw: dict[str, object], want: str) -> None:
    progress = Progress(lambda: datetime.now(timezone.utc), time.monotonic)
    if snap_kw:
        progress.apply(Observation(**snap_kw))  # type: ignore[arg-type]
    assert final_state(facts, progress.snapshot()) == want


def test_one_liner_steady_fall_val_tracks() -> None:
    text = loss_one_liner(snap_of(decay(200), [1.9, 1.1, 0.8, 0.6, 0.5, 0.48, 0.47, 0.46]))
    assert text is not None
    assert text.startswith("Train loss fell steadily from 2.3 to 0.4")
    assert "val loss tracked it" in text and "no sign of overfitting" in text
    assert text.endswith(".")
    # words, not a list of numbers
    assert sum(c.isdigit() for c in text) < len(text) / 5


def test_one_liner_suggests_more_steps_only_when_the_run_ran_out() -> None:
    falling = [2.3 - 0.01 * i for i in range(200)]  # still falling at the end
    snap = snap_of(falling, [2.2, 1.9, 1.7, 1.5, 1.2, 1.0, 0.8, 0.6])
    for state in ("COMPLETED", "TIMEOUT"):
        assert "more steps may help" in (loss_one_liner(snap, state) or ""), state
    for state in ("FAILED", "OUT_OF_MEMORY", "CANCELLED"):
        text = loss_one_liner(snap, state) or ""
        assert "val loss tracked it" in text and "more steps" not in text, state


def test_one_liner_overfitting() -> None:
    val = [2.0, 1.2, 0.9, 0.8, 0.85, 0.95, 1.05, 1.2]
    text = loss_one_liner(snap_of(decay(200, b=0.05), val))
    assert text is not None and "overfitting" in text and "bottomed out at 0.8" in text


def test_one_liner_plateau_noted() -> None:
    train = decay(100, 2.0, 0.5)[:40] + [0.55 + 0.002 * (-1) ** i for i in range(160)]
    text = loss_one_liner(snap_of(train))
    assert text is not None and "flattened out" in text and "no val loss was logged" in text


def test_one_liner_nan() -> None:
    text = loss_one_liner(snap_of([2.0, 1.5, 1.2, float("nan")]))
    assert text is not None and "nan/inf at step 400" in text and "diverged" in text


def test_one_liner_rising_and_flat() -> None:
    rising = loss_one_liner(snap_of([1.0 + 0.1 * i for i in range(50)]))
    assert rising is not None and "rose" in rising and "not converging" in rising
    flat = loss_one_liner(snap_of([1.0, 1.01, 0.99, 1.0] * 20))
    assert flat is not None and "stayed flat" in flat


def test_one_liner_nothing_logged() -> None:
    assert loss_one_liner(snap_of([])) is None
    one = loss_one_liner(snap_of([0.7]))
    assert one is not None and one.startswith("Only one train loss value")


def test_next_completed_needs_passport_before_eval() -> None:
    out = next_steps("COMPLETED", "/ck/300", snap_of(decay(50)))
    joined = " ".join(out)
    assert "MODEL_PASSPORT.json" in joined and "SIGNOFF.json" in joined
    for line in out:
        if "eval" in line or "upload" in line:
            assert "MODEL_PASSPORT.json" in line  # never eval/upload without passport+signoff


def test_next_completed_plateau_has_no_dangling_or() -> None:
    train = decay(100, 2.0, 0.5)[:40] + [0.55 + 0.002 * (-1) ** i for i in range(160)]
    out = next_steps("COMPLETED", "/ck/300", snap_of(train))
    assert out == [
        "generate `MODEL_PASSPORT.json` + `SIGNOFF.json` for `/ck/300`, "
        "then eval / upload / hand off"
    ]
    falling = next_steps("COMPLETED", "/ck/300", snap_of([2.0 - 0.01 * i for i in range(100)]))
    assert falling[0].startswith("resume for more steps") and falling[1].startswith("or generate")


def test_next_timeout_resume() -> None:
    out = next_steps("TIMEOUT", "/ck/250", snap_of(decay(50)))
    assert out[0].startswith("resume for more steps from `/ck/250`")
    assert not any("eval" in x for x in out)


def test_next_failed_and_no_checkpoint() -> None:
    s = snap_of([1.0], error="RuntimeError: boom", error_kind="exception")
    out = next_steps("FAILED", None, s)
    assert out == ["fix the failure first (RuntimeError: boom), then resubmit"]
    out = next_steps("COMPLETED", None, snap_of([1.0, 0.5]))
    assert any("no checkpoint path was seen" in x for x in out)


def test_find_config_snapshot(tmp_path: Path) -> None:
    since = time.time()
    out = tmp_path / "runs" / "exp1"
    out.mkdir(parents=True)
    old = tmp_path / "config_resolved.yaml"
    old.write_text("old: 1\n")
    os.utime(old, (since - 3600, since - 3600))  # from an earlier run
    new = out / "config_resolved.yaml"
    new.write_text("lr: 3e-4\n")
    found = find_config_snapshot(
        ("config_resolved.*",), cwd=tmp_path, announced=None, near=[], since=since
    )
    assert found == new
    printed = tmp_path / "elsewhere.json"
    printed.write_text("{}")
    assert (
        find_config_snapshot(("x",), cwd=tmp_path, announced="elsewhere.json", near=[], since=since)
        == printed
    )
    assert (
        find_config_snapshot(("nomatch.*",), cwd=tmp_path, announced=None, near=[], since=since)
        is None
    )


def test_find_checkpoint_on_disk(tmp_path: Path) -> None:
    since = time.time()
    (tmp_path / "outputs" / "checkpoint" / "step-644").mkdir(parents=True)
    (tmp_path / "outputs" / "checkpoint" / "step-6440").mkdir(parents=True)
    found = checkpoints.for_step(644, cwd=tmp_path, since=since)
    assert found == tmp_path / "outputs" / "checkpoint" / "step-644"
    assert checkpoints.for_step(645, cwd=tmp_path, since=since) is None


def test_next_offline_wandb_run_gets_the_sync_command() -> None:
    offline = "/s/wandb/offline-run-20261129_120000-abc123"
    out = next_steps("TIMEOUT", "/ck/250", snap_of(decay(50), wandb_dir=offline))
    assert (
        out[-1].startswith("sync the offline W&B run")
        and "`hpcwrap wandb sync --dry-run" in out[-1]
    )
    online = next_steps("TIMEOUT", "/ck/250", snap_of(decay(50), wandb_dir="/s/wandb/run-1-abc"))
    assert not any("wandb sync" in x for x in online)


def test_a_resumed_jobs_one_liner_speaks_of_its_own_steps() -> None:
    """A resumed HF job's records hold the whole chain (4.2 down to 1.2 before it resumed,
    then 1.2 down to 0.9 in it): "in the last job" is the fall from 1.2, not from 4.2."""
    whole = tuple((s, 4.2 * math.exp(-s / 300) + 0.9) for s in range(0, 1200, 20))
    mine = tuple(p for p in whole if p[0] >= 600)
    snap = Snapshot(train_history=whole, loss=whole[-1][1], first_loss=whole[0][1])
    console = Snapshot(train_history=mine)
    cut = this_job_only(snap, console)
    assert cut.train_history == mine
    text = loss_one_liner(cut, "TIMEOUT") or ""
    assert fmt_num(mine[0][1]) in text and fmt_num(whole[0][1]) not in text, text
    assert this_job_only(snap, Snapshot()) is snap  # nothing printed: nothing to cut by


@pytest.mark.parametrize(
    ("line", "want"),
    [
        # Lightning's requeue under srun: srun prints the step's line into the output
        (
            b"slurmstepd-n1: error: *** STEP 11182.0 ON n1 CANCELLED AT 2026-12-07T15:46:48 "
            b"DUE TO JOB REQUEUE ***\n",
            "REQUEUED",
        ),
        (
            b"slurmstepd: error: *** JOB 7 ON n2 CANCELLED AT 2026-12-07T15:46:48 "
            b"DUE TO NODE FAILURE ***\n",
            "NODE_FAIL",
        ),
        (
            b"slurmstepd: error: *** STEP 7.0 ON n1 CANCELLED AT 2026-12-07T15:46:48 ***\n",
            "CANCELLED",
        ),
        (b"step 40 loss 1.0\n", "CANCELLED"),  # no line: a TERM with time left is a guess
    ],
)
def test_the_wrappers_end_reads_slurmstepds_line_in_its_own_output(line: bytes, want: str) -> None:
    from hpcwrap.job.results import end_verdict
    from hpcwrap.reading.formats import LineParser
    from hpcwrap.reading.scan import Scanner

    progress = Progress(lambda: datetime.now(timezone.utc), time.monotonic)
    scanner = Scanner(LineParser(), progress, lambda n: None, lambda e, b: None)
    scanner.offer(1, b"step 40 loss 1.0\n" + line)
    scanner.close()
    scanner.run()
    facts = end(143, terminated_by="SIGTERM", time_left_at_term=75.0)
    verdict = end_verdict(facts, progress.snapshot())
    assert verdict.state == want
    strong = want != "CANCELLED" or b"CANCELLED AT" in line
    assert (verdict.strength.name == "READING") is strong
