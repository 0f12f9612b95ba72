"""The Search panel: phases so far with per-tier verdicts, each tier's bracket and best, ETA."""

from __future__ import annotations

from textual.widgets import Static

from agentperf_tui.engine.frames import Frame
from agentperf_tui.tui import format as fmt


class SearchPanel(Static):
    ALLOW_MAXIMIZE = True
    replay = False  # set by the app: a recording without a search cannot start one

    def update_frame(self, frame: Frame) -> None:
        s = frame.search
        if not s:
            fmt.update_if_changed(self, "[dim]no search in this recording[/dim]" if self.replay else
                                  "[dim]no search running - press s to start one[/dim]")
            return
        lines = []
        for b in s["brackets"]:
            if b["hi"] is None:
                above = "no failing count yet"
            else:
                above = f"{b.get('hi_verdict') or 'fail'} at {b['hi']}"
            done = " ✓" if b.get("resolved") else ""
            lines.append(f"[b]{b['name']}[/b] max {b['lo']} agents ({above}){done}")
        current = s.get("current")
        status = s.get("status") or ("finished" if s.get("done") else "running")
        if current and status == "running":
            lines.append(f"now: {current['agents']} agents, {current['stage']}")
        if status == "stopped":
            state = f"[$error b]stopped: {s.get('stopped') or 'stopped'}[/]"
        elif status == "finished" or s.get("done"):
            state = "finished"
        else:
            basis = f"from {len(s['phases'])} phases" if s["phases"] else "before the first phase"
            state = f"ETA ~{fmt.clock(s.get('eta_s') or 0)} ({basis}; x: abort)"
        lines.append(f"{s['mode']} mode · {len(s['phases'])} phases · {state}")
        marks_of = {"pass": "✓", "fail": "✗", "undecided": "?"}
        for p in s["phases"][-6:]:
            marks = " ".join(f"{t['name'][-1]}:{marks_of.get(t.get('verdict') or ('pass' if t['pass'] else 'fail'))}"
                             for t in p["tiers"])
            valid = "" if p["valid"] else f" [$error]{p.get('status', 'invalid')}[/]"
            lines.append(f"  {p['agents']:>5} agents {p['duration_s']:>4.0f} s  {marks}{valid}")
        fmt.update_if_changed(self, "\n".join(lines))
