"""sbatch's options as the sbatch installed here takes them, learnt from it.

hpcwrap's built-in table is sbatch 22.05's. Other versions add options
(24.11: ``--tres-per-task``; 26.05: ``--container-type``), drop some (``--power``)
and change how some take a value (26.05: ``--requeue[=expedite]``,
``--get-user-env`` a flag). An option written with a space (``--tres-per-task
cpu:2``) must be split the way the installed sbatch splits it, or its value is
taken for the script; ``sbatch_options`` merges what is learnt here over its table
for the words that table does not settle.

- The names come from ``sbatch --help`` and ``sbatch --usage`` (each leaves out
  some: 22.05's help omits ``--mem-bind``, its usage lists it).
- Whether a name takes a value is asked of sbatch's own getopt, the way the
  built-in table was checked, not read from the help text (22.05's help shows
  ``--container`` with no value; it needs one):
  ``sbatch --test-only --NAME=x --usage`` answers "doesn't allow an argument"
  for a flag; for the others ``sbatch --test-only --NAME`` answers "requires an
  argument" when the value is required (else it is optional). Neither submits:
  ``--usage`` exits where getopt reaches it, and the second has no script
  (stdin is empty, so sbatch stops at "Batch script is empty").
- Whether a backslash keeps the space after it in an ``#SBATCH`` line (24.11 and
  26.05 read ``-J a\\ b`` as "a b", 22.05 as "a", "b") is read from sbatch's
  ``-vvvvv`` trace of a two-line script.
- It is asked only when needed: for an option word the built-in table lacks, an
  abbreviation, or a directive with a backslash before a space.
- The answer is cached per sbatch binary (its path, size and modification time)
  in the user's cache folder, and in this process.

Where sbatch cannot run (no Slurm configuration: ``fatal: Could not establish a
configuration source``) or does not answer within ``TIMEOUT``, nothing is
learnt and the built-in table stands alone; that is not cached, so a fixed
configuration is used at the next call.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from hpcwrap.scheduler.cachedir import user_cache_dir
from hpcwrap.scheduler.optspec import Arg, OptSpec

TIMEOUT = 3.0  # per sbatch call; an sbatch without a reachable config retries for 60 s
PROBES_AT_ONCE = 8
CACHE_FORMAT = 3

# An option line of --help: two to eight spaces, an optional "-X," (22.05 writes "-B  --"),
# then the long name. Wrapped description lines are indented further.
_HELP_LINE = re.compile(r"^ {2,8}(?:-([A-Za-z0-9]),?\s+)?--([A-Za-z0-9][A-Za-z0-9-]*)")
_USAGE_NAME = re.compile(r"\[--([A-Za-z0-9][A-Za-z0-9-]*)")

_memo: dict[tuple[str, int, int], Learnt | None] = {}


def listed(help_text: str, usage_text: str) -> dict[str, str | None]:
    """Every long name the help or usage text shows, with its short letter where help pairs one."""
    names: dict[str, str | None] = {}
    for line in help_text.splitlines():
        m = _HELP_LINE.match(line)
        if m:
            names[m.group(2)] = m.group(1) or names.get(m.group(2))
    for name in _USAGE_NAME.findall(usage_text):
        names.setdefault(name, None)
    return names


def _run(sbatch: str, args: list[str], environ: Mapping[str, str]) -> tuple[int, str] | None:
    try:
        proc = subprocess.run(
            [sbatch, *args],
            env=environ,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.returncode, proc.stdout + proc.stderr


NO_ANSWER = "no answer"  # sbatch did not answer a probe (timed out, or could not start)


def classify(sbatch: str, name: str, environ: Mapping[str, str]) -> Arg | str | None:
    """How sbatch's getopt treats ``--name``: a flag, a required or an optional value;
    None when it has no such option; ``NO_ANSWER`` when sbatch did not answer."""
    # glibc getopt's own words (an option's value check may also say "unrecognized")
    first = _run(sbatch, ["--test-only", f"--{name}=x", "--usage"], environ)
    if first is None:
        return NO_ANSWER
    if any(said in first[1] for said in (f"unrecognized option '--{name}", f"'--{name}' is ambig")):
        return None
    if f"option '--{name}' doesn't allow an argument" in first[1]:
        return Arg.NONE
    second = _run(sbatch, ["--test-only", f"--{name}"], environ)
    if second is None:
        return NO_ANSWER
    required = f"option '--{name}' requires an argument" in second[1]
    return Arg.REQUIRED if required else Arg.OPTIONAL


@dataclass(frozen=True)
class Learnt:
    """What one sbatch binary said: every option its help or usage lists, as its getopt
    takes it (with the short letter help pairs it with), and the names it lists but
    refuses (24.11's help still shows ``--power``)."""

    options: tuple[OptSpec, ...]
    gone: frozenset[str] = frozenset()
    space_escapes: bool = False  # "#SBATCH -J a\\ b" reads "a b" (24.11 on), not "a", "b"


def learn(sbatch: str, environ: Mapping[str, str]) -> Learnt | None:
    """Ask ``sbatch`` (see the module docstring); None when it could not be asked."""
    helped = _run(sbatch, ["--help"], environ)
    usage = _run(sbatch, ["--usage"], environ)
    if helped is None or helped[0] != 0 or "--" not in helped[1]:
        return None
    names = listed(helped[1], usage[1] if usage is not None and usage[0] == 0 else "")
    # A probe is a process start (a few ms); a hundred of them side by side, once per binary.
    from concurrent.futures import ThreadPoolExecutor  # only here: a cache hit needs none

    with ThreadPoolExecutor(max_workers=PROBES_AT_ONCE) as pool:
        found = dict(pool.map(lambda name: (name, classify(sbatch, name, environ)), sorted(names)))
    if NO_ANSWER in found.values():
        return None
    options = tuple(OptSpec(n, a, names[n]) for n, a in found.items() if isinstance(a, Arg))
    escapes = reads_escaped_space(sbatch, environ)
    if escapes is None:
        return None
    return Learnt(options, frozenset(n for n, a in found.items() if a is None), escapes)


_FOUND = re.compile(r'debug2: Found in script, argument "(.*)"$', re.M)


def reads_escaped_space(sbatch: str, environ: Mapping[str, str]) -> bool | None:
    """Whether sbatch reads ``#SBATCH -J a\\ b`` as one argument; None: no answer.

    Its -vvvvv trace names each argument it found; conflicting --mem options stop it
    right after reading the script (and --test-only: nothing is submitted either way).
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hpcwrap-sbatch-") as folder:
        script = Path(folder) / "probe.sh"
        script.write_text("#!/bin/sh\n#SBATCH -J a\\ b\ntrue\n")
        script.chmod(0o644)
        Path(folder).chmod(0o755)  # sbatch may read it as another user
        said = _run(
            sbatch,
            ["--test-only", "-vvvvv", "--mem=1", "--mem-per-cpu=1", str(script)],
            environ,
        )
    if said is None:
        return None
    found = _FOUND.findall(said[1])
    return found[:2] == ["-J", "a b"]


def _probe_env(environ: Mapping[str, str]) -> dict[str, str]:
    # getopt's messages in English; no SBATCH_* setting changes what a probe does.
    env = {k: v for k, v in environ.items() if not k.startswith("SBATCH_")}
    env["LC_ALL"] = "C"
    return env


def _cache_file(environ: Mapping[str, str], sbatch: str) -> Path | None:
    folder = user_cache_dir(environ)
    if folder is None:
        return None
    digest = hashlib.sha1(sbatch.encode(), usedforsecurity=False).hexdigest()[:16]
    return folder / f"sbatch-options-{digest}.json"


def _from_cache(path: Path | None, key: tuple[str, int, int]) -> Learnt | None:
    if path is None:
        return None
    try:
        raw = orjson.loads(path.read_bytes())
        if raw.get("format") != CACHE_FORMAT or tuple(raw.get("key", ())) != key:
            return None
        options = tuple(OptSpec(n, Arg(a), s) for n, a, s in raw["options"])
        return Learnt(options, frozenset(raw["gone"]), bool(raw["space_escapes"]))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # unreadable or from another version: learn again


def _to_cache(path: Path | None, key: tuple[str, int, int], learnt: Learnt) -> None:
    if path is None:
        return
    data = {
        "format": CACHE_FORMAT,
        "key": list(key),
        "options": [[o.name, o.arg.value, o.short] for o in learnt.options],
        "gone": sorted(learnt.gone),
        "space_escapes": learnt.space_escapes,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(orjson.dumps(data))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a cache that cannot be written is only slower


def installed(environ: Mapping[str, str] | None = None) -> Learnt | None:
    """What the sbatch on PATH says of its options; None where there is none or it
    cannot be asked (then the built-in table stands alone)."""
    env = os.environ if environ is None else environ
    found = shutil.which("sbatch", path=env.get("PATH"))
    if found is None:
        return None
    sbatch = os.path.realpath(found)
    try:
        st = os.stat(sbatch)
    except OSError:
        return None
    key = (sbatch, st.st_size, st.st_mtime_ns)
    if key in _memo:
        return _memo[key]
    path = _cache_file(env, sbatch)
    learnt = _from_cache(path, key)
    if learnt is None:
        learnt = learn(sbatch, _probe_env(env))
        if learnt is not None:
            _to_cache(path, key, learnt)
    # Not asked again in this process either way (a failure is not written to the cache).
    _memo[key] = learnt
    return learnt
