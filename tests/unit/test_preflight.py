"""Preflight of `hpcwrap sbatch --mode experiment`: recent runs, and no failed variation again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_sbatch_submit import BASE, cli, project

__all__ = ["project"]  # the fixture, used by name


def _logs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.md") if p.name[:2] == "20")


def _mark(root: Path, run: str, status: str, notes: str = "") -> None:
    exp = root / "experiments.md"
    lines = exp.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"| {run} |"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            cells[3], cells[4] = status, notes
            lines[i] = "| " + " | ".join(cells) + " |"
    exp.write_text("\n".join(lines) + "\n")


def test_repeat_of_a_discarded_variation_warns_and_strict_refuses(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project / "run_logs"
    same = [*BASE, "--config", "conf.yaml", "--set", "lr=1e-3"]
    rc, _, err = cli(capsys, *same, "train.sh")
    assert rc == 0, err
    first = _logs(root)[0].stem
    assert "preflight" not in err  # nothing ran before
    _mark(root, first, "discard", "worse than single cam")

    rc, _, err = cli(capsys, *same, "train.sh")
    assert rc == 0, err
    assert f"hpcwrap: preflight: the last runs of run_logs/ in {root / 'experiments.md'}:" in err
    assert f"  {first} | " in err
    assert (
        f"warning: preflight: the same config and --set values already ran as {first} "
        "(marked discard: worse than single cam); submitting anyway (--strict refuses)"
    ) in err
    assert len(_logs(root)) == 2

    rc, _, err = cli(capsys, "--strict", *same, "train.sh")
    assert rc == 2 and "not submitting a failed variation again" in err
    assert len(_logs(root)) == 2  # refused before any run log was written

    (project / "hpcwrap.toml").write_text('preflight = "strict"\n')
    rc, _, err = cli(capsys, *same, "train.sh")
    assert rc == 2 and first in err
    # another variation goes through without a warning
    rc, _, err = cli(capsys, *BASE, "--config", "conf.yaml", "--set", "lr=5e-4", "train.sh")
    assert rc == 0 and "warning: preflight" not in err


def test_a_submission_that_never_ran_does_not_count(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project / "run_logs"
    args = [*BASE, "--group", "g", "--set", "lr=1", "train.sh"]
    monkeypatch.setenv("FAKE_SBATCH", "refuse")
    rc, _, err = cli(capsys, *args)
    assert rc != 0
    assert "| submit failed |" in (root / "experiments.md").read_text()
    monkeypatch.setenv("FAKE_SBATCH", "ok")
    rc, _, err = cli(capsys, "--strict", *args)
    assert rc == 0, err
    assert "the last runs of g/" in err and "warning: preflight" not in err
