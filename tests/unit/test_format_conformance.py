"""A run log made by `hpcwrap run` on a workstation conforms to docs/run-log-format.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hpcwrap.runlog import JobBlock, RunState, lifecycle
from hpcwrap.runlog.render import render_text
from tests.format_conformance import check, templates

REPO = Path(__file__).resolve().parents[2]


def test_the_document_has_both_templates() -> None:
    main, resumed = templates()
    assert [s.heading for s in main] == [
        "## Mode",
        "## Config",
        "## Job",
        "## Status",
        "## Results",
        "## W&B",
        "## Next",
    ]
    job = dict(next(s for s in main if s.heading == "## Job").lines)
    assert job["node"] is True and job["submitted/start"] is False
    assert [n for n, _ in resumed[0].lines] == ["execution_id", "submitted", "resumed from"]


def test_workstation_run_log_conforms(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "hpcwrap.toml").write_text("")
    (proj / "cfg.json").write_text('{"steps": 40}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "HPCWRAP_"))}
    argv = [
        sys.executable,
        "-m",
        "hpcwrap",
        "run",
        "--mode",
        "replication",
        "--objective",
        "does the toy train on a workstation?",
        "--description",
        "conformance",
        "--config",
        "cfg.json",
        "--dataset",
        "/data/toy/toy.parquet",
        "--set",
        "lr=3e-4",
        "--",
        sys.executable,
        "-u",
        str(REPO / "examples" / "toy_train.py"),
        "--config",
        "cfg.json",
        "--steps",
        "40",
        "--steps-per-sec",
        "0",
        "--log-every",
        "5",
        "--eval-every",
        "20",
        "--ckpt-every",
        "20",
        "--out-dir",
        "out",
    ]
    res = subprocess.run(argv, cwd=proj, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    logs = sorted((proj / "run_logs").glob("*.md"))
    logs = [p for p in logs if p.name != "timeline.md"]
    assert len(logs) == 1, logs
    md = logs[0].read_text()
    assert check(md, slurm=False) == [], md
    assert "- node:" not in md


def test_slurm_and_resumed_rendering_conforms() -> None:
    from datetime import datetime, timezone

    t = datetime(2026, 3, 11, 15, 0, tzinfo=timezone.utc)
    state = RunState(
        task="train",
        description="d",
        run_type="replication",
        objective="o",
        script="`slurm/train.sh`",
        config="c.yaml",
        dataset="/d/x.parquet",
        key_settings={"lr": "1"},
        jobs=[JobBlock(execution_id="12", submitted=t, start=t, end=t, node="n1", state="TIMEOUT")],
    )
    state = lifecycle.apply(state, lifecycle.Resumed(t, "/ck/1", execution_id="13"))
    md = render_text(state)
    assert check(md, slurm=True) == [], md
    assert check(md.replace("- node: n1\n", ""), slurm=True) != []
