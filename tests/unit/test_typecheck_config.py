"""mypy checks the tests too (pyproject.toml [tool.mypy]), relaxed only where tests need it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def mypy_config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["mypy"]
    return config


def test_mypy_checks_the_package_and_the_tests_strictly() -> None:
    config = mypy_config()
    assert config["strict"] is True
    assert {"hpcwrap", "tests"} <= set(config["files"])
    # Every file under tests/ gets a tests.* module name (bench/ has no __init__.py).
    assert config["explicit_package_bases"] is True
    assert (PYPROJECT.parent / "tests" / "__init__.py").exists()


def test_the_tests_override_relaxes_annotations_only() -> None:
    overrides = [o for o in mypy_config().get("overrides", []) if "tests.*" in o["module"]]
    assert len(overrides) == 1
    relaxed = {k: v for k, v in overrides[0].items() if k != "module"}
    allowed_off = {"disallow_untyped_defs", "disallow_incomplete_defs", "disallow_untyped_calls"}
    assert {k for k, v in relaxed.items() if v is False} <= allowed_off
    assert relaxed.get("check_untyped_defs") is True  # bodies of unannotated tests are checked
    assert not relaxed.get("ignore_errors") and not relaxed.get("ignore_missing_imports")
