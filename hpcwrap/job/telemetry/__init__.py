"""Telemetry inside the job: GPU (NVML), host (psutil), the summary, the per-node sampler.

``hook.TelemetryHook`` plugs into the wrapper's ``TickHook`` seam; ``core`` holds the
plain logic (sample format, Status clause, warnings, summary); ``gpu`` and ``host``
read the machine; ``node`` is the sampler ``srun --overlap`` starts on other nodes.
Importing this package imports neither psutil's users nor pynvml: NVML loads when
the first sample is taken.
"""

from __future__ import annotations

from hpcwrap.reading.telemetry import DEFAULT_INTERVAL, TelemetryConfig

__all__ = ["DEFAULT_INTERVAL", "TelemetryConfig"]
