"""The options a newer sbatch has that hpcwrap's built-in table (22.05's) lacks, learnt from it.

An option added since 22.05 and written with a space (``--tres-per-task cpu:2``)
must be split the way the installed sbatch splits it, or its value is taken for
the script. ``sbatch_options`` asks here only for a word its built-in table does
not hold, so a 22.05 cluster never runs any of this.

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
from pathlib import Path

import orjson

from hpcwrap.scheduler.cachedir import user_cache_dir
from hpcwrap.scheduler.optspec import Arg, OptSpec

TIMEOUT = 3.0  # per sbatch call; an sbatch without a reachable config retries for 60 s
CACHE_FORMAT = 1

# An option line of --help: two to eight spaces, an optional "-X," (22.05 writes "-B  --"),
# then the long name. Wrapped description lines are indented further.
_HELP_LINE = re.compile(r"^ {2,8}(?:-([A-Za-z0-9]),?\s+)?--([A-Za-z0-9][A-Za-z0-9-]*)")
_USAGE_NAME = re.compile(r"\[--([A-Za-z0-9][A-Za-z0-9-]*)")

Known = tuple[Mapping[str, object], Mapping[str, object]]

_memo: dict[tuple[str, int, int], tuple[OptSpec, ...]] = {}


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


def classify(sbatch: str, name: str, environ: Mapping[str, str]) -> Arg | None:
    """How sbatch's getopt treats ``--name``: a flag, a required or an optional value;
    None when it has no such option (or did not answer)."""
    # glibc getopt's own words (an option's value check may also say "unrecognized")
    first = _run(sbatch, ["--test-only", f"--{name}=x", "--usage"], environ)
    if first is None or any(
        said in first[1] for said in (f"unrecognized option '--{name}", f"'--{name}' is ambiguous")
    ):
        return None
    if f"option '--{name}' doesn't allow an argument" in first[1]:
        return Arg.NONE
    second = _run(sbatch, ["--test-only", f"--{name}"], environ)
    if second is None:
        return None
    required = f"option '--{name}' requires an argument" in second[1]
    return Arg.REQUIRED if required else Arg.OPTIONAL


def learn(
    sbatch: str, environ: Mapping[str, str], known: Known = ({}, {})
) -> tuple[OptSpec, ...] | None:
    """The options ``sbatch`` has beyond ``known`` (long names, short letters); None when
    it could not be asked."""
    long, short = known
    helped = _run(sbatch, ["--help"], environ)
    usage = _run(sbatch, ["--usage"], environ)
    if helped is None or helped[0] != 0 or "--" not in helped[1]:
        return None
    names = listed(helped[1], usage[1] if usage is not None and usage[0] == 0 else "")
    found: list[OptSpec] = []
    for name, letter in sorted(names.items()):
        if name in long:
            continue
        arg = classify(sbatch, name, environ)
        if arg is not None:
            found.append(OptSpec(name, arg, letter if letter and letter not in short else None))
    return tuple(found)


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


def _from_cache(path: Path | None, key: tuple[str, int, int]) -> tuple[OptSpec, ...] | None:
    if path is None:
        return None
    try:
        raw = orjson.loads(path.read_bytes())
        if raw.get("format") != CACHE_FORMAT or tuple(raw.get("key", ())) != key:
            return None
        return tuple(OptSpec(n, Arg(a), s) for n, a, s in raw["options"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # unreadable or from another version: learn again


def _to_cache(path: Path | None, key: tuple[str, int, int], found: tuple[OptSpec, ...]) -> None:
    if path is None:
        return
    data = {
        "format": CACHE_FORMAT,
        "key": list(key),
        "options": [[o.name, o.arg.value, o.short] for o in found],
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(orjson.dumps(data))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a cache that cannot be written is only slower


def extra_options(
    long: Mapping[str, object],
    short: Mapping[str, object],
    environ: Mapping[str, str] | None = None,
) -> tuple[OptSpec, ...]:
    """What the sbatch on PATH has beyond the built-in table's ``long`` names and ``short``
    letters (empty where there is no sbatch, or it cannot be asked)."""
    env = os.environ if environ is None else environ
    found = shutil.which("sbatch", path=env.get("PATH"))
    if found is None:
        return ()
    sbatch = os.path.realpath(found)
    try:
        st = os.stat(sbatch)
    except OSError:
        return ()
    key = (sbatch, st.st_size, st.st_mtime_ns)
    if key in _memo:
        return _memo[key]
    path = _cache_file(env, sbatch)
    cached = _from_cache(path, key)
    if cached is not None:
        _memo[key] = cached
        return cached
    learnt = learn(sbatch, _probe_env(env), (long, short))
    if learnt is not None:
        _to_cache(path, key, learnt)
    # Not asked again in this process either way (a failure is not written to the cache).
    _memo[key] = learnt or ()
    return _memo[key]
