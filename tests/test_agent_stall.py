"""Time in state and stalls: the engine marks an agent whose request stopped making progress, every
front end shows it, and recordings made before the columns existed still replay."""

from __future__ import annotations

import asyncio
import time

from agentperf_tui.engine.agent import (
    STALL_DECODE_S,
    AgentState,
    first_token_stall_s,
    is_stalled,
)
from agentperf_tui.engine.agent_order import order_rows
from agentperf_tui.engine.client import StreamResult, Timeouts
from agentperf_tui.engine.frame_builder import build_frame
from agentperf_tui.engine.frames import Frame
from agentperf_tui.engine.session import RunOptions, ServerHandle, Session
from agentperf_tui.engine.slo import AA_DSV4_PRO_TIERS
from agentperf_tui.engine.worker_process import AGENT_FIELDS, _agent_row
from agentperf_tui.engine.workers import RemoteAgent
from agentperf_tui.headless import progress_line
from agentperf_tui.tui.app import AgentPerfApp
from agentperf_tui.tui.controller import NullController
from agentperf_tui.tui.help import METRICS
from agentperf_tui.tui.panels.agents import AgentsHeader, AgentTable
from agentperf_tui.tui.panels.server import ServerPanel

from .test_engine_loadgen import small_workload
from .tui_frames import make_frame


def test_the_stall_rule_per_state():
    limit = first_token_stall_s(300.0)
    assert limit == 75.0 and first_token_stall_s(4.0) == 10.0  # a share of the timeout, never tiny
    # decode: the clock is the latest bytes, not the first token
    assert is_stalled((0.0, 1.0), 50.0, 50.0 + STALL_DECODE_S + 0.1, limit)
    assert not is_stalled((0.0, 1.0), 50.0, 50.0 + STALL_DECODE_S - 0.1, limit)
    assert is_stalled((0.0, 1.0), None, 1.0 + STALL_DECODE_S + 0.1, limit)  # no bytes after the first token
    # waiting for the first token (bytes such as the role chunk do not count as progress)
    assert not is_stalled((0.0, None), 70.0, 74.0, limit)
    assert is_stalled((0.0, None), 70.0, 76.0, limit)
    # no request in flight (tool time, queued, paused) is never a stall
    assert not is_stalled(None, None, 1e9, limit)


def test_state_since_follows_the_request_and_survives_the_worker_snapshot():
    s = AgentState(7)
    created = s.changed_at
    s.state = "queued"  # the same state again: no new start
    assert s.changed_at == created and s.state_since == created
    s.current = StreamResult(t_send=100.0)
    assert s.live_state == "prefill" and s.state_since == 100.0 and s.last_progress is None
    s.current.t_recv = 100.5  # the role chunk: bytes, no token yet
    s.current.t_first = 101.0
    s.current.t_recv = 103.0
    assert s.live_state == "decode" and s.state_since == 101.0 and s.last_progress == 103.0
    remote = RemoteAgent(_agent_row(s))  # what a worker process reports to the main process
    assert remote.live_state == "decode" and remote.state_since == 101.0 and remote.last_progress == 103.0
    assert remote.in_flight == (100.0, 101.0)
    # the row's layout is AGENT_FIELDS on both sides (ray_shards moves its times by that layout too)
    assert _agent_row(s) == [getattr(s, name) for name in AGENT_FIELDS]
    assert [getattr(remote, name) for name in AGENT_FIELDS] == _agent_row(s)
    s.current = None
    s.state = "tool"
    assert s.state_since == s.changed_at >= created and s.last_progress is None


def _twin_session(frames: list[Frame]) -> Session:
    from aiohttp.test_utils import TestServer

    from agentperf_tui.twin.config import parse_twin_args
    from agentperf_tui.twin.server import TwinServer

    async def start(_session: Session) -> ServerHandle:
        # every stream stops for 60 s at half its tokens (the twin's stall fault), as a stuck server does
        args = parse_twin_args(["--hardware", "h200", "--tp", "8", "--tokenizer", "estimate",
                                "--fault-stall-rate", "1", "--fault-stall-s", "60"])
        server = TestServer(TwinServer(args).app(), host="127.0.0.1")
        await server.start_server()
        return ServerHandle(base_url=str(server.make_url("/")).rstrip("/"), model="m", gpus=8, dcgm_urls=[],
                            metrics_url=None, use_nvml=False, boundary="gpu", stop=server.close)

    options = RunOptions(agents=1, duration_s=None, frame_hz=10, ramp_s=0.1, settle_s=30.0,
                         timeouts=Timeouts(first_byte_s=300.0, chunk_s=120.0, total_s=600.0))
    return Session(profile_name="test", options=options, tiers=AA_DSV4_PRO_TIERS,
                   workload_loader=lambda: small_workload(turns=3, target=40, delay=0.05),
                   server_starter=start, sinks=[frames.append])


async def test_a_stream_the_server_stopped_is_flagged_stall_in_the_frame():
    frames: list[Frame] = []
    session = _twin_session(frames)
    task = asyncio.create_task(session.run())
    try:
        async def stuck() -> AgentState:
            while True:  # the twin stops after 20 of 40 tokens: the agent sits in decode with 20
                for a in (session.loadgen.agents.values() if session.loadgen else ()):
                    if a.current is not None and a.streamed_tokens >= 20:
                        return a
                await asyncio.sleep(0.05)

        agent = await asyncio.wait_for(stuck(), 20)
        now = time.monotonic()
        fresh = build_frame(session, now)
        assert fresh.agents.states == ("decode",) and fresh.agents.stalled == (False,)
        assert fresh.stalled_agents == 0
        assert fresh.agents.state_s[0] is not None and fresh.agents.state_s[0] < STALL_DECODE_S
        # the same agent seen past the decode limit (nothing can arrive: the twin holds it 60 s)
        assert agent.last_progress is not None
        later = build_frame(session, agent.last_progress + STALL_DECODE_S + 1)
        assert later.agents.stalled == (True,) and later.stalled_agents == 1
        assert later.agents.state_s[0] >= STALL_DECODE_S + 1
        assert "STALL 1 agents" in progress_line(later)
        back = Frame.from_dict(later.to_dict())  # the recording keeps it
        assert back.agents.stalled == (True,) and back.stalled_agents == 1
        assert back.agents.state_s == later.agents.state_s
    finally:
        session.request_stop("test over")
        await asyncio.wait_for(task, 20)


def _old_recording_frame() -> Frame:
    """A frame as recordings made before time in state and stalls were recorded."""
    data = make_frame(20).to_dict()
    data.pop("stalled_agents")
    for key in ("state_s", "stalled"):
        data["agents"].pop(key)
    return Frame.from_dict(data)


def test_recordings_without_the_columns_read_as_unknown_and_not_stalled():
    old = _old_recording_frame()
    assert old.stalled_agents == 0
    assert old.agents.state_s == (None,) * 20 and old.agents.stalled == (False,) * 20
    assert order_rows(old.agents, "id", filter_mode="stalled") == []
    assert len(order_rows(old.agents, "since")) == 20


def test_stalled_filter_and_state_sort_put_stalls_first():
    rows = make_frame(40).agents
    assert order_rows(rows, "id", filter_mode="stalled") == [4, 17]
    assert order_rows(rows, "state")[:2] == [4, 17]
    since = order_rows(rows, "since", reverse=True)
    assert since[:2] == [17, 4]


def _table_text(app: AgentPerfApp) -> list[str]:
    table = app.query_one(AgentTable)
    return [table.render_line(y).text for y in range(table.size.height)]


async def test_the_agents_table_shows_time_in_state_and_stall_beside_validity():
    app = AgentPerfApp(NullController())
    async with app.run_test(size=(200, 50)) as pilot:
        app.apply_frame(make_frame(40))
        await pilot.pause()
        lines = _table_text(app)
        row4 = next(line for line in lines if line.split()[:1] == ["4"])
        assert "STALL" in row4 and "97 s" in row4 and "5/24" in row4, row4
        row1 = next(line for line in lines if line.split()[:1] == ["1"])
        assert row1.split()[1:4] == ["decode", "8", "s"], row1
        assert "STALL" not in row1
        stall_style = app.query_one(AgentTable).get_component_rich_style("agents--stall")
        decode_style = app.query_one(AgentTable).get_component_rich_style("agents--decode")
        assert stall_style != decode_style and stall_style.reverse
        header = str(app.query_one(AgentsHeader).render())
        assert "in state" in header and "2 STALLED" in header
        server = str(app.query_one(ServerPanel).render())
        assert "STALL: 2 agent(s)" in server
        await pilot.press("f", "f", "f", "f")  # all -> failing -> decode -> tool -> stalled
        assert app.query_one(AgentTable).filter_mode == "stalled"
        assert app.query_one(AgentTable).order == [4, 17]


async def test_an_old_recording_replays_without_time_in_state():
    app = AgentPerfApp(NullController())
    async with app.run_test(size=(120, 40)) as pilot:
        app.apply_frame(_old_recording_frame())
        await pilot.pause()
        lines = _table_text(app)
        assert lines[0].split()[:3] == ["0", "decode", "-"], lines[0]
        assert not any("STALL" in line for line in lines)
        assert "STALL" not in str(app.query_one(ServerPanel).render())


def test_help_defines_time_in_state_and_stall():
    assert "in state" in METRICS and "STALL" in METRICS
    assert f"{STALL_DECODE_S:.0f} s" in METRICS and "75 s with the default timeout" in METRICS
