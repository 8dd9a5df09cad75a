"""Merge a fresh rendering into the run log on disk without losing what a person wrote.

A three-way merge per item. For every item hpcwrap renders (a key such as
``results.end_val_loss``) the sidecar keeps the *base*: the line hpcwrap last
put in the file and the canonical rendering of the value it stood for
(``(line, canon)``; ``line`` is None when the item was not in the file).

For each rendered item, with ``D`` the item found on disk and ``N`` the new text:

- the key is owned by a person (recorded earlier)      -> leave the file alone;
- the key is new (no base)                             -> insert ``N``, unless a
  person already wrote a line with that label (then it is theirs);
- ``D`` differs from the base line, or was deleted     -> a person edited it: it is
  theirs from now on (recorded), leave it;
- a whole section deleted: theirs too, unless it was an empty heading (then it
  comes back when hpcwrap has something to put in it: results, a Status line);
- ``N`` equals the base canon (the value did not move) -> leave ``D`` as it is;
- otherwise                                            -> replace ``D`` by ``N``.

Items hpcwrap no longer renders are removed only when untouched. Lines that
are no item of hpcwrap's (notes, comments, extra sections, a person's own
Status lines) are never touched. New Status lines go in chronological order;
new sections go after the nearest section that precedes them in the spec's
order. Adopting a hand-written log sets the base to the lines as written, so
nothing a person wrote changes until the value behind it changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from hpcwrap.runlog.adopt import status_time
from hpcwrap.runlog.dates import to_utc
from hpcwrap.runlog.markdown import DiskSection, Document, Item
from hpcwrap.runlog.render import Section, field_for_label, norm_label

Base = dict[str, tuple[str | None, str | None]]


@dataclass
class MergeResult:
    lines: list[str]
    base: Base  # the new base
    human: set[str]  # keys found edited by a person in this merge
    changed: bool


@dataclass
class _Edits:
    n: int
    inserts: dict[int, list[str]] = field(default_factory=dict)  # after line i (-1: at top)
    replaces: dict[int, tuple[int, list[str]]] = field(default_factory=dict)

    def insert_after(self, i: int, lines: Iterable[str]) -> None:
        self.inserts.setdefault(i, []).extend(lines)

    def replace(self, item: Item, lines: list[str]) -> None:
        self.replaces[item.start] = (item.end, lines)

    def apply(self, lines: list[str]) -> list[str]:
        out: list[str] = list(self.inserts.get(-1, ()))
        i = 0
        n = len(lines)
        while i < n:
            rep = self.replaces.get(i)
            if rep is not None:
                end, new = rep
                out.extend(new)
                for j in range(i, end):
                    out.extend(self.inserts.get(j, ()))
                i = end
                continue
            out.append(lines[i])
            out.extend(self.inserts.get(i, ()))
            i += 1
        return out


def _field_of(key: str) -> str:
    if key.startswith("hf."):
        return key[3:]
    return key.rsplit(".", 1)[1]


def _sid_of(key: str) -> str:
    if key.startswith("hf."):
        return "hf"
    return key.rsplit(".", 1)[0]


def _stamp(item: Item) -> datetime | None:
    entry = status_time(item.text)
    return to_utc(entry.when) if entry else None


class _Located:
    """Finds hpcwrap's items in one disk section."""

    def __init__(self, sec: DiskSection) -> None:
        self.sec = sec
        self.kind = sec.kind
        self.by_field: dict[str, Item] = {}
        self.by_text: dict[str, list[Item]] = {}
        if self.kind in ("status", "next"):
            for item in sec.items:
                self.by_text.setdefault(item.text, []).append(item)
        elif self.kind == "hf":
            for item in sec.items:
                if item.label is not None:
                    self.by_field.setdefault(norm_label(item.label), item)
        else:
            for item in sec.items:
                if item.label is None:
                    continue
                fname = field_for_label(self.kind, item.label)
                if fname is not None:
                    self.by_field.setdefault(fname, item)
        self.used: set[int] = set()

    def find(self, key: str, base_line: str | None) -> Item | None:
        if self.kind in ("status", "next"):
            if base_line is None:
                return None
            for item in self.by_text.get(base_line, ()):
                if item.start not in self.used:
                    self.used.add(item.start)
                    return item
            return None
        return self.by_field.get(_field_of(key))

    def labelled(self, key: str) -> Item | None:
        """A person's line with this key's label (for keys hpcwrap has not written yet)."""
        if self.kind in ("status", "next"):
            return None
        return self.by_field.get(_field_of(key))


def _new_section_anchor(doc: Document, sid: str, order: list[str]) -> int:
    """Line after which a missing section ``sid`` goes: after the nearest earlier one on disk."""
    pos = order.index(sid)
    for prev in reversed(order[:pos]):
        sec = doc.section(prev)
        if sec is not None:
            # a later job block on disk also precedes a new job block
            if sid.startswith("job."):
                for other in doc.sections:
                    if other.sid and other.sid.startswith("job.") and other.heading > sec.heading:
                        sec = other
            return sec.content_end(doc.lines)
    return -1


def _status_anchor(doc_lines: list[str], sec: DiskSection, when: datetime) -> int:
    """After the last Status line stamped no later than ``when``; at the end if it is newest."""
    when = to_utc(when).replace(second=0, microsecond=0)
    for item in reversed(sec.items):
        last = _stamp(item)
        if last is not None:
            if last <= when:
                return sec.content_end(doc_lines)  # the newest: append (the usual case)
            break
    else:
        return sec.content_end(doc_lines)
    stamped = [(item, _stamp(item)) for item in sec.items]
    stamped = [(item, t) for item, t in stamped if t is not None]
    before = [item for item, t in stamped if t is not None and t <= when]
    if before:
        return before[-1].end - 1
    return stamped[0][0].start - 1


def merge(
    doc: Document,
    sections: list[Section],
    base: Base,
    human: set[str],
    status_times: dict[str, datetime] | None = None,
) -> MergeResult:
    """Merge ``sections`` (a fresh rendering) into ``doc`` (the file on disk)."""
    lines = doc.lines
    edits = _Edits(len(lines))
    new_base: Base = dict(base)
    found_human: set[str] = set()
    order = [s.sid for s in sections]
    rendered: set[str] = set()
    located: dict[str, _Located] = {}

    for sec in sections:
        skey = "§" + sec.sid
        rendered.add(skey)
        rendered.update(k for k, _ in sec.items)
        dsec = doc.section(sec.sid)
        if sec.sid == "title":
            _merge_title(doc, sec, base, human, new_base, found_human, edits)
            continue
        if dsec is None:
            if skey in human:
                continue
            if skey in base and base[skey][0] is not None and _had_items(base, sec.sid):
                found_human.add(skey)  # a person removed the section and what it said
                continue
            # Never written, or only its empty heading was removed (tidying a fresh log):
            # the section comes back once there is something to put in it.
            add = []
            for key, text in sec.items:
                if key in human:
                    continue
                b = base.get(key)
                if b is None or (b[0] is None and text != b[1]):
                    add.append((key, text))
            if not add:
                continue
            anchor = _new_section_anchor(doc, sec.sid, order)
            block = ["", sec.heading]
            for key, text in add:
                block.extend(text.split("\n"))
                new_base[key] = (text, text)
            if anchor == -1:
                block = [*block[1:], ""]
            edits.insert_after(anchor, block)
            new_base[skey] = (sec.heading, sec.heading)
            continue

        loc = _Located(dsec)
        located[sec.sid] = loc
        if skey not in base or base[skey][0] is None:
            new_base[skey] = (sec.heading, sec.heading)
        last_anchor: int | None = None  # end line of the previous located/inserted item
        is_status = dsec.kind == "status"
        for key, text in sec.items:
            if is_status:
                b = base.get(key)
                if b is not None and b[1] == text:
                    continue  # a Status line never changes once written: nothing to find
            if key in human:
                b = base.get(key)
                d = loc.find(key, b[0] if b else None)
                if d is not None:
                    last_anchor = d.end - 1
                continue
            b = base.get(key)
            if b is None:
                d = loc.labelled(key)
                if d is not None:
                    if d.text == text:
                        new_base[key] = (text, text)
                    else:
                        found_human.add(key)
                    last_anchor = d.end - 1
                    continue
                anchor = _insert_anchor(doc, dsec, loc, sec, key, last_anchor, status_times)
                edits.insert_after(anchor, text.split("\n"))
                new_base[key] = (text, text)
                if dsec.kind != "status":
                    last_anchor = anchor
                continue
            bline, canon = b
            d = loc.find(key, bline)
            if bline is not None and (d is None or d.text != bline):
                found_human.add(key)
                if d is not None:
                    last_anchor = d.end - 1
                continue
            if d is not None:
                last_anchor = d.end - 1
            if text == canon:
                continue
            if d is None:
                anchor = _insert_anchor(doc, dsec, loc, sec, key, last_anchor, status_times)
                edits.insert_after(anchor, text.split("\n"))
                if dsec.kind != "status":
                    last_anchor = anchor
            else:
                edits.replace(d, text.split("\n"))
            new_base[key] = (text, text)

    # Items hpcwrap rendered before but not now: removed when nobody touched them.
    for key, (bline, _canon) in base.items():
        if key in rendered or key in human or key.startswith("§") or key == "title":
            continue
        new_base.pop(key, None)
        if bline is None:
            continue
        sid = _sid_of(key)
        loc_or_none = located.get(sid)
        if loc_or_none is None:
            dsec = doc.section(sid)
            if dsec is None:
                continue
            loc_or_none = _Located(dsec)
            located[sid] = loc_or_none
        d = loc_or_none.find(key, bline)
        if d is not None and d.text == bline:
            edits.replace(d, [])

    changed = bool(edits.inserts or edits.replaces)
    out = edits.apply(lines) if changed else lines
    return MergeResult(out, new_base, found_human, changed)


def _had_items(base: Base, sid: str) -> bool:
    """Whether hpcwrap's last writing of section ``sid`` had any item in it."""
    return any(
        line is not None and not key.startswith("§") and key != "title" and _sid_of(key) == sid
        for key, (line, _canon) in base.items()
    )


def _insert_anchor(
    doc: Document,
    dsec: DiskSection,
    loc: _Located,
    sec: Section,
    key: str,
    last_anchor: int | None,
    status_times: dict[str, datetime] | None,
) -> int:
    """Line after which a new item goes: after the item before it, else before the one after it."""
    if dsec.kind == "status" and status_times and key in status_times:
        return _status_anchor(doc.lines, dsec, status_times[key])
    if last_anchor is not None:
        return last_anchor
    if dsec.kind not in ("status", "next"):
        keys = [k for k, _ in sec.items]
        for later in keys[keys.index(key) + 1 :]:
            d = loc.labelled(later)
            if d is not None:
                return d.start - 1
    return dsec.content_end(doc.lines)


def _merge_title(
    doc: Document,
    sec: Section,
    base: Base,
    human: set[str],
    new_base: Base,
    found_human: set[str],
    edits: _Edits,
) -> None:
    key, text = sec.items[0]
    if key in human:
        return
    b = base.get(key)
    disk = doc.lines[doc.title] if doc.title is not None else None
    if b is None:
        if disk is None:
            edits.insert_after(-1, [text, ""])
            new_base[key] = (text, text)
        elif disk == text:
            new_base[key] = (text, text)
        else:
            found_human.add(key)
        return
    bline, canon = b
    if bline is not None and disk != bline:
        found_human.add(key)
        return
    if text == canon:
        return
    if doc.title is None:
        edits.insert_after(-1, [text, ""])
    else:
        edits.replaces[doc.title] = (doc.title + 1, [text])
    new_base[key] = (text, text)


def full_base(sections: list[Section]) -> Base:
    """The base after hpcwrap wrote ``sections`` out in full."""
    base: Base = {}
    for sec in sections:
        if sec.sid != "title":
            base["§" + sec.sid] = (sec.heading, sec.heading)
        for key, text in sec.items:
            base[key] = (text, text)
    return base


def adopt_base(doc: Document, sections: list[Section]) -> Base:
    """The base for a hand-written log: its lines as they are, against their canonical form.

    Nothing changes in the file until the value behind a line changes.
    """
    base: Base = {}
    for sec in sections:
        if sec.sid == "title":
            key, text = sec.items[0]
            if doc.title is not None:
                base[key] = (doc.lines[doc.title], text)
            else:
                base[key] = (None, text)
            continue
        dsec = doc.section(sec.sid)
        if dsec is None:
            for key, text in sec.items:
                base[key] = (None, text)
            continue
        base["§" + sec.sid] = (doc.lines[dsec.heading], sec.heading)
        if dsec.kind == "status":
            disk = [item for item in dsec.items if status_time(item.text) is not None]
        elif dsec.kind == "next":
            disk = [item for item in dsec.items if item.body.strip()]
        else:
            loc = _Located(dsec)
            for key, text in sec.items:
                d = loc.labelled(key)
                base[key] = (d.text if d is not None else None, text)
            continue
        # Status and Next were parsed from these items, in this order.
        for (key, text), item in zip(sec.items, disk, strict=False):
            base[key] = (item.text, text)
        for key, text in sec.items[len(disk) :]:
            base[key] = (None, text)
    return base
