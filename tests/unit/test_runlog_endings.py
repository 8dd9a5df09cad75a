"""runlog/endings.py: one verdict on how a job ended, for every writer (no cluster)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hpcwrap.errors import TransitionError
from hpcwrap.runlog import endings
from hpcwrap.runlog.arrays import spec_indices
from hpcwrap.runlog.endings import Evidence, JobState, Strength, classify
from hpcwrap.runlog.experiments import row_values
from hpcwrap.runlog.facts import ChainFacts
from hpcwrap.runlog.model import JobBlock, RunState

PACKAGE = Path(endings.__file__).resolve().parents[1]
MEMORY_LINE = "slurmstepd: error: Exceeded step memory limit at some point."
S = Strength


@pytest.mark.parametrize(
    ("evidence", "state", "strength", "slurm"),
    [
        # the exit status alone
        (Evidence(exit_code=0), "COMPLETED", S.EXIT, "COMPLETED"),
        (Evidence(exit_code=1), "FAILED", S.EXIT, "FAILED"),
        (Evidence(exit_code=0, signal=9), "FAILED", S.EXIT, "FAILED"),
        (Evidence(), "FAILED", S.GUESS, "FAILED"),
        # a TERM with time left: a guess (scancel, requeue and node failure look alike)
        (
            Evidence(exit_code=143, terminated_by="SIGTERM", time_left_at_term=3000),
            "CANCELLED",
            S.GUESS,
            None,
        ),
        # a TERM at the limit (within the kill grace)
        (
            Evidence(exit_code=143, terminated_by="SIGTERM", time_left_at_term=5),
            "TIMEOUT",
            S.GUESS,
            None,
        ),
        # hpcwrap's own word: exited on the walltime-warning path (sacct: FAILED 124:0)
        (Evidence(exit_code=124, walltime_warning=True), "TIMEOUT", S.OWN, "FAILED"),
        (
            Evidence(exit_code=0, walltime_warning=True, finished_all_steps=True),
            "COMPLETED",
            S.EXIT,
            "COMPLETED",
        ),
        # a warning is evidence the limit was near, not that it was reached (issue 26)
        (Evidence(exit_code=0, walltime_warning=True), "COMPLETED", S.EXIT, "COMPLETED"),
        (Evidence(exit_code=1, walltime_warning=True), "FAILED", S.EXIT, "FAILED"),
        (
            Evidence(exit_code=0, walltime_warning=True, short_of_total=True),
            "TIMEOUT",
            S.OWN,
            "COMPLETED",
        ),
        # slurmstepd's line for this attempt: the epilog's reading
        (Evidence(exit_code=0, signal=0, stepd=JobState.TIMEOUT), "TIMEOUT", S.READING, "TIMEOUT"),
        (Evidence(exit_code=0, signal=15, stepd=JobState.CANCELLED), "CANCELLED", S.READING, None),
        (Evidence(stepd=JobState.PREEMPTED), "PREEMPTED", S.READING, "PREEMPTED"),
        (Evidence(stepd=JobState.REQUEUED), "REQUEUED", S.READING, "REQUEUED"),
        (Evidence(stepd=JobState.NODE_FAIL), "NODE_FAIL", S.READING, "NODE_FAIL"),
        (Evidence(exit_code=0, signal=0, restarted=True), "REQUEUED", S.READING, "REQUEUED"),
        (Evidence(exit_code=0, signal=0, at_limit=True), "TIMEOUT", S.READING, "TIMEOUT"),
        (Evidence(exit_code=0, signal=0, never_launched=True), "CANCELLED", S.READING, None),
        # Slurm's own word, every end its own state
        (Evidence(slurm_state="BOOT_FAIL"), "BOOT_FAIL", S.SLURM, "BOOT_FAIL"),
        (Evidence(slurm_state="DEADLINE"), "DEADLINE", S.SLURM, "DEADLINE"),
        (Evidence(slurm_state="OUT_OF_MEMORY"), "OUT_OF_MEMORY", S.SLURM, "OUT_OF_MEMORY"),
        (Evidence(slurm_state="CANCELLED by 1000"), "CANCELLED", S.SLURM, "CANCELLED"),
    ],
)
def test_classify(evidence: Evidence, state: str, strength: Strength, slurm: str | None) -> None:
    verdict = classify(evidence)
    assert (verdict.state, verdict.strength) == (state, strength), verdict.why
    if slurm is not None:
        assert verdict.slurm_state == slurm


def test_the_memory_limit_line_is_one_pattern_for_text_and_bytes() -> None:
    # the wrapper reads text from the pipe, the epilog bytes from the file: they agree
    assert endings.lines_seen(MEMORY_LINE) & endings.MEMORY_KINDS
    assert endings.memory_in(MEMORY_LINE.encode())
    assert endings.memory_in(b"slurmstepd: error: Exceeded job memory limit")
    assert not endings.memory_in(b"torch.OutOfMemoryError: CUDA out of memory.")
    verdict = classify(Evidence(exit_code=0, signal=9, lines=endings.lines_seen(MEMORY_LINE)))
    assert (verdict.state, verdict.exit_code, verdict.slurm_state) == (
        "OUT_OF_MEMORY",
        137,
        "FAILED",
    )


@pytest.mark.parametrize(
    ("evidence", "state", "why"),
    [
        # a memory kill is followed by Slurm's plain cancel line: the kill is the cause
        (Evidence(stepd=JobState.CANCELLED, lines=frozenset({"mem_limit"})), "OUT_OF_MEMORY", ""),
        # a node failure requeues the job: it stays a node failure, and says so
        (
            Evidence(stepd=JobState.NODE_FAIL, restarted=True, node="n1"),
            "NODE_FAIL",
            "node n1 failed; Slurm requeued the job",
        ),
        # Slurm's own word beats the epilog's reading and the wrapper's guess
        (
            Evidence(stepd=JobState.CANCELLED, slurm_state="PREEMPTED", terminated_by="SIGTERM"),
            "PREEMPTED",
            "",
        ),
        # ...but not hpcwrap's own word for a walltime-warning exit
        (
            Evidence(exit_code=124, walltime_warning=True, slurm_state="FAILED"),
            "TIMEOUT",
            "walltime warning",
        ),
        # a TERM after the warning is still a cancel when time was left
        (
            Evidence(
                exit_code=143,
                walltime_warning=True,
                terminated_by="SIGTERM",
                time_left_at_term=200,
            ),
            "CANCELLED",
            "",
        ),
    ],
)
def test_conflicting_evidence_is_ranked(evidence: Evidence, state: str, why: str) -> None:
    verdict = classify(evidence)
    assert verdict.state == state and why in verdict.why


def test_every_state_says_what_it_is() -> None:
    assert {s for s in JobState if not s.final} == {"SUBMITTED", "PENDING", "RUNNING"}
    assert {s for s in JobState if s.resumable} == {"TIMEOUT", "PREEMPTED", "DEADLINE"}
    assert JobState.NODE_FAIL.failed and not JobState.CANCELLED.failed
    assert JobState.OUT_OF_MEMORY.word == "out of memory" and f"{JobState.TIMEOUT}" == "TIMEOUT"
    assert {s.tone for s in JobState} == {"ok", "active", "waiting", "bad", "stopped"}
    for state in JobState:
        for name in state.slurm_names:
            assert endings.from_slurm(name) is state
    with pytest.raises(TransitionError):
        endings.from_slurm("SLEEPING")


def test_slurm_words_over_and_active() -> None:
    assert endings.slurm_over("CANCELLED by 0") and endings.slurm_over("NODE_FAIL")
    assert not endings.slurm_over("REQUEUED") and not endings.slurm_over("RUNNING")
    assert endings.slurm_active("REQUEUE_HOLD") and endings.slurm_active("COMPLETING")
    assert not endings.slurm_active("TIMEOUT") and not endings.slurm_active("SLEEPING")


def test_the_run_as_a_whole() -> None:
    why = "no progress: job 133 saved no newer checkpoint"
    assert endings.run_state("COMPLETED", why, chain_done=False) == "stopped"
    assert endings.run_state("COMPLETED", "job 9 ended COMPLETED", chain_done=True) == "COMPLETED"
    assert endings.run_state("FAILED", "job 9 ended FAILED", chain_done=False) == "FAILED"
    assert endings.run_state("COMPLETED", None, chain_done=False) == "COMPLETED"


def test_experiments_md_says_chain_stopped() -> None:
    state = RunState(run_type="experiment", jobs=[JobBlock(execution_id="9", state="COMPLETED")])
    assert row_values(state)["status"] == ""
    state.chain = ChainFacts(stopped="no progress: job 8 saved no newer checkpoint")
    assert row_values(state)["status"] == "chain stopped"


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("0-3", {"0", "1", "2", "3"}),
        ("0-11%4", {str(i) for i in range(12)}),
        ("1,5-9:2", {"1", "5", "7", "9"}),
        ("", None),
        ("a-b", None),
        ("5-1", None),
    ],
)
def test_array_spec_indices(spec: str, want: set[str] | None) -> None:
    assert spec_indices(spec) == (frozenset(want) if want is not None else None)


# ---------------------------------------------------------------- one place for state words

SLURM_WORDS = frozenset(name for state in JobState for name in (state.value, *state.slurm_names))


def _word_sets(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """Set, frozenset, tuple, list and dict-key literals holding two or more state words."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Set | ast.Tuple | ast.List):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        words = [
            e.value
            for e in items
            if isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value in SLURM_WORDS
        ]
        if len(words) >= 2:
            found.append((node.lineno, words))
    return found


def test_no_module_but_endings_keeps_its_own_set_of_state_words() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "endings.py" and path.parent.name == "runlog":
            continue
        for line, words in _word_sets(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {words}")
    assert not offenders, "state words belong in runlog/endings.py:\n" + "\n".join(offenders)


def test_the_state_word_check_finds_a_set() -> None:
    # the check above can fail: a module with its own set is found
    tree = ast.parse('DONE = frozenset({"COMPLETED", "FAILED"})\nx = ("RUNNING", "a")\n')
    assert _word_sets(tree) == [(1, ["COMPLETED", "FAILED"])]
