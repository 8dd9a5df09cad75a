"""`hpcwrap cancel <run>`: cancel a run's running job and its waiting resume successor."""

from __future__ import annotations

import argparse
from typing import Any

from hpcwrap.cli.resume_cmd import open_for_chain


def register(sub: argparse._SubParsersAction[Any]) -> None:
    c = sub.add_parser(
        "cancel",
        help="cancel a run's running job and any waiting resume successor, and record it",
        description="Cancel the run's running job(s) and the successor a resume chain keeps "
        "waiting (scancel), and record in the run log that the chain was stopped by hand.",
    )
    c.add_argument("run", help="the run log: path, file name or name prefix")
    c.add_argument("--run-logs", help="the run_logs folder to look in (default: the project's)")
    c.set_defaults(handler=_cancel)


def _cancel(args: argparse.Namespace) -> int:
    from hpcwrap.scheduler import get_scheduler
    from hpcwrap.submit import resume

    log = open_for_chain(args)
    cancelled = resume.cancel_run(log, get_scheduler("slurm"))
    print(f"cancelled: {' '.join(cancelled) if cancelled else 'nothing was running or waiting'}")
    print(f"run log: {log.path}")
    return 0
