"""sha256 of files, and copies that are verified by hash before they count."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from hpcwrap.errors import PublishError

CHUNK = 4 << 20  # weight files are large: read them in 4 MiB pieces


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_verified(src: Path, dst: Path, expected: str | None = None) -> str:
    """Copy ``src`` to ``dst`` hashing as it goes, then hash ``dst`` again from disk.

    Raises ``PublishError`` naming the file when the copy, the source and ``expected``
    (the sha256 SIGNOFF.json lists, when it lists the file) do not all agree.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while chunk := fin.read(CHUNK):
            digest.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    shutil.copymode(src, dst)
    source = digest.hexdigest()
    if expected is not None and source != expected:
        raise PublishError(
            f"{src}: sha256 mismatch: SIGNOFF.json lists {expected}, the file read for the "
            f"copy has {source} (it changed after the gate passed?)"
        )
    copied = sha256_file(dst)
    if copied != source:
        raise PublishError(f"{dst}: the copy of {src} does not verify: sha256 {copied} != {source}")
    return copied
