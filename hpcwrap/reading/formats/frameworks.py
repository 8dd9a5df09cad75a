"""The frameworks hpcwrap reads, one ``Entry`` each (adding one is adding an entry here
and its sample in tests/unit/job_samples/make_samples.py).

Each entry cites where its format strings are; the samples are written from those.
Frameworks whose metric lines the generic readers already read right (HF-style dicts,
tqdm bars, ``key=value`` and JSON lines) declare only what those readers cannot know:
their save lines, which bar or line is an average, what their step means. An entry's
``train`` pattern names the framework's train-loss series (nanoGPT's eval estimate, not
its one-batch ``iter`` lines): Results' first and last train loss come from it.
"""

from __future__ import annotations

from hpcwrap.reading.formats.entry import FILE, PATH, STEP_EPOCH_INDEX, STEP_INDEX, Entry, rx

# The model's weights file, in the words of transformers' modeling_utils.py save_pretrained
# (logger.info(f"Model weights saved in {path_to_weights}"); sharded: "The model is bigger
# than the maximum size per checkpoint (...) and is going to be split in N checkpoint shards.
# You can find where each parameters has been saved in the index located at
# {save_index_file}.") and of accelerate's checkpointing.py and save_model (the same first
# words). On its own it is a save_pretrained: its folder is the checkpoint.
_WEIGHTS = (
    rx(r"\bModel weights saved in " + FILE),
    rx(r"has been saved in the index located at " + FILE),
)

ENTRIES: tuple[Entry, ...] = (
    # NVIDIA/Megatron-LM: megatron/training/training.py (training_log,
    # evaluate_and_print_results), megatron/training/checkpointing.py (save_checkpoint).
    Entry(
        name="megatron",
        source="NVIDIA/Megatron-LM: megatron/training/training.py, checkpointing.py",
        hints=("iteration",),
        train=rx(r"\biteration\s+(?P<step>\d+)\s*/\s*(?P<total>\d+)\s*\|"),
        # "on test set" is a test loss, not a val loss; old releases print no set name.
        val=rx(
            r"validation loss at iteration\s+(?P<step>\d+)(?: on validation set)?\s*\|"
            r".*?\blm loss value:\s*(?P<val_loss>{NUM})"
        ),
        ignore=rx(r"validation loss at iteration\s+\d+ on test set"),
        fields=(
            ("loss", rx(r"\|\s*lm loss:\s*(?P<v>{NUM})\s*\|")),
            ("lr", rx(r"\|\s*learning rate:\s*(?P<v>{NUM})\s*\|")),
        ),
        started=(rx(r"saving checkpoint at iteration\s+(?P<step>\d+)\s+to\s+" + PATH),),
        saved=(
            rx(
                r"successfully saved checkpoint (?:from|at) iteration\s+(?P<step>\d+)\s+to\s+"
                + PATH
            ),
        ),
    ),
    # microsoft/DeepSpeed: deepspeed/runtime/engine.py (_report_progress, _save_checkpoint,
    # _save_zero_checkpoint), runtime/checkpoint_engine/torch_checkpoint_engine.py. One
    # save is many lines: the model states file, each rank's zero shard, the commit.
    Entry(
        name="deepspeed",
        source="microsoft/DeepSpeed: deepspeed/runtime/engine.py, torch_checkpoint_engine.py",
        hints=("step=", "checkpoint", "ready now"),
        train=rx(r"\[Rank 0\] step=(?P<step>\d+), skipped=\d+, lr=\[(?P<lr>{NUM})"),
        started=(rx(r"Saving model checkpoint:\s*" + FILE),),
        saved=(
            rx(r"\[Torch\] Checkpoint (?P<tag>\S+) is ready now!"),
            rx(r"zero checkpoint saved\s+" + FILE),
        ),
        # Newer releases print no commit line: the save is synchronous (it ends with a
        # barrier), so training going on after it completes it.
        completes_on_progress=True,
    ),
    # facebookresearch/fairseq: fairseq/logging/progress_bar.py (SimpleProgressBar
    # log/print), fairseq_cli/train.py (train_inner, train, valid tags),
    # fairseq/checkpoint_utils.py (save_checkpoint). The step is num_updates.
    Entry(
        name="fairseq",
        source="facebookresearch/fairseq: fairseq/logging/progress_bar.py, checkpoint_utils.py",
        hints=("num_updates", "checkpoint"),
        train=rx(r"\bepoch (?P<epoch>\d+):\s+\d+ / \d+ .*?\bloss=(?P<loss>{NUM})"),
        val=rx(r"\bvalid on '[^']*' subset \| loss (?P<val_loss>{NUM})"),
        fields=(
            ("step", rx(r"\bnum_updates[= ](?P<v>\d+)")),
            ("lr", rx(r"\blr[= ](?P<v>{NUM})")),
        ),
        # "| train | epoch 001 | loss 9.1 | ... | num_updates 1119": the epoch's average
        # (--log-format json: '| train | {"epoch": 1, "train_loss": "9.1", ...}')
        average=rx(
            r"\|\s*train\s*\|\s*"
            r"(?:epoch \d+ \| loss (?P<loss>{NUM})|\{\"epoch\": \d+, \"train_loss\")"
        ),
        started=(rx(r"Preparing to save checkpoint for epoch \d+ @ (?P<step>\d+) updates"),),
        saved=(rx(r"Saved checkpoint " + PATH + r" \(epoch \d+ @ (?P<step>\d+) updates"),),
    ),
    # huggingface/pytorch-image-models: train.py (train_one_epoch, validate),
    # timm/utils/checkpoint_saver.py (save_checkpoint prints the kept list each epoch).
    Entry(
        name="timm",
        source="huggingface/pytorch-image-models: train.py, timm/utils/checkpoint_saver.py",
        hints=("train:", "test:", "current checkpoints", "pth.tar"),
        # "Loss: current (average)": the current value is the per-step one
        train=rx(
            r"\bTrain:\s*(?P<epoch>\d+)\s*\[\s*(?P<index>\d+)/(?P<total>\d+)\s*\(\s*\d+%\)\]"
            r"\s+Loss:\s*(?P<loss>{NUM})\s*\("
        ),
        # a Test line's average is the val loss once the last batch is in
        val=rx(
            r"\bTest(?: \(EMA\))?:\s*\[\s*(?P<index>\d+)/(?P<last>\d+)\].*?"
            r"\bLoss:\s*{NUM}\s*\(\s*(?P<val_loss>{NUM})\)"
        ),
        fields=(("lr", rx(r"\bLR:\s*(?P<v>{NUM})")),),
        step=STEP_EPOCH_INDEX,
        listing=rx(r"\bCurrent checkpoints:"),
        listing_item=rx(r"^\s*\('(?P<path>[^']+)',\s*[^)]*\)\s*$"),
        path_step=rx(r"checkpoint-(?P<step>\d+)\.pth\.tar$"),
        path_step_is_epoch=True,
    ),
    # karpathy/llm.c: train_gpt2.cu main loop (prints step + 1: the updates done) and
    # its checkpoint block ("Writing model to", then the state; a DONE_ file on disk).
    Entry(
        name="llm.c",
        source="karpathy/llm.c: train_gpt2.cu",
        hints=("train loss", "val loss", "writing model"),
        train=rx(r"^step\s+(?P<step>\d+)/(?P<total>\d+) \| train loss (?P<loss>{NUM}) \|"),
        val=rx(r"^val loss (?P<val_loss>{NUM})\s*$"),
        fields=(("lr", rx(r"\| lr (?P<v>{NUM}) \|")),),
        started=(rx(r"^Writing model to " + PATH),),
        path_step=rx(r"model_0*(?P<step>\d+)\.bin$"),
        completes_on_progress=True,
    ),
    # karpathy/nanochat: scripts/base_train.py (the step line, "Validation bpb"),
    # nanochat/checkpoint_manager.py (model, metadata, then one optimizer shard per rank).
    # The step line is printed after update <step> (0-based): step + 1 updates are done;
    # the val line and the save at step N come before update N (N done).
    Entry(
        name="nanochat",
        source="karpathy/nanochat: scripts/base_train.py, nanochat/checkpoint_manager.py",
        hints=("step ", "validation bpb", "saved model parameters"),
        train=rx(r"^step (?P<step>\d+)/(?P<total>\d+) \([\d.]+%\) \| loss: (?P<loss>{NUM}) \|"),
        # bits per byte: nanochat's validation loss
        val=rx(r"^Step (?P<step>\d+) \| Validation bpb: (?P<val_loss>{NUM})"),
        started=(rx(r"Saved model parameters to: " + FILE),),
        parts=(rx(r"Saved (?:metadata|optimizer state) to: " + FILE),),
        path_step=rx(r"model_0*(?P<step>\d+)\.pt$"),
        step=STEP_INDEX,
        completes_on_progress=True,
        went_on=rx(r"Total training time:|Minimum validation bpb:|Peak memory usage:"),
    ),
    # Physical-Intelligence/openpi scripts/train.py (JAX): saves through orbax
    # (google/orbax checkpoint/orbax/checkpoint/checkpoint_manager.py: "[process=0]
    # Saving checkpoint at step N", "Finished synchronous save"; async_checkpointer.py,
    # atomicity.py: the async save's end);
    # the path of "finalized tmp dir" ends the sentence: "to `<dir>`."
    Entry(
        name="openpi-jax",
        source="Physical-Intelligence/openpi: scripts/train.py, src/openpi/training/checkpoints.py",
        hints=("step ", "checkpoint", "synchronous save"),
        train=rx(r"^Step (?P<step>\d+): .*?\bloss=(?P<loss>{NUM})"),
        started=(rx(r"\bSaving checkpoint at step (?P<step>\d+)"),),
        saved=(
            rx(
                r"Finished asynchronous save \(blocking \+ background\) in [\d.]+ seconds to "
                + PATH
            ),
            rx(r"Finished saving checkpoint \(finalized tmp dir\) to " + PATH),
            rx(r"\[step=(?P<step>\d+)\] Finished synchronous save"),
        ),
        path_step=rx(r"/(?P<step>\d+)/?$"),
    ),
    # Physical-Intelligence/openpi scripts/train_pytorch.py: logging.info(f"step={global_step}
    # loss={avg_loss:.4f} lr={avg_lr:.2e} ...") every log_interval (the mean over the interval,
    # the first batch's alone at step 0; logged before global_step += 1: the 0-based index of
    # the update done) is its train-loss series; the "Training" bar's set_postfix loss= (the
    # latest batch's) stands in only where no such line was read. Its log lines are glued
    # behind the bar (logging does not clear it): the scanner reads them as lines of their own.
    Entry(
        name="openpi-pytorch",
        source="Physical-Intelligence/openpi: scripts/train_pytorch.py",
        hints=("step=", "saved checkpoint at step"),
        train=rx(r"\bstep=(?P<step>\d+) loss=(?P<loss>{NUM}) lr=(?P<lr>{NUM})"),
        step=STEP_INDEX,
        saved=(rx(r"Saved checkpoint at step (?P<step>\d+) -> " + PATH),),
    ),
    # pytorch/torchtitan: torchtitan/components/metrics.py (MetricsProcessor.log, the
    # validator's "validate step"), torchtitan/components/checkpoint.py (no path in
    # the save lines: the folder is announced once, each save is <folder>/step-<N>).
    Entry(
        name="torchtitan",
        source="pytorch/torchtitan: torchtitan/components/metrics.py, checkpoint.py",
        hints=("step:", "checkpoint"),
        train=rx(r"(?<!validate )\bstep:\s*(?P<step>\d+)\s+loss:\s*(?P<loss>{NUM})"),
        val=rx(r"\bvalidate step:\s*(?P<step>\d+)\s+loss:\s*(?P<val_loss>{NUM})"),
        root=rx(r"Checkpoints are loaded from and saved to (?P<root>\S+)"),
        layout="{root}/step-{step}",
        started=(
            rx(r"Saving the checkpoint \(or staging if async is enabled\)"),
            rx(
                r"Saving a (?:full|model weights only) checkpoint .*?"
                r"at last step, step (?P<step>\d+)"
            ),
        ),
        saved=(rx(r"Finished saving the checkpoint \(or staging if async is enabled\)"),),
    ),
    # huggingface/lerobot: src/lerobot/scripts/train.py ("Checkpoint policy after step",
    # then save_checkpoint into <output_dir>/checkpoints/<step:06d>).
    Entry(
        name="lerobot",
        source="huggingface/lerobot: src/lerobot/scripts/train.py, common/train_utils.py",
        hints=("checkpoint policy", "output dir", "end of training"),
        root=rx(r"Output dir:\s*(?P<root>\S+)"),
        layout="{root}/checkpoints/{step:06d}",
        started=(rx(r"Checkpoint policy after step (?P<step>\d+)"),),
        completes_on_progress=True,
        went_on=rx(r"End of training"),
    ),
    # huggingface/accelerate: src/accelerate/accelerator.py (save_state),
    # src/accelerate/checkpointing.py (save_accelerator_state: weights, optimizer,
    # scheduler, sampler, scaler, then the RNG states last); transformers'
    # examples/pytorch/language-modeling/run_clm_no_trainer.py prints the eval tensor.
    Entry(
        name="accelerate",
        source="huggingface/accelerate: src/accelerate/accelerator.py, checkpointing.py",
        hints=("current state", "saved in", "eval_loss"),
        val=rx(r"\beval_loss:\s*tensor\((?P<val_loss>{NUM})"),
        started=(rx(r"Saving current state to " + PATH),),
        saved=(rx(r"Random states saved in " + FILE),),
        weights=_WEIGHTS,
        parts=(
            rx(
                r"(?:Optimizer state|Scheduler state|Gradient scaler state"
                r"|Sampler state for dataloader \d+) saved in " + FILE
            ),
        ),
    ),
    # huggingface/transformers: src/transformers/trainer.py (_save: "Saving model
    # checkpoint to", _rotate_checkpoints, the end of train()); trainer_callback.py
    # (ProgressCallback prints the log dicts). TRL's trainers are Trainers. The end of
    # train() logs a summary of averages ({'train_runtime': ..., 'train_loss': <the run's
    # mean>, 'epoch': ...}: read by the generic readers, never as a step's loss), and the
    # examples scripts print it again through trainer_pt_utils.py log_metrics
    # (print(f"  {key: <{k_width}} = {metrics_formatted[key]:>{v_width}}")).
    Entry(
        name="hf-trainer",
        source="huggingface/transformers: src/transformers/trainer.py, trainer_callback.py, "
        "trainer_pt_utils.py",
        hints=(
            "saving model checkpoint",
            "saved in",
            "training completed",
            "deleting older",
            "train_runtime",
            "train_loss",
        ),
        # log_metrics("train", ...)'s row: the mean over the run
        average=rx(r"^  train_loss +=\s+{NUM}$"),
        started=(rx(r"Saving model checkpoint to " + PATH),),
        # save_pretrained's other files (configuration_utils.py, tokenization_utils_base.py
        # "tokenizer config file saved in", "Special tokens file saved in"): never a
        # checkpoint of their own, not even written after the weights into their folder
        weights=_WEIGHTS,
        parts=(
            rx(r"(?:Configuration|tokenizer config file|Special tokens file) saved in " + FILE),
        ),
        completes_on_progress=True,
        went_on=rx(r"Training completed\.|Deleting older checkpoint|'train_runtime'"),
    ),
    # Lightning: src/lightning/pytorch/callbacks/model_checkpoint.py (verbose: the line is
    # printed before the file is written).
    Entry(
        name="lightning",
        source="Lightning-AI/pytorch-lightning: src/lightning/pytorch/callbacks/"
        "model_checkpoint.py",
        hints=("saving model to", "trainer.fit"),
        started=(rx(r"\bsaving model to " + PATH),),
        completes_on_progress=True,
        went_on=rx(r"`Trainer\.fit` stopped"),
    ),
    # karpathy/nanoGPT: train.py. print(f"step {iter_num}: train loss {losses['train']:.4f},
    # val loss {losses['val']:.4f}") every eval_interval (estimate_loss: the mean over
    # eval_iters batches) is its train-loss series; print(f"iter {iter_num}: loss
    # {lossf:.4f}, time ...ms, mfu ...%") every log_interval is one batch's loss (read by the
    # generic reader: it stands in only where no estimate is printed). print(f"saving
    # checkpoint to {out_dir}"), then torch.save of out_dir/ckpt.pt (overwritten each time):
    # the checkpoint is out_dir as printed.
    Entry(
        name="nanogpt",
        source="karpathy/nanoGPT: train.py",
        hints=("saving checkpoint to", "train loss"),
        train=rx(r"^step (?P<step>\d+): train loss (?P<loss>{NUM}), val loss"),
        fields=(("val_loss", rx(r", val loss (?P<v>{NUM})")),),
        started=(rx(r"^saving checkpoint to " + PATH),),
        completes_on_progress=True,
    ),
)

__all__ = ["ENTRIES"]
