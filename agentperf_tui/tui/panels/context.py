"""The Context panel: context length over agents now, its growth over time, growth per turn."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from agentperf_tui.engine.frames import Frame
from agentperf_tui.tui import format as fmt


class ContextPanel(Vertical):
    ALLOW_MAXIMIZE = True

    DEFAULT_CSS = """
    ContextPanel Static { height: auto; }
    ContextPanel Sparkline { height: 2; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="context-text")
        yield Static("[dim]mean context over time[/dim]")
        yield Sparkline([], id="context-spark")

    def update_frame(self, frame: Frame) -> None:
        c = frame.context
        fmt.update_if_changed(
            self.query_one("#context-text", Static),
            f"mean {fmt.tokens(c.mean)} tok   p50 {fmt.tokens(c.p50)} tok\n"
            f"p95 {fmt.tokens(c.p95)} tok   max {fmt.tokens(c.max)} tok\n"
            f"growth {fmt.tokens(c.growth_per_turn)} tok/turn",
        )
        spark = self.query_one("#context-spark", Sparkline)
        data = list(c.history_mean[-120:])
        if spark.data != data:
            spark.data = data
