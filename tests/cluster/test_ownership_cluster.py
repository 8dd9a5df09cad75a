"""A run's Results are its own, with several runs in one folder (issue: run ownership).

Three runs of the toy trainer from one repository at once, each with its own `--out-dir`
(one cancelled, one killed at its time limit, one completing), and a fourth started right
after the third ends, and a fifth started from the third's checkpoint (`--from`). Each
run's Results (final step, checkpoint, config snapshot) and Next name only its own folder;
where the other runs' files were there to take, the end Status says they were left out;
the fifth's Config names the checkpoint it was initialised from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.test_kill_matrix import TOY, final_attempt, running_entry, toy_script
from tests.cluster.test_wrapper_cluster import BASE, project, state_of, submit
from tests.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.long]

# Any step the run's own output names: progress lines, its saves, the signal it got.
PRINTED_STEP = re.compile(r"(?:\biter |\bstep |checkpoints/)(\d+)")
NAMES = ("a", "b", "c", "d", "e")


def own_problems(name: str, state: dict[str, Any], printed: int | None) -> list[str]:
    """How run ``name``'s Results or Next name another run's folder, or a step it never
    printed (empty: all its own)."""
    problems = []
    results = state.get("results") or {}
    others = [f"runs/{n}/" for n in NAMES if n != name]
    for key in ("checkpoint", "config_snapshot"):
        value = results.get(key)
        if value and (f"runs/{name}/" not in value or any(o in value for o in others)):
            problems.append(f"{key} {value!r} is not under runs/{name}/")
    step = results.get("final_step")
    if step is not None and printed is not None and step > printed:
        problems.append(f"final step {step} beyond the last step it printed ({printed})")
    for line in state.get("next") or []:
        if any(o in line for o in others):
            problems.append(f"Next names another run: {line!r}")
    return problems


def last_printed(cwd: Path, job: str) -> int | None:
    steps = [
        int(m.group(1))
        for path in cwd.glob(f"*{job}*.out")
        for m in PRINTED_STEP.finditer(path.read_text(errors="replace"))
    ]
    return max(steps) if steps else None


def test_four_runs_in_one_folder_keep_their_own_results(cluster: Cluster) -> None:
    cwd = project(cluster, "ownership")
    toy = toy_script(cluster, cwd)
    runs: dict[str, tuple[str, Path]] = {}
    runs["a"] = submit(cluster, cwd, *BASE, toy, "--steps", "100000", *TOY, "--out-dir", "runs/a")
    runs["b"] = submit(
        cluster, cwd, *BASE, "--no-walltime-signal", "-t", "1",
        toy, "--steps", "100000", *TOY, "--out-dir", "runs/b",
    )  # fmt: skip
    runs["c"] = submit(cluster, cwd, *BASE, toy, "--steps", "300", *TOY, "--out-dir", "runs/c")
    wait_for(lambda: running_entry(runs["a"][1]), 120, "run a's progress")
    wait_for(lambda: (cwd / "runs" / "c" / "checkpoints").is_dir(), 120, "run c's checkpoints")
    assert cluster.run_as_user(["scancel", runs["a"][0]], cwd=cwd).returncode == 0
    final_attempt(cluster, runs["c"][0])
    runs["d"] = submit(cluster, cwd, *BASE, toy, "--steps", "60", *TOY, "--out-dir", "runs/d")
    # A fifth starts from c's weights (fine-tuning): c's checkpoint is where it came from.
    origin = str(wait_for(
        lambda: (state_of(runs["c"][1]).get("results") or {}).get("checkpoint"),
        60, "run c's checkpoint",
    ))  # fmt: skip
    runs["e"] = submit(
        cluster, cwd, *BASE, "--from", origin,
        toy, "--steps", "360", *TOY, "--out-dir", "runs/e", "--resume", origin,
    )  # fmt: skip
    for name in ("a", "b", "d", "e"):
        final_attempt(cluster, runs[name][0], timeout=300)

    def problems() -> list[str]:
        found = []
        for name, (job, log) in runs.items():
            state = state_of(log)
            if not state["jobs"] or state["jobs"][-1].get("end") is None:
                found.append(f"run {name}: no end yet")
                continue
            found += [f"run {name}: {p}" for p in own_problems(name, state, last_printed(cwd, job))]
        return found

    wait_for(lambda: not problems(), 60, "every run's Results its own", problems)
    # The cancelled run ended while the others were writing theirs: it says what it left.
    ends = [s[1] for s in state_of(runs["a"][1])["status"]]
    assert any("left out: no tie to this run" in e for e in ends), ends
    checkpoint = (state_of(runs["c"][1]).get("results") or {}).get("checkpoint") or ""
    assert "runs/c/checkpoints/" in checkpoint  # its own, and found
    e_md = runs["e"][1].read_text()
    assert f"- initialised from: `{origin}`" in e_md  # where it came from, as such
    assert "runs/e/checkpoints/" in (state_of(runs["e"][1])["results"]["checkpoint"] or "")
