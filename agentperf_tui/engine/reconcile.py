"""Client vs server: over one window, does what SGLang counted match what the client measured?

Two ledgers feed it: the client's request records (``ClientLedger``) and every ``/metrics``
scrape (``ServerLedger``, the counters and the TTFT histogram summed over every scraped worker
and engine type by telemetry/sglang_metrics.py). ``reconcile`` compares them over the interval
between the first and the last scrape inside the window, so both sides count the same stretch
of time:

- SGLang counts a request's prompt, generated and cached tokens and the request itself once,
  when it finishes (tokenizer_manager -> metrics_collector.observe_one_finished_request); the
  client counts it when its last byte arrives. A request is the client's if its ``t_end`` falls
  between the two scrapes; those ending within a scrape's own duration (plus ``EDGE_SLACK_S`` of
  network) of either scrape could be on either side, and their amount widens the tolerance.
- TTFT is observed by SGLang at the first token, from when its tokenizer received the request:
  the client's TTFT (from send) is that plus network, HTTP and anything in front of the server
  (a router's queue). The server's quantile is known only to its histogram bucket; the client's
  nearest-rank quantile agrees when it lies in that bucket, widened by the measured round trip of
  the scrapes (the HTTP time to the same server) and ``EDGE_SLACK_S``.
- Per request, the server's usage must cover what was streamed: every token-bearing SSE event
  carries at least one token, so usage below the count of such events is a usage that lies.

The outcome is ``reconciled`` (every compared quantity within its tolerance), ``disagree`` (each
disagreement listed with its size), ``undecided`` (no request finished in the interval) or ``unreconciled`` (the server side cannot be read: a series
missing, a scrape gap, a worker that did not answer, a counter that went backwards).
"""

from __future__ import annotations

import bisect
import math
import time
from array import array
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.telemetry.samples import HistogramSummary, ServerMetrics

TOKEN_TOLERANCE = 0.01  # tokens and requests: client and server within 1 % (plus the edges)
EDGE_SLACK_S = 0.05  # network and HTTP between the server counting a request and the client's last byte
MIN_TTFT_SAMPLE = 20  # fewer first tokens than this: TTFT quantiles are not compared
GAP_FACTOR = 3.0  # scrapes further apart than this many intervals (and GAP_MIN_S): metrics missing between
GAP_MIN_S = 5.0

RECONCILED = "reconciled"
DISAGREE = "disagree"
UNRECONCILED = "unreconciled"
UNDECIDED = "undecided"  # nothing finished in the interval on either side: nothing to compare

#: ServerMetrics field -> the SGLang series it is read from (for "unreconciled: <series> missing")
SERIES = {
    "generation_tokens_total": "sglang:generation_tokens_total",
    "prompt_tokens_total": "sglang:prompt_tokens_total",
    "requests_total": "sglang:num_requests_total",
    "ttft": "sglang:time_to_first_token_seconds",
}
OPTIONAL_SERIES = {"cached_tokens_total": "sglang:cached_tokens_total",
                   "aborted_requests_total": "sglang:num_aborted_requests_total"}


class ClientLedger:
    """What reconciliation needs from each request record, column-wise, in the order they came in.

    Records come in after they end (``arrived`` >= ``t_end``), so the records of a window that
    starts at ``t`` are all at or after the first one that arrived at ``t``: a bisection finds them.
    """

    def __init__(self) -> None:
        self.arrived = array("d")
        self.t_end = array("d")
        self.t_first = array("d")  # NaN: no first token
        self.ttft = array("d")  # NaN: no first token
        self.prompt = array("q")
        self.output = array("q")
        self.cached = array("q")  # -1: not in the usage (server without --enable-cache-report)
        self.target = array("q")
        self.chunks = array("q")
        self.usage = array("b")  # the server's usage arrived: prompt/output are its figures
        self.ok = array("b")

    def add(self, record: RequestRecord, arrived: float | None = None) -> None:
        now = time.monotonic() if arrived is None else arrived
        self.arrived.append(max(now, self.arrived[-1]) if self.arrived else now)
        self.t_end.append(record.t_end)
        self.t_first.append(math.nan if record.t_first is None else record.t_first)
        self.ttft.append(math.nan if record.ttft_s is None else record.ttft_s)
        self.prompt.append(record.prompt_tokens)
        self.output.append(record.output_tokens)
        self.cached.append(-1 if record.cached_tokens is None else record.cached_tokens)
        self.target.append(record.target_tokens)
        self.chunks.append(record.streamed_chunks)
        self.usage.append(1 if record.usage else 0)
        self.ok.append(1 if record.ok else 0)

    def since(self, t: float) -> range:
        """Indices of every record that could have ended at or after ``t``."""
        return range(bisect.bisect_left(self.arrived, t), len(self.arrived))


@dataclass(frozen=True, slots=True)
class CounterSnapshot:
    """The counters of one scrape that reconciliation compares (None: series missing)."""

    t_s: float
    scrape_s: float
    sources_ok: int
    sources_total: int
    prompt_tokens_total: float | None
    generation_tokens_total: float | None
    cached_tokens_total: float | None
    requests_total: float | None
    aborted_requests_total: float | None
    ttft: HistogramSummary | None
    pd: bool = False  # prefill/decode disaggregation: the request series come from different workers

    @classmethod
    def of(cls, m: ServerMetrics) -> CounterSnapshot:
        return cls(m.t_s, m.scrape_s, m.sources_ok, m.sources_total, m.prompt_tokens_total,
                   m.generation_tokens_total, m.cached_tokens_total, m.requests_total,
                   m.aborted_requests_total, m.ttft, pd="prefill" in m.by_engine or "decode" in m.by_engine)


class ServerLedger:
    """Every scrape's counters, in time order (a few hundred bytes each)."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.snapshots: list[CounterSnapshot] = []
        self._t: list[float] = []

    def add(self, m: ServerMetrics) -> None:
        if self._t and m.t_s < self._t[-1]:
            return
        self.snapshots.append(CounterSnapshot.of(m))
        self._t.append(m.t_s)

    def between(self, t_from: float, t_to: float) -> list[CounterSnapshot]:
        return self.snapshots[bisect.bisect_left(self._t, t_from):bisect.bisect_right(self._t, t_to)]


@dataclass(frozen=True, slots=True)
class Comparison:
    """One quantity, both sides. ``agrees`` None: shown, not compared (``note`` says why)."""

    quantity: str
    unit: str
    client: float | None
    server: float | None
    tolerance: float | None = None  # the largest |client - server| that still agrees
    agrees: bool | None = None
    note: str = ""

    @property
    def gap(self) -> float | None:
        return None if self.client is None or self.server is None else self.client - self.server

    def describe(self) -> str:
        """'output tokens: client 1,234 tok, server 1,240 tok (-0.48 %, tolerance +-12)'."""
        def num(v: float | None) -> str:
            if v is None:
                return "-"
            return f"{v:,.3f}" if self.unit == "s" else f"{v:,.0f}"
        text = f"{self.quantity}: client {num(self.client)} {self.unit}, server {num(self.server)} {self.unit}"
        gap = self.gap
        if gap is not None:
            share = f", {gap / self.server:+.2%}" if self.server else ""
            tol = f", tolerance +-{num(self.tolerance)}" if self.tolerance is not None else ""
            text += f" (gap {gap:+,.3f}{share}{tol})" if self.unit == "s" else f" (gap {gap:+,.0f}{share}{tol})"
        return text + (f"; {self.note}" if self.note else "")


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """Client vs server over one window: the outcome and every quantity compared."""

    status: str  # reconciled | disagree | undecided | unreconciled
    reason: str  # unreconciled: why the server side cannot be read; disagree: what disagrees
    t_from: float | None = None  # the compared interval: first and last scrape in the window
    t_to: float | None = None
    scrape_interval_s: float | None = None  # median time between the window's scrapes
    scrapes: int = 0
    workers: str = ""  # "N of M" serving processes that answered every scrape in the interval
    requests: int = 0  # client records that ended in the interval
    comparisons: tuple[Comparison, ...] = ()

    @property
    def headline(self) -> str:
        return self.status if self.status == RECONCILED else f"{self.status}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["headline"] = self.headline
        data["seconds"] = (round(self.t_to - self.t_from, 3)
                           if self.t_from is not None and self.t_to is not None else None)
        data["comparisons"] = [{**asdict(c), "gap": c.gap} for c in self.comparisons]
        data.pop("t_from")
        data.pop("t_to")
        return data


def _unreconciled(reason: str, **extra: Any) -> Reconciliation:
    return Reconciliation(UNRECONCILED, reason, **extra)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return 0.0 if not n else (ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2)


def _nearest_rank(ordered: list[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _bucket_of(h: HistogramSummary, q: float) -> tuple[float, float]:
    """(lower, upper) bound of the bucket holding rank ``q`` of ``h`` (upper is inf above the top)."""
    total = h.buckets[-1][1]
    rank = q * total
    prev = 0.0
    for le, count in h.buckets:
        if count >= rank and count > 0:
            return prev, le
        prev = le
    return prev, math.inf


def _server_problem(snaps: list[CounterSnapshot], interval_s: float, t_from: float, t_to: float) -> str:
    """Why the server side of this window cannot be read, or ''."""
    if len(snaps) < 2:
        return "metrics missing (fewer than 2 /metrics scrapes in the window)"
    silent = [s for s in snaps if s.sources_ok == 0]
    if silent:
        return f"metrics missing (/metrics did not answer {len(silent)} of {len(snaps)} scrapes)"
    partial = [s for s in snaps if s.sources_ok < s.sources_total]
    if partial:
        worst = min(partial, key=lambda s: s.sources_ok)
        return f"metrics from {worst.sources_ok} of {worst.sources_total} workers (totals partial)"
    gap_limit = max(GAP_MIN_S, GAP_FACTOR * interval_s)
    for a, b in zip(snaps, snaps[1:], strict=False):
        if b.t_s - a.t_s > gap_limit:
            return f"metrics missing for {b.t_s - a.t_s:.1f} s (no scrape between two readings)"
    if snaps[0].t_s - t_from > gap_limit:
        return f"metrics missing for the window's first {snaps[0].t_s - t_from:.1f} s"
    if t_to - snaps[-1].t_s > gap_limit:
        return f"metrics stale (the last scrape is {t_to - snaps[-1].t_s:.1f} s before the window's end)"
    for field, series in SERIES.items():
        if any(getattr(s, field) is None for s in snaps):
            return f"{series} missing"
    for field, series in {**SERIES, **OPTIONAL_SERIES}.items():
        for a, b in zip(snaps, snaps[1:], strict=False):
            va, vb = getattr(a, field), getattr(b, field)
            if field == "ttft":
                va, vb = (va.count if va else None), (vb.count if vb else None)
            if va is not None and vb is not None and vb < va:
                return f"counter reset ({series} fell from {va:,.0f} to {vb:,.0f}: server restarted?)"
    return ""


def reconcile(client: ClientLedger, server: ServerLedger, t_from: float, t_to: float,
              running: Iterable[tuple[float, float | None]] = ()) -> Reconciliation:
    """Compare both sides over the scrapes inside [t_from, t_to] (see the module docstring).

    ``running`` is (sent, first token) of each request still in flight: the server observed the
    TTFT of those that got their first token, so the client's TTFT sample includes them too.
    """
    snaps = server.between(t_from, t_to)
    intervals = [b.t_s - a.t_s for a, b in zip(snaps, snaps[1:], strict=False)]
    interval = _median(intervals) if intervals else server.interval_s
    problem = _server_problem(snaps, interval, t_from, t_to)
    if problem:
        return _unreconciled(problem, scrapes=len(snaps), scrape_interval_s=round(interval, 3) if intervals else None)
    a, b = snaps[0], snaps[-1]
    lo, hi = a.t_s, b.t_s
    network_s = _median([s.scrape_s for s in snaps])  # HTTP round trip to the same server, measured
    slack = max(EDGE_SLACK_S, network_s)
    edges = ((a.t_s - a.scrape_s - slack, a.t_s + slack), (b.t_s - b.scrape_s - slack, b.t_s + slack))
    c = client
    inside: list[int] = []
    edge: list[int] = []
    first_tokens: list[float] = []
    for i in c.since(lo - slack - a.scrape_s):
        t_end = c.t_end[i]
        if lo < t_end <= hi:
            inside.append(i)
        if any(e0 <= t_end <= e1 for e0, e1 in edges):
            edge.append(i)
        if lo < c.t_first[i] <= hi:  # NaN compares false
            first_tokens.append(c.ttft[i])
    first_tokens += [first - sent for sent, first in running if first is not None and lo < first <= hi]
    with_usage = [i for i in inside if c.usage[i]]
    failed_blind = [i for i in inside if not c.usage[i] and not c.ok[i]]  # failed before the usage chunk
    ok_blind = [i for i in inside if not c.usage[i] and c.ok[i]]
    edge_usage = [i for i in edge if c.usage[i]]
    comparisons: list[Comparison] = []

    def counted(quantity: str, field: str, column: array | None, unit: str = "tok") -> None:
        va, vb = getattr(a, field), getattr(b, field)
        server_value = None if va is None or vb is None else vb - va
        mine = len(with_usage) if column is None else sum(column[i] for i in with_usage)
        at_edges = len(edge_usage) if column is None else sum(column[i] for i in edge_usage)
        # failed requests without usage: the server may have counted them in full, or not at all
        # (their cached tokens are unknown: at most their prompt)
        def bound(i: int) -> int:
            if column is c.output:
                return max(c.output[i], c.target[i])
            return c.prompt[i]

        unknown = len(failed_blind) if column is None else sum(bound(i) for i in failed_blind)
        if server_value is None:
            comparisons.append(Comparison(quantity, unit, mine, None, note=f"{SERIES.get(field, field)} not reported"))
            return
        tolerance = TOKEN_TOLERANCE * max(mine, server_value) + at_edges + unknown
        notes = []
        if at_edges:
            notes.append(f"{at_edges:,} at the window's edges")
        if unknown:
            notes.append(f"{len(failed_blind)} failed requests without usage (up to {unknown:,})")
        comparisons.append(Comparison(quantity, unit, mine, server_value, round(tolerance, 3),
                                      abs(mine - server_value) <= tolerance, "; ".join(notes)))

    counted("output tokens", "generation_tokens_total", c.output)
    counted("prompt tokens", "prompt_tokens_total", c.prompt)
    counted("requests finished", "requests_total", None, "req")
    if b.pd:  # SGLang's prefill side counts a request when its prefill ends, long before the client's end
        va, vb = a.cached_tokens_total, b.cached_tokens_total
        comparisons.append(Comparison(
            "cached tokens", "tok", sum(c.cached[i] for i in with_usage if c.cached[i] >= 0),
            None if va is None or vb is None else vb - va,
            note="shown, not compared: under PD the prefill workers count cached tokens when a prefill ends"))
    elif all(c.cached[i] >= 0 for i in with_usage) and with_usage:
        counted("cached tokens", "cached_tokens_total", c.cached)
    else:
        va, vb = a.cached_tokens_total, b.cached_tokens_total
        comparisons.append(Comparison(
            "cached tokens", "tok", None, None if va is None or vb is None else vb - va,
            note="not in the client's usage (start the server with --enable-cache-report)"))
    va, vb = a.aborted_requests_total, b.aborted_requests_total
    comparisons.append(Comparison(
        "requests failed / aborted", "req", sum(1 for i in inside if not c.ok[i]),
        None if va is None or vb is None else vb - va,
        note="shown, not compared: the client's failures include ones the server never saw, "
             "the server counts only the aborts it saw"))
    # the server's usage must cover what streamed
    lying = sum(1 for i in with_usage if c.chunks[i] > c.output[i])
    chunks = sum(c.chunks[i] for i in with_usage)
    tokens = sum(c.output[i] for i in with_usage)
    per_chunk = f"{tokens / chunks:.2f} tok per streamed event" if chunks else "no token events"
    comparisons.append(Comparison(
        "usage covers the stream", "req", len(with_usage) - lying, len(with_usage), 0, lying == 0,
        f"{lying} responses' usage is below their streamed token events; {per_chunk}" if lying
        else f"every usage >= its streamed token events; {per_chunk}"))
    done = len(with_usage) + len(ok_blind)
    comparisons.append(Comparison(
        "responses with usage", "req", len(with_usage), done, 0, not ok_blind,
        f"{len(ok_blind)} successful responses had no usage chunk (tokens counted from the stream)"
        if ok_blind else ""))
    # TTFT: the client's nearest-rank quantile against the server histogram's bucket
    h = b.ttft.minus(a.ttft) if a.ttft is not None and b.ttft is not None else None
    first_tokens.sort()
    for q, name in ((0.5, "TTFT P50"), (0.95, "TTFT P95")):
        if h is None or not h.buckets:
            comparisons.append(Comparison(name, "s", None, None, note="no TTFT histogram buckets"))
            continue
        if h.count < MIN_TTFT_SAMPLE or len(first_tokens) < MIN_TTFT_SAMPLE:
            comparisons.append(Comparison(
                name, "s", _nearest_rank(first_tokens, q) if first_tokens else None, h.quantile(q),
                note=f"not compared: {len(first_tokens)} client / {h.count:.0f} server first tokens "
                     f"(< {MIN_TTFT_SAMPLE})"))
            continue
        mine = _nearest_rank(first_tokens, q)
        theirs = h.quantile(q)
        low, up = _bucket_of(h, q)
        agrees = low - EDGE_SLACK_S <= mine <= up + network_s + EDGE_SLACK_S
        in_front = mine - up
        note = (f"server bucket {low:g}-{up:g} s; scrape round trip {network_s * 1000:.0f} ms; "
                f"{len(first_tokens)} client / {h.count:.0f} server first tokens")
        if not agrees and in_front > 0:
            note += f"; {in_front:.3f} s above the bucket: time in front of the server (network, router queue)"
        tolerance = max(abs((theirs or 0) - low), abs(up - (theirs or 0))) + network_s + EDGE_SLACK_S
        comparisons.append(Comparison(name, "s", round(mine, 4), None if theirs is None else round(theirs, 4),
                                      round(tolerance, 4) if math.isfinite(tolerance) else None, agrees, note))
    wrong = [x for x in comparisons if x.agrees is False]
    status = DISAGREE if wrong else RECONCILED
    reason = "; ".join(x.describe() for x in wrong)
    server_done = (b.requests_total or 0) - (a.requests_total or 0)
    if not wrong and not with_usage and not server_done:
        status, reason = UNDECIDED, (f"no request finished with the server's usage in the {hi - lo:.0f} s between "
                                     f"the scrapes ({len(inside)} ended, all failed): nothing to compare")
    return Reconciliation(status, reason, lo, hi, round(interval, 3), len(snaps),
                          f"{b.sources_ok} of {b.sources_total}", len(inside), tuple(comparisons))
