"""The SLO panel: per tier P25 output speed and P95 TTFT against target, verdict, margins, history."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from agentperf_tui.engine.frames import Frame, TierView
from agentperf_tui.tui import format as fmt


def tier_text(t: TierView) -> str:
    shown = t.shown_verdict
    if t.requests == 0:
        verdict = "[dim]no requests yet[/dim]"
    elif shown == "pass":
        verdict = "[$success b]PASS[/]"
    elif shown == "fail":
        verdict = "[$error b]FAIL[/]"
    else:
        verdict = "[$warning b]UNDECIDED[/]"
    speed_margin = "" if t.speed_margin is None else f" {t.speed_margin:+.0%}"
    ttft_margin = "" if t.ttft_margin is None else f" {t.ttft_margin:+.0%}"
    return (f"[b]{t.name}[/b] ≥{t.output_tps:g} tok/s ≤{t.ttft_s:g} s  {verdict}  "
            f"[dim]{t.requests} req" + (f" ({t.in_flight} in flight)" if t.in_flight else "")
            + f", {fmt.pct(t.compliance)} ok[/dim]\n"
            f" P25 {fmt.num(t.output_tps_p25, '.1f', ' tok/s')}{speed_margin}"
            f" · P95 TTFT {fmt.num(t.ttft_p95_s, '.2f', ' s')}{ttft_margin}")


def tier_line(t: TierView) -> str:
    """One short line per tier for small terminals: verdict, P25 speed and P95 TTFT (margins in full view)."""
    shown = t.shown_verdict
    verdict = ("[dim]no requests[/dim]" if t.requests == 0 else "[$success b]PASS[/]" if shown == "pass"
               else "[$error b]FAIL[/]" if shown == "fail" else "[$warning b]UNDECIDED[/]")
    return (f"[b]{t.name}[/b] {verdict} {fmt.num(t.output_tps_p25, '.0f', ' tok/s')}"
            f" {fmt.num(t.ttft_p95_s, '.2f', ' s')}")


class SloPanel(Vertical):
    ALLOW_MAXIMIZE = True

    """One block per tier: text plus a compliance sparkline (share of requests meeting both)."""

    DEFAULT_CSS = """
    SloPanel Static { height: auto; }
    SloPanel Sparkline { height: 1; margin: 0 0 0 1; }
    """

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self._tiers: tuple[str, ...] = ()
        self.compact = False  # set by the app on small terminals: one line per tier, no sparkline

    def compose(self) -> ComposeResult:
        yield Static("[dim]waiting for the first requests[/dim]", id="slo-empty")

    def update_frame(self, frame: Frame) -> None:
        names = tuple(t.name for t in frame.tiers)
        if names != self._tiers:
            self._tiers = names
            self.remove_children()
            for i, _ in enumerate(frame.tiers):
                self.mount(Static(id=f"slo-text-{i}"))
                self.mount(Sparkline([], id=f"slo-spark-{i}"))
        for i, tier in enumerate(frame.tiers):
            fmt.update_if_changed(self.query_one(f"#slo-text-{i}", Static),
                                  tier_line(tier) if self.compact else tier_text(tier))
            spark = self.query_one(f"#slo-spark-{i}", Sparkline)
            history = list(tier.history[-120:])
            if spark.data != history:
                spark.data = history
