"""The frameworks' own records in a job's working tree: evidence beyond the console.

A quiet logger (transformers 5 prints no save line at default verbosity), a
progress display that prints only its final frame (Lightning's Rich bar without a
terminal) or rank-0-only printing leave the console without the evidence. The
frameworks keep it on disk, and this package reads it, bounded in time
(``budget_s``) and in directory entries (``entries``):

- HF Trainer: ``checkpoint-N/trainer_state.json`` (``global_step``, ``max_steps``,
  every logged ``loss`` and ``eval_loss`` with its step in ``log_history``,
  ``best_model_checkpoint``); the one with the highest ``global_step`` is read.
- Lightning: ``metrics.csv`` (CSVLogger, ``lightning_logs/version_N/``), and the
  TensorBoard event files (``events.out.tfevents.*``) where the ``tensorboard``
  package is importable (an optional extra); the newest file is read.
- Checkpoints on disk in the frameworks' layouts, newest complete first.

Only files modified since the job started count (``since``): a rerun in the same
folder never reads the previous run's records.

When a checkpoint is complete, per layout (each writes one file last):

- ``checkpoint-N/`` (HF Trainer): ``trainer_state.json`` is there and parses as
  JSON. The Trainer writes it after the weights, optimizer, scheduler and RNG
  state, in one non-atomic write, so a cut-off file does not parse. A folder of
  another name holding a parseable ``trainer_state.json`` beside a weights file
  counts too (its step is ``global_step``).
- ``*.ckpt`` (Lightning): a torch zip archive whose end-of-central-directory
  record is in its last 64 KiB. Lightning serialises in memory and writes the
  file in one go; a file cut short has no end record. ``epoch=E-step=S.ckpt``
  gives the step; ``last.ckpt`` has none (it sorts after the named ones).
- ``global_stepN/`` (DeepSpeed): the ``latest`` file beside it names this tag or
  a later step (DeepSpeed writes ``latest`` once every rank has saved).
- ``step_N/`` and ``checkpoint_N/`` (accelerate ``save_state``; in
  ``checkpoint_N`` N counts saves, not steps): ``random_states_0.pkl`` is there
  when the folder holds an optimizer state (``save_state`` writes the RNG states
  last); a folder of weights alone needs one weights file
  (``*.safetensors``, ``*.bin``, ``*.pt``, ``*.pth``).
- Every layout: a temporary name (``tmp-checkpoint-N``, ``*.tmp``, ``*.part``,
  ``*.partial``, ``*.incomplete``) is never complete; nor is one with a file
  modified after the job's end (``until``: still being written, or another
  run's); with ``settle_s`` > 0 (reading a job that may still run) its files'
  sizes must not change over that pause.

The modules: ``hf`` (trainer_state.json), ``lightning`` (metrics.csv, event files),
``series`` (a loss series as read), ``disk`` (checkpoints and the rules above),
``walk`` (the bounded walk), ``read`` (read_records into Records), ``merge`` (into the
Snapshot, and the sources text).
"""

from __future__ import annotations

from hpcwrap.reading.records.disk import EVIDENCE, FoundCheckpoint, Skipped
from hpcwrap.reading.records.lightning import tensorboard_available
from hpcwrap.reading.records.merge import CONSOLE, Merged, merge, sources_text, with_records
from hpcwrap.reading.records.read import Records, read_records, where
from hpcwrap.reading.records.series import LossSeries

__all__ = [
    "CONSOLE",
    "EVIDENCE",
    "FoundCheckpoint",
    "LossSeries",
    "Merged",
    "Records",
    "Skipped",
    "merge",
    "read_records",
    "sources_text",
    "tensorboard_available",
    "where",
    "with_records",
]
