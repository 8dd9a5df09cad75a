"""RunState -> the run log's Markdown, as keyed items.

The run log is rendered as an ordered list of sections, each a list of
``(key, text)`` items. The key says which field an item shows
(``"job.0.start"``, ``"status.3"``, ``"results.final_step"``); the text is the
exact line (plus continuation lines, indented two spaces) that goes in the
file. ``merge.py`` uses the keys to find and update hpcwrap's own lines in a
file a person may have edited, and leaves everything else alone.

The format is the one in spec/run-tracking-workflow.md. All times are UTC
(see ``dates.py``).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime

from hpcwrap.runlog import sections
from hpcwrap.runlog.dates import format_runtime, human_date, iso, status_stamp, to_utc
from hpcwrap.runlog.endings import FINAL_STATES, JobState
from hpcwrap.runlog.model import JobBlock, Results, RunState, StatusEntry
from hpcwrap.runlog.telemetry import results_items as telemetry_results

# The sections' headings and labels are declared once, in sections.py.
JOB_HEADING = sections.JOB.heading
RESUMED_HEADING = sections.RESUMED_HEADING
CONFIG_LABELS = sections.CONFIG.labels
JOB_LABELS = sections.JOB.labels
RESUMED_LABELS = sections.RESUMED_LABELS
RESULTS_LABELS = sections.RESULTS.labels


def norm_label(label: str) -> str:
    """``"W&B Local"`` -> ``"w&b_local"``: compare labels loosely."""
    text = label.strip().strip("`*_").strip().lower()
    return re.sub(r"[\s\-]+", "_", text)


def field_for_label(section_kind: str, label: str) -> str | None:
    """The field a ``- label: value`` line shows in a section of this kind."""
    norm = norm_label(label)
    spec = sections.BY_KIND.get(section_kind)
    if spec is None:
        return None
    alias = spec.aliases.get(norm)
    if alias:
        return alias
    for fname, flabel in spec.labels.items():
        if norm_label(flabel) == norm or fname == norm:
            return fname
    return None


@dataclass(frozen=True)
class Section:
    sid: str  # "title", "mode", "config", "job.0", "job.1", "status", ...
    heading: str  # "## Mode" ("" for the title section)
    items: tuple[tuple[str, str], ...]  # (key, text)


# ---------------------------------------------------------------- values

_NEWLINES = re.compile(r"\r\n|\r|\n")


def clean_lines(value: str) -> list[str]:
    """A value as the lines it renders to: no blank lines, no trailing spaces, no NUL.

    (A NUL would make the file unmergeable: see markdown.parse_document.)
    """
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return [ln.rstrip() for ln in _NEWLINES.split(value) if ln.strip()]


def one_line(value: str) -> str:
    return " ".join(ln.strip() for ln in clean_lines(value))


def block(prefix: str, value: str) -> str:
    """``prefix`` + value; further lines of the value become continuation lines."""
    lines = clean_lines(value)
    if not lines:
        return prefix.rstrip()
    first = (prefix + lines[0]).rstrip()
    return "\n".join([first, *("  " + ln for ln in lines[1:])])


def code(value: str) -> str:
    """Paths in backticks, as the spec writes them; left bare when that would be ambiguous."""
    lines = clean_lines(value)
    if len(lines) == 1 and "`" not in lines[0]:
        return f"`{lines[0]}`"
    return value


def synced_text(local: str | None, synced: str | None) -> str | None:
    """The W&B ``synced`` value: the URL, or the spec's pending note for a local-only run."""
    if synced and synced.strip():
        return code(synced)
    lines = clean_lines(local or "")
    path = lines[0].strip("`").strip() if len(lines) == 1 else ""
    if path:
        return f"pending — run `wandb sync {path}`"
    return None


def fmt_float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return repr(value)


def fmt_time(value: datetime) -> str:
    return f"`{iso(value)}`"


_NEEDS_QUOTE = re.compile(r'[,="`\n\r\\]|^\s|\s$')


def _setting_token(text: str) -> str:
    if not text or _NEEDS_QUOTE.search(text):
        return json.dumps(text, ensure_ascii=False)
    return text


def fmt_settings(settings: dict[str, str]) -> str:
    """``lr=3e-4, batch_size=64``; awkward keys/values JSON-quoted so they read back."""
    parts = []
    for key, value in settings.items():
        token = _setting_token(key)
        if value != "":
            token += "=" + _setting_token(value)
        parts.append(token)
    return ", ".join(parts)


NONE_SEEN = "none seen"
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$", re.IGNORECASE)


def script_text(value: str) -> str:
    """The Config ``script`` line's value in a code span (a ``docker run`` line too).

    A value that already has backticks (hpcwrap's own form, with the script in a
    span and its arguments after it, or a person's) is shown as it is.
    """
    if "`" in value:
        return value
    text = one_line(value)
    return f"`{text}`" if text else value


def dataset_text(value: str) -> str:
    """The spec's form: the file name in a span, ``at`` its folder in a span.

    ``/data/cam/v3.parquet`` becomes the span ``v3.parquet`` at the span ``/data/cam/``;
    a URL the same plus ``(link: <the URL in a span>)``; a bare name its span; text
    already formatted, or prose, stays as it is.
    """
    text = value.strip()
    if "`" in text or "\n" in text or not text:
        return value
    if _URL.match(text):
        head, _, name = text.rstrip("/").rpartition("/")
        where = head + "/" if "://" in head else text
        return f"`{name or text}` at `{where}` (link: `{text}`)"
    if " " in text:
        return value  # prose: "front_cam_v3.parquet at /shared/data", a description
    if "/" not in text.rstrip("/"):
        return f"`{text}`"
    head, _, name = text.rstrip("/").rpartition("/")
    return f"`{name}` at `{head or '/'}/`" if head else f"`{name}` at `/`"


# ---------------------------------------------------------------- sections


def _kv(items: list[tuple[str, str]], key: str, label: str, value: str | None) -> None:
    if value is None or not value.strip():
        return
    items.append((key, block(f"- {label}: ", value)))


def title_line(state: RunState) -> str:
    task = one_line(state.task) or "run"
    desc = one_line(state.description)
    return f"# {task} — {desc}" if desc else f"# {task}"


_SLURM_ID = re.compile(r"^\d+(?:[_+]\S*)?$")


def is_slurm_block(job: JobBlock) -> bool:
    """A block of a Slurm job (the spec's ``node`` line is for those only).

    Outside Slurm the wrapper's execution id is ``<host>:<pid>`` or a cloud VM's
    name/zone and no restart count is read; Slurm's job ids are numbers
    (``12``, ``12_3``, ``12_[0-3]``, ``12+0``).
    """
    if job.restart_count is not None or any(
        one_line(v or "") for v in (job.slurm_state, job.cluster)
    ):
        return True
    return bool(job.execution_id and _SLURM_ID.match(job.execution_id.strip()))


# After the submitted/start value while the job has not started: the time is the submission's.
SUBMITTED_MARK = " (submitted)"
# A chain's W&B pieces in the section's local line: "`<dir>` (job 7); `<dir>` (job 9)"
WANDB_PIECE = re.compile(r"[^`\s;()]+")
WANDB_PIECES = re.compile(r"`([^`]+)` \(job [^)]*\)(?:; `[^`]+` \(job [^)]*\))+")


def resumed_submitted(value: datetime) -> str:
    """``2026-03-12 15:00 UTC``: the spec's spelling of a resumed block's submission."""
    return f"{status_stamp(value)} UTC"


def _job_items(n: int, job: JobBlock, heard: datetime | None = None) -> list[tuple[str, str]]:
    """The spec's lines first (in its order and spelling), then hpcwrap's own."""
    p = f"job.{n}."
    items: list[tuple[str, str]] = []
    resumed = n > 0
    lab = RESUMED_LABELS if resumed else JOB_LABELS
    _kv(items, p + "execution_id", lab["execution_id"], job.execution_id)
    if resumed:
        # ## Job (resumed): execution_id, submitted, resumed from; then its own times.
        if job.submitted is not None:
            _kv(items, p + "submitted", lab["submitted"], resumed_submitted(job.submitted))
        if job.resumed_from:
            _kv(items, p + "resumed_from", lab["resumed_from"], code(job.resumed_from))
        shown = job.start
    else:
        # submitted/start: the submission time until the job starts (said so), then its start.
        shown = job.start if job.start is not None else job.submitted
    if shown is not None:
        when = fmt_time(shown) + (SUBMITTED_MARK if shown is not job.start else "")
        _kv(items, p + "start", lab["start"], when)
        _kv(items, p + "start_human", lab["start_human"], f"`{human_date(shown)}`")
    if job.end is not None:
        _kv(items, p + "end", lab["end"], fmt_time(job.end))
        _kv(items, p + "end_human", lab["end_human"], f"`{human_date(job.end)}`")
    runtime = job.runtime_seconds
    if runtime is not None:
        _kv(items, p + "runtime", lab["runtime"], f"`{format_runtime(runtime)}`")
    if is_slurm_block(job):
        _kv(items, p + "node", lab["node"], job.node)
    # hpcwrap's own lines.
    if not resumed and job.submitted is not None and job.start not in (None, job.submitted):
        # the submission time, once submitted/start shows the start (and they differ)
        _kv(items, p + "submitted", lab["submitted"], fmt_time(job.submitted))
    _kv(items, p + "cluster", lab["cluster"], job.cluster)
    _kv(items, p + "state", lab["state"], job.state)
    if heard is not None:
        # until the end is written: when the job was last heard from, not a bare RUNNING
        _kv(
            items,
            p + "last_heard",
            lab["last_heard"],
            f"{status_stamp(heard)} UTC (no end recorded yet)",
        )
    if job.exit_code is not None:
        _kv(items, p + "exit_code", lab["exit_code"], str(job.exit_code))
    if job.restart_count is not None:
        _kv(items, p + "restart_count", lab["restart_count"], str(job.restart_count))
    if job.sluid:
        _kv(items, p + "sluid", lab["sluid"], job.sluid)
    if job.slurm_state:
        # Slurm's own account, as sacct prints it, and why hpcwrap reads it otherwise.
        slurm = " ".join(x for x in (job.slurm_state, job.slurm_exit) if x)
        note = f" ({job.state_note})" if job.state_note else ""
        _kv(items, p + "slurm_state", lab["slurm_state"], slurm + note)
    if job.resumed_from and not resumed:
        _kv(items, p + "resumed_from", lab["resumed_from"], code(job.resumed_from))
    if job.wandb_local:
        _kv(items, p + "wandb_local", lab["wandb_local"], code(job.wandb_local))
    _kv(
        items,
        p + "wandb_synced",
        lab["wandb_synced"],
        synced_text(job.wandb_local, job.wandb_synced),
    )
    _kv(items, p + "submit_error", lab["submit_error"], job.submit_error)
    return items


def total_runtime(state: RunState) -> tuple[float, datetime, datetime] | None:
    """Summed runtime of the job blocks, with the first start and the last end."""
    spans = [(j.start, j.end) for j in state.jobs if j.start is not None and j.end is not None]
    if not spans:
        return None
    total = sum((end - start).total_seconds() for start, end in spans)
    first = min(start for start, _ in spans)
    last = max(end for _, end in spans)
    return total, first, last


NA = "n/a"


def is_pipeline(state: RunState) -> bool:
    """A ``pipeline (...)`` run: Results speak of what it produced, not of loss."""
    return state.run_type.strip().strip("`").lower().startswith("pipeline")


def loss_text(value: float | None, printed: str | None) -> str:
    """A loss as the training printed it (``3.0000``), else as stored; ``n/a`` when none."""
    if printed is not None and printed.strip():
        return f"`{one_line(printed)}`"
    if value is None:
        return NA
    return f"`{fmt_float(value)}`"


def results_due(state: RunState) -> bool:
    """Results are filled once a job block has ended (or a value is known before that)."""
    if any(j.state in _FINAL for j in state.jobs):
        return True
    return any(
        v is not None and (not isinstance(v, str) or v.strip())
        for v in (getattr(state.results, f.name) for f in fields(Results))
    )


# SUBMIT_FAILED is not here: a submission that never ran has no Results.
_FINAL = FINAL_STATES - {JobState.SUBMIT_FAILED}


def _results_items(state: RunState) -> list[tuple[str, str]]:
    """The spec's Results lines in its order; ``n/a`` where nothing was seen.

    Before any job ended only what is known shows. A pipeline run shows what it
    produced (``output``) and losses only when it printed some. hpcwrap's own lines
    (``config_copy``, and later ones such as telemetry) go after the spec's.
    """
    res = state.results
    items: list[tuple[str, str]] = []
    lab = RESULTS_LABELS
    full = results_due(state)
    pipeline = is_pipeline(state)

    def line(fname: str, value: str | None) -> None:
        if value is not None and value.strip():
            items.append((f"results.{fname}", block(f"- {lab[fname]}: ", value)))
        elif full:
            items.append((f"results.{fname}", f"- {lab[fname]}: {NA}"))

    rt = total_runtime(state)
    line(
        "runtime",
        None
        if rt is None
        else f"`{format_runtime(rt[0])}` (start `{iso(rt[1])}`, end `{iso(rt[2])}`)",
    )
    if not pipeline or res.final_step is not None:
        line("final_step", None if res.final_step is None else str(res.final_step))
    losses = (
        ("start_train_loss", res.start_train_loss, res.start_train_loss_text),
        ("end_train_loss", res.end_train_loss, res.end_train_loss_text),
        ("start_val_loss", res.start_val_loss, res.start_val_loss_text),
        ("end_val_loss", res.end_val_loss, res.end_val_loss_text),
    )
    printed_loss = any(v is not None or t for _, v, t in losses)
    if not pipeline or printed_loss:
        for fname, value, printed in losses:
            if value is not None or printed or full:
                items.append((f"results.{fname}", f"- {lab[fname]}: {loss_text(value, printed)}"))
    one_liner = res.loss_one_liner if res.loss_one_liner and one_line(res.loss_one_liner) else None
    if one_liner is not None:  # a pipeline's too, when someone wrote one
        _kv(items, "results.loss_one_liner", lab["loss_one_liner"], one_liner)
    elif full and (not pipeline or printed_loss):
        items.append(("results.loss_one_liner", f"- {lab['loss_one_liner']}:"))
    if pipeline:
        line("output", code(res.checkpoint) if res.checkpoint else None)
    else:
        line("checkpoint", code(res.checkpoint) if res.checkpoint else None)
    line("config_snapshot", code(res.config_snapshot) if res.config_snapshot else None)
    if res.config_copy:
        _kv(items, "results.config_copy", lab["config_copy"], code(res.config_copy))
    if res.figures_from:
        _kv(items, "results.figures_from", lab["figures_from"], res.figures_from)
    # More of hpcwrap's own Results lines go here (each its own ``results.<field>`` key).
    if state.telemetry is not None:
        items.extend(telemetry_results(state.telemetry))
    return items


@functools.lru_cache(maxsize=65536)
def status_line(when: datetime, text: str) -> str:
    return block(f"- {status_stamp(when)} — ", text)


@functools.lru_cache(maxsize=65536)
def _stamp_key(when: datetime) -> str:
    t = to_utc(when)
    return t.strftime("%Y%m%dT%H%M%S") + (f"{t.microsecond:06d}" if t.microsecond else "")


def status_keys(entries: list[StatusEntry]) -> list[str]:
    """Stable keys for Status entries: the stamp, plus a counter for equal stamps.

    Keys do not depend on position, so a person's out-of-order lines or an
    entry that sorts between older ones never shifts the others' keys.
    """
    seen: dict[str, int] = {}
    keys = []
    for entry in entries:
        stamp = _stamp_key(entry.when)
        n = seen.get(stamp, 0)
        seen[stamp] = n + 1
        keys.append(f"status.{stamp}#{n}")
    return keys


def _title(state: RunState) -> list[Section]:
    return [Section("title", "", (("title", title_line(state)),))]


def _mode(state: RunState) -> list[Section]:
    mode: list[tuple[str, str]] = [
        ("mode.run_type", block("- run_type: ", state.run_type)),
        ("mode.objective", block("- objective: ", state.objective)),
    ]
    return [Section("mode", sections.MODE.heading, tuple(mode))]


def _config(state: RunState) -> list[Section]:
    # Config: the spec's four lines always (n/a where not given), then hpcwrap's code line.
    config: list[tuple[str, str]] = []

    def conf(fname: str, value: str | None) -> None:
        shown = value if value is not None and clean_lines(value) else NA
        config.append((f"config.{fname}", block(f"- {CONFIG_LABELS[fname]}: ", shown)))

    conf("script", script_text(state.script) if state.script else None)
    conf("config", code(state.config) if state.config else None)
    conf("dataset", dataset_text(state.dataset) if state.dataset else None)
    conf("key_settings", fmt_settings(state.key_settings) if state.key_settings else None)
    _kv(config, "config.code", CONFIG_LABELS["code"], state.code)
    _kv(
        config,
        "config.initialised_from",
        CONFIG_LABELS["initialised_from"],
        state.initialised_from,
    )
    return [Section("config", sections.CONFIG.heading, tuple(config))]


def last_heard(state: RunState, job: JobBlock) -> datetime | None:
    """A running job's newest sign of life in the log: its start or a later Status entry."""
    if job.state != JobState.RUNNING or job.start is None:
        return None
    # to the minute, as Status entries are stamped (a re-read entry keeps only that)
    start = to_utc(job.start).replace(second=0, microsecond=0)
    later = [to_utc(s.when) for s in state.status if to_utc(s.when) >= start]
    return max(later, default=start)


def _jobs(state: RunState) -> list[Section]:
    jobs = state.jobs or [JobBlock()]
    return [
        Section(
            f"job.{n}",
            JOB_HEADING if n == 0 else RESUMED_HEADING,
            tuple(_job_items(n, job, last_heard(state, job) if n == len(jobs) - 1 else None)),
        )
        for n, job in enumerate(jobs)
    ]


def _status(state: RunState) -> list[Section]:
    status = tuple(
        (key, status_line(s.when, s.text))
        for key, s in zip(status_keys(state.status), state.status, strict=True)
    )
    return [Section("status", sections.STATUS.heading, status)]


def _results(state: RunState) -> list[Section]:
    return [Section("results", sections.RESULTS.heading, tuple(_results_items(state)))]


def _as_read(value: str) -> str:
    """``value`` as a field reads it back: the inside of a lone code span."""
    m = _LONE_SPAN.fullmatch(value.strip())
    return m.group(1) if m else value


_LONE_SPAN = re.compile(r"`([^`]+)`")


def _wandb(state: RunState) -> list[Section]:
    # W&B: always local, synced and notes ("none seen" without a W&B run; notes are the
    # person's: an empty line to fill until they write one).
    local = state.wandb_local or ""
    local_text = code(local) if clean_lines(local) else NONE_SEEN
    pieces: dict[str, str | None] = {}  # each job's offline run, the first job that named it
    for job in state.jobs:
        piece = _as_read(job.wandb_local or "")
        if piece and WANDB_PIECE.fullmatch(piece):
            pieces.setdefault(piece, job.execution_id)
    # A chain's pieces (one W&B run id): every one, not the first alone. Only where the
    # run's own is the first (as the lifecycle keeps it): the list is read back as that.
    if len(pieces) > 1 and _as_read(local) == next(iter(pieces)):
        local_text = "; ".join(f"{code(p)} (job {j or '?'})" for p, j in pieces.items())
    wandb: list[tuple[str, str]] = [
        ("wandb.local", block("- local: ", local_text)),
        (
            "wandb.synced",
            block("- synced: ", synced_text(state.wandb_local, state.wandb_synced) or NONE_SEEN),
        ),
    ]
    if state.wandb_public:  # the run mirrored to a public project, to share
        wandb.append(("wandb.public", block("- public: ", code(state.wandb_public))))
    wandb.append(("wandb.notes", block("- notes: ", state.wandb_notes or "")))
    return [Section("wandb", sections.WANDB.heading, tuple(wandb))]


def _next(state: RunState) -> list[Section]:
    nxt = tuple(
        (f"next.{i}", block("- ", text)) for i, text in enumerate(state.next) if text.strip()
    )
    return [Section("next", sections.NEXT.heading, nxt)]


def _hf(state: RunState) -> list[Section]:
    hf = []
    for key, value in state.huggingface.items():
        label = one_line(key).replace(":", " ").strip()[:60].strip()
        if not label or not value.strip():
            continue
        hf.append((f"hf.{norm_label(label)}", block(f"- {label}: ", value)))
    return [Section("hf", sections.HF.heading, tuple(hf))] if hf else []


# How each section of sections.SECTIONS renders (a test checks every kind has one).
RENDERERS: dict[str, Callable[[RunState], list[Section]]] = {
    "title": _title,
    "mode": _mode,
    "config": _config,
    "job": _jobs,
    "status": _status,
    "results": _results,
    "wandb": _wandb,
    "next": _next,
    "hf": _hf,
}


def render_sections(state: RunState) -> list[Section]:
    """The whole run log as keyed sections, in the table's order (sections.py)."""
    return [sec for spec in sections.SECTIONS for sec in RENDERERS[spec.kind](state)]


def render_lines(sections: list[Section]) -> list[str]:
    lines: list[str] = []
    for sec in sections:
        if sec.sid == "title":
            for _, text in sec.items:
                lines.extend(text.split("\n"))
            continue
        lines.append("")
        lines.append(sec.heading)
        for _, text in sec.items:
            lines.extend(text.split("\n"))
    return lines


def render_text(state: RunState, newline: str = "\n") -> str:
    """The complete run log for ``state``, as hpcwrap writes a new one."""
    return newline.join(render_lines(render_sections(state))) + newline
