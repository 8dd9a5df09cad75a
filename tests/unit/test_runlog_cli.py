"""`hpcwrap log new|note|show|reindex`, and how <run> is resolved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcwrap.cli import main
from hpcwrap.errors import AmbiguousRunError, RunNotFoundError
from hpcwrap.runlog import open_run

# An obviously fake token in the hf_ format the redactor must catch.
FAKE_HF_TOKEN = "hf_" + "FAKE" * 8


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPCWRAP_CONFIG", raising=False)


def _new(capsys: pytest.CaptureFixture[str], *extra: str) -> Path:
    rc = main(["log", "new", "--mode", "experiment", "--objective", "does lr 5e-4 help?", *extra])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return Path(out.strip())


def test_new_creates_log_timeline_and_experiment_row(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = tmp_path / "train.yaml"
    cfg.write_text("lr: 5e-4\n")
    path = _new(
        capsys,
        "--task",
        "train_lr",
        "--description",
        "lr 5e-4",
        "--group",
        "sweep",
        "--config",
        str(cfg),
        "--dataset",
        "`d.parquet` at `/data`",
        "--set",
        "lr=5e-4",
        "--set",
        "batch_size=64",
        "--execution-id",
        "vm-3/europe-west4-a",
        "--script",
        "docker run img train",
    )
    assert path.parent == tmp_path / "run_logs" / "sweep" and path.name.endswith("_train_lr.md")
    text = path.read_text()
    for line in [
        "# train_lr — lr 5e-4",
        "- run_type: experiment",
        "- objective: does lr 5e-4 help?",
        "- script: `docker run img train`",  # in a code span, as the spec writes it
        f"- config: `{cfg}`",
        "- dataset: `d.parquet` at `/data`",
        "- key settings: lr=5e-4, batch_size=64",
        "- execution_id: vm-3/europe-west4-a",
    ]:
        assert line in text.splitlines()
    assert f"`{path.name}`" in (tmp_path / "run_logs" / "sweep" / "timeline.md").read_text()
    assert (
        f"| sweep/{path.stem} | lr 5e-4 |" in (tmp_path / "run_logs" / "experiments.md").read_text()
    )
    assert (open_run(path).sidecar / "config" / "train.yaml").read_text() == "lr: 5e-4\n"


@pytest.mark.parametrize(
    ("args", "flag"), [(["--objective", "x"], "--mode"), (["--mode", "replication"], "--objective")]
)
def test_new_without_mode_or_objective_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], args: list[str], flag: str
) -> None:
    assert main(["log", "new", *args]) == 2
    assert flag in capsys.readouterr().err
    assert not Path("run_logs").exists()


def test_note_show_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    path = _new(capsys)
    assert main(["log", "note", path.stem[:7], "step 2400, train_loss 0.085"]) == 0
    capsys.readouterr()
    assert main(["log", "show", path.name]) == 0
    out = capsys.readouterr().out
    assert out == path.read_text()
    assert "— step 2400, train_loss 0.085\n" in out
    assert main(["log", "show", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["path"] == str(path.resolve())
    assert doc["state"]["status"][0][1] == "step 2400, train_loss 0.085"
    assert doc["state"]["run_type"] == "experiment"
    assert doc["person_owned"] == []
    # a person rewrites the objective: the file keeps theirs, --json says the field is theirs
    path.write_text(path.read_text().replace("does lr 5e-4 help?", "does 5e-4 beat 3e-4?"))
    assert main(["log", "note", path.name, "checked"]) == 0
    capsys.readouterr()
    assert main(["log", "show", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["person_owned"] == ["mode.objective", "title"]  # the title held it too
    assert "- objective: does 5e-4 beat 3e-4?" in path.read_text()


def test_errors_get_their_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    _new(capsys)
    _new(capsys)
    assert main(["log", "show", "nope"]) == 4
    assert "no run log matching 'nope'" in capsys.readouterr().err
    assert main(["log", "note", "20", "x"]) == 5
    assert "matches 2 run logs" in capsys.readouterr().err
    assert main(["log", "note", "20", "  "]) == 2
    bad = Path("run_logs/2026-01-01_hand.md")
    bad.write_bytes(b"\xff\xfe not utf-8\n")
    assert main(["log", "note", "2026-01-01_hand", "x"]) == 6
    err = capsys.readouterr().err
    assert "hpcwrap-conflict.md" in err and bad.read_bytes() == b"\xff\xfe not utf-8\n"


def test_reindex_command(capsys: pytest.CaptureFixture[str]) -> None:
    path = _new(capsys)
    (path.parent / "timeline.md").unlink()
    assert main(["log", "reindex"]) == 0
    assert "1 timeline entries" in capsys.readouterr().out
    assert f"`{path.name}`" in (path.parent / "timeline.md").read_text()
    assert main(["log", "reindex", "elsewhere"]) == 4


def test_a_deleted_markdown_is_found_and_rebuilt_from_its_sidecar(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`rm run_logs/<run>.md` mid-job and the wrapper killed: state.json and events.jsonl
    are whole. Before: `log show`, `poll` and `log reindex` said "no run log matching"."""
    path = _new(capsys, "--task", "lost")
    assert main(["log", "note", path.stem, "a note before the loss"]) == 0
    text = path.read_text()
    path.unlink()
    capsys.readouterr()
    assert main(["log", "reindex"]) == 0
    assert "brought up to its sidecar (the Markdown is missing)" in capsys.readouterr().err
    assert path.read_text() == text  # rebuilt, as it was
    path.unlink()
    capsys.readouterr()
    assert main(["status"]) == 0  # status, a reader, still lists it
    assert path.stem in capsys.readouterr().out and not path.exists()
    assert main(["log", "show", "lost"]) == 0
    out, err = capsys.readouterr()
    assert "a note before the loss" in out and "rebuilt from its sidecar" in err
    assert main(["log", "note", "lost", "and after"]) == 0
    assert "and after" in path.read_text()


def test_run_resolution(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = _new(capsys, "--task", "train")
    b = _new(capsys, "--task", "train")
    c = _new(capsys, "--task", "eval", "--group", "g")
    root = Path("run_logs")
    assert open_run(a.stem, root).path == a.resolve()  # exact name beats the prefix of _2
    assert open_run(b.name, root).path == b.resolve()
    assert open_run(str(c), root).path == c.resolve()
    assert open_run("g/" + c.stem, root).path == c.resolve()
    assert open_run("g/" + c.name, root).path == c.resolve()
    assert open_run(c.stem[:11] + "ev", root).path == c.resolve()
    with pytest.raises(AmbiguousRunError) as err:
        open_run(a.stem[:5], root)
    assert len(err.value.candidates) == 3
    with pytest.raises(RunNotFoundError):
        open_run("1999", root)
    with pytest.raises(RunNotFoundError):
        open_run("x", tmp_path / "missing")


def test_new_keeps_secrets_out_of_log_state_and_events(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _new(
        capsys,
        "--set",
        "lr=3e-4",
        "--set",
        "wandb_api_key=SEKRET1",
        "--set",
        f"note=uses {FAKE_HF_TOKEN}",
        "--script",
        "docker run -e HF_TOKEN=SEKRET2 --wandb-key SEKRET3 'my img' --lr 3e-4",
    )
    text = path.read_text()
    assert "lr=3e-4" in text and "'my img' --lr 3e-4" in text
    assert "wandb_api_key=***" in text
    for f in [path, *(tmp_path / "run_logs" / ".hpcwrap").rglob("*")]:
        if f.is_file():
            data = f.read_text()
            for secret in ("SEKRET", FAKE_HF_TOKEN[:12]):
                assert secret not in data, f
    # A command with nothing secret in it is kept as written.
    path2 = _new(capsys, "--script", 'docker run  "img"')
    assert '- script: `docker run  "img"`' in path2.read_text()


@pytest.mark.parametrize("name", ["run_logs/timeline.md", "x.py", "run_logs/notes.md"])
def test_note_refuses_a_file_that_is_not_a_run_log(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    _new(capsys)
    target = tmp_path / name
    if not target.exists():
        target.write_text("# my notes\n\nprint(1)\n")
    before = target.read_bytes()
    assert main(["log", "note", str(target), "step 1, loss 2"]) == 2
    assert "is not a run log" in capsys.readouterr().err
    assert target.read_bytes() == before
    assert not (target.parent / ".hpcwrap" / target.stem).exists()
    assert not list(tmp_path.rglob("*.hpcwrap-conflict.md"))


def test_reindex_of_the_folder_above_run_logs_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _new(capsys)  # an experiment: reindexing "." would have made ./experiments.md
    assert main(["log", "reindex", "."]) == 2
    assert "run it on run_logs" in capsys.readouterr().err
    assert not (tmp_path / "experiments.md").exists()
    assert main(["log", "reindex", "run_logs"]) == 0


def test_recovery_warning_is_one_plain_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import subprocess
    import sys

    path = _new(capsys)
    (path.parent / ".hpcwrap" / path.stem / "state.json").write_text("{torn")
    proc = subprocess.run(
        [sys.executable, "-m", "hpcwrap", "log", "show", path.stem, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("hpcwrap: warning: ") and "state.json is damaged" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1  # no source line of hpcwrap's code under it


def test_run_found_by_its_task_part_and_candidates_listed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    embed = _new(capsys, "--task", "embed")
    assert embed.name.endswith("_embed.md")
    # the task part finds it (only a prefix of the dated name did before)
    assert main(["log", "note", "embed", "wrote 1200 embeddings"]) == 0
    capsys.readouterr()
    assert "wrote 1200 embeddings" in embed.read_text()
    assert open_run("emb", Path("run_logs")).path == embed.resolve()
    # several: each candidate named
    embed2 = _new(capsys, "--task", "embed")
    assert main(["log", "note", "embed", "x"]) == 5
    err = capsys.readouterr().err
    assert embed.stem in err and embed2.stem in err
    # none: the runs there are listed
    assert main(["log", "show", "train"]) == 4
    err = capsys.readouterr().err
    assert "no run log matching 'train'" in err and embed2.stem in err


def test_run_logs_of_the_project_found_from_a_subfolder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hpcwrap.toml").write_text("")
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    path = _new(capsys, "--task", "embed")
    assert path.parent == tmp_path / "run_logs"  # says where it wrote: the full path
    assert not (sub / "run_logs").exists()
    assert main(["log", "note", "embed", "from the subfolder"]) == 0
    assert "from the subfolder" in path.read_text()


def test_status_reads_no_state_json_over_the_cap(capsys: pytest.CaptureFixture[str]) -> None:
    """A 300 MB state.json: status does not load it (a reader stays small), says so, and
    still lists the run from its events."""
    from hpcwrap.runlog import RunLogWarning

    path = _new(capsys, "--task", "huge")
    state_json = path.parent / ".hpcwrap" / path.stem / "state.json"
    with open(state_json, "ab") as fh:
        fh.truncate(300 * 2**20)
    with pytest.warns(RunLogWarning, match="over hpcwrap's cap"):
        assert main(["status"]) == 0
    assert path.stem in capsys.readouterr().out
    assert state_json.stat().st_size == 300 * 2**20  # status writes nothing
