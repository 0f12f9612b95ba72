"""HTTP contract of the twin: SGLang endpoints, OpenAI SSE chunks, usage, ignore_eos, errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from agentperf_tui.twin.config import parse_twin_args
from agentperf_tui.twin.server import TwinServer

from .conftest import TwinProcess


def make_client(*flags: str, cache_report: bool = True) -> TestClient:
    config = parse_twin_args(["--hardware", "h200", "--tp", "8", "--enable-metrics",
                              *(["--enable-cache-report"] if cache_report else []), *flags])
    return TestClient(TestServer(TwinServer(config).app()))


async def read_sse(resp) -> tuple[list[dict], bool]:
    """All JSON chunks of an SSE body and whether it ended with [DONE]."""
    chunks, done = [], False
    async for raw in resp.content:
        line = raw.decode().strip()
        if not line:
            continue
        assert line.startswith("data: "), line
        payload = line[6:]
        if payload == "[DONE]":
            done = True
            continue
        chunks.append(orjson.loads(payload))
    return chunks, done


def chat_body(content: str = "hello", max_tokens: int = 64, **extra) -> dict:
    return {"model": "deepseek-ai/DeepSeek-V4-Pro", "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}, **extra}


async def test_stream_ignore_eos_yields_exactly_max_tokens_then_usage_chunk():
    async with make_client("--speculative-algorithm", "EAGLE", "--speculative-num-steps", "1",
                           "--speculative-num-draft-tokens", "2") as client:
        resp = await client.post("/v1/chat/completions", json=chat_body(max_tokens=64))
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        chunks, done = await read_sse(resp)
    assert done
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len(text) == 64 * 4  # 4 characters per simulated token
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["length"]
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert usage["completion_tokens"] == 64
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + 64
    assert "cached_tokens" in usage["prompt_tokens_details"]


async def test_no_usage_chunk_without_include_usage():
    async with make_client() as client:
        body = chat_body(max_tokens=5)
        body.pop("stream_options")
        chunks, done = await read_sse(await client.post("/v1/chat/completions", json=body))
    assert done
    assert all(c["usage"] is None for c in chunks)


async def test_non_streaming_completion_has_message_and_usage():
    async with make_client() as client:
        body = chat_body(max_tokens=12)
        body["stream"] = False
        resp = await client.post("/v1/chat/completions", json=body)
        data = await resp.json()
    assert data["object"] == "chat.completion"
    assert data["usage"]["completion_tokens"] == 12
    assert data["choices"][0]["finish_reason"] == "length"
    assert len(data["choices"][0]["message"]["content"]) == 48


async def test_thinking_request_streams_reasoning_content_with_a_reasoning_parser():
    async with make_client("--reasoning-parser", "deepseek-v4", "--reasoning-share", "0.5") as client:
        body = chat_body(max_tokens=40, chat_template_kwargs={"thinking": True})
        chunks, _ = await read_sse(await client.post("/v1/chat/completions", json=body))
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks if c["choices"])
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len(reasoning) == 20 * 4
    assert len(content) == 20 * 4


async def test_offered_tools_produce_tool_call_deltas_with_valid_json_arguments():
    tools = [{"type": "function", "function": {"name": "run_tests", "parameters": {"type": "object"}}}]
    async with make_client("--tool-call-rate", "1.0") as client:
        body = chat_body(max_tokens=60, tools=tools)
        body["ignore_eos"] = False
        body["max_tokens"] = 4000
        chunks, _ = await read_sse(await client.post("/v1/chat/completions", json=body))
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls, "expected tool_calls deltas"
    assert calls[0]["function"]["name"] == "run_tests"
    assert calls[0]["id"].startswith("call_")
    arguments = "".join(tc["function"].get("arguments", "") for tc in calls)
    assert isinstance(orjson.loads(arguments), dict)
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["tool_calls"]


@pytest.mark.parametrize(
    ("raw", "status", "needle"),
    [
        (b"{not json", 400, "Invalid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (orjson.dumps({"model": "m"}), 400, "messages"),
        (orjson.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}), 400, "max_tokens"),
        (orjson.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": -5}), 400, "max_tokens"),
        (orjson.dumps({"messages": [{"role": "user", "content": " ".join(f"word{i}" for i in range(9000))}],
                       "max_tokens": 10}), 400, "maximum context length"),
        (orjson.dumps({"messages": ["not a message"], "max_tokens": 3}), 400, "messages[0]"),
    ],
    ids=["bad-json", "not-object", "no-messages", "max-tokens-0", "max-tokens-negative", "over-context",
         "message-not-object"],
)
async def test_bad_requests_get_openai_error_shape_and_server_survives(raw, status, needle):
    """(Each case's id is its needle: pytest would otherwise print the whole body.)"""
    async with make_client("--context-length", "8192") as client:
        resp = await client.post("/v1/chat/completions", data=raw, headers={"Content-Type": "application/json"})
        assert resp.status == status
        body = await resp.json()
        assert body["object"] == "error"
        assert body["code"] == status
        assert needle in body["message"]
        assert (await client.get("/health_generate")).status == 200


async def test_models_server_info_model_info_and_flush_cache():
    """SGLang 0.5.23's shapes: ServerArgs field names and extras in /server_info, every /model_info
    field, /v1/models and /v1/models/{id} cards; a real SGLang flag the twin does not model is
    accepted and reported, not silently dropped."""
    async with make_client("--enable-hierarchical-cache") as client:
        models = await (await client.get("/v1/models")).json()
        assert models["data"][0]["id"] == "deepseek-ai/DeepSeek-V4-Pro" and models["data"][0]["owned_by"] == "sglang"
        card = await client.get("/v1/models/deepseek-ai/DeepSeek-V4-Pro")
        assert card.status == 200 and (await card.json())["max_model_len"] == models["data"][0]["max_model_len"]
        missing = await client.get("/v1/models/other")
        assert missing.status == 404 and (await missing.json())["error"]["code"] == "model_not_found"
        info = await (await client.get("/server_info")).json()
        for key in ("tp_size", "dp_size", "attn_dp_size", "ep_size", "max_running_requests", "chunked_prefill_size",
                    "random_seed", "launch_command", "max_total_num_tokens", "max_req_input_len", "internal_states",
                    "version", "status", "startup_time"):
            assert key in info, key
        assert info["tp_size"] == 8 and info["attn_dp_size"] == 1 and info["twin"]["hardware"] == "h200"
        assert info["max_running_requests"] == 256  # DeepSeek-V4's default per worker
        assert info["chunked_prefill_size"] == 8192  # H200: below SGLang's 160 GiB tier
        assert info["internal_states"][0]["effective_max_running_requests_per_dp"] == 256
        assert info["twin"]["not_modelled_args"] == ["--enable-hierarchical-cache"]
        assert info["version"].startswith("twin-")  # the twin says what it is
        assert (await (await client.get("/get_server_info")).json())["tp_size"] == 8
        model_info = await (await client.get("/model_info")).json()
        assert set(model_info) >= {"model_path", "served_model_name", "tokenizer_path", "is_generation",
                                   "preferred_sampling_params", "weight_version", "load_format", "reasoning_parser",
                                   "tool_call_parser", "disaggregation_mode", "has_image_understanding",
                                   "has_audio_understanding", "model_type", "architectures"}
        assert (await client.get("/ready")).status == 200
        assert (await client.post("/flush_cache")).status == 200


def test_twin_refuses_a_flag_sglang_refuses():
    with pytest.raises(ValueError, match="--some-future-flag"):
        parse_twin_args(["--hardware", "h200", "--tp", "8", "--some-future-flag", "7"])


def test_random_seed_is_drawn_per_launch_unless_given():
    seeds = {parse_twin_args(["--hardware", "h200", "--tp", "8"]).args.random_seed for _ in range(5)}
    assert len(seeds) > 1
    assert parse_twin_args(["--hardware", "h200", "--tp", "8", "--random-seed", "3"]).args.random_seed == 3


async def test_api_key_guards_every_route_but_health_ready_and_metrics():
    async with make_client("--api-key", "k") as client:
        for path in ("/health", "/health_generate", "/ready", "/metrics"):
            assert (await client.get(path)).status == 200, path
        for method, path in (("GET", "/v1/models"), ("GET", "/server_info"), ("GET", "/model_info"),
                             ("POST", "/flush_cache"), ("POST", "/v1/chat/completions"), ("POST", "/generate")):
            resp = await client.request(method, path, json=chat_body())
            assert resp.status == 401 and await resp.json() == {"error": "Unauthorized"}, path
        ok = await client.get("/v1/models", headers={"Authorization": "Bearer k"})
        assert ok.status == 200


async def test_model_is_echoed_and_cached_tokens_only_with_cache_report():
    for reported in (False, True):
        async with make_client(cache_report=reported) as client:
            body = chat_body(max_tokens=4)
            body["model"] = "my-alias"
            chunks, _ = await read_sse(await client.post("/v1/chat/completions", json=body))
        assert {c["model"] for c in chunks} == {"my-alias"}
        details = chunks[-1]["usage"]["prompt_tokens_details"]
        assert (details is not None and "cached_tokens" in details) if reported else details is None


async def test_mid_stream_abort_is_sglangs_error_event_then_done():
    from agentperf_tui.engine.client import make_session, stream_chat

    async with make_client("--fault-abort-rate", "1") as client:
        resp = await client.post("/v1/chat/completions", json=chat_body(max_tokens=16))
        raw = (await resp.read()).decode()
        events = [line[6:] for line in raw.split("\n") if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        error = orjson.loads(events[-2])["error"]
        assert error["code"] == 503 and error["type"] == "SERVICE_UNAVAILABLE" and error["object"] == "error"
        # our client reads it as a failure with the server's message
        async with make_session() as pool:
            result = await stream_chat(pool, str(client.make_url("/v1/chat/completions")), chat_body(max_tokens=16))
    assert result.error is not None and "Request aborted" in result.error


async def test_flush_cache_refused_while_a_request_runs():
    async with make_client() as client:
        resp = await client.post("/v1/chat/completions", json=chat_body(max_tokens=400))
        await resp.content.readline()  # request is running now
        assert (await client.post("/flush_cache")).status == 400
        resp.close()


def test_subprocess_start_and_sigterm_stop(twin: TwinProcess):
    with urllib.request.urlopen(f"{twin.url}/health_generate", timeout=10) as r:
        assert r.status == 200


def test_hardware_contradicting_flags_fail_at_start_with_clear_message():
    proc = subprocess.run([sys.executable, "-m", "agentperf_tui.twin", "--hardware", "h200", "--tp", "16",
                           "--port", "0", "--dcgm-port", "0"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--tp 16" in proc.stderr and "h200" in proc.stderr


def test_sigterm_stops_twin_cleanly():
    from .conftest import start_twin

    t = start_twin()
    t0 = time.monotonic()
    t.stop()
    assert t.proc.returncode == 0
    assert time.monotonic() - t0 < 5


async def test_disconnected_client_request_is_aborted_and_frees_the_engine():
    async with make_client() as client:
        resp = await client.post("/v1/chat/completions", json=chat_body(max_tokens=20000))
        await resp.content.readline()
        assert (await client.post("/flush_cache")).status == 400  # running
        resp.close()  # the client goes away
        for _ in range(30):
            await asyncio.sleep(0.1)
            if (await client.post("/flush_cache")).status == 200:
                break
        else:
            raise AssertionError("the abandoned request kept running")


async def test_rack_metrics_split_prefill_from_decode_as_sglang_labels_them():
    """The disaggregated twin's /metrics: per-engine series with SGLang's engine_type label and smg's
    worker_addr; our parser then shows prefill and decode apart, requests counted once, twin-only
    series outside the sglang: namespace."""
    from agentperf_tui.server import conformance
    from agentperf_tui.telemetry.sglang_metrics import parse_sglang_metrics, prom_samples

    config = parse_twin_args(["--hardware", "gb300-nvl72", "--tp", "8", "--attn-dp-size", "8", "--ep", "8",
                              "--prefill-gpus", "32", "--prefill-tp", "4", "--enable-metrics"])
    async with TestClient(TestServer(TwinServer(config).app())) as client:
        bodies = [chat_body(content=f"task {i} " * 400, max_tokens=32) for i in range(6)]
        responses = await asyncio.gather(*(client.post("/v1/chat/completions", json=b) for b in bodies))
        for resp in responses:
            await read_sse(resp)
        text = await (await client.get("/metrics")).text()
    samples = prom_samples(text)
    running = [labels for name, labels, _ in samples if name == "sglang:num_running_reqs"]
    assert len(running) == 13  # 8 prefill + 5 decode engines, one series each
    assert {labels["engine_type"] for labels in running} == {"prefill", "decode"}
    assert len({labels["worker_addr"] for labels in running}) == 13
    names = {name for name, _, _ in samples}
    assert not any(n.startswith("sglang:twin") for n in names) and "agentperf_twin:step_lag_seconds" in names
    # every sglang: series the twin writes is one SGLang 0.5.23 defines, with labels SGLang uses (+ smg's)
    data = conformance.load("sglang", "0.5.23")
    defined = {m["name"]: set(m["labels"]) for m in data.metrics}
    for name, labels, _ in samples:
        if name.startswith("sglang:"):
            base = name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
            family = base if base in defined else base.removesuffix("_total")
            family = family if family in defined else family + "_total"
            assert family in defined, name
            assert set(labels) - {"le", "worker_addr"} <= defined[family] | {"dp_rank"}, (name, labels)
    m = parse_sglang_metrics(text, t_s=0.0)
    assert set(m.by_engine) == {"prefill", "decode"}
    assert m.requests_total == 6 and m.by_engine["prefill"].requests_total == 6  # both sides count; total once
    assert m.generation_tokens_total == 6 * 32
    assert m.by_engine["decode"].max_total_tokens > 0 and m.by_engine["prefill"].max_total_tokens > 0
    assert m.kv_transfer_latency_ms is not None and m.kv_transfer_latency_ms.count == 6  # one per handed-off request
    assert m.kv_transfer_latency_ms.mean > 2.0  # the model's fixed 2 ms plus the bytes over NVLink


async def test_itl_is_observed_once_per_token_with_sglang_buckets():
    """sglang:inter_token_latency_seconds counts every token after the first (SGLang observes per
    token, not one mean per request), in SGLang 0.5.23's bucket bounds."""
    from agentperf_tui.server import conformance
    from agentperf_tui.telemetry.sglang_metrics import parse_sglang_metrics

    async with make_client("--speculative-algorithm", "EAGLE", "--speculative-num-steps", "3",
                           "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", "4") as client:
        responses = await asyncio.gather(*(client.post("/v1/chat/completions", json=chat_body(max_tokens=40))
                                           for _ in range(5)))
        for resp in responses:
            await read_sse(resp)
        text = await (await client.get("/metrics")).text()
    m = parse_sglang_metrics(text, t_s=0.0)
    assert m.itl is not None and m.itl.count == 5 * (40 - 1)
    defined = {d["name"]: d["buckets"] for d in conformance.load("sglang", "0.5.23").metrics}
    for name, hist in (("inter_token_latency_seconds", m.itl), ("time_to_first_token_seconds", m.ttft),
                       ("e2e_request_latency_seconds", m.e2e_latency)):
        assert [le for le, _ in hist.buckets][:-1] == [float(b) for b in defined[f"sglang:{name}"]]
