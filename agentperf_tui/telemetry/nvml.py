"""Read local GPUs through NVML (``pynvml`` from nvidia-ml-py) into PowerReadings.

NVML is opened lazily by ``open()``; without a driver or GPU that returns False and sets
``unavailable_reason`` instead of raising. A field whose NVML call raises ``NVMLError`` (for
example ``NotSupported``) becomes None. The ``pynvml`` module can be injected so tests run
against a fake. Calls are blocking (microseconds to a few ms each): run ``read`` off the event
loop (``asyncio.to_thread``) on big nodes.
"""

from __future__ import annotations

import contextlib
import socket
from types import ModuleType
from typing import Any

from agentperf_tui.telemetry.samples import GpuSample, PowerReading


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


class NvmlReader:
    """Per-GPU power, energy, utilisation, memory, temperature and SM clock via NVML."""

    def __init__(self, pynvml_module: ModuleType | Any | None = None, host: str | None = None) -> None:
        self._nv = pynvml_module
        self.host = host if host is not None else socket.gethostname()
        self.unavailable_reason: str | None = None
        self._handles: list[Any] = []
        self._uuids: list[str] = []
        self._names: list[str] = []
        self._opened = False

    @property
    def available(self) -> bool:
        return self._opened

    @property
    def gpu_count(self) -> int:
        return len(self._handles)

    def open(self) -> bool:
        """Initialise NVML and enumerate GPUs; False (with ``unavailable_reason``) if impossible."""
        if self._opened:
            return True
        if self._nv is None:
            try:
                import pynvml
            except ImportError as exc:
                self.unavailable_reason = f"NVML unavailable: pynvml not installed ({exc})"
                return False
            self._nv = pynvml
        nv = self._nv
        try:
            nv.nvmlInit()
        except Exception as exc:  # NVMLError subclasses, or OSError from a broken library
            self.unavailable_reason = f"NVML unavailable: {exc}"
            return False
        try:
            count = int(nv.nvmlDeviceGetCount())
            handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception as exc:
            self.unavailable_reason = f"NVML unavailable: {exc}"
            self._shutdown()
            return False
        if not handles:
            self.unavailable_reason = "NVML unavailable: no GPUs found"
            self._shutdown()
            return False
        self._handles = handles
        self._uuids = [_text(self._try(nv.nvmlDeviceGetUUID, h) or "") for h in handles]
        self._names = [_text(self._try(nv.nvmlDeviceGetName, h) or "") for h in handles]
        self._opened = True
        self.unavailable_reason = None
        return True

    def _try(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._nv.NVMLError:
            return None

    def read(self, t_s: float) -> PowerReading:
        """One reading of every GPU; an empty reading if NVML is not open."""
        if not self._opened:
            return PowerReading(t_s=t_s, gpus=())
        nv = self._nv
        out = []
        for i, h in enumerate(self._handles):
            energy_mj = self._try(nv.nvmlDeviceGetTotalEnergyConsumption, h)
            power_mw = self._try(nv.nvmlDeviceGetPowerUsage, h)
            util = self._try(nv.nvmlDeviceGetUtilizationRates, h)
            mem = self._try(nv.nvmlDeviceGetMemoryInfo, h)
            temp = self._try(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
            sm = self._try(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM)
            out.append(
                GpuSample(
                    source="nvml",
                    host=self.host,
                    gpu=i,
                    uuid=self._uuids[i],
                    power_w=None if power_mw is None else power_mw / 1000.0,
                    energy_j=None if energy_mj is None else energy_mj / 1000.0,
                    util_pct=None if util is None else float(util.gpu),
                    mem_used_mib=None if mem is None else mem.used / 1048576.0,
                    mem_total_mib=None if mem is None else mem.total / 1048576.0,
                    temp_c=None if temp is None else float(temp),
                    sm_clock_mhz=None if sm is None else float(sm),
                    model_name=self._names[i],
                )
            )
        return PowerReading(t_s=t_s, gpus=tuple(out))

    def _shutdown(self) -> None:
        with contextlib.suppress(Exception):  # shutting down; nothing useful to report
            self._nv.nvmlShutdown()

    def close(self) -> None:
        """Shut NVML down (safe to call more than once or when never opened)."""
        if self._opened:
            self._opened = False
            self._handles, self._uuids, self._names = [], [], []
            self._shutdown()
