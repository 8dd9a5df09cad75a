"""The run log as it is on disk: lines, sections and the items hpcwrap can find in them.

This is structure only, no meaning: headings (``## ...`` at column 0, outside
code fences and HTML comments), and in each section the bullet items
(``- ...`` at column 0, plus the indented continuation lines below it). Line
ends are kept as found (LF or CRLF) and so is a missing newline at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Defined in hpcwrap.errors with the other exceptions; importable from here as before.
from hpcwrap.errors import UnparseableError as UnparseableError
from hpcwrap.runlog import sections

_FENCE = re.compile(r"^(```|~~~)")
_LABEL = re.compile(r"^[-*+] +([^:\n]{1,60}?)\s*:(?: (.*)|\s*)$")


@dataclass
class Item:
    start: int  # index of the bullet line
    end: int  # one past the last continuation line
    text: str  # the item's lines joined with "\n"
    label: str | None  # text before the first colon, when the bullet reads "- label: ..."
    value: str  # after "label: ", continuation lines de-indented, joined with "\n"
    body: str  # the same for everything after the bullet marker


@dataclass
class DiskSection:
    sid: str | None  # None: a section hpcwrap does not own (kept as is)
    kind: str  # "title", "mode", "job", ... ("" for unknown)
    heading: int  # line index of the "## " heading; -1 for the part before the first
    end: int  # one past the section's last line
    items: list[Item] = field(default_factory=list)

    def content_end(self, lines: list[str]) -> int:
        """Index of the last non-blank line (the heading when the section is empty)."""
        i = self.end - 1
        while i > self.heading and not lines[i].strip():
            i -= 1
        return i


@dataclass
class Document:
    lines: list[str]
    newline: str
    final_newline: bool
    sections: list[DiskSection]
    title: int | None  # index of the "# " title line

    def section(self, sid: str) -> DiskSection | None:
        for sec in self.sections:
            if sec.sid == sid:
                return sec
        return None


def heading_kind(heading: str) -> str:
    """``"## Job (resumed)"`` -> ``"job"``; ``""`` for a section hpcwrap does not own."""
    text = heading[3:].strip().rstrip(":").strip().lower()
    for spec in sections.SECTIONS:
        kind = spec.kind
        for name in spec.names:
            if text == name or text.startswith(name + " ") or text.startswith(name + "("):
                return kind
    return ""


class BareLine(str):
    """A line of a CRLF file that ended in a bare LF; written back the same way."""

    __slots__ = ()


def split_lines(text: str) -> tuple[list[str], str, bool]:
    """Lines without their ends, the newline style, and whether the text ends with one.

    The style is that of the first line end. In a CRLF file, a line that
    ended in a bare LF comes back as a ``BareLine`` so ``join_lines`` restores
    it byte for byte; in an LF file a stray CR stays part of its line.
    """
    crlf = text.find("\r\n")
    lf = text.find("\n")
    newline = "\r\n" if crlf != -1 and crlf + 1 == lf else "\n"
    final = text.endswith("\n")
    body = text[:-1] if final else text
    lines = body.split("\n") if body or final else []
    if newline == "\r\n":
        last = len(lines) - 1
        lines = [
            ln[:-1] if ln.endswith("\r") else (BareLine(ln) if i < last or final else ln)
            for i, ln in enumerate(lines)
        ]
    return lines, newline, final


def join_lines(lines: list[str], newline: str, final_newline: bool) -> str:
    if newline == "\n" or not any(type(ln) is BareLine for ln in lines):
        text = newline.join(lines)
        return text + newline if final_newline and lines else text
    parts = []
    for ln in lines:
        parts.append(ln)
        parts.append("\n" if type(ln) is BareLine else newline)
    if not final_newline and parts:
        parts.pop()
    return "".join(parts)


def _item_value(first: str, rest: list[str]) -> str:
    parts = [first]
    for ln in rest:
        if ln.startswith("  "):
            parts.append(ln[2:])
        elif ln.startswith("\t"):
            parts.append(ln[1:])
        else:
            parts.append(ln.lstrip(" "))
    return "\n".join(parts)


def parse_document(text: str) -> Document:
    """Structure of a run log; raises ``UnparseableError`` if it has no title and no sections."""
    if "\x00" in text:
        raise UnparseableError("it contains NUL bytes")
    lines, newline, final = split_lines(text)
    opaque = [False] * len(lines)  # inside a code fence or an HTML comment
    fence: str | None = None
    in_comment = False
    for i, ln in enumerate(lines):
        if fence is not None:
            opaque[i] = True
            if ln.startswith(fence):
                fence = None
            continue
        if in_comment:
            opaque[i] = True
            if "-->" in ln:
                in_comment = False
            continue
        if ln[:1] not in ("`", "~", "<"):
            continue
        m = _FENCE.match(ln)
        if m:
            opaque[i] = True
            fence = m.group(1)
            continue
        if ln.startswith("<!--"):
            opaque[i] = True
            in_comment = "-->" not in ln[4:]

    headings = [i for i, ln in enumerate(lines) if not opaque[i] and ln.startswith("## ")]
    title = None
    first_heading = headings[0] if headings else len(lines)
    for i in range(first_heading):
        if not opaque[i] and lines[i].startswith("# "):
            title = i
            break
    if title is None and not headings:
        raise UnparseableError("it has no '# ' title and no '## ' sections")

    sections = [DiskSection("title", "title", -1, first_heading)]
    seen: set[str] = set()
    jobs = 0
    for n, h in enumerate(headings):
        end = headings[n + 1] if n + 1 < len(headings) else len(lines)
        kind = heading_kind(lines[h])
        sid: str | None
        if kind == "job":
            sid = f"job.{jobs}"
            jobs += 1
        elif kind and kind not in seen:
            sid = kind
            seen.add(kind)
        else:
            sid = None
        sections.append(DiskSection(sid, kind if sid else "", h, end))

    for sec in sections:
        if sec.sid is None or sec.sid == "title":
            continue
        labelled = sec.kind not in ("status", "next")
        i = sec.heading + 1
        while i < sec.end:
            ln = lines[i]
            if ln[1:2] != " " or ln[:1] not in ("-", "*", "+") or opaque[i]:
                i += 1
                continue
            j = i + 1
            while (
                j < sec.end and not opaque[j] and lines[j][:1] in (" ", "\t") and lines[j].strip()
            ):
                j += 1
            rest = lines[i + 1 : j]
            m = _LABEL.match(ln) if labelled else None
            label: str | None = m.group(1) if m else None
            value = _item_value(m.group(2) or "", rest) if m else ""
            body = _item_value(ln[2:], rest)
            sec.items.append(Item(i, j, "\n".join(lines[i:j]), label, value, body))
            i = j
    return Document(lines, newline, final, sections, title)
