"""Behaviour of the twin's model: metrics parse, energy tracks power, batching, prefix reuse."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from agentperf_tui.twin.config import parse_twin_args
from agentperf_tui.twin.costmodel import CostModel, SpeculativeConfig, decode_tokens_per_s
from agentperf_tui.twin.hardware import DEEPSEEK_V4_PRO, GB300, H200
from agentperf_tui.twin.prefix_cache import PrefixCache
from agentperf_tui.twin.server import TwinServer


def make_server(*flags: str) -> TwinServer:
    return TwinServer(parse_twin_args(["--hardware", "h200", "--tp", "8", "--enable-metrics", "--enable-cache-report", *flags]))


async def timed_stream(client: TestClient, messages: list[dict], max_tokens: int) -> dict:
    """Send one streamed request; return TTFT, output speed and usage measured on arrival."""
    body = {"messages": messages, "max_tokens": max_tokens, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.monotonic()
    first = last = None
    usage = None
    resp = await client.post("/v1/chat/completions", json=body)
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        chunk = orjson.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            now = time.monotonic()
            first = first or now
            last = now
    tokens = usage["completion_tokens"]
    return {"ttft": first - t0, "tps": (tokens - 1) / (last - first), "usage": usage}


def metric_values(text: str) -> dict[str, float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


async def test_sglang_metrics_parse_and_count_requests():
    server = make_server()
    async with TestClient(TestServer(server.app())) as client:
        await timed_stream(client, [{"role": "user", "content": "hi " * 50}], 20)
        text = await (await client.get("/metrics")).text()
    values = metric_values(text)
    for name in ("sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage",
                 "sglang:max_total_num_tokens", "sglang:gen_throughput", "sglang:cache_hit_rate",
                 "sglang:spec_accept_length", "sglang:num_used_tokens"):
        assert name in values, name
    assert values["sglang:generation_tokens_total"] == 20
    assert values["sglang:num_requests_total"] == 1
    assert values["sglang:time_to_first_token_seconds_count"] == 1
    assert values["sglang:max_total_num_tokens"] > 1e6


async def test_dcgm_metrics_parse_and_energy_is_monotonic_and_matches_power():
    server = make_server()
    async with TestClient(TestServer(server.app())) as client:
        t0 = time.monotonic()
        first = metric_values(server.dcgm.render().decode())
        streams = [timed_stream(client, [{"role": "user", "content": f"task {i} " * 200}], 150) for i in range(16)]
        await asyncio.gather(*streams)
        t1 = time.monotonic()
        second = metric_values(server.dcgm.render().decode())
    families = {f.name: f for f in text_string_to_metric_families(server.dcgm.render().decode())}
    assert families["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].type == "counter"
    gpus = {s.labels["gpu"] for s in families["DCGM_FI_DEV_POWER_USAGE"].samples}
    assert gpus == {str(i) for i in range(8)}
    assert {s.labels["Hostname"] for s in families["DCGM_FI_DEV_POWER_USAGE"].samples} == {"twin-node1"}
    e0 = first["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total"]
    e1 = second["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total"]
    assert e1 > e0
    mean_power_per_gpu = (e1 - e0) / 1000.0 / (t1 - t0) / 8
    # under load the mean lies strictly between idle and the 700 W limit
    assert H200.idle_power_w < mean_power_per_gpu < H200.max_power_w


def test_idle_energy_accrues_at_idle_power():
    server = make_server()
    exporter = server.dcgm
    now = time.monotonic()
    before = sum(r["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] for r in exporter.sample(now))
    after = sum(r["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] for r in exporter.sample(now + 10.0))
    assert abs((after - before) / 1000.0 / 10.0 / 8 - H200.idle_power_w) < 1.0


async def test_more_concurrent_requests_lower_per_request_speed():
    server = make_server()
    async with TestClient(TestServer(server.app())) as client:
        alone = await timed_stream(client, [{"role": "user", "content": "solo " * 100}], 120)
        crowd = await asyncio.gather(*[
            timed_stream(client, [{"role": "user", "content": f"crowd {i} " * 100}], 120) for i in range(48)])
    crowd_tps = sorted(r["tps"] for r in crowd)[len(crowd) // 2]
    assert crowd_tps < 0.8 * alone["tps"], (alone["tps"], crowd_tps)


async def test_extended_conversation_reuses_prefix_lower_ttft_and_reports_cached_tokens():
    server = make_server()
    history = [{"role": "system", "content": "You are a coding agent. " * 2000},
               {"role": "user", "content": "Fix the failing test in module alpha. " * 400}]
    async with TestClient(TestServer(server.app())) as client:
        first = await timed_stream(client, history, 8)
        extended = history + [{"role": "assistant", "content": "Looking at the test now."},
                              {"role": "tool", "content": "FAILED test_alpha.py::test_x"}]
        second = await timed_stream(client, extended, 8)
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    # the whole first prompt but its generation prompt (<｜Assistant｜></think>, 2 tokens, which the
    # extended prompt's assistant message repeats; the twin matches prefixes message by message)
    assert cached >= first["usage"]["prompt_tokens"] - 3
    assert second["ttft"] < 0.5 * first["ttft"], (first["ttft"], second["ttft"])


async def test_disable_radix_cache_prefills_every_prompt_whole():
    server = make_server("--disable-radix-cache")
    history = [{"role": "system", "content": "You are a coding agent. " * 2000},
               {"role": "user", "content": "Fix the failing test in module alpha. " * 400}]
    async with TestClient(TestServer(server.app())) as client:
        first = await timed_stream(client, history, 8)
        second = await timed_stream(client, history + [{"role": "tool", "content": "FAILED"}], 8)
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["ttft"] > 0.8 * first["ttft"], (first["ttft"], second["ttft"])


def test_prefix_cache_matches_longest_prefix_and_evicts_lru():
    cache = PrefixCache(capacity_tokens=100)
    cache.insert([(1, 30), (2, 60)])
    assert cache.match([(1, 30), (2, 60), (3, 90)]) == 60
    assert cache.match([(9, 10)]) == 0
    cache.insert([(7, 50)])  # 60 + 50 > 100: the least recently used node goes
    assert cache.cached_tokens <= 100
    assert cache.match([(7, 50)]) == 50


def test_decode_speed_falls_with_batch_and_gb300_beats_h200():
    spec = SpeculativeConfig(1, 2, 0.7)
    h200 = CostModel(H200, DEEPSEEK_V4_PRO, 8, spec)
    gb300 = CostModel(GB300, DEEPSEEK_V4_PRO, 8, spec)
    speeds = [decode_tokens_per_s(h200, b, 27_000) for b in (1, 16, 64, 256)]
    assert speeds == sorted(speeds, reverse=True)
    assert decode_tokens_per_s(gb300, 64, 27_000) > decode_tokens_per_s(h200, 64, 27_000)
    # KV pool under TP attention: every GPU holds every request's latent KV, so the pool is one GPU's
    # 141 GB x 0.88 minus its eighth of ~0.9 TB of weights (~10.6 GB), at ~5.9 KB per token
    assert 1.5e6 < h200.kv_capacity_tokens(0.88) < 2.1e6
    assert h200.kv_capacity_tokens(0.5) == 0
    # DP attention spreads requests (and their KV) over the GPUs: eight times the pool
    h200_dp = CostModel(H200, DEEPSEEK_V4_PRO, 8, spec, attention_dp=True)
    assert abs(h200_dp.kv_capacity_tokens(0.88) - 8 * h200.kv_capacity_tokens(0.88)) <= 8  # int rounding


def test_tp_attention_reads_all_kv_on_every_gpu_so_long_context_costs_more_than_with_dp_attention():
    spec = SpeculativeConfig()
    tp = CostModel(H200, DEEPSEEK_V4_PRO, 8, spec)
    dp = CostModel(H200, DEEPSEEK_V4_PRO, 8, spec, attention_dp=True)
    m = DEEPSEEK_V4_PRO
    short = [c.decode_step(256, m.kv_read_bytes(8192) * 256, 0.0).duration_s for c in (tp, dp)]
    long = [c.decode_step(256, m.kv_read_bytes(131072) * 256, 0.0).duration_s for c in (tp, dp)]
    tp_growth, dp_growth = long[0] - short[0], long[1] - short[1]
    assert abs(tp_growth - 8 * dp_growth) < 1e-9  # the same KV bytes over one GPU instead of eight
    assert tp_growth > 0.02  # AIConfigurator measures +34 ms at batch 256, 8K -> 131K, TP8 on H200


def test_speculative_accept_length_from_acceptance():
    assert SpeculativeConfig().expected_accept_length == 1.0
    assert abs(SpeculativeConfig(1, 2, 0.7).expected_accept_length - 1.7) < 1e-9
    assert abs(SpeculativeConfig(3, 4, 0.5).expected_accept_length - 1.875) < 1e-9


def test_gb300_disaggregated_deployment_shape():
    config = parse_twin_args(["--hardware", "gb300-nvl72", "--tp", "8", "--dp", "8", "--enable-dp-attention",
                              "--prefill-gpus", "32", "--prefill-tp", "4"])
    assert (config.prefill_engines, config.decode_engines, config.total_gpus) == (8, 5, 72)


def test_attn_dp_size_is_the_deprecated_dp_attention_pair():
    """SGLang 0.5.23's --attn-dp-size N models the same deployment as --dp N --enable-dp-attention."""
    old = parse_twin_args(["--hardware", "gb300-nvl72", "--tp", "8", "--dp", "8", "--enable-dp-attention",
                           "--prefill-gpus", "32", "--prefill-tp", "4"])
    new = parse_twin_args(["--hardware", "gb300-nvl72", "--tp", "8", "--attn-dp-size", "8",
                           "--prefill-gpus", "32", "--prefill-tp", "4"])
    assert new.unknown_args == () and new.args.enable_dp_attention and new.args.dp == 8
    assert (new.prefill_engines, new.decode_engines, new.total_gpus) == (old.prefill_engines, old.decode_engines, 72)
    a, b = TwinServer(old), TwinServer(new)
    tp_attention = TwinServer(parse_twin_args(["--hardware", "gb300-nvl72", "--tp", "8", "--prefill-gpus", "32",
                                               "--prefill-tp", "4"]))
    assert a.cluster.kv_capacity_tokens == b.cluster.kv_capacity_tokens  # the DP-attention KV pool...
    assert b.cluster.kv_capacity_tokens > 5 * tp_attention.cluster.kv_capacity_tokens  # ...not TP attention's


def test_slice_keeps_one_decode_engine_and_exactly_its_share_of_prefill_capacity_and_power():
    full = parse_twin_args(["--hardware", "gb300-nvl72", "--tp", "8", "--dp", "8", "--enable-dp-attention",
                            "--prefill-gpus", "32", "--prefill-tp", "4"])
    sliced = parse_twin_args(["--hardware", "gb300-nvl72", "--tp", "8", "--dp", "8", "--enable-dp-attention",
                              "--prefill-gpus", "32", "--prefill-tp", "4", "--slice", "1"])
    assert (sliced.decode_engines, sliced.slice_of, sliced.slice_fraction) == (1, 5, 0.2)
    assert sliced.prefill_engines == 2  # 8 prefill engines x 1/5 = 1.6, rounded up
    assert abs(sliced.prefill_time_scale - 1.25) < 1e-9 and abs(sliced.prefill_power_share - 0.8) < 1e-9
    # prefill capacity: engines / time scale is exactly the share of the full pool
    assert abs(sliced.prefill_engines / sliced.prefill_time_scale - full.prefill_engines / 5) < 1e-9
    assert (sliced.total_gpus, sliced.full_gpus) == (16, 72)
    # reported idle power of the slice = its share of the whole rack's
    server = TwinServer(sliced)
    watts = sum(row["DCGM_FI_DEV_POWER_USAGE"] for row in server.dcgm.sample(time.monotonic()))
    assert abs(watts - 0.2 * 72 * GB300.idle_power_w) < 1e-6
    bad = ["--hardware", "gb300-nvl72", "--tp", "8", "--prefill-gpus", "32", "--slice", "6"]
    try:
        parse_twin_args(bad)
    except ValueError as exc:
        assert "--slice 6" in str(exc)
    else:
        raise AssertionError("a slice larger than the deployment must be refused")


@pytest.mark.parametrize(("steps", "draft", "length"), [(1, 2, 1.79), (2, 3, 2.27), (3, 4, 2.49), (4, 5, 2.54)])
def test_mtp_acceptance_follows_deepseek_v4_measured_accept_lengths(steps: int, draft: int, length: float):
    """Default acceptance reproduces InferenceX's measured DeepSeek-V4-Pro MTP accept lengths per depth."""
    config = parse_twin_args(["--hardware", "h200", "--tp", "8", "--speculative-algorithm", "EAGLE",
                              "--speculative-num-steps", str(steps), "--speculative-eagle-topk", "1",
                              "--speculative-num-draft-tokens", str(draft)])
    assert TwinServer(config).spec.expected_accept_length == pytest.approx(length, abs=1e-6)
    forced = parse_twin_args(["--hardware", "h200", "--tp", "8", "--speculative-algorithm", "EAGLE",
                              "--speculative-num-steps", str(steps), "--speculative-num-draft-tokens", str(draft),
                              "--mtp-acceptance", "0.5"])
    assert TwinServer(forced).spec.acceptance == 0.5


@pytest.mark.parametrize(("routing", "hits_low", "hits_high"), [("sglang", 2, 14), ("sticky", 24, 24)])
async def test_dp_rank_routing_decides_prefix_reuse_on_a_dp_attention_prefill_worker(routing, hits_low, hits_high):
    """A DP4 prefill worker keeps one radix cache per DP rank. SGLang picks the rank as
    bootstrap_room % 4 with a random room, so a conversation's next turn meets its cached prefix
    about 1 time in 4; a DP-aware router (sticky) keeps it on its rank every time."""
    config = parse_twin_args(["--hardware", "gb300-nvl72", "--tp", "8", "--attn-dp-size", "8", "--prefill-gpus", "4",
                              "--prefill-tp", "4", "--enable-cache-report", "--dp-routing", routing])
    server = TwinServer(config)
    assert server.cluster.first_stage[0].dp_ranks == 4
    hits = 0
    async with TestClient(TestServer(server.app())) as client:
        for i in range(24):
            history = [{"role": "system", "content": f"agent {i} " + "You are a coding agent. " * 300},
                       {"role": "user", "content": f"Fix bug {i}. " * 100}]
            await timed_stream(client, history, 4)
            second = await timed_stream(client, history + [{"role": "assistant", "content": "ok"},
                                                           {"role": "tool", "content": "done"}], 4)
            hits += second["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    assert hits_low <= hits <= hits_high, hits
