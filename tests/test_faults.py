"""Every injected fault becomes a failed request with a cause; the twin and the run survive."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from agentperf_tui.engine.client import Timeouts, make_session, stream_chat
from agentperf_tui.server.probe import wait_ready
from agentperf_tui.twin.config import parse_twin_args
from agentperf_tui.twin.server import TwinServer

BODY = {"messages": [{"role": "user", "content": "hello " * 20}], "max_tokens": 40, "ignore_eos": True,
        "stream": True, "stream_options": {"include_usage": True}}


async def twin_with(*flags: str) -> TestServer:
    server = TestServer(TwinServer(parse_twin_args(["--hardware", "h200", "--tp", "8", *flags])).app(),
                        host="127.0.0.1")
    await server.start_server()
    return server


@pytest.mark.parametrize(("flags", "cause"), [
    (["--fault-http-error-rate", "1", "--fault-http-status", "503"], "HTTP 503"),
    (["--fault-http-error-rate", "1", "--fault-http-status", "429"], "HTTP 429"),
    (["--fault-http-error-rate", "1", "--fault-http-status", "500"], "HTTP 500"),
    (["--fault-malformed-rate", "1"], "malformed SSE data"),
    (["--fault-truncate-rate", "1"], ""),
    (["--fault-stall-rate", "1", "--fault-stall-s", "3"], "timeout waiting for next chunk"),
    (["--fault-reset-rate", "1"], ""),
])
async def test_each_fault_is_a_failed_request_with_a_cause(flags, cause):
    server = await twin_with(*flags)
    try:
        async with make_session() as pool, aiohttp.ClientSession() as session:
            url = str(server.make_url("/v1/chat/completions"))
            result = await stream_chat(pool, url, BODY, Timeouts(first_byte_s=5, chunk_s=0.5, total_s=10))
            assert result.error, "the fault must fail the request"
            assert cause in result.error
            # the twin keeps serving after the fault
            async with session.get(str(server.make_url("/health"))) as resp:
                assert resp.status == 200
    finally:
        await server.close()


async def test_faults_change_at_run_time_from_loopback():
    server = await twin_with()
    try:
        async with make_session() as pool, aiohttp.ClientSession() as session:
            url = str(server.make_url("/v1/chat/completions"))
            assert (await stream_chat(pool, url, BODY)).error is None
            async with session.post(str(server.make_url("/twin/faults")), json={"http_error_rate": 1.0}) as r:
                assert r.status == 200
            assert (await stream_chat(pool, url, BODY)).error.startswith("HTTP 503")
            async with session.post(str(server.make_url("/twin/faults")), json={"nonsense": 1}) as r:
                assert r.status == 400 and "unknown fault" in (await r.json())["message"]
    finally:
        await server.close()


async def test_slow_health_generate_shows_progress_until_ready():
    server = await twin_with("--fault-health-delay-s", "30")
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if len(notes) == 1:  # the operator sees the wait; then the server recovers
            asyncio.get_running_loop().create_task(clear_delay())

    async def clear_delay() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.post(str(server.make_url("/twin/faults")), json={"health_delay_s": 0}) as r:
                assert r.status == 200

    try:
        served = await asyncio.wait_for(
            wait_ready(str(server.make_url("/")).rstrip("/"), "deepseek-ai/DeepSeek-V4-Pro", 30, note,
                       progress_every_s=0.5), 35)
    finally:
        await server.close()
    assert served == "deepseek-ai/DeepSeek-V4-Pro"
    assert notes and "/health_generate" in notes[0]
