"""Read a run log's Markdown back into a RunState (for logs written by hand, and round trips).

Only the fields hpcwrap renders are read; a value that does not parse (a
placeholder like ``<first logged value>``) is left unset, and the line stays
as the person wrote it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from hpcwrap.runlog import sections
from hpcwrap.runlog.dates import parse_timestamp
from hpcwrap.runlog.markdown import DiskSection, Document, Item
from hpcwrap.runlog.model import JobBlock, RunState, StatusEntry
from hpcwrap.runlog.render import SUBMITTED_MARK, WANDB_PIECES, field_for_label, norm_label

_STATUS = re.compile(
    r"^[-*+] +`?(\d{4}-\d{2}-\d{2}[ T]\d{1,2}:\d{2}(?::\d{2})?)(?:\s*(?:UTC|Z))?`?"
    "\\s*[\u2014\u2013-]+\\s?(.*)$",
    re.DOTALL,
)
_CODE_SPAN = re.compile(r"^`([^`]+)`$")  # "``" is two backticks, not an empty span
_NAME_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})_(.+?)(?:_(\d+))?$")


def status_time(item_text: str) -> StatusEntry | None:
    """The stamp and text of a Status line (``- 2026-03-11 15:00 — ...``), if it is one."""
    first, _, rest = item_text.partition("\n")
    m = _STATUS.match(first)
    if not m:
        return None
    when = parse_timestamp(m.group(1))
    if when is None:
        return None
    text = m.group(2)
    if rest:
        more = (ln[2:] if ln.startswith("  ") else ln.lstrip() for ln in rest.split("\n"))
        text = "\n".join([text, *more])
    return StatusEntry(when, text)


def uncode(value: str) -> str:
    m = _CODE_SPAN.match(value)
    return m.group(1) if m else value


_MISSING = ("", "n/a", "none seen")


def missing(value: str) -> bool:
    """What hpcwrap writes for nothing seen (``n/a``, ``none seen``), or nothing.

    Only the bare words: a value that reads the same is rendered in a code span.
    """
    return value.strip() in _MISSING


def code_value(value: str) -> str | None:
    """A path-like field: the inside of a lone code span, else the text as written."""
    if missing(value):
        return None
    m = _CODE_SPAN.match(value.strip())
    return m.group(1) if m else value


def synced_value(value: str) -> str | None:
    """A W&B ``synced`` field: the URL, or None for the spec's "pending — run `wandb sync`"."""
    return None if value.strip().lower().startswith("pending") else code_value(value)


def _float(value: str) -> float | None:
    text = uncode(value.strip()).strip()
    if text.lower() in ("", "n/a", "na", "none", "-"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _int(value: str) -> int | None:
    text = uncode(value.strip()).strip().replace(",", "").replace("_", "")
    try:
        return int(text)
    except ValueError:
        return None


def parse_settings(value: str) -> dict[str, str]:
    """The inverse of ``render.fmt_settings`` (also reads ``lr: 3e-4``-style hand edits)."""
    out: dict[str, str] = {}
    decoder = json.JSONDecoder()
    text = value.replace("\n", " ")
    i = 0
    n = len(text)

    def token() -> tuple[str, bool]:
        nonlocal i
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == '"':
            try:
                parsed, end = decoder.raw_decode(text, i)
            except ValueError:
                parsed, end = None, -1
            if isinstance(parsed, str):
                i = end
                return parsed, True
        start = i
        while i < n and text[i] not in ",=":
            i += 1
        return text[start:i].strip(), False

    while i < n:
        key, quoted = token()
        val = ""
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == "=":
            i += 1
            val, _ = token()
        while i < n and text[i] != ",":
            i += 1  # stray text after a quoted token: skip to the next pair
        i += 1  # the comma
        if key or val or quoted:
            out[key] = val
    return out


def _keyed(sec: DiskSection, kind: str) -> dict[str, Item]:
    """First item for each field in a keyed section."""
    found: dict[str, Item] = {}
    for item in sec.items:
        if item.label is None:
            continue
        fname = field_for_label(kind, item.label)
        if fname and fname not in found:
            found[fname] = item
    return found


def _job(sec: DiskSection) -> JobBlock:
    job = JobBlock()
    for fname, item in _keyed(sec, "job").items():
        if fname in sections.JOB.derived:
            continue
        value = item.value.strip()
        if fname == "start" and value.endswith(SUBMITTED_MARK):
            # hpcwrap's submitted/start before the job started: the submission time
            when = parse_timestamp(uncode(value[: -len(SUBMITTED_MARK)].strip()))
            job.submitted = job.submitted or when
        elif fname in ("submitted", "start", "end"):
            setattr(job, fname, parse_timestamp(uncode(value)))
        elif fname in ("exit_code", "restart_count"):
            setattr(job, fname, _int(value))
        elif fname == "wandb_synced":
            job.wandb_synced = synced_value(item.value)
        elif fname in ("resumed_from", "wandb_local"):
            setattr(job, fname, code_value(item.value))
        else:
            setattr(job, fname, item.value or None)
    return job


def name_parts(path: Path) -> tuple[str, str]:
    """``2026-03-11_train_front_cam_2.md`` -> (``"2026-03-11"``, ``"train_front_cam"``)."""
    m = _NAME_DATE.match(path.stem)
    if not m:
        return "", path.stem
    return m.group(1), m.group(2)


def _mode(state: RunState, sec: DiskSection) -> None:
    for fname, item in _keyed(sec, "mode").items():
        if fname == "run_type":
            state.run_type = item.value  # as written; parse_run_type is for input
        else:
            state.objective = item.value


def _config(state: RunState, sec: DiskSection) -> None:
    for fname, item in _keyed(sec, "config").items():
        if fname != "code" and missing(item.value):
            continue  # hpcwrap's n/a: not given
        if fname == "config":
            state.config = code_value(item.value)
        elif fname == "key_settings":
            state.key_settings = parse_settings(item.value)
        else:
            setattr(state, fname, item.value or None)


def _status(state: RunState, sec: DiskSection) -> None:
    for item in sec.items:
        entry = status_time(item.text)
        if entry is not None:
            state.status.append(entry)


def _results(state: RunState, sec: DiskSection) -> None:
    res = state.results
    for fname, item in _keyed(sec, "results").items():
        if fname in sections.RESULTS.derived:
            continue
        if fname == "final_step":
            res.final_step = _int(item.value)
        elif fname.endswith("_loss"):
            number = _float(item.value)
            setattr(res, fname, number)
            if number is not None:  # shown again exactly as written
                setattr(res, fname + "_text", uncode(item.value.strip()).strip())
        elif fname in ("checkpoint", "config_snapshot", "config_copy"):
            setattr(res, fname, code_value(item.value))
        elif fname == "output":
            res.checkpoint = res.checkpoint or code_value(item.value)
        else:
            res.loss_one_liner = item.value or None


def _wandb(state: RunState, sec: DiskSection) -> None:
    for fname, item in _keyed(sec, "wandb").items():
        if fname == "local":
            pieces = WANDB_PIECES.fullmatch(item.value.strip())
            state.wandb_local = pieces.group(1) if pieces else code_value(item.value)
        elif fname == "synced":
            state.wandb_synced = synced_value(item.value)
        else:
            state.wandb_notes = item.value or None


def _next(state: RunState, sec: DiskSection) -> None:
    state.next = [item.body for item in sec.items if item.body.strip()]


def _hf(state: RunState, sec: DiskSection) -> None:
    for item in sec.items:
        if item.label is not None and norm_label(item.label):
            state.huggingface.setdefault(item.label.strip(), item.value)


# How each section of sections.SECTIONS reads back (the title in parse_state, a job
# section in ``_job``: one block each; a test checks every kind is covered).
READERS: dict[str, Callable[[RunState, DiskSection], None]] = {
    "mode": _mode,
    "config": _config,
    "status": _status,
    "results": _results,
    "wandb": _wandb,
    "next": _next,
    "hf": _hf,
}


def parse_state(doc: Document, name: str = "", group: str | None = None) -> RunState:
    """A RunState from the fields found in ``doc``."""
    state = RunState(name=name, group=group)
    if name:
        state.task = name_parts(Path(name + ".md"))[1]
    if doc.title is not None:
        title = doc.lines[doc.title][2:].strip()
        task, sep, desc = title.partition(" — ")
        state.task = task.strip() or state.task
        state.description = desc.strip() if sep else ""

    jobs: list[JobBlock] = []
    for sec in doc.sections:
        if sec.sid is None or sec.sid == "title":
            continue
        if sec.kind == "job":
            jobs.append(_job(sec))
        elif sec.kind in READERS:
            READERS[sec.kind](state, sec)
    state.jobs = jobs
    return state
