"""The suite's order: the longest tests first, so that parallel workers start them at once.

tests/run runs pytest with pytest-xdist (``-n N --dist load --maxschedchunk 1``): each
worker takes the next test in collection order when it is nearly done with its own. A
multi-minute chain collected last would run alone at the end; collected first, it runs
while the other workers go through the short tests. Within each tier the order is
pytest's own (file, then definition).

Tiers, first to last: ``long`` (minutes each: time-limit rows, multi-job chains, real
framework runs), other cluster tests (they mostly wait on Slurm), other ``slow`` tests,
the rest.
"""

from __future__ import annotations

import pytest


def _tier(item: pytest.Item) -> int:
    if item.get_closest_marker("long") is not None:
        return 0
    if item.get_closest_marker("cluster") is not None:
        return 1
    if item.get_closest_marker("frameworks") is not None:
        return 1
    if item.get_closest_marker("slow") is not None:
        return 2
    return 3


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_tier)  # stable: pytest's order within a tier
