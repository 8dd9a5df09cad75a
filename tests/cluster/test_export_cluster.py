"""`hpcwrap export` of a real run log: a job on the dev cluster through `hpcwrap sbatch`,
then the export, run as the job's user with a $SCRATCH as on a real cluster, keeps no job
id, node name (n1/n2 become <node1>/<node2>), username or home/scratch path, and keeps
every step and loss figure the log holds."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import uuid
from pathlib import Path

import pytest

from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SUBMITTED = re.compile(r"^Submitted batch job (\d+)$", re.M)
FIGURE = re.compile(
    r"(?:\bstep|train_loss|val_loss|exit code|final step:|_loss: `|runtime: `|start `|end `)"
    r"\s*([\d.:/T+-]+)"
)


def _chown_tree(root: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for n in filenames:
            os.chown(os.path.join(dirpath, n), pw.pw_uid, pw.pw_gid)


def test_export_of_a_real_run_log(cluster: Cluster) -> None:
    repo = cluster.user_dir("export")
    shutil.copytree(REPO / "examples", repo / "examples")
    scratch = cluster.user_dir("export-scratch")
    # a config in the user's home, as people keep them: the log names /home/<user>/...
    home = Path(pwd.getpwnam(cluster.user).pw_dir)
    cfg_dir = home / f"hpcwrap-export-test-{uuid.uuid4().hex[:8]}"
    cfg_dir.mkdir()
    try:
        shutil.copy(REPO / "examples" / "config.json", cfg_dir / "config.json")
        _chown_tree(cfg_dir, cluster.user)
        _chown_tree(repo, cluster.user)
        res = cluster.run_as_user(
            [
                cluster.hpcwrap, "sbatch", "--mode", "replication",
                "--objective", "a real log to export", "--config", str(cfg_dir / "config.json"),
                "examples/train.sh", "--steps", "200", "--steps-per-sec", "40",
                "--out-dir", str(scratch / "runs" / "toy"),
            ],
            cwd=repo,
            timeout=120,
        )  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
        job_id = SUBMITTED.search(res.stdout)
        run_log = re.search(r"^run log: (.+)$", res.stdout, re.M)
        assert job_id and run_log, res.stdout
        jid = job_id.group(1)
        assert cluster.wait_job(jid, timeout=180) == "COMPLETED"
        node = next(r["NodeList"] for r in cluster.sacct(jid) if r["JobID"] == jid)
        assert node in ("n1", "n2")

        original = Path(run_log.group(1)).read_text()
        # what the export must remove is really in the log
        assert f"- execution_id: {jid}" in original and f"- node: {node}" in original
        assert str(scratch) in original and f"/home/{cluster.user}/" in original

        exported = repo / "TRAINING_LOG.md"
        res = cluster.run_as_user(
            [cluster.hpcwrap, "export", run_log.group(1), "-o", str(exported)],
            cwd=repo,
            env={"SCRATCH": str(scratch)},
        )
        assert res.returncode == 0, res.stderr
        text = exported.read_text()
        summary = res.stderr
    finally:
        shutil.rmtree(cfg_dir, ignore_errors=True)

    assert cluster.user not in text and "/home/" not in text
    assert str(scratch) not in text and str(repo) not in text and str(cluster.tmp_root) not in text
    assert not re.search(r"(?<![\w<])n[12](?![\w>])", text)
    assert "- node: <node1>" in text and "- execution_id: <job-id>" in text
    assert "`<scratch>/runs/toy/checkpoints/200`" in text
    assert f"config: `<home>/{cfg_dir.name}/config.json`" in text
    # the job id is left nowhere it stands as the id (job 7, slurm-7.out, 7.batch, ...)
    as_id = re.compile(rf"(?:\bjob[ _-]?|slurm-|execution_id: ){jid}\b|\b{jid}\.(?:batch|extern)\b")
    assert not as_id.search(text), as_id.search(text)
    # ... and, where the id is long enough to be told from other numbers (a fresh
    # cluster's job 2 is also "2%" of a CPU), nowhere but where it also is a figure
    token = re.compile(rf"(?<![\w.:/-]){jid}(?![\w.:/-])")
    for line in text.splitlines() if len(jid) >= 4 else ():
        if token.search(line):
            assert jid in FIGURE.findall(line), line
    figures = FIGURE.findall(original)
    assert len(figures) >= 8 and "200" in figures
    for figure in figures:
        assert figure in text, figure
    one_liner = re.search(r"^- loss_one_liner: (.+)$", original, re.M)
    assert one_liner and one_liner.group(0) in text
    assert re.search(r"^export: +\d+ job ids$", summary, re.M), summary
    assert re.search(r"^export: +\d+ node names$", summary, re.M), summary
    # the copy passes --check; the run log itself does not
    check = [cluster.hpcwrap, "export", "--check"]
    assert cluster.run_as_user([*check, str(exported)], cwd=repo).returncode == 0
    res = cluster.run_as_user([*check, run_log.group(1), run_log.group(1)], cwd=repo)
    assert res.returncode == 19, res.stdout + res.stderr
