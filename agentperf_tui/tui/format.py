"""Number formatting with units, shared by every panel (so every number carries its unit)."""

from __future__ import annotations


def tokens(n: float | None) -> str:
    if n is None:
        return "-"
    if n >= 1_000_000:
        return f"{n / 1_000_000:.2f}M"
    if n >= 10_000:
        return f"{n / 1000:.1f}k"
    return f"{n:,.0f}"


def num(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:{spec}}{unit}"


def pct(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else f"{100 * value:{spec}} %"


def watts(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f} MW"
    if value >= 1e4:
        return f"{value / 1e3:.1f} kW"
    return f"{value:,.0f} W"


def joules(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e9:
        return f"{value / 1e9:.2f} GJ"
    if value >= 1e6:
        return f"{value / 1e6:.2f} MJ"
    if value >= 1e3:
        return f"{value / 1e3:.1f} kJ"
    return f"{value:.0f} J"


def since(seconds: float | None) -> str:
    """A time in state, at most 6 cells: 42 s, 12m05s, 3h07m ("-" when unknown)."""
    if seconds is None:
        return "-"
    s = int(max(0.0, seconds))
    if s < 100:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def update_if_changed(widget, text) -> None:  # type: ignore[no-untyped-def]
    """Static.update only when the text differs (an unchanged panel costs no re-render), and
    without a layout pass when the widget's size cannot change: the line count is the same, or
    its height and width are set by the stylesheet (a grid panel of ``height: 1fr``), so its text
    never sizes it. A layout pass of the whole screen costs tens of ms at thousands of agents."""
    last = getattr(widget, "_agentperf_last", None)
    if last != text:
        widget._agentperf_last = text
        same_shape = isinstance(last, str) and isinstance(text, str) and last.count("\n") == text.count("\n")
        widget.update(text, layout=not (same_shape or _sized_by_style(widget)))


def _sized_by_style(widget) -> bool:  # type: ignore[no-untyped-def]
    """Neither the height nor the width of ``widget`` depends on its content (none is ``auto``)."""
    styles = widget.styles
    height, width = styles.height, styles.width
    return height is not None and not height.is_auto and (width is None or not width.is_auto)
