"""`hpcwrap export`: a hand-written run log planted with everything a public log may not
hold keeps none of it, and keeps every step and loss figure, the one-liner and the public
W&B link."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hpcwrap.cli import main
from hpcwrap.publish.sanitize import Context, check, sanitize
from hpcwrap.runlog import JobBlock, Results, RunState, create_run, lifecycle

# Obviously fake values, in the formats the export must catch.
WANDB_KEY = "0123456789abcdef" * 2 + "01234567"
HF_TOKEN = "hf_" + "FAKEfakeFAKEfake1234"
AWS_KEY_ID = "AKIA" + "FAKEFAKEFAKEFAKE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAKEFAKEKEY"
EMAIL = "alice.smith@uni.example.edu"
ONE_LINER = "Train loss fell steadily; val loss tracked it; no sign of overfitting."
PRIVATE_WANDB = "https://wandb.ai/alice/vla-private/runs/abc123"
PUBLIC_WANDB = "https://wandb.ai/vla-team/vla-public/runs/abc123"
HOME_CKPT = "/home/alice/vla/ckpt/30000"

PLANTED = f"""\
# train — vla finetune on the front camera

## Mode
- run_type: replication
- objective: does the finetune reach the paper's loss on this cluster?

## Config
- script: `slurm/train.sh` --resume auto --wandb-key {WANDB_KEY}
- config: `/scratch/alice/vla/configs/front.yaml`
- dataset: `front.parquet` at `/project/p123/alice/data/front` (contact {EMAIL})
- key settings: lr=3e-4, batch_size=64, HF_TOKEN={HF_TOKEN}
- code: git `a13f344729bf` (branch main), clean

## Job
- execution_id: 4812345
- submitted/start: `2026-03-11T15:00:02+00:00`
- start_human: `Wednesday, Mar 11th, 2026`
- end: `2026-03-12T14:30:00+00:00`
- end_human: `Thursday, Mar 12th, 2026`
- runtime: `23:29:58`
- node: nid001234
- cluster: frontier
- state: TIMEOUT

## Job (resumed)
- execution_id: 4812399
- submitted: 2026-03-12 15:00 UTC
- resumed from: `/scratch/alice/vla/ckpt/30000`
- node: nid001299
- W&B synced: `{PRIVATE_WANDB}`

## Status
- 2026-03-11 15:00 — running on nid001234 as alice@login03, step 2400/100000, train_loss 0.0853
- 2026-03-11 21:10 — job 4812345 at step 30000, train_loss 0.0412, val_loss 0.0455; at {HOME_CKPT}
- 2026-03-12 14:30 — timeout; see slurm-4812345.out; resumed as job 4812399 (afterany:4812345)
- 2026-03-12 15:05 — export AWS_ACCESS_KEY_ID={AWS_KEY_ID} AWS_SECRET_ACCESS_KEY={AWS_SECRET}
- 2026-03-13 09:00 — completed, exit code 0, step 60000/100000, train_loss 0.0231, val_loss 0.0289

## Results
- runtime: `41:12:07` (start `2026-03-11T15:00:02+00:00`, end `2026-03-13T09:00:00+00:00`)
- final step: 60000
- start_train_loss: `2.3731`
- end_train_loss: `0.0231`
- start_val_loss: `1.6468`
- end_val_loss: `0.0289`
- loss_one_liner: {ONE_LINER}
- checkpoint: `/scratch/alice/vla/ckpt/60000`
- config_snapshot: `/home/alice/vla/runs/front/config_resolved.yaml`
- config_copy: `.hpcwrap/2026-03-11_train/config/resolved_4812345_config_resolved.yaml`
- wandb run id: `/scratch/alice/vla/runs/front/wandb_id.txt`

## W&B
- local: `/scratch/alice/vla/wandb/offline-run-20260311_150000-abc123`
- synced: `{PRIVATE_WANDB}`
- public: `{PUBLIC_WANDB}`
- notes: smooth curves; password: hunter2-notes was in the notes by mistake

## Next
- generate `MODEL_PASSPORT.json` + `SIGNOFF.json` for `/scratch/alice/vla/ckpt/60000`
"""

SENSITIVE = (
    "4812345",
    "4812399",
    "nid001234",
    "nid001299",
    "frontier",
    "login03",
    "alice",
    "/scratch",
    "/home",
    "/project",
    "p123/alice",
    WANDB_KEY,
    HF_TOKEN,
    AWS_KEY_ID,
    AWS_SECRET,
    "hunter2-notes",
    EMAIL,
    "wandb_id.txt",
    PRIVATE_WANDB,
)


_FIGURE = re.compile(
    r"(?:\bstep|train_loss|val_loss|exit code|final step:|_loss: `|runtime: `|start `|end `)"
    r"\s*([\d.:/T+-]+)"
)


def _figures(text: str) -> list[str]:
    """Every figure of the training dynamics: steps, losses, runtimes, times."""
    return _FIGURE.findall(text)


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    log = tmp_path / "run_logs" / "2026-03-11_train.md"
    log.parent.mkdir()
    log.write_text(PLANTED)
    return log


def test_export_of_a_planted_log_keeps_none_of_it_and_every_figure(
    planted: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    before = planted.read_bytes()
    rc = main(["export", "2026-03-11_train", "-o", "TRAINING_LOG.md"])
    _, err = capsys.readouterr()
    assert rc == 0, err
    out = (tmp_path / "TRAINING_LOG.md").read_text()
    for secret in SENSITIVE:
        assert secret not in out, secret
    figures = _figures(PLANTED)
    assert len(figures) >= 18 and "0.0455" in figures  # the check below can fail
    for figure in figures:
        assert figure in out, figure
    assert f"loss_one_liner: {ONE_LINER}" in out
    assert out.count(PUBLIC_WANDB) == 3  # job block, synced, public: all the public link
    # placeholders that keep the meaning
    assert "`<scratch>/vla/ckpt/60000`" in out
    assert "at <home>/vla/ckpt/30000" in out
    assert "- node: <node1>" in out and "- node: <node2>" in out
    assert "running on <node1> as <user>@<host>" in out
    assert "slurm-<job-id>.out" in out and "(afterany:<job-id>)" in out
    assert "HF_TOKEN=<hf-token>" in out and "AWS_SECRET_ACCESS_KEY=<aws-secret>" in out
    # the summary counts by kind; the run log itself is untouched, and no sidecar appeared
    assert "export:      7 job ids" in err
    assert "export:      1 Hugging Face tokens" in err and "export:      1 emails" in err
    assert "private link(s) replaced by the public one" in err
    assert planted.read_bytes() == before
    assert not (planted.parent / ".hpcwrap").exists()


def test_check_passes_the_export_and_fails_the_original(
    planted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "TRAINING_LOG.md"
    assert main(["export", str(planted), "-o", str(out)]) == 0
    assert main(["export", "--check", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", "--check", str(planted)]) == 19
    listing, err = capsys.readouterr()
    assert f"{planted}:8: W&B API keys" in listing
    assert "still hold something sensitive" in err


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("- execution_id: 4812345", "job id"),
        ("- job_id: 4812345", "job id"),
        ("see slurm-4812345.out for the trace", "job id"),
        ("Submitted batch job 4812345", "job id"),
        ("- node: nid001234", "node name"),
        ("slurmstepd: error: *** STEP ON nid004321 CANCELLED", "node name"),
        ("saved to /scratch/bob/ckpt/30000", "scratch path"),
        ("config at /home/bob/cfg.yaml", "home path"),
        ("data in /project/p1/data", "project path"),
        (f"WANDB_API_KEY={WANDB_KEY}", "W&B API key"),
        (f"wandb login {WANDB_KEY}", "W&B API key"),
        (f"token {HF_TOKEN} rejected", "Hugging Face token"),
        (f"aws_access_key_id = {AWS_KEY_ID}", "AWS access key id"),
        (f"aws_secret_access_key: {AWS_SECRET}", "AWS secret"),
        ("--db-password s3cret", "password"),
        ("Authorization: Bearer abc.def.ghi", "bearer token"),
        ("https://bob:pw@data.example/x", "password in a URL"),
        (f"mail {EMAIL}", "email"),
        ("resume id in runs/x/wandb_id.txt", "wandb_id.txt"),
    ],
)
def test_check_catches_each_kind(line: str, kind: str) -> None:
    found = check(f"# log\n{line}\n- step 100, train_loss 0.5\n")
    assert [(f.line, kind in f.kinds) for f in found] == [(2, True)]


def test_check_catches_the_runs_own_names_given_as_context() -> None:
    ctx = Context(users={"bob"}, hosts={"gpu-login7"}, nodes=["g17"], clusters={"big"})
    text = "bob ran it on g17 from gpu-login7 (cluster big)\nstep 5 loss 1.0\n"
    (found,) = check(text, ctx)
    assert found.line == 1
    assert set(found.kinds) == {"username", "node name", "hostname", "cluster name"}


def test_a_job_id_equal_to_a_step_takes_no_figure_with_it() -> None:
    text = (
        "- execution_id: 30000\n"
        "- 2026-03-11 21:10 — job 30000 at step 30000, train_loss 0.30000\n"
        "- checkpoint: `ckpt/30000`\n- final step: 30000\n"
    )
    out, summary = sanitize(text)
    assert summary.removed["job id"] == 2
    assert "step 30000, train_loss 0.30000" in out
    assert "`ckpt/30000`" in out and "- final step: 30000" in out


def test_dev_cluster_node_names_become_numbered_placeholders() -> None:
    text = (
        "- node: n1\n- node: n2\n"
        "- 2026 — restarted on n2 after n1 failed; n1x and gn1 are no nodes\n"
    )
    out, _ = sanitize(text)
    assert out.splitlines() == [
        "- node: <node1>",
        "- node: <node2>",
        "- 2026 — restarted on <node2> after <node1> failed; n1x and gn1 are no nodes",
    ]
    assert sanitize("- nodes: n[1-2]\non n2\n")[0] == "- nodes: <nodes>\non <node2>\n"


def test_a_kept_link_whose_entity_is_a_local_username_warns() -> None:
    text = f"- synced: `{PRIVATE_WANDB}`\n"
    out, summary = sanitize(text, Context(users={"alice"}))
    assert PRIVATE_WANDB in out  # kept: the link is the curves
    (warning,) = summary.warnings
    assert "'alice'" in warning and "local username" in warning


def test_a_second_export_finds_nothing() -> None:
    once, first = sanitize(PLANTED)
    twice, second = sanitize(once)
    assert first.removed and not second.removed and twice == once
    assert check(once) == []


def test_export_of_an_hpcwrap_run_log_uses_its_recorded_facts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "proj"
    state = RunState(
        task="train",
        run_type="replication",
        objective="o",
        jobs=[JobBlock(execution_id="77", node="gpu17", cluster="bigcluster", state="COMPLETED")],
        status=[],
        results=Results(final_step=77, checkpoint=str(repo / "out/ckpt/77")),
    )
    log = create_run(repo / "run_logs", state)
    when = datetime(2026, 3, 11, 15, tzinfo=timezone.utc)
    log.record(lifecycle.ProgressObserved(when, "running on gpu17, step 77, train_loss 7.7"))
    monkeypatch.chdir(repo)
    assert main(["export", log.name]) == 0
    out, _ = capsys.readouterr()
    assert "gpu17" not in out and "bigcluster" not in out and "execution_id: 77" not in out
    assert "step 77, train_loss 7.7" in out and "- final step: 77" in out
    assert "`<repo>/out/ckpt/77`" in out
    assert str(tmp_path) not in out


def test_export_never_writes_over_the_run_log(
    planted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = planted.read_bytes()
    assert main(["export", str(planted), "-o", str(planted)]) == 2
    assert "writes a separate copy" in capsys.readouterr().err
    assert planted.read_bytes() == before


def test_a_cluster_named_like_a_word_is_replaced_only_in_its_field() -> None:
    out, summary = sanitize("- cluster: cluster\n- objective: does it train on this cluster?\n")
    assert out == "- cluster: <cluster>\n- objective: does it train on this cluster?\n"
    assert summary.removed["cluster name"] == 1


def test_the_run_logs_own_redaction_gained_the_new_key_formats() -> None:
    from hpcwrap.redact import REDACTED, redact_text

    assert redact_text(f"$ wandb login {WANDB_KEY}") == f"$ wandb login {REDACTED}"
    temporary = "ASIA" + "FAKEFAKEFAKEFAKE"
    assert redact_text(f"id {temporary} expired") == f"id {REDACTED} expired"
    # emails are personal, not secret: the run log keeps them, only export removes them
    assert redact_text(f"contact {EMAIL}") == f"contact {EMAIL}"
    assert redact_text("sha256 MODEL_PASSPORT.json: ok") == "sha256 MODEL_PASSPORT.json: ok"


def test_a_user_name_seen_once_is_gone_everywhere() -> None:
    """A home named u.<user> and an email: the user part goes from every other path and
    word too (before: `zz9x` stayed in /lus/scratch/zz9x/..., the email's user elsewhere)."""
    text = (
        "- script: `/home/u.zz9x/proj/train.sh`\n"
        "- checkpoint: `/lus/scratch/zz9x/runs/ckpt/100`\n"
        "- notes: ask jdoe42@example.org; jdoe42 owns /data/jdoe42/set\n"
    )
    out, _ = sanitize(text)
    assert "zz9x" not in out and "jdoe42" not in out, out
    assert "proj/train.sh" in out and "runs/ckpt/100" in out
