"""``hpcwrap export``: a run log as a public TRAINING_LOG.md (what it knows of the run
goes into the sanitizer's context; the run log itself is only read)."""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path

from hpcwrap.publish.sanitize import Context, Summary, sanitize, split_nodes
from hpcwrap.runlog import RunLog, RunState

# Environment variables that name a site's storage, and the placeholder for each.
STORAGE_VARS = (
    ("SCRATCH", "<scratch>"),
    ("SCRATCHDIR", "<scratch>"),
    ("SCRATCH_DIR", "<scratch>"),
    ("PROJECT", "<project>"),
    ("PROJECT_DIR", "<project>"),
    ("WORK", "<work>"),
    ("WORKDIR", "<work>"),
    ("TMPDIR", "<tmp>"),
    ("HOME", "<home>"),
)


def _user_of(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def local_users(path: Path | None = None) -> set[str]:
    """This user and the owner of ``path`` (root names nobody in particular)."""
    names = {_user_of(os.geteuid()), os.environ.get("USER"), os.environ.get("LOGNAME")}
    if path is not None and path.exists():
        names.add(_user_of(path.stat().st_uid))
    return {n for n in names if n and n != "root"}


def local_hosts() -> set[str]:
    names = {socket.gethostname()}
    names.add(next(iter(names)).split(".")[0])
    return {n for n in names if len(n) >= 3 and n != "localhost"}  # "vm" is also a word


def _deep_depth(path: str) -> bool:
    """A folder specific enough to stand for the run (not ``/`` or ``/home``)."""
    return len([p for p in path.split("/") if p]) >= 2


def context_for(log: RunLog, state: RunState, *, users: set[str], hosts: set[str]) -> Context:
    ctx = Context(users=set(users), hosts=set(hosts))
    ids = {j.execution_id for j in state.jobs}
    if state.submit is not None:
        ids |= {state.submit.job_id, state.submit.follow_up_job}
    if state.chain is not None:
        ids.add(state.chain.pending)
    for job_id in {i for i in ids if i}:
        bare = job_id.rsplit(":", 1)[-1]  # ``cluster:123`` on a federation
        ctx.job_ids |= {bare, bare.split("_")[0]}
    for job in state.jobs:
        if job.cluster:
            ctx.clusters.add(job.cluster)
    nodes = [j.node for j in state.jobs] + [t.node for t in state.array_tasks.values()]
    for node in nodes:
        for name in split_nodes(node or ""):
            ctx.add_node(name)
    repo = str(log.root.parent)
    if _deep_depth(repo):
        ctx.roots.append((repo, "<repo>"))
    if state.submit is not None and state.submit.workdir and _deep_depth(state.submit.workdir):
        ctx.roots.append((state.submit.workdir, "<repo>"))
    for var, placeholder in STORAGE_VARS:
        value = os.environ.get(var, "").rstrip("/")
        if (
            value.startswith("/")
            and value not in dict(ctx.roots)
            and (_deep_depth(value) or var == "HOME")
        ):
            ctx.roots.append((value, placeholder))
    if state.wandb_public:  # recorded by ``hpcwrap wandb sync --public-project``
        ctx.public_wandb.append(state.wandb_public)
    return ctx


def export_text(
    log: RunLog, *, users: set[str] | None = None, hosts: set[str] | None = None
) -> tuple[str, Summary]:
    """The run log's Markdown, sanitized, and what was removed."""
    state = log.read()
    text = log.path.read_bytes().decode("utf-8", "replace")
    ctx = context_for(
        log,
        state,
        users=local_users(log.path) | (users or set()),
        hosts=local_hosts() | (hosts or set()),
    )
    return sanitize(text, ctx)


__all__ = ["STORAGE_VARS", "context_for", "export_text", "local_hosts", "local_users"]
