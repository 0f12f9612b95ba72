"""The live run's own numbers for Prometheus: a frame sink served as Prometheus text (``--prometheus-port``).

So a benchmark can sit beside dcgm-exporter and SGLang on an operator's Grafana. Served by
prometheus_client's own HTTP server on its own thread, from the latest frame (the same frames
the dashboard, headless printer and recorder get), bound to 127.0.0.1 unless told otherwise.
Every series carries ``profile`` and ``twin`` ("true" when the numbers are the digital twin's);
every value is one the frame shows, so a scrape never computes anything the run did not.

Series (``agentperf_`` prefix): agents target / active / in work, effective concurrency, output
tokens per second, requests and output tokens so far (counters), per tier the P25 speed, the
P95 TTFT, the share meeting both and the verdict (one series per verdict, 1 for the current),
power at the run's boundary and agents per MW, client validity, and client-vs-server
reconciliation (one series per status, 1 for the current).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agentperf_tui.engine.frames import Frame

VERDICTS = ("pass", "fail", "undecided")
RECONCILE_STATUSES = ("reconciled", "disagree", "undecided", "unreconciled")


class FrameCollector:
    """A prometheus_client collector over the latest frame (empty until the first one)."""

    def __init__(self) -> None:
        self._frame: Frame | None = None
        self._lock = threading.Lock()

    def on_frame(self, frame: Frame) -> None:
        with self._lock:
            self._frame = frame

    def describe(self) -> list[Metric]:
        return []  # the series depend on the frame (tiers); collected fresh at every scrape

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            f = self._frame
        if f is None:
            return
        base = {"profile": f.profile, "twin": "true" if f.server.version.startswith("twin") else "false"}
        names, values = list(base), list(base.values())

        def gauge(name: str, doc: str, value: float | None, **extra: str) -> Metric | None:
            if value is None:
                return None
            g = GaugeMetricFamily(f"agentperf_{name}", doc, labels=names + list(extra))
            g.add_metric(values + list(extra.values()), float(value))
            return g

        def counter(name: str, doc: str, value: float, **extra: str) -> Metric:
            c = CounterMetricFamily(f"agentperf_{name}", doc, labels=names + list(extra))
            c.add_metric(values + list(extra.values()), float(value))
            return c

        out: list[Metric | None] = [
            gauge("agents_target", "Agents the run is asked to hold.", f.target_agents),
            gauge("agents_active", "Agents running (started, not retired).", f.active_agents),
            gauge("agents_in_work", "Agents with a request in flight or in a tool call.", f.in_work_agents),
            gauge("effective_concurrency", "Time-average of agents in work over the steady time so far.",
                  f.effective_concurrency),
            gauge("output_tokens_per_second", "Output tokens arrived per second, last 10 s.", f.output_tokens_per_s),
            gauge("steady", "1 while the load is steady (every agent started and settled).", 1.0 if f.steady else 0.0),
            gauge("client_valid", "1 when the load generator itself is fast enough to be trusted.",
                  1.0 if f.client.valid else 0.0),
            gauge("power_watts", "Power now at the run's power boundary (W).", f.power.boundary_w,
                  boundary=f.power.boundary),
            gauge("agents_per_megawatt", "Active agents per MW at the power boundary, now.", f.power.agents_per_mw,
                  boundary=f.power.boundary),
            counter("requests", "Requests finished so far, by status.", f.requests_completed, status="ok"),
            counter("requests_failed", "Requests failed so far.", f.requests_failed),
            counter("output_tokens", "Output tokens so far.", f.output_tokens),
        ]
        p25 = GaugeMetricFamily("agentperf_tier_output_tps_p25", "P25 per-request output speed over the live "
                                "window (tok/s).", labels=names + ["tier"])
        p95 = GaugeMetricFamily("agentperf_tier_ttft_p95_seconds", "P95 TTFT over the live window (s).",
                                labels=names + ["tier"])
        share = GaugeMetricFamily("agentperf_tier_compliance_ratio", "Share of the live window's finished "
                                  "requests meeting both targets.", labels=names + ["tier"])
        verdict = GaugeMetricFamily("agentperf_tier_verdict", "1 for the tier's current verdict over the live "
                                    "window (pass / fail / undecided).", labels=names + ["tier", "verdict"])
        for t in f.tiers:
            if t.output_tps_p25 is not None:
                p25.add_metric(values + [t.name], t.output_tps_p25)
            if t.ttft_p95_s is not None:
                p95.add_metric(values + [t.name], t.ttft_p95_s)
            share.add_metric(values + [t.name], t.compliance)
            for v in VERDICTS:
                verdict.add_metric(values + [t.name, v], 1.0 if t.shown_verdict == v else 0.0)
        out += [p25, p95, share, verdict]
        if f.server.reconcile_status:
            rec = GaugeMetricFamily("agentperf_reconciliation", "1 for the current client-vs-server outcome "
                                    "over the live window.", labels=names + ["status"])
            for s in RECONCILE_STATUSES:
                rec.add_metric(values + [s], 1.0 if f.server.reconcile_status == s else 0.0)
            out.append(rec)
        yield from (m for m in out if m is not None)


class PrometheusExporter:
    """Serves a FrameCollector on ``addr:port`` (port 0: any free port; ``port`` says which)."""

    def __init__(self, port: int, addr: str = "127.0.0.1"):
        self.collector = FrameCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)  # type: ignore[arg-type]
        self._server: Any
        self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        self.addr = addr
        self.port = int(self._server.server_address[1])

    def on_frame(self, frame: Frame) -> None:
        self.collector.on_frame(frame)

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
