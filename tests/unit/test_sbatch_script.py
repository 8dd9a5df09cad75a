"""The generated batch script: golden file, and hostile paths/arguments run through bash.

The hostile tests execute the generated job.sh with bash, with a stand-in for
the Python interpreter (a script that records the argv it receives): the
words ``hpcwrap run`` would get must arrive exactly, whatever the paths and
arguments hold. sbatch's reading of the same file is checked too (read_directives,
which test_sbatch_options checks against the real sbatch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcwrap import __version__
from hpcwrap.config import Settings
from hpcwrap.errors import UsageError
from hpcwrap.scheduler.sbatch_options import parse_sbatch_args, read_directives, split_command_line
from hpcwrap.submit.submission import (
    Prepared,
    WalltimeSignal,
    batch_script,
    lead_notes,
    prepare,
    walltime_signal,
)

GOLDEN = Path(__file__).parent / "golden" / "job.sh"
OWN = {"mode": True, "objective": True}
USR2 = WalltimeSignal("USR2", 300.0)

SCRIPT = """#!/bin/bash
#SBATCH --job-name=front_cam
#SBATCH -p gpu -t 2:00:00   # two hours
#SBATCH --output=logs/%x-%j.out

set -euo pipefail
python train.py "$@"
"""


# An obviously fake token in the hf_ format the redactor must catch.
FAKE_HF_TOKEN = "hf_" + "FAKE" * 8


def _prep(tmp: Path, argv: list[str], script_text: str = SCRIPT, name: str = "train.sh",
          signal: WalltimeSignal | None = USR2) -> Prepared:  # fmt: skip
    (tmp / name).write_text(script_text)
    cl = split_command_line(argv, OWN)
    return prepare(cl, settings=Settings(), cwd=tmp, env={}, walltime=signal)


def test_golden_batch_script(tmp_path: Path) -> None:
    prep = _prep(tmp_path, ["-N", "2", "train.sh", "--lr", "3e-4", "two words", "$HOME"])
    text = batch_script(
        prep,
        run_log=Path("/home/u/proj/run_logs/front_cam/2026-03-11_train.md"),
        snapshot=Path("/home/u/proj/run_logs/front_cam/.hpcwrap/2026-03-11_train/script/train.sh"),
        python="/opt/venv/bin/python",
    )
    expected = text.replace(f"hpcwrap {__version__}:", "hpcwrap {VERSION}:")
    if os.environ.get("HPCWRAP_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(expected)
    assert expected == GOLDEN.read_text()


def test_batch_script_shape(tmp_path: Path) -> None:
    prep = _prep(tmp_path, ["train.sh"])
    text = batch_script(prep, run_log=Path("/r/x.md"), snapshot=Path("/r/s/train.sh"), python="/py")
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    d = read_directives(text)
    # hpcwrap's defaults first, then the user's lines verbatim, then the first command
    assert d.lines[-3:] == (
        "#SBATCH --job-name=front_cam",
        "#SBATCH -p gpu -t 2:00:00   # two hours",
        "#SBATCH --output=logs/%x-%j.out",
    )
    keys = [o.key for o in parse_sbatch_args(d.args)]
    assert keys[:4] == ["job-name", "comment", "open-mode", "signal"]
    # the first command ignores an early walltime warning until the wrapper handles it
    # (a -t 2 job died FAILED 0:12 before, the warning's lead being longer than its limit)
    # and names it for the wrapper (one setting, resolved at submission)
    assert lines[d.body_line - 1 :] == [
        "trap '' USR2",
        "export HPCWRAP_WALLTIME_SIGNAL=USR2",
        "export HPCWRAP_WALLTIME_TARGETS=batch",
        "export HPCWRAP_BATCH_IGNORED=USR2",
        "export HPCWRAP_RUN_LOG=/r/x.md",
        lines[-1],
    ]
    assert lines[-1].startswith('exec /py -m hpcwrap run --log "$HPCWRAP_RUN_LOG" -- ')


CHILD_SIGNALS = """
import json, os
mask = int(next(l for l in open("/proc/self/status") if l.startswith("SigIgn:")).split()[1], 16)
print(json.dumps({"usr1_ignored": bool(mask & (1 << 9)), "usr2_ignored": bool(mask & (1 << 11)),
                  "env": "HPCWRAP_BATCH_IGNORED" in os.environ}))
"""


@pytest.mark.parametrize("warning", ["USR2", "USR1"])
def test_a_warning_before_the_wrapper_starts_kills_nothing(tmp_path: Path, warning: str) -> None:
    """The batch script as hpcwrap writes it, with Slurm's warning arriving before the
    wrapper runs (a limit shorter than the lead: it comes at once). The job goes on; the
    training gets the signal's default back, not an inherited ignore, whether or not the
    wrapper handles that signal (its walltime signal here is USR2)."""
    from hpcwrap.runlog import RunState, create_run

    log = create_run(tmp_path / "run_logs", RunState(run_type="replication", objective="o"))
    child = tmp_path / "child.py"
    child.write_text(CHILD_SIGNALS)
    prep = _prep(tmp_path, ["train.sh"], signal=WalltimeSignal(warning, 300.0))
    text = batch_script(prep, run_log=log.path, snapshot=child, python=sys.executable)
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("export HPCWRAP_RUN_LOG="))
    lines.insert(at, f"kill -{warning} $$  # Slurm's early warning, before hpcwrap run")
    lines[-1] = lines[-1].replace(f"-- {child}", f"-- {sys.executable} {child}")
    (tmp_path / "job.sh").write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "HPCWRAP_"))}
    res = subprocess.run(
        ["bash", str(tmp_path / "job.sh")], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, (res.returncode, res.stderr)  # -12/-10: killed by the warning
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert seen == {"usr1_ignored": False, "usr2_ignored": False, "env": False}, seen


def test_no_walltime_signal(tmp_path: Path) -> None:
    prep = _prep(tmp_path, ["train.sh"], signal=None)
    text = batch_script(prep, run_log=Path("/r/x.md"), snapshot=Path("/r/t.sh"), python="/py")
    assert "--signal" not in text and "trap" not in text
    assert walltime_signal(Settings(), None, disabled=True) is None
    assert walltime_signal(Settings(walltime_warning=False)) is None
    assert walltime_signal(Settings(), "TERM@2m") == WalltimeSignal("TERM", 120.0)
    with pytest.raises(UsageError, match="walltime-signal"):
        walltime_signal(Settings(), "NOSUCH@5")


HOSTILE_NAMES = [
    "plain",
    "with space",
    "it's",
    'say "hi"',
    "dollar $HOME and $(id) and `id`",
    "back\\slash",
    "new\nline",
    "#SBATCH --wrap=evil",
    "semi;colon&amp|pipe",
    "star * and ? and [x]",
    "ünïcödé",
]

HOSTILE_ARGS = [
    "",
    " ",
    "a b",
    "'",
    '"',
    "$HOME",
    "$(touch /tmp/hpcwrap-pwned)",
    "`id`",
    "line1\nline2",
    "\n#SBATCH --partition=evil",
    "-p",
    "--",
    "tab\there",
    "*",
    "\\",
    "!history",
]


def _fake_python(folder: Path) -> Path:
    """Stands in for the interpreter: records its argv and HPCWRAP_RUN_LOG as JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    fake = folder / "py"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "json.dump({'argv': sys.argv[1:], 'log': os.environ.get('HPCWRAP_RUN_LOG')},\n"
        "          open(os.environ['HPCWRAP_TEST_OUT'], 'w'))\n"
    )
    fake.chmod(0o755)
    return fake


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_paths_and_args_reach_the_wrapper_exactly(tmp_path: Path, name: str) -> None:
    root = tmp_path / name
    fake = _fake_python(root / "venv" / name / "bin")
    script_name = f"{name}.sh".replace("/", "_")
    if "\n" in script_name:
        script_name = script_name.replace("\n", "_")
    root.mkdir(exist_ok=True)
    prep = _prep(root, [script_name, *HOSTILE_ARGS], name=script_name)
    run_log = root / "run_logs" / f"{name}" / "2026-03-11_train.md"
    snapshot = root / "run_logs" / ".hpcwrap" / name / "script" / script_name
    text = batch_script(prep, run_log=run_log, snapshot=snapshot, python=str(fake))
    job = root / "job.sh"
    job.write_text(text)
    out = tmp_path / "out.json"
    proc = subprocess.run(
        ["bash", str(job)],
        env={"PATH": os.environ["PATH"], "HPCWRAP_TEST_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(out.read_text())
    assert got["argv"] == [
        "-m", "hpcwrap", "run", "--log", str(run_log), "--", str(snapshot), *HOSTILE_ARGS,
    ]  # fmt: skip
    assert got["log"] == str(run_log)
    assert not Path("/tmp/hpcwrap-pwned").exists()

    # sbatch reads exactly hpcwrap's defaults and the user's lines, nothing injected
    opts = parse_sbatch_args(read_directives(text).args)
    ours = ["job-name", "comment", "open-mode", "signal"]
    if "\n" in str(run_log):
        # a comment that cannot be an #SBATCH line goes on the command line instead
        ours.remove("comment")
        assert prep.sbatch_args(run_log) == [f"--comment=hpcwrap:{run_log}"]
    else:
        assert opts[1].value == f"hpcwrap:{run_log}"
        assert prep.sbatch_args(run_log) == []
    assert [o.key for o in opts] == [*ours, "job-name", "partition", "time", "output"]


def test_user_comment_is_kept_and_noted(tmp_path: Path) -> None:
    prep = _prep(tmp_path, ["--comment=mine", "train.sh"])
    assert any("--comment" in n for n in prep.notes)
    run_log = tmp_path / "a\nb.md"  # not representable: must not override theirs anyway
    assert prep.sbatch_args(run_log) == ["--comment=mine"]
    assert prep.resolved(run_log).get("comment") == "mine"


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--test-only", "train.sh"], "submits nothing"),
        (["--wrap=hostname"], "--wrap is not supported"),
        (["-p", "debug"], "missing the batch script"),
        (["nosuch.sh"], "no such batch script"),
        (["--newopt", "val", "train.sh"], "--newopt=VALUE"),
        (["--usage", "train.sh"], "sbatch --usage"),
    ],
)
def test_prepare_refuses(tmp_path: Path, argv: list[str], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        _prep(tmp_path, argv)


def test_prepare_refuses_test_only_in_script(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="submits nothing"):
        _prep(tmp_path, ["t.sh"], script_text="#!/bin/bash\n#SBATCH --test-only\n", name="t.sh")


def test_script_path_with_spaces_and_folder(tmp_path: Path) -> None:
    (tmp_path / "my dir").mkdir()
    prep = _prep(tmp_path, ["my dir/run me.sh", "x"], name="my dir/run me.sh")
    assert prep.script_path == tmp_path / "my dir" / "run me.sh"
    assert prep.job_name == "run me.sh"
    assert prep.script_args == ("x",)


def test_describe_command_is_one_line_and_redacted() -> None:
    from hpcwrap.redact import describe_command, redact_argv

    assert describe_command("slurm/train.sh", ["--lr", "3e-4", "two words", "a\nb"]) == (
        "`slurm/train.sh` --lr 3e-4 'two words' $'a\\nb'"
    )
    assert redact_argv(
        ["--export=ALL,HF_TOKEN=x,A=1", "--api-key", "k", "SECRET=s", "--wandb_api_key=z", "x=1"]
    ) == ["--export=ALL,HF_TOKEN=***,A=1", "--api-key", "***", "SECRET=***",
          "--wandb_api_key=***", "x=1"]  # fmt: skip


def test_redact_argv_catches_known_token_formats_and_key_names() -> None:
    from hpcwrap.redact import describe_command

    line = describe_command("t.sh", [FAKE_HF_TOKEN, "--wandb-key", "k1", "--hf_key=k2"])
    assert line == "`t.sh` '***' --wandb-key '***' '--hf_key=***'"


SHORT = "#!/bin/bash\necho hi\n"


def test_hpcwraps_warning_lead_is_capped_at_a_quarter_of_the_limit(tmp_path: Path) -> None:
    prep = _prep(tmp_path, ["-t", "2", "train.sh"], script_text=SHORT)
    notes = lead_notes(prep)
    assert prep.signal is not None and prep.signal.lead == 30
    assert notes == [
        "walltime warning lead 300 s is more than a quarter of the 120 s limit: asked for "
        "30 s before the limit instead"
    ]
    text = batch_script(prep, run_log=Path("/r/x.md"), snapshot=Path("/r/s.sh"), python="/py")
    assert "#SBATCH --signal=B:USR2@30\n" in text
    long = _prep(tmp_path, ["-t", "60", "train.sh"], script_text=SHORT, name="long.sh")
    assert lead_notes(long) == [] and long.signal is not None and long.signal.lead == 300


def test_a_users_own_signal_is_kept_and_named_for_the_wrapper(tmp_path: Path) -> None:
    # Lightning's documented setup: no B:, so Slurm signals every process of the job
    own = "#!/bin/bash\n#SBATCH --signal=SIGUSR1@90\n#SBATCH -t 2\npython train.py\n"
    prep = _prep(tmp_path, ["train.sh"], script_text=own)
    assert lead_notes(prep) == [
        "your --signal (#SBATCH) asks for the warning 90 s before a 120 s limit: kept as "
        "given; it may come at once"
    ]
    warning = prep.warning()
    assert warning is not None and (warning.name, warning.lead, warning.batch_only) == (
        "USR1",
        90.0,
        False,
    )
    text = batch_script(prep, run_log=Path("/r/x.md"), snapshot=Path("/r/s.sh"), python="/py")
    assert "trap '' USR1\n" in text and "export HPCWRAP_WALLTIME_SIGNAL=USR1\n" in text
    assert "export HPCWRAP_WALLTIME_TARGETS=all\n" in text
    assert "HPCWRAP_BATCH_IGNORED" not in text  # the training starts with it ignored
    # hpcwrap's default line comes first and the user's after it: sbatch keeps the last
    assert text.index("#SBATCH --signal=B:USR2@300") < text.index("#SBATCH --signal=SIGUSR1@90")
