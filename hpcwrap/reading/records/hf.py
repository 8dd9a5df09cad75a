"""HF Trainer: ``trainer_state.json`` (``global_step``, ``max_steps``, ``log_history``)."""

from __future__ import annotations

import json
from pathlib import Path

from hpcwrap.reading.records.series import STATE_MAX_BYTES, LossSeries, _bounded, _num


def _hf_state(folder: Path) -> dict[str, object] | None:
    path = folder / "trainer_state.json"
    try:
        if path.stat().st_size > STATE_MAX_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def finished_at(checkpoint: Path) -> tuple[int, int] | None:
    """``(global_step, max_steps)`` when the HF checkpoint ``checkpoint`` is its training's
    last (``global_step`` at or past the ``max_steps`` it planned), else None.

    Resuming from such a checkpoint is not harmless: transformers 5.24 trains one more
    step and saves ``checkpoint-<N+1>`` (checked here with tests/frameworks/scripts)."""
    state = _hf_state(checkpoint) if checkpoint.is_dir() else None
    if state is None:
        return None
    step, total = state.get("global_step"), state.get("max_steps")
    if isinstance(step, int) and isinstance(total, int) and 0 < total <= step:
        return step, total
    return None


def _hf_series(state: dict[str, object], key: str, source: str) -> LossSeries | None:
    history = state.get("log_history")
    if not isinstance(history, list):
        return None
    points: list[tuple[int | None, float, str]] = []
    for entry in history:
        if not isinstance(entry, dict) or key not in entry:
            continue
        raw = entry[key]
        value = _num(raw) if isinstance(raw, str) else raw
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        step = entry.get("step")
        points.append(
            (
                step if isinstance(step, int) else None,
                float(value),
                raw if isinstance(raw, str) else repr(raw),
            )
        )
    return LossSeries(_bounded(points), source, live=False) if points else None
