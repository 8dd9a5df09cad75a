"""Checks a GPU run's telemetry (after ``run_gpu_check.sh``): utilisation above 50 %
during training; peak GPU memory between torch's max_memory_reserved() and 1.5 GiB
above it (NVML also counts the CUDA context and library buffers)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hpcwrap.runlog import open_run
from hpcwrap.runlog.telemetry import json_block, read_records

GIB = 1 << 30


def main(run_logs: str, report_path: str) -> int:
    report = json.loads(Path(report_path).read_text())
    logs = sorted(Path(run_logs).glob("*.md"))
    log = open_run(str(next(p for p in logs if p.name != "timeline.md")), Path(run_logs))
    state = log.read()
    records = read_records(log.sidecar)
    during = [
        r for r in records if report["start"] + 5 <= r["t"] <= report["end"] and r.get("gpus")
    ]
    utils = [g["util"] for r in during for g in r["gpus"] if g.get("util") is not None]
    mean_util = sum(utils) / len(utils) if utils else 0.0
    t = state.telemetry
    block = json_block(t)
    print("samples:", len(records), "during training:", len(during))
    print("first GPU sample:", json.dumps(during[0]["gpus"] if during else None))
    print("telemetry block:", json.dumps(block, indent=1))
    print("torch:", json.dumps(report))
    ok = True
    if mean_util <= 50.0:
        print(f"FAIL: mean utilisation during training {mean_util:.1f}% <= 50%")
        ok = False
    else:
        print(f"ok: mean utilisation during training {mean_util:.1f}% > 50%")
    peak = block["gpu_mem_peak_bytes"]
    reserved = report["max_memory_reserved"]
    if peak is None or not reserved <= peak <= reserved + 1.5 * GIB:
        print(f"FAIL: peak GPU memory {peak} not in [{reserved}, {reserved} + 1.5 GiB]")
        ok = False
    else:
        print(
            f"ok: peak GPU memory {peak / GIB:.2f} GiB, torch reserved {reserved / GIB:.2f} GiB "
            f"(+{(peak - reserved) / GIB:.2f} GiB)"
        )
    md = log.path.read_text()
    print("---- run log Status and Results")
    print(md[md.index("## Status") : md.index("## W&B")])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
