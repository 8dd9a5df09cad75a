"""What one ``hpcwrap wandb sync`` would do, and every reason to refuse it.

The destination is chosen deliberately: entity and project come from the flags, else
the run log's key settings (``wandb_entity``/``wandb_project``, set with ``--set`` at
submission), else hpcwrap.toml's ``wandb_entity``/``wandb_project``; never from what
the offline run embeds (often a stale default). A generic project name
(``GENERIC_PROJECTS``, the one list) or a destination other than the one the offline
run names is refused unless ``--force`` confirms it.

Offline pieces that share a run id, or belong to one resume chain, are one W&B run:
they go up in one ``wandb beta sync --id <id>`` call, which uploads resumed fragments
in order of start time.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from hpcwrap.errors import UsageError, WandbKeyError, WandbRefusedError
from hpcwrap.runlog import RunLog, lifecycle
from hpcwrap.runlog.model import JobBlock, RunState
from hpcwrap.wandb.offline import (
    OfflineRun,
    Sizes,
    StagedFile,
    find_offline_runs,
    fmt_bytes,
    folder_sizes,
    is_offline_run_dir,
    read_offline_run,
)

# Project names that say nothing about the work: a run synced there is as good as lost.
GENERIC_PROJECTS = frozenset(
    {
        "uncategorized",
        "test",
        "tests",
        "testing",
        "default",
        "my-project",
        "my_project",
        "myproject",
        "project",
        "demo",
        "debug",
        "tmp",
        "temp",
        "scratch",
        "sandbox",
        "example",
        "untitled",
        "wandb",
    }
)
KEY_FILES = ("~/.wandb_token", "~/.wandb_key")  # looked at in this order without --wandb-token-file
MIN_WANDB = (0, 24, 1)  # beta sync with -e/-p/--id and --skip-synced that loads credentials
# wandb.init runs inside the job, so an offline run starts between its job's start and end;
# a second covers times the scheduler rounds to the second.
START_SLACK = timedelta(seconds=1)


@dataclass(frozen=True)
class Limits:
    max_runs: int = 50  # offline pieces per call
    max_bytes: int = 20 * 1024**3  # what one call may upload (pieces + staged payload)
    timeout: float = 3600.0  # seconds per wandb call, then it is killed
    retries: int = 5  # wandb's own HTTP retries per request (no retry of the call itself)


@dataclass
class Destination:
    entity: str | None
    project: str | None
    source: str  # where it came from, as the plan says it

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}"


@dataclass
class Piece:
    run: OfflineRun
    local: str  # the folder as the run log records it (or as given)
    block: str | None = None  # the job block's execution id
    synced_url: str | None = None  # recorded for this piece already
    found: bool = False  # found in the working folder, not yet in the run log
    sizes: Sizes = field(default_factory=lambda: Sizes(0, 0, ()))


@dataclass
class Group:
    """Pieces that become one W&B run."""

    run_id: str
    pieces: list[Piece]

    @property
    def todo(self) -> list[Piece]:
        return [p for p in self.pieces if p.synced_url is None]


@dataclass
class Target:
    """One command-line argument: a run log, or offline run folders given directly."""

    label: str
    log: RunLog | None
    state: RunState | None
    groups: list[Group]
    notes: list[str] = field(default_factory=list)  # folders seen and why left out
    figures: lifecycle.FiguresRead | None = None


@dataclass
class Plan:
    targets: list[Target]
    dest: Destination
    public_project: str | None
    force: bool
    limits: Limits
    key_file: Path | None = None
    key_problem: str | None = None
    refusals: list[tuple[str, type[Exception]]] = field(default_factory=list)

    def groups(self) -> list[Group]:
        return [g for t in self.targets for g in t.groups]

    def todo(self) -> list[Piece]:
        return [p for g in self.groups() for p in (g.pieces if self.force else g.todo)]

    def staged_after(self) -> list[StagedFile]:
        """Staging removed only after the sync succeeds (the payload to upload)."""
        return [s for p in self.todo() for s in p.run.staged if s.size is not None]

    def staged_now(self) -> list[StagedFile]:
        """Orphaned staging of runs already synced: may go before any sync."""
        if self.force:
            return []
        done = [p for g in self.groups() for p in g.pieces if p.synced_url is not None]
        return [s for p in done for s in p.run.staged if s.size is not None]

    def upload_bytes(self) -> int:
        return sum(p.sizes.total for p in self.todo()) + sum(
            s.size or 0 for s in self.staged_after()
        )


# ---------------------------------------------------------------- building


def working_folders(state: RunState, log: RunLog) -> list[Path]:
    """Where the run's training may have written its ``wandb/`` folder: the submission's
    working folder, the folders holding recorded offline runs, the code's repository and
    the folder above run_logs/ (``hpcwrap run`` records no working folder)."""
    found: list[Path] = []
    if state.submit is not None and state.submit.workdir:
        found.append(Path(state.submit.workdir))
    for local in [j.wandb_local for j in state.jobs] + [state.wandb_local]:
        path = Path((local or "").strip("`").strip())
        if path.is_absolute() and path.parent.name == "wandb":
            found.append(path.parent.parent)
    if state.code_state is not None and state.code_state.repo:
        found.append(Path(state.code_state.repo))
    found.append(log.root.parent)
    out: list[Path] = []
    for f in found:
        if f not in out and f.is_dir():
            out.append(f)
    return out


def _pieces_of_log(
    log: RunLog, state: RunState, folders: list[Path]
) -> tuple[list[Piece], list[str]]:
    pieces: list[Piece] = []
    notes: list[str] = []
    recorded: dict[str, tuple[str | None, str | None]] = {}
    for job in state.jobs:
        if job.wandb_local:
            recorded.setdefault(job.wandb_local, (job.execution_id, job.wandb_synced))
    if state.wandb_local and state.wandb_local not in recorded:
        recorded[state.wandb_local] = (None, state.wandb_synced)
    seen: set[Path] = set()
    for local, (block, url) in recorded.items():
        path = Path(local.strip("`").strip())
        if not path.is_absolute() and folders:
            path = folders[0] / path
        if not path.is_dir():
            notes.append(f"`{local}` (job {block or '?'}): recorded, but not on disk any more")
            continue
        seen.add(path.resolve())
        run = read_offline_run(path)
        pieces.append(Piece(run, local, block, url or _marker_url(run)))
    # Look in the working folder for runs the output did not name: each goes to the job
    # block during which it started, if that block names none yet.
    free = [j for j in state.jobs if not j.wandb_local and j.start is not None]
    claims: dict[str, list[tuple[OfflineRun, bool]]] = {}  # block -> (run, strictly inside)
    for path in [p for folder in folders for p in find_offline_runs(folder)]:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        run = read_offline_run(path)
        for job in free:
            if job.execution_id is not None and _during(job, run.started):
                inside = _during(job, run.started, timedelta(0))
                claims.setdefault(job.execution_id, []).append((run, inside))
    for block, candidates in claims.items():
        # Runs of the shared working folder started within the job win over those within
        # a second of its start or end (the previous or next job's).
        runs = [r for r, inside in candidates if inside] or [r for r, _ in candidates]
        if len(runs) > 1:
            names = ", ".join(r.path.name for r in runs)
            notes.append(
                f"{len(runs)} offline runs started during job {block} ({names}): "
                "name the one to sync as an argument"
            )
            continue
        run = runs[0]
        pieces.append(Piece(run, str(run.path), block, None, found=True))
    pieces.sort(key=lambda p: (p.run.started is None, p.run.started or datetime.min, p.local))
    return pieces, notes


def _during(job: JobBlock, when: datetime | None, slack: timedelta = START_SLACK) -> bool:
    """``when`` falls in the job's run (a job still running has no end yet); job times are
    kept to the second, so ``when`` is compared to the second too."""
    if when is None or job.start is None:
        return False
    when = when.replace(microsecond=0)
    if when < job.start - slack:
        return False
    return job.end is None or when <= job.end + slack


def _groups(pieces: list[Piece], chain_id: str | None) -> list[Group]:
    """One group per W&B run: a chain's pieces (or pieces sharing an id) are one run."""
    if not pieces:
        return []
    ids = {p.run.run_id for p in pieces}
    if len(ids) == 1:
        return [Group(next(iter(ids)), pieces)]
    if chain_id:
        return [Group(chain_id, pieces)]
    groups: dict[str, Group] = {}
    for p in pieces:
        groups.setdefault(p.run.run_id, Group(p.run.run_id, [])).pieces.append(p)
    return list(groups.values())


def _marker_url(run: OfflineRun) -> str | None:
    url = (run.marker or {}).get("url")
    return url if isinstance(url, str) and url else None


def target_for(spec: str, open_log: object) -> Target:
    """``spec``: an offline run folder, a ``wandb`` folder of them, or a run log."""
    path = Path(spec).expanduser()
    if path.is_dir():
        dirs = [path] if is_offline_run_dir(path) else find_offline_runs(path)
        if not dirs:
            raise UsageError(
                f"{spec} is a folder but no offline W&B run (offline-run-YYYYMMDD_HHMMSS-<id>): "
                "name an offline run folder or a run log"
            )
        pieces = []
        for d in dirs:
            run = read_offline_run(d)
            pieces.append(Piece(run, str(d), None, _marker_url(run)))
        return Target(spec, None, None, _groups(pieces, None))
    assert callable(open_log)
    log: RunLog = open_log(spec)
    state = log.read()
    pieces, notes = _pieces_of_log(log, state, working_folders(state, log))
    chain_id = state.chain.wandb_run_id if state.chain is not None else None
    target = Target(str(log.path), log, state, _groups(pieces, chain_id), notes)
    target.figures = _figures(state, pieces)
    return target


def _figures(state: RunState, pieces: list[Piece]) -> lifecycle.FiguresRead | None:
    """Results from the offline history when the training printed no losses."""
    res = state.results
    if any(v is not None for v in (res.start_train_loss, res.end_train_loss, res.end_val_loss)):
        return None
    hist = [p for p in pieces if p.run.history.train or p.run.history.val]
    if not hist:
        return None
    last = hist[-1].run.history
    train_first = next((p.run.history.train for p in hist if p.run.history.train), None)
    train_last = next((p.run.history.train for p in reversed(hist) if p.run.history.train), None)
    val_first = next((p.run.history.val for p in hist if p.run.history.val), None)
    val_last = next((p.run.history.val for p in reversed(hist) if p.run.history.val), None)
    keys = [s.key for s in (train_last, val_last) if s is not None]
    where = ", ".join(f"`{p.local}`" for p in hist)
    step = f"; step from `{last.step_key}`" if last.step_key else ""
    source = (
        f"W&B offline history of {where} (keys {', '.join(keys)}{step}); "
        "the output printed no losses"
    )
    return lifecycle.FiguresRead(
        lifecycle.ResultFacts(
            final_step=last.final_step,
            first_loss=train_first.first if train_first else None,
            first_loss_text=train_first.first_text if train_first else None,
            loss=train_last.last if train_last else None,
            loss_text=train_last.last_text if train_last else None,
            first_val_loss=val_first.first if val_first else None,
            first_val_loss_text=val_first.first_text if val_first else None,
            val_loss=val_last.last if val_last else None,
            val_loss_text=val_last.last_text if val_last else None,
        ),
        source,
    )


def destination(
    entity: str | None,
    project: str | None,
    targets: Sequence[Target],
    configured: tuple[str | None, str | None, str],
) -> Destination:
    """Flags, else the run logs' key settings, else hpcwrap.toml; never the offline run."""
    e_src = p_src = "--entity/--project"
    if entity is None or project is None:
        for t in targets:
            ks = t.state.key_settings if t.state is not None else {}
            if entity is None and (ks.get("wandb_entity") or ks.get("wandb.entity")):
                entity = ks.get("wandb_entity") or ks.get("wandb.entity")
                e_src = f"key settings of {Path(t.label).name}"
            if project is None and (ks.get("wandb_project") or ks.get("wandb.project")):
                project = ks.get("wandb_project") or ks.get("wandb.project")
                p_src = f"key settings of {Path(t.label).name}"
    if entity is None and configured[0]:
        entity, e_src = configured[0], configured[2]
    if project is None and configured[1]:
        project, p_src = configured[1], configured[2]
    source = e_src if e_src == p_src else f"entity from {e_src}, project from {p_src}"
    return Destination(entity, project, source)


def build_plan(
    targets: list[Target],
    dest: Destination,
    *,
    public_project: str | None,
    force: bool,
    limits: Limits,
    key_file: str | None,
) -> Plan:
    plan = Plan(targets, dest, public_project, force, limits)
    for g in plan.groups():
        for p in g.pieces:
            p.sizes = folder_sizes(p.run.path)
    plan.key_file, plan.key_problem = find_key_file(key_file)
    _refusals(plan)
    return plan


# ---------------------------------------------------------------- refusals


def _refusals(plan: Plan) -> None:
    add = plan.refusals.append
    dest, force = plan.dest, plan.force
    if not plan.groups():
        where = "; ".join(plan_notes(plan)) or "no job block names one"
        add((f"no offline W&B run to sync ({where})", WandbRefusedError))
    if dest.entity is None:
        add(
            (
                "no W&B entity: add --entity E (or wandb_entity in hpcwrap.toml, or "
                "--set wandb_entity=E when submitting)",
                WandbRefusedError,
            )
        )
    if dest.project is None:
        add(
            (
                "no W&B project: add --project P (or wandb_project in hpcwrap.toml, or "
                "--set wandb_project=P when submitting)",
                WandbRefusedError,
            )
        )
    for name, flag in ((dest.project, "--project"), (plan.public_project, "--public-project")):
        if name and name.lower() in GENERIC_PROJECTS and not force:
            add(
                (
                    f"project {name!r} is a generic name (runs there get lost among others): "
                    f"name the real project with {flag} P, or add --force to use {name!r} anyway",
                    WandbRefusedError,
                )
            )
    for p in plan.todo():
        run = p.run
        if run.error is not None:
            add((f"{p.local}: {run.error}", WandbRefusedError))
        says = [(what, v) for what, v in (("entity", run.entity), ("project", run.project)) if v]
        wants = {"entity": dest.entity, "project": dest.project}
        differ = [(w, v) for w, v in says if wants[w] and wants[w] != v]
        if differ and not force:
            own = ", ".join(f"{w} {v!r}" for w, v in differ)
            add(
                (
                    f"{p.local} names {own} itself, but the destination is {dest.path} "
                    f"({dest.source}): add --force to sync to {dest.path} anyway, or pass "
                    + " ".join(f"--{w} {v}" for w, v in differ),
                    WandbRefusedError,
                )
            )
        if run.wandb_synced and p.synced_url is None and not force:
            add(
                (
                    f"{p.local} is marked synced by wandb (run-*.wandb.synced) but no URL is "
                    "recorded: it was synced outside hpcwrap, or a sync failed halfway; add "
                    "--force to sync it again",
                    WandbRefusedError,
                )
            )
        missing = [s for s in run.staged if s.size is None]
        if missing and not force:
            add(
                (
                    f"{p.local}: {len(missing)} staged artifact file(s) are gone (e.g. "
                    f"{missing[0].path}): those artifacts cannot upload; add --force to sync "
                    "the rest",
                    WandbRefusedError,
                )
            )
    todo = plan.todo()
    if len(todo) > plan.limits.max_runs:
        add(
            (
                f"{len(todo)} offline runs to sync, more than --max-runs {plan.limits.max_runs}: "
                "name fewer, or add --max-runs N",
                WandbRefusedError,
            )
        )
    size = plan.upload_bytes()
    if size > plan.limits.max_bytes:
        add(
            (
                f"{fmt_bytes(size)} to upload, more than --max-gb "
                f"{plan.limits.max_bytes / 1024**3:g}: add --max-gb N to allow it",
                WandbRefusedError,
            )
        )


def plan_notes(plan: Plan) -> list[str]:
    return [n for t in plan.targets for n in t.notes]


# ---------------------------------------------------------------- the key


def find_key_file(given: str | None) -> tuple[Path | None, str | None]:
    """The key file to use and, when it cannot be used, why (never its content)."""
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            return path, f"the key file {given} (--wandb-token-file) does not exist"
    else:
        found = next(
            (Path(p).expanduser() for p in KEY_FILES if Path(p).expanduser().is_file()), None
        )
        if found is None:
            return None, (
                "no W&B key file: name one with --wandb-token-file, or put the key in "
                "~/.wandb_token (chmod 600)"
            )
        path = found
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return path, (
            f"{path} is readable by group or others (mode {stat.filemode(mode)}): "
            f"run `chmod 600 {path}`, then sync again"
        )
    return path, None


def read_key(plan: Plan) -> str:
    """The key, from the plan's key file (WandbKeyError saying how to fix it)."""
    if plan.key_problem is not None or plan.key_file is None:
        raise WandbKeyError(plan.key_problem or "no W&B key file")
    try:
        text = plan.key_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise WandbKeyError(f"{plan.key_file}: cannot be read ({type(exc).__name__})") from None
    if not text or len(text.split()) != 1:
        raise WandbKeyError(
            f"{plan.key_file}: expected the W&B key alone on one line (it is "
            f"{'empty' if not text else 'more than one word'})"
        )
    return text


# ---------------------------------------------------------------- text


def plan_text(plan: Plan, wandb_cmd: str) -> str:
    """The whole plan, as ``--dry-run`` prints it."""
    out: list[str] = []
    d = plan.dest
    out.append(f"destination: {d.entity or '?'}/{d.project or '?'} ({d.source})")
    if plan.public_project:
        out.append(f"public mirror: {d.entity or '?'}/{plan.public_project}")
    for t in plan.targets:
        out.append(f"{'run log' if t.log is not None else 'offline runs'}: {t.label}")
        for g in t.groups:
            out.append(f"  W&B run id {g.run_id}: {len(g.pieces)} offline piece(s), in order")
            for p in g.pieces:
                r = p.run
                where = f"job {p.block}" if p.block else "no job block"
                state = (
                    f"synced: {p.synced_url}" + (" (again: --force)" if plan.force else "")
                    if p.synced_url
                    else ("to sync" + (" (found in the working folder)" if p.found else ""))
                )
                out.append(f"    {p.local} [{where}]: {state}")
                says = f"{r.entity or '-'}/{r.project or '-'}"
                started = r.started.strftime("%Y-%m-%d %H:%M:%S UTC") if r.started else "?"
                out.append(
                    f"      run {r.run_id}, started {started}, names {says}; "
                    f"{fmt_bytes(p.sizes.total)} in {p.sizes.files} files"
                )
                for nbytes, rel in p.sizes.largest[:3]:
                    out.append(f"      {fmt_bytes(nbytes):>10}  {rel}")
                for s in r.staged:
                    shown = "gone" if s.size is None else fmt_bytes(s.size)
                    out.append(f"      staged {shown:>10}  {s.path} (artifact {s.artifact})")
        for n in t.notes:
            out.append(f"  left out: {n}")
        if t.figures is not None:
            out.append(f"  Results: filled from the {t.figures.source}")
    after, now = plan.staged_after(), plan.staged_now()
    total = sum(s.size or 0 for s in after)
    out.append(f"upload: {fmt_bytes(plan.upload_bytes())} in {len(plan.todo())} offline run(s)")
    out.append(
        f"remove after a successful sync: {len(after)} staged file(s), {fmt_bytes(total)} "
        "(artifact staging only; history, config, summary, media stay)"
    )
    if now:
        out.append(
            f"remove now: {len(now)} orphaned staged file(s) of runs already synced, "
            f"{fmt_bytes(sum(s.size or 0 for s in now))}"
        )
    key = plan.key_problem or f"{plan.key_file} (passed to wandb in its environment only)"
    out.append(f"key: {key}")
    for g in plan.groups():
        todo = g.pieces if plan.force else g.todo
        if todo and plan.dest.entity and plan.dest.project:
            args = sync_args(
                wandb_cmd, plan.dest.entity, plan.dest.project, g.run_id, todo, plan.force
            )
            out.append("command: " + " ".join(args))
    for message, _cls in plan.refusals:
        out.append(f"refused: {message}")
    return "\n".join(out)


def sync_args(
    wandb_cmd: str, entity: str, project: str, run_id: str, pieces: Sequence[Piece], again: bool
) -> list[str]:
    """``wandb beta sync`` for one W&B run: its pieces in start order, no key anywhere."""
    return [
        wandb_cmd,
        "beta",
        "sync",
        "-e",
        entity,
        "-p",
        project,
        "--id",
        run_id,
        "--no-skip-synced" if again else "--skip-synced",
        "-n",
        "1",
        *[os.fspath(p.run.path) for p in pieces],
    ]


__all__ = [
    "GENERIC_PROJECTS",
    "KEY_FILES",
    "MIN_WANDB",
    "Destination",
    "Group",
    "Limits",
    "Piece",
    "Plan",
    "Target",
    "build_plan",
    "destination",
    "find_key_file",
    "plan_text",
    "read_key",
    "sync_args",
    "target_for",
]
