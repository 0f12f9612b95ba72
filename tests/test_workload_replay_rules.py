"""AA's replay rules as the agents apply them: sampling, non-prefix traces under free, coverage, salt, pacing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from agentperf_tui.engine.agent import salted
from agentperf_tui.engine.loadgen import LoadGenerator
from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.profile import STANDARD_SAMPLING, parse_profile
from agentperf_tui.workload.aa_trace import load_trace
from agentperf_tui.workload.model import Trajectory, Turn, Workload

from .test_workload_aa_trace import swe_style, write_jsonl


class FakeServer:
    """Records every request body; answers with a tool call or text, or fails the first N requests."""

    def __init__(self, fail_first: int = 0):
        self.bodies: list[dict] = []
        self.times: list[float] = []
        self.fail_first = fail_first

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.bodies.append(body)
        self.times.append(time.monotonic())
        if len(self.bodies) <= self.fail_first:
            return web.json_response({"object": "error", "message": "injected", "code": 500}, status=500)
        n = body.get("max_tokens", 1)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunks = [b'data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n'] * n
        chunks.append(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n')
        chunks.append(b'data: {"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":%d}}\n\n' % n)
        chunks.append(b"data: [DONE]\n\n")
        await resp.write(b"".join(chunks))
        return resp

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app


async def drive(workload: Workload, server: FakeServer, agents: int = 1, until: int = 3, timeout: float = 20.0,
                **kw) -> list[RequestRecord]:
    records: list[RequestRecord] = []
    async with TestServer(server.app(), host="127.0.0.1") as http:
        lg = LoadGenerator(workload, base_url=str(http.make_url("/")).rstrip("/"), model="m", ramp_s=0.0,
                           on_record=records.append, **kw)
        lg.set_target(agents)
        deadline = time.monotonic() + timeout
        while len(server.bodies) < until and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await lg.stop()
    return records


def test_the_profile_sends_aas_standard_sampling_unless_told_otherwise():
    base = '[server]\nmode = "attach"\nurl = "http://h:1"\n'
    assert parse_profile(base).workload.request_settings() == STANDARD_SAMPLING == {
        "temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0}
    custom = parse_profile(base + '[workload]\nsampling = "custom"\ntemperature = 1.0\ntop_p = 0.95\n'
                           'reasoning_effort = "max"\n')
    assert custom.workload.request_settings() == {"temperature": 1.0, "top_p": 0.95, "reasoning_effort": "max"}
    assert parse_profile(base + '[workload]\nsampling = "server"\n').workload.request_settings() == {}


async def test_sampling_settings_go_out_in_every_request_body():
    server = FakeServer()
    turns = tuple(Turn(({"role": "user", "content": f"q{k}"},), 3, 0.0) for k in range(3))
    await drive(Workload("w", (Trajectory("t", turns),)), server, extra_body=dict(STANDARD_SAMPLING), until=3)
    assert len(server.bodies) >= 3
    for body in server.bodies:
        assert {k: body[k] for k in STANDARD_SAMPLING} == STANDARD_SAMPLING
        assert body["ignore_eos"] is True and body["max_tokens"] == 3


async def test_free_policy_on_a_non_prefix_trace_keeps_the_recorded_tool_results(tmp_path: Path):
    trajectories, warnings = load_trace(write_jsonl(tmp_path / "swe.jsonl", swe_style(3)))
    assert warnings == []
    server = FakeServer()
    await drive(Workload("swe", tuple(trajectories)), server, policy="free", until=3, salt=False)
    second, third = server.bodies[1]["messages"], server.bodies[2]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool", "user"]
    assert second[2]["content"] == "x" * trajectories[0].turns[0].target_output_tokens  # the model's own answer
    assert second[3] == {"role": "tool", "tool_call_id": "c0", "content": "output 0"}  # the recorded result
    assert second[4]["content"] == "Tool-call turn 2 of 100"  # the stale "turn 1" message is gone
    assert [m["role"] for m in third] == ["system", "user", "assistant", "tool", "assistant", "tool", "user"]
    assert [m.get("content") for m in third if m["role"] == "tool"] == ["output 0", "output 1"]


async def test_agents_start_on_distinct_tasks_so_a_short_run_covers_the_set():
    trajectories = tuple(Trajectory(f"task-{i}", (Turn(({"role": "user", "content": f"t{i}"},), 2, 30.0),))
                         for i in range(8))
    server = FakeServer()
    await drive(Workload("eight", trajectories), server, agents=8, until=8, salt=False)
    firsts = {b["messages"][0]["content"].rsplit(" ", 1)[-1] for b in server.bodies[:8]}  # salt tag stripped
    assert firsts == {f"t{i}" for i in range(8)}


async def test_no_tool_time_follows_a_failed_request():
    server = FakeServer(fail_first=1)
    turns = tuple(Turn(({"role": "user", "content": f"q{k}"},), 2, 5.0) for k in range(3))  # 5 s tools
    records = await drive(Workload("w", (Trajectory("t", turns),)), server, until=2, timeout=10.0)
    assert not records[0].ok
    gap = server.times[1] - server.times[0]
    assert gap < 2.0, gap  # the 0.5 s error back-off, not the 5 s tool delay (AA skips it after a failure)


def test_the_salt_goes_where_aa_puts_its_namespace_and_never_adds_a_message():
    parts = ({"role": "system", "content": [{"type": "text", "text": "sys"}]}, {"role": "user", "content": "u"})
    out = salted(parts, "abc")
    assert len(out) == 2 and out[0]["content"][0] == {"type": "text", "text": "[session abc] "}
    assert out[0]["content"][1:] == [{"type": "text", "text": "sys"}]
    assert salted(({"role": "assistant", "content": None},), "abc")[0]["content"] == "[session abc]"
    assert parts[0]["content"] == [{"type": "text", "text": "sys"}]  # the trajectory is untouched


def test_the_loader_says_what_it_loaded(tmp_path: Path):
    trajectories, _ = load_trace(write_jsonl(tmp_path / "swe.jsonl", swe_style(3)))
    text = Workload("swe", tuple(trajectories)).describe()
    assert text.startswith("1 trajectories, 3 model calls, 0 s of tool time, largest context needed unknown")
    assert "2 calls drop part of the previous call's messages (non-prefix trace)" in text
    sized = Workload("w", (Trajectory("t", (Turn(({"role": "user", "content": "q"},), 100, 1.5, None, 9000),),
                                      metadata={"required_context_tokens": 16384}),))
    assert sized.required_context_tokens == 16384 and "16,384 tokens" in sized.describe()


def test_required_context_tokens_must_be_a_positive_integer(tmp_path: Path):
    import pytest

    from agentperf_tui.workload import WorkloadError
    from agentperf_tui.workload.aa_trace import load_manifest

    write_jsonl(tmp_path / "t.jsonl", swe_style(2))
    manifest = {"version": 1, "tasks": [{"task_id": "c1", "trace": "t.jsonl", "required_context_tokens": "big"}]}
    (tmp_path / "m.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(WorkloadError, match=r"tasks\[0\]: key 'required_context_tokens'"):
        load_manifest(tmp_path / "m.json")
    manifest["tasks"][0]["required_context_tokens"] = 65536
    (tmp_path / "m.json").write_bytes(orjson.dumps(manifest))
    assert load_manifest(tmp_path / "m.json").required_context_tokens == 65536


async def test_a_server_context_shorter_than_the_workload_needs_is_a_warning_and_tasks_are_counted():
    from agentperf_tui.engine.session import RunOptions, ServerHandle, Session
    from agentperf_tui.engine.slo import AA_DSV4_PRO_TIERS

    fake = FakeServer()
    async with TestServer(fake.app(), host="127.0.0.1") as http:
        async def start(_s: Session) -> ServerHandle:
            return ServerHandle(base_url=str(http.make_url("/")).rstrip("/"), model="m", gpus=8, dcgm_urls=[],
                                metrics_url=None, use_nvml=False, boundary="gpu", stop=lambda: None,
                                context_length=4096)
        turns = (Turn(({"role": "user", "content": "q"},), 4, 0.05, None, 5000),)
        workload = Workload("w", (Trajectory("task-a", turns), Trajectory("task-b", turns)))
        session = Session(profile_name="t", options=RunOptions(agents=2, duration_s=2.0, ramp_s=0.0, workers=0),
                          tiers=AA_DSV4_PRO_TIERS, workload_loader=lambda: workload, server_starter=start)
        summary = await asyncio.wait_for(session.run(), 20)
    assert any("needs contexts of up to 5,004 tokens but the server's context length is 4,096" in w
               for w in summary["warnings"])
    assert set(summary["requests_per_task"]) == {"task-a", "task-b"} and all(
        v >= 1 for v in summary["requests_per_task"].values())
