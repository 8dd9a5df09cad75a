"""`hpcwrap sbatch`: sbatch with a memory.

argparse cannot split ``[hpcwrap options] [sbatch options] script [args]``
(it would take sbatch's options, and the script's, for its own), so the
subcommand takes its words raw and ``hpcwrap.scheduler.sbatch_options.split_command_line``
splits them with sbatch's option table; the words found to be hpcwrap's are
then parsed by an ordinary argparse parser, which also makes ``--help``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcwrap.cli.run_options import (
    add_run_options,
    command_settings,
    lock_config,
    request_from_args,
)
from hpcwrap.errors import EXIT_INTERRUPTED, HpcwrapError, UsageError, exit_code_for
from hpcwrap.scheduler import SCHEDULERS, SubmitInterrupted, SubmitResult

if TYPE_CHECKING:
    from hpcwrap.runlog import RunLog
    from hpcwrap.submit import submission as submit

# The sbatch release whose option table scheduler/sbatch_options.py holds (a test checks they agree;
# that module and the run-log code load only when `hpcwrap sbatch` runs, not for --help).
SBATCH_VERSION_CHECKED = "22.05.8"

DESCRIPTION = """\
Submit a batch script through sbatch, with its run log written first.

Before sbatch runs, the run log is created (run_logs/<group>/<date>_<task>.md):
mode, objective, config (copied with its sha256), code state (git commit,
branch, dirty diff saved in the sidecar), an experiment tag for --mode
experiment. The job id is written into it as soon as sbatch prints it.
"""

EPILOG = f"""\
how the words are split:
  hpcwrap sbatch [hpcwrap options] [sbatch options] script [script args]

  Before the script, a word is an hpcwrap option only when it is one of the
  options above spelled in full (--mode X or --mode=X; never abbreviated).
  Every other option is sbatch's and is passed to sbatch untouched, with its
  value: sbatch's table of options ({SBATCH_VERSION_CHECKED}; for an option it
  lacks, the installed sbatch's own getopt) tells which take one, so in
  `-J --mode` the job name is "--mode". The first word that is neither
  an option nor an option's value is the script; `--` ends the options
  (`hpcwrap sbatch -p debug -- -odd-name.sh`). Everything after the script
  goes to the script, hpcwrap options included. Writing hpcwrap's options
  first is clearest.

  hpcwrap's option names collide with no sbatch 22.05 option. One collides with
  an abbreviation: sbatch reads `--task` as `--tasks-per-node`; here --task is
  hpcwrap's (the run's name), so spell sbatch's out: --ntasks-per-node
  (a numeric --task is refused as that mistake).
  Options a newer sbatch adds (--tres-per-task cpu:2) are learnt from the
  sbatch on PATH (cached per binary). Options no sbatch here knows are passed
  through as flags; write them as --option=value.

what hpcwrap adds (as #SBATCH lines placed before the script's own, so any
setting of yours, on the command line, in SBATCH_* variables or in the
script, wins):
  --job-name=<script file name>   (sbatch's default; the job runs a copy)
  --comment=hpcwrap:<run log>     (for the node hooks)
  --open-mode=append              (one output file across requeues)
  --signal=B:USR2@300             (walltime warning; walltime_signal and
                                   walltime_lead in hpcwrap.toml)
  and --parsable on the command line, to read the job id.

  The job runs `python -m hpcwrap run --log <run log> -- <copy of the script>
  <args>`: the copy (in the run's sidecar) keeps the script as submitted.
  Output files are where sbatch puts them (default slurm-%j.out in the
  submit directory). The script itself is not changed: plain sbatch still
  runs it.

output:
  "Submitted batch job <id>" and the run log's path; with --json one object
  {{"job_id", "cluster", "execution_id", "run_log", "job_script", "output",
  "error", "notes"}}. With sbatch's --parsable, stdout is exactly what
  sbatch's would be ("<id>" or "<id>;<cluster>") and hpcwrap's own lines go
  to stderr, so jid=$(hpcwrap sbatch --parsable ...) works (--parsable with
  --json is refused). With sbatch's --wait, hpcwrap waits too and exits with
  sbatch's status. When sbatch refuses the job, the run log says "submit
  failed" with sbatch's message, and hpcwrap exits 8 with that message; with
  --json it also prints {{"job_id": null, "run_log", "error", "exit_code"}}.
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser for hpcwrap's own options of `hpcwrap sbatch` (and its --help)."""
    p = argparse.ArgumentParser(
        prog="hpcwrap sbatch",
        usage="hpcwrap sbatch [hpcwrap options] [sbatch options] script [script args]",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add_run_options(p)
    g = p.add_argument_group("submission")
    g.add_argument("--json", action="store_true", help="print the result as one JSON object")
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="print the batch script and the sbatch command; write and submit nothing",
    )
    g.add_argument(
        "--strict",
        action="store_true",
        help="--mode experiment: refuse when the same config and --set values already ran and "
        "were marked discard or failed in experiments.md (default: warn; or preflight = "
        '"strict" in hpcwrap.toml)',
    )
    g.add_argument(
        "--walltime-signal",
        metavar="SIG[@LEAD]",
        help="walltime warning signal and lead, e.g. USR2@5m (default: from hpcwrap.toml, "
        "USR2@300)",
    )
    g.add_argument(
        "--no-walltime-signal",
        action="store_true",
        help="do not ask Slurm for a walltime warning signal",
    )
    r = p.add_argument_group(
        "walltime resume (see `hpcwrap resume --help`)",
        "With --resume auto every job of the run submits its successor as it starts "
        "(--dependency=afternotok:<itself>); at the walltime warning the training saves "
        "a checkpoint and exits, and the successor continues it in the same run log "
        "under '## Job (resumed)'. The training learns where from: HPCWRAP_RESUME_FROM "
        "and LOAD_CKPT_PATH in its environment, and --resume-arg added to its command.",
    )
    r.add_argument(
        "--resume",
        choices=("auto", "off"),
        default="off",
        help="auto: continue in successor jobs until the training completes (default off)",
    )
    r.add_argument(
        "--max-resumes",
        type=int,
        default=3,
        metavar="N",
        help="at most N successor jobs (default 3)",
    )
    r.add_argument(
        "--resume-arg",
        metavar="TEMPLATE",
        help="added to the command of a resumed job, {checkpoint} replaced by the path, "
        "e.g. '--resume-from {checkpoint}'; without {checkpoint} added as it is, for a "
        "training that resumes from its own folder (e.g. '--init_from=resume')",
    )
    r.add_argument(
        "--checkpoint-glob",
        metavar="GLOB",
        help="where checkpoints are, relative to the submit folder, for when the output "
        "does not say (newest complete match)",
    )
    g.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        default="slurm",
        help="slurm (default), or local: run the batch script detached on this machine",
    )
    return p


def own_options(parser: argparse.ArgumentParser) -> dict[str, bool]:
    """hpcwrap's long option names -> whether each takes a value."""
    own: dict[str, bool] = {}
    for action in parser._actions:  # argparse has no public list of its options
        for opt in action.option_strings:
            if opt.startswith("--"):
                own[opt[2:]] = action.nargs != 0
    return own


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "sbatch",
        help="submit a batch script through sbatch, with its run log written first",
        description=DESCRIPTION,
        # No option prefix: every word goes to the handler, which splits them itself.
        prefix_chars="\0",
        add_help=False,
    )
    p.add_argument("words", nargs=argparse.REMAINDER)
    p.set_defaults(handler=handle)


def _wants_help(words: list[str], own: tuple[str, ...], keys: list[str | None]) -> bool:
    return "--help" in own or "help" in keys or (not words)


def handle(args: argparse.Namespace) -> int:
    from hpcwrap.scheduler.sbatch_options import split_command_line
    from hpcwrap.submit import submission as submit

    words: list[str] = list(args.words)
    parser = build_parser()
    cl = split_command_line(words, own_options(parser))
    if _wants_help(words, cl.own, [o.key for o in cl.opts]):
        parser.print_help()
        return 0 if words else 2
    ns = parser.parse_args(list(cl.own))
    if ns.task is not None and ns.task.strip().isdigit():
        # sbatch reads --task=N as --tasks-per-node=N; a run named "4" is surely that mistake.
        raise UsageError(
            f"--task {ns.task}: hpcwrap's --task names the run (e.g. --task train); "
            f"for sbatch's tasks per node write --ntasks-per-node={ns.task.strip()}"
        )
    from hpcwrap.submit import flow

    cwd = Path.cwd()
    settings = command_settings(cwd)
    # The user's own --parsable: stdout is exactly sbatch's ("69" or "69;cluster"), so
    # `jid=$(hpcwrap sbatch --parsable ...)` works; hpcwrap's own lines go to stderr.
    parsable = any(o.key == "parsable" for o in cl.opts)
    if parsable and ns.json:
        raise UsageError("--parsable and --json both say what to print: choose one")
    chain = None
    if ns.resume == "auto":
        chain = flow.ChainRequest(ns.max_resumes, ns.resume_arg, ns.checkpoint_glob)
    req = flow.SbatchRequest(
        command=cl,
        request=request_from_args(ns, settings),
        settings=settings,
        cwd=cwd,
        environ=os.environ,
        scheduler=ns.scheduler,
        strict=ns.strict,
        walltime_signal=ns.walltime_signal,
        no_walltime_signal=ns.no_walltime_signal,
        chain=chain,
    )
    planned = flow.plan(req)
    if ns.dry_run:
        return _print_dry_run(
            submit.dry_run(planned.request, planned.prep, scheduler=planned.scheduler), ns.json
        )

    def announce(result: SubmitResult, exec_id: str, log: RunLog) -> None:
        if ns.json:
            return
        # Printed at once, before an sbatch --wait starts waiting.
        if parsable:
            job = f"{result.job_id};{result.cluster}" if result.cluster else result.job_id
            print(job, flush=True)
            print(f"hpcwrap: run log: {log.path}", file=sys.stderr, flush=True)
            return
        print(f"Submitted batch job {result.job_id}", flush=True)
        print(f"run log: {log.path}", flush=True)

    log = flow.create_log(planned, locks=lock_config(settings))
    try:
        done = flow.submit(req, planned, log, announce=announce)
    except SubmitInterrupted as exc:
        print(f"hpcwrap: interrupted: {exc.detail}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except HpcwrapError as exc:
        if ns.json:  # one object on stdout for scripts; the message on stderr as always
            print(json.dumps(_error_object(exc, log.path)), flush=True)
        raise
    outcome = done.outcome
    for warning in done.warnings:
        print(f"hpcwrap: warning: {warning}", file=sys.stderr)
    for line in done.notes:  # the follow-up job
        print(f"hpcwrap: {line}", file=sys.stderr)
    for note in outcome.notes:
        print(f"hpcwrap: note: {note}", file=sys.stderr)
    if outcome.result.messages:
        print(outcome.result.messages, file=sys.stderr)
    if ns.json:
        facts = outcome.facts
        print(
            json.dumps(
                {
                    "job_id": outcome.result.job_id,
                    "cluster": outcome.result.cluster,
                    "execution_id": outcome.execution_id,
                    "run_log": str(outcome.log.path),
                    "job_script": str(outcome.job_script),
                    "output": facts.get("output_path"),
                    "error": facts.get("error_path"),
                    "scheduler": planned.scheduler.name,
                    "returncode": outcome.result.returncode,
                    "notes": list(outcome.notes),
                }
            )
        )
    return outcome.result.returncode


def _error_object(exc: HpcwrapError, run_log: Path) -> dict[str, Any]:
    from hpcwrap.redact import redact_text

    return {
        "job_id": None,
        "run_log": str(run_log),
        "error": redact_text(str(exc)),
        "exit_code": exit_code_for(exc),
    }


def _print_dry_run(dry: submit.DryRun, as_json: bool) -> int:
    if as_json:
        print(
            json.dumps(
                {
                    "dry_run": True,
                    "run_log": str(dry.run_log),
                    "job_script": dry.job_script,
                    "command": dry.command,
                    "code": dry.code,
                    "output": dry.facts.get("output"),
                    "error": dry.facts.get("error"),
                    "notes": list(dry.notes),
                }
            )
        )
        return 0
    print(f"# run log (would be created): {dry.run_log}")
    print(f"# code: {dry.code}")
    for note in dry.notes:
        print(f"# note: {note}")
    print(f"# sbatch command:\n{shlex.join(dry.command)}")
    print("# batch script (job.sh):")
    sys.stdout.write(dry.job_script)
    return 0
