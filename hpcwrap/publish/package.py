"""``hpcwrap publish package``: the public folder, laid out as the spec says.

```
README.md            model card drafted from the run log
TRAINING_LOG.md      the run log, sanitized
MODEL_PASSPORT.json  copied byte for byte
SIGNOFF.json         copied byte for byte
assets/              the files asked for (norm stats, dataset list, ...)
checkpoints/<step>/params/   (the whole step folder with full=True)
```

Nothing is written before the gate passes for every step. The package is built in
a temporary folder beside ``out`` and renamed into place only when every copy has
verified (sha256 of the copy == the source == what SIGNOFF.json lists) and the
gate passes on the package itself, so a refused or broken run leaves nothing half
made. Every weight file copied must be listed in SIGNOFF.json.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hpcwrap.errors import PublishError, UsageError
from hpcwrap.publish import modelcard
from hpcwrap.publish.checkpoints import recorded_checkpoint, step_folders
from hpcwrap.publish.export import context_for, local_hosts, local_users
from hpcwrap.publish.gate import PASSPORT, SIGNOFF, GateResult, check_gate, require_same_pair
from hpcwrap.publish.hashing import copy_verified, sha256_file
from hpcwrap.publish.sanitize import Summary, sanitize
from hpcwrap.runlog import RunLog

PARAMS = "params"


@dataclass
class Package:
    out: Path
    steps: list[int]
    params_only: bool
    gate: GateResult
    files: dict[str, str] = field(default_factory=dict)  # path in the package -> sha256
    export: Summary = field(default_factory=Summary)

    @property
    def includes(self) -> str:
        """The spec's ``includes`` line for the HuggingFace section."""
        names = ["README", "TRAINING_LOG", PASSPORT, SIGNOFF]
        if any(p.startswith("assets/") for p in self.files):
            names.append("assets")
        return ", ".join(names)

    @property
    def uploaded(self) -> str:
        kind = "params only" if self.params_only else "full"
        return f"{', '.join(str(s) for s in self.steps)} ({kind})"


def gate_steps(
    log: RunLog,
    steps: list[int] | None,
    *,
    passport: Path | None = None,
    signoff: Path | None = None,
) -> tuple[dict[int, Path], GateResult]:
    """The step folders and one gate result for them all (the first failing one if any)."""
    folders = step_folders(recorded_checkpoint(log, log.read()), steps)
    results = [check_gate(f, passport=passport, signoff=signoff) for f in folders.values()]
    bad = [r for r in results if not r.ok]
    if bad:
        return folders, bad[0]
    require_same_pair(results)
    merged = results[0]
    for r in results[1:]:
        merged.checks += r.checks
    return folders, merged


def _weights_of(folder: Path, params_only: bool) -> list[Path]:
    source = folder / PARAMS if params_only else folder
    if not source.is_dir():
        raise PublishError(
            f"{folder}: no {PARAMS}/ folder to publish (params only is the default; "
            "--full publishes the whole checkpoint folder)"
        )
    skip = {PASSPORT, SIGNOFF}
    return sorted(p for p in source.rglob("*") if p.is_file() and p.name not in skip)


def _target(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: exists and is not an empty folder (nothing is overwritten)")


def build(
    log: RunLog,
    out: Path,
    *,
    steps: list[int] | None = None,
    assets: list[Path] | None = None,
    params_only: bool = True,
    passport: Path | None = None,
    signoff: Path | None = None,
    users: set[str] | None = None,
) -> Package:
    """Lay out the package in ``out`` (refused before anything is written unless the gate
    passes); returns what was written with each file's verified sha256."""
    _target(out)
    folders, gate = gate_steps(log, steps, passport=passport, signoff=signoff)
    gate.require(f"package {log.path.name}")
    assert gate.passport is not None and gate.signoff is not None
    assets = assets or []
    for asset in assets:
        if not asset.exists():
            raise UsageError(f"asset {asset}: no such file or folder")
    listed = {p.resolve(): h for p, h in gate.weights.items()}
    plan: list[tuple[Path, str, str | None]] = []  # source, path in package, listed sha256
    for step, folder in folders.items():
        for src in _weights_of(folder, params_only):
            inside = src.relative_to(folder)
            want = listed.get(src.resolve())
            if want is None and (params_only or inside.parts[0] == PARAMS):
                raise PublishError(
                    f"{src}: weight file not listed in {gate.signoff}: refusing to publish "
                    "weights the signoff does not cover"
                )
            plan.append((src, f"checkpoints/{step}/{inside.as_posix()}", want))

    state = log.read()
    ctx = context_for(
        log, state, users=local_users(log.path) | (users or set()), hosts=local_hosts()
    )
    training_log, summary = sanitize(log.path.read_bytes().decode("utf-8", "replace"), ctx)
    card = modelcard.draft(
        state,
        steps=sorted(folders),
        params_only=params_only,
        verdict=gate.verdict or "",
        verdict_reason=gate.verdict_reason,
        assets=[a.name for a in assets],
    )
    readme, _ = sanitize(card, ctx)

    pkg = Package(out, sorted(folders), params_only, gate, export=summary)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()
    try:
        for name, text in (("README.md", readme), ("TRAINING_LOG.md", training_log)):
            (tmp / name).write_text(text, encoding="utf-8")
        pkg.files["README.md"] = sha256_file(tmp / "README.md")
        pkg.files["TRAINING_LOG.md"] = sha256_file(tmp / "TRAINING_LOG.md")
        pkg.files[PASSPORT] = copy_verified(gate.passport, tmp / PASSPORT)
        pkg.files[SIGNOFF] = copy_verified(gate.signoff, tmp / SIGNOFF)
        for asset in assets:
            files = [asset] if asset.is_file() else sorted(asset.rglob("*"))
            for src in (f for f in files if f.is_file()):
                rel = src.name if asset.is_file() else f"{asset.name}/{src.relative_to(asset)}"
                pkg.files[f"assets/{rel}"] = copy_verified(src, tmp / "assets" / rel)
        for src, name, want in plan:
            pkg.files[name] = copy_verified(src, tmp / name, want)
        final = check_gate(tmp, package=True)  # the package as it will be published
        final.require(f"keep the package {out}")
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return pkg


__all__ = ["PARAMS", "Package", "build", "gate_steps"]
