"""``Observation``: what one line of training output says."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

ERROR_TEXT_MAX = 300


@dataclass(slots=True)
class Observation:
    """What one line says. Unset fields are None."""

    step: int | None = None
    step_total: int | None = None
    loss: float | None = None
    val_loss: float | None = None
    lr: float | None = None
    epoch: float | None = None
    loss_text: str | None = None  # the loss as printed ("3.0000"), for the run log
    # The loss is from the line a framework entry names as its train-loss series (its
    # ``train`` pattern) or from a user pattern: where such lines appear, Results' first
    # and last train loss come from them alone (progress.py).
    series: bool = False
    val_loss_text: str | None = None
    checkpoint: str | None = None  # path as printed
    checkpoint_step: int | None = None
    checkpoint_saved: bool = False  # a save completed (with or without a path)
    checkpoint_started: bool = False  # a save started: not a checkpoint until it completes
    checkpoint_part: bool = False  # a file written as part of a save
    checkpoint_weights: bool = False  # that file is the model's weights (entry.weights)
    checkpoint_on_progress: bool = False  # the started save completes once training goes on
    checkpoint_layout: str | None = None  # "<root>/step-{step}" where no path is printed
    checkpoint_tag: str | None = None  # DeepSpeed's tag in its commit line
    went_on: bool = False  # a line that proves training went on after a started save
    format: str | None = None  # the framework entry that read the line
    wandb_dir: str | None = None
    wandb_url: str | None = None
    config_path: str | None = None
    resumed_from: str | None = None  # the checkpoint the training says it continues from
    error: str | None = None  # one line, at most ERROR_TEXT_MAX characters
    error_kind: str | None = None
    sources: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return (
            self.step is None
            and self.loss is None
            and self.val_loss is None
            and self.lr is None
            and self.epoch is None
            and not self.checkpoint_saved
            and not self.checkpoint_started
            and not self.checkpoint_part
            and not self.went_on
            and self.wandb_dir is None
            and self.wandb_url is None
            and self.config_path is None
            and self.resumed_from is None
            and self.error is None
        )


_FIELD_NAMES = {f.name for f in fields(Observation)}

_LOSSES = ("loss", "val_loss")
