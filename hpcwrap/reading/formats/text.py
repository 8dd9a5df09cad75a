"""Text of a line: the keywords a line must contain, stripping ANSI escapes and launcher
rank prefixes, and numbers as training output prints them."""

from __future__ import annotations

import math
import re

# Lines that hold metric words but never a step's values: W&B's own (its end-of-run
# history and summary, `wandb: loss 0.1`). The parser reads only their events; the
# scanner never samples one as a flood's first or last metric line.
NOT_METRIC_PREFIXES: tuple[str, ...] = ("wandb:",)

# Every word a line must contain (lower-cased) for the parser to find anything in
# it. The scanner uses this list to skip other lines without decoding them, so it
# must cover every trigger of the readers; tests/unit/test_job_formats.py checks that each
# sample line the parser reads contains one.
KEYWORDS: tuple[bytes, ...] = (
    b"loss",
    b"step",
    b"iter",
    b"epoch",
    b"epch",
    b"lr",
    b"learning",
    b"%|",
    b"checkp",
    b"ckpt",
    b"sav",
    b"wandb",
    b"config",
    b"resuming",  # "Resuming training from <out_dir>" (nanoGPT)
    b"traceback",
    b"error",
    b"exception",
    b"memory",
    b"nccl",
    b"slurmstepd",
    b"cancelled",
    b"killed",
    b"exhausted",
    b"fault",
    b"fatal",
    # validation lines (read even in a flood: the last val loss must not be sampled out)
    b"valid",
    b"eval_loss",
    b"val loss",
    b"test:",
    # framework save lines that say neither checkpoint nor save
    b"writing model",
    b"ready now",
    b"output dir",
    b"training completed",
    b"end of training",
    b"synchronous save",
)
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")

# Prefixes launchers put before every line: torchrun's "[rank0]:" / "[default0]:",
# srun --label's "0: ".
_RANK_PREFIX = re.compile(r"^\s*(?:\[(?:rank|default)\d+\]:|\d{1,5}: )")

_NUM = (
    r"[-+]?(?:nan|inf(?:inity)?)"
    r"|[-+]?(?:\d{1,3}(?:,\d{3})+(?![\d.])|\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?[KMB]?"
)


def parse_number(text: str) -> float | None:
    """``"1.5e-4"``, ``"'0.5'"``, ``"10K"``, ``"1,234"``, ``"nan"``, ``"-inf"`` -> float."""
    t = text.strip().strip("'\"")
    if not t:
        return None
    mult = 1.0
    if t[-1] in "KMB" and len(t) > 1 and (t[-2].isdigit() or t[-2] == "."):
        mult = {"K": 1e3, "M": 1e6, "B": 1e9}[t[-1]]
        t = t[:-1]
    t = t.replace(",", "")
    try:
        return float(t) * mult
    except ValueError:
        return None


def printed(text: str) -> str:
    """A number as the line printed it, without the quotes around it (``'0.5123'``)."""
    return text.strip().strip("'\"")


def _as_step(value: float | None) -> int | None:
    if value is None or not math.isfinite(value) or value < 0 or value > 1e15:
        return None
    return int(value)


def strip_line(text: str) -> str:
    """Remove ANSI escapes and a launcher's rank prefix from a decoded line."""
    if "\x1b" in text:
        text = ANSI.sub("", text)
    if "\x00" in text:
        text = text.replace("\x00", "")
    m = _RANK_PREFIX.match(text)
    if m:
        text = text[m.end() :]
        if text.startswith(" ") and not text.startswith("  "):
            text = text[1:]
    return text.rstrip()
