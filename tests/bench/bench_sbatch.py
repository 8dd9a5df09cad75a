"""Wall time of `hpcwrap sbatch` against plain `sbatch`, same script, same cluster, same run.

    eval "$(slurm/dev-cluster env)"; .venv/bin/python tests/bench/bench_sbatch.py [--reps N]

Every job is submitted held (--hold) and cancelled at the end, so the cluster
does no work and only the submission is timed. The two commands alternate
within each repetition (so drift in the controller's load hits both alike).
Besides the two totals it times the parts hpcwrap adds, each alone:

- start:      the interpreter plus hpcwrap's imports (`hpcwrap --version`)
- dry-run:    start + option/script reading + git state, no writes, no sbatch
- replication: the whole `hpcwrap sbatch` in a clean git repo (run log,
              timeline, sidecar copies, sbatch, job id written back)
- experiment: the same with a dirty tree (diff saved) and an experiment tag

Figures are medians (and min) in milliseconds, with the ratio to plain sbatch.
PYTHONDONTWRITEBYTECODE is removed for the timed commands (see below).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SCRIPT = "#!/bin/bash\n#SBATCH --time=1\n#SBATCH --job-name=bench\necho hello\n"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed, proc.stdout + "\n" + proc.stderr


FOLLOW_UP = re.compile(r"follow-up job (\d+)")


def job_id(stdout: str) -> str:
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("Submitted batch job "):
            return line.rsplit(" ", 1)[1]
        if line.split(";")[0].isdigit():
            return line.split(";")[0]
    raise SystemExit(f"no job id in {stdout!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=15, help="repetitions (default 15)")
    ap.add_argument("--hpcwrap", default=str(Path(sys.executable).parent / "hpcwrap"))
    args = ap.parse_args()
    sbatch = shutil.which("sbatch")
    if sbatch is None or not os.environ.get("SLURM_CONF"):
        print('needs sbatch and SLURM_CONF: eval "$(slurm/dev-cluster env)"', file=sys.stderr)
        return 2
    env = {**os.environ, **GIT_ENV}
    for name in list(env):
        if name.startswith(("SBATCH_", "HPCWRAP_")):
            del env[name]
    # Time what a user gets: Python caches compiled modules (.pyc). Some sandboxes set
    # PYTHONDONTWRITEBYTECODE, which makes every run compile hpcwrap from source again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    work = Path(tempfile.mkdtemp(prefix="hpcwrap-bench-"))
    projects = {}
    for name in ("clean", "dirty", "no-follow-up"):
        proj = work / name
        proj.mkdir()
        (proj / "train.sh").write_text(SCRIPT)
        (proj / "train.sh").chmod(0o755)
        (proj / "model.py").write_text("x = 1\n" * 200)
        for cmd in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "i"]):
            subprocess.run(["git", *cmd], cwd=proj, env=env, check=True)
        projects[name] = proj
    (projects["dirty"] / "model.py").write_text("x = 2\n" * 200)
    # The follow-up job (on by default) is one more sbatch: its cost, measured apart.
    (projects["no-follow-up"] / "hpcwrap.toml").write_text("follow_up = false\n")

    hp = args.hpcwrap
    rep = ["--mode", "replication", "--objective", "bench"]
    exp = ["--mode", "experiment", "--objective", "bench"]
    clean, dirty = projects["clean"], projects["dirty"]
    cases: dict[str, Callable[[], tuple[float, str]]] = {
        "plain sbatch": lambda: run([sbatch, "--parsable", "--hold", "train.sh"], clean, env),
        "hpcwrap sbatch (replication)": lambda: run(
            [hp, "sbatch", *rep, "--hold", "train.sh"], clean, env
        ),
        "hpcwrap sbatch (no follow-up job)": lambda: run(
            [hp, "sbatch", *rep, "--hold", "train.sh"], projects["no-follow-up"], env
        ),
        "hpcwrap sbatch (experiment, dirty)": lambda: run(
            [hp, "sbatch", *exp, "--hold", "train.sh"], dirty, env
        ),
        "hpcwrap start (--version)": lambda: run([hp, "--version"], clean, env),
        "hpcwrap sbatch --dry-run": lambda: run(
            [hp, "sbatch", *rep, "--dry-run", "--hold", "train.sh"], clean, env
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    jobs: list[str] = []
    try:
        for name, fn in cases.items():  # warm-up: page cache, first import, first RPC
            _, out = fn()
            if "sbatch" in name and "dry" not in name:
                jobs.append(job_id(out))
                jobs += FOLLOW_UP.findall(out)
        for _ in range(args.reps):
            for name, fn in cases.items():
                elapsed, out = fn()
                times[name].append(elapsed)
                if "sbatch" in name and "dry" not in name:
                    jobs.append(job_id(out))
                    jobs += FOLLOW_UP.findall(out)
    finally:
        for i in range(0, len(jobs), 200):
            subprocess.run(["scancel", *jobs[i : i + 200]], env=env, check=False)
        shutil.rmtree(work, ignore_errors=True)

    base = statistics.median(times["plain sbatch"])
    print(f"{args.reps} repetitions, sbatch {sbatch}, hpcwrap {hp}")
    print(f"{'command':38} {'median ms':>10} {'min ms':>8} {'x plain':>8}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:38} {med * 1000:10.1f} {min(values) * 1000:8.1f} {med / base:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
