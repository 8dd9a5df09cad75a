"""The W&B transitions (WandbFound, WandbSynced, FiguresRead) as pure functions, how the
run log shows them, and the per-job WANDB_DATA_DIR the wrapper gives the training."""

from __future__ import annotations

import copy
import os
import pwd
from datetime import datetime, timedelta, timezone

from hpcwrap.job.jobenv import JobEnv, wandb_data_env
from hpcwrap.runlog import RunState, render_text
from hpcwrap.runlog.lifecycle import (
    FiguresRead,
    ResultFacts,
    Started,
    WandbFound,
    WandbSynced,
    apply,
    event_kind,
)

USER = pwd.getpwuid(os.getuid()).pw_name  # the folder name the wrapper uses
T0 = datetime(2026, 3, 11, 14, 0, tzinfo=timezone.utc)
A = "/work/wandb/offline-run-20260311_140100-chain001"
B = "/work/wandb/offline-run-20260311_160100-chain001"
URL = "https://wandb.ai/team/front-cam/runs/chain001"


def two_blocks() -> RunState:
    state = RunState(name="2026-03-11_train", run_type="replication", objective="o")
    state = apply(state, Started(T0, execution_id="12", in_slurm=True, restart_count=0))
    later = T0 + timedelta(hours=2)
    return apply(state, Started(later, execution_id="13", in_slurm=True, restart_count=0))


def test_found_runs_go_to_their_own_blocks_and_never_replace_what_the_output_named() -> None:
    state = two_blocks()
    state.jobs[0].wandb_local = A  # the wrapper read it from the output
    before = copy.deepcopy(state)
    new = apply(state, WandbFound(T0, (("12", "/elsewhere"), ("13", B))))
    assert state == before  # apply leaves its input alone
    assert [j.wandb_local for j in new.jobs] == [A, B]
    assert new.wandb_local == A  # the section had none: the first block's
    assert event_kind(WandbFound(T0, ())) == "wandb_found"


def test_synced_url_goes_into_every_block_it_covers_and_the_section() -> None:
    state = apply(two_blocks(), WandbFound(T0, (("12", A), ("13", B))))
    new = apply(
        state,
        WandbSynced(T0, URL, (A, B), public_url="https://wandb.ai/team/pub/runs/x", text="synced"),
    )
    assert [j.wandb_synced for j in new.jobs] == [URL, URL]
    assert new.wandb_synced == URL and new.wandb_public == "https://wandb.ai/team/pub/runs/x"
    assert new.status[-1].text == "synced"
    md = render_text(new)
    # Each block carries its own synced URL (the spec), not only the W&B section.
    assert md.count(f"- W&B synced: `{URL}`") == 2
    # the section lists both pieces of the chain, each with its job
    assert f"## W&B\n- local: `{A}` (job 12); `{B}` (job 13)\n- synced: `{URL}`\n- public: " in md


def test_a_forced_sync_again_replaces_the_url_only_where_it_synced() -> None:
    state = apply(two_blocks(), WandbFound(T0, (("12", A), ("13", B))))
    state = apply(state, WandbSynced(T0, URL, (A, B)))
    new = apply(state, WandbSynced(T0, URL + "-2", (B,)))
    assert [j.wandb_synced for j in new.jobs] == [URL, URL + "-2"]


def test_a_pending_block_still_says_how_to_sync_it() -> None:
    state = apply(two_blocks(), WandbFound(T0, (("12", A), ("13", B))))
    state = apply(state, WandbSynced(T0, URL, (A,)))
    md = render_text(state)
    assert f"- W&B synced: `{URL}`" in md
    assert f"- W&B synced: pending — run `wandb sync {B}`" in md


FIGURES = ResultFacts(
    final_step=90,
    first_loss=1.0,
    first_loss_text="1",
    loss=0.1,
    loss_text="0.1",
    first_val_loss=2.0,
    first_val_loss_text="2",
    val_loss=0.2,
    val_loss_text="0.2",
)


def test_figures_from_the_history_fill_results_and_say_where_they_came_from() -> None:
    new = apply(two_blocks(), FiguresRead(FIGURES, "W&B offline history of `x` (keys loss)"))
    res = new.results
    assert (res.start_train_loss, res.end_train_loss, res.final_step) == (1.0, 0.1, 90)
    md = render_text(new)
    assert "- start_train_loss: `1`\n- end_train_loss: `0.1`" in md
    assert "- figures from: W&B offline history of `x` (keys loss)" in md


def test_figures_never_replace_losses_the_training_printed() -> None:
    state = two_blocks()
    state.results.end_train_loss, state.results.end_train_loss_text = 0.5, "0.5000"
    new = apply(state, FiguresRead(FIGURES, "history"))
    assert new.results.end_train_loss == 0.5 and new.results.figures_from is None


def job(execution_id: str = "123") -> JobEnv:
    return JobEnv(in_slurm=True, execution_id=execution_id, job_id=execution_id)


def test_each_job_gets_its_own_wandb_data_dir_on_scratch_never_home() -> None:
    env = {"HOME": "/home/u", "SCRATCH": "/scratch/u", "TMPDIR": "/tmp/job"}
    assert wandb_data_env(env, job())["WANDB_DATA_DIR"] == f"/scratch/u/hpcwrap-wandb-{USER}/123"
    no_scratch = {"HOME": "/home/u", "TMPDIR": "/tmp/job"}
    assert (
        wandb_data_env(no_scratch, job("7_2"))["WANDB_DATA_DIR"]
        == f"/tmp/job/hpcwrap-wandb-{USER}/7_2"
    )
    configured = wandb_data_env(env, job(), "/fast/u")["WANDB_DATA_DIR"]
    assert configured == f"/fast/u/hpcwrap-wandb-{USER}/123"
    by_env = wandb_data_env({**env, "HPCWRAP_WANDB_DATA_DIR": "/x"}, job(), "/fast/u")
    assert by_env["WANDB_DATA_DIR"] == f"/x/hpcwrap-wandb-{USER}/123"
    # An execution id outside Slurm (host:pid, vm/zone) makes one folder name.
    outside = wandb_data_env(env, JobEnv(in_slurm=False, execution_id="vm-1/europe-west4-a"))
    assert outside["WANDB_DATA_DIR"] == f"/scratch/u/hpcwrap-wandb-{USER}/vm-1_europe-west4-a"
    assert not wandb_data_env(env, job())["WANDB_DATA_DIR"].startswith("/home/u")


def test_a_wandb_data_dir_the_user_set_is_kept() -> None:
    env = {"WANDB_DATA_DIR": "/mine", "SCRATCH": "/scratch/u"}
    assert wandb_data_env(env, job())["WANDB_DATA_DIR"] == "/mine"
