"""`hpcwrap publish check|package|record`: the passport/signoff gate, the public package
and the `## HuggingFace` record (with an optional upload through huggingface_hub)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hpcwrap.cli.run_options import command_settings, lock_config
from hpcwrap.errors import UsageError

DESCRIPTION = """\
A checkpoint is published only after MODEL_PASSPORT.json and SIGNOFF.json exist
beside it (in the checkpoint folder or the one above; --passport/--signoff say
where else) and validate: both parse, the verdict is pass or soft_signal (with
its verdict_reason), and the sha256 SIGNOFF.json lists for the passport and
every weight file match the files on disk. Every subcommand checks this first
and refuses (exit 18), naming the file and the problem, before it copies,
packages, uploads or records anything. hpcwrap never writes either file.
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", metavar="N,N", help="steps beside the recorded checkpoint")
    p.add_argument("--passport", metavar="FILE", help="MODEL_PASSPORT.json, if not beside it")
    p.add_argument("--signoff", metavar="FILE", help="SIGNOFF.json, if not beside it")
    p.add_argument("--run-logs", metavar="DIR", help="run_logs folder (default: ./run_logs)")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "publish",
        help="passport/signoff gate, public package, HuggingFace record",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ps = p.add_subparsers(dest="publish_command", metavar="<subcommand>")
    c = ps.add_parser("check", help="run the gate on a run's checkpoint(s) or a folder")
    c.add_argument("target", help="a run log, a checkpoint folder or a package folder")
    _common(c)
    c.set_defaults(handler=handle_check)

    k = ps.add_parser("package", help="lay out the public package (after the gate)")
    k.add_argument("run", help="path, file name or unique prefix of the run log")
    k.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder")
    k.add_argument(
        "--asset",
        action="append",
        default=[],
        metavar="PATH",
        help="a file or folder for assets/ (norm stats, dataset list, ...); repeatable",
    )
    k.add_argument(
        "--full", action="store_true", help="the whole checkpoint folders, not only params/"
    )
    k.add_argument("--user", action="append", default=[], metavar="NAME", help=argparse.SUPPRESS)
    _common(k)
    k.set_defaults(handler=handle_package)

    r = ps.add_parser("record", help="write the run log's ## HuggingFace section")
    r.add_argument("run", help="path, file name or unique prefix of the run log")
    r.add_argument("--hf-repo", required=True, metavar="USER/REPO")
    r.add_argument("--uploaded", metavar="TEXT", help="which steps, params only or full")
    r.add_argument("--includes", metavar="TEXT", help="README, TRAINING_LOG, ... (what went up)")
    r.add_argument(
        "--from", dest="package", metavar="DIR", help="the package folder (publish package)"
    )
    r.add_argument(
        "--upload",
        action="store_true",
        help="upload --from DIR with huggingface_hub first (extra 'hf'; its own login)",
    )
    _common(r)
    r.set_defaults(handler=handle_record)
    p.set_defaults(handler=lambda args: _no_sub(p))


def _no_sub(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _path(text: str | None) -> Path | None:
    return Path(text).expanduser() if text else None


def _open(args: argparse.Namespace, spec: str) -> Any:
    from hpcwrap.runlog import open_run

    settings = command_settings(Path.cwd())
    root = Path(args.run_logs).expanduser() if args.run_logs else settings.run_logs
    return open_run(spec, root, locks=lock_config(settings))


def _print_checks(result: Any) -> None:
    for c in result.checks:
        print(f"{'ok  ' if c.ok else 'FAIL'} {c.what}: {c.detail}")


def _is_package(folder: Path) -> bool:
    return (folder / "SIGNOFF.json").is_file() and (folder / "checkpoints").is_dir()


def handle_check(args: argparse.Namespace) -> int:
    from hpcwrap.publish.checkpoints import parse_steps
    from hpcwrap.publish.gate import check_gate
    from hpcwrap.publish.package import gate_steps

    target = Path(args.target).expanduser()
    passport, signoff = _path(args.passport), _path(args.signoff)
    if target.is_dir():
        if args.steps:
            raise UsageError("--steps goes with a run; this names one folder")
        result = check_gate(target, passport=passport, signoff=signoff, package=_is_package(target))
        what = str(target)
    else:
        log = _open(args, args.target)
        _, result = gate_steps(log, parse_steps(args.steps), passport=passport, signoff=signoff)
        what = log.path.name
    _print_checks(result)
    result.require(f"pass {what}")
    print(f"publish check: {what}: the gate passed (verdict {result.verdict})")
    return 0


def handle_package(args: argparse.Namespace) -> int:
    from hpcwrap.publish.checkpoints import parse_steps
    from hpcwrap.publish.package import build

    log = _open(args, args.run)
    pkg = build(
        log,
        Path(args.out).expanduser(),
        steps=parse_steps(args.steps),
        assets=[Path(a).expanduser() for a in args.asset],
        params_only=not args.full,
        passport=_path(args.passport),
        signoff=_path(args.signoff),
        users=set(args.user),
    )
    for rel, digest in sorted(pkg.files.items()):
        print(f"{digest}  {rel}")
    print(
        f"publish package: {pkg.out}: {len(pkg.files)} files, every copy verified by sha256; "
        f"verdict {pkg.gate.verdict}"
    )
    for line in pkg.export.lines():
        print(f"TRAINING_LOG.md {line}", file=sys.stderr)
    return 0


def _package_facts(folder: Path) -> tuple[str, str]:
    """``uploaded`` and ``includes`` read from a package folder's contents."""
    steps = sorted(
        (d for d in (folder / "checkpoints").iterdir() if d.is_dir()), key=lambda d: d.name
    )
    params_only = all({c.name for c in d.iterdir()} == {"params"} for d in steps)
    kind = "params only" if params_only else "full"
    uploaded = f"{', '.join(d.name for d in steps)} ({kind})"
    names = [n for n in ("README", "TRAINING_LOG") if (folder / f"{n}.md").is_file()]
    names += ["MODEL_PASSPORT.json", "SIGNOFF.json"]
    if (folder / "assets").is_dir():
        names.append("assets")
    return uploaded, ", ".join(names)


def handle_record(args: argparse.Namespace) -> int:
    from hpcwrap.publish.checkpoints import parse_steps
    from hpcwrap.publish.gate import check_gate
    from hpcwrap.publish.package import gate_steps
    from hpcwrap.publish.record import HUB, record, repo_id, upload, uploaded_words

    log = _open(args, args.run)
    rid = repo_id(args.hf_repo)
    folder = _path(args.package)
    uploaded, includes = args.uploaded, args.includes
    if folder is not None:
        if not _is_package(folder):
            raise UsageError(f"--from {folder}: not a package made by hpcwrap publish package")
        got_uploaded, got_includes = _package_facts(folder)
        uploaded, includes = uploaded or got_uploaded, includes or got_includes
    if not uploaded or not includes:
        raise UsageError("say what was published: --uploaded and --includes (or --from DIR)")
    if args.upload:
        if folder is None:
            raise UsageError("--upload needs --from DIR (the folder publish package made)")
        gate = upload(folder, rid)
        print(f"publish record: uploaded {folder} to {HUB}/{rid}")
    elif folder is not None:
        gate = check_gate(folder, package=True)
    else:
        _, gate = gate_steps(
            log,
            parse_steps(args.steps),
            passport=_path(args.passport),
            signoff=_path(args.signoff),
        )
    if not gate.ok:
        _print_checks(gate)
    words = uploaded_words(uploaded, by_hpcwrap=args.upload, package=folder)
    record(log, repo=rid, uploaded=words, includes=includes, gate=gate)
    print(f"publish record: {log.path}: ## HuggingFace written (verdict {gate.verdict})")
    return 0
