"""SLO tiers: the service levels a run is judged against (the rule itself is engine/judge.py).

``percentile`` (linear interpolation, numpy's default) is for descriptive statistics such as
context length; verdicts use the judge's nearest-rank percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


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
