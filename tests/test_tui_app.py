"""Dashboard behaviour with pilot: keys drive the controller, quit confirms, panels show frames."""

from __future__ import annotations

from agentperf_tui.engine.agent_order import order_rows
from agentperf_tui.tui.app import AgentPerfApp
from agentperf_tui.tui.controller import NullController
from agentperf_tui.tui.panels.agents import AgentTable
from agentperf_tui.tui.panels.server import ServerPanel

from .tui_frames import make_frame


async def test_keys_change_the_target():
    controller = NullController(target=8)
    app = AgentPerfApp(controller)
    async with app.run_test(size=(200, 50)) as pilot:
        app.apply_frame(make_frame(8))
        await pilot.press("plus")
        assert controller.target == 9
        await pilot.press("minus", "minus")
        assert controller.target == 7
        await pilot.press("right_square_bracket")
        assert controller.target == 17
        await pilot.press("left_square_bracket")
        assert controller.target == 7
        await pilot.press("asterisk")
        assert controller.target == 14
        await pilot.press("slash")
        assert controller.target == 7
        await pilot.press("p")
        assert ("pause", None) in controller.calls


async def test_quit_asks_while_load_runs_n_cancels_y_stops_and_exits():
    controller = NullController(load_running=True)
    app = AgentPerfApp(controller)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.press("q")
        assert type(app.screen).__name__ == "ConfirmQuit"
        await pilot.press("n")
        assert type(app.screen).__name__ != "ConfirmQuit"
        assert controller.load_running
        await pilot.press("q")
        await pilot.press("y")
        await pilot.pause()
    assert ("stop", "quit by operator") in controller.calls
    assert app.return_value == 0


async def test_quit_without_load_exits_at_once():
    controller = NullController(load_running=False)
    app = AgentPerfApp(controller)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 0


async def test_search_key_starts_search_only_when_available():
    controller = NullController()
    app = AgentPerfApp(controller, search_available=False)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.press("s")
        assert ("search", "quick") not in controller.calls
    app = AgentPerfApp(controller, search_available=True)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.press("s")
        assert ("search", "quick") in controller.calls


async def test_abort_key_stops_a_running_search_and_only_then():
    controller = NullController()
    app = AgentPerfApp(controller, search_available=True)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.press("x")  # nothing running: a warning, no call
        assert not any(name == "abort_search" for name, _ in controller.calls)
        await pilot.press("s")
        await pilot.press("x")
        assert ("abort_search", "aborted by operator") in controller.calls


async def test_number_key_maximizes_a_panel_and_escape_restores():
    app = AgentPerfApp(NullController())
    async with app.run_test(size=(200, 50)) as pilot:
        app.apply_frame(make_frame(10))
        await pilot.press("1")
        assert app.screen.maximized is not None and app.screen.maximized.id == "agents-panel"
        await pilot.press("escape")
        assert app.screen.maximized is None


async def test_sort_and_filter_keys_reorder_the_agents_model():
    app = AgentPerfApp(NullController())
    frame = make_frame(60)
    async with app.run_test(size=(200, 50)) as pilot:
        app.apply_frame(frame)
        table = app.query_one(AgentTable)
        assert table.order == list(range(60))
        await pilot.press("o")  # sort by state
        assert table.sort_key == "state"
        assert table.order == order_rows(frame.agents, "state")
        await pilot.press("f")  # failing agents only
        assert table.filter_mode == "failing"
        rows = frame.agents
        assert all(rows.tier_pass[i][0] is False or rows.failures[i] > 0 for i in table.order)
        assert 0 < len(table.order) < 60
        # not every agent below the strictest tier: those that hold tier 1 and never failed are left out
        assert any(any(p is False for p in rows.tier_pass[i]) for i in range(60) if i not in table.order)


async def test_invalid_client_window_is_shown():
    app = AgentPerfApp(NullController())
    async with app.run_test(size=(200, 50)) as pilot:
        app.apply_frame(make_frame(5, valid=False))
        await pilot.pause()
        panel = app.query_one(ServerPanel)
        assert panel.has_class("invalid")
        assert "CLIENT INVALID" in str(panel.render())


async def test_frames_replace_pending_frames_and_fps_caps_refresh():
    app = AgentPerfApp(NullController(), fps=2)
    async with app.run_test(size=(200, 50)) as pilot:
        for seq in range(1, 30):
            app.frame_sink(make_frame(20, seq=seq))
        await pilot.pause(0.8)
        assert app.frame is not None and app.frame.seq == 29  # the latest frame wins
        assert app.frames_applied < 10  # far fewer than 29 applications


def test_order_rows_sorts_missing_last_and_filters():
    frame = make_frame(30)
    order = order_rows(frame.agents, "tps", reverse=True)
    values = [frame.agents.last_tps[i] for i in order]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True)
    assert values[-1] is None
    decode = order_rows(frame.agents, "id", filter_mode="decode")
    assert decode and all(frame.agents.states[i] == "decode" for i in decode)


async def test_signal_and_ctrl_c_stop_the_load_and_exit_with_signal_codes():
    import signal

    controller = NullController()
    app = AgentPerfApp(controller)
    async with app.run_test(size=(200, 50)) as pilot:
        app._on_signal(signal.SIGTERM, 143)
        await pilot.pause()
    assert ("stop", "signal SIGTERM") in controller.calls
    assert app.return_code == 143
    controller = NullController()
    app = AgentPerfApp(controller)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause()
    assert ("stop", "ctrl+c") in controller.calls
    assert app.return_code == 130


async def test_search_panel_shows_a_stopped_search_and_undecided_verdicts():
    from agentperf_tui.tui.panels.search import SearchPanel

    from .tui_frames import make_frame

    search = {"mode": "quick", "status": "stopped", "stopped": "aborted by operator", "done": False, "eta_s": 60,
              "current": None, "brackets": [{"name": "tier1", "lo": 32, "hi": 64, "hi_verdict": "undecided",
                                             "resolved": False}],
              "phases": [{"agents": 64, "duration_s": 80.0, "valid": True, "status": "valid",
                          "tiers": [{"name": "tier1", "pass": False, "verdict": "undecided"}]}]}
    app = AgentPerfApp(NullController())
    async with app.run_test(size=(200, 50)) as pilot:
        app.apply_frame(make_frame(5, search=search))
        await pilot.pause()
        text = app.query_one(SearchPanel)._agentperf_last
    assert "stopped: aborted by operator" in text and "ETA" not in text
    assert "max 32 agents (undecided at 64)" in text and "1:?" in text


async def test_a_server_that_failed_to_start_is_an_error_state_not_a_frozen_starting():
    import dataclasses

    controller = NullController(load_running=False)
    app = AgentPerfApp(controller)
    frame = make_frame(0)
    frame = dataclasses.replace(
        frame, server=dataclasses.replace(frame.server, state="failed"),
        events=("server failed to start: server at http://127.0.0.1:1 not ready after 2 s: "
                "/health_generate -> connection refused",))
    async with app.run_test(size=(200, 50)) as pilot:
        app.apply_frame(frame)
        await pilot.pause()
        notes = list(app._notifications)
        assert len(notes) == 1 and notes[0].severity == "error"
        assert "connection refused" in notes[0].message and "http://127.0.0.1:1" in notes[0].message
        assert "FAILED" in str(app.query_one(ServerPanel).render())
        app.apply_frame(frame)  # said once, not once per frame
        await pilot.pause()
        assert len(list(app._notifications)) == 1


async def test_server_chatter_stays_out_of_the_log_until_asked_for():
    import dataclasses

    from agentperf_tui.tui.app import LogPanel

    app = AgentPerfApp(NullController())
    events = ("12:00:01 agents target 8 -> 16",) + tuple(
        f"12:00:{i:02d} [twin] Decode batch. #running-req: 16" for i in range(2, 40)) + (
        "12:00:41 search phase 16 agents: tier1 pass",)
    async with app.run_test(size=(200, 50)) as pilot:
        app.apply_frame(dataclasses.replace(make_frame(5), events=events))
        app._flush_log()
        await pilot.pause()
        log = app.query_one(LogPanel)
        text = "\n".join(line.text for line in log.lines)
        assert "agents target 8 -> 16" in text and "search phase 16 agents" in text
        assert "Decode batch" not in text and "events (l)" in str(log.border_title)
        await pilot.press("l")
        await pilot.pause()
        text = "\n".join(line.text for line in log.lines)
        assert text.count("Decode batch") == 38 and "events + server lines" in str(log.border_title)


async def test_the_agent_table_repaints_the_lines_whose_agent_changed_and_only_those():
    import dataclasses

    app = AgentPerfApp(NullController())
    async with app.run_test(size=(200, 50)) as pilot:
        first = make_frame(40)
        app.apply_frame(first)
        await pilot.pause()
        table = app.query_one(AgentTable)
        repainted: list[int] = []
        table.refresh_line = lambda index: repainted.append(index)  # type: ignore[method-assign]
        rows = first.agents
        ttft = list(rows.last_ttft_s)
        ttft[5] = 77.77  # agent 5's last TTFT changed; nothing else did
        app.apply_frame(dataclasses.replace(first, seq=2, agents=dataclasses.replace(rows, last_ttft_s=tuple(ttft))))
        await pilot.pause()
        assert repainted == [table.order.index(5)]
        del table.refresh_line  # the real repaint: the new value reaches the screen
        ttft[6] = 66.66
        app.apply_frame(dataclasses.replace(first, seq=3, agents=dataclasses.replace(rows, last_ttft_s=tuple(ttft))))
        await pilot.pause()
        assert "66.66" in app.export_screenshot() and "77.77" in app.export_screenshot()
