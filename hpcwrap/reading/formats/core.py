"""Reading progress out of one line of training output.

``LineParser.parse`` takes one decoded line (ANSI colours already stripped,
split on ``\\n`` and ``\\r`` so every tqdm redraw is its own line) and returns
an ``Observation`` of what the line says, or None. Formats understood out of
the box, each checked against what the real tool prints:

- HF Trainer: ``{'loss': 0.51, 'learning_rate': 4.5e-05, 'epoch': 0.1}`` (older
  releases) or ``{'loss': '0.5123', ...}`` (newer ones format floats as text),
  also glued behind a tqdm bar; the step comes from the bar's ``n/total``. Its
  summary of averages (``{'train_runtime': ..., 'train_loss': ...}``, the examples'
  ``  train_loss = 3.28`` table row, or what is left of the dict where a bar redraw
  cut it) gives no train loss.
- tqdm / Lightning bars: ``Epoch 3:  45%|####5     | 45/100 [00:01<00:02,
  25.00it/s, v_num=0, train_loss=0.123]``; validation/eval bars are ignored for
  the step.
- ``key: value`` / ``key=value`` / ``key value`` lines: nanoGPT (``iter 10: loss
  3.45``, ``step 250: train loss 1.87, val loss 1.98``), lerobot (``step:10K
  smpl:320K ... loss:0.543 ... lr:1.0e-04``), openpi (``Step 100: loss=0.12``),
  torchtitan (``step:  1  loss: 12.23 ...``, ``validate step: 100  loss: ...``).
- Megatron ``|``-separated lines (``iteration 100/ 500000 | ... | lm loss:
  6.54E+00 |`` and ``validation loss at iteration 1000 | lm loss value: ...``).
- JSON lines (``{"step": 100, "loss": 0.5, "lr": 3e-4}``).

Framework entries (frameworks.py) are tried first: a line one of them read is not
read again by the generic metric readers above.

A data-preparation bar (``Map:``, ``Tokenizing train dataset``, ``Running
tokenizer``, a bar counting ``examples/s``) never sets the step: only a bar that
carries a loss or is the training loop's does.

Events: checkpoints (completed, or started: a start is not a checkpoint until it
completes, see progress.py), the W&B run
directory or URL, a resolved-config path the run announces, and errors (CUDA
out of memory, NCCL timeouts and errors, Python tracebacks with their final
exception line, slurmstepd/srun time-limit, oom-kill and memory-limit lines).

User patterns (``[[patterns]]`` in hpcwrap.toml) are regexes whose named groups
(step, loss, val_loss, lr, epoch, checkpoint, wandb_dir, error) are fields;
what they capture wins over the built-in reading of the same line.

The line's text (stripping, numbers, keywords) is in text.py, ``Observation`` in
observation.py, the generic readers' patterns in generic.py, checkpoint/W&B/config
patterns in events.py, error and traceback detection in errors.py.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Sequence

from hpcwrap.config import Pattern
from hpcwrap.reading.formats.entry import STEP_EPOCH_INDEX, STEP_INDEX, Entry
from hpcwrap.reading.formats.errors import (
    _ERROR_HINTS,
    _ERRORS,
    _EXC_LINE,
    _EXC_SUFFIX,
    _NOT_EXC,
    _TB_CHAIN,
    _TB_MAX_LINES,
    _TRACEBACK,
    _short,
    _Traceback,
)
from hpcwrap.reading.formats.events import (
    _CKPT_NO_PATH,
    _CKPT_PATTERNS,
    _CKPT_STEP,
    _CONFIG_WRITTEN,
    _RESUMED_FROM,
    _STEP_IN_PATH,
    _WANDB_LOCAL,
    _WANDB_OFFLINE_DIR,
    _WANDB_URL,
    _clean_path,
)
from hpcwrap.reading.formats.frameworks import ENTRIES
from hpcwrap.reading.formats.generic import (
    _COUNTERS,
    _DATA_BAR,
    _DATA_UNITS,
    _EPOCH_BAR,
    _EVAL_BAR,
    _EVAL_BEFORE,
    _KEY_FIELDS,
    _KV,
    _KV_LOWER,
    _MEGATRON_FIELD,
    _MEGATRON_TRAIN,
    _MEGATRON_VAL,
    _SEPARATOR_BEFORE,
    _SUMMARY_KEYS,
    _TORCHTITAN_VAL,
    _TQDM,
    _TRAIN_BAR,
    _dict_tail,
    _plain_metrics,
    _summary,
    _tqdm_count,
)
from hpcwrap.reading.formats.observation import _LOSSES, ERROR_TEXT_MAX, Observation
from hpcwrap.reading.formats.text import (
    ANSI,
    KEYWORDS,
    NOT_METRIC_PREFIXES,
    _as_step,
    parse_number,
    printed,
    strip_line,
)

# The generic readers, by the names scan reports them under.
_GENERIC = {
    "tqdm": "tqdm-bar",
    "kv": "text-fields",
    "json": "json-lines",
    "megatron": "megatron",
    "error": "errors",
    "traceback": "errors",
    "wandb": "wandb",
    "checkpoint": "generic-checkpoint",
    "resumed": "resumed-from",
}


class LineParser:
    """Stateful (tracebacks, which tqdm bar is the training bar) line reader."""

    def __init__(
        self, patterns: Sequence[Pattern] = (), entries: Sequence[Entry] = ENTRIES
    ) -> None:
        self.patterns = tuple(patterns)
        self.entries = tuple(entries)
        self.matched: dict[str, int] = {}  # lines each framework entry read
        self._roots: dict[str, str] = {}  # entry -> the checkpoint folder it announced
        self._per_epoch: dict[str, int] = {}  # entry -> updates per epoch (timm)
        self._listing: Entry | None = None  # in a list of checkpoints (timm)
        # One search for every entry's hint words (cheaper than a test per entry).
        hints = sorted({h for e in self.entries for h in e.hints}, key=len, reverse=True)
        self._hints = re.compile("|".join(re.escape(h) for h in hints) or "(?!)")
        # a match of "saving model checkpoint" also means "checkpoint" is there
        self._implied = {h: {o for o in hints if o in h} for h in hints}
        self._main_total: float = 0.0  # the largest total of a desc-less tqdm bar seen
        self._tracebacks: dict[int, _Traceback] = {}

    def in_traceback(self, stream: int) -> bool:
        """True while a traceback is open on ``stream``: every line matters then."""
        return stream in self._tracebacks

    def parse(self, raw: str, stream: int = 2) -> Observation | None:
        text = strip_line(raw)
        if not text.strip():
            return None
        obs = Observation()
        if self._traceback(text, stream, obs):
            return obs if not obs.empty() else None
        for pattern in self.patterns:
            self._user(pattern, text, obs)
        lower = text.lower()
        if obs.error is None:
            self._errors(text, lower, obs)
        if obs.error is None and lower.lstrip().startswith(NOT_METRIC_PREFIXES):
            self._events(text, lower, obs)
        elif obs.error is None:
            read = False if _plain_metrics(text, lower) else self._frameworks(text, lower, obs)
            self._events(text, lower, obs)
            if not read:
                self._metrics(text, lower, obs)
        fmt = obs.format
        if fmt is None and obs.sources:
            fmt = obs.format = _GENERIC.get(obs.sources[0])  # the reader that read it first
        if fmt is not None:
            matched = self.matched
            matched[fmt] = matched.get(fmt, 0) + 1
        return None if obs.empty() else obs

    # -- framework entries (frameworks.py) ---------------------------------------

    def _frameworks(self, text: str, lower: str, obs: Observation) -> bool:
        """Apply the entries whose hints the line has; True when one read its metrics."""
        listing = self._listing
        if listing is not None:
            item = listing.listing_item.match(text) if listing.listing_item else None
            if item is not None:
                self._save(listing, "saved", item.groupdict(), obs)
                return True
            self._listing = None
        hinted = self._hints.findall(lower)
        if not hinted:
            return False
        words: set[str] = set()
        for h in hinted:
            words |= self._implied[h]
        read = False
        for e in self.entries:
            if words.isdisjoint(e.hints):
                continue
            if e.root is not None and (r := e.root.search(text)) is not None:
                self._roots[e.name] = _clean_path(r.group("root"))
                obs.format = e.name
            if e.listing is not None and e.listing.search(text):
                self._listing = e
                obs.format = e.name
                continue
            if not (obs.checkpoint_saved or obs.checkpoint_started or obs.checkpoint_part):
                self._entry_saves(e, text, obs)
            if e.went_on is not None and e.went_on.search(text):
                obs.went_on = True
                obs.format = obs.format or e.name
            if not read and self._entry_metrics(e, text, obs):
                read = True
                obs.format = e.name
        return read

    def _entry_saves(self, e: Entry, text: str, obs: Observation) -> None:
        kinds = (("saved", e.saved), ("started", e.started), ("weights", e.weights))
        for kind, patterns in (*kinds, ("part", e.parts)):
            for rx in patterns:
                m = rx.search(text)
                if m is not None:
                    self._save(e, kind, m.groupdict(), obs)
                    return

    def _save(self, e: Entry, kind: str, g: dict[str, str | None], obs: Observation) -> None:
        path = _clean_path(g.get("path") or "") or None
        file = _clean_path(g.get("file") or "") or None
        weights = kind == "weights"
        if weights:
            kind = "part"  # a part of a save under way; on its own, progress.py counts its folder
            if file is not None:
                # the step its folder names (accelerate's out/step_300), if any
                in_folder = list(_STEP_IN_PATH.finditer(posixpath.dirname(file)))
                if in_folder:
                    last = in_folder[-1]
                    g = {**g, "step": last.group("step") or last.group("bare")}
        if file is not None:
            # a file inside the checkpoint: the checkpoint is its folder (a part stays a file)
            path = file if kind == "part" else (posixpath.dirname(file) or ".")
        step = int(g.get("step") or 0) if g.get("step") else None
        if step is None and e.path_step is not None:
            named = file or path
            found = e.path_step.search(named) if named else None
            if found is not None:
                step = int(found.group("step"))
                if e.path_step_is_epoch:
                    # checkpoint-<epoch>: saved after that epoch's updates
                    per_epoch = self._per_epoch.get(e.name)
                    step = (step + 1) * per_epoch if per_epoch else None
        if step is None and e.path_step is None and (file or path) and kind != "part":
            in_path = list(_STEP_IN_PATH.finditer(path or ""))
            if in_path:
                step = int(in_path[-1].group("step") or in_path[-1].group("bare"))
        if path is None and e.layout and e.name in self._roots:
            root = self._roots[e.name].replace("{", "{{").replace("}", "}}")
            obs.checkpoint_layout = e.layout.replace("{root}", root)
        obs.checkpoint = path
        obs.checkpoint_step = step
        obs.checkpoint_tag = g.get("tag")
        obs.checkpoint_saved = kind == "saved"
        obs.checkpoint_started = kind == "started"
        obs.checkpoint_part = kind == "part"
        obs.checkpoint_weights = weights
        obs.checkpoint_on_progress = e.completes_on_progress
        # a file line ("Model weights saved in") is printed by many frameworks alike
        obs.format = e.name if kind != "part" else "save-file"
        obs.sources.append("checkpoint")

    def _entry_metrics(self, e: Entry, text: str, obs: Observation) -> bool:
        if e.ignore is not None and e.ignore.search(text):
            return True  # not progress (a test set's loss)
        m = e.val.search(text) if e.val is not None else None
        if m is not None:
            g = m.groupdict()
            if g.get("last") is not None and g.get("index") != g.get("last"):
                return True  # a running average over part of the val set
            self._set(obs, "val_loss", parse_number(g["val_loss"] or ""), text=g["val_loss"])
            if g.get("step"):
                self._set(obs, "step", float(g["step"] or 0), force=True)
            self._fields(e, text, obs, skip_loss=True)
            obs.sources.append(e.name)
            return True
        m = e.average.search(text) if e.average is not None else None
        if m is not None:
            # an average over many steps: its step counts, its loss is not a step's
            if m.groupdict().get("step"):
                self._set(obs, "step", float(m.group("step")), force=True)
            self._fields(e, text, obs, skip_loss=True)
            obs.sources.append(e.name)
            return True
        m = e.train.search(text) if e.train is not None else None
        if m is None:
            return False
        g = m.groupdict()
        if e.step == STEP_EPOCH_INDEX:
            epoch, index, total = int(g["epoch"] or 0), int(g["index"] or 0), int(g["total"] or 0)
            self._per_epoch[e.name] = total
            self._set(obs, "step", float(epoch * total + index + 1), force=True)
            self._set(obs, "epoch", float(epoch), force=True)
        else:
            if g.get("step"):
                done = int(g["step"] or 0) + (1 if e.step == STEP_INDEX else 0)
                self._set(obs, "step", float(done), force=True)
            if g.get("total"):
                obs.step_total = int(g["total"] or 0)
            if g.get("epoch"):
                self._set(obs, "epoch", parse_number(g["epoch"] or ""), force=True)
        if g.get("loss"):
            self._set(obs, "loss", parse_number(g["loss"] or ""), force=True, text=g["loss"])
        if g.get("lr"):
            self._set(obs, "lr", parse_number(g["lr"] or ""), force=True)
        self._fields(e, text, obs)
        # the entry's train line: its loss is the framework's train-loss series
        if obs.loss is not None:
            obs.series = True
        obs.sources.append(e.name)
        return True

    def _fields(self, e: Entry, text: str, obs: Observation, *, skip_loss: bool = False) -> None:
        for name, rx in e.fields:
            if skip_loss and name == "loss":
                continue
            f = rx.search(text)
            if f is not None:
                value = f.group("v")
                self._set(obs, name, parse_number(value), force=True, text=value)

    # -- tracebacks -------------------------------------------------------------

    def _traceback(self, text: str, stream: int, obs: Observation) -> bool:
        """Follow an open traceback; True when the line belonged to it."""
        if "Traceback (" in text and _TRACEBACK.search(text):
            self._tracebacks[stream] = _Traceback()
            return True
        tb = self._tracebacks.get(stream)
        if tb is None:
            return False
        tb.lines += 1
        if tb.lines > _TB_MAX_LINES:
            del self._tracebacks[stream]
            obs.error = "Python traceback (its exception line was not found)"
            obs.error_kind = "traceback"
            obs.sources.append("traceback")
            return True
        if text[:1] in (" ", "\t") or _TB_CHAIN.match(text) or text.startswith("^"):
            return True
        m = _EXC_LINE.match(text)
        if (
            m is None
            or m.group("name") in _NOT_EXC
            or (m.group("colon") is None and not _EXC_SUFFIX.search(m.group("name")))
        ):
            # Some other line (another rank, a log line): not the exception line.
            return False
        del self._tracebacks[stream]
        obs.error = _short(text)
        obs.error_kind = "exception"
        for kind, rx in _ERRORS:
            if rx.search(text):
                obs.error_kind = kind
                break
        obs.sources.append("traceback")
        return True

    # -- user patterns ----------------------------------------------------------

    def _user(self, pattern: Pattern, text: str, obs: Observation) -> None:
        m = pattern.regex.search(text)
        if m is None:
            return
        got = {k: v for k, v in m.groupdict().items() if v is not None}
        if not got:
            return
        obs.sources.append(f"user:{pattern.name}")
        for key, value in got.items():
            if key == "step":
                step = _as_step(parse_number(value))
                if step is not None:
                    obs.step = step
            elif key in ("loss", "val_loss", "lr", "epoch"):
                number = parse_number(value)
                if number is not None:
                    setattr(obs, key, number)
                    if key in _LOSSES:
                        setattr(obs, key + "_text", printed(value))
                    if key == "loss":
                        obs.series = True  # the person named this line's loss
            elif key == "checkpoint":
                obs.checkpoint = _clean_path(value)
                obs.checkpoint_saved = True
            elif key == "wandb_dir":
                obs.wandb_dir = _clean_path(value)
            elif key == "error":
                obs.error = _short(value) or _short(text)
                obs.error_kind = f"user:{pattern.name}"

    # -- errors and events ------------------------------------------------------

    def _errors(self, text: str, lower: str, obs: Observation) -> None:
        if not any(hint in lower for hint in _ERROR_HINTS):
            return
        for kind, rx in _ERRORS:
            if rx.search(text):
                obs.error = _short(text)
                obs.error_kind = kind
                obs.sources.append("error")
                return

    def _events(self, text: str, lower: str, obs: Observation) -> None:
        if "wandb" in lower:
            m = _WANDB_LOCAL.search(text) or _WANDB_OFFLINE_DIR.search(text)
            if m and obs.wandb_dir is None:
                obs.wandb_dir = _clean_path(m.group("path"))
            u = _WANDB_URL.search(text)
            if u:
                obs.wandb_url = _clean_path(u.group("url"))
            if m or u:
                obs.sources.append("wandb")
        if "resolved" in lower and obs.config_path is None:
            c = _CONFIG_WRITTEN.search(text)
            if c:
                obs.config_path = _clean_path(c.group("path") or c.group("path2"))
                obs.sources.append("config")
        if ("restoring states" in lower or "resuming training" in lower) and (
            r := _RESUMED_FROM.search(text)
        ):
            obs.resumed_from = _clean_path(r.group("path") or r.group("path2"))
            obs.sources.append("resumed")
            return  # the checkpoint it loads is not a save
        if "checkp" in lower or "ckpt" in lower or "saving model" in lower:
            self._checkpoint(text, lower, obs)

    def _checkpoint(self, text: str, lower: str, obs: Observation) -> None:
        if obs.checkpoint_saved or obs.checkpoint_started or obs.checkpoint_part:
            return  # a user pattern or a framework entry already said
        # "Loading/Resuming from checkpoint X" is not a save.
        if not any(w in lower for w in ("sav", "written", "wrote", "stored", "policy after")):
            return
        if any(w in lower for w in ("load", "resum", "restor")):
            return
        path: str | None = None
        step: int | None = None
        started = False
        for rx in _CKPT_PATTERNS:
            m = rx.search(text)
            if m:
                # "Saving ... to X" is the start of a save (a synchronous one, for an
                # unknown framework: complete once training goes on); "saved" is done.
                started = m.group(0).lower().startswith(("saving", "writing"))
                path = _clean_path(m.group("path"))
                if "step" in m.groupdict() and m.group("step"):
                    step = int(m.group("step"))
                break
        if path is None:
            n = _CKPT_NO_PATH.search(text)
            if n is None:
                return
            started = n.group(0).lower().startswith("saving")
        if step is None:
            s = _CKPT_STEP.search(text)
            if s:
                step = int(s.group("step"))
        if step is None and path is not None:
            found = list(_STEP_IN_PATH.finditer(path))
            if found:
                step = int(found[-1].group("step") or found[-1].group("bare"))
        obs.checkpoint = path
        obs.checkpoint_step = step
        obs.checkpoint_saved = not started
        obs.checkpoint_started = obs.checkpoint_on_progress = started
        obs.sources.append("checkpoint")

    # -- metrics ----------------------------------------------------------------

    def _metrics(self, text: str, lower: str, obs: Observation) -> None:
        if "|" in text:
            if self._tqdm(text, obs):
                pass
            elif self._megatron(text, obs):
                return
        if text.lstrip().startswith("{") and self._json(text, obs):
            return
        self._kv(text, lower, obs)

    def _set(
        self,
        obs: Observation,
        name: str,
        value: float | None,
        *,
        force: bool = False,
        text: str | None = None,
    ) -> None:
        if value is None:
            return
        if name == "step":
            step = _as_step(value)
            if step is not None and (force or obs.step is None):
                obs.step = step
            return
        if force or getattr(obs, name) is None:
            setattr(obs, name, value)
            if name in _LOSSES:
                setattr(obs, name + "_text", printed(text) if text is not None else None)

    def _tqdm(self, text: str, obs: Observation) -> bool:
        m = _TQDM.search(text)
        if m is None:
            return False
        n = _tqdm_count(m.group("n"))
        total = _tqdm_count(m.group("total"))
        desc = (m.group("desc") or "").strip()
        obs.sources.append("tqdm")
        if n is None or total is None or total <= 0:
            return True
        if desc and _EVAL_BAR.search(desc):
            return True  # an eval/validation bar: its n is not the training step
        e = _EPOCH_BAR.match(desc) if desc else None
        inside = m.group("inside") or ""
        common = not desc and "it/s" in inside  # HF's bar: desc-less, in it/s
        if e is None and not common and not self._training_bar(desc, inside):
            return True  # data preparation (Map, Tokenizing ...): not the training's step
        if e is not None:
            # Lightning: one bar per epoch counting batches within it.
            epoch = int(e.group("epoch"))
            self._set(obs, "epoch", float(epoch))
            self._set(obs, "step", epoch * total + n)
            obs.step_total = None
            return True
        if total >= self._main_total:
            self._main_total = total
            self._set(obs, "step", n)
            obs.step_total = int(total)
        return True

    @staticmethod
    def _training_bar(desc: str, inside: str) -> bool:
        """A bar that belongs to training: it carries a loss, or it is the training loop's
        (no description, or one that says train/step/iter; never a data unit)."""
        if "loss" in inside:
            return True
        if "/s" in inside and _DATA_UNITS.search(inside):
            return False
        if not desc:
            return True
        return not _DATA_BAR.search(desc) and bool(_TRAIN_BAR.search(desc))

    def _megatron(self, text: str, obs: Observation) -> bool:
        v = _MEGATRON_VAL.search(text)
        t = None if v else _MEGATRON_TRAIN.search(text)
        if v is None and t is None:
            return False
        obs.sources.append("megatron")
        fields_: dict[str, float] = {}
        texts: dict[str, str] = {}
        for f in _MEGATRON_FIELD.finditer(text + "|"):
            number = parse_number(f.group("val"))
            if number is not None:
                fields_[f.group("key").strip().lower()] = number
                texts[f.group("key").strip().lower()] = printed(f.group("val"))
        if v is not None:
            self._set(obs, "step", float(v.group("n")), force=True)
            vals = [k for k in fields_ if k.endswith(" value")]
            key = "lm loss value" if "lm loss value" in fields_ else (vals[0] if vals else None)
            if key is not None:
                obs.val_loss, obs.val_loss_text = fields_[key], texts[key]
            return True
        assert t is not None
        self._set(obs, "step", float(t.group("n")), force=True)
        obs.step_total = int(t.group("total"))
        losses = [k for k in fields_ if k.endswith("loss") and k != "loss scale"]
        key = "lm loss" if "lm loss" in fields_ else (losses[0] if losses else None)
        if key is not None:
            obs.loss, obs.loss_text = fields_[key], texts[key]
        if "learning rate" in fields_:
            obs.lr = fields_["learning rate"]
        return True

    def _json(self, text: str, obs: Observation) -> bool:
        start = text.find("{")
        try:
            data = json.loads(text[start:], parse_float=str)  # floats kept as printed
        except ValueError:
            return False  # a Python dict repr (HF): the key/value reader handles it
        if not isinstance(data, dict):
            return False
        obs.sources.append("json")
        summary = any(k in data for k in _SUMMARY_KEYS)
        for key, value in data.items():
            name = _KEY_FIELDS.get(str(key).lower())
            if name is None or (summary and name == "loss"):
                continue
            number = parse_number(value) if isinstance(value, str) else value
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                continue
            self._set(obs, name, float(number), text=str(value))
        return True

    @staticmethod
    def _eval_context(text: str, end: int) -> str | None:
        """ "val" or "test" when the last eval/test word before ``end`` says so."""
        last = None
        for w in _EVAL_BEFORE.finditer(text, 0, end):
            last = w
        if last is None:
            return None
        return "val" if last.group("val") else "test"

    def _kv(self, text: str, lower: str, obs: Observation) -> None:
        summary = _summary(lower) or _dict_tail(text)
        validate = "validate step" in lower and bool(_TORCHTITAN_VAL.search(text))
        found = False
        ascii_ = text.isascii()
        matches = list(_KV_LOWER.finditer(lower) if ascii_ else _KV.finditer(text))
        for m in matches:
            key = m.group("key").lower()
            if " " in key or "\t" in key:
                key = " ".join(key.split())
            name = _KEY_FIELDS.get(key)
            if name is None:
                continue
            if (
                name in _COUNTERS
                and len(matches) == 1
                and not m.group("sep").strip()
                and not _SEPARATOR_BEFORE.search(text, 0, m.start())
            ):
                continue  # "retrying step 3": prose, not a progress line
            value = text[m.start("val") : m.end("val")]
            if name == "loss" and (summary or validate):
                if validate:
                    self._set(obs, "val_loss", parse_number(value), text=value)
                continue
            if key == "loss" and (ctx := self._eval_context(text, m.start())) is not None:
                if ctx == "val":
                    self._set(obs, "val_loss", parse_number(value), text=value)
                    found = True
                continue
            number = parse_number(value)
            if number is None:
                continue
            self._set(obs, name, number, text=value)
            if name == "step" and m.group("total") and obs.step_total is None:
                obs.step_total = int(m.group("total"))
            found = True
        if found or validate:
            obs.sources.append("kv")


__all__ = [
    "ANSI",
    "ERROR_TEXT_MAX",
    "KEYWORDS",
    "LineParser",
    "Observation",
    "parse_number",
    "strip_line",
]
