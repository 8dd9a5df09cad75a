"""`hpcwrap plot RUN`: one PNG of the run's curves, linked from Results (extra ``plots``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hpcwrap.cli.run_options import command_settings, lock_config
from hpcwrap.runlog import layout

DESCRIPTION = """\
Draw the run's train/val loss over step (every point its jobs' output files printed;
the progress events where no output file is found) and GPU
utilisation and memory over time (from telemetry.jsonl; CPU cores and RSS when no
GPU was sampled) into one PNG, by default in the run's sidecar, and link it from
the run log on a `- plot:` line in Results.

Needs matplotlib: pip install 'hpcwrap[plots]'.
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "plot",
        help="draw loss and GPU utilisation/memory of a run into a PNG linked from its log",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="path, file name or unique prefix of the run log")
    p.add_argument(
        "-o",
        "--output",
        metavar="PNG",
        help=f"where to write it (default: the sidecar's {layout.PLOT_FILE})",
    )
    p.add_argument("--run-logs", metavar="DIR", help="run_logs folder (default: ./run_logs)")
    p.add_argument(
        "--no-link", action="store_true", help="write the PNG only; leave the run log as it is"
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import os

    from hpcwrap.reports.plot import draw, pyplot
    from hpcwrap.runlog import lifecycle, open_run

    pyplot()  # the clear message before anything else
    settings = command_settings(Path.cwd())
    root = Path(args.run_logs).expanduser() if args.run_logs else settings.run_logs
    log = open_run(args.run, root, locks=lock_config(settings))
    output = Path(args.output).expanduser() if args.output else log.sidecar / layout.PLOT_FILE
    counts = draw(log.name, log.sidecar, output, state=log.read(), patterns=settings.patterns)
    print(
        f"hpcwrap: wrote {output} ({counts['train_loss']} train / {counts['val_loss']} val loss "
        f"points, {counts['samples']} telemetry samples)",
        file=sys.stderr,
    )
    if not args.no_link:
        rel = os.path.relpath(output.resolve(), log.path.parent.resolve())
        log.record(lifecycle.Plotted(rel))
    return 0
