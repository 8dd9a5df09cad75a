"""Rendering and reading back the run-log Markdown: exact format and stable round trips."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from hpcwrap.runlog import (
    JobBlock,
    Results,
    RunState,
    StatusEntry,
    create_run,
    open_run,
    render_text,
)
from hpcwrap.runlog.adopt import parse_settings, parse_state
from hpcwrap.runlog.markdown import parse_document
from hpcwrap.runlog.render import fmt_settings
from tests.unit.runlog_fixtures.strategies import states

UTC = timezone.utc


def _reparse(text: str) -> RunState:
    return parse_state(parse_document(text), "2026-03-11_train")


def test_render_matches_the_spec_format() -> None:
    state = RunState(
        name="2026-03-11_train_front_cam",
        task="train_front_cam",
        description="front cam baseline",
        run_type="replication",
        objective="does training reproduce on this cluster?",
        script="`slurm/train.sh`",
        config="configurations/front_cam.yaml",
        dataset="`front_cam_v3.parquet` at `/data/front_cam/`",
        key_settings={"lr": "3e-4", "batch_size": "64"},
        jobs=[
            JobBlock(
                execution_id="12345",
                submitted=datetime(2026, 2, 25, 9, 0, tzinfo=UTC),
                start=datetime(2026, 2, 25, 9, 5, tzinfo=UTC),
                end=datetime(2026, 2, 26, 10, 6, 7, tzinfo=UTC),
                node="n1",
            ),
            JobBlock(
                execution_id="12346",
                resumed_from="/ckpt/step_100",
                wandb_synced="https://wandb.ai/t/p/runs/b",
            ),
        ],
        status=[
            StatusEntry(
                datetime(2026, 3, 11, 15, 0, tzinfo=UTC), "running, step 2400, train_loss 0.085"
            )
        ],
        results=Results(final_step=100000, end_val_loss=0.028, checkpoint="/ckpt/step_100000"),
        wandb_local="wandb/offline-run-20260311_150000-abc123",
        wandb_synced="https://wandb.ai/team/project/runs/abc123",
        next=["generate MODEL_PASSPORT.json + SIGNOFF.json for the checkpoint"],
    )
    assert render_text(state) == (
        "# train_front_cam — front cam baseline\n"
        "\n## Mode\n- run_type: replication\n"
        "- objective: does training reproduce on this cluster?\n"
        "\n## Config\n- script: `slurm/train.sh`\n- config: `configurations/front_cam.yaml`\n"
        "- dataset: `front_cam_v3.parquet` at `/data/front_cam/`\n"
        "- key settings: lr=3e-4, batch_size=64\n"
        "\n## Job\n- execution_id: 12345\n"
        "- submitted/start: `2026-02-25T09:05:00+00:00`\n"
        "- start_human: `Wednesday, Feb 25th, 2026`\n"
        "- end: `2026-02-26T10:06:07+00:00`\n- end_human: `Thursday, Feb 26th, 2026`\n"
        "- runtime: `25:01:07`\n- node: n1\n"
        "- submitted: `2026-02-25T09:00:00+00:00`\n"
        "\n## Job (resumed)\n- execution_id: 12346\n- resumed from: `/ckpt/step_100`\n"
        "- W&B synced: `https://wandb.ai/t/p/runs/b`\n"
        "\n## Status\n- 2026-03-11 15:00 — running, step 2400, train_loss 0.085\n"
        "\n## Results\n"
        "- runtime: `25:01:07` "
        "(start `2026-02-25T09:05:00+00:00`, end `2026-02-26T10:06:07+00:00`)\n"
        "- final step: 100000\n- start_train_loss: n/a\n- end_train_loss: n/a\n"
        "- start_val_loss: n/a\n- end_val_loss: `0.028`\n- loss_one_liner:\n"
        "- checkpoint: `/ckpt/step_100000`\n- config_snapshot: n/a\n"
        "\n## W&B\n- local: `wandb/offline-run-20260311_150000-abc123`\n"
        "- synced: `https://wandb.ai/team/project/runs/abc123`\n- notes:\n"
        "\n## Next\n- generate MODEL_PASSPORT.json + SIGNOFF.json for the checkpoint\n"
    )


def test_times_render_in_utc_whatever_the_input_zone() -> None:
    from datetime import timedelta

    pst = timezone(timedelta(hours=-8))
    state = RunState(
        task="t", status=[StatusEntry(datetime(2026, 3, 11, 23, 30, tzinfo=pst), "late")]
    )
    assert "- 2026-03-12 07:30 — late\n" in render_text(state)


def test_multiline_values_become_continuation_lines_and_read_back() -> None:
    state = RunState(
        task="t", next=["resume for more steps: edit X\nthen resubmit"], wandb_notes="a\n\n  b  "
    )
    text = render_text(state)
    assert "- resume for more steps: edit X\n  then resubmit\n" in text
    assert "- notes: a\n    b\n" in text
    back = _reparse(text)
    assert back.next == ["resume for more steps: edit X\nthen resubmit"]
    assert back.wandb_notes == "a\n  b"


def test_non_finite_losses_round_trip() -> None:
    state = RunState(
        task="t",
        results=Results(start_train_loss=math.nan, end_train_loss=math.inf, end_val_loss=-0.0),
    )
    back = _reparse(render_text(state)).results
    assert back.start_train_loss is not None and math.isnan(back.start_train_loss)
    assert back.end_train_loss == math.inf
    assert back.end_val_loss == 0.0 and math.copysign(1, back.end_val_loss) == -1


def test_key_settings_with_awkward_values_round_trip() -> None:
    settings_ = {
        "lr": "3e-4",
        "note": "a, b",
        "eq": "x=y",
        "": "empty key",
        "flag": "",
        ' q"': "\n",
    }
    assert parse_settings(fmt_settings(settings_)) == settings_


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states)
def test_render_parse_render_is_stable(state: RunState) -> None:
    first = render_text(state)
    again = render_text(_reparse(first))
    assert again == first
    # and a third time changes nothing either
    assert render_text(_reparse(again)) == first


def test_wandb_synced_says_pending_until_a_url_is_known(tmp_path: Path) -> None:
    local = "/scratch/u/wandb/offline-run-20260311_150000-abc123"
    state = RunState(task="train", run_type="replication", objective="o")
    log = create_run(tmp_path, state)
    log.update(lambda s: s.jobs.append(JobBlock(execution_id="7", wandb_local=local)))
    log.update(lambda s: setattr(s, "wandb_local", local))
    text = log.path.read_text()
    pending = f"pending — run `wandb sync {local}`"
    assert f"- W&B synced: {pending}" in text and f"- synced: {pending}" in text
    assert open_run(log.path).read().wandb_synced is None
    url = "https://wandb.ai/team/project/runs/abc123"
    log.update(lambda s: setattr(s, "wandb_synced", url))
    text = log.path.read_text()
    assert f"- synced: `{url}`" in text and f"- W&B synced: {pending}" in text


def test_wandb_section_lists_every_piece_of_a_chain(tmp_path: Path) -> None:
    """Each job of a chain makes its own offline run (one W&B run id): the section lists
    them all, not the first alone; each job block still names its own."""
    a = "/s/wandb/offline-run-20261207_150000-abc123"
    b = "/s/wandb/offline-run-20261207_151000-abc123"
    log = create_run(tmp_path, RunState(task="train", run_type="replication", objective="o"))
    log.update(lambda s: s.jobs.extend([JobBlock(execution_id="7", wandb_local=a),
                                         JobBlock(execution_id="9", wandb_local=b)]))  # fmt: skip
    log.update(lambda s: setattr(s, "wandb_local", a))
    text = log.path.read_text()
    assert f"- local: `{a}` (job 7); `{b}` (job 9)" in text
    assert render_text(_reparse(text)) == text
    assert open_run(log.path).read().wandb_local == a


@pytest.mark.parametrize(
    ("first", "run"),
    [("1", "0"), ("`0`", "`0`")],  # the run's own not first; a path in a code span
)
def test_a_chains_wandb_pieces_round_trip(first: str, run: str) -> None:
    """Two cases the round-trip property found: the list of a chain's W&B pieces is
    rendered only where reading it back gives the run's own W&B folder."""
    state = RunState(name="2026-03-11_train", task="t", run_type="replication",
                     jobs=[JobBlock(wandb_local=first), JobBlock(wandb_local="1" if first != "1"
                                                                   else "0")],
                     wandb_local=run)  # fmt: skip
    text = render_text(state)
    assert render_text(_reparse(text)) == text
