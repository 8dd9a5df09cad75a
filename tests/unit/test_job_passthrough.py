"""The wrapper around a real child: byte-exact passthrough, exit codes, signals.

Runs ``run_command`` in this process (signals are sent to the test process, whose
main thread runs the wrapper) with the wrapper's stdout/stderr pointed at files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hpcwrap.config import Settings
from hpcwrap.job.passthrough import same_file
from hpcwrap.job.wrapper import Outcome, WrapperOptions, run_command
from tests.waiting import SignalWhen

PY = sys.executable

FLOOD_CHILD = r"""
import hashlib, os, random, sys
seed, n, hash_file, merged = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
rng = random.Random(seed)
hashes = {1: hashlib.sha256(), 2: hashlib.sha256()}
both = hashlib.sha256()

def write(fd, data):
    hashes[fd].update(data)
    both.update(data)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

for i in range(n):
    fd = 1 if rng.random() < 0.7 else 2
    kind = rng.random()
    if kind < 0.3:
        data = rng.randbytes(rng.randint(1, 300))  # invalid UTF-8, NUL
    elif kind < 0.5:
        data = b"".join(b"\r %d%%|##  | %d/999 [00:01<00:02]" % (j % 100, j) for j in range(50))
    elif kind < 0.55:
        data = b"z" * rng.randint(100_000, 400_000)  # a long line, no newline yet
    elif kind < 0.6:
        data = b"\x1b[31mstep: %d  \x1b[32mloss: %f\x1b[39m\n" % (i, 1.0 / (i + 1))
    else:
        data = b"{'loss': %f, 'learning_rate': 1e-4, 'epoch': %f}\n" % (rng.random(), i / n)
    write(fd, data)
with open(hash_file, "w") as fh:
    fh.write(both.hexdigest() if merged else hashes[1].hexdigest() + " " + hashes[2].hexdigest())
"""


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def run(
    argv: list[str],
    tmp_path: Path,
    *,
    merged: bool = False,
    settings: Settings | None = None,
    **opts: object,
) -> tuple[Outcome, bytes, bytes, str]:
    out_path, err_path = tmp_path / "out.bin", tmp_path / "err.bin"
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err = out if merged else os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    messages = io.StringIO()
    try:
        outcome = run_command(
            argv,
            None,
            WrapperOptions(
                settings=settings or Settings(),
                stdout_fd=out,
                stderr_fd=err,
                err=messages,
                cwd=tmp_path,
                environ=opts.pop("environ", {}),  # type: ignore[arg-type]
                **opts,  # type: ignore[arg-type]
            ),
        )
    finally:
        os.close(out)
        if not merged:
            os.close(err)
    err_bytes = b"" if merged else err_path.read_bytes()
    return outcome, out_path.read_bytes(), err_bytes, messages.getvalue()


@pytest.mark.timeout(120)
def test_flood_is_byte_exact_per_stream(tmp_path: Path) -> None:
    child = script(tmp_path, "flood.py", FLOOD_CHILD)
    hashes = tmp_path / "hashes"
    outcome, out, err, msgs = run([PY, str(child), "7", "3000", str(hashes), "0"], tmp_path)
    assert outcome.exit_code == 0, msgs
    want_out, want_err = hashes.read_text().split()
    assert hashlib.sha256(out).hexdigest() == want_out
    assert hashlib.sha256(err).hexdigest() == want_err
    assert len(out) + len(err) > 5_000_000
    assert outcome.snapshot.bytes_out == len(out) + len(err)
    assert outcome.snapshot.loss is not None  # progress was read from the same stream


@pytest.mark.timeout(120)
def test_flood_merged_keeps_cross_stream_order(tmp_path: Path) -> None:
    child = script(tmp_path, "flood.py", FLOOD_CHILD)
    hashes = tmp_path / "hashes"
    outcome, out, _, msgs = run(
        [PY, str(child), "8", "2000", str(hashes), "1"], tmp_path, merged=True
    )
    assert outcome.exit_code == 0, msgs
    assert hashlib.sha256(out).hexdigest() == hashes.read_text()


def test_same_file_detection(tmp_path: Path) -> None:
    a = os.open(tmp_path / "a", os.O_WRONLY | os.O_CREAT)
    b = os.open(tmp_path / "a", os.O_WRONLY | os.O_APPEND)
    c = os.open(tmp_path / "c", os.O_WRONLY | os.O_CREAT)
    try:
        assert same_file(a, b)
        assert not same_file(a, c)
    finally:
        for fd in (a, b, c):
            os.close(fd)


@pytest.mark.parametrize(
    ("code", "want"),
    [
        ("import sys; sys.exit(0)", 0),
        ("import sys; sys.exit(3)", 3),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 137),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", 139),
    ],
)
def test_exit_codes(tmp_path: Path, code: str, want: int) -> None:
    outcome, _, _, _ = run([PY, "-c", code], tmp_path)
    assert outcome.exit_code == want


def test_command_not_found_and_not_executable(tmp_path: Path) -> None:
    outcome, _, _, msgs = run([str(tmp_path / "nope")], tmp_path)
    assert outcome.exit_code == 127 and "cannot run" in msgs
    f = tmp_path / "plain.txt"
    f.write_text("x")
    outcome, _, _, _ = run([str(f)], tmp_path)
    assert outcome.exit_code == 126


def test_child_that_closes_stdout_early_or_never_prints(tmp_path: Path) -> None:
    code = (
        "import os, sys, time; print('bye', flush=True); os.close(1); time.sleep(0.3); "
        "sys.stderr.write('still here\\n'); sys.exit(4)"
    )
    outcome, out, err, _ = run([PY, "-c", code], tmp_path)
    assert (outcome.exit_code, out, err) == (4, b"bye\n", b"still here\n")
    outcome, out, err, _ = run([PY, "-c", "import time; time.sleep(0.2)"], tmp_path)
    assert (outcome.exit_code, out, err) == (0, b"", b"")


def test_latency_a_line_shows_up_at_once(tmp_path: Path) -> None:
    reader_fd, writer_fd = os.pipe()
    code = "import sys, time; print('first', flush=True); time.sleep(3); print('second')"
    seen: list[tuple[float, bytes]] = []

    def read() -> None:
        while True:
            data = os.read(reader_fd, 100)
            if not data:
                return
            seen.append((time.monotonic(), data))

    t = threading.Thread(target=read)
    t.start()
    t0 = time.monotonic()
    try:
        run_command(
            [PY, "-c", code], None, WrapperOptions(stdout_fd=writer_fd, stderr_fd=2, environ={})
        )
    finally:
        os.close(writer_fd)
    t.join(5)
    os.close(reader_fd)
    assert seen[0][1].startswith(b"first")
    assert seen[0][0] - t0 < 1.5  # well before the child's 3 s sleep ends


def test_epipe_on_our_stdout_keeps_draining(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(r)
    code = "import os; [os.write(1, b'x' * 65536) for _ in range(80)]; print('done', flush=True)"
    messages = io.StringIO()
    try:
        outcome = run_command(
            [PY, "-c", code],
            None,
            WrapperOptions(stdout_fd=w, stderr_fd=2, err=messages, environ={}),
        )
    finally:
        os.close(w)
    assert outcome.exit_code == 0  # the child was never blocked or killed by SIGPIPE
    assert "Broken pipe" in messages.getvalue()


def test_nonblocking_stdout_loses_nothing(tmp_path: Path) -> None:
    import fcntl

    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
    got = bytearray()

    def slow_reader() -> None:
        while True:
            data = os.read(r, 4096)
            if not data:
                return
            got.extend(data)
            time.sleep(0.0005)

    t = threading.Thread(target=slow_reader)
    t.start()
    hfile = tmp_path / "h"
    code = (
        "import os, hashlib; d = os.urandom(3_000_000); v = memoryview(d)\n"
        "while v: v = v[os.write(1, v):]\n"
        f"open({str(hfile)!r}, 'w').write(hashlib.sha256(d).hexdigest())"
    )
    try:
        outcome = run_command(
            [PY, "-c", code],
            None,
            WrapperOptions(stdout_fd=w, stderr_fd=2, environ={}, cwd=tmp_path),
        )
    finally:
        os.close(w)
    t.join(30)
    os.close(r)
    assert outcome.exit_code == 0
    assert len(got) == 3_000_000
    assert hashlib.sha256(bytes(got)).hexdigest() == hfile.read_text()


@pytest.mark.timeout(60)
def test_term_is_forwarded(tmp_path: Path) -> None:
    child = script(
        tmp_path,
        "c.py",
        """
        import signal, sys, time
        def on_term(s, f):
            print("got TERM", flush=True)
            sys.exit(42)
        signal.signal(signal.SIGTERM, on_term)
        print("ready", flush=True)
        time.sleep(30)
    """,
    )
    sender = SignalWhen(tmp_path / "out.bin", b"ready\n", signal.SIGTERM)
    outcome, out, _, _ = run([PY, str(child)], tmp_path)
    sender.check()
    assert outcome.exit_code == 42
    assert out == b"ready\ngot TERM\n"
    assert outcome.state == "CANCELLED"


@pytest.mark.timeout(60)
def test_second_term_does_not_orphan_then_grace_kills(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    child = script(
        tmp_path,
        "c.py",
        f"""
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        print("ready", flush=True)
        time.sleep(60)
    """,
    )
    sender = SignalWhen(tmp_path / "out.bin", b"ready\n", signal.SIGTERM, times=2)
    outcome, _, _, _ = run([PY, str(child)], tmp_path, term_grace=2.0)
    ended = time.monotonic()
    sender.check()
    assert outcome.exit_code == 137  # SIGKILLed after the grace period
    # not before the grace from the first TERM, and long before the child's own 60 s
    assert 2.0 <= ended - sender.sent_at[0] < 45
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the child did not outlive the wrapper


@pytest.mark.timeout(60)
def test_walltime_signal_goes_to_the_handler_not_the_shell(tmp_path: Path) -> None:
    py = script(
        tmp_path,
        "train.py",
        """
        import signal, sys, time
        def on_usr2(s, f):
            print("checkpoint and exit", flush=True)
            sys.exit(124)
        signal.signal(signal.SIGUSR2, on_usr2)
        print("step 1 loss 2.0", flush=True)
        time.sleep(30)
    """,
    )
    # bash has no trap: were USR2 sent to the whole group, bash would die and orphan python.
    sh = script(
        tmp_path,
        "train.sh",
        f"""
        {PY} {py}
        echo "bash saw exit $?"
    """,
    )
    sender = SignalWhen(tmp_path / "out.bin", b"step 1 loss 2.0\n", signal.SIGUSR2)
    outcome, out, _, _ = run(["bash", str(sh)], tmp_path)
    sender.check()
    assert out == b"step 1 loss 2.0\ncheckpoint and exit\nbash saw exit 124\n"
    assert outcome.exit_code == 0
    # the script exited 0 (bash swallowed the training's 124): Slurm says COMPLETED, and
    # so does the log; a warning alone never makes it a TIMEOUT (issue 26)
    assert outcome.state == "COMPLETED"


@pytest.mark.timeout(60)
def test_the_jobs_own_warning_signal_reaches_the_wrapper(tmp_path: Path) -> None:
    # --walltime-signal USR1@30, or the script's own --signal: job.sh names the signal
    # (HPCWRAP_WALLTIME_SIGNAL) and the wrapper handles that one, not the settings' USR2
    code = (
        "import signal, sys, time\n"
        "def on_usr1(s, f):\n"
        "    print('got USR1', flush=True)\n"
        "    sys.exit(124)\n"
        "signal.signal(signal.SIGUSR1, on_usr1)\n"
        "print('step 1 loss 2.0', flush=True)\n"
        "time.sleep(30)\n"
    )
    sender = SignalWhen(tmp_path / "out.bin", b"step 1 loss 2.0\n", signal.SIGUSR1)
    outcome, out, _, messages = run(
        [PY, "-c", code], tmp_path, environ={"HPCWRAP_WALLTIME_SIGNAL": "USR1"}
    )
    sender.check()
    assert out == b"step 1 loss 2.0\ngot USR1\n", messages
    assert (outcome.exit_code, outcome.state) == (124, "TIMEOUT")


@pytest.mark.timeout(60)
def test_a_process_that_waits_for_the_warning_with_sigwait_gets_it(tmp_path: Path) -> None:
    # srun blocks the signals it relays to its job step in its main thread and reads them
    # with sigwait in another: it catches nothing (SigCgt), and a training under srun got
    # no warning before
    code = (
        "import signal, threading\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})\n"
        "def relay():\n"
        "    got = signal.sigwait({signal.SIGUSR2})\n"
        "    print('relayed', got.name, flush=True)\n"
        "t = threading.Thread(target=relay)\n"
        "t.start()\n"
        "print('step 1 loss 1.0', flush=True)\n"
        "t.join()\n"
    )
    sender = SignalWhen(tmp_path / "out.bin", b"step 1 loss 1.0\n", signal.SIGUSR2)
    outcome, out, _, messages = run([PY, "-c", code], tmp_path)
    sender.check()
    assert out == b"step 1 loss 1.0\nrelayed SIGUSR2\n", messages
    assert outcome.exit_code == 0


@pytest.mark.timeout(60)
def test_walltime_signal_not_forwarded_to_unprepared_training(tmp_path: Path) -> None:
    code = "import time; print('step 1 loss 1.0', flush=True); time.sleep(2); print('done')"
    sender = SignalWhen(tmp_path / "out.bin", b"step 1 loss 1.0\n", signal.SIGUSR2)
    outcome, out, _, _ = run([PY, "-c", code], tmp_path)
    sender.check()
    assert outcome.exit_code == 0 and out.endswith(b"done\n")  # not killed early by USR2


@pytest.mark.timeout(60)
def test_lingering_background_process_does_not_hold_the_wrapper(tmp_path: Path) -> None:
    code = (
        "import subprocess; p = subprocess.Popen(['sleep', '30']); "
        f"open({str(tmp_path / 'bg')!r}, 'w').write(str(p.pid)); print('parent done')"
    )
    t0 = time.monotonic()
    outcome, out, _, _ = run([PY, "-c", code], tmp_path, linger=1.0)
    took = time.monotonic() - t0
    os.kill(int((tmp_path / "bg").read_text()), signal.SIGKILL)
    assert outcome.exit_code == 0 and out == b"parent done\n"
    assert took < 10


def test_cli_exit_status_and_missing_log(tmp_path: Path) -> None:
    env = dict(os.environ, HPCWRAP_RUN_LOG=str(tmp_path / "missing.md"))
    proc = subprocess.run(
        [PY, "-m", "hpcwrap", "run", "--", PY, "-c", "import sys; print('hi'); sys.exit(5)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 5
    assert proc.stdout == b"hi\n"
    assert b"cannot open the run log" in proc.stderr


def test_cli_refuses_before_running_anything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HPCWRAP_RUN_LOG"}
    marker = tmp_path / "ran"
    cmd = [PY, "-c", f"open({str(marker)!r}, 'w')"]
    for argv, why in (
        (["run", "--", *cmd], b"missing --mode"),
        (["run", "--mode", "replication", "--", *cmd], b"missing --objective"),
        (["run", "--log", "x.md", "--mode", "replication", "--", *cmd], b"give one or the other"),
        (["run"], b"missing command"),
        (["run", "--status-every", "soon", "--log", "x", "--", *cmd], b"--status-every"),
        # a word with a byte that is not UTF-8: refused before the run log is created
        (
            ["run", "--mode", "replication", "--objective", "x", "--", *cmd, os.fsdecode(b"\xff")],
            b"is not valid UTF-8 (byte \\xff)",
        ),
    ):
        proc = subprocess.run(
            [PY, "-m", "hpcwrap", *argv], cwd=tmp_path, env=env, capture_output=True, timeout=60
        )
        assert proc.returncode == 2, (argv, proc.stderr)
        assert why in proc.stderr and b"Traceback" not in proc.stderr, (argv, proc.stderr)
    assert not marker.exists() and not (tmp_path / "run_logs").exists()


@pytest.mark.parametrize(
    ("flag", "says"),
    [
        ("--status-every", b"status_every 10s is below status_min_interval 60s: Status entries"),
        ("--stall-after", b"stall_after 10s is below status_min_interval 60s: raised to 60s"),
    ],
)
def test_cli_says_when_a_setting_is_below_the_rate_limit(
    tmp_path: Path, flag: str, says: bytes
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HPCWRAP_RUN_LOG"}
    base = [PY, "-m", "hpcwrap", "run", "--mode", "replication", "--objective", "x"]
    for value, noted in (("10s", True), ("5m", False)):
        proc = subprocess.run(
            [*base, flag, value, "--", PY, "-c", "print('hi')"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 0 and proc.stdout == b"hi\n"
        assert (b"is below status_min_interval" in proc.stderr) == noted, proc.stderr
        assert (says in proc.stderr) == noted


GIANT_LINE_CHILD = r"""
import hashlib, os, sys
total, hash_file = int(sys.argv[1]), sys.argv[2]
h = hashlib.sha256()
chunk = bytes(range(256)) * 4096  # 1 MiB: every byte value, NUL included, no newline
chunk = chunk.replace(b"\n", b"N").replace(b"\r", b"R")
def w(data):
    h.update(data)
    v = memoryview(data)
    while v:
        v = v[os.write(1, v):]
for _ in range(total >> 20):
    w(chunk)
w(b" step 9 loss 0.1\n")
open(hash_file, "w").write(h.hexdigest())
"""


def giant_line(tmp_path: Path, megabytes: int) -> tuple[dict[str, object], str, str]:
    """`hpcwrap run` (CLI, own process) on a child printing one line of ``megabytes`` MB."""
    from hpcwrap.runlog import RunState, create_run

    log = create_run(
        tmp_path / "run_logs", RunState(task="t", run_type="replication", objective="giant line")
    )
    child = script(tmp_path, "giant.py", GIANT_LINE_CHILD)
    hashes = tmp_path / "hash"
    out_path = tmp_path / "out.bin"
    with open(out_path, "wb") as out:
        proc = subprocess.run(
            [PY, "-m", "hpcwrap", "run", "--log", str(log.path), "--",
             PY, str(child), str(megabytes << 20), str(hashes)],
            stdout=out, stderr=subprocess.PIPE, timeout=300, cwd=tmp_path,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    digest = hashlib.sha256()
    with open(out_path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    events = (log.sidecar / "events.jsonl").read_text().splitlines()
    ended = [json.loads(e) for e in events if '"kind":"ended"' in e][-1]
    return ended, digest.hexdigest(), hashes.read_text()


def test_long_line_without_newline_passes_exactly(tmp_path: Path) -> None:
    ended, got, want = giant_line(tmp_path, 8)
    assert got == want
    assert ended["step"] == 9  # the line's tail was read


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_100mb_line_memory_stays_bounded(tmp_path: Path) -> None:
    ended, got, want = giant_line(tmp_path, 100)
    assert got == want
    assert ended["step"] == 9
    # The wrapper's own peak RSS (getrusage in the wrapper), far below the line's size.
    assert int(ended["wrapper_maxrss_kb"]) < 80 * 1024  # type: ignore[call-overload]


def test_interleaved_ranks_lose_no_line(tmp_path: Path) -> None:
    # Four "ranks" writing whole lines (atomic pipe writes) at once into one stdout.
    code = textwrap.dedent("""
        import os, sys
        pids = []
        for rank in range(4):
            pid = os.fork()
            if pid == 0:
                for i in range(20000):
                    os.write(1, b"[rank%d]: step %d loss %f\\n" % (rank, i, 1.0 / (i + 1)))
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
    """)
    outcome, out, _, _ = run([PY, "-c", code], tmp_path)
    assert outcome.exit_code == 0
    lines = out.split(b"\n")
    assert lines.pop() == b""
    assert len(lines) == 80000
    for rank in range(4):
        mine = [ln for ln in lines if ln.startswith(b"[rank%d]: " % rank)]
        assert [int(ln.split()[2]) for ln in mine] == list(range(20000))  # in order, intact
    assert outcome.snapshot.step is not None


def test_wrapper_rss_is_its_own_not_its_big_parents(tmp_path: Path) -> None:
    # Linux carries ru_maxrss across fork + execve: a wrapper started from a big
    # process (a long pytest session, a login-node tool) must still report its own peak.
    ballast = bytearray(256 << 20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1  # touch every page so it is resident
    ended, got, want = giant_line(tmp_path, 1)
    assert got == want
    assert int(ended["wrapper_maxrss_kb"]) < 128 * 1024  # type: ignore[call-overload]
    del ballast
