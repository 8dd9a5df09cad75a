"""The package's README.md: a model card drafted from the run log (to be edited before
upload; the usage section is a placeholder on purpose)."""

from __future__ import annotations

import re

from hpcwrap.runlog import RunState

_STEP = re.compile(r"\bstep (\d+)(?:/\d+)?")
_LOSS = re.compile(r"\b(train_loss|val_loss) ([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))")


def loss_rows(state: RunState) -> list[tuple[str, str, str]]:
    """(step, train_loss, val_loss) from the Status entries and Results, in step order."""
    rows: dict[int, dict[str, str]] = {}
    for entry in state.status:
        step = _STEP.search(entry.text)
        losses = dict(_LOSS.findall(entry.text))
        if step and losses:
            rows.setdefault(int(step.group(1)), {}).update(losses)
    res = state.results
    if res.final_step is not None and (res.end_train_loss_text or res.end_val_loss_text):
        last = rows.setdefault(res.final_step, {})
        if res.end_train_loss_text:
            last["train_loss"] = res.end_train_loss_text
        if res.end_val_loss_text:
            last["val_loss"] = res.end_val_loss_text
    return [
        (str(step), v.get("train_loss", "n/a"), v.get("val_loss", "n/a"))
        for step, v in sorted(rows.items())
    ]


def draft(
    state: RunState,
    *,
    steps: list[int],
    params_only: bool,
    verdict: str,
    verdict_reason: str | None,
    assets: list[str],
) -> str:
    """The model card's Markdown (still to be sanitized with the run's context)."""
    title = state.description or state.objective or state.task
    kind = "params only" if params_only else "full checkpoint"
    signoff = f"`{verdict}`" + (f": {verdict_reason}" if verdict_reason else "")
    lines = [
        f"# {state.task} — {title}" if state.description else f"# {state.task}",
        "",
        "## Description",
        f"- objective: {state.objective or 'n/a'}",
        f"- run_type: {state.run_type or 'n/a'}",
        f"- checkpoints: {', '.join(str(s) for s in steps)} ({kind})",
        f"- signoff verdict: {signoff}",
        "",
        "## Config",
        f"- script: {state.script or 'n/a'}",
        f"- config: {state.config or 'n/a'}",
        f"- dataset: {state.dataset or 'n/a'}",
    ]
    settings = ", ".join(f"{k}={v}" for k, v in state.key_settings.items())
    lines += [f"- key settings: {settings or 'n/a'}", f"- code: {state.code or 'n/a'}", ""]
    lines += ["## Loss", "", "| step | train_loss | val_loss |", "|---:|---:|---:|"]
    rows = loss_rows(state)
    lines += [f"| {s} | {t} | {v} |" for s, t, v in rows] or ["| n/a | n/a | n/a |"]
    if state.results.loss_one_liner:
        lines += ["", state.results.loss_one_liner]
    where = "checkpoints/<step>/params/" if params_only else "checkpoints/<step>/"
    lines += [
        "",
        "## Usage",
        "",
        f"<!-- TODO: how to load `{where}` and feed the model "
        "(see MODEL_PASSPORT.json for the feeding contract) -->",
        "",
        "## Files",
        "- `TRAINING_LOG.md`: the run log, sanitized",
        "- `MODEL_PASSPORT.json`: feeding contract and integrity manifest",
        "- `SIGNOFF.json`: verdict and sha256 of the passport and the weight files",
    ]
    if assets:
        lines.append(f"- `assets/`: {', '.join(assets)}")
    lines.append(f"- `{where}`")
    return "\n".join(lines) + "\n"


__all__ = ["draft", "loss_rows"]
