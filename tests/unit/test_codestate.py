"""Code state against real git repositories in temporary folders."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hpcwrap.errors import CodeStateError
from hpcwrap.submit import codestate

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ, **GIT_ENV, "HOME": str(repo.parent / "home")}
    proc = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args}: {proc.stderr}")
    return proc.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # no user git config leaks in
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "train.py").write_text("lr = 1e-3\n")
    (r / "data.bin").write_bytes(bytes(range(256)))
    (r / "old.txt").write_text("to be deleted\n")
    (r / "run.sh").write_text("#!/bin/bash\n")
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "init")
    return r


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(folder).parts
    }


def test_clean(repo: Path) -> None:
    s = codestate.capture(repo)
    assert s.repo == repo.resolve()
    assert s.branch == "main"
    assert s.commit == git(repo, "rev-parse", "HEAD")
    assert not s.dirty and s.diff == b"" and s.untracked == 0
    assert s.summary() == f"git `{s.commit[:12]}` (branch main), clean"


def test_dirty_diff_reapplies_in_a_clean_checkout(repo: Path, tmp_path: Path) -> None:
    # unstaged edit, staged edit, a new staged file, a deletion, a binary change, a mode change
    (repo / "train.py").write_text("lr = 5e-4\n# tuned\n")
    (repo / "staged.py").write_text("x = 1\n")
    git(repo, "add", "staged.py")
    (repo / "data.bin").write_bytes(bytes(reversed(range(256))) + b"\0tail")
    git(repo, "add", "data.bin")
    (repo / "old.txt").unlink()
    (repo / "run.sh").chmod(0o755)
    (repo / "untracked.txt").write_text("not recorded\n")
    # hostile user config must not change the diff format
    git(repo, "config", "diff.noprefix", "true")
    git(repo, "config", "color.ui", "always")
    git(repo, "config", "diff.mnemonicPrefix", "true")

    s = codestate.capture(repo)
    assert s.dirty
    assert s.changed_files == 5
    assert s.untracked == 1 and s.untracked_sample == ("untracked.txt",)
    diff = codestate.save_diff(s, tmp_path / "side" / "code.diff")
    assert diff is not None and diff.read_bytes() == s.diff

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "checkout", "-q", s.commit or "")
    git(clone, "apply", str(diff))
    expected = _tree(repo)
    del expected["untracked.txt"]
    assert _tree(clone) == expected
    assert os.stat(clone / "run.sh").st_mode & 0o111


def test_run_logs_folder_is_not_code(repo: Path) -> None:
    # A run-logs folder of another name (run_logs = "logs" in hpcwrap.toml) is excluded
    # when given; one named run_logs/ never counts.
    for name, exclude in (("logs", True), ("run_logs", False)):
        logs = repo / name
        logs.mkdir()
        (logs / "timeline.md").write_text("# t\n")
        git(repo, "add", name)
        git(repo, "commit", "-q", "-m", "logs")
        (logs / "timeline.md").write_text("# t\n1. new\n")
        (logs / "2026-01-01_train.md").write_text("# new\n")
        s = codestate.capture(repo, exclude=[logs] if exclude else [])
        assert not s.dirty and s.untracked == 0, name
        if exclude:
            s2 = codestate.capture(repo)
            assert s2.dirty and s2.untracked == 1
            git(repo, "checkout", "-q", "--", name)
            (logs / "2026-01-01_train.md").unlink()


def test_capture_from_a_subfolder(repo: Path) -> None:
    sub = repo / "pkg"
    sub.mkdir()
    (sub / "new.txt").write_text("x")
    s = codestate.capture(sub)
    assert s.repo == repo.resolve()
    assert s.untracked == 1


def test_outside_git(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    s = codestate.capture(folder)
    assert s.repo is None and s.commit is None
    assert s.summary() == "not in git (not a git repository)"


def test_repository_without_commits(tmp_path: Path) -> None:
    r = tmp_path / "empty"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "a.txt").write_text("a\n")
    git(r, "add", "a.txt")
    s = codestate.capture(r)
    assert s.commit is None and s.branch == "main"
    assert s.dirty and b"a.txt" in s.diff
    with pytest.raises(CodeStateError, match="no commit"):
        codestate.create_tag(s, "hpcwrap/x")


def test_detached_head(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    s = codestate.capture(repo)
    assert s.branch is None
    assert "detached HEAD" in s.summary()


def test_tags(repo: Path) -> None:
    s = codestate.capture(repo)
    name = codestate.tag_name("2026-03-11_train", "front cam")
    assert name == "hpcwrap/front cam/2026-03-11_train"
    with pytest.raises(CodeStateError, match="not a valid git tag"):
        codestate.create_tag(s, name)
    name = codestate.tag_name("2026-03-11_train", "front_cam")
    assert codestate.create_tag(s, name) == name
    assert codestate.create_tag(s, name) == name + "_2"  # never moves an existing tag
    assert git(repo, "tag", "--points-at", "HEAD").split() == [name, name + "_2"]
    assert git(repo, "cat-file", "-t", name) == "commit"  # lightweight
    # a tag that was moved to another commit is not ours to delete
    (repo / "train.py").write_text("changed\n")
    git(repo, "commit", "-q", "-am", "next")
    git(repo, "tag", "-f", name + "_2", "HEAD")
    assert not codestate.delete_tag(repo, name + "_2", s.commit or "")
    assert codestate.delete_tag(repo, name, s.commit or "")
    assert git(repo, "tag").split() == [name + "_2"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the repository away")
def test_git_refusing_the_repository_is_an_error(repo: Path) -> None:
    """git refuses a repository owned by someone else ("dubious ownership"): say so."""
    for p in [repo, *repo.rglob("*")]:
        os.lchown(p, 4242, 4242)
    with pytest.raises(CodeStateError, match="dubious ownership"):
        codestate.capture(repo)


def test_hpcwrap_files_and_job_outputs_are_not_untracked_code(repo: Path) -> None:
    # A run_logs/ that is not the one excluded (made from a subfolder), its sidecars,
    # Slurm's output files and an offline W&B run: none is the user's code.
    for rel in (
        "sub/run_logs/2026-03-11_train.md",
        "sub/run_logs/.hpcwrap/2026-03-11_train/state.json",
        "run_logs/timeline.md",
        "slurm-12.out",
        "sub/slurm-3_1.out",
        "slurm-12.err",
        "wandb/offline-run-1/run.wandb",
        "2026-03-11_train.hpcwrap-conflict.md",
        "new_model.py",
    ):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("x\n")
    state = codestate.capture(repo)
    assert state.untracked == 1 and state.untracked_sample == ("new_model.py",)
    assert "1 untracked file(s) not recorded" in state.summary()


def test_the_outputs_of_earlier_runs_are_not_untracked_code(repo: Path) -> None:
    """Checkpoints, weights and framework logs, and the folders earlier runs recorded
    their checkpoints and config snapshots in, are not code: the count was all noise
    (91 files in a real project). A new code file is still counted, and a folder that
    holds tracked code is never left out because a run wrote into it."""
    from hpcwrap.runlog import RunState, create_run
    from hpcwrap.runlog.outputs import recorded_outputs

    for rel in (
        "runs/toy/checkpoints/200/trainer_state.json",
        "runs/toy/config_resolved.yaml",
        "runs/toy/eval/metrics.txt",
        "out-shakespeare/ckpt.pt",
        "lightning_logs/version_0/metrics.csv",
        "out_hf/checkpoint-150/config.json",
        "model.safetensors",
        "snap_config.yaml",
        "new_model.py",
    ):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("x\n")
    root = repo / "run_logs"
    log = create_run(root, RunState(task="train", run_type="replication", objective="o"))

    def ran(s: RunState) -> None:
        s.results.checkpoint = str(repo / "runs/toy/checkpoints/200")
        s.results.config_snapshot = str(repo / "snap_config.yaml")  # beside tracked code

    log.update(ran)
    outputs = recorded_outputs(root)
    assert sorted(outputs) == sorted([repo / "runs/toy/checkpoints/200", repo / "snap_config.yaml"])
    state = codestate.capture(repo, exclude=[root], outputs=outputs)
    assert state.untracked_sample == ("new_model.py",), state.untracked_sample
    # without the run logs' word, the run's other files stay counted
    plain = codestate.capture(repo, exclude=[root])
    assert set(plain.untracked_sample) == {
        "new_model.py",
        "runs/toy/config_resolved.yaml",
        "runs/toy/eval/metrics.txt",
        "snap_config.yaml",
    }


def test_a_tracked_package_named_like_an_output_folder_is_still_code(repo: Path) -> None:
    (repo / "src" / "checkpoints").mkdir(parents=True)
    (repo / "src" / "checkpoints" / "io.py").write_text("def save(): ...\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "a package named checkpoints")
    (repo / "src" / "checkpoints" / "io.py").write_text("def save(): return 1\n")
    state = codestate.capture(repo)
    assert state.dirty and b"return 1" in state.diff
