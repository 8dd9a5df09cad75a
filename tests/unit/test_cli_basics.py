"""The CLI shell: --help, --version, unknown commands, `python -m hpcwrap`, light imports."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hpcwrap
from hpcwrap.cli import COMMAND_MODULES, build_parser
from hpcwrap.config import Settings
from hpcwrap.errors import (
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    exit_code_table,
)

HEAVY_MODULES = ("wandb", "pyslurm", "pynvml", "yaml", "matplotlib")


def hpcwrap_exe() -> str:
    """The console script installed beside this interpreter."""
    exe = Path(sys.executable).parent / "hpcwrap"
    if not exe.exists():
        pytest.fail(f"no hpcwrap console script at {exe}: pip install -e '.[dev]'")
    return str(exe)


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def registered_commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(subs) == 1
    return dict(subs[0].choices)


def listed_commands(help_text: str) -> list[str]:
    """Command names in the `<command>` block of the top-level --help."""
    block = help_text.split("<command>\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^ {4}(\S+)", block, re.MULTILINE)


def test_help_lists_exactly_the_registered_commands() -> None:
    res = run([hpcwrap_exe(), "--help"])
    assert res.returncode == 0, res.stderr
    listed = listed_commands(res.stdout)
    registered = registered_commands()
    assert listed == list(registered)
    assert sorted(listed) == sorted(COMMAND_MODULES)
    for name, sub in registered.items():
        # A listed command really exists: it has a handler and its own help.
        assert callable(sub.get_default("handler")), f"{name} has no handler"
        sub_help = run([hpcwrap_exe(), name, "--help"])
        assert sub_help.returncode == 0, f"hpcwrap {name} --help: {sub_help.stderr}"
        assert f"hpcwrap {name}" in sub_help.stdout


def test_help_documents_the_usage_exit_code() -> None:
    res = run([hpcwrap_exe(), "--help"])
    assert EXIT_CODES[UsageError] == 2
    assert "2 usage error" in res.stdout


def listed_exit_codes(help_text: str) -> dict[int, str]:
    """``{code: meaning}`` from the ``exit codes:`` block of the top-level --help."""
    block = help_text.split("\nexit codes:\n", 1)[1]
    listed: dict[int, str] = {}
    for line in block.splitlines():
        m = re.fullmatch(r" +(\d+) (\S.*)", line)
        if m is None:
            assert line.lstrip().startswith("`hpcwrap run`"), f"not an exit code: {line!r}"
            continue
        code = int(m.group(1))
        assert code not in listed, f"exit code {code} listed twice"
        listed[code] = m.group(2)
    return listed


def test_help_lists_every_exit_code_with_its_meaning_and_nothing_else() -> None:
    res = run([hpcwrap_exe(), "--help"])
    assert res.returncode == 0, res.stderr
    expected = {code: cls.meaning for cls, code in EXIT_CODES.items()}
    expected[EXIT_OK] = "success"
    expected[EXIT_INTERRUPTED] = "interrupted"
    assert listed_exit_codes(res.stdout) == expected
    # In code order, each on its own line.
    codes = list(listed_exit_codes(res.stdout))
    assert codes == sorted(codes)


def test_version() -> None:
    res = run([hpcwrap_exe(), "--version"])
    assert res.returncode == 0
    assert res.stdout.strip() == f"hpcwrap {hpcwrap.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", hpcwrap.__version__)


def test_unknown_command_is_a_usage_error() -> None:
    res = run([hpcwrap_exe(), "no-such-command"])
    assert res.returncode == EXIT_CODES[UsageError] == 2
    assert res.stdout == ""
    assert "invalid choice: 'no-such-command'" in res.stderr
    for name in registered_commands():
        # the message names the valid commands ('sbatch' quoted up to Python 3.12, bare on 3.13)
        assert re.search(rf"\(choose from .*'?\b{name}\b'?", res.stderr), (name, res.stderr)


def test_no_command_prints_help_and_exits_2() -> None:
    res = run([hpcwrap_exe()])
    assert res.returncode == 2
    assert "usage: hpcwrap" in res.stderr


def test_python_dash_m_hpcwrap() -> None:
    res = run([sys.executable, "-m", "hpcwrap", "--version"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"hpcwrap {hpcwrap.__version__}"
    res = run([sys.executable, "-m", "hpcwrap", "--help"])
    assert res.returncode == 0 and listed_commands(res.stdout) == list(registered_commands())


def heavy_imports(code: str) -> list[str]:
    """Heavy modules that running code (in a fresh interpreter) loaded or tried to load.

    A meta-path finder records every import attempt, so an import of a module
    that is not installed here (wandb, pyslurm) is caught too.
    """
    body = "".join("    " + line + "\n" for line in code.splitlines())
    probe = (
        "import contextlib, io, json, sys\n"
        f"HEAVY = {HEAVY_MODULES!r}\n"
        "tried = set()\n"
        "class Spy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in HEAVY:\n"
        "            tried.add(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Spy())\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"{body}"
        "loaded = {m for m in sys.modules if m.split('.')[0] in HEAVY}\n"
        "print(json.dumps(sorted(tried | loaded)))\n"
    )
    res = run([sys.executable, "-c", probe])
    assert res.returncode == 0, res.stderr
    found: list[str] = json.loads(res.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize(
    "code",
    [
        "import hpcwrap",
        "import hpcwrap.cli",
        "from hpcwrap.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    ],
    ids=["import-hpcwrap", "import-cli", "help"],
)
def test_import_and_help_load_nothing_heavy(code: str) -> None:
    assert heavy_imports(code) == []


def test_heavy_import_probe_sees_imports_even_of_missing_modules() -> None:
    assert "yaml" in heavy_imports("import yaml")
    missing = "try:\n    import pyslurm\nexcept ImportError:\n    pass"
    assert heavy_imports(missing) == ["pyslurm"]


ROOT = Path(__file__).resolve().parents[2]
SETTINGS_PAGE = ROOT / "docs" / "settings.md"


def documentation() -> str:
    """README.md and every docs/*.md, as one text."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(page.read_text() for page in pages)


def test_every_command_setting_and_exit_code_is_documented() -> None:
    docs = documentation()
    for name, sub in registered_commands().items():
        assert f"hpcwrap {name}" in docs, f"README/docs do not mention `hpcwrap {name}`"
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            for child in action.choices:
                assert f"hpcwrap {name} {child}" in docs, (
                    f"README/docs do not mention `hpcwrap {name} {child}`"
                )
    page = SETTINGS_PAGE.read_text()
    for setting in dataclasses.fields(Settings):
        row = f"| `{setting.name}` |"
        assert row in page, f"{SETTINGS_PAGE} has no row `{row}` in its settings table"
    for code, meaning in exit_code_table():
        assert f"| {code} | {meaning} |" in page, (
            f"{SETTINGS_PAGE} has no row `| {code} | {meaning} |` in its exit-code table"
        )


def test_each_commands_help_line_is_the_one_its_module_registers() -> None:
    """--help shows COMMANDS' lines without importing the modules: they must not drift."""
    from hpcwrap.cli import COMMANDS

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    registered = {c.dest: c.help for c in subs._choices_actions}
    assert registered == COMMANDS


def _loaded_after(*argvs: list[str]) -> tuple[list[str], bool]:
    """The ``*_cmd`` modules a fresh interpreter has loaded after running ``main`` on each
    of ``argvs``, and whether the run-log handle was loaded too."""
    code = (
        "import sys, contextlib, io, json\n"
        "from hpcwrap.cli import main\n"
        f"for argv in {list(argvs)!r}:\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()),"
        " contextlib.redirect_stderr(io.StringIO()):\n"
        "        main(argv)\n"
        "loaded = sorted(m for m in sys.modules if m.endswith('_cmd'))\n"
        "print(json.dumps([loaded, 'hpcwrap.runlog.handle' in sys.modules]))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    loaded, handle = json.loads(res.stdout)
    return loaded, handle


def test_version_and_help_import_no_command_module() -> None:
    assert _loaded_after(["--version"], ["--help"], []) == ([], False)


def test_a_command_loads_its_own_module_only() -> None:
    assert _loaded_after(["status", "--help"])[0] == ["hpcwrap.cli.status_cmd"]
