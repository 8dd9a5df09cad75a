"""Start a run log from a RunRequest: the part shared by ``hpcwrap sbatch`` and ``hpcwrap run``.

``create_run_from_request`` records what a run is (mode, objective, config,
dataset, key settings), the code it uses (git commit/branch/dirty, the diff
in the sidecar, untracked files counted), copies the ``--config`` file into
the sidecar byte for byte with its sha256, creates the run log, and for
``experiment`` runs tags the commit ``hpcwrap/<run-name>``.

Sidecar files written here (``<run_logs>/<group>/.hpcwrap/<name>/``):
``code.diff`` (only when the tree is dirty) and ``config/<file name>``.
Machine facts go in ``state.code_state`` (commit, branch, dirty, the diff's
path, the experiment tag or why there is none) and ``state.config_facts``
(source, sha256, the copy's path).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from hpcwrap.errors import CodeStateError, RunLogError, UsageError
from hpcwrap.redact import redact_settings
from hpcwrap.runlog import JobBlock, RunLog, RunState, create_run, layout, lifecycle
from hpcwrap.runlog.dates import now
from hpcwrap.runlog.facts import CodeFacts, ConfigFacts, facts_from_dict
from hpcwrap.runlog.fsio import copy_mode, write_atomic
from hpcwrap.runlog.handle import open_run
from hpcwrap.runlog.locks import LockConfig
from hpcwrap.runlog.outputs import recorded_outputs
from hpcwrap.submit import codestate
from hpcwrap.submit.request import RunRequest


def _resolve(path: Path, cwd: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else cwd / path


def initialised_from(value: str, cwd: Path, root: Path) -> str:
    """``--from``'s line: "`<checkpoint>`", or "`<checkpoint>` (run <name>)" when a run was
    named (its Results' checkpoint). Refused when neither exists."""
    path = _resolve(Path(value), cwd)
    if path.suffix != ".md" and path.exists():
        return f"`{os.path.abspath(path)}`"
    try:
        log = open_run(value, root)
    except (RunLogError, UsageError) as exc:
        raise UsageError(
            f"--from {value}: no such checkpoint, and no run by that name ({exc})"
        ) from exc
    checkpoint = log.read().results.checkpoint
    if not checkpoint:
        raise UsageError(
            f"--from {value}: run {log.name} names no checkpoint in its Results; "
            "give the checkpoint's path instead"
        )
    found = _resolve(Path(checkpoint), cwd)
    if not found.exists():
        raise UsageError(f"--from {value}: run {log.name}'s checkpoint {found} does not exist")
    return f"`{os.path.abspath(found)}` (run {log.name})"


def _read_config(request: RunRequest, cwd: Path) -> tuple[Path, bytes, int] | None:
    """The --config file's path, bytes and permission bits (its copy gets no wider ones)."""
    if request.config is None:
        return None
    source = _resolve(request.config, cwd)
    try:
        with source.open("rb") as fh:
            return source, fh.read(), os.fstat(fh.fileno()).st_mode
    except IsADirectoryError:
        raise UsageError(f"--config {request.config}: is a folder, not a file") from None
    except OSError as exc:
        raise UsageError(f"--config {request.config}: cannot read it: {exc.strerror}") from None


def write_exact(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` exactly (temp file in the same folder, fsync, replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode=mode)


def sidecar_rel(log: RunLog, path: Path) -> str:
    """``path`` relative to the run log's folder, as the log shows sidecar files."""
    return os.path.relpath(path, log.path.parent)


def code_line(facts: CodeFacts | None, fallback: str | None = None) -> str | None:
    """The ``- code:`` line from the code facts (after a tag came or went)."""
    if facts is None:
        return fallback
    code = codestate.CodeState(
        repo=Path(facts.repo) if facts.repo else None,
        commit=facts.commit,
        branch=facts.branch,
        dirty=facts.dirty,
        changed_files=facts.changed_files,
        untracked=facts.untracked,
        reason=facts.reason or "",
    )
    return code.summary(facts.diff, facts.tag, facts.tag_note or "")


def code_facts(code: codestate.CodeState) -> CodeFacts:
    return facts_from_dict(CodeFacts, code.as_dict())


def create_run_from_request(
    request: RunRequest,
    *,
    script: str | None,
    cwd: Path,
    when: datetime | None = None,
    execution_id: str | None = None,
    locks: LockConfig | None = None,
) -> RunLog:
    """Create the run log for ``request``; see the module docstring.

    ``script``: the Config ``script`` line as it should read (build it with
    ``describe_command``). ``cwd``: where the run starts; relative ``run_logs``
    and ``--config`` paths and the git work tree are taken from it.
    ``execution_id``: for runs started outside Slurm ("<host>:<pid>"), the
    first Job block's id; None leaves the Job block empty for the submitter.
    """
    cwd = Path(os.path.abspath(cwd))
    root = _resolve(request.run_logs, cwd)
    origin = (
        initialised_from(request.initialised_from, cwd, root) if request.initialised_from else None
    )
    config = _read_config(request, cwd)
    code = codestate.capture(cwd, exclude=[root], outputs=recorded_outputs(root))
    config_facts = None
    if config is not None:
        config_facts = ConfigFacts(
            source=str(config[0]), sha256=hashlib.sha256(config[1]).hexdigest()
        )
    state = RunState(
        task=request.task,
        description=request.description,
        group=request.group,
        run_type=request.run_type,
        objective=request.objective,
        script=script,
        config=str(request.config) if request.config is not None else None,
        dataset=request.dataset,
        key_settings=redact_settings(dict(request.key_settings)),
        code=code.summary(),
        initialised_from=origin,
        jobs=[JobBlock(execution_id=execution_id, submitted=when or now())] if execution_id else [],
        code_state=code_facts(code),
        config_facts=config_facts,
    )
    log = create_run(root, state, when=when, locks=locks)

    facts = code_facts(code)
    if code.dirty:
        diff = codestate.save_diff(code, log.sidecar / layout.CODE_DIFF)
        if diff is not None:
            facts.diff = sidecar_rel(log, diff)
    if config_facts is not None and config is not None:
        copy = log.sidecar / layout.CONFIG_DIR / config[0].name
        write_exact(copy, config[1], mode=copy_mode(config[2]))
        config_facts = replace(config_facts, copy=sidecar_rel(log, copy))
    if request.run_type == "experiment":
        if code.commit is None:
            facts.tag_note = "no experiment tag (" + (code.reason or "no commits yet") + ")"
        else:
            try:
                facts.tag = codestate.create_tag(code, codestate.tag_name(log.name, request.group))
            except CodeStateError as exc:
                # The run still goes: the commit sha is recorded; the log says why no tag.
                facts.tag_error = str(exc)
                facts.tag_note = "experiment tag NOT created (see state.json)"
    if facts != state.code_state or config_facts != state.config_facts:
        noted = {
            "code_diff": facts.diff,
            "config_copy": config_facts.copy if config_facts else None,
            "git_tag": facts.tag,
            "git_tag_note": facts.tag_note,
            "git_tag_error": facts.tag_error,
        }
        log.record(
            lifecycle.Described(code=facts, config=config_facts, code_line=code_line(facts)),
            event="code_state",
            data={k: v for k, v in noted.items() if v},
        )
    return log
