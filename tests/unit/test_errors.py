"""hpcwrap.errors: every exception in one module, one exit code per class, a meaning for --help."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import hpcwrap
from hpcwrap import errors
from hpcwrap.errors import (
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    AmbiguousOptionError,
    HpcwrapError,
    RunLogError,
    RunLogWarning,
    UnparseableError,
    UsageError,
    exit_code_for,
    exit_code_table,
)

PACKAGE_DIR = Path(hpcwrap.__file__).parent


def test_exit_codes_are_distinct_and_not_reserved() -> None:
    codes = list(EXIT_CODES.values())
    assert len(codes) == len(set(codes))
    assert EXIT_OK not in codes and EXIT_INTERRUPTED not in codes
    assert all(0 < code < 126 for code in codes)  # 126+ mean "not run" / "killed by a signal"


def test_every_class_in_the_table_says_what_its_code_means() -> None:
    for cls in EXIT_CODES:
        # Its own meaning, not one inherited from the parent (that one names another code).
        assert "meaning" in vars(cls), f"{cls.__name__} has no meaning of its own"
        meaning = cls.meaning
        assert meaning.strip() == meaning and meaning, cls
        assert "\n" not in meaning and len(meaning) <= 60, cls
    meanings = [cls.meaning for cls in EXIT_CODES]
    assert len(meanings) == len(set(meanings))


def test_exit_code_table_is_the_exit_codes_plus_success_and_interrupt() -> None:
    table = exit_code_table()
    assert table == sorted(table)
    assert dict(table) == {
        EXIT_OK: "success",
        EXIT_INTERRUPTED: "interrupted",
        **{code: cls.meaning for cls, code in EXIT_CODES.items()},
    }


def test_a_class_not_in_the_table_shares_its_code_and_meaning_with_its_parent() -> None:
    # A class that says something of its own in --help must have its own code.
    for _name, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, HpcwrapError):
            listed = next(c for c in cls.__mro__ if c in EXIT_CODES)
            assert cls.meaning == listed.meaning, f"{cls.__name__}: add it to EXIT_CODES"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (AmbiguousOptionError("par", ["partition", "parsable"]), 2),
        (UnparseableError("it contains NUL bytes"), 13),
        (KeyError("x"), 1),
    ],
)
def test_exit_code_for_moved_and_foreign_errors(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code


def test_moved_exceptions_keep_their_old_import_paths() -> None:
    from hpcwrap.runlog import RunLogWarning as from_package
    from hpcwrap.runlog.markdown import UnparseableError as from_markdown
    from hpcwrap.runlog.store import RunLogWarning as from_store
    from hpcwrap.scheduler.sbatch_options import AmbiguousOptionError as from_sbatch_options

    assert from_markdown is UnparseableError
    assert from_store is from_package is RunLogWarning
    assert from_sbatch_options is AmbiguousOptionError
    # Still catchable as what they were before the move.
    assert issubclass(UnparseableError, ValueError) and issubclass(UnparseableError, RunLogError)
    assert issubclass(RunLogWarning, UserWarning)
    assert issubclass(AmbiguousOptionError, UsageError)
    err = AmbiguousOptionError("par", ["partition", "parsable"])
    assert err.candidates == ("partition", "parsable")
    assert "--partition --parsable" in str(err)


def _exception_classes_defined_in(path: Path) -> list[str]:
    """Classes in ``path`` whose bases name an Error, Exception or Warning (by their name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = ast.unparse(base).rsplit(".", 1)[-1]
                if name.endswith(("Error", "Exception", "Warning")):
                    found.append(node.name)
                    break
    return found


def test_no_exception_class_is_defined_outside_errors_py() -> None:
    outside = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path.name == "errors.py" and path.parent == PACKAGE_DIR:
            continue
        rel = path.relative_to(PACKAGE_DIR).with_suffix("").as_posix().replace("/", ".")
        allowed = NOT_ERRORS.get(f"hpcwrap.{rel}", [])
        classes = [c for c in _exception_classes_defined_in(path) if c not in allowed]
        if classes:
            outside[str(path.relative_to(PACKAGE_DIR))] = classes
    assert outside == {}


# A KeyboardInterrupt that carries the scheduler's SubmitResult, not an error: it lives
# beside SubmitResult so that errors.py imports nothing from the rest of hpcwrap.
NOT_ERRORS = {"hpcwrap.scheduler.base": ["SubmitInterrupted"]}


def test_no_imported_module_defines_an_exception_elsewhere() -> None:
    # The same rule at run time, for classes whose base is not named like an exception.
    for info in pkgutil.walk_packages(hpcwrap.__path__, "hpcwrap."):
        if info.name == "hpcwrap.__main__":
            continue
        module = importlib.import_module(info.name)
        for _name, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                if obj.__name__ in NOT_ERRORS.get(info.name, []):
                    continue
                assert info.name == "hpcwrap.errors", f"{info.name} defines {obj.__name__}"
