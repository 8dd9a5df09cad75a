"""`hpcwrap status`: what is done, running and left, from the run logs alone.

Reads only local files (each run's state.json, and for runs not yet over the
tail of its events and telemetry): it never asks Slurm. `hpcwrap poll` asks
Slurm and writes what it learns into the logs; run it first (or from cron)
when a log may be stale.

By default: every unfinished run and the last 10 finished ones; --all for
every run. Colour only on a terminal, and never with NO_COLOR set.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from hpcwrap.cli.run_options import command_settings


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "status",
        help="table of runs: state, job, elapsed/left, last step and loss, GPU, checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_targets_argument(p)
    p.add_argument("--all", action="store_true", help="every run, not only the recent ones")
    p.add_argument("--json", action="store_true", help="print the rows as JSON (schema 1)")
    p.add_argument(
        "--report",
        action="store_true",
        help="print the done / running / remaining summary in Markdown, ready to paste",
    )
    p.add_argument("--run-logs", metavar="DIR", help="run_logs folder (default: ./run_logs)")
    p.set_defaults(handler=_status)


def add_targets_argument(p: argparse.ArgumentParser) -> None:
    """The run_logs folders / run logs that status and poll both take."""
    p.add_argument(
        "targets",
        nargs="*",
        metavar="run_logs/ | <run>",
        help="run_logs folders or run logs (default: ./run_logs or the `run_logs` setting)",
    )


def resolve_targets(targets: list[str], run_logs: str | None) -> tuple[list[Path], Path | None]:
    """Folders and run logs named on the command line (a run name is looked up), and the
    run_logs folder the groups are relative to."""
    root = Path(run_logs) if run_logs else command_settings(Path.cwd()).run_logs
    if not targets:
        return [root], root
    from hpcwrap.runlog.handle import open_run  # a run named by name: looked up

    paths: list[Path] = []
    for text in targets:
        path = Path(text).expanduser()
        if path.is_dir():
            paths.append(path)
        else:
            paths.append(open_run(text, root).path)
    single_root = root if root.is_dir() else None
    if len(paths) == 1 and paths[0].is_dir():
        single_root = paths[0]
    return paths, single_root


def use_colour(stream: Any) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


def _status(args: argparse.Namespace) -> int:
    from hpcwrap.reports import status as overview

    paths, root = resolve_targets(args.targets, args.run_logs)
    named_runs = any(p.is_file() for p in paths)
    cache = overview.default_cache_path(root) if root is not None else None
    rows = overview.collect(paths, root, show_all=args.all or named_runs, cache_path=cache)
    if args.json:
        sys.stdout.buffer.write(overview.to_json(rows))
        sys.stdout.flush()
    elif args.report:
        from hpcwrap.scheduler.batch import default_cache_path, last_asked

        asked = last_asked(default_cache_path(root=root))
        sys.stdout.write(overview.render_report(rows, asked=asked))
    elif not rows:
        print(f"no run logs under {', '.join(str(p) for p in paths)}")
    else:
        sys.stdout.write(overview.render_table(rows, colour=use_colour(sys.stdout)))
    if not args.json:
        for row in rows:
            if row.lag:
                # status only reads: the disagreement is said, poll or reindex writes it
                print(
                    f"hpcwrap: {row.name}: the Markdown is behind its sidecar: "
                    f"{'; '.join(row.lag)}; `hpcwrap poll` or `hpcwrap log reindex` writes it",
                    file=sys.stderr,
                )
    return 0
