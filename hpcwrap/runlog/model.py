"""The typed model of one run, and its plain-JSON form for ``state.json``.

``RunState`` holds what hpcwrap knows about a run; the Markdown run log is
rendered from it (``render.py``). ``to_dict``/``from_dict`` are the state.json
form: datetimes as ISO strings, non-finite floats as ``"nan"``/``"inf"`` (JSON
has no spelling for them and orjson would write ``null``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from hpcwrap.errors import UsageError
from hpcwrap.runlog.dates import iso
from hpcwrap.runlog.facts import (
    LEGACY_KEYS,
    ArrayTaskFacts,
    ChainFacts,
    CodeFacts,
    ConfigFacts,
    SubmitFacts,
    as_datetime,
    facts_from_dict,
    facts_to_dict,
    legacy_code,
    legacy_config,
)
from hpcwrap.runlog.telemetry import TelemetryFacts, telemetry_from_dict, telemetry_to_dict

__all__ = [
    "JobBlock",
    "Results",
    "RunState",
    "StatusEntry",
    "from_dict",
    "parse_run_type",
    "to_dict",
]

# The run types (modes) of the workflow; the Mode section holds one.
RUN_TYPES = ("replication", "experiment", "pipeline:<subtype>")


def parse_run_type(text: str) -> str:
    """``"pipeline:data generation"`` -> ``"pipeline (data generation)"``.

    Also accepts the rendered form back, so values read from a run log round-trip.
    """
    value = text.strip()
    if value in ("replication", "experiment"):
        return value
    for prefix, closer in (("pipeline:", ""), ("pipeline (", ")")):
        if value.startswith(prefix) and value.endswith(closer):
            subtype = value[len(prefix) : len(value) - len(closer)].strip()
            if subtype and "\n" not in subtype and ")" not in subtype:
                return f"pipeline ({subtype})"
            break
    raise UsageError(
        f"invalid --mode {text!r}: use one of {', '.join(RUN_TYPES)} "
        "(e.g. --mode 'pipeline:data generation')"
    )


@dataclass
class JobBlock:
    """One ``## Job`` or ``## Job (resumed)`` section."""

    execution_id: str | None = None
    cluster: str | None = None
    submitted: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None
    node: str | None = None
    state: str | None = None
    exit_code: int | None = None
    restart_count: int | None = None
    resumed_from: str | None = None
    wandb_local: str | None = None
    wandb_synced: str | None = None
    submit_error: str | None = None
    # Slurm's own account (sacct's State and ExitCode as printed), beside hpcwrap's reading.
    slurm_state: str | None = None
    slurm_exit: str | None = None
    # Who decided ``state`` (lifecycle.Source name) and, where it differs from Slurm's, why.
    state_source: str | None = None
    state_note: str | None = None
    # How strong the evidence behind ``state`` is (endings.Strength name): a verdict
    # replaces the state only when stronger. Machine-only.
    state_basis: str | None = None
    # When the job's time limit falls (read by the wrapper at the start; the epilog
    # judges a kill against it). Machine-only: not rendered.
    limit_at: datetime | None = None
    # Why the scheduler keeps the job pending (squeue's reason, from poll). Machine-only.
    pending_reason: str | None = None
    # Slurm's unique id of the run (SLURM_JOB_SLUID, sacct's SLUID; Slurm 26.05 on).
    sluid: str | None = None

    @property
    def runtime_seconds(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()


@dataclass
class StatusEntry:
    when: datetime
    text: str


@dataclass
class Results:
    final_step: int | None = None
    start_train_loss: float | None = None
    end_train_loss: float | None = None
    start_val_loss: float | None = None
    end_val_loss: float | None = None
    loss_one_liner: str | None = None
    checkpoint: str | None = None
    config_snapshot: str | None = None  # the resolved config the run wrote (its path)
    config_copy: str | None = None  # hpcwrap's copy of it (or of --config) in the sidecar
    # The losses as the training printed them (``0.4544526051680415``, ``3.0000``);
    # the floats above are for comparing, these are what the run log shows.
    start_train_loss_text: str | None = None
    end_train_loss_text: str | None = None
    start_val_loss_text: str | None = None
    end_val_loss_text: str | None = None
    figures_from: str | None = None  # where the figures came from when not from the output


@dataclass
class RunState:
    name: str = ""
    task: str = "train"
    description: str = ""
    group: str | None = None
    run_type: str = ""
    objective: str = ""
    script: str | None = None
    config: str | None = None
    dataset: str | None = None
    key_settings: dict[str, str] = field(default_factory=dict)
    code: str | None = None
    # ``--from``: the checkpoint (and run) this one started from; never this run's own.
    initialised_from: str | None = None
    jobs: list[JobBlock] = field(default_factory=list)
    status: list[StatusEntry] = field(default_factory=list)
    results: Results = field(default_factory=Results)
    wandb_local: str | None = None
    wandb_synced: str | None = None
    wandb_notes: str | None = None
    wandb_public: str | None = None  # the run mirrored to a public project (for sharing)
    next: list[str] = field(default_factory=list)
    huggingface: dict[str, str] = field(default_factory=dict)
    # Machine facts the Markdown does not show line by line (see facts.py).
    code_state: CodeFacts | None = None
    config_facts: ConfigFacts | None = None
    submit: SubmitFacts | None = None
    array_tasks: dict[str, ArrayTaskFacts] = field(default_factory=dict)
    array_results_task: str | None = None  # the array task whose progress Results show
    next_drafted: list[str] = field(default_factory=list)  # Next lines hpcwrap drafted last
    telemetry: TelemetryFacts | None = None  # the sampled GPU/CPU/disk summary (Results)
    one_liner_drafted: str | None = None  # the loss_one_liner hpcwrap wrote last
    chain: ChainFacts | None = None  # walltime-resume chaining, when asked for
    # Anything else a caller keeps (unknown keys of a newer state.json land here too).
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- JSON form


def _enc(value: Any, native: bool = False) -> Any:
    if isinstance(value, datetime):
        return value if native else iso(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # "nan", "inf", "-inf"
    return value


def _job_to_dict(job: JobBlock, native: bool = False) -> dict[str, Any]:
    return {f.name: _enc(getattr(job, f.name), native) for f in fields(job)}


_STATE_FIELDS = tuple(f.name for f in fields(RunState))


def to_dict(
    state: RunState, *, with_status: bool = True, native_times: bool = False
) -> dict[str, Any]:
    """``state`` as plain JSON-able data (the ``state`` object of state.json).

    ``native_times`` leaves datetimes as they are, for orjson to write (fast,
    same ISO form); ``with_status=False`` leaves Status out (the update path
    diffs it separately, since it only grows).
    """
    out: dict[str, Any] = {}
    for name in _STATE_FIELDS:
        value = getattr(state, name)
        if name == "jobs":
            out["jobs"] = [_job_to_dict(j, native_times) for j in value]
        elif name == "status":
            if with_status:
                if native_times:
                    out["status"] = [[s.when, s.text] for s in value]
                else:
                    out["status"] = [[iso(s.when), s.text] for s in value]
        elif name == "results":
            out["results"] = {r.name: _enc(getattr(value, r.name)) for r in fields(value)}
        elif name in ("code_state", "config_facts", "submit", "chain"):
            out[name] = None if value is None else facts_to_dict(value)
        elif name == "telemetry":
            out[name] = None if value is None else telemetry_to_dict(value)
        elif name == "array_tasks":
            out[name] = {k: facts_to_dict(v) for k, v in value.items()}
        elif name == "extra":
            # Deep: callers change nested values in place (extra["x"]["y"] = ...), and the
            # update path diffs this copy against the mutated state to build its event.
            out[name] = copy.deepcopy(value)
        elif isinstance(value, dict):
            out[name] = dict(value)
        elif isinstance(value, list):
            out[name] = list(value)
        else:
            out[name] = value
    return out


_dt = as_datetime  # the one parser of state.json times


def _float(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)


def _int(value: Any) -> int | None:
    if value is None:
        return None
    return int(value)


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


_JOB_TIMES = {"submitted", "start", "end", "limit_at"}
_JOB_INTS = {"exit_code", "restart_count"}
_RESULT_FLOATS = {"start_train_loss", "end_train_loss", "start_val_loss", "end_val_loss"}


def _job_from_dict(data: dict[str, Any]) -> JobBlock:
    job = JobBlock()
    for f in fields(job):
        if f.name not in data:
            continue
        raw = data[f.name]
        if f.name in _JOB_TIMES:
            setattr(job, f.name, _dt(raw))
        elif f.name in _JOB_INTS:
            setattr(job, f.name, _int(raw))
        else:
            setattr(job, f.name, _str(raw))
    return job


def _results_from_dict(data: dict[str, Any]) -> Results:
    res = Results()
    for f in fields(res):
        if f.name not in data:
            continue
        raw = data[f.name]
        if f.name in _RESULT_FLOATS:
            setattr(res, f.name, _float(raw))
        elif f.name == "final_step":
            res.final_step = _int(raw)
        else:
            setattr(res, f.name, _str(raw))
    return res


def from_dict(data: dict[str, Any]) -> RunState:
    """The inverse of ``to_dict``; unknown keys are ignored, missing ones default."""
    state = RunState()
    for f in fields(state):
        if f.name not in data:
            continue
        raw = data[f.name]
        if f.name == "jobs":
            state.jobs = [_job_from_dict(j) for j in raw or []]
        elif f.name == "status":
            entries = []
            for item in raw or []:
                when = _dt(item[0])
                if when is not None:
                    entries.append(StatusEntry(when, str(item[1])))
            state.status = entries
        elif f.name == "results":
            state.results = _results_from_dict(raw or {})
        elif f.name in ("key_settings", "huggingface"):
            setattr(state, f.name, {str(k): str(v) for k, v in (raw or {}).items()})
        elif f.name == "code_state":
            state.code_state = facts_from_dict(CodeFacts, raw) if raw else None
        elif f.name == "config_facts":
            state.config_facts = facts_from_dict(ConfigFacts, raw) if raw else None
        elif f.name == "submit":
            state.submit = facts_from_dict(SubmitFacts, raw) if raw else None
        elif f.name == "chain":
            state.chain = facts_from_dict(ChainFacts, raw) if raw else None
        elif f.name == "array_tasks":
            state.array_tasks = _array_tasks(raw)
        elif f.name == "telemetry":
            state.telemetry = telemetry_from_dict(raw) if isinstance(raw, dict) else None
        elif f.name == "next_drafted":
            state.next_drafted = [str(x) for x in raw or []]
        elif f.name == "extra":
            state.extra = dict(raw or {})
        elif f.name == "next":
            state.next = [str(x) for x in raw or []]
        elif f.name in ("name", "task", "description", "run_type", "objective"):
            setattr(state, f.name, "" if raw is None else str(raw))
        else:
            setattr(state, f.name, _str(raw))
    _migrate_extra(state, data)
    return state


def _array_tasks(raw: Any) -> dict[str, ArrayTaskFacts]:
    if not isinstance(raw, dict):
        return {}
    return {
        str(k): facts_from_dict(ArrayTaskFacts, v) for k, v in raw.items() if isinstance(v, dict)
    }


def _migrate_extra(state: RunState, data: dict[str, Any]) -> None:
    """Versions before the typed facts kept them in ``extra``: move them to their fields.

    A key present at the top level (written by this version) wins over the old place.
    """
    old = state.extra
    if "code_state" in data or not LEGACY_KEYS & old.keys():
        return  # written by this version: ``extra`` holds only callers' own keys
    if "code_state" not in data:
        state.code_state = legacy_code(old)
    if "config_facts" not in data:
        state.config_facts = legacy_config(old)
    if "submit" not in data and isinstance(old.get("submit"), dict):
        state.submit = facts_from_dict(SubmitFacts, old["submit"])
    if "array_tasks" not in data:
        state.array_tasks = _array_tasks(old.get("array_tasks"))
    if "array_results_task" not in data and old.get("array_results_task") is not None:
        state.array_results_task = str(old["array_results_task"])
    if "next_drafted" not in data:
        state.next_drafted = [str(x) for x in old.get("hpcwrap_next_drafted") or []]
    state.extra = {k: v for k, v in old.items() if k not in LEGACY_KEYS}
