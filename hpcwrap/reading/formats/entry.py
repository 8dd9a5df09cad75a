"""One training framework's console format, declared as data (see ``frameworks.py``).

An ``Entry`` says what marks a train line, a val line, a completed save and its path,
a started save, and what the printed step means. ``LineParser`` (core.py) tries the
entries whose hint words a line contains before its generic readers (tqdm bars,
HF-style dicts, ``key: value`` text, JSON lines); a line an entry read is not read
again by the generic metric readers, so a framework's own rule always wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A number as frameworks print it (also "1.2E+00", "nan", "10K").
NUM = (
    r"[-+]?(?:nan|inf(?:inity)?)"
    r"|[-+]?(?:\d{1,3}(?:,\d{3})+(?![\d.])|\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?[KMB]?"
)
# A printed path, without the quotes or backticks around it.
PATH = r"['\"`]?(?P<path>[^\s'\"`]+)['\"`]?"
FILE = r"['\"`]?(?P<file>[^\s'\"`]+)['\"`]?"

# What the printed step means.
STEP_PRINTED = "printed"  # the number printed is the global step (optimizer updates done)
# the printed number is the 0-based index of the update just done: printed + 1 done
STEP_INDEX = "index"
# timm: no global step; epoch E, update index I of N per epoch -> E*N + I + 1 updates done
STEP_EPOCH_INDEX = "epoch_index"


def rx(source: str) -> re.Pattern[str]:
    """A case-sensitive regex (frameworks print their words exactly so)."""
    return re.compile(source.replace("{NUM}", f"(?:{NUM})"))


@dataclass(frozen=True)
class Entry:
    """A framework's console format.

    Group names in the regexes: ``step``, ``total``, ``loss``, ``val_loss``, ``lr``,
    ``epoch``, ``index`` (timm's update index in the epoch), ``last`` (a val line's last
    batch index: the value counts only on the last batch, where it is the set's
    average), ``path`` (a checkpoint as printed), ``file`` (a file inside the
    checkpoint: its folder is the checkpoint), ``tag``, ``root``.
    """

    name: str
    source: str  # where its format strings are: "owner/repo: path"
    hints: tuple[str, ...]  # lower-case words; the entry is tried only on lines with one
    # Marks a train line (with step/loss/... groups). Its loss is the framework's train-loss
    # series: where such a line is read, the first and last train loss come from these
    # lines alone, other lines' losses (a bar's postfix, one batch's print) stand in only
    # where none is (progress.py).
    train: re.Pattern[str] | None = None
    val: re.Pattern[str] | None = None  # marks a validation line
    # Extra fields on a train or val line, in any order: (field, regex with group "v").
    fields: tuple[tuple[str, re.Pattern[str]], ...] = ()
    # A line that reports an average over many steps (an epoch summary, HF's log_metrics
    # row): its loss is never a step's train loss; its step fields still count.
    average: re.Pattern[str] | None = None
    # A line that looks like progress and is not (a test set's loss): read, nothing taken.
    ignore: re.Pattern[str] | None = None
    saved: tuple[re.Pattern[str], ...] = ()  # a save completed
    started: tuple[re.Pattern[str], ...] = ()  # a save started (not a checkpoint yet)
    # A file written as part of a save (a config, a tokenizer or optimizer file): inside a
    # started save of its folder it is just part of it; on its own it is no checkpoint.
    parts: tuple[re.Pattern[str], ...] = ()
    # A model's weights file: inside a started save a part of it; on its own (HF's
    # save_pretrained, accelerate's save_model) its folder is a completed checkpoint,
    # whatever files are written into it next (the tokenizer's).
    weights: tuple[re.Pattern[str], ...] = ()
    # The framework saves synchronously and prints only the start of a save: the save
    # is complete once training went on after it (a later step or loss, another save
    # starting, or a ``went_on`` line).
    completes_on_progress: bool = False
    went_on: re.Pattern[str] | None = None
    # A header line followed by one checkpoint per line (timm's "Current checkpoints:").
    listing: re.Pattern[str] | None = None
    listing_item: re.Pattern[str] | None = None
    # A line naming the folder checkpoints go to, and the name of one under it; for
    # frameworks whose save lines print no path (torchtitan's step-N, lerobot's 000N).
    root: re.Pattern[str] | None = None
    layout: str = ""  # "{root}/step-{step}"
    step: str = STEP_PRINTED
    # Where the step of a checkpoint is in its path, when no line says it.
    path_step: re.Pattern[str] | None = None
    path_step_is_epoch: bool = False  # timm: checkpoint-<epoch>.pth.tar


__all__ = [
    "FILE",
    "NUM",
    "PATH",
    "STEP_EPOCH_INDEX",
    "STEP_INDEX",
    "STEP_PRINTED",
    "Entry",
    "rx",
]
