"""A real Lightning training paced to outlast a short Slurm time limit, in both ways a
Lightning run continues over several jobs (docs/resume.md's recipes, run as written):

- ``--requeue``: Lightning's own SLURM requeue (``SLURMEnvironment(auto_requeue=True)``):
  on ``SIGUSR1`` (``#SBATCH --signal=SIGUSR1@N``, the job step run with ``srun``)
  Lightning saves ``hpc_ckpt_N.ckpt`` in the root folder and runs ``scontrol requeue``;
  the requeued job's ``fit`` restores from it by itself.
- otherwise hpcwrap's chain: periodic checkpoints (``ModelCheckpoint``), auto-requeue
  off, and ``fit(ckpt_path=...)`` from ``HPCWRAP_RESUME_FROM`` when a successor starts.

Plain ``print`` without flush (hpcwrap starts Python unbuffered); Lightning's CSVLogger.
"""

from __future__ import annotations

import argparse
import os
import signal
import time

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.plugins.environments import SLURMEnvironment
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


# The model of tests/frameworks/scripts/lightning_train.py (a lower learning rate: the run
# is long), kept here because this file is copied alone into each job's folder.
class Tiny(pl.LightningModule):  # type: ignore[misc]  # the extra is not analysed
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class Pace(Callback):  # type: ignore[misc]
    """Sleeps after each step (a real step takes time) and prints the step now and then."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer: pl.Trainer, *_: object) -> None:
        if trainer.global_step % 20 == 0:
            loss = trainer.callback_metrics.get("train_loss")
            print(f"step {trainer.global_step}: train_loss {float(loss):.4f}")
        time.sleep(self.seconds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, required=True)
    ap.add_argument("--every", type=int, default=50, help="checkpoint every N steps")
    ap.add_argument("--pace", type=float, default=0.05, help="seconds slept per step")
    ap.add_argument("--requeue", action="store_true", help="Lightning's own SLURM requeue")
    args = ap.parse_args()
    pl.seed_everything(0)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 8, generator=g)
    y = x @ torch.linspace(-1, 1, 8).unsqueeze(1)
    train = DataLoader(TensorDataset(x[:3840], y[:3840]), batch_size=8)
    val = DataLoader(TensorDataset(x[3840:], y[3840:]), batch_size=64)
    callbacks: list[Callback] = [Pace(args.pace)]
    if args.requeue:
        plugins = [SLURMEnvironment(auto_requeue=True, requeue_signal=signal.SIGUSR1)]
        ckpt_path = None  # Lightning finds its hpc_ckpt_N.ckpt itself
    else:
        plugins = [SLURMEnvironment(auto_requeue=False)]
        callbacks.append(
            ModelCheckpoint(
                dirpath="checkpoints",
                filename="{step}",
                every_n_train_steps=args.every,
                save_top_k=-1,
            )
        )
        ckpt_path = os.environ.get("HPCWRAP_RESUME_FROM")
    trainer = pl.Trainer(
        max_steps=args.max_steps,
        max_epochs=-1,
        accelerator="cpu",
        devices=1,
        callbacks=callbacks,
        plugins=plugins,
        logger=CSVLogger(save_dir=".", name="lightning_logs"),
        val_check_interval=args.every,
        enable_model_summary=False,
        enable_progress_bar=False,
    )
    trainer.fit(Tiny(), train, val, ckpt_path=ckpt_path)
    print(f"done at step {trainer.global_step}")


if __name__ == "__main__":
    main()
