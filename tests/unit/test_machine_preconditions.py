"""slurm/preconditions.sh: slurm/demo and tests/run name what a machine lacks.

The one precondition (Debian 12 or Ubuntu 22.04+, apt, Python 3.10+) is
checked before anything is installed; elsewhere both scripts stop with a
message naming what is missing, not a bash error.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

DEBIAN_12 = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


def check(
    tmp_path: Path, os_release: str | None, python: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCWRAP_")}
    osr = tmp_path / "os-release"
    if os_release is not None:
        osr.write_text(os_release)
    env["HPCWRAP_OS_RELEASE"] = str(osr)
    if python is not None:
        env["HPCWRAP_TEST_PYTHON"] = python
    script = f"source {REPO / 'slurm/preconditions.sh'}; check_machine demo; echo passed"
    return subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30
    )


def fake_python(tmp_path: Path, version: str) -> str:
    exe = tmp_path / "python3"
    major, minor = version.split(".")
    exe.write_text(
        "#!/bin/sh\n"
        # the version test (sys.exit(...)) answers by exit status, the rest prints
        f'case "$2" in *sys.exit*) [ {minor} -ge 10 ] && [ {major} -ge 3 ] && exit 0;'
        " exit 1 ;; esac\n"
        f"echo {version}\n"
    )
    exe.chmod(0o755)
    return str(exe)


@pytest.mark.skipif(not Path("/usr/bin/apt-get").exists(), reason="the check also wants apt-get")
def test_debian_12_and_ubuntu_22_04_pass(tmp_path: Path) -> None:
    assert check(tmp_path, DEBIAN_12).stdout.strip() == "passed"
    ubuntu = 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\nVERSION_ID="22.04"\n'
    assert check(tmp_path, ubuntu).stdout.strip() == "passed"
    # Debian 13, and unstable (no VERSION_ID, only a codename: as its os-release is)
    trixie = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'
    assert check(tmp_path, trixie).stdout.strip() == "passed"
    sid = 'PRETTY_NAME="Debian GNU/Linux forky/sid"\nVERSION_CODENAME=forky\nID=debian\n'
    assert check(tmp_path, sid).stdout.strip() == "passed"
    # No python3 at all is fine: Debian's python3-venv brings it.
    assert check(tmp_path, DEBIAN_12, str(tmp_path / "absent")).stdout.strip() == "passed"


@pytest.mark.parametrize(
    ("os_release", "named"),
    [
        ('PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_ID="11"\n',
         "Debian 12 or newer (this is Debian GNU/Linux 11 (bullseye))"),
        ('PRETTY_NAME="Ubuntu 20.04.6 LTS"\nID=ubuntu\nVERSION_ID="20.04"\n',
         "Ubuntu 22.04 or newer (this is Ubuntu 20.04.6 LTS)"),
        ('PRETTY_NAME="Fedora Linux 40"\nID=fedora\nVERSION_ID=40\n',
         "Debian 12 or Ubuntu 22.04+ (this is Fedora Linux 40)"),
        (None, "Debian 12 or Ubuntu 22.04+ (this is an unknown system"),
    ],
)  # fmt: skip
def test_other_systems_are_named(tmp_path: Path, os_release: str | None, named: str) -> None:
    res = check(tmp_path, os_release)
    assert res.returncode == 2 and "passed" not in res.stdout
    assert "does not meet the one precondition" in res.stderr
    assert f"  - {named}" in res.stderr
    assert "nothing was installed or started" in res.stderr
    assert "line " not in res.stderr  # no bash error


def test_old_python_is_named(tmp_path: Path) -> None:
    res = check(tmp_path, DEBIAN_12, fake_python(tmp_path, "3.9"))
    assert res.returncode == 2
    assert "Python 3.10 or newer as" in res.stderr and "(found 3.9)" in res.stderr


def test_the_scripts_check_before_anything_else(tmp_path: Path) -> None:
    """Both scripts stop at the check, as any user (no root needed to be told)."""
    osr = tmp_path / "os-release"
    osr.write_text('PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_ID="11"\n')
    env = {**os.environ, "HPCWRAP_OS_RELEASE": str(osr)}
    for script, prog in (("slurm/demo", "demo"), ("tests/run", "tests/run")):
        res = subprocess.run(["bash", str(REPO / script)], env=env, capture_output=True, text=True,
                             timeout=30, stdin=subprocess.DEVNULL)  # fmt: skip
        assert res.returncode == 2, (script, res.stdout, res.stderr)
        assert res.stderr.startswith(f"{prog}: this machine does not meet the one precondition")
