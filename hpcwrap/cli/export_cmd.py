"""`hpcwrap export RUN [-o TRAINING_LOG.md]`: the run log sanitized for the public;
`--check FILE`: fail when a file still holds something sensitive (for a model repo's CI)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hpcwrap.cli.run_options import command_settings, lock_config
from hpcwrap.errors import SensitiveDataError, UsageError

DESCRIPTION = """\
Write a sanitized copy of a run log, for a public TRAINING_LOG.md. Removed, each
replaced by a placeholder that keeps the meaning: Slurm job ids (<job-id>), node
names (<node1>, <node2>, ...), home/scratch/project/work paths (<scratch>/ckpt/30000),
usernames, hostnames, cluster names, wandb_id.txt references, secrets (API keys,
W&B keys, hf_ tokens, AWS keys, passwords, bearer tokens) and emails. Kept: the
training dynamics (steps, losses, loss_one_liner, runtime), the config and the W&B
links (the public project's URL in place of the private one when the log records
one). A summary of what was removed, by kind and count, goes to stderr.

--check FILE exits 19 when FILE still holds anything export would remove,
listing each line and kind (with RUN, that run's job ids, nodes and users too).
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "export",
        help="a sanitized copy of a run log for the public (TRAINING_LOG.md)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", nargs="?", help="path, file name or unique prefix of the run log")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    p.add_argument(
        "--check", metavar="FILE", help="exit non-zero if FILE still holds anything sensitive"
    )
    p.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME",
        help="another username to remove (repeatable; yours and the log owner's always are)",
    )
    p.add_argument(
        "--host", action="append", default=[], metavar="NAME", help="another hostname to remove"
    )
    p.add_argument("--run-logs", metavar="DIR", help="run_logs folder (default: ./run_logs)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from hpcwrap.publish.export import context_for, export_text, local_hosts, local_users
    from hpcwrap.publish.sanitize import Context, check, plural
    from hpcwrap.runlog import open_run
    from hpcwrap.runlog.fsio import write_atomic

    if args.run is None and args.check is None:
        raise UsageError("name a run to export, or --check FILE")
    log = None
    if args.run is not None:
        settings = command_settings(Path.cwd())
        root = Path(args.run_logs).expanduser() if args.run_logs else settings.run_logs
        log = open_run(args.run, root, locks=lock_config(settings))
    users, hosts = set(args.user), set(args.host)

    if args.check is not None:
        path = Path(args.check)
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except OSError as exc:
            raise UsageError(f"--check {path}: cannot read it ({exc.strerror})") from None
        ctx = Context(users=users, hosts=hosts)
        if log is not None:
            ctx = context_for(
                log, log.read(), users=local_users(log.path) | users, hosts=local_hosts() | hosts
            )
        left = check(text, ctx)
        for item in left:
            print(f"{path}:{item.line}: {', '.join(plural(k) for k in item.kinds)}")
        if left:
            raise SensitiveDataError(
                f"{path}: {len(left)} line(s) still hold something sensitive "
                "(run hpcwrap export on the run log to make a clean copy)"
            )
        print(f"{path}: nothing sensitive found", file=sys.stderr)
        return 0

    assert log is not None
    text, summary = export_text(log, users=users, hosts=hosts)
    if args.output:
        out = Path(args.output)
        if out.resolve() == log.path.resolve():
            raise UsageError("-o names the run log itself: export writes a separate copy")
        write_atomic(out, text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    for line in summary.lines():
        print(f"export: {line}", file=sys.stderr)
    return 0
