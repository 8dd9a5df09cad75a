"""Event patterns: checkpoint saves (with or without a path, and their step), the W&B
run directory or URL, and a resolved-config path the run announces."""

from __future__ import annotations

import re

_PATH = r"['\"`]?(?P<path>[^\s'\"`]+)['\"`]?"
_CKPT_STEP = re.compile(
    r"(?:checkpoint|ckpt)\b.*?\b(?:at|after|for|from)\s+(?:the\s+)?"
    r"(?:last\s+step,\s+)?(?:global\s+)?(?:step|iteration|iter)[\s:=]+(?P<step>\d+)",
    re.IGNORECASE,
)
_CKPT_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Megatron: "successfully saved checkpoint from iteration    1000 to /ckpt"
    re.compile(
        r"successfully saved checkpoint (?:from|at) iteration\s+(?P<step>\d+)\s+to\s+" + _PATH,
        re.IGNORECASE,
    ),
    # HF Trainer / nanoGPT / toy: "Saving model checkpoint to out/checkpoint-500"
    re.compile(
        r"\bsav(?:ing|ed)\s+(?:the\s+)?(?:model\s+)?(?:checkpoint|ckpt)s?\s+"
        r"(?:to|in|into|at)\s+(?!(?:step|iteration|iter|epoch)\b)" + _PATH,
        re.IGNORECASE,
    ),
    # Lightning ModelCheckpoint(verbose=True), Keras: "saving model to '/x/epoch=0-step=100.ckpt'"
    re.compile(r"\bsaving model to\s+" + _PATH, re.IGNORECASE),
    # generic: "checkpoint saved to X", "Saved checkpoint: X", "Checkpoint is saved to X"
    re.compile(
        r"\b(?:checkpoint|ckpt)\s+(?:is\s+|was\s+)?(?:saved|written|stored)\s+"
        r"(?:to|at|in|into)\s*:?\s+(?!(?:step|iteration|iter|epoch)\b)" + _PATH,
        re.IGNORECASE,
    ),
    re.compile(
        r"\bsaved\s+(?:model\s+)?(?:checkpoint|ckpt)\s*:\s*" + _PATH,
        re.IGNORECASE,
    ),
)
# Lines that announce a checkpoint without a path (torchtitan, lerobot, orbax...).
_CKPT_NO_PATH = re.compile(
    r"finished saving the checkpoint|checkpoint policy after step|saving a full checkpoint"
    r"|\bsav(?:ed|ing) (?:the |a )?checkpoint\b",
    re.IGNORECASE,
)
_STEP_IN_PATH = re.compile(
    r"(?:checkpoint|ckpt|step|iter|global_step)[-_=]?(?P<step>\d+)|/(?P<bare>\d+)/?$",
    re.IGNORECASE,
)

_WANDB_LOCAL = re.compile(r"wandb: Run data is saved locally in\s+" + _PATH)
_WANDB_OFFLINE_DIR = re.compile(r"(?P<path>[^\s'\"`]*wandb/offline-run-\d{8}_\d{6}-\w+)")
_WANDB_URL = re.compile(r"wandb:.*\bView run\b.*?(?P<url>https?://\S+)")

# Only a *resolved* config counts ("Configuration saved in .../config.json" is HF's model
# architecture file, not the run's settings).
_CONFIG_WRITTEN = re.compile(
    r"resolved\s+config(?:uration)?(?:\s+file)?\s+(?:written|saved|dumped|stored)\s+"
    r"(?:to|at|in)\s*:?\s+"
    + _PATH
    + r"|\b(?:saving|writing|dumping)\s+(?:the\s+)?resolved\s+config(?:uration)?\s+"
    r"(?:file\s+)?(?:to|at|in)\s+" + _PATH.replace("path", "path2"),
    re.IGNORECASE,
)

# The training's own word that it continues from a checkpoint: Lightning's
# ("Restoring states from the checkpoint path at <path>", its `ckpt_path` or its SLURM
# requeue's hpc_ckpt_N.ckpt) and nanoGPT's ("Resuming training from <out_dir>").
_RESUMED_FROM = re.compile(
    r"Restoring states from the checkpoint path at\s+"
    + _PATH
    + r"|^Resuming training from\s+"
    + _PATH.replace("path", "path2")
    + r"\s*$"
)


def _clean_path(path: str) -> str:
    return path.rstrip(".,;:)]}'\"`")
