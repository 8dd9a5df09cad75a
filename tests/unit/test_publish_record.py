"""`hpcwrap publish record`: the `## HuggingFace` section with the signoff verdict (a
soft_signal's verdict_reason verbatim), and `--upload`, which cannot reach the hub here:
it is tested up to the call, against a stand-in for huggingface_hub's HfApi."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from hpcwrap.cli import main
from hpcwrap.errors import MissingExtraError
from hpcwrap.publish import record as record_mod
from hpcwrap.runlog import Results, RunLog, RunState, create_run, open_run
from tests.unit.test_publish_gate import make_checkpoint

REASON = (
    'val loss on the "wrist" split is 3% above the baseline (0.0301 vs 0.0292); '
    "accepted for release: see eval #12 — action chunking unaffected"
)


def _run(tmp_path: Path, verdict: str = "pass", reason: str | None = None) -> RunLog:
    ckpt = make_checkpoint(tmp_path / "ckpt" / "30000", verdict=verdict, reason=reason)
    state = RunState(task="train", objective="o", results=Results(checkpoint=str(ckpt)))
    return create_run(tmp_path / "run_logs", state)


def _package(log: RunLog, tmp_path: Path) -> Path:
    out = tmp_path / "public"
    assert main(["publish", "package", log.name, "--out", str(out)]) == 0
    return out


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_record_writes_the_section_from_the_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _run(tmp_path)
    pkg = _package(log, tmp_path)
    rc = main(["publish", "record", log.name, "--hf-repo", "ana/vla-front", "--from", str(pkg)])
    assert rc == 0, capsys.readouterr().err
    text = log.path.read_text()
    section = text.split("## HuggingFace\n", 1)[1]
    # packaged, not uploaded (no --upload): the line says so (it said "uploaded")
    assert section.splitlines()[:4] == [
        "- repo: https://huggingface.co/ana/vla-front",
        f"- uploaded checkpoints: not uploaded by hpcwrap; packaged: 30000 (params only), "
        f"in `{pkg}`",
        "- includes: README, TRAINING_LOG, MODEL_PASSPORT.json, SIGNOFF.json",
        "- signoff verdict: `pass`",
    ]
    assert open_run(str(log.path)).read().huggingface["signoff verdict"] == "`pass`"


def test_soft_signal_reason_is_carried_verbatim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _run(tmp_path, "soft_signal", REASON)
    rc = main(
        [
            "publish",
            "record",
            log.name,
            "--hf-repo",
            "https://huggingface.co/ana/vla-front",
            "--uploaded",
            "30000 (params only)",
            "--includes",
            "README, TRAINING_LOG, MODEL_PASSPORT.json, SIGNOFF.json, assets",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert f"- signoff verdict: `soft_signal` — verdict_reason: {REASON}\n" in log.path.read_text()
    stated = "30000 (params only) (as stated with --uploaded; hpcwrap did not upload it)"
    assert f"- uploaded checkpoints: {stated}\n" in log.path.read_text()
    signoff = json.loads((tmp_path / "ckpt/30000/SIGNOFF.json").read_text())
    assert signoff["verdict_reason"] == REASON


def test_record_is_refused_while_the_gate_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _run(tmp_path)
    (tmp_path / "ckpt/30000/SIGNOFF.json").unlink()
    before = log.path.read_bytes()
    argv = ["publish", "record", log.name, "--hf-repo", "ana/x", "--uploaded", "30000"]
    assert main([*argv, "--includes", "README"]) == 18
    assert "SIGNOFF.json: missing" in capsys.readouterr().err
    assert log.path.read_bytes() == before


class StandInHfApi:
    """Records what hpcwrap asks of huggingface_hub's HfApi (the hub is not reachable here)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def create_repo(self, **kwargs: Any) -> None:
        self.calls.append(("create_repo", kwargs))

    def upload_folder(self, **kwargs: Any) -> None:
        self.calls.append(("upload_folder", kwargs))


def test_upload_reaches_a_standin_hub_api_after_the_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _run(tmp_path)
    pkg = _package(log, tmp_path)
    standin = StandInHfApi()
    monkeypatch.setattr(record_mod, "hf_api", lambda: standin)
    argv = ["publish", "record", log.name, "--hf-repo", "ana/vla", "--from", str(pkg), "--upload"]
    assert main(argv) == 0, capsys.readouterr().err
    assert [name for name, _ in standin.calls] == ["create_repo", "upload_folder"]
    upload = standin.calls[1][1]
    assert upload["folder_path"] == str(pkg) and upload["repo_id"] == "ana/vla"
    assert upload["repo_type"] == "model"
    assert "- repo: https://huggingface.co/ana/vla" in log.path.read_text()
    assert "- uploaded checkpoints: 30000 (params only)\n" in log.path.read_text()


def test_upload_to_a_standin_never_happens_when_the_package_fails_the_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _run(tmp_path)
    pkg = _package(log, tmp_path)
    (pkg / "checkpoints/30000/params/model.safetensors").write_bytes(b"swapped")
    standin = StandInHfApi()
    monkeypatch.setattr(record_mod, "hf_api", lambda: standin)
    before = log.path.read_bytes()
    argv = ["publish", "record", log.name, "--hf-repo", "ana/vla", "--from", str(pkg), "--upload"]
    assert main(argv) == 18
    assert "model.safetensors: sha256 mismatch" in capsys.readouterr().err
    assert standin.calls == [] and log.path.read_bytes() == before


def test_upload_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'hpcwrap\[hf\]'"):
        record_mod.hf_api()


@pytest.mark.parametrize("bad", ["vla", "a/b/c", "https://example.com/a/b", "/x"])
def test_a_bad_repo_name_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="give it as user/repo"):
        record_mod.repo_id(bad)


def test_the_standin_calls_fit_the_installed_huggingface_hub(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the stand-in received binds to the real HfApi's signatures (where installed)."""
    import inspect

    hub = pytest.importorskip("huggingface_hub")
    log = _run(tmp_path)
    pkg = _package(log, tmp_path)
    standin = StandInHfApi()
    record_mod.upload(pkg, "ana/vla", api_factory=lambda: standin)
    for name, kwargs in standin.calls:
        inspect.signature(getattr(hub.HfApi, name)).bind(None, **kwargs)


def test_the_published_transition_is_pure_and_keeps_a_persons_lines() -> None:
    from hpcwrap.runlog import lifecycle

    before = RunState(huggingface={"notes": "card reviewed by Ana", "repo": "old"})
    facts = lifecycle.Published(
        "https://huggingface.co/a/b", "30000", "README", "soft_signal", REASON
    )
    after = lifecycle.apply(before, facts)
    assert before.huggingface == {"notes": "card reviewed by Ana", "repo": "old"}
    assert after.huggingface == {
        "notes": "card reviewed by Ana",
        "repo": "https://huggingface.co/a/b",
        "uploaded checkpoints": "30000",
        "includes": "README",
        "signoff verdict": f"`soft_signal` — verdict_reason: {REASON}",
    }
    assert lifecycle.event_kind(facts) == "published"
