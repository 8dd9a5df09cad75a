"""The passport/signoff gate: each broken case is refused with a message naming the file and
the problem; a good pair passes; hpcwrap never writes either file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from hpcwrap.cli import main
from hpcwrap.publish.gate import check_gate
from hpcwrap.runlog import Results, RunState, create_run

PARAMS = {"params/model.safetensors": b"\x00weights" * 1000, "params/_METADATA": b'{"tree": 1}'}
OPTIMIZER = {"opt_state/state.bin": b"adam" * 100}
PASSPORT_DATA = {"input_contract": {"image": [224, 224, 3], "actions_out": [50, 7]}}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_checkpoint(
    folder: Path,
    *,
    verdict: str = "pass",
    reason: str | None = None,
    signoff: dict[str, Any] | None = None,
    files: dict[str, bytes] | None = None,
    passport_extra: dict[str, Any] | None = None,
) -> Path:
    """A checkpoint folder with params/, optimizer state, and a passport (feeding contract +
    integrity manifest) and a signoff over them."""
    files = {**PARAMS, **OPTIMIZER} if files is None else files
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content)
    manifest = {"sha256": {k: sha(v) for k, v in files.items()}}
    passport = json.dumps({**PASSPORT_DATA, **manifest, **(passport_extra or {})}).encode()
    (folder / "MODEL_PASSPORT.json").write_bytes(passport)
    data: dict[str, Any] = {"verdict": verdict}
    if reason is not None:
        data["verdict_reason"] = reason
    data["sha256"] = {"MODEL_PASSPORT.json": sha(passport), **{k: sha(v) for k, v in files.items()}}
    data.update(signoff or {})
    (folder / "SIGNOFF.json").write_text(json.dumps(data, indent=2))
    return folder


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    return make_checkpoint(tmp_path / "ckpt" / "30000")


def refused(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    rc = main(["publish", "check", str(folder)])
    out, err = capsys.readouterr()
    assert rc == 18, out + err
    assert "refusing to pass" in err and "gate failed" in err
    return out, err


def test_a_good_pair_passes(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in ckpt.rglob("*"))
    assert main(["publish", "check", str(ckpt)]) == 0
    out, _ = capsys.readouterr()
    assert "ok   sha256 params/model.safetensors" in out
    assert "ok   sha256 MODEL_PASSPORT.json" in out
    assert "ok   verdict: pass" in out and "the gate passed (verdict pass)" in out
    assert "FAIL" not in out
    assert sorted(p.name for p in ckpt.rglob("*")) == before  # nothing written, no manifest


def test_missing_passport(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (ckpt / "MODEL_PASSPORT.json").unlink()
    _, err = refused(ckpt, capsys)
    assert f"MODEL_PASSPORT.json: missing: no {ckpt}/MODEL_PASSPORT.json" in err


def test_missing_signoff(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (ckpt / "SIGNOFF.json").unlink()
    _, err = refused(ckpt, capsys)
    assert f"SIGNOFF.json: missing: no {ckpt}/SIGNOFF.json nor {ckpt.parent}/SIGNOFF.json" in err


@pytest.mark.parametrize("name", ["SIGNOFF.json", "MODEL_PASSPORT.json"])
def test_bad_json(ckpt: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    (ckpt / name).write_text('{"verdict": "pass",\n  "sha256": {')
    _, err = refused(ckpt, capsys)
    assert f"{name}: {ckpt / name}: not valid JSON (" in err and "line 2" in err


def test_hash_mismatch_on_one_weight_file(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = ckpt / "params" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"!")  # one byte changed, same size
    out, err = refused(ckpt, capsys)
    assert f"sha256 params/model.safetensors: {weights}: sha256 mismatch" in err
    assert sha(PARAMS["params/model.safetensors"]) in err
    assert err.count("sha256 mismatch") == 1  # only that file
    assert "ok   sha256 params/_METADATA" in out


def test_a_listed_weight_file_that_is_missing(
    ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (ckpt / "params" / "_METADATA").unlink()
    _, err = refused(ckpt, capsys)
    assert f"{ckpt}/params/_METADATA: missing (listed in SIGNOFF.json)" in err


def test_a_changed_passport(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (ckpt / "MODEL_PASSPORT.json").write_text('{"inputs": "changed"}')
    _, err = refused(ckpt, capsys)
    assert f"sha256 MODEL_PASSPORT.json: {ckpt}/MODEL_PASSPORT.json: sha256 mismatch" in err


@pytest.mark.parametrize(
    ("verdict", "reason", "problem"),
    [
        ("fail", None, "verdict 'fail': publishable are pass, soft_signal"),
        ("soft_signal", None, "verdict soft_signal without a verdict_reason"),
        ("soft_signal", "  ", "verdict soft_signal without a verdict_reason"),
    ],
)
def test_verdicts_that_do_not_publish(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    verdict: str,
    reason: str | None,
    problem: str,
) -> None:
    ckpt = make_checkpoint(tmp_path / "c", verdict=verdict, reason=reason)
    _, err = refused(ckpt, capsys)
    assert f"verdict: {ckpt}/SIGNOFF.json: {problem}" in err


def test_a_signoff_without_hashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = make_checkpoint(tmp_path / "c", signoff={"sha256": {}})
    _, err = refused(ckpt, capsys)
    assert "lists no sha256 for MODEL_PASSPORT.json" in err
    assert "lists no weight files" in err


def test_the_files_list_form_and_a_pair_in_the_folder_above(tmp_path: Path) -> None:
    step = tmp_path / "ckpt" / "30000"
    make_checkpoint(step)
    # the pair one level up, listing paths relative to itself in the "files" form
    data = json.loads((step / "SIGNOFF.json").read_text())
    weights = [{"path": f"30000/{k}", "sha256": v}
               for k, v in data.pop("sha256").items() if k != "MODEL_PASSPORT.json"]  # fmt: skip
    # the passport one level up too, its manifest relative to itself
    passport = json.dumps({**PASSPORT_DATA, "files": weights}).encode()
    (step / "MODEL_PASSPORT.json").unlink()
    (step.parent / "MODEL_PASSPORT.json").write_bytes(passport)
    listed = [{"path": "MODEL_PASSPORT.json", "sha256": sha(passport)}, *weights]
    (step / "SIGNOFF.json").unlink()
    (step.parent / "SIGNOFF.json").write_text(json.dumps({**data, "files": listed}))
    result = check_gate(step)
    assert result.ok, result.problems()
    assert result.signoff == step.parent / "SIGNOFF.json"


def test_soft_signal_passes_with_its_reason(tmp_path: Path) -> None:
    reason = 'val loss on "wrist" split 3% above baseline; accepted: see eval #12 — ok'
    result = check_gate(make_checkpoint(tmp_path / "c", verdict="soft_signal", reason=reason))
    assert result.ok and result.verdict == "soft_signal" and result.verdict_reason == reason


def test_check_of_a_run_gates_its_recorded_checkpoint(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = create_run(
        tmp_path / "run_logs",
        RunState(task="train", objective="o", results=Results(checkpoint=str(ckpt))),
    )
    monkeypatch.chdir(tmp_path)
    assert main(["publish", "check", log.name]) == 0
    (ckpt / "params" / "_METADATA").write_text("changed")
    capsys.readouterr()
    assert main(["publish", "check", log.name]) == 18
    assert "_METADATA: sha256 mismatch" in capsys.readouterr().err


def test_a_passport_that_only_parses_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt" / "1")
    passport = ckpt / "MODEL_PASSPORT.json"
    passport.write_text('{"input_contract": {}}')
    signoff = json.loads((ckpt / "SIGNOFF.json").read_text())
    signoff["sha256"]["MODEL_PASSPORT.json"] = sha(passport.read_bytes())
    (ckpt / "SIGNOFF.json").write_text(json.dumps(signoff))
    _, err = refused(ckpt, capsys)
    assert "passport input_contract" in err and "must be a non-empty object" in err
    assert "lists no weight files with their sha256 (its integrity manifest)" in err


@pytest.mark.parametrize(
    ("manifest", "says"),
    [
        # one weight's hash in the passport differs from the signoff's
        (
            {"params/model.safetensors": "0" * 64},
            "params/model.safetensors: SIGNOFF.json lists ",
        ),
        # the passport leaves out a weight the signoff lists
        ({"params/model.safetensors": None}, "params/model.safetensors: in SIGNOFF.json, not in"),
    ],
)
def test_the_signoffs_weights_are_the_passports(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    manifest: dict[str, str | None],
    says: str,
) -> None:
    files = {**PARAMS, **OPTIMIZER}
    table: dict[str, str] = {k: sha(v) for k, v in files.items()}
    for key, value in manifest.items():
        if value is None:
            table.pop(key)
        else:
            table[key] = value
    ckpt = make_checkpoint(tmp_path / "ckpt" / "2", passport_extra={"sha256": table})
    _, err = refused(ckpt, capsys)
    assert f"signoff = passport: {says}" in err
    assert [c.what for c in check_gate(ckpt).checks if not c.ok] == ["signoff = passport"]
