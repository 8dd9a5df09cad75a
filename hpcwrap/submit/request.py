"""What a person asks for when they start a run: the run-description options.

``hpcwrap sbatch``, ``hpcwrap run`` and ``hpcwrap log new`` take the same
options (``hpcwrap.cli.run_options``); this holds them validated, with the
project settings filling what the command line left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hpcwrap.config import Settings
from hpcwrap.errors import UsageError
from hpcwrap.runlog.model import parse_run_type


def parse_setting(text: str) -> tuple[str, str]:
    """``"lr=3e-4"`` -> ``("lr", "3e-4")`` for ``--set``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or "\n" in text:
        raise UsageError(
            f"invalid --set {text!r}: expected KEY=VALUE on one line, e.g. --set lr=3e-4"
        )
    return key, value.strip()


@dataclass(frozen=True)
class RunRequest:
    """A validated description of a new run."""

    run_type: str
    objective: str
    task: str = "train"
    description: str = ""
    group: str | None = None
    config: Path | None = None
    dataset: str | None = None
    key_settings: dict[str, str] = field(default_factory=dict)
    run_logs: Path = Path("run_logs")
    initialised_from: str | None = None  # --from: a checkpoint path or a run's name


def build_run_request(
    *,
    settings: Settings,
    mode: str | None = None,
    objective: str | None = None,
    task: str | None = None,
    description: str | None = None,
    group: str | None = None,
    config: str | None = None,
    dataset: str | None = None,
    set_values: list[str] | None = None,
    run_logs: str | None = None,
    initialised_from: str | None = None,
) -> RunRequest:
    """Merge the command line over the settings and refuse what is missing or wrong."""
    chosen_mode = mode or settings.mode
    if not chosen_mode:
        raise UsageError(
            "missing --mode: say what kind of run this is, e.g. --mode replication, "
            "--mode experiment or --mode pipeline:<subtype> (or set mode in hpcwrap.toml)"
        )
    chosen_objective = (objective if objective is not None else settings.objective) or ""
    if not chosen_objective.strip():
        raise UsageError(
            "missing --objective: one line on what this run is trying to verify, e.g. "
            "--objective 'does lr 5e-4 beat the baseline?' (or set objective in hpcwrap.toml)"
        )
    if "\n" in chosen_objective:
        raise UsageError("--objective must be one line")
    chosen_task = (task or settings.task).strip()
    if not chosen_task or "/" in chosen_task or chosen_task.startswith("."):
        raise UsageError(f"invalid --task {chosen_task!r}: a short name like 'train' or 'eval'")
    chosen_group = group if group is not None else settings.group
    if chosen_group is not None and (
        not chosen_group or chosen_group.startswith(".") or "\n" in chosen_group
    ):
        raise UsageError(f"invalid --group {chosen_group!r}: a folder name under run_logs/")
    config_path = None
    if config:
        config_path = Path(config).expanduser()
        if not config_path.is_file():
            raise UsageError(f"--config {config}: no such file")
    key_settings = dict(parse_setting(s) for s in set_values or [])
    if initialised_from is not None and not initialised_from.strip():
        raise UsageError("--from needs a checkpoint path or a run's name")
    return RunRequest(
        run_type=parse_run_type(chosen_mode),
        objective=chosen_objective.strip(),
        task=chosen_task,
        # The title and experiments.md want a short description; the objective
        # is the best stand-in when none was given.
        description=(description or "").strip() or chosen_objective.strip(),
        group=chosen_group,
        config=config_path,
        dataset=dataset,
        key_settings=key_settings,
        run_logs=Path(run_logs).expanduser() if run_logs else settings.run_logs,
        initialised_from=initialised_from.strip() if initialised_from else None,
    )
