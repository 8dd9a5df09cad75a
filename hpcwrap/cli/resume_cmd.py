"""`hpcwrap resume <run>`: continue a stopped run in a new job, in the same run log."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hpcwrap.cli.run_options import command_settings, lock_config

RESUME_HELP = """\
Continue a stopped run from its newest checkpoint in a new job, in the same run log.

The job runs the run's own batch script (job.sh in its sidecar) with the sbatch
options it was submitted with, plus any given here (e.g. -t 2:00:00). The
training learns where to resume from: HPCWRAP_RESUME_FROM and LOAD_CKPT_PATH in
its environment, and the run's --resume-arg (from `hpcwrap sbatch`) added to its
command. The run log gets a '## Job (resumed)' block with `resumed from`.
A run submitted with --resume auto goes on chaining from there.
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "resume",
        help="continue a stopped run from its newest checkpoint, in the same run log",
        description=RESUME_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="the run log: path, file name or name prefix")
    p.add_argument("--run-logs", help="the run_logs folder to look in (default: the project's)")
    p.add_argument(
        "sbatch_options", nargs=argparse.REMAINDER, help="extra sbatch options for the new job"
    )
    p.set_defaults(handler=_resume)


def open_for_chain(args: argparse.Namespace) -> Any:
    from hpcwrap.runlog import open_run

    settings = command_settings(Path.cwd())
    root = Path(args.run_logs).expanduser() if args.run_logs else settings.run_logs
    return open_run(args.run, root, locks=lock_config(settings))


def _resume(args: argparse.Namespace) -> int:
    import os

    from hpcwrap.scheduler import get_scheduler
    from hpcwrap.submit import resume

    log = open_for_chain(args)
    job_id = resume.resume_by_hand(
        log, get_scheduler("slurm"), os.environ, extra_sbatch=list(args.sbatch_options)
    )
    print(f"Submitted batch job {job_id}")
    print(f"run log: {log.path}")
    return 0
