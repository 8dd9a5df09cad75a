"""`hpcwrap log`: create, annotate, show and reindex run logs by hand.

``log new`` is for work hpcwrap did not submit (a ``docker run`` on a cloud
VM, an interactive session); it takes the same run-description options as
``hpcwrap sbatch``. ``<run>`` is a path, a file name, or a unique prefix of a
run name under the run_logs folder.

Locks: every write to a run log, timeline.md or experiments.md holds a lock:
flock, or a soft lock file (pid@host) where the filesystem has no
cluster-wide flock (detected: Lustre localflock/noflock, NFS local_lock).
HPCWRAP_LOCK=flock|soft (or `lock` in hpcwrap.toml) overrides the detection;
every machine writing the same run_logs/ must use the same kind.
HPCWRAP_LOCK_TIMEOUT (seconds, default 60) bounds the wait. Times are UTC.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hpcwrap.cli.run_options import (
    RUN_LOGS_HELP,
    add_run_options,
    command_settings,
    lock_config,
    request_from_args,
)
from hpcwrap.config import Settings


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "log",
        help="create, annotate, show and reindex run logs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    logs = p.add_subparsers(dest="log_command", metavar="<log command>")

    new = logs.add_parser(
        "new",
        help="create a run log for work not submitted through hpcwrap",
        description="Create a run log (and its timeline entry) for work hpcwrap did not "
        "submit, e.g. a `docker run` on a cloud VM. Prints the new log's path.",
    )
    add_run_options(new)
    new.add_argument(
        "--execution-id",
        metavar="ID",
        help="what identifies the execution: a job id, or instance_name/zone for a cloud VM",
    )
    new.add_argument(
        "--script", metavar="TEXT", help="the command that runs the work (e.g. the docker run line)"
    )
    new.set_defaults(handler=_new)

    note = logs.add_parser(
        "note",
        help="append a timestamped Status line to a run log",
        description="Append '- <UTC time> — TEXT' to the run's Status section.",
    )
    note.add_argument("run", help="path, file name or unique prefix of the run log")
    note.add_argument("text", help="the status text, with evidence (step, loss, ...)")
    note.add_argument("--run-logs", metavar="DIR", help=RUN_LOGS_HELP)
    note.set_defaults(handler=_note)

    show = logs.add_parser(
        "show",
        help="print a run log (or its machine state with --json)",
        description="Print the run log's Markdown, or with --json the state hpcwrap keeps.",
    )
    show.add_argument("run", help="path, file name or unique prefix of the run log")
    show.add_argument("--json", action="store_true", help="print the machine state as JSON")
    show.add_argument("--run-logs", metavar="DIR", help=RUN_LOGS_HELP)
    show.set_defaults(handler=_show)

    reindex = logs.add_parser(
        "reindex",
        help="rebuild timeline.md and experiments.md from the logs, keeping human lines",
        description="Add missing entries to every folder's timeline.md and missing rows to "
        "experiments.md. Lines people wrote are kept.",
    )
    reindex.add_argument("folder", nargs="?", metavar="run_logs/", help=RUN_LOGS_HELP)
    reindex.add_argument(
        "--fix",
        action="store_true",
        help="rename misnamed logs (train_2026-03-13.md -> 2026-03-13_train.md) and their "
        "sidecars, under the run's lock",
    )
    reindex.set_defaults(handler=_reindex)

    p.set_defaults(handler=lambda args: _no_command(p))


def _no_command(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _settings() -> Settings:
    return command_settings(Path.cwd())


def _root(args: argparse.Namespace, settings: Settings) -> Path:
    given = getattr(args, "run_logs", None)
    return Path(given).expanduser() if given else settings.run_logs


def _new(args: argparse.Namespace) -> int:
    from hpcwrap.redact import redact_command_text
    from hpcwrap.submit.newrun import create_run_from_request

    settings = _settings()
    req = request_from_args(args, settings)
    script = redact_command_text(args.script) if args.script is not None else None
    # Same path as sbatch/run: code state, the config copy with its sha256, the experiment tag.
    log = create_run_from_request(
        req,
        script=script,
        cwd=Path.cwd(),
        execution_id=args.execution_id,
        locks=lock_config(settings),
    )
    print(log.path)
    return 0


def _note(args: argparse.Namespace) -> int:
    from hpcwrap.errors import UsageError
    from hpcwrap.runlog import open_run

    settings = _settings()
    if not args.text.strip():
        raise UsageError("log note: the text is empty; say what you saw (step, loss, ...)")
    log = open_run(args.run, _root(args, settings), locks=lock_config(settings))
    log.add_status(args.text, event="note")
    print(log.path)
    return 0


def _show(args: argparse.Namespace) -> int:
    from hpcwrap.runlog import open_run

    settings = _settings()
    log = open_run(args.run, _root(args, settings), locks=lock_config(settings))
    if args.json:
        import orjson

        from hpcwrap.reading.telemetry import summarize_sidecar
        from hpcwrap.runlog.model import to_dict
        from hpcwrap.runlog.telemetry import json_block

        state, owned = log.read_with_owners()
        doc = {
            "path": str(log.path),
            "sidecar": str(log.sidecar),
            "state": to_dict(state),
            # the telemetry summary: every measure, null with a reason where not measured
            "telemetry": json_block(state.telemetry or summarize_sidecar(log.sidecar)),
            # fields a person edited: the file shows their text, "state" hpcwrap's value
            "person_owned": owned,
        }
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if not log.path.exists() and log.repair():  # its sidecar is whole: rebuilt from it
        print(f"hpcwrap: {log.path} was missing: rebuilt from its sidecar", file=sys.stderr)
    data = log.path.read_bytes()
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0


def _reindex(args: argparse.Namespace) -> int:
    from hpcwrap.runlog import reindex

    settings = _settings()
    root = Path(args.folder).expanduser() if args.folder else settings.run_logs
    inner = root / "run_logs"
    if root.resolve().name != "run_logs" and inner.is_dir():
        # The repo root given for its run_logs/: reindexing it would write an
        # experiments.md there and index run_logs/ as a group.
        from hpcwrap.errors import UsageError

        raise UsageError(f"{root} is not a run_logs folder but holds one: run it on {inner}")
    res = reindex(root, locks=lock_config(settings), fix=args.fix)
    done = dict(res.renamed)
    for path, right in res.misnamed:
        if path in done:
            print(f"hpcwrap: renamed {path} -> {right.name} (with its sidecar)", file=sys.stderr)
        elif not args.fix:
            print(
                f"hpcwrap: warning: {path} is not named <date>_<task>.md, so it is not indexed; "
                f"it should be {right.name} (hpcwrap log reindex --fix renames it)",
                file=sys.stderr,
            )
    for path, why in res.not_renamed:
        print(f"hpcwrap: warning: could not rename {path}: {why}", file=sys.stderr)
    for path, why in res.repaired:
        print(f"hpcwrap: {path}: brought up to its sidecar ({why})", file=sys.stderr)
    for path, why in res.not_repaired:
        print(f"hpcwrap: warning: {path} is behind its sidecar and not written: {why}",
              file=sys.stderr)  # fmt: skip
    print(
        f"{root}: {res.logs} run logs in {res.folders} folders; "
        f"{res.timeline_added} timeline entries and {res.experiment_rows_added} "
        "experiments rows added"
    )
    return 0
