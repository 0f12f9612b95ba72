"""Parse SGLang's Prometheus ``/metrics`` text into one ServerMetrics (and fetch it over HTTP).

Parsing uses ``prometheus_client.parser`` (no hand-written Prometheus parser); this module also
hosts the small helpers dcgm.py reuses (``prom_samples``, ``scrape``).

Aggregation over label sets
    SGLang labels scheduler series with ``model_name``, ``engine_type``, ``tp_rank``,
    ``pp_rank``, ``moe_ep_rank`` and, with DP attention, ``dp_rank``; gauges in prometheus
    multiprocess "all" mode also carry ``pid``. Ranks of one tensor/pipeline/expert group report
    the same scheduler state, so series that differ only in a *replica* label (``tp_rank``,
    ``pp_rank``, ``moe_ep_rank``, ``attn_tp_rank``, ``attn_cp_rank``, ``pid``) are collapsed
    by max first. The remaining label sets (``dp_rank``, ``model_name``, ``cache_source``,
    ``worker_addr``...) are then summed for counts, counters, capacities, throughput and
    histograms, and averaged for ratios (``token_usage``, ``cache_hit_rate``,
    ``spec_accept_length``).

Prefill and decode (PD disaggregation)
    Series carry ``engine_type``; ``by_engine`` holds the figures per engine type. Scheduler
    state (running, queued, KV) is summed over both; per-request series are taken from one
    side only, as ``_PD_FROM_DECODE`` / ``_PD_FROM_PREFILL`` say (both sides count each request).

Name drift (the alias table ``_ALIASES``; the first name present wins)
    - The prefix is ``sglang:``; some front ends (SMG gateway, Dynamo re-exports) emit
      ``sglang_``. Both are accepted.
    - ``prometheus_client`` strips ``_total`` from counter *family* names while samples keep it,
      and untyped counters keep it in both; lookups try the name with and without ``_total``.
    - Older SGLang used ``num_requests_running`` / ``num_requests_waiting`` and reported
      inter-token latency only as ``time_per_output_token_seconds``; newer builds add
      ``kv_used_tokens`` and ``full_token_usage`` beside the classic names. These serve as
      fallbacks only.
    Unknown series are ignored (kept in ``raw`` when ``sglang``-prefixed); missing ones give None.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from agentperf_tui.telemetry.samples import HistogramSummary, ServerMetrics

Labels = dict[str, str]

#: Labels whose values name copies of the same state (collapsed by max before summing).
REPLICA_LABELS = frozenset({"tp_rank", "pp_rank", "moe_ep_rank", "attn_tp_rank", "attn_cp_rank", "pid"})

# field -> (how, candidate names without prefix, in preference order)
_ALIASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "running_reqs": ("sum", ("num_running_reqs", "num_requests_running")),
    "queued_reqs": ("sum", ("num_queue_reqs", "num_requests_waiting")),
    "used_tokens": ("sum", ("num_used_tokens", "kv_used_tokens")),
    "token_usage": ("mean", ("token_usage", "full_token_usage")),
    "max_total_tokens": ("sum", ("max_total_num_tokens",)),
    "gen_throughput_tps": ("sum", ("gen_throughput",)),
    "cache_hit_rate": ("mean", ("cache_hit_rate",)),
    "spec_accept_length": ("mean", ("spec_accept_length",)),
    "retracted_reqs": ("sum", ("num_retracted_reqs",)),
    "prompt_tokens_total": ("sum", ("prompt_tokens_total",)),
    "generation_tokens_total": ("sum", ("generation_tokens_total",)),
    "cached_tokens_total": ("sum", ("cached_tokens_total",)),
    "requests_total": ("sum", ("num_requests_total",)),
    "aborted_requests_total": ("sum", ("num_aborted_requests_total",)),
    # PD disaggregation queues (prefill: waiting for the decode side's bootstrap / KV sent, not yet
    # acknowledged; decode: waiting for KV pool pre-allocation / KV arriving)
    "prefill_bootstrap_queue_reqs": ("sum", ("num_prefill_bootstrap_queue_reqs",)),
    "prefill_inflight_queue_reqs": ("sum", ("num_prefill_inflight_queue_reqs",)),
    "decode_prealloc_queue_reqs": ("sum", ("num_decode_prealloc_queue_reqs",)),
    "decode_transfer_queue_reqs": ("sum", ("num_decode_transfer_queue_reqs",)),
}

_HISTOGRAMS: dict[str, tuple[str, ...]] = {
    "ttft": ("time_to_first_token_seconds",),
    "itl": ("inter_token_latency_seconds", "time_per_output_token_seconds"),
    "e2e_latency": ("e2e_request_latency_seconds",),
    "queue_time": ("queue_time_seconds",),
    "kv_transfer_latency_ms": ("kv_transfer_latency_ms",),  # PD, prefill side: per request sent
    "kv_transfer_speed_gb_s": ("kv_transfer_speed_gb_s",),
}

_PREFIXES = ("sglang:", "sglang_")
#: Kept in ``raw``: SGLang's series and the twin's own (``agentperf_twin:``, e.g. its step lag).
RAW_PREFIXES = ("sglang:", "agentperf_twin:")


def prom_samples(text: str) -> list[tuple[str, Labels, float]]:
    """All samples of a Prometheus text exposition as (sample name, labels, value).

    NaN samples are dropped. Raises ValueError with a clear message if ``text`` is not
    Prometheus text (an HTML error page, JSON, garbage).
    """
    out: list[tuple[str, Labels, float]] = []
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                v = float(s.value)
                if not math.isnan(v):
                    out.append((s.name, dict(s.labels), v))
    except Exception as exc:  # the parser raises ValueError, IndexError, KeyError... on junk
        head = text.strip().splitlines()[0][:80] if text.strip() else ""
        raise ValueError(f"not Prometheus text exposition ({exc!s:.120}); starts with {head!r}") from exc
    return out


def _normalise(name: str) -> str:
    for p in _PREFIXES:
        if name.startswith(p):
            return "sglang:" + name[len(p) :]
    return name


def _aggregate(series: Iterable[tuple[Labels, float]], how: str) -> float | None:
    """Collapse replica labels by max, then sum or mean over the remaining label sets."""
    groups: dict[tuple[tuple[str, str], ...], float] = {}
    for labels, value in series:
        key = tuple(sorted((k, v) for k, v in labels.items() if k not in REPLICA_LABELS))
        prev = groups.get(key)
        groups[key] = value if prev is None else max(prev, value)
    if not groups:
        return None
    total = math.fsum(groups.values())
    return total / len(groups) if how == "mean" else total


class _Index:
    """Samples grouped by normalised sample name."""

    def __init__(self, samples: list[tuple[str, Labels, float]]) -> None:
        self.by_name: dict[str, list[tuple[Labels, float]]] = defaultdict(list)
        for name, labels, value in samples:
            self.by_name[_normalise(name)].append((labels, value))

    def find(self, base: str) -> list[tuple[Labels, float]] | None:
        for cand in (f"sglang:{base}", f"sglang:{base}_total", f"sglang:{base.removesuffix('_total')}"):
            if cand in self.by_name:
                return self.by_name[cand]
        return None

    def histogram(self, base: str) -> HistogramSummary | None:
        count = self.by_name.get(f"sglang:{base}_count")
        total = self.by_name.get(f"sglang:{base}_sum")
        if count is None and total is None:
            return None
        per_le: dict[float, list[tuple[Labels, float]]] = defaultdict(list)
        for labels, value in self.by_name.get(f"sglang:{base}_bucket", ()):
            try:
                le = float(labels.get("le", "nan"))
            except ValueError:
                continue
            if math.isnan(le):
                continue
            per_le[le].append(({k: v for k, v in labels.items() if k != "le"}, value))
        buckets = tuple((le, _aggregate(per_le[le], "sum") or 0.0) for le in sorted(per_le))
        n = _aggregate(count or (), "sum")
        if n is None and buckets and math.isinf(buckets[-1][0]):
            n = buckets[-1][1]
        return HistogramSummary(count=n or 0.0, sum=_aggregate(total or (), "sum") or 0.0, buckets=buckets)


def _metrics_from(idx: _Index, t_s: float, **extra: object) -> ServerMetrics:
    values: dict[str, object] = {}
    for fld, (how, names) in _ALIASES.items():
        for base in names:
            series = idx.find(base)
            if series is not None:
                values[fld] = _aggregate(series, how)
                break
    for fld, names in _HISTOGRAMS.items():
        for base in names:
            h = idx.histogram(base)
            if h is not None:
                values[fld] = h
                break
    raw: dict[str, float] = {}
    for name, series in idx.by_name.items():
        if name.startswith(RAW_PREFIXES) and not name.endswith("_bucket"):
            agg = _aggregate(series, "sum")
            if agg is not None:
                raw[name] = agg
    return ServerMetrics(t_s=t_s, raw=raw, **values, **extra)  # type: ignore[arg-type]


#: Under PD disaggregation every request passes through a prefill AND a decode server, and each
#: one's tokenizer counts it (SGLang labels both with their engine_type): summing the two would
#: count every request, prompt token and TTFT twice. These totals come from one side only - the
#: decode server streams to the client (its TTFT, tokens, requests), the prefill server computes
#: the prompt against its prefix cache (its cached tokens, hit rate, queue).
_PD_FROM_DECODE = ("prompt_tokens_total", "generation_tokens_total", "requests_total", "aborted_requests_total",
                   "ttft", "itl", "e2e_latency", "gen_throughput_tps", "spec_accept_length")
_PD_FROM_PREFILL = ("cached_tokens_total", "cache_hit_rate", "queue_time", "kv_transfer_latency_ms",
                    "kv_transfer_speed_gb_s")


def _metrics_from_samples(samples: list[tuple[str, Labels, float]], t_s: float, **extra: object) -> ServerMetrics:
    """Totals over every series, plus one ServerMetrics per ``engine_type`` (prefill/decode/unified)."""
    engine_types = sorted({labels["engine_type"] for _, labels, _ in samples if labels.get("engine_type")})
    by_engine = {
        kind: _metrics_from(_Index([s for s in samples if s[1].get("engine_type") == kind]), t_s)
        for kind in engine_types
    }
    total = _metrics_from(_Index(samples), t_s, by_engine=by_engine, **extra)
    if "prefill" in by_engine or "decode" in by_engine:
        # a PD deployment, even when one side did not answer this scrape: its fields are then None
        # (never silently the other side's); unified workers beside it count on both sides
        def side(kind: str) -> ServerMetrics:
            if "unified" not in by_engine:  # that engine type's figures, already computed
                return by_engine.get(kind) or ServerMetrics(t_s=t_s)
            return _metrics_from(_Index([x for x in samples if x[1].get("engine_type") in (kind, "unified")]), t_s)

        decode, prefill = side("decode"), side("prefill")
        total = dataclasses.replace(total, **{f: getattr(decode, f) for f in _PD_FROM_DECODE},
                                    **{f: getattr(prefill, f) for f in _PD_FROM_PREFILL})
    return total


def parse_sglang_metrics(text: str, t_s: float) -> ServerMetrics:
    """Parse one ``/metrics`` body; missing series become None, unknown ones are ignored.

    Raises ValueError only when ``text`` is not Prometheus text at all.
    """
    return _metrics_from_samples(prom_samples(text), t_s)


def parse_sglang_sources(bodies: Sequence[tuple[str, str]], t_s: float, sources_total: int | None = None
                         ) -> ServerMetrics:
    """Merge the ``/metrics`` bodies of several serving processes into one ServerMetrics.

    ``bodies`` are ``(worker, text)`` pairs; see :func:`merge_worker_samples`.
    """
    return merge_worker_samples([(w, prom_samples(text)) for w, text in bodies], t_s, sources_total)


def merge_worker_samples(parsed: Sequence[tuple[str, list[tuple[str, Labels, float]]]], t_s: float,
                         sources_total: int | None = None) -> ServerMetrics:
    """One ServerMetrics from the parsed samples of several serving processes.

    Every node of one multi-node worker shares a worker name, so its nodes' replica series
    collapse like one process's; different workers are summed (each sample gets a ``worker``
    label unless it already names one, as an aggregating gateway's do). ``sources_total`` is how
    many workers were asked (``sources_ok`` how many answered), so a total over fewer workers
    than exist is shown as partial, never as the whole.
    """
    merged: list[tuple[str, Labels, float]] = []
    workers = set()
    for worker, samples in parsed:
        workers.add(worker)
        for name, labels, value in samples:
            merged.append((name, labels if "worker" in labels else {**labels, "worker": worker}, value))
    ok = len(workers)
    return _metrics_from_samples(merged, t_s, sources_ok=ok, sources_total=ok if sources_total is None else sources_total)


async def scrape(session: aiohttp.ClientSession, url: str, timeout_s: float = 1.0) -> str:
    """GET ``url`` and return its body; raises aiohttp.ClientError / TimeoutError on failure."""
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
        resp.raise_for_status()
        return await resp.text()
