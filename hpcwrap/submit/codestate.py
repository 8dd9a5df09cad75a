"""The code a run used: git commit, branch, dirty or clean, the diff, untracked files.

The diff is ``git diff HEAD --binary`` of tracked files (staged and unstaged
changes, new files that were ``git add``-ed), written with fixed settings
(``a/``/``b/`` prefixes, no colour, no external diff or textconv) so that
``git apply <diff>`` in a clean checkout of the commit gives back the exact
tracked tree, whatever the user's git config says. Untracked files are
counted (and the first few named), never copied: they may be data.

Experiment runs get a lightweight tag ``hpcwrap/<run-name>`` on the commit,
never pushed, removed again (only if it still points where hpcwrap put it)
when the submission fails.

Git runs with ``GIT_OPTIONAL_LOCKS=0`` (reading the state never takes
``index.lock`` from under a git command the user is running) and
``GIT_TERMINAL_PROMPT=0``, in the C locale so its messages can be matched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hpcwrap.errors import CodeStateError
from hpcwrap.runlog.fsio import write_atomic
from hpcwrap.runlog.layout import CONFLICT_SUFFIX, SIDECAR_DIR

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's well-known empty tree
TAG_PREFIX = "hpcwrap/"
UNTRACKED_LISTED = 20
GIT_TIMEOUT = 120.0


@dataclass(frozen=True)
class CodeState:
    """What ``capture`` found. ``repo`` is None outside a git work tree."""

    repo: Path | None = None
    commit: str | None = None  # full sha; None in a repository without commits
    branch: str | None = None  # None when HEAD is detached
    dirty: bool = False
    diff: bytes = b""
    changed_files: int = 0
    untracked: int = 0
    untracked_sample: tuple[str, ...] = ()
    reason: str = ""  # why there is no git state ("not a git repository", "git not found")

    @property
    def short(self) -> str:
        return self.commit[:12] if self.commit else "(no commit)"

    def summary(
        self, diff_path: str | None = None, tag: str | None = None, tag_note: str = ""
    ) -> str:
        """The one-line ``- code:`` entry of the run log."""
        if self.repo is None:
            return f"not in git ({self.reason or 'not a git repository'})"
        where = f"branch {self.branch}" if self.branch else "detached HEAD"
        parts = [f"git `{self.short}` ({where})"]
        if self.dirty:
            dirty = f"dirty: {self.changed_files} tracked file(s) changed"
            if diff_path:
                dirty += f", diff in `{diff_path}` (`git apply` it on `{self.short}`)"
            parts.append(dirty)
        else:
            parts.append("clean")
        if self.untracked:
            parts.append(f"{self.untracked} untracked file(s) not recorded")
        if tag:
            note = f"tag `{tag}`"
            if self.dirty:
                note += " points at the base commit, without the diff"
            parts.append(note)
        if tag_note:
            parts.append(tag_note)
        return ", ".join(parts)

    def as_dict(self) -> dict[str, object]:
        """For state.json (the diff itself goes to a file)."""
        return {
            "repo": str(self.repo) if self.repo else None,
            "commit": self.commit,
            "branch": self.branch,
            "dirty": self.dirty,
            "changed_files": self.changed_files,
            "untracked": self.untracked,
            "untracked_sample": list(self.untracked_sample),
            "reason": self.reason or None,
        }


@dataclass
class _Git:
    cwd: Path
    exe: str
    env: dict[str, str] = field(default_factory=dict)

    def run(self, args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        try:
            proc = subprocess.run(
                [self.exe, *args],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=GIT_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CodeStateError(
                f"git {' '.join(args[:2])} took more than {GIT_TIMEOUT:.0f} s in {self.cwd}"
            ) from None
        except OSError as exc:
            raise CodeStateError(f"cannot run git in {self.cwd}: {exc.strerror}") from None
        if check and proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}"
            raise CodeStateError(f"git {' '.join(args[:2])} failed in {self.cwd}: {msg}")
        return proc

    def text(self, args: Sequence[str]) -> str:
        return self.run(args).stdout.decode(errors="surrogateescape").strip()


def _git(cwd: Path) -> _Git | None:
    exe = shutil.which("git")
    if exe is None:
        return None
    env = dict(os.environ)
    env.update(
        LC_ALL="C",
        LANGUAGE="C",
        GIT_OPTIONAL_LOCKS="0",
        GIT_TERMINAL_PROMPT="0",
        GIT_PAGER="cat",
    )
    # A GIT_DIR/GIT_WORK_TREE left in the environment would point git elsewhere.
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_EXTERNAL_DIFF"):
        env.pop(name, None)
    return _Git(cwd, exe, env)


_DIFF_ARGS = (
    "-c",
    "core.quotePath=false",
    "diff",
    "--binary",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--src-prefix=a/",
    "--dst-prefix=b/",
)


def _excludes(top: Path, exclude: Sequence[Path]) -> list[str]:
    """``:(top,exclude)<path>`` pathspecs for the folders inside the work tree."""
    specs = []
    for path in exclude:
        try:
            rel = Path(os.path.realpath(path)).relative_to(os.path.realpath(top))
        except ValueError:
            continue
        if rel.parts:
            specs.append(f":(top,exclude){rel.as_posix()}")
    return specs


# Files in a work tree that are hpcwrap's or a job's, not the user's code: run logs and
# their sidecars anywhere in the tree, Slurm's default output files, offline W&B runs.
NOT_CODE: tuple[str, ...] = (
    "**/run_logs/**",
    f"**/{SIDECAR_DIR}/**",
    f"**/*{CONFLICT_SUFFIX}",
    "**/slurm-*.out",
    "**/slurm-*.err",
    "**/wandb/**",
)
# Untracked files that are a training's output, not code: weights, and what lies in the
# frameworks' checkpoint and log folders (HF checkpoint-N/, checkpoints/, Lightning's
# lightning_logs/, MLflow's mlruns/). Only untracked ones: a tracked package that happens
# to be named checkpoints/ is code, and its changes are in the diff.
OUTPUT_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors")
OUTPUT_FOLDERS = ("checkpoints", "lightning_logs", "mlruns")


def is_training_output(rel: str) -> bool:
    """``rel`` (a path in the work tree) is a weight file or lies in a checkpoint/log folder."""
    parts = rel.split("/")
    return rel.endswith(OUTPUT_SUFFIXES) or any(
        p in OUTPUT_FOLDERS or p.startswith("checkpoint-") for p in parts[:-1]
    )


def _output_folders(git: _Git, top: Path, outputs: Sequence[Path]) -> list[Path]:
    """For each path an earlier run wrote (a checkpoint, a config snapshot), the highest
    folder above it inside the work tree that holds no tracked file: the run's own
    output folder (``runs/toy/`` for ``runs/toy/checkpoints/200``), never one with code
    in it. A file whose folder holds code is left out by itself."""
    real_top = Path(os.path.realpath(top))
    tracked: dict[Path, bool] = {}

    def has_tracked(folder: Path) -> bool:
        if folder not in tracked:
            rel = folder.relative_to(real_top).as_posix()
            out = git.run(["ls-files", "-z", "--", f":(top,literal){rel}"], check=False)
            tracked[folder] = out.returncode != 0 or bool(out.stdout)
        return tracked[folder]

    found: set[Path] = set()
    for path in outputs:
        real = Path(os.path.realpath(path))
        try:
            real.relative_to(real_top)
        except ValueError:
            continue  # outside the work tree: not counted anyway
        best = real
        folder = real.parent if real.is_file() else real
        while folder != real_top and real_top in folder.parents and not has_tracked(folder):
            best = folder
            folder = folder.parent
        if best != real_top:
            found.add(best)
    return sorted(found)


def capture(cwd: Path, exclude: Sequence[Path] = (), outputs: Sequence[Path] = ()) -> CodeState:
    """The git state of the work tree holding ``cwd``.

    Folders in ``exclude`` (the run_logs folder: hpcwrap itself changes it at
    every submission) count neither as changes nor as untracked files, and nor
    do the files ``NOT_CODE`` names (hpcwrap's own files, job outputs), untracked
    training outputs (``is_training_output``), nor the output folders of what earlier
    runs wrote (``outputs``: their checkpoints and
    config snapshots, as their run logs recorded them; ``_output_folders``).

    Outside a work tree, or without git installed, a CodeState saying so.
    Raises CodeStateError when git is there but fails (e.g. a repository owned
    by another user that git refuses as "dubious ownership").
    """
    git = _git(cwd)
    if git is None:
        return CodeState(reason="git not found")
    probe = git.run(["rev-parse", "--show-toplevel"], check=False)
    if probe.returncode != 0:
        msg = probe.stderr.decode(errors="replace").strip()
        if "not a git repository" in msg:
            return CodeState(reason="not a git repository")
        raise CodeStateError(f"git cannot read the repository at {cwd}: {msg}")
    top = Path(probe.stdout.decode(errors="surrogateescape").strip())
    if not top.parts:  # inside .git itself, or a bare repository
        return CodeState(reason="not a work tree")
    git = _Git(top, git.exe, git.env)
    known = _output_folders(git, top, outputs) if outputs else []
    specs = _excludes(top, [*exclude, *known]) + [f":(top,exclude,glob){g}" for g in NOT_CODE]
    spec_args = [":(top)", *specs]
    # One `git status` gives the commit, the branch, changed and untracked files.
    status = git.run(
        ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all", "--", *spec_args]
    ).stdout
    commit: str | None = None
    branch: str | None = None
    changed = 0
    untracked: list[str] = []
    fields = iter(status.split(b"\0"))
    for raw in fields:
        line = raw.decode(errors="surrogateescape")
        if line.startswith("# branch.oid "):
            oid = line.split(" ", 2)[2]
            commit = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.split(" ", 2)[2]
            branch = None if head == "(detached)" else head
        elif line[:2] in ("1 ", "u "):
            changed += 1
        elif line.startswith("2 "):
            changed += 1
            next(fields, None)  # a rename's original path is the next field
        elif line.startswith("? ") and not is_training_output(line[2:]):
            untracked.append(line[2:])
    diff = b""
    if changed:
        diff = git.run([*_DIFF_ARGS, commit or EMPTY_TREE, "--", *spec_args]).stdout
    return CodeState(
        repo=top,
        commit=commit,
        branch=branch,
        dirty=bool(diff),
        diff=diff,
        changed_files=changed if diff else 0,
        untracked=len(untracked),
        untracked_sample=tuple(untracked[:UNTRACKED_LISTED]),
    )


def save_diff(state: CodeState, path: Path) -> Path | None:
    """Write the diff to ``path`` (exact bytes); None when the tree is clean."""
    if not state.diff:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, state.diff)
    return path


def _valid_tag(git: _Git, name: str) -> bool:
    return git.run(["check-ref-format", f"refs/tags/{name}"], check=False).returncode == 0


def tag_name(run_name: str, group: str | None = None) -> str:
    """``hpcwrap/<run-name>``, or ``hpcwrap/<group>/<run-name>`` for a grouped run.

    The group keeps two groups' ``2026-03-22_train`` runs from wanting one tag.
    """
    return TAG_PREFIX + (f"{group}/{run_name}" if group else run_name)


def create_tag(state: CodeState, name: str) -> str:
    """A lightweight tag on ``state.commit``; ``_2``, ``_3``... if the name is taken.

    Returns the tag's name. Raises CodeStateError when there is nothing to tag
    or git refuses the name.
    """
    if state.repo is None or state.commit is None:
        raise CodeStateError("no commit to tag (" + (state.reason or "no commits yet") + ")")
    git = _git(state.repo)
    if git is None:
        raise CodeStateError("git not found")
    if not _valid_tag(git, name):
        raise CodeStateError(f"{name!r} is not a valid git tag name")
    for n in range(1, 100):
        candidate = name if n == 1 else f"{name}_{n}"
        # `git tag` without -f refuses an existing name, so two submissions cannot share one.
        proc = git.run(["-c", "tag.gpgSign=false", "tag", candidate, state.commit], check=False)
        if proc.returncode == 0:
            return candidate
        msg = proc.stderr.decode(errors="replace")
        if "already exists" not in msg:
            raise CodeStateError(f"git tag {candidate} failed: {msg.strip()}")
    raise CodeStateError(f"git tags {name}, {name}_2 ... {name}_99 all exist")


def delete_tag(repo: Path, name: str, commit: str) -> bool:
    """Remove tag ``name`` if it still points at ``commit`` (so never someone else's)."""
    git = _git(repo)
    if git is None:
        return False
    proc = git.run(["rev-parse", "-q", "--verify", f"refs/tags/{name}"], check=False)
    if proc.returncode != 0 or proc.stdout.decode().strip() != commit:
        return False
    git.run(["tag", "-d", name])
    return True
