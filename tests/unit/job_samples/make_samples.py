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


def hf_trainer_examples() -> str:
    """transformers' examples/pytorch/language-modeling/run_clm.py (float dicts, 4.3x), run
    with `python -u` and 2>&1 into the Slurm file, to its end.

    The Trainer's INFO lines ("[%(levelname)s|%(filename)s:%(lineno)s] %(asctime)s >>
    %(message)s", logging.enable_explicit_format) go to stderr without clearing the bar:
    glued behind a redraw. trainer_callback.py ProgressCallback.on_log writes
    ``training_bar.write(str(logs))`` (cleared, written, redrawn); trainer.py's end of
    train() logs "Training completed." and the summary of averages {'train_runtime', ...,
    'train_loss', 'epoch'}; run_clm.py then calls trainer.save_model() (the output folder)
    and trainer_pt_utils.py log_metrics: print(f"***** {split} metrics *****") and
    print(f"  {key: <{k_width}} = {metrics_formatted[key]:>{v_width}}") (floats rounded
    to 4, runtimes as h:mm:ss.cc, total_flos in GF); then the final evaluate().
    """
    info = "[INFO|{where}] 2024-05-09 10:{m:02d}:{s:02d},{ms:03d} >> "
    total = 870

    def log(where: str, t: int, msg: str) -> str:
        return info.format(where=where, m=t // 60, s=t % 60, ms=(t * 37) % 1000) + msg + "\n"

    def saved(folder: str, t: int) -> str:
        # save_pretrained (configuration_utils.py, generation/configuration_utils.py,
        # modeling_utils.py), then the tokenizer's (tokenization_utils_base.py)
        return "".join(
            log(where, t, f"{what} saved in {folder}/{file}")
            for where, what, file in (
                ("configuration_utils.py:471", "Configuration", "config.json"),
                ("configuration_utils.py:705", "Configuration", "generation_config.json"),
                ("modeling_utils.py:2598", "Model weights", "model.safetensors"),
                (
                    "tokenization_utils_base.py:2488",
                    "tokenizer config file",
                    "tokenizer_config.json",
                ),
                (
                    "tokenization_utils_base.py:2497",
                    "Special tokens file",
                    "special_tokens_map.json",
                ),
            )
        )

    out = [PREAMBLE]
    out.append(log("trainer.py:2048", 0, "***** Running training *****"))
    for where, msg in (
        ("trainer.py:2049", "  Num examples = 2,320"),
        ("trainer.py:2050", "  Num Epochs = 3"),
        ("trainer.py:2051", "  Instantaneous batch size per device = 8"),
        (
            "trainer.py:2054",
            "  Total train batch size (w. parallel, distributed & accumulation) = 8",
        ),
        ("trainer.py:2055", "  Gradient Accumulation steps = 1"),
        ("trainer.py:2056", f"  Total optimization steps = {total}"),
        ("trainer.py:2057", "  Number of trainable parameters = 124,439,808"),
    ):
        out.append(log(where, 0, msg))
    out.append(CR + bar(0, total, "00:00", "?it/s"))
    losses = {100: 3.8412, 200: 3.5127, 300: 3.3541, 400: 3.229, 500: 3.1702, 600: 3.0951,
              700: 3.0433, 800: 3.0107}  # fmt: skip
    for step in range(5, total + 1, 5):
        redraw = CR + bar(step, total, "00:10", "50.00it/s")
        out.append(redraw)
        if step in losses:
            d = {
                "loss": losses[step],
                "grad_norm": 1.8734551668167114 - step / 1000,
                "learning_rate": 5e-05 * (1 - step / total),
                "epoch": round(step / 290, 2),
            }
            out.append(erase() + str(d) + "\n" + redraw)
        if step == 500:
            out.append(log("trainer.py:3305", 10, "Saving model checkpoint to out/checkpoint-500"))
            out.append(saved("out/checkpoint-500", 10))
            out.append(redraw)
    end = CR + bar(total, total, "01:52", " 7.75it/s")
    out.append(log("trainer.py:2329", 112, "\n\nTraining completed. Do not forget to share your "
                   "model on huggingface.co/models =)\n\n"))  # fmt: skip
    summary = {
        "train_runtime": 112.3421,
        "train_samples_per_second": 61.952,
        "train_steps_per_second": 7.744,
        "train_loss": 3.2812457084655762,
        "epoch": 3.0,
    }
    out.append(end + erase() + str(summary) + "\n" + end + "\n")
    out.append(log("trainer.py:3305", 113, "Saving model checkpoint to out"))
    out.append(saved("out", 113))

    def metrics(split: str, values: dict[str, str]) -> str:
        k_width = max(len(k) for k in values)
        v_width = max(len(v) for v in values.values())
        rows = "".join(f"  {k: <{k_width}} = {v:>{v_width}}\n" for k, v in sorted(values.items()))
        return f"***** {split} metrics *****\n" + rows

    out.append(metrics("train", {
        "epoch": "3.0", "total_flos": "1706386GF", "train_loss": "3.2812",
        "train_runtime": "0:01:52.34", "train_samples": "2320",
        "train_samples_per_second": "61.952", "train_steps_per_second": "7.744",
    }))  # fmt: skip
    out.append("05/09/2024 10:01:53 - INFO - __main__ - *** Evaluate ***\n")
    out.append(log("trainer.py:3614", 113, "***** Running Evaluation *****"))
    out.append(log("trainer.py:3616", 113, "  Num examples = 240"))
    out.append(log("trainer.py:3619", 113, "  Batch size = 8"))
    for n in (0, 10, 20, 30):
        out.append(CR + bar(n, 30, "00:03", " 7.71it/s"))
    out.append("\n")
    out.append(metrics("eval", {
        "epoch": "3.0", "eval_accuracy": "0.4123", "eval_loss": "2.9441",
        "eval_runtime": "0:00:03.89", "eval_samples": "240", "eval_samples_per_second": "61.69",
        "eval_steps_per_second": "7.712", "perplexity": "18.9951",
    }))  # fmt: skip
    out.append(log("modelcard.py:450", 118, "Dropping the following result as it does not have "
                   "all the necessary fields:"))  # fmt: skip
    out.append("{'task': {'name': 'Causal Language Modeling', 'type': 'text-generation'}, "
               "'metrics': [{'name': 'Accuracy', 'type': 'accuracy', 'value': 0.4123}]}"
               "\n")  # fmt: skip
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
    """huggingface/lerobot train: MetricsTracker lines (format_big_number for step/smpl/ep),
    the output dir, "Checkpoint policy after step N" before save_checkpoint writes
    <output_dir>/checkpoints/<N:06d>, "End of training"."""
    out = [
        "INFO 2024-11-05 10:00:00 ts/train.py:157 Logs will be saved locally.\n",
        # colored("Output dir:", "yellow", attrs=["bold"]) + f" {cfg.output_dir}"
        "INFO 2024-11-05 10:00:00 ts/train.py:160 \x1b[1m\x1b[33mOutput dir:\x1b[0m "
        "outputs/train/2024-11-05/10-00-00_act\n",
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
        "INFO 2024-11-05 10:20:09 ts/train.py:290 End of training\n",
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
    out = [
        pre.format(s=0) + "Starting job: Llama 3 debug training\n",
        pre.format(s=0) + "Checkpointing active. Checkpoints are loaded from and saved to "
        "./outputs/checkpoint\n",
    ]
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


PREAMBLE = (
    "+ module load cuda/12.4\n"
    "SLURM_JOB_ID=48213 on gpu-node-07 (4 x H100), started 2025-03-02T10:00:00\n"
    "/opt/conda/lib/python3.11/site-packages/torch/cuda/__init__.py:128: UserWarning: "
    "CUDA initialization: Unexpected error from cudaGetDeviceCount()\n"
)


def trl_sft() -> str:
    """huggingface/trl SFTTrainer (a transformers Trainer): datasets' map bars with
    desc ("Tokenizing train dataset", unit examples/s) before the training bar
    (trl/trainer/sft_trainer.py _prepare_dataset; datasets arrow_dataset.py map)."""
    out = [PREAMBLE]
    for desc, total in (
        ("Applying chat template to train dataset", 207865),
        ("Tokenizing train dataset", 207865),
        ("Truncating train dataset", 207865),
        ("Map", 1801350),
    ):
        for n in (0, total // 2, total):
            out.append(CR + bar(n, total, "00:10", "20000.00 examples/s", desc))
        out.append("\n")
    out.append(CR + bar(0, 120, "00:00", "?it/s"))
    for step, loss in ((10, 2.4512), (20, 1.9876), (120, 1.2034)):
        out.append(CR + bar(step, 120, "00:30", " 1.20it/s"))
        out.append(
            erase() + "{'loss': " + f"'{loss}'" + ", 'grad_norm': '1.23', 'learning_rate': "
            "'1.8e-05', 'num_tokens': '1.31e+05', 'mean_token_accuracy': '0.61', 'epoch': "
            f"'{step / 120:.4g}'" + "}\n" + CR + bar(step, 120, "00:30", " 1.20it/s")
        )
    out.append(
        "\n[INFO|trainer.py:3984] 2025-03-02 10:09:00,001 >> Saving model checkpoint to "
        "trl-out/checkpoint-120\n"
        "[INFO|modeling_utils.py:3580] 2025-03-02 10:09:02,001 >> Model weights saved in "
        "trl-out/checkpoint-120/model.safetensors\n"
        "\n\nTraining completed. Do not forget to share your model on huggingface.co/models =)"
        "\n\n\n"
    )
    out.append(
        "{'train_runtime': '540.2', 'train_samples_per_second': '14.2', "
        "'train_steps_per_second': '0.222', 'train_loss': '1.633', 'epoch': '1'}\n"
    )
    return "".join(out)


def accelerate_nlp() -> str:
    """A custom loop on huggingface/accelerate (run_clm_no_trainer-like): a desc-less
    tqdm over steps, "Running tokenizer on dataset" map bars first, accelerator.print
    of the loss, eval_loss printed as a tensor, save_state lines
    (accelerator.py save_state, checkpointing.py save_accelerator_state)."""
    out = [PREAMBLE]
    for n in (0, 2000, 4358):
        out.append(CR + bar(n, 4358, "00:01", "3101.22 examples/s", "Running tokenizer on dataset"))
    out.append("\n")
    out.append(CR + bar(0, 600, "00:00", "?it/s"))
    for step, loss in ((100, 4.1021), (200, 3.5012), (300, 3.2121)):
        out.append(CR + bar(step, 600, "01:00", " 1.66it/s"))
        out.append(erase() + f"step {step}: loss {loss}\n")
    out.append(
        "03/02/2025 10:05:00 - INFO - __main__ - epoch 0: perplexity: 22.2331 eval_loss: "
        "tensor(3.1046, device='cuda:0')\n"
        "03/02/2025 10:05:01 - INFO - accelerate.accelerator - Saving current state to "
        "output/step_300\n"
        "03/02/2025 10:05:03 - INFO - accelerate.checkpointing - Model weights saved in "
        "output/step_300/model.safetensors\n"
        "03/02/2025 10:05:04 - INFO - accelerate.checkpointing - Optimizer state saved in "
        "output/step_300/optimizer.bin\n"
        "03/02/2025 10:05:04 - INFO - accelerate.checkpointing - Scheduler state saved in "
        "output/step_300/scheduler.bin\n"
        "03/02/2025 10:05:04 - INFO - accelerate.checkpointing - Random states saved in "
        "output/step_300/random_states_0.pkl\n"
    )
    for step, loss in ((400, 3.0412), (600, 2.8731)):
        out.append(CR + bar(step, 600, "03:00", " 1.66it/s"))
        out.append(erase() + f"step {step}: loss {loss}\n")
    out.append(
        "03/02/2025 10:09:00 - INFO - __main__ - epoch 1: perplexity: 18.9921 eval_loss: "
        "tensor(2.9441, device='cuda:0')\n"
        "03/02/2025 10:09:01 - INFO - accelerate.accelerator - Saving current state to "
        "output/step_600\n"
        "03/02/2025 10:09:03 - INFO - accelerate.checkpointing - Model weights saved in "
        "output/step_600/model.safetensors\n"
        "slurmstepd: error: *** JOB 48213 ON gpu-node-07 CANCELLED AT 2025-03-02T10:09:04 "
        "DUE TO TIME LIMIT ***\n"
    )
    return "".join(out)


def accelerate_no_trainer() -> str:
    """transformers' examples/pytorch/language-modeling/run_clm_no_trainer.py on accelerate,
    --checkpointing_steps 200 --output_dir out, to its end.

    Its own and accelerate's lines through logging.basicConfig("%(asctime)s -
    %(levelname)s - %(name)s - %(message)s", "%m/%d/%Y %H:%M:%S") on stderr, glued behind
    the desc-less step bar (tqdm(range(max_train_steps))): accelerator.py save_state
    ("Saving current state to out/step_N"), checkpointing.py save_accelerator_state
    ("Model weights|Optimizer state|Scheduler state|Sampler state for dataloader 0 saved
    in ...", "Random states saved in ..." last), logger.info(f"epoch {epoch}: perplexity:
    {perplexity} eval_loss: {eval_loss}") (a tensor). At the end
    unwrapped_model.save_pretrained(args.output_dir) and tokenizer.save_pretrained: the
    transformers lines (set_verbosity_info, its own handler: the bare message):
    configuration_utils.py "Configuration saved in", modeling_utils.py "Model weights saved
    in", tokenization_utils_base.py "tokenizer config file saved in", "Special tokens file
    saved in". The bar is never closed.
    """
    total = 580

    def log(t: int, name: str, msg: str) -> str:
        return f"03/02/2025 10:{t // 60:02d}:{t % 60:02d} - INFO - {name} - {msg}\n"

    out = [PREAMBLE, log(0, "__main__", "Distributed environment: NO"),
           "Num processes: 1\nProcess index: 0\nLocal process index: 0\nDevice: cuda\n\n"
           "Mixed precision type: no\n\n"]  # fmt: skip
    for desc, n in (("Running tokenizer on dataset", 4358), ("Grouping texts in chunks of 1024",
                                                             4358)):  # fmt: skip
        for k in (0, n // 2, n):
            out.append(CR + bar(k, n, "00:01", "3101.22 examples/s", desc))
        out.append("\n")
    out.append(log(30, "__main__", "***** Running training *****"))
    for msg in ("  Num examples = 2318", "  Num Epochs = 2",
                "  Instantaneous batch size per device = 8",
                "  Total train batch size (w. parallel, distributed & accumulation) = 8",
                "  Gradient Accumulation steps = 1",
                f"  Total optimization steps = {total}"):  # fmt: skip
        out.append(log(30, "__main__", msg))
    out.append(CR + bar(0, total, "00:00", "?it/s"))
    evals = {290: ("22.233144127654762", "3.1046"), 580: ("18.99212309121011", "2.9441")}
    for step in range(10, total + 1, 10):
        out.append(CR + bar(step, total, "01:00", " 4.84it/s"))
        t = 30 + step // 5
        if step in (200, 400):
            folder = f"out/step_{step}"
            out.append(log(t, "accelerate.accelerator", f"Saving current state to {folder}"))
            for what, file in (("Model weights", "model.safetensors"),
                               ("Optimizer state", "optimizer.bin"),
                               ("Scheduler state", "scheduler.bin"),
                               ("Sampler state for dataloader 0", "sampler.bin"),
                               ("Random states", "random_states_0.pkl")):  # fmt: skip
                out.append(log(t, "accelerate.checkpointing", f"{what} saved in {folder}/{file}"))
        if step in evals:
            ppl, loss = evals[step]
            out.append(log(t, "__main__", f"epoch {step // 290 - 1}: perplexity: {ppl} "
                           f"eval_loss: tensor({loss}, device='cuda:0')"))  # fmt: skip
    for what, file in (("Configuration", "config.json"),
                       ("Configuration", "generation_config.json"),
                       ("Model weights", "model.safetensors"),
                       ("tokenizer config file", "tokenizer_config.json"),
                       ("Special tokens file", "special_tokens_map.json")):  # fmt: skip
        out.append(f"{what} saved in out/{file}\n")
    return "".join(out)


def deepspeed() -> str:
    """microsoft/DeepSpeed engine via the deepspeed launcher (rank-prefixed lines):
    _report_progress ("step=N, skipped=..., lr=[...]"), a user loop's loss print, and
    one save spread over many lines (engine.py _save_checkpoint/_save_zero_checkpoint,
    torch_checkpoint_engine.py save/commit)."""
    ds = "[2025-03-02 10:{m:02d}:00,000] [INFO] [{where}] "
    out = [PREAMBLE, "[2025-03-02 10:00:00,000] [INFO] [real_accelerator.py:219:get_accelerator]"
           " Setting ds_accelerator to cuda (auto detect)\n"]  # fmt: skip
    for m, (step, loss) in enumerate(((10, 6.7012), (20, 5.9981), (100, 3.4102))):
        out.append(ds.format(m=m, where="logging.py:128:log_dist") + f"[Rank 0] step={step}, "
                   "skipped=0, lr=[0.00029999], mom=[(0.9, 0.95)]\n")  # fmt: skip
        out.append(f"0: Epoch 0 | step {step} | loss {loss}\n")
    tag = "global_step100"
    out += [
        ds.format(m=10, where="logging.py:128:log_dist") + "[Rank 0] Saving model checkpoint: "
        f"/scratch/ds-run/{tag}/mp_rank_00_model_states.pt\n",
        ds.format(m=10, where="torch_checkpoint_engine.py:21:save") + "[Torch] Saving "
        f"/scratch/ds-run/{tag}/mp_rank_00_model_states.pt...\n",
        ds.format(m=10, where="torch_checkpoint_engine.py:23:save") + "[Torch] Saved "
        f"/scratch/ds-run/{tag}/mp_rank_00_model_states.pt.\n",
        ds.format(m=10, where="torch_checkpoint_engine.py:21:save") + "[Torch] Saving "
        f"/scratch/ds-run/{tag}/zero_pp_rank_0_mp_rank_00_optim_states.pt...\n",
        ds.format(m=11, where="torch_checkpoint_engine.py:23:save") + "[Torch] Saved "
        f"/scratch/ds-run/{tag}/zero_pp_rank_0_mp_rank_00_optim_states.pt.\n",
        ds.format(m=11, where="engine.py:3536:_save_zero_checkpoint") + "zero checkpoint saved "
        f"/scratch/ds-run/{tag}/zero_pp_rank_0_mp_rank_00_optim_states.pt\n",
        ds.format(m=11, where="torch_checkpoint_engine.py:33:commit") + f"[Torch] Checkpoint {tag}"
        " is ready now!\n",
    ]
    out.append(ds.format(m=12, where="logging.py:128:log_dist") + "[Rank 0] step=110, skipped=0,"
               " lr=[0.00029], mom=[(0.9, 0.95)]\n")  # fmt: skip
    out.append("0: Epoch 0 | step 110 | loss 3.3311\n")
    out.append(
        ds.format(m=13, where="logging.py:128:log_dist") + "[Rank 0] Saving model checkpoint: "
        "/scratch/ds-run/global_step120/mp_rank_00_model_states.pt\n"
        "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=48213.0. Some of your "
        "processes may have been killed by the cgroup out-of-memory handler.\n"
    )
    return "".join(out)


def fairseq() -> str:
    """facebookresearch/fairseq fairseq-train with --log-format simple (the default off a
    tty): train_inner lines (in-epoch counter, num_updates), the epoch's average line,
    valid lines, and checkpoint_utils' save lines."""
    pre = "2025-03-02 10:{m:02d}:00 | INFO | {tag} | "
    out = [PREAMBLE]
    inner = [(1, 100, 100, 9.876), (1, 200, 200, 8.765), (2, 100, 1219, 6.543),
             (2, 200, 1319, 6.012)]  # fmt: skip
    for i, (ep, n, upd, loss) in enumerate(inner):
        out.append(
            pre.format(m=i, tag="train_inner") + f"epoch {ep:03d}:    {n:3d} / 1119 loss="
            f"{loss}, nll_loss={loss - 0.5:.3f}, ppl=512.3, wps=41234.5, ups=3.21, wpb=12800,"
            f" bsz=64, num_updates={upd}, lr=0.0005, gnorm=1.234, train_wall=31, gb_free=60.1,"
            " wall=40\n"
        )
        if n == 200:
            end = ep * 1119
            out.append(
                pre.format(m=i, tag="valid") + f"epoch {ep:03d} | valid on 'valid' subset | "
                f"loss {[0, 8.91, 6.2][ep]} | nll_loss 8.4 | ppl 338.1 | wps 90123 | wpb 12000 "
                f"| bsz 60 | num_updates {end} | best_loss 6.2\n"
            )
            out.append(
                pre.format(m=i, tag="fairseq.checkpoint_utils") + f"Preparing to save "
                f"checkpoint for epoch {ep} @ {end} updates\n"
            )
            out.append(
                pre.format(m=i, tag="fairseq.checkpoint_utils") + f"Saved checkpoint "
                f"checkpoints/transformer/checkpoint{ep}.pt (epoch {ep} @ {end} updates, score "
                f"{[0, 8.91, 6.2][ep]}) (writing took 3.1 seconds)\n"
            )
            out.append(
                pre.format(m=i, tag="train") + f"epoch {ep:03d} | loss {[0, 9.3, 6.4][ep]} | "
                f"nll_loss 8.8 | ppl 445.2 | wps 41000 | ups 3.2 | wpb 12800 | bsz 64 | "
                f"num_updates {end} | lr 0.0005 | gnorm 1.3 | train_wall 350 | wall 400\n"
            )
    out.append(pre.format(m=9, tag="fairseq_cli.train") + "done training in 801.2 seconds\n")
    return "".join(out)


def timm() -> str:
    """huggingface/pytorch-image-models train.py (_logger lines; Loss: current (average)),
    validate (Test: [ i/last] ... Loss: cur (avg)) and CheckpointSaver's
    "Current checkpoints:" list, sorted by metric and re-printed every epoch."""
    out = [PREAMBLE, "Training in distributed mode with multiple processes, 1 device per process."
           "Process 0, total 4, device cuda:0.\n"]  # fmt: skip
    saved: list[tuple[str, float]] = []
    run = "./output/train/20250302-100000-resnet50-224"
    losses = {0: [(0, 6.93, 6.93), (100, 6.51, 6.72), (312, 6.02, 6.41)],
              1: [(0, 5.91, 5.91), (100, 5.62, 5.75), (312, 5.31, 5.55)]}  # fmt: skip
    for epoch in (0, 1):
        for idx, cur, avg in losses[epoch]:
            pct = 100.0 * (idx + 1) / 313
            out.append(
                f"Train: {epoch} [{idx:>4d}/313 ({pct:>3.0f}%)]  Loss: {cur:#.3g} ({avg:#.3g})  "
                f"Time: 0.412s, 2485.44/s  (0.420s, 2438.10/s)  LR: 1.000e-03  Data: 0.012 "
                "(0.015)\n"
            )
        val = {0: (5.12, 5.31), 1: (4.52, 4.61)}[epoch]
        for i, last in ((0, 48), (48, 48)):
            avg = val[0] if i == 0 else val[1]
            out.append(
                f"Test: [{i:>4d}/{last}]  Time: 0.201 (0.201)  Loss:  {val[0]:>6.3f} ({avg:>6.3f})"
                "  Acc@1: 12.5000 (10.1000)  Acc@5: 31.2500 (28.4000)\n"
            )
        saved.append((f"{run}/checkpoint-{epoch}.pth.tar", [10.1, 18.7][epoch]))
        saved.sort(key=lambda c: c[1], reverse=True)
        out.append("Current checkpoints:\n" + "".join(f" {c}\n" for c in saved) + "\n")
    out.append("*** Best metric: 18.7 (epoch 1)\n")
    return "".join(out)


def llmc() -> str:
    """karpathy/llm.c train_gpt2.cu: printf0 of step + 1, val loss, the checkpoint
    block ("Writing model to", "Writing state to")."""
    rule = "+" + "-" * 23 + "+" + "-" * 52 + "+\n"
    out = [PREAMBLE, rule, "| Parameter             | Value" + " " * 46 + "|\n", rule,
           "val loss 11.009933\n"]  # fmt: skip
    for step, loss in ((1, 11.010023), (2, 10.123456), (250, 4.123456), (500, 3.654321)):
        out.append(
            f"step {step:4d}/2000 | train loss {loss:7.6f} | norm 1.2345 | lr 6.00e-04 | "
            "412.34 ms | 45.1% bf16 MFU | 1271234 tok/s\n"
        )
    out.append("val loss 3.701234\n")
    out.append("Writing model to log124M/model_00000500.bin\n")
    out.append("Writing state to log124M/state_00000500_00000.bin\n")
    out.append(
        "step  501/2000 | train loss 3.650000 | norm 1.1111 | lr 6.00e-04 | 412.34 ms | "
        "45.1% bf16 MFU | 1271234 tok/s\n"
    )
    out.append("Writing model to log124M/model_00000750.bin\n")
    out.append("[CUDA ERROR] at file llmc/cuda_common.h:54:\nout of memory\n")
    return "".join(out)


def nanochat() -> str:
    """karpathy/nanochat scripts/base_train.py (torchrun: each rank's logging) and
    nanochat/checkpoint_manager.py save_checkpoint (model, meta, per-rank optimizer)."""
    ck = "/home/u/.cache/nanochat/base_checkpoints/d20"
    out = [PREAMBLE, "Step 00000 | Validation bpb: 3.3012\n"]
    for step, loss in ((0, 11.090355), (1, 10.883214), (200, 4.012345)):
        out.append(
            f"step {step:05d}/00400 ({100 * step / 400:.2f}%) | loss: {loss:.6f} | lrm: 1.00 | "
            "dt: 512.31ms | tok/sec: 1,023,456 | mfu: 47.12 | total time: 1.71m\n"
        )
    out.append("Step 00200 | Validation bpb: 1.0123\n")
    out.append(f"2025-03-02 10:20:00,001 - nanochat.checkpoint_manager - INFO - Saved model "
               f"parameters to: {ck}/model_000200.pt\n")  # fmt: skip
    out.append(f"2025-03-02 10:20:00,101 - nanochat.checkpoint_manager - INFO - Saved metadata"
               f" to: {ck}/meta_000200.json\n")  # fmt: skip
    for rank in range(4):
        out.append(f"2025-03-02 10:20:01,{rank}01 - nanochat.checkpoint_manager - INFO - Saved "
                   f"optimizer state to: {ck}/optim_000200_rank{rank}.pt\n")  # fmt: skip
    out.append(
        "step 00399/00400 (99.75%) | loss: 3.501234 | lrm: 0.10 | dt: 512.31ms | tok/sec: "
        "1,023,456 | mfu: 47.12 | total time: 3.42m\n"
    )
    out.append("Step 00400 | Validation bpb: 0.9871\n")
    out.append(f"2025-03-02 10:40:00,001 - nanochat.checkpoint_manager - INFO - Saved model "
               f"parameters to: {ck}/model_000400.pt\n")  # fmt: skip
    out.append(f"2025-03-02 10:40:00,101 - nanochat.checkpoint_manager - INFO - Saved metadata"
               f" to: {ck}/meta_000400.json\n")  # fmt: skip
    out.append("Peak memory usage: 61234.12MiB\nTotal training time: 3.45m\n"
               "Minimum validation bpb: 0.9871\n")  # fmt: skip
    return "".join(out)


def openpi_jax() -> str:
    """Physical-Intelligence/openpi scripts/train.py (JAX): its logging format (message
    padded to 80, then (pid:file:line)), pbar.write("Step N: ..."), orbax's save lines;
    the finalize line's path ends the sentence: "to `<dir>`."."""

    def log(t: str, msg: str, where: str) -> str:
        return f"10:{t} [I] {msg:<80} ({where})\n"

    ck = "/scratch/openpi/checkpoints/pi0_libero/exp1"
    out = [PREAMBLE, log("00:00.001", "Running on: gpu-node-07", "4242:train.py:194")]
    out.append(CR + bar(0, 30000, "00:00", "?it/s"))
    for step, loss in ((0, 0.5123), (100, 0.2311), (1000, 0.1520)):
        out.append(CR + bar(step, 30000, "01:00", " 2.01it/s"))
        redraw = CR + bar(step, 30000, "01:00", " 2.01it/s")
        out.append(f"{erase()}Step {step}: grad_norm=1.2345, loss={loss:.4f}, "
                   f"param_norm=1803.5574\n{redraw}")  # fmt: skip
    out.append("\n")
    out.append(log("30:00.001", "[process=0] Saving checkpoint at step 1000",
                   "4242:checkpoint_manager.py:1408"))  # fmt: skip
    out.append(log("30:09.101", f"[process=0][thread=async_save] Finished saving checkpoint "
                   f"(finalized tmp dir) to `{ck}/1000`.", "4242:atomicity.py:573"))  # fmt: skip
    out.append(log("30:09.102", "Finished asynchronous save (blocking + background) in 9.10 "
                   f"seconds to {ck}/1000", "4242:async_checkpointer.py:412"))  # fmt: skip
    out.append(CR + bar(1100, 30000, "40:00", " 2.01it/s"))
    out.append(log("41:00.001", "[process=0] Saving checkpoint at step 2000",
                   "4242:checkpoint_manager.py:1408"))  # fmt: skip
    out.append("jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory while "
               "trying to allocate 8589934592 bytes.\n")  # fmt: skip
    return "".join(out)


def openpi_pytorch() -> str:
    """Physical-Intelligence/openpi scripts/train_pytorch.py (b29f81b), 250 steps (log_interval 100,
    save_interval 100), to its end.

    Its logging (init_logging: "%(asctime)s.%(msecs)03d [%(levelname)s] %(message)-80s
    (%(process)d:%(filename)s:%(lineno)s)") and the "Training" bar (tqdm(total=
    num_train_steps, desc="Training")) share stderr; logging does not clear the bar, so
    every log line is glued behind the latest redraw. Per step: log_memory_usage's
    "Step {step} ({phase}): GPU memory - ..." for the first five; every log_interval
    f"step={global_step} loss={avg_loss:.4f} lr={avg_lr:.2e} grad_norm={avg_grad_norm:.2f}
    time={elapsed:.1f}s" (the mean over the interval, logged before global_step += 1);
    save_checkpoint's f"Saved checkpoint at step {global_step} -> {final_ckpt_dir}" (at
    multiples of save_interval and at num_train_steps - 1, after the atomic rename); then
    pbar.update(1) and pbar.set_postfix({"loss": f"{loss.item():.4f}", "lr": ...,
    "step": global_step}), each a redraw.
    """
    import math

    total, interval, warmup, peak = 250, 100, 1000, 2.5e-05
    ck = "checkpoints/pi0_aloha_sim/torch_run"

    def log(t: float, msg: str, line: int) -> str:
        ms = int(t * 1000)
        hms = f"15:{11 + ms // 60000:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"
        return f"{hms} [I] {msg:<80} (4242:train_pytorch.py:{line})\n"

    def loss_at(step: int) -> float:
        return round(0.1 + 0.3021 * math.exp(-step / 60) + 0.01 * math.sin(step), 4)

    def lr_at(step: int) -> float:
        init = peak / (warmup + 1)
        return init + (peak - init) * step / warmup

    def memory(step: int, phase: str) -> str:
        return (f"Step {step} ({phase}): GPU memory - allocated: 9.71GB, reserved: 10.25GB, "
                "free: 0.54GB, peak_allocated: 9.93GB, peak_reserved: 10.25GB")  # fmt: skip

    out = [PREAMBLE, log(0.0, "Created experiment checkpoint directory: " + ck, 340)]
    for msg, line in (
        (memory(0, "after_model_creation"), 304),
        ("Running on: gpu-node-07 | world_size=1", 486),
        (f"Training config: batch_size=32, effective_batch_size=32, num_train_steps={total}", 489),
        ("Memory optimizations: gradient_checkpointing=True", 492),
        (f"LR schedule: warmup={warmup}, peak_lr={peak:.2e}, decay_steps=30000, "
         "end_lr=2.50e-06", 493),
        ("Optimizer: AdamW, weight_decay=1e-10, clip_norm=1.0", 496),
        ("EMA is not supported for PyTorch training", 499),
        ("Training precision: bfloat16", 500),
    ):  # fmt: skip
        out.append(log(0.1, msg, line))
    out.append(CR + bar(0, total, "00:00", "?it/s", "Training"))
    infos: list[tuple[float, float, float]] = []
    post = ""
    for step in range(total):  # global_step before the update
        t = 12.3 + 0.8 * step
        if step < 5:
            out.append(log(t, memory(step, "after_backward"), 304))
        infos.append((loss_at(step), lr_at(step), 1.2 - step / 500))
        if step % interval == 0:
            n = len(infos)
            avg = [sum(i[k] for i in infos) / n for k in range(3)]
            msg = f"step={step} loss={avg[0]:.4f} lr={avg[1]:.2e} grad_norm={avg[2]:.2f} time="
            out.append(log(t, msg + f"{0.8 * n + (12.3 if step == 0 else 0):.1f}s", 582))
            infos = []
        done = step + 1
        if (done % interval == 0 and done > 0) or done == total - 1:
            out.append(log(t, f"Saved checkpoint at step {done} -> {ck}/{done}", 190))
        elapsed = f"{int(t) // 60:02d}:{int(t) % 60:02d}"
        out.append(CR + bar(done, total, elapsed, " 1.25it/s", "Training", post))  # update
        post = f", loss={loss_at(step):.4f}, lr={lr_at(step):.2e}, step={done}"
        out.append(CR + bar(done, total, elapsed, " 1.25it/s", "Training", post))
    out.append("\n")
    return "".join(out)


def megatron_oom_in_save() -> str:
    """NVIDIA/Megatron-LM: the job is OOM-killed during a save: "saving checkpoint at
    iteration 6000" never gets its "successfully saved" line (training.py, checkpointing.py)."""
    line = (
        " [2025-03-02 12:{m:02d}:00] iteration {it:8d}/   10000 | consumed samples: {cs:12d} | "
        "elapsed time per iteration (ms): 1234.5 | learning rate: 1.500000E-04 | global batch "
        "size:   512 | lm loss: {loss:.6E} | loss scale: 1.0 | grad norm: 1.234 | number of "
        "skipped iterations:   0 | number of nan iterations:   0 |\n"
    )
    out = [PREAMBLE, "> building GPT model ...\n", "training ...\n"]
    for i, it in enumerate(range(1000, 7000, 1000)):
        loss = 6.0 - i * 0.5
        out.append(line.format(m=i, it=it - 990, cs=it * 512, loss=loss + 0.1))
        out.append(line.format(m=i, it=it, cs=it * 512, loss=loss))
        out.append("-" * 100 + "\n")
        out.append(
            f" validation loss at iteration {it} on validation set | lm loss value: "
            f"{loss + 0.2:.6E} | lm loss PPL: 7.526000E+01 | \n"
        )
        out.append("-" * 100 + "\n")
        out.append(f"saving checkpoint at iteration {it:7d} to /lustre/ckpt/gpt-1b in torch_dist "
                   "format\n")  # fmt: skip
        if it < 6000:
            out.append(f"  successfully saved checkpoint from iteration {it:7d} to "
                       "/lustre/ckpt/gpt-1b [ t 1/1, p 1/1 ]\n")  # fmt: skip
    out.append("slurmstepd: error: Detected 1 oom-kill event(s) in StepId=48213.0. Some of your "
               "processes may have been killed by the cgroup out-of-memory handler.\n")  # fmt: skip
    return "".join(out)


SAMPLES = {
    "hf_trainer.log": lambda: hf_trainer(False),
    "hf_trainer_new.log": lambda: hf_trainer(True),
    "hf_trainer_examples.log": hf_trainer_examples,
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
    "trl_sft.log": trl_sft,
    "accelerate.log": accelerate_nlp,
    "accelerate_no_trainer.log": accelerate_no_trainer,
    "deepspeed.log": deepspeed,
    "fairseq.log": fairseq,
    "timm.log": timm,
    "llmc.log": llmc,
    "nanochat.log": nanochat,
    "openpi_jax.log": openpi_jax,
    "openpi_pytorch.log": openpi_pytorch,
    "megatron_oom_in_save.log": megatron_oom_in_save,
}


def main() -> None:
    for name, make in SAMPLES.items():
        (HERE / name).write_bytes(make().encode("utf-8"))


if __name__ == "__main__":
    main()
