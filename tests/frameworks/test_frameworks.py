"""Real framework runs under ``hpcwrap run``: Results equal the framework's own records.

Each test runs a real training (tiny model, CPU, a few seconds) under ``hpcwrap
run`` and checks the run log's Results (final step, first and last train loss,
last val loss, checkpoint) against what the framework itself wrote on disk
(``trainer_state.json``, ``metrics.csv``, the checkpoint folders), and that the
end Status entry names where each figure came from. Off the network: the models
are built from configs, HF_HUB_OFFLINE=1.

transformers 5.24 prints its log dicts in one style only, floats as strings
(``{'loss': '1.421', ...}``: both its ProgressCallback and PrinterCallback format
``f"{v:.4g}"``); the float-dict style of older releases is covered by the parser
tests. Its two consoles are run here: with the tqdm bar, and with
``disable_tqdm`` (no step anywhere in the output).
"""

from __future__ import annotations

import csv
import json
import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.frameworks

SCRIPTS = Path(__file__).parent / "scripts"


@dataclass(frozen=True)
class Logged:
    results: dict[str, str]
    end_status: str
    output: str


def run_under_hpcwrap(tmp_path: Path, script: str, *args: str) -> Logged:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / ".hf_home"),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("HPCWRAP_RUN_LOG", None)
    cmd = [sys.executable, "-m", "hpcwrap", "run", "--mode", "replication"]
    cmd += ["--objective", f"{script} records", "--telemetry-interval", "0"]
    cmd += ["--", sys.executable, str(SCRIPTS / script), *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    (tmp_path / "job.out").write_text(output, encoding="utf-8")  # for hpcwrap scan
    assert proc.returncode == 0, output[-4000:]
    named = re.search(r"hpcwrap: run log (\S+\.md)", proc.stderr)
    assert named is not None, output[-2000:]
    text = Path(named.group(1)).read_text(encoding="utf-8")
    section = {p.split("\n", 1)[0]: p for p in text.split("\n## ")}
    results = dict(re.findall(r"(?m)^- ([\w ]+): (.*)$", section["Results"]))
    status = [ln for ln in section["Status"].splitlines() if ln.startswith("- ")]
    return Logged(results, status[-1], output)


def shown(value: str) -> str:
    return value.strip().strip("`")


def number(value: str) -> float:
    return float(shown(value))


def scan_with_workdir(tmp_path: Path) -> str:
    """``hpcwrap scan job.out --workdir``: the same records read after the fact."""
    cmd = [sys.executable, "-m", "hpcwrap", "scan", str(tmp_path / "job.out")]
    cmd += ["--workdir", str(tmp_path)]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp_path).stdout


LEFT_OUT = re.compile(r"; \d+ files? under .* left out: no tie to this run$")


def sources(logged: Logged) -> str:
    """Where each figure came from: Results' ``figures from`` line, also in the end Status."""
    status = logged.end_status
    assert "; sources: " in status, status
    said = status.split("; sources: ", 1)[1]
    said = LEFT_OUT.sub("", said)  # what was not read comes after the sources
    assert logged.results["figures from"] == said
    return said


# --------------------------------------------------------------------------- HF Trainer


def hf_records(out: Path) -> tuple[Path, dict[str, object]]:
    newest = max(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return newest, json.loads((newest / "trainer_state.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("bar", ["tqdm", "no-bar"])
def test_hf_trainer(tmp_path: Path, bar: str) -> None:
    extra = ["--no-bar"] if bar == "no-bar" else []
    logged = run_under_hpcwrap(tmp_path, "hf_train.py", "--steps", "150", "--every", "50", *extra)
    assert "Map: 100%" in logged.output  # the datasets map ran before training
    newest, state = hf_records(tmp_path / "out_hf")
    history = state["log_history"]
    assert isinstance(history, list)
    train = [e["loss"] for e in history if "loss" in e]
    val = [e["eval_loss"] for e in history if "eval_loss" in e]
    r = logged.results
    assert int(r["final step"]) == state["global_step"] == 150
    assert number(r["start_train_loss"]) == train[0]
    assert number(r["end_train_loss"]) == train[-1]
    assert number(r["end_val_loss"]) == val[-1]
    assert shown(r["checkpoint"]) == str(newest) and newest.name == "checkpoint-150"
    said = sources(logged)
    state_file = "out_hf/checkpoint-150/trainer_state.json"
    # the step from the console where it read the bar's 150/150 (the datasets Map bar's
    # 2048/2048 is not a training step), else from the records
    assert re.search(
        rf"final step[, ]*(from the console;|start_train_loss.* from {re.escape(state_file)})", said
    ), said
    losses = "start_train_loss, end_train_loss, start_val_loss, end_val_loss"
    assert f"{losses} from {state_file}" in said, said
    assert "checkpoint on disk (out_hf/checkpoint-150, newest complete)" in said
    scanned = scan_with_workdir(tmp_path)
    assert f"train loss:  first {train[0]!r}, last {train[-1]!r}" in scanned, scanned
    assert f"checkpoint:  {newest}, step 150" in scanned, scanned


# --------------------------------------------------------------------------- Lightning


def lightning_records(root: Path) -> tuple[Path, list[dict[str, str]]]:
    version = max((root / "lightning_logs").glob("version_*"), key=lambda p: p.stat().st_mtime)
    ckpt = max(
        (version / "checkpoints").glob("*.ckpt"),
        key=lambda p: int(re.search(r"step=(\d+)", p.name).group(1)),  # type: ignore[union-attr]
    )
    with (version / "metrics.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return ckpt, rows


@pytest.mark.parametrize("bar", ["rich", "tqdm"])
def test_lightning(tmp_path: Path, bar: str) -> None:
    logged = run_under_hpcwrap(tmp_path, "lightning_train.py", "--bar", bar, "--epochs", "4")
    if bar == "rich":
        assert "━" in logged.output  # the Rich bar's final frame
    else:
        assert "it/s, v_num=0" in logged.output  # tqdm's postfix
    ckpt, rows = lightning_records(tmp_path)
    train = [row["train_loss"] for row in rows if row["train_loss"]]
    val = [row["val_loss"] for row in rows if row["val_loss"]]
    assert len(train) > 2
    r = logged.results
    step = int(re.search(r"step=(\d+)", ckpt.name).group(1))  # type: ignore[union-attr]
    assert int(r["final step"]) == step == 448
    # exactly as metrics.csv holds them
    assert shown(r["start_train_loss"]) == train[0]
    assert shown(r["end_train_loss"]) == train[-1]
    assert shown(r["end_val_loss"]) == val[-1]
    assert shown(r["checkpoint"]) == str(ckpt)
    said = sources(logged)
    rel = str(ckpt.relative_to(tmp_path))
    # the console's step agrees where its bar counts global steps (named as the console's)
    assert re.search(rf"final step from (the console|{re.escape(rel)});", said), said
    metrics = "lightning_logs/version_0/metrics.csv"
    assert f"start_train_loss, end_train_loss, start_val_loss, end_val_loss from {metrics}" in said
    assert f"checkpoint on disk ({rel}, newest complete)" in said
    scanned = scan_with_workdir(tmp_path)
    assert f"train loss:  first {train[0]}, last {train[-1]}" in scanned, scanned
    assert f"val loss:    first {val[0]}, last {val[-1]}" in scanned, scanned


def test_lightning_tensorboard(tmp_path: Path) -> None:
    """Lightning's default logger where tensorboard is installed: event files, no metrics.csv."""
    pytest.importorskip("tensorboard", reason="the optional tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = run_under_hpcwrap(
        tmp_path, "lightning_train.py", "--bar", "tqdm", "--epochs", "4", "--logger", "default"
    )
    version = tmp_path / "lightning_logs" / "version_0"
    assert not (version / "metrics.csv").exists()
    events = EventAccumulator(str(version))
    events.Reload()
    train = events.Scalars("train_loss")
    val = events.Scalars("val_loss")
    r = logged.results
    f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]  # noqa: E731
    assert int(r["final step"]) == 448
    assert f32(number(r["start_train_loss"])) == train[0].value
    assert f32(number(r["end_train_loss"])) == train[-1].value
    assert f32(number(r["end_val_loss"])) == val[-1].value
    said = sources(logged)
    events_src = "lightning_logs/version_0/events.out.tfevents.*"
    assert f"end_train_loss, start_val_loss, end_val_loss from {events_src};" in said


# --------------------------------------------------------------------------- accelerate


def test_accelerate(tmp_path: Path) -> None:
    logged = run_under_hpcwrap(
        tmp_path, "accelerate_train.py", "--steps", "150", "--every", "50", "--torn-save"
    )
    truth = json.loads((tmp_path / ".truth" / "accelerate.json").read_text(encoding="utf-8"))
    folders = sorted((tmp_path / "ckpt").glob("step_*"), key=lambda p: int(p.name[5:]))
    assert [p.name for p in folders] == ["step_50", "step_100", "step_150", "step_200"]
    newest_complete = folders[-2]  # step_200 is the torn save: no random_states_0.pkl
    assert not (folders[-1] / "random_states_0.pkl").exists()
    r = logged.results
    assert int(r["final step"]) == 150
    assert number(r["start_train_loss"]) == truth["train"][0][1]
    assert number(r["end_train_loss"]) == truth["train"][-1][1]
    assert number(r["end_val_loss"]) == truth["val"][-1][1]
    assert shown(r["checkpoint"]) == str(newest_complete)
    said = sources(logged)
    assert "checkpoint on disk (ckpt/step_150, newest complete)" in said
    # the torn save is named, with why, in the run's events
    (events,) = tmp_path.glob("run_logs/.hpcwrap/*/events.jsonl")
    read = [json.loads(ln) for ln in events.read_text(encoding="utf-8").splitlines()]
    (rec,) = [e for e in read if e["kind"] == "records"]
    assert rec["not_complete"] == [
        f"{folders[-1]}: no random_states_*.pkl (save_state writes it last)"
    ]
    # accelerate keeps no loss record of its own: the printed losses stand, named so
    figures = "final step, start_train_loss, end_train_loss, start_val_loss, end_val_loss"
    assert f"{figures} from the console" in said


# --------------------------------------------------------------------------- back to back


def test_hf_then_lightning_in_one_folder_each_keep_their_own(tmp_path: Path) -> None:
    """Two real runs from one folder, the second started right after the first ended: the
    Lightning run's Results are its metrics.csv's, never the HF run's trainer_state.json
    (written seconds before it started), and the HF run's are its own."""
    hf = run_under_hpcwrap(tmp_path, "hf_train.py", "--steps", "150", "--every", "50")
    lt = run_under_hpcwrap(tmp_path, "lightning_train.py", "--bar", "tqdm", "--epochs", "4")
    newest, state = hf_records(tmp_path / "out_hf")
    history = state["log_history"]
    assert isinstance(history, list)
    hf_train = [e["loss"] for e in history if "loss" in e]
    assert number(hf.results["start_train_loss"]) == hf_train[0]
    assert shown(hf.results["checkpoint"]) == str(newest)
    ckpt, rows = lightning_records(tmp_path)
    train = [row["train_loss"] for row in rows if row["train_loss"]]
    val = [row["val_loss"] for row in rows if row["val_loss"]]
    r = lt.results
    assert shown(r["start_train_loss"]) == train[0], (r, sources(lt))
    assert shown(r["end_train_loss"]) == train[-1]
    assert shown(r["end_val_loss"]) == val[-1]
    assert int(r["final step"]) == 448
    assert shown(r["checkpoint"]) == str(ckpt)
    assert "out_hf" not in sources(lt)
    assert "files under out_hf/ left out: no tie to this run" in lt.end_status
