"""The sync itself: one bounded ``wandb beta sync`` call per W&B run, under a lock.

- The key reaches wandb only through its environment (``WANDB_API_KEY``): never its
  argv, which any user on the node can read in ``/proc/<pid>/cmdline``. wandb's own
  output is relayed with the key replaced by ``***``, in case a message quotes it.
- Bounded: each call has a time limit (then its process group is killed), wandb's
  HTTP retries are capped through its settings (``WANDB__*_RETRY_MAX``), the number
  of runs and bytes per command are checked in the plan, and a failed call is not
  retried (run the command again).
- A lock file in each offline run folder (``hpcwrap-sync.lock``) keeps two syncs of
  one run from overlapping; a second one is refused at once.
- Success is exit status 0 *and* a run URL printed by wandb (it writes its
  ``.wandb.synced`` marker even when an upload failed). Only then is the URL recorded
  (run log and ``hpcwrap-synced.json`` in the offline run) and that run's artifact
  staging removed: before a sync, staged files are the payload still to upload.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hpcwrap.errors import LockTimeoutError, MissingExtraError, WandbRefusedError, WandbSyncError
from hpcwrap.redact import redact_text
from hpcwrap.runlog import lifecycle
from hpcwrap.runlog.dates import iso, now
from hpcwrap.runlog.fsio import write_atomic
from hpcwrap.runlog.locks import Lock
from hpcwrap.wandb.offline import HPCWRAP_MARKER, StagedFile, fmt_bytes
from hpcwrap.wandb.plan import MIN_WANDB, Group, Piece, Plan, Target, read_key, sync_args

LOCK_NAME = "hpcwrap-sync.lock"
# Variables that would send the upload elsewhere or fight the key given here.
_DROP_ENV = (
    "WANDB_API_KEY",
    "WANDB_IDENTITY_TOKEN_FILE",
    "WANDB_MODE",
    "WANDB_DISABLED",
    "WANDB_RUN_ID",
    "WANDB_RESUME",
    "WANDB_ENTITY",
    "WANDB_PROJECT",
)
_RETRY_ENV = (
    "WANDB__FILE_TRANSFER_RETRY_MAX",
    "WANDB__GRAPHQL_RETRY_MAX",
    "WANDB__FILE_STREAM_RETRY_MAX",
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_RUN_URL = re.compile(r"https?://[^\s'\"<>`]+/runs/[A-Za-z0-9_-]+")
_VERSION = re.compile(r"version (\d+)\.(\d+)\.(\d+)")

Echo = Callable[[str], None]


def wandb_command() -> str:
    """The ``wandb`` executable: on PATH, else beside this Python (its venv)."""
    found = shutil.which("wandb")
    if found:
        return found
    beside = Path(sys.executable).with_name("wandb")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise MissingExtraError(
        "no `wandb` command on PATH: pip install 'hpcwrap[wandb]' (wandb>="
        + ".".join(map(str, MIN_WANDB))
        + ")",
        extra="wandb",
    )


def child_env(environ: Mapping[str, str], key: str | None, retries: int) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if k not in _DROP_ENV}
    for name in _RETRY_ENV:
        env.setdefault(name, str(retries))
    if key is not None:
        env["WANDB_API_KEY"] = key
    return env


def wandb_version(cmd: str, environ: Mapping[str, str], timeout: float = 60.0) -> tuple[int, ...]:
    """The installed wandb's version; WandbRefusedError when older than ``MIN_WANDB``."""
    try:
        out = subprocess.run(
            [cmd, "--version"],
            env=child_env(environ, None, 0),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise WandbSyncError(f"`{cmd} --version` failed: {exc}") from None
    m = _VERSION.search(out.stdout + out.stderr)
    if m is None:
        raise WandbSyncError(f"`{cmd} --version` printed no version: {out.stdout.strip()[:200]}")
    version = tuple(int(x) for x in m.groups())
    if version < MIN_WANDB:
        need = ".".join(map(str, MIN_WANDB))
        raise WandbRefusedError(
            f"wandb {'.'.join(map(str, version))} at {cmd} is too old: `wandb beta sync` "
            f"with -e/-p/--id needs wandb>={need} (pip install 'wandb>={need}')"
        )
    return version


def scrub(text: str, key: str | None) -> str:
    if key:
        text = text.replace(key, "***")
    return redact_text(text)


@dataclass
class CallResult:
    returncode: int
    lines: list[str]
    url: str | None


def call_wandb(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    key: str | None,
    timeout: float,
    echo: Echo,
) -> CallResult:
    """Run one wandb command, relaying its output scrubbed; kill it after ``timeout``."""
    proc = subprocess.Popen(
        list(args),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: wandb-core goes with it
    )
    tail: deque[str] = deque(maxlen=200)
    urls: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            text = scrub(_ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\r\n"), key)
            tail.append(text)
            urls.extend(_RUN_URL.findall(text))
            echo(text)

    reader = threading.Thread(target=pump, name="hpcwrap-wandb-output", daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        reader.join(5)
        raise WandbSyncError(
            f"wandb beta sync ran longer than {timeout:g} s and was stopped; nothing was "
            "marked synced and the staging is kept (add --timeout S to allow longer)"
        ) from None
    except BaseException:
        _kill(proc)
        raise
    reader.join(30)
    return CallResult(rc, list(tail), urls[-1] if urls else None)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def locked(pieces: Sequence[Piece]) -> Iterator[None]:
    """A lock per offline run folder, taken in one order, refused at once when held."""
    with contextlib.ExitStack() as stack:
        for folder in sorted({p.run.path.resolve() for p in pieces}):
            lock = Lock(folder / LOCK_NAME, timeout=0.0)
            try:
                stack.enter_context(lock.held())
            except LockTimeoutError as exc:
                raise LockTimeoutError(
                    f"another `hpcwrap wandb sync` of {folder} is running"
                    + (f" ({exc.holder})" if exc.holder else "")
                    + ": wait for it to end, then sync again",
                    exc.lock_file,
                    exc.holder,
                ) from None
        yield


def remove_staged(files: Sequence[StagedFile]) -> list[StagedFile]:
    """Remove staged artifact files (read-only by wandb's design); the ones removed."""
    removed = []
    for s in files:
        if s.path.parent.name != "staging" or s.path.parent.parent.name != "artifacts":
            continue  # never anything but wandb's staging copies
        with contextlib.suppress(FileNotFoundError):
            s.path.unlink()
            removed.append(s)
    return removed


def _write_marker(piece: Piece, data: dict[str, object]) -> None:
    body = json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"
    write_atomic(piece.run.path / HPCWRAP_MARKER, body)


@dataclass
class Report:
    synced: list[tuple[Group, str, str | None]] = field(default_factory=list)  # url, public
    removed: list[StagedFile] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)  # run logs written


def execute(
    plan: Plan,
    cmd: str,
    environ: Mapping[str, str],
    echo: Echo,
) -> Report:
    """Do what the plan says (its refusals were checked by the caller)."""
    key = read_key(plan)
    report = Report()
    for target in plan.targets:
        _record_found(target)
    with locked([p for g in plan.groups() for p in g.pieces]):
        report.removed += remove_staged(plan.staged_now())
        for target in plan.targets:
            for group in target.groups:
                todo = group.pieces if plan.force else group.todo
                if not todo:
                    continue
                url, public = _sync_group(plan, group, todo, cmd, environ, key, echo)
                _record_synced(plan, target, group, todo, url, public)
                report.synced.append((group, url, public))
                # Only now: the payload of this run's artifacts is uploaded.
                report.removed += remove_staged([s for p in todo for s in p.run.staged])
    report.recorded = [str(t.log.path) for t in plan.targets if t.log is not None]
    return report


def _sync_group(
    plan: Plan,
    group: Group,
    todo: list[Piece],
    cmd: str,
    environ: Mapping[str, str],
    key: str,
    echo: Echo,
) -> tuple[str, str | None]:
    entity, project = plan.dest.entity, plan.dest.project
    assert entity is not None and project is not None
    env = child_env(environ, key, plan.limits.retries)
    url = _one_call(
        sync_args(cmd, entity, project, group.run_id, todo, plan.force), env, key, plan, echo
    )
    public = None
    if plan.public_project:
        # wandb marked the pieces synced just now: the mirror must not skip them.
        args = sync_args(cmd, entity, plan.public_project, group.run_id, todo, True)
        try:
            public = _one_call(args, env, key, plan, echo)
        except WandbSyncError as exc:
            raise WandbSyncError(
                f"synced to {url}, but the public mirror failed: {exc}; the staging is kept "
                "(add --force to sync both again)"
            ) from None
    return url, public


def _one_call(args: list[str], env: Mapping[str, str], key: str, plan: Plan, echo: Echo) -> str:
    result = call_wandb(args, env, key=key, timeout=plan.limits.timeout, echo=echo)
    if result.returncode != 0 or result.url is None:
        why = (
            f"exit status {result.returncode}"
            if result.returncode != 0
            else "exit status 0 but no run URL printed"
        )
        last = " | ".join(line for line in result.lines[-5:] if line.strip())
        raise WandbSyncError(
            f"wandb beta sync failed ({why}): {last or 'no output'}; nothing was recorded as "
            "synced and the staging is kept"
        )
    return result.url


def _record_found(target: Target) -> None:
    log = target.log
    if log is None:
        return
    found = tuple((p.block, p.local) for g in target.groups for p in g.pieces if p.found)
    if found:
        log.record(lifecycle.WandbFound(now(), found), data={"pieces": [list(f) for f in found]})
    if target.figures is not None:
        log.record(target.figures, data={"source": target.figures.source})


def _record_synced(
    plan: Plan, target: Target, group: Group, todo: list[Piece], url: str, public: str | None
) -> None:
    when = now()
    for p in todo:
        _write_marker(
            p,
            {
                "url": url,
                "public_url": public,
                "entity": plan.dest.entity,
                "project": plan.dest.project,
                "run_id": group.run_id,
                "synced": iso(when),
            },
        )
    if target.log is None:
        return
    staged = sum(s.size or 0 for p in todo for s in p.run.staged if s.size is not None)
    text = (
        f"W&B: synced {len(todo)} offline run(s) as run {group.run_id} to {url}"
        + (f" (public mirror {public})" if public else "")
        + (f"; removed {fmt_bytes(staged)} of artifact staging" if staged else "")
    )
    target.log.record(
        lifecycle.WandbSynced(when, url, tuple(p.local for p in todo), public, text),
        data={"url": url, "public_url": public, "pieces": [p.local for p in todo]},
    )


__all__ = [
    "LOCK_NAME",
    "CallResult",
    "Report",
    "call_wandb",
    "child_env",
    "execute",
    "locked",
    "remove_staged",
    "scrub",
    "wandb_command",
    "wandb_version",
]
