"""`hpcwrap scan` on each framework's sample, and the same answer from the wrapper.

The samples (tests/unit/job_samples, written by make_samples.py from each framework's
format strings) are replayed line by line through the real wrapper (``run_command``,
a child that prints them at a paced rate) and its Results compared with scan's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hpcwrap.cli import main
from hpcwrap.reading.scan import scan_file
from hpcwrap.runlog.model import Results
from tests.unit.test_job_wrapper import wrap

SAMPLES = Path(__file__).parent / "job_samples"

# sample -> (final step, first train loss, last train loss, last val loss,
#            last completed checkpoint as printed, error kinds)
EXPECTED: dict[str, tuple[object, ...]] = {
    "hf_trainer.log": (300, "2.3124", "0.8731", "0.9944", "out/checkpoint-300", ()),
    "hf_trainer_new.log": (300, "2.312", "0.8731", "0.9944", "out/checkpoint-300", ()),
    "hf_trainer_examples.log": (870, "3.8412", "3.0107", "2.9441", "out", ()),
    "trl_sft.log": (120, "2.4512", "1.2034", None, "trl-out/checkpoint-120", ()),
    "accelerate.log": (600, "4.1021", "2.8731", "2.9441", "output/step_300", ("time_limit",)),
    "accelerate_no_trainer.log": (580, None, None, "2.9441", "out", ()),
    "lightning.log": (
        200,
        "2.250",
        "0.812",
        "0.947",
        "/scratch/u/lightning_logs/version_3/checkpoints/epoch=1-step=200.ckpt",
        (),
    ),
    "deepspeed.log": (
        110,
        "6.7012",
        "3.3311",
        None,
        "/scratch/ds-run/global_step100",
        ("oom_kill",),
    ),
    "megatron.log": (
        1000,
        "1.087650E+01",
        "4.123400E+00",
        "4.321000E+00",
        "/lustre/ckpt/gpt-1b",
        (),
    ),
    "megatron_oom_in_save.log": (
        6000,
        "6.100000E+00",
        "3.500000E+00",
        "3.700000E+00",
        "/lustre/ckpt/gpt-1b",
        ("oom_kill",),
    ),
    "torchtitan.log": (20, "12.23450", "7.54320", "7.9012", "./outputs/checkpoint/step-20", ()),
    "nanogpt.log": (500, "4.2874", "1.5390", "1.7269", "out-shakespeare-char", ()),
    "nanochat.log": (
        400,
        "11.090355",
        "3.501234",
        "0.9871",
        "/home/u/.cache/nanochat/base_checkpoints/d20",
        (),
    ),
    "llmc.log": (501, "11.010023", "3.650000", "3.701234", "log124M/model_00000500.bin", ()),
    "lerobot.log": (
        20000,
        "1.482",
        "0.118",
        None,
        "outputs/train/2024-11-05/10-00-00_act/checkpoints/020000",
        (),
    ),
    "openpi_jax.log": (
        2000,  # orbax's "Saving checkpoint at step 2000", no longer read as the glued bar's 1100
        "0.5123",
        "0.1520",
        None,
        "/scratch/openpi/checkpoints/pi0_libero/exp1/1000",
        ("cuda_oom",),
    ),
    "openpi_pytorch.log": (
        250,
        "0.4021",
        "0.1276",
        None,
        "checkpoints/pi0_aloha_sim/torch_run/249",
        (),
    ),
    "timm.log": (
        626,
        "6.93",
        "5.31",
        "4.610",
        "./output/train/20250302-100000-resnet50-224/checkpoint-1.pth.tar",
        (),
    ),
    "fairseq.log": (2238, "9.876", "6.012", "6.2", "checkpoints/transformer/checkpoint2.pt", ()),
    "jsonl.log": (30, "2.5", "nan", "1.9", None, ()),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_scan_reads_each_framework(name: str) -> None:
    step, first, last, val, ckpt, errors = EXPECTED[name]
    r = scan_file(SAMPLES / name)
    assert r.final_step == step, name
    assert (r.first_loss, r.last_loss) == (first, last), name
    assert r.last_val_loss == val, name
    assert (r.checkpoint.printed if r.checkpoint else None) == ckpt, name
    assert r.error_kinds == errors, name


def test_megatron_save_that_never_completed_is_not_the_checkpoint() -> None:
    r = scan_file(SAMPLES / "megatron_oom_in_save.log")
    assert r.checkpoint is not None and r.checkpoint.step == 5000
    assert r.pending_save is not None and r.pending_save.step == 6000
    assert r.checkpoint_note is not None and "not seen to complete" in r.checkpoint_note
    assert r.val_losses == 6  # validation printed six times, read six times


def test_data_prep_bars_do_not_set_the_step() -> None:
    r = scan_file(SAMPLES / "trl_sft.log")
    assert r.final_step == 120 and r.step_total == 120


def test_relative_paths_are_resolved_and_kept_as_printed(tmp_path: Path) -> None:
    r = scan_file(SAMPLES / "fairseq.log", cwd=tmp_path)
    assert r.checkpoint is not None
    assert r.checkpoint.printed == "checkpoints/transformer/checkpoint2.pt"
    assert r.checkpoint.path == str(tmp_path / "checkpoints/transformer/checkpoint2.pt")


def test_nanogpt_checkpoint_is_its_out_dir_as_printed(tmp_path: Path) -> None:
    """nanoGPT prints "saving checkpoint to <out_dir>" and overwrites <out_dir>/ckpt.pt: the
    checkpoint is that folder, resolved against the job's working folder, whatever else
    is beside it (issue 28, item 5)."""
    out = tmp_path / "out-shakespeare-char"
    out.mkdir()
    (out / "ckpt.pt").write_bytes(b"weights")
    (tmp_path / "run_logs").mkdir()  # written later, beside it
    r = scan_file(SAMPLES / "nanogpt.log", cwd=tmp_path)
    assert r.checkpoint is not None
    assert (r.checkpoint.printed, r.checkpoint.path) == ("out-shakespeare-char", str(out))
    assert r.checkpoint.step == 500
    from hpcwrap.reading.records import with_records

    merged = with_records(r, tmp_path, SAMPLES / "nanogpt.log")
    assert merged.checkpoint is not None and merged.checkpoint.path == str(out)


def _results_under_the_wrapper(tmp_path: Path, sample: str) -> Results:
    """The Results the wrapper records for a run that prints ``sample`` in ``tmp_path``."""
    from tests.unit.test_job_wrapper import new_log

    pacer = tmp_path / "pace.py"
    pacer.write_text(PACER)
    log = new_log(tmp_path)
    argv = [sys.executable, str(pacer), str(SAMPLES / sample), "0"]
    outcome, _, msgs = wrap(argv, log, tmp_path)
    assert outcome.exit_code == 0, msgs
    return log.read().results


def test_nanogpt_run_results_under_the_wrapper(tmp_path: Path) -> None:
    """The wrapper's Results for a nanoGPT run: both train losses from the "step" lines,
    the checkpoint the out_dir in the job's working folder."""
    (tmp_path / "out-shakespeare-char").mkdir()
    (tmp_path / "out-shakespeare-char" / "ckpt.pt").write_bytes(b"weights")
    res = _results_under_the_wrapper(tmp_path, "nanogpt.log")
    assert (res.start_train_loss_text, res.end_train_loss_text) == ("4.2874", "1.5390")
    assert (res.start_val_loss_text, res.end_val_loss_text) == ("4.2823", "1.7269")
    assert res.final_step == 500
    assert res.checkpoint == str(tmp_path / "out-shakespeare-char")


def test_save_pretrained_run_results_under_the_wrapper(tmp_path: Path) -> None:
    """run_clm_no_trainer.py ends with save_pretrained into --output_dir: Results' checkpoint
    is that folder in the job's working folder, not the tokenizer file written last into
    it (issue 28, item 4)."""
    res = _results_under_the_wrapper(tmp_path, "accelerate_no_trainer.log")
    assert res.checkpoint == str(tmp_path / "out")
    assert (res.final_step, res.end_val_loss_text) == (580, "2.9441")


def test_scan_command_json_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--json", str(SAMPLES / "llmc.log")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["final_step"] == 501 and data["formats"]["llm.c"] > 0
    assert data["pending_save"]["printed"] == "log124M/model_00000750.bin"
    assert main(["scan", str(SAMPLES / "timm.log")]) == 0
    text = capsys.readouterr().out
    assert "step:        626" in text and "checkpoint-1.pth.tar" in text


def test_scan_of_a_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "/nonexistent/slurm-1.out"]) != 0
    assert "cannot read /nonexistent/slurm-1.out" in capsys.readouterr().err


PACER = """
import sys, time
data = open(sys.argv[1], 'rb').read()
lines = data.splitlines(keepends=True)
for i, line in enumerate(lines):
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
    if i % 4 == 0:
        time.sleep(0.002)
sys.exit(int(sys.argv[2]))
"""

# How the sampled jobs ended (a save that printed only its start counts when the command
# then exited 0, which only the wrapper knows: these samples end in a failure).
EXIT = {
    "accelerate.log": 143,
    "deepspeed.log": 137,
    "llmc.log": 1,
    "megatron_oom_in_save.log": 137,
    "openpi_jax.log": 1,
    "errors_oom.log": 1,
    "errors_torchrun.log": 1,
    "errors_slurm.log": 137,
}


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("*.log")))
def test_wrapper_replay_agrees_with_scan(name: str, tmp_path: Path) -> None:
    """The wrapper's reader (threads, batches, flood rule) and scan give the same figures."""
    pacer = tmp_path / "pace.py"
    pacer.write_text(PACER)
    argv = [sys.executable, str(pacer), str(SAMPLES / name), str(EXIT.get(name, 0))]
    outcome, _, _ = wrap(argv, None, tmp_path)
    out = tmp_path / "job.out"
    snap = outcome.snapshot
    r = scan_file(out)
    assert snap.step == r.final_step, name
    assert (snap.first_loss_text, snap.loss_text) == (r.first_loss, r.last_loss), name
    assert snap.val_loss_text == r.last_val_loss, name
    got = snap.checkpoint.path if snap.checkpoint else None
    assert got == (r.checkpoint.printed if r.checkpoint else None), name
    assert tuple(dict.fromkeys(e.kind for e in snap.errors)) == r.error_kinds, name


def test_into_records_the_reading_in_a_hand_kept_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpcwrap.runlog import RunState, create_run

    state = RunState(task="train", run_type="replication", objective="an old job")
    log = create_run(tmp_path / "run_logs", state)
    rc = main(
        [
            "scan",
            str(SAMPLES / "megatron_oom_in_save.log"),
            "--into",
            log.path.name,
            "--run-logs",
            str(tmp_path / "run_logs"),
        ]
    )
    assert rc == 0
    after = log.read()
    entry = after.status[-1].text
    assert "megatron_oom_in_save.log" in entry and "step 6000" in entry
    assert "last completed checkpoint /lustre/ckpt/gpt-1b (step 5000)" in entry
    assert "step 6000" in entry and "not seen to complete" in entry
    assert after.results.final_step == 6000
    assert after.results.end_val_loss_text == "3.700000E+00"
