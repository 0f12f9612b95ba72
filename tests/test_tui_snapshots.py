"""SVG snapshots of the dashboard fed synthetic frames (deterministic: no clock on screen)."""

from __future__ import annotations

from agentperf_tui.tui.app import AgentPerfApp
from agentperf_tui.tui.controller import NullController

from .tui_frames import make_frame

SEARCH = {"mode": "quick", "done": False, "eta_s": 420.0, "elapsed_s": 300.0,
          "current": {"agents": 48, "stage": "measuring"},
          "brackets": [{"name": "tier1", "lo": 32, "hi": 64}, {"name": "tier2", "lo": 8, "hi": 16},
                       {"name": "tier3", "lo": 0, "hi": 8}],
          "phases": [{"agents": n, "duration_s": 41.0, "valid": True,
                      "tiers": [{"name": "tier1", "pass": n <= 32}, {"name": "tier2", "pass": n <= 8},
                                {"name": "tier3", "pass": False}]} for n in (8, 16, 32, 64)]}


def test_dashboard_snapshot(snap_compare):
    app = AgentPerfApp(NullController(), title="agentperf-tui - twin-h200")

    async def run_before(pilot):
        app.apply_frame(make_frame(40, search=SEARCH))
        app._flush_log()  # log lines reach the panel once a second; flush now for a stable picture
        await pilot.pause()

    assert snap_compare(app, terminal_size=(200, 50), run_before=run_before)


def test_help_screen_snapshot(snap_compare):
    app = AgentPerfApp(NullController())

    async def run_before(pilot):
        app.apply_frame(make_frame(5))
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(200, 50), run_before=run_before)


class _ReplayStub:
    """What the dashboard reads from a ReplayPlayer (position, speed, duration)."""

    load_running = False
    speed = 2.0
    duration_s = 3600.0
    position_s = 1800.0
    paused = False

    def request_stop(self, reason: str = "") -> None:
        pass


def test_replay_dashboard_snapshot(snap_compare):
    app = AgentPerfApp(_ReplayStub(), title="agentperf-tui replay - twin-h200", replay=True)

    async def run_before(pilot):
        app.apply_frame(make_frame(12))
        app._flush_log()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(200, 50), run_before=run_before)
