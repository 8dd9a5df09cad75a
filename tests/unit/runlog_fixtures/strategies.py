"""Hypothesis strategies for run-log tests (RunState values, human edits)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

from hpcwrap.runlog.model import JobBlock, Results, RunState, StatusEntry

# Any text a person or a program might put in a field: unicode, newlines, CR,
# backticks, dashes, markdown-looking bits. Only NUL and lone surrogates are out
# (no file on disk holds them as UTF-8).
_chars = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")
text = st.text(_chars, max_size=30)
markdownish = st.sampled_from(
    ["## Status", "# title", "- key: v", "```", "<!-- x -->", "`a`", "a — b", " — ", "|", "\\"]
)
field_text = st.one_of(text, markdownish, st.lists(markdownish | text, max_size=3).map("\n".join))
opt_text = st.none() | field_text
name_text = st.text(st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=12)

offsets = st.sampled_from([0, 60, -300, 330, 540]).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2099, 12, 31), timezones=offsets
)
opt_moment = st.none() | moments
floats = st.floats(allow_nan=True, allow_infinity=True)
opt_float = st.none() | floats
opt_int = st.none() | st.integers(min_value=-(2**40), max_value=2**40)

jobs = st.builds(
    JobBlock,
    execution_id=opt_text,
    cluster=opt_text,
    submitted=opt_moment,
    start=opt_moment,
    end=opt_moment,
    node=opt_text,
    state=st.none() | st.sampled_from(["SUBMITTED", "RUNNING", "COMPLETED", "TIMEOUT"]),
    exit_code=opt_int,
    restart_count=opt_int,
    resumed_from=opt_text,
    wandb_local=opt_text,
    wandb_synced=opt_text,
    submit_error=opt_text,
)
results = st.builds(
    Results,
    final_step=opt_int,
    start_train_loss=opt_float,
    end_train_loss=opt_float,
    start_val_loss=opt_float,
    end_val_loss=opt_float,
    loss_one_liner=opt_text,
    checkpoint=opt_text,
    config_snapshot=opt_text,
)
status = st.builds(StatusEntry, when=moments, text=field_text)
hf_keys = st.sampled_from(["repo", "uploaded checkpoints", "includes", "signoff verdict"])

states = st.builds(
    RunState,
    name=st.just("2026-03-11_train"),
    task=name_text,
    description=field_text,
    group=st.none(),
    run_type=st.sampled_from(["replication", "experiment", "pipeline (data generation)"])
    | field_text,
    objective=field_text,
    script=opt_text,
    config=opt_text,
    dataset=opt_text,
    key_settings=st.dictionaries(text, text, max_size=4),
    code=opt_text,
    jobs=st.lists(jobs, max_size=3),
    status=st.lists(status, max_size=5),
    results=results,
    wandb_local=opt_text,
    wandb_synced=opt_text,
    wandb_notes=opt_text,
    next=st.lists(field_text, max_size=3),
    huggingface=st.dictionaries(hf_keys, text, max_size=3),
)
