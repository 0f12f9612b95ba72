"""NvmlReader converts NVML units, turns NotSupported into None and reports missing NVML."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agentperf_tui.telemetry import NvmlReader


class FakeNvml:
    """The slice of the pynvml API NvmlReader uses, with two GPUs; GPU 1 lacks energy and temp."""

    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        def __str__(self) -> str:
            return "Not Supported"

    def __init__(self, count: int = 2, init_error: str | None = None) -> None:
        self.count = count
        self.init_error = init_error
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-fake-{h}"

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return b"NVIDIA H200"  # older pynvml returns bytes

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        if h == 1:
            raise self.NVMLError_NotSupported()
        return 123_456_789  # mJ

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 650_500 + h  # mW

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=97, memory=61)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(total=150_754_820_096, used=138_726_916_096, free=12_027_904_000)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        if h == 1:
            raise self.NVMLError_NotSupported()
        return 54

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        assert clock == self.NVML_CLOCK_SM
        return 1980


def test_fake_nvml_values_are_converted() -> None:
    r = NvmlReader(FakeNvml(), host="h1")
    assert r.open() is True and r.available and r.gpu_count == 2
    reading = r.read(t_s=5.0)
    assert reading.t_s == 5.0
    g0, g1 = reading.gpus
    assert (g0.source, g0.host, g0.gpu, g0.uuid, g0.model_name) == (
        "nvml",
        "h1",
        0,
        "GPU-fake-0",
        "NVIDIA H200",
    )
    assert g0.power_w == pytest.approx(650.5)  # mW -> W
    assert g0.energy_j == pytest.approx(123_456.789)  # mJ -> J
    assert g0.util_pct == 97
    assert g0.mem_total_mib == pytest.approx(150_754_820_096 / 2**20)
    assert g0.mem_used_mib == pytest.approx(138_726_916_096 / 2**20)
    assert g0.temp_c == 54
    assert g0.sm_clock_mhz == 1980


def test_not_supported_fields_become_none() -> None:
    r = NvmlReader(FakeNvml(), host="h1")
    r.open()
    g1 = r.read(t_s=0.0).gpus[1]
    assert g1.energy_j is None and g1.temp_c is None
    assert g1.power_w == pytest.approx(650.501)
    assert r.read(t_s=0.0).total_energy_j is None


def test_init_failure_reports_reason() -> None:
    r = NvmlReader(FakeNvml(init_error="NVML Shared Library Not Found"))
    assert r.open() is False
    assert r.unavailable_reason == "NVML unavailable: NVML Shared Library Not Found"
    assert r.read(t_s=1.0).gpus == ()
    r.close()


def test_no_devices_is_unavailable_and_shuts_down() -> None:
    fake = FakeNvml(count=0)
    r = NvmlReader(fake)
    assert r.open() is False
    assert r.unavailable_reason == "NVML unavailable: no GPUs found"
    assert fake.shutdowns == 1


def test_close_is_idempotent() -> None:
    fake = FakeNvml()
    r = NvmlReader(fake)
    r.open()
    r.close()
    r.close()
    assert fake.shutdowns == 1 and not r.available


def test_real_pynvml_without_gpu_reports_unavailable_without_raising() -> None:
    r = NvmlReader()
    if r.open():  # a machine with a GPU: just check it reads
        try:
            assert r.read(t_s=0.0).gpus
        finally:
            r.close()
        return
    assert r.unavailable_reason and r.unavailable_reason.startswith("NVML unavailable: ")
    assert r.read(t_s=0.0).gpus == ()
