"""The one judge: does a set of requests meet an SLO tier? pass, fail or undecided, with its sample.

Every verdict the tool shows (live window, search phase, run summary, report) comes from
``judge``. The rule is AA-AgentPerf's: over all requests of the window, P25 of output speed >=
the tier's tok/s AND P95 of TTFT <= the tier's seconds; a failed request fails both.

Percentiles are defined by the shares they stand for, so the percentile rule and the share rule
are one statement: P95 TTFT is the nearest-rank P95 (the smallest TTFT that at least 95 % of
requests are at or below), so P95 TTFT <= L <=> at least 95 % of requests have TTFT <= L; P25
speed is the largest speed that at least 75 % of requests reach, so P25 speed >= x <=> at least
75 % reach x. (With linear interpolation the percentile and the share disagree at exactly 5 %
misses; the textbook nearest-rank P25, the 25th-percentile value from below, would fail a tier
that exactly 75 % reach, where numpy's interpolation and this definition pass it.)

Requests still in flight at the window's end are right-censored, never dropped: one waiting for
its first token has TTFT >= its wait so far (known to miss a limit it has already waited past,
unknown below it); one decoding has a known TTFT and an unknown speed. A tier PASSES only if it
holds whatever the unknown requests turn out to be (each counted as a miss), FAILS only if it
fails whatever they turn out to be (each counted as a hit), and is UNDECIDED otherwise.

Sample size: a PASS needs >= ``MIN_FINISHED`` finished requests and a FAIL >= ``MIN_FINISHED``
requests in the set (finished or in flight). 20 is the smallest sample whose nearest-rank P95 is
not its maximum (rank ceil(0.95 * 20) = 19 of 20): below it one slow request decides the tier,
and the 5 % allowance AA's rule grants cannot exist.

Confidence (quick mode): with ``z`` set, a PASS additionally needs the one-sided Wilson lower
bound of both hit shares to clear the rule's share (95 % TTFT, 75 % speed), and a FAIL the upper
bound of one share to fall below it; so a short phase cannot pass a count whose long-run share
is below the line except with probability alpha. ``z_for_looks`` gives the z of a fixed look
schedule (Bonferroni: alpha / looks per look), which keeps repeated looks valid.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.engine.slo import Tier

PASS = "pass"
FAIL = "fail"
UNDECIDED = "undecided"
MIN_FINISHED = 20
TTFT_SHARE = 0.95  # P95 TTFT <= limit
SPEED_SHARE = 0.75  # P25 speed >= target


def z_for_looks(alpha: float, looks: int) -> float:
    """One-sided z for a fixed schedule of ``looks`` looks at overall error ``alpha`` (Bonferroni)."""
    return NormalDist().inv_cdf(1.0 - alpha / max(1, looks))


def wilson_lower(hits: int, n: int, z: float) -> float:
    if n <= 0:
        return 0.0
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half)


def wilson_upper(hits: int, n: int, z: float) -> float:
    return 1.0 - wilson_lower(n - hits, n, z)


def request_speed(record: RequestRecord) -> float:
    """Speed a finished request counts with: 0 for a failed one; NaN (left out of the speed rule,
    still counted for TTFT) for a successful one whose speed is undefined: fewer than 2 output
    tokens, or all of them in one chunk."""
    if not record.ok:
        return 0.0
    tps = record.output_tps
    return math.nan if tps is None else tps


def request_ttft(record: RequestRecord) -> float:
    """TTFT a finished request counts with: infinite for a failed one."""
    if not record.ok or record.ttft_s is None:
        return math.inf
    return record.ttft_s


@dataclass(frozen=True, slots=True)
class RequestSet:
    """The requests of one window, as the judge needs them.

    ``speeds``/``ttfts``: finished requests (failed: speed 0, TTFT inf; undefined speed: NaN).
    ``in_flight``: requests still running at the window's end, as (TTFT if the first token came,
    else None; seconds waited so far).
    """

    speeds: tuple[float, ...] = ()
    ttfts: tuple[float, ...] = ()
    in_flight: tuple[tuple[float | None, float], ...] = ()
    failed: int = 0

    @classmethod
    def of(cls, records: Iterable[RequestRecord], in_flight: Iterable[tuple[float | None, float]] = ()) -> RequestSet:
        rows = list(records)
        return cls(tuple(request_speed(r) for r in rows), tuple(request_ttft(r) for r in rows), tuple(in_flight),
                   sum(1 for r in rows if not r.ok))

    @property
    def finished(self) -> int:
        return len(self.ttfts)

    @property
    def size(self) -> int:
        return len(self.ttfts) + len(self.in_flight)


@dataclass(frozen=True, slots=True)
class TierVerdict:
    """One tier judged over one request set: the verdict, why, and the sample it rests on."""

    tier: Tier
    verdict: str  # pass | fail | undecided
    reason: str
    finished: int
    failed: int
    in_flight: int
    waiting: int  # in flight with no first token yet (TTFT censored)
    output_tps_p25: float | None  # the speed >= 75 % reach, in-flight requests left out
    output_tps_p25_bounds: tuple[float | None, float | None]  # in-flight as 0 / as infinitely fast
    ttft_p95_s: float | None  # nearest-rank, waiting requests at their wait so far (a lower bound)
    ttft_p95_bounds: tuple[float | None, float | None]  # waiting at their wait so far / as infinite
    speed_ok_share: float  # finished requests with a defined speed reaching the tier's tok/s
    ttft_ok_share: float  # requests (finished and in flight) whose first token came within the limit
    confidence_z: float | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == PASS

    @property
    def decided(self) -> bool:
        return self.verdict != UNDECIDED

    @property
    def speed_margin(self) -> float | None:
        """Relative margin of P25 speed over the target (+0.2 = 20 % faster than needed)."""
        if self.output_tps_p25 is None:
            return None
        return self.output_tps_p25 / self.tier.output_tps - 1.0

    @property
    def ttft_margin(self) -> float | None:
        """Relative headroom of P95 TTFT under the target (+0.5 = half the allowed TTFT used)."""
        if self.ttft_p95_s is None:
            return None
        if math.isinf(self.ttft_p95_s):
            return -math.inf
        return 1.0 - self.ttft_p95_s / self.tier.ttft_s

    def to_dict(self) -> dict:
        return {
            "name": self.tier.name, "output_tps": self.tier.output_tps, "ttft_s": self.tier.ttft_s,
            "verdict": self.verdict, "pass": self.passed, "decided": self.decided, "reason": self.reason,
            "requests": self.finished + self.in_flight, "finished": self.finished, "failed": self.failed,
            "in_flight": self.in_flight, "waiting": self.waiting,
            "output_tps_p25": _round(self.output_tps_p25, 3),
            "output_tps_p25_bounds": [_round(b, 3) for b in self.output_tps_p25_bounds],
            "ttft_p95_s": _round(self.ttft_p95_s, 4), "ttft_p95_bounds": [_round(b, 4) for b in self.ttft_p95_bounds],
            "speed_ok_share": round(self.speed_ok_share, 4), "ttft_ok_share": round(self.ttft_ok_share, 4),
            "confidence_z": None if self.confidence_z is None else round(self.confidence_z, 3),
        }


def _round(value: float | None, digits: int) -> float | None:
    if value is None or math.isinf(value):
        return None
    return round(value, digits)


def ttft_p95(sorted_ttfts: Sequence[float]) -> float | None:
    """Nearest-rank P95: the smallest TTFT that at least 95 % of requests are at or below."""
    n = len(sorted_ttfts)
    return None if n == 0 else float(sorted_ttfts[math.ceil(TTFT_SHARE * n - 1e-9) - 1])


def speed_p25(sorted_speeds: Sequence[float]) -> float | None:
    """P25 of speed as the share rule reads it: the largest speed that at least 75 % of requests reach."""
    n = len(sorted_speeds)
    return None if n == 0 else float(sorted_speeds[n - math.ceil(SPEED_SHARE * n - 1e-9)])


def judge(requests: RequestSet, tiers: Sequence[Tier], *, z: float | None = None,
          min_finished: int = MIN_FINISHED) -> tuple[TierVerdict, ...]:
    """Every tier judged over the same requests (see the module docstring for the rule)."""
    speeds = sorted(s for s in requests.speeds if not math.isnan(s))
    return judge_sorted(speeds, sorted(requests.ttfts), requests.failed, requests.in_flight, tiers, z=z,
                        min_finished=min_finished)


def judge_sorted(speeds: Sequence[float], ttfts: Sequence[float], failed: int,
                 in_flight: Sequence[tuple[float | None, float]], tiers: Sequence[Tier], *,
                 z: float | None = None, min_finished: int = MIN_FINISHED) -> tuple[TierVerdict, ...]:
    """``judge`` over finished requests whose speeds (defined ones only, no NaN) and TTFTs are given
    already sorted: any sequence with ``len``, indexing and ``bisect`` (a list, or a SortedList kept
    up to date as a live window slides, so a frame never re-sorts the window). The same verdicts,
    order statistics and shares as sorting the union with the in-flight requests: those are read
    with bisection and the k-th element of two sorted sequences (``kth_of_union``), never copied."""
    known_inflight = sorted(t for t, _ in in_flight if t is not None)
    waits = sorted(w for t, w in in_flight if t is None)
    n_inflight = len(in_flight)
    n = len(ttfts) + n_inflight
    n_speed = len(speeds) + n_inflight
    n_known = len(ttfts) + len(known_inflight)
    if n:
        rank = math.ceil(TTFT_SHARE * n - 1e-9) - 1  # nearest-rank P95 over all n requests
        ttft_low: float | None = float(kth_of_union(ttfts, sorted(known_inflight + waits), rank))
        # waiting requests as infinitely slow: they sort after every known TTFT
        ttft_high: float | None = float(kth_of_union(ttfts, known_inflight, rank)) if rank < n_known else math.inf
    else:
        ttft_low = ttft_high = None
    p25_point = speed_p25(speeds)
    if n_speed:
        at = n_speed - math.ceil(SPEED_SHARE * n_speed - 1e-9)  # P25's index in n_speed sorted speeds
        p25_low: float | None = 0.0 if at < n_inflight else float(speeds[at - n_inflight])  # in flight as 0
        p25_high: float | None = float(speeds[at]) if at < len(speeds) else math.inf  # as infinitely fast
    else:
        p25_low = p25_high = None
    out = []
    for tier in tiers:
        ttft_hits = bisect.bisect_right(ttfts, tier.ttft_s) + bisect.bisect_right(known_inflight, tier.ttft_s)
        ttft_unknown = bisect.bisect_right(waits, tier.ttft_s)  # waiting, not yet past the limit
        speed_hits = len(speeds) - bisect.bisect_left(speeds, tier.output_tps)
        verdict, reason = _decide(n, n_speed, len(ttfts), ttft_hits, ttft_unknown, speed_hits, n_inflight,
                                  z, min_finished)
        out.append(TierVerdict(
            tier, verdict, reason, len(ttfts), failed, n_inflight, len(waits), p25_point,
            (p25_low, p25_high), ttft_low, (ttft_low, ttft_high),
            speed_hits / len(speeds) if speeds else 0.0, ttft_hits / n if n else 0.0, z))
    return tuple(out)


def kth_of_union(a: Sequence[float], b: Sequence[float], k: int) -> float:
    """The k-th smallest (0-based) element of the union of two sorted sequences, in O(log) reads."""
    if not b:
        return a[k]
    if not a:
        return b[k]
    lo, hi = max(0, k + 1 - len(b)), min(len(a), k + 1)  # how many of the k+1 smallest come from a
    while lo < hi:
        i = (lo + hi) // 2
        j = k + 1 - i
        if j > 0 and i < len(a) and b[j - 1] > a[i]:
            lo = i + 1  # b's part holds an element larger than a's next one: take more from a
        else:
            hi = i
    j = k + 1 - lo
    if lo == 0:
        return b[j - 1]
    if j == 0:
        return a[lo - 1]
    return max(a[lo - 1], b[j - 1])


def _decide(n: int, n_speed: int, finished: int, ttft_hits: int, ttft_unknown: int, speed_hits: int,
            speed_unknown: int, z: float | None, min_finished: int) -> tuple[str, str]:
    if n == 0:
        return UNDECIDED, "no requests"
    if n_speed == 0:
        return UNDECIDED, "no request with a defined output speed"
    ttft_need = TTFT_SHARE * n
    speed_need = SPEED_SHARE * n_speed
    sure_pass = ttft_hits >= ttft_need - 1e-9 and speed_hits >= speed_need - 1e-9
    ttft_fails = ttft_hits + ttft_unknown < ttft_need - 1e-9
    speed_fails = speed_hits + speed_unknown < speed_need - 1e-9
    if z is not None:
        sure_pass = sure_pass and wilson_lower(ttft_hits, n, z) >= TTFT_SHARE and wilson_lower(
            speed_hits, n_speed, z) >= SPEED_SHARE
        ttft_fails = ttft_fails and wilson_upper(ttft_hits + ttft_unknown, n, z) < TTFT_SHARE
        speed_fails = speed_fails and wilson_upper(speed_hits + speed_unknown, n_speed, z) < SPEED_SHARE
    if ttft_fails or speed_fails:
        if n < min_finished:
            return UNDECIDED, f"fails on {n} requests, fewer than the {min_finished} a verdict needs"
        what = " and ".join(w for w, f in (("P95 TTFT", ttft_fails), ("P25 speed", speed_fails)) if f)
        return FAIL, f"{what} misses the tier on {n} requests" + (f" ({speed_unknown} in flight)" if speed_unknown else "")
    if sure_pass:
        if finished < min_finished:
            return UNDECIDED, f"passes on {finished} finished requests, fewer than the {min_finished} a pass needs"
        return PASS, f"holds on {finished} finished requests" + (
            f" with {speed_unknown} in flight counted as misses" if speed_unknown else "")
    if z is not None:
        return UNDECIDED, f"too close to call on {n} requests at the confidence asked (z={z:.2f})"
    return UNDECIDED, f"depends on {speed_unknown} requests still in flight"
