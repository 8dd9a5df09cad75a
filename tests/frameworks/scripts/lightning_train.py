"""A real Lightning run on a tiny regression model, on CPU.

``--bar rich`` keeps Lightning's default progress bar where ``rich`` is installed
(its RichProgressBar: without a terminal it prints only its final frame);
``--bar tqdm`` asks for the TQDMProgressBar. The CSVLogger Lightning uses by
default without tensorboard (``lightning_logs/version_N/metrics.csv``) and
its default ModelCheckpoint (``epoch=E-step=S.ckpt``) are kept.
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


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
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bar", choices=["rich", "tqdm"], required=True)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument(
        "--logger",
        choices=["csv", "default"],
        default="csv",
        help="default: Lightning's own choice (TensorBoard event files where installed)",
    )
    args = ap.parse_args()
    pl.seed_everything(0)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 8, generator=g)
    y = x @ torch.linspace(-1, 1, 8).unsqueeze(1)  # learnable: the loss falls
    train = DataLoader(TensorDataset(x[:896], y[:896]), batch_size=8)
    val = DataLoader(TensorDataset(x[896:], y[896:]), batch_size=64)
    bar = RichProgressBar() if args.bar == "rich" else TQDMProgressBar()
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        devices=1,
        callbacks=[bar],
        # Lightning's default logger without tensorboard, named here so that an
        # installed tensorboard does not turn it into event files.
        logger=CSVLogger(save_dir=".", name="lightning_logs") if args.logger == "csv" else True,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(), train, val)


if __name__ == "__main__":
    main()
