"""Telemetry: NVML through a stand-in library, the host through psutil, the summary, the
Status clause and warnings, the sidecar records and the run log they end up in."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hpcwrap.cli import main as cli_main
from hpcwrap.config import Settings
from hpcwrap.job.status import Write
from hpcwrap.job.telemetry import host
from hpcwrap.job.telemetry.gpu import open_gpus, visible_entries
from hpcwrap.job.telemetry.hook import TelemetryHook
from hpcwrap.job.wrapper import Outcome
from hpcwrap.reading.telemetry import Summary, TelemetryConfig, WarningPolicy, status_clause
from hpcwrap.runlog import RunLog, RunState, create_run, lifecycle
from hpcwrap.runlog.model import from_dict, to_dict
from hpcwrap.runlog.telemetry import (
    TelemetryFacts,
    append_record,
    json_block,
    read_records,
    results_lines,
    telemetry_from_dict,
    telemetry_to_dict,
)
from tests.unit import test_job_wrapper
from tests.waiting import child_until, wait_for

PY = sys.executable
GIB = 1 << 30


# ---------------------------------------------------------------- a stand-in for pynvml


class StandInNvmlError(Exception):
    pass


class NVMLError_LibraryNotFound(StandInNvmlError):
    pass


class NVMLError_DriverNotLoaded(StandInNvmlError):
    pass


class NVMLError_NotSupported(StandInNvmlError):
    pass


class StandInNvml:
    """A stand-in for the pynvml module: devices described by dicts, no driver needed."""

    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_NotSupported = NVMLError_NotSupported
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, devices: list[dict[str, Any]], init_error: Exception | None = None):
        self.devices = devices
        self.init_error = init_error
        self.inits = 0
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]:
        return self.devices[i]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> dict[str, Any]:
        for d in self.devices:
            if d["uuid"] == uuid:
                return d
            for m in d.get("mig", []):
                if m["uuid"] == uuid:
                    return dict(m)
        raise StandInNvmlError("not found")

    def nvmlDeviceGetPciInfo(self, h: dict[str, Any]) -> Any:
        return SimpleNamespace(busId=h["bus"].encode())

    def nvmlDeviceGetUUID(self, h: dict[str, Any]) -> str:
        return str(h["uuid"])

    def nvmlDeviceGetName(self, h: dict[str, Any]) -> bytes:
        return b"Stand-in GPU"

    def nvmlDeviceGetMigMode(self, h: dict[str, Any]) -> tuple[int, int]:
        return (1, 1) if h.get("mig") else (0, 0)

    def nvmlDeviceGetMaxMigDeviceCount(self, h: dict[str, Any]) -> int:
        return len(h.get("mig", []))

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: dict[str, Any], i: int) -> Any:
        return h["mig"][i]

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, Any]) -> Any:
        return SimpleNamespace(used=h["used"], total=h["total"], free=h["total"] - h["used"])

    def nvmlDeviceGetUtilizationRates(self, h: dict[str, Any]) -> Any:
        if h.get("is_mig"):
            raise NVMLError_NotSupported()
        return SimpleNamespace(gpu=h["util"], memory=0)

    def nvmlDeviceGetPowerUsage(self, h: dict[str, Any]) -> int:
        if "power_mw" not in h:
            raise NVMLError_NotSupported()
        return int(h["power_mw"])

    def nvmlDeviceGetTemperature(self, h: dict[str, Any], sensor: int) -> int:
        return int(h.get("temp", 40))

    def nvmlDeviceGetComputeRunningProcesses(self, h: dict[str, Any]) -> list[Any]:
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in h.get("procs", [])]


def gpu(i: int, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "uuid": f"GPU-{i:04d}",
        "bus": f"0000:{0x10 + i:02x}:00.0",
        "used": 10 * GIB,
        "total": 80 * GIB,
        "util": 50,
        "power_mw": 300_000,
    }
    d.update(kw)
    return d


def test_stand_in_nvml_maps_cuda_visible_devices_by_pci_order() -> None:
    # NVML enumerates in another order than the PCI bus: index 1 is the second by bus id
    devs = [gpu(2, util=22), gpu(0, util=0), gpu(1, util=11)]
    nv = StandInNvml(devs)
    gs = open_gpus({"CUDA_VISIBLE_DEVICES": "1,2"}, nv)
    assert [s["util"] for s in gs.sample()] == [11.0, 22.0]
    assert [g.label for g in gs.gpus] == ["1", "2"]
    assert nv.inits == 1
    gs.close()
    assert nv.shutdowns == 1


def test_stand_in_nvml_uuid_and_every_gpu_when_unset() -> None:
    nv = StandInNvml([gpu(0, util=5), gpu(1, util=95)])
    assert [s["util"] for s in open_gpus({"CUDA_VISIBLE_DEVICES": "GPU-0001"}, nv).sample()] == [
        95.0
    ]
    assert len(open_gpus({}, StandInNvml([gpu(0), gpu(1)])).gpus) == 2


def test_stand_in_nvml_hidden_gpus_and_missing_library_give_a_note() -> None:
    assert visible_entries({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_entries({"CUDA_VISIBLE_DEVICES": "0,-1,1"}) == ["0"]
    gs = open_gpus({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, StandInNvml([gpu(0)]))
    assert gs.note == "none (CUDA_VISIBLE_DEVICES hides every GPU)"
    gs = open_gpus({}, StandInNvml([], init_error=NVMLError_LibraryNotFound()))
    assert not gs.available
    assert gs.note is not None and gs.note.startswith("none (NVML library not found")
    gs = open_gpus({}, StandInNvml([], init_error=NVMLError_DriverNotLoaded()))
    assert gs.note == "none (NVIDIA driver not loaded)"
    assert gs.sample() == []
    assert open_gpus({}, StandInNvml([])).note == "none (no GPU on this node)"


def test_stand_in_nvml_mig_memory_without_utilisation() -> None:
    migs = [
        {"uuid": "MIG-a", "used": GIB, "total": 10 * GIB, "is_mig": True},
        {"uuid": "MIG-b", "used": 2 * GIB, "total": 10 * GIB, "is_mig": True},
    ]
    nv = StandInNvml([gpu(0, mig=migs)])
    gs = open_gpus({}, nv)
    recs = gs.sample()
    assert [r["mem_used"] for r in recs] == [GIB, 2 * GIB]
    assert all(r["util"] is None for r in recs)
    assert gs.note is not None and "no utilisation" in gs.note
    s = Summary()
    s.add({"node": "n1", "gpus": recs})
    t = s.facts(main_node="n1", walltime=10, cpu_time=1, interval=10, gpu_note=gs.note)
    assert t.gpu_util_mean is None and t.gpu_mem_peak_bytes == 2 * GIB
    assert "MIG" in json_block(t)["reasons"]["gpu_util_mean"]
    # a MIG device named by its UUID
    gs = open_gpus({"CUDA_VISIBLE_DEVICES": "MIG-b"}, StandInNvml([gpu(0, mig=migs)]))
    assert [r["mem_used"] for r in gs.sample()] == [2 * GIB]


def test_stand_in_nvml_job_process_memory_and_unsupported_power() -> None:
    nv = StandInNvml([gpu(0, procs=[(111, 3 * GIB), (222, 5 * GIB)])])
    del nv.devices[0]["power_mw"]
    gs = open_gpus({}, nv)
    rec = gs.sample({111})[0]
    assert rec["proc_mem"] == 3 * GIB
    assert rec["power_w"] is None
    assert "power" in gs.unsupported


# ---------------------------------------------------------------- clause, warnings, summary


def rec(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "t": 1000.0,
        "node": "n1",
        "cpu_s": 10.0,
        "cpu_cores": 3.96,
        "alloc_cpus": 4,
        "rss": 12 * GIB,
        "mem_limit": None,
        "disks": [
            {
                "path": "/ckpt",
                "total": 1000 * GIB,
                "used": 880 * GIB,
                "free": 120 * GIB,
                "free_pct": 12.0,
            }
        ],
        "gpus": [{"gpu": "0", "util": 97.0, "mem_used": 61 * GIB, "mem_total": 80 * GIB}],
    }
    base.update(kw)
    return base


def test_status_clause() -> None:
    assert status_clause(rec()) == [
        "gpu 97% util, 61/80 GiB",
        "cpu 4.0/4 cores",
        "rss 12 GiB",
        "disk 12% free",
    ]
    assert status_clause(rec(gpus=[]), gpu_none=True)[0] == "gpu none"
    assert status_clause(None) == []


def test_warnings_once_per_episode() -> None:
    cfg = TelemetryConfig(gpu_idle_after=60.0)
    w = WarningPolicy(cfg)
    idle = rec(gpus=[{"gpu": "0", "util": 2.0, "mem_used": GIB, "mem_total": 80 * GIB}])
    assert w.check(idle, 0.0) == []
    assert w.check(idle, 30.0) == []
    out = w.check(idle, 61.0)
    assert [x.kind for x in out] == ["gpu_idle"] and "GPU idle" in out[0].text
    assert w.check(idle, 120.0) == []  # once per episode
    assert w.check(rec(), 130.0) == []  # busy again: re-armed
    full = rec(
        gpus=[{"gpu": "0", "util": 99.0, "mem_used": 79 * GIB, "mem_total": 80 * GIB}],
        disks=[
            {
                "path": "/ckpt",
                "total": 100 * GIB,
                "used": 98 * GIB,
                "free": 2 * GIB,
                "free_pct": 2.0,
            }
        ],
        rss=60 * GIB,
        mem_limit=64 * GIB,
    )
    kinds = sorted(x.kind for x in w.check(full, 140.0))
    assert kinds == ["disk", "gpu_mem", "rss"]
    # disk by absolute free space alone: 4 GiB free of 10 TB is 0.04 % ... and of 50 GiB
    small = rec(
        disks=[
            {"path": "/s", "total": 50 * GIB, "used": 46 * GIB, "free": 4 * GIB, "free_pct": 8.0}
        ]
    )
    assert [x.kind for x in WarningPolicy(TelemetryConfig()).check(small, 0.0)] == ["disk"]


def test_summary_mean_p10_peaks_and_cpu_efficiency_over_nodes() -> None:
    s = Summary()
    for i, u in enumerate([100.0, 90.0, 80.0, 0.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0]):
        s.add(
            rec(
                t=float(i),
                gpus=[{"gpu": "0", "util": u, "mem_used": (10 + i) * GIB, "mem_total": 80 * GIB}],
                rss=(i + 1) * GIB,
            )
        )
    s.add(rec(node="n2", cpu_s=50.0, alloc_cpus=4, rss=3 * GIB, gpus=[]))
    t = s.facts(main_node="n1", walltime=25.0, cpu_time=50.0, interval=10.0, gpu_note=None)
    assert t.gpu_util_mean == 87.0
    assert t.gpu_util_p10 == pytest.approx(72.0)
    assert t.gpu_mem_peak_bytes == 19 * GIB
    assert t.peak_rss_bytes == 10 * GIB
    assert t.cpu_efficiency == pytest.approx(100.0 / (8 * 25.0))
    assert t.nodes == ["n1", "n2"]
    assert t.disk_free_bytes_end == 120 * GIB
    lines = dict(results_lines(t))
    assert lines["gpu"] == "`util mean 87%, p10 72%, peak memory 19/80 GiB`"
    assert lines["cpu_efficiency"].startswith("`50%`")


def test_summary_no_gpu_json_block_nulls_with_reasons() -> None:
    s = Summary()
    s.add(rec(gpus=[]))
    t = s.facts(
        main_node="n1",
        walltime=10.0,
        cpu_time=5.0,
        interval=10.0,
        gpu_note="none (NVIDIA driver not loaded)",
    )
    block = json_block(t)
    for k in ("gpu_util_mean", "gpu_util_p10", "gpu_mem_peak_bytes"):
        assert block[k] is None
        assert block["reasons"][k] == "NVIDIA driver not loaded"
    assert block["peak_rss_bytes"] == 12 * GIB
    assert 0.0 <= block["cpu_efficiency"] <= 1.0
    assert dict(results_lines(t))["gpu"] == "none (NVIDIA driver not loaded)"
    assert json_block(None)["reasons"]["cpu_efficiency"]


def test_facts_round_trip_and_lifecycle() -> None:
    t = TelemetryFacts(
        samples=3,
        peak_rss_bytes=5,
        cpu_efficiency=0.5,
        reasons={"gpu": "x"},
        nodes=["n1"],
        warnings=["w"],
    )
    assert telemetry_from_dict(json.loads(json.dumps(telemetry_to_dict(t)))) == t
    state = RunState(task="train", run_type="replication", objective="o")
    state = lifecycle.apply(state, lifecycle.Plotted("plot.png"))
    assert state.telemetry is not None and state.telemetry.plot == "plot.png"
    back = from_dict(json.loads(json.dumps(to_dict(state), default=str)))
    assert back.telemetry == state.telemetry


# ---------------------------------------------------------------- sidecar records


def test_records_per_node_files_and_torn_lines(tmp_path: Path) -> None:
    append_record(tmp_path, {"t": 2.0, "node": "n1"})
    append_record(tmp_path, {"t": 1.0, "node": "n2"}, node="n2")
    with open(tmp_path / "telemetry.jsonl", "ab") as fh:
        fh.write(b'{"t": 3.0, "node": "n1", "torn')
    append_record(tmp_path, {"t": 4.0, "node": "n1"})  # starts on a line of its own
    assert [r["t"] for r in read_records(tmp_path)] == [1.0, 2.0, 4.0]
    assert (tmp_path / "telemetry.n2.jsonl").exists()


# ---------------------------------------------------------------- host sampling, for real


def test_process_set_counts_the_whole_tree_and_exited_children() -> None:
    # burns 0.4 s of CPU, then idles so a sample sees all of it before it exits
    burn = "import time\nwhile time.process_time() < 0.4: pass\ntime.sleep(0.4)\n"
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-c', {burn!r}], check=True)\n"
        "time.sleep(1.0)\n"
    )
    p = subprocess.Popen([PY, "-c", code])
    ps = host.ProcessSet(host.tree_of(p.pid))
    seen = 0
    last: dict[str, Any] = {}
    while p.poll() is None:
        last = ps.sample()
        seen = max(seen, last["procs"])
        time.sleep(0.05)
    assert seen == 2
    assert last["procs"] == 1
    assert last["cpu_s"] >= 0.4  # the grandchild's CPU time stays counted after it exited


# ---------------------------------------------------------------- through the wrapper


def events(log: RunLog) -> list[dict[str, Any]]:
    lines = (log.sidecar / "events.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


def new_log(tmp_path: Path) -> RunLog:
    state = RunState(task="train", run_type="replication", objective="telemetry")
    return create_run(tmp_path / "run_logs", state)


def wrap(
    argv: list[str],
    log: RunLog | None,
    tmp_path: Path,
    *,
    environ: dict[str, str] | None = None,
    nvml: Any = None,
    cfg: TelemetryConfig | None = None,
    settings: Settings | None = None,
) -> tuple[Outcome, TelemetryHook, str]:
    messages = io.StringIO()
    env = environ or {}
    hook = TelemetryHook(
        cfg or TelemetryConfig(interval=0.2),
        env,
        sidecar=log.sidecar if log is not None else None,
        cwd=tmp_path,
        err=messages,
        nvml=nvml if nvml is not None else StandInNvml([], NVMLError_LibraryNotFound()),
    )
    outcome, _, _ = test_job_wrapper.wrap(
        argv, log, tmp_path, settings, messages, environ=env, hooks=[hook], tick=0.2
    )
    return outcome, hook, messages.getvalue()


def test_peak_rss_of_a_300_mb_child_and_no_gpu_note(tmp_path: Path) -> None:
    log = new_log(tmp_path)
    # it runs until its Status entry is written and two telemetry samples are taken after
    # its 300 MB were touched (three samples in all let the peak be one taken mid-loop,
    # seen once on a loaded fresh root: 298.8 MiB)
    code = (
        "import time\nx = bytearray(300 * 1024 * 1024)\n"
        "for i in range(0, len(x), 4096): x[i] = 1\n"
        "print('step 1 loss 2.0', flush=True)\n"
    ) + child_until(
        (log.path, "gpu none"),
        lines=(log.sidecar / "telemetry.jsonl", 3),
        more_lines=(log.sidecar / "telemetry.jsonl", 2),
    )
    outcome, hook, messages = wrap([PY, "-c", code], log, tmp_path)
    assert outcome.exit_code == 0
    assert "Traceback" not in messages
    state = log.read()
    t = state.telemetry
    assert t is not None
    assert t.peak_rss_bytes is not None and t.peak_rss_bytes >= 300 * 1024 * 1024
    assert t.gpu_note is not None and t.gpu_note.startswith("none (NVML library not found")
    md = log.path.read_text()
    assert "gpu none" in md  # the Status clause
    assert any(e.get("kind") == "telemetry_note" for e in events(log))
    assert "- gpu: none (NVML library not found" in md
    assert "- peak_rss: `0.3" in md
    recs = read_records(log.sidecar)
    assert len(recs) >= 3 and all(r["node"] == hook.node for r in recs)


def test_cpu_efficiency_of_one_busy_core_with_one_cpu_allocated(tmp_path: Path) -> None:
    """One busy core of one allocated CPU is above 0.9; on a loaded test machine the core
    gets less than all of its time, so the bound is scaled by what the child itself got
    over its whole life (its start-up too, which the samples see: under load a start-up
    of a second made a share of the busy loop alone too high a bar, once)."""
    log = new_log(tmp_path)
    got = tmp_path / "got.txt"
    code = (
        "import time, psutil\nt = time.time()\nwhile time.time() - t < 3.0: pass\n"
        "born = psutil.Process().create_time()\n"
        f"open({str(got)!r}, 'w').write(repr(time.process_time() / (time.time() - born)))\n"
    )
    wrap([PY, "-c", code], log, tmp_path, environ={"SLURM_CPUS_ON_NODE": "1"})
    share = float(got.read_text())  # 1.0 on an idle machine
    t = log.read().telemetry
    assert t is not None and t.alloc_cpus == 1
    assert t.cpu_efficiency is not None
    assert t.cpu_efficiency > 0.9 * min(share, 1.0), (t, share)
    assert t.cpu_efficiency <= 1.0


def test_stand_in_nvml_through_the_wrapper_status_clause_and_summary(tmp_path: Path) -> None:
    log = new_log(tmp_path)
    nv = StandInNvml([gpu(0, util=97, used=61 * GIB)])
    code = "print('step 1 loss 2.0', flush=True)\n" + child_until((log.path, "gpu 97% util"))
    settings = Settings(status_min_interval=0.0)
    wrap([PY, "-c", code], log, tmp_path, nvml=nv, settings=settings)
    md = log.path.read_text()
    assert "gpu 97% util, 61/80 GiB" in md
    t = log.read().telemetry
    assert t is not None and t.gpu_util_mean == 97.0 and t.gpu_mem_peak_bytes == 61 * GIB
    assert "- gpu: `util mean 97%, p10 97%, peak memory 61/80 GiB`" in md
    assert nv.shutdowns == 1


def test_stalled_but_busy_shows_the_clause(tmp_path: Path) -> None:
    """Running with activity is not proof of progress: stalled? with the CPU busy."""
    log = new_log(tmp_path)
    # a core busy, no new step, until the stall entry is written
    code = "print('step 5 loss 1.0', flush=True)\n" + child_until((log.path, "stalled?"), busy=True)
    settings = Settings(stall_after=2.0, status_min_interval=0.0)
    wrap([PY, "-c", code], log, tmp_path, environ={"SLURM_CPUS_ON_NODE": "1"}, settings=settings)
    lines = [x for x in log.path.read_text().splitlines() if "stalled?" in x]
    assert lines, log.path.read_text()
    assert "no new step since step 5" in lines[0]
    m = re.search(r"cpu (\d+\.\d)/1 cores", lines[0])
    assert m is not None and float(m.group(1)) >= 0.1, lines[0]  # busy, yet no progress


def test_gpu_idle_warning_as_a_status_entry(tmp_path: Path) -> None:
    log = new_log(tmp_path)
    nv = StandInNvml([gpu(0, util=0)])
    cfg = TelemetryConfig(interval=0.2, gpu_idle_after=0.5)
    code = child_until((log.path, "warning: GPU idle"))
    wrap([PY, "-c", code], log, tmp_path, nvml=nv, cfg=cfg)
    md = log.path.read_text()
    assert md.count("warning: GPU idle: 0% utilisation") == 1
    t = log.read().telemetry
    assert t is not None and any("GPU idle" in w for w in t.warnings)


def test_log_show_json_has_the_telemetry_block(tmp_path: Path, capsys: Any) -> None:
    log = new_log(tmp_path)
    wrap([PY, "-c", "import time; time.sleep(0.6)"], log, tmp_path)
    capsys.readouterr()
    assert cli_main(["log", "show", str(log.path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    block = doc["telemetry"]
    assert block["peak_rss_bytes"] > 0
    assert 0.0 <= block["cpu_efficiency"] <= 1.0
    assert block["disk_free_bytes_end"] > 0
    assert block["gpu_util_mean"] is None and block["reasons"]["gpu_util_mean"]


def _mount_tmpfs(where: Path, size_mb: int) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
        capture_output=True,
    )
    return r.returncode == 0


@pytest.mark.slow
def test_disk_use_of_a_checkpoint_folder_on_a_tmpfs_of_its_own(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    if not _mount_tmpfs(ckpt, 512):
        pytest.skip("needs root and tmpfs to mount a filesystem of known size")
    try:
        log = new_log(tmp_path)
        code = (
            "import time, os\n"
            f"d = {str(ckpt)!r}\n"
            "print('step 1 loss 1.0', flush=True)\n"
            "print(f'saving checkpoint to {d}/step_1', flush=True)\n"
            "time.sleep(0.8)\n"
            "with open(os.path.join(d, 'model.bin'), 'wb') as f:\n"
            "    for _ in range(200): f.write(b'\\0' * (1 << 20))\n"
            "time.sleep(0.8)\n"
        )
        wrap([PY, "-c", code], log, tmp_path)
        recs = read_records(log.sidecar)
        used = [d["used"] for r in recs for d in r["disks"] if d["path"].startswith(str(ckpt))]
        assert used, recs
        moved = max(used) - min(used)
        assert 190 << 20 <= moved <= 215 << 20
        t = log.read().telemetry
        assert t is not None and t.disk_free_bytes_end is not None
        assert t.disk_free_bytes_end <= (512 - 190) << 20
    finally:
        subprocess.run(["umount", "-l", str(ckpt)], check=False)


def test_importing_hpcwrap_does_not_import_pynvml() -> None:
    code = (
        "import sys, hpcwrap.cli, hpcwrap.job.telemetry.hook\n"
        "hpcwrap.cli.build_parser()\n"
        "assert 'pynvml' not in sys.modules and 'matplotlib' not in sys.modules\n"
    )
    subprocess.run([PY, "-c", code], check=True)


def test_hook_perform_gets_writes() -> None:
    got: list[Write] = []
    hook = TelemetryHook(TelemetryConfig(interval=0.0), {}, nvml=StandInNvml([gpu(0)]))
    p = subprocess.Popen([PY, "-c", "import time; time.sleep(0.5)"])
    hook.attach(p.pid, got.append)
    hook.tick(0.0)
    assert hook.last is not None and hook.last["gpus"][0]["util"] == 50.0
    p.wait()
    facts = hook.finish()
    assert facts is not None and facts.gpus == 1


def test_log_show_json_summarises_the_samples_of_a_killed_wrapper(
    tmp_path: Path, capsys: Any
) -> None:
    """No summary in the state (the wrapper was killed): --json reads telemetry.jsonl."""
    log = new_log(tmp_path)
    for i in range(4):
        append_record(log.sidecar, rec(t=100.0 + 10 * i, cpu_s=10.0 * i, alloc_cpus=1))
    append_record(log.sidecar, rec(t=115.0, node="n2", rss=20 * GIB, alloc_cpus=1), node="n2")
    capsys.readouterr()
    assert cli_main(["log", "show", str(log.path), "--json"]) == 0
    block = json.loads(capsys.readouterr().out)["telemetry"]
    assert block["peak_rss_bytes"] == 20 * GIB
    assert block["gpu_util_mean"] == 97.0
    assert block["nodes"] == ["n1", "n2"]
    assert block["cpu_efficiency"] == pytest.approx(40.0 / 60.0, abs=1e-3)  # (30+10) / (2 x 30)


def test_the_epilog_closing_a_killed_job_fills_the_telemetry_summary(tmp_path: Path) -> None:
    """The wrapper was SIGKILLed (OOM): the epilog's Results get the summary from the
    samples, peak RSS included."""
    from datetime import datetime, timedelta, timezone

    from hpcwrap.hooks import node as hooks
    from hpcwrap.runlog.model import JobBlock

    log = new_log(tmp_path)
    start = datetime.now(timezone.utc) - timedelta(minutes=2)
    log.update(
        lambda s: s.jobs.append(
            JobBlock(execution_id="12", start=start, state="RUNNING", state_source="wrapper")
        )
    )
    for i in range(3):
        append_record(log.sidecar, rec(t=100.0 + 10 * i, rss=(i + 1) * GIB, gpus=[]))
    env = hooks.HookEnv.from_environ(
        "epilog",
        {
            "SLURM_JOB_ID": "12",
            "SLURM_JOB_UID": "0",
            "SLURM_JOB_GID": "0",
            "SLURM_JOB_EXIT_CODE2": "0:9",
        },
    )
    hooks.record_epilog(log, env, datetime.now(timezone.utc), None)
    t = log.read().telemetry
    assert t is not None and t.peak_rss_bytes == 3 * GIB and t.samples == 3
    assert "- peak_rss: `3 GiB`" in log.path.read_text()


def test_node_sampler_tags_its_node_stops_on_the_stop_file_and_skips_the_batch_node(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "SLURMD_NODENAME": "n7", "CUDA_VISIBLE_DEVICES": ""}
    argv = [PY, "-m", "hpcwrap.job.telemetry.node", "--sidecar", str(tmp_path)]
    skipped = subprocess.run([*argv, "--skip-node", "n7"], env=env, timeout=30)
    assert skipped.returncode == 0 and not list(tmp_path.iterdir())
    stop = tmp_path / "stop"
    p = subprocess.Popen([*argv, "--interval", "0.2", "--stop-file", str(stop)], env=env)
    wait_for(lambda: (tmp_path / "telemetry.n7.jsonl").exists(), 20, "the node's first sample")
    stop.touch()
    # the verdict: it stops on the file (it would sample for ever otherwise)
    assert p.wait(timeout=30) == 0
    recs = read_records(tmp_path)
    assert len(recs) >= 2 and {r["node"] for r in recs} == {"n7"}
    assert recs[0]["gpu_note"] == "none (CUDA_VISIBLE_DEVICES hides every GPU)"


@pytest.mark.slow
def test_the_output_folder_recorded_at_submission_is_watched(tmp_path: Path) -> None:
    from hpcwrap.runlog.facts import SubmitFacts

    out = tmp_path / "out"
    if not _mount_tmpfs(out, 64):
        pytest.skip("needs root and tmpfs to mount a filesystem of its own")
    try:
        log = new_log(tmp_path)
        log.update(lambda s: setattr(s, "submit", SubmitFacts(output_path=f"{out}/job.out")))
        wrap([PY, "-c", "import time; time.sleep(0.6)"], log, tmp_path)
        paths = {d["path"] for r in read_records(log.sidecar) for d in r["disks"]}
        assert str(out) in paths
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)


def test_one_idle_gpu_of_four_is_warned_once() -> None:
    w = WarningPolicy(TelemetryConfig(gpu_idle_after=60.0))

    def gpus(idle_util: float) -> dict[str, Any]:
        g = [
            {"gpu": str(i), "util": 95.0, "mem_used": GIB, "mem_total": 80 * GIB} for i in range(4)
        ]
        g[2]["util"] = idle_util
        return rec(gpus=g)

    assert w.check(gpus(0.0), 0.0) == []
    out = w.check(gpus(0.0), 61.0)
    assert [x.key for x in out] == ["gpu_idle:2"]
    assert "GPU 2 idle" in out[0].text and "3 of 4 GPUs work" in out[0].text
    assert w.check(gpus(0.0), 120.0) == []
    assert w.check(gpus(90.0), 130.0) == []  # busy again, re-armed
    assert w.check(gpus(0.0), 140.0) == []
    assert [x.key for x in w.check(gpus(0.0), 201.0)] == ["gpu_idle:2"]


def test_the_jobs_processes_on_a_node_without_cgroups_are_told_by_their_environment() -> None:
    """proctrack/linuxproc keeps no cgroup per job: a training started with srun runs
    under slurmstepd, outside the wrapper's tree, and is found by its SLURM_JOB_ID; another
    job of the same user on the node is not."""
    code = "import time; time.sleep(30)"
    mine = subprocess.Popen(
        [sys.executable, "-c", code], env={**os.environ, "SLURM_JOB_ID": "9777"}
    )
    other = subprocess.Popen(
        [sys.executable, "-c", code], env={**os.environ, "SLURM_JOB_ID": "9778"}
    )
    try:
        found = {p.pid for p in host.job_processes("9777", exclude=[os.getpid()])()}
        if any("job_" in (host._cgroup_text(p) or "") for p in (mine.pid, other.pid)):
            pytest.skip("this machine keeps a cgroup per Slurm job: the cgroup decides")
        assert mine.pid in found and other.pid not in found
        tree = host.tree_of(other.pid)  # the wrapper's own child, whatever its environment
        both = {p.pid for p in host.with_job(tree, host.job_processes("9777"))()}
        assert {mine.pid, other.pid} <= both
    finally:
        for p in (mine, other):
            p.kill()
            p.wait()
