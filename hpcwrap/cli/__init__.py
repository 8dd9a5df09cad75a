"""Command-line entry point: argument parsing only.

Each command group lives in its own module (``<name>_cmd.py``) exposing
``register(subparsers)``; handlers call the library and return an exit code.
This is the only place where library errors become messages and exit codes
(the table is ``hpcwrap.errors.EXIT_CODES``). Nothing heavy is imported here:
wandb, pyslurm and pynvml load only inside the command that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Callable, Sequence

from hpcwrap import __version__
from hpcwrap.errors import (
    EXIT_CODES,
    EXIT_INTERRUPTED,
    HpcwrapError,
    UsageError,
    exit_code_for,
    exit_code_table,
)

# Order is the order shown in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "sbatch",
    "run",
    "log",
    "status",
    "poll",
    "resume",
    "cancel",
    "plot",
    "export",
    "publish",
    "scan",
    "wandb",
)

Handler = Callable[[argparse.Namespace], int]


def exit_codes_epilog() -> str:
    """The ``exit codes:`` block of ``hpcwrap --help``, one code a line, from ``EXIT_CODES``."""
    table = exit_code_table()
    width = max(len(str(code)) for code, _meaning in table)
    lines = ["exit codes:"]
    lines += [f"  {code:>{width}} {meaning}" for code, meaning in table]
    lines.append("  `hpcwrap run` exits with its command's status (128+N when killed by signal N).")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcwrap",
        description="Run logs that keep themselves for ML training on Slurm clusters.",
        epilog=exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hpcwrap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"hpcwrap.cli.{name}_cmd")
        module.register(sub)
    return parser


def _format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    # A recovered-from problem (damaged state.json, torn event line) is news for the
    # user, not a source location: one line, like the error messages.
    return f"hpcwrap: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _format_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_CODES[UsageError]
    try:
        return handler(args)
    except HpcwrapError as exc:
        from hpcwrap.redact import redact_text  # an error may quote a command or a config

        print(f"hpcwrap: error: {redact_text(str(exc))}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("hpcwrap: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
