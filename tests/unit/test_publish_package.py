"""`hpcwrap publish package`: the spec's layout, every copy verified by sha256, and nothing
written before the gate passes."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hpcwrap.cli import main
from hpcwrap.errors import PublishError
from hpcwrap.publish.hashing import copy_verified
from hpcwrap.runlog import JobBlock, Results, RunLog, RunState, StatusEntry, create_run
from tests.unit.test_publish_gate import make_checkpoint

WHEN = datetime(2026, 3, 11, 15, tzinfo=timezone.utc)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def two_steps(base: Path) -> Path:
    """ckpt/30000 and ckpt/60000, one passport + signoff for both in ckpt/ (paths from there)."""
    files = {}
    for step in (30000, 60000):
        payload = {
            f"{step}/params/model.safetensors": f"weights {step}".encode() * 500,
            f"{step}/params/_METADATA": b"{}",
            f"{step}/opt_state/adam.bin": b"adam" * 50,
        }
        files.update(payload)
    return make_checkpoint(base / "ckpt", files=files)


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunLog:
    ckpt = two_steps(tmp_path / "scratch")
    state = RunState(
        task="train",
        description="front camera finetune",
        run_type="replication",
        objective="does it reach the paper's loss?",
        config="`configs/front.yaml`",
        key_settings={"lr": "3e-4"},
        jobs=[JobBlock(execution_id="4242", node="gpu17", state="COMPLETED")],
        status=[
            StatusEntry(WHEN, "running on gpu17, step 30000/60000, train_loss 0.0412"),
            StatusEntry(
                WHEN, "completed, exit code 0, step 60000/60000, train_loss 0.0231, val_loss 0.0289"
            ),
        ],
        results=Results(
            final_step=60000,
            end_train_loss_text="0.0231",
            end_val_loss_text="0.0289",
            loss_one_liner="Fell steadily; no overfitting.",
            checkpoint=str(ckpt / "60000"),
        ),
    )
    monkeypatch.chdir(tmp_path)
    return create_run(tmp_path / "run_logs", state)


def test_the_package_has_the_spec_layout_and_verified_copies(
    run: RunLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tmp_path / "scratch" / "ckpt"
    norm = tmp_path / "norm_stats.json"
    norm.write_text('{"mean": [0.5]}')
    out = tmp_path / "public"
    argv = ["publish", "package", run.name, "--out", str(out), "--steps", "30000,60000"]
    rc = main([*argv, "--asset", str(norm)])
    printed, err = capsys.readouterr()
    assert rc == 0, err
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "MODEL_PASSPORT.json",
        "README.md",
        "SIGNOFF.json",
        "TRAINING_LOG.md",
        "assets/norm_stats.json",
        "checkpoints/30000/params/_METADATA",
        "checkpoints/30000/params/model.safetensors",
        "checkpoints/60000/params/_METADATA",
        "checkpoints/60000/params/model.safetensors",
    ]  # params only: no opt_state; no manifest of hpcwrap's own
    for step in (30000, 60000):
        for name in ("model.safetensors", "_METADATA"):
            copied = out / f"checkpoints/{step}/params/{name}"
            assert sha(copied) == sha(ckpt / f"{step}/params/{name}")
            assert f"{sha(copied)}  checkpoints/{step}/params/{name}" in printed
    for name in ("MODEL_PASSPORT.json", "SIGNOFF.json"):
        assert (out / name).read_bytes() == (ckpt / name).read_bytes()
    assert "every copy verified by sha256; verdict pass" in printed
    # README: a model card from the run log; TRAINING_LOG.md: the export
    readme = (out / "README.md").read_text()
    assert readme.startswith("# train — front camera finetune\n")
    assert "| 30000 | 0.0412 | n/a |" in readme and "| 60000 | 0.0231 | 0.0289 |" in readme
    assert "## Usage" in readme and "- checkpoints: 30000, 60000 (params only)" in readme
    log = (out / "TRAINING_LOG.md").read_text()
    assert "gpu17" not in log and "4242" not in log and str(tmp_path) not in log
    assert "step 60000/60000, train_loss 0.0231" in log
    assert str(tmp_path) not in readme
    # the package passes the gate on its own
    assert main(["publish", "check", str(out)]) == 0


def _nothing_written(tmp_path: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.partial")]


def test_refused_before_the_gate_passes(
    run: RunLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "scratch/ckpt/30000/params/model.safetensors"
    weights.write_bytes(b"tampered")
    out = tmp_path / "public"
    rc = main(["publish", "package", run.name, "--out", str(out), "--steps", "30000,60000"])
    err = capsys.readouterr().err
    assert rc == 18 and f"{weights}: sha256 mismatch" in err
    _nothing_written(tmp_path, out)


def test_a_weight_file_the_signoff_does_not_list_is_refused(
    run: RunLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = tmp_path / "scratch/ckpt/60000/params/extra.bin"
    extra.write_bytes(b"unsigned")
    out = tmp_path / "public"
    assert main(["publish", "package", run.name, "--out", str(out)]) == 18
    assert f"{extra}: weight file not listed in" in capsys.readouterr().err
    _nothing_written(tmp_path, out)


def test_full_copies_the_whole_step_folder(
    run: RunLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "public"
    assert main(["publish", "package", run.name, "--out", str(out), "--full"]) == 0
    assert (out / "checkpoints/60000/opt_state/adam.bin").read_bytes() == b"adam" * 50
    assert not (out / "checkpoints/30000").exists()  # the recorded step only by default


def test_an_existing_folder_is_never_overwritten(
    run: RunLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "public"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["publish", "package", run.name, "--out", str(out)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_step_without_a_folder(
    run: RunLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", "package", run.name, "--out", "x", "--steps", "90000"]) == 2
    assert "no checkpoint for step 90000" in capsys.readouterr().err


def test_a_copy_that_does_not_match_the_signoff_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "w.bin"
    src.write_bytes(b"changed after the gate")
    with pytest.raises(PublishError, match=r"w\.bin: sha256 mismatch: SIGNOFF.json lists 0+"):
        copy_verified(src, tmp_path / "copy" / "w.bin", "0" * 64)
    assert json.dumps(sha(src))  # the source itself is untouched
