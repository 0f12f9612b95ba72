"""Rolling and whole-run metrics over request records: SLO tiers, throughput, context, concurrency.

Records are kept column-wise in compact arrays (a run of hours at thousands of agents stays in
tens of MB); the live window is judged over requests that *finished* in the last ``window_s``
seconds, the run summary over requests *sent* after the steady state began (every agent of the
target started), as AA counts a phase.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Sequence

from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.engine.slo import Tier, TierResult, judge_sorted, percentile, request_speed, request_ttft

HISTORY_POINTS = 240


class RunMetrics:
    """Accumulates request records and samples of the agent population."""

    def __init__(self, tiers: Sequence[Tier], window_s: float = 60.0):
        self.tiers = tuple(tiers)
        self.window_s = window_s
        self.t_send = array("d")
        self.t_end = array("d")
        self.speed = array("d")
        self.ttft = array("d")
        self.ok = array("b")
        self.output_tokens_col = array("q")
        self.completed = 0
        self.failed = 0
        self.output_tokens = 0
        self._window: deque[tuple[float, float, float, int]] = deque()  # (t_end, speed, ttft, tokens)
        self._last_prompt: dict[int, tuple[str, int, int]] = {}
        self._growth: deque[int] = deque(maxlen=2000)
        self.context_history_mean: deque[float] = deque(maxlen=HISTORY_POINTS)
        self.context_history_p95: deque[float] = deque(maxlen=HISTORY_POINTS)
        self.compliance_history: list[deque[float]] = [deque(maxlen=HISTORY_POINTS) for _ in self.tiers]
        self._conc_area = 0.0
        self._conc_time = 0.0
        self._last_sample_t: float | None = None
        self.failure_causes: dict[str, int] = {}
        self._dispatch: deque[tuple[float, float]] = deque()  # (t_send, dispatch delay s), last 10 s
        self._recent_conc: deque[tuple[float, float]] = deque()  # (t, in-work agents), last 10 s

    # -- intake ----------------------------------------------------------------------------------
    def add(self, record: RequestRecord) -> None:
        speed = request_speed(record)
        ttft = request_ttft(record)
        self.t_send.append(record.t_send)
        self.t_end.append(record.t_end)
        self.speed.append(speed)
        self.ttft.append(ttft)
        self.ok.append(1 if record.ok else 0)
        self.output_tokens_col.append(record.output_tokens)
        if record.ok:
            self.completed += 1
        else:
            self.failed += 1
            cause = record.cause.split(":")[0][:60]
            self.failure_causes[cause] = self.failure_causes.get(cause, 0) + 1
        self.output_tokens += record.output_tokens
        self._window.append((record.t_end, speed, ttft, record.output_tokens))
        self._dispatch.append((record.t_send, record.dispatch_delay_s))
        while self._dispatch and self._dispatch[0][0] < record.t_send - 10.0:
            self._dispatch.popleft()
        last = self._last_prompt.get(record.agent_id)
        if last and last[0] == record.trajectory_id and last[1] == record.turn_index - 1:
            self._growth.append(record.prompt_tokens - last[2])
        self._last_prompt[record.agent_id] = (record.trajectory_id, record.turn_index, record.prompt_tokens)

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        window = self._window
        while window and window[0][0] < horizon:
            window.popleft()

    # -- live window ---------------------------------------------------------------------------
    def window_results(self, now: float) -> tuple[tuple[TierResult, ...], tuple[float, ...]]:
        """Tier results over the live window and each tier's compliance share."""
        self._trim(now)
        speeds = sorted(w[1] for w in self._window if not math.isnan(w[1]))
        ttfts = sorted(w[2] for w in self._window)
        results = judge_sorted(speeds, ttfts, self.tiers)
        shares = []
        n = len(self._window)
        for tier in self.tiers:
            good = sum(1 for _, s, t, _ in self._window
                       if (math.isnan(s) or s >= tier.output_tps) and t <= tier.ttft_s)
            shares.append(good / n if n else 0.0)
        return results, tuple(shares)

    def output_tokens_per_s(self, now: float, span_s: float = 10.0) -> float:
        self._trim(now)
        horizon = now - span_s
        tokens = sum(w[3] for w in self._window if w[0] >= horizon)
        return tokens / span_s

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
        """p99 of how late requests left vs when their agent was ready, over the last 10 s."""
        if not self._dispatch:
            return 0.0
        ordered = sorted(d for _, d in self._dispatch)
        return 1000.0 * (percentile(ordered, 99.0) or 0.0)

    @property
    def recent_concurrency(self) -> float:
        """Mean agents in work over the last 10 s of samples."""
        if not self._recent_conc:
            return 0.0
        return sum(n for _, n in self._recent_conc) / len(self._recent_conc)

    def sample_concurrency(self, now: float, in_work: int, steady: bool) -> None:
        """Integrate agents-in-work over steady time (time-average = effective concurrency).

        The recent (10 s) average used for the validity check only holds steady samples: a ramp
        after a target change is not a client that failed to hold its target.
        """
        if steady:
            self._recent_conc.append((now, in_work))
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
    def tokens_finished_between(self, t_from: float, t_to: float) -> int:
        """Output tokens of requests that finished in [t_from, t_to) (for tokens per joule)."""
        return sum(self.output_tokens_col[i] for i, t in enumerate(self.t_end) if t_from <= t < t_to)

    def judge_since(self, t_from: float, t_to: float = math.inf, unfinished_ttfts: Sequence[float] = ()
                    ) -> tuple[tuple[TierResult, ...], int, int, int]:
        """Tier results over requests sent in [t_from, t_to): (results, completed, failed, tokens).

        ``unfinished_ttfts``: requests sent in the window and still running at its end, by their
        TTFT (or their wait so far, a lower bound, while no token came): they count for TTFT, so an
        overloaded server's slowest requests are not left out just because they did not finish.
        """
        idx = [i for i, t in enumerate(self.t_send) if t_from <= t < t_to]
        speeds = sorted(self.speed[i] for i in idx if not math.isnan(self.speed[i]))
        ttfts = sorted([self.ttft[i] for i in idx] + list(unfinished_ttfts))
        completed = sum(1 for i in idx if self.ok[i])
        tokens = sum(self.output_tokens_col[i] for i in idx)
        return judge_sorted(speeds, ttfts, self.tiers), completed, len(idx) - completed, tokens


def context_stats(contexts: Sequence[int]) -> tuple[float, float, float, float]:
    """(mean, p50, p95, max) of context tokens over agents; zeros when empty."""
    if not contexts:
        return 0.0, 0.0, 0.0, 0.0
    ordered = sorted(contexts)
    return (sum(ordered) / len(ordered), percentile(ordered, 50.0) or 0.0, percentile(ordered, 95.0) or 0.0,
            float(ordered[-1]))
