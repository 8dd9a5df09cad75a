"""The node hooks' spool: which run log a job's wrapper named for the epilog.

A job that carries no ``hpcwrap:`` comment (plain sbatch of a script that runs
``hpcwrap run``) is found by the hooks through a file per job in a root-owned sticky
folder (``HPCWRAP_SPOOL``, default ``/var/spool/hpcwrap``): the wrapper writes it
(``register_job``), the epilog reads it with the checks root owes hostile input
(hooks/node.py) and removes it.
"""

from __future__ import annotations

import contextlib
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


def register_job(environ: Mapping[str, str], run_log: Path) -> bool:
    """Called by the wrapper inside a job: name its run log in the node's spool folder.

    So the hooks find a job that carries no ``hpcwrap:`` comment (plain sbatch of a
    script that runs ``hpcwrap run``). Only into a root-owned sticky folder (the
    admin's, or the dev cluster's): a folder another user made could be theirs to
    empty. Returns whether the job was registered.
    """
    job_id = environ.get("SLURM_JOB_ID") or ""
    if not JOB_ID.match(job_id):
        return False
    cluster = environ.get("SLURM_CLUSTER_NAME")
    folder = spool_dir(environ)
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or not st.st_mode & stat.S_ISVTX:
        return False
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
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True


__all__ = ["CLUSTER_NAME", "DEFAULT_SPOOL", "JOB_ID", "register_job", "spool_dir", "spool_name"]
