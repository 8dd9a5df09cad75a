"""How hpcwrap's modules depend on each other: declared layers, no upward import, no import
between peers and no cycle, counting every import (inside functions and under
TYPE_CHECKING too)."""

from __future__ import annotations

import ast
from pathlib import Path

import hpcwrap

PACKAGE_DIR = Path(hpcwrap.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a module: top level, under ``if TYPE_CHECKING:``, inside
    functions (a lazy import is still a dependency)."""
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def import_graph() -> dict[str, set[str]]:
    """hpcwrap module -> the hpcwrap modules it imports (anywhere in it)."""
    modules = {_module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif node.level == 0 and node.module:
                for alias in node.names:  # `from hpcwrap.runlog import experiments`: a module
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in modules else node.module)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


# The layers, bottom first. A module may import its own layer and any lower one, except
# the peers, which import none of each other: what two share moves down (the output
# reader the wrapper and the epilog both use is reading/).
PEERS = (
    "hpcwrap.submit",
    "hpcwrap.job",
    "hpcwrap.hooks",
    "hpcwrap.reports",
    "hpcwrap.wandb",
    "hpcwrap.publish",
)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("hpcwrap", "hpcwrap.errors", "hpcwrap.config", "hpcwrap.redact"),
    ("hpcwrap.runlog",),
    ("hpcwrap.scheduler",),
    ("hpcwrap.reading",),
    PEERS,
    ("hpcwrap.cli",),
    ("hpcwrap.__main__",),
)


def home_of(module: str) -> tuple[int, str]:
    """(layer, package) of a module: the longest declared name it is, or is under."""
    best: tuple[int, str] | None = None
    for level, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (
                best is None or len(name) > len(best[1])
            ):
                best = (level, name)
    if best is None:
        raise AssertionError(f"{module} is in no declared layer: add it to LAYERS")
    return best


def layer_problems(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, deps in sorted(graph.items()):
        level, package = home_of(module)
        for dep in sorted(deps):
            dep_level, dep_package = home_of(dep)
            if (
                dep_package == package
                or dep_level < level
                or (dep_level == level and LAYERS[level] != PEERS)
            ):
                continue
            kind = "between peers" if dep_level == level else "upward"
            found.append(f"{kind}: {module} imports {dep}")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_type_checking_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_hpcwrap_modules() -> None:
    graph = import_graph()
    assert "hpcwrap.runlog.handle" in graph["hpcwrap.runlog.reindex"]  # the graph sees imports
    assert cycles(graph) == []


def test_imports_follow_the_layers() -> None:
    assert layer_problems(import_graph()) == []


def test_the_layer_check_finds_upward_and_peer_imports() -> None:
    graph = {
        "hpcwrap.runlog.model": {"hpcwrap.submit.request"},  # upward
        "hpcwrap.job.wrapper": {"hpcwrap.hooks.node", "hpcwrap.runlog.model"},  # a peer
        "hpcwrap.submit.request": {"hpcwrap.config"},
        "hpcwrap.hooks.node": set(),
        "hpcwrap.config": set(),
    }
    assert layer_problems(graph) == [
        "between peers: hpcwrap.job.wrapper imports hpcwrap.hooks.node",
        "upward: hpcwrap.runlog.model imports hpcwrap.submit.request",
    ]
    # a function-level import is seen
    tree = ast.parse("def f():\n    from hpcwrap.hooks import node\n")
    assert [n.module for n in _imports(tree) if isinstance(n, ast.ImportFrom)] == ["hpcwrap.hooks"]


def test_index_files_do_not_depend_on_the_run_log_handle() -> None:
    # handle.py calls timeline/experiments with plain values (paths, run id, the index dict).
    graph = import_graph()
    for name in ("experiments", "timeline", "indexfile"):
        assert "hpcwrap.runlog.handle" not in graph[f"hpcwrap.runlog.{name}"], name


# ---------------------------------------------------------------- one place per on-disk name

ON_DISK_NAMES = frozenset(
    {"state.json", "events.jsonl", "telemetry.jsonl", "timeline.md", "experiments.md", ".hpcwrap"}
)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (prose may name a file; code must not spell it)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.add(id(value))
    return found


def spelled_names(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants (not docstrings) that are one of the on-disk names."""
    skip = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in ON_DISK_NAMES
        and id(node) not in skip
    ]


def test_on_disk_names_are_spelled_only_in_runlog_layout() -> None:
    offenders = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path == PACKAGE_DIR / "runlog" / "layout.py":
            continue
        for line, name in spelled_names(ast.parse(path.read_text(encoding="utf-8"))):
            offenders.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{line}: {name!r}")
    assert not offenders, "use runlog/layout.py's names:\n" + "\n".join(offenders)
    layout_tree = ast.parse((PACKAGE_DIR / "runlog" / "layout.py").read_text(encoding="utf-8"))
    assert {name for _, name in spelled_names(layout_tree)} == ON_DISK_NAMES


def test_the_name_check_finds_a_spelled_name_but_not_prose() -> None:
    tree = ast.parse('"""Reads state.json."""\nPATH = "events.jsonl"\n')
    assert spelled_names(tree) == [(2, "events.jsonl")]
