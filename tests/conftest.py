"""The suite's order: the longest tests first, so that parallel workers start them at once.

tests/run runs pytest with pytest-xdist (``-n N --dist load --maxschedchunk 1``): each
worker takes the next test in collection order when it is nearly done with its own. A
multi-minute chain collected last would run alone at the end; collected first, it runs
while the other workers go through the short tests. Within each tier the order is
pytest's own (file, then definition).

Tiers, first to last: ``long`` (minutes each: time-limit rows, multi-job chains), other
cluster and framework tests (they mostly wait), other ``slow`` tests, the rest; the
long ones woven one by one between the first of the others (see below).
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
    # xdist first hands each worker two consecutive tests: with the long ones woven
    # between short ones, no worker starts with two long tests to run one after the other.
    long = [i for i in items if _tier(i) == 0]
    rest = [i for i in items if _tier(i) != 0]
    woven: list[pytest.Item] = []
    for n, item in enumerate(long):
        woven.append(item)
        if n < len(rest):
            woven.append(rest[n])
    items[:] = woven + rest[len(long) :]
