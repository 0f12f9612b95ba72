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


# -- text (the Tune screen, `compare`, the headless summary) ----------------------------------------
def _num(value: Any, spec: str = ",.1f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def segment_cells(segment: dict[str, Any], tier_names: list[str]) -> list[str]:
    """One row of the segments table (also used by `compare`). P25 speed and P95 TTFT are over the
    same requests for every tier, so they are shown once, then each tier's verdict."""
    band = segment.get("band") or {}
    tiers = {t["name"]: t for t in segment.get("tiers") or []}
    first = next(iter(tiers.values()), {})
    interval = band.get("output_tps_p25")
    p25 = _num(first.get("output_tps_p25")) + (f" ({interval[0]:.1f}-{interval[1]:.1f})" if interval else "")
    tps_band = band.get("output_tokens_per_s")
    tps = _num(segment.get("output_tokens_per_s"), ",.0f") + (f" ±{tps_band:,.0f}" if tps_band is not None else "")
    power = segment.get("avg_power_w")
    return [
        f"{segment['index']}{' (running)' if segment.get('running') else ''}",
        segment.get("change") or "",
        _num(segment.get("agents"), ".1f"),
        p25,
        _num(first.get("ttft_p95_s"), ".2f", " s"),
        *[(tiers[name]["verdict"] if name in tiers else "n/a") for name in tier_names],
        tps,
        _num(power / 1000.0 if power else None, ",.2f", " kW"),
        _num(segment.get("agents_per_mw"), ",.0f"),
        f"{segment.get('window_s') or 0:.0f} s",
        (segment.get("fingerprint") or "")[:8] + (" twin" if segment.get("twin") else ""),
    ]


def segment_columns(tier_names: list[str]) -> tuple[str, ...]:
    return ("#", "configuration", "agents held", "P25 tok/s (95% band)", "P95 TTFT", *tier_names,
            "output tok/s ±95%", "power", "agents/MW", "window", "fingerprint")


def change_line(change: dict[str, Any]) -> str:
    """``2 vs 1: max-running-requests 256 -> 32: output tok/s -812 (-35.0 %, beyond noise) ...``"""
    parts = []
    tps = change.get("output_tokens_per_s")
    if tps:
        rel = f", {tps['relative']:+.1%}" if tps.get("relative") is not None else ""
        noise = {True: "beyond noise", False: "within noise", None: "no band"}[tps.get("beyond_noise")]
        parts.append(f"output tok/s {tps['delta']:+,.0f}{rel} ({noise}, band ±{tps['noise'] or 0:,.0f})")
    p25 = change.get("output_tps_p25")
    if p25:
        noise = {True: "beyond noise", False: "within noise", None: "no band"}[p25.get("beyond_noise")]
        parts.append(f"P25 speed {p25['delta']:+.1f} tok/s ({noise})")
    mw = change.get("agents_per_mw")
    if mw:
        rel = f" ({mw['relative']:+.1%})" if mw.get("relative") is not None else ""
        parts.append(f"agents/MW {mw['delta']:+,.0f}{rel} (no noise band: one energy window each)")
    return f"{change['to']} vs {change['from']} ({change['change']}): " + ("; ".join(parts) or "no window to compare")


def segments_text(segments: list[dict[str, Any]], changes: list[dict[str, Any]], tier_names: list[str]) -> list[str]:
    """The segments as fixed-width text lines: a header, one row per segment, then each change."""
    if not segments:
        return []
    header = list(segment_columns(tier_names))
    rows = [segment_cells(s, tier_names) for s in segments]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines + [change_line(c) for c in changes]
