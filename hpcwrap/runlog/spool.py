"""The node hooks' spool: which run log a job's wrapper named for the epilog.

A job that carries no ``hpcwrap:`` comment (plain sbatch of a script that runs
``hpcwrap run``) is found by the hooks through a file per job in a root-owned sticky
folder (``HPCWRAP_SPOOL``, default ``/var/spool/hpcwrap``): the wrapper writes it
(``register_job``), the epilog reads it with the checks root owes hostile input
(hooks/node.py) and removes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

DEFAULT_SPOOL = "/var/spool/hpcwrap"
JOB_ID = re.compile(r"^[0-9]{1,12}$")
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def spool_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("HPCWRAP_SPOOL") or DEFAULT_SPOOL)


def spool_name(job_id: str, cluster: str | None) -> str:
    """The spool file of a job: ``<cluster>_<job id>`` (two clusters may share a node)."""
    return f"{cluster or 'cluster'}_{job_id}"


class NotRegistered(str):
    """Why a job could not be registered (``quiet``: nothing to say, no hooks here)."""

    quiet: bool = False


def _quiet(why: str) -> NotRegistered:
    out = NotRegistered(why)
    out.quiet = True
    return out


def register_job(environ: Mapping[str, str], run_log: Path) -> NotRegistered | None:
    """Called by the wrapper inside a job: name its run log in the node's spool folder.

    So the hooks find a job that carries no ``hpcwrap:`` comment (plain sbatch of a
    script that runs ``hpcwrap run``). Only into a root-owned sticky folder (the
    admin's, or the dev cluster's): a folder another user made could be theirs to
    empty. None when registered, else why not (``quiet`` where this node has no hook
    spool at all: most clusters, nothing to report).
    """
    job_id = environ.get("SLURM_JOB_ID") or ""
    if not JOB_ID.match(job_id):
        return _quiet("no Slurm job id")
    cluster = environ.get("SLURM_CLUSTER_NAME")
    folder = spool_dir(environ)
    try:
        st = os.lstat(folder)
    except OSError:
        return _quiet(f"no spool folder {folder}")
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or not st.st_mode & stat.S_ISVTX:
        return NotRegistered(f"{folder} is not a root-owned sticky folder")
    name = spool_name(job_id, cluster if cluster and CLUSTER_NAME.match(cluster) else None)
    target = folder / name
    tmp = folder / f".{name}.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, f"{run_log}\n".encode())
        finally:
            os.close(fd)
        os.replace(tmp, target)  # a requeue of the same job id replaces its own file
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        why = exc.strerror or str(exc)
        if exc.errno in (errno.EPERM, errno.EACCES) and os.path.lexists(target):
            why = "a file of that name is another user's (the prolog clears such a file)"
        return NotRegistered(f"cannot write {target}: {why}")
    return None


def clear_squatted(folder: Path, name: str, uid: int) -> int | None:
    """The prolog's part, as root before the job starts: a spool file of this job's name
    that is not the job user's own was put there by someone else (no wrapper of this job
    has run yet); it is removed so the wrapper can register. The squatter's uid, or None."""
    target = folder / name
    try:
        st = os.lstat(target)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode) and st.st_uid == uid:
        return None  # the job's own, from an earlier attempt: the wrapper replaces it
    with contextlib.suppress(OSError):
        os.unlink(target)
    return st.st_uid


__all__ = [
    "CLUSTER_NAME",
    "DEFAULT_SPOOL",
    "JOB_ID",
    "NotRegistered",
    "clear_squatted",
    "register_job",
    "spool_dir",
    "spool_name",
]
