"""The dashboard: six live panels fed only by engine frames, keys that drive the controller.

The app never measures anything: a live Session (on its own thread) or a ReplayPlayer calls
``frame_sink`` from its thread; frames arrive as ``FrameArrived`` messages that replace older
pending ones, and ``apply_frame`` updates every panel inside one batch. ``--fps`` caps how often
panels refresh, and ``--ui-budget`` stretches that interval while repaints would take more of a
core than the budget (tui/pacing.py; the header says so); the latest frame always wins.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections import deque
from typing import Any

from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, RichLog, Static

from agentperf_tui.engine.agent_order import SORT_LABELS
from agentperf_tui.engine.frames import Frame
from agentperf_tui.tui import format as fmt
from agentperf_tui.tui.help import ConfirmQuit, HelpScreen
from agentperf_tui.tui.messages import FrameArrived
from agentperf_tui.tui.pacing import DisplayPacer
from agentperf_tui.tui.panels.agents import AgentsHeader, AgentTable
from agentperf_tui.tui.panels.context import ContextPanel
from agentperf_tui.tui.panels.power import PowerPanel
from agentperf_tui.tui.panels.search import SearchPanel
from agentperf_tui.tui.panels.server import ServerPanel
from agentperf_tui.tui.panels.slo import SloPanel
from agentperf_tui.tui.tune import TuneScreen

PANELS = ("agents-panel", "slo-panel", "context-panel", "power-panel", "server-panel", "log-panel", "search-panel")
LOG_LINES = 2000
LOG_FLUSH_S = 1.0


class AgentsPanel(Vertical):
    """Container of the Agents table and its header (maximizable as one panel)."""

    ALLOW_MAXIMIZE = True


SERVER_LINE = re.compile(r"^\d\d:\d\d:\d\d \[[^\]]+\] ")  # "12:00:01 [twin] Decode batch ..."


def is_server_line(line: str) -> bool:
    """A line a server process printed (relayed into the Log), not one of the run's own events."""
    return bool(SERVER_LINE.match(line))


class LogPanel(RichLog):
    """The Log panel: the run's events (target changes, failures, phases, warnings) and, on request
    (``l``), the server processes' own log lines, bounded."""

    ALLOW_MAXIMIZE = True


class AgentPerfApp(App[int]):
    """agentperf-tui's dashboard (live or replay)."""

    CSS_PATH = "app.tcss"
    TITLE = "agentperf-tui"
    BINDINGS = [
        Binding("plus,equals_sign", "agents(1)", "+1 agent", id="agents.plus1", key_display="+"),
        Binding("minus", "agents(-1)", "-1", id="agents.minus1", key_display="-"),
        Binding("right_square_bracket", "agents(10)", "+10", id="agents.plus10", key_display="]"),
        Binding("left_square_bracket", "agents(-10)", "-10", id="agents.minus10", key_display="["),
        Binding("asterisk", "scale(2.0)", "x2", id="agents.double", key_display="*"),
        Binding("slash", "scale(0.5)", "/2", id="agents.halve", key_display="/"),
        Binding("p,space", "pause", "pause", id="load.pause"),
        Binding("s", "search", "search", id="search.start"),
        Binding("x", "abort_search", "abort search", id="search.abort"),
        Binding("o", "sort", "sort", id="agents.sort", show=False),
        Binding("O", "reverse", "reverse", id="agents.reverse", show=False),
        Binding("f", "filter", "filter", id="agents.filter", show=False),
        *[Binding(str(i + 1), f"maximize({i})", f"panel {i + 1}", id=f"panel.{i + 1}", show=False)
          for i in range(len(PANELS))],
        Binding("escape", "restore", "restore", id="panel.restore", show=False),
        Binding("less_than_sign", "speed(-1)", "slower", id="replay.slower", key_display="<"),
        Binding("greater_than_sign", "speed(1)", "faster", id="replay.faster", key_display=">"),
        Binding("left", "seek(-10)", "-10 s", id="replay.back"),
        Binding("l", "toggle_server_log", "server log", id="log.server_lines", show=False),
        Binding("right", "seek(10)", "+10 s", id="replay.forward"),
        Binding("n", "phase(1)", "next phase", id="replay.next_phase"),
        Binding("N", "phase(-1)", "previous phase", id="replay.prev_phase", show=False),
        Binding("t", "tune", "tune", id="app.tune", show=False),
        Binding("question_mark", "help", "help", id="app.help", key_display="?"),
        Binding("q", "quit_app", "quit", id="app.quit"),
    ]

    def __init__(self, controller: Any, *, title: str = "agentperf-tui", fps: float = 4.0,
                 search_available: bool = False, replay: bool = False, handle_signals: bool = False,
                 ui_budget: float = 0.0):
        super().__init__()
        self.handle_signals = handle_signals
        self._signalled = False
        self.controller = controller
        self.title_text = title
        self.fps = max(0.5, fps)
        self.pacer = DisplayPacer(self.fps, ui_budget)  # created here; measures the thread that runs the app
        self.search_available = search_available
        self.replay = replay
        self.frame: Frame | None = None
        self.frames_applied = 0
        self._pending: Frame | None = None
        self._maximized: str | None = None
        self._log_pending: list[str] = []
        self._log_all: deque[str] = deque(maxlen=LOG_LINES)  # every line, for the l toggle
        self.log_server_lines = False  # server chatter (the twin's "Decode batch" lines) off by default
        self._start_failure_shown = False

    # -- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(self.title_text, id="header")
        with Vertical(id="grid"):
            with AgentsPanel(id="agents-panel", classes="panel"):
                yield AgentsHeader(id="agents-header")
                yield AgentTable(id="agents-table")
            yield SloPanel(id="slo-panel", classes="panel")
            yield ContextPanel(id="context-panel", classes="panel")
            yield PowerPanel(id="power-panel", classes="panel")
            yield ServerPanel(id="server-panel", classes="panel")
            search = SearchPanel(id="search-panel", classes="panel")
            search.replay = self.replay
            yield search
            yield LogPanel(id="log-panel", classes="panel", max_lines=LOG_LINES, wrap=False, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        titles = {"agents-panel": "Agents", "slo-panel": "SLO", "context-panel": "Context",
                  "power-panel": "GPU power", "server-panel": "Server", "log-panel": "Log", "search-panel": "Search"}
        for i, panel in enumerate(PANELS):
            self.query_one(f"#{panel}").border_title = f"{titles[panel]} [{i + 1}]"
        self._title_log()
        self.set_interval(1.0 / self.fps, self._flush_pending)
        self.set_interval(LOG_FLUSH_S, self._flush_log)
        self._fit_layout(self.size.width, self.size.height)
        if self.replay:  # the state line follows pause / seek / speed even when no frame comes
            self.set_interval(0.25, self._refresh_header)
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig, code in ((signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)):
                loop.add_signal_handler(sig, self._on_signal, sig, code)

    def _on_signal(self, sig: signal.Signals, code: int) -> None:
        """SIGTERM/SIGHUP/SIGINT: stop load and server, exit with 128+signal; a second one forces."""
        if self._signalled:
            force = getattr(self.controller, "force_stop", None)
            if force is not None:
                force()  # the session kills what it started; the dashboard knows no processes
            os._exit(code)
        self._signalled = True
        self.controller.request_stop(f"signal {sig.name}")
        self.exit(code, return_code=code)

    # -- frames -------------------------------------------------------------------------------
    def frame_sink(self, frame: Frame) -> None:
        """Called by the engine or replay thread; thread-safe and never blocks it."""
        self.post_message(FrameArrived(frame))

    def on_frame_arrived(self, message: FrameArrived) -> None:
        if not self.pacer.due():
            self._pending = message.frame  # capped: keep the latest, apply on the next tick
            return
        self.apply_frame(message.frame)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            self.pacer.boost()  # what the operator just did shows at --fps
            if self._pending is not None:
                self.call_later(self._flush_pending)
        await super().on_event(event)

    def _refresh_header(self) -> None:
        frame = getattr(self, "frame", None)
        if frame is not None and self.query("#header"):
            fmt.update_if_changed(self.query_one("#header", Static), self._header_text(frame))

    def _flush_pending(self) -> None:
        self.pacer.tick()
        if self._pending is not None and self.pacer.due():
            frame, self._pending = self._pending, None
            self.apply_frame(frame)

    def apply_frame(self, frame: Frame) -> None:
        """Update every panel from one frame, inside one batch."""
        self.pacer.applied()
        self.frame = frame
        self.frames_applied += 1
        with self.batch_update():
            fmt.update_if_changed(self.query_one("#header", Static), self._header_text(frame))
            table = self.query_one(AgentTable)
            names = tuple(t.name for t in frame.tiers)
            table.set_rows(frame.agents, names)
            self.query_one(AgentsHeader).show(names, table.sort_key, table.reverse, table.filter_mode,
                                              len(table.order), len(frame.agents), frame.stalled_agents,
                                              frame.agents_refresh_s)
            self.query_one(SloPanel).update_frame(frame)
            self.query_one(ContextPanel).update_frame(frame)
            self.query_one(PowerPanel).update_frame(frame)
            self.query_one(ServerPanel).update_frame(frame)
            self.query_one(SearchPanel).update_frame(frame)
            if isinstance(self.screen, TuneScreen):
                self.screen.update_frame(frame)
            self._log_pending.extend(frame.events)
            if frame.server.state == "failed" and not self._start_failure_shown:
                # the run never started: say why where the operator looks, until they quit
                self._start_failure_shown = True
                why = next((e for e in reversed(frame.events) if "server failed to start" in e),
                           "server failed to start (see the Log panel)")
                self.notify(why.split("server failed to start: ", 1)[-1] + "\nPress q to quit.",
                            title="server failed to start", severity="error", timeout=3600)

    def _flush_log(self) -> None:
        """Log lines go to the Log panel once a second: each write re-lays out the log."""
        if self._log_pending:
            panels = self.query(LogPanel)
            if not panels:  # the timer can fire once more while the app tears its screen down
                return
            lines, self._log_pending = self._log_pending[-LOG_LINES:], []
            self._log_all.extend(lines)
            log = panels.first()
            for line in lines:
                if self.log_server_lines or not is_server_line(line):
                    log.write(line)

    def action_toggle_server_log(self) -> None:
        """l: the Log shows the run's events only, or server log lines too (rebuilt from the buffer)."""
        self.log_server_lines = not self.log_server_lines
        self._flush_log()
        log = self.query_one(LogPanel)
        log.clear()
        for line in self._log_all:
            if self.log_server_lines or not is_server_line(line):
                log.write(line)
        self._title_log()
        self.notify("Log: events and server lines" if self.log_server_lines else "Log: events only", timeout=1.5)

    def _title_log(self) -> None:
        log = self.query_one(LogPanel)
        log.border_title = f"Log [6] · {'events + server lines' if self.log_server_lines else 'events'} (l)"

    def _header_text(self, frame: Frame) -> str:
        if getattr(self, "_narrow", False):  # a small terminal: what is running, no decoration
            parts = [f"server {frame.server.state}", f"agents {frame.active_agents}/{frame.target_agents}",
                     fmt.clock(frame.elapsed_s)]
        else:
            parts = [self.title_text, f"server {frame.server.state}",
                     f"agents {frame.active_agents}/{frame.target_agents} (in work {frame.in_work_agents})",
                     f"elapsed {fmt.clock(frame.elapsed_s)}",
                     f"recording {frame.recording}" if frame.recording else "not recording"]
        if frame.paused:
            parts.append("PAUSED")
        if self.pacer.paced:
            parts.append(self.pacer.describe())
        if self.replay:
            player = self.controller
            speed = getattr(player, "speed", 1.0)
            duration = getattr(player, "duration_s", 0.0) or 1.0
            position = getattr(player, "position_s", 0.0)
            filled = int(20 * min(1.0, position / duration))
            state = ("PAUSED" if getattr(player, "paused", False) else
                     "END" if getattr(player, "finished", False) else "PLAYING")
            parts.append(f"REPLAY {state} x{speed:g}" if speed else f"REPLAY {state} max speed")
            parts.append("[" + "#" * filled + "-" * (20 - filled) + f"] {fmt.clock(position)}/{fmt.clock(duration)}")
        return "  |  ".join(parts)

    # -- actions ------------------------------------------------------------------------------
    LIVE_ONLY = frozenset({"agents", "scale", "search", "abort_search"})
    REPLAY_ONLY = frozenset({"speed", "seek", "phase"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide live-only keys in replay and replay-only keys live (footer and palette follow)."""
        if action in self.LIVE_ONLY and self.replay:
            return False
        if action in self.REPLAY_ONLY and not self.replay:
            return False
        return True

    def action_agents(self, delta: int) -> None:
        if self.replay:
            return
        self.controller.change_target(lambda n: max(0, n + delta))

    def action_scale(self, factor: float) -> None:
        if self.replay:
            return
        self.controller.change_target(lambda n: max(1, int(round(n * factor))) if n else (1 if factor > 1 else 0))

    def action_pause(self) -> None:
        self.controller.toggle_pause()

    def action_search(self) -> None:
        if self.replay or not self.search_available or not hasattr(self.controller, "start_search"):
            self.notify("auto-search is not available here", severity="warning")
            return
        from agentperf_tui.engine.search_driver import SearchSettings

        self.controller.start_search(SearchSettings.for_mode("quick"))
        self.notify("auto-search started (quick mode)")

    def action_abort_search(self) -> None:
        if self.replay or not hasattr(self.controller, "abort_search"):
            self.notify("no live search to abort here", severity="warning")
            return
        if not getattr(self.controller, "searching", False):
            self.notify("no auto-search running", severity="warning")
            return
        self.controller.abort_search("aborted by operator")
        self.notify("auto-search: abort requested (the report will say stopped)")

    def action_sort(self) -> None:
        key = self.query_one(AgentTable).cycle_sort()
        self._refresh_agents_header()
        self.notify(f"agents sorted by {SORT_LABELS.get(key, key)}", timeout=1.5)

    def action_reverse(self) -> None:
        self.query_one(AgentTable).toggle_reverse()
        self._refresh_agents_header()

    def action_filter(self) -> None:
        mode = self.query_one(AgentTable).cycle_filter()
        self._refresh_agents_header()
        self.notify(f"agents filter: {mode}", timeout=1.5)

    def _refresh_agents_header(self) -> None:
        table = self.query_one(AgentTable)
        if self.frame is not None:
            self.query_one(AgentsHeader).show(table.tier_names, table.sort_key, table.reverse, table.filter_mode,
                                              len(table.order), len(self.frame.agents), self.frame.stalled_agents,
                                              self.frame.agents_refresh_s)

    def action_maximize(self, index: int) -> None:
        panel_id = PANELS[index]
        if self._maximized == panel_id:
            self.action_restore()
            return
        if self._maximized is not None:
            self.action_restore()
        panel = self.query_one(f"#{panel_id}")
        panel.styles.display = "block"  # a panel the small layout folds away is shown while maximized
        self.screen.maximize(panel, container=False)
        self._maximized = panel_id

    def action_restore(self) -> None:
        self.screen.minimize()
        if self._maximized is not None:
            self.query_one(f"#{self._maximized}").styles.clear_rule("display")
        self._maximized = None

    def on_resize(self, event: events.Resize) -> None:
        self._fit_layout(event.size.width, event.size.height)

    def _fit_layout(self, width: int, height: int) -> None:
        """Degrade by priority: tiers, validity and per-agent speed stay on screen at every size."""
        grid = self.query("#grid")
        if not grid:
            return
        tiny = width < 100 or height < 30
        grid.first().set_class(tiny, "tiny")
        compact = not tiny and (width < 160 or height < 45)
        grid.first().set_class(compact, "compact")
        self._narrow = width < 120
        self.query_one(SloPanel).compact = tiny or compact
        self.query_one(ServerPanel).compact = tiny or compact

    def action_speed(self, direction: int) -> None:
        if not self.replay:
            return
        (self.controller.faster if direction > 0 else self.controller.slower)()

    def action_seek(self, delta: float) -> None:
        if self.replay:
            self.controller.seek_relative(delta)

    def action_phase(self, direction: int) -> None:
        if self.replay:
            self.controller.seek_phase(direction)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_tune(self) -> None:
        """t: the Tune screen (knobs, apply, segments); read only in replay."""
        if not isinstance(self.screen, TuneScreen):
            self.push_screen(TuneScreen(self.controller, replay=self.replay))

    def action_quit_app(self) -> None:
        if getattr(self.controller, "load_running", False) and not self.replay:
            def answered(yes: bool | None) -> None:
                if yes:
                    self._stop_and_exit()

            self.push_screen(ConfirmQuit(), answered)
        else:
            self._stop_and_exit()

    def _stop_and_exit(self, code: int = 0, reason: str = "quit by operator") -> None:
        self.controller.request_stop(reason)
        self.exit(code, return_code=code)

    def action_quit(self) -> None:  # ctrl+q: an explicit quit, no question
        self._stop_and_exit()

    def action_help_quit(self) -> None:  # ctrl+c in the terminal: stop cleanly, exit 130
        self._stop_and_exit(130, "ctrl+c")

    def get_system_commands(self, screen: Screen) -> Any:
        yield from super().get_system_commands(screen)
        for title, help_text, action in (
            ("Agents +1", "add one agent", lambda: self.action_agents(1)),
            ("Agents -1", "remove one agent", lambda: self.action_agents(-1)),
            ("Agents +10", "add ten agents", lambda: self.action_agents(10)),
            ("Agents -10", "remove ten agents", lambda: self.action_agents(-10)),
            ("Agents x2", "double the agents", lambda: self.action_scale(2.0)),
            ("Agents /2", "halve the agents", lambda: self.action_scale(0.5)),
            ("Pause / resume load", "agents finish their turn and wait", self.action_pause),
            ("Start auto-search", "find the max agents per SLO tier", self.action_search),
            ("Abort auto-search", "stop the running search; its report says stopped", self.action_abort_search),
            ("Sort agents", "cycle the Agents table's sort column", self.action_sort),
            ("Filter agents", "all / failing / decode / tool", self.action_filter),
            ("Tune", "change a server setting, relaunch, compare segments (t)", self.action_tune),
            ("Help", "keys and metric definitions", self.action_help),
            ("Quit", "stop load and server, then quit", self.action_quit_app),
        ):
            yield SystemCommand(title, help_text, action)
