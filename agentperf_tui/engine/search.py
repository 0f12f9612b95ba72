"""Auto-search for the largest agent count that holds each SLO tier (AA-AgentPerf's method).

Pure decision logic, no I/O: ``SearchState`` keeps a bracket per tier (highest count known to
pass, lowest known to fail), proposes the next count (exponential ramp until every tier has
failed somewhere, then bisection of the widest open bracket) and says when every bracket is
narrower than the resolution. ``PhaseJudge`` decides a phase early (quick mode) once each tier's
verdict is settled at 95% confidence with Wilson bounds on the shares of requests meeting the
speed and TTFT targets (P25 speed >= x  <=>  at least 75% of requests reach x; P95 TTFT <= y
<=>  at least 95% of requests finish their first token within y).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from agentperf_tui.engine.slo import Tier

Z95 = 1.959964  # two-sided 95%


def wilson_bounds(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial share; (0, 1) with no data."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A tier's verdict on one phase: passed, and whether it is settled at 95% confidence."""

    passed: bool
    decided: bool
    speed_share: float
    ttft_share: float
    requests: int


class PhaseJudge:
    """Counts, per tier, requests meeting the speed and the TTFT target."""

    def __init__(self, tiers: Sequence[Tier]):
        self.tiers = tuple(tiers)
        self.n = 0
        self.n_speed = 0  # requests with a defined speed (see slo.request_speed)
        self.speed_ok = [0] * len(self.tiers)
        self.ttft_ok = [0] * len(self.tiers)

    def add(self, speed_tps: float, ttft_s: float) -> None:
        """One request (failed: speed 0, TTFT inf; undefined speed: NaN, counted for TTFT only)."""
        self.n += 1
        has_speed = not math.isnan(speed_tps)
        self.n_speed += has_speed
        for i, tier in enumerate(self.tiers):
            if has_speed and speed_tps >= tier.output_tps:
                self.speed_ok[i] += 1
            if ttft_s <= tier.ttft_s:
                self.ttft_ok[i] += 1

    def verdicts(self, min_requests: int = 20) -> tuple[Verdict, ...]:
        out = []
        for i in range(len(self.tiers)):
            s_lo, s_hi = wilson_bounds(self.speed_ok[i], self.n_speed)
            t_lo, t_hi = wilson_bounds(self.ttft_ok[i], self.n)
            speed_share = self.speed_ok[i] / self.n_speed if self.n_speed else 0.0
            ttft_share = self.ttft_ok[i] / self.n if self.n else 0.0
            passed = self.n > 0 and speed_share >= 0.75 and ttft_share >= 0.95
            surely_fail = s_hi < 0.75 or t_hi < 0.95
            surely_pass = s_lo >= 0.75 and t_lo >= 0.95
            decided = self.n >= min_requests and (surely_fail or surely_pass)
            out.append(Verdict(passed, decided, speed_share, ttft_share, self.n))
        return tuple(out)


@dataclass
class TierBracket:
    """What is known about one tier: highest passing count, lowest failing count."""

    tier: Tier
    passing: int = 0  # 0 = nothing has passed yet
    failing: int | None = None

    def resolved(self, resolution: float) -> bool:
        if self.failing is None:
            return False
        return self.failing - self.passing <= max(1, int(resolution * self.passing))

    @property
    def width(self) -> float:
        return math.inf if self.failing is None else self.failing - self.passing


@dataclass
class SearchState:
    """Brackets for every tier and the choice of the next agent count."""

    tiers: Sequence[Tier]
    start: int = 1
    max_agents: int = 100_000
    resolution: float = 0.02  # stop when hi - lo <= max(1, 2% of lo)
    brackets: list[TierBracket] = field(default_factory=list)
    history: list[tuple[int, tuple[bool, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.brackets:
            self.brackets = [TierBracket(t) for t in self.tiers]

    def record(self, agents: int, passed: Sequence[bool], decided: Sequence[bool] | None = None) -> list[str]:
        """Apply one valid phase's verdicts (monotone: pass at n => pass below n).

        A verdict that contradicts the bracket (a pass at or above a known failure, a failure at or
        below a known pass) is applied only when it was decided at 95% confidence; an undecided
        contradiction is noise and is ignored. Returns a note per ignored verdict.
        """
        self.history.append((agents, tuple(passed)))
        notes = []
        decided = decided if decided is not None else [True] * len(passed)
        for bracket, ok, sure in zip(self.brackets, passed, decided, strict=True):
            contradicts = (ok and bracket.failing is not None and agents >= bracket.failing) or (
                not ok and bracket.passing and agents <= bracket.passing)
            if contradicts and not sure:
                notes.append(f"{bracket.tier.name}: undecided {'pass' if ok else 'fail'} at {agents} agents "
                             f"contradicts bracket {bracket.passing}..{bracket.failing}; ignored as noise")
                continue
            if ok:
                bracket.passing = max(bracket.passing, agents)
                if bracket.failing is not None and bracket.failing <= bracket.passing:
                    bracket.failing = None  # noise contradicted the bracket: reopen above
            else:
                bracket.failing = agents if bracket.failing is None else min(bracket.failing, agents)
                if bracket.passing >= bracket.failing:
                    bracket.passing = 0 if agents <= 1 else min(bracket.passing, agents - 1)
        return notes

    @property
    def done(self) -> bool:
        return all(b.resolved(self.resolution) or (b.failing is None and b.passing >= self.max_agents)
                   or b.failing == 1 for b in self.brackets)

    def next_agents(self) -> int | None:
        """The next count to run, or None when every tier is resolved."""
        if self.done:
            return None
        if not self.history:
            return max(1, self.start)
        open_ramp = [b for b in self.brackets if b.failing is None and b.passing < self.max_agents]
        if open_ramp:
            base = max(b.passing for b in open_ramp) or max(a for a, _ in self.history)
            return min(self.max_agents, max(base * 2, base + 1))
        candidates = [b for b in self.brackets if not b.resolved(self.resolution) and b.failing != 1]
        widest = max(candidates, key=lambda b: b.width)
        assert widest.failing is not None
        return max(1, (widest.passing + widest.failing) // 2) if widest.passing else max(1, widest.failing // 2)

    def result(self) -> list[dict]:
        return [{"name": b.tier.name, "max_agents": b.passing, "bracket": [b.passing, b.failing]}
                for b in self.brackets]
