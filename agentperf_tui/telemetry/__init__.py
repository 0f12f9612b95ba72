"""Telemetry: GPU power/energy (NVML, dcgm-exporter), SGLang /metrics and host load, as plain samples.

No Textual imports here: the engine runs ``TelemetrySampler`` on its own loop and forwards the
samples; the dashboard only renders them.
"""

from agentperf_tui.telemetry.dcgm import merge_readings, parse_dcgm
from agentperf_tui.telemetry.host import HostMonitor
from agentperf_tui.telemetry.nvml import NvmlReader
from agentperf_tui.telemetry.sampler import TelemetrySampler, average_power_w
from agentperf_tui.telemetry.samples import (
    GpuSample,
    HistogramSummary,
    HostSample,
    PowerReading,
    ServerMetrics,
)
from agentperf_tui.telemetry.sglang_metrics import parse_sglang_metrics, prom_samples, scrape

__all__ = [
    "GpuSample",
    "HistogramSummary",
    "HostMonitor",
    "HostSample",
    "NvmlReader",
    "PowerReading",
    "ServerMetrics",
    "TelemetrySampler",
    "average_power_w",
    "merge_readings",
    "parse_dcgm",
    "parse_sglang_metrics",
    "prom_samples",
    "scrape",
]
