"""The real-framework tier: real HF Trainer, Lightning and accelerate runs under ``hpcwrap run``.

Needs the ``frameworks`` extra (torch CPU, transformers, datasets,
pytorch-lightning, rich, accelerate). Where it is not installed, every test here
is skipped with the missing packages named (in pytest's header and its skip
summary), never silently.
"""

from __future__ import annotations

import importlib.util

import pytest

PACKAGES = ("torch", "transformers", "datasets", "pytorch_lightning", "rich", "accelerate")


def missing() -> list[str]:
    return [p for p in PACKAGES if importlib.util.find_spec(p) is None]


def pytest_report_header() -> str:
    gone = missing()
    if not gone:
        return "frameworks tier: torch, transformers, datasets, pytorch_lightning, rich, accelerate"
    return (
        f"frameworks tier: SKIPPED, not installed: {', '.join(gone)} "
        "(pip install -e '.[frameworks]')"
    )


@pytest.fixture(autouse=True)
def _frameworks_installed() -> None:
    gone = missing()
    if gone:
        pytest.skip(
            f"the frameworks extra is not installed (missing: {', '.join(gone)}): "
            "pip install -e '.[frameworks]'"
        )
