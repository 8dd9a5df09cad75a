"""Secrets never reach a run log, state.json, events.jsonl or an error message; copies of a
private config stay private. Each secret is planted the way a user or a trainer would."""

from __future__ import annotations

import io
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hpcwrap.cli import main
from hpcwrap.job.wrapper import WrapperOptions, run_command
from hpcwrap.redact import REDACTED, find_sensitive, redact_argv, redact_settings, redact_text
from hpcwrap.runlog import RunState, create_run, open_run

# Obviously fake values in the formats the redactor must catch.
FAKE_WANDB_KEY = "0123456789abcdef" * 2 + "01234567"
FAKE_HF_SHORT = "hf_" + "FAKEfake12"  # shorter than a real token
SECRETS = (FAKE_WANDB_KEY, FAKE_HF_SHORT, "sekrit-db-pw", "alice-url-pw", "cli-pw-9")


def everything_written(run_logs: Path) -> str:
    """Every file under run_logs/ (Markdown, state.json, events.jsonl, indexes), as text."""
    parts = []
    for path in sorted(run_logs.rglob("*")):
        if path.is_file() and path.name != "job.sh":  # job.sh must run with the real values
            parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            f"wandb.errors.AuthenticationError: WANDB_API_KEY={FAKE_WANDB_KEY} invalid",
            f"wandb.errors.AuthenticationError: WANDB_API_KEY={REDACTED} invalid",
        ),
        ('{"api_key": "abc123", "lr": 3}', f'{{"api_key": "{REDACTED}", "lr": 3}}'),
        ("--db-pass x --lr 3", f"--db-pass {REDACTED} --lr 3"),
        ("https://alice:pw@h.example/d.parquet", f"https://alice:{REDACTED}@h.example/d.parquet"),
        (f"token {FAKE_HF_SHORT} rejected", f"token {REDACTED} rejected"),
        ("Authorization: Bearer abc.def", f"Authorization: {REDACTED} {REDACTED}"),
        # not secrets: prose and the usual training words stay as they are
        ("step 10, train_loss 2.373", "step 10, train_loss 2.373"),
        ("tokenizer: gpt2, max_tokens=512", "tokenizer: gpt2, max_tokens=512"),
        ("FATAL: password authentication failed", "FATAL: password authentication failed"),
        ("author: Ana", "author: Ana"),
    ],
)
def test_redact_text(text: str, want: str) -> None:
    assert redact_text(text) == want


def test_names_that_mark_secrets() -> None:
    assert redact_settings({"db_pass": "x", "passwd": "y", "lr": "3"}) == {
        "db_pass": REDACTED,
        "passwd": REDACTED,
        "lr": "3",
    }
    assert redact_argv(["--db-pass", "x", "--my-secret=y", "S3_KEY=z", "--epochs", "3"]) == [
        "--db-pass",
        REDACTED,
        f"--my-secret={REDACTED}",
        f"S3_KEY={REDACTED}",
        "--epochs",
        "3",
    ]


def test_planted_secrets_never_reach_the_run_log_state_or_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    rc = main(
        [
            "log",
            "new",
            "--mode",
            "replication",
            "--objective",
            "secrets stay out",
            "--set",
            "db_pass=sekrit-db-pw",
            "--set",
            "lr=3e-4",
            "--dataset",
            "https://alice:alice-url-pw@data.example/train.parquet",
            "--script",
            f"python train.py --db-pass cli-pw-9 --hf {FAKE_HF_SHORT}",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    log = open_run(out.strip())
    # The training prints a secret in its error text, as wandb does on a bad key.
    crash = (
        "import sys\n"
        "print('step 1 loss 2.0', flush=True)\n"
        f"raise SystemExit('wandb.errors.UsageError: WANDB_API_KEY={FAKE_WANDB_KEY} "
        "is not valid')\n"
    )
    messages = io.StringIO()
    fd = os.open(tmp_path / "job.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        outcome = run_command(
            [sys.executable, "-c", crash],
            log,
            WrapperOptions(stdout_fd=fd, stderr_fd=fd, err=messages, cwd=tmp_path, environ={}),
        )
    finally:
        os.close(fd)
    assert outcome.exit_code == 1 and outcome.state == "FAILED"
    written = everything_written(tmp_path / "run_logs")
    assert "WANDB_API_KEY=***" in written  # the error itself is still recorded
    assert "https://alice:***@data.example/train.parquet" in written
    for secret in SECRETS:
        assert secret not in written
        assert secret not in messages.getvalue()
    # the job's own output is the user's, untouched
    assert FAKE_WANDB_KEY in (tmp_path / "job.out").read_text()


def test_an_error_message_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    rc = main(["log", "note", f"run-with-HF_TOKEN={FAKE_HF_SHORT}", "hello"])
    _, err = capsys.readouterr()
    assert rc != 0 and "hpcwrap: error:" in err and FAKE_HF_SHORT not in err


# ---------------------------------------------------------------- permissions of copies


def _new_with_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: int) -> Path:
    cfg = tmp_path / "secret.yaml"
    cfg.write_text("db_password: hunter2\n")
    cfg.chmod(mode)
    rc = main(["log", "new", "--mode", "replication", "--objective", "o", "--config", str(cfg)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    log = open_run(out.strip())
    return log.sidecar / "config" / "secret.yaml"


@pytest.mark.parametrize(
    ("source", "umask", "want"),
    [(0o600, 0o022, 0o600), (0o644, 0o022, 0o644), (0o644, 0o077, 0o600), (0o640, 0o027, 0o640)],
)
def test_config_copy_is_never_wider_than_its_original(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: int,
    umask: int,
    want: int,
) -> None:
    monkeypatch.chdir(tmp_path)
    old = os.umask(umask)
    try:
        copy = _new_with_config(tmp_path, capsys, source)
    finally:
        os.umask(old)
    assert copy.read_text() == "db_password: hunter2\n"
    assert copy.stat().st_mode & 0o777 == want


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root")
def test_another_user_cannot_read_the_copy_of_a_private_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # pytest's tmp folders are 0700: use one the other user may walk, so only the
    # copy's own mode can stop them.
    base = Path(tempfile.mkdtemp(prefix="hpcwrap-perm-"))
    try:
        base.chmod(0o755)
        monkeypatch.chdir(base)
        copy = _new_with_config(base, capsys, 0o600)
        other = pwd.getpwnam("nobody").pw_name

        def cat(path: Path) -> subprocess.CompletedProcess[str]:
            argv = ["runuser", "-u", other, "--", "cat", str(path)]
            return subprocess.run(argv, capture_output=True, text=True)

        res = cat(copy)
        assert res.returncode != 0 and "Permission denied" in res.stderr
        assert "hunter2" not in res.stdout
        # the same user reads a world-readable file beside it, so the check can fail
        public = copy.with_name("public.txt")
        public.write_text("ok")
        public.chmod(0o644)
        assert cat(public).stdout == "ok"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_resolved_config_copy_keeps_its_mode(tmp_path: Path) -> None:
    from hpcwrap.job.results import keep_config_copy

    src = tmp_path / "resolved.yaml"
    src.write_text("token: x\n")
    src.chmod(0o600)
    log = create_run(tmp_path / "run_logs", RunState(objective="o"))
    copy = keep_config_copy(src, log.sidecar, "12")
    assert copy is not None and copy.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        # a quoted value is hidden whole (before: '*** horse battery staple')
        ("password: 'correct horse battery staple'", "horse", "password: '***'"),
        ('db_password = "two words"', "two words", 'db_password = "***"'),
        # a compound secret name, then a space
        (
            "aws_secret_access_key wJalrXUtnFEMIK7MDENGbPxRfiCY",
            "wJalrX",
            "aws_secret_access_key ***",
        ),
        ("GitLab glpat-abcdefghij0123456789 pushed", "glpat-", "GitLab *** pushed"),
        ("maps AIzaSyA1234567890abcdefghijklmnopqrstuv key", "AIzaSy", "maps *** key"),
        ("db pwd=hunter2 ok", "hunter2", "db pwd=*** ok"),
        (
            "k -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA\n"
            "-----END OPENSSH PRIVATE KEY----- z",
            "b3BlbnNzaA",
            "k -----BEGIN OPENSSH PRIVATE KEY----- *** z",
        ),
        ("-----BEGIN RSA PRIVATE KEY----- MIIEow", "MIIEow", "-----BEGIN RSA PRIVATE KEY----- ***"),
    ],
)
def test_redaction_gaps_a_hostile_tester_found(text: str, hidden: str, kept: str) -> None:
    out = redact_text(text)
    assert hidden not in out and out == kept
    assert find_sensitive(text, personal=False)  # export's check finds it too


@pytest.mark.parametrize(
    "text", ["PWD=/home/u/proj", "OLDPWD=/tmp", "the token 5 is fine", "max_tokens 50"]
)
def test_what_is_not_a_secret_stays(text: str) -> None:
    assert redact_text(text) == text
