"""`hpcwrap wandb sync` on real offline runs made by the installed wandb (WANDB_MODE=offline)
under the real `hpcwrap run` wrapper: the plan, every refusal, the staging clean-up, chain
continuity, figures from the offline history, and that the key never leaks.

The W&B cloud cannot be reached from here: the tests that sync replace the `wandb`
executable with a stand-in (named so in each test) that records its argv, environment and
/proc cmdline, writes wandb's `.wandb.synced` markers and prints a run URL as wandb does.
Making the offline runs takes a few seconds of CPU: one session-scoped set, copied back
into place for every test (staging paths in the runs' manifests are absolute).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpcwrap.cli import main
from hpcwrap.runlog import RunLog, RunState, create_run
from hpcwrap.wandb import offline
from hpcwrap.wandb.plan import GENERIC_PROJECTS, find_key_file

pytest.importorskip("wandb")

KEY = "0123456789abcdef0123456789abcdef01234567"  # the shape of a W&B key; a fake one
ENTITY, PROJECT = "hpcw-team", "hpcw-proj"

MAKE_RUN = """\
import os, sys, wandb
run = wandb.init(project="hpcw-proj", entity="hpcw-team", config={"lr": 1e-3})
start = int(os.environ.get("START_STEP", "0"))
for s in range(start, start + 5):
    run.log({"loss": 1.0 / (s + 1), "val_loss": 2.0 / (s + 1)}, step=s * 10)
if "--artifact" in sys.argv:
    art = wandb.Artifact("model", type="model")
    with open("weights.bin", "wb") as f:
        f.write(os.urandom(300000))
    art.add_file("weights.bin")
    run.log_artifact(art)
run.finish()
"""


@dataclass
class Tree:
    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def home(self) -> Path:
        return self.root / "home"

    def log(self, task: str) -> Path:
        (found,) = (self.work / "run_logs").glob(f"*_{task}.md")
        return found

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("WANDB_", "SLURM_", "HPCWRAP_RUN_LOG"))
        }
        env.update(
            HOME=str(self.home),
            WANDB_MODE="offline",
            SCRATCH=str(self.root / "scratch"),
            WANDB_CACHE_DIR=str(self.root / "cache"),
            WANDB_CONFIG_DIR=str(self.root / "config"),
        )
        env.update(extra)
        return env


def _hpcwrap_run(tree: Tree, env: dict[str, str], *args: str) -> None:
    cmd = [sys.executable, "-m", "hpcwrap", "run", "--telemetry-interval", "0", *args]
    out = subprocess.run(cmd, cwd=tree.work, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real offline runs under `hpcwrap run`: one with a logged artifact (staging data on
    the job's scratch WANDB_DATA_DIR), a two-job chain sharing WANDB_RUN_ID (its second
    piece silent, so found by looking in the working folder) and a silent run."""
    base = tmp_path_factory.mktemp("wandb-live")
    tree = Tree(base / "live")
    tree.work.mkdir(parents=True)
    tree.home.mkdir()
    (tree.work / "make_run.py").write_text(MAKE_RUN)
    desc = ["--mode", "replication", "--objective", "offline W&B", "--run-logs", "run_logs"]
    py = [sys.executable, "make_run.py"]
    _hpcwrap_run(tree, tree.env(), *desc, "--task", "art", "--", *py, "--artifact")
    chain = tree.env(WANDB_RUN_ID="chain001")
    _hpcwrap_run(tree, chain, *desc, "--task", "chain", "--", *py)
    time.sleep(1.1)  # offline folders are named to the second
    second = {**chain, "WANDB_SILENT": "true", "START_STEP": "5"}
    _hpcwrap_run(tree, second, "--log", str(tree.log("chain")), "--", *py)
    time.sleep(1.1)  # job times are kept to the second: runs a second apart are told apart
    _hpcwrap_run(tree, tree.env(WANDB_SILENT="true"), *desc, "--task", "silent", "--", *py)
    shutil.copytree(tree.root, base / "orig", symlinks=True)
    return base


@pytest.fixture
def tree(pristine: Path) -> Tree:
    live = pristine / "live"
    if live.exists():
        shutil.rmtree(live)
    shutil.copytree(pristine / "orig", live, symlinks=True)
    return Tree(live)


def tree_hash(root: Path) -> dict[str, tuple[int, str]]:
    """Every path under ``root``: its mode and its content's (or link target's) sha256."""
    out: dict[str, tuple[int, str]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(dirpath) / name
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                digest = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
            else:
                digest = "dir"
            out[str(full.relative_to(root))] = (st.st_mode, digest)
    return out


def key_file(tree: Tree, mode: int = 0o600) -> Path:
    path = tree.home / ".wandb_token"
    path.write_text(KEY + "\n")
    path.chmod(mode)
    return path


STAND_IN = """\
#!{python}
import json, os, pathlib, sys, time
args = sys.argv[1:]
if args == ["--version"]:
    print("wandb, version " + os.environ.get("STAND_IN_VERSION", "0.31.0"))
    sys.exit(0)
rec = pathlib.Path(os.environ["STAND_IN_RECORD"])
calls = json.loads(rec.read_text()) if rec.exists() else []
cmdline = open("/proc/self/cmdline", "rb").read().decode("utf-8", "replace")
calls.append({{"argv": sys.argv, "env": dict(os.environ), "cmdline": cmdline}})
rec.write_text(json.dumps(calls))
go = os.environ.get("STAND_IN_GO")
if go:
    pathlib.Path(go + ".pid").write_text(str(os.getpid()))
    deadline = time.time() + 60
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.02)
# A careless message quoting the key: hpcwrap must not relay it.
print("wandb: authenticated with " + os.environ.get("WANDB_API_KEY", "no key"), flush=True)
mode = os.environ.get("STAND_IN_MODE", "ok")
if mode == "fail":
    print("wandb: ERROR upload failed")
    sys.exit(1)
e, p, rid = (args[args.index(f) + 1] for f in ("-e", "-p", "--id"))
for a in args:
    for f in pathlib.Path(a).glob("run-*.wandb"):
        pathlib.Path(str(f) + ".synced").write_text("")
if mode != "nourl":
    print(f"wandb: View run x at https://wandb.ai/{{e}}/{{p}}/runs/{{rid}}")
print("wandb: Finished syncing")
"""


@dataclass
class StandIn:
    record: Path
    bin: Path

    def calls(self) -> list[dict[str, object]]:
        if not self.record.exists():
            return []
        data: list[dict[str, object]] = json.loads(self.record.read_text())
        return data


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    """A stand-in `wandb` first on PATH (the W&B cloud cannot be reached from here)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "wandb"
    exe.write_text(STAND_IN.format(python=sys.executable))
    exe.chmod(0o755)
    record = tmp_path / "calls.json"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STAND_IN_RECORD", str(record))
    return StandIn(record, bindir)


def cli(
    tree: Tree,
    args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str, str]:
    monkeypatch.chdir(tree.work)
    for k, v in tree.env().items():
        if k != "PATH":
            monkeypatch.setenv(k, v)
    try:
        rc = main(["wandb", "sync", *args])
    except SystemExit as exc:  # argparse
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


DEST = ["--entity", ENTITY, "--project", PROJECT]


# ---------------------------------------------------------------- detection and the plan


def test_the_wrapper_recorded_the_offline_run_and_its_staging_is_on_scratch(tree: Tree) -> None:
    state = RunLog(tree.log("art")).read()
    (local,) = [j.wandb_local for j in state.jobs]
    assert local is not None and Path(local).parent == tree.work / "wandb"
    run = offline.read_offline_run(Path(local))
    assert (run.entity, run.project, run.error) == (ENTITY, PROJECT, None)
    (staged,) = run.staged
    # The wrapper gave the job its own WANDB_DATA_DIR on $SCRATCH, not the home quota.
    assert str(staged.path).startswith(str(tree.root / "scratch" / "hpcwrap-wandb-"))
    assert staged.size == 300000 and staged.artifact == "model:model"
    assert not (tree.home / ".local" / "share" / "wandb").exists()


def test_dry_run_prints_the_plan_and_changes_nothing(tree, monkeypatch, capsys) -> None:
    key_file(tree)
    before = tree_hash(tree.root)
    rc, out, err = cli(tree, ["--dry-run", *DEST, str(tree.log("art"))], monkeypatch, capsys)
    assert rc == 0, err
    assert tree_hash(tree.root) == before
    state = RunLog(tree.log("art")).read()
    local = state.jobs[0].wandb_local
    staged = offline.read_offline_run(Path(str(local))).staged[0].path
    assert f"destination: {ENTITY}/{PROJECT} (--entity/--project)" in out
    assert f"{local} [job {state.jobs[0].execution_id}]: to sync" in out
    assert f"staged  293.0 KiB  {staged} (artifact model:model)" in out
    assert "remove after a successful sync: 1 staged file(s), 293.0 KiB" in out
    assert f"beta sync -e {ENTITY} -p {PROJECT} --id " in out and "--skip-synced" in out
    assert "dry run: nothing was changed" in out
    assert KEY not in out + err and "key: " in out


# ---------------------------------------------------------------- refusals


REFUSALS = [
    # (name, extra args, key file mode, exit code, words the message must hold)
    ("no destination", ["--yes"], 0o600, 15, ["--entity E", "--project P"]),
    ("generic project", ["--yes", "--entity", ENTITY, "--project", "test"], 0o600, 15, ["--force"]),
    (
        "flags disagree with the run",
        ["--yes", "--entity", ENTITY, "--project", "front-cam"],
        0o600,
        15,
        ["names", "'hpcw-proj'", "--force", f"--project {PROJECT}"],
    ),
    ("key file readable by others", ["--yes", *DEST], 0o644, 16, ["chmod 600"]),
    ("no key file", ["--yes", *DEST], 0, 16, ["--wandb-token-file", "~/.wandb_token"]),
    ("neither --dry-run nor --yes", DEST, 0o600, 2, ["--yes"]),
    ("too big", ["--yes", *DEST, "--max-gb", "0.0001"], 0o600, 15, ["--max-gb"]),
    ("public project generic", ["--yes", *DEST, "--public-project", "default"], 0o600, 15, []),
]


@pytest.mark.parametrize(("name", "args", "mode", "code", "words"), REFUSALS)
def test_each_refusal_says_which_flag_to_add_and_changes_nothing(
    tree, stand_in, monkeypatch, capsys, name, args, mode, code, words
) -> None:
    if mode:
        key_file(tree, mode)
    before = tree_hash(tree.root)
    rc, out, err = cli(tree, [*args, str(tree.log("art"))], monkeypatch, capsys)
    assert rc == code, (name, out, err)
    assert err.startswith("hpcwrap: error: ")
    for word in words:
        assert word in err, (name, err)
    assert tree_hash(tree.root) == before, name
    assert stand_in.calls() == []  # wandb never ran a sync
    assert KEY not in out + err


def test_dry_run_and_yes_together_are_refused_by_the_parser(tree, monkeypatch, capsys) -> None:
    rc, _out, err = cli(tree, ["--dry-run", "--yes", str(tree.log("art"))], monkeypatch, capsys)
    assert rc == 2 and "not allowed with argument" in err


def test_a_run_wandb_marked_synced_without_a_recorded_url_needs_force(
    tree, stand_in, monkeypatch, capsys
) -> None:
    key_file(tree)
    local = Path(str(RunLog(tree.log("art")).read().jobs[0].wandb_local))
    for f in local.glob("run-*.wandb"):
        Path(f"{f}.synced").write_text("")
    rc, _out, err = cli(tree, ["--yes", *DEST, str(tree.log("art"))], monkeypatch, capsys)
    assert rc == 15 and "marked synced by wandb" in err and "--force" in err
    assert stand_in.calls() == []


def test_a_staged_file_gone_before_the_sync_needs_force(tree, stand_in, monkeypatch, capsys):
    key_file(tree)
    local = Path(str(RunLog(tree.log("art")).read().jobs[0].wandb_local))
    offline.read_offline_run(local).staged[0].path.unlink()
    rc, _out, err = cli(tree, ["--yes", *DEST, str(tree.log("art"))], monkeypatch, capsys)
    assert rc == 15 and "staged artifact file(s) are gone" in err and "--force" in err


def test_too_many_runs_for_one_call(tree, stand_in, monkeypatch, capsys) -> None:
    key_file(tree)
    args = ["--yes", *DEST, "--max-runs", "1", str(tree.log("chain"))]
    rc, _out, err = cli(tree, args, monkeypatch, capsys)
    assert rc == 15 and "2 offline runs to sync" in err and "--max-runs N" in err


def test_a_second_sync_of_the_same_run_is_refused_while_the_first_holds_its_lock(
    tree, stand_in, monkeypatch, capsys
) -> None:
    key_file(tree)
    local = Path(str(RunLog(tree.log("art")).read().jobs[0].wandb_local))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from hpcwrap.runlog.locks import Lock\n"
            "with Lock(Path(sys.argv[1]), timeout=0).held():\n"
            "    print('held', flush=True); time.sleep(60)",
            str(local / "hpcwrap-sync.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        rc, _out, err = cli(tree, ["--yes", *DEST, str(tree.log("art"))], monkeypatch, capsys)
    finally:
        holder.kill()
        holder.wait()
    assert rc == 7 and "another `hpcwrap wandb sync`" in err
    assert stand_in.calls() == []


def test_a_wandb_too_old_for_beta_sync_id_is_refused(tree, stand_in, monkeypatch, capsys):
    key_file(tree)
    monkeypatch.setenv("STAND_IN_VERSION", "0.23.1")
    rc, _out, err = cli(tree, ["--yes", *DEST, str(tree.log("art"))], monkeypatch, capsys)
    assert rc == 15 and "wandb>=0.24.1" in err


def test_a_run_log_without_offline_runs_is_refused(tmp_path, monkeypatch, capsys) -> None:
    root = tmp_path / "run_logs"
    log = create_run(root, RunState(task="eval", run_type="replication", objective="o"))
    bare = Tree(tmp_path)
    (tmp_path / "work").mkdir()
    rc, _out, err = cli(bare, ["--dry-run", *DEST, str(log.path)], monkeypatch, capsys)
    assert rc == 15 and "no offline W&B run to sync" in err


# ---------------------------------------------------------------- syncing (stand-in wandb)


def test_stand_in_wandb_gets_the_key_in_its_environment_only(tree, stand_in, tmp_path) -> None:
    """The key is in the stand-in's environment and nowhere in its argv, /proc cmdline (read
    while it runs), hpcwrap's stdout/stderr, the run log, state.json or events.jsonl."""
    key_file(tree)
    go = tmp_path / "go"
    env = tree.env(
        PATH=os.environ["PATH"], STAND_IN_RECORD=str(stand_in.record), STAND_IN_GO=str(go)
    )
    log = tree.log("art")
    before = tree_hash(tree.root)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpcwrap", "wandb", "sync", "--yes", *DEST, str(log)],
        cwd=tree.work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pidfile = Path(f"{go}.pid")
    deadline = time.time() + 60
    while not pidfile.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert pidfile.exists(), proc.communicate()
    pid = int(pidfile.read_text())
    live_cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    hpcwrap_cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    assert b"beta\0sync" in live_cmdline
    assert KEY.encode() not in live_cmdline and KEY.encode() not in hpcwrap_cmdline
    go.write_text("")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (call,) = stand_in.calls()
    assert isinstance(call["env"], dict) and call["env"]["WANDB_API_KEY"] == KEY
    assert KEY not in json.dumps(call["argv"]) and KEY not in str(call["cmdline"])
    assert KEY not in out and KEY not in err
    assert "wandb: authenticated with ***" in err  # wandb's own output, relayed scrubbed
    sidecar = log.parent / ".hpcwrap" / log.stem
    for path in [log, *sidecar.rglob("*")]:
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path
    # The URL is in the job block and the W&B section; the run is marked synced.
    state = RunLog(log).read()
    run_id = offline.read_offline_run(Path(str(state.jobs[0].wandb_local))).run_id
    url = f"https://wandb.ai/{ENTITY}/{PROJECT}/runs/{run_id}"
    assert state.jobs[0].wandb_synced == url and state.wandb_synced == url
    md = log.read_text()
    assert f"- W&B synced: `{url}`" in md and f"- synced: `{url}`" in md
    assert f"synced: W&B run {run_id} -> {url}" in out
    # Staging clean-up removed exactly the staged artifact file; everything else stayed.
    after = tree_hash(tree.root)
    removed = set(before) - set(after)
    (staged,) = [p for p in removed if "artifacts/staging/" in p]
    assert removed == {staged}
    added = {Path(p).name for p in set(after) - set(before)}
    assert added <= {"hpcwrap-synced.json", f"run-{run_id}.wandb.synced", "hpcwrap-sync.lock"}
    changed = {p for p in set(before) & set(after) if before[p] != after[p]}
    assert all(p.startswith("work/run_logs") or p.endswith("wandb") for p in changed), changed
    assert "removed: 1 staged artifact file(s), 293.0 KiB" in out


def test_a_synced_run_is_not_synced_again_unless_forced(tree, stand_in, monkeypatch, capsys):
    key_file(tree)
    log = str(tree.log("art"))
    assert cli(tree, ["--yes", *DEST, log], monkeypatch, capsys)[0] == 0
    rc, out, _err = cli(tree, ["--yes", *DEST, log], monkeypatch, capsys)
    assert rc == 0 and "nothing to sync: already synced to https://wandb.ai/" in out
    assert len(stand_in.calls()) == 1
    rc, out, err = cli(tree, ["--yes", "--force", *DEST, log], monkeypatch, capsys)
    assert rc == 0, err
    (_, again) = stand_in.calls()
    assert isinstance(again["argv"], list) and "--no-skip-synced" in again["argv"]


def test_a_chain_syncs_as_one_run_id_in_start_order_and_both_blocks_get_the_url(
    tree, stand_in, monkeypatch, capsys
) -> None:
    key_file(tree)
    log = tree.log("chain")
    state = RunLog(log).read()
    assert state.jobs[1].wandb_local is None  # the second piece was silent: not in the output
    rc, out, err = cli(tree, ["--dry-run", *DEST, str(log)], monkeypatch, capsys)
    assert rc == 0, err
    assert "W&B run id chain001: 2 offline piece(s), in order" in out
    assert "(found in the working folder)" in out
    rc, out, err = cli(tree, ["--yes", *DEST, str(log)], monkeypatch, capsys)
    assert rc == 0, err
    (call,) = stand_in.calls()
    argv = call["argv"]
    assert isinstance(argv, list)
    assert argv[1:9] == ["beta", "sync", "-e", ENTITY, "-p", PROJECT, "--id", "chain001"]
    dirs = [a for a in argv if "offline-run-" in a]
    assert len(dirs) == 2 and dirs == sorted(dirs)  # oldest first
    state = RunLog(log).read()
    url = f"https://wandb.ai/{ENTITY}/{PROJECT}/runs/chain001"
    assert [j.wandb_synced for j in state.jobs] == [url, url]
    assert state.jobs[1].wandb_local == dirs[1]
    md = log.read_text()
    assert md.count(f"- W&B synced: `{url}`") == 2 and "## Job (resumed)" in md


def test_public_project_mirrors_the_run_and_records_that_url(tree, stand_in, monkeypatch, capsys):
    key_file(tree)
    log = tree.log("art")
    args = ["--yes", *DEST, "--public-project", "hpcw-public", str(log)]
    rc, _out, err = cli(tree, args, monkeypatch, capsys)
    assert rc == 0, err
    main_call, mirror = stand_in.calls()
    assert isinstance(mirror["argv"], list) and "hpcw-public" in mirror["argv"]
    assert "--no-skip-synced" in mirror["argv"]
    state = RunLog(log).read()
    assert state.wandb_public is not None and "/hpcw-public/runs/" in state.wandb_public
    assert f"- public: `{state.wandb_public}`" in log.read_text()
    del main_call


def test_a_failed_sync_records_nothing_and_keeps_the_staging(tree, stand_in, monkeypatch, capsys):
    key_file(tree)
    log = tree.log("art")
    before = tree_hash(tree.root)
    for mode, why in (("fail", "exit status 1"), ("nourl", "no run URL printed")):
        monkeypatch.setenv("STAND_IN_MODE", mode)
        rc, _out, err = cli(tree, ["--yes", "--force", *DEST, str(log)], monkeypatch, capsys)
        assert rc == 17 and why in err and "staging is kept" in err
        assert KEY not in err
    after = tree_hash(tree.root)
    assert {p for p in before if "artifacts/staging/" in p} <= set(after)
    assert RunLog(log).read().wandb_synced is None


def test_an_offline_run_folder_given_directly_is_marked_synced_in_itself(
    tree, stand_in, monkeypatch, capsys
) -> None:
    key_file(tree)
    local = Path(str(RunLog(tree.log("art")).read().jobs[0].wandb_local))
    rc, _out, err = cli(tree, ["--yes", *DEST, str(local)], monkeypatch, capsys)
    assert rc == 0, err
    marker = json.loads((local / offline.HPCWRAP_MARKER).read_text())
    assert marker["url"].startswith(f"https://wandb.ai/{ENTITY}/{PROJECT}/runs/")
    assert KEY not in json.dumps(marker)
    rc, out, _err = cli(tree, ["--yes", *DEST, str(local)], monkeypatch, capsys)
    assert rc == 0 and "nothing to sync" in out


# ---------------------------------------------------------------- beyond the anchors


def test_results_come_from_the_offline_history_when_nothing_was_printed(
    tree, stand_in, monkeypatch, capsys
) -> None:
    key_file(tree)
    log = tree.log("silent")
    state = RunLog(log).read()
    assert state.results.end_train_loss is None and state.jobs[0].wandb_local is None
    rc, out, err = cli(tree, ["--dry-run", *DEST, str(log)], monkeypatch, capsys)
    assert rc == 0, err
    assert "Results: filled from the W&B offline history" in out
    rc, _out, err = cli(tree, ["--yes", *DEST, str(log)], monkeypatch, capsys)
    assert rc == 0, err
    state = RunLog(log).read()
    res = state.results
    assert (res.start_train_loss, res.end_train_loss) == (1.0, 0.2)
    assert (res.start_val_loss, res.end_val_loss, res.final_step) == (2.0, 0.4, 40)
    md = log.read_text()
    assert "- start_train_loss: `1`\n- end_train_loss: `0.2`" in md
    assert "- figures from: W&B offline history of `" in md and "(keys loss, val_loss" in md
    assert state.jobs[0].wandb_local is not None  # found in the working folder, recorded


# ---------------------------------------------------------------- small parts


def test_the_transaction_log_reader_stops_at_a_torn_tail(tree, tmp_path) -> None:
    local = Path(str(RunLog(tree.log("art")).read().jobs[0].wandb_local))
    copy = tmp_path / local.name
    shutil.copytree(local, copy, symlinks=True)
    (log,) = copy.glob("run-*.wandb")
    data = log.read_bytes()
    log.write_bytes(data[: len(data) // 2])
    run = offline.read_offline_run(copy)
    assert run.run_id and run.entity == ENTITY and run.error is None
    assert run.history.rows < offline.read_offline_run(local).history.rows


def test_key_file_lookup_order_and_permissions(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert find_key_file(None)[0] is None
    key = tmp_path / ".wandb_key"
    key.write_text(KEY)
    key.chmod(0o640)
    path, problem = find_key_file(None)
    assert path == key and problem is not None and "chmod 600" in problem
    key.chmod(0o600)
    token = tmp_path / ".wandb_token"
    token.write_text(KEY)
    token.chmod(0o600)
    assert find_key_file(None) == (token, None)  # ~/.wandb_token first
    assert find_key_file(str(key)) == (key, None)


def test_generic_project_names_are_one_list() -> None:
    assert {"uncategorized", "test", "default", "my-project"} <= GENERIC_PROJECTS
    assert all(name == name.lower() for name in GENERIC_PROJECTS)


def test_stand_in_wrapper_script_is_executable_text() -> None:
    # The stand-in's template must stay valid Python after formatting.
    compile(textwrap.dedent(STAND_IN.format(python=sys.executable)).split("\n", 1)[1], "s", "exec")
