"""The run-description options shared by ``sbatch``, ``run`` and ``log new``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hpcwrap.config import Settings, load_settings, where_note

if TYPE_CHECKING:
    from hpcwrap.runlog.locks import LockConfig
    from hpcwrap.submit.request import RunRequest


RUN_LOGS_HELP = "run_logs folder (default: the project's, found upwards as git finds .git)"


def add_run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run description (recorded in the run log)")
    group.add_argument(
        "--mode",
        metavar="MODE",
        help="replication | experiment | pipeline:<subtype> (default: from hpcwrap.toml)",
    )
    group.add_argument("--objective", metavar="TEXT", help="one line: what this run verifies")
    group.add_argument(
        "--task", metavar="NAME", help="task name for the file name (default: train)"
    )
    group.add_argument("--description", metavar="TEXT", help="short description for the title")
    group.add_argument("--group", metavar="NAME", help="subfolder of run_logs/ (default: flat)")
    group.add_argument(
        "--config", metavar="FILE", help="training config; a copy goes in the sidecar"
    )
    group.add_argument("--dataset", metavar="TEXT", help="dataset file name and path (or URL)")
    group.add_argument(
        "--set",
        dest="set_values",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a key setting (lr, batch size, ...); repeatable",
    )
    group.add_argument(
        "--from",
        dest="initialised_from",
        metavar="PATH|RUN",
        help="the checkpoint this run starts from (fine-tuning), or a run whose checkpoint "
        "it is: recorded as `initialised from`, never as this run's own checkpoint",
    )
    group.add_argument("--run-logs", metavar="DIR", help=RUN_LOGS_HELP)


def command_settings(cwd: Path) -> Settings:
    """The settings a command works under; one line on stderr when its run_logs/ is not
    the git top level's (``config.where_note``)."""
    settings = load_settings(cwd)
    note = where_note(cwd, settings)
    if note and note not in _NOTED:  # once per command, however often settings are read
        _NOTED.add(note)
        print(f"hpcwrap: {note}", file=sys.stderr)
    return settings


_NOTED: set[str] = set()


def lock_config(settings: Settings) -> LockConfig:
    """The run-log locks for a command: the ``lock`` setting under ``HPCWRAP_LOCK*``."""
    from hpcwrap.runlog import LockConfig

    return LockConfig.from_env(settings.lock)


def request_from_args(args: argparse.Namespace, settings: Settings | None = None) -> RunRequest:
    from hpcwrap.submit.request import build_run_request  # the run log's model: not for status

    return build_run_request(
        settings=settings if settings is not None else load_settings(Path.cwd()),
        mode=args.mode,
        objective=args.objective,
        task=args.task,
        description=args.description,
        group=args.group,
        config=args.config,
        dataset=args.dataset,
        set_values=args.set_values,
        run_logs=args.run_logs,
        initialised_from=getattr(args, "initialised_from", None),
    )
