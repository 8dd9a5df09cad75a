"""One sbatch option as getopt has it: its names and whether it takes a value."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Arg(Enum):
    NONE = "none"  # a flag: --hold
    REQUIRED = "required"  # --time=5, --time 5, -t5, -t 5
    OPTIONAL = "optional"  # --nice, --nice=5, -k, -koff (never a separate word)


@dataclass(frozen=True)
class OptSpec:
    """One getopt entry of sbatch: ``name`` as typed, ``canonical`` what it means."""

    name: str
    arg: Arg
    short: str | None = None
    canonical: str = ""
    env: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.canonical or self.name
