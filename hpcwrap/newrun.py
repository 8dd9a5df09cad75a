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
import re
import shlex
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from hpcwrap import codestate
from hpcwrap.errors import CodeStateError, UsageError
from hpcwrap.runlog import JobBlock, RunLog, RunState, create_run, layout, lifecycle
from hpcwrap.runlog.dates import now
from hpcwrap.runlog.facts import CodeFacts, ConfigFacts, facts_from_dict
from hpcwrap.runlog.fsio import write_atomic
from hpcwrap.runlog.locks import LockConfig
from hpcwrap.runrequest import RunRequest

# Names whose values are secrets: never into a run log (they stay only where the user put them).
_SECRET_NAME = re.compile(
    r"(secret|token|passw(or)?d|passwd|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"credential|auth|(wandb|hf|huggingface|openai|aws|github|gh)[_-]?key)",
    re.IGNORECASE,
)
REDACTED = "***"
# Values that are secrets whatever they are called: Hugging Face, GitHub and AWS key formats.
_SECRET_VALUE = re.compile(
    r"\b(hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|AKIA[0-9A-Z]{16})\b"
)


def _redact_value(text: str) -> str:
    return _SECRET_VALUE.sub(REDACTED, text)


def _redact_pairs(text: str) -> str:
    """``A=1,WANDB_API_KEY=x`` -> ``A=1,WANDB_API_KEY=***`` (comma lists as in --export)."""
    parts = text.split(",")
    out = []
    for part in parts:
        name, eq, _ = part.partition("=")
        out.append(f"{name}={REDACTED}" if eq and _SECRET_NAME.search(name) else part)
    return ",".join(out)


def redact_settings(settings: dict[str, str]) -> dict[str, str]:
    """``--set`` key settings with the values of secret-looking keys replaced by ``***``."""
    return {
        k: REDACTED if _SECRET_NAME.search(k) else _redact_value(v) for k, v in settings.items()
    }


def redact_command_text(text: str) -> str:
    """A command written as one string (``log new --script``), secrets redacted.

    Split as the shell would and redacted like ``redact_argv``; returned as
    written when nothing secret is in it, so a person's quoting is kept.
    """
    try:
        words = shlex.split(text)
    except ValueError:  # unbalanced quotes: redact what the value patterns catch
        return _redact_value(text)
    hidden = redact_argv(words)
    if hidden == words:
        return text
    return " ".join(quote_word(w) if w != REDACTED else w for w in hidden)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with values of secret-looking names replaced by ``***``.

    Catches ``NAME=value``, ``--name=value``, ``--name value`` and comma lists
    (``--export=ALL,HF_TOKEN=...``) where the name says token/secret/password/
    api key/credential, and values in a known key format (``hf_...``, ``ghp_...``,
    ``AKIA...``) whatever their name. For the run log only; what runs is never changed.
    """
    out: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if word.startswith("-") and "=" not in word:
            out.append(word)
            hide_next = bool(_SECRET_NAME.search(word))
            continue
        if "=" in word:
            head, _, value = word.partition("=")
            if _SECRET_NAME.search(head):
                out.append(f"{head}={REDACTED}")
            elif "," in value or "=" in value:
                out.append(f"{head}={_redact_value(_redact_pairs(value))}")
            else:
                out.append(_redact_value(word))
            continue
        out.append(_redact_value(word))
    return out


_PLAIN = re.compile(r"^[\w@%+=:,./-]+$")


def quote_word(word: str) -> str:
    """Shell-quote one word, on one line: ``$'...'`` for control characters."""
    if word and _PLAIN.match(word):
        return word
    if any(ord(c) < 32 or ord(c) == 127 for c in word):
        body = "".join(
            {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", "'": "\\'"}.get(c)
            or (f"\\x{ord(c):02x}" if ord(c) < 32 or ord(c) == 127 else c)
            for c in word
        )
        return f"$'{body}'"
    return shlex.quote(word)


def describe_command(script: str, args: Sequence[str] = ()) -> str:
    """The Config ``script`` line: ``\\`slurm/train.sh\\` --lr 3e-4 'two words'``.

    One line whatever the arguments hold; secret-looking values redacted.
    """
    head = f"`{script}`" if "`" not in script and "\n" not in script else quote_word(script)
    words = [quote_word(w) for w in redact_argv(list(args))]
    return " ".join([head, *words])


def _resolve(path: Path, cwd: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else cwd / path


def _read_config(request: RunRequest, cwd: Path) -> tuple[Path, bytes] | None:
    if request.config is None:
        return None
    source = _resolve(request.config, cwd)
    try:
        return source, source.read_bytes()
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
    config = _read_config(request, cwd)
    code = codestate.capture(cwd, exclude=[root])
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
        write_exact(copy, config[1])
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
