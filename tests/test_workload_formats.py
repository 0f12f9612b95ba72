"""The trace formats people bring: MLPerf Endpoints agentic, InferenceX AgentX (Weka), AIPerf mooncake.

Golden files in tests/fixtures/workloads/ are small hand-written examples of each format (not
copied from the real sets); each loads as its own tool replays it and runs on the twin with no
failed request.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from agentperf_tui.engine.loadgen import LoadGenerator
from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.tokens import estimate_prompt_tokens
from agentperf_tui.workload import WorkloadError, load_workload

from .test_engine_loadgen import start_twin_server

FIXTURES = Path(__file__).parent / "fixtures" / "workloads"


def test_mlperf_agentic_rows_become_one_request_per_client_row_with_the_recorded_history():
    w = load_workload(FIXTURES / "mlperf_agentic.jsonl")
    assert [t.trajectory_id for t in w.trajectories] == ["conv-a", "conv-b"] and not w.warnings
    first, second, third = w.trajectories[0].turns
    assert [m["role"] for m in first.messages] == ["system", "user"]
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "tool"]
    assert second.messages[2]["tool_calls"][0]["function"]["arguments"] == '{"command":"pytest -q"}'  # dict -> JSON text
    assert second.messages[3]["tool_call_id"] == "functions.bash:0"
    assert first.tools and first.tools[0]["function"]["name"] == "bash" and second.tools == first.tools
    assert [t.tool_delay_s for t in (first, second, third)] == [0.2, 0.1, 0.0]  # delay_seconds before the next row
    assert first.recorded_assistant is not None and second.previous_prefix == 2
    assert third.target_output_tokens >= 1 and third.recorded_assistant["content"] == "All 13 tests pass."


@pytest.mark.parametrize("rows, message", [
    ([{"conversation_id": "c", "turn": 2, "role": "user", "content": "x"}], "key 'turn': expected 1"),
    ([{"conversation_id": "c", "turn": 1, "role": "tool", "tool_results": [{"tool_call_id": "a", "content": ""}]}],
     "a tool row must follow an assistant row"),
    ([{"conversation_id": "c", "turn": 1, "role": "user", "content": "x"},
      {"conversation_id": "d", "turn": 1, "role": "user", "content": "y"},
      {"conversation_id": "c", "turn": 2, "role": "assistant", "content": "z"}], "must be together in the file"),
    ([{"conversation_id": "c", "turn": 1, "role": "robot", "content": "x"}], "key 'role' must be one of"),
])
def test_mlperf_agentic_defects_name_file_line_and_key(tmp_path: Path, rows, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    with pytest.raises(WorkloadError, match=message) as info:
        load_workload(path)
    assert str(info.value).startswith(f"{path}:")


def test_agentx_traces_follow_in_out_and_the_delay_between_requests():
    w = load_workload(FIXTURES / "agentx_traces.jsonl")
    assert [t.trajectory_id for t in w.trajectories] == ["tr1", "tr2"]
    assert any("1 subagent entries not replayed" in x for x in w.warnings)
    turns = w.trajectories[0].turns
    assert [t.target_output_tokens for t in turns] == [80, 120, 40]
    assert [round(t.tool_delay_s, 3) for t in turns] == [0.5, 0.4, 0.0]  # t_k+1 - t_k - api_time_k
    sizes = [estimate_prompt_tokens(t.messages) for t in turns]
    for size, want in zip(sizes, (1200, 1500, 700), strict=True):
        assert abs(size - want) <= 16, (sizes, want)  # template overhead only
    assert turns[1].previous_prefix == 1 and turns[1].messages[0] is turns[0].messages[0]  # extends turn 0
    assert turns[2].previous_prefix is None  # shares 3 blocks of 23: the history starts again
    # the same hash id is the same text within a trace, so shared prefixes are cache hits
    assert turns[2].messages[0]["content"][: 3 * 64 * 4] == turns[0].messages[0]["content"][: 3 * 64 * 4]


def test_mooncake_sessions_grow_and_hash_ids_share_text():
    w = load_workload(FIXTURES / "mooncake.jsonl")
    by_id = {t.trajectory_id: t for t in w.trajectories}
    assert set(by_id) == {"s1", "line-3", "line-4"}
    s1 = by_id["s1"].turns
    assert [len(t.messages) for t in s1] == [1, 3] and s1[0].tool_delay_s == pytest.approx(0.3)
    assert [t.target_output_tokens for t in s1] == [50, 40]
    line3 = by_id["line-3"].turns[0].messages[0]["content"]
    assert line3[:512 * 4] == s1[0].messages[0]["content"][:512 * 4]  # hash 0: the same block of text
    assert line3[512 * 4:] != s1[0].messages[0]["content"][512 * 4:700 * 4]  # the rest is its own
    assert len(line3) == 700 * 4
    assert by_id["line-4"].turns[0].messages[0]["content"] == "Summarise the design in two lines."
    assert any("arrival timestamp" in x for x in w.warnings)


def test_mooncake_defects_name_the_key(tmp_path: Path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(orjson.dumps({"input_length": 100, "hash_ids": [1, 2, 3]}) + b"\n")
    with pytest.raises(WorkloadError, match=r"m\.jsonl:1: key 'hash_ids': 3 blocks of 512 tokens"):
        load_workload(path)
    path.write_bytes(orjson.dumps({"output_length": 10}) + b"\n")
    with pytest.raises(WorkloadError, match="exactly one of input_length, text_input, messages, payload"):
        load_workload(path)


@pytest.mark.parametrize("name", ["mlperf_agentic.jsonl", "agentx_traces.jsonl", "mooncake.jsonl"])
async def test_each_format_replays_on_the_twin_with_no_failed_request(name: str):
    workload = load_workload(FIXTURES / name)
    calls = sum(t.turn_count for t in workload.trajectories)
    server = await start_twin_server("--tokenizer", "estimate")
    records: list[RequestRecord] = []
    try:
        lg = LoadGenerator(workload, base_url=str(server.make_url("/")).rstrip("/"), model="m", ramp_s=0.0,
                           on_record=records.append)
        lg.set_target(len(workload.trajectories))
        deadline = time.monotonic() + 60
        while len(records) < calls and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await lg.stop()
    finally:
        await server.close()
    assert len(records) >= calls
    assert [r.cause for r in records if not r.ok] == []
    assert {r.trajectory_id for r in records} == {t.trajectory_id for t in workload.trajectories}
