"""The run log's lines as the spec writes them: order, spelling, values as printed (issue 10)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from hpcwrap.reading.formats import LineParser
from hpcwrap.runlog import JobBlock, RunState, create_run, lifecycle
from hpcwrap.runlog.markdown import parse_document
from hpcwrap.runlog.model import Results
from hpcwrap.runlog.render import render_text
from tests.unit.test_job_wrapper import wrap

UTC = timezone.utc
T0 = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 11, 15, 5, tzinfo=UTC)
T2 = datetime(2026, 3, 12, 15, 0, tzinfo=UTC)


def labels(md: str, heading: str, nth: int = 0) -> list[str]:
    """The ``- label:`` names of the nth section with this heading, in order."""
    doc = parse_document(md)
    found = [s for s in doc.sections if s.heading >= 0 and doc.lines[s.heading] == heading]
    return [item.label or "" for item in found[nth].items]


def line_of(md: str, label: str, nth: int = 0) -> str:
    lines = [ln for ln in md.splitlines() if ln.startswith(f"- {label}:")]
    return lines[nth]


def finished(**job: object) -> RunState:
    block = JobBlock(
        execution_id="12345",
        submitted=T0,
        start=T1,
        end=T2,
        node="n7",
        cluster="dev",
        state="COMPLETED",
        exit_code=0,
        restart_count=0,
    )
    for k, v in job.items():
        setattr(block, k, v)
    return RunState(task="train", run_type="replication", objective="o", jobs=[block])


# ---------------------------------------------------------------- Job block


def test_job_block_has_the_spec_lines_first_then_hpcwrap_lines() -> None:
    md = render_text(finished())
    assert labels(md, "## Job") == [
        "execution_id",
        "submitted/start",
        "start_human",
        "end",
        "end_human",
        "runtime",
        "node",
        "submitted",
        "cluster",
        "state",
        "exit_code",
        "restart_count",
    ]
    assert line_of(md, "submitted/start") == "- submitted/start: `2026-03-11T15:05:00+00:00`"
    assert line_of(md, "start_human") == "- start_human: `Wednesday, Mar 11th, 2026`"
    assert line_of(md, "submitted") == "- submitted: `2026-03-11T15:00:00+00:00`"
    assert "submitted_human" not in md


def test_submitted_start_is_the_submission_until_the_job_starts() -> None:
    state = finished(start=None, end=None, state="SUBMITTED", node=None, exit_code=None)
    md = render_text(state)
    assert line_of(md, "submitted/start") == (
        "- submitted/start: `2026-03-11T15:00:00+00:00` (submitted)"
    )
    assert "- submitted: " not in md  # the same time once is enough
    # started: the start replaces it, the submission moves to hpcwrap's own line
    state.jobs[0].start = T1
    md = render_text(state)
    assert line_of(md, "submitted/start") == "- submitted/start: `2026-03-11T15:05:00+00:00`"
    assert line_of(md, "submitted") == "- submitted: `2026-03-11T15:00:00+00:00`"


def test_node_is_written_for_slurm_runs_only() -> None:
    vm = finished(execution_id="ws1:4242", node="ws1", cluster=None, restart_count=None)
    assert "- node:" not in render_text(vm)
    cloud = finished(execution_id="vm-3/europe-west4-a", node="vm", cluster=None)
    cloud.jobs[0].restart_count = None
    assert "- node:" not in render_text(cloud)
    slurm = finished(cluster=None, restart_count=None)  # job id 12345
    assert "- node: n7" in render_text(slurm)


def test_resumed_block_has_the_spec_lines_first() -> None:
    state = finished(wandb_synced="https://wandb.ai/t/p/runs/a")
    state = lifecycle.apply(state, lifecycle.Resumed(T2, "/ck/step_100", execution_id="12346"))
    state.jobs[1].start = datetime(2026, 3, 12, 15, 2, tzinfo=UTC)
    state.jobs[1].node = "n8"
    state.jobs[1].wandb_local = "/w/wandb/offline-run-x"
    md = render_text(state)
    got = labels(md, "## Job (resumed)")
    assert got[:3] == ["execution_id", "submitted", "resumed from"]
    assert got[3:] == ["start", "start_human", "node", "W&B local", "W&B synced"]
    assert "- execution_id: 12346\n- submitted: 2026-03-12 15:00 UTC\n" in md
    assert "- resumed from: `/ck/step_100`\n" in md
    assert "- W&B synced: pending — run `wandb sync /w/wandb/offline-run-x`" in md


# ---------------------------------------------------------------- Results


def test_results_lines_always_present_with_na() -> None:
    md = render_text(finished())
    assert labels(md, "## Results") == [
        "runtime",
        "final step",
        "start_train_loss",
        "end_train_loss",
        "start_val_loss",
        "end_val_loss",
        "loss_one_liner",
        "checkpoint",
        "config_snapshot",
    ]
    assert "- start_val_loss: n/a\n- end_val_loss: n/a\n" in md


def test_results_stay_empty_while_nothing_ended() -> None:
    state = finished(end=None, state="RUNNING")
    assert labels(render_text(state), "## Results") == []


def test_losses_shown_as_printed() -> None:
    state = finished()
    state.results = Results(
        start_train_loss=3.0,
        start_train_loss_text="3.0000",
        end_val_loss=0.4544526051680415,
        end_val_loss_text="0.4544526051680415",
        start_val_loss=1.4612499809697197,
    )
    md = render_text(state)
    assert "- start_train_loss: `3.0000`" in md
    assert "- end_val_loss: `0.4544526051680415`" in md
    assert "- start_val_loss: `1.4612499809697197`" in md


def test_parser_keeps_the_printed_token() -> None:
    p = LineParser()
    cases = {
        "step 10: loss 3.0000, val loss 1.50": ("3.0000", "1.50"),
        "{'loss': '0.5123', 'learning_rate': 4.5e-05, 'epoch': 0.1}": ("0.5123", None),
        '{"step": 5, "loss": 0.4544526051680415, "val_loss": 2.10}': (
            "0.4544526051680415",
            "2.10",
        ),
        " iteration      100/  500000 | consumed samples: 1 | lm loss: 6.540000E+00 |": (
            "6.540000E+00",
            None,
        ),
    }
    for line, (loss, val) in cases.items():
        obs = p.parse(line)
        assert obs is not None, line
        assert obs.loss_text == loss, line
        assert obs.val_loss_text == val, line


def test_wrapper_results_show_losses_exactly_as_printed(tmp_path: Path) -> None:
    state = RunState(task="train", run_type="replication", objective="o")
    log = create_run(tmp_path / "run_logs", state)
    script = (
        "print('step 1: loss 3.0000, val loss 1.4612499809697197', flush=True)\n"
        "print('step 2: loss 2.5, val loss 0.4544526051680415', flush=True)\n"
    )
    wrap([sys.executable, "-c", script], log, tmp_path)
    md = log.path.read_text()
    assert "- start_train_loss: `3.0000`" in md
    assert "- end_train_loss: `2.5`" in md
    assert "- start_val_loss: `1.4612499809697197`" in md
    assert "- end_val_loss: `0.4544526051680415`" in md
    assert "- node:" not in md  # a workstation run


def test_config_snapshot_is_the_run_output_and_the_copy_has_its_own_line(tmp_path: Path) -> None:
    state = RunState(task="train", run_type="replication", objective="o")
    log = create_run(tmp_path / "run_logs", state)
    out = tmp_path / "out"
    script = (
        "import pathlib\n"
        f"p = pathlib.Path({str(out)!r}); p.mkdir()\n"
        "(p / 'config_resolved.yaml').write_text('lr: 1\\n')\n"
        "print('step 1: loss 1.0', flush=True)\n"
    )
    wrap([sys.executable, "-c", script], log, tmp_path)
    md = log.path.read_text()
    assert f"- config_snapshot: `{out / 'config_resolved.yaml'}`" in md
    copy = line_of(md, "config_copy")
    assert copy.startswith(f"- config_copy: `.hpcwrap/{log.name}/config/resolved_")
    rel = copy.split("`")[1]
    assert (log.path.parent / rel).read_text() == "lr: 1\n"
    order = labels(md, "## Results")
    assert order.index("config_copy") == order.index("config_snapshot") + 1


# ---------------------------------------------------------------- Config and W&B


def test_dataset_and_script_formatting() -> None:
    state = finished()
    state.script = "docker run --gpus all img python train.py"
    state.dataset = "/shared/data/front_cam/v3.parquet"
    md = render_text(state)
    assert "- script: `docker run --gpus all img python train.py`" in md
    assert "- dataset: `v3.parquet` at `/shared/data/front_cam/`" in md
    state.dataset = "https://example.org/data/v3.parquet"
    md = render_text(state)
    assert (
        "- dataset: `v3.parquet` at `https://example.org/data/` "
        "(link: `https://example.org/data/v3.parquet`)"
    ) in md
    state.script = "`slurm/train.sh` --lr 3e-4"  # hpcwrap's own form stays
    assert "- script: `slurm/train.sh` --lr 3e-4\n" in render_text(state)


def test_wandb_section_always_has_local_synced_notes() -> None:
    md = render_text(finished())
    assert "## W&B\n- local: none seen\n- synced: none seen\n- notes:\n" in md
    state = finished()
    state.wandb_local = "/w/wandb/offline-run-1"
    md = render_text(state)
    assert (
        "## W&B\n- local: `/w/wandb/offline-run-1`\n"
        "- synced: pending — run `wandb sync /w/wandb/offline-run-1`\n- notes:\n"
    ) in md


def _wrap(tmp_path: Path, state: RunState, script: str) -> str:
    log = create_run(tmp_path / "run_logs", state)
    wrap([sys.executable, "-c", script], log, tmp_path)
    return log.path.read_text()


def test_pipeline_results_and_next_speak_of_what_it_wrote(tmp_path: Path) -> None:
    """A data-generation job gets no loss one-liner and no passport/signoff advice."""
    state = RunState(task="gen", run_type="pipeline (data generation)", objective="make shards")
    out = tmp_path / "out" / "ckpt" / "100"
    script = (
        "import pathlib\n"
        f"p = pathlib.Path({str(out)!r}); p.mkdir(parents=True)\n"
        "for i in (50, 100):\n"
        "    print(f'step {i}/100', flush=True)\n"
        f"print('Saving checkpoint to {out}', flush=True)\n"
    )
    md = _wrap(tmp_path, state, script)
    results = labels(md, "## Results")
    assert results[:3] == ["runtime", "final step", "output"]
    assert "loss_one_liner" not in results and "checkpoint" not in results
    assert "start_train_loss" not in results
    assert f"- output: `{out}`" in md
    nxt = md.split("## Next\n", 1)[1]
    assert "MODEL_PASSPORT" not in nxt and "SIGNOFF" not in nxt and "eval" not in nxt
    assert f"check what it wrote at `{out}` (100 items processed)" in nxt
    assert "`hpcwrap log note " in nxt


def test_pipeline_that_printed_losses_shows_them(tmp_path: Path) -> None:
    state = RunState(task="embed", run_type="pipeline (embedding extraction)", objective="o")
    md = _wrap(tmp_path, state, "print('step 1: loss 0.50', flush=True)\n")
    assert "- end_train_loss: `0.50`" in md


def test_next_lines_name_the_command(tmp_path: Path) -> None:
    state = RunState(task="train", run_type="replication", objective="o")
    out = tmp_path / "ck" / "7"
    script = (
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(out)!r}); p.mkdir(parents=True)\n"
        "print('step 7: loss 1.0', flush=True)\n"
        f"print('Saved checkpoint to {out}', flush=True)\n"
        "sys.exit(1)\n"
    )
    md = _wrap(tmp_path, state, script)
    name = md.split("`hpcwrap resume ", 1)[1].split("`", 1)[0]
    assert name.endswith("_train")
    assert (
        f"once fixed, resume from `{out}` instead of starting over: `hpcwrap resume {name}`" in md
    )


def test_experiments_row_shows_val_loss_as_printed(tmp_path: Path) -> None:
    root = tmp_path / "run_logs"
    log = create_run(root, RunState(task="train", run_type="experiment", objective="o"), when=T0)
    log.record(
        lifecycle.Ended(
            when=T2,
            state="COMPLETED",
            source=lifecycle.Source.WRAPPER,
            execution_id="12345",
            exit_code=0,
            results=lifecycle.ResultFacts(val_loss=0.02800, val_loss_text="0.02800"),
        )
    )
    assert f"| {log.name} |  | 0.02800 |" in (root / "experiments.md").read_text()
    assert "- end_val_loss: `0.02800`" in log.path.read_text()


def test_epilog_results_keep_the_printed_losses(tmp_path: Path) -> None:
    """When the epilog closes a run (wrapper killed), Results still show the printed text."""
    from hpcwrap.hooks import node as hooks

    log = create_run(tmp_path / "run_logs", RunState(task="train", run_type="replication"))
    log.append_event("progress", {"step": 1, "train_loss": 3.0, "train_loss_text": "3.0000"})
    log.append_event(
        "progress",
        {"step": 2, "train_loss": 2.5, "train_loss_text": "2.50", "val_loss": 1.0},
    )
    last = hooks.last_progress(log)
    assert (last.first_loss_text, last.loss_text) == ("3.0000", "2.50")
    assert last.val_loss == 1.0 and last.val_loss_text is None


def test_config_has_the_spec_lines_even_when_not_given() -> None:
    from hpcwrap.runlog.adopt import parse_state

    state = RunState(task="train", run_type="replication", objective="o", script="`train.sh`")
    md = render_text(state)
    assert labels(md, "## Config") == ["script", "config", "dataset", "key settings"]
    assert "- config: n/a\n- dataset: n/a\n- key settings: n/a\n" in md
    back = parse_state(parse_document(md), "2026-03-11_train")
    assert back.config is None and back.dataset is None and back.key_settings == {}


def test_a_submission_that_never_ran_has_no_results_lines() -> None:
    state = finished(start=None, end=None, state="SUBMIT_FAILED", exit_code=None)
    assert labels(render_text(state), "## Results") == []


def test_every_section_of_the_table_renders_and_reads_back() -> None:
    """A section is declared once (runlog/sections.py); its renderer and reader exist."""
    from hpcwrap.runlog import adopt, render, sections

    kinds = [spec.kind for spec in sections.SECTIONS]
    assert len(kinds) == len(set(kinds))
    assert set(render.RENDERERS) == set(kinds)
    assert set(adopt.READERS) | {"title", "job"} == set(kinds)  # the title and jobs: own code
    headings = [spec.heading for spec in sections.SECTIONS if spec.heading]
    state = RunState(run_type="replication", objective="o", next=["n"])
    state.huggingface = {"repo": "a/b"}  # shown only once the model went public
    text = render.render_text(state)
    found = [line for line in text.splitlines() if line.startswith("## ")]
    assert found == headings  # in the table's order
