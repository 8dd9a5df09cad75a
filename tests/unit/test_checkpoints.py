"""Which checkpoint is a run's (reading/checkpoints.py): one choice for Results, Next and
resume; never another run's, never the one it was started from (``--from``)."""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hpcwrap.cli import main
from hpcwrap.reading import checkpoints, ownership
from hpcwrap.runlog import RunLog, RunState, create_run, lifecycle
from hpcwrap.runlog.facts import ChainFacts
from hpcwrap.runlog.lifecycle import ResultFacts
from hpcwrap.runlog.model import JobBlock, Results
from hpcwrap.submit import resume
from tests.unit.test_job_wrapper import wrap

PY = sys.executable
T0 = datetime.now(timezone.utc) - timedelta(hours=2)


def _ckpt(path: Path, when: float | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.pt").write_bytes(b"w" * 16)
    if when is not None:
        os.utime(path, (when, when))
        os.utime(path / "model.pt", (when, when))
    return path


def _run(root: Path, task: str, initialised_from: str | None = None) -> RunLog:
    state = RunState(task=task, run_type="replication", objective="x")
    state.initialised_from = initialised_from
    return create_run(root, state)


def _ended(log: RunLog, job: str, checkpoint: str, end: datetime) -> None:
    log.record(lifecycle.Started(end - timedelta(minutes=5), job, nodes="n1", in_slurm=True))
    log.record(
        lifecycle.Ended(end, "COMPLETED", lifecycle.Source.WRAPPER, job, exit_code=0,
                        start=end - timedelta(minutes=5),
                        results=ResultFacts(checkpoint=checkpoint)),
    )  # fmt: skip


def _state(checkpoint: str) -> RunState:
    jobs = [JobBlock(execution_id="7", start=T0, state="TIMEOUT")]
    return RunState(results=Results(checkpoint=checkpoint), jobs=jobs, chain=ChainFacts())


def test_resume_refuses_a_checkpoint_another_run_claims(tmp_path: Path) -> None:
    """A log whose Results took run b's checkpoint (before ownership, or by hand) is not
    resumed from it: the refusal names run b, and says how to start from it instead."""
    root = tmp_path / "run_logs"
    b_end = datetime.now(timezone.utc) - timedelta(minutes=30)
    theirs = _ckpt(tmp_path / "runs" / "b" / "checkpoints" / "300", b_end.timestamp() - 60)
    other = _run(root, "b")
    _ended(other, "5", str(theirs), b_end)
    mine = _run(root, "d")
    choice = resume.find_checkpoint(_state(str(theirs)), tmp_path, mine)
    assert choice.path is None
    assert choice.why_not is not None and f"run {other.name}'s checkpoint" in choice.why_not
    decision = resume.decide(_state(str(theirs)), "8", None, why_not=choice.why_not)
    assert not decision.go and other.name in decision.reason
    # A step sibling of b's checkpoint is b's too; one written after b ended is not.
    later = _ckpt(theirs.parent / "400")
    assert resume.find_checkpoint(_state(str(theirs)), tmp_path, mine).path == str(later)
    # Without the other run's log beside it, the recorded checkpoint is taken as before.
    assert resume.find_checkpoint(_state(str(theirs)), tmp_path).path == str(later)


def test_resume_keeps_a_newer_sibling_only_when_tied(tmp_path: Path) -> None:
    """After a hard kill the disk can be newer than the record: a newer step beside the
    recorded checkpoint counts when its folder is the run's (printed), not when the
    recorded checkpoint stands loose in the working folder beside another run's saves."""
    _ckpt(tmp_path / "runs" / "a" / "checkpoints" / "100")
    newer = _ckpt(tmp_path / "runs" / "a" / "checkpoints" / "900")
    state = _state(str(tmp_path / "runs" / "a" / "checkpoints" / "100"))
    assert resume.find_checkpoint(state, tmp_path).path == str(newer)
    (tmp_path / "ckpt_100.pt").write_bytes(b"w")
    (tmp_path / "ckpt_900.pt").write_bytes(b"w")  # in the working folder: no tie
    loose = _state(str(tmp_path / "ckpt_100.pt"))
    assert resume.find_checkpoint(loose, tmp_path).path == str(tmp_path / "ckpt_100.pt")


def test_the_checkpoint_a_run_started_from_is_never_its_own(tmp_path: Path) -> None:
    origin = _ckpt(tmp_path / "runs" / "a" / "checkpoint-500")
    line = f"`{origin}` (run 2026-12-07_train)"
    assert checkpoints.started_from(line) == str(origin)
    assert checkpoints.started_from("by hand, no path") is None
    ties = ownership.build(
        tmp_path,
        printed=[str(origin)],
        argv=["--resume_from_checkpoint", str(origin), "--output_dir", "runs/ft"],
        started_from=str(origin),
    )
    assert ties.tie(origin / "model.pt") is None  # printed and named, still not its own
    # nor the folder it printed it in: that is the other run's
    assert ties.tie(tmp_path / "runs" / "a" / "checkpoint-600") is None
    assert ties.tie(tmp_path / "runs" / "ft" / "checkpoint-10") == ownership.ARGUMENTS
    state = _state(str(origin))
    state.initialised_from = line
    choice = resume.find_checkpoint(state, tmp_path)
    assert choice.path is None and choice.why_not is not None and "--from" in choice.why_not


def test_a_run_printing_its_from_checkpoint_does_not_report_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fine-tuning: the training names the checkpoint it loads in its arguments and on its
    output; Results' checkpoint is not that one, and the end says what was left out."""
    monkeypatch.chdir(tmp_path)
    origin = _ckpt(tmp_path / "runs" / "a" / "checkpoint-500")
    log = _run(tmp_path / "run_logs", "ft", initialised_from=f"`{origin}`")
    code = (
        f"print('Saving model checkpoint to {origin}'); "
        "print(\"{'loss': 1.5, 'learning_rate': 1e-4, 'epoch': 0.5}\")"
    )
    wrap([PY, "-c", code, "--resume_from_checkpoint", str(origin)], log, tmp_path)
    state = log.read()
    assert state.results.checkpoint is None, state.results
    assert f"initialised from: `{origin}`" in log.path.read_text()
    assert any("left out" in s.text for s in state.status), state.status


def test_log_new_records_from_a_path_or_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPCWRAP_CONFIG", raising=False)
    base = ["log", "new", "--mode", "experiment", "--objective", "fine-tune"]
    origin = _ckpt(tmp_path / "runs" / "a" / "ckpt")
    assert main([*base, "--from", "runs/a/ckpt"]) == 0
    made = Path(capsys.readouterr().out.strip())
    assert f"- initialised from: `{origin}`\n" in made.read_text()
    # A run's name: its Results' checkpoint, and the run named beside it.
    other = _run(tmp_path / "run_logs", "base")
    _ended(other, "5", str(origin), datetime.now(timezone.utc))
    assert main([*base, "--task", "ft", "--from", other.name]) == 0
    made = Path(capsys.readouterr().out.strip())
    assert f"- initialised from: `{origin}` (run {other.name})\n" in made.read_text()
    # Neither a path nor a run: refused, and no log written.
    logs = sorted((tmp_path / "run_logs").glob("*.md"))
    assert main([*base, "--from", "runs/nope"]) == 2
    err = capsys.readouterr().err
    assert "--from runs/nope: no such checkpoint, and no run by that name" in err
    assert sorted((tmp_path / "run_logs").glob("*.md")) == logs


def test_claims_expire_with_the_claiming_run(tmp_path: Path) -> None:
    theirs = _ckpt(tmp_path / "out" / "ckpt.pt")
    ended = time.time() - 100
    claim = checkpoints.claimed([checkpoints.Claim("b", str(theirs), ended)], tmp_path)
    os.utime(theirs, (ended - 5, ended - 5))
    assert claim(theirs) == "b"
    os.utime(theirs, (ended + 50, ended + 50))  # overwritten since: nanoGPT's one ckpt.pt
    assert claim(theirs) is None
    alive = checkpoints.claimed([checkpoints.Claim("c", str(theirs), None)], tmp_path)
    assert alive(theirs) == "c"
