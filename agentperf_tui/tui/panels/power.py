"""The GPU power panel: per-GPU and total watts, energy, tokens per joule, agents per MW, boundary."""

from __future__ import annotations

from textual.widgets import Static

from agentperf_tui.engine.frames import Frame
from agentperf_tui.tui import format as fmt

BAR = "▁▂▃▄▅▆▇█"


class PowerPanel(Static):
    ALLOW_MAXIMIZE = True

    def update_frame(self, frame: Frame) -> None:
        p = frame.power
        if p.total_w is None:
            fmt.update_if_changed(
                self,
                f"[dim]{p.note or 'no power readings yet'}[/dim]\nboundary: {p.boundary_text or p.boundary}",
            )
            return
        per_gpu = p.per_gpu_w
        peak = max(per_gpu) if per_gpu else 1.0
        bars = "".join(BAR[min(7, int(7 * w / max(peak, 1.0)))] for w in per_gpu)
        lines = [
            f"total [b]{fmt.watts(p.total_w)}[/b] over {len(per_gpu)} GPUs"
            f" (avg {fmt.watts(p.total_w / max(1, len(per_gpu)))} per GPU)",
            f"per GPU {bars}  max {fmt.watts(peak)}",
            f"energy {fmt.joules(p.energy_j)}   average {fmt.watts(p.avg_power_w)}",
            f"{fmt.num(p.tokens_per_joule, '.3f', ' tokens/J')}   live {fmt.num(p.agents_per_mw, ',.0f', ' agents/MW')}",
            f"[dim]boundary: {p.boundary_text} · source {p.source}[/dim]",
        ]
        if p.note:
            lines.append(f"[$warning]{p.note}[/]")
        fmt.update_if_changed(self, "\n".join(lines))
