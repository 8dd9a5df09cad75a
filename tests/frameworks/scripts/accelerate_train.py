"""A real accelerate run on a tiny regression model, on CPU.

A tqdm bar over the steps (main process only), ``accelerator.print`` of the
train loss every 10 steps and of the val loss at each eval, and
``accelerator.save_state`` into ``ckpt/step_N`` every ``--every`` steps (no
line says so: accelerate logs its saves at INFO, which is not shown by default).
What it printed goes to ``.truth/accelerate.json`` for the test (hpcwrap does not
read dot folders).
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument(
        "--torn-save", action="store_true", help="end with a save cut short (as by a kill)"
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    acc = Accelerator(cpu=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 8, generator=g)
    y = x @ torch.linspace(-1, 1, 8).unsqueeze(1)  # learnable: the loss falls
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train = DataLoader(TensorDataset(x[:896], y[:896]), batch_size=8, shuffle=True)
    val = DataLoader(TensorDataset(x[896:], y[896:]), batch_size=64)
    model, opt, train, val = acc.prepare(model, opt, train, val)
    truth: dict[str, list[list[float]]] = {"train": [], "val": []}
    step = 0
    bar = tqdm(total=args.steps, disable=not acc.is_local_main_process)
    while step < args.steps:
        for xb, yb in train:
            loss = nn.functional.mse_loss(model(xb), yb)
            acc.backward(loss)
            opt.step()
            opt.zero_grad()
            step += 1
            bar.update(1)
            if step % 10 == 0:
                value = round(loss.item(), 4)
                acc.print(f"step {step}: loss {value:.4f}")
                truth["train"].append([step, value])
            if step % args.every == 0:
                with torch.no_grad():
                    vals = [nn.functional.mse_loss(model(a), b).item() for a, b in val]
                v = round(sum(vals) / len(vals), 4)
                acc.print(f"step {step}: val_loss {v:.4f}")
                truth["val"].append([step, v])
                acc.save_state(f"ckpt/step_{step}")
            if step >= args.steps:
                break
    bar.close()
    if args.torn_save:
        # What a kill during save_state leaves: everything but the RNG states it writes last.
        torn = acc.save_state(f"ckpt/step_{step + args.every}")
        os.remove(os.path.join(torn, f"random_states_{acc.process_index}.pkl"))
    os.makedirs(".truth", exist_ok=True)
    with open(".truth/accelerate.json", "w", encoding="utf-8") as f:
        json.dump(truth, f)


if __name__ == "__main__":
    main()
