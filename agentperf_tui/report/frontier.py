"""The frontier of a sweep: for every required per-agent speed, the largest agent count each
configuration held, and its agents per MW; drawn as agents/MW against per-agent speed.

Computed from each search phase's own requests, read back from the session's recording (the
records sent inside the phase's window, [window_t0, window_t1)), judged by the one judge
(engine/judge.py) with a speed-only tier: P25 output speed >= the required speed, a failed
request counting as speed 0; the few requests still running when a phase ended (after its
drain) are unknown and counted as misses, so a pass holds whatever they were. TTFT limits are
applied only at the profile's tiers (the per-tier answers), not along the frontier.

The count a configuration "held" at a speed is the search's own reading: the largest passing
phase count below the smallest failing one (a phase that ran; never interpolated).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from agentperf_tui.engine.judge import PASS, RequestSet, judge, request_speed
from agentperf_tui.engine.slo import Tier
from agentperf_tui.report.charts import PALETTE

SPEEDS = tuple(range(10, 201, 10))  # tok/s per agent


def phase_requests(session_dir: str | Path) -> list[tuple[dict[str, Any], RequestSet]]:
    """(phase, its request set) for every valid phase of a recorded search session."""
    from agentperf_tui.record.reader import SessionReader

    records, phases = SessionReader(session_dir).records_and_phases()
    out = []
    for phase in phases:
        t0, t1 = phase.get("window_t0"), phase.get("window_t1")
        if not phase.get("valid") or t0 is None or t1 is None:
            continue
        mine = [r for r in records if t0 <= r.t_send < t1]
        running = int((phase.get("requests") or {}).get("in_flight") or 0)
        # still running after the drain: unknown speed (first token came or not: counted as a miss either way)
        requests = RequestSet(tuple(request_speed(r) for r in mine),
                              tuple(r.ttft_s if r.ok and r.ttft_s is not None else math.inf for r in mine),
                              tuple((None, 0.0) for _ in range(running)), sum(1 for r in mine if not r.ok))
        out.append((phase, requests))
    return out


def held_at(phases: list[tuple[dict[str, Any], RequestSet]], speed: float) -> dict[str, Any] | None:
    """The largest count that passed ``speed`` below the smallest that failed it (None: none passed)."""
    tier = Tier(f"{speed:g} tok/s", float(speed), math.inf)
    verdicts = []
    for phase, requests in phases:
        (verdict,) = judge(requests, (tier,))
        verdicts.append((phase["agents"], verdict.verdict, phase))
    failing = [n for n, v, _ in verdicts if v == "fail"]
    ceiling = min(failing) if failing else math.inf
    passing = [(n, p) for n, v, p in verdicts if v == PASS and n < ceiling]
    if not passing:
        return None
    agents = max(n for n, _ in passing)
    phase = [p for n, p in passing if n == agents][-1]  # the latest phase at that count, as the search report
    power = phase.get("avg_power_w")
    return {"agents": agents, "avg_power_w": power,
            "agents_per_mw": round(agents / (power / 1e6), 1) if power else None,
            "failed_above": None if ceiling is math.inf else ceiling}


def frontier(configs: list[dict[str, Any]], speeds: tuple[int, ...] = SPEEDS) -> list[dict[str, Any]]:
    """Per speed: each configuration's held count and agents/MW, and which configurations are best
    (the most agents/MW; the most agents where no power was measured)."""
    rows = []
    for speed in speeds:
        cells = {}
        for c in configs:
            cells[c["label"]] = held_at(c["phases"], speed)
        scored = {k: (v["agents_per_mw"] if v["agents_per_mw"] is not None else -1.0, v["agents"])
                  for k, v in cells.items() if v}
        top = max(scored.values(), default=None)
        rows.append({"speed": speed, "held": cells, "best": sorted(k for k, s in scored.items() if s == top)})
    return rows


def frontier_chart(title: str, rows: list[dict[str, Any]], labels: list[str], width: int = 760,
                   height: int = 420) -> str:
    """SVG: agents/MW (or agents, where no power) against required per-agent speed, one stepped line
    per configuration, a ring on the best configuration at each speed."""
    from html import escape

    use_power = any(cell and cell["agents_per_mw"] is not None for r in rows for cell in r["held"].values())
    key = "agents_per_mw" if use_power else "agents"
    values = [cell[key] for r in rows for cell in r["held"].values() if cell and cell[key] is not None]
    left, right, top, bottom = 70, 230, 44, 50
    x_max = max((r["speed"] for r in rows), default=200)
    y_max = _nice(max(values, default=1.0))
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + pw * x / x_max

    def py(y: float) -> float:
        return top + ph * (1 - y / y_max)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           'font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{(left + width - right) / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
           f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="black"/>']
    for i in range(6):
        xv, yv = x_max * i / 5, y_max * i / 5
        out.append(f'<text x="{px(xv):.1f}" y="{top + ph + 16}" text-anchor="middle">{xv:g}</text>')
        out.append(f'<text x="{left - 6}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:,g}</text>')
        out.append(f'<line x1="{left}" y1="{py(yv):.1f}" x2="{left + pw}" y2="{py(yv):.1f}" stroke="#ddd"/>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 10}" text-anchor="middle">required per-agent output speed '
               '(P25, tok/s)</text>')
    y_label = "agents per MW (held)" if use_power else "agents held (no power measured)"
    out.append(f'<text transform="translate(16,{top + ph / 2}) rotate(-90)" text-anchor="middle">{y_label}</text>')
    for i, label in enumerate(labels):
        colour = PALETTE[i % len(PALETTE)]
        points = [(r["speed"], r["held"][label][key]) for r in rows
                  if r["held"].get(label) and r["held"][label][key] is not None]
        if len(points) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        for x, y in points:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>')
        for r in rows:
            cell = r["held"].get(label)
            if label in r["best"] and cell and cell[key] is not None:
                out.append(f'<circle cx="{px(r["speed"]):.1f}" cy="{py(cell[key]):.1f}" r="7" fill="none" '
                           f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{left + pw + 8}" y="{top + 14 + 16 * i}" fill="{colour}">{escape(label)}</text>')
    out.append(f'<text x="{left + pw + 8}" y="{top + 14 + 16 * (len(labels) + 1)}" fill="#444">ring: Pareto-best '
               'at that speed</text>')
    out.append("</svg>")
    return "\n".join(out)


def _nice(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude
