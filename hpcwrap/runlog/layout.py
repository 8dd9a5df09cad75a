"""Where a run's files live: every name and path rule of the on-disk layout, in one place.

::

    <run_logs>/<group>/<date>_<task>[_N].md          the run log
    <run_logs>/<group>/<name>.hpcwrap-conflict.md    an update that could not be merged
    <run_logs>/<group>/.hpcwrap/<name>/               the sidecar
        state.json, events.jsonl, telemetry.jsonl, lock, job.sh, sbatch.args,
        script/<name>, config/, code.diff, ends/ (ends left for the next writer)
    <run_logs>/<group>/timeline.md, <run_logs>/experiments.md   the indexes

The job carries ``--comment=hpcwrap:<run log>`` so node hooks can find the log.
Nothing here touches the disk except ``taken``; every other function is a
pure path computation (``--dry-run`` predicts the log it would create with them).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from hpcwrap import earlysignals

SIDECAR_DIR = ".hpcwrap"
CONFLICT_SUFFIX = ".hpcwrap-conflict.md"
JOB_SCRIPT = "job.sh"  # in the sidecar: exactly what sbatch got
SBATCH_ARGS = "sbatch.args"  # in the sidecar: the submission's sbatch options, NUL-separated
SCRIPT_DIR = "script"  # in the sidecar: byte-exact snapshot of the user's script
CONFIG_DIR = "config"  # in the sidecar: copies of --config and resolved configs
CODE_DIFF = "code.diff"
PLOT_FILE = "plot.png"  # in the sidecar: `hpcwrap plot`'s figure (by default)
STATE_FILE = "state.json"  # in the sidecar: the machine-owned facts (orjson)
EVENTS_FILE = "events.jsonl"  # in the sidecar: append-only, one event per line
TELEMETRY_FILE = "telemetry.jsonl"  # in the sidecar: one GPU/CPU/memory/disk sample per line
TIMELINE_FILE = "timeline.md"  # in each run-log folder: the group's timeline
EXPERIMENTS_FILE = "experiments.md"  # in the run-logs root: the experiments table
LOCK_FILE = "lock"
# The sidecar's format (state.json's "format"): runlog/store.py reads and migrates it.
# 2: events patch a mapping by its changed keys and put Status entries between older
# ones (store.state_patch); a hpcwrap of format 1 refuses such a run, never misreads it.
FORMAT = 2
# Bounded reads: a run's state.json is kilobytes (10,000 Status entries are about 2 MB);
# one this big is not a state hpcwrap wrote, and loading it whole would take a job's
# memory (300 MB read at a job's end got the job memory-killed).
STATE_MAX = 32 * 2**20
ENDS_DIR = "ends"  # in the sidecar: ends a writer could not write at once (runlog/deferred.py)
COMMENT_PREFIX = "hpcwrap:"  # the job's --comment: hpcwrap:<absolute run log path>
# The batch script ignores the walltime signal until `hpcwrap run` handles it (Slurm may
# send it at once) and names it here, so the wrapper gives the command the default back.
BATCH_IGNORED_ENV = earlysignals.BATCH_IGNORED_ENV
# The job's walltime warning as the submission resolved it (hpcwrap's default, the
# --walltime-signal option or the script's own --signal), for the wrapper in the job:
# its name, and whether Slurm sends it to the batch shell only ("batch") or to every
# process of the job ("all": --signal without B:).
WALLTIME_SIGNAL_ENV = "HPCWRAP_WALLTIME_SIGNAL"
WALLTIME_TARGETS_ENV = "HPCWRAP_WALLTIME_TARGETS"

_LOG_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}_.+\.md$")


def sidecar_for(path: Path) -> Path:
    """The sidecar folder of the run log at ``path``."""
    return path.parent / SIDECAR_DIR / path.stem


def conflict_path(path: Path) -> Path:
    return path.with_name(path.stem + CONFLICT_SUFFIX)


def is_run_log_name(name: str) -> bool:
    """A run log's file name: ``<date>_<task>.md``, not an index or a conflict file."""
    return bool(_LOG_NAME.match(name)) and not name.endswith(CONFLICT_SUFFIX)


def run_folder(root: Path, group: str | None) -> Path:
    """The folder a run of ``group`` goes in (``root`` itself without a group)."""
    return root / group if group else root


def run_stem(day: date, task: str, n: int = 1) -> str:
    """``2026-03-11_train``, or ``2026-03-11_train_2`` for the second run that day."""
    stem = f"{day.isoformat()}_{task}"
    return stem if n == 1 else f"{stem}_{n}"


def name_taken(md: Path) -> bool:
    """A run log of this name, its conflict file or its sidecar exists already."""
    return md.exists() or conflict_path(md).exists() or sidecar_for(md).exists()


def predicted_log(root: Path, group: str | None, day: date, task: str) -> Path:
    """The run log a new run would get now: the first name not taken, as ``create_run``
    picks it (``_2``, ``_3``... after the runs of that day and task)."""
    folder = run_folder(root, group)
    n = 1
    while name_taken(md := folder / f"{run_stem(day, task, n)}.md"):
        n += 1
    return md


def comment_for(run_log: Path) -> str:
    return COMMENT_PREFIX + str(run_log)


def run_log_from_comment(comment: str | None) -> str | None:
    """The run-log path a job comment names, or None when it is not hpcwrap's."""
    if not comment or not comment.startswith(COMMENT_PREFIX):
        return None
    return comment[len(COMMENT_PREFIX) :] or None


__all__ = [
    "BATCH_IGNORED_ENV",
    "CODE_DIFF",
    "COMMENT_PREFIX",
    "CONFIG_DIR",
    "CONFLICT_SUFFIX",
    "ENDS_DIR",
    "JOB_SCRIPT",
    "LOCK_FILE",
    "SCRIPT_DIR",
    "SIDECAR_DIR",
    "comment_for",
    "conflict_path",
    "is_run_log_name",
    "name_taken",
    "predicted_log",
    "run_folder",
    "run_log_from_comment",
    "run_stem",
    "sidecar_for",
]
