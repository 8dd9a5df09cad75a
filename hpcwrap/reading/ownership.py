"""Which files on disk are a run's own: the ties hpcwrap accepts, in the order it tries them.

Several runs launched from one folder is the normal case (a sweep, a baseline and a
variation), so "written since the job started" is no proof that a record, checkpoint or
config snapshot is this run's. A file counts for a run only when something ties it to it:

1. ``printed``: under a path the run's own output printed (a checkpoint it saved, the
   folder it said it writes to; the folder above a printed checkpoint too, unless that is
   the working folder itself or above it);
2. ``arguments``: under a path named in the run's own arguments (``--out-dir runs/a``,
   ``--output_dir=runs/a``, ``out_dir=runs/a``: an option or key whose name says folder,
   path, output, save or checkpoint);
3. ``wandb``: under the run's own W&B run folder;
4. ``task``: for an array task, a path with the task's own id as one of its parts;
5. ``alone``: written (its modification time) after the job started and while no other
   run of the same run-logs folder was alive (the run logs know which jobs ran when): a
   run started seconds after another ended keeps its own new files, not the other's.

Nothing else ties: a file without a tie is left out, and the end says so. The checkpoint a
run was started from (``--from``) never ties, even where the run printed or named it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PRINTED = "printed by the run"
ARGUMENTS = "named in its arguments"
WANDB = "its own W&B run"
TASK = "its array task's id in the path"
ALONE = "written while no other run of its log folder was alive"
ORDER = (PRINTED, ARGUMENTS, WANDB, TASK, ALONE)

# An option or key naming where a run writes: out_dir, --output-dir, save_path, ckpt...
_FOLDER_KEY = re.compile(r"(?:dir|path|folder|output|out|save|ckpt|checkpoint)s?$", re.IGNORECASE)


def _abs(path: Path | str, cwd: Path) -> Path:
    p = Path(os.path.expanduser(str(path)))
    return Path(os.path.abspath(p if p.is_absolute() else cwd / p))


def _key(word: str) -> str:
    return word.lstrip("-").replace("-", "_").rsplit(".", 1)[-1]


def _looks_like_path(value: str) -> bool:
    if not value or value.startswith("-") or "://" in value:
        return False
    try:
        float(value)
        return False  # a number, not a folder
    except ValueError:
        return value not in ("true", "false", "True", "False", "None", "null")


def argument_paths(argv: Sequence[str]) -> list[str]:
    """The paths the run's arguments name for its output: the values of options and
    ``key=value`` words whose name says folder, path, output, save or checkpoint."""
    out: list[str] = []
    for i, word in enumerate(argv):
        if "=" in word:
            key, _, value = word.partition("=")
            if _FOLDER_KEY.search(_key(key)) and _looks_like_path(value):
                out.append(value)
        elif word.startswith("-") and i + 1 < len(argv):
            value = argv[i + 1]
            if _FOLDER_KEY.search(_key(word)) and _looks_like_path(value):
                out.append(value)
    return out


@dataclass(frozen=True)
class Ties:
    """What ties a path to one run (``tie``: the reason, None: not this run's)."""

    cwd: Path
    roots: tuple[tuple[Path, str], ...] = ()
    task_id: str | None = None
    foreign: tuple[Path, ...] = ()  # never this run's: what it was started from (--from)
    # Asked only for a file nothing else ties: was it written while no other run of the
    # folder was alive?
    alone: Callable[[Path], bool] = field(default=lambda _p: False, compare=False)

    def tie(self, path: Path | str) -> str | None:
        p = _abs(path, self.cwd)
        if any(p == f or f in p.parents for f in self.foreign):
            return None
        for root, why in self.roots:
            if p == root or root in p.parents:
                return why
        if self.task_id is not None and self.task_id in p.parts:
            return TASK
        return ALONE if self.alone(p) else None

    def owns(self, path: Path | str) -> bool:
        return self.tie(path) is not None


def build(
    cwd: Path,
    *,
    printed: Iterable[str | None] = (),
    argv: Sequence[str] = (),
    wandb_dir: str | None = None,
    task_id: str | None = None,
    alone: Callable[[Path], bool] = lambda _p: False,
    started_from: str | None = None,
) -> Ties:
    """The ties of a run working in ``cwd``; ``alone(path)``: was the file written while no
    other run of the folder was alive. ``started_from`` (``--from``) and what is under it
    never tie."""
    roots: list[tuple[Path, str]] = []
    top = _abs(cwd, cwd)
    foreign = (_abs(started_from, cwd),) if started_from else ()
    for item in printed:
        if not item:
            continue
        p = _abs(item, cwd)
        if any(p == f or f in p.parents for f in foreign):
            continue  # the checkpoint it loads, and the other run's folder around it
        roots.append((p, PRINTED))
        parent = p.parent
        if parent != top and top in parent.parents:
            roots.append((parent, PRINTED))  # HF's output_dir above its checkpoint-N
    for item in argument_paths(argv):
        p = _abs(item, cwd)
        if p != top and p not in top.parents:  # never the working folder as a whole
            roots.append((p, ARGUMENTS))
    if wandb_dir:
        roots.append((_abs(wandb_dir, cwd), WANDB))
    return Ties(cwd=top, roots=tuple(roots), task_id=task_id, foreign=foreign, alone=alone)


def untied_text(paths: Sequence[Path], cwd: Path) -> str | None:
    """``2 files under runs/ left out: no tie to this run`` (None: none left out)."""
    if not paths:
        return None
    tops = sorted({_top(p, cwd) for p in paths})
    where = ", ".join(tops[:3]) + (" ..." if len(tops) > 3 else "")
    noun = "file" if len(paths) == 1 else "files"
    return f"{len(paths)} {noun} under {where} left out: no tie to this run"


def _top(path: Path, cwd: Path) -> str:
    try:
        rel = path.relative_to(cwd)
    except ValueError:
        return str(path.parent)
    if len(rel.parts) > 1 or (rel.parts and path.is_dir()):
        return rel.parts[0] + "/"
    return "./"


__all__ = [
    "ALONE",
    "ARGUMENTS",
    "ORDER",
    "PRINTED",
    "TASK",
    "WANDB",
    "Ties",
    "argument_paths",
    "build",
    "untied_text",
]
