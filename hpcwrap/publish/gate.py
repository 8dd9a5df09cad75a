"""The gate: a checkpoint is publishable only with a valid MODEL_PASSPORT.json + SIGNOFF.json.

Checked, each with its own result: both files exist (in the checkpoint folder or
the folder above it, or where given) and parse as JSON objects; the passport holds
its feeding contract (``input_contract``: a non-empty object) and its integrity
manifest (the weight files with their sha256, in either form below); SIGNOFF.json's
``verdict`` is ``pass`` or ``soft_signal`` (then with a ``verdict_reason``); the
weights SIGNOFF.json lists are exactly the passport's, with the same sha256; the
sha256 it lists for MODEL_PASSPORT.json and for every weight file equals the file on
disk. What the passport tool itself validates (the contract's content) is not judged
here. hpcwrap never writes either file, nor a manifest of its own.

SIGNOFF.json lists the hashes as ``"sha256": {"<path>": "<hex>", ...}`` or as
``"files": [{"path": "<path>", "sha256": "<hex>"}, ...]``; paths are relative
to SIGNOFF.json's folder. The entry named ``MODEL_PASSPORT.json`` (or a
top-level ``passport_sha256``) is the passport's; every other one is a weight
file. In a package made by ``hpcwrap publish package`` a listed path is also
looked for under ``checkpoints/`` and ``checkpoints/<step>/``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcwrap.errors import PublishError
from hpcwrap.publish.hashing import sha256_file

PASSPORT = "MODEL_PASSPORT.json"
SIGNOFF = "SIGNOFF.json"
VERDICTS = ("pass", "soft_signal")
CONTRACT = "input_contract"  # the passport's feeding contract
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class Check:
    """One line of ``hpcwrap publish check``: what was checked, and how it went."""

    what: str
    ok: bool
    detail: str


@dataclass
class GateResult:
    checks: list[Check] = field(default_factory=list)
    passport: Path | None = None
    signoff: Path | None = None
    verdict: str | None = None
    verdict_reason: str | None = None
    # every weight file the signoff lists, resolved, with its listed sha256
    weights: dict[Path, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, what: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(what, ok, detail))
        return ok

    def problems(self) -> list[str]:
        return [f"{c.what}: {c.detail}" for c in self.checks if not c.ok]

    def require(self, doing: str) -> None:
        """Raise ``PublishError`` (nothing copied, packaged or uploaded) unless the gate passed."""
        if not self.ok:
            lines = "\n  ".join(self.problems())
            raise PublishError(f"refusing to {doing}: the passport/signoff gate failed:\n  {lines}")


def locate(folder: Path, name: str, given: Path | None) -> tuple[Path | None, list[Path]]:
    """``name`` beside the checkpoint: in ``folder`` or the folder above it (or ``given``)."""
    if given is not None:
        return (given if given.is_file() else None), [given]
    places = [folder / name, folder.parent / name]
    return next((p for p in places if p.is_file()), None), places


def _load_json(path: Path, result: GateResult, label: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        result.add(label, False, f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        result.add(label, False, f"{path}: cannot be read ({exc})")
        return None
    if not isinstance(data, dict) or not data:
        result.add(label, False, f"{path}: not a JSON object with fields")
        return None
    result.add(label, True, f"{path}: parses")
    return data


def _listed(signoff: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """``path -> sha256`` from SIGNOFF.json, and what in it is malformed."""
    out: dict[str, str] = {}
    bad: list[str] = []
    table = signoff.get("sha256")
    if isinstance(table, dict):
        out.update({str(k): str(v) for k, v in table.items()})
    elif table is not None:
        bad.append('"sha256" is not an object of path -> sha256')
    files = signoff.get("files")
    if isinstance(files, list):
        for item in files:
            if isinstance(item, dict) and "path" in item and "sha256" in item:
                out[str(item["path"])] = str(item["sha256"])
            else:
                bad.append(f'"files" entry {item!r} has no "path" and "sha256"')
    elif files is not None:
        bad.append('"files" is not a list')
    if isinstance(signoff.get("passport_sha256"), str):
        out.setdefault(PASSPORT, signoff["passport_sha256"])
    bad += [f"{k}: {v!r} is not a sha256 (64 hex digits)" for k, v in out.items()
            if not _HEX64.match(v)]  # fmt: skip
    return {k: v.lower() for k, v in out.items() if _HEX64.match(v)}, bad


def _passport(data: dict[str, Any], result: GateResult) -> dict[str, str] | None:
    """The passport's checks that need no passport tool: a non-empty feeding contract and
    an integrity manifest (returned: path -> sha256 of the weights it lists)."""
    where = str(result.passport)
    contract = data.get(CONTRACT)
    if isinstance(contract, dict) and contract:
        result.add(f"passport {CONTRACT}", True, f"{len(contract)} fields")
    else:
        shown = "missing" if contract is None else f"{contract!r} (an empty or non-object value)"
        result.add(
            f"passport {CONTRACT}",
            False,
            f"{where}: {CONTRACT} {shown}: the feeding contract (what the model takes, shapes, "
            "normalisation) must be a non-empty object",
        )
    listed, bad = _listed(data)
    for problem in bad:
        result.add("passport sha256 list", False, f"{where}: {problem}")
    weights = {k: v for k, v in listed.items() if Path(k).name != PASSPORT}
    if not weights:
        result.add(
            "passport sha256 list",
            False,
            f"{where} lists no weight files with their sha256 (its integrity manifest)",
        )
        return None
    return weights


def _same_weights(
    result: GateResult,
    signoff_base: Path,
    signed: dict[str, str],
    passport_base: Path,
    manifest: dict[str, str],
) -> None:
    """The weights SIGNOFF.json lists are the passport's, each with the same sha256 (the
    files themselves are hashed once, against the signoff's list)."""
    ours = {(signoff_base / k).resolve(): (k, v) for k, v in signed.items()}
    theirs = {(passport_base / k).resolve(): (k, v) for k, v in manifest.items()}
    for path in sorted(set(ours) | set(theirs)):
        if path not in theirs:
            name = ours[path][0]
            result.add("signoff = passport", False, f"{name}: in {SIGNOFF}, not in {PASSPORT}")
            return
        if path not in ours:
            name = theirs[path][0]
            result.add("signoff = passport", False, f"{name}: in {PASSPORT}, not in {SIGNOFF}")
            return
        if ours[path][1] != theirs[path][1]:
            result.add(
                "signoff = passport",
                False,
                f"{ours[path][0]}: {SIGNOFF} lists {ours[path][1]}, {PASSPORT} {theirs[path][1]}",
            )
            return
    result.add("signoff = passport", True, f"the same {len(ours)} weight files and sha256")


def _resolve(base: Path, listed: str, package: bool) -> Path:
    path = Path(listed)
    if path.is_absolute() or not package:
        return base / path
    tries = [base / path, base / "checkpoints" / path]
    steps = base / "checkpoints"
    if steps.is_dir():
        tries += [d / path for d in sorted(steps.iterdir()) if d.is_dir()]
    return next((p for p in tries if p.exists()), base / path)


def check_gate(
    checkpoint: Path,
    *,
    passport: Path | None = None,
    signoff: Path | None = None,
    package: bool = False,
) -> GateResult:
    """Every check of the gate for ``checkpoint`` (a folder); nothing raised, nothing written.

    ``package``: ``checkpoint`` is a package made by ``publish package``; listed weight
    files it does not hold are not missing (params only, some steps), but at least one is
    there and every file under its ``checkpoints/`` must be listed.
    """
    result = GateResult()
    found: dict[str, Path] = {}
    for name, given in ((PASSPORT, passport), (SIGNOFF, signoff)):
        path, places = locate(checkpoint, name, given)
        if path is None:
            where = " nor ".join(str(p) for p in places)
            result.add(name, False, f"missing: no {where}")
        else:
            found[name] = path
    result.passport, result.signoff = found.get(PASSPORT), found.get(SIGNOFF)
    passport_data = _load_json(found[PASSPORT], result, PASSPORT) if PASSPORT in found else None
    data = _load_json(found[SIGNOFF], result, SIGNOFF) if SIGNOFF in found else None
    manifest = _passport(passport_data, result) if passport_data is not None else None
    if data is None or result.signoff is None:
        return result
    where = str(result.signoff)
    verdict = data.get("verdict")
    reason = data.get("verdict_reason")
    result.verdict = verdict if isinstance(verdict, str) else None
    result.verdict_reason = reason if isinstance(reason, str) else None
    if verdict not in VERDICTS:
        shown = "missing" if verdict is None else repr(verdict)
        result.add("verdict", False, f"{where}: verdict {shown}: publishable are pass, soft_signal")
    elif verdict == "soft_signal" and not (isinstance(reason, str) and reason.strip()):
        result.add("verdict", False, f"{where}: verdict soft_signal without a verdict_reason")
    else:
        result.add("verdict", True, verdict + (f" ({reason})" if verdict == "soft_signal" else ""))
    listed, bad = _listed(data)
    for problem in bad:
        result.add("sha256 list", False, f"{where}: {problem}")
    base = result.signoff.parent
    passport_key = next((k for k in listed if Path(k).name == PASSPORT), None)
    if passport_key is None:
        result.add(f"sha256 {PASSPORT}", False, f"{where} lists no sha256 for {PASSPORT}")
    elif result.passport is not None:
        _compare(result, PASSPORT, result.passport, listed[passport_key])
    weights = {k: v for k, v in listed.items() if k != passport_key}
    if not weights:
        result.add("sha256 weights", False, f"{where} lists no weight files")
    if manifest is not None and result.passport is not None:
        _same_weights(result, base, weights, result.passport.parent, manifest)
    present = 0
    for key, want in weights.items():
        path = _resolve(base, key, package)
        result.weights[path] = want
        if package and not path.exists():
            continue  # not part of this package
        present += 1
        _compare(result, key, path, want)
    if package:
        if weights and not present:
            result.add("sha256 weights", False, f"none of the files {where} lists is in {base}")
        listed_paths = {p.resolve() for p in result.weights}
        ckpts = base / "checkpoints"
        for path in sorted(ckpts.rglob("*")) if ckpts.is_dir() else []:
            if path.is_file() and path.resolve() not in listed_paths:
                result.add(f"sha256 {path.relative_to(base)}", False, f"{path}: not in {where}")
    return result


def _compare(result: GateResult, what: str, path: Path, want: str) -> None:
    if not path.is_file():
        result.add(f"sha256 {what}", False, f"{path}: missing (listed in {SIGNOFF})")
        return
    got = sha256_file(path)
    if got != want:
        result.add(
            f"sha256 {what}",
            False,
            f"{path}: sha256 mismatch: {SIGNOFF} lists {want}, the file on disk has {got}",
        )
    else:
        result.add(f"sha256 {what}", True, f"{path}: matches")


def require_same_pair(results: list[GateResult]) -> None:
    """Several step folders go into one package: they must share one passport and signoff."""
    pairs = {(r.passport, r.signoff) for r in results if r.ok}
    if len(pairs) > 1:
        listing = ", ".join(str(s) for _, s in sorted(pairs, key=str))
        raise PublishError(
            f"the checkpoints have different SIGNOFF.json files ({listing}): a package has "
            "one passport and one signoff; package the steps separately"
        )


__all__ = [
    "PASSPORT",
    "SIGNOFF",
    "VERDICTS",
    "Check",
    "GateResult",
    "check_gate",
    "locate",
    "require_same_pair",
]
