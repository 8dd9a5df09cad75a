"""`hpcwrap plot`: the PNG, its `- plot:` line in Results, and the message without matplotlib."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from hpcwrap.cli import main as cli_main
from hpcwrap.runlog import RunLog, RunState, create_run
from hpcwrap.runlog.telemetry import append_record


def made_run(tmp_path: Path) -> RunLog:
    log = create_run(
        tmp_path / "run_logs", RunState(task="train", run_type="replication", objective="plot")
    )
    for step in range(1, 6):
        log.append_event("progress", {"step": step * 10, "train_loss": 2.0 / step})
    log.append_event("progress", {"step": 50, "val_loss": 0.7})
    for i in range(5):
        append_record(
            log.sidecar,
            {
                "t": 1000.0 + 10 * i,
                "node": "n1",
                "gpus": [{"gpu": "0", "util": 90.0 + i, "mem_used": (i + 1) << 30}],
            },
        )
    return log


def test_plot_writes_a_png_and_links_it(tmp_path: Path, monkeypatch: Any) -> None:
    pytest.importorskip("matplotlib")
    log = made_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert cli_main(["plot", str(log.path)]) == 0
    png = log.sidecar / "plot.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = log.path.read_text()
    assert f"- plot: `.hpcwrap/{log.sidecar.name}/plot.png`" in md
    # drawing again keeps one line
    assert cli_main(["plot", str(log.path)]) == 0
    assert log.path.read_text().count("- plot:") == 1


def test_plot_without_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    log = made_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code = cli_main(["plot", str(log.path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "matplotlib" in err and "hpcwrap[plots]" in err and "Traceback" not in err
    assert "- plot:" not in log.path.read_text()


def test_plot_draws_every_loss_the_output_printed(
    tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    """120 losses printed, 12 progress events (one in ten seconds): the plot draws the 120
    (it drew the events' 12), says where they came from, and thins only past MAX_POINTS."""
    pytest.importorskip("matplotlib")
    from hpcwrap.reports import plot as plot_cmd
    from hpcwrap.runlog.facts import SubmitFacts
    from hpcwrap.runlog.model import JobBlock

    log = create_run(
        tmp_path / "run_logs", RunState(task="train", run_type="replication", objective="plot")
    )
    for n in range(12):
        log.append_event("progress", {"step": n * 10, "train_loss": 3.0 - n * 0.1})
    lines = [f"step {i} loss {3.0 - i * 0.01:.4f}" for i in range(120)]
    (tmp_path / "slurm-77.out").write_text("\n".join([*lines, "step 120 val_loss 1.9"]) + "\n")

    def submitted(s: RunState) -> None:
        s.submit = SubmitFacts(workdir=str(tmp_path), output=str(tmp_path / "slurm-%j.out"))
        s.jobs.append(JobBlock(execution_id="77", state="COMPLETED"))

    log.update(submitted)
    monkeypatch.chdir(tmp_path)
    assert cli_main(["plot", str(log.path)]) == 0
    assert "(120 train / 1 val loss points" in capsys.readouterr().err
    counts = plot_cmd.draw("t", log.sidecar, tmp_path / "p.png", state=log.read())
    assert counts["train_loss"] == 120
    many = [(float(i), 1.0) for i in range(12_001)]
    kept, k = plot_cmd.thinned(many)
    assert k == 3 and len(kept) <= plot_cmd.MAX_POINTS + 1 and kept[-1] == many[-1]
    assert plot_cmd.thinned(many[:5000]) == (many[:5000], 1)
