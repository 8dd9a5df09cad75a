"""The follow-up job (no admin for the hooks): its sbatch line, its record, its cancel."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hpcwrap.job.followup import cancel_after_end
from hpcwrap.runlog import RunState, create_run, lifecycle
from hpcwrap.submit import followup

T0 = datetime(2026, 3, 11, 14, 0, tzinfo=timezone.utc)


def fake_tools(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder.mkdir()
    for tool, out in (("sbatch", "77"), ("scancel", "")):
        script = folder / tool
        script.write_text(f'#!/bin/sh\necho "$@" >> "{folder}/{tool}.calls"\necho {out}\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return folder


def test_sbatch_line_is_small_afterany_and_polls_the_run() -> None:
    argv = followup.sbatch_argv("12", Path("/r/run_logs/2026-03-11_train.md"), "/v/python", "gpu")
    assert "--dependency=afterany:12" in argv and "--kill-on-invalid-dep=yes" in argv
    assert "--time=5" in argv and "--mem=100M" in argv and "--partition=gpu" in argv
    assert not any(a.startswith("--comment") for a in argv)  # the hooks never take it for a run
    wrap = argv[argv.index("--wrap") + 1]
    assert wrap.startswith("exec /v/python -m hpcwrap poll --settle")
    assert wrap.endswith("/r/run_logs/2026-03-11_train.md")


def test_submit_records_the_follow_up_and_the_wrapper_cancels_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = fake_tools(tmp_path / "bin", monkeypatch)
    log = create_run(tmp_path / "run_logs", RunState(run_type="replication", objective="o"))
    log.record(lifecycle.Submitted(T0, job_id="12", execution_id="12"))
    assert followup.submit(log, "12", python="/v/python") == "77"
    assert log.read().submit is not None and log.read().submit.follow_up_job == "77"  # type: ignore[union-attr]
    assert "afterany:12" in (tools / "sbatch.calls").read_text()
    assert cancel_after_end(log, in_slurm=True, array_task=True) is None
    assert cancel_after_end(log, in_slurm=False, array_task=False) is None
    assert not (tools / "scancel.calls").exists()
    assert cancel_after_end(log, in_slurm=True, array_task=False) == "77"
    assert (tools / "scancel.calls").read_text().split() == ["77"]


def test_a_term_leaves_the_follow_up_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A requeue looks like a TERM from inside: the job runs again and afterany waits."""
    tools = fake_tools(tmp_path / "bin", monkeypatch)
    log = create_run(tmp_path / "run_logs", RunState(run_type="replication", objective="o"))
    log.record(lifecycle.Submitted(T0, job_id="12", execution_id="12"))
    followup.submit(log, "12", python="/v/python")
    log.record(lifecycle.Ended(T0, "CANCELLED", lifecycle.Source.WRAPPER, "12", exit_code=143))
    assert cancel_after_end(log, in_slurm=True, array_task=False) is None
    assert not (tools / "scancel.calls").exists()
