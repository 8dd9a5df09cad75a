"""`hpcwrap run`: placeholder until its issue lands."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("run", help="(not yet built)")
    p.set_defaults(handler=lambda args: 2)
