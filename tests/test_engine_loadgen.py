"""Client and agents against an in-process twin: timing, growing context, target changes, failures."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agentperf_tui.engine.agent import salted
from agentperf_tui.engine.client import Timeouts, make_session, stream_chat
from agentperf_tui.engine.loadgen import LoadGenerator
from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.twin.config import parse_twin_args
from agentperf_tui.twin.server import TwinServer
from agentperf_tui.workload.model import Trajectory, Turn, Workload


def small_workload(turns: int = 4, target: int = 12, delay: float = 0.05) -> Workload:
    messages: list[dict] = [{"role": "system", "content": "You are an agent. " * 50},
                            {"role": "user", "content": "Do the task. " * 20}]
    out = []
    for k in range(turns):
        assistant = {"role": "assistant", "content": f"step {k} " * 10}
        out.append(Turn(tuple(messages), target, delay, None, None, assistant))
        messages = messages + [assistant, {"role": "tool", "content": f"result {k} " * 40}]
    return Workload("small", (Trajectory("traj-1", tuple(out)),))


async def start_twin_server(*flags: str) -> TestServer:
    config = parse_twin_args(["--hardware", "h200", "--tp", "8", "--enable-metrics", "--enable-cache-report", *flags])
    server = TestServer(TwinServer(config).app(), host="127.0.0.1")
    await server.start_server()
    return server


async def test_stream_chat_measures_ttft_speed_and_usage():
    server = await start_twin_server()
    try:
        async with make_session() as session:
            body = {"messages": [{"role": "user", "content": "hi " * 100}], "max_tokens": 40, "ignore_eos": True,
                    "stream": True, "stream_options": {"include_usage": True}}
            result = await stream_chat(session, str(server.make_url("/v1/chat/completions")), body)
    finally:
        await server.close()
    assert result.error is None
    assert result.completion_tokens == 40
    assert result.t_send < result.t_first <= result.t_last <= result.t_end
    assert result.finish_reason == "length"


async def test_stream_chat_turns_http_errors_and_refused_connections_into_causes():
    server = await start_twin_server()
    try:
        async with make_session() as session:
            url = str(server.make_url("/v1/chat/completions"))
            bad = await stream_chat(session, url, {"messages": [], "stream": True})
            assert bad.error is not None and bad.error.startswith("HTTP 400")
            refused = await stream_chat(session, "http://127.0.0.1:9/v1/chat/completions",
                                        {"messages": [{"role": "user", "content": "x"}]})
            assert refused.error is not None and "connect" in refused.error
    finally:
        await server.close()


async def test_stream_chat_times_out_waiting_for_first_byte():
    async def stall(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stall)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with make_session() as session:
            result = await stream_chat(session, str(server.make_url("/v1/chat/completions")), {"messages": []},
                                       Timeouts(first_byte_s=0.3, chunk_s=0.3, total_s=2))
    finally:
        await server.close()
    assert result.error == "timeout waiting for first byte"


def test_salt_marks_only_a_copy_of_the_first_message():
    original = ({"role": "system", "content": "sys"}, {"role": "user", "content": "u"})
    out = salted(original, "abc")
    assert out[0]["content"] == "[session abc] sys"
    assert original[0]["content"] == "sys"
    assert out[1] is original[1]


async def test_agents_replay_exact_turns_with_growing_context_and_follow_target_changes():
    server = await start_twin_server()
    records: list[RequestRecord] = []
    workload = small_workload()
    lg = LoadGenerator(workload, base_url=str(server.make_url("/")), model="m", ramp_s=0.2,
                       on_record=records.append)
    try:
        lg.set_target(3)
        await asyncio.sleep(1.5)
        assert lg.active == 3
        lg.set_target(1)  # two retire after their current turn
        await asyncio.sleep(1.5)
        assert lg.active == 1
        assert len(lg.agents) == 1
        lg.set_target(4)
        await asyncio.sleep(1.0)
        assert lg.active == 4
    finally:
        await lg.stop()
        await server.close()
    assert records and all(r.ok for r in records), [r.cause for r in records if not r.ok]
    assert all(r.output_tokens == r.target_tokens == 12 for r in records)
    by_agent: dict[int, list[RequestRecord]] = {}
    for r in records:
        by_agent.setdefault(r.agent_id, []).append(r)
    grew = 0
    for rows in by_agent.values():
        for a, b in zip(rows, rows[1:], strict=False):
            if b.turn_index == a.turn_index + 1:
                assert b.prompt_tokens > a.prompt_tokens  # context grows every turn
                # and reuses the prefix (all of it but the generation prompt's 2 tokens, see test_twin_model)
                assert b.cached_tokens and b.cached_tokens >= a.prompt_tokens - 3
                grew += 1
    assert grew >= 3


@pytest.mark.parametrize("policy", ["free"])
async def test_free_policy_sends_the_models_own_answer_forward(policy):
    server = await start_twin_server()
    records: list[RequestRecord] = []
    lg = LoadGenerator(small_workload(turns=3), base_url=str(server.make_url("/")), model="m", policy=policy,
                       ramp_s=0.0, on_record=records.append)
    try:
        lg.set_target(1)
        await asyncio.sleep(1.5)
    finally:
        await lg.stop()
        await server.close()
    assert len(records) >= 2
    assert all(r.ok for r in records)


def test_fast_block_path_counts_like_full_parsing():
    from agentperf_tui.engine.client import StreamResult, _handle_block

    def ev(delta: dict, finish=None, usage=None) -> bytes:
        import orjson

        chunk = {"id": "x", "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
                 "usage": usage}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    block = (ev({"role": "assistant", "content": ""}) + ev({"reasoning_content": "thinking"})
             + ev({"content": " tok"}) * 5 + ev({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})
             + ev({}, finish="length") + ev({}, usage={"prompt_tokens": 3, "completion_tokens": 7})
             + b"data: [DONE]\n\n")
    fast, full = StreamResult(t_send=0.0), StreamResult(t_send=0.0, keep_text=True)
    assert _handle_block(fast, block, 1.0) is True
    assert _handle_block(full, block, 1.0) is True
    assert fast.counted_deltas == full.counted_deltas == 7
    assert fast.completion_tokens == full.completion_tokens == 7
    assert fast.finish_reason == full.finish_reason == "length"
    assert fast.t_first == full.t_first == 1.0


async def test_cancel_surplus_drops_retiring_agents_at_once():
    server = await start_twin_server()
    records: list[RequestRecord] = []
    lg = LoadGenerator(small_workload(target=400), base_url=str(server.make_url("/")), model="m", ramp_s=0.0,
                       on_record=records.append)
    try:
        lg.set_target(4)
        await asyncio.sleep(0.5)  # every agent is mid-request (400 tokens take seconds)
        lg.set_target(1, cancel_surplus=True)
        await asyncio.sleep(0.1)
        assert len(lg.agents) == 1
    finally:
        await lg.stop()
        await server.close()


async def test_warm_start_joins_the_first_trajectory_at_a_random_turn_then_starts_the_next_at_turn_one():
    server = await start_twin_server()
    records: list[RequestRecord] = []
    workload = small_workload(turns=10, target=4, delay=0.01)
    lg = LoadGenerator(workload, base_url=str(server.make_url("/")), model="m", ramp_s=0.0, seed=3,
                       on_record=records.append, warm_start=True)
    try:
        lg.set_target(12)
        await asyncio.sleep(2.5)
    finally:
        await lg.stop()
        await server.close()
    first_turns = {}
    for r in records:
        first_turns.setdefault(r.agent_id, r.turn_index)
    assert len(first_turns) == 12
    assert len(set(first_turns.values())) >= 4  # joined at different turns, not all at turn 1
    late = [aid for aid, turn in first_turns.items() if turn >= 5]
    assert late, first_turns
    # a late joiner's first request carries that turn's whole context (nothing cached yet) ...
    for r in records:
        if r.agent_id in late and r.turn_index == first_turns[r.agent_id]:
            assert r.prompt_tokens > 600 and not r.cached_tokens  # turn 1 is ~300 tokens
    # ... and after the last turn the agent starts its next trajectory from the beginning
    wrapped = [r for r in records if r.agent_id in late and r.turn_index == 0]
    assert wrapped, "no late joiner finished its first trajectory"
