"""timeline.md, experiments.md, run names and `reindex`."""

from __future__ import annotations

import multiprocessing as mp
import shutil
from datetime import date, datetime, timezone
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from hpcwrap.runlog import RunState, create_run, open_run, reindex
from hpcwrap.runlog.dates import (
    format_runtime,
    human_date,
    iso,
    ordinal,
    parse_timestamp,
    timeline_date,
)
from hpcwrap.runlog.timeline import add_runs, timeline_header, title_words

UTC = timezone.utc
T0 = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)
FIXTURES = Path(__file__).parent / "runlog_fixtures"


# ---------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("day", "text"),
    [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (22, "22nd"),
        (23, "23rd"),
        (24, "24th"),
        (30, "30th"),
        (31, "31st"),
        (111, "111th"),
    ],
)
def test_ordinals(day: int, text: str) -> None:
    assert ordinal(day) == text


def test_human_dates() -> None:
    assert human_date(date(2026, 2, 25)) == "Wednesday, Feb 25th, 2026"
    assert human_date(datetime(2026, 2, 26, 1, 0, tzinfo=UTC)) == "Thursday, Feb 26th, 2026"
    assert timeline_date(date(2026, 2, 20)) == "Friday, Feb 20th"
    assert timeline_date(date(2026, 2, 21)) == "Saturday, Feb 21st"
    assert timeline_date(date(2026, 3, 22)) == "Sunday, Mar 22nd"
    assert timeline_date(date(2026, 4, 13)) == "Monday, Apr 13th"
    assert iso(T0) == "2026-03-11T15:00:00+00:00"
    assert format_runtime(90061) == "25:01:01" and format_runtime(-5) == "00:00:00"
    assert format_runtime(float("nan")) == "00:00:00"
    assert parse_timestamp("2026-03-12 15:00 UTC") == datetime(2026, 3, 12, 15, 0, tzinfo=UTC)
    assert parse_timestamp("`2026-03-12T17:00:00+02:00`") == datetime(
        2026, 3, 12, 15, 0, tzinfo=UTC
    )
    assert parse_timestamp("<ISO timestamp>") is None


# ---------------------------------------------------------------- timeline


def test_headers_from_folder_names() -> None:
    assert title_words("arx5_multitask") == "ARX5 Multitask"
    assert title_words("libero_subtask") == "Libero Subtask"
    assert timeline_header(Path("run_logs"), Path("run_logs")) == "# Run Logs Timeline"
    assert (
        timeline_header(Path("run_logs/arx5_multitask"), Path("run_logs"))
        == "# ARX5 Multitask Timeline"
    )


def test_timeline_in_date_order_keeping_human_lines(tmp_path: Path) -> None:
    folder = tmp_path / "arx5_multitask"
    folder.mkdir()
    (folder / "timeline.md").write_text(
        "# ARX5 Multitask Timeline\n"
        "1. `2026-02-20_train.md` — Friday, Feb 20th\n"
        "   (the good one)\n"
        "2. `2026-02-25_eval.md` — Wednesday, Feb 25th\n"
        "\nnotes at the bottom stay at the bottom\n"
    )
    add_runs(
        folder, tmp_path, ["2026-02-21_train.md", "2026-03-01_train.md", "2026-02-20_train.md"]
    )
    assert (folder / "timeline.md").read_text() == (
        "# ARX5 Multitask Timeline\n"
        "1. `2026-02-20_train.md` — Friday, Feb 20th\n"
        "   (the good one)\n"
        "2. `2026-02-21_train.md` — Saturday, Feb 21st\n"
        "3. `2026-02-25_eval.md` — Wednesday, Feb 25th\n"
        "4. `2026-03-01_train.md` — Sunday, Mar 1st\n"
        "\nnotes at the bottom stay at the bottom\n"
    )


def test_new_timeline_and_crlf_timeline(tmp_path: Path) -> None:
    add_runs(tmp_path, tmp_path, ["2026-02-21_train.md"])
    assert (tmp_path / "timeline.md").read_text() == (
        f"# {title_words(tmp_path.name)} Timeline\n1. `2026-02-21_train.md` — Saturday, Feb 21st\n"
    )
    (tmp_path / "timeline.md").write_bytes(
        b"# Mine\r\n1. `2026-02-21_train.md` \xe2\x80\x94 Sat\r\n"
    )
    add_runs(tmp_path, tmp_path, ["2026-02-22_train.md"])
    assert (tmp_path / "timeline.md").read_bytes() == (
        b"# Mine\r\n1. `2026-02-21_train.md` \xe2\x80\x94 Sat\r\n"
        + "2. `2026-02-22_train.md` — Sunday, Feb 22nd\r\n".encode()
    )


def test_two_runs_same_day_get_distinct_names(tmp_path: Path) -> None:
    a = create_run(tmp_path, RunState(task="train", run_type="replication", objective="o"), when=T0)
    b = create_run(tmp_path, RunState(task="train", run_type="replication", objective="o"), when=T0)
    (tmp_path / "2026-03-11_train_3.md").write_text("# written by hand\n")
    c = create_run(tmp_path, RunState(task="train", run_type="replication", objective="o"), when=T0)
    assert [a.name, b.name, c.name] == [
        "2026-03-11_train",
        "2026-03-11_train_2",
        "2026-03-11_train_4",
    ]
    assert "3. `2026-03-11_train_4.md`" in (tmp_path / "timeline.md").read_text()


def _create(root: str, barrier: Barrier, out: Queue[str]) -> None:
    barrier.wait()
    log = create_run(
        Path(root), RunState(task="train", group="g", run_type="experiment", objective="o"), when=T0
    )
    out.put(log.name)


def test_names_are_unique_across_processes(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    n = 8
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_create, args=(str(tmp_path), barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    names = sorted(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    assert len(set(names)) == n
    timeline = (tmp_path / "g" / "timeline.md").read_text()
    assert all(f"`{name}.md`" in timeline for name in names)
    rows = [
        ln for ln in (tmp_path / "experiments.md").read_text().splitlines() if ln.startswith("| g/")
    ]
    assert len(rows) == n


# ---------------------------------------------------------------- experiments


def test_experiments_row_filled_and_verdicts_left_alone(tmp_path: Path) -> None:
    log = create_run(
        tmp_path,
        RunState(
            task="train", description="LR 1e-3 -> 5e-4 | wd", run_type="experiment", objective="o"
        ),
        when=T0,
    )
    exp = tmp_path / "experiments.md"
    assert exp.read_text() == (
        "# Experiments\n"
        "| run | description | val_loss | status | notes |\n"
        "|-----|-------------|----------|--------|-------|\n"
        "| 2026-03-11_train | LR 1e-3 -> 5e-4 \\| wd |  |  |  |\n"
    )
    log.update(lambda s: setattr(s.results, "end_val_loss", 0.031))
    assert "| 2026-03-11_train | LR 1e-3 -> 5e-4 \\| wd | 0.031 |  |  |" in exp.read_text()
    # a person records a verdict and corrects the loss by hand
    exp.write_text(
        exp.read_text().replace("| 0.031 |  |  |", "| 0.0305 (rerun) | keep | baseline |")
    )
    log.update(lambda s: setattr(s.results, "end_val_loss", 0.029))
    assert (
        "| 2026-03-11_train | LR 1e-3 -> 5e-4 \\| wd | 0.0305 (rerun) | keep | baseline |"
        in exp.read_text()
    )


def test_replications_do_not_go_in_experiments(tmp_path: Path) -> None:
    create_run(tmp_path, RunState(task="train", run_type="replication", objective="o"), when=T0)
    assert not (tmp_path / "experiments.md").exists()


def test_person_columns_kept(tmp_path: Path) -> None:
    (tmp_path / "experiments.md").write_text(
        "# Experiments\n\nOur sweep.\n\n| run | description | val_loss | status | notes | owner |\n"
        "|---|---|---|---|---|---|\n| old_run | x | 0.1 | discard | worse | ana |\n"
    )
    create_run(
        tmp_path, RunState(task="t", description="d", run_type="experiment", objective="o"), when=T0
    )
    assert (
        (tmp_path / "experiments.md")
        .read_text()
        .endswith(
            "| old_run | x | 0.1 | discard | worse | ana |\n| 2026-03-11_t | d |  |  |  |  |\n"
        )
    )


# ---------------------------------------------------------------- reindex


def test_reindex_builds_indexes_from_hand_written_logs(tmp_path: Path) -> None:
    root = tmp_path / "run_logs"
    (root / "front").mkdir(parents=True)
    for p in FIXTURES.glob("*.md"):
        shutil.copy2(
            p, (root / "front" if "front" in p.name or "lr_sweep" in p.name else root) / p.name
        )
    (root / "front" / "timeline.md").write_text("# Front Cam Timeline\nkeep this line\n")
    res = reindex(root)
    assert res.logs == 6 and res.folders == 2 and res.timeline_added == 6
    assert res.experiment_rows_added == 2
    front = (root / "front" / "timeline.md").read_text()
    assert front == (
        "# Front Cam Timeline\nkeep this line\n"
        "1. `2026-03-11_train_front_cam.md` — Wednesday, Mar 11th\n"
        "2. `2026-03-12_train_lr_sweep.md` — Thursday, Mar 12th\n"
    )
    top = (root / "timeline.md").read_text().splitlines()
    assert top[0] == "# Run Logs Timeline" and len(top) == 5
    exp = (root / "experiments.md").read_text()
    assert "| front/2026-03-12_train_lr_sweep | LR 1e-3 -> 5e-4 | 0.025 |  |  |" in exp
    assert "| 2026-03-22_train | both cams, first try |  |  |  |" in exp
    again = reindex(root)
    assert again.timeline_added == 0 and again.experiment_rows_added == 0
    assert (root / "front" / "timeline.md").read_text() == front
    # the logs themselves are untouched, and none got a sidecar
    for p in FIXTURES.glob("*.md"):
        found = open_run(p.name, root)
        assert found.path.read_bytes() == p.read_bytes()
        assert not found.sidecar.exists()


def test_timeline_lists_runs_of_a_day_in_the_order_they_were_created(tmp_path: Path) -> None:
    root = tmp_path / "run_logs"
    first = create_run(root, RunState(task="train_long", run_type="replication"), when=T0)
    second = create_run(root, RunState(task="train_front_cam", run_type="replication"), when=T0)
    third = create_run(root, RunState(task="train_front_cam", run_type="replication"), when=T0)
    expected = [first.path.name, second.path.name, third.path.name]
    assert expected[2].endswith("_train_front_cam_2.md")

    def listed() -> list[str]:
        lines = (root / "timeline.md").read_text().splitlines()[1:]
        return [ln.split("`")[1] for ln in lines]

    # by creation, not by name (train_long sorts after train_front_cam_2 by name)
    assert listed() == expected
    # rebuilt by reindex: the same order, from the sidecars' creation times
    (root / "timeline.md").unlink()
    import json

    for n, log in enumerate((first, second, third)):
        events = log.sidecar / "events.jsonl"
        lines = events.read_text().splitlines()
        head = json.loads(lines[0])
        head["t"] = f"2026-03-11T15:0{n}:00+00:00"
        events.write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
    reindex(root)
    assert listed() == expected


def test_reindex_warns_about_misnamed_logs_and_fixes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpcwrap.cli import main

    root = tmp_path / "run_logs"
    log = create_run(root, RunState(task="train", run_type="replication", objective="o"), when=T0)
    log.add_status("step 10, loss 1.0", T0)
    wrong = root / "train_2026-03-13.md"  # the spec's own example of a wrong name
    log.path.rename(wrong)
    log.sidecar.rename(root / ".hpcwrap" / wrong.stem)
    (root / "notes.md").write_text("# my notes\n")  # no date: not a run log, no warning
    monkeypatch.chdir(tmp_path)
    assert main(["log", "reindex", str(root)]) == 0
    err = capsys.readouterr().err
    assert f"{wrong} is not named <date>_<task>.md" in err
    assert "it should be 2026-03-13_train.md" in err and "--fix" in err
    assert "notes.md" not in err
    assert wrong.exists()
    assert main(["log", "reindex", str(root), "--fix"]) == 0
    err = capsys.readouterr().err
    assert f"renamed {wrong} -> 2026-03-13_train.md (with its sidecar)" in err
    fixed = root / "2026-03-13_train.md"
    assert fixed.is_file() and not wrong.exists()
    assert (root / ".hpcwrap" / "2026-03-13_train" / "state.json").is_file()
    assert not (root / ".hpcwrap" / wrong.stem).exists()
    assert "`2026-03-13_train.md`" in (root / "timeline.md").read_text()
    # the sidecar came along: the state (its Status) is still the run's
    state = open_run(fixed).read()
    assert [s.text for s in state.status] == ["step 10, loss 1.0"]
