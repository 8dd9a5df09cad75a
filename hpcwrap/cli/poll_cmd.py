"""`hpcwrap poll`: ask Slurm about every run not yet over, and write what changed.

One `squeue --json` for all the runs, and one `sacct --duplicates` for the
jobs the controller no longer shows as active. The answer is cached per user:
within --min-interval seconds of the last real call (default 30, setting
`poll_min_interval`) the cached answer is used, so poll from cron or a loop
never hammers slurmctld or slurmdbd. Every Slurm call has a time limit
(--timeout, setting `poll_timeout`).

A run gets one evidence-backed Status entry when its state changed (pending
with a reason, running, or the final state sacct gives when the job left the
queue without an end record); an unchanged run is not written, so polling
again adds nothing. --every adds a progress entry for running runs whose last
entry is older than that. When Slurm does not answer: a message, exit status
10, and no log is touched.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from hpcwrap.cli.run_options import command_settings, lock_config
from hpcwrap.cli.status_cmd import add_targets_argument, resolve_targets
from hpcwrap.config import parse_duration
from hpcwrap.errors import exit_code_for


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "poll",
        help="update unfinished runs from squeue/sacct (rate-limited, one call each)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_targets_argument(p)
    p.add_argument("--json", action="store_true", help="print what was done as JSON")
    p.add_argument(
        "--watch", metavar="SECONDS", type=float, help="poll again every SECONDS until Ctrl-C"
    )
    p.add_argument(
        "--every",
        metavar="DURATION",
        help="also add a progress Status entry to running runs whose last one is older (e.g. 30m)",
    )
    p.add_argument(
        "--min-interval",
        metavar="SECONDS",
        type=float,
        help="reuse Slurm's answer younger than this (default 30; 0 always asks)",
    )
    p.add_argument("--timeout", metavar="SECONDS", type=float, help="time limit of each Slurm call")
    p.add_argument(
        "--settle",
        metavar="SECONDS",
        type=float,
        default=0.0,
        help="keep asking (every few seconds) until the runs are over in their logs, at most "
        "this long (the follow-up job uses it: accounting lags the job's end)",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing unless something changed")
    p.add_argument("--run-logs", metavar="DIR", help="run_logs folder (default: ./run_logs)")
    p.set_defaults(handler=_poll)


def _print(result: Any, quiet: bool) -> None:
    for c in result.changes:
        run = Path(c.run).stem
        if c.written and not c.execution_id:
            print(f"{run}: {c.note}")  # a log brought up to its sidecar
        elif c.written:
            print(
                f"{run}: job {c.execution_id}: {c.before or '-'} -> {c.after or '-'} "
                f"(Slurm: {c.slurm or 'no change of state'})"
            )
        elif c.note and not quiet:
            print(f"{run}: job {c.execution_id}: unchanged ({c.note})")
    if quiet and not result.written:
        return
    calls = result.calls
    cached = [k for k in ("squeue", "sacct") if k in result.asked_at and not calls.get(k)]
    extra = ""
    if cached:
        now = time.time()
        ages = ", ".join(f"{k} {now - result.asked_at[k]:.0f} s ago" for k in cached)
        extra = f"; cached answer used ({ages})"
    print(
        f"polled {result.runs} unfinished run(s): {len(result.written)} updated; "
        f"Slurm calls: squeue {calls.get('squeue', 0)}, sacct {calls.get('sacct', 0)}{extra}"
    )
    if result.not_asked:
        last = max(result.asked_at, key=lambda k: result.asked_at[k], default=None)
        whose = ""
        if last is not None:
            at = datetime.fromtimestamp(result.asked_at[last], timezone.utc)
            by = result.asked_by.get(last)
            whose = f" (by {by} at {at:%H:%M:%S} UTC)" if by else f" (at {at:%H:%M:%S} UTC)"
        print(
            f"{len(result.not_asked)} run(s) not asked: Slurm was asked less than the minimum "
            f"interval ago about other jobs{whose}; --min-interval 0 asks anyway"
        )


def _poll(args: argparse.Namespace) -> int:
    from hpcwrap.reports import poll
    from hpcwrap.reports import status as overview
    from hpcwrap.scheduler import get_scheduler
    from hpcwrap.scheduler.batch import BatchQuery, default_cache_path

    settings = command_settings(Path.cwd())
    paths, root = resolve_targets(args.targets, args.run_logs)
    min_interval = (
        args.min_interval if args.min_interval is not None else settings.poll_min_interval
    )
    query = BatchQuery(
        get_scheduler("slurm"),
        min_interval=min_interval,
        timeout=args.timeout if args.timeout is not None else settings.poll_timeout,
        cache_path=default_cache_path(root=root),
    )
    every = parse_duration(args.every, "--every") if args.every else None
    locks = lock_config(settings)
    while True:
        logs = overview.find_logs(paths)
        if args.settle > 0:
            query.min_interval = 0.0
            result = poll.settle(logs, query, wait=args.settle, root=root, locks=locks)
        else:
            result = poll.poll_runs(logs, query, root=root, locks=locks, every=every)
        if args.json:
            sys.stdout.buffer.write(orjson.dumps(result.to_json()) + b"\n")
            sys.stdout.flush()
        else:
            _print(result, args.quiet)
            sys.stdout.flush()
        for run, exc in result.errors:
            print(f"hpcwrap: warning: {run} not updated: {exc}", file=sys.stderr)
        if not args.watch:
            return exit_code_for(result.errors[0][1]) if result.errors else 0
        time.sleep(max(1.0, args.watch))
