"""The detail log of a run: every request record, column-wise, and samples of the agent population.

Records are kept column-wise in compact arrays (a run of hours at thousands of agents stays in
tens of MB). The live window (the last ``window_s`` of requests sent) is kept up to date as
records come in and leave it: its speeds and TTFTs in sorted lists (sortedcontainers), each
tier's count of requests meeting both targets, its failures; so a frame judges it without
re-sorting tens of thousands of requests (``judge_sorted``, the same verdicts as ``judge``).
Every window (the live one, a search phase, a run's steady window) is the set of requests
*sent* in it, finished or still in flight, judged by engine/judge.py; tokens are counted where
they *arrived* (a request's tokens spread evenly between its first and last token).
"""

from __future__ import annotations

import bisect
import heapq
import math
from array import array
from collections import deque
from collections.abc import Sequence

from sortedcontainers import SortedList

from agentperf_tui.engine.judge import (
    RequestSet,
    TierVerdict,
    judge_sorted,
    request_speed,
    request_ttft,
)
from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.engine.slo import Tier, percentile

HISTORY_POINTS = 240
DISPATCH_EVERY_S = 0.25  # the dispatch-delay p99 is re-sorted at most this often (s of sends)


class RunMetrics:
    """Accumulates request records and samples of the agent population."""

    def __init__(self, tiers: Sequence[Tier], window_s: float = 60.0):
        self.tiers = tuple(tiers)
        self.window_s = window_s
        self.t_send = array("d")
        self.t_end = array("d")
        # max(t_end) over the records so far, per record: nondecreasing and >= each record's own
        # t_end, so every record that ended at or after t lies at or after bisect_left(end_bound, t)
        self.end_bound = array("d")
        self.speed = array("d")
        self.ttft = array("d")
        self.ok = array("b")
        self.t_first = array("d")  # NaN: no first token
        self.t_last = array("d")
        self.output_tokens_col = array("q")
        self.context_col = array("q")  # prompt + output tokens of each request
        self.conc_t = array("d")  # agents-in-work samples (time, count), every frame
        self.conc_n = array("d")
        self.max_context_tokens = 0
        self._mark_t: float | None = None  # tokens arrived since this time, kept as records come in
        self._mark_tokens = 0.0
        self.last_send: dict[int, float] = {}  # agent -> t_send of its latest finished request
        self.trajectory_ends: list[tuple[float, int]] = []  # (t_send of the last turn, agent) of finished trajectories
        self.completed = 0
        self.failed = 0
        self.output_tokens = 0
        self._last_prompt: dict[int, tuple[str, int, int]] = {}
        self._growth: deque[int] = deque(maxlen=2000)
        self.context_history_mean: deque[float] = deque(maxlen=HISTORY_POINTS)
        self.context_history_p95: deque[float] = deque(maxlen=HISTORY_POINTS)
        self.compliance_history: list[deque[float]] = [deque(maxlen=HISTORY_POINTS) for _ in self.tiers]
        self._conc_area = 0.0
        self._conc_time = 0.0
        self._last_sample_t: float | None = None
        self.failure_causes: dict[str, int] = {}
        self.completed_per_trajectory: dict[str, int] = {}  # trajectory (task) id -> completed requests
        self._dispatch: deque[tuple[float, float]] = deque()  # (t_send, dispatch delay s), last 10 s
        self._recent_conc: deque[tuple[float, float]] = deque()  # (t, in-work agents / target), last 10 s
        # the live window, kept sorted: (t_send, seq, speed, ttft, tiers met bitmask) by t_send for expiry
        self._live_by_send: list[tuple[float, int, float, float, int]] = []
        self._live_speeds: SortedList = SortedList()  # defined speeds only (NaN left out, as judge does)
        self._live_ttfts: SortedList = SortedList()
        self._live_failed = 0
        self._live_good = [0] * len(self.tiers)  # requests meeting both of each tier's targets
        self._live_horizon = -math.inf  # t_send below this has left the live window
        self._dispatch_p99: tuple[float, int, float] | None = None  # (at, records seen, p99 ms) cache

    # -- intake ----------------------------------------------------------------------------------
    def add(self, record: RequestRecord) -> None:
        speed = request_speed(record)
        ttft = request_ttft(record)
        self.t_send.append(record.t_send)
        self.t_end.append(record.t_end)
        self.end_bound.append(max(record.t_end, self.end_bound[-1]) if self.end_bound else record.t_end)
        self.speed.append(speed)
        self.ttft.append(ttft)
        self.ok.append(1 if record.ok else 0)
        self.t_first.append(math.nan if record.t_first is None else record.t_first)
        self.t_last.append(math.nan if record.t_last is None else record.t_last)
        self.output_tokens_col.append(record.output_tokens)
        self.context_col.append(record.context_tokens)
        self.max_context_tokens = max(self.max_context_tokens, record.context_tokens)
        if record.ok:
            self.completed += 1
            self.completed_per_trajectory[record.trajectory_id] = self.completed_per_trajectory.get(
                record.trajectory_id, 0) + 1
            if record.turn_index == record.turn_count - 1:
                self.trajectory_ends.append((record.t_send, record.agent_id))
        else:
            self.failed += 1
            cause = record.cause.split(":")[0][:60]
            self.failure_causes[cause] = self.failure_causes.get(cause, 0) + 1
        self.output_tokens += record.output_tokens
        self.last_send[record.agent_id] = record.t_send
        if self._mark_t is not None and record.t_end >= self._mark_t and record.output_tokens:
            self._mark_tokens += _arrived(record.output_tokens, self.t_first[-1], self.t_last[-1], record.t_end,
                                          self._mark_t, math.inf)
        self._dispatch.append((record.t_send, record.dispatch_delay_s))
        if record.t_send >= self._live_horizon:
            good = 0
            for i, tier in enumerate(self.tiers):
                if (math.isnan(speed) or speed >= tier.output_tps) and ttft <= tier.ttft_s:
                    good |= 1 << i
                    self._live_good[i] += 1
            heapq.heappush(self._live_by_send, (record.t_send, len(self.t_send), speed, ttft, good))
            if not math.isnan(speed):
                self._live_speeds.add(speed)
            self._live_ttfts.add(ttft)
            if speed == 0.0 and math.isinf(ttft):  # a failed request (judge.request_speed / request_ttft)
                self._live_failed += 1
        while self._dispatch and self._dispatch[0][0] < record.t_send - 10.0:
            self._dispatch.popleft()
        last = self._last_prompt.get(record.agent_id)
        if last and last[0] == record.trajectory_id and last[1] == record.turn_index - 1:
            self._growth.append(record.prompt_tokens - last[2])
        self._last_prompt[record.agent_id] = (record.trajectory_id, record.turn_index, record.prompt_tokens)

    # -- live window ---------------------------------------------------------------------------
    def live_verdicts(self, now: float, in_flight: Sequence[tuple[float, float | None]] = ()
                      ) -> tuple[tuple[TierVerdict, ...], tuple[float, ...]]:
        """Every tier judged over the requests sent in the last ``window_s`` (in flight included,
        ``in_flight`` = (sent, first token) of each running request), and each tier's compliance
        share (finished requests meeting both targets, undefined speeds counting as meeting speed)."""
        t_from = now - self.window_s
        self._expire_live(t_from)
        running = tuple(_censored(t_send, t_first, now) for t_send, t_first in in_flight if t_send >= t_from)
        verdicts = judge_sorted(self._live_speeds, self._live_ttfts, self._live_failed, running, self.tiers)
        n = len(self._live_ttfts)
        return verdicts, tuple(good / n if n else 0.0 for good in self._live_good)

    def _expire_live(self, t_from: float) -> None:
        """Take the requests sent before ``t_from`` out of the live window (the horizon only moves on)."""
        if t_from <= self._live_horizon:
            return
        self._live_horizon = t_from
        heap = self._live_by_send
        while heap and heap[0][0] < t_from:
            _t, _seq, speed, ttft, good = heapq.heappop(heap)
            if not math.isnan(speed):
                self._live_speeds.remove(speed)
            self._live_ttfts.remove(ttft)
            if speed == 0.0 and math.isinf(ttft):
                self._live_failed -= 1
            for i in range(len(self.tiers)):
                if good >> i & 1:
                    self._live_good[i] -= 1

    def output_tokens_per_s(self, now: float, span_s: float = 10.0) -> float:
        """Tokens of finished requests that arrived in the last ``span_s`` (each spread over its stream)."""
        return self.tokens_arrived(now - span_s, now) / span_s

    def record_history(self, shares: Sequence[float], contexts: Sequence[int]) -> None:
        """One history point per call (the session calls this once per second)."""
        for hist, share in zip(self.compliance_history, shares, strict=True):
            hist.append(share)
        if contexts:
            ordered = sorted(contexts)
            self.context_history_mean.append(sum(ordered) / len(ordered))
            self.context_history_p95.append(percentile(ordered, 95.0) or 0.0)

    @property
    def growth_per_turn(self) -> float:
        return sum(self._growth) / len(self._growth) if self._growth else 0.0

    # -- concurrency -------------------------------------------------------------------------------
    def dispatch_p99_ms(self) -> float:
        """p99 of how late requests left vs when their agent was ready, over the last 10 s (sorted
        again only when records came in since, at most once per ``DISPATCH_EVERY_S``)."""
        if not self._dispatch:
            return 0.0
        cached = self._dispatch_p99
        seen = len(self.t_send)
        if cached is not None and (cached[1] == seen or self.t_send[-1] - cached[0] < DISPATCH_EVERY_S):
            return cached[2]
        ordered = sorted(d for _, d in self._dispatch)
        p99 = 1000.0 * (percentile(ordered, 99.0) or 0.0)
        self._dispatch_p99 = (self.t_send[-1], seen, p99)
        return p99

    @property
    def recent_held_share(self) -> float:
        """Mean of agents in work / the target at each sample, over the last 10 s of steady samples
        (a share, so samples taken before a target change cannot dilute it)."""
        if not self._recent_conc:
            return 1.0
        return sum(n for _, n in self._recent_conc) / len(self._recent_conc)

    def sample_concurrency(self, now: float, in_work: int, steady: bool, target: int = 0) -> None:
        """Log agents in work (every sample, for windows) and integrate them over steady time
        (time-average = effective concurrency).

        The recent (10 s) average used for the validity check only holds steady samples: a ramp
        after a target change is not a client that failed to hold its target.
        """
        self.conc_t.append(now)
        self.conc_n.append(in_work)
        if steady:
            self._recent_conc.append((now, in_work / target if target > 0 else 1.0))
        else:
            self._recent_conc.clear()
        while self._recent_conc and self._recent_conc[0][0] < now - 10.0:
            self._recent_conc.popleft()
        if self._last_sample_t is not None and steady:
            dt = now - self._last_sample_t
            self._conc_area += in_work * dt
            self._conc_time += dt
        self._last_sample_t = now

    @property
    def effective_concurrency(self) -> float:
        return self._conc_area / self._conc_time if self._conc_time > 0 else 0.0

    # -- whole run / phase ----------------------------------------------------------------------
    def first_ended_from(self, t: float) -> int:
        """The index from which on every record that ended at or after ``t`` lies (those before it
        all ended earlier): a window's scan starts here, not at the run's first record."""
        return bisect.bisect_left(self.end_bound, t)

    def sent_between(self, t_from: float, t_to: float) -> list[int]:
        """Indices of finished requests sent in [t_from, t_to) (a request ends after it is sent, so
        only records from ``first_ended_from(t_from)`` on can qualify)."""
        t_send = self.t_send
        return [i for i in range(self.first_ended_from(t_from), len(t_send)) if t_from <= t_send[i] < t_to]

    def request_set(self, t_from: float, t_to: float, in_flight: Sequence[tuple[float, float | None]] = (),
                    now: float | None = None) -> RequestSet:
        """The requests sent in [t_from, t_to): finished ones from the log, running ones (``in_flight``,
        (sent, first token)) censored at ``now`` (default t_to)."""
        idx = self.sent_between(t_from, t_to)
        at = t_to if now is None else now
        running = tuple(_censored(s, f, at) for s, f in in_flight if t_from <= s < t_to)
        return RequestSet(tuple(self.speed[i] for i in idx), tuple(self.ttft[i] for i in idx), running,
                          sum(1 for i in idx if not self.ok[i]))

    def tokens_arrived(self, t_from: float, t_to: float) -> float:
        """Output tokens of finished requests that arrived in [t_from, t_to), each request's tokens
        spread evenly between its first and last token (what the server generated in the window,
        less the part of requests still running at its end). Scans from the first record that can
        have ended in it (``first_ended_from``: exact whatever the arrival order)."""
        total = 0.0
        t_ends = self.t_end
        for i in range(self.first_ended_from(t_from), len(t_ends)):
            t_end = t_ends[i]
            if t_end < t_from:
                continue
            tokens = self.output_tokens_col[i]
            if tokens:
                total += _arrived(tokens, self.t_first[i], self.t_last[i], t_end, t_from, t_to)
        return total

    def mark_tokens_from(self, t0: float) -> None:
        """Count tokens arriving after ``t0`` incrementally from now on (for live tokens/J, which must
        not rescan the log every frame); the records already in that ended after t0 are counted once."""
        self._mark_t, self._mark_tokens = t0, self.tokens_arrived(t0, math.inf)

    def tokens_since_mark(self) -> tuple[float | None, float]:
        """(mark time, tokens arrived since it) as kept by ``mark_tokens_from``."""
        return self._mark_t, self._mark_tokens

    def contexts_sent_between(self, t_from: float, t_to: float) -> list[int]:
        """Context tokens (prompt + output) of every finished request sent in [t_from, t_to)."""
        return [self.context_col[i] for i in self.sent_between(t_from, t_to)]

    def concurrency_between(self, t_from: float, t_to: float) -> float | None:
        """Time-average of agents in work over [t_from, t_to) from the frame samples; None without samples."""
        area = span = 0.0
        prev_t = prev_n = None
        for t, n in zip(self.conc_t, self.conc_n, strict=True):
            if prev_t is not None:
                a, b = max(prev_t, t_from), min(t, t_to)
                if b > a:
                    area += prev_n * (b - a)
                    span += b - a
            prev_t, prev_n = t, n
        return area / span if span > 0 else None

    def trajectories_between(self, t_from: float, t_to: float) -> dict[int, int]:
        """Agent -> trajectories completed whose last turn was sent in [t_from, t_to)."""
        done: dict[int, int] = {}
        for t, agent in self.trajectory_ends:
            if t_from <= t < t_to:
                done[agent] = done.get(agent, 0) + 1
        return done


def _censored(t_send: float, t_first: float | None, now: float) -> tuple[float | None, float]:
    """A running request as the judge takes it: (TTFT if its first token came, seconds waited)."""
    return (None if t_first is None else t_first - t_send), max(0.0, now - t_send)


def _arrived(tokens: float, t_first: float, t_last: float, t_end: float, t_from: float, t_to: float) -> float:
    """The share of a request's tokens that arrived in [t_from, t_to)."""
    if math.isnan(t_first) or math.isnan(t_last) or t_last <= t_first:
        at = t_end if math.isnan(t_last) else t_last
        return tokens if t_from <= at < t_to else 0.0
    a, b = max(t_first, t_from), min(t_last, t_to)
    return tokens * (b - a) / (t_last - t_first) if b > a else 0.0


def context_stats(contexts: Sequence[int]) -> tuple[float, float, float, float]:
    """(mean, p50, p95, max) of context tokens over agents; zeros when empty."""
    if not contexts:
        return 0.0, 0.0, 0.0, 0.0
    ordered = sorted(contexts)
    return (sum(ordered) / len(ordered), percentile(ordered, 50.0) or 0.0, percentile(ordered, 95.0) or 0.0,
            float(ordered[-1]))
