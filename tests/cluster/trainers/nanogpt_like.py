"""A nanoGPT-shaped trainer for the chain tests (issue: real chains), written from
karpathy/nanoGPT train.py's habits, not its model: configurator-style ``--key=value``
arguments, plain print() without flush, ``step N: train loss X, val loss Y`` every
eval_interval (then ``saving checkpoint to <out_dir>`` and one ``ckpt.pt`` saved over in
place), ``iter N: loss X, time ...ms, mfu ...%`` every log_interval, ``--init_from=resume``
to go on from ``<out_dir>/ckpt.pt``, no signal handler (Slurm's TERM kills it)."""

from __future__ import annotations

import json
import math
import os
import sys
import time

out_dir = "out"
init_from = "scratch"
max_iters = 1500
eval_interval = 100
log_interval = 10
iters_per_sec = 10.0

for arg in sys.argv[1:]:  # nanoGPT's configurator.py: --key=value overrides a global
    key, _, value = arg.removeprefix("--").partition("=")
    if key not in globals() or key.startswith("_"):
        raise SystemExit(f"Unknown config key: {key}")
    globals()[key] = type(globals()[key])(value)


def loss_at(i: int, split: str) -> float:
    return 4.2 * math.exp(-i / 600) + (0.9 if split == "train" else 0.95)


iter_num = 0
ckpt_path = os.path.join(out_dir, "ckpt.pt")
if init_from == "resume":
    print(f"Resuming training from {out_dir}")
    with open(ckpt_path) as fh:
        iter_num = json.load(fh)["iter_num"]
else:
    print("Initializing a new model from scratch")
os.makedirs(out_dir, exist_ok=True)
while True:
    if iter_num % eval_interval == 0:
        train, val = loss_at(iter_num, "train"), loss_at(iter_num, "val")
        print(f"step {iter_num}: train loss {train:.4f}, val loss {val:.4f}")
        if iter_num > 0:
            print(f"saving checkpoint to {out_dir}")
            with open(ckpt_path, "w") as fh:  # torch.save over the same file
                json.dump({"iter_num": iter_num, "best_val_loss": val}, fh)
    if iter_num >= max_iters:
        break
    time.sleep(1.0 / iters_per_sec)
    if iter_num % log_interval == 0:
        lossf = loss_at(iter_num, "train") + 0.05 * math.sin(iter_num)
        print(f"iter {iter_num}: loss {lossf:.4f}, time {1000 / iters_per_sec:.2f}ms, mfu 1.00%")
    iter_num += 1
