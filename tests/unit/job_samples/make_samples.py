"""Writes the raw sample outputs in this folder (run it to regenerate them).

Each sample reproduces what the real tool prints to a Slurm output file (stdout and
stderr merged), bytes included: tqdm's ``\\r`` redraws and erase sequences, ANSI
colours, torchrun's ``[rank0]:`` prefixes. The format of each line was taken from
the tool's source (named per sample). Values are made up but consistent, so the
tests can assert exact numbers.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
CR = "\r"


def bar(n: int, total: int, elapsed: str, rate: str, desc: str = "", post: str = "") -> str:
    """One tqdm redraw as written to a file (default 10-cell bar, as tqdm prints it)."""
    frac = n / total
    eighths = int(frac * 80)
    full, part = divmod(eighths, 8)
    cells = "█" * full + (" ▏▎▍▌▋▊▉"[part] if full < 10 else "")
    cells = cells.ljust(10)
    left = f"{desc}: " if desc else ""
    return f"{left}{frac * 100:3.0f}%|{cells}| {n}/{total} [{elapsed}<00:10, {rate}{post}]"


def erase(width: int = 60) -> str:
    return CR + " " * width + CR


def hf_trainer(new_style: bool) -> str:
    """transformers.Trainer via an examples script (log_level info on the main process).

    ProgressCallback: training bar tqdm(total=max_steps) without desc on stderr, logs
    via training_bar.write(str(logs)); newer releases format floats as text
    (f"{v:.4g}"). The eval bar is tqdm(total=len(eval_dataloader)) without desc.
    """

    def d(items: list[tuple[str, float]]) -> str:
        if new_style:
            return "{" + ", ".join(f"'{k}': '{v:.4g}'" for k, v in items) + "}"
        return str(dict(items))

    out = [
        "[INFO|trainer.py:2078] 2024-05-01 12:00:00,001 >> ***** Running training *****\n",
        "[INFO|trainer.py:2079] 2024-05-01 12:00:00,001 >>   Num examples = 3,200\n",
        "[INFO|trainer.py:2080] 2024-05-01 12:00:00,001 >>   Num Epochs = 3\n",
        "[INFO|trainer.py:2084] 2024-05-01 12:00:00,001 >>   Total optimization steps = 300\n",
        "[INFO|trainer.py:2085] 2024-05-01 12:00:00,002 >>   Number of trainable parameters"
        " = 124,439,808\n",
        CR + bar(0, 300, "00:00", "?it/s"),
    ]
    losses = {100: 2.3124, 200: 1.2056, 300: 0.8731}
    for step in (25, 50, 75, 100, 125, 150, 175, 200, 225, 250, 275, 300):
        out.append(CR + bar(step, 300, "00:05", " 4.43it/s"))
        if step in losses:
            items = [
                ("loss", losses[step]),
                ("grad_norm", 1.8734),
                ("learning_rate", 5e-05 * (1 - step / 300) + 1e-06),
                ("epoch", step / 100),
            ]
            if step == 200:
                # Glued: the dict right behind the bar (stdout and stderr in one file).
                out.append(d(items) + "\n")
            else:
                out.append(erase() + d(items) + "\n" + CR + bar(step, 300, "00:05", " 4.43it/s"))
            # evaluation: a desc-less bar with a smaller total, erased when done
            for n in (0, 6, 13):
                out.append(CR + bar(n, 13, "00:00", "55.12it/s"))
            out.append(erase())
            eval_loss = {100: 2.4012, 200: 1.3125, 300: 0.9944}[step]
            items = [
                ("eval_loss", eval_loss),
                ("eval_runtime", 0.2451),
                ("eval_samples_per_second", 1632.4),
                ("eval_steps_per_second", 53.04),
                ("epoch", step / 100),
            ]
            out.append(d(items) + "\n" + CR + bar(step, 300, "00:05", " 4.43it/s"))
            out.append(
                erase()
                + f"[INFO|trainer.py:3305] 2024-05-01 12:00:{step // 10:02d},123 >> Saving model "
                f"checkpoint to out/checkpoint-{step}\n"
                + f"[INFO|configuration_utils.py:471] 2024-05-01 12:00:{step // 10:02d},124 >> "
                f"Configuration saved in out/checkpoint-{step}/config.json\n"
                + f"[INFO|modeling_utils.py:2590] 2024-05-01 12:00:{step // 10:02d},200 >> Model "
                f"weights saved in out/checkpoint-{step}/model.safetensors\n"
            )
    summary = [
        ("train_runtime", 67.7),
        ("train_samples_per_second", 141.8),
        ("train_steps_per_second", 4.431),
        ("train_loss", 1.6543),
        ("epoch", 3.0),
    ]
    out.append(erase() + d(summary) + "\n" + CR + bar(300, 300, "01:07", " 4.43it/s") + "\n")
    return "".join(out)


def lightning() -> str:
    """PyTorch Lightning 2.x TQDMProgressBar (stdout): "Epoch N" bars per epoch counting
    batches, a "Validation DataLoader 0" bar drawn and erased (leave=False), metrics
    logged with prog_bar=True in the postfix; ModelCheckpoint(verbose=True)."""
    out = [
        "GPU available: True (cuda), used: True\n",
        "TPU available: False, using: 0 TPU cores\n",
        "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]\n",
        "\n",
        "  | Name  | Type | Params | Mode \n",
        "-------------------------------------------\n",
        "0 | model | GPT  | 85.9 M | train\n",
        "-------------------------------------------\n",
        CR + "Sanity Checking: |          | 0/? [00:00<?, ?it/s]",
        CR + bar(2, 2, "00:00", "12.31it/s", "Sanity Checking DataLoader 0"),
        erase(70),
    ]
    train = {0: 1.95, 1: 0.812}
    val = {0: 1.23, 1: 0.947}
    for epoch in (0, 1):
        post_val = f", val_loss={val[epoch - 1]:.3f}" if epoch else ""
        for n in (0, 25, 50, 75, 100):
            tl = train[epoch] + (100 - n) * 0.004
            post = f", v_num=3, train_loss={tl:.3f}{post_val}" if n else f", v_num=3{post_val}"
            out.append(CR + bar(n, 100, "00:02", "45.11it/s", f"Epoch {epoch}", post))
        for n in (0, 4, 8):
            out.append(CR + bar(n, 8, "00:00", "88.02it/s", "Validation DataLoader 0"))
        out.append(erase(70))
        post = f", v_num=3, train_loss={train[epoch]:.3f}, val_loss={val[epoch]:.3f}"
        out.append(CR + bar(100, 100, "00:02", "45.11it/s", f"Epoch {epoch}", post))
        step = (epoch + 1) * 100
        out.append(
            f"\nEpoch {epoch}, global step {step}: 'val_loss' reached {val[epoch]:.5f} (best "
            f"{val[epoch]:.5f}), saving model to '/scratch/u/lightning_logs/version_3/checkpoints/"
            f"epoch={epoch}-step={step}.ckpt' as top 1\n"
        )
    out.append("`Trainer.fit` stopped: `max_epochs=2` reached.\n")
    return "".join(out)


def nanogpt() -> str:
    """karpathy/nanoGPT train.py: print() lines."""
    out = [
        "tokens per iteration will be: 16,384\n",
        "found vocab_size = 65 (inside data/shakespeare_char/meta.pkl)\n",
        "Initializing a new model from scratch\n",
        "number of parameters: 10.65M\n",
        "num decayed parameter tensors: 26, with 10,740,096 parameters\n",
        "using fused AdamW: True\n",
        "compiling the model... (takes a ~minute)\n",
        "step 0: train loss 4.2874, val loss 4.2823\n",
        "iter 0: loss 4.2649, time 30221.45ms, mfu -100.00%\n",
        "iter 10: loss 3.2330, time 60.16ms, mfu 6.19%\n",
        "iter 240: loss 2.0897, time 60.39ms, mfu 6.21%\n",
        "step 250: train loss 1.9663, val loss 2.0650\n",
        "saving checkpoint to out-shakespeare-char\n",
        "iter 250: loss 2.0290, time 8811.31ms, mfu 5.59%\n",
        "iter 490: loss 1.6353, time 60.11ms, mfu 6.20%\n",
        "step 500: train loss 1.5390, val loss 1.7269\n",
        "saving checkpoint to out-shakespeare-char\n",
        "iter 500: loss 1.5479, time 8802.15ms, mfu 5.59%\n",
    ]
    return "".join(out)


def lerobot() -> str:
    """huggingface/lerobot train: MetricsTracker lines (format_big_number for step/smpl/ep)."""
    out = [
        "INFO 2024-11-05 10:00:00 ts/train.py:157 Logs will be saved locally.\n",
        "INFO 2024-11-05 10:00:01 ts/train.py:170 cfg.steps=100000 (100K)\n",
        "INFO 2024-11-05 10:00:01 ts/train.py:171 dataset.num_frames=20000 (20K)\n",
        "INFO 2024-11-05 10:00:01 ts/train.py:172 dataset.num_episodes=200\n",
        "INFO 2024-11-05 10:00:02 ts/train.py:222 Start offline training on a fixed dataset\n",
        "INFO 2024-11-05 10:01:00 ts/train.py:248 step:200 smpl:2K ep:16 epch:0.08 loss:1.482 "
        "grdn:48.211 lr:1.0e-05 updt_s:0.145 data_s:0.010\n",
        "INFO 2024-11-05 10:02:00 ts/train.py:248 step:400 smpl:3K ep:32 epch:0.16 loss:0.941 "
        "grdn:30.503 lr:1.0e-05 updt_s:0.144 data_s:0.009\n",
        "INFO 2024-11-05 10:20:00 ts/train.py:248 step:20K smpl:320K ep:3K epch:16.00 loss:0.118 "
        "grdn:6.042 lr:1.0e-05 updt_s:0.143 data_s:0.008\n",
        "INFO 2024-11-05 10:20:01 ts/train.py:256 Checkpoint policy after step 20000\n",
    ]
    return "".join(out)


def openpi() -> str:
    """Physical-Intelligence/openpi scripts/train.py: a tqdm over steps (initial=start,
    total=num_train_steps, no desc) and pbar.write(f"Step {step}: {info_str}") with
    ", ".join(f"{k}={v:.4f}")."""
    out = [
        "INFO:root:Running on: gpu-node-17\n",
        "INFO:root:Initialized data loader:\n",
        CR + bar(0, 30000, "00:00", "?it/s"),
    ]
    infos = {0: (12.3456, 0.5123), 100: (3.2345, 0.2311), 200: (2.1234, 0.1520)}
    for step in (0, 50, 100, 150, 200):
        out.append(CR + bar(step, 30000, "01:00", " 2.01it/s"))
        if step in infos:
            g, loss = infos[step]
            out.append(
                erase() + f"Step {step}: grad_norm={g:.4f}, loss={loss:.4f}, "
                f"param_norm=1803.5574\n" + CR + bar(step, 30000, "01:00", " 2.01it/s")
            )
    out.append("\n")
    return "".join(out)


def megatron() -> str:
    """NVIDIA/Megatron-LM training_log / evaluate_and_print_results / save_checkpoint."""
    line = (
        " [2024-05-01 12:{m:02d}:00] iteration {it:8d}/{tot:8d} | consumed samples: {cs:12d} | "
        "elapsed time per iteration (ms): 1234.5 | learning rate: {lr:.6E} | global batch size: "
        "  512 | lm loss: {loss:.6E} | loss scale: 1.0 | grad norm: 1.234 | number of skipped "
        "iterations:   0 | number of nan iterations:   0 |\n"
    )
    out = ["> building GPT model ...\n", "training ...\n"]
    for m, (it, loss, lr) in enumerate(
        ((10, 10.8765, 1.5e-5), (20, 9.5432, 3.0e-5), (1000, 4.1234, 1.5e-4))
    ):
        out.append(line.format(m=m, it=it, tot=500000, cs=it * 512, lr=lr, loss=loss))
    out.append("-" * 100 + "\n")
    out.append(
        " validation loss at iteration 1000 on validation set | lm loss value: 4.321000E+00 | "
        "lm loss PPL: 7.526000E+01 | \n"
    )
    out.append("-" * 100 + "\n")
    out.append(
        "saving checkpoint at iteration    1000 to /lustre/ckpt/gpt-1b in torch_dist format\n"
    )
    out.append("  successfully saved checkpoint from iteration    1000 to /lustre/ckpt/gpt-1b\n")
    return "".join(out)


def torchtitan() -> str:
    """pytorch/torchtitan via torchrun (--tee 3 prefixes "[rank0]:"): MetricsProcessor.log
    with colours (Color: red=31 green=32 orange=33 turquoise=36... reset=39), validation,
    checkpoint messages."""
    red, green, orange, turq, blue, cyan, mag, yellow, reset = (
        "\x1b[31m",
        "\x1b[32m",
        "\x1b[33m",
        "\x1b[36m",
        "\x1b[34m",
        "\x1b[36m",
        "\x1b[35m",
        "\x1b[33m",
        "\x1b[39m",
    )
    pre = "[rank0]:[titan] 2025-04-01 00:25:{s:02d},616 - root - INFO - "
    out = [pre.format(s=0) + "Starting job: Llama 3 debug training\n"]
    steps = ((1, 12.2345, 18.1), (10, 9.8765, 7.2), (20, 7.5432, 3.1))
    for i, (step, loss, gn) in enumerate(steps):
        out.append(
            pre.format(s=i + 1)
            + f"{red}step: {step:2}  {green}loss: {loss:8.5f}  {orange}grad_norm: {gn:7.4f}  "
            f"{turq}memory: 87.04GiB(93.48%)  {blue}tps: 52,142  {cyan}tflops: 301.55  "
            f"{mag}mfu: 30.49%{reset}\n"
        )
    out.append(
        pre.format(s=30)
        + f"{yellow}validate step: 20  {green}loss:  7.9012  {turq}memory: 80.01GiB(86.00%)  "
        f"{blue}tps: 61,001{reset}\n"
    )
    out.append(pre.format(s=31) + "Saving the checkpoint (or staging if async is enabled).\n")
    out.append(
        pre.format(s=36) + "Finished saving the checkpoint (or staging if async is enabled)"
        "in 5.53 seconds.\n"
    )
    out.append(pre.format(s=37) + "Training completed\n")
    return "".join(out)


def jsonl() -> str:
    """One JSON object per line, as custom loops print metrics."""
    out = [
        '{"step": 10, "epoch": 0.1, "loss": 2.5, "lr": 0.0003, "grad_norm": 1.5}\n',
        '{"step": 20, "epoch": 0.2, "train/loss": 1.75, "train/lr": 0.00029}\n',
        '{"step": 20, "eval/loss": 1.9}\n',
        '{"step": 30, "epoch": 0.3, "loss": NaN, "lr": 0.00028}\n',
        '{"step": 30, "train_runtime": 12.5, "train_loss": 1.2}\n',
    ]
    return "".join(out)


def errors_oom() -> str:
    """A CUDA OOM traceback (torch >= 2.3 names it torch.OutOfMemoryError)."""
    return (
        "step 5 loss 2.1\n"
        "Traceback (most recent call last):\n"
        '  File "/home/u/train.py", line 211, in <module>\n'
        "    main()\n"
        '  File "/home/u/train.py", line 180, in main\n'
        "    loss = model(batch).loss\n"
        "           ^^^^^^^^^^^^\n"
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
        "total capacity of 79.15 GiB of which 1.23 GiB is free.\n"
    )


def errors_torchrun() -> str:
    """torchrun with prefixed ranks: an NCCL watchdog timeout and a rank's traceback."""
    return (
        "[rank1]:[E1011 12:00:00.123456 ProcessGroupNCCL.cpp:616] [Rank 1] Watchdog caught "
        "collective operation timeout: WorkNCCL(SeqNum=1234, OpType=ALLREDUCE, NumelIn=1048576, "
        "NumelOut=1048576, Timeout(ms)=600000) ran for 600123 milliseconds before timing out.\n"
        "[rank0]: Traceback (most recent call last):\n"
        '[rank0]:   File "/home/u/train.py", line 12, in <module>\n'
        "[rank0]:     train_step(batch)\n"
        "[rank0]: step 99 loss 0.5\n"
        "[rank0]: RuntimeError: boom at step 100\n"
    )


def errors_slurm() -> str:
    """What srun / slurmstepd print into a job's output."""
    return (
        "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=1234.0. Some of your "
        "processes may have been killed by the cgroup out-of-memory handler.\n"
        "srun: error: n1: task 0: Out Of Memory\n"
        "slurmstepd: error: *** STEP 1234.0 ON n1 CANCELLED AT 2024-05-01T12:00:00 DUE TO TIME "
        "LIMIT ***\n"
        "/var/spool/slurmd/job01234/slurm_script: line 9: 4242 Killed                  python "
        "train.py\n"
    )


def wandb_offline() -> str:
    """wandb's own lines (to stderr) for an offline run."""
    return (
        "wandb: Tracking run with wandb version 0.17.0\n"
        "wandb: W&B syncing is set to `offline` in this directory.  \n"
        "wandb: Run `wandb online` or set WANDB_MODE=online to enable cloud syncing.\n"
        "step 1 loss 2.0\n"
        "wandb: You can sync this run to the cloud by running:\n"
        "wandb: wandb sync /scratch/u/wandb/offline-run-20240501_120000-abc123xy\n"
        "wandb: Find logs at: /scratch/u/wandb/offline-run-20240501_120000-abc123xy/logs\n"
    )


SAMPLES = {
    "hf_trainer.log": lambda: hf_trainer(False),
    "hf_trainer_new.log": lambda: hf_trainer(True),
    "lightning.log": lightning,
    "nanogpt.log": nanogpt,
    "lerobot.log": lerobot,
    "openpi.log": openpi,
    "megatron.log": megatron,
    "torchtitan.log": torchtitan,
    "jsonl.log": jsonl,
    "errors_oom.log": errors_oom,
    "errors_torchrun.log": errors_torchrun,
    "errors_slurm.log": errors_slurm,
    "wandb_offline.log": wandb_offline,
}


def main() -> None:
    for name, make in SAMPLES.items():
        (HERE / name).write_bytes(make().encode("utf-8"))


if __name__ == "__main__":
    main()
