"""Secrets out of everything hpcwrap writes: one list of patterns, used everywhere.

Every text that reaches a run log, state.json, events.jsonl or an error
message passes through here: the run-log core scrubs each update's state and
event data (``scrub``, ``scrub_state``), the CLI its error messages, and the
argument and setting writers their values. What a command *runs* is never
changed (job.sh keeps the real values and is then 0600).

Caught:

- a value named as a secret: ``NAME=value``, ``NAME: value``, ``--name value``,
  ``--name=value`` and ``--export=A=1,NAME=value`` lists, where the name contains
  pass, passwd, password, secret, token, key, credential or auth
  (``WANDB_API_KEY``, ``--db-pass``, ``hf_token``, ``aws_secret_access_key``);
- values in a known key format whatever they are called: Hugging Face
  (``hf_`` + 8 or more), GitHub (``ghp_``..., ``github_pat_``), AWS access key
  ids (``AKIA``...), OpenAI-style ``sk-`` keys, Slack ``xox.-`` tokens;
- credentials inside URLs: ``https://alice:secret@host/`` -> ``https://alice:***@host/``;
- ``Bearer``/``Basic`` authorization values.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass
from typing import Any

REDACTED = "***"

# Parts of a name that mark its value as a secret.
SECRET_NAME = re.compile(
    r"(pass|secret|token|key|credential|authorization|(?:^|[_-])auth(?:$|[_-]))", re.IGNORECASE
)
# Names that contain such a part but hold no secret (``sort_key``-like config is rare;
# these are the ones hpcwrap itself and common trainers print).
_NOT_SECRET = re.compile(
    r"^(?:-*)(?:key[_-]?settings?|tokenizer(?:[_-]\w+)?|max[_-]?tokens|num[_-]?tokens|"
    r"tokens?[_-]per[_-]\w+|n[_-]?tokens|passes|num[_-]?passes|keys?)$",
    re.IGNORECASE,
)
SECRET_VALUE = re.compile(
    r"\b(?:hf_[A-Za-z0-9]{8,}|gh[pousr]_[A-Za-z0-9]{16,}|github_pat_\w{16,}|"
    r"AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{16,}|xox[abpors]-[A-Za-z0-9-]{8,})\b"
)
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/-]+=*")
# scheme://user:password@host -> keep the user, hide the password
_URL_CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:)[^/\s@]+(@)")
# NAME=value or NAME: value inside free text (error lines, tracebacks, settings)
# NAME=value or NAME: value inside free text (error lines, tracebacks, settings); the
# value is looked ahead, not consumed, so ``Error: TOKEN=x`` still finds ``TOKEN``.
_NAMED = re.compile(
    r"(?P<name>-{0,2}[A-Za-z_][\w.-]*)(?P<nq>['\"]?)(?P<sep>\s*[=:]\s*|\s+)"
    r"(?=(?P<q>['\"]?)(?P<value>[^\s'\",;&|)}\]]+))"
)


def is_secret_name(name: str) -> bool:
    """True when ``name`` (an option, variable or key) says its value is a secret."""
    bare = name.strip().lstrip("-")
    return bool(SECRET_NAME.search(bare)) and not _NOT_SECRET.match(bare)


def redact_value(text: str) -> str:
    """Known key formats and URL credentials in ``text`` replaced by ``***``."""
    text = SECRET_VALUE.sub(REDACTED, text)
    text = _BEARER.sub(rf"\g<1> {REDACTED}", text)
    return _URL_CREDENTIALS.sub(rf"\g<1>{REDACTED}\g<2>", text)


def redact_text(text: str) -> str:
    """Free text (an error line, a Status entry, a message): every kind of secret hidden."""
    if not text:
        return text
    text = redact_value(text)
    spans: list[tuple[int, int]] = []
    for m in _NAMED.finditer(text):
        name, sep = m.group("name"), m.group("sep")
        if not sep.strip() and not name.startswith("-"):
            continue  # "token 5" in prose is no assignment; "--token x" is
        if is_secret_name(name) and m.group("value") != REDACTED:
            spans.append((m.start("value"), m.end("value")))
    for start, end in reversed(spans):
        text = text[:start] + REDACTED + text[end:]
    return text


def _redact_pairs(text: str) -> str:
    """``A=1,WANDB_API_KEY=x`` -> ``A=1,WANDB_API_KEY=***`` (comma lists as in --export)."""
    out = []
    for part in text.split(","):
        name, eq, _ = part.partition("=")
        out.append(f"{name}={REDACTED}" if eq and is_secret_name(name) else part)
    return ",".join(out)


def redact_settings(settings: Mapping[str, str]) -> dict[str, str]:
    """``--set`` key settings with the values of secret-looking keys replaced by ``***``."""
    return {k: REDACTED if is_secret_name(k) else redact_value(v) for k, v in settings.items()}


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with secret values replaced by ``***`` (for the log only; what runs is unchanged).

    ``NAME=value``, ``--name=value``, ``--name value`` and comma lists
    (``--export=ALL,HF_TOKEN=...``) where the name says it is a secret, and values
    in a known key format or URLs with credentials whatever their name.
    """
    out: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if word.startswith("-") and "=" not in word:
            out.append(word)
            hide_next = is_secret_name(word)
            continue
        if "=" in word:
            head, _, value = word.partition("=")
            if is_secret_name(head):
                out.append(f"{head}={REDACTED}")
            elif "," in value or "=" in value:
                out.append(f"{head}={redact_value(_redact_pairs(value))}")
            else:
                out.append(redact_value(word))
            continue
        out.append(redact_value(word))
    return out


_PLAIN = re.compile(r"^[\w@%+=:,./-]+$")


def quote_word(word: str) -> str:
    """Shell-quote one word, on one line: ``$'...'`` for control characters."""
    if word and _PLAIN.match(word):
        return word
    if any(ord(c) < 32 or ord(c) == 127 for c in word):
        body = "".join(
            {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", "'": "\\'"}.get(c)
            or (f"\\x{ord(c):02x}" if ord(c) < 32 or ord(c) == 127 else c)
            for c in word
        )
        return f"$'{body}'"
    return shlex.quote(word)


def redact_command_text(text: str) -> str:
    """A command written as one string (``log new --script``), secrets redacted.

    Split as the shell would and redacted like ``redact_argv``; returned as
    written when nothing secret is in it, so a person's quoting is kept.
    """
    try:
        words = shlex.split(text)
    except ValueError:  # unbalanced quotes: redact what free-text rules catch
        return redact_text(text)
    hidden = redact_argv(words)
    if hidden == words:
        return text
    return " ".join(quote_word(w) if w != REDACTED else w for w in hidden)


def scrub(value: Any) -> Any:
    """``value`` (event data: dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def scrub_state(obj: Any) -> None:
    """Redact, in place, every string field of a run state (dataclasses, lists, dicts)."""
    if not is_dataclass(obj) or isinstance(obj, type):
        return
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, str):
            clean = redact_text(value)
            if clean != value:
                setattr(obj, f.name, clean)
        elif is_dataclass(value):
            scrub_state(value)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str):
                    value[i] = redact_text(item)
                else:
                    scrub_state(item)
        elif isinstance(value, dict):
            for k, item in list(value.items()):
                if isinstance(item, str):
                    value[k] = redact_text(item)
                elif is_dataclass(item):
                    scrub_state(item)
                elif isinstance(item, Mapping | list):
                    value[k] = scrub(item)


__all__ = [
    "REDACTED",
    "is_secret_name",
    "quote_word",
    "redact_argv",
    "redact_command_text",
    "redact_settings",
    "redact_text",
    "redact_value",
    "scrub",
    "scrub_state",
]
