"""The end of a run: final state, Results, a drafted loss_one_liner, Next.

``loss_one_liner`` is a draft in words (a takeaway, not a list of numbers); the
run-log core keeps a person's edit of it forever after. ``next_steps`` follows
the spec: resume for more steps, or passport + signoff before any eval, upload
or hand-off — never eval/upload directly.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpcwrap.job.status import fmt_num
from hpcwrap.reading import checkpoints
from hpcwrap.reading.progress import ErrorRecord, Snapshot
from hpcwrap.runlog import endings, lifecycle
from hpcwrap.runlog.fsio import copy_mode

if TYPE_CHECKING:
    from hpcwrap.runlog.handle import RunLog

# Series are judged on bucket means, so noisy per-step losses do not read as zig-zags.
_BUCKETS = 8
_FLAT = 0.05  # relative change below this is "flat"


@dataclass(frozen=True)
class EndFacts:
    """What the supervisor knows when the command has ended."""

    exit_code: int
    signaled: int | None  # the signal that killed the child, if any
    walltime_signal: bool  # the walltime warning arrived
    terminated_by: str | None  # "SIGTERM" etc. when we were asked to stop
    # Seconds before the time limit when the TERM came (squeue's count, asked at the start);
    # None where unknown (squeue gave no answer, no limit) or no TERM came.
    time_left_at_term: float | None
    killed_by_us: bool


def figures_of(snap: Snapshot) -> lifecycle.ResultFacts:
    """Results' step and loss figures (values and the text as printed) as ``snap`` read
    them; the wrapper's end and ``scan --into`` add what else they know."""
    return lifecycle.ResultFacts(
        final_step=snap.step,
        first_loss=snap.first_loss,
        loss=snap.loss,
        first_val_loss=snap.first_val_loss,
        val_loss=snap.val_loss,
        has_progress=snap.has_progress,
        first_loss_text=snap.first_loss_text,
        loss_text=snap.loss_text,
        first_val_loss_text=snap.first_val_loss_text,
        val_loss_text=snap.val_loss_text,
    )


def _stepd_said(errors: Iterable[ErrorRecord]) -> endings.JobState | None:
    """The end slurmstepd's line in the command's own output names (a requeue, a node
    failure, the time limit, a scancel), when it printed one."""
    for e in errors:
        if e.kind == "cancelled":
            m = endings.STEPD_LINE_TEXT.search(e.text)
            if m:
                return endings.stepd_cause(m.group(1) or "")
    return None


def end_verdict(end: EndFacts, snap: Snapshot) -> endings.Verdict:
    """How the command's end reads (runlog/endings.classify) from what the wrapper saw."""
    kinds = frozenset(e.kind for e in snap.errors)
    return endings.classify(
        endings.Evidence(
            exit_code=end.exit_code,
            walltime_warning=end.walltime_signal,
            terminated_by=end.terminated_by,
            time_left_at_term=end.time_left_at_term,
            lines=kinds & frozenset(k for k, _, _ in endings.SLURM_LINES),
            stepd=_stepd_said(snap.errors),
            finished_all_steps=snap.finished_all_steps,
            short_of_total=(
                snap.step_total is not None
                and snap.step is not None
                and snap.step < snap.step_total
            ),
        )
    )


def final_state(end: EndFacts, snap: Snapshot) -> endings.JobState:
    """The state ``end_verdict`` gives."""
    return end_verdict(end, snap).state


# --------------------------------------------------------------------------- loss story


def _finite(points: Iterable[tuple[int | None, float]]) -> list[tuple[int | None, float]]:
    return [(s, v) for s, v in points if math.isfinite(v)]


def _buckets(values: Sequence[float], n: int = _BUCKETS) -> list[float]:
    if len(values) <= n:
        return list(values)
    size = len(values) / n
    return [
        sum(values[int(i * size) : int((i + 1) * size)])
        / max(len(values[int(i * size) : int((i + 1) * size)]), 1)
        for i in range(n)
    ]


@dataclass(frozen=True)
class Trend:
    direction: str  # "fell" | "rose" | "flat"
    steady: bool
    plateau: bool  # the last quarter moved little compared with the whole
    noisy: bool
    first: float
    last: float
    low: float
    low_step: int | None
    rel: float


def trend(points: Sequence[tuple[int | None, float]]) -> Trend | None:
    pts = _finite(points)
    if len(pts) < 2:
        return None
    values = [v for _, v in pts]
    b = _buckets(values)
    first, last = values[0], values[-1]
    start, end = b[0], b[-1]
    scale = max(abs(start), 1e-12)
    rel = (end - start) / scale
    direction = "flat" if abs(rel) < _FLAT else ("fell" if rel < 0 else "rose")
    moves = [b[i + 1] - b[i] for i in range(len(b) - 1)]
    if direction == "fell":
        steady = sum(1 for m in moves if m <= 0) >= 0.8 * len(moves)
    elif direction == "rose":
        steady = sum(1 for m in moves if m >= 0) >= 0.8 * len(moves)
    else:
        steady = False
    total_move = abs(end - start)
    q = max(len(b) // 4, 1)
    late_move = abs(b[-1] - b[-1 - q]) if len(b) > q else total_move
    plateau = direction == "fell" and total_move > 0 and late_move < 0.1 * total_move
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    resid = [
        abs(v - b[min(int(i * len(b) / len(values)), len(b) - 1)]) for i, v in enumerate(values)
    ]
    noisy = len(values) >= 8 and sum(resid) / len(resid) > 0.5 * max(spread, 1e-12) and not steady
    i_low = min(range(len(pts)), key=lambda i: pts[i][1])
    return Trend(direction, steady, plateau, noisy, first, last, pts[i_low][1], pts[i_low][0], rel)


def _describe_train(t: Trend) -> str:
    if t.direction == "fell":
        how = "steadily " if t.steady else ("noisily " if t.noisy else "")
        text = f"train loss fell {how}from {fmt_num(t.first)} to {fmt_num(t.last)}"
        if t.plateau:
            text += " and flattened out over the last quarter"
        return text
    if t.direction == "rose":
        return (
            f"train loss rose from {fmt_num(t.first)} to {fmt_num(t.last)}, so the run is "
            "not converging (learning rate too high, or a data/label problem?)"
        )
    return (
        f"train loss stayed flat around {fmt_num(t.last)}, so the model is not learning "
        "(check the learning rate and the data)"
    )


def this_job_only(snap: Snapshot, console: Snapshot) -> Snapshot:
    """``snap``'s loss series cut to the steps this job printed (``console``): a resumed
    job's records (HF's trainer_state.json, Lightning's metrics.csv) hold the whole chain's
    history, and "in the last job" must speak of the last job."""
    steps = [s for s, _ in (*console.train_history, *console.val_history) if s is not None]
    if not steps:
        return snap
    first = min(steps)

    def cut(points: tuple[tuple[int | None, float], ...]) -> tuple[tuple[int | None, float], ...]:
        return tuple(p for p in points if p[0] is None or p[0] >= first)

    return dataclasses.replace(
        snap, train_history=cut(snap.train_history), val_history=cut(snap.val_history)
    )


def loss_one_liner(snap: Snapshot, state: str = endings.JobState.COMPLETED) -> str | None:
    """One sentence on how the losses went, or None when nothing was logged.

    ``state`` is the run's final state: "more steps may help" is advice for a run
    that ran out of steps or time, not for one that crashed. One function, longer than
    most: it is one sentence's cases in reading order (train, val, both, overfitting).
    """
    train, val = snap.train_history, snap.val_history
    if not train and not val:
        return None
    parts: list[str] = []
    if snap.nonfinite_seen:
        finite = _finite(train)
        before = f" after reaching {fmt_num(finite[-1][1])}" if finite else ""
        at = (
            f" at step {snap.nonfinite_since_step}" if snap.nonfinite_since_step is not None else ""
        )
        return (
            f"train loss became nan/inf{at}{before}: the run diverged, later values are meaningless"
        )
    tt = trend(train)
    vt = trend(val)
    if tt is None and train:
        parts.append(f"only one train loss value was logged ({fmt_num(train[-1][1])})")
    elif tt is not None:
        parts.append(_describe_train(tt))
    if vt is not None:
        overfit = (
            vt.low_step is not None
            and vt.last > vt.low * 1.05
            and val[-1][0] != vt.low_step
            and (tt is None or tt.direction == "fell")
        )
        if overfit:
            parts.append(
                f"val loss bottomed out at {fmt_num(vt.low)} around step {vt.low_step} and rose "
                f"to {fmt_num(vt.last)} since, which suggests overfitting"
            )
        elif vt.direction == "fell" and (tt is None or tt.direction == "fell"):
            gap = (vt.last - tt.last) / max(abs(tt.last), 1e-12) if tt is not None else 0.0
            text = f"val loss tracked it down to {fmt_num(vt.last)}"
            if tt is not None and gap > 0.5:
                text += (
                    f", though with a wide gap to train ({fmt_num(vt.last)} vs {fmt_num(tt.last)})"
                )
                parts.append(text)
            else:
                parts.append(text + "; no sign of overfitting")
        elif vt.direction == "rose":
            parts.append(f"val loss rose from {fmt_num(vt.first)} to {fmt_num(vt.last)}")
        else:
            parts.append(f"val loss stayed around {fmt_num(vt.last)}")
    elif val:
        parts.append(f"val loss was logged once ({fmt_num(val[-1][1])})")
    else:
        parts.append("no val loss was logged")
    text = "; ".join(parts)
    if (
        tt is not None
        and tt.direction == "fell"
        and not tt.plateau
        and parts[-1].startswith("val loss tracked")
        and state in (endings.JobState.COMPLETED, endings.JobState.TIMEOUT)
    ):
        text += "; still improving at the end, more steps may help"
    return text[:1].upper() + text[1:] + "."


# --------------------------------------------------------------------------- files on disk


resolve_path = checkpoints.resolve  # a printed path, exactly as printed, under the job's cwd


def find_config_snapshot(
    globs: Sequence[str],
    *,
    cwd: Path,
    announced: str | None,
    near: Sequence[str],
    since: float,
    owns: Callable[[Path], bool] | None = None,
    untied: list[Path] | None = None,
) -> Path | None:
    """The resolved config this run wrote: the path it printed, else the newest file
    matching ``globs`` (written since the run started) in the cwd, a level or two
    below it, or beside its checkpoints / W&B run."""
    if announced:
        path = resolve_path(announced, cwd)
        if path.is_file():
            return path
    roots = [cwd]
    for item in near:
        p = resolve_path(item, cwd)
        roots.extend([p, p.parent, p.parent.parent, p / "files"])
    best: tuple[float, Path] | None = None
    for path in checkpoints.walk(roots, 3, [checkpoints.SCAN_BUDGET]):
        if not any(path.match(g) for g in globs):
            continue
        try:
            st = path.stat()
        except OSError:
            continue
        if not path.is_file() or st.st_mtime < since - 5:
            continue
        if owns is not None and not owns(path):
            if untied is not None and path not in untied:
                untied.append(path)  # another run's, in the same folder
            continue
        if best is None or st.st_mtime > best[0]:
            best = (st.st_mtime, path)
    return best[1] if best else None


def keep_config_copy(src: Path, sidecar: Path, label: str, limit: int = 1 << 20) -> Path | None:
    """Copy a resolved config into the run's sidecar (output folders get overwritten)."""
    try:
        if src.stat().st_size > limit:
            return None
        dest_dir = sidecar / "config"
        dest_dir.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^\w.-]+", "_", label)
        dest = dest_dir / f"resolved_{safe}_{src.name}"
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        os.chmod(tmp, copy_mode(src.stat().st_mode))  # a private config stays private
        os.replace(tmp, dest)
        return dest
    except OSError:
        return None


def submitted_config_copy(sidecar: Path, config: str | None) -> Path | None:
    """The copy of ``--config`` that ``hpcwrap sbatch`` kept in the sidecar, if any."""
    folder = sidecar / "config"
    try:
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "resolved_"))
        )
    except OSError:
        return None
    if config:
        name = Path(config).name
        for p in files:
            if p.name == name:
                return p
    return files[0] if files else None


def relative_to_log(path: Path, run_log: Path) -> str:
    """A sidecar file as the run log shows it: relative to the log's folder."""
    return os.path.relpath(path, run_log.parent)


# --------------------------------------------------------------------------- Next


@dataclass(frozen=True)
class RunKind:
    """What the drafts need to know about the run: its name for commands, and its mode."""

    name: str | None = None  # ``<group>/<name>``, as ``hpcwrap ... <run>`` takes it
    pipeline: bool = False


def run_kind(run: RunLog | None) -> RunKind:
    """The run's name and whether it is a pipeline run (never raises: drafts only)."""
    if run is None:
        return RunKind()
    try:
        run_type = run.read().run_type
    except Exception:  # a draft must never stop the end from being recorded
        run_type = ""
    return RunKind(run.run_id, run_type.strip().strip("`").lower().startswith("pipeline"))


def _cmd(words: str) -> str:
    return f"`{words}`"


def _first_error(errors: Sequence[ErrorRecord]) -> ErrorRecord | None:
    return errors[0] if errors else None


def next_steps(
    state: str, checkpoint: str | None, snap: Snapshot, kind: RunKind | None = None
) -> list[str]:
    """Suggestions for ``## Next``, each with the exact command (drafts; a person edits them)."""
    kind = kind or RunKind()
    run = kind.name or "<run>"
    if kind.pipeline:
        return _pipeline_next(state, checkpoint, snap, run)
    out: list[str] = []
    ck = f"`{checkpoint}`" if checkpoint else None
    resume = _cmd(f"hpcwrap resume {run}")
    err = _first_error(snap.errors)
    ended = endings.parse(state)
    if ended is not None and ended.failed:
        what = err.text if err is not None else f"the {ended.word} exit"
        out.append(f"fix the failure first ({what[:160]}), then resubmit")
        if ck:
            out.append(f"once fixed, resume from {ck} instead of starting over: {resume}")
    elif ended is not None and (ended.resumable or ended is endings.JobState.CANCELLED):
        if ck:
            out.append(
                f"resume for more steps from {ck} with the same config: {resume} "
                "(a `## Job (resumed)` block in this log)"
            )
        else:
            out.append(
                "no checkpoint was seen before the stop: resubmit with more time or "
                "more frequent checkpoints"
            )
    elif ended is endings.JobState.COMPLETED and ck:
        trend_ = trend(snap.train_history)
        if trend_ is not None and trend_.direction == "fell" and not trend_.plateau:
            out.append(f"resume for more steps from {ck} (the loss was still falling): {resume}")
        either = "or " if out else ""  # an alternative only after the resume suggestion
        out.append(
            f"{either}generate `MODEL_PASSPORT.json` + `SIGNOFF.json` for {ck}, "
            "then eval / upload / hand off"
        )
    if not checkpoint and ended is endings.JobState.COMPLETED:
        note = _cmd(f"hpcwrap log note {run} 'checkpoint at <path>'")
        out.append(
            f"no checkpoint path was seen in the output: record it in Results (and {note}), "
            "then generate `MODEL_PASSPORT.json` + `SIGNOFF.json` for it before any eval / "
            "upload / hand-off"
        )
    if snap.wandb_dir and "offline-run-" in snap.wandb_dir:
        dry = _cmd(f"hpcwrap wandb sync --dry-run {run}")
        out.append(
            f"sync the offline W&B run to its real entity/project: {dry} shows the plan "
            "(add --entity/--project), then the same with --yes"
        )
    if snap.nonfinite_seen:
        out.insert(
            0,
            "the loss went nan/inf: lower the learning rate or check the data "
            "before spending more compute",
        )
    return out


def _pipeline_next(state: str, output: str | None, snap: Snapshot, run: str) -> list[str]:
    """A pipeline's Next: about what it wrote and its failures, not checkpoints or eval."""
    err = _first_error(snap.errors)
    note = _cmd(f"hpcwrap log note {run} '<what you checked>'")
    where = f"`{output}`" if output else None
    count = f" ({snap.step} items processed)" if snap.step is not None else ""
    ended = endings.parse(state)
    if ended is endings.JobState.COMPLETED:
        if where:
            return [f"check what it wrote at {where}{count} before the next stage uses it; {note}"]
        return [
            f"no output path was seen in its output{count}: note where it wrote "
            f"({_cmd(f'hpcwrap log note {run} {chr(39)}output at <path>{chr(39)}')}) and check "
            "it before the next stage uses it"
        ]
    if ended is not None and ended.failed:
        what = err.text if err is not None else f"the {ended.word} exit"
        out = [f"fix the failure first ({what[:160]}), then resubmit"]
        if where:
            out.append(f"what it wrote before failing ({where}) may be partial: check it; {note}")
        return out
    if ended is not None and (ended.resumable or ended is endings.JobState.CANCELLED):
        return [
            f"it stopped before the end{count}: resubmit with more time, and check that it "
            f"skips or redoes partial outputs{f' at {where}' if where else ''}; {note}"
        ]
    return []


__all__ = [
    "EndFacts",
    "RunKind",
    "Trend",
    "final_state",
    "find_config_snapshot",
    "keep_config_copy",
    "loss_one_liner",
    "next_steps",
    "relative_to_log",
    "resolve_path",
    "run_kind",
    "submitted_config_copy",
    "trend",
]
