"""The run log's sections, declared once: kind, heading, order, labels, other spellings.

One table (``SECTIONS``, in the order the run log shows them) says for each section
its heading as rendered, the names a heading may use when read back, the label of each
field, the other spellings people write for a field, and the fields derived from others
(ignored when read back). How a section renders is ``render.RENDERERS[kind]``, how it
reads back ``adopt.READERS[kind]``; a test checks both cover the table. Adding a section:
a row here, its renderer and its reader (and its fields in model.py).

The format is spec/run-tracking-workflow.md's; docs/run-log-format.md describes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hpcwrap.runlog.telemetry import RESULTS_LABELS as TELEMETRY_LABELS


@dataclass(frozen=True)
class SectionSpec:
    kind: str  # "mode"; a job section's ids are "job.<n>"
    heading: str  # as rendered ("" for the title line)
    names: tuple[str, ...] = ()  # how a heading may name it, lower case ("## W&B", "## wandb")
    labels: Mapping[str, str] = field(default_factory=dict)  # field -> label as rendered
    aliases: Mapping[str, str] = field(default_factory=dict)  # other spelling -> field
    derived: frozenset[str] = frozenset()  # fields computed from others: not read back


TITLE = SectionSpec("title", "")
MODE = SectionSpec(
    "mode",
    "## Mode",
    ("mode", "run type"),
    {"run_type": "run_type", "objective": "objective"},
    {"run_type": "run_type", "mode": "run_type", "type": "run_type"},
)
CONFIG = SectionSpec(
    "config",
    "## Config",
    ("config", "configuration"),
    {
        "script": "script",
        "config": "config",
        "dataset": "dataset",
        "key_settings": "key settings",
        "code": "code",
        "initialised_from": "initialised from",
    },
    {"command": "script", "key_setting": "key_settings", "settings": "key_settings"},
)
# The spec's lines of a Job block come first, in its order and spelling; hpcwrap's own after.
JOB = SectionSpec(
    "job",
    "## Job",
    ("job",),
    {
        "execution_id": "execution_id",
        "start": "submitted/start",  # the submission time until the job starts, then its start
        "start_human": "start_human",
        "end": "end",
        "end_human": "end_human",
        "runtime": "runtime",
        "node": "node",  # Slurm only
        "submitted": "submitted",
        "cluster": "cluster",
        "state": "state",
        "exit_code": "exit_code",
        "restart_count": "restart_count",
        "sluid": "sluid",  # Slurm 26.05 on
        "slurm_state": "slurm_state",
        "resumed_from": "resumed from",
        "wandb_local": "W&B local",
        "wandb_synced": "W&B synced",
        "submit_error": "submit error",
        "last_heard": "last heard",  # a job not over yet: its newest Status entry's time
    },
    {
        "submitted/start": "start",
        "start": "start",
        "job_id": "execution_id",
        "jobid": "execution_id",
        "slurm_job_id": "execution_id",
        "execution_id": "execution_id",
        "nodes": "node",
        "nodelist": "node",
        "exit": "exit_code",
        "resumed_from": "resumed_from",
        "w&b_local": "wandb_local",
        "wandb_local": "wandb_local",
        "w&b_synced": "wandb_synced",
        "wandb_synced": "wandb_synced",
        "w&b": "wandb_synced",
        "submit_error": "submit_error",
    },
    frozenset({"start_human", "end_human", "runtime", "slurm_state", "last_heard"}),
)
# Every Job block after the first: the spec's three lines, then hpcwrap's own (its own times).
RESUMED_HEADING = "## Job (resumed)"
RESUMED_LABELS: Mapping[str, str] = {**JOB.labels, "start": "start"}
STATUS = SectionSpec("status", "## Status", ("status",))
RESULTS = SectionSpec(
    "results",
    "## Results",
    ("results", "result"),
    {
        "runtime": "runtime",
        "final_step": "final step",
        "start_train_loss": "start_train_loss",
        "end_train_loss": "end_train_loss",
        "start_val_loss": "start_val_loss",
        "end_val_loss": "end_val_loss",
        "loss_one_liner": "loss_one_liner",
        "checkpoint": "checkpoint",
        "config_snapshot": "config_snapshot",
        "config_copy": "config_copy",  # hpcwrap's own copy, which outlives the output folder
        "output": "output",  # a pipeline's: what it wrote (in place of checkpoint)
        "figures_from": "figures from",  # e.g. the W&B offline history, nothing printed
        **{label: label for label in TELEMETRY_LABELS},  # the telemetry summary's lines
    },
    {
        "final_step": "final_step",
        "steps": "final_step",
        "config_copy": "config_copy",
        "outputs": "output",
    },
    frozenset({"runtime", *TELEMETRY_LABELS}),
)
WANDB = SectionSpec(
    "wandb",
    "## W&B",
    ("w&b", "wandb", "weights & biases", "weights and biases"),
    {"local": "local", "synced": "synced", "public": "public", "notes": "notes"},
    {"synced_url": "synced", "url": "synced", "local_dir": "local"},
)
NEXT = SectionSpec("next", "## Next", ("next", "next steps"))
HF = SectionSpec("hf", "## HuggingFace", ("huggingface", "hugging face"))

SECTIONS: tuple[SectionSpec, ...] = (TITLE, MODE, CONFIG, JOB, STATUS, RESULTS, WANDB, NEXT, HF)
BY_KIND: dict[str, SectionSpec] = {spec.kind: spec for spec in SECTIONS}

__all__ = [
    "BY_KIND",
    "RESUMED_HEADING",
    "RESUMED_LABELS",
    "SECTIONS",
    "SectionSpec",
]
