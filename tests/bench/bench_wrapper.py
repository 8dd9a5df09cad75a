"""Benchmark: what `hpcwrap run` costs a training that prints a lot.

Run: .venv/bin/python tests/bench/bench_wrapper.py [--quick] [--lines N] [--repeat R]

Measures, in the same run and against baselines measured the same way:

1. a child flooding N lines (default 2,000,000) as fast as it can, plain text and
   progress-like ("step 123 loss 0.5 lr 3e-4": every line passes the scanner's
   prefilter, the worst case): wall time under ``hpcwrap run -- child > out``
   vs ``child | tee out > /dev/null`` vs ``child > out``; the ratio.
2. an HF-Trainer-like child printing 1,000 lines/s (dicts + a tqdm bar with
   ``\\r`` redraws on stderr) for a fixed time: the wall-time ratio, and the
   wrapper's own CPU time as a share of that wall time.
3. the wrapper's own CPU seconds per million lines (from the flood runs; the
   wrapper records ``wrapper_cpu_s`` from getrusage(RUSAGE_SELF) in its
   ``ended`` event, the child's CPU is not in it).
4. peak RSS of the wrapper (``wrapper_maxrss_kb``: VmHWM of the wrapper process) after 1 GB of
   output and after a 64 MB line with no newline.

Prints figures only; asserts nothing (figures depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from hpcwrap.runlog import RunState, create_run

PY = sys.executable
HPCWRAP = [PY, "-m", "hpcwrap"]

FLOOD = r"""
import sys
n, kind = int(sys.argv[1]), sys.argv[2]
out = open(1, "w", buffering=1 << 16, closefd=False)
w = out.write
if kind == "plain":
    for i in range(n):
        w(f"line {i} of the job's ordinary chatter, nothing to see here\n")
else:
    for i in range(n):
        w(f"step {i} loss {1.0 / (i + 1):.6f} lr 3.0e-04 grad_norm 1.234\n")
out.flush()
"""

HF_LIKE = r"""
import sys, time
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
n = int(rate * seconds)
t0 = time.monotonic()
for i in range(1, n + 1):
    target = t0 + i / rate
    delay = target - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    sys.stderr.write(f"\r{100 * i // n:3d}%|#####     | {i}/{n} [00:10<00:10, {rate:.2f}it/s]")
    sys.stderr.flush()
    sys.stdout.write(f"{{'loss': {2.0 / i ** 0.5:.4f}, 'grad_norm': 1.2345, "
                     f"'learning_rate': 3e-05, 'epoch': {i / n:.2f}}}\n")
    sys.stdout.flush()
"""

BIG = r"""
import os, sys
total, line = int(sys.argv[1]), sys.argv[2] == "line"
chunk = (b"y" * (1 << 20)) if line else (b"step 1 loss 0.5 " + b"x" * 100 + b"\n") * 8738
written = 0
while written < total:
    v = memoryview(chunk)
    while v:
        v = v[os.write(1, v):]
    written += len(chunk)
if line:
    os.write(1, b" step 9 loss 0.1\n")
"""


def write_script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def new_log(folder: Path) -> Path:
    state = RunState(task="bench", run_type="replication", objective="benchmark")
    return create_run(folder / "run_logs", state).path


def timed(
    argv: list[str],
    *,
    stdout: Path | None,
    shell: str | None = None,
    env: dict[str, str] | None = None,
) -> float:
    t0 = time.perf_counter()
    if shell is not None:
        subprocess.run(["bash", "-c", shell], check=True, env=env)
    else:
        assert stdout is not None
        with open(stdout, "wb") as out, open(os.devnull, "wb") as err:
            subprocess.run(argv, stdout=out, stderr=err, check=True, env=env)
    return time.perf_counter() - t0


def last_ended(log: Path) -> dict[str, object]:
    events = log.parent / ".hpcwrap" / log.stem / "events.jsonl"
    ended: list[dict[str, object]] = [
        json.loads(x) for x in events.read_text().splitlines() if '"kind":"ended"' in x
    ]
    return ended[-1]


def wrapped(log: Path, child: list[str], out: Path) -> tuple[float, dict[str, object]]:
    wall = timed([*HPCWRAP, "run", "--log", str(log), "--", *child], stdout=out)
    return wall, last_ended(log)


def q(words: list[str]) -> str:
    return " ".join(words)


def bench_flood(tmp: Path, lines: int, repeat: int) -> None:
    child = write_script(tmp, "flood.py", FLOOD)
    out = tmp / "out.txt"
    print(f"\n== flood: {lines:,} lines as fast as the child can print ==")
    fixed_log = new_log(tmp / "fixed")
    fixed = statistics.median(wrapped(fixed_log, ["true"], out)[0] for _ in range(repeat))
    print(
        f"fixed cost of the wrapper (hpcwrap run -- true, incl. Python start and run-log "
        f"writes): {fixed:.2f} s"
    )
    for kind in ("plain", "progress"):
        cmd = [PY, str(child), str(lines), kind]
        direct, tee, wrap, cpu, skipped = [], [], [], [], []
        log = new_log(tmp / kind)
        for _ in range(repeat):
            direct.append(timed(cmd, stdout=out))
            tee.append(timed([], stdout=None, shell=f"{q(cmd)} | tee {out} > /dev/null"))
            w, ended = wrapped(log, cmd, out)
            wrap.append(w)
            cpu.append(float(ended["wrapper_cpu_s"]))  # type: ignore[arg-type]
            skipped.append(int(ended.get("bytes_not_scanned", 0)))  # type: ignore[call-overload]
        size = out.stat().st_size
        d, t, w = (statistics.median(x) for x in (direct, tee, wrap))
        c = statistics.median(cpu)
        print(f"{kind:9s} output {size / 1e6:.0f} MB")
        print(f"  child > file            {d:6.2f} s")
        print(f"  child | tee file        {t:6.2f} s")
        print(
            f"  hpcwrap run -- child    {w:6.2f} s   ratio vs tee {w / t:.2f}x, "
            f"vs direct {w / d:.2f}x"
        )
        print(
            f"  wrapper CPU             {c:6.2f} s   = {c / lines * 1e6:.2f} CPU s per "
            f"million lines; bytes not scanned (scanner behind): "
            f"{statistics.median(skipped) / 1e6:.1f} MB"
        )
        print(f"  command: {q(HPCWRAP)} run --log {log} -- {q(cmd)} > {out}")


def bench_hf(tmp: Path, seconds: float) -> None:
    child = write_script(tmp, "hf_like.py", HF_LIKE)
    out = tmp / "hf.txt"
    cmd = [PY, str(child), "1000", str(seconds)]
    log = new_log(tmp / "hf")
    print(f"\n== HF-Trainer-like child, 1,000 lines/s for {seconds:.0f} s ==")
    tee = timed([], stdout=None, shell=f"{q(cmd)} 2>&1 | tee {out} > /dev/null")
    w, ended = wrapped(log, cmd, out)
    cpu = float(ended["wrapper_cpu_s"])  # type: ignore[arg-type]
    print(f"  child 2>&1 | tee file   {tee:6.2f} s")
    print(f"  hpcwrap run -- child    {w:6.2f} s   ratio vs tee {w / tee:.3f}x")
    print(
        f"  wrapper CPU             {cpu:6.2f} s   = {100 * cpu / w:.1f}% of one core; "
        f"final step read: {ended.get('step')}, train_loss {ended.get('train_loss')}"
    )
    print(f"  command: {q(HPCWRAP)} run --log {log} -- {q(cmd)} > {out}")


def bench_rss(tmp: Path, gigabytes: float, line_mb: int) -> None:
    child = write_script(tmp, "big.py", BIG)
    print("\n== wrapper peak RSS (VmHWM of the wrapper process) ==")
    small = new_log(tmp / "rss0")
    _, ended = wrapped(small, [PY, "-c", "print('step 1 loss 1.0')"], Path(os.devnull))
    print(f"  tiny child (baseline)      {int(ended['wrapper_maxrss_kb']) / 1024:6.1f} MiB")  # type: ignore[call-overload]
    for label, total, kind in (
        (f"{gigabytes:g} GB of lines", int(gigabytes * 1e9), "lines"),
        (f"one {line_mb} MB line, no newline", line_mb << 20, "line"),
    ):
        log = new_log(tmp / f"rss-{kind}")
        cmd = [PY, str(child), str(total), kind]
        wall, ended = wrapped(log, cmd, Path(os.devnull))
        rss = int(ended["wrapper_maxrss_kb"]) / 1024  # type: ignore[call-overload]
        print(
            f"  after {label:24s} {rss:6.1f} MiB   ({wall:.1f} s, wrapper CPU "
            f"{ended['wrapper_cpu_s']} s, step read {ended.get('step')})"
        )
        print(f"  command: {q(HPCWRAP)} run --log {log} -- {q(cmd)} > /dev/null")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hf-seconds", type=float, default=10.0)
    ap.add_argument("--gigabytes", type=float, default=1.0)
    ap.add_argument("--line-mb", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    if args.quick:
        args.lines, args.repeat, args.hf_seconds, args.gigabytes = 200_000, 1, 3.0, 0.1
    tmp = Path(tempfile.mkdtemp(prefix="bench_wrapper_", dir=args.dir))
    env_note = f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    print(f"bench_wrapper: {env_note}; work dir {tmp}")
    try:
        bench_flood(tmp, args.lines, args.repeat)
        bench_hf(tmp, args.hf_seconds)
        bench_rss(tmp, args.gigabytes, args.line_mb)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
