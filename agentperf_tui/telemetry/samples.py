"""Immutable telemetry records (GPU power, SGLang server metrics, host load) shared by all readers.

Everything here is plain data: frozen, slotted dataclasses with no I/O, so the engine, the
recorder and the dashboard can pass them around, compare and serialise them freely. Units are in
the field names (``_w``, ``_j``, ``_mib``, ``_pct``, ``_c``, ``_mhz``, ``_tps``, ``_s``). A field
is ``None`` when the source did not report it (missing series, ``NotSupported``, blank value);
``None`` never means zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at one instant.

    ``energy_j`` is the driver's monotonic energy counter (joules since driver load for NVML,
    since boot for DCGM); integrate power from it, not from ``power_w``.
    """

    source: str  # "nvml" | "dcgm"
    host: str
    gpu: int
    uuid: str
    power_w: float | None = None
    energy_j: float | None = None
    util_pct: float | None = None
    mem_used_mib: float | None = None
    mem_total_mib: float | None = None
    temp_c: float | None = None
    sm_clock_mhz: float | None = None
    model_name: str = ""

    @property
    def key(self) -> tuple[str, int]:
        """(host, gpu index): how readings from several trays are told apart."""
        return (self.host, self.gpu)


@dataclass(frozen=True, slots=True)
class PowerReading:
    """All GPUs seen at one tick; ``t_s`` is ``time.monotonic()`` when the values were read."""

    t_s: float
    gpus: tuple[GpuSample, ...] = ()

    @property
    def total_power_w(self) -> float | None:
        """Sum of instantaneous power; None if there are no GPUs or any GPU lacks power."""
        if not self.gpus or any(g.power_w is None for g in self.gpus):
            return None
        return float(sum(g.power_w for g in self.gpus))  # type: ignore[misc]

    @property
    def total_energy_j(self) -> float | None:
        """Sum of the energy counters; None if there are no GPUs or any counter is missing."""
        if not self.gpus or any(g.energy_j is None for g in self.gpus):
            return None
        return float(sum(g.energy_j for g in self.gpus))  # type: ignore[misc]

    def energy_by_gpu(self) -> dict[tuple[str, int], float | None]:
        """Energy counter per (host, gpu)."""
        return {g.key: g.energy_j for g in self.gpus}


@dataclass(frozen=True, slots=True)
class HistogramSummary:
    """A Prometheus histogram summed over label sets.

    ``buckets`` are cumulative ``(upper_bound, count)`` pairs sorted by bound, ending with
    ``(inf, count)`` when the exporter sent a ``+Inf`` bucket.
    """

    count: float
    sum: float
    buckets: tuple[tuple[float, float], ...] = ()

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None

    def minus(self, earlier: HistogramSummary) -> HistogramSummary:
        """The observations made between ``earlier`` and this one (for windowed quantiles)."""
        prev = dict(earlier.buckets)
        return HistogramSummary(
            count=self.count - earlier.count,
            sum=self.sum - earlier.sum,
            buckets=tuple((le, c - prev.get(le, 0.0)) for le, c in self.buckets),
        )

    def quantile(self, q: float) -> float | None:
        """Linear interpolation inside the bucket holding rank ``q``, like PromQL's histogram_quantile."""
        if not self.buckets or not 0.0 <= q <= 1.0:
            return None
        total = self.buckets[-1][1]
        if total <= 0:
            return None
        rank = q * total
        prev_le, prev_c = 0.0, 0.0
        for le, c in self.buckets:
            if c >= rank:
                if math.isinf(le):
                    return prev_le  # above the highest finite bound: report that bound
                if c == prev_c:
                    return le
                return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
            prev_le, prev_c = le, c
        return prev_le


@dataclass(frozen=True, slots=True)
class ServerMetrics:
    """One scrape of SGLang's ``/metrics``, aggregated over label sets (see sglang_metrics.py).

    Counters (``*_total``) are cumulative since server start; take differences between scrapes.
    Several workers' metrics (every prefill and decode worker of a rack) are merged into one of
    these; ``sources_ok < sources_total`` means some did not answer and the totals are partial.
    ``raw`` holds every ``sglang:`` series (bucket lines excluded) summed over its label sets,
    keyed by the sample name with the prefix normalised to ``sglang:``.
    """

    t_s: float
    running_reqs: float | None = None
    queued_reqs: float | None = None
    used_tokens: float | None = None
    token_usage: float | None = None  # fraction 0..1 of the KV pool
    max_total_tokens: float | None = None
    gen_throughput_tps: float | None = None
    cache_hit_rate: float | None = None  # fraction 0..1
    spec_accept_length: float | None = None
    retracted_reqs: float | None = None
    prompt_tokens_total: float | None = None
    generation_tokens_total: float | None = None
    cached_tokens_total: float | None = None
    requests_total: float | None = None
    aborted_requests_total: float | None = None
    ttft: HistogramSummary | None = None
    itl: HistogramSummary | None = None
    e2e_latency: HistogramSummary | None = None
    queue_time: HistogramSummary | None = None
    kv_transfer_latency_ms: HistogramSummary | None = None  # PD: prefill -> decode, per request (ms)
    kv_transfer_speed_gb_s: HistogramSummary | None = None
    prefill_bootstrap_queue_reqs: float | None = None  # PD prefill: waiting for the decode side's handshake
    prefill_inflight_queue_reqs: float | None = None  # PD prefill: KV being sent
    decode_prealloc_queue_reqs: float | None = None  # PD decode: waiting for a KV slot
    decode_transfer_queue_reqs: float | None = None  # PD decode: KV arriving
    raw: dict[str, float] = field(default_factory=dict, compare=False, hash=False)
    #: The same figures per SGLang ``engine_type`` label ("prefill", "decode", "unified"); empty
    #: when the server labels no engine type.
    by_engine: dict[str, ServerMetrics] = field(default_factory=dict, compare=False, hash=False)
    sources_ok: int = 1  # serving processes (workers) whose /metrics answered this scrape
    sources_total: int = 1  # serving processes asked
    #: seconds the scrape took: the server read its values somewhere in [t_s - scrape_s, t_s]
    scrape_s: float = 0.0

    @property
    def ttft_count(self) -> float | None:
        return self.ttft.count if self.ttft else None

    @property
    def ttft_sum(self) -> float | None:
        return self.ttft.sum if self.ttft else None


@dataclass(frozen=True, slots=True)
class HostSample:
    """CPU and memory of this process and of the server's process tree.

    CPU percentages are per process as psutil reports them: 100 means one full core, so a
    multi-threaded process can exceed 100.
    """

    t_s: float
    cpu_pct: float | None
    rss_mib: float | None
    server_cpu_pct: float | None = None
    server_rss_mib: float | None = None
    server_procs: int = 0
