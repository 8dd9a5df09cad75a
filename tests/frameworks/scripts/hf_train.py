"""A real HF Trainer run on a tiny model built from a config (no download), on CPU.

Default verbosity, a ``datasets`` map before training (its progress bar prints
``Map: 100%|...| N/N``), eval and save every ``--every`` steps. ``--no-bar`` turns tqdm off: the
Trainer's PrinterCallback prints the log dicts and nothing carries the step.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from datasets import Dataset
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)


class Pace(TrainerCallback):  # type: ignore[misc]  # the extra is not analysed
    """Sleeps after each step: a training that outlasts a short Slurm time limit."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, *_: object, **__: object) -> None:
        time.sleep(self.seconds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out_hf")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--no-bar", action="store_true", help="disable_tqdm: PrinterCallback's dicts")
    ap.add_argument("--pace", type=float, default=0.0, help="seconds slept per step")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="resume_from_checkpoint=True: the newest checkpoint-N in --out (in a chain, "
        "HPCWRAP_RESUME_FROM, the complete one hpcwrap chose, comes first)",
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=16)
    model = GPT2LMHeadModel(cfg)
    g = torch.Generator().manual_seed(0)
    base = Dataset.from_dict({"start": torch.randint(0, 32, (args.rows,), generator=g).tolist()})

    def tokens(row: dict[str, int]) -> dict[str, list[int]]:
        ids = [(row["start"] + i) % 64 for i in range(16)]  # a learnable pattern
        return {"input_ids": ids, "labels": ids, "attention_mask": [1] * 16}

    data = base.map(tokens, remove_columns=["start"])
    split = data.train_test_split(test_size=64, seed=0)
    targs = TrainingArguments(
        output_dir=args.out,
        max_steps=args.steps,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=32,
        learning_rate=3e-3,
        logging_steps=10,
        eval_strategy="steps",
        eval_steps=args.every,
        save_strategy="steps",
        save_steps=args.every,
        save_total_limit=2,
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=args.no_bar,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=split["train"],
        eval_dataset=split["test"],
        callbacks=[Pace(args.pace)] if args.pace else None,
    )
    # A chain's successor: the complete checkpoint hpcwrap chose (True takes the newest
    # checkpoint-N folder, which a kill in the middle of a save leaves half-written).
    chosen = os.environ.get("HPCWRAP_RESUME_FROM")
    trainer.train(resume_from_checkpoint=chosen or (True if args.resume else None))


if __name__ == "__main__":
    main()
