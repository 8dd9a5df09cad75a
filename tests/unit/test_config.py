"""Settings files: discovery, validation, durations and custom patterns."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcwrap.config import Settings, load_settings, parse_duration, signal_number
from hpcwrap.errors import ConfigError


def test_no_file_gives_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCWRAP_CONFIG", raising=False)
    # the defaults, with run_logs/ where the project is (here: the folder itself)
    assert load_settings(tmp_path) == Settings(run_logs=tmp_path / "run_logs")


def test_hpcwrap_toml_found_from_subfolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCWRAP_CONFIG", raising=False)
    (tmp_path / "hpcwrap.toml").write_text('mode = "experiment"\nstatus_every = "10m"\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    s = load_settings(sub)
    assert s.mode == "experiment"
    assert s.status_every == 600.0
    assert s.source == tmp_path / "hpcwrap.toml"


def test_pyproject_tool_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCWRAP_CONFIG", raising=False)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname="x"\n[tool.hpcwrap]\nrun_logs = "logs"\nwalltime_lead = 90\n'
    )
    s = load_settings(tmp_path)
    assert s.run_logs == tmp_path / "logs"
    assert s.walltime_lead == 90.0


def test_pyproject_without_table_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HPCWRAP_CONFIG", raising=False)
    (tmp_path / "hpcwrap.toml").write_text('task = "eval"\n')
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname="x"\n')
    assert load_settings(inner).task == "eval"


def test_unknown_key_lists_valid_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCWRAP_CONFIG", raising=False)
    (tmp_path / "hpcwrap.toml").write_text('stauts_every = "5m"\n')
    with pytest.raises(ConfigError, match=r"stauts_every.*valid:.*status_every"):
        load_settings(tmp_path)


def test_invalid_toml_names_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCWRAP_CONFIG", raising=False)
    (tmp_path / "hpcwrap.toml").write_text("mode = \n")
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        load_settings(tmp_path)
    assert info.value.path == tmp_path / "hpcwrap.toml"


def test_env_points_at_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCWRAP_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(300, 300.0), ("90s", 90.0), ("5m", 300.0), ("2h", 7200.0), ("1.5d", 129600.0)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5 minutes", -1, True, "", "m5"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ConfigError):
        parse_duration(value)


def test_signal_names() -> None:
    assert signal_number("USR2") == signal_number("SIGUSR2") == 12
    with pytest.raises(ConfigError, match="unknown signal"):
        signal_number("USR9")


def test_custom_patterns_compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCWRAP_CONFIG", raising=False)
    (tmp_path / "hpcwrap.toml").write_text(
        "[[patterns]]\nname = \"mine\"\nregex = 'it (?P<step>\\d+) l=(?P<loss>\\S+)'\n"
    )
    (pat,) = load_settings(tmp_path).patterns
    m = pat.regex.search("ep 1 it 40 l=0.5")
    assert m is not None and m.group("step") == "40" and m.group("loss") == "0.5"


@pytest.mark.parametrize(
    ("regex", "message"),
    [
        ("it (?P<stp>\\d+)", "named groups"),
        ("it (\\d+)", "named groups"),
        ("it (?P<step>", "invalid regex"),
    ],
)
def test_bad_patterns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, regex: str, message: str
) -> None:
    monkeypatch.delenv("HPCWRAP_CONFIG", raising=False)
    (tmp_path / "hpcwrap.toml").write_text(f"[[patterns]]\nname = \"p\"\nregex = '{regex}'\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path)


def test_run_logs_found_upwards_like_git_finds_dot_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a subfolder, hpcwrap writes to the project's run_logs/, not sub/run_logs/."""
    from hpcwrap.config import find_run_logs

    monkeypatch.delenv("HPCWRAP_CONFIG", raising=False)
    # the folder with hpcwrap.toml or pyproject.toml
    proj = tmp_path / "proj"
    sub = proj / "src" / "pkg"
    sub.mkdir(parents=True)
    (proj / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert load_settings(sub).run_logs == proj / "run_logs"
    assert not (sub / "run_logs").exists()
    # else the git top level
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "a" / "b").mkdir(parents=True)
    assert find_run_logs(repo / "a" / "b") == repo / "run_logs"
    # an existing run_logs/ on the way up is the one (it holds the project's logs)
    (repo / "a" / "run_logs").mkdir()
    assert find_run_logs(repo / "a" / "b") == repo / "a" / "run_logs"
    # nothing above: the folder itself
    lone = tmp_path / "lone"
    lone.mkdir()
    assert find_run_logs(lone) == lone / "run_logs"
    # a run_logs setting still wins, relative to its file
    (proj / "hpcwrap.toml").write_text('run_logs = "logs"\n')
    assert load_settings(sub).run_logs == proj / "logs"


def test_a_command_says_which_run_logs_it_uses_when_not_the_git_top_levels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An hpcwrap.toml in a subfolder moves run_logs/ there: a command run from it says
    so on stderr, once; from the top level (the usual case) it says nothing."""
    from hpcwrap.cli import main

    monkeypatch.delenv("HPCWRAP_CONFIG", raising=False)
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    sub = repo / "experiments" / "vit"
    sub.mkdir(parents=True)
    (sub / "hpcwrap.toml").write_text('group = "vit"\n')
    monkeypatch.chdir(sub)
    assert main(["status"]) == 0
    err = capsys.readouterr().err
    want = (
        f"hpcwrap: run logs in {sub / 'run_logs'} (project root {sub} holds hpcwrap.toml; "
        f"the git top level is {repo})"
    )
    assert err.splitlines().count(want) == 1, err
    monkeypatch.chdir(repo)
    assert main(["status"]) == 0
    assert "run logs in" not in capsys.readouterr().err
