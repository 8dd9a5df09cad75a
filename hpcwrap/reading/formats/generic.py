"""The generic metric readers' patterns: known keys for ``key: value`` / ``key=value``
text and JSON lines, tqdm bars (training, eval and data-preparation ones) and Megatron
``|``-separated lines."""

from __future__ import annotations

import re

from hpcwrap.reading.formats.text import _NUM, parse_number

# Keys we know, longest first so "train loss" wins over "loss". Each maps to a field.
_KEY_FIELDS: dict[str, str] = {
    "train loss": "loss",
    "train_loss": "loss",
    "train/loss": "loss",
    "training loss": "loss",
    "training_loss": "loss",
    "lm loss": "loss",
    "loss": "loss",
    "val loss": "val_loss",
    "val_loss": "val_loss",
    "val/loss": "val_loss",
    "validation loss": "val_loss",
    "validation_loss": "val_loss",
    "valid loss": "val_loss",
    "valid_loss": "val_loss",
    "eval loss": "val_loss",
    "eval_loss": "val_loss",
    "eval/loss": "val_loss",
    "global step": "step",
    "global_step": "step",
    "train/global_step": "step",
    "iteration": "step",
    "iter": "step",
    "step": "step",
    "epoch": "epoch",
    "epch": "epoch",
    "train/epoch": "epoch",
    "learning rate": "lr",
    "learning_rate": "lr",
    "train/learning_rate": "lr",
    "train/lr": "lr",
    "lr": "lr",
}
_KEY_ALT = "|".join(
    re.escape(k).replace(r"\ ", r"[ ]") for k in sorted(_KEY_FIELDS, key=len, reverse=True)
)
# 'key': value | "key": "value" | key=value | key: value | key value
_KV_SOURCE = (
    r"(?<![\w/.\-])['\"]?(?P<key>" + _KEY_ALT + r")['\"]?"
    r"(?P<sep>\s*[:=]\s*|\s+)['\"]?(?P<val>" + _NUM + r")['\"]?"
    r"(?:\s*/\s*(?P<total>\d+))?(?![\w.])"
)
_KV = re.compile(_KV_SOURCE, re.IGNORECASE)
# The same for lower-cased ASCII text: twice as fast as IGNORECASE (offsets are equal, so
# values are taken from the original text, keeping lerobot's "10K").
_KV_LOWER = re.compile(_KV_SOURCE.replace("[KMB]", "[kmb]"))

# A step written "step 5" (no ':' or '=') in a line that says nothing else counts only
# at the start of the line, after a separator, or after a word that places the run at
# it ("resumed from step 5", "finished step 5"): in other prose ("loss of connection to
# node n3, retrying step 3") it is not the training's step.
_COUNTERS = frozenset({"step"})
_SEPARATOR_BEFORE = re.compile(
    r"(?:^|[\[\](){}|:;,\-]|\b(?:at|from|after|reached|finished|completed|done))\s*$",
    re.IGNORECASE,
)

# A plain "loss" after one of these words is not the train loss: "Validation: loss 1.23",
# "eval: loss=1.2", fairseq's "valid on 'valid' subset | loss 9.87" are val losses; a
# test-set loss is neither (dropped).
_EVAL_BEFORE = re.compile(
    r"\b(?:(?P<val>val|valid|validation|validating|validate|eval|evaluation|evaluating"
    r"|evaluate)|(?P<test>test|testing))\b",
    re.IGNORECASE,
)

_TQDM = re.compile(
    r"(?:(?P<desc>[^|]*?):\s*)?(?P<pct>\d{1,3})%\|[^|]*\|\s*"
    r"(?P<n>\d+(?:\.\d+)?[kMG]?)/(?P<total>\d+(?:\.\d+)?[kMG]?)\s*\[(?P<inside>[^\]]*)\]?"
)
_EVAL_BAR = re.compile(r"val|eval|test|predict|sanity|infer", re.IGNORECASE)
# Data preparation bars (datasets' map/filter, tokenizing, downloads, loading shards):
# their counts are examples or files, never the training's step.
_DATA_BAR = re.compile(
    r"dataset|token|map\b|filter|download|load|shard|generat|prepar|pack|template|truncat"
    r"|\beos\b|extract|convert|process|fetch|resolv",
    re.IGNORECASE,
)
_TRAIN_BAR = re.compile(r"train|step|iter|batch|optim|updat", re.IGNORECASE)
_DATA_UNITS = re.compile(r"(?:examples|ba|files|shards|[kMG]?B)/s\b")
_EPOCH_BAR = re.compile(r"^\s*epoch\s+(?P<epoch>\d+)", re.IGNORECASE)

_MEGATRON_TRAIN = re.compile(r"\biteration\s+(?P<n>\d+)\s*/\s*(?P<total>\d+)\s*\|")
_MEGATRON_VAL = re.compile(r"validation loss at (?:iteration\s+)?(?P<n>\d+)", re.IGNORECASE)
_MEGATRON_FIELD = re.compile(r"\|\s*(?P<key>[^|:]+?)\s*:\s*(?P<val>" + _NUM + r")\s*(?=\|)")

_TORCHTITAN_VAL = re.compile(r"\bvalidate step\s*:", re.IGNORECASE)


def _tqdm_count(text: str) -> float | None:
    """tqdm's unit_scale counts: ``"1.2k"`` -> 1200."""
    if text and text[-1] in "kMG":
        base = parse_number(text[:-1])
        return None if base is None else base * {"k": 1e3, "M": 1e6, "G": 1e9}[text[-1]]
    return parse_number(text)


# Keys only HF Trainer's end-of-training summary of averages has ({'train_runtime': ...,
# 'train_loss': <the run's mean>, 'epoch': ...}): a line holding one is never a step's loss.
_SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second")


def _summary(lower: str) -> bool:
    return any(k in lower for k in _SUMMARY_KEYS)


def _dict_tail(text: str) -> bool:
    """The rest of a dict whose start another write cut off: Python flushes stdout 8 KiB
    at a time, and a progress bar redrawn on stderr in between leaves ``...]les_per_second':
    61.9, 'train_loss': 3.28, 'epoch': 3.0}``. Its keys cannot be told from the summary's:
    no loss is read from it."""
    return text.endswith("}") and "{" not in text and ("':" in text or '":' in text)


def _plain_metrics(text: str, lower: str) -> bool:
    """A whole tqdm bar redraw or a whole metrics dict: lines the generic readers read
    and no framework entry concerns (the most frequent lines of most trainings)."""
    end = text[-1:]
    if end == "]":
        return "%|" in text
    return end == "}" and text.lstrip()[:1] == "{" and not _summary(lower)
