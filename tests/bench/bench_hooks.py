"""Epilog cost, as Slurm pays it: the shim run under ``env -i`` with Slurm's variables.

    sudo .venv/bin/python tests/bench/bench_hooks.py [--reps 41]

Figures (median and p90 wall time, ms), each with its baseline measured in the same run:

- a job that is not hpcwrap's (most jobs on a node): ``slurm/epilog.sh`` vs
  ``/bin/true`` started the same way (``env -i ... /bin/sh``);
- an hpcwrap job whose wrapper already recorded the end (the common case: the
  hook confirms it and adds Slurm's account): the shim vs ``python -I -c pass``
  (the interpreter's own start, which the hook cannot avoid).

Needs root (the hook drops to the job's user, here "nobody").
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hpcwrap.runlog import RunState, create_run
from hpcwrap.runlog.model import JobBlock

REPO = Path(__file__).resolve().parents[2]
EPILOG = REPO / "slurm" / "epilog.sh"


def timed(argv: list[str], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def show(name: str, ms: list[float], base: list[float]) -> None:
    med, bmed = statistics.median(ms), statistics.median(base)
    p90 = sorted(ms)[int(0.9 * (len(ms) - 1))]
    print(f"  {name:<44} median {med:7.2f} ms  p90 {p90:7.2f} ms  ratio {med / bmed:5.2f}x")


def measure(r: int) -> dict[str, list[float]]:
    """Milliseconds per run (root only): ``true`` and ``shim_plain`` (a job not
    hpcwrap's), ``py`` and ``shim_ours`` (an hpcwrap job whose end the wrapper recorded),
    ``first`` (the first epilog, which adds Slurm's account)."""
    pw = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="hpcwrap-bench-hooks-"))
    try:
        base.chmod(0o755)
        home = base / "home"
        home.mkdir()
        start = datetime.now(timezone.utc) - timedelta(minutes=1)
        done = JobBlock(execution_id="12", start=start, end=start + timedelta(seconds=30))
        done.state, done.exit_code, done.state_source = "COMPLETED", 0, "wrapper"
        log = create_run(home / "run_logs", RunState(objective="bench", jobs=[done]))
        for dirpath, dirnames, filenames in os.walk(home):
            os.chown(dirpath, pw.pw_uid, pw.pw_gid)
            for n in [*dirnames, *filenames]:
                os.lchown(os.path.join(dirpath, n), pw.pw_uid, pw.pw_gid)
        slurm = {
            "SLURM_JOB_ID": "12",
            "SLURM_JOB_UID": str(pw.pw_uid),
            "SLURM_JOB_GID": str(pw.pw_gid),
            "SLURM_JOB_USER": "nobody",
            "SLURMD_NODENAME": "n1",
            "SLURM_NODELIST": "n1",
            "SLURM_CLUSTER_NAME": "bench",
            "SLURM_JOB_EXIT_CODE2": "0:0",
            "HPCWRAP_PYTHON": sys.executable,
            "HPCWRAP_SPOOL": str(base / "spool"),
        }

        def env_i(extra: dict[str, str], *argv: str) -> list[str]:
            return ["env", "-i", *(f"{k}={v}" for k, v in {**slurm, **extra}.items()), *argv]

        plain = {"SLURM_JOB_COMMENT": "someone else's job"}
        ours = {"SLURM_JOB_COMMENT": f"hpcwrap:{log.path}"}
        out = {
            "true": timed(env_i(plain, "/bin/true"), r),
            "shim_plain": timed(env_i(plain, "/bin/sh", str(EPILOG)), r),
            "py": timed(env_i(ours, sys.executable, "-I", "-c", "pass"), r),
            "first": timed(env_i(ours, "/bin/sh", str(EPILOG)), 1),
            "shim_ours": timed(env_i(ours, "/bin/sh", str(EPILOG)), r),
        }
        state = log.read().jobs[0]
        assert (state.slurm_state, state.slurm_exit) == ("COMPLETED", "0:0"), state
        return out
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=41)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_hooks: run as root (the hook drops to the job's user)", file=sys.stderr)
        return 2
    r = args.reps
    print(f"bench_hooks: {r} runs each, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    got = measure(r)
    print("non-hpcwrap job (no Python started):")
    show("env -i /bin/true (baseline)", got["true"], got["true"])
    show("env -i /bin/sh slurm/epilog.sh", got["shim_plain"], got["true"])
    print("hpcwrap job, end already recorded by the wrapper (hook confirms):")
    show("env -i python -I -c pass (baseline)", got["py"], got["py"])
    show("env -i /bin/sh slurm/epilog.sh", got["shim_ours"], got["py"])
    print(f"  first run (adds Slurm's account to the log): {got['first'][0]:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
