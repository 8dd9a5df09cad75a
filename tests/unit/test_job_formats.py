"""Reading progress from real-format output (tests/unit/job_samples/, see make_samples.py)."""

from __future__ import annotations

import math
import random
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hpcwrap.config import Pattern
from hpcwrap.reading.formats import KEYWORDS, LineParser, parse_number, strip_line
from hpcwrap.reading.progress import Notable, Progress, Snapshot
from hpcwrap.reading.scan import Scanner, loss_points, scan_file, split_lines

SAMPLES = Path(__file__).parent / "job_samples"


def scan(
    data: bytes,
    *,
    stream: int = 1,
    patterns: tuple[Pattern, ...] = (),
    chunks: list[int] | None = None,
) -> tuple[Snapshot, list[Notable]]:
    """Feed ``data`` through the real scanner (prefilter included), in chunks if asked."""
    progress = Progress(lambda: datetime.now(timezone.utc), time.monotonic)
    notes: list[Notable] = []
    errors: list[BaseException] = []
    scanner = Scanner(LineParser(patterns), progress, notes.append, lambda e, b: errors.append(e))
    if chunks is None:
        scanner.feed(stream, data)
    else:
        pos = 0
        for size in chunks:
            scanner.feed(stream, data[pos : pos + size])
            pos += size
        scanner.feed(stream, data[pos:])
    scanner.finish(stream)
    assert not errors, errors
    return progress.snapshot(), notes


def parse_every_line(data: bytes) -> Snapshot:
    """The same, without the scanner: every line through the parser (split as the scanner
    splits: at \\n, \\r and behind a progress bar other text was glued to)."""
    progress = Progress(lambda: datetime.now(timezone.utc), time.monotonic)
    parser = LineParser()
    for line in split_lines(data):
        obs = parser.parse(line.decode("utf-8", "replace"), 1)
        if obs is not None:
            progress.apply(obs)
    return progress.snapshot()


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


# name -> expected snapshot fields (checkpoint as (path, step))
EXPECTED: dict[str, dict[str, object]] = {
    "hf_trainer.log": dict(
        step=300,
        step_total=300,
        epoch=3.0,
        loss=0.8731,
        val_loss=0.9944,
        lr=1e-06,
        first_loss=2.3124,
        first_val_loss=2.4012,
        checkpoint=("out/checkpoint-300", 300),
        checkpoints_saved=3,
        config_path=None,
    ),
    "hf_trainer_new.log": dict(
        step=300,
        step_total=300,
        epoch=3.0,
        loss=0.8731,
        val_loss=0.9944,
        lr=1e-06,
        first_loss=2.312,
        first_val_loss=2.401,
        checkpoint=("out/checkpoint-300", 300),
        checkpoints_saved=3,
    ),
    "accelerate_no_trainer.log": dict(
        step=580,
        step_total=580,
        loss=None,  # run_clm_no_trainer.py prints no train loss
        val_loss=2.9441,
        first_val_loss=3.1046,
        checkpoint=("out", 580),  # save_pretrained's folder, not its last file
        checkpoints_saved=3,
    ),
    "hf_trainer_examples.log": dict(
        step=870,
        step_total=870,
        epoch=3.0,
        loss=3.0107,  # the last logged dict's, not the run's mean (3.2812)
        first_loss=3.8412,
        val_loss=2.9441,
        first_val_loss=2.9441,
        checkpoint=("out", 870),  # trainer.save_model() at the end
        checkpoints_saved=2,
    ),
    "lightning.log": dict(
        step=200,
        epoch=1.0,
        loss=0.812,
        val_loss=0.947,
        first_val_loss=1.23,
        checkpoint=("/scratch/u/lightning_logs/version_3/checkpoints/epoch=1-step=200.ckpt", 200),
        checkpoints_saved=2,
    ),
    "nanogpt.log": dict(
        step=500,
        loss=1.539,  # the step 500 estimate, not iter 500's one batch
        val_loss=1.7269,
        first_loss=4.2874,
        first_val_loss=4.2823,
        checkpoint=("out-shakespeare-char", 500),
        checkpoints_saved=2,
    ),
    "lerobot.log": dict(
        step=20000,
        epoch=16.0,
        loss=0.118,
        lr=1e-05,
        first_loss=1.482,
        val_loss=None,
        # "Checkpoint policy after step" starts a save; "End of training" follows it
        checkpoint=("outputs/train/2024-11-05/10-00-00_act/checkpoints/020000", 20000),
    ),
    "openpi.log": dict(step=200, step_total=30000, loss=0.152, first_loss=0.5123, val_loss=None),
    "megatron.log": dict(
        step=1000,
        step_total=500000,
        loss=4.1234,
        val_loss=4.321,
        lr=1.5e-4,
        first_loss=10.8765,
        checkpoint=("/lustre/ckpt/gpt-1b", 1000),
        checkpoints_saved=1,
    ),
    "torchtitan.log": dict(
        step=20,
        loss=7.5432,
        val_loss=7.9012,
        first_loss=12.2345,
        checkpoint=("./outputs/checkpoint/step-20", 20),
        checkpoints_saved=1,
    ),
    "jsonl.log": dict(
        step=30,
        epoch=0.3,
        val_loss=1.9,
        lr=0.00028,
        first_loss=2.5,
        nonfinite_since_step=30,
    ),
    "wandb_offline.log": dict(
        step=1, loss=2.0, wandb_dir="/scratch/u/wandb/offline-run-20240501_120000-abc123xy"
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_values(name: str) -> None:
    snap, _ = scan(sample(name))
    for key, want in EXPECTED[name].items():
        if key == "checkpoint" and want is None:
            assert snap.checkpoint is None, name
            continue
        if key == "checkpoint":
            assert snap.checkpoint is not None, name
            assert (snap.checkpoint.path, snap.checkpoint.step) == want, name
            continue
        got = getattr(snap, key)
        if isinstance(want, float):
            assert got == pytest.approx(want), (name, key, got)
        else:
            assert got == want, (name, key, got)
    assert not snap.errors, snap.errors


def test_hf_loss_history_steps_come_from_the_bar() -> None:
    snap, _ = scan(sample("hf_trainer.log"))
    assert [s for s, _ in snap.train_history] == [100, 200, 300]
    assert [s for s, _ in snap.val_history] == [100, 200, 300]


def test_hf_eval_bar_is_not_the_step() -> None:
    # The eval bar (n/13) is drawn after step 100; the step must stay 100, not 13.
    data = sample("hf_trainer.log")
    cut = data.index(b"{'eval_loss'")
    snap, _ = scan(data[:cut])
    assert snap.step == 100


def test_hf_train_summary_is_not_the_last_loss() -> None:
    snap, _ = scan(sample("hf_trainer.log"))
    assert snap.loss == pytest.approx(0.8731)  # not the run average 1.6543


def test_hf_summary_of_averages_is_never_a_step_loss() -> None:
    """HF's end of training prints the run's mean train loss twice: in the summary dict
    (cleared, written and the 100% bar redrawn) and in run_clm.py's log_metrics table.
    Neither is the last step's loss (issue 28, item 4)."""
    snap, _ = scan(sample("hf_trainer_examples.log"))
    assert (snap.first_loss_text, snap.loss_text) == ("3.8412", "3.0107")
    assert snap.checkpoint is not None and (snap.checkpoint.path, snap.checkpoint.step) == (
        "out",
        870,
    )
    # the summary glued behind the 100% bar, after its \r or with none between them
    dicts = (
        b"{'loss': 3.2, 'learning_rate': 1e-05, 'epoch': 2.5}\n"
        b"{'loss': 2.9, 'learning_rate': 1e-06, 'epoch': 3.0}\n"
    )
    bar = "100%|██████████| 500/500 [01:02<00:00,  8.0it/s]".encode()
    summary = (
        b"{'train_runtime': 12.3, 'train_samples_per_second': 130.1, 'train_steps_per_second'"
        b": 8.0, 'train_loss': 3.0812, 'epoch': 3.0}\n"
    )
    for glued in (b"\r" + bar + b"\r" + summary, b"\r" + bar + summary):
        snap, _ = scan(dicts + glued)
        assert (snap.loss, snap.step) == (2.9, 500), glued


def test_openpi_pytorch_series_is_its_log_line() -> None:
    """openpi's train_pytorch.py logs "step=N loss=<mean over the interval>" glued behind
    its "Training" bar, whose postfix also says loss= (the latest batch's): the log line
    is the series, read as a line of its own (issue 28, item 4)."""
    r = scan_file(SAMPLES / "openpi_pytorch.log")
    assert (r.first_loss, r.last_loss, r.final_step) == ("0.4021", "0.1276", 250)
    assert r.snapshot.train_history == ((1, 0.4021), (101, 0.2458), (201, 0.1276))
    assert r.checkpoint is not None and (r.checkpoint.printed, r.checkpoint.step) == (
        "checkpoints/pi0_aloha_sim/torch_run/249",
        249,
    )
    assert r.origin["loss"] == "openpi-pytorch"


def test_a_line_glued_behind_a_bar_is_its_own_line() -> None:
    bar = b"Training:   0%|          | 0/20000 [00:00<?, ?it/s]"
    log = b"15:11:40.918 [I] step=0 loss=0.4021 lr=2.50e-08 grad_norm=1.20 time=13.1s"
    assert split_lines(b"\r" + bar + log + b"\n") == [b"", bar, log, b""]
    # a bar alone, or one whose postfix holds brackets, is left whole
    whole = "  5%|▌         | 1000/20000 [13:20<4:13:20, 1.25it/s, loss=0.1137]".encode()
    assert split_lines(whole) == [whole]
    nested = b" 50%|#####     | 5/10 [00:01<00:01, 5.0it/s, lr=[0.001]]"
    assert b"".join(split_lines(nested)) == nested


def test_save_pretrained_folder_is_the_checkpoint() -> None:
    """The weights written on their own (save_pretrained, accelerate's save_model) make
    their folder a checkpoint; the config and tokenizer files around them never are."""
    snap, _ = scan(sample("accelerate_no_trainer.log"))
    assert [(c.path, c.step) for c in snap.checkpoints] == [
        ("out/step_200", 200),
        ("out/step_400", 400),
        ("out", 580),
    ]
    assert snap.origin is not None and snap.origin["checkpoint"] == "save-file"
    # the tokenizer saved into the output folder before training: no checkpoint
    snap, _ = scan(
        b"tokenizer config file saved in out/tokenizer_config.json\n"
        b"Special tokens file saved in out/special_tokens_map.json\n"
        b"step 10 loss 2.5\n"
    )
    assert snap.checkpoint is None and snap.checkpoints_saved == 0
    # a sharded save_pretrained names its index (modeling_utils.py)
    snap, _ = scan(
        b"step 40 loss 1.5\nConfiguration saved in /ck/final/config.json\n"
        b"The model is bigger than the maximum size per checkpoint (5GB) and is going to be "
        b"split in 4 checkpoint shards. You can find where each parameters has been saved in "
        b"the index located at /ck/final/model.safetensors.index.json.\n"
        b"tokenizer config file saved in /ck/final/tokenizer_config.json\n"
    )
    assert snap.checkpoint is not None
    assert (snap.checkpoint.path, snap.checkpoint.step) == ("/ck/final", 40)
    # accelerate's save_model into a folder named for its step
    snap, _ = scan(b"step 310 loss 1.2\nModel weights saved in ck/step_300/model.safetensors\n")
    assert snap.checkpoint is not None
    assert (snap.checkpoint.path, snap.checkpoint.step) == ("ck/step_300", 300)


def test_nanogpt_train_loss_series_is_its_eval_estimate() -> None:
    """Start and end of the train loss come from one kind of line (issue 28, item 5).
    nanoGPT prints an estimate over eval_iters batches ("step N: train loss X, val loss
    Y") and one batch's loss ("iter N: loss X"); its entry names the estimate its series."""
    snap, _ = scan(sample("nanogpt.log"))
    assert (snap.first_loss_text, snap.loss_text) == ("4.2874", "1.5390")  # steps 0 and 500
    assert snap.train_history == ((0, 4.2874), (250, 1.9663), (500, 1.539))
    assert snap.step == 500 and snap.origin is not None and snap.origin["loss"] == "nanogpt"
    # hpcwrap plot still draws every loss printed: one point per iter line's step (the
    # cluster's train.sh test counts them)
    points = loss_points(SAMPLES / "nanogpt.log")["train_loss"]
    assert sorted({s for s, _ in points}) == [0, 10, 240, 250, 490, 500]


def test_without_the_series_line_the_other_losses_stand_in() -> None:
    """A reading with none of the entry's own lines (the epilog's tail of a long nanoGPT
    run between two evals) takes the train loss from the lines it has."""
    data = sample("nanogpt.log")
    tail = data[data.index(b"iter 10:") : data.index(b"step 250:")]
    snap, _ = scan(tail)
    assert (snap.first_loss_text, snap.loss_text) == ("3.2330", "2.0897")


def test_the_series_starts_at_its_first_line() -> None:
    """One-batch losses read before the first estimate are not the series' start."""
    data = (
        b"iter 240: loss 2.0897, time 60.39ms, mfu 6.21%\n"
        b"step 250: train loss 1.9663, val loss 2.0650\n"
        b"iter 250: loss 2.0290, time 8811.31ms, mfu 5.59%\n"
    )
    snap, _ = scan(data)
    assert (snap.first_loss_text, snap.loss_text, snap.train_count) == ("1.9663", "1.9663", 1)
    assert snap.train_history == ((250, 1.9663),) and snap.step == 250


def test_a_user_pattern_names_the_series() -> None:
    pat = Pattern("mine", re.compile(r"objective=(?P<loss>[\d.]+)"))
    data = b"step 1 loss 9.0\nep 1 objective=0.75\nstep 2 loss 8.0\nep 2 objective=0.5\n"
    snap, _ = scan(data, patterns=(pat,))
    assert (snap.first_loss, snap.loss) == (0.75, 0.5) and snap.step == 2


def test_jsonl_nan_is_recorded_as_such() -> None:
    snap, notes = scan(sample("jsonl.log"))
    assert snap.loss is not None and math.isnan(snap.loss)
    assert snap.nonfinite_seen and snap.nonfinite_since_step == 30
    assert any(n.nonfinite for n in notes)


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("*.log")))
def test_prefilter_loses_nothing(name: str) -> None:
    """The scanner skips lines without a keyword; the result must equal parsing all."""
    data = sample(name)
    a, _ = scan(data)
    b = parse_every_line(data)
    fields = (
        "step",
        "step_total",
        "epoch",
        "loss",
        "val_loss",
        "lr",
        "first_loss",
        "first_val_loss",
        "checkpoint",
        "wandb_dir",
        "errors_total",
    )
    for f in fields:
        va, vb = getattr(a, f), getattr(b, f)
        if f == "checkpoint" and va is not None and vb is not None:
            va, vb = (va.path, va.step), (vb.path, vb.step)
        if isinstance(va, float) and math.isnan(va):
            assert isinstance(vb, float) and math.isnan(vb)
        else:
            assert va == vb, (name, f, va, vb)


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("*.log")))
def test_chunk_boundaries_do_not_matter(name: str) -> None:
    data = sample(name)
    whole, _ = scan(data)
    rng = random.Random(name)
    for _ in range(3):
        sizes = [rng.randint(1, 97) for _ in range(len(data) // 20 + 1)]
        split, _ = scan(data, chunks=sizes)
        assert (split.step, split.loss, split.val_loss, split.errors_total) == (
            whole.step,
            whole.loss,
            whole.val_loss,
            whole.errors_total,
        )


def test_keywords_cover_every_line_the_parser_reads() -> None:
    parser = LineParser()
    for path in SAMPLES.glob("*.log"):
        for raw in split_lines(path.read_bytes()):
            obs = parser.parse(raw.decode("utf-8", "replace"), 1)
            if obs is not None:
                low = raw.lower()
                assert any(k in low for k in KEYWORDS), (path.name, raw)


def test_errors_cuda_oom_traceback() -> None:
    snap, notes = scan(sample("errors_oom.log"), stream=2)
    assert [e.kind for e in snap.errors] == ["cuda_oom"]
    assert snap.errors[0].text.startswith("torch.OutOfMemoryError: CUDA out of memory")
    assert snap.errors[0].step == 5
    assert any(n.error is not None for n in notes)
    # Frames of the traceback ("loss = model(batch).loss") are not progress.
    assert snap.loss == 2.1


def test_errors_torchrun_prefixed() -> None:
    snap, _ = scan(sample("errors_torchrun.log"), stream=2)
    kinds = [e.kind for e in snap.errors]
    assert kinds == ["nccl_timeout", "exception"]
    assert snap.errors[1].text == "RuntimeError: boom at step 100"
    assert snap.step == 99  # another rank's progress line inside the traceback still counts


def test_errors_slurm_lines() -> None:
    snap, _ = scan(sample("errors_slurm.log"), stream=2)
    assert [e.kind for e in snap.errors] == ["oom_kill", "oom_kill", "time_limit", "killed"]


def test_same_error_many_times_is_counted_not_repeated() -> None:
    line = b"srun: error: n1: task 0: Out Of Memory\n"
    snap, notes = scan(line * 1000, stream=2)
    assert len(snap.errors) == 1 and snap.errors[0].count == 1000
    assert snap.errors_total == 1000
    assert sum(1 for n in notes if n.error is not None) == 1


def test_unfinished_traceback_is_bounded() -> None:
    data = b"Traceback (most recent call last):\n" + b'  File "x.py", line 1\n' * 1000
    snap, _ = scan(data, stream=2)
    assert [e.kind for e in snap.errors] == ["traceback"]


def test_log_lines_do_not_end_a_traceback() -> None:
    parser = LineParser()
    assert parser.parse("Traceback (most recent call last):", 2) is None
    assert parser.parse("INFO: still going", 2) is None
    assert parser.in_traceback(2)
    obs = parser.parse("KeyboardInterrupt", 2)
    assert obs is not None and obs.error == "KeyboardInterrupt"
    assert not parser.in_traceback(2)


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ("iter 10: loss 3.2330, time 60.16ms, mfu 6.19%", dict(step=10, loss=3.233)),
        (
            "step 250: train loss 1.9663, val loss 2.0650",
            dict(step=250, loss=1.9663, val_loss=2.065),
        ),
        (
            "Step 100: grad_norm=3.2345, loss=0.2311, param_norm=1803.5574",
            dict(step=100, loss=0.2311),
        ),
        (
            "epoch 3 | step 120/400 | loss 0.51 | lr 3.0e-04",
            dict(epoch=3.0, step=120, loss=0.51, lr=3e-4),
        ),
        ("train_loss=0.25 val_loss=0.3", dict(loss=0.25, val_loss=0.3)),
        ("global_step: 1,234  loss: -inf", dict(step=1234, loss=-math.inf)),
        ("aux_loss: 0.5 loss_scale: 1024", dict()),
        ("Loading checkpoint from out/checkpoint-100", dict()),
        # prose that mentions a step is not the training's step
        ("loss of connection to node n3, retrying step 3", dict()),
        ("NCCL WARN retrying step 5 after loss of connection", dict()),
        ("2024-01-01 12:00:00 | step 12", dict(step=12)),
        ("Starting epoch 3", dict(epoch=3.0)),
        # a plain "loss" on an eval line is the val loss, never the train loss
        ("Validation: loss 1.2345", dict(val_loss=1.2345, loss=None)),
        ("eval: loss=1.23 ppl=3.4", dict(val_loss=1.23, loss=None)),
        ("[Validation] step 500 | loss 1.234", dict(step=500, val_loss=1.234, loss=None)),
        (
            "epoch 001 | valid on 'valid' subset | loss 9.876 | nll_loss 9.5 | ppl 941.2 | "
            "wps 1234 | num_updates 500",
            dict(val_loss=9.876, loss=None),
        ),
        ("step 100 | loss 2.3 | eval in 100 steps", dict(step=100, loss=2.3, val_loss=None)),
        ("Resumed from saved checkpoint at step 100", dict(step=100, checkpoint_saved=False)),
        (
            "Checkpoint saved to /ckpt/step_7000",
            dict(checkpoint="/ckpt/step_7000", checkpoint_step=7000),
        ),
        (
            "Epoch 2: saving model to 'ckpt/model-epoch=02.ckpt'",
            dict(checkpoint="ckpt/model-epoch=02.ckpt"),
        ),
        (
            "toy_train: resolved config written to /r/out/config_resolved.yaml",
            dict(config_path="/r/out/config_resolved.yaml"),
        ),
        (
            "wandb: 🚀 View run glad-moon-1 at: https://wandb.ai/team/proj/runs/k1rvbdmc",
            dict(wandb_url="https://wandb.ai/team/proj/runs/k1rvbdmc"),
        ),
        (
            "wandb: Run data is saved locally in /s/wandb/run-20240501_120000-abc",
            dict(wandb_dir="/s/wandb/run-20240501_120000-abc"),
        ),
        ("ProcessGroupNCCL initialization options: size: 2, TIMEOUT(ms): 1800000", dict()),
        # W&B's end-of-run summary and history are not a step's values
        ("wandb: loss 0.2", dict()),
        ("wandb: step 2", dict()),
        ("wandb: train/loss \u2588\u2586\u2585\u2583\u2581", dict()),
    ],
)
def test_single_lines(line: str, want: dict[str, object]) -> None:
    obs = LineParser().parse(line, 1)
    if not want:
        assert obs is None or (
            obs.step is None and obs.loss is None and not obs.checkpoint_saved and obs.error is None
        ), obs
        return
    assert obs is not None, line
    for key, value in want.items():
        got = getattr(obs, key)
        assert got == (
            pytest.approx(value) if isinstance(value, float) and math.isfinite(value) else value
        ), (key, got)


def test_ansi_and_rank_prefix_are_stripped() -> None:
    assert strip_line("[rank3]:\x1b[31mstep: 5\x1b[39m") == "step: 5"
    assert strip_line("0: \x1b]0;title\x07loss 1") == "loss 1"
    assert strip_line("a\x00b") == "ab"


def test_parse_number_forms() -> None:
    assert parse_number("10K") == 10000
    assert parse_number("1.5M") == 1.5e6
    assert parse_number("'0.5'") == 0.5
    assert parse_number("1,234") == 1234
    assert math.isnan(parse_number("NaN") or 0.0)
    assert parse_number("inf") == math.inf
    assert parse_number("abc") is None


def test_custom_patterns_win_and_need_no_keyword() -> None:
    pat = Pattern(
        "mine",
        re.compile(r"ep (?P<epoch>\d+) it (?P<step>\d+) l=(?P<loss>[-+.\deE]+|nan|inf)"),
    )
    data = b"ep 1 it 10 l=0.9\nep 2 it 20 l=nan\nsomething else\n"
    snap, _ = scan(data, patterns=(pat,))
    assert snap.step == 20 and snap.epoch == 2.0
    assert snap.loss is not None and math.isnan(snap.loss)
    assert snap.first_loss == 0.9


def test_custom_pattern_checkpoint_and_error() -> None:
    pats = (
        Pattern("ck", re.compile(r"stored weights at (?P<checkpoint>\S+)")),
        Pattern("err", re.compile(r"^FATAL (?P<error>.+)")),
    )
    snap, _ = scan(b"stored weights at /w/step9\nFATAL the sky fell\n", patterns=pats)
    assert snap.checkpoint is not None and snap.checkpoint.path == "/w/step9"
    assert [(e.kind, e.text) for e in snap.errors] == [("user:err", "the sky fell")]


def test_invalid_utf8_nul_and_giant_lines_do_not_break_parsing() -> None:
    junk = bytes(range(256)) * 10 + b"\xff\xfe\x00\x00"
    data = junk + b"\nstep 7 loss 0.5\x00\n" + b"x" * 300_000 + b" step 9 loss 0.25\n"
    snap, _ = scan(data)
    # The giant line keeps its last 64 KiB, where "step 9 loss 0.25" is.
    assert snap.step == 9 and snap.loss == 0.25


@pytest.mark.parametrize(
    ("line", "want"),
    [
        # data preparation bars are not the training's step
        ("Tokenizing train dataset: 100%|██████████| 207865/207865 [00:10<00:00, "
         "20000.00 examples/s]", dict(step=None)),
        ("Map: 100%|██████████| 1801350/1801350 [01:10<00:00, 25000.00 examples/s]",
         dict(step=None)),
        ("Running tokenizer on dataset: 100%|██████████| 4358/4358 [00:01<00:00, "
         "3101.22 examples/s]", dict(step=None)),
        ("Training:  50%|█████     | 100/200 [00:40<00:40,  2.50it/s, loss=0.2411]",
         dict(step=100, loss=0.2411)),
        # averages are not per-step values
        ("2025-03-02 10:00:00 | INFO | train | epoch 001 | loss 9.3 | nll_loss 8.8 | "
         "num_updates 1119 | lr 0.0005", dict(step=1119, loss=None)),
        ("Train: 3 [ 100/313 ( 32%)]  Loss: 5.62 (5.75)  Time: 0.412s,  LR: 1.000e-03",
         dict(step=3 * 313 + 101, loss=5.62, epoch=3.0)),
        ("Test: [  20/48]  Time: 0.201 (0.201)  Loss:  5.120 ( 5.310)  Acc@1: 12.5",
         dict(val_loss=None)),
        ("Test: [  48/48]  Time: 0.201 (0.201)  Loss:  5.120 ( 5.310)  Acc@1: 12.5",
         dict(val_loss=5.31)),
        ("epoch 0: perplexity: 22.2331 eval_loss: tensor(3.1046, device='cuda:0')",
         dict(val_loss=3.1046)),
        # a test set's loss is not the val loss
        (" validation loss at iteration 6000 on test set | lm loss value: 3.7E+00 |",
         dict(val_loss=None)),
        # summaries of averages are never a step's loss: HF's log_metrics row, the rest of
        # the summary dict cut by a bar redrawn into Python's stdout block, fairseq's json
        # epoch summary (progress_bar.py JsonProgressBar.print)
        ("  train_loss               =     3.2812", dict(loss=None)),
        ("  eval_loss               =     2.9441", dict(val_loss=2.9441)),
        ("100%|██████████| 870/870 [01:52<00:00,  7.75it/s]les_per_second': 61.952, "
         "'train_steps_per_second': 7.744, 'train_loss': 3.2812, 'epoch': 3.0}",
         dict(step=870, loss=None)),
        ("cond': 7.744, 'train_loss': 3.2812, 'epoch': 3.0}", dict(loss=None)),
        ('2025-03-02 10:00:00 | INFO | train | {"epoch": 1, "train_loss": "9.3", '
         '"train_nll_loss": "8.8", "train_ppl": "445.2", "train_num_updates": "1119"}',
         dict(loss=None)),
        ("step  501/2000 | train loss 3.650000 | norm 1.1 | lr 6.00e-04 | 412.34 ms",
         dict(step=501, loss=3.65, step_total=2000)),
        ("step 00399/00400 (99.75%) | loss: 3.501234 | lrm: 0.10 | dt: 512.31ms",
         dict(step=400, loss=3.501234)),
        # openpi's PyTorch log line: the 0-based index of the update done, the series' loss
        ("15:11:40.918 [I] step=0 loss=0.4021 lr=2.50e-08 grad_norm=1.20 time=13.1s"
         + " " * 10 + "(4242:train_pytorch.py:582)", dict(step=1, loss=0.4021, series=True)),
    ],
)  # fmt: skip
def test_framework_lines(line: str, want: dict[str, object]) -> None:
    obs = LineParser().parse(line)
    for key, value in want.items():
        got = getattr(obs, key) if obs is not None else None
        if isinstance(value, float):
            assert got == pytest.approx(value), (line, key)
        else:
            assert got == value, (line, key, got)


def test_a_path_ending_a_sentence_loses_the_full_stop() -> None:
    obs = LineParser().parse(
        "[process=0][thread=async_save] Finished saving checkpoint (finalized tmp dir) to "
        "`/ckpt/exp/1000`.   (4242:atomicity.py:573)"
    )
    assert obs is not None and obs.checkpoint == "/ckpt/exp/1000" and obs.checkpoint_saved
    assert obs.checkpoint_step == 1000


def test_a_started_save_is_not_a_checkpoint_until_it_completes() -> None:
    progress = Progress(lambda: datetime.now(timezone.utc), time.monotonic)
    parser = LineParser()
    for line in (
        "saving checkpoint at iteration    6000 to /ckpt in torch_dist format",
        " [x] iteration     6010/   10000 | lm loss: 3.5E+00 |",
    ):
        obs = parser.parse(line)
        assert obs is not None
        progress.apply(obs)
    snap = progress.snapshot()
    assert snap.checkpoint is None  # Megatron prints its completion: progress is no proof
    assert snap.pending_save is not None and snap.pending_save.step == 6000
    obs = parser.parse("  successfully saved checkpoint from iteration    6000 to /ckpt")
    assert obs is not None
    progress.apply(obs)
    snap = progress.snapshot()
    assert snap.checkpoint is not None and snap.checkpoint.step == 6000
    assert snap.pending_save is None


def test_user_patterns_reach_scan(tmp_path: Path) -> None:
    from hpcwrap.reading.scan import scan_file

    out = tmp_path / "slurm-1.out"
    out.write_text("EP 3 it=120 objective=0.75\nwrote ckpt to runs/a/120.pt\n")
    pats = (
        Pattern("mine", re.compile(r"it=(?P<step>\d+) objective=(?P<loss>[\d.]+)")),
        Pattern("ck", re.compile(r"wrote ckpt to (?P<checkpoint>\S+)")),
    )
    r = scan_file(out, patterns=pats)
    assert (r.final_step, r.last_loss) == (120, "0.75")
    assert r.checkpoint is not None and r.checkpoint.printed == "runs/a/120.pt"
    assert r.checkpoint.path == str(tmp_path / "runs/a/120.pt")


@pytest.mark.parametrize(
    ("line", "said"),
    [
        # Lightning, restoring its SLURM requeue's checkpoint (or a ckpt_path)
        ("Restoring states from the checkpoint path at /w/hpc_ckpt_1.ckpt", "/w/hpc_ckpt_1.ckpt"),
        # nanoGPT's train.py with --init_from=resume
        ("Resuming training from out-shakespeare-char", "out-shakespeare-char"),
        ("Restored all states from the checkpoint at /w/hpc_ckpt_1.ckpt", None),
        ("we were resuming training from scratch, said the README", None),
    ],
)
def test_the_training_says_what_it_resumed_from(line: str, said: str | None) -> None:
    obs = LineParser().parse(line)
    assert (obs.resumed_from if obs is not None else None) == said
    # loading a checkpoint is never read as saving one
    assert obs is None or not (obs.checkpoint_saved or obs.checkpoint_started)
