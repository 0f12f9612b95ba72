"""The OpenAI SDK, as a third-party client written against SGLang's OpenAI API, talks to the twin:
streaming with usage, tool calls, the model echoed, errors raised as the SDK's own exceptions."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer

from agentperf_tui.twin.config import parse_twin_args
from agentperf_tui.twin.server import TwinServer

openai = pytest.importorskip("openai")

TOOLS = [{"type": "function", "function": {"name": "bash", "description": "run a command",
                                            "parameters": {"type": "object",
                                                           "properties": {"cmd": {"type": "string"}}}}}]


async def test_openai_sdk_streams_usage_and_tool_calls_from_the_twin() -> None:
    config = parse_twin_args(["--hardware", "h200", "--tp", "8", "--enable-cache-report", "--tool-call-parser",
                              "deepseekv4", "--tool-call-rate", "1", "--api-key", "k"])
    server = TestServer(TwinServer(config).app(), host="127.0.0.1")
    await server.start_server()
    try:
        client = openai.AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key="k")
        models = await client.models.list()
        assert [m.id for m in models.data] == ["deepseek-ai/DeepSeek-V4-Pro"]
        stream = await client.chat.completions.create(
            model="deepseek-ai/DeepSeek-V4-Pro", messages=[{"role": "user", "content": "list the files"}],
            max_tokens=48, tools=TOOLS, stream=True, stream_options={"include_usage": True},
            extra_body={"ignore_eos": False})
        chunks = [chunk async for chunk in stream]
        assert {c.model for c in chunks} == {"deepseek-ai/DeepSeek-V4-Pro"}
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens >= 1 and usage.prompt_tokens > 0
        assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0
        calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        assert calls and calls[0].function.name == "bash"
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["tool_calls"]
        with pytest.raises(openai.AuthenticationError):
            await openai.AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key="wrong").models.list()
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="m", messages=[], max_tokens=4)
        await client.close()
    finally:
        await server.close()
