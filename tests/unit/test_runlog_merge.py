"""Machine updates merged into a run log that people edit: human lines always survive."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hpcwrap import redact
from hpcwrap.errors import RunLogConflictError
from hpcwrap.runlog import JobBlock, RunLog, RunState, StatusEntry, create_run, open_run
from hpcwrap.runlog.markdown import parse_document
from hpcwrap.runlog.render import status_line

UTC = timezone.utc
T0 = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)


def _new(root: Path, **kw: object) -> RunLog:
    state = RunState(task="train", description="merge test", run_type="replication", objective="o")
    for k, v in kw.items():
        setattr(state, k, v)
    return create_run(root, state, when=T0)


def _edit(log: RunLog, old: str, new: str) -> None:
    text = log.path.read_text()
    assert old in text, old
    log.path.write_text(text.replace(old, new, 1))


def test_person_edited_field_is_theirs_from_then_on(tmp_path: Path) -> None:
    log = _new(tmp_path, jobs=[JobBlock(execution_id="1", node="n1")])
    _edit(log, "- node: n1\n", "- node: n1 (I checked: it was really n2)\n")

    def set_node(s: RunState) -> None:
        s.jobs[0].node = "n3"

    log.update(set_node)
    text = log.path.read_text()
    assert "- node: n1 (I checked: it was really n2)\n" in text
    assert "n3" not in text
    log.update(lambda s: setattr(s.jobs[0], "node", "n4"))
    assert "n4" not in log.path.read_text()
    # the state keeps the machine's value; the file keeps the person's
    assert log.read().jobs[0].node == "n4"


def test_untouched_fields_follow_the_machine(tmp_path: Path) -> None:
    log = _new(tmp_path, jobs=[JobBlock(execution_id="1", node="n1")])
    log.update(lambda s: setattr(s.jobs[0], "node", "n2"))
    text = log.path.read_text()
    assert "- node: n2\n" in text and "n1" not in text


def test_deleted_line_and_section_stay_deleted(tmp_path: Path) -> None:
    log = _new(tmp_path, jobs=[JobBlock(execution_id="1", node="n1")], wandb_notes="w")
    _edit(log, "- node: n1\n", "")
    _edit(log, "## W&B\n- local: none seen\n- synced: none seen\n- notes: w\n", "")

    def change(s: RunState) -> None:
        s.jobs[0].node = "n2"
        s.wandb_notes = "x"

    log.update(change)
    text = log.path.read_text()
    assert "node" not in text and "## W&B" not in text
    assert "- execution_id: 1\n" in text


def test_human_lines_sections_comments_and_status_kept_in_place(tmp_path: Path) -> None:
    log = _new(tmp_path)
    log.add_status("machine one", T0 + timedelta(hours=1))
    text = log.path.read_text()
    text = text.replace("## Status\n", "<!-- my comment -->\n## Status\n")
    text = text.replace(
        "- 2026-03-11 16:00 — machine one\n",
        "- 2026-03-11 16:00 — machine one\n- 2026-03-11 16:30 — (me) loss looks noisy\n",
    )
    text += "\n## My observations\nthe wrist cam is flipped\n"
    log.path.write_text(text)
    log.add_status("machine two", T0 + timedelta(hours=2))
    log.add_status("machine zero, late report", T0 + timedelta(minutes=10))
    lines = log.path.read_text().splitlines()
    status = lines[lines.index("## Status") + 1 : lines.index("## Results") - 1]
    assert status == [
        "- 2026-03-11 15:10 — machine zero, late report",
        "- 2026-03-11 16:00 — machine one",
        "- 2026-03-11 16:30 — (me) loss looks noisy",
        "- 2026-03-11 17:00 — machine two",
    ]
    assert lines[lines.index("## Status") - 1] == "<!-- my comment -->"
    assert lines[-2:] == ["## My observations", "the wrist cam is flipped"]


def test_new_sections_go_in_spec_order(tmp_path: Path) -> None:
    log = _new(tmp_path, jobs=[JobBlock(execution_id="1")])
    log.update(lambda s: s.jobs.append(JobBlock(execution_id="2", resumed_from="/c")))
    log.update(lambda s: s.jobs.append(JobBlock(execution_id="3")))
    log.update(lambda s: s.huggingface.update(repo="https://huggingface.co/u/r"))
    heads = [ln for ln in log.path.read_text().splitlines() if ln.startswith("## ")]
    assert heads == [
        "## Mode",
        "## Config",
        "## Job",
        "## Job (resumed)",
        "## Job (resumed)",
        "## Status",
        "## Results",
        "## W&B",
        "## Next",
        "## HuggingFace",
    ]


def test_crlf_and_truncated_last_line_are_kept(tmp_path: Path) -> None:
    log = _new(tmp_path)
    text = log.path.read_text().replace("\n", "\r\n") + "a half-written note without newline"
    log.path.write_bytes(text.encode())
    log.add_status("still running", T0 + timedelta(hours=1))
    data = log.path.read_bytes()
    assert data.endswith(b"\r\na half-written note without newline")
    assert b"- 2026-03-11 16:00 \xe2\x80\x94 still running\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_file_mode_is_kept(tmp_path: Path) -> None:
    log = _new(tmp_path)
    log.path.chmod(0o640)
    log.add_status("x", T0)
    assert log.path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"# train\n\n## Status\n- caf\xe9 latin-1 text\n", "not valid UTF-8"),
        (b"just some text\nwith no headings at all\n", "no '# ' title"),
        (b"# t\n\x00binary\n", "NUL"),
    ],
)
def test_unmergeable_file_is_left_alone_and_update_goes_beside_it(
    tmp_path: Path, content: bytes, why: str
) -> None:
    log = _new(tmp_path)
    log.path.write_bytes(content)
    with pytest.raises(RunLogConflictError) as err:
        log.add_status("completed, exit code 0", T0 + timedelta(hours=1))
    assert why in str(err.value)
    assert log.path.read_bytes() == content
    conflict = err.value.conflict
    assert conflict == tmp_path / "2026-03-11_train.hpcwrap-conflict.md"
    assert "- 2026-03-11 16:00 — completed, exit code 0" in conflict.read_text()
    # once the person repairs the file, the next update merges again, nothing lost
    log.path.write_text("# train — repaired by hand\n\n## Status\n")
    log.add_status("next", T0 + timedelta(hours=2))
    text = log.path.read_text()
    assert text.startswith("# train — repaired by hand\n")
    assert "completed, exit code 0" in text and "— next" in text


def test_deleted_markdown_is_written_again(tmp_path: Path) -> None:
    log = _new(tmp_path)
    log.path.unlink()
    log.add_status("x", T0)
    assert "— x" in log.path.read_text()


# ---------------------------------------------------------------- property

machine_ops = st.one_of(
    st.tuples(st.just("status"), st.text(min_size=1, max_size=20)),
    st.tuples(st.just("node"), st.sampled_from(["n1", "n2", "n[1-2]"])),
    st.tuples(st.just("end"), st.integers(0, 10**6)),
    st.tuples(st.just("resume"), st.sampled_from(["/ckpt/a", "/ckpt/b"])),
    st.tuples(st.just("val"), st.floats(0, 10)),
    st.tuples(st.just("liner"), st.sampled_from(["steady", "noisy\nthen flat"])),
    st.tuples(st.just("next"), st.lists(st.sampled_from(["resume", "eval", "upload"]), max_size=3)),
    st.tuples(
        st.just("hf"), st.sampled_from(["https://huggingface.co/u/a", "https://huggingface.co/u/b"])
    ),
    st.tuples(st.just("synced"), st.sampled_from(["pending", "https://wandb.ai/x"])),
)
human_ops = st.one_of(
    st.tuples(
        st.just("insert"),
        st.integers(0, 10**6),
        st.sampled_from(["plain", "bullet", "comment", "status", "section", "fence"]),
    ),
    st.tuples(st.just("edit"), st.integers(0, 10**6), st.just("")),
)
ops = st.lists(
    st.one_of(machine_ops.map(lambda o: ("m", o)), human_ops.map(lambda o: ("h", o))), max_size=25
)


def _apply_machine(log: RunLog, op: tuple[object, ...], step: int) -> None:
    kind, arg = op[0], op[1]
    when = T0 + timedelta(minutes=step)

    def mutate(s: RunState) -> None:
        if not s.jobs:
            s.jobs.append(JobBlock(execution_id="100"))
        job = s.jobs[-1]
        if kind == "status":
            s.status.append(StatusEntry(when, f"{arg} #{step}"))
        elif kind == "node":
            job.node = str(arg)
        elif kind == "end":
            job.start = T0
            job.end = T0 + timedelta(seconds=int(arg))  # type: ignore[call-overload]
        elif kind == "resume":
            s.jobs.append(JobBlock(execution_id=f"{200 + step}", resumed_from=str(arg)))
        elif kind == "val":
            s.results.end_val_loss = float(arg)  # type: ignore[arg-type]
        elif kind == "liner":
            s.results.loss_one_liner = str(arg)
        elif kind == "next":
            s.next = list(arg)  # type: ignore[call-overload]
        elif kind == "hf":
            s.huggingface["repo"] = str(arg)
        elif kind == "synced":
            s.wandb_synced = str(arg)

    log.update(mutate)


def _apply_human(
    log: RunLog, op: tuple[object, ...], n: int, inserted: list[str], edited: dict[str, str]
) -> None:
    kind, pos, what = op
    lines = log.path.read_text().split("\n")
    body = lines[:-1]  # text ends with a newline
    if kind == "insert":
        new = {
            "plain": [f"human note {n}"],
            "bullet": [f"- my own item {n}: keep me"],
            "comment": [f"<!-- human comment {n} -->"],
            "status": [f"- 2026-03-11 15:{n % 60:02d} — human status {n}"],
            "section": [f"## Human section {n}", f"human text {n}"],
            "fence": [f"```human{n}", f"## inside a fence {n}", "```"],
        }[str(what)]
        at = int(pos) % (len(body) + 1)  # type: ignore[call-overload]
        if at == 0:
            at = 1  # keep the title first
        body[at:at] = new
        inserted.extend(new)
        mine = set(inserted)
        inserted[:] = [ln for ln in body if ln in mine and ln != "```"]  # their order in the file
    else:
        mine = set(inserted) | set(edited.values())
        candidates = [i for i, ln in enumerate(body) if ln.startswith("- ") and ln not in mine]
        if not candidates:
            return
        i = candidates[int(pos) % len(candidates)]  # type: ignore[call-overload]
        new_line = body[i] + f" (edited {n})"
        edited[body[i]] = new_line
        body[i] = new_line
    log.path.write_text("\n".join(body) + "\n")


def _is_subsequence(needles: list[str], hay: list[str]) -> bool:
    it = iter(hay)
    return all(any(x == y for y in it) for x in needles)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
@example([("m", ("status", "A_TOKEN"))])  # found by hypothesis: a text redaction changes
def test_human_edits_survive_random_machine_updates(
    sequence: list[tuple[str, tuple[object, ...]]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = _new(Path(tmp))
        inserted: list[str] = []
        edited: dict[str, str] = {}
        machine_status: list[str] = []
        for step, (who, op) in enumerate(sequence):
            if who == "m":
                _apply_machine(log, op, step)
                if op[0] == "status":
                    # kept as redacted ("A_TOKEN #0" reads as a secret's name and value)
                    machine_status.append(redact.redact_text(f"{op[1]} #{step}"))
            else:
                _apply_human(log, op, step, inserted, edited)
            text = log.path.read_text()
            lines = text.split("\n")
            parse_document(text)
            assert _is_subsequence(inserted, lines), "a line a person added was lost or moved"
            fences = sum(1 for ln in inserted if ln.startswith("```human"))
            assert lines.count("```") >= fences
            for new_line in edited.values():
                assert new_line in lines, f"a person's edit was undone: {new_line!r}"
        final = open_run(log.path).read()
        assert [s.text for s in final.status] == machine_status
        lines = log.path.read_text().split("\n")
        for entry in final.status:
            for rendered in status_line(entry.when, entry.text).split("\n"):
                assert rendered in lines or rendered in edited


def test_mixed_line_ends_kept_byte_for_byte(tmp_path: Path) -> None:
    log = _new(tmp_path)
    text = log.path.read_text().replace("\n", "\r\n")
    text = text.replace("## Results\r\n", "## Results\r\npasted from a unix tool\nand another\n")
    log.path.write_bytes(text.encode())
    log.add_status("x", T0 + timedelta(hours=1))
    data = log.path.read_bytes()
    assert b"## Results\r\npasted from a unix tool\nand another\n" in data
    assert b"\xe2\x80\x94 x\r\n" in data
    assert data.replace(b"\r\n", b"").count(b"\n") == 2


def test_removed_empty_heading_comes_back_when_there_is_something_to_put_in_it(
    tmp_path: Path,
) -> None:
    log = _new(tmp_path, jobs=[JobBlock(execution_id="1")])
    # A person tidies the fresh log: drops the empty Status and Results headings.
    _edit(log, "## Status\n\n", "")
    _edit(log, "## Results\n\n", "")
    log.add_status("running, step 5, train_loss 0.4", T0 + timedelta(hours=1))

    def ended(s: RunState) -> None:
        s.results.final_step = 5
        s.results.checkpoint = "/ckpt/step5"

    log.update(ended)
    doc = parse_document(log.path.read_text())
    text = log.path.read_text()
    assert "- 2026-03-11 16:00 — running, step 5, train_loss 0.4\n" in text
    assert "- checkpoint: `/ckpt/step5`\n" in text
    assert [s.sid for s in doc.sections if s.sid in ("job.0", "status", "results")] == [
        "job.0",
        "status",
        "results",
    ]
