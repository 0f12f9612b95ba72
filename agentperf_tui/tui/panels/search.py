"""The Search panel: phases so far with per-tier verdicts, each tier's bracket and best, ETA."""

from __future__ import annotations

from textual.widgets import Static

from agentperf_tui.engine.frames import Frame
from agentperf_tui.tui import format as fmt


class SearchPanel(Static):
    ALLOW_MAXIMIZE = True

    def update_frame(self, frame: Frame) -> None:
        s = frame.search
        if not s:
            fmt.update_if_changed(self, "[dim]no search running - press s to start one[/dim]")
            return
        lines = []
        for b in s["brackets"]:
            hi = "open" if b["hi"] is None else b["hi"]
            lines.append(f"[b]{b['name']}[/b] best {b['lo']} agents, bracket {b['lo']}..{hi}")
        current = s.get("current")
        if current:
            lines.append(f"now: {current['agents']} agents, {current['stage']}")
        state = "done" if s.get("done") else f"ETA ~{fmt.clock(s.get('eta_s') or 0)}"
        lines.append(f"{s['mode']} mode · {len(s['phases'])} phases · {state}")
        for p in s["phases"][-6:]:
            marks = " ".join(f"{t['name'][-1]}:{'✓' if t['pass'] else '✗'}" for t in p["tiers"])
            valid = "" if p["valid"] else " [$error]invalid[/]"
            lines.append(f"  {p['agents']:>5} agents {p['duration_s']:>4.0f} s  {marks}{valid}")
        fmt.update_if_changed(self, "\n".join(lines))
