"""Options a newer sbatch has beyond the built-in table (22.05's), learnt from the sbatch installed.

Two kinds of test:

- ``fake_sbatch_24_11``: a stand-in for Slurm 24.11's sbatch (only 22.05 runs here):
  a shell script that prints a --help with 24.11's new options and answers the
  getopt probes with glibc's messages. It shows the split, the cache and the
  fallback; it cannot show that 24.11 answers this way (the Slurm matrix does).
- The real sbatch installed here: every long option its --help or --usage lists is
  classified (flag or value) the way its own getopt treats it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from hpcwrap.errors import AmbiguousOptionError
from hpcwrap.scheduler import installed_sbatch
from hpcwrap.scheduler.optspec import OptSpec
from hpcwrap.scheduler.sbatch_options import (
    BUILT_IN,
    Arg,
    lookup_long,
    merged,
    split_command_line,
)

OWN = {"mode": True, "objective": True, "dry-run": False}

# Slurm 24.11's options that 22.05 lacks, with how its getopt takes them (sbatch's
# opt table: required_argument / optional_argument / no_argument).
NEW_IN_24_11 = {
    "tres-per-task": "required",
    "tres-bind": "required",
    "container-id": "required",
    "oom-kill-step": "optional",
    "resv-ports": "optional",
}

_HELP = """\
Usage: sbatch [OPTIONS(0)...] [ : [OPTIONS(N)...]] script(0) [args(0)...]

Parallel run options:
  -a, --array=indexes         job array index values
  -A, --account=name          charge job to specified account
      --container             Path to OCI container bundle
      --container-id          OCI container ID
  -H, --hold                  submit job in held state
      --oom-kill-step[=0|1]   set the OOMKillStep behaviour
      --resv-ports            reserve communication ports
  -t, --time=minutes          time limit
      --tres-bind=...         task to tres binding options
      --tres-per-task=list    list of tres required per task
                              --tres-per-task is a continuation, not an option line
"""


def _fake_sbatch(folder: Path, *, broken: bool = False) -> Path:
    """An executable ``sbatch`` in ``folder`` (see the module docstring); calls logged."""
    known = {"array": "required", "account": "required", "container": "required"}
    known |= {"hold": "none", "time": "required", "usage": "none", "help": "none"}
    known |= {"test-only": "none"} | NEW_IN_24_11
    fatal = "echo 'sbatch: fatal: Could not establish a configuration source' >&2; exit 1"
    cases = "\n".join(f"            {n}) echo {t} ;;" for n, t in known.items())
    body = f"""\
        #!/bin/bash
        echo "$*" >> "{folder}/calls.log"
        {fatal if broken else ""}
        kind() {{
          case "$1" in
{cases}
            *) echo unknown ;;
          esac
        }}
        for word in "$@"; do
          name="${{word#--}}"; name="${{name%%=*}}"
          case "$word" in
            --help) cat "{folder}/help.txt"; exit 0 ;;
            --usage) echo "Usage: sbatch [--tres-per-task=list] [--hold]"; exit 0 ;;
          esac
          k=$(kind "$name")
          if [ "$k" = unknown ]; then
            echo "sbatch: unrecognized option '--$name'" >&2; exit 255
          fi
          if [ "$k" = none ] && [ "$word" != "--$name" ]; then
            echo "sbatch: option '--$name' doesn't allow an argument" >&2; exit 255
          fi
          last="$word"; lastkind="$k"
        done
        if [ "$lastkind" = required ] && [[ "$last" != *=* ]]; then
          echo "sbatch: option '$last' requires an argument" >&2; exit 255
        fi
        echo "sbatch: error: Batch script is empty!" >&2; exit 1
        """
    (folder / "help.txt").write_text(_HELP)
    sbatch = folder / "sbatch"
    sbatch.write_text(textwrap.dedent(body))
    sbatch.chmod(0o755)
    return sbatch


@pytest.fixture
def fake_24_11(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_sbatch(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(installed_sbatch, "_memo", {})
    return bin_dir


def _calls(bin_dir: Path) -> list[str]:
    log = bin_dir / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_fake_sbatch_24_11_options_with_a_space_are_split_as_it_splits_them(
    fake_24_11: Path,
) -> None:
    cl = split_command_line(["--tres-per-task", "cpu:2", "-t", "5", "t.sh", "a"], OWN)
    assert cl.script == "t.sh" and cl.script_args == ("a",)
    assert cl.sbatch == ("--tres-per-task", "cpu:2", "-t", "5")
    assert [(o.key, o.value) for o in cl.opts] == [("tres-per-task", "cpu:2"), ("time", "5")]
    # an optional value is never a separate word, as getopt has it
    cl = split_command_line(["--oom-kill-step", "t.sh"], OWN)
    assert cl.script == "t.sh" and cl.opts[0].key == "oom-kill-step"
    # a prefix ambiguous only on the newer sbatch is ambiguous here too
    with pytest.raises(AmbiguousOptionError):
        lookup_long("tres")


def test_fake_sbatch_24_11_types_come_from_its_getopt_not_its_help(fake_24_11: Path) -> None:
    learnt = installed_sbatch.installed()
    assert learnt is not None
    said = {o.name: o.arg for o in learnt.options}
    # --container-id shows no value in the help, yet getopt requires one
    assert {n: said[n] for n in NEW_IN_24_11} == {n: Arg(k) for n, k in NEW_IN_24_11.items()}
    assert said["hold"] is Arg.NONE and said["time"] is Arg.REQUIRED
    assert {o.name: o.short for o in learnt.options}["array"] == "a"


def test_fake_sbatch_24_11_is_asked_once_per_binary(fake_24_11: Path) -> None:
    first = installed_sbatch.installed()
    asked = len(_calls(fake_24_11))
    assert asked > 0
    split_command_line(["--tres-per-task", "cpu:2", "--part=x", "t.sh"], OWN)
    assert len(_calls(fake_24_11)) == asked  # this process asked once
    installed_sbatch._memo.clear()  # a new process: the cache file answers
    assert installed_sbatch.installed() == first
    assert len(_calls(fake_24_11)) == asked
    # An upgraded sbatch (another size or time) is asked again.
    sbatch = fake_24_11 / "sbatch"
    later = time.time() + 5
    os.utime(sbatch, (later, later))
    installed_sbatch._memo.clear()
    assert installed_sbatch.installed() == first
    assert len(_calls(fake_24_11)) > asked


def test_what_the_installed_sbatch_says_goes_over_the_built_in_table() -> None:
    # Slurm 26.05 as run here: --requeue takes an optional value, --get-user-env is a
    # flag, --power is gone (24.11 already), --tres-per-task is new.
    learnt = installed_sbatch.Learnt(
        (
            OptSpec("requeue", Arg.OPTIONAL),
            OptSpec("get-user-env", Arg.NONE),
            OptSpec("tres-per-task", Arg.REQUIRED),
            OptSpec("time", Arg.REQUIRED, "t"),
        ),
        frozenset({"power"}),
    )
    table = merged(learnt)
    assert table.long["requeue"].arg is Arg.OPTIONAL
    assert table.long["requeue"].env == ("SBATCH_REQUEUE",)  # the rest of the entry stays
    assert table.long["get-user-env"].arg is Arg.NONE
    assert "power" not in table.long and "tres-per-task" in table.long
    assert table.long["context"].arg is Arg.REQUIRED  # not in its help: the built-in entry
    assert table.short["t"].name == "time" and table.short["p"].name == "partition"
    assert merged(None) is BUILT_IN


def test_fake_sbatch_without_a_configuration_leaves_the_built_in_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_sbatch(bin_dir, broken=True)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(installed_sbatch, "_memo", {})
    cl = split_command_line(["--tres-per-task", "cpu:2", "t.sh"], OWN)
    assert cl.script == "cpu:2" and cl.opts[0].spec is None  # as on 22.05
    assert not (tmp_path / "cache").exists()  # a failure is not cached


def test_help_lines_give_names_and_short_letters() -> None:
    text = (
        "  -B  --extra-node-info=S[:C[:T]]  combine\n"
        "  -a, --array=indexes         job array\n"
        "      --hold                  held\n"
        "                              --not-an-option in a description\n"
    )
    assert installed_sbatch.listed(text, "Usage: [--mem-bind=...] [--hold]") == {
        "extra-node-info": "B",
        "array": "a",
        "hold": None,
        "mem-bind": None,
    }


# ---------------------------------------------------------------- the real sbatch

SBATCH = shutil.which("sbatch")


def _getopt(args: list[str], env: dict[str, str]) -> str:
    assert SBATCH is not None
    proc = subprocess.run(
        [SBATCH, "--test-only", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc.stderr


@pytest.mark.skipif(SBATCH is None, reason="sbatch is not installed")
def test_every_option_the_installed_sbatch_lists_is_classified_as_its_getopt_does(
    oracle_env: dict[str, str],
) -> None:
    assert SBATCH is not None
    texts = [
        subprocess.run([SBATCH, flag], env=oracle_env, capture_output=True, text=True).stdout
        for flag in ("--help", "--usage")
    ]
    names = installed_sbatch.listed(*texts)
    assert len(names) > 80, texts[0][:500]
    learnt = installed_sbatch.installed()
    assert learnt is not None
    said = {o.name: o.arg for o in learnt.options}
    for name in names:
        with_value = _getopt([f"--{name}=x", "--usage"], oracle_env)
        if f"unrecognized option '--{name}" in with_value:
            # Listed but gone (24.11's help still shows --power, removed in 23.11)
            assert name in learnt.gone and name not in said, name
            continue
        truth = Arg.NONE
        if f"option '--{name}' doesn't allow an argument" not in with_value:
            alone = _getopt([f"--{name}"], oracle_env)
            required = f"option '--{name}' requires an argument" in alone
            truth = Arg.REQUIRED if required else Arg.OPTIONAL
        assert said[name] is truth, name  # what hpcwrap learnt is what getopt does
        # and the split hpcwrap makes takes a separate value word exactly when sbatch does
        spec = lookup_long(name)
        assert spec is not None and spec.name == name, name
        assert (spec.arg is Arg.REQUIRED) == (truth is Arg.REQUIRED), name
