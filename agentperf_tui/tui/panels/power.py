"""The GPU power panel: per-GPU watts against the board limit, total and per-GPU average from one
window, the boundary's power, steady-window energy, tokens per joule, agents per MW, and the energy
account's partial / stale mark."""

from __future__ import annotations

from textual.widgets import Static

from agentperf_tui.engine.frames import Frame
from agentperf_tui.tui import format as fmt

BAR = "▁▂▃▄▅▆▇█"
MAX_BARS = 72


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
        n = max(1, len(per_gpu))
        scale = p.gpu_limit_w or max(per_gpu or (1.0,))
        bars = "".join(BAR[max(0, min(7, int(8 * w / max(scale, 1.0)) - 1))] for w in per_gpu[:MAX_BARS])
        more = f" +{len(per_gpu) - MAX_BARS}" if len(per_gpu) > MAX_BARS else ""
        limit = f"of {fmt.watts(p.gpu_limit_w)} limit" if p.gpu_limit_w else "scaled to the hottest (limit unknown)"
        idle = "" if p.load else "  [dim](idle: no load yet)[/dim]"
        lines = [
            f"GPUs [b]{fmt.watts(p.total_w)}[/b] over {len(per_gpu)} (avg {fmt.watts(p.total_w / n)} per GPU, last 5 s)"
            + idle,
            f"per GPU {bars}{more}  {fmt.watts(min(per_gpu) if per_gpu else None)}-"
            f"{fmt.watts(max(per_gpu) if per_gpu else None)} {limit}",
        ]
        if p.boundary != "gpu":
            lines.append(f"{p.boundary} [b]{fmt.watts(p.boundary_w)}[/b] now (Redfish)")
        lines += [
            f"steady window: energy {fmt.joules(p.energy_j)}, average {fmt.watts(p.avg_power_w)}",
            f"{fmt.num(p.tokens_per_joule, '.3f', ' tokens/J')}   live {fmt.num(p.agents_per_mw, ',.0f', ' agents/MW')}",
            f"[dim]boundary: {p.boundary_text} · source {p.source}[/dim]",
        ]
        if p.status in ("partial", "stale"):
            lines.append(f"[$error b]{p.status.upper()}[/] [$warning]{p.note}[/]")
        elif p.note:
            lines.append(f"[dim]{p.note}[/dim]")
        fmt.update_if_changed(self, "\n".join(lines))
