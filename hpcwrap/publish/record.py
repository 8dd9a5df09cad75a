"""The ``## HuggingFace`` section (through the ``Published`` transition), and the optional
upload with huggingface_hub (the ``hf`` extra), which happens only after the gate passed.

The hub's token is huggingface_hub's business (``HF_TOKEN`` or ``huggingface-cli
login``): hpcwrap never takes one on its command line nor writes one anywhere.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpcwrap.errors import MissingExtraError, UsageError
from hpcwrap.publish.gate import GateResult, check_gate
from hpcwrap.runlog import RunLog, RunState
from hpcwrap.runlog.lifecycle import Published

HUB = "https://huggingface.co"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def repo_id(text: str) -> str:
    """``user/repo`` from ``user/repo`` or ``https://huggingface.co/user/repo``."""
    bare = text.strip().rstrip("/")
    if bare.startswith(HUB + "/"):
        bare = bare[len(HUB) + 1 :]
    if not _REPO_ID.match(bare):
        raise UsageError(f"--hf-repo {text!r}: give it as user/repo (a Hugging Face model repo)")
    return bare


def uploaded_words(what: str, *, by_hpcwrap: bool, package: Path | None) -> str:
    """The ``uploaded checkpoints`` line in words that say who uploaded: hpcwrap's own
    upload states ``what`` plainly; without one, what was packaged (and where) or what a
    person stated is recorded as such, never as an upload hpcwrap made."""
    what = what.strip()
    if by_hpcwrap:
        return what
    if package is not None:
        return f"not uploaded by hpcwrap; packaged: {what}, in `{package}`"
    return f"{what} (as stated with --uploaded; hpcwrap did not upload it)"


def record(log: RunLog, *, repo: str, uploaded: str, includes: str, gate: GateResult) -> RunState:
    """Write the section; ``gate`` must have passed (its verdict and reason are recorded)."""
    gate.require(f"record a publication of {log.path.name}")
    if not uploaded.strip() or not includes.strip():
        raise UsageError("--uploaded and --includes must say what was published")
    facts = Published(
        repo=f"{HUB}/{repo_id(repo)}",
        uploaded=uploaded.strip(),
        includes=includes.strip(),
        verdict=gate.verdict or "",
        verdict_reason=gate.verdict_reason if gate.verdict == "soft_signal" else None,
    )
    return log.record(facts)


def hf_api() -> Any:
    """huggingface_hub's ``HfApi()``; a clear message when the extra is missing."""
    try:
        hub = importlib.import_module("huggingface_hub")
    except ImportError:
        raise MissingExtraError(
            "--upload needs huggingface_hub, which is not installed: pip install 'hpcwrap[hf]' "
            "(the 'hf' extra), then run it again",
            extra="hf",
        ) from None
    return hub.HfApi()


def upload(package: Path, repo: str, *, api_factory: Callable[[], Any] | None = None) -> GateResult:
    """Gate the package folder, then upload it as the model repo ``repo``.

    The gate runs on the package itself (its SIGNOFF.json against its files): nothing
    reaches the hub unless it passes. Returns the gate result (for the record).
    """
    if not package.is_dir():
        raise UsageError(f"--from {package}: not a folder (make it with hpcwrap publish package)")
    gate = check_gate(package, package=True)
    gate.require(f"upload {package}")
    rid = repo_id(repo)
    api = (api_factory or hf_api)()
    api.create_repo(repo_id=rid, repo_type="model", exist_ok=True)
    api.upload_folder(
        folder_path=str(package),
        repo_id=rid,
        repo_type="model",
        commit_message="hpcwrap publish: package with passport and signoff",
    )
    return gate


__all__ = ["HUB", "hf_api", "record", "repo_id", "upload", "uploaded_words"]
