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
from hpcwrap.errors import HpcwrapError, exit_code_for

# Order is the order shown in --help.
COMMAND_MODULES: tuple[str, ...] = ("sbatch", "run", "log")

Handler = Callable[[argparse.Namespace], int]

EPILOG = """\
exit codes:
  0 success; 1 other hpcwrap error; 2 usage error; 3 config error;
  4 run not found; 5 ambiguous run; 6 run-log conflict (update written beside it);
  7 lock timeout; 8 sbatch refused the job; 9 Slurm commands missing;
  10 other scheduler error; 11 git/code-state error; 12 wrapper error;
  13 run-log error; 130 interrupted.
  `hpcwrap run` exits with its command's status (128+N when killed by signal N).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcwrap",
        description="Run logs that keep themselves for ML training on Slurm clusters.",
        epilog=EPILOG,
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
        return 2
    try:
        return handler(args)
    except HpcwrapError as exc:
        print(f"hpcwrap: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("hpcwrap: interrupted", file=sys.stderr)
        return 130
