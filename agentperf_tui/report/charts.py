"""Small SVG line charts (points per series, axes, labels, threshold lines, markers) with no dependencies.

Written by hand because the report needs three simple scatter/line plots and matplotlib would add
~50 MB to an install that must stay light; the output is plain SVG any browser or viewer shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
SERIES_COLOURS = ("#1f77b4", "#000000", "#7f7f7f")  # measured data: blue first, never a tier's colour
TIER_COLOURS = ("#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")  # tier i: its limit and its answer


NICE_STEPS = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0)
TICK_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)
MAX_TICKS = 8


def _nice_max(value: float) -> float:
    """The smallest round value >= ``value`` (70 for 64, 1.5 for 1.31): the axis ends just past the data."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in NICE_STEPS:
        if value <= step * magnitude * (1 + 1e-9):
            return step * magnitude
    return 10 * magnitude


def _ticks(top: float) -> list[float]:
    """Round tick values from 0 to ``top`` (at most MAX_TICKS intervals), ending on ``top`` when a
    round step divides it."""
    magnitude = 10 ** math.floor(math.log10(top)) / 10
    steps = [step * scale for scale in (magnitude, magnitude * 10, magnitude * 100) for step in TICK_STEPS]
    fitting = [step for step in steps if top / step <= MAX_TICKS + 1e-9]
    even = [step for step in fitting if abs(top / step - round(top / step)) < 1e-6]
    step = (even or fitting or [top])[0]
    return [round(k * step, 10) for k in range(int(top / step + 1e-9) + 1)]


def line_chart(title: str, x_label: str, y_label: str,
               series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
               thresholds: Sequence[tuple[str, float]] = (), markers: Sequence[tuple[str, float]] = (),
               width: int = 720, height: int = 380) -> str:
    """An SVG chart: each series is (name, [(x, y), ...]) drawn solid with points; thresholds are
    horizontal dashed lines (name is their whole label); markers are vertical dotted lines at x,
    labelled at the top (a tier's answer). The x axis ends at a round value just past the largest x."""
    left, right, top, bottom = 70, 190, 46, 50
    xs = [x for _, pts in series for x, _ in pts] + [x for _, x in markers] or [1.0]
    ys = [y for _, pts in series for _, y in pts] + [v for _, v in thresholds] or [1.0]
    x_max = _nice_max(max(xs))
    y_max = _nice_max(max(ys))
    plot_w = width - left - right
    plot_h = height - top - bottom

    def px(x: float) -> float:
        return left + plot_w * x / x_max

    def py(y: float) -> float:
        return top + plot_h * (1 - y / y_max)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f"<title>{escape(title)}</title>",
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>',
           f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>']
    for xv in _ticks(x_max):
        out.append(f'<text x="{px(xv):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{xv:g}</text>')
    for yv in _ticks(y_max):
        out.append(f'<text x="{left - 6}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:g}</text>')
        out.append(f'<line x1="{left}" y1="{py(yv):.1f}" x2="{left + plot_w}" y2="{py(yv):.1f}" '
                   f'stroke="#ddd"/>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 10}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text transform="translate(16,{top + plot_h / 2}) rotate(-90)" text-anchor="middle">'
               f'{escape(y_label)}</text>')
    legend: list[tuple[str, str, str]] = []  # (name, colour, dash)
    for i, (name, pts) in enumerate(series):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        ordered = sorted(pts)
        if len(ordered) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in ordered)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in ordered:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{colour}"/>')
        legend.append((name, colour, ""))
    for i, (name, value) in enumerate(thresholds):
        colour = TIER_COLOURS[i % len(TIER_COLOURS)]
        out.append(f'<line x1="{left}" y1="{py(value):.1f}" x2="{left + plot_w}" y2="{py(value):.1f}" '
                   f'stroke="{colour}" stroke-dasharray="6,4"/>')
        legend.append((name, colour, "6,4"))
    for i, (name, x) in enumerate(markers):
        colour = TIER_COLOURS[i % len(TIER_COLOURS)]
        out.append(f'<line x1="{px(x):.1f}" y1="{top}" x2="{px(x):.1f}" y2="{top + plot_h}" stroke="{colour}" '
                   f'stroke-dasharray="2,3" stroke-width="1.5"/>')
        anchor = "end" if px(x) > left + plot_w * 0.8 else "start"
        shift = -4 if anchor == "end" else 4
        out.append(f'<text x="{px(x) + shift:.1f}" y="{top + 12 + 13 * i}" text-anchor="{anchor}" '
                   f'fill="{colour}">{escape(name)}</text>')
    for i, (name, colour, dash) in enumerate(legend):
        y = top + 8 + 18 * i
        x0 = left + plot_w + 10
        style = f' stroke-dasharray="{dash}"' if dash else ' stroke-width="2"'
        out.append(f'<line x1="{x0}" y1="{y}" x2="{x0 + 22}" y2="{y}" stroke="{colour}"{style}/>')
        out.append(f'<text x="{x0 + 28}" y="{y + 4}" fill="{colour}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)
