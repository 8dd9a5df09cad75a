"""A run's Results are its own (reading/ownership.py): what ties a file on disk to a run,
and that records, checkpoints and config snapshots another run wrote are left out."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hpcwrap.reading import ownership
from hpcwrap.reading.records import read_records
from hpcwrap.runlog import RunState, create_run, lifecycle, neighbours
from tests.unit.test_job_wrapper import new_log, wrap

PY = sys.executable
T0 = datetime(2026, 3, 11, 14, 0, tzinfo=timezone.utc)


def test_the_arguments_that_name_where_a_run_writes() -> None:
    argv = ["train.py", "--out-dir", "runs/a", "--steps", "10", "out_dir=runs/b",
            "--output_dir=runs/c", "--lr", "3e-4", "--save-path", "/abs/x",
            "--checkpoint.folder", "runs/d", "--run", "true", "--outputs", "-"]  # fmt: skip
    assert ownership.argument_paths(argv) == ["runs/a", "runs/b", "runs/c", "/abs/x", "runs/d"]


def test_ties_in_order_and_no_tie_without_one(tmp_path: Path) -> None:
    ties = ownership.build(
        tmp_path,
        printed=["runs/a/checkpoints/40", "out-nanogpt"],
        argv=["--out-dir", "runs/z", "--data-dir", "."],
        wandb_dir="wandb/offline-run-1",
        task_id=None,
    )
    assert ties.tie(tmp_path / "runs/a/checkpoints/50") == ownership.PRINTED  # its folder
    assert ties.tie("out-nanogpt/ckpt.pt") == ownership.PRINTED
    assert ties.tie("runs/z/metrics.csv") == ownership.ARGUMENTS
    assert ties.tie("wandb/offline-run-1/files/config.yaml") == ownership.WANDB
    # The working folder itself never ties ("." in the arguments, nanoGPT's folder's parent).
    assert ties.tie("runs/b/checkpoints/200") is None
    assert ties.tie("config_resolved.yaml") is None
    task = ownership.build(tmp_path, task_id="3")
    assert task.tie("runs/r12/3/ck.pt") == ownership.TASK and task.tie("runs/r12/4/ck.pt") is None
    asked: list[Path] = []

    def alone(path: Path) -> bool:
        asked.append(path)
        return path.name == "x"

    lone = ownership.build(tmp_path, alone=alone)
    assert lone.tie("runs/x") == ownership.ALONE and lone.tie("runs/y") is None
    assert asked == [tmp_path / "runs/x", tmp_path / "runs/y"]  # asked file by file


def _hf_output(folder: Path, step: int, loss: float) -> None:
    ck = folder / f"checkpoint-{step}"
    ck.mkdir(parents=True)
    (ck / "model.safetensors").write_bytes(b"w" * 64)
    history = [{"step": 1, "loss": loss + 1}, {"step": step, "loss": loss}]
    state = {"global_step": step, "max_steps": step, "log_history": history}
    (ck / "trainer_state.json").write_text(json.dumps(state))
    (folder / "trainer_state.json").write_text(json.dumps(state))


def test_records_of_another_run_in_the_same_folder_are_not_read(tmp_path: Path) -> None:
    _hf_output(tmp_path / "out_mine", 30, 0.5)
    _hf_output(tmp_path / "out_theirs", 800, 0.1)  # newer and further: another run's
    ties = ownership.build(tmp_path, argv=["--output_dir", "out_mine"])
    rec = read_records(tmp_path, since=None, owns=ties.owns)
    assert rec.final_step == 30 and rec.train is not None and rec.train.points[-1][1] == 0.5
    assert all("out_mine" in str(c.path) for c in rec.checkpoints)
    assert {p.name for p in rec.untied} >= {"out_theirs", "checkpoint-800"}
    assert ownership.untied_text(list(rec.untied), tmp_path) == (
        f"{len(rec.untied)} files under out_theirs/ left out: no tie to this run"
    )
    everything = read_records(tmp_path, since=None)  # without ties: the other run's win
    assert everything.final_step == 800


def test_neighbours_alive_in_a_window(tmp_path: Path) -> None:
    root = tmp_path / "run_logs"
    mine = create_run(root, RunState(task="a", run_type="replication", objective="x"), when=T0)
    other = create_run(root, RunState(task="b", run_type="replication", objective="x"), when=T0)
    started, ended = T0 + timedelta(minutes=5), T0 + timedelta(minutes=8)
    assert neighbours.others_windows(root, mine.path) == []  # never started
    other.record(lifecycle.Started(started, "9", nodes="n1", in_slurm=True))
    assert neighbours.others_windows(root, mine.path) == [(started.timestamp(), None)]  # alive
    other.record(lifecycle.Ended(ended, "COMPLETED", lifecycle.Source.WRAPPER, "9",
                                 start=started))  # fmt: skip
    assert neighbours.others_windows(root, mine.path) == [(started.timestamp(), ended.timestamp())]


def test_a_config_snapshot_another_run_wrote_is_left_out_while_it_runs(tmp_path: Path) -> None:
    """`hpcwrap run -- ./plain.sh` (no config of its own) beside another run that writes
    its config_resolved.yaml meanwhile: config_snapshot n/a, and the end says why."""
    log = new_log(tmp_path)
    other = create_run(tmp_path / "run_logs", RunState(task="b", run_type="replication",
                                                       objective="x"))  # fmt: skip
    other.record(lifecycle.Started(datetime.now(timezone.utc) - timedelta(minutes=1), "8",
                                   nodes="n1", in_slurm=True))  # fmt: skip
    (tmp_path / "runs" / "lt").mkdir(parents=True)

    def writes(folder: Path) -> str:
        target = folder / "runs" / "lt" / "config_resolved.yaml"
        write = f"pathlib.Path({str(target)!r}).write_text('lr: 1')"
        return f"import pathlib; {write}; print('step 1 loss 1.0')"

    wrap([PY, "-c", writes(tmp_path)], log, tmp_path)
    state = log.read()
    assert state.results.config_snapshot is None, state.results
    assert "left out: no tie to this run" in state.status[-1].text
    # Alone in its folder, the same file is its own.
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "runs" / "lt").mkdir(parents=True)
    log2 = new_log(alone)
    wrap([PY, "-c", writes(alone)], log2, alone)
    snap = log2.read().results.config_snapshot
    assert snap is not None and snap.endswith("config_resolved.yaml")


def test_a_config_snapshot_written_before_the_run_is_not_its_own(tmp_path: Path) -> None:
    """`hpcwrap run -- ./plain.sh` (no config of its own) in a folder where another run's
    config_resolved.yaml was written a moment before it started: no other run alive, but
    a file older than the run is never tied by "alone"."""
    log = new_log(tmp_path)
    (tmp_path / "runs" / "lt").mkdir(parents=True)
    (tmp_path / "runs" / "lt" / "config_resolved.yaml").write_text("lr: 1\n")
    wrap([PY, "-c", "print('step 1 loss 1.0')"], log, tmp_path)
    state = log.read()
    assert state.results.config_snapshot is None, state.results
    assert "left out: no tie to this run" in state.status[-1].text
