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

# Each command's one-line help, in the order --help shows them. A command's module is
# imported only when that command runs (start-up: `hpcwrap --version` and `--help` load
# none); tests/unit/test_cli_basics.py checks these lines against what each module registers.
COMMANDS: dict[str, str] = {
    "sbatch": "submit a batch script through sbatch, with its run log written first",
    "run": "run a command under supervision: output passed through, progress into the run log",
    "log": "create, annotate, show and reindex run logs",
    "status": "table of runs: state, job, elapsed/left, last step and loss, GPU, checkpoint",
    "poll": "update unfinished runs from squeue/sacct (rate-limited, one call each)",
    "resume": "continue a stopped run from its newest checkpoint, in the same run log",
    "cancel": "cancel a run's running job and any waiting resume successor, and record it",
    "plot": "draw loss and GPU utilisation/memory of a run into a PNG linked from its log",
    "export": "a sanitized copy of a run log for the public (TRAINING_LOG.md)",
    "publish": "passport/signoff gate, public package, HuggingFace record",
    "scan": "print what hpcwrap reads from training output files (steps, losses, checkpoints)",
    "wandb": "sync offline W&B runs to a chosen entity/project, recording the URL",
}
COMMAND_MODULES: tuple[str, ...] = tuple(COMMANDS)

Handler = Callable[[argparse.Namespace], int]


def exit_codes_epilog() -> str:
    """The ``exit codes:`` block of ``hpcwrap --help``, one code a line, from ``EXIT_CODES``."""
    table = exit_code_table()
    width = max(len(str(code)) for code, _meaning in table)
    lines = ["exit codes:"]
    lines += [f"  {code:>{width}} {meaning}" for code, meaning in table]
    lines.append("  `hpcwrap run` exits with its command's status (128+N when killed by signal N).")
    return "\n".join(lines) + "\n"


def build_parser(command: str | None = "") -> argparse.ArgumentParser:
    """The parser; ``command``: the one command whose module is loaded (the others get a
    stand-in that carries only their help line); ``""``: every module (for tests and
    documentation)."""
    parser = argparse.ArgumentParser(
        prog="hpcwrap",
        description="Run logs that keep themselves for ML training on Slurm clusters.",
        epilog=exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hpcwrap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, help_line in COMMANDS.items():
        if command == "" or name == command:
            module = importlib.import_module(f"hpcwrap.cli.{name}_cmd")
            module.register(sub)
        else:
            sub.add_parser(name, help=help_line, add_help=False)
    return parser


def command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option (None: none)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


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
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command_in(words))
    args = parser.parse_args(words)
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
