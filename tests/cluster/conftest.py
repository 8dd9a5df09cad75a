"""The `cluster` fixture: hpcwrap's tests against the real Slurm dev cluster.

The cluster is brought up by `slurm/dev-cluster up` (tests/run does it); these
tests never start it themselves, and fail (not skip) when it is not up. At the
start of the session the current source of hpcwrap is installed into the
cluster's job venv (`slurm/dev-cluster install`, skipped when unchanged), so
jobs run by the non-root test user always run this checkout, even when the
user cannot read the repository (CI clones under /root, mode 700).

Other helpers' cluster tests use only this fixture; keep its shape.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEV_CLUSTER = REPO / "slurm" / "dev-cluster"
DEFAULT_DIR = "/var/lib/hpcwrap-dev-cluster"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Job states after which a job never runs again (squeue/sacct spelling).
FINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)

# Fields `Cluster.sacct` returns, one dict per job/step row.
SACCT_FIELDS = (
    "JobID",
    "JobIDRaw",
    "JobName",
    "User",
    "State",
    "ExitCode",
    "DerivedExitCode",
    "NodeList",
    "NNodes",
    "Start",
    "End",
    "Elapsed",
    "Timelimit",
    "Submit",
    "Reason",
    "WorkDir",
    "Comment",
)
# Unit separator: the comment (set by users, and by hpcwrap) may contain "|".
SACCT_DELIMITER = "\x1f"

START_HINT = (
    "the Slurm dev cluster is not up: run `slurm/dev-cluster up` as root (tests/run does it)"
)


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


@dataclass
class Cluster:
    """A running dev cluster, as seen by the tests.

    env: environment for Slurm commands run by the test process (root).
    user: the non-root user that submits test jobs.
    hpcwrap / python: in the job venv; the test user can run them, and they
    are always the current source.
    """

    env: dict[str, str]
    user: str
    hpcwrap: str
    python: str
    dir: Path
    slurm_conf: Path
    user_env: dict[str, str]
    tmp_root: Path
    _uid: int = field(repr=False)
    _gid: int = field(repr=False)

    def run(
        self, argv: list[str], timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a command as root with the cluster's environment (scontrol, sacctmgr...)."""
        return subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=check
        )

    def run_as_user(
        self,
        argv: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv as the test user in cwd; output captured as text.

        The environment is the test user's clean login-like environment
        (`user_env`: HOME, USER, PATH with the job venv first, SLURM_CONF),
        with `env` added on top. Nothing from the test process leaks in.
        """
        full_env = dict(self.user_env)
        if env:
            full_env.update(env)
        return subprocess.run(
            argv,
            cwd=cwd,
            env=full_env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            user=self._uid,
            group=self._gid,
            extra_groups=[],
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def user_dir(self, name: str) -> Path:
        """A fresh folder owned by the test user (unique even if name repeats)."""
        base = self.tmp_root / name
        path = base
        n = 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        path.mkdir(parents=True)
        os.chown(path, self._uid, self._gid)
        path.chmod(0o755)
        return path

    def _squeue(self, job_id: str) -> tuple[str, str] | None:
        res = self.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T|%N"])
        line = res.stdout.strip()
        if res.returncode != 0 or not line:
            return None
        state, _, nodes = line.splitlines()[0].partition("|")
        return state, nodes

    def job_state(self, job_id: str) -> str | None:
        """The job's state from squeue (any state), or None once slurmctld forgot it."""
        found = self._squeue(job_id)
        return found[0] if found else None

    def sacct_state(self, job_id: str, nodes: str | None = None) -> str | None:
        """The job allocation's state in accounting ("CANCELLED by 0" -> "CANCELLED").

        Not final until every step row is final too and, when slurmctld's
        node list is given, the job row shows it: accounting records the
        job's nodes a second or two after the job has ended (seen here).
        """
        rows = self.sacct(job_id)
        job = [r for r in rows if r["JobID"] == job_id]
        if not job or not job[0]["State"]:
            return None
        state = job[0]["State"].split()[0]
        if state not in FINAL_STATES:
            return state
        if any(r["State"].split()[0] not in FINAL_STATES for r in rows if r["State"]):
            return "COMPLETING"
        if nodes and job[0]["NodeList"] != nodes:
            return "COMPLETING"
        return state

    def wait_job(self, job_id: str, timeout: float = 120) -> str:
        """Wait until the job is final in squeue AND settled in sacct; return its final state.

        Polls squeue (slurmctld) first, then sacct, because accounting lags
        slurmctld: callers may read sacct rows right after this returns.
        """
        deadline = time.monotonic() + timeout
        found: tuple[str, str] | None = None
        final_seen_at: float | None = None
        while time.monotonic() < deadline:
            found = self._squeue(job_id)
            if found is None or found[0] in FINAL_STATES:
                nodes = found[1] if found and found[1] else None
                acct = self.sacct_state(job_id, nodes)
                if acct is not None and acct in FINAL_STATES:
                    return acct
                # Accounting normally settles within seconds; do not hang on it.
                now = time.monotonic()
                final_seen_at = final_seen_at or now
                if found is not None and now - final_seen_at > 20:
                    return found[0]
            time.sleep(0.5)
        raise TimeoutError(
            f"job {job_id} not final after {timeout:.0f}s: squeue says {found!r}, "
            f"sacct says {self.sacct(job_id)!r}"
        )

    def sacct(self, job_id: str) -> list[dict[str, str]]:
        """sacct rows (job and its steps) for job_id, as dicts keyed by SACCT_FIELDS."""
        res = self.run(
            [
                "sacct",
                "-a",
                "-n",
                "-P",
                f"--delimiter={SACCT_DELIMITER}",
                "-j",
                job_id,
                "-o",
                ",".join(SACCT_FIELDS),
            ]
        )
        if res.returncode != 0:
            raise RuntimeError(f"sacct -j {job_id} failed: {res.stderr.strip()}")
        rows = []
        for line in res.stdout.splitlines():
            values = line.split(SACCT_DELIMITER)
            if len(values) != len(SACCT_FIELDS):
                continue  # a comment with a newline would split a row; never seen
            rows.append(dict(zip(SACCT_FIELDS, values, strict=True)))
        return rows

    def submit(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
        """Run an sbatch command line as the test user; return the job id (needs --parsable)."""
        res = self.run_as_user(argv, cwd=cwd, env=env)
        if res.returncode != 0:
            raise RuntimeError(f"{argv!r} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout.strip().split(";")[0].splitlines()[-1]


def _cluster_dir() -> Path:
    return Path(os.environ.get("HPCWRAP_DEV_CLUSTER_DIR", DEFAULT_DIR))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.fail("cluster tests run as root (they submit as the test user): sudo tests/run")
    cdir = _cluster_dir()
    status = subprocess.run(
        ["bash", str(DEV_CLUSTER), "status"], capture_output=True, text=True, timeout=60
    )
    if status.returncode != 0:
        pytest.fail(
            f"{START_HINT}\n`slurm/dev-cluster status` said:\n{status.stdout}{status.stderr}"
        )
    info = _read_env_file(cdir / "etc" / "cluster.env")
    install = subprocess.run(
        ["bash", str(DEV_CLUSTER), "install"], capture_output=True, text=True, timeout=600
    )
    if install.returncode != 0:
        pytest.fail(
            "could not install this checkout of hpcwrap into the job venv "
            f"(`slurm/dev-cluster install`):\n{install.stdout}{install.stderr}"
        )

    user = info["HPCWRAP_DEV_CLUSTER_USER"]
    venv = Path(info["HPCWRAP_DEV_CLUSTER_VENV"])
    slurm_conf = Path(info["SLURM_CONF"])
    pw = pwd.getpwnam(user)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env["SLURM_CONF"] = str(slurm_conf)
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', SYSTEM_PATH)}"
    user_env = {
        "HOME": pw.pw_dir,
        "USER": user,
        "LOGNAME": user,
        "SHELL": pw.pw_shell or "/bin/bash",
        "PATH": f"{venv / 'bin'}:{SYSTEM_PATH}",
        "LANG": "C.UTF-8",
        "SLURM_CONF": str(slurm_conf),
        "TMPDIR": "/tmp",
    }

    # World-traversable root for user_dir(); /tmp is reachable by every user.
    tmp_root = Path(tempfile.mkdtemp(prefix="hpcwrap-cluster-tests-", dir="/tmp"))
    tmp_root.chmod(0o755)
    c = Cluster(
        env=env,
        user=user,
        hpcwrap=str(venv / "bin" / "hpcwrap"),
        python=str(venv / "bin" / "python"),
        dir=cdir,
        slurm_conf=slurm_conf,
        user_env=user_env,
        tmp_root=tmp_root,
        _uid=pw.pw_uid,
        _gid=pw.pw_gid,
    )
    yield c
    if not os.environ.get("HPCWRAP_KEEP_TEST_DIRS"):
        shutil.rmtree(tmp_root, ignore_errors=True)
