"""SVG snapshots of the dashboard fed synthetic frames (deterministic: no clock on screen)."""

from __future__ import annotations

import pytest

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


def _invalid(frame):
    import dataclasses

    return dataclasses.replace(frame, client=dataclasses.replace(
        frame.client, valid=False, invalid_reasons=("client loop lag 240 ms > 100 ms",)))


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_small_dashboard_snapshots_keep_tiers_validity_and_agent_speeds(snap_compare, size):
    app = AgentPerfApp(NullController(), title="agentperf-tui - twin-h200")

    async def run_before(pilot):
        app.apply_frame(_invalid(make_frame(40, search=SEARCH)))
        app._flush_log()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


async def test_small_layouts_show_what_matters_and_fold_the_rest_one_key_away():
    from agentperf_tui.tui.panels.agents import AgentsHeader
    from agentperf_tui.tui.panels.server import ServerPanel
    from agentperf_tui.tui.panels.slo import SloPanel

    for size, folded in (((120, 40), {"context-panel"}),
                         ((80, 24), {"context-panel", "power-panel", "search-panel", "log-panel"})):
        app = AgentPerfApp(NullController(), title="agentperf-tui - twin-h200")
        async with app.run_test(size=size) as pilot:
            app.apply_frame(_invalid(make_frame(40, search=SEARCH)))
            await pilot.pause()
            for panel_id in ("agents-panel", "slo-panel", "server-panel"):
                w = app.query_one(f"#{panel_id}")
                assert w.display and w.region.height >= 4, (size, panel_id, w.region)
            assert "CLIENT INVALID" in str(app.query_one(ServerPanel).render())
            slo = app.query_one(SloPanel)
            for i, name in enumerate(("tier1", "tier2", "tier3")):
                line = app.query_one(f"#slo-text-{i}")
                assert name in str(line.render()) and "tok/s" in str(line.render())
                assert slo.content_region.contains_region(line.region), (size, name, line.region)
            header = str(app.query_one(AgentsHeader).render())
            assert "tok/s" in header and "avg tok/s" in header and "TTFT" in header, header
            table = app.query_one("#agents-table")
            assert table.region.width >= 76, (size, table.region)  # every column, T1-T3 included
            hidden = {p for p in ("context-panel", "power-panel", "search-panel", "log-panel")
                      if not app.query_one(f"#{p}").display}
            assert hidden == folded, (size, hidden)
            await pilot.press("7")  # the Search panel (folded at 80x24), maximized, is on screen
            await pilot.pause()
            assert app.query_one("#search-panel").display
            await pilot.press("7")
            await pilot.pause()
            assert ("search-panel" in folded) != bool(app.query_one("#search-panel").display)
