"""Prometheus exposition of the twin: SGLang's ``sglang:`` series and dcgm-exporter's series.

Values are computed at scrape time from the cluster by custom collectors and written with
prometheus_client's own exposition code, so the text is valid Prometheus by construction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from agentperf_tui.twin.scheduler import Cluster

ENGINE_TYPE = {"mixed": "unified", "prefill": "prefill", "decode": "decode"}
#: Per-scheduler labels as SGLang 0.5.23 writes them (observability/metrics_collector.py), plus
#: smg's ``worker_addr``: one twin process serves the whole deployment, so its /metrics reads like
#: the gateway's /engine_metrics over every worker.
SCHEDULER_LABELS = ["model_name", "engine_type", "tp_rank", "pp_rank", "moe_ep_rank", "worker_addr"]
REQUEST_LABELS = ["model_name", "engine_type"]


class SGLangCollector(Collector):
    """The ``sglang:`` series named in SGLang's metrics (REFERENCE §3), labelled like SGLang's.

    Scheduler series (running, queued, KV, throughput, hit rate, PD queues) come per engine with
    its ``engine_type``; request series (tokens, requests, latency histograms) once per engine
    type, as each side's tokenizer counts them - under PD both the prefill and the decode side
    count every request, as in SGLang. Twin-only series are ``agentperf_twin:``, never ``sglang:``.
    """

    def __init__(self, cluster: Cluster, model_name: str, spec_enabled: bool):
        self.cluster = cluster
        self.model_name = model_name
        self.spec_enabled = spec_enabled
        stats = cluster.stats
        self.hist = {"time_to_first_token_seconds": stats.ttft, "inter_token_latency_seconds": stats.itl,
                     "e2e_request_latency_seconds": stats.e2e, "queue_time_seconds": stats.queue_time}
        # KV transfer is the prefill side's to report (SGLang observes it where the KV is sent)
        self.kv_hist = {"kv_transfer_latency_ms": stats.kv_transfer_ms, "kv_transfer_speed_gb_s": stats.kv_transfer_gb_s}
        counts: dict[str, int] = {}
        self.engine_labels = []
        for engine in cluster.engines:
            kind = ENGINE_TYPE[engine.role]
            counts[kind] = counts.get(kind, 0) + 1
            self.engine_labels.append((engine, [model_name, kind, "0", "0", "0", f"twin://{kind}{counts[kind]}"]))
        self.pd = bool(cluster.engines) and all(e.role != "mixed" for e in cluster.engines)

    def _scheduler(self, name: str, doc: str, value) -> GaugeMetricFamily:  # type: ignore[no-untyped-def]
        g = GaugeMetricFamily(f"sglang:{name}", doc, labels=SCHEDULER_LABELS)
        for engine, labels in self.engine_labels:
            g.add_metric(labels, float(value(engine)))
        return g

    def _twin(self, name: str, doc: str, value: float, counter: bool = False) -> Metric:
        family = CounterMetricFamily if counter else GaugeMetricFamily
        m = family(f"agentperf_twin:{name}", doc, labels=["model_name"])
        m.add_metric([self.model_name], float(value))
        return m

    def _request_counter(self, name: str, doc: str, per_type: dict[str, float]) -> CounterMetricFamily:
        c = CounterMetricFamily(f"sglang:{name}", doc, labels=REQUEST_LABELS)
        for kind, value in per_type.items():
            c.add_metric([self.model_name, kind], float(value))
        return c

    def collect(self) -> Iterable[Metric]:
        c = self.cluster
        s = c.stats
        spec = self.spec_enabled and s.spec_verify_steps
        yield self._scheduler("num_running_reqs", "The number of running requests.",
                              lambda e: len(e.running) + len(e.prefilling))
        # a PD decode engine's waiting requests wait for a KV slot: SGLang's pre-allocation queue
        yield self._scheduler("num_queue_reqs", "The number of requests in the waiting queue.",
                              lambda e: 0 if e.role == "decode" else e.queued)
        yield self._scheduler("num_used_tokens", "The number of used tokens.", lambda e: e.kv_used)
        yield self._scheduler("token_usage", "The token usage.",
                              lambda e: e.kv_used / e.kv_capacity_tokens if e.kv_capacity_tokens else 0.0)
        yield self._scheduler("max_total_num_tokens", "Maximum total number of tokens in the KV cache pool.",
                              lambda e: e.kv_capacity_tokens)
        yield self._scheduler("gen_throughput", "The generation throughput (token/s).",
                              lambda e: c.gen_throughput(engine=e))
        yield self._scheduler("cache_hit_rate", "The prefix cache hit rate.",
                              lambda e: e.last_batch_hit_rate if e.role != "decode" else 0.0)
        yield self._scheduler("spec_accept_length", "The average acceptance length of speculative decoding.",
                              lambda e: s.spec_accepted_tokens / s.spec_verify_steps if spec and e.role != "prefill" else 0.0)
        yield self._scheduler("num_retracted_reqs", "The number of retracted requests.", lambda e: 0)
        if self.pd:
            yield self._scheduler("num_prefill_bootstrap_queue_reqs",
                                  "The number of requests in the prefill bootstrap queue.", lambda e: 0)
            yield self._scheduler("num_prefill_inflight_queue_reqs",
                                  "The number of requests in the prefill inflight queue.",
                                  lambda e: e.kv_sending if e.role == "prefill" else 0)
            yield self._scheduler("num_decode_prealloc_queue_reqs",
                                  "The number of requests in the decode prealloc queue.",
                                  lambda e: e.queued if e.role == "decode" else 0)
            yield self._scheduler("num_decode_transfer_queue_reqs",
                                  "The number of requests in the decode transfer queue.",
                                  lambda e: e.kv_receiving if e.role == "decode" else 0)
        yield self._twin("step_lag_seconds", "Twin only: how far the simulated step clock fell behind real time.",
                         s.step_lag_s)
        yield self._twin("dropped_seconds",
                         "Twin only: simulated time dropped because the twin process could not keep up.",
                         s.dropped_s, counter=True)
        yield self._twin("decoded_tokens", "Twin only: tokens generated so far, counted as each is generated "
                         "(sglang:generation_tokens counts a request's tokens when it finishes).",
                         s.decoded_tokens_total, counter=True)
        # request series: each engine type's tokenizer counts every request it serves
        front = ["prefill", "decode"] if self.pd else ["unified"]
        last = front[-1]  # the server that streams to the client
        yield self._request_counter("prompt_tokens", "Number of prefill tokens processed.",
                                    dict.fromkeys(front, s.prompt_tokens_total))
        yield self._request_counter("generation_tokens", "Number of generation tokens processed.",
                                    {k: (s.generation_tokens_total if k == last else 0) for k in front})
        yield self._request_counter("cached_tokens", "Number of cached prompt tokens.",
                                    {k: (s.cached_tokens_total if k == front[0] else 0) for k in front})
        yield self._request_counter("num_requests", "Number of requests processed.",
                                    dict.fromkeys(front, s.requests_total))
        yield self._request_counter("num_aborted_requests", "Number of requests aborted.",
                                    {k: (s.aborted_total if k == last else 0) for k in front})
        if self.pd:
            for name, hist in self.kv_hist.items():
                h = HistogramMetricFamily(f"sglang:{name}", f"Histogram of {name.replace('_', ' ')}.",
                                          labels=["model_name", "engine_type", "tp_rank", "pp_rank", "moe_ep_rank"])
                h.add_metric([self.model_name, "prefill", "0", "0", "0"], hist.buckets(), hist.total)
                yield h
        for name, hist in self.hist.items():
            kind = front[0] if name == "queue_time_seconds" else last
            h = HistogramMetricFamily(f"sglang:{name}", f"Histogram of {name.replace('_', ' ')}.",
                                      labels=REQUEST_LABELS)
            h.add_metric([self.model_name, kind], hist.buckets(), hist.total)
            yield h


# dcgm-exporter's HELP text and types for the series the twin exposes (default-counters.csv)
DCGM_SERIES = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
)
DRIVER_VERSION = "570.133.20"


class DcgmExporter:
    """Renders dcgm-exporter's text format for every simulated GPU.

    Written by hand rather than with prometheus_client because dcgm-exporter declares
    ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` a counter *without* the ``_total`` suffix that
    prometheus_client's exposition always adds; the twin must match the real exporter's bytes.
    Power is the draw of the step running now (idle between steps); energy is the integral the
    engines keep, so energy deltas over any window equal the mean power over it.
    """

    def __init__(self, gpu_map: Sequence[tuple[int, str, object, float]], gpu_name: str, fb_total_mib: float,
                 idle_power_w: float, max_power_w: float, weight_mib_per_gpu: float):
        # (gpu index, hostname, engine or None, power share: < 1 only for a slice's prefill GPUs)
        self.gpu_map = gpu_map
        self.gpu_name = gpu_name
        self.fb_total_mib = fb_total_mib
        self.idle_power_w = idle_power_w
        self.max_power_w = max_power_w
        self.weight_mib = weight_mib_per_gpu
        self._last_busy: dict[int, tuple[float, float]] = {}
        self._t0 = time.monotonic()
        self.faults: object = None  # the twin's Faults: dcgm_drop_gpus, dcgm_refresh_s
        self._cached: tuple[float, list[dict[str, float]]] | None = None
        self._labels = {}
        self._uuid: dict[int, str] = {}
        per_host: dict[str, int] = {}
        for gpu, host, _engine, _share in gpu_map:
            local = per_host.get(host, 0)
            per_host[host] = local + 1
            gid = uuid.uuid5(uuid.NAMESPACE_DNS, f"agentperf-twin-{host}-{gpu}")
            self._uuid[gpu] = f"GPU-{gid}"
            self._labels[gpu] = (
                f'gpu="{local}",UUID="GPU-{gid}",pci_bus_id="00000000:{0x18 + 0x10 * local:02X}:00.0",'
                f'device="nvidia{local}",modelName="{gpu_name}",Hostname="{host}",'
                f'DCGM_FI_DRIVER_VERSION="{DRIVER_VERSION}"'
            )

    @property
    def t0(self) -> float:
        return self._t0

    def exact(self, now: float) -> list[dict]:
        """Ground truth per GPU: host, UUID, watts now, joules since the twin started (no faults)."""
        out = []
        for gpu, host, engine, share in self.gpu_map:
            if engine is None:
                joules, watts = self.idle_power_w * (now - self._t0), self.idle_power_w
            else:
                joules = engine.energy_up_to(now) * share  # type: ignore[attr-defined]
                busy = engine.utilization(now)  # type: ignore[attr-defined]
                watts = (engine.busy_power_w if busy else self.idle_power_w) * share  # type: ignore[attr-defined]
            out.append({"gpu": gpu, "host": host, "uuid": self._uuid[gpu], "power_w": watts, "energy_j": joules})
        return out

    def sample(self, now: float) -> list[dict[str, float]]:
        """Current values per GPU, keyed by series name."""
        rows = []
        for gpu, _host, engine, share in self.gpu_map:
            if engine is None:
                joules = self.idle_power_w * (now - self._t0)
                watts, busy_frac, used_mib = self.idle_power_w, 0.0, 600.0
            else:
                joules = engine.energy_up_to(now)  # type: ignore[attr-defined]
                busy_now = engine.utilization(now)  # type: ignore[attr-defined]
                watts = engine.busy_power_w if busy_now else self.idle_power_w  # type: ignore[attr-defined]
                joules, watts = joules * share, watts * share
                last_t, last_busy = self._last_busy.get(gpu, (self._t0, 0.0))
                busy = engine.busy_s  # type: ignore[attr-defined]
                span = now - last_t
                busy_frac = min(1.0, max(0.0, (busy - last_busy) / span)) if span > 0 else 0.0
                self._last_busy[gpu] = (now, busy)
                kv_share = engine.kv_used / max(1, engine.kv_capacity_tokens)  # type: ignore[attr-defined]
                pool_mib = max(0.0, self.fb_total_mib * 0.88 - self.weight_mib)
                used_mib = self.weight_mib + pool_mib * (0.9 + 0.1 * kv_share)
            heat = (watts - self.idle_power_w) / max(1.0, self.max_power_w - self.idle_power_w)
            rows.append({
                "gpu": gpu,
                "DCGM_FI_DEV_SM_CLOCK": 1980.0 if busy_frac > 0 else 345.0,
                "DCGM_FI_DEV_GPU_TEMP": round(32 + 40 * heat),
                "DCGM_FI_DEV_POWER_USAGE": watts,
                "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": int(joules * 1000.0),
                "DCGM_FI_DEV_GPU_UTIL": round(100.0 * busy_frac),
                "DCGM_FI_DEV_FB_FREE": round(max(0.0, self.fb_total_mib - used_mib)),
                "DCGM_FI_DEV_FB_USED": round(used_mib),
            })
        return rows

    def render(self) -> bytes:
        """The exporter's text; fault ``dcgm_refresh_s`` serves values refreshed only that often (as
        dcgm-exporter's ``-c`` interval does), ``dcgm_drop_gpus`` leaves the last N GPUs out."""
        now = time.monotonic()
        refresh = float(getattr(self.faults, "dcgm_refresh_s", 0.0) or 0.0)
        if refresh > 0 and self._cached is not None and now - self._cached[0] < refresh:
            rows = self._cached[1]
        else:
            rows = self.sample(now)
            self._cached = (now, rows)
        drop = int(getattr(self.faults, "dcgm_drop_gpus", 0) or 0)
        if drop:
            rows = rows[:max(0, len(rows) - drop)]
        out: list[str] = []
        for name, kind, doc in DCGM_SERIES:
            out.append(f"# HELP {name} {doc}")
            out.append(f"# TYPE {name} {kind}")
            for row in rows:
                value = row[name]
                text = f"{value:.6f}" if isinstance(value, float) else str(value)
                out.append(f"{name}{{{self._labels[row['gpu']]}}} {text}")
        return ("\n".join(out) + "\n").encode()


def registry_with(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
