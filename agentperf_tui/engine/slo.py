"""SLO tiers and AA-AgentPerf's pass rule over a set of requests.

A tier passes when P25 of output speed >= the tier's tok/s AND P95 of TTFT <= the tier's
seconds, over all requests of the window; a failed request counts as failing both (speed 0,
TTFT infinite). Percentiles use linear interpolation between closest ranks (numpy's default).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agentperf_tui.engine.records import RequestRecord


@dataclass(frozen=True, slots=True)
class Tier:
    """One service level: minimum output speed (tok/s) and maximum TTFT (s)."""

    name: str
    output_tps: float
    ttft_s: float


# DeepSeek V4 Pro (Max) tiers published by AA (REFERENCE §1)
AA_DSV4_PRO_TIERS = (
    Tier("tier1", 20.0, 10.0),
    Tier("tier2", 60.0, 5.0),
    Tier("tier3", 180.0, 3.0),
)


@dataclass(frozen=True, slots=True)
class TierResult:
    """A tier judged over a window: the two percentiles, pass/fail and margins."""

    tier: Tier
    requests: int
    output_tps_p25: float | None
    ttft_p95_s: float | None
    passed: bool
    speed_ok_share: float  # share of requests meeting the speed target on their own
    ttft_ok_share: float

    @property
    def speed_margin(self) -> float | None:
        """Relative margin of P25 speed over the target (+0.2 = 20% faster than needed)."""
        if self.output_tps_p25 is None:
            return None
        return self.output_tps_p25 / self.tier.output_tps - 1.0

    @property
    def ttft_margin(self) -> float | None:
        """Relative headroom of P95 TTFT under the target (+0.5 = half the allowed TTFT used)."""
        if self.ttft_p95_s is None or math.isinf(self.ttft_p95_s):
            return None if self.ttft_p95_s is None else -math.inf
        return 1.0 - self.ttft_p95_s / self.tier.ttft_s

    def to_dict(self) -> dict:
        return {
            "name": self.tier.name, "output_tps": self.tier.output_tps, "ttft_s": self.tier.ttft_s,
            "requests": self.requests,
            "output_tps_p25": None if self.output_tps_p25 is None else round(self.output_tps_p25, 3),
            "ttft_p95_s": None if self.ttft_p95_s is None or math.isinf(self.ttft_p95_s)
            else round(self.ttft_p95_s, 4),
            "pass": self.passed,
            "speed_ok_share": round(self.speed_ok_share, 4), "ttft_ok_share": round(self.ttft_ok_share, 4),
        }


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """q in [0, 100]; linear interpolation between closest ranks; None for no data."""
    n = len(sorted_values)
    if n == 0:
        return None
    if n == 1:
        return float(sorted_values[0])
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    a, b = sorted_values[lo], sorted_values[hi]
    if frac == 0:
        return float(a)
    if math.isinf(a) or math.isinf(b):
        return math.inf
    return float(a + (b - a) * frac)


def request_speed(record: RequestRecord) -> float:
    """Speed a request counts with: 0 for a failed one; NaN (left out of the speed percentile,
    still counted for TTFT) for a successful one whose speed is undefined: fewer than 2 output
    tokens, or all of them in one chunk."""
    if not record.ok:
        return 0.0
    tps = record.output_tps
    return math.nan if tps is None else tps


def request_ttft(record: RequestRecord) -> float:
    if not record.ok or record.ttft_s is None:
        return math.inf
    return record.ttft_s


def judge(records: Iterable[RequestRecord], tiers: Sequence[Tier]) -> tuple[TierResult, ...]:
    """Every tier judged over the same requests."""
    rows = list(records)
    speeds = sorted(s for s in (request_speed(r) for r in rows) if not math.isnan(s))
    ttfts = sorted(request_ttft(r) for r in rows)
    return judge_sorted(speeds, ttfts, tiers)


def judge_sorted(speeds: Sequence[float], ttfts: Sequence[float], tiers: Sequence[Tier]) -> tuple[TierResult, ...]:
    """``judge`` on pre-sorted per-request speeds (undefined ones left out) and TTFTs (failed: 0, inf)."""
    n_speed = len(speeds)
    n = len(ttfts)
    p25 = percentile(speeds, 25.0)
    p95 = percentile(ttfts, 95.0)
    results = []
    for tier in tiers:
        speed_ok = n_speed - _count_below(speeds, tier.output_tps)
        ttft_ok = _count_at_most(ttfts, tier.ttft_s)
        passed = n > 0 and p25 is not None and p95 is not None and p25 >= tier.output_tps and p95 <= tier.ttft_s
        results.append(TierResult(tier, n, p25, p95, passed, speed_ok / n_speed if n_speed else 0.0,
                                  ttft_ok / n if n else 0.0))
    return tuple(results)


def _count_below(sorted_values: Sequence[float], bound: float) -> int:
    import bisect

    return bisect.bisect_left(sorted_values, bound)


def _count_at_most(sorted_values: Sequence[float], bound: float) -> int:
    import bisect

    return bisect.bisect_right(sorted_values, bound)
