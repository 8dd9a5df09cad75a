"""`hpcwrap wandb sync`: upload offline W&B runs to a destination chosen on purpose."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from hpcwrap.cli.run_options import RUN_LOGS_HELP, command_settings, lock_config
from hpcwrap.errors import UsageError

SYNC_HELP = """\
Upload the offline W&B runs of run logs (or offline run folders) with `wandb beta sync`.

First the plan: where each offline run goes (entity/project, one W&B run id per run:
the offline pieces of a resume chain become one run), sizes and largest files, the
artifact staging files to remove after the sync, and the exact wandb command.
--dry-run prints it and changes nothing; --yes syncs. Without either, nothing happens.

The destination is explicit: --entity/--project, else wandb_entity/wandb_project in
the run log's key settings (--set at submission) or in hpcwrap.toml; never what the
offline run embeds. A generic project name (test, default, uncategorized, ...) or a
destination other than the one the offline run names needs --force.

The key comes from --wandb-token-file, else ~/.wandb_token, else ~/.wandb_key (mode
600: a file readable by group or others is refused) and reaches wandb only in its
environment. After a successful sync the run URL goes into the run log (each job
block and the W&B section) and that run's artifact staging is removed; a synced run
is skipped next time unless --force.
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "wandb",
        help="sync offline W&B runs to a chosen entity/project, recording the URL",
        description="W&B offline runs: `hpcwrap wandb sync --help`.",
    )
    wsub = p.add_subparsers(dest="wandb_command", metavar="<subcommand>")
    s = wsub.add_parser(
        "sync",
        help="upload offline W&B runs (plan first; --dry-run or --yes)",
        description=SYNC_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("targets", nargs="+", metavar="RUN_LOG|OFFLINE_RUN_DIR")
    s.add_argument("--entity", metavar="E", help="W&B entity (team or user) to sync to")
    s.add_argument("--project", metavar="P", help="W&B project to sync to")
    s.add_argument("--wandb-token-file", metavar="F", help="file holding the W&B key (mode 600)")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    how.add_argument("--yes", action="store_true", help="sync as planned")
    s.add_argument(
        "--force",
        action="store_true",
        help="confirm a generic project or one the offline run does not name; sync again",
    )
    s.add_argument(
        "--public-project", metavar="P2", help="also mirror the run to project P2, for sharing"
    )
    s.add_argument("--max-runs", type=int, default=50, metavar="N", help="offline runs per call")
    s.add_argument("--max-gb", type=float, default=20.0, metavar="G", help="GiB per call")
    s.add_argument(
        "--timeout", type=float, default=3600.0, metavar="S", help="seconds per wandb call"
    )
    s.add_argument("--run-logs", metavar="DIR", help=RUN_LOGS_HELP)
    s.set_defaults(handler=_sync)
    p.set_defaults(handler=lambda _a: _no_subcommand(p))


def _no_subcommand(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _sync(args: argparse.Namespace) -> int:
    from hpcwrap.runlog import open_run
    from hpcwrap.wandb import plan as wplan
    from hpcwrap.wandb import sync as wsync
    from hpcwrap.wandb.offline import fmt_bytes

    if args.max_runs < 1 or args.max_gb <= 0 or args.timeout <= 0:
        raise UsageError("--max-runs, --max-gb and --timeout must be positive")
    settings = command_settings(Path.cwd())
    root = Path(args.run_logs).expanduser() if args.run_logs else settings.run_logs
    locks = lock_config(settings)
    targets = [
        wplan.target_for(spec, lambda s: open_run(s, root, locks=locks)) for spec in args.targets
    ]
    where = f"hpcwrap.toml ({settings.source})" if settings.source else "hpcwrap.toml"
    dest = wplan.destination(
        args.entity, args.project, targets, (settings.wandb_entity, settings.wandb_project, where)
    )
    limits = wplan.Limits(
        max_runs=args.max_runs, max_bytes=int(args.max_gb * 1024**3), timeout=args.timeout
    )
    plan = wplan.build_plan(
        targets,
        dest,
        public_project=args.public_project,
        force=args.force,
        limits=limits,
        key_file=args.wandb_token_file,
    )
    if plan.groups() and not plan.todo() and not plan.staged_now():
        done = sorted({p.synced_url or "" for g in plan.groups() for p in g.pieces})
        print(f"nothing to sync: already synced to {', '.join(done)} (add --force to sync again)")
        return 0
    cmd = wsync.wandb_command()
    version = wsync.wandb_version(cmd, os.environ)
    print(f"wandb: {cmd} ({'.'.join(map(str, version))})")
    print(wplan.plan_text(plan, cmd))
    if plan.refusals:
        cls = plan.refusals[0][1]  # the first one's exit code; every message said
        raise cls("; ".join(message for message, _cls in plan.refusals))
    if args.dry_run:
        print("dry run: nothing was changed")
        return 0
    if not args.yes:
        raise UsageError("nothing was done: add --yes to sync as planned (or --dry-run)")
    sys.stdout.flush()
    report = wsync.execute(plan, cmd, os.environ, lambda line: print(line, file=sys.stderr))
    for group, url, public in report.synced:
        print(
            f"synced: W&B run {group.run_id} -> {url}" + (f" (public: {public})" if public else "")
        )
    size = sum(s.size or 0 for s in report.removed)
    print(f"removed: {len(report.removed)} staged artifact file(s), {fmt_bytes(size)}")
    for path in report.recorded:
        print(f"run log: {path}")
    return 0
