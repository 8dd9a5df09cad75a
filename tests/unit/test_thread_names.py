"""hpcwrap's Thread subclasses shadow none of threading.Thread's own attributes.

Python 3.13 gave Thread an instance attribute ``_handle``; the monitor's method of the
same name was overwritten by it, so on 3.13 no Status entry was written while a job ran
(found by the Slurm matrix's Debian 13 leg). The names below are those a plain Thread
has on 3.10-3.14 (as listed by ``vars(threading.Thread())`` on 3.11, 3.13 and 3.14
here), together with what the running Python has.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import hpcwrap

THREAD_OWN = {
    "_args", "_context", "_daemonic", "_handle", "_ident", "_initialized",
    "_invoke_excepthook", "_is_stopped", "_kwargs", "_name", "_native_id",
    "_os_thread_handle", "_started", "_stderr", "_target", "_tstate_lock",
}  # fmt: skip


def _thread_subclasses() -> list[tuple[Path, ast.ClassDef]]:
    found = []
    for path in Path(hpcwrap.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                ast.unparse(b) in ("threading.Thread", "Thread") for b in node.bases
            ):
                found.append((path, node))
    return found


def _names(cls: ast.ClassDef) -> set[str]:
    defined = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    assigned = {
        n.attr
        for n in ast.walk(cls)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
    }
    return defined | assigned


def test_no_thread_subclass_shadows_what_thread_keeps_on_itself() -> None:
    own = THREAD_OWN | set(vars(threading.Thread()))
    classes = _thread_subclasses()
    assert {c.name for _, c in classes} >= {"Monitor", "Pump"}  # the walk finds them
    clashes = {f"{p.name}:{c.name}": sorted(_names(c) & own) for p, c in classes}
    assert {k: v for k, v in clashes.items() if v} == {}
