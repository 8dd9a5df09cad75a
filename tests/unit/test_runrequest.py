"""Run-description options: modes, required fields, --set parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcwrap.config import Settings
from hpcwrap.errors import UsageError
from hpcwrap.runlog.model import parse_run_type
from hpcwrap.submit.request import build_run_request, parse_setting


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("replication", "replication"),
        ("experiment", "experiment"),
        ("pipeline:data generation", "pipeline (data generation)"),
        ("pipeline (format conversion)", "pipeline (format conversion)"),
    ],
)
def test_run_types(text: str, rendered: str) -> None:
    assert parse_run_type(text) == rendered
    assert parse_run_type(rendered) == rendered


@pytest.mark.parametrize("text", ["training", "pipeline", "pipeline:", "pipeline:a)b", ""])
def test_bad_run_types_name_the_flag(text: str) -> None:
    with pytest.raises(UsageError, match="--mode"):
        parse_run_type(text)


def test_missing_mode_and_objective_show_the_flag() -> None:
    with pytest.raises(UsageError, match="missing --mode"):
        build_run_request(settings=Settings(), objective="x")
    with pytest.raises(UsageError, match="missing --objective"):
        build_run_request(settings=Settings(), mode="replication")


def test_settings_supply_defaults_and_cli_wins() -> None:
    s = Settings(mode="experiment", objective="from config", group="g")
    req = build_run_request(settings=s, objective="from cli", set_values=["lr=3e-4", "bs = 32"])
    assert (req.run_type, req.objective, req.group) == ("experiment", "from cli", "g")
    assert req.key_settings == {"lr": "3e-4", "bs": "32"}


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        build_run_request(
            settings=Settings(), mode="replication", objective="o", config=str(tmp_path / "c.yaml")
        )


@pytest.mark.parametrize("text", ["lr", "=3", "a=b\nc"])
def test_bad_set(text: str) -> None:
    with pytest.raises(UsageError, match="--set"):
        parse_setting(text)


def test_bad_task_and_group() -> None:
    with pytest.raises(UsageError, match="--task"):
        build_run_request(settings=Settings(), mode="replication", objective="o", task="../x")
    with pytest.raises(UsageError, match="--group"):
        build_run_request(settings=Settings(), mode="replication", objective="o", group=".hidden")


def test_description_defaults_to_the_objective() -> None:
    req = build_run_request(settings=Settings(), mode="replication", objective=" o ")
    assert req.description == "o"
    req = build_run_request(settings=Settings(), mode="replication", objective="o", description="d")
    assert req.description == "d"
