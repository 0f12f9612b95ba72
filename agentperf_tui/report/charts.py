"""Small SVG line charts (points per series, axes, labels, threshold lines) with no dependencies.

Written by hand because the report needs three simple scatter/line plots and matplotlib would add
~50 MB to an install that must stay light; the output is plain SVG any browser or viewer shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def line_chart(title: str, x_label: str, y_label: str,
               series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
               thresholds: Sequence[tuple[str, float]] = (), width: int = 640, height: int = 360) -> str:
    """An SVG chart: each series is (name, [(x, y), ...]); thresholds are horizontal dashed lines."""
    left, right, top, bottom = 70, 150, 40, 50
    xs = [x for _, pts in series for x, _ in pts] or [1.0]
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
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
           f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>']
    for i in range(6):
        xv, yv = x_max * i / 5, y_max * i / 5
        out.append(f'<text x="{px(xv):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{xv:g}</text>')
        out.append(f'<text x="{left - 6}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:g}</text>')
        out.append(f'<line x1="{left}" y1="{py(yv):.1f}" x2="{left + plot_w}" y2="{py(yv):.1f}" '
                   f'stroke="#ddd"/>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 10}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text transform="translate(16,{top + plot_h / 2}) rotate(-90)" text-anchor="middle">'
               f'{escape(y_label)}</text>')
    for i, (name, value) in enumerate(thresholds):
        colour = PALETTE[i % len(PALETTE)]
        out.append(f'<line x1="{left}" y1="{py(value):.1f}" x2="{left + plot_w}" y2="{py(value):.1f}" '
                   f'stroke="{colour}" stroke-dasharray="5,4"/>')
        out.append(f'<text x="{left + plot_w + 6}" y="{py(value) + 4:.1f}" fill="{colour}">'
                   f'{escape(name)} {value:g}</text>')
    for i, (name, pts) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        ordered = sorted(pts)
        if len(ordered) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in ordered)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        for x, y in ordered:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{colour}"/>')
        out.append(f'<text x="{left + plot_w + 6}" y="{top + 14 + 16 * (i + len(thresholds))}" '
                   f'fill="{colour}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)
