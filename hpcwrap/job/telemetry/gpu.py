"""GPUs through NVML (the ``pynvml`` module of the ``nvidia-ml-py`` package).

``open_gpus`` initialises NVML once and picks the GPUs the job may use:

- ``CUDA_VISIBLE_DEVICES`` set: each entry is an index (into the GPUs NVML can
  see, in PCI bus order: the order Slurm numbers them and CUDA uses with
  ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, and the usual one otherwise), a ``GPU-``
  UUID, or a ``MIG-`` UUID; an empty value, ``-1`` or ``NoDevFiles`` hides
  every GPU. With Slurm's device cgroup, NVML sees only the job's GPUs and
  Slurm numbers them from 0, so indices still match;
- not set: every GPU NVML can see (outside Slurm, or a job that binds none).

A GPU in MIG mode stands for its MIG devices. MIG devices report memory, but
NVML gives no utilisation, power or temperature for them: those fields are
``None`` and the note says so once.

No library, no driver, no GPU: ``GpuSet.note`` is ``none (<reason>)`` and
sampling returns nothing; never a traceback.

``nvml`` may be any object with pynvml's names: tests pass a stand-in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Gpu:
    label: str  # "0", "1", "MIG 0/1", as shown in notes
    handle: Any
    uuid: str | None = None
    name: str | None = None
    mig: bool = False


@dataclass
class GpuSet:
    """The job's GPUs on this node, or why there are none."""

    nvml: Any = None
    gpus: list[Gpu] = field(default_factory=list)
    note: str | None = None  # "none (NVIDIA driver not loaded)", "MIG: ..." notes
    unsupported: set[str] = field(default_factory=set)  # fields NVML refused

    @property
    def available(self) -> bool:
        return bool(self.gpus)

    def sample(self, pids: Collection[int] = ()) -> list[dict[str, Any]]:
        """One dict per GPU: util %, mem used/total bytes, power W, temperature C and
        ``proc_mem``: the GPU memory of the processes in ``pids`` (None: not known)."""
        if not self.gpus:
            return []
        out: list[dict[str, Any]] = []
        for g in self.gpus:
            out.append(self._one(g, pids))
        return out

    def _call(self, key: str, fn: Any, *args: Any) -> Any:
        if key in self.unsupported:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            if _is(self.nvml, exc, "NVMLError_NotSupported", "NVMLError_NoPermission"):
                self.unsupported.add(key)
            return None

    def _one(self, g: Gpu, pids: Collection[int]) -> dict[str, Any]:
        nv = self.nvml
        rec: dict[str, Any] = {"gpu": g.label}
        mem = self._call(("mig_" if g.mig else "") + "mem", nv.nvmlDeviceGetMemoryInfo, g.handle)
        if mem is not None:
            rec["mem_used"] = int(mem.used)
            rec["mem_total"] = int(mem.total)
        if g.mig:
            rec["util"] = None  # NVML has no utilisation for a MIG device
        else:
            util = self._call("util", nv.nvmlDeviceGetUtilizationRates, g.handle)
            rec["util"] = None if util is None else float(util.gpu)
            power = self._call("power", nv.nvmlDeviceGetPowerUsage, g.handle)
            rec["power_w"] = None if power is None else round(power / 1000.0, 1)
            temp = self._call(
                "temp",
                nv.nvmlDeviceGetTemperature,
                g.handle,
                getattr(nv, "NVML_TEMPERATURE_GPU", 0),
            )
            rec["temp_c"] = None if temp is None else int(temp)
        procs = self._call(
            ("mig_" if g.mig else "") + "procs", nv.nvmlDeviceGetComputeRunningProcesses, g.handle
        )
        if procs is not None and pids:
            total = 0
            found = False
            for p in procs:
                if int(p.pid) in pids:
                    found = True
                    used = getattr(p, "usedGpuMemory", None)
                    if used is not None:
                        total += int(used)
            rec["proc_mem"] = total if found else 0
        return rec

    def close(self) -> None:
        """nvmlShutdown, once (the set was opened by ``open_gpus``)."""
        if self.nvml is not None:
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()
        self.nvml = None
        self.gpus = []


def _is(nvml: Any, exc: BaseException, *names: str) -> bool:
    for name in names:
        cls = getattr(nvml, name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


def _reason(nvml: Any, exc: BaseException) -> str:
    if _is(nvml, exc, "NVMLError_LibraryNotFound"):
        return "NVML library not found: no NVIDIA driver on this node"
    if _is(nvml, exc, "NVMLError_DriverNotLoaded"):
        return "NVIDIA driver not loaded"
    if _is(nvml, exc, "NVMLError_NoPermission"):
        return "no permission to query NVML"
    if _is(nvml, exc, "NVMLError_LibRmVersionMismatch"):
        return "NVML library and driver versions differ"
    text = str(exc).strip() or type(exc).__name__
    return f"NVML failed: {text}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_entries(environ: Mapping[str, str]) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` as a list (None: not set, every GPU)."""
    raw = environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    entries = [e.strip() for e in raw.split(",") if e.strip()]
    out: list[str] = []
    for e in entries:
        if e in ("-1", "NoDevFiles"):
            break  # CUDA stops at the first invalid entry
        out.append(e)
    return out


def _expand(nv: Any, gpu: Gpu, notes: list[str]) -> list[Gpu]:
    """A GPU in MIG mode stands for its MIG devices."""
    try:
        current, _pending = nv.nvmlDeviceGetMigMode(gpu.handle)
    except Exception:
        return [gpu]
    if not current:
        return [gpu]
    out: list[Gpu] = []
    try:
        count = int(nv.nvmlDeviceGetMaxMigDeviceCount(gpu.handle))
    except Exception:
        count = 0
    for i in range(count):
        try:
            h = nv.nvmlDeviceGetMigDeviceHandleByIndex(gpu.handle, i)
        except Exception:
            continue
        out.append(Gpu(f"{gpu.label}/mig{i}", h, uuid=_uuid(nv, h), name=gpu.name, mig=True))
    if not out:
        notes.append(f"GPU {gpu.label} is in MIG mode with no MIG devices")
    return out


def _uuid(nv: Any, handle: Any) -> str | None:
    try:
        return _text(nv.nvmlDeviceGetUUID(handle))
    except Exception:
        return None


def _pci_order(nv: Any, count: int) -> list[Any]:
    handles: list[tuple[str, int, Any]] = []
    for i in range(count):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        try:
            bus = _text(nv.nvmlDeviceGetPciInfo(h).busId).lower()
        except Exception:
            bus = ""
        handles.append((bus, i, h))
    handles.sort(key=lambda t: (t[0], t[1]))
    return [h for _bus, _i, h in handles]


def open_gpus(environ: Mapping[str, str], nvml: Any = None) -> GpuSet:
    """Initialise NVML (once) and pick the job's GPUs; never raises. Longer than most:
    each NVML failure it meets gets its own note, in the order NVML can fail."""
    if nvml is None:
        try:
            import pynvml as nvml_mod  # nvidia-ml-py; imported only when sampling starts
        except ImportError:
            return GpuSet(note="none (nvidia-ml-py is not installed)")
        nvml = nvml_mod
    entries = visible_entries(environ)
    if entries == []:
        return GpuSet(note="none (CUDA_VISIBLE_DEVICES hides every GPU)")
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return GpuSet(note=f"none ({_reason(nvml, exc)})")
    gs = GpuSet(nvml=nvml)
    notes: list[str] = []
    try:
        count = int(nvml.nvmlDeviceGetCount())
        ordered = _pci_order(nvml, count)
        chosen: list[Gpu] = []
        if entries is None:
            for i, h in enumerate(ordered):
                chosen.append(Gpu(str(i), h, uuid=_uuid(nvml, h)))
        else:
            for e in entries:
                if e.isdigit():
                    idx = int(e)
                    if idx >= len(ordered):
                        notes.append(f"CUDA_VISIBLE_DEVICES names GPU {idx}, NVML sees {count}")
                        continue
                    chosen.append(Gpu(e, ordered[idx], uuid=_uuid(nvml, ordered[idx])))
                elif e.startswith(("GPU-", "MIG-")):
                    try:
                        h = nvml.nvmlDeviceGetHandleByUUID(e)
                    except Exception as exc:
                        notes.append(f"{e[:16]}...: {_reason(nvml, exc)}")
                        continue
                    is_mig = e.startswith("MIG-")
                    chosen.append(Gpu(e[:12], h, uuid=e, mig=is_mig))
                else:
                    notes.append(f"CUDA_VISIBLE_DEVICES entry {e!r} not understood")
        gpus: list[Gpu] = []
        for g in chosen:
            gpus.extend([g] if g.mig else _expand(nvml, g, notes))
    except Exception as exc:
        gs.close()
        return GpuSet(note=f"none ({_reason(nvml, exc)})")
    if not gpus:
        gs.close()
        why = "; ".join(notes) if notes else "no GPU on this node"
        return GpuSet(note=f"none ({why})")
    for g in gpus:
        try:
            g.name = _text(nvml.nvmlDeviceGetName(g.handle))
        except Exception:
            g.name = g.name or None
    gs.gpus = gpus
    if any(g.mig for g in gpus):
        notes.append("MIG devices: memory sampled; NVML gives no utilisation, power or temperature")
    gs.note = "; ".join(notes) if notes else None
    return gs


__all__ = ["Gpu", "GpuSet", "open_gpus", "visible_entries"]
