"""Which checkpoint is a run's: chosen here, once, for the end's Results and Next, a chain's
successor and ``hpcwrap resume``.

- A path the run printed is taken exactly as printed, against the job's working folder
  (nanoGPT's ``saving checkpoint to out-shakespeare-char`` is ``<cwd>/out-shakespeare-char``).
- After a hard kill the disk can be newer than the record: the newest complete checkpoint
  beside the recorded one, named like it but for its step (``checkpoints/100`` ->
  ``checkpoints/1700``, ``checkpoint-500`` -> ``checkpoint-900``), counts, when it is tied
  to the run (reading/ownership.py). A name without a step number has no siblings.
- A checkpoint another run of the folder claims (its Results name it), or the one this run
  was started from (``--from``), is never this run's: resume refuses with the reason.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hpcwrap.runlog.neighbours import Claim

# Names of a save still being written (or abandoned): never resumed from.
PARTIAL = (".tmp", "tmp-", ".partial", ".incomplete", "-incomplete", ".lock")
SCAN_BUDGET = 2000  # directory entries looked at when searching for files on disk
_STEP = re.compile(r"\d+")

Owns = Callable[[Path], bool]


def complete(path: Path) -> bool:
    """A checkpoint that looks whole: it exists, no partial-write name, a folder not empty."""
    name = path.name.lower()
    if any(mark in name for mark in PARTIAL):
        return False
    try:
        if path.is_dir():
            return any(path.iterdir())
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def resolve(printed: str, cwd: Path) -> Path:
    """A printed path exactly as printed: ``~`` expanded, a relative one under ``cwd``."""
    path = Path(printed).expanduser()
    return path if path.is_absolute() else cwd / path


def walk(roots: Iterable[Path], depth: int, budget: list[int]) -> Iterable[Path]:
    """Paths under ``roots`` up to ``depth`` levels, at most ``budget[0]`` entries."""
    seen: set[Path] = set()
    frontier = [(r, 0) for r in roots]
    while frontier and budget[0] > 0:
        folder, d = frontier.pop(0)
        try:
            real = folder.resolve()
        except OSError:
            continue
        if real in seen:
            continue
        seen.add(real)
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    budget[0] -= 1
                    if budget[0] <= 0:
                        return
                    path = Path(entry.path)
                    yield path
                    if (
                        d + 1 < depth
                        and not entry.name.startswith(".")
                        and entry.is_dir(follow_symlinks=False)
                    ):
                        frontier.append((path, d + 1))
        except OSError:
            continue


def newest_sibling(seen: Path, owns: Owns | None = None) -> Path | None:
    """The newest complete checkpoint beside ``seen`` named like it but for its step, and
    tied to the run where ``owns`` is given (``seen`` itself included when it is whole)."""
    alike = _alike(seen.name)
    if alike is None:
        return None
    try:
        entries = list(seen.parent.iterdir())
    except OSError:
        return None
    whole: list[tuple[int, float, Path]] = []
    for p in entries:
        m = alike.match(p.name)
        if not m or not complete(p) or (owns is not None and not owns(p)):
            continue
        try:
            whole.append((int(m.group(1)), p.stat().st_mtime, p))
        except OSError:
            continue
    return max(whole)[2] if whole else None


def newest_match(pattern: str, cwd: Path, owns: Owns | None = None) -> Path | None:
    """The newest complete match of ``--checkpoint-glob`` (relative to the run's workdir)."""
    full = pattern if os.path.isabs(pattern) else str(cwd / pattern)
    whole: list[tuple[float, Path]] = []
    for item in glob.glob(full):
        p = Path(item)
        if not complete(p) or (owns is not None and not owns(p)):
            continue
        try:
            whole.append((p.stat().st_mtime, p))
        except OSError:
            continue
    return max(whole)[1] if whole else None


def for_step(
    step: int,
    *,
    cwd: Path,
    since: float,
    owns: Owns | None = None,
    untied: list[Path] | None = None,
) -> Path | None:
    """A checkpoint for ``step`` the run wrote without printing its path (torchtitan's
    ``step-644``, HF's ``checkpoint-644``, Megatron's ``iter_0000644``), tied to it."""
    rx = re.compile(
        rf"^(?:(?:step|checkpoint|ckpt|iter|global_step)[-_=]?)?0*{step}(?:\.\w+)?$", re.IGNORECASE
    )
    best: tuple[float, Path] | None = None
    for path in walk([cwd], 4, [SCAN_BUDGET]):
        if not rx.match(path.name):
            continue
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        if mtime < since - 5:
            continue
        if owns is not None and not owns(path):
            if untied is not None:
                untied.append(path)  # another run's step of the same number
            continue
        if best is None or mtime > best[0]:
            best = (mtime, path)
    return best[1] if best else None


def _alike(name: str) -> re.Pattern[str] | None:
    """The names of ``name``'s siblings: the same but for its (last) step number."""
    found = list(_STEP.finditer(name))
    if not found:
        return None
    last = found[-1]
    return re.compile(
        re.escape(name[: last.start()]) + r"(\d+)" + re.escape(name[last.end() :]) + "$"
    )


def claimed(others: Sequence[Claim], cwd: Path) -> Callable[[Path], str | None]:
    """Which other run claims a path (None: none): the path is that run's checkpoint, under
    it, or a step sibling of it, and was not written after that run ended."""

    def by(path: Path) -> str | None:
        for claim in others:
            theirs = resolve(claim.checkpoint, cwd)
            alike = _alike(theirs.name)
            mine = _same_or_under(path, theirs) or (
                alike is not None
                and os.path.abspath(path.parent) == os.path.abspath(theirs.parent)
                and alike.match(path.name) is not None
            )
            if not mine:
                continue
            try:
                written = path.stat().st_mtime
            except OSError:
                continue
            if claim.until is None or written <= claim.until + 1:
                return claim.run
        return None

    return by


def newest_write(path: Path) -> float | None:
    """When ``path`` was last written: a file's time, a folder's newest entry's (two levels:
    nanoGPT overwrites ``out_dir/ckpt.pt`` in place, which leaves the folder's own time as
    it was). None: it is not there."""
    try:
        newest = path.stat().st_mtime
    except OSError:
        return None
    if path.is_dir():
        for entry in walk([path], 2, [SCAN_BUDGET]):
            try:
                newest = max(newest, entry.stat().st_mtime)
            except OSError:
                continue
    return newest


def started_from(line: str | None) -> str | None:
    """The checkpoint path in a run's ``initialised from`` line (``--from``), else None."""
    if not line:
        return None
    start = line.find("`")
    end = line.find("`", start + 1)
    return line[start + 1 : end] if start >= 0 and end > start + 1 else None


@dataclass(frozen=True)
class Choice:
    """The checkpoint to resume from (``path``), or why there is none (``why_not``)."""

    path: str | None
    why_not: str | None = None


def _same_or_under(path: Path, root: Path) -> bool:
    p, r = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    return p == r or r in p.parents


def to_resume(
    recorded: Sequence[str],
    *,
    cwd: Path,
    checkpoint_glob: str | None = None,
    owns: Owns | None = None,
    claimed_by: Callable[[Path], str | None] = lambda _p: None,
    started_from: str | None = None,
) -> Choice:
    """The newest complete checkpoint of the run across its chain: the newest tied sibling
    of the first of ``recorded`` (newest first) that exists, else that checkpoint itself,
    else the newest tied match of ``checkpoint_glob``. One another run claims, or the
    ``--from`` checkpoint (``started_from``), is refused, and the refusal says why."""
    refused: list[str] = []
    origin = resolve(started_from, cwd) if started_from else None

    def why_not(p: Path) -> str | None:
        if origin is not None and _same_or_under(p, origin):
            return f"`{p}` is the checkpoint this run was started from (--from), not its own"
        other = claimed_by(p)
        if other is not None:
            return f"`{p}` is run {other}'s checkpoint (its Results name it), not this run's"
        return None

    def ok(p: Path) -> bool:
        why = why_not(p)
        if why is not None and why not in refused:
            refused.append(why)
        return why is None

    def mine(p: Path) -> bool:
        return (owns is None or owns(p)) and ok(p)

    for item in recorded:
        seen = resolve(item, cwd)
        newest = newest_sibling(seen, mine)
        if newest is not None:
            return Choice(str(newest))
        if complete(seen) and ok(seen):
            return Choice(str(seen))
    if checkpoint_glob:
        # The glob is the run's own word for where it saves: a match is tied to it.
        match = newest_match(checkpoint_glob, cwd, ok)
        if match is not None:
            return Choice(str(match))
    return Choice(None, "; ".join(refused) or None)


__all__ = [
    "PARTIAL",
    "Choice",
    "Claim",
    "claimed",
    "complete",
    "for_step",
    "newest_match",
    "newest_sibling",
    "newest_write",
    "resolve",
    "started_from",
    "to_resume",
    "walk",
]
