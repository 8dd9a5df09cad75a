"""What the end of a job reads beyond its output: evidence on disk tied to this run.

The console's last snapshot, then (reading/ownership.py decides what is this run's):
the frameworks' own records (``reading.records``) where the console lacks the evidence
or disagrees, the checkpoint the run saved last, and the resolved config it wrote (kept
as a copy in the sidecar). Whatever is not tied to the run is left out and named.
To read a new kind of evidence at the end: ``reading/records/`` reads it, ``Findings``
carries it, ``job/endrecord.py`` puts it in the end's facts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from hpcwrap.job import results as res
from hpcwrap.job.sink import warn
from hpcwrap.reading import checkpoints, ownership, records
from hpcwrap.reading.progress import Snapshot
from hpcwrap.runlog import RunLog, neighbours

Event = Callable[[str, dict[str, Any]], object]


@dataclass(frozen=True)
class Findings:
    snap: Snapshot  # the console's, with the records merged in
    console: Snapshot  # what this job printed
    sources: str | None = None  # which figure came from which record
    checkpoint: str | None = None
    config_snapshot: str | None = None
    config_copy: str | None = None  # hpcwrap's copy, relative to the run log
    left_out: str | None = None  # what was found but is not tied to this run


@dataclass
class EndReader:
    """Reads the end of one job run in ``cwd`` (the job's working folder)."""

    run: RunLog | None
    event: Event
    cwd: Path
    argv: Sequence[str]
    execution_id: str
    array_task: str | None = None  # an array task reads no records (shared folder)
    config_globs: Sequence[str] = ()  # Settings.config_snapshot
    err: TextIO | None = None
    untied: list[Path] = field(default_factory=list)

    def read(self, snap: Snapshot, since: float) -> Findings:
        """``since``: when the job started (Unix time); only what was written since counts."""
        ties = self._ties(snap, since)
        merged, sources = self._with_records(snap, since, ties)
        checkpoint = self._checkpoint_path(merged, since, ties)
        config, copy = self._config_snapshot(merged, since, checkpoint, ties)
        if config is None and self.run is not None:
            # No resolved config seen: hpcwrap's copy of --config is the one kept.
            kept = res.submitted_config_copy(self.run.sidecar, None)
            copy = res.relative_to_log(kept, self.run.path) if kept else None
        return Findings(
            snap=merged,
            console=snap,
            sources=sources,
            checkpoint=checkpoint,
            config_snapshot=config,
            config_copy=copy,
            left_out=ownership.untied_text(self.untied, self.cwd),
        )

    def _alone(self, since: float) -> Callable[[Path], bool]:
        """Whether a file was written while no other run of the folder was alive."""
        run = self.run
        windows: list[tuple[float, float | None]] | None = None

        def alone(path: Path) -> bool:
            nonlocal windows
            if run is None:
                return False
            try:
                if windows is None:
                    windows = neighbours.others_windows(run.root, run.path)
                written = path.stat().st_mtime
            except Exception:  # unknown: not alone (a file then needs a stronger tie)
                return False
            if written < since:
                return False  # there before the run: someone else's, whoever was alive
            # a second either side: the logs keep times to the second
            return not any(
                start - 1 <= written and (end is None or written <= end + 1)
                for start, end in windows
            )

        return alone

    def _ties(self, snap: Snapshot, since: float) -> ownership.Ties:
        """What ties a file on disk to this run (reading/ownership.py)."""
        printed = [
            snap.checkpoint.path if snap.checkpoint is not None else None,
            snap.pending_save.path if snap.pending_save is not None else None,
            snap.config_path,
        ]
        origin = None
        if self.run is not None:
            try:
                origin = checkpoints.started_from(self.run.read().initialised_from)
            except Exception:  # an unreadable log: no --from to keep apart
                origin = None
        return ownership.build(
            self.cwd, printed=printed, argv=self.argv, wandb_dir=snap.wandb_dir,
            task_id=self.array_task, alone=self._alone(since), started_from=origin,
        )  # fmt: skip

    def _with_records(
        self, snap: Snapshot, since: float, ties: ownership.Ties
    ) -> tuple[Snapshot, str | None]:
        """``snap`` with the frameworks' own records tied to this run (never fatal)."""
        if self.array_task is not None:
            # The tasks of an array share the working folder and run side by side: the
            # records there may be another task's, so a task's Results stay the console's.
            return snap, None
        try:
            found = records.read_records(self.cwd, since=since, until=time.time(), owns=ties.owns)
            self.untied.extend(found.untied)
            merged = records.merge(snap, found, self.cwd)
        except Exception as exc:  # the end is recorded from the console alone
            warn(f"warning: could not read the framework's records: {exc!r}", self.err)
            return snap, None
        if found.files or found.checkpoints or found.skipped:
            self.event(
                "records",
                {
                    "files": list(found.files),
                    "checkpoints": [str(c.path) for c in found.checkpoints[:5]],
                    "not_complete": [f"{k.path}: {k.reason}" for k in found.skipped[:5]],
                    "sources": merged.sources,
                },
            )
        return merged.snap, records.sources_text(merged.sources)

    def _checkpoint_path(self, snap: Snapshot, since: float, ties: ownership.Ties) -> str | None:
        ck = snap.checkpoint
        if ck is None:
            return None
        if ck.path:
            # resolved against the job's cwd (the event keeps it as printed)
            path = checkpoints.resolve(ck.path, self.cwd)
            if not ties.owns(path):
                self.untied.append(path)  # the checkpoint it was started from (--from)
                return None
            return str(path)
        if ck.step is not None:
            found = checkpoints.for_step(
                ck.step, cwd=self.cwd, since=since, owns=ties.owns, untied=self.untied
            )
            if found is not None:
                return str(found)
        return None

    def _config_snapshot(
        self, snap: Snapshot, since: float, checkpoint: str | None, ties: ownership.Ties
    ) -> tuple[str | None, str | None]:
        """The resolved config the run wrote, and hpcwrap's copy of it (relative to the log):
        one the run printed, or one tied to it (reading/ownership.py)."""
        near = [p for p in (checkpoint, snap.wandb_dir) if p]
        found = res.find_config_snapshot(
            self.config_globs,
            cwd=self.cwd,
            announced=snap.config_path,
            near=near,
            since=since,
            owns=ties.owns,
            untied=self.untied,
        )
        if found is None:
            return None, None
        if self.run is not None:
            copy = res.keep_config_copy(found, self.run.sidecar, self.execution_id)
            if copy is not None:
                self.event("config_snapshot", {"source": str(found), "copy": str(copy)})
                return str(found), res.relative_to_log(copy, self.run.path)
        return str(found), None


__all__ = ["EndReader", "Findings"]
