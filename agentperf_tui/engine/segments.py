"""Segments: the stretches of one session that ran under one server configuration (Tune panel).

A segment ends when the operator applies a new setting. What it held is the run summary's
steady window at that moment (engine/summary.py: the last target, settled, to the segment's
end), so its verdicts come from the one judge like every other number. Beside each figure the
window's own spread, as a noise band, so a before/after change can be told from noise:

- P25 speed: the 95 % distribution-free interval of the 25th percentile from the window's
  requests (order statistics at ranks n q -/+ 1.96 sqrt(n q (1 - q)), failed requests at 0);
- output tokens/s: 1.96 standard errors of the rate over ``BAND_PARTS`` equal sub-windows.

``compare_segments`` gives each segment's change against the previous one, and says whether
the change is larger than the two bands together (sqrt(a^2 + b^2)).
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentperf_tui.engine.metrics import RunMetrics

BAND_PARTS = 6
Z95 = 1.96


def p25_interval(speeds: list[float]) -> tuple[float | None, float | None]:
    """95 % interval of the P25 speed from the finished requests' speeds (NaN ones left out)."""
    values = sorted(s for s in speeds if not math.isnan(s))
    n = len(values)
    if n < 20:
        return None, None
    q = 0.25
    half = Z95 * math.sqrt(n * q * (1 - q))
    lo = max(0, math.floor(n * q - half) - 1)
    hi = min(n - 1, math.ceil(n * q + half) - 1)
    return values[lo], values[hi]


def rate_band(metrics: RunMetrics, t_from: float, t_to: float, parts: int = BAND_PARTS) -> float | None:
    """Half-width (tok/s) of the output rate's 95 % band over ``parts`` sub-windows of [t_from, t_to)."""
    if t_to <= t_from or parts < 2:
        return None
    width = (t_to - t_from) / parts
    rates = [metrics.tokens_arrived(t_from + i * width, t_from + (i + 1) * width) / width for i in range(parts)]
    return Z95 * statistics.stdev(rates) / math.sqrt(parts)


def segment_row(index: int, config: dict[str, str], change: str, summary: dict[str, Any], *,
                started_s: float, ended_s: float, argv: list[list[str]], band: dict[str, Any]) -> dict[str, Any]:
    """One segment as shown and recorded: configuration, window, verdicts, power, bands."""
    window = summary.get("steady_window") or {}
    power = summary.get("power") or {}
    return {
        "index": index, "config": dict(config), "change": change, "argv": argv,
        "fingerprint": (summary.get("server") or {}).get("fingerprint", ""),
        "server_version": (summary.get("server") or {}).get("version", ""),
        "twin": bool(summary.get("twin")),
        "started_s": round(started_s, 2), "ended_s": round(ended_s, 2),
        "window_start_s": window.get("start_s"), "window_s": summary.get("steady_window_s") or 0.0,
        "window_note": summary.get("steady_window_note", ""),
        "target": window.get("target"), "agents": summary.get("agents"),
        "requests": summary.get("requests"),
        "tiers": [{k: t.get(k) for k in ("name", "verdict", "output_tps", "ttft_s", "output_tps_p25", "ttft_p95_s",
                                         "finished", "in_flight", "reason")} for t in summary.get("tiers") or []],
        "output_tokens_per_s": summary.get("output_tokens_per_s"),
        "avg_power_w": power.get("avg_power_w"), "power_boundary": power.get("boundary"),
        "power_status": power.get("status"),
        "agents_per_gpu": summary.get("agents_per_gpu"), "agents_per_mw": summary.get("agents_per_mw"),
        "valid": (summary.get("client") or {}).get("valid"),
        "band": band,
    }


def segment_band(metrics: RunMetrics, summary: dict[str, Any], in_flight: list[tuple[float, float | None]],
                 load_t0: float | None) -> dict[str, Any]:
    """Noise bands of a segment's window (see the module docstring); empty without a window."""
    window = summary.get("steady_window")
    if not window or load_t0 is None or window.get("start_s") is None:
        return {}
    t0 = load_t0 + window["start_s"]
    t1 = t0 + window["seconds"]
    speeds = list(metrics.request_set(t0, t1, in_flight, t1).speeds)
    lo, hi = p25_interval(speeds)
    tps = rate_band(metrics, t0, t1)
    return {"output_tps_p25": [lo, hi] if lo is not None else None,
            "output_tokens_per_s": round(tps, 2) if tps is not None else None,
            "parts": BAND_PARTS}


def compare_segments(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each segment's change against the one before it: tokens/s, agents/MW and tier-1 P25 speed,
    each with ``beyond_noise`` where the bands allow saying so (None: no band to judge by)."""
    out = []
    for prev, cur in zip(segments, segments[1:], strict=False):
        row: dict[str, Any] = {"from": prev["index"], "to": cur["index"], "change": cur["change"]}
        a, b = prev.get("output_tokens_per_s"), cur.get("output_tokens_per_s")
        if a is not None and b is not None:
            ba, bb = (prev.get("band") or {}).get("output_tokens_per_s"), (cur.get("band") or {}).get(
                "output_tokens_per_s")
            noise = math.hypot(ba, bb) if ba is not None and bb is not None else None
            row["output_tokens_per_s"] = {"delta": round(b - a, 2), "relative": (b - a) / a if a else None,
                                          "noise": None if noise is None else round(noise, 2),
                                          "beyond_noise": None if noise is None else abs(b - a) > noise}
        pa, pb = _p25(prev), _p25(cur)
        if pa is not None and pb is not None:
            ia, ib = (prev.get("band") or {}).get("output_tps_p25"), (cur.get("band") or {}).get("output_tps_p25")
            beyond = None
            if ia and ib:  # intervals that do not overlap
                beyond = ia[1] < ib[0] or ib[1] < ia[0]
            row["output_tps_p25"] = {"delta": round(pb - pa, 3), "beyond_noise": beyond}
        ma, mb = prev.get("agents_per_mw"), cur.get("agents_per_mw")
        if ma is not None and mb is not None:
            row["agents_per_mw"] = {"delta": round(mb - ma, 1), "relative": (mb - ma) / ma if ma else None}
        out.append(row)
    return out


def _p25(segment: dict[str, Any]) -> float | None:
    tiers = segment.get("tiers") or []
    return tiers[0].get("output_tps_p25") if tiers else None
