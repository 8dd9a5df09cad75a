"""Check a run log against the templates in docs/run-log-format.md (read from the document).

Used by the unit test (a log made by ``hpcwrap run`` on a workstation) and the
cluster test (a log made by ``hpcwrap sbatch`` on the dev cluster), so the
document users read and the code cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hpcwrap.runlog.markdown import parse_document

DOC = Path(__file__).resolve().parents[1] / "docs" / "run-log-format.md"
_BLOCK = re.compile(r"^```markdown\n(.*?)^```$", re.M | re.S)
SLURM_ONLY = "(Slurm only)"


@dataclass(frozen=True)
class TemplateSection:
    heading: str
    lines: tuple[tuple[str, bool], ...]  # (line name, Slurm only)


def templates(doc: Path = DOC) -> tuple[list[TemplateSection], list[TemplateSection]]:
    """The run log's template and the resumed block's, as the document writes them."""
    blocks = _BLOCK.findall(doc.read_text())
    assert len(blocks) >= 2, f"{doc}: expected the run-log and the resumed-block templates"
    return _sections(blocks[0]), _sections(blocks[1])


def _sections(text: str) -> list[TemplateSection]:
    doc = parse_document(text)
    out = []
    for sec in doc.sections:
        if sec.heading < 0:
            continue
        names = tuple(
            (item.label, SLURM_ONLY in item.text) for item in sec.items if item.label is not None
        )
        out.append(TemplateSection(doc.lines[sec.heading], names))
    return out


def check(md: str, *, slurm: bool) -> list[str]:
    """What in ``md`` departs from the templates (empty: it conforms).

    Every template section is there, in the template's order; in each, the
    template's line names come first and in order (hpcwrap's own lines may
    follow); a Slurm-only line is there exactly for a Slurm run. Every
    ``## Job (resumed)`` block starts with the resumed template's lines.
    """
    main, resumed = templates()
    doc = parse_document(md)
    problems: list[str] = []
    if doc.title is None or not re.match(r"^# \S.* — \S", doc.lines[doc.title]):
        problems.append("no '# <task> — <short description>' title")
    headings = [(doc.lines[s.heading], s) for s in doc.sections if s.heading >= 0]
    pos = 0
    for tsec in main:
        found = next((i for i in range(pos, len(headings)) if headings[i][0] == tsec.heading), None)
        if found is None:
            problems.append(f"section {tsec.heading!r} missing or out of order")
            continue
        pos = found + 1
        have = [item.label for item in headings[found][1].items if item.label is not None]
        want = [name for name, slurm_only in tsec.lines if slurm or not slurm_only]
        if have[: len(want)] != want:
            problems.append(f"{tsec.heading}: lines {have} do not start with {want}")
        for name, slurm_only in tsec.lines:
            if slurm_only and not slurm and name in have:
                problems.append(f"{tsec.heading}: {name!r} is for Slurm runs only")
    for heading, sec in headings:
        if heading != resumed[0].heading:
            continue
        have = [item.label for item in sec.items if item.label is not None]
        want = [name for name, _ in resumed[0].lines]
        if have[: len(want)] != want:
            problems.append(f"{heading}: lines {have} do not start with {want}")
    return problems
