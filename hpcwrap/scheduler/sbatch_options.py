"""Everything hpcwrap knows about sbatch's options, in one module.

- ``SBATCH_OPTIONS``: sbatch 22.05's options, which take a value and which do
  not, short and long forms. Checked against the real ``sbatch`` 22.05.8
  binary (getopt's own errors name the option and say whether it takes an
  argument), not only against ``sbatch --help``, which leaves some out
  (``--context``, ``--tasks-per-node``, ``--cluster``...). A newer sbatch's
  other options are learnt from it when a word is not in this table
  (``installed_sbatch``), so they are split as that sbatch splits them.
- Long options are matched as getopt_long matches them: an exact name, or an
  unambiguous prefix (``--part`` is ``--partition``; ``--task`` is sbatch's
  ``--tasks-per-node``, which is why hpcwrap's own options are matched only by
  their full name and ``--task`` is hpcwrap's).
- ``read_directives``: the ``#SBATCH`` lines of a script, read exactly as
  sbatch reads them: only the leading block of comments and blank lines,
  ``#SBATCH`` (or the deprecated ``#SLURM``) at the very start of a line,
  quotes and backslashes as in sbatch's ``_get_argument``, an unquoted ``#``
  ends the line, ``hetjob``/``packjob`` separates heterogeneous components.
- ``resolve``: sbatch's precedence, command line > ``SBATCH_*`` environment >
  ``#SBATCH`` lines, the last occurrence winning within each.
- ``hpcwrap_directives``: what hpcwrap adds. It adds its options as
  ``#SBATCH`` lines placed *before* the user's, the lowest precedence there is,
  so any setting of the user's (command line, environment, their own
  ``#SBATCH`` line) wins by sbatch's own rules, not by hpcwrap's reading of them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

# AmbiguousOptionError is defined in hpcwrap.errors; importable from here as before.
from hpcwrap.errors import AmbiguousOptionError as AmbiguousOptionError
from hpcwrap.errors import UsageError
from hpcwrap.scheduler.optspec import Arg as Arg
from hpcwrap.scheduler.optspec import OptSpec as OptSpec

if TYPE_CHECKING:
    from hpcwrap.scheduler.installed_sbatch import Learnt

SBATCH_VERSION_CHECKED = "22.05.8"


_N, _R, _O = Arg.NONE, Arg.REQUIRED, Arg.OPTIONAL


def _o(
    name: str, arg: Arg, short: str | None = None, *, env: str = "", canonical: str = ""
) -> OptSpec:
    return OptSpec(name, arg, short, canonical, tuple(env.split()) if env else ())


# Every getopt entry of sbatch 22.05.8 (see the module docstring for how it was checked).
SBATCH_OPTIONS: tuple[OptSpec, ...] = (
    _o("account", _R, "A", env="SBATCH_ACCOUNT"),
    _o("acctg-freq", _R, env="SBATCH_ACCTG_FREQ"),
    _o("array", _R, "a", env="SBATCH_ARRAY_INX"),
    _o("batch", _R, env="SBATCH_BATCH"),
    _o("bb", _R),
    _o("bbf", _R),
    _o("begin", _R, "b"),
    _o("chdir", _R, "D"),
    _o("cluster", _R, canonical="clusters"),
    _o("cluster-constraint", _R),
    _o("clusters", _R, "M", env="SBATCH_CLUSTERS SLURM_CLUSTERS"),
    _o("comment", _R),
    _o("constraint", _R, "C", env="SBATCH_CONSTRAINT"),
    _o("container", _R, env="SBATCH_CONTAINER"),
    _o("context", _R),
    _o("contiguous", _N),
    _o("core-spec", _R, "S", env="SBATCH_CORE_SPEC"),
    _o("cores-per-socket", _R),
    _o("cpu-freq", _R),
    _o("cpus-per-gpu", _R, env="SBATCH_CPUS_PER_GPU"),
    _o("cpus-per-task", _R, "c"),
    _o("deadline", _R),
    _o("delay-boot", _R, env="SBATCH_DELAY_BOOT"),
    _o("dependency", _R, "d"),
    _o("distribution", _R, "m", env="SBATCH_DISTRIBUTION"),
    _o("error", _R, "e", env="SBATCH_ERROR"),
    _o("exclude", _R, "x"),
    _o("exclusive", _O, env="SBATCH_EXCLUSIVE"),
    _o("export", _R, env="SBATCH_EXPORT"),
    _o("export-file", _R),
    _o("extra-node-info", _R, "B"),
    _o("get-user-env", _O, env="SBATCH_GET_USER_ENV"),
    _o("gid", _R),
    _o("gpu-bind", _R, env="SBATCH_GPU_BIND"),
    _o("gpu-freq", _R, env="SBATCH_GPU_FREQ"),
    _o("gpus", _R, "G", env="SBATCH_GPUS"),
    _o("gpus-per-node", _R, env="SBATCH_GPUS_PER_NODE"),
    _o("gpus-per-socket", _R),
    _o("gpus-per-task", _R, env="SBATCH_GPUS_PER_TASK"),
    _o("gres", _R, env="SBATCH_GRES"),
    _o("gres-flags", _R, env="SBATCH_GRES_FLAGS"),
    _o("help", _N, "h"),
    _o("hint", _R, env="SBATCH_HINT SLURM_HINT"),
    _o("hold", _N, "H"),
    _o("ignore-pbs", _N, env="SBATCH_IGNORE_PBS"),
    _o("input", _R, "i", env="SBATCH_INPUT"),
    _o("job-name", _R, "J", env="SBATCH_JOB_NAME"),
    _o("kill-on-invalid-dep", _R),
    _o("licenses", _R, "L"),
    _o("mail-type", _R),
    _o("mail-user", _R),
    _o("mcs-label", _R),
    _o("mem", _R, env="SBATCH_MEM_PER_NODE"),
    _o("mem-bind", _R, env="SBATCH_MEM_BIND"),
    _o("mem-per-cpu", _R, env="SBATCH_MEM_PER_CPU"),
    _o("mem-per-gpu", _R, env="SBATCH_MEM_PER_GPU"),
    _o("mincpus", _R),
    _o("network", _R, env="SBATCH_NETWORK"),
    _o("nice", _O),
    _o("no-kill", _O, "k", env="SBATCH_NO_KILL"),
    _o("no-requeue", _N, env="SBATCH_NO_REQUEUE"),
    _o("nodefile", _R, "F"),
    _o("nodelist", _R, "w"),
    _o("nodes", _R, "N"),
    _o("ntasks", _R, "n"),
    _o("ntasks-per-core", _R),
    _o("ntasks-per-gpu", _R),
    _o("ntasks-per-node", _R),
    _o("ntasks-per-socket", _R),
    _o("ntasks-per-tres", _R),
    _o("open-mode", _R, env="SBATCH_OPEN_MODE"),
    _o("output", _R, "o", env="SBATCH_OUTPUT"),
    _o("overcommit", _N, "O", env="SBATCH_OVERCOMMIT"),
    _o("oversubscribe", _N, "s"),
    _o("parsable", _N),
    _o("partition", _R, "p", env="SBATCH_PARTITION"),
    _o("power", _R, env="SBATCH_POWER"),
    _o("prefer", _R),
    _o("priority", _R),
    _o("profile", _R, env="SBATCH_PROFILE"),
    _o("propagate", _O),
    _o("qos", _R, "q", env="SBATCH_QOS"),
    _o("quiet", _N, "Q"),
    _o("reboot", _N),
    _o("requeue", _N, env="SBATCH_REQUEUE"),
    _o("reservation", _R, env="SBATCH_RESERVATION"),
    _o("signal", _R, env="SBATCH_SIGNAL"),
    _o("sockets-per-node", _R),
    _o("spread-job", _N, env="SBATCH_SPREAD_JOB"),
    _o("switches", _R, env="SBATCH_REQ_SWITCH"),
    _o("tasks-per-node", _R, canonical="ntasks-per-node"),
    _o("test-only", _N),
    _o("thread-spec", _R, env="SBATCH_THREAD_SPEC"),
    _o("threads-per-core", _R, env="SBATCH_THREADS_PER_CORE"),
    _o("time", _R, "t", env="SBATCH_TIMELIMIT"),
    _o("time-min", _R),
    _o("tmp", _R),
    _o("uid", _R),
    _o("usage", _N),
    _o("use-min-nodes", _N, env="SBATCH_USE_MIN_NODES"),
    _o("verbose", _N, "v"),
    _o("version", _N, "V"),
    _o("wait", _N, "W", env="SBATCH_WAIT"),
    _o("wait-all-nodes", _R, env="SBATCH_WAIT_ALL_NODES"),
    _o("wckey", _R, env="SBATCH_WCKEY"),
    _o("wrap", _R),
)


@dataclass(frozen=True)
class OptionTable:
    """sbatch's options by long name and by short letter."""

    options: tuple[OptSpec, ...]

    @functools.cached_property
    def long(self) -> dict[str, OptSpec]:
        return {o.name: o for o in self.options}

    @functools.cached_property
    def short(self) -> dict[str, OptSpec]:
        return {o.short: o for o in self.options if o.short}


BUILT_IN = OptionTable(SBATCH_OPTIONS)
LONG: dict[str, OptSpec] = BUILT_IN.long
SHORT: dict[str, OptSpec] = BUILT_IN.short
ENV: dict[str, OptSpec] = {e: o for o in SBATCH_OPTIONS for e in o.env}

# Options that make sbatch do something other than submit one job; hpcwrap refuses them
# rather than record a run that never ran.
NOT_A_SUBMISSION = {
    "test-only": "--test-only submits nothing; run `sbatch --test-only ...` itself, or "
    "`hpcwrap sbatch --dry-run ...` to see what hpcwrap would submit",
    "help": "see `hpcwrap sbatch --help` and `sbatch --help`",
    "usage": "see `hpcwrap sbatch --help` and `sbatch --usage`",
    "version": "run `sbatch --version` itself",
}

_SPACE = " \t\n\v\f\r"  # C isspace() in the C locale, as sbatch uses it


@functools.lru_cache(maxsize=8)
def merged(learnt: Learnt | None) -> OptionTable:
    """The built-in table with what the installed sbatch said over it: its type for an
    option it lists, its new options, and without the names it refuses. Options its
    help leaves out (``--context``, ``--tasks-per-node``) keep the built-in entry."""
    if learnt is None:
        return BUILT_IN
    said = {o.name: o for o in learnt.options}
    letters = {o.short for o in learnt.options if o.short}
    out = []
    for o in SBATCH_OPTIONS:
        if o.name in learnt.gone:
            continue
        new = said.pop(o.name, None)
        short = o.short if o.short not in letters or (new and new.short == o.short) else None
        out.append(dataclasses.replace(o, arg=new.arg if new else o.arg, short=short))
    return OptionTable(tuple(out) + tuple(said.values()))


def table() -> OptionTable:
    """The options of the sbatch on PATH (``installed_sbatch``), else the built-in table."""
    from hpcwrap.scheduler import installed_sbatch

    return merged(installed_sbatch.installed())


def _installed_space_escapes() -> bool:
    from hpcwrap.scheduler import installed_sbatch

    learnt = installed_sbatch.installed()
    return learnt is not None and learnt.space_escapes


def lookup_long(name: str) -> OptSpec | None:
    """The sbatch option ``--name`` means, as getopt_long decides; None if sbatch has none.

    A name of the built-in table is taken from it without asking sbatch (whether it
    takes a separate value word is the same on 22.05, 24.11 and 26.05, checked in the
    Slurm matrix); any other name, or an abbreviation, is looked up in ``table()``.
    """
    if name in LONG:
        return LONG[name]
    options = table()
    if name in options.long:
        return options.long[name]
    matches = [o for o in options.options if o.name.startswith(name)] if name else []
    if not matches:
        return None
    if len(matches) > 1:
        raise AmbiguousOptionError(name, [m.name for m in matches])
    return matches[0]


@dataclass(frozen=True)
class Opt:
    """One option as written: its tokens, and what it means.

    ``spec`` is None for an option neither sbatch 22.05 nor the installed sbatch
    has (passed through untouched; sbatch will say what it makes of it).
    """

    tokens: tuple[str, ...]
    spec: OptSpec | None
    value: str | None = None
    spelled: str = ""

    @property
    def key(self) -> str | None:
        return self.spec.key if self.spec else None


@dataclass
class _Scan:
    own: list[str] = field(default_factory=list)
    sbatch: list[str] = field(default_factory=list)
    opts: list[Opt] = field(default_factory=list)
    script: str | None = None
    script_args: list[str] = field(default_factory=list)
    separator: bool = False  # "--" seen before the script


def _take_value(argv: Sequence[str], i: int, what: str) -> str:
    if i >= len(argv):
        raise UsageError(f"option {what} needs a value")
    return argv[i]


def _scan_short(argv: Sequence[str], i: int, out: list[Opt]) -> int:
    """Parse one ``-abc``/``-t5``/``-t 5`` word at argv[i]; return the next index."""
    word = argv[i]
    start = len(out)
    nxt = i + 1
    j = 1
    while j < len(word):
        letter = word[j]
        spec = SHORT.get(letter) or table().short.get(letter)
        if spec is None:
            # sbatch will say "invalid option"; the rest of the word goes through as it is.
            out.append(Opt((), None, None, "-" + word[j:]))
            break
        if spec.arg is Arg.NONE:
            out.append(Opt((), spec, None, "-" + letter))
            j += 1
            continue
        rest = word[j + 1 :]
        if spec.arg is Arg.OPTIONAL or rest:
            out.append(Opt((), spec, rest or None, "-" + letter))
            break
        value = _take_value(argv, i + 1, f"-{letter} (--{spec.key})")
        out.append(Opt((), spec, value, "-" + letter))
        nxt = i + 2
        break
    # The whole word (and a separate value word) hangs on the word's first Opt, so the
    # tokens of an Opt list join back to exactly the argv they came from.
    head = out[start]
    out[start] = Opt(tuple(argv[i:nxt]), head.spec, head.value, head.spelled)
    return nxt


def _scan_long(argv: Sequence[str], i: int, out: list[Opt]) -> int:
    word = argv[i]
    name, eq, value = word[2:].partition("=")
    spec = lookup_long(name)
    if spec is None:
        # Unknown to every sbatch asked: passed through; without "=" it is taken as a flag.
        out.append(Opt((word,), None, value if eq else None, "--" + name))
        return i + 1
    if spec.arg is Arg.REQUIRED and not eq:
        val = _take_value(argv, i + 1, f"--{name} (--{spec.key})")
        out.append(Opt((word, val), spec, val, "--" + name))
        return i + 2
    out.append(Opt((word,), spec, value if eq else None, "--" + name))
    return i + 1


def parse_sbatch_args(argv: Sequence[str]) -> list[Opt]:
    """sbatch options (from the command line or ``#SBATCH`` lines) as a list of Opt.

    Stops at the first word that is not an option, as sbatch does ("+" getopt);
    a ``:`` (heterogeneous-job separator) becomes an Opt with no spec.
    """
    out: list[Opt] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--" or not word.startswith("-") or word == "-":
            if word == ":":
                out.append(Opt((word,), None, None, ":"))
                i += 1
                continue
            break
        i = _scan_long(argv, i, out) if word.startswith("--") else _scan_short(argv, i, out)
    return out


def _own_long(word: str, own: Mapping[str, bool]) -> tuple[str, str | None] | None:
    """``--name`` or ``--name=value`` if ``name`` is one of hpcwrap's options (full name only)."""
    name, eq, value = word[2:].partition("=")
    if name in own:
        return name, (value if eq else None)
    return None


@dataclass(frozen=True)
class CommandLine:
    """``hpcwrap sbatch`` arguments, split.

    ``own``: hpcwrap's options, each as one ``--name=value`` (or ``--flag``) word;
    ``sbatch``: the sbatch option words exactly as given; ``opts``: those parsed;
    ``script`` and ``script_args``.
    """

    own: tuple[str, ...]
    sbatch: tuple[str, ...]
    opts: tuple[Opt, ...]
    script: str | None
    script_args: tuple[str, ...]


def split_command_line(argv: Sequence[str], own: Mapping[str, bool]) -> CommandLine:
    """Split ``[hpcwrap options] [sbatch options] script [args]``.

    ``own`` maps hpcwrap's long option names (without ``--``) to whether they
    take a value. Before the script, a word is hpcwrap's when it is one of
    those names spelled in full (``--mode x`` or ``--mode=x``); every other
    option word (with its value, per sbatch's table) is sbatch's, passed on
    untouched. A value is never mistaken for an option: in ``-J --mode``,
    ``--mode`` is the job name. The first word that is not an option or an
    option's value is the script; ``--`` ends the options (the next word is the
    script). Everything after the script is the script's.
    """
    scan = _Scan()
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            scan.separator = True
            i += 1
            break
        if word == ":":
            scan.sbatch.append(word)
            scan.opts.append(Opt((word,), None, None, ":"))
            i += 1
            continue
        if not word.startswith("-") or word == "-":
            break
        if word.startswith("--"):
            mine = _own_long(word, own)
            if mine is not None:
                name, value = mine
                if own[name] and value is None:
                    value = _take_value(argv, i + 1, f"--{name}")
                    i += 1
                # Always "--name=value": a value that starts with "-" stays a value.
                scan.own.append(word if value is None else f"--{name}={value}")
                i += 1
                continue
            nxt = _scan_long(argv, i, scan.opts)
        else:
            nxt = _scan_short(argv, i, scan.opts)
        scan.sbatch.extend(argv[i:nxt])
        i = nxt
    if i < len(argv):
        scan.script = argv[i]
        scan.script_args = list(argv[i + 1 :])
    return CommandLine(
        tuple(scan.own), tuple(scan.sbatch), tuple(scan.opts), scan.script, tuple(scan.script_args)
    )


# ---------------------------------------------------------------- #SBATCH lines

MAGIC_WORDS = ("#SBATCH", "#SLURM")  # "#SLURM" is deprecated but 22.05 still reads it
HETJOB_WORDS = ("hetjob", "packjob")


def check_batch_script(data: bytes, path: str) -> None:
    """Refuse what sbatch refuses about a script file, before anything is recorded."""
    if not data:
        raise UsageError(f"{path}: the batch script is empty")
    if not data.startswith(b"#!"):
        raise UsageError(
            f"{path}: this does not look like a batch script: the first line must start "
            "with #! followed by the path to an interpreter (as sbatch requires), "
            "e.g. #!/bin/bash"
        )
    if b"\r\n" in data:
        raise UsageError(
            f"{path}: the batch script contains DOS line breaks (\\r\\n) instead of UNIX "
            "line breaks (\\n); sbatch refuses it (convert it with dos2unix)"
        )
    if b"\0" in data:
        raise UsageError(f"{path}: the batch script contains a NUL byte")


def _get_argument(
    line: str, pos: int, where: str, space_escapes: bool = False
) -> tuple[str | None, int]:
    """One argument from an #SBATCH line starting at pos, as sbatch's _get_argument.

    ``space_escapes``: a backslash keeps the space after it in the argument (24.11 and
    26.05: ``-J a\\ b`` is "a b"); 22.05 ends the argument there ("a", then "b").
    """
    n = len(line)
    while pos < n and line[pos] in _SPACE:
        pos += 1
    out: list[str] = []
    quoted = False
    quote = ""
    escape = False

    def goes_on(c: str) -> bool:
        return quoted or c not in _SPACE or (escape and space_escapes and c == " ")

    while pos < n and goes_on(line[pos]) and line[pos] != "\n":
        c = line[pos]
        if escape:
            escape = False
        elif c == "\\":
            escape = True
            pos += 1
            continue
        elif quoted:
            if c == quote:
                quoted = False
                pos += 1
                continue
        elif c in "\"'":
            quoted = True
            quote = c
            pos += 1
            continue
        elif c == "#":
            break  # an unquoted, unescaped # starts a comment
        out.append(c)
        pos += 1
    if quoted:
        raise UsageError(f"{where}: unmatched {quote} in #SBATCH line (sbatch refuses it)")
    # An empty argument ends the line for sbatch too (#SBATCH -J "" -p x reads only -J).
    return ("".join(out) if out else None), pos


@dataclass(frozen=True)
class Directives:
    """The ``#SBATCH`` lines of a script, as sbatch reads them.

    ``lines``: the directive lines verbatim (without line break), in order.
    ``components``: the arguments of each heterogeneous-job component (one
    for an ordinary job). ``body_line``: 1-based number of the first command
    line (where sbatch stops reading), 0 if the script has none.
    """

    lines: tuple[str, ...]
    components: tuple[tuple[str, ...], ...]
    body_line: int

    @property
    def args(self) -> tuple[str, ...]:
        """The first (or only) component's arguments."""
        return self.components[0]


def read_directives(
    text: str, filename: str = "script", space_escapes: bool | None = None
) -> Directives:
    """``space_escapes`` (see ``_get_argument``): None asks the installed sbatch, only
    for a script whose directives hold a backslash before a space."""
    lines: list[str] = []
    components: list[list[str]] = [[]]
    body_line = 0
    for lineno, line in enumerate(text.split("\n"), start=1):
        magic = next((m for m in MAGIC_WORDS if line.startswith(m)), None)
        if magic is None:
            stripped = line.lstrip(_SPACE)
            if stripped and not stripped.startswith("#"):
                body_line = lineno
                break
            continue
        lines.append(line)
        pos = len(magic)
        if space_escapes is None and "\\ " in line:
            space_escapes = _installed_space_escapes()
        while True:
            arg, pos = _get_argument(line, pos, f"{filename}: line {lineno}", bool(space_escapes))
            if arg is None:
                break
            if arg.lower() in HETJOB_WORDS:
                components.append([])
                break  # the rest of a separator line is ignored
            components[-1].append(arg)
    return Directives(tuple(lines), tuple(tuple(c) for c in components), body_line)


def quote_directive_arg(arg: str) -> str | None:
    """``arg`` written so sbatch's #SBATCH reader gives back exactly ``arg``.

    None when no #SBATCH line can carry it (a line break, or an empty value).
    """
    if not arg or "\n" in arg:
        return None
    if not any(c in arg for c in _SPACE + "\"'\\#"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------- precedence


@dataclass(frozen=True)
class Setting:
    value: str | None  # None for a flag
    source: str  # "command line" | "environment (NAME)" | "#SBATCH" | "hpcwrap"


@dataclass(frozen=True)
class Resolved:
    """The effective value of each option (first heterogeneous component), with its source."""

    settings: Mapping[str, Setting]
    hetjob: bool = False

    def get(self, key: str) -> str | None:
        s = self.settings.get(key)
        return s.value if s else None

    def has(self, key: str) -> bool:
        return key in self.settings

    def source(self, key: str) -> str | None:
        s = self.settings.get(key)
        return s.source if s else None


def _first_component(opts: Iterable[Opt]) -> tuple[list[Opt], bool]:
    first: list[Opt] = []
    for o in opts:
        if o.spelled == ":":
            return first, True
        first.append(o)
    return first, False


def resolve(
    cmdline: Sequence[Opt],
    directives: Directives,
    env: Mapping[str, str] | None = None,
    *,
    defaults: Sequence[Opt] = (),
) -> Resolved:
    """sbatch's precedence: command line > SBATCH_* environment > #SBATCH > ``defaults``.

    ``defaults`` are hpcwrap's own #SBATCH lines, which come before the user's.
    """
    environ = os.environ if env is None else env
    settings: dict[str, Setting] = {}
    for o in defaults:
        if o.key:
            settings[o.key] = Setting(o.value, "hpcwrap")
    script_opts = parse_sbatch_args(directives.args)
    for o in script_opts:
        if o.key:
            settings[o.key] = Setting(o.value, "#SBATCH")
    for name, spec in ENV.items():
        if name in environ and (
            spec.key not in settings or settings[spec.key].source in ("#SBATCH", "hpcwrap")
        ):
            value = environ[name]
            settings[spec.key] = Setting(
                None if spec.arg is Arg.NONE else value, f"environment ({name})"
            )
    first, het_cli = _first_component(cmdline)
    for o in first:
        if o.key:
            settings[o.key] = Setting(o.value, "command line")
    return Resolved(settings, hetjob=het_cli or len(directives.components) > 1)


# ---------------------------------------------------------------- what hpcwrap adds


def directive(option: str, value: str) -> str | None:
    """An ``#SBATCH --option=value`` line, or None if the value cannot go in one."""
    quoted = quote_directive_arg(f"--{option}={value}")
    return None if quoted is None else f"#SBATCH {quoted}"


def signal_word(signal_name: str) -> str:
    """``sigusr2`` -> ``USR2``: a signal as sbatch and bash's trap take it."""
    return signal_name.strip().upper().removeprefix("SIG")


class OutputFacts(Protocol):
    """What ``output_file_of`` reads of a submission (``runlog.facts.SubmitFacts``)."""

    output: str | None
    output_path: str | None
    job_name: str | None
    job_id: str | None


def output_file_of(
    submit: OutputFacts | None, job_id: str, user: str | None, work_dir: str | None = None
) -> str | None:
    """The absolute path of job ``job_id``'s output file from the submission's facts (its
    pattern filled in for that job: a resumed job has its own id), else Slurm's default
    ``slurm-<id>.out`` in ``work_dir``; None where it cannot be known (a per-node part)."""
    path = None
    if submit is not None and submit.output:
        path = expand_pattern(submit.output, job_id=job_id, job_name=submit.job_name, user=user)
    elif submit is not None and submit.job_id in (None, job_id):
        path = submit.output_path
    if (not path or "%" in path) and work_dir and work_dir.startswith("/"):
        path = f"{work_dir}/slurm-{job_id}.out"
    if not path or "%" in path or not path.startswith("/"):
        return None
    return str(path)


def walltime_signal_value(signal_name: str, lead_seconds: float) -> str:
    """``B:USR2@300``: to the batch shell only (where ``hpcwrap run`` waits), ``lead`` s early."""
    name = signal_word(signal_name)
    lead = round(lead_seconds)
    if not 0 <= lead <= 65535:
        raise UsageError(f"walltime signal lead must be 0..65535 seconds, got {lead}")
    return f"B:{name}@{lead}"


def slurm_time_seconds(text: str | None) -> float | None:
    """sbatch's --time forms in seconds: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
    ``D-H:M:S``; None for UNLIMITED, INFINITE or nothing."""
    if not text or not text.strip() or text.strip().upper() in ("UNLIMITED", "INFINITE"):
        return None
    days, _, rest = text.strip().rpartition("-")
    try:
        d = int(days) if days else 0
        parts = [int(p) for p in rest.split(":")]
    except ValueError:
        return None
    if days:  # D-H, D-H:M, D-H:M:S
        h, m, sec = [*parts, 0, 0][:3]
    elif len(parts) == 1:
        h, m, sec = 0, parts[0], 0
    elif len(parts) == 2:
        h, m, sec = 0, parts[0], parts[1]
    else:
        h, m, sec = parts[-3], parts[-2], parts[-1]
    return float(((d * 24 + h) * 60 + m) * 60 + sec)


@dataclass(frozen=True)
class SignalSpec:
    """sbatch's ``--signal=[{R|B}:]sig[@time]``, read."""

    name: str  # "USR2"
    lead: float  # seconds before the limit (sbatch's default 60)
    batch_only: bool  # B: the batch shell only (else every process of the job's steps)


def parse_signal_value(value: str | None) -> SignalSpec | None:
    """``B:USR2@300`` -> SignalSpec("USR2", 300, True); None for what sbatch would not take."""
    if not value or not value.strip():
        return None
    text = value.strip()
    flags, sep, rest = text.partition(":")
    if not sep or not flags or not set(flags.upper()) <= {"R", "B"}:
        flags, rest = "", text
    name, at, lead_text = rest.partition("@")
    try:
        lead = float(lead_text) if at else 60.0
    except ValueError:
        return None
    word = signal_word(name)
    if not word or not word.isalnum():
        return None
    return SignalSpec(word, lead, "B" in flags.upper())


def default_job_name(script: str) -> str:
    """What sbatch names a job by default: the script's file name."""
    return PurePosixPath(script).name or "sbatch"


# ---------------------------------------------------------------- output paths


def output_pattern(resolved: Resolved, which: str = "output") -> str | None:
    """The --output/--error pattern in effect; None for --error when it goes with --output."""
    value = resolved.get(which)
    if value:
        return value
    if which == "error":
        return None
    return "slurm-%A_%a.out" if resolved.get("array") else "slurm-%j.out"


def work_dir(resolved: Resolved, submit_dir: Path) -> Path:
    chdir = resolved.get("chdir")
    if not chdir:
        return submit_dir
    path = Path(os.path.expanduser(chdir))
    return path if path.is_absolute() else submit_dir / path


_PCT = re.compile(r"%(\d*)([%AajxuNnst])")


def expand_pattern(
    pattern: str,
    *,
    job_id: str | None = None,
    job_name: str | None = None,
    user: str | None = None,
    array: bool = False,
) -> str:
    """Fill the parts of a filename pattern known at submission (%j %A %x %u %%).

    Per-task or per-node parts (%a, %N, %n, %t, %s; %j of an array task) stay as
    they are. A pattern with a backslash is used literally by Slurm.
    """
    if "\\" in pattern:
        return pattern.replace("\\", "")

    def sub(m: re.Match[str]) -> str:
        width, kind = m.group(1), m.group(2)
        value: str | None = None
        if kind == "%":
            return "%"
        if job_id and (kind == "A" or (kind == "j" and not array)):
            value = job_id
        elif kind == "x" and job_name:
            value = job_name
        elif kind == "u" and user:
            value = user
        if value is None:
            return m.group(0)
        return value.zfill(int(width)) if width and value.isdigit() else value

    return _PCT.sub(sub, pattern)


def array_range(spec: str) -> str:
    """``0-15%4`` -> ``0-15`` (the task ids; ``%4`` only limits how many run at once)."""
    return spec.split("%", 1)[0]
