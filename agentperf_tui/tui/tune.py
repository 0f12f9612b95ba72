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
from agentperf_tui.engine.segments import change_line, segment_cells, segment_columns


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
        self._tier_names: list[str] = []

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
            names = [t.name for t in frame.tiers]
            if names != self._tier_names:
                self._tier_names = names
                table.clear(columns=True)
                table.add_columns(*segment_columns(names))
            table.clear()
            for segment in segments:
                table.add_row(*segment_cells(segment, names))
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
