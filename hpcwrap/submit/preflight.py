"""Preflight for ``hpcwrap sbatch --mode experiment``: the spec's first lifecycle step.

Before a new experiment: read ``experiments.md`` and the recent logs, and do
not repeat a failed variation. ``check`` returns the group's last few rows and
the earlier runs with the same config and ``--set`` values that were marked
``discard`` or ``failed`` in experiments.md's ``status`` column, or whose job
failed (a submission that never ran, ``submit failed``, does not count).
``report`` prints them on stderr; with ``strict`` (``--strict``, or
``preflight = "strict"`` in hpcwrap.toml) a repeat refuses the submission.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from hpcwrap.errors import HpcwrapError, UsageError
from hpcwrap.redact import redact_settings
from hpcwrap.runlog import endings
from hpcwrap.runlog.endings import JobState
from hpcwrap.runlog.experiments import (
    CHAIN_STOPPED,
    EXPERIMENTS,
    NEVER_RAN,
    Table,
    cells,
    run_cell,
)
from hpcwrap.submit.request import RunRequest

RECENT = 5  # rows of the group shown before a submission
BAD_VERDICTS = ("discard", "discarded", "failed", "fail")


@dataclass(frozen=True)
class Row:
    run: str
    cells: dict[str, str]

    def line(self) -> str:
        return " | ".join([self.run, *(v for k, v in self.cells.items() if k != "run")])


@dataclass
class Preflight:
    recent: list[Row] = field(default_factory=list)
    repeats: list[tuple[Row, str]] = field(default_factory=list)  # (row, why it counts)


def read_rows(root: Path) -> list[Row]:
    """experiments.md's rows in table order (the order runs were created)."""
    try:
        lines = (root / EXPERIMENTS).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    table = Table(lines)
    out = []
    for run, idx in sorted(table.rows.items(), key=lambda kv: kv[1]):
        values = cells(lines[idx])
        row = {c: (values[k] if k < len(values) else "") for k, c in enumerate(table.columns)}
        out.append(Row(run_cell(run), row))
    return out


def _in_group(run: str, group: str | None) -> bool:
    head, sep, _ = run.rpartition("/")
    return head == (group or "") if sep else group is None


def _verdict(row: Row) -> str:
    status = row.cells.get("status", "").strip().strip("`*_").lower()
    return "" if status in (NEVER_RAN, CHAIN_STOPPED) else status


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def check(request: RunRequest, root: Path, cwd: Path) -> Preflight:
    """The group's recent rows and the failed or discarded runs ``request`` would repeat."""
    from hpcwrap.runlog.handle import RunLog

    rows = [r for r in read_rows(root) if _in_group(r.run, request.group)]
    result = Preflight(recent=rows[-RECENT:])
    config = request.config
    if config is not None and not config.is_absolute():
        config = cwd / config
    new_sha = _sha(config) if config is not None else None
    settings = redact_settings(dict(request.key_settings))
    for row in rows:
        verdict = _verdict(row)
        path = root / f"{row.run}.md"
        try:
            state = RunLog(path, root).read()
        except (HpcwrapError, OSError):
            continue
        jobs = [j for j in state.jobs if j.state != JobState.SUBMIT_FAILED]
        if not jobs:
            continue  # never ran: not a failed variation
        last = endings.parse(jobs[-1].state)
        failed_job = last is not None and last.failed
        if not verdict.startswith(BAD_VERDICTS) and not failed_job:
            continue
        if state.key_settings != settings:
            continue
        old_sha = state.config_facts.sha256 if state.config_facts is not None else None
        if new_sha is not None and old_sha is not None:
            same_config = new_sha == old_sha
        else:
            same_config = (state.config or None) == (
                str(request.config) if request.config is not None else None
            )
        if not same_config:
            continue
        notes = row.cells.get("notes", "").strip()
        if verdict.startswith(BAD_VERDICTS):
            why = f"marked {verdict}" + (f": {notes}" if notes else "")
        else:
            why = f"its job ended {jobs[-1].state}"
        result.repeats.append((row, why))
    return result


def report(
    request: RunRequest,
    root: Path,
    cwd: Path,
    *,
    strict: bool,
    err: TextIO | None = None,
) -> Preflight:
    """Print the preflight on stderr; raise UsageError for a repeat when ``strict``."""
    out = err or sys.stderr
    pre = check(request, root, cwd)
    where = f"{request.group}/" if request.group else "run_logs/"
    if pre.recent:
        print(f"hpcwrap: preflight: the last runs of {where} in {root / EXPERIMENTS}:", file=out)
        for row in pre.recent:
            print(f"  {row.line()}", file=out)
    if not pre.repeats:
        return pre
    what = ", ".join(f"{row.run} ({why})" for row, why in pre.repeats)
    same = "the same config and --set values already ran as " + what
    if strict:
        raise UsageError(
            f"preflight: {same}; not submitting a failed variation again (--strict or "
            'preflight = "strict"); change the config or --set values, or mark the earlier '
            "run otherwise in experiments.md"
        )
    print(f"hpcwrap: warning: preflight: {same}; submitting anyway (--strict refuses)", file=out)
    return pre


__all__ = ["Preflight", "Row", "check", "read_rows", "report"]
