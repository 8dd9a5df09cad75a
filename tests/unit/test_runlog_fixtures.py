"""Hand-written run logs in the spec's format are adopted: read, and never rewritten."""

from __future__ import annotations

import difflib
import math
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hpcwrap.runlog import RunState, open_run

FIXTURES = Path(__file__).parent / "runlog_fixtures"
NAMES = sorted(p.name for p in FIXTURES.glob("*.md"))
UTC = timezone.utc


@pytest.fixture
def run_logs(tmp_path: Path) -> Path:
    root = tmp_path / "run_logs"
    root.mkdir()
    for name in NAMES:
        shutil.copy2(FIXTURES / name, root / name)
    return root


def test_there_are_fixtures_of_every_kind() -> None:
    assert len(NAMES) >= 6
    assert b"\r\n" in (FIXTURES / "2026-02-25_eval.md").read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_reading_a_hand_written_log_writes_nothing(run_logs: Path, name: str) -> None:
    before = (run_logs / name).read_bytes()
    log = open_run(name, run_logs)
    state = log.read()
    assert state.run_type and state.objective
    assert (run_logs / name).read_bytes() == before
    assert not log.sidecar.exists()


@pytest.mark.parametrize("name", NAMES)
def test_first_machine_update_only_adds_its_line(run_logs: Path, name: str) -> None:
    path = run_logs / name
    before = path.read_bytes()
    log = open_run(path)
    log.add_status("hpcwrap took over this log", datetime(2026, 4, 1, 12, 0, tzinfo=UTC))
    after = path.read_bytes()
    a = before.splitlines(keepends=True)
    b = after.splitlines(keepends=True)
    ops = [op for op in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()]
    changes = [op for op in ops if op[0] != "equal"]
    assert [op[0] for op in changes] == ["insert"]
    _, _, _, j1, j2 = changes[0]
    newline = b"\r\n" if b"\r\n" in before else b"\n"
    assert b[j1:j2] == ["- 2026-04-01 12:00 — hpcwrap took over this log".encode() + newline]
    # a second update that changes nothing a person wrote leaves the file alone
    log.update(lambda s: s.extra.update(seen=True))
    assert path.read_bytes() == after


def test_replication_fields(run_logs: Path) -> None:
    state = open_run("2026-02-20_train", run_logs).read()
    assert state.task == "train"
    assert state.description == "ARX5 multitask replication, front cam"
    assert state.run_type == "replication"
    assert state.key_settings == {"lr": "3e-4", "batch_size": "64", "resume": "false"}
    job = state.jobs[0]
    assert job.execution_id == "48213"
    assert job.start == datetime(2026, 2, 20, 9, 14, 2, tzinfo=UTC)
    assert job.end == datetime(2026, 2, 21, 3, 40, 11, tzinfo=UTC)
    assert job.node == "gpu-a100-07"
    assert [s.text for s in state.status][-1] == "completed, exit code 0"
    res = state.results
    assert res.final_step == 100000 and res.end_val_loss == 0.047
    assert res.checkpoint == "/shared/ckpt/arx5/48213/step_100000"
    assert state.wandb_synced == "https://wandb.ai/lab/arx5/runs/k3j2h1"
    assert state.next[0].startswith("resume for more steps") and "\n" in state.next[0]


def test_pipeline_and_na_values(run_logs: Path) -> None:
    state = open_run("2026-03-15_embed", run_logs).read()
    assert state.run_type == "pipeline (embedding extraction)"
    assert state.jobs[0].execution_id == "embed-vm-2/us-central1-a"
    assert state.results.end_val_loss is None and state.results.final_step == 9375


def test_resumed_blocks(run_logs: Path) -> None:
    state = open_run("2026-03-11_train_front", run_logs).read()
    assert [j.execution_id for j in state.jobs] == ["50110", "12346", "12391"]
    assert state.jobs[1].submitted == datetime(2026, 3, 12, 15, 0, tzinfo=UTC)
    assert state.jobs[2].resumed_from == "/shared/ckpt/front_cam/12346/step_200000"
    assert state.jobs[0].wandb_synced == "https://wandb.ai/lab/front_cam/runs/aa11"
    assert state.jobs[1].wandb_synced == "https://wandb.ai/lab/front_cam/runs/bb22"


def test_resumed_log_gets_machine_updates_in_the_right_block(run_logs: Path) -> None:
    log = open_run("2026-03-11_train_front", run_logs)
    end = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)

    def finish(s: RunState) -> None:
        s.jobs[2].end = end
        s.results.end_val_loss = 0.021

    log.update(finish)
    text = log.path.read_text()
    third = text.split("## Job (resumed)")[2]
    assert "- end: `2026-03-14T09:00:00+00:00`" in third.split("## Status")[0]
    assert "- end_val_loss: `0.021`" in text.split("## Results")[1]


def test_extra_sections_comments_and_fences_are_not_sections_of_ours(run_logs: Path) -> None:
    log = open_run("2026-03-22_train", run_logs)
    state = log.read()
    assert state.run_type == "experiment"
    # "## not a heading" inside the code fence is not a section
    before = log.path.read_text()
    log.update(lambda s: setattr(s.results, "end_val_loss", math.pi))
    after = log.path.read_text()
    assert "## not a heading, just shell output" in after
    assert after.count("## Results") == 1
    obs = after.split("## Observations")[1].split("## Results")[0]
    assert obs == before.split("## Observations")[1].split("## Results")[0]
    assert "- end_val_loss: `3.141592653589793`" in after.split("## Results")[1]
    assert "- my note: the wrist cam stream is 15 fps, front is 30 fps" in after


def test_crlf_fixture_stays_crlf(run_logs: Path) -> None:
    log = open_run("2026-02-25_eval", run_logs)
    log.update(lambda s: setattr(s.jobs[0], "end", datetime(2026, 2, 25, 11, 0, tzinfo=UTC)))
    data = log.path.read_bytes()
    assert b"- end: `2026-02-25T11:00:00+00:00`\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")
