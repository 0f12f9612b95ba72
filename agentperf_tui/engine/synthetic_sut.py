"""A ground-truth system under test: request TTFT and speed are known functions of the agent count.

For checking the search itself (tests, bench/search.py): agents on a virtual clock send
requests back to back (TTFT, then decode, then a tool delay); per request, output speed is
lognormal around ``speed_at(n) = speed_1 * capacity / (capacity + n - 1)`` and TTFT lognormal
around ``ttft_at(n) = ttft_1 * (1 + (n / ttft_knee) ** 4)``, a share ``tail_share`` of requests
``tail_factor`` times slower to their first token. Because the distributions are known, so is
each tier's share of hits at every count, hence the true largest count that holds each tier
over an infinitely long window (``true_max``). Nothing here touches the network.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from dataclasses import dataclass, field
from statistics import NormalDist

from agentperf_tui.engine.judge import SPEED_SHARE, TTFT_SHARE, RequestSet
from agentperf_tui.engine.slo import Tier

_N = NormalDist()


@dataclass
class GroundTruth:
    """The server's behaviour as a function of concurrency (see the module docstring)."""

    speed_1: float = 250.0  # median tok/s of a lone agent
    capacity: float = 100.0  # agents at which the median speed has halved
    speed_sigma: float = 0.15
    ttft_1: float = 0.8  # median TTFT of a lone agent (s)
    ttft_knee: float = 400.0  # agents at which the median TTFT has doubled
    ttft_sigma: float = 0.35
    tail_share: float = 0.02
    tail_factor: float = 4.0
    tokens_mean: float = 150.0
    tool_s: float = 1.0
    turns: int = 8  # requests per trajectory
    power_idle_w: float = 800.0
    power_per_agent_w: float = 6.0

    def speed_at(self, n: int) -> float:
        return self.speed_1 * self.capacity / (self.capacity + max(0, n - 1))

    def ttft_at(self, n: int) -> float:
        return self.ttft_1 * (1.0 + (n / self.ttft_knee) ** 4)

    def speed_share(self, n: int, target: float) -> float:
        """Long-run share of requests at ``n`` agents reaching ``target`` tok/s."""
        return 1.0 - _N.cdf((math.log(target) - math.log(self.speed_at(n))) / self.speed_sigma)

    def ttft_share(self, n: int, limit: float) -> float:
        mu = math.log(self.ttft_at(n))
        body = _N.cdf((math.log(limit) - mu) / self.ttft_sigma)
        tail = _N.cdf((math.log(limit) - mu - math.log(self.tail_factor)) / self.ttft_sigma)
        return (1 - self.tail_share) * body + self.tail_share * tail

    def holds(self, n: int, tier: Tier) -> bool:
        """The long-window verdict at ``n`` agents (AA's rule on the true distributions)."""
        return self.speed_share(n, tier.output_tps) >= SPEED_SHARE and self.ttft_share(n, tier.ttft_s) >= TTFT_SHARE

    def holds_clearly(self, n: int, tier: Tier, margin: float) -> bool:
        """Holds with ``margin`` to spare on both shares (what a finite sample can confirm)."""
        return (self.speed_share(n, tier.output_tps) >= SPEED_SHARE + margin
                and self.ttft_share(n, tier.ttft_s) >= min(1.0, TTFT_SHARE + margin / 2))

    def true_max(self, tier: Tier, limit: int = 1_000_000, margin: float = 0.0) -> int:
        """The largest count that holds ``tier`` (``margin`` > 0: holds clearly); both shares fall
        with n, so bisection is exact."""
        def ok(n: int) -> bool:
            return self.holds_clearly(n, tier, margin) if margin else self.holds(n, tier)

        if not ok(1):
            return 0
        lo, hi = 1, 2
        while hi < limit and ok(hi):
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        return lo


@dataclass
class _Request:
    t_send: float
    t_first: float
    t_last: float
    tokens: int
    agent: int
    last_turn: bool

    @property
    def speed(self) -> float:
        span = self.t_last - self.t_first
        return (self.tokens - 1) / span if span > 0 and self.tokens >= 2 else math.nan


@dataclass
class SyntheticSUT:
    """A SystemUnderTest (engine/search_driver.py) over ``GroundTruth`` on a virtual clock."""

    truth: GroundTruth
    tiers: tuple[Tier, ...]
    seed: int = 1
    ramp_s: float = 1.0
    clock: float = 0.0
    events: list[str] = field(default_factory=list)
    phases: list[dict] = field(default_factory=list)
    stop: str = ""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.target = 0
        self._heap: list[tuple[float, int]] = []  # (next send, agent)
        self._turn: dict[int, int] = {}
        self._sends: list[float] = []  # t_send of every request, ascending
        self._requests: list[_Request] = []
        self._started_at: dict[int, float] = {}
        self._energy = 0.0

    # -- SystemUnderTest -------------------------------------------------------------------------
    def now(self) -> float:
        return self.clock

    async def sleep(self, seconds: float) -> None:
        self._advance(self.clock + max(seconds, 1e-3))

    def stop_reason(self) -> str:
        return self.stop

    def set_agents(self, agents: int) -> None:
        self.target = agents
        live = set(self._started_at)
        for a in list(live):
            if a >= agents:
                del self._started_at[a]
        self._heap = [(t, a) for t, a in self._heap if a < agents]
        heapq.heapify(self._heap)
        new = [a for a in range(agents) if a not in live]
        for i, a in enumerate(new):
            start = self.clock + self.ramp_s * i / max(1, len(new))
            self._started_at[a] = start
            heapq.heappush(self._heap, (start, a))

    def all_started(self) -> bool:
        return all(t <= self.clock for t in self._started_at.values())

    def in_flight(self) -> list[tuple[float, float | None]]:
        now = self.clock
        out = []
        i = bisect.bisect_left(self._sends, now - 3600.0)
        for r in self._requests[i:]:
            if r.t_last > now and r.t_send <= now:
                out.append((r.t_send, r.t_first if r.t_first <= now else None))
        return out

    def request_set(self, t_from: float, t_to: float, now: float) -> RequestSet:
        i, j = bisect.bisect_left(self._sends, t_from), bisect.bisect_left(self._sends, t_to)
        speeds, ttfts, running = [], [], []
        for r in self._requests[i:j]:
            if r.t_last <= now:
                speeds.append(r.speed)
                ttfts.append(r.t_first - r.t_send)
            else:
                running.append((r.t_first - r.t_send if r.t_first <= now else None, now - r.t_send))
        return RequestSet(tuple(speeds), tuple(ttfts), tuple(running), 0)

    def problems(self) -> list[str]:
        return []

    def trajectories_done(self, t_from: float, t_to: float) -> dict[int, int]:
        i, j = bisect.bisect_left(self._sends, t_from), bisect.bisect_left(self._sends, t_to)
        done: dict[int, int] = {}
        for r in self._requests[i:j]:
            if r.last_turn and r.t_last <= self.clock:
                done[r.agent] = done.get(r.agent, 0) + 1
        return done

    def power_mark(self) -> object:
        return (self.clock, self._energy)

    def power_between(self, first: object, last: object) -> dict:
        from agentperf_tui.telemetry.energy import EnergyAccount, EnergySnapshot

        (t0, e0), (t1, e1) = first, last  # type: ignore[misc]
        window = EnergyAccount().window(EnergySnapshot(t0, {"rack": e0}), EnergySnapshot(t1, {"rack": e1}))
        return {**window.to_dict(), "source": "synthetic"}

    def tokens_arrived(self, t_from: float, t_to: float) -> float:
        i = bisect.bisect_left(self._sends, t_from - 3600.0)
        total = 0.0
        for r in self._requests[i:]:
            if r.t_send >= t_to:
                break
            a, b = max(r.t_first, t_from), min(r.t_last, t_to)
            if r.t_last > r.t_first and b > a:
                total += r.tokens * (b - a) / (r.t_last - r.t_first)
        return total

    def reconcile(self, t_from: float, t_to: float) -> dict | None:
        return None  # no server here: nothing to reconcile against

    def on_phase(self, phase: dict) -> None:
        self.phases.append(phase)

    def event(self, message: str) -> None:
        self.events.append(message)

    # -- the simulation ------------------------------------------------------------------------------
    def _advance(self, until: float) -> None:
        t = self.truth
        n = max(1, self.target)
        speed_mu, ttft_mu = math.log(t.speed_at(n)), math.log(t.ttft_at(n))
        rng = self.rng
        while self._heap and self._heap[0][0] < until:
            t_send, agent = heapq.heappop(self._heap)
            ttft = math.exp(rng.gauss(ttft_mu, t.ttft_sigma))
            if rng.random() < t.tail_share:
                ttft *= t.tail_factor
            speed = math.exp(rng.gauss(speed_mu, t.speed_sigma))
            tokens = 2 + int(rng.expovariate(1.0 / t.tokens_mean))
            t_first = t_send + ttft
            t_last = t_first + (tokens - 1) / speed
            turn = self._turn.get(agent, 0)
            self._turn[agent] = turn + 1
            self._sends.append(t_send)
            self._requests.append(_Request(t_send, t_first, t_last, tokens, agent, turn % t.turns == t.turns - 1))
            heapq.heappush(self._heap, (t_last + t.tool_s * rng.uniform(0.2, 1.8), agent))
        self._energy += (t.power_idle_w + t.power_per_agent_w * self.target) * (until - self.clock)
        self.clock = until
