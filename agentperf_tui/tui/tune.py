"""The Tune screen (t): the profile's knobs with their values, pick a new value, apply; the segments.

Applying asks the session to close the current segment, hold the agents, relaunch the server
with the new value and resume the same target in a new segment (engine/session.py). The
segments table is the before/after: each configuration's agents held, per-tier P25 speed and
P95 TTFT with their verdicts, tokens/s and power with the window's own noise band, agents/MW,
and the change against the segment before it. Everything shown comes from frames, so replay
shows the same table; only apply and save need a live session.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from agentperf_tui.engine.frames import Frame


def _num(value: Any, spec: str = ",.1f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def segment_cells(segment: dict[str, Any]) -> list[str]:
    """One row of the segments table (also used by `compare`)."""
    band = segment.get("band") or {}
    tiers = []
    for t in segment.get("tiers") or []:
        tiers.append(f"{t['name']} {t['verdict']} {_num(t.get('output_tps_p25'))} tok/s · "
                     f"{_num(t.get('ttft_p95_s'), '.2f', ' s')}")
    interval = band.get("output_tps_p25")
    p25_band = f"{interval[0]:.1f}-{interval[1]:.1f}" if interval else "n/a"
    tps_band = band.get("output_tokens_per_s")
    tps = _num(segment.get("output_tokens_per_s"), ",.0f") + (f" ±{tps_band:,.0f}" if tps_band is not None else "")
    power = segment.get("avg_power_w")
    return [
        f"{segment['index']}{' (running)' if segment.get('running') else ''}",
        segment.get("change") or "",
        _num(segment.get("agents"), ".1f"),
        " | ".join(tiers) or "no window",
        p25_band,
        tps,
        _num(power / 1000.0 if power else None, ",.2f", " kW"),
        _num(segment.get("agents_per_mw"), ",.0f"),
        f"{segment.get('window_s') or 0:.0f} s",
        (segment.get("fingerprint") or "")[:8] + (" twin" if segment.get("twin") else ""),
    ]


SEGMENT_COLUMNS = ("#", "configuration", "agents held", "tiers: verdict, P25 speed · P95 TTFT",
                   "P25 95% band (tok/s)", "output tok/s ±95%", "power", "agents/MW", "window", "fingerprint")


def change_line(change: dict[str, Any]) -> str:
    """``2 vs 1: max-running-requests 256 -> 32: output tok/s -812 (-35.0 %, beyond noise) ...``"""
    parts = []
    tps = change.get("output_tokens_per_s")
    if tps:
        rel = f", {tps['relative']:+.1%}" if tps.get("relative") is not None else ""
        noise = {True: "beyond noise", False: "within noise", None: "no band"}[tps.get("beyond_noise")]
        parts.append(f"output tok/s {tps['delta']:+,.0f}{rel} ({noise}, band ±{tps['noise'] or 0:,.0f})")
    p25 = change.get("output_tps_p25")
    if p25:
        noise = {True: "beyond noise", False: "within noise", None: "no band"}[p25.get("beyond_noise")]
        parts.append(f"P25 speed {p25['delta']:+.1f} tok/s ({noise})")
    mw = change.get("agents_per_mw")
    if mw:
        rel = f" ({mw['relative']:+.1%})" if mw.get("relative") is not None else ""
        parts.append(f"agents/MW {mw['delta']:+,.0f}{rel}")
    return f"{change['to']} vs {change['from']} ({change['change']}): " + ("; ".join(parts) or "no window to compare")


class TuneScreen(ModalScreen[None]):
    """Knobs above, segments below; see the module docstring."""

    DEFAULT_CSS = """
    TuneScreen { align: center middle; }
    TuneScreen > Vertical { width: 96%; height: 92%; border: thick $accent; background: $surface; padding: 0 1; }
    TuneScreen #tune-knobs { height: auto; max-height: 12; }
    TuneScreen #tune-segments { height: 1fr; }
    TuneScreen Static { height: auto; }
    """
    BINDINGS = [
        Binding("left", "value(-1)", "previous value"),
        Binding("right", "value(1)", "next value"),
        Binding("a,enter", "apply", "apply"),
        Binding("w", "save", "save as profile"),
        Binding("escape,t", "close", "close"),
    ]

    def __init__(self, controller: Any, replay: bool = False):
        super().__init__()
        self.controller = controller
        self.replay = replay
        self.pending: dict[str, str] = {}
        self._knobs: list[dict[str, Any]] = []
        self._segments_seen: tuple[Any, ...] = ()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Tune", id="tune-title")
            yield DataTable(id="tune-knobs", cursor_type="row", zebra_stripes=True)
            yield Static("", id="tune-pending")
            yield Static("Segments (one per configuration; the window is each segment's steady window)",
                         id="tune-segments-title")
            yield DataTable(id="tune-segments", cursor_type="row", zebra_stripes=True)
            yield Static("", id="tune-changes")
            yield Static("up/down knob · left/right value · a apply (relaunches the server) · "
                         "w save as a new profile · esc close", id="tune-keys")

    def on_mount(self) -> None:
        knobs = self.query_one("#tune-knobs", DataTable)
        knobs.add_columns("knob", "launched with", "server reports", "new value", "candidates", "how")
        self.query_one("#tune-segments", DataTable).add_columns(*SEGMENT_COLUMNS)
        frame = getattr(self.app, "frame", None)
        if frame is not None:
            self.update_frame(frame)

    def update_frame(self, frame: Frame) -> None:
        tune = frame.tune or {}
        self._knobs = list(tune.get("knobs") or [])
        title = self.query_one("#tune-title", Static)
        state = tune.get("state") or ("replay: read only" if self.replay else "idle")
        where = tune.get("profile") or frame.profile
        title.update(f"Tune [b]{frame.profile}[/b] ({where}) · {state}" if tune else
                     f"Tune [b]{frame.profile}[/b]: this profile has no [tune] knobs (add a [tune] table; docs/tune.md)")
        self._render_knobs()
        segments = tuple(frame.segments)
        if segments != self._segments_seen:
            self._segments_seen = segments
            table = self.query_one("#tune-segments", DataTable)
            table.clear()
            for segment in segments:
                table.add_row(*segment_cells(segment))
            changes = tune.get("changes") or []
            self.query_one("#tune-changes", Static).update("\n".join(change_line(c) for c in changes)
                                                            or "no change to compare yet")

    def _render_knobs(self) -> None:
        table = self.query_one("#tune-knobs", DataTable)
        row = table.cursor_row
        table.clear()
        for k in self._knobs:
            new = self.pending.get(k["key"], "")
            table.add_row(k["key"], k["current"], k.get("server_value") or "?", f"[b]{new}[/b]" if new else "",
                          " ".join(k["values"]), "live" if k.get("runtime") else "relaunch")
        if self._knobs:
            table.move_cursor(row=min(row, len(self._knobs) - 1))
        self.query_one("#tune-pending", Static).update(
            "pending: " + ", ".join(f"{k} -> {v}" for k, v in self.pending.items()) if self.pending
            else "pending: none (left/right picks a value for the knob under the cursor)")

    def action_value(self, step: int) -> None:
        if not self._knobs:
            return
        table = self.query_one("#tune-knobs", DataTable)
        k = self._knobs[table.cursor_row]
        values = list(k["values"])
        now = self.pending.get(k["key"], k["current"])
        i = values.index(now) if now in values else (-1 if step > 0 else 0)
        choice = values[(i + step) % len(values)]
        if choice == k["current"]:
            self.pending.pop(k["key"], None)
        else:
            self.pending[k["key"]] = choice
        self._render_knobs()

    def action_apply(self) -> None:
        if self.replay or not hasattr(self.controller, "apply_tune"):
            self.notify("a replay cannot be retuned", severity="warning")
            return
        if not self.pending:
            self.notify("nothing to apply: pick a new value first", severity="warning")
            return
        self.controller.apply_tune(dict(self.pending))
        self.notify("applying " + ", ".join(f"{k} -> {v}" for k, v in self.pending.items())
                    + ": the agents wait while the server relaunches")
        self.pending.clear()
        self._render_knobs()

    def action_save(self) -> None:
        if self.replay or not hasattr(self.controller, "save_tuned_profile"):
            self.notify("a replay cannot save a profile", severity="warning")
            return
        self.controller.save_tuned_profile()
        self.notify("saving the running configuration as a new profile (see the Log)")

    def action_close(self) -> None:
        self.dismiss(None)
