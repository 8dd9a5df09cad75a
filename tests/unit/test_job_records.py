"""The frameworks' own records on disk (synthetic files in the frameworks' layouts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hpcwrap.reading import records
from hpcwrap.reading.progress import Checkpoint, Snapshot
from hpcwrap.reading.scan import scan_file


def start() -> float:
    """The job's start: a minute ago (read per test: the module may load long before)."""
    return time.time() - 60


def _age(path: Path, t: float) -> None:
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (t, t))


def hf_checkpoint(root: Path, step: int, *, every: int = 10, total: int = 150) -> Path:
    folder = root / "out_hf" / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w" * 64)
    (folder / "optimizer.pt").write_bytes(b"o" * 64)
    history: list[dict[str, object]] = []
    for s in range(every, step + 1, every):
        history.append({"loss": 4.0 - s / 100, "step": s, "epoch": s / 300})
        if s % 50 == 0:
            history.append({"eval_loss": 3.0 - s / 200, "step": s})
    state = {
        "global_step": step,
        "max_steps": total,
        "log_history": history,
        "best_model_checkpoint": None,
    }
    (folder / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")
    return folder


def lightning_ckpt(path: Path, *, complete: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"x" * 1000)
    if not complete:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # cut off mid-write: no end record


def metrics_csv(path: Path, rows: list[tuple[int, int, str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["epoch,step,train_loss,val_loss"] + [f"{e},{s},{t},{v}" for e, s, t, v in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_hf_trainer_state_of_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    hf_checkpoint(tmp_path, 100)
    hf_checkpoint(tmp_path, 150)
    partial = tmp_path / "out_hf" / "checkpoint-200"  # weights written, trainer_state not yet
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"w")
    rec = records.read_records(tmp_path, since=start(), until=time.time())
    assert rec.final_step == 150
    assert rec.final_step_source == "out_hf/checkpoint-150/trainer_state.json"
    assert rec.max_steps == 150
    assert rec.train is not None and rec.val is not None
    assert rec.train.points[0][:2] == (10, 3.9) and rec.train.points[-1][:2] == (150, 2.5)
    assert rec.val.points[-1][:2] == (150, 2.25)
    assert rec.train.source == "out_hf/checkpoint-150/trainer_state.json"
    assert [c.path.name for c in rec.checkpoints] == ["checkpoint-150", "checkpoint-100"]
    assert [(s.path.name, s.reason) for s in rec.skipped] == [
        ("checkpoint-200", "no readable trainer_state.json (the Trainer writes it last)")
    ]


def test_trainer_state_beside_weights_in_another_layout_is_a_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "checkpoints" / "50"
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"w")
    (folder / "trainer_state.json").write_text('{"global_step": 50}', encoding="utf-8")
    (tmp_path / "out" / "trainer_state.json").write_text('{"global_step": 9}', encoding="utf-8")
    rec = records.read_records(tmp_path, since=start(), until=time.time())
    assert [(c.path, c.step) for c in rec.checkpoints] == [(folder, 50)]  # out/ has no weights
    assert (rec.final_step, rec.final_step_source) == (50, "out/checkpoints/50/trainer_state.json")


def test_hf_trainer_state_cut_off_is_not_complete(tmp_path: Path) -> None:
    folder = hf_checkpoint(tmp_path, 150)
    text = (folder / "trainer_state.json").read_text(encoding="utf-8")
    (folder / "trainer_state.json").write_text(text[: len(text) // 2], encoding="utf-8")
    rec = records.read_records(tmp_path, since=start(), until=time.time())
    assert rec.checkpoints == () and rec.final_step is None and rec.train is None
    assert rec.skipped[0].path == folder


def test_temporary_names_are_never_complete(tmp_path: Path) -> None:
    hf_checkpoint(tmp_path, 100)
    (tmp_path / "out_hf" / "checkpoint-100").rename(tmp_path / "out_hf" / "tmp-checkpoint-100")
    lightning_ckpt(tmp_path / "ck" / "epoch=1-step=20.ckpt.tmp")
    rec = records.read_records(tmp_path, since=start(), until=time.time())
    assert rec.checkpoints == ()
    assert sorted(s.reason for s in rec.skipped) == ["a temporary name", "a temporary name"]


def test_a_previous_runs_records_do_not_count(tmp_path: Path) -> None:
    old = hf_checkpoint(tmp_path, 150)
    _age(old, start() - 3600)  # the earlier run in the same folder
    new = hf_checkpoint(tmp_path, 100)
    rec = records.read_records(tmp_path, since=start(), until=time.time())
    assert [c.path for c in rec.checkpoints] == [new]
    assert rec.final_step == 100
    assert rec.train is not None and rec.train.points[-1][0] == 100


def test_files_modified_after_the_jobs_end_are_not_this_jobs(tmp_path: Path) -> None:
    folder = hf_checkpoint(tmp_path, 150)
    _age(folder, time.time() + 600)
    rec = records.read_records(tmp_path, since=start(), until=time.time())
    assert rec.checkpoints == ()
    assert rec.skipped[0].reason == "modified after the job's end"


def test_size_still_changing_is_not_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = hf_checkpoint(tmp_path, 150)

    def writer_keeps_writing(_: float) -> None:
        with (folder / "model.safetensors").open("ab") as f:
            f.write(b"more")

    monkeypatch.setattr(time, "sleep", writer_keeps_writing)
    rec = records.read_records(tmp_path, since=start(), settle_s=0.5)
    assert rec.checkpoints == () and rec.skipped[0].reason == "its size is still changing"


def test_lightning_metrics_csv_and_ckpt(tmp_path: Path) -> None:
    version = tmp_path / "lightning_logs" / "version_0"
    metrics_csv(
        version / "metrics.csv",
        [
            (0, 49, "0.4437915086746216", ""),
            (0, 99, "0.37", ""),
            (0, 111, "", "0.41"),
            (1, 149, "0.33", ""),
            (1, 223, "", "0.388"),
        ],
    )
    lightning_ckpt(version / "checkpoints" / "epoch=1-step=224.ckpt")
    lightning_ckpt(version / "checkpoints" / "epoch=2-step=336.ckpt", complete=False)
    rec = records.read_records(tmp_path, since=start(), until=time.time())
    assert rec.train is not None and rec.val is not None
    # the train loss as the file holds it, every digit
    assert rec.train.points[0] == (49, 0.4437915086746216, "0.4437915086746216")
    assert rec.train.points[-1][:2] == (149, 0.33)
    assert [p[:2] for p in rec.val.points] == [(111, 0.41), (223, 0.388)]
    assert rec.train.source == "lightning_logs/version_0/metrics.csv"
    # the checkpoint's step (the trainer's global step) is beyond the last logged row
    assert (rec.final_step, rec.final_step_source) == (
        224,
        "lightning_logs/version_0/checkpoints/epoch=1-step=224.ckpt",
    )
    assert [c.path.name for c in rec.checkpoints] == ["epoch=1-step=224.ckpt"]
    assert rec.skipped[0].reason == "the archive has no end record (still being written)"


def test_the_newest_metrics_csv_is_read(tmp_path: Path) -> None:
    old = tmp_path / "lightning_logs" / "version_0" / "metrics.csv"
    metrics_csv(old, [(0, 9, "9.0", "")])
    os.utime(old, (time.time() - 30, time.time() - 30))
    metrics_csv(tmp_path / "lightning_logs" / "version_1" / "metrics.csv", [(0, 9, "1.0", "")])
    rec = records.read_records(tmp_path, since=start(), until=time.time())
    assert rec.train is not None and rec.train.points == ((9, 1.0, "1.0"),)
    assert rec.files == ("lightning_logs/version_1/metrics.csv",)


def test_deepspeed_global_step_needs_latest(tmp_path: Path) -> None:
    for step in (100, 200):
        (tmp_path / "ds" / f"global_step{step}").mkdir(parents=True)
        (tmp_path / "ds" / f"global_step{step}" / "mp_rank_00_model_states.pt").write_bytes(b"m")
    (tmp_path / "ds" / "latest").write_text("global_step100", encoding="utf-8")
    rec = records.read_records(tmp_path, since=start(), until=time.time())
    assert [c.step for c in rec.checkpoints] == [100]
    assert rec.skipped[0].reason == "`latest` names 'global_step100'"


def test_accelerate_state_needs_its_rng_file(tmp_path: Path) -> None:
    for step in (50, 100):
        folder = tmp_path / "ckpt" / f"step_{step}"
        folder.mkdir(parents=True)
        for name in ("model.safetensors", "optimizer.bin"):
            (folder / name).write_bytes(b"x")
    (tmp_path / "ckpt" / "step_50" / "random_states_0.pkl").write_bytes(b"r")
    rec = records.read_records(tmp_path, since=start(), until=time.time())
    assert [c.path.name for c in rec.checkpoints] == ["step_50"]
    assert rec.skipped[0].path.name == "step_100"
    assert rec.final_step == 50


def test_bounded_in_entries(tmp_path: Path) -> None:
    for i in range(50):
        (tmp_path / f"f{i:02d}").write_text("x", encoding="utf-8")
    hf_checkpoint(tmp_path, 150)
    rec = records.read_records(tmp_path, since=start(), until=time.time(), entries=20)
    assert rec.truncated and rec.checkpoints == ()
    assert records.read_records(tmp_path, since=start(), until=time.time()).final_step == 150


def test_long_histories_are_thinned_first_and_last_kept(tmp_path: Path) -> None:
    rows = [(0, s, str(10.0 - s / 1000), "") for s in range(5000)]
    metrics_csv(tmp_path / "lightning_logs" / "version_0" / "metrics.csv", rows)
    rec = records.read_records(tmp_path, since=start(), until=time.time())
    assert rec.train is not None
    assert len(rec.train.points) <= 513
    assert rec.train.points[0][0] == 0 and rec.train.points[-1][0] == 4999


# --------------------------------------------------------------------------- merge


def test_merge_takes_step_losses_and_checkpoint_the_console_lacked(tmp_path: Path) -> None:
    hf_checkpoint(tmp_path, 100)
    hf_checkpoint(tmp_path, 150)
    rec = records.read_records(tmp_path, since=start(), until=time.time())
    # the console saw a datasets Map bar (2048/2048), rounded losses and no save line
    snap = Snapshot(step=2048, step_total=2048, first_loss=3.9, loss=2.5, loss_text="2.5")
    merged = records.merge(snap, rec, tmp_path)
    s = merged.snap
    assert (s.step, s.step_total) == (150, 150)
    assert s.checkpoint is not None and s.checkpoint.path == str(
        tmp_path / "out_hf" / "checkpoint-150"
    )
    assert (s.first_loss, s.loss) == (3.9, 2.5)
    assert (s.first_val_loss, s.val_loss) == (2.75, 2.25)
    src = "out_hf/checkpoint-150/trainer_state.json"
    assert merged.sources == {
        "final step": src,
        "start_train_loss": "console",
        "end_train_loss": "console",
        "start_val_loss": src,
        "end_val_loss": src,
        "checkpoint": "on disk (out_hf/checkpoint-150, newest complete)",
    }
    assert records.sources_text(merged.sources) == (
        f"final step, start_val_loss, end_val_loss from {src}; "
        "start_train_loss, end_train_loss from the console; "
        "checkpoint on disk (out_hf/checkpoint-150, newest complete)"
    )


def test_merge_one_console_loss_takes_the_whole_history(tmp_path: Path) -> None:
    metrics_csv(
        tmp_path / "lightning_logs" / "version_0" / "metrics.csv",
        [(0, 49, "0.9", ""), (0, 99, "0.5", ""), (0, 111, "", "0.45"), (1, 199, "0.3", "")],
    )
    snap = Snapshot(step=112, first_loss=0.342, loss=0.342, train_history=((112, 0.342),))
    merged = records.merge(snap, records.read_records(tmp_path, since=start()), tmp_path)
    s = merged.snap
    assert (s.step, s.first_loss, s.loss, s.loss_text) == (199, 0.9, 0.3, "0.3")
    assert s.train_history == ((49, 0.9), (99, 0.5), (199, 0.3))
    assert merged.sources["end_train_loss"] == "lightning_logs/version_0/metrics.csv"


def test_merge_keeps_console_points_after_the_last_save(tmp_path: Path) -> None:
    hf_checkpoint(tmp_path, 100, total=500)
    rec = records.read_records(tmp_path, since=start(), until=time.time())
    # killed at step 130: the console logged 110..130 after checkpoint-100
    snap = Snapshot(
        step=130,
        first_loss=3.9,
        loss=2.7,
        train_history=((10, 3.9), (120, 2.8), (130, 2.7)),
        checkpoint=Checkpoint(None, 100, datetime.now(timezone.utc)),
    )
    merged = records.merge(snap, rec, tmp_path)
    assert (merged.snap.step, merged.snap.loss) == (130, 2.7)
    assert merged.sources["final step"] == "console"
    assert merged.sources["end_train_loss"] == "console"
    assert merged.sources["checkpoint"].startswith("on disk")  # the console had no path


def test_merge_all_from_console_says_nothing(tmp_path: Path) -> None:
    ck = tmp_path / "ckpt" / "step_50"
    ck.mkdir(parents=True)
    (ck / "model.pt").write_bytes(b"x")
    snap = Snapshot(
        step=50, first_loss=1.0, loss=0.5, checkpoint=Checkpoint(str(ck), 50, datetime.now())
    )
    merged = records.merge(snap, records.read_records(tmp_path, since=start()), tmp_path)
    assert merged.snap == snap
    assert records.sources_text(merged.sources) is None


def test_tensorboard_event_files_where_tensorboard_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the optional tensorboard extra is not installed")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "lightning_logs" / "version_0"))
    for step, value in ((9, 1.5), (19, 1.25)):
        writer.add_scalar("train_loss", value, step)
    writer.add_scalar("val_loss", 1.125, 19)
    writer.close()
    rec = records.read_records(tmp_path, since=start())
    assert rec.train is not None and rec.val is not None
    assert [p[:2] for p in rec.train.points] == [(9, 1.5), (19, 1.25)]
    assert rec.val.points[-1][:2] == (19, 1.125)
    assert rec.final_step == 19


# --------------------------------------------------------------------------- hpcwrap scan --workdir


def test_scan_workdir_reads_the_same_records(tmp_path: Path) -> None:
    hf_checkpoint(tmp_path, 100)
    hf_checkpoint(tmp_path, 150)
    output = tmp_path / "slurm-7.out"
    output.write_text(
        "Map: 100%|██████████| 2048/2048 [00:00<00:00, 9000.00 examples/s]\n"
        "{'loss': '2.5', 'grad_norm': '0.6', 'learning_rate': '2e-05', 'epoch': '0.6'}\n",
        encoding="utf-8",
    )
    plain = scan_file(output)
    assert plain.checkpoint is None and plain.final_step is None
    got = records.with_records(plain, tmp_path, output)
    state = "out_hf/checkpoint-150/trainer_state.json"
    assert (got.final_step, got.step_total) == (150, 150)
    assert (got.first_loss, got.last_loss) == ("3.9", "2.5")
    assert got.last_val_loss == "2.25" and got.origin["val_loss"] == state
    assert got.checkpoint is not None
    assert got.checkpoint.path == str(tmp_path / "out_hf" / "checkpoint-150")
    assert got.origin["checkpoint"] == "out_hf/checkpoint-150 on disk"
    # the command: the same reading, and a bad folder named
    cmd = [sys.executable, "-m", "hpcwrap", "scan", str(output), "--workdir", str(tmp_path)]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "step:        150 / 150" in text
    assert f"val_loss from {state}, checkpoint from out_hf/checkpoint-150 on disk" in text
    bad = subprocess.run([*cmd[:-1], str(tmp_path / "nope")], capture_output=True, text=True)
    assert bad.returncode != 0 and "not a folder" in bad.stderr
