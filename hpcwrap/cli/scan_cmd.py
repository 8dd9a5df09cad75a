"""`hpcwrap scan OUTPUT...`: what hpcwrap reads from an existing output file.

The reader is the in-job wrapper's (``hpcwrap.reading.scan.scan_file``): the same format
entries, the same scanner, so what ``scan`` prints is what ``hpcwrap run`` would have
recorded from that output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcwrap.cli.run_options import command_settings, lock_config
from hpcwrap.errors import UsageError

if TYPE_CHECKING:
    from hpcwrap.reading.scan import CheckpointReport, ScanReport

DESCRIPTION = """\
Read training output files (e.g. slurm-1234.out) offline and print what hpcwrap
reads from them: steps, the first and last train loss, val losses, completed
checkpoints (and a save that started but never completed), the W&B run, errors by
kind, and which format entries matched. Relative checkpoint paths are resolved
against --cwd (default: the output file's folder, where Slurm writes it for a job
submitted there). User patterns come from hpcwrap.toml as for `hpcwrap run`.

--into RUN records what was read in that run log: a Status entry with the
evidence (steps, losses, the last completed checkpoint, errors) and Results'
figures where the log has none yet, for a log kept by hand.
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "scan",
        help="print what hpcwrap reads from training output files (steps, losses, checkpoints)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("outputs", nargs="+", metavar="OUTPUT", help="output file(s) of a training")
    p.add_argument("--json", action="store_true", help="one JSON object per file, one per line")
    p.add_argument(
        "--cwd",
        metavar="DIR",
        help="the job's working directory, for relative paths (default: the file's folder)",
    )
    p.add_argument(
        "--workdir",
        metavar="DIR",
        help="the job's working folder: also read the framework's own records there "
        "(trainer_state.json, metrics.csv, checkpoints on disk) where the output lacks them",
    )
    p.add_argument("--into", metavar="RUN", help="record what was read in this run log's Status")
    p.add_argument("--run-logs", metavar="DIR", help="run_logs folder (default: ./run_logs)")
    p.set_defaults(handler=handle)


def _ck(c: CheckpointReport) -> str:
    where = c.path or "(no path printed)"
    if c.printed and c.printed != c.path:
        where += f" (printed: {c.printed})"
    step = f", step {c.step}" if c.step is not None else ""
    return f"{where}{step} [{c.source}: {c.evidence}]"


def render(r: ScanReport) -> str:
    """The human-readable report of one file."""
    formats = ", ".join(f"{name} ({n})" for name, n in r.formats.items()) or "none"
    out = [f"{r.path}: {r.lines} lines; read by: {formats}"]
    if r.final_step is not None:
        total = f" / {r.step_total}" if r.step_total else ""
        out.append(f"  step:        {r.final_step}{total}")
    if r.epoch is not None:
        out.append(f"  epoch:       {r.epoch:g}")
    if r.last_loss is not None:
        out.append(
            f"  train loss:  first {r.first_loss}, last {r.last_loss} ({r.train_losses} read)"
        )
    else:
        out.append("  train loss:  none read")
    if r.last_val_loss is not None:
        out.append(
            f"  val loss:    first {r.first_val_loss}, last {r.last_val_loss} ({r.val_losses} read)"
        )
    else:
        out.append("  val loss:    none read")
    if r.checkpoint is not None:
        out.append(f"  checkpoint:  {_ck(r.checkpoint)}")
        if len(r.checkpoints) > 1:
            out.append(f"               ({len(r.checkpoints)} completed saves read)")
    else:
        out.append("  checkpoint:  no completed save read")
    if r.checkpoint_note:
        out.append(f"  note:        {r.checkpoint_note}")
    if r.wandb_dir or r.wandb_url:
        out.append(f"  W&B:         {' '.join(x for x in (r.wandb_dir, r.wandb_url) if x)}")
    for e in r.errors:
        count = f" (x{e['count']})" if e["count"] > 1 else ""
        out.append(f"  error:       {e['kind']}{count}: {e['text']}")
    if r.origin:
        src = ", ".join(f"{k} from {v}" for k, v in r.origin.items())
        out.append(f"  read:        {src}")
    return "\n".join(out)


def evidence_text(r: ScanReport) -> str:
    """The Status entry ``--into`` writes: what the output file shows."""
    parts = [f"read from {Path(r.path).name} by hpcwrap scan"]
    if r.final_step is not None:
        parts.append(f"step {r.final_step}" + (f"/{r.step_total}" if r.step_total else ""))
    if r.last_loss is not None:
        parts.append(f"train_loss {r.first_loss} -> {r.last_loss}")
    if r.last_val_loss is not None:
        parts.append(f"val_loss {r.last_val_loss}")
    if r.checkpoint is not None:
        step = f" (step {r.checkpoint.step})" if r.checkpoint.step is not None else ""
        parts.append(f"last completed checkpoint {r.checkpoint.path}{step}")
    if r.checkpoint_note:
        parts.append(r.checkpoint_note)
    if r.error_kinds:
        parts.append("errors: " + ", ".join(r.error_kinds))
    return "; ".join(parts)


def _redacted(value: Any) -> Any:
    """Every string in a JSON-able tree scrubbed (redacting the dumped text could
    break its syntax)."""
    from hpcwrap.redact import redact_text

    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value


def handle(args: argparse.Namespace) -> int:
    from hpcwrap.reading.scan import scan_file
    from hpcwrap.redact import redact_text

    settings = command_settings(Path.cwd())
    if args.into and len(args.outputs) != 1:
        raise UsageError("--into takes one output file (the job's whose reading to record)")
    reports = []
    for name in args.outputs:
        try:
            reports.append(
                scan_file(
                    Path(name).expanduser(),
                    patterns=settings.patterns,
                    cwd=Path(args.cwd).expanduser() if args.cwd else None,
                )
            )
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
        if args.workdir:
            from hpcwrap.reading.records import with_records

            workdir = Path(args.workdir).expanduser()
            if not workdir.is_dir():
                raise UsageError(f"--workdir {args.workdir}: not a folder")
            reports[-1] = with_records(reports[-1], workdir, Path(name).expanduser())
    for r in reports:
        # what the output printed may hold a secret (a token in a URL): scrubbed
        if args.json:
            print(json.dumps(_redacted(r.to_dict())))
        else:
            print(redact_text(render(r)))
    if args.into:
        from datetime import datetime, timezone

        from hpcwrap.job.results import figures_of
        from hpcwrap.runlog import lifecycle, open_run

        root = Path(args.run_logs).expanduser() if args.run_logs else settings.run_logs
        log = open_run(args.into, root, locks=lock_config(settings))
        r = reports[0]
        text = redact_text(evidence_text(r))
        log.record(lifecycle.ProgressObserved(datetime.now(timezone.utc), text))
        snap = r.snapshot
        if snap.has_progress:
            # Results' figures, where the log has none yet (what it has stands)
            log.record(
                lifecycle.FiguresRead(
                    figures_of(snap),
                    source=f"{Path(r.path).name}, read by hpcwrap scan",
                )
            )
        print(f"hpcwrap: recorded in {log.path}", file=sys.stderr)
    return 0
