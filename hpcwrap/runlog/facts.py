"""Typed machine facts of a run that the Markdown does not show line by line.

``CodeFacts`` (git state, diff, experiment tag), ``ConfigFacts`` (the copied
``--config``), ``SubmitFacts`` (the effective sbatch settings) and
``ArrayTaskFacts`` (one array task's start and end). Their state.json form is
plain JSON (datetimes as ISO strings); ``facts_from_dict`` ignores unknown keys
and converts each value to its field's type, so a file written by another
version still loads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

from hpcwrap.runlog.dates import iso, parse_timestamp


@dataclass
class CodeFacts:
    """The code a run used (``codestate.CodeState``) and what hpcwrap kept of it."""

    repo: str | None = None
    commit: str | None = None
    branch: str | None = None
    dirty: bool = False
    changed_files: int = 0
    untracked: int = 0
    untracked_sample: list[str] = field(default_factory=list)
    reason: str | None = None  # why there is no commit (not a git repo, ...)
    diff: str | None = None  # code.diff, relative to the run log's folder
    tag: str | None = None  # the experiment tag, while it exists
    tag_error: str | None = None
    tag_note: str | None = None
    tag_removed: str | None = None


@dataclass
class ConfigFacts:
    """The ``--config`` file: where it was, its sha256, hpcwrap's byte-exact copy."""

    source: str | None = None
    sha256: str | None = None
    copy: str | None = None  # relative to the run log's folder


@dataclass
class SubmitFacts:
    """The effective sbatch settings of the submission (read by later tools and hooks).

    ``output``/``error``: absolute filename patterns; ``*_path``: the same with what
    is known filled in (%j %A %x %u); ``error`` None means stderr goes to the output
    file. ``sources`` says where each setting came from.
    """

    workdir: str | None = None
    job_name: str | None = None
    comment_is_hpcwrap: bool = False
    output: str | None = None
    output_path: str | None = None
    error: str | None = None
    error_path: str | None = None
    array: str | None = None
    time: str | None = None
    partition: str | None = None
    nodes: str | None = None
    open_mode: str | None = None
    signal: str | None = None
    dependency: str | None = None
    wait: bool = False
    sources: dict[str, str] = field(default_factory=dict)
    scheduler: str | None = None
    command: list[str] = field(default_factory=list)
    job_script: str | None = None
    script_snapshot: str | None = None
    notes: list[str] = field(default_factory=list)
    job_id: str | None = None
    follow_up_job: str | None = None  # the follow-up job that polls the run (followup.py)


def natural_key(text: str) -> list[Any]:
    """``"task10"`` after ``"task9"``: digits compare as numbers."""
    # re.split with a group alternates text and digits, so items compare like with like
    return [int(p) if i % 2 else p for i, p in enumerate(re.split(r"(\d+)", text))]


@dataclass
class ArrayTaskFacts:
    """One task of a job array (the array's block is derived from all of them)."""

    start: datetime | None = None
    end: datetime | None = None
    node: str | None = None
    state: str | None = None
    exit_code: int | None = None
    restart_count: int | None = None
    next: list[str] = field(default_factory=list)  # the task's own Next suggestions


@dataclass
class ChainFacts:
    """Walltime-resume chaining of a run (``hpcwrap sbatch --resume auto``).

    One mechanism per chain, recorded: ``afternotok`` — every job of the chain
    submits its successor as it starts (``--dependency=afternotok:<itself>
    --kill-on-invalid-dep=yes``), so the chain goes on even when the job is killed
    hard at its limit; the successor checks the guards before it trains, and a
    job that ended otherwise cancels it. Never a requeue of the same job id.
    """

    mode: str = "auto"  # "auto" (chained) or "manual" (one `hpcwrap resume`)
    mechanism: str = "afternotok"
    max_resumes: int = 3
    resumes: int = 0  # resumed jobs started so far
    resume_arg: str | None = None  # e.g. "--resume-from {checkpoint}", added to the command
    checkpoint_glob: str | None = None
    wandb_run_id: str | None = None  # one W&B run for the whole chain
    pending: str | None = None  # the job id of the submitted successor
    # Every successor the chain submitted: one that starts when the chain no longer waits
    # for it (its cancel failed, the chain stopped meanwhile) knows not to train.
    successors: list[str] = field(default_factory=list)
    pending_by_hand: bool = False  # submitted by `hpcwrap resume`: no guard on how it ended
    stopped: str | None = None  # why the chain stopped
    done: bool = False  # it stopped because the training completed (no more to resume)


F = TypeVar("F", CodeFacts, ConfigFacts, SubmitFacts, ArrayTaskFacts, ChainFacts)


def as_datetime(value: Any) -> datetime | None:
    """A state.json time (ISO as hpcwrap writes it, else any form parse_timestamp reads)."""
    if value is None or isinstance(value, datetime):
        return value
    text = str(value)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return parse_timestamp(text)
    return parsed if parsed.tzinfo is not None else parse_timestamp(text)


def _convert(kind: str, value: Any) -> Any:
    """``value`` as the field type spelled ``kind`` (the annotation's text)."""
    if kind.startswith("datetime"):
        return as_datetime(value)
    if value is None:
        return None
    if kind.startswith("bool"):
        return bool(value)
    if kind.startswith("int"):
        return int(value)
    if kind.startswith("list"):
        return [str(v) for v in value] if isinstance(value, list) else []
    if kind.startswith("dict"):
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}
    return str(value)


def facts_from_dict(cls: type[F], raw: Mapping[str, Any]) -> F:
    """``cls`` from its state.json form; unknown keys are ignored, missing ones default."""
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in raw:
            value = _convert(str(f.type), raw[f.name])
            if value is not None or "None" in str(f.type):
                kwargs[f.name] = value
    return cls(**kwargs)


def facts_to_dict(obj: Any) -> dict[str, Any]:
    """A facts dataclass (these, or runlog.telemetry's) as state.json holds it: times as
    ISO text, lists and dicts copied."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, datetime):
            value = iso(value)
        elif isinstance(value, list):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)
        out[f.name] = value
    return out


# ---------------------------------------------------------------- older state.json files

# Where versions before the typed facts kept them: state["extra"][<key>].
_LEGACY_CODE = {
    "code_diff": "diff",
    "git_tag": "tag",
    "git_tag_error": "tag_error",
    "git_tag_note": "tag_note",
    "git_tag_removed": "tag_removed",
}
_LEGACY_CONFIG = {"config_source": "source", "config_sha256": "sha256", "config_copy": "copy"}
LEGACY_KEYS = frozenset(
    {
        "code",
        "submit",
        "array_tasks",
        "array_results_task",
        "hpcwrap_next_drafted",
        *_LEGACY_CODE,
        *_LEGACY_CONFIG,
    }
)


def legacy_code(extra: Mapping[str, Any]) -> CodeFacts | None:
    raw = extra.get("code")
    if not isinstance(raw, Mapping) and not any(k in extra for k in _LEGACY_CODE):
        return None
    data = dict(raw) if isinstance(raw, Mapping) else {}
    data.update({new: extra[old] for old, new in _LEGACY_CODE.items() if old in extra})
    return facts_from_dict(CodeFacts, data)


def legacy_config(extra: Mapping[str, Any]) -> ConfigFacts | None:
    if not any(k in extra for k in _LEGACY_CONFIG):
        return None
    return facts_from_dict(
        ConfigFacts, {new: extra[old] for old, new in _LEGACY_CONFIG.items() if old in extra}
    )


__all__ = [
    "LEGACY_KEYS",
    "ArrayTaskFacts",
    "ChainFacts",
    "CodeFacts",
    "ConfigFacts",
    "SubmitFacts",
    "facts_from_dict",
    "facts_to_dict",
    "legacy_code",
    "legacy_config",
]
