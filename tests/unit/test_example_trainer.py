"""The toy trainer in examples/ behaves like a real one: it is run as a subprocess here."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
TRAINER = EXAMPLES / "toy_train.py"
EXIT_CKPT_SIGNAL = 124  # documented in examples/toy_train.py and examples/README.md

CKPT_LINE = re.compile(r"^Saving model checkpoint to (\S+)$", re.M)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float = 30, cwd: Path | None = None
) -> Result:
    # Bytes, decoded by hand: text mode would turn the bars' \r into \n.
    res = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env, cwd=cwd, check=False)
    return Result(res.returncode, res.stdout.decode(), res.stderr.decode())


def run_trainer(
    out: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> Result:
    cmd = [sys.executable, str(TRAINER), "--out-dir", str(out), "--steps-per-sec", "0", *args]
    return run(cmd, env=env, timeout=timeout)


def argv(flags: str) -> list[str]:
    return flags.split()


def json_records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def hf_dicts(stdout: str) -> list[dict[str, Any]]:
    return [ast.literal_eval(line) for line in stdout.splitlines() if line.startswith("{'")]


def shadow_module(tmp_path: Path, name: str) -> dict[str, str]:
    """An environment in which `import <name>` fails, whether or not it is installed."""
    shadow = tmp_path / f"no-{name}"
    shadow.mkdir()
    (shadow / f"{name}.py").write_text(f"raise ImportError('{name} hidden by the test')\n")
    return dict(os.environ, PYTHONPATH=str(shadow))


def test_hf_format_loss_falls_eval_and_checkpoints(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_trainer(
        out,
        *argv("--steps 60 --log-every 10 --eval-every 20 --ckpt-every 20 --format hf"),
    )
    assert res.returncode == 0, res.stderr
    dicts = hf_dicts(res.stdout)
    train = [d for d in dicts if "loss" in d]
    evals = [d for d in dicts if "eval_loss" in d]
    assert len(train) == 6
    assert set(train[0]) == {"loss", "grad_norm", "learning_rate", "epoch"}
    assert train[-1]["loss"] < 0.75 * train[0]["loss"]
    assert [round(d["epoch"], 2) for d in evals] == [0.2, 0.4, 0.6]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert "train_runtime" in dicts[-1]
    # Warmup (20 steps) then cosine decay: the peak is at step 20, the end is lower.
    lrs = [d["learning_rate"] for d in train]
    assert lrs[0] < lrs[1] and lrs[-1] < lrs[1]

    paths = [Path(p) for p in CKPT_LINE.findall(res.stdout)]
    assert paths == [out / "checkpoints" / str(s) for s in (20, 40, 60)]
    for path in paths:
        files = {p.name for p in path.iterdir()}
        assert files == {"params.json", "model.bin", "trainer_state.json"}
        state = json.loads((path / "trainer_state.json").read_text())
        assert state["global_step"] == int(path.name)
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    # The tqdm bar goes to stderr with \r redraws, as HF's does.
    assert re.search(r"\r100%\|█{10}\| 60/60 \[", res.stderr)


def test_resolved_config_written_and_cli_overrides_config(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_trainer(
        out, "--config", str(EXAMPLES / "config.json"), *argv("--steps 12 --format json")
    )
    assert res.returncode == 0, res.stderr
    m = re.search(r"^toy_train: resolved config written to (\S+)$", res.stdout, re.M)
    assert m and Path(m.group(1)) == out / "config_resolved.json"
    resolved = json.loads(Path(m.group(1)).read_text())
    assert resolved["steps"] == 12  # from the command line
    assert resolved["lr"] == 3.0e-4  # from the config
    assert resolved["out_dir"] == str(out)


def test_shipped_yaml_and_json_configs_agree() -> None:
    yaml = pytest.importorskip("yaml")
    from_yaml = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    assert from_yaml == json.loads((EXAMPLES / "config.json").read_text())


def test_yaml_config_with_fake_missing_pyyaml_asks_for_json(tmp_path: Path) -> None:
    res = run_trainer(
        tmp_path / "out",
        "--config",
        str(EXAMPLES / "config.yaml"),
        env=shadow_module(tmp_path, "yaml"),
    )
    assert res.returncode == 2
    assert "PyYAML is not installed" in res.stderr and "config.json" in res.stderr


def test_unknown_config_key_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"steps": 10, "learning_rate": 0.1}))
    res = run_trainer(tmp_path / "out", "--config", str(cfg))
    assert res.returncode == 2
    assert "unknown key(s) learning_rate" in res.stderr and "valid keys:" in res.stderr


def test_resume_continues_step_count_and_curve(tmp_path: Path) -> None:
    straight = run_trainer(tmp_path / "a", *argv("--steps 80 --format json"))
    first = run_trainer(tmp_path / "b", *argv("--steps 40 --ckpt-every 20 --format json"))
    resumed = run_trainer(tmp_path / "b", *argv("--steps 80 --resume auto --format json"))
    for res in (straight, first, resumed):
        assert res.returncode == 0, res.stderr
    ckpt40 = tmp_path / "b" / "checkpoints" / "40"
    assert f"resuming from checkpoint {ckpt40} at step 40" in resumed.stdout
    steps = [r["step"] for r in json_records(resumed.stdout) if "loss" in r]
    assert steps == [50, 60, 70, 80]
    # Same seed, same steps: the resumed run prints what an unbroken run printed.
    want = {r["step"]: r["loss"] for r in json_records(straight.stdout) if "loss" in r}
    got = {r["step"]: r["loss"] for r in json_records(resumed.stdout) if "loss" in r}
    assert got == {s: want[s] for s in got}
    assert Path(CKPT_LINE.findall(resumed.stdout)[-1]) == tmp_path / "b" / "checkpoints" / "80"

    # An explicit checkpoint dir works too; resuming a final checkpoint has nothing to do.
    again = run_trainer(tmp_path / "b", "--steps", "80", "--resume", str(ckpt40.parent / "80"))
    assert again.returncode == 0 and "nothing left to do" in again.stdout


def test_resume_auto_without_checkpoint_starts_fresh_and_bad_dir_fails(tmp_path: Path) -> None:
    fresh = run_trainer(tmp_path / "o", *argv("--steps 10 --resume auto --format json"))
    assert fresh.returncode == 0 and "starting from step 0" in fresh.stdout
    bad = run_trainer(tmp_path / "o", "--resume", str(tmp_path / "nope"))
    assert bad.returncode == 2 and "no such checkpoint directory" in bad.stderr
    notckpt = run_trainer(tmp_path / "o", "--resume", str(tmp_path))
    assert notckpt.returncode == 2 and "not a checkpoint" in notckpt.stderr


def test_crash_at_step_gives_traceback_and_exit_1(tmp_path: Path) -> None:
    res = run_trainer(tmp_path / "o", *argv("--crash-at-step 15 --format json"))
    assert res.returncode == 1
    assert "Traceback (most recent call last):" in res.stderr
    assert res.stderr.rstrip().splitlines()[-1].startswith("RuntimeError: toy crash at step 15")
    assert [r["step"] for r in json_records(res.stdout)] == [10]


def test_oom_at_step_prints_pytorch_cuda_oom(tmp_path: Path) -> None:
    res = run_trainer(tmp_path / "o", *argv("--oom-at-step 5 --format nanogpt"))
    assert res.returncode == 1
    last = res.stderr.rstrip().splitlines()[-1]
    assert last.startswith(
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total"
    )


def test_nan_at_step_logs_nan(tmp_path: Path) -> None:
    res = run_trainer(tmp_path / "o", *argv("--steps 30 --nan-at-step 25 --format json"))
    assert res.returncode == 0
    losses = [r["loss"] for r in json_records(res.stdout) if "loss" in r]
    assert losses[1] == losses[1] and losses[2] != losses[2]  # only the last is nan


def test_nanogpt_format(tmp_path: Path) -> None:
    res = run_trainer(tmp_path / "o", *argv("--steps 40 --eval-every 20 --format nanogpt"))
    assert res.returncode == 0
    iters = re.findall(
        r"^iter (\d+): loss (\d+\.\d{4}), time \d+\.\d\dms, mfu -?\d+\.\d\d%$", res.stdout, re.M
    )
    assert [int(i) for i, _ in iters] == [10, 20, 30, 40]
    assert float(iters[-1][1]) < float(iters[0][1])
    evals = re.findall(
        r"^step (\d+): train loss \d+\.\d{4}, val loss \d+\.\d{4}$", res.stdout, re.M
    )
    assert evals == ["20", "40"]


def test_lightning_format_redraws_bars_with_cr(tmp_path: Path) -> None:
    res = run_trainer(tmp_path / "o", *argv("--steps 120 --eval-every 100 --format lightning"))
    assert res.returncode == 0
    out = res.stdout
    bars = re.findall(r"\r(Epoch \d+: +\d+%\|[^|]*\| \d+/\d+ \[[^]]*\])", out)
    assert bars, out
    assert bars[0].startswith("Epoch 0:  10%|█         | 10/100 [")
    assert re.search(r", v_num=0, train_loss=\d\.\d{3}, lr=", bars[0])
    # Epoch 0's bar is finished with a newline and carries the val loss; epoch 1 starts after.
    assert re.search(r"\rEpoch 0: 100%\|█{10}\| 100/100 \[[^]]*val_loss=\d\.\d{3}\]\n", out)
    assert "\rEpoch 1:  10%" in out
    assert "`Trainer.fit` stopped: `max_steps=120` reached." in out


def test_json_format_every_metric_line_is_json(tmp_path: Path) -> None:
    res = run_trainer(tmp_path / "o", *argv("--steps 20 --eval-every 10 --format json"))
    assert res.returncode == 0
    recs = json_records(res.stdout)
    assert [r["step"] for r in recs if "loss" in r] == [10, 20]
    assert [r["step"] for r in recs if "val_loss" in r] == [10, 20]
    assert {"step", "epoch", "loss", "lr", "grad_norm"} <= set(recs[0])


PACED = argv("--steps 100000 --steps-per-sec 200 --log-every 5 --format json")


def start_paced(out: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start a paced run and return once it has logged a step (its handlers are in place)."""
    proc = subprocess.Popen(
        [sys.executable, str(TRAINER), "--out-dir", str(out), *PACED, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith('{"step"'):
            break
    return proc, seen


def test_ckpt_signal_saves_checkpoint_and_exits_124(tmp_path: Path) -> None:
    out = tmp_path / "o"
    proc, seen = start_paced(out)
    proc.send_signal(signal.SIGUSR2)
    rest, err = proc.communicate(timeout=10)
    assert proc.returncode == EXIT_CKPT_SIGNAL, err
    stdout = "".join(seen) + rest
    m = re.search(r"^toy_train: received SIGUSR2 at step (\d+); saving a checkpoint$", stdout, re.M)
    assert m, stdout
    step = int(m.group(1))
    ckpt = out / "checkpoints" / str(step)
    assert CKPT_LINE.findall(stdout) == [str(ckpt)]
    assert json.loads((ckpt / "trainer_state.json").read_text())["global_step"] == step
    assert f"exiting with code {EXIT_CKPT_SIGNAL}" in stdout


def test_continue_after_signal_keeps_training(tmp_path: Path) -> None:
    out = tmp_path / "o"
    proc, _ = start_paced(out, *argv("--ckpt-signal USR1 --continue-after-signal"))
    proc.send_signal(signal.SIGUSR1)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Saving model checkpoint to"):
            break
    # Still training: more steps get logged after the signal's checkpoint.
    assert proc.stdout.readline().startswith('{"step"')
    proc.terminate()
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGTERM


def test_sigterm_exits_promptly_by_the_signal(tmp_path: Path) -> None:
    proc, _ = start_paced(tmp_path / "o")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=10)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == -signal.SIGTERM
    assert re.search(r"^toy_train: received SIGTERM at step \d+; exiting$", rest, re.M)


def test_steps_per_sec_paces_training(tmp_path: Path) -> None:
    t0 = time.monotonic()
    flags = argv("--steps 30 --steps-per-sec 100 --format json")
    res = run([sys.executable, str(TRAINER), "--out-dir", str(tmp_path), *flags])
    assert res.returncode == 0
    assert time.monotonic() - t0 >= 0.3  # a lower bound only: sleeps never end early


def test_memory_spike_really_raises_rss(tmp_path: Path) -> None:
    flags = argv(
        "--steps 6 --steps-per-sec 0 --memory-spike-at-step 3 --memory-spike-mb 150 "
        "--memory-spike-seconds 0.1 --format json"
    )
    proc = subprocess.Popen(
        [sys.executable, str(TRAINER), "--out-dir", str(tmp_path), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    assert usage.ru_maxrss >= 150 * 1024  # KiB on Linux


def test_wandb_with_fake_missing_wandb_prints_notice_and_trains(tmp_path: Path) -> None:
    res = run_trainer(
        tmp_path / "o",
        *argv("--steps 10 --wandb --format json"),
        env=shadow_module(tmp_path, "wandb"),
    )
    assert res.returncode == 0
    assert "--wandb given but wandb is not installed" in res.stdout
    assert json_records(res.stdout)


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb not installed")
def test_wandb_offline_run_dir_is_printed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    res = run_trainer(
        tmp_path / "o", *argv("--steps 10 --wandb --format json"), env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    m = re.search(r"wandb: Run data is saved locally in (\S+)", res.stdout + res.stderr)
    assert m and Path(m.group(1)).name.startswith("offline-run-")
    assert Path(m.group(1)).is_dir()


def test_train_sh_finds_trainer_from_a_spool_copy_and_passes_args(tmp_path: Path) -> None:
    # Slurm runs a copy of the batch script from its spool folder: emulate that.
    spool = tmp_path / "spool"
    spool.mkdir()
    shutil.copy(EXAMPLES / "train.sh", spool / "slurm_script")
    flags = argv("--steps 10 --steps-per-sec 0 --format json")
    env = dict(os.environ, SLURM_SUBMIT_DIR=str(REPO), SLURM_JOB_ID="4242", PYTHON=sys.executable)
    res = run(
        ["bash", str(spool / "slurm_script"), "--out-dir", str(tmp_path / "o"), *flags],
        env=env,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert f"trainer {TRAINER}" in res.stdout and "job 4242" in res.stdout
    assert [r["step"] for r in json_records(res.stdout) if "loss" in r] == [10]
    sbatch = re.findall(r"^#SBATCH (\S+)", (EXAMPLES / "train.sh").read_text(), re.M)
    assert "--job-name=toy-train" in sbatch and "--output=slurm-%j.out" in sbatch
