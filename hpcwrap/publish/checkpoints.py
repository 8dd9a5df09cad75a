"""Which checkpoint folders a run's publish commands mean: the one Results records, or
the same-named folders of other steps beside it (``--steps 30000,60000``)."""

from __future__ import annotations

import re
from pathlib import Path

from hpcwrap.errors import UsageError
from hpcwrap.runlog import RunLog, RunState

_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def parse_steps(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        steps = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise UsageError(f"--steps {text!r}: give step numbers separated by commas") from None
    if not steps or any(s < 0 for s in steps):
        raise UsageError(f"--steps {text!r}: give step numbers separated by commas")
    return sorted(set(steps))


def recorded_checkpoint(log: RunLog, state: RunState) -> Path:
    text = (state.results.checkpoint or "").strip().strip("`")
    if not text or text.lower() in ("n/a", "none"):
        raise UsageError(
            f"{log.path.name} records no checkpoint in Results: name the checkpoint folder "
            "instead of the run"
        )
    path = Path(text).expanduser()
    if not path.is_absolute():
        base = state.submit.workdir if state.submit and state.submit.workdir else log.root.parent
        path = Path(base) / path
    return path


def step_of(folder: Path) -> int:
    m = _LAST_NUMBER.search(folder.name)
    if m is None:
        raise UsageError(f"{folder}: the folder name holds no step number")
    return int(m.group(1))


def step_folders(recorded: Path, steps: list[int] | None) -> dict[int, Path]:
    """``step -> folder``: the recorded checkpoint, or its siblings named alike."""
    if not steps:
        return {step_of(recorded): recorded}
    out: dict[int, Path] = {}
    for step in steps:
        m = _LAST_NUMBER.search(recorded.name)
        if m is None:
            raise UsageError(f"{recorded}: the folder name holds no step number to vary")
        name = recorded.name[: m.start()] + str(step) + recorded.name[m.end() :]
        folder = recorded.parent / name
        if not folder.is_dir():
            raise UsageError(f"no checkpoint for step {step}: {folder} is not a folder")
        out[step] = folder
    return out


__all__ = ["parse_steps", "recorded_checkpoint", "step_folders", "step_of"]
