"""Fixtures shared by the unit tests that ask the real sbatch (when installed).

The oracle's slurm.conf points at a port nothing listens on (9, discard), with short
timeouts, and the calls pass --test-only: sbatch parses its options and the script's
directives before it contacts any controller, and no job can result.
"""

from __future__ import annotations

import os

import pytest

from hpcwrap.scheduler import installed_sbatch


@pytest.fixture(scope="session")
def oracle_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    conf = tmp_path_factory.mktemp("oracle") / "slurm.conf"
    conf.write_text(
        "ClusterName=hpcwraporacle\nSlurmctldHost=localhost\nSlurmctldPort=9\n"
        "TCPTimeout=1\nMessageTimeout=1\n"
        "NodeName=o1 CPUs=1\nPartitionName=o Nodes=o1 Default=YES\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env["SLURM_CONF"] = str(conf)
    env["LC_ALL"] = "C"
    env["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("oracle-cache"))
    return env


@pytest.fixture(autouse=True)
def _sbatch_options_as_the_oracle_has_them(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test that asks the oracle compares it with the options hpcwrap learns from that
    same sbatch (a newer Slurm's table is not 22.05's)."""
    if "oracle_env" not in request.fixturenames:
        return
    env: dict[str, str] = request.getfixturevalue("oracle_env")
    for key in ("SLURM_CONF", "XDG_CACHE_HOME", "LC_ALL"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setattr(installed_sbatch, "_memo", {})
