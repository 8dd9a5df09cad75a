"""sbatch option knowledge: the option table, the command-line split, #SBATCH reading.

Table-driven cases, plus oracle tests that ask the real sbatch binary (when
installed) how it reads the same option or #SBATCH line: sbatch parses its
options and the script's directives before it contacts any controller, and
its getopt errors name the option it matched. The oracle's slurm.conf points
at a port nothing listens on, and --test-only is given: no job can result.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hpcwrap.errors import AmbiguousOptionError, UsageError
from hpcwrap.scheduler.sbatch_options import (
    LONG,
    SBATCH_OPTIONS,
    SHORT,
    Arg,
    Resolved,
    check_batch_script,
    expand_pattern,
    lookup_long,
    parse_sbatch_args,
    quote_directive_arg,
    read_directives,
    resolve,
    split_command_line,
    walltime_signal_value,
)

OWN = {
    "mode": True,
    "objective": True,
    "task": True,
    "set": True,
    "config": True,
    "json": False,
    "dry-run": False,
    "help": False,
}


# ---------------------------------------------------------------- split_command_line

SPLITS = [
    # (argv, own, sbatch, script, script args)
    (["s.sh"], [], [], "s.sh", []),
    (["--mode", "x", "s.sh", "a"], ["--mode=x"], [], "s.sh", ["a"]),
    (["--mode=x", "-p", "debug", "s.sh"], ["--mode=x"], ["-p", "debug"], "s.sh", []),
    # hpcwrap options may follow sbatch options (full names only)
    (["-p", "debug", "--objective", "o", "s.sh"], ["--objective=o"], ["-p", "debug"], "s.sh", []),
    # attached short values, clusters of flags, separate values
    (["-t5", "-HQ", "-N", "2", "s.sh"], [], ["-t5", "-HQ", "-N", "2"], "s.sh", []),
    (["-Ht", "5", "s.sh"], [], ["-Ht", "5"], "s.sh", []),
    # long options with = and with a separate value
    (
        ["--time=5", "--partition", "debug", "s.sh"],
        [],
        ["--time=5", "--partition", "debug"],
        "s.sh",
        [],
    ),
    # abbreviated sbatch long options take their value as the full option would
    (["--part", "debug", "s.sh"], [], ["--part", "debug"], "s.sh", []),
    # values that look like options stay values
    (["-J", "--mode", "s.sh"], [], ["-J", "--mode"], "s.sh", []),
    (["--job-name", "-x", "s.sh"], [], ["--job-name", "-x"], "s.sh", []),
    (["--objective", "-5% loss", "s.sh"], ["--objective=-5% loss"], [], "s.sh", []),
    (["-o", "--", "s.sh"], [], ["-o", "--"], "s.sh", []),
    # optional-argument options never take a separate word
    (["--nice", "s.sh", "5"], [], ["--nice"], "s.sh", ["5"]),
    (["-k", "s.sh"], [], ["-k"], "s.sh", []),
    (["-koff", "s.sh"], [], ["-koff"], "s.sh", []),
    (["--exclusive=user", "s.sh"], [], ["--exclusive=user"], "s.sh", []),
    # "--" ends the options; the next word is the script even if it looks like one
    (["-p", "debug", "--", "-odd.sh", "--mode"], [], ["-p", "debug"], "-odd.sh", ["--mode"]),
    # everything after the script is the script's, hpcwrap's options included
    (["s.sh", "--mode", "x", "-p", "y"], [], [], "s.sh", ["--mode", "x", "-p", "y"]),
    # heterogeneous job separator
    (["-N1", ":", "-N2", "s.sh"], [], ["-N1", ":", "-N2"], "s.sh", []),
    # unknown options pass through; without "=" they are flags
    (["--future-opt=3", "--new-flag", "s.sh"], [], ["--future-opt=3", "--new-flag"], "s.sh", []),
    # flags of hpcwrap
    (["--json", "--dry-run", "s.sh"], ["--json", "--dry-run"], [], "s.sh", []),
    # no script
    (["-p", "debug"], [], ["-p", "debug"], None, []),
    # "--task" is hpcwrap's (sbatch would read it as --tasks-per-node)
    (["--task", "eval", "--tasks", "2", "s.sh"], ["--task=eval"], ["--tasks", "2"], "s.sh", []),
    # a script path with spaces and a path-looking first argument
    (["my dir/s s.sh", "-x"], [], [], "my dir/s s.sh", ["-x"]),
]


@pytest.mark.parametrize(("argv", "own", "sbatch", "script", "args"), SPLITS)
def test_split_command_line(
    argv: list[str], own: list[str], sbatch: list[str], script: str | None, args: list[str]
) -> None:
    cl = split_command_line(argv, OWN)
    assert list(cl.own) == own
    assert list(cl.sbatch) == sbatch
    assert cl.script == script
    assert list(cl.script_args) == args
    # the parsed options re-join to exactly the sbatch words
    assert [t for o in cl.opts for t in o.tokens] == sbatch


def test_split_reads_values() -> None:
    cl = split_command_line(["-Ht5", "--part", "debug", "-J", "--mode", "s.sh"], OWN)
    got = [(o.key, o.value) for o in cl.opts]
    assert got == [("hold", None), ("time", "5"), ("partition", "debug"), ("job-name", "--mode")]


@pytest.mark.parametrize("argv", [["-p"], ["--mode"], ["-J"], ["--time"]])
def test_missing_value_is_refused(argv: list[str]) -> None:
    with pytest.raises(UsageError, match="needs a value"):
        split_command_line(argv, OWN)


def test_ambiguous_prefix_is_refused_like_sbatch() -> None:
    with pytest.raises(AmbiguousOptionError) as err:
        split_command_line(["--mem-per=1G", "s.sh"], OWN)
    assert set(err.value.candidates) == {"mem-per-cpu", "mem-per-gpu"}


def test_hpcwrap_options_are_never_abbreviated() -> None:
    # "--mod" is not hpcwrap's --mode; sbatch has no such option either: passed through
    cl = split_command_line(["--mod=x", "s.sh"], OWN)
    assert cl.own == ()
    assert cl.sbatch == ("--mod=x",)


def test_own_option_names_do_not_collide_with_sbatch() -> None:
    """The rule the CLI relies on: no hpcwrap option is an sbatch option name."""
    from hpcwrap.cli.sbatch_cmd import build_parser, own_options

    names = set(own_options(build_parser()))
    assert names & set(LONG) == {"help"}  # sbatch's --help: both mean help
    # abbreviations: only --task, documented in --help
    prefixes = {n for n in names if any(o.startswith(n) and o != n for o in LONG)}
    assert prefixes == {"task"}


# ---------------------------------------------------------------- the table


def test_table_is_consistent() -> None:
    from hpcwrap.cli import sbatch_cmd
    from hpcwrap.scheduler.sbatch_options import SBATCH_VERSION_CHECKED

    assert sbatch_cmd.SBATCH_VERSION_CHECKED == SBATCH_VERSION_CHECKED
    assert len({o.name for o in SBATCH_OPTIONS}) == len(SBATCH_OPTIONS)
    assert len(SHORT) == len([o for o in SBATCH_OPTIONS if o.short])
    for o in SBATCH_OPTIONS:
        assert o.key in LONG
    assert LONG["time"].arg is Arg.REQUIRED and LONG["time"].short == "t"
    assert LONG["hold"].arg is Arg.NONE
    assert LONG["nice"].arg is Arg.OPTIONAL
    assert lookup_long("tasks").key == "ntasks-per-node"  # type: ignore[union-attr]
    assert lookup_long("cluster").key == "clusters"  # type: ignore[union-attr]
    assert lookup_long("nosuch") is None


# ---------------------------------------------------------------- #SBATCH lines

DIRECTIVES = [
    # (script body after the shebang, expected args of the first component)
    ("#SBATCH -J x --time=5\necho\n", ["-J", "x", "--time=5"]),
    ('#SBATCH -J "my job" # comment\n', ["-J", "my job"]),
    ("#SBATCH --comment='a b'\\\"c\n", ['--comment=a b"c']),
    ('#SBATCH -J a"b c"d -p x\n', ["-J", "ab cd", "-p", "x"]),
    ("#SBATCH -J 'a\\'b' -p x\n", ["-J", "a'b", "-p", "x"]),
    ('#SBATCH -J "a#b" -p x\n', ["-J", "a#b", "-p", "x"]),
    ("#SBATCH -J a\\\\#b -p x\n", ["-J", "a\\"]),
    ("#SBATCH -J a\\ b\n", ["-J", "a", "b"]),  # an escaped space still ends the word
    ("#SBATCH --wckey=a#b c#d\n", ["--wckey=a"]),
    ("#SBATCH --mem 5 \\#x\n", ["--mem", "5", "#x"]),
    ('#SBATCH -J "" -p x\n', ["-J"]),  # an empty word ends the line for sbatch
    ("#SBATCH\t-J\ttab\n", ["-J", "tab"]),
    ("#SBATCH-t 5\n", ["-t", "5"]),
    ("#SBATCHX\n", ["X"]),
    (" #SBATCH -p indented\n#SBATCH -p real\n", ["-p", "real"]),  # must start the line
    ("#sbatch -p lower\n", []),
    ("# comment\n\n   # indented comment\n#SBATCH -p a\n", ["-p", "a"]),
    ("#SBATCH -p a\n: command\n#SBATCH -p after\n", ["-p", "a"]),  # stops at a command
    ("echo first\n#SBATCH -p never\n", []),
    ("#SLURM -J old\n", ["-J", "old"]),
    ("#SBATCH -J first\n#SBATCH hetjob -p x\n#SBATCH -p second\n", ["-J", "first"]),
    ("#SBATCH -J first\n#SBATCH --comment=hetjob\n", ["-J", "first", "--comment=hetjob"]),
]


@pytest.mark.parametrize(("body", "expected"), DIRECTIVES)
def test_read_directives(body: str, expected: list[str]) -> None:
    d = read_directives("#!/bin/bash\n" + body)
    assert list(d.args) == expected


def test_directive_lines_are_kept_verbatim_and_body_found() -> None:
    text = "#!/bin/bash\n#SBATCH -J x  # why\n\n#SBATCH --time=5\npython train.py\n#SBATCH -p no\n"
    d = read_directives(text)
    assert d.lines == ("#SBATCH -J x  # why", "#SBATCH --time=5")
    assert d.body_line == 5


def test_hetjob_components() -> None:
    d = read_directives("#!/bin/bash\n#SBATCH -N1\n#SBATCH HETJOB\n#SBATCH -N2\n#SBATCH packjob\n")
    assert d.components == (("-N1",), ("-N2",), ())


def test_unmatched_quote_is_refused() -> None:
    with pytest.raises(UsageError, match="unmatched"):
        read_directives('#!/bin/bash\n#SBATCH --comment="open\n', "t.sh")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"echo hi\n", "first line must start with #!"),
        (b"#!/bin/bash\r\necho\r\n", "DOS line breaks"),
        (b"#!/bin/bash\necho \0\n", "NUL"),
    ],
)
def test_check_batch_script_refuses_what_sbatch_refuses(data: bytes, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        check_batch_script(data, "t.sh")


HOSTILE_VALUES = [
    "plain",
    "with space",
    'dq"uote',
    "sq'uote",
    "back\\slash",
    "hash#tag",
    "tab\tin",
    "$HOME and `cmd`",
    '/tmp/run logs/it\'s a "test" #1/x.md',
]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_quote_directive_arg_round_trips(value: str) -> None:
    arg = f"--comment=hpcwrap:{value}"
    quoted = quote_directive_arg(arg)
    assert quoted is not None
    assert read_directives(f"#!/bin/bash\n#SBATCH {quoted}\n").args == (arg,)


def test_quote_directive_arg_refuses_newlines() -> None:
    assert quote_directive_arg("--comment=a\nb") is None
    assert quote_directive_arg("") is None


# ---------------------------------------------------------------- precedence


def _resolve(
    cmd: list[str],
    body: str,
    env: dict[str, str],
    defaults: list[str] = [],  # noqa: B006 - never mutated
) -> Resolved:
    return resolve(
        parse_sbatch_args(cmd),
        read_directives("#!/bin/bash\n" + body),
        env,
        defaults=parse_sbatch_args(defaults),
    )


def test_precedence_command_line_over_environment_over_script_over_hpcwrap() -> None:
    body = "#SBATCH -t 10\n#SBATCH -t 20\n#SBATCH -o script.out\n#SBATCH -J script\n"
    r = _resolve(
        ["-t", "5"],
        body,
        {"SBATCH_OUTPUT": "env.out", "SBATCH_TIMELIMIT": "7"},
        ["--job-name=hp", "--open-mode=append", "--output=hp.out"],
    )
    assert (r.get("time"), r.source("time")) == ("5", "command line")
    assert (r.get("output"), r.source("output")) == ("env.out", "environment (SBATCH_OUTPUT)")
    assert (r.get("job-name"), r.source("job-name")) == ("script", "#SBATCH")
    assert (r.get("open-mode"), r.source("open-mode")) == ("append", "hpcwrap")
    r2 = _resolve([], body, {})
    assert r2.get("time") == "20"  # the last #SBATCH line wins


def test_command_line_hetjob_keeps_first_component() -> None:
    r = _resolve(["-N", "1", ":", "-N", "2"], "", {})
    assert r.get("nodes") == "1"
    assert r.hetjob


# ---------------------------------------------------------------- small helpers


def test_expand_pattern() -> None:
    assert expand_pattern("slurm-%j.out", job_id="12") == "slurm-12.out"
    assert expand_pattern("o-%8j-%x-%u-%%.txt", job_id="12", job_name="n", user="u") == (
        "o-00000012-n-u-%.txt"
    )
    assert expand_pattern("slurm-%A_%a.out", job_id="7", array=True) == "slurm-7_%a.out"
    assert expand_pattern("%j-%N.out", job_id="7", array=True) == "%j-%N.out"
    assert expand_pattern("lit\\%j.out", job_id="7") == "lit%j.out"


def test_walltime_signal_value() -> None:
    assert walltime_signal_value("SIGUSR2", 300.0) == "B:USR2@300"
    with pytest.raises(UsageError):
        walltime_signal_value("USR2", 70000)


# ---------------------------------------------------------------- oracle: the real sbatch

SBATCH = shutil.which("sbatch")
needs_sbatch = pytest.mark.skipif(SBATCH is None, reason="sbatch is not installed")


def _sbatch(args: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    assert SBATCH is not None
    proc = subprocess.run(
        [SBATCH, "--test-only", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    return proc.stderr


ORACLE_PREFIXES = [
    "part", "tasks", "task", "clus", "cluster", "mem", "mem-per", "gpus", "gpus-per", "excl",
    "ver", "verb", "us", "use", "requ", "no-r", "ntasks", "ntasks-per", "cpus-per-t", "wait",
    "wait-all", "thread", "threads", "con", "cont", "j", "k", "l", "mode", "objective", "set",
    "dataset", "group", "json", "dry-run", "run-logs", "description", "scheduler",
    "walltime-signal", "no-walltime-signal",
]  # fmt: skip


@needs_sbatch
@pytest.mark.parametrize("prefix", ORACLE_PREFIXES)
def test_long_option_lookup_matches_sbatch(prefix: str, oracle_env: dict[str, str]) -> None:
    err = _sbatch([f"--{prefix}"], oracle_env)
    try:
        spec = lookup_long(prefix)
    except AmbiguousOptionError:
        assert "is ambiguous" in err
        return
    if spec is None:
        assert "unrecognized option" in err
        return
    if spec.arg is Arg.REQUIRED:
        assert f"option '--{spec.name}' requires an argument" in err
    else:
        assert "unrecognized" not in err and "ambiguous" not in err
        if spec.arg is Arg.NONE:
            err2 = _sbatch([f"--{prefix}=x"], oracle_env)
            assert f"option '--{spec.name}' doesn't allow an argument" in err2


@needs_sbatch
def test_short_option_table_matches_sbatch(oracle_env: dict[str, str]) -> None:
    for letter in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        if letter in "hV":  # help and version exit before parsing the rest
            continue
        err = _sbatch([f"-{letter}"], oracle_env)
        spec = SHORT.get(letter)
        if spec is None:
            assert f"invalid option -- '{letter}'" in err, letter
        elif spec.arg is Arg.REQUIRED:
            assert f"option requires an argument -- '{letter}'" in err, letter
        else:
            assert "invalid option" not in err and "requires an argument" not in err, letter


_FOUND = re.compile(r'debug2: Found in script, argument "(.*)"$')


@needs_sbatch
def test_directive_reading_matches_sbatch(oracle_env: dict[str, str], tmp_path: Path) -> None:
    cases = [body for body, _ in DIRECTIVES] + [
        f"#SBATCH {quote_directive_arg('--comment=hpcwrap:' + v)}\n" for v in HOSTILE_VALUES
    ]
    for n, body in enumerate(cases):
        script = tmp_path / f"s{n}.sh"
        script.write_text("#!/bin/bash\n" + body + "echo body\n")
        # Conflicting --mem options: sbatch stops right after reading the script.
        err = _sbatch(["-vvvvv", "--mem=1", "--mem-per-cpu=1", script.name], oracle_env, tmp_path)
        found = [m.group(1) for line in err.splitlines() if (m := _FOUND.search(line))]
        # sbatch stops at the first component (the --mem conflict), so compare that one.
        assert list(read_directives(script.read_text()).args) == found, (body, err)


_DEFINED = re.compile(r"^sbatch: (\S+)\s+: (.*)$")


@needs_sbatch
def test_precedence_matches_sbatch(oracle_env: dict[str, str], tmp_path: Path) -> None:
    """hpcwrap's defaults go first in the script; sbatch lets every user setting win."""
    script = tmp_path / "p.sh"
    script.write_text(
        "#!/bin/bash\n"
        "#SBATCH -p first -J hp --comment=hpcwrap:x --open-mode=append --signal=B:USR2@300\n"
        "#SBATCH -p second --comment=mine\n"
        "echo\n"
    )
    env = {**oracle_env, "SBATCH_PARTITION": "fromenv", "SBATCH_JOB_NAME": "envname"}
    err = _sbatch(["-v", "-J", "cli", script.name], env, tmp_path)
    said = {m.group(1): m.group(2) for line in err.splitlines() if (m := _DEFINED.match(line))}
    ours = resolve(
        parse_sbatch_args(["-J", "cli"]),
        read_directives(script.read_text()),
        {"SBATCH_PARTITION": "fromenv", "SBATCH_JOB_NAME": "envname"},
    )
    for key in ("comment", "job-name", "partition", "signal"):
        assert said[key] == ours.get(key), key
    assert said["open-mode"] == "a" and ours.get("open-mode") == "append"


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("B:USR2@300", ("USR2", 300.0, True)),
        ("SIGUSR1@90", ("USR1", 90.0, False)),
        ("R:USR1", ("USR1", 60.0, False)),
        ("RB:10@30", ("10", 30.0, True)),
        ("", None),
        ("USR1@soon", None),
    ],
)
def test_a_signal_value_as_sbatch_reads_it(
    value: str, want: tuple[str, float, bool] | None
) -> None:
    from hpcwrap.scheduler.sbatch_options import parse_signal_value

    got = parse_signal_value(value)
    assert (None if got is None else (got.name, got.lead, got.batch_only)) == want


# A backslash before a space in an #SBATCH line, as each sbatch read it (-vvvvv's
# "Found in script" lines, run here): 22.05 ends the argument, 24.11 and 26.05 keep the
# space. A tab ends it in all three.
ESCAPED_SPACE = [
    ("#SBATCH -J a\\ b", ["-J", "a", "b"], ["-J", "a b"]),
    ("#SBATCH -J a\\\tb", ["-J", "a", "b"], ["-J", "a", "b"]),
    ("#SBATCH -J a\\\\ b", ["-J", "a\\", "b"], ["-J", "a\\", "b"]),
    ('#SBATCH -J "a\\ b"', ["-J", "a b"], ["-J", "a b"]),
    ("#SBATCH -J a\\#b c", ["-J", "a#b", "c"], ["-J", "a#b", "c"]),
    ("#SBATCH -J a\\ ", ["-J", "a"], ["-J", "a "]),
    ("#SBATCH -J \\ b", ["-J"], ["-J", " b"]),
]


@pytest.mark.parametrize(("line", "old", "new"), ESCAPED_SPACE)
def test_an_escaped_space_is_read_as_each_sbatch_reads_it(
    line: str, old: list[str], new: list[str]
) -> None:
    text = f"#!/bin/bash\n{line}\necho body\n"
    assert list(read_directives(text, space_escapes=False).args) == old
    assert list(read_directives(text, space_escapes=True).args) == new
