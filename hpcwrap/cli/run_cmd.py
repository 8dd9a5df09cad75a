"""`hpcwrap run`: run a command under the in-job wrapper."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcwrap.cli.run_options import (
    add_run_options,
    command_settings,
    lock_config,
    request_from_args,
)
from hpcwrap.config import Settings, parse_duration
from hpcwrap.errors import ConfigError, HpcwrapError, UsageError

if TYPE_CHECKING:
    from hpcwrap.job.seams import Chain

RUN_LOG_ENV = "HPCWRAP_RUN_LOG"

DESCRIPTION = """\
Run COMMAND with its stdout/stderr passed through byte for byte, read its progress
(step, train/val loss, lr, epoch, checkpoints, W&B run dir, errors) from the output,
and keep the run log up to date: the Job block (start, node, end, exit code, state),
Status entries with evidence, Results and Next at the end.

Run log: --log RUN, else $HPCWRAP_RUN_LOG (set by `hpcwrap sbatch`), else a new one
under the project's run_logs/ (found upwards as git finds .git) from the run-description
options (as `hpcwrap sbatch` would).
A run log that cannot be opened or written never stops the command.
"""

EPILOG = """\
signals:
  TERM, INT, HUP  forwarded to the command's process group; it gets 25 s, then SIGKILL
                  (a third signal kills at once). The wrapper never exits before it.
  walltime_signal (hpcwrap.toml, default USR2; `hpcwrap sbatch` asks Slurm for
                  --signal=B:USR2@<lead>) is recorded with the time left and the last
                  step, and forwarded to the processes of the command that handle it.
  In a batch script of your own, `exec hpcwrap run -- ...` so the signals reach it.

exit status: the command's; 128+N when signal N killed it; 126/127 when it could
not be started.

settings (hpcwrap.toml or [tool.hpcwrap]): status_every, stall_after,
status_min_interval, telemetry_interval, walltime_signal, forward_walltime_signal, config_snapshot
(globs), and [[patterns]] with named groups step, loss, val_loss, lr, epoch,
checkpoint, wandb_dir, error, e.g.
  [[patterns]]
  name = "my_trainer"
  regex = 'ep (?P<epoch>\\d+) it (?P<step>\\d+) l=(?P<loss>[-+.\\deE]+|nan|inf)'

examples:
  hpcwrap run --mode replication --objective 'does it train here?' -- python train.py
  hpcwrap run --log run_logs/2026-03-11_train.md -- bash slurm/train.sh --lr 3e-4
"""

_DESCRIBING = ("mode", "objective", "task", "description", "group", "config", "dataset", "run_logs")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "run",
        help="run a command under supervision: output passed through, progress into the run log",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="hpcwrap run [options] [--] COMMAND [ARGS...]",
    )
    p.add_argument(
        "--log",
        metavar="RUN",
        help=f"the run log to keep (path, file name or unique prefix; default: ${RUN_LOG_ENV}, "
        "else a new one)",
    )
    p.add_argument(
        "--execution-id",
        metavar="ID",
        help="execution id outside Slurm (default <host>:<pid>), e.g. an instance name/zone",
    )
    p.add_argument(
        "--status-every",
        metavar="DURATION",
        help="a Status entry at least this often (default from settings: 30m); entries stay "
        "at least status_min_interval apart (default 1m), so a shorter value is raised to it",
    )
    p.add_argument(
        "--stall-after",
        metavar="DURATION",
        help="'stalled?' when no new step for this long (default from settings: 20m; at "
        "least status_min_interval, default 1m, so a shorter value is raised to it)",
    )
    p.add_argument(
        "--telemetry-interval",
        metavar="DURATION",
        help="sample GPU/CPU/memory/disk this often into telemetry.jsonl (default from "
        "settings: 10s; 0 turns telemetry off)",
    )
    add_run_options(p)
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND", help=argparse.SUPPRESS)
    p.set_defaults(handler=handle)


def _settings(args: argparse.Namespace, in_submission: bool) -> Settings:
    try:
        settings = command_settings(Path.cwd())
    except ConfigError as exc:
        if not in_submission:
            raise
        # Inside a submitted job nobody can fix the file now: run the training anyway.
        print(f"hpcwrap: warning: {exc}; using default settings", file=sys.stderr)
        settings = Settings()
    try:
        if args.status_every is not None:
            every = parse_duration(args.status_every, "--status-every")
            settings = dataclasses.replace(settings, status_every=every)
        if args.stall_after is not None:
            stall = parse_duration(args.stall_after, "--stall-after")
            settings = dataclasses.replace(settings, stall_after=stall)
        if args.telemetry_interval is not None:
            every = parse_duration(args.telemetry_interval, "--telemetry-interval")
            settings = dataclasses.replace(settings, telemetry_interval=every)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    # The rate limit wins (a log must not bloat); say so instead of silently ignoring it.
    least = settings.status_min_interval
    for name, effect in (
        ("status_every", f"Status entries come at most every {least:g}s"),
        ("stall_after", f"raised to {least:g}s (a 'stalled?' entry is a Status entry)"),
    ):
        value = getattr(settings, name)
        if value < least:
            print(
                f"hpcwrap: note: {name} {value:g}s is below status_min_interval {least:g}s: "
                + effect,
                file=sys.stderr,
            )
    if settings.stall_after < least:
        settings = dataclasses.replace(settings, stall_after=least)
    return settings


def _job_chain() -> Chain:
    """The resume chain's in-job steps (imported only for a run that has a chain)."""
    from hpcwrap.submit.resume import JobChain

    return JobChain()


def handle(args: argparse.Namespace) -> int:
    from hpcwrap.job.jobenv import job_env
    from hpcwrap.job.sink import warn
    from hpcwrap.job.wrapper import WrapperOptions, run_command

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("missing command: hpcwrap run [options] -- COMMAND [ARGS...]")
    describes = any(getattr(args, k) for k in _DESCRIBING) or bool(args.set_values)
    if args.log and describes:
        raise UsageError(
            "--log names an existing run log; --mode/--objective/--config/... describe a new "
            "one: give one or the other"
        )
    log_spec = args.log or (None if describes else os.environ.get(RUN_LOG_ENV) or None)
    settings = _settings(args, in_submission=bool(log_spec))

    run = None
    if log_spec:
        from hpcwrap.runlog import open_run

        try:
            run = open_run(log_spec, locks=lock_config(settings))
        except (HpcwrapError, OSError) as exc:
            warn(
                f"warning: cannot open the run log {log_spec!r}: {exc}; running the command "
                "without a run log"
            )
    else:
        from hpcwrap import textcheck
        from hpcwrap.redact import describe_command
        from hpcwrap.submit.newrun import create_run_from_request

        request = request_from_args(args, settings)  # refuses a missing --mode/--objective
        # what the new run log records, checked before it is created
        textcheck.require_utf8("the working folder", str(Path.cwd()))
        textcheck.require_all_utf8("the command's word", command)
        env = job_env(os.environ, args.execution_id)
        try:
            run = create_run_from_request(
                request,
                script=describe_command(command[0], command[1:]),
                cwd=Path.cwd(),
                execution_id=env.execution_id,
                locks=lock_config(settings),
            )
        except (UsageError, ConfigError):
            raise
        except (HpcwrapError, OSError) as exc:
            warn(f"warning: could not create a run log: {exc}; running the command without one")
        else:
            warn(f"run log {run.path}")
    hooks = []
    if settings.telemetry_interval > 0:
        from hpcwrap.job.telemetry import TelemetryConfig
        from hpcwrap.job.telemetry.hook import TelemetryHook

        hooks.append(
            TelemetryHook(
                TelemetryConfig(interval=settings.telemetry_interval),
                os.environ,
                sidecar=run.sidecar if run is not None else None,
            )
        )
    options = WrapperOptions(
        settings=settings, execution_id=args.execution_id, hooks=hooks, chain=_job_chain
    )
    outcome = run_command(command, run, options)
    return outcome.exit_code
