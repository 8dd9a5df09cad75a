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
- ``Bearer``/``Basic`` authorization values, and ``wandb login <key>``.

``find_sensitive`` gives the same findings by kind (plus emails, a "personal"
kind that run logs keep and a public export removes): ``hpcwrap export`` and
``--check`` use it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
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
    r"tokens?[_-]per[_-]\w+|n[_-]?tokens|passes|num[_-]?passes|keys?|"
    r"(?:[\w-]*[_-])?passports?(?:\.json)?)$",
    re.IGNORECASE,
)
# The one list of key formats caught whatever they are called: (kind, pattern).
KEY_FORMATS: tuple[tuple[str, str], ...] = (
    ("Hugging Face token", r"hf_[A-Za-z0-9]{8,}"),
    ("GitHub token", r"gh[pousr]_[A-Za-z0-9]{16,}|github_pat_\w{16,}"),
    ("AWS access key id", r"(?:AKIA|ASIA)[0-9A-Z]{16}"),
    ("API key or token", r"sk-[A-Za-z0-9_-]{16,}"),
    ("Slack token", r"xox[abpors]-[A-Za-z0-9-]{8,}"),
    ("GitLab token", r"glpat-[A-Za-z0-9_-]{20,}"),
    ("Google API key", r"AIza[0-9A-Za-z_-]{35}"),
)
SECRET_VALUE = re.compile(r"\b(?:" + "|".join(p for _, p in KEY_FORMATS) + r")\b")
_KEY_FORMATS = tuple((kind, re.compile(rf"\b(?:{p})\b")) for kind, p in KEY_FORMATS)
# ``wandb login <key>``: the key follows the command, unnamed.
_WANDB_LOGIN = re.compile(r"(\bwandb\s+login\s+(?:--?[\w-]+\s+)*)([A-Za-z0-9_-]{40,})")
# Emails are personal, not secret: run logs keep them, a public export does not.
EMAIL = re.compile(
    r"(?<![\w.+%-])(?!git@)[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
    r"\.[A-Za-z]{2,}(?![\w-])"
)
# A PEM private key, whole (its header alone where the body is not in the same text).
_PEM = re.compile(
    r"-----BEGIN (?P<kind>[A-Z ]*PRIVATE KEY)-----(?:.*?-----END (?P=kind)-----|[^\n]*)", re.S
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
# A quoted value is hidden whole, spaces and all: 'correct horse battery staple'.
_QUOTED = re.compile(r"""(['"])([^'"\n]*)\1""")
# "pwd=..." is a password; the shell's PWD and OLDPWD are folders.
_PWD = re.compile(r"(?:^|[_-])pwd$", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """True when ``name`` (an option, variable or key) says its value is a secret."""
    bare = name.strip().lstrip("-")
    if _PWD.search(bare) and bare not in ("PWD", "OLDPWD"):
        return True
    return bool(SECRET_NAME.search(bare)) and not _NOT_SECRET.match(bare)


def _named_values(text: str) -> list[tuple[str, int, int]]:
    """(name, start, end) of each value a secret-looking name gives in free text:
    ``NAME=value``, ``NAME: 'a quoted value'`` (whole), ``--name value`` and, for a
    compound name (``aws_secret_access_key value``), a value after a space; a single
    word before a space ("token 5") is prose, not an assignment."""
    out: list[tuple[str, int, int]] = []
    for m in _NAMED.finditer(text):
        name, sep = m.group("name"), m.group("sep")
        if not sep.strip() and not name.startswith("-") and not re.search(r"\w[_-]\w", name):
            continue
        if not is_secret_name(name):
            continue
        start, end = m.start("value"), m.end("value")
        if m.group("q"):
            quoted = _QUOTED.match(text, m.start("q"))
            if quoted:
                start, end = quoted.start(2), quoted.end(2)
        out.append((name, start, end))
    return out


def redact_value(text: str) -> str:
    """Known key formats and URL credentials in ``text`` replaced by ``***``."""
    text = SECRET_VALUE.sub(REDACTED, text)
    text = _PEM.sub(f"-----BEGIN \\g<kind>----- {REDACTED}", text)
    text = _WANDB_LOGIN.sub(rf"\g<1>{REDACTED}", text)
    text = _BEARER.sub(rf"\g<1> {REDACTED}", text)
    return _URL_CREDENTIALS.sub(rf"\g<1>{REDACTED}\g<2>", text)


def redact_text(text: str) -> str:
    """Free text (an error line, a Status entry, a message): every kind of secret hidden."""
    if not text:
        return text
    text = redact_value(text)
    spans = [(s, e) for _, s, e in _named_values(text) if text[s:e] != REDACTED]
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


def scrub_state(obj: Any, skip: frozenset[str] = frozenset()) -> None:
    """Redact, in place, every string field of a run state (dataclasses, lists, dicts);
    ``skip``: names of ``obj``'s own fields left as they are."""
    if not is_dataclass(obj) or isinstance(obj, type):
        return
    for f in fields(obj):
        if f.name in skip:
            continue
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


# ---------------------------------------------------------------- findings by kind (export)

PERSONAL_KINDS = frozenset({"email"})
# What a value may read that hides nothing: already redacted, a placeholder, empty words.
_HIDES_NOTHING = re.compile(
    r"^(?:\*+|<[^<>\s]*(?:\s[^<>\s]+)*>|n/?a|none|null|unset|-|\.\.\.)$", re.I
)


@dataclass(frozen=True)
class Finding:
    """One secret-adjacent value in a text: its kind (``"W&B API key"``) and span."""

    kind: str
    start: int
    end: int

    @property
    def personal(self) -> bool:
        return self.kind in PERSONAL_KINDS


def secret_kind(name: str) -> str:
    """The kind of secret a name (``WANDB_API_KEY``, ``--db-pass``) says its value is."""
    bare = name.strip().lstrip("-").lower()
    if "wandb" in bare:
        return "W&B API key"
    if bare.startswith(("hf_", "hf-", "hugging")) or "hf_token" in bare:
        return "Hugging Face token"
    if "aws" in bare:
        return "AWS secret" if "id" not in bare.split("_")[-1:] else "AWS access key id"
    if "pass" in bare:
        return "password"
    return "API key or token"


def find_sensitive(text: str, *, personal: bool = True) -> list[Finding]:
    """Every secret (and, with ``personal``, every email) in ``text``, by kind, in order.

    The same patterns as ``redact_text``; spans never overlap (the first rule that
    claims a character keeps it: key formats, then ``wandb login``, URL
    credentials, bearer values, named values, emails).
    """
    found: list[Finding] = []

    def claim(kind: str, start: int, end: int) -> None:
        if start >= end or _HIDES_NOTHING.match(text[start:end]):
            return
        if any(f.start < end and start < f.end for f in found):
            return
        found.append(Finding(kind, start, end))

    for kind, rx in _KEY_FORMATS:
        for m in rx.finditer(text):
            claim(kind, m.start(), m.end())
    for m in _WANDB_LOGIN.finditer(text):
        claim("W&B API key", m.start(2), m.end(2))
    for m in _URL_CREDENTIALS.finditer(text):
        claim("password in a URL", m.end(1), m.start(2))
    for m in _BEARER.finditer(text):
        claim("bearer token", m.end(1) + 1, m.end())
    for m in _PEM.finditer(text):
        claim("private key", m.start(), m.end())
    for name, start, end in _named_values(text):
        if text[start:end] not in ("Bearer", "Basic"):
            claim(secret_kind(name), start, end)
    if personal:
        for m in EMAIL.finditer(text):
            claim("email", m.start(), m.end())
    return sorted(found, key=lambda f: f.start)


def describe_command(script: str, args: Sequence[str] = ()) -> str:
    """The Config ``script`` line: ``\\`slurm/train.sh\\` --lr 3e-4 'two words'``.

    One line whatever the arguments hold; secret-looking values redacted.
    """
    head = f"`{script}`" if "`" not in script and "\n" not in script else quote_word(script)
    words = [quote_word(w) for w in redact_argv(list(args))]
    return " ".join([head, *words])


__all__ = [
    "EMAIL",
    "KEY_FORMATS",
    "PERSONAL_KINDS",
    "REDACTED",
    "Finding",
    "describe_command",
    "find_sensitive",
    "is_secret_name",
    "quote_word",
    "redact_argv",
    "redact_command_text",
    "redact_settings",
    "redact_text",
    "redact_value",
    "scrub",
    "scrub_state",
    "secret_kind",
]
