#!/usr/bin/env python3
"""A toy training program that prints, saves, resumes and fails like a real one.

No torch, no GPU: the "model" is a loss curve (exponential decay plus seeded
noise) paced by wall-clock sleeps. hpcwrap's examples and end-to-end tests use
it as a stand-in for a real trainer. Standard library only; PyYAML (YAML
configs) and wandb (--wandb) are used when importable.

Exit codes (documented in examples/README.md; hpcwrap's tests rely on them):
  0    finished all steps (or the checkpoint resumed from was already final)
  1    crashed: an uncaught Python exception with its traceback on stderr
       (--crash-at-step, --oom-at-step, or a real bug)
  2    bad command line or config (message on stderr)
  124  stopped by the checkpoint signal (--ckpt-signal, default SIGUSR2) after
       saving a checkpoint at the current step; continue with --resume auto
  SIGTERM: flushes, then dies by SIGTERM itself (a shell reports 143)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import signal
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CKPT_SIGNAL = 124

FORMATS = ("hf", "nanogpt", "lightning", "json")

# Every key a config file may hold, with its default. Unknown keys are refused.
DEFAULTS: dict[str, Any] = {
    "steps": 300,
    "steps_per_sec": 20.0,
    "lr": 3.0e-4,
    "min_lr_ratio": 0.1,
    "warmup_steps": 20,
    "batch_size": 32,
    "dataset_size": 3200,
    "log_every": 10,
    "eval_every": 50,
    "ckpt_every": 100,
    "ckpt_size_kb": 16,
    "out_dir": "runs/toy",
    "seed": 1234,
    "format": "hf",
    "progress_bar": True,
    "dataset": "toy-shakespeare (synthetic)",
    "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "vocab_size": 512},
    "wandb": False,
    "wandb_project": "hpcwrap-toy",
    "wandb_name": None,
}
INT_KEYS = (
    "steps",
    "warmup_steps",
    "batch_size",
    "dataset_size",
    "log_every",
    "eval_every",
    "ckpt_every",
    "ckpt_size_kb",
    "seed",
)
FLOAT_KEYS = ("steps_per_sec", "lr", "min_lr_ratio")
BOOL_KEYS = ("progress_bar", "wandb")

STATE_FILE = "trainer_state.json"


class ConfigError(Exception):
    """Bad command line or config file; reported in one line, exit code 2."""


def emit(line: str) -> None:
    """Print one line to stdout and flush it: a job's output file sees it at once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def note(line: str) -> None:
    emit(f"toy_train: {line}")


# --------------------------------------------------------------------------- config


def load_config_file(path: Path) -> tuple[dict[str, Any], str]:
    """Read a YAML or JSON config; returns (mapping, "yaml"|"json")."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # only when a YAML config is asked for
        except ImportError as exc:
            raise ConfigError(
                f"config {path} is YAML but PyYAML is not installed for {sys.executable}; "
                "install it (pip install pyyaml) or pass the JSON config instead "
                "(e.g. examples/config.json)"
            ) from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
        kind = "yaml"
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config {path} is not valid JSON: {exc}") from exc
        kind = "json"
    else:
        raise ConfigError(f"config {path}: expected a .yaml, .yml or .json file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping of keys, not {type(data).__name__}")
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"config {path}: unknown key(s) {', '.join(map(str, unknown))}; "
            f"valid keys: {', '.join(DEFAULTS)}"
        )
    return data, kind


def _coerce(key: str, value: Any) -> Any:
    """Check one config value's type. Floats may come as strings: PyYAML reads 3e-4 as str."""
    if key in BOOL_KEYS:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
        return value
    if key in INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if key in FLOAT_KEYS:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r} must be a number, got {value!r}") from None
    if key == "model":
        if not isinstance(value, dict):
            raise ConfigError(f"config key 'model' must be a mapping, got {value!r}")
        return value
    if key == "wandb_name":
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"config key 'wandb_name' must be a string, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
    return value


def resolve_config(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """Defaults < config file < command-line flags. Returns (config, "yaml"|"json")."""
    cfg: dict[str, Any] = json.loads(json.dumps(DEFAULTS))  # deep copy
    kind = "json"
    if args.config is not None:
        data, kind = load_config_file(Path(args.config))
        cfg.update(data)
    overrides = {
        "steps": args.steps,
        "steps_per_sec": args.steps_per_sec,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "log_every": args.log_every,
        "eval_every": args.eval_every,
        "ckpt_every": args.ckpt_every,
        "warmup_steps": args.warmup_steps,
        "seed": args.seed,
        "out_dir": args.out_dir,
        "format": args.format,
        "progress_bar": args.progress_bar,
        "wandb": True if args.wandb else None,
    }
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    for key in list(cfg):
        cfg[key] = _coerce(key, cfg[key])
    positive = ("steps", "batch_size", "dataset_size", "log_every", "lr")
    for key in positive:
        if cfg[key] <= 0:
            raise ConfigError(f"{key} must be > 0, got {cfg[key]}")
    non_negative = ("steps_per_sec", "warmup_steps", "eval_every", "ckpt_every", "ckpt_size_kb")
    for key in non_negative:
        if cfg[key] < 0:
            raise ConfigError(f"{key} must be >= 0, got {cfg[key]}")
    if not 0.0 <= cfg["min_lr_ratio"] <= 1.0:
        raise ConfigError(f"min_lr_ratio must be between 0 and 1, got {cfg['min_lr_ratio']}")
    if cfg["format"] not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {cfg['format']!r}")
    return cfg, kind


def write_resolved_config(cfg: dict[str, Any], out_dir: Path, kind: str) -> Path:
    """Write <out>/config_resolved.<yaml|json> atomically (temp file + rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"config_resolved.{kind}"
    if kind == "yaml":
        import yaml  # present: the config itself was YAML

        text = yaml.safe_dump(cfg, sort_keys=False)
    else:
        text = json.dumps(cfg, indent=2) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- the "model"


def lr_at(step: int, cfg: dict[str, Any]) -> float:
    """Linear warmup, then cosine decay to lr * min_lr_ratio at the last step."""
    peak: float = cfg["lr"]
    warmup: int = cfg["warmup_steps"]
    total: int = cfg["steps"]
    if warmup > 0 and step <= warmup:
        return peak * step / warmup
    floor: float = peak * cfg["min_lr_ratio"]
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))


def _rng(cfg: dict[str, Any], step: int, stream: int) -> random.Random:
    # One generator per (seed, step, stream): a resumed run prints the same numbers.
    return random.Random(cfg["seed"] * 1_000_003 + step * 7 + stream)


def _expected_loss(step: int, cfg: dict[str, Any]) -> float:
    # A higher lr learns faster (within reason); bigger batches are less noisy.
    speed = min(max(cfg["lr"] / 3.0e-4, 0.05), 5.0) ** 0.5
    return 0.25 + 2.25 * math.exp(-step * speed / 100.0)


def train_loss_at(step: int, cfg: dict[str, Any]) -> float:
    sigma = 0.04 * math.sqrt(32 / cfg["batch_size"])
    return _expected_loss(step, cfg) * (1.0 + _rng(cfg, step, 1).gauss(0.0, sigma))


def val_loss_at(step: int, cfg: dict[str, Any]) -> float:
    gap = 0.02 + 0.06 * step / (step + 500.0)  # val drifts slowly above train
    return (_expected_loss(step, cfg) + gap) * (1.0 + _rng(cfg, step, 2).gauss(0.0, 0.01))


def train_eval_loss_at(step: int, cfg: dict[str, Any]) -> float:
    """Train loss re-measured on held-out batches at eval time (smoother than the log)."""
    return _expected_loss(step, cfg) * (1.0 + _rng(cfg, step, 7).gauss(0.0, 0.01))


def grad_norm_at(step: int, cfg: dict[str, Any]) -> float:
    value = (0.4 + 3.0 * math.exp(-step / 60.0)) * (1.0 + _rng(cfg, step, 3).gauss(0.0, 0.1))
    # A float32 read back as float64, as `grad_norm.item()` gives: 1.2345678806304932.
    return float(struct.unpack("f", struct.pack("f", abs(value)))[0])


def n_params(cfg: dict[str, Any]) -> int:
    model = cfg["model"]
    try:
        layers, embd, vocab = int(model["n_layer"]), int(model["n_embd"]), int(model["vocab_size"])
    except (KeyError, TypeError, ValueError):
        return 1_000_000
    return layers * 12 * embd * embd + vocab * embd


# --------------------------------------------------------------------------- faults


class OutOfMemoryError(RuntimeError):
    """Prints in a traceback exactly as PyTorch's CUDA OOM does."""


# Python names an exception in a traceback by module and qualname.
OutOfMemoryError.__module__ = "torch"

OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB "
    "of which 1.23 GiB is free. Including non-PyTorch memory, this process has 77.91 GiB memory "
    "in use. Of the allocated memory 75.12 GiB is allocated by PyTorch, and 1.52 GiB is reserved "
    "by PyTorch but unallocated. If reserved but unallocated memory is large try setting "
    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation "
    "for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
)


def _allocate_activations(step: int) -> None:
    raise OutOfMemoryError(OOM_MESSAGE)


def _forward(step: int, crash_at: int | None, oom_at: int | None) -> None:
    """Where the faults strike, a few frames deep like a real forward pass."""
    if oom_at is not None and step == oom_at:
        _allocate_activations(step)
    if crash_at is not None and step == crash_at:
        batch: dict[str, list[int]] = {"input_ids": [1, 2, 3]}
        # A typical bug: a key the collator never produced.
        raise RuntimeError(
            f"toy crash at step {step} (--crash-at-step): batch has no 'labels' "
            f"(keys: {sorted(batch)})"
        )


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# --------------------------------------------------------------------------- signals


class Flags:
    """Set by signal handlers, read by the training loop between steps."""

    ckpt_signal: int | None = None
    term: bool = False

    @classmethod
    def any(cls) -> bool:
        return cls.ckpt_signal is not None or cls.term


def parse_signal(name: str) -> signal.Signals:
    text = name.strip().upper()
    if not text.isdigit() and not text.startswith("SIG"):
        text = "SIG" + text
    try:
        sig = signal.Signals(int(text)) if text.isdigit() else signal.Signals[text]
    except (KeyError, ValueError):
        raise ConfigError(
            f"--ckpt-signal: unknown signal {name!r} (e.g. USR1, USR2, TERM)"
        ) from None
    if sig in (signal.SIGKILL, signal.SIGSTOP):
        raise ConfigError(f"--ckpt-signal: {sig.name} cannot be caught")
    return sig


def install_handlers(ckpt_sig: signal.Signals) -> None:
    def on_ckpt(signum: int, frame: FrameType | None) -> None:
        Flags.ckpt_signal = signum

    def on_term(signum: int, frame: FrameType | None) -> None:
        Flags.term = True

    signal.signal(ckpt_sig, on_ckpt)
    if ckpt_sig != signal.SIGTERM:
        signal.signal(signal.SIGTERM, on_term)


def sleep_until(deadline: float) -> bool:
    """Sleep in short slices so a signal is acted on within ~50 ms. False if interrupted."""
    while True:
        if Flags.any():
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.05))


# --------------------------------------------------------------------------- output styles


def _fmt_clock(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    mins, secs = divmod(rest, 60)
    return f"{hours}:{mins:02d}:{secs:02d}" if hours else f"{mins:02d}:{secs:02d}"


def tqdm_line(desc: str, n: int, total: int, elapsed: float, postfix: str = "") -> str:
    """One tqdm redraw as tqdm writes it to a file that is not a terminal (10-column bar)."""
    frac = min(n / total, 1.0) if total else 0.0
    width = 10
    eighths = int(frac * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (" ▏▎▍▌▋▊▉"[part] if full < width else "")
    bar = bar.ljust(width)
    rate = n / elapsed if elapsed > 0 else 0.0
    if rate <= 0:
        rate_fmt, remaining = "?it/s", "?"
    else:
        rate_fmt = f"{rate:5.2f}it/s" if rate >= 1 else f"{1 / rate:5.2f}s/it"
        remaining = _fmt_clock((total - n) / rate)
    left = f"{desc}: {frac * 100:3.0f}%|" if desc else f"{frac * 100:3.0f}%|"
    return f"{left}{bar}| {n}/{total} [{_fmt_clock(elapsed)}<{remaining}, {rate_fmt}{postfix}]"


def lightning_num(value: float) -> str:
    """Lightning's progress-bar number format: tqdm's 3 significant digits, padded to 5."""
    short = f"{value:.3g}".replace("e+0", "e+").replace("e-0", "e-")
    text = short if len(short) < len(str(value)) else str(value)
    if "e" not in text and text not in ("nan", "inf", "-inf"):
        if "." not in text and len(text) < 5:
            text += "."
        text += "0" * (5 - len(text))
    return text


class Style:
    """How one family of trainers prints. Subclasses override what differs."""

    def __init__(self, cfg: dict[str, Any], start_step: int) -> None:
        self.cfg = cfg
        self.start_step = start_step
        self.t0 = time.monotonic()
        self.steps_per_epoch: int = max(int(cfg["dataset_size"]) // int(cfg["batch_size"]), 1)
        self.bar_on = bool(cfg["progress_bar"])

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch

    def banner(self, resumed_from: Path | None) -> None:
        pass

    def step_done(self, step: int) -> None:
        pass

    def train_log(self, step: int, loss: float, lr: float, grad_norm: float, dt: float) -> None:
        raise NotImplementedError

    def eval_log(self, step: int, train_loss: float, val_loss: float) -> None:
        raise NotImplementedError

    def line(self, text: str) -> None:
        """A plain line (checkpoint saved, notices) printed while a bar may be showing."""
        emit(text)

    def finish(self, step: int, train_loss_avg: float) -> None:
        pass


class HFStyle(Style):
    """transformers.Trainer: dicts via tqdm.write on stdout, the bar itself on stderr."""

    def __init__(self, cfg: dict[str, Any], start_step: int) -> None:
        super().__init__(cfg, start_step)
        self.last_bar = ""
        self.last_draw = 0.0

    def _bar(self, step: int) -> None:
        if not self.bar_on:
            return
        self.last_bar = tqdm_line("", step, self.cfg["steps"], time.monotonic() - self.t0)
        sys.stderr.write("\r" + self.last_bar)
        sys.stderr.flush()

    def _write(self, text: str) -> None:
        # tqdm.write: clear the bar, print the line, redraw the bar.
        if self.bar_on and self.last_bar:
            sys.stderr.write("\r" + " " * len(self.last_bar) + "\r")
            sys.stderr.flush()
        emit(text)
        if self.bar_on and self.last_bar:
            sys.stderr.write("\r" + self.last_bar)
            sys.stderr.flush()

    def banner(self, resumed_from: Path | None) -> None:
        cfg = self.cfg
        epochs = math.ceil(cfg["steps"] / self.steps_per_epoch)
        self._write("***** Running training *****")
        self._write(f"  Num examples = {cfg['dataset_size']:,}")
        self._write(f"  Num Epochs = {epochs:,}")
        self._write(f"  Instantaneous batch size per device = {cfg['batch_size']:,}")
        self._write(
            "  Total train batch size (w. parallel, distributed & accumulation) = "
            f"{cfg['batch_size']:,}"
        )
        self._write("  Gradient Accumulation steps = 1")
        self._write(f"  Total optimization steps = {cfg['steps']:,}")
        self._write(f"  Number of trainable parameters = {n_params(cfg):,}")
        if resumed_from is not None:
            self._write("  Continuing training from checkpoint, will skip to saved global_step")
            self._write(f"  Continuing training from epoch {int(self.epoch(self.start_step))}")
            self._write(f"  Continuing training from global step {self.start_step}")
        self._bar(self.start_step)

    def step_done(self, step: int) -> None:
        # tqdm's default mininterval is 0.1 s: a redraw at most every 0.1 s.
        if time.monotonic() - self.last_draw >= 0.1 or step == self.cfg["steps"]:
            self.last_draw = time.monotonic()
            self._bar(step)

    def train_log(self, step: int, loss: float, lr: float, grad_norm: float, dt: float) -> None:
        logs = {
            "loss": round(loss, 4),
            "grad_norm": grad_norm,
            "learning_rate": lr,
            "epoch": round(self.epoch(step), 2),
        }
        self._write(str(logs))

    def eval_log(self, step: int, train_loss: float, val_loss: float) -> None:
        runtime = 0.05 + 0.01 * _rng(self.cfg, step, 4).random()
        n_eval = max(self.cfg["dataset_size"] // 10, 1)
        logs = {
            "eval_loss": val_loss,
            "eval_runtime": round(runtime, 4),
            "eval_samples_per_second": round(n_eval / runtime, 3),
            "eval_steps_per_second": round(n_eval / self.cfg["batch_size"] / runtime, 3),
            "epoch": round(self.epoch(step), 2),
        }
        self._write(str(logs))

    def line(self, text: str) -> None:
        self._write(text)

    def finish(self, step: int, train_loss_avg: float) -> None:
        runtime = time.monotonic() - self.t0
        steps = max(step - self.start_step, 1)
        logs = {
            "train_runtime": round(runtime, 4),
            "train_samples_per_second": round(steps * self.cfg["batch_size"] / runtime, 3),
            "train_steps_per_second": round(steps / runtime, 3),
            "train_loss": train_loss_avg,
            "epoch": round(self.epoch(step), 2),
        }
        self._write(str(logs))
        if self.bar_on:
            sys.stderr.write("\n")
            sys.stderr.flush()


class NanoGPTStyle(Style):
    """nanoGPT's train.py: plain print() lines."""

    def banner(self, resumed_from: Path | None) -> None:
        tokens = self.cfg["batch_size"] * 256
        emit(f"tokens per iteration will be: {tokens:,}")
        if resumed_from is None:
            emit("Initializing a new model from scratch")
        else:
            emit(f"Resuming training from {resumed_from}")
        emit(f"number of parameters: {n_params(self.cfg) / 1e6:.2f}M")
        self.local_iter = 0

    def train_log(self, step: int, loss: float, lr: float, grad_norm: float, dt: float) -> None:
        # nanoGPT's running MFU is -1 for its first iterations and prints as -100.00%.
        mfu = -1.0 if self.local_iter < 5 else 0.30 + 0.02 * _rng(self.cfg, step, 5).random()
        self.local_iter += 1
        emit(f"iter {step}: loss {loss:.4f}, time {dt * 1000:.2f}ms, mfu {mfu * 100:.2f}%")

    def eval_log(self, step: int, train_loss: float, val_loss: float) -> None:
        emit(f"step {step}: train loss {train_loss:.4f}, val loss {val_loss:.4f}")


class LightningStyle(Style):
    """PyTorch Lightning's TQDMProgressBar on stdout: \\r redraws, a newline per epoch."""

    def __init__(self, cfg: dict[str, Any], start_step: int) -> None:
        super().__init__(cfg, start_step)
        self.postfix: dict[str, float] = {}
        self.last_bar = ""
        self.epoch_t0 = self.t0

    def _epoch_of(self, step: int) -> int:
        # Step s (1-based) belongs to epoch (s-1)//spe; the bar counts batches within it.
        return (max(step, 1) - 1) // self.steps_per_epoch

    def _draw(self, step: int) -> None:
        if not self.bar_on:
            return
        epoch = self._epoch_of(step)
        n = step - epoch * self.steps_per_epoch
        post = ", v_num=0" + "".join(f", {k}={lightning_num(v)}" for k, v in self.postfix.items())
        self.last_bar = tqdm_line(
            f"Epoch {epoch}", n, self.steps_per_epoch, time.monotonic() - self.epoch_t0, post
        )
        sys.stdout.write("\r" + self.last_bar)
        sys.stdout.flush()

    def banner(self, resumed_from: Path | None) -> None:
        emit("GPU available: False, used: False")
        emit("TPU available: False, using: 0 TPU cores")
        if resumed_from is not None:
            emit(f"Restoring states from the checkpoint path at {resumed_from}")
        emit("")
        emit("  | Name  | Type     | Params | Mode ")
        emit("-------------------------------------------")
        emit(f"0 | model | ToyGPT   | {n_params(self.cfg) / 1e6:.1f} M  | train")
        emit("-------------------------------------------")
        if resumed_from is not None:
            emit(f"Restored all states from the checkpoint at {resumed_from}")

    def step_done(self, step: int) -> None:
        epoch_end = step % self.steps_per_epoch == 0 or step == self.cfg["steps"]
        if step % self.cfg["log_every"] == 0 or epoch_end:
            self._draw(step)
        if epoch_end and self.bar_on:
            sys.stdout.write("\n")  # the finished epoch's bar stays, a new one starts
            sys.stdout.flush()
            self.last_bar = ""
            self.epoch_t0 = time.monotonic()

    def train_log(self, step: int, loss: float, lr: float, grad_norm: float, dt: float) -> None:
        self.postfix["train_loss"] = loss
        self.postfix["lr"] = lr
        if not self.bar_on:
            emit(
                f"Epoch {self._epoch_of(step)}, step {step}: "
                f"train_loss={lightning_num(loss)}, lr={lightning_num(lr)}"
            )

    def eval_log(self, step: int, train_loss: float, val_loss: float) -> None:
        if self.bar_on:
            # The validation bar is drawn and then erased (leave=False), as Lightning does.
            n_val = 8
            val = tqdm_line("Validation DataLoader 0", n_val, n_val, 0.04)
            sys.stdout.write("\r" + val + "\r" + " " * len(val) + "\r")
            sys.stdout.flush()
        self.postfix["val_loss"] = val_loss
        if not self.bar_on:
            emit(f"Epoch {self._epoch_of(step)}, step {step}: val_loss={lightning_num(val_loss)}")

    def line(self, text: str) -> None:
        if self.bar_on and self.last_bar:
            sys.stdout.write("\r" + " " * len(self.last_bar) + "\r")
        emit(text)
        if self.bar_on and self.last_bar:
            sys.stdout.write("\r" + self.last_bar)
            sys.stdout.flush()

    def finish(self, step: int, train_loss_avg: float) -> None:
        if self.last_bar:
            emit("")
        emit(f"`Trainer.fit` stopped: `max_steps={self.cfg['steps']}` reached.")


class JSONStyle(Style):
    """One JSON object per line, as many custom loops log metrics."""

    def train_log(self, step: int, loss: float, lr: float, grad_norm: float, dt: float) -> None:
        rec = {
            "step": step,
            "epoch": round(self.epoch(step), 4),
            "loss": round(loss, 6),
            "lr": lr,
            "grad_norm": round(grad_norm, 6),
            "step_time_ms": round(dt * 1000, 3),
        }
        emit(json.dumps(rec))

    def eval_log(self, step: int, train_loss: float, val_loss: float) -> None:
        emit(
            json.dumps(
                {"step": step, "epoch": round(self.epoch(step), 4), "val_loss": round(val_loss, 6)}
            )
        )

    def finish(self, step: int, train_loss_avg: float) -> None:
        runtime = time.monotonic() - self.t0
        emit(
            json.dumps(
                {
                    "step": step,
                    "train_runtime": round(runtime, 3),
                    "train_loss": round(train_loss_avg, 6),
                }
            )
        )


STYLES: dict[str, Callable[[dict[str, Any], int], Style]] = {
    "hf": HFStyle,
    "nanogpt": NanoGPTStyle,
    "lightning": LightningStyle,
    "json": JSONStyle,
}


# --------------------------------------------------------------------------- checkpoints


def checkpoints_dir(out_dir: Path) -> Path:
    return out_dir / "checkpoints"


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step (half-written ones are temp dirs)."""
    root = checkpoints_dir(out_dir)
    if not root.is_dir():
        return None
    steps = [int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / STATE_FILE).is_file()]
    return root / str(max(steps)) if steps else None


def save_checkpoint(out_dir: Path, step: int, state: dict[str, Any], cfg: dict[str, Any]) -> Path:
    """Write checkpoints/<step>/ whole: into a temp dir first, then one rename."""
    root = checkpoints_dir(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / str(step)
    tmp = root / f".tmp-{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    params = {"model": cfg["model"], "n_params": n_params(cfg), "dtype": "float32"}
    (tmp / "params.json").write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
    rng = _rng(cfg, step, 6)
    n_floats = cfg["ckpt_size_kb"] * 256
    weights = struct.pack(f"<{n_floats}f", *(rng.gauss(0.0, 0.02) for _ in range(n_floats)))
    (tmp / "model.bin").write_bytes(weights)
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    if final.exists():  # re-saving a step (e.g. a resumed run): replace it whole
        old = root / f".old-{step}-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    return final


def load_checkpoint(path: Path) -> dict[str, Any]:
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise ConfigError(f"--resume {path}: not a checkpoint (no {STATE_FILE} in it)")
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--resume {path}: unreadable {STATE_FILE}: {exc}") from exc
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        raise ConfigError(f"--resume {path}: {STATE_FILE} has no integer global_step")
    return state


# --------------------------------------------------------------------------- wandb


def start_wandb(cfg: dict[str, Any], out_dir: Path, run_id: str | None) -> Any:
    """An offline W&B run if wandb is importable; None (after one notice) otherwise."""
    try:
        import wandb
    except ImportError:
        note("--wandb given but wandb is not installed; continuing without W&B logging")
        return None
    os.environ["WANDB_MODE"] = "offline"  # never talk to a server from the toy
    try:
        run = wandb.init(
            project=cfg["wandb_project"],
            name=cfg["wandb_name"],
            dir=str(out_dir),
            config=cfg,
            mode="offline",
            id=run_id,
            resume="allow" if run_id else None,
        )
    except Exception as exc:  # a broken wandb install must not stop the toy
        note(f"wandb.init failed ({type(exc).__name__}: {exc}); continuing without W&B logging")
        return None
    return run


# --------------------------------------------------------------------------- main loop


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="toy_train.py",
        description="A toy trainer that behaves like a real one (see examples/README.md).",
        epilog="Exit codes: 0 done, 1 crash (traceback), 2 bad usage/config, "
        f"{EXIT_CKPT_SIGNAL} stopped by the checkpoint signal after saving; SIGTERM: dies by "
        "SIGTERM (status 143).",
    )
    p.add_argument("--config", help="YAML (needs PyYAML) or JSON config file")
    p.add_argument("--steps", type=int, help="total optimizer steps")
    p.add_argument("--steps-per-sec", type=float, help="pace of training; 0 = as fast as possible")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--log-every", type=int, help="steps between train-loss lines")
    p.add_argument("--eval-every", type=int, help="steps between val-loss lines; 0 = never")
    p.add_argument("--ckpt-every", type=int, help="steps between checkpoints; 0 = only the last")
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--out-dir", help="checkpoints go to <out-dir>/checkpoints/<step>/")
    p.add_argument("--format", choices=FORMATS, help="log style (default hf)")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress-bar",
        dest="progress_bar",
        action="store_const",
        const=True,
        default=None,
        help="draw tqdm bars (hf: on stderr, lightning: on stdout)",
    )
    bar.add_argument("--no-progress-bar", dest="progress_bar", action="store_const", const=False)
    p.add_argument(
        "--resume",
        metavar="CKPT_DIR|auto",
        help="continue from a checkpoint dir, or the latest under out-dir ('auto'; "
        "starts fresh when there is none)",
    )
    p.add_argument("--wandb", action="store_true", help="log to an offline W&B run if installed")
    faults = p.add_argument_group("faults (for tests)")
    faults.add_argument(
        "--crash-at-step", type=int, metavar="N", help="raise a Python exception at step N (exit 1)"
    )
    faults.add_argument(
        "--oom-at-step",
        type=int,
        metavar="N",
        help="raise PyTorch's CUDA out-of-memory error at step N (exit 1)",
    )
    faults.add_argument(
        "--nan-at-step", type=int, metavar="N", help="the train loss is nan from step N on"
    )
    faults.add_argument(
        "--memory-spike-at-step",
        type=int,
        metavar="N",
        help="allocate --memory-spike-mb of real memory at step N",
    )
    faults.add_argument("--memory-spike-mb", type=int, default=256, metavar="MB")
    faults.add_argument(
        "--memory-spike-seconds",
        type=float,
        default=1.0,
        metavar="S",
        help="how long to hold the spike (default 1.0)",
    )
    sig = p.add_argument_group("signals")
    sig.add_argument(
        "--ckpt-signal",
        default="USR2",
        metavar="SIG",
        help=f"on this signal save a checkpoint and exit {EXIT_CKPT_SIGNAL} (default USR2)",
    )
    sig.add_argument(
        "--continue-after-signal",
        action="store_true",
        help="after the checkpoint signal's save, keep training",
    )
    return p


def memory_spike(mb: int, seconds: float, step: int, style: Style) -> None:
    # bytes * n fills every page (unlike calloc'd zeros), so RSS really grows.
    block = b"\x01" * (mb * 1024 * 1024)
    style.line(
        f"toy_train: memory spike at step {step}: holding {mb} MB for {seconds:g} s "
        f"(peak RSS {rss_peak_mb():.0f} MB)"
    )
    sleep_until(time.monotonic() + seconds)
    del block


def run(args: argparse.Namespace) -> int:
    cfg, kind = resolve_config(args)
    ckpt_sig = parse_signal(args.ckpt_signal)
    for flag in ("crash_at_step", "oom_at_step", "nan_at_step", "memory_spike_at_step"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise ConfigError(f"--{flag.replace('_', '-')} must be > 0, got {value}")
    if args.memory_spike_mb <= 0 or args.memory_spike_seconds < 0:
        raise ConfigError("--memory-spike-mb must be > 0 and --memory-spike-seconds >= 0")
    install_handlers(ckpt_sig)
    out_dir = Path(cfg["out_dir"]).absolute()

    resumed_from: Path | None = None
    state: dict[str, Any] = {}
    if args.resume is not None:
        if args.resume == "auto":
            resumed_from = latest_checkpoint(out_dir)
            if resumed_from is None:
                note(
                    f"--resume auto: no checkpoint under {checkpoints_dir(out_dir)}; "
                    "starting from step 0"
                )
        else:
            resumed_from = Path(args.resume).absolute()
            if not resumed_from.is_dir():
                raise ConfigError(f"--resume {args.resume}: no such checkpoint directory")
        if resumed_from is not None:
            state = load_checkpoint(resumed_from)
    start_step = int(state.get("global_step", 0))

    if args.config is not None:
        note(f"config {Path(args.config).absolute()}")
    snapshot = dict(cfg, resumed_from=str(resumed_from) if resumed_from else None)
    resolved = write_resolved_config(snapshot, out_dir, kind)
    note(f"resolved config written to {resolved}")
    if resumed_from is not None:
        note(f"resuming from checkpoint {resumed_from} at step {start_step}")

    run_id: str | None = state.get("wandb_run_id")
    wb = start_wandb(cfg, out_dir, run_id) if cfg["wandb"] else None
    if wb is not None:
        run_id = str(wb.id)

    style = STYLES[cfg["format"]](cfg, start_step)
    total = cfg["steps"]
    if start_step >= total:
        note(f"checkpoint is at step {start_step} of {total}: nothing left to do")
        if wb is not None:
            wb.finish()
        return EXIT_OK
    style.banner(resumed_from)

    best_val: float | None = state.get("best_val_loss")
    last_val: float | None = state.get("val_loss")
    last_saved: int | None = start_step if resumed_from is not None else None
    window: list[float] = []
    all_losses: list[float] = []
    step = start_step
    period = 1.0 / cfg["steps_per_sec"] if cfg["steps_per_sec"] > 0 else 0.0
    t_prev = time.monotonic()
    deadline = t_prev
    spiked = False

    def save(at: int) -> None:
        nonlocal last_saved
        if last_saved == at:
            return  # this step is already on disk; saying "Saving" again would be untrue
        ckpt_state = {
            "global_step": at,
            "total_steps": total,
            "epoch": style.epoch(at),
            "train_loss": all_losses[-1] if all_losses else state.get("train_loss"),
            "val_loss": last_val,
            "best_val_loss": best_val,
            "learning_rate": lr_at(at, cfg),
            "seed": cfg["seed"],
            "format": cfg["format"],
            "wandb_run_id": run_id,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        path = save_checkpoint(out_dir, at, ckpt_state, cfg)
        last_saved = at
        style.line(f"Saving model checkpoint to {path}")

    while step < total:
        nxt = step + 1
        _forward(nxt, args.crash_at_step, args.oom_at_step)
        if args.memory_spike_at_step == nxt and not spiked:
            spiked = True
            memory_spike(args.memory_spike_mb, args.memory_spike_seconds, nxt, style)
        if period:
            # Steady pace without catching up after a pause (a spike, a checkpoint).
            deadline = max(deadline + period, time.monotonic() - period)
            finished = sleep_until(deadline)
        else:
            finished = not Flags.any()
        if finished:  # else a signal came mid-step: that step never finished
            step = nxt
            now = time.monotonic()
            loss = train_loss_at(step, cfg)
            if args.nan_at_step is not None and step >= args.nan_at_step:
                loss = float("nan")
            window.append(loss)
            all_losses.append(loss)
            lr = lr_at(step, cfg)
            if step % cfg["log_every"] == 0 or step == total:
                avg = sum(window) / len(window)
                style.train_log(step, avg, lr, grad_norm_at(step, cfg), now - t_prev)
                if wb is not None:
                    wb.log(
                        {"train/loss": avg, "train/lr": lr, "train/epoch": style.epoch(step)},
                        step=step,
                    )
                window.clear()
            t_prev = now
            if cfg["eval_every"] and (step % cfg["eval_every"] == 0 or step == total):
                last_val = val_loss_at(step, cfg)
                best_val = last_val if best_val is None else min(best_val, last_val)
                style.eval_log(step, train_eval_loss_at(step, cfg), last_val)
                if wb is not None:
                    wb.log({"eval/loss": last_val}, step=step)
            style.step_done(step)
            if (cfg["ckpt_every"] and step % cfg["ckpt_every"] == 0) or step == total:
                save(step)

        if Flags.term:
            sys.stderr.flush()
            style.line(f"toy_train: received SIGTERM at step {step}; exiting")
            if wb is not None:
                wb.finish(exit_code=143)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal ends us first
        if Flags.ckpt_signal is not None:
            name = signal.Signals(Flags.ckpt_signal).name
            Flags.ckpt_signal = None
            style.line(f"toy_train: received {name} at step {step}; saving a checkpoint")
            save(step)
            if not args.continue_after_signal:
                style.line(
                    f"toy_train: checkpoint for step {step} is in "
                    f"{checkpoints_dir(out_dir) / str(step)}; "
                    f"exiting with code {EXIT_CKPT_SIGNAL} (continue with --resume auto)"
                )
                if wb is not None:
                    wb.finish(exit_code=EXIT_CKPT_SIGNAL)
                return EXIT_CKPT_SIGNAL

    avg_all = sum(all_losses) / len(all_losses) if all_losses else float("nan")
    style.finish(step, avg_all)
    val_text = f"{last_val:.4f}" if last_val is not None else "n/a"
    final_loss = all_losses[-1] if all_losses else float("nan")
    note(f"finished at step {step}/{total}: train loss {final_loss:.4f}, val loss {val_text}")
    if wb is not None:
        wb.finish()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ConfigError as exc:
        sys.stdout.flush()
        print(f"toy_train: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
