"""Typed machine facts: their state.json round trip, and state.json files of the release
before them (tests/unit/legacy_state, written by that version) still read."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from hpcwrap.errors import RunLogError
from hpcwrap.runlog import RunLog, RunState, layout, lifecycle
from hpcwrap.runlog.facts import (
    ArrayTaskFacts,
    CodeFacts,
    ConfigFacts,
    SubmitFacts,
    facts_from_dict,
    facts_to_dict,
)
from hpcwrap.runlog.model import from_dict, to_dict

LEGACY = Path(__file__).parent / "legacy_state" / "run_logs"
T = datetime(2026, 11, 29, 19, 0, tzinfo=timezone.utc)


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    root = tmp_path / "run_logs"
    shutil.copytree(LEGACY, root)
    return root


def test_typed_facts_round_trip_through_state_json_form() -> None:
    state = RunState(
        code_state=CodeFacts(repo="/r", commit="abc", dirty=True, untracked=2, tag="t"),
        config_facts=ConfigFacts(source="/c.yaml", sha256="00", copy=".hpcwrap/x/config/c.yaml"),
        submit=SubmitFacts(job_id="7", sources={"time": "#SBATCH"}, command=["sbatch", "x"]),
        array_tasks={"0": ArrayTaskFacts(start=T, state="RUNNING", restart_count=0)},
        array_results_task="0",
        next_drafted=["resume"],
        extra={"someone_elses": {"nested": 1}},
    )
    data = orjson.loads(orjson.dumps(to_dict(state)))
    assert from_dict(data) == state


def test_facts_from_dict_converts_and_ignores_unknown_keys() -> None:
    got = facts_from_dict(
        SubmitFacts, {"job_id": 12, "wait": 1, "notes": ["a"], "from_the_future": "x"}
    )
    assert got == SubmitFacts(job_id="12", wait=True, notes=["a"])
    assert facts_to_dict(ArrayTaskFacts(start=T))["start"] == "2026-11-29T19:00:00+00:00"


def test_state_json_of_the_previous_release_reads_into_typed_fields(legacy: Path) -> None:
    state = RunLog(legacy / "2026-11-29_train.md").read()
    code, config, submit = state.code_state, state.config_facts, state.submit
    assert code is not None and code.dirty and code.commit and len(code.commit) == 40
    assert code.tag == "hpcwrap/2026-11-29_train"
    assert code.diff == ".hpcwrap/2026-11-29_train/code.diff"
    assert config is not None and config.copy == ".hpcwrap/2026-11-29_train/config/conf.yaml"
    assert config.sha256 is not None and len(config.sha256) == 64
    assert submit is not None and submit.job_id == "4241" and submit.sources["time"] == "#SBATCH"
    assert state.extra == {}  # nothing left in the untyped bag

    arr = RunLog(legacy / "2026-11-29_arr.md").read()
    assert sorted(arr.array_tasks) == ["0", "1"]
    assert all(t.state == "COMPLETED" and t.start is not None for t in arr.array_tasks.values())
    assert arr.array_results_task == "1" and arr.next_drafted
    assert arr.jobs[0].state == "COMPLETED"


def test_a_legacy_log_rebuilt_from_its_events_alone(legacy: Path) -> None:
    (legacy / ".hpcwrap" / "2026-11-29_arr" / "state.json").unlink()
    with pytest.warns(UserWarning):
        arr = RunLog(legacy / "2026-11-29_arr.md").read()
    assert sorted(arr.array_tasks) == ["0", "1"] and arr.array_results_task == "1"


def test_writing_a_legacy_log_moves_its_facts_out_of_extra(legacy: Path) -> None:
    log = RunLog(legacy / "2026-11-29_train.md")
    log.record(lifecycle.Started(T, execution_id="4241", nodes="n1", in_slurm=True))
    raw = orjson.loads((log.sidecar / "state.json").read_bytes())["state"]
    assert raw["extra"] == {} and raw["code_state"]["tag"] == "hpcwrap/2026-11-29_train"
    assert raw["submit"]["job_id"] == "4241"
    state = log.read()
    assert state.jobs[0].state == "RUNNING" and state.config_facts is not None
    # and the events alone give the same state as state.json
    (log.sidecar / "state.json").unlink()
    with pytest.warns(UserWarning):
        assert RunLog(log.path).read() == state


MAIN_BEFORE = Path(__file__).parent / "legacy_state" / "main-4bb3c70" / "run_logs"


def test_a_log_written_before_the_restructuring_is_read_and_updated(tmp_path: Path) -> None:
    root = tmp_path / "run_logs"
    shutil.copytree(MAIN_BEFORE, root)
    log = RunLog(root / "2026-12-07_train.md")
    state = log.read()
    job = state.jobs[0]
    assert (job.state, job.exit_code, state.results.final_step) == ("COMPLETED", 0, 60)
    # written before verdicts carried a strength: the wrapper's end stands, as it did then
    assert job.state_basis is None and lifecycle.basis_of(job) is lifecycle.Strength.OWN
    log.record(
        lifecycle.Ended(
            T, "FAILED", lifecycle.Source.EPILOG, job.execution_id or "", text="weaker", exit_code=1
        )
    )
    log.record(lifecycle.ProgressObserved(T, "checked by hand after the upgrade"))
    text = log.path.read_text()
    assert "- compare with the lr sweep before a longer run (added by hand)" in text
    assert "- notes: offline only, on purpose (added by hand)" in text
    assert "checked by hand after the upgrade" in text and "weaker" not in text
    assert "- state: COMPLETED" in text and "- final step: 60" in text
    doc = orjson.loads((root / ".hpcwrap" / "2026-12-07_train" / "state.json").read_bytes())
    assert doc["format"] == layout.FORMAT


def test_a_sidecar_of_a_newer_format_is_refused_not_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "run_logs"
    shutil.copytree(MAIN_BEFORE, root)
    path = root / ".hpcwrap" / "2026-12-07_train" / "state.json"
    doc = orjson.loads(path.read_bytes())
    doc["format"] = 99
    path.write_bytes(orjson.dumps(doc))
    before = path.read_bytes()
    with pytest.raises(RunLogError, match=r"newer hpcwrap \(sidecar format 99"):
        RunLog(root / "2026-12-07_train.md").read()
    assert path.read_bytes() == before
