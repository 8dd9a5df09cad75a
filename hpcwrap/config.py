"""Project settings: ``hpcwrap.toml`` or ``[tool.hpcwrap]`` in ``pyproject.toml``.

Looked up from the working directory upwards (the first folder holding either
file wins; ``hpcwrap.toml`` before ``pyproject.toml``), or taken from the file
that ``HPCWRAP_CONFIG`` names. Unknown keys are refused with the list of valid
ones, so a typo never silently does nothing.

Example ``hpcwrap.toml``::

    run_logs = "run_logs"
    group = "front_cam"
    mode = "experiment"
    objective = "does the wrist camera help?"
    walltime_signal = "USR2"
    walltime_lead = "5m"
    status_every = "30m"
    stall_after = "20m"

    [[patterns]]
    name = "my_trainer"
    regex = 'ep (?P<epoch>\\d+) it (?P<step>\\d+) l=(?P<loss>[-+.\\deE]+|nan|inf)'
"""

from __future__ import annotations

import os
import re
import signal
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hpcwrap.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_ENV = "HPCWRAP_CONFIG"

# Named groups a custom pattern may use; each becomes the progress field of that name.
PATTERN_GROUPS: frozenset[str] = frozenset(
    {"step", "loss", "val_loss", "lr", "epoch", "checkpoint", "wandb_dir", "error"}
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


@dataclass(frozen=True)
class Pattern:
    """A user-supplied progress pattern: a regex whose named groups are progress fields."""

    name: str
    regex: re.Pattern[str]


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults a user gets without any file."""

    run_logs: Path = Path("run_logs")
    group: str | None = None
    mode: str | None = None
    objective: str | None = None
    task: str = "train"
    walltime_signal: str = "USR2"  # NCCL owns USR1 (see slurm-facts.md)
    walltime_lead: float = 300.0  # seconds before the limit
    walltime_warning: bool = True
    forward_walltime_signal: bool = True
    status_every: float = 1800.0
    stall_after: float = 1200.0
    status_min_interval: float = 60.0
    telemetry_interval: float = 10.0  # seconds between samples; 0 turns telemetry off
    lock: str = "auto"  # auto | flock | soft
    # hpcwrap poll: at most one squeue and one sacct per this many seconds per user,
    # and how long each Slurm call may take.
    poll_min_interval: float = 30.0
    poll_timeout: float = 30.0
    # hpcwrap sbatch also submits a tiny follow-up job (afterany) that runs `hpcwrap poll
    # <run>` once the job ended, however it ended (cancelled while pending, killed, its end
    # left for the next writer); the wrapper cancels it when it wrote the end itself.
    follow_up: bool = True
    # The command runs with PYTHONUNBUFFERED=1 unless the user set it: a Python training
    # killed at its limit otherwise loses what it printed last (its stdout is a pipe, so
    # block-buffered), and with it the log's steps and checkpoints.
    unbuffered: bool = True
    preflight: str = "warn"  # warn | strict: a repeated failed experiment is refused
    config_snapshot: tuple[str, ...] = ("config_resolved.*", "resolved_config.*")
    patterns: tuple[Pattern, ...] = ()
    # W&B: the destination `hpcwrap wandb sync` uses when no flag names one, and the
    # folder under which each job gets its own WANDB_DATA_DIR (default: $SCRATCH, $TMPDIR).
    wandb_entity: str | None = None
    wandb_project: str | None = None
    wandb_data_dir: str | None = None
    source: Path | None = field(default=None, compare=False)


_DURATION_KEYS = {
    "walltime_lead",
    "status_every",
    "stall_after",
    "status_min_interval",
    "telemetry_interval",
    "poll_min_interval",
    "poll_timeout",
}
_BOOL_KEYS = {"walltime_warning", "forward_walltime_signal", "follow_up", "unbuffered"}
_STR_KEYS = {"group", "mode", "objective", "task", "walltime_signal", "lock", "preflight"} | {
    "wandb_entity",
    "wandb_project",
    "wandb_data_dir",
}
VALID_KEYS: frozenset[str] = frozenset(f.name for f in fields(Settings)) - {"source"}


def parse_duration(value: object, key: str = "duration") -> float:
    """Seconds from ``300``, ``"90s"``, ``"5m"``, ``"2h"`` or ``"1d"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration like 300, '5m' or '2h', got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"{key}: duration must not be negative, got {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ConfigError(f"{key}: expected a duration like 300, '5m' or '2h', got {value!r}")


def signal_number(name: str) -> int:
    """``"USR2"``, ``"SIGUSR2"`` or ``"12"`` to the signal's number; ConfigError if unknown."""
    text = name.strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        raise ConfigError(f"unknown signal {name!r} (use a name like USR2 or TERM)") from None


def _compile_patterns(raw: object, source: Path | None) -> tuple[Pattern, ...]:
    if not isinstance(raw, list):
        raise ConfigError("patterns: expected a list of tables with 'name' and 'regex'", source)
    out: list[Pattern] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) != {"name", "regex"}:
            raise ConfigError(
                f"patterns[{i}]: expected exactly the keys 'name' and 'regex'", source
            )
        name, regex = item["name"], item["regex"]
        if not isinstance(name, str) or not isinstance(regex, str):
            raise ConfigError(f"patterns[{i}]: 'name' and 'regex' must be strings", source)
        try:
            compiled = re.compile(regex)
        except re.error as exc:
            raise ConfigError(f"patterns[{i}] ({name}): invalid regex: {exc}", source) from None
        unknown = set(compiled.groupindex) - PATTERN_GROUPS
        if not compiled.groupindex or unknown:
            raise ConfigError(
                f"patterns[{i}] ({name}): named groups must be among "
                f"{', '.join(sorted(PATTERN_GROUPS))}; got {sorted(compiled.groupindex) or 'none'}",
                source,
            )
        out.append(Pattern(name=name, regex=compiled))
    return tuple(out)


def settings_from_mapping(data: dict[str, Any], source: Path | None = None) -> Settings:
    """Validate a ``[tool.hpcwrap]``-shaped mapping into Settings."""
    unknown = set(data) - VALID_KEYS
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(sorted(unknown))} in {source or 'config'}; "
            f"valid: {', '.join(sorted(VALID_KEYS))}",
            source,
        )
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in _DURATION_KEYS:
            values[key] = parse_duration(value, key)
        elif key in _BOOL_KEYS:
            if not isinstance(value, bool):
                raise ConfigError(f"{key}: expected true or false, got {value!r}", source)
            values[key] = value
        elif key in _STR_KEYS:
            if not isinstance(value, str):
                raise ConfigError(f"{key}: expected a string, got {value!r}", source)
            values[key] = value
        elif key == "run_logs":
            if not isinstance(value, str) or not value:
                raise ConfigError("run_logs: expected a folder path", source)
            path = Path(value).expanduser()
            values[key] = path if path.is_absolute() or source is None else source.parent / path
        elif key == "config_snapshot":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError("config_snapshot: expected a list of glob patterns", source)
            values[key] = tuple(value)
        elif key == "patterns":
            values[key] = _compile_patterns(value, source)
    if "walltime_signal" in values:
        signal_number(values["walltime_signal"])
    if values.get("preflight", "warn") not in ("warn", "strict"):
        raise ConfigError(
            f"preflight: expected warn or strict, got {values['preflight']!r}", source
        )
    if values.get("lock", "auto") not in ("auto", "flock", "soft"):
        raise ConfigError(f"lock: expected auto, flock or soft, got {values['lock']!r}", source)
    return Settings(**values, source=source)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", path) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", path) from None


def find_config_file(start: Path) -> tuple[Path, bool] | None:
    """The nearest ``hpcwrap.toml`` or ``pyproject.toml`` with ``[tool.hpcwrap]``.

    Returns (path, is_pyproject) or None.
    """
    for folder in (start, *start.parents):
        candidate = folder / "hpcwrap.toml"
        if candidate.is_file():
            return candidate, False
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "hpcwrap" in _read_toml(pyproject).get("tool", {}):
            return pyproject, True
    return None


PROJECT_MARKERS = ("hpcwrap.toml", "pyproject.toml")
RUN_LOGS = "run_logs"


def _git_top(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def find_run_logs(start: Path) -> Path:
    """The project's ``run_logs/``, found the way git finds ``.git``.

    From ``start`` upwards (not above the git work tree's top): the first folder
    that already holds ``run_logs/``, or holds ``hpcwrap.toml`` or ``pyproject.toml``;
    else the git top level; else ``start`` itself. A command run from a subfolder
    of the project writes to the project's run_logs/, not a new ``sub/run_logs/``.
    """
    start = Path(os.path.abspath(start))
    top = _git_top(start)
    for folder in (start, *start.parents):
        if (folder / RUN_LOGS).is_dir() or any((folder / m).is_file() for m in PROJECT_MARKERS):
            return folder / RUN_LOGS
        if folder == top:
            break
    return (top or start) / RUN_LOGS


def where_note(start: Path, settings: Settings) -> str | None:
    """One line naming the project root and run_logs/ a command uses, when they are not
    the git top level's (a ``hpcwrap.toml`` in a subfolder moves them there, which a
    person running from that subfolder may not expect); None when they are, or outside
    git. The lookup order is ``find_run_logs``'s."""
    start = Path(os.path.abspath(start))
    top = _git_top(start)
    run_logs = Path(os.path.abspath(settings.run_logs))
    if top is None or run_logs == top / RUN_LOGS:
        return None
    if settings.source is not None and run_logs != find_run_logs(start):
        why = f"run_logs set in {settings.source}"
    else:
        root = run_logs.parent
        held = [m for m in (RUN_LOGS + "/", *PROJECT_MARKERS) if (root / m.rstrip("/")).exists()]
        why = f"project root {root} holds {' and '.join(held) or 'the config'}"
    return f"run logs in {run_logs} ({why}; the git top level is {top})"


def load_settings(start: Path | None = None) -> Settings:
    """Settings for work started in ``start`` (default: the current directory).

    Without a ``run_logs`` setting, ``run_logs`` is the project's (``find_run_logs``).
    """
    settings = _load_settings(start)
    if settings.run_logs == Path(RUN_LOGS):
        settings = replace(settings, run_logs=find_run_logs(start or Path.cwd()))
    return settings


def _load_settings(start: Path | None = None) -> Settings:
    env = os.environ.get(CONFIG_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={env}: no such file", path)
        found: tuple[Path, bool] | None = (path, path.name == "pyproject.toml")
    else:
        found = find_config_file((start or Path.cwd()).resolve())
    if found is None:
        return Settings()
    path, is_pyproject = found
    data = _read_toml(path)
    if is_pyproject:
        data = data.get("tool", {}).get("hpcwrap", {})
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: [tool.hpcwrap] must be a table", path)
    return settings_from_mapping(data, path)
