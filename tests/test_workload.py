"""Workload loaders on the shared AA traces and on bad input; the synthetic generator's shape."""

from __future__ import annotations

import statistics
from pathlib import Path

import orjson
import pytest

from agentperf_tui.tokens import estimate_prompt_tokens
from agentperf_tui.workload import WorkloadError, generate_synthetic, load_workload


def test_aa_mini_manifest_loads_six_turns_with_targets_and_delays(shared_traces: Path):
    w = load_workload(shared_traces / "aa-mini-v1" / "manifest.json")
    assert w.warnings == ()
    (traj,) = w.trajectories
    assert traj.turn_count == 6
    assert all(t.target_output_tokens == 256 for t in traj.turns)
    assert all(t.tool_delay_s == pytest.approx(0.05) for t in traj.turns[:-1])
    assert traj.turns[0].tools and traj.turns[0].tools[0]["function"]["name"] == "search_catalog"
    for a, b in zip(traj.turns, traj.turns[1:], strict=False):
        assert b.messages[: len(a.messages)] == a.messages  # each request extends the previous
        assert a.recorded_assistant is not None and a.recorded_assistant["role"] == "assistant"


def test_default_manifest_reports_missing_traces_and_loads_the_rest(shared_traces: Path):
    w = load_workload(shared_traces / "agentperf-default-v1" / "manifest-x86_64.json")
    assert len(w.trajectories) == 1
    assert w.trajectories[0].turn_count == 5
    assert [t.target_output_tokens for t in w.trajectories[0].turns] == [53, 733, 43, 71, 212]
    assert len(w.warnings) == 7 and all("not found" in m for m in w.warnings)


def test_manifest_with_every_trace_missing_is_an_error(tmp_path: Path):
    (tmp_path / "m.json").write_text('{"tasks": [{"task_id": "a", "trace": "traces/a.jsonl"}]}')
    with pytest.raises(WorkloadError, match="none of the 1 trace files"):
        load_workload(tmp_path / "m.json")


def test_malformed_trace_line_names_file_and_line(tmp_path: Path, shared_traces: Path):
    good = (shared_traces / "aa-mini-v1" / "traces" / "aa-mini-library-01.jsonl").read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([good[0], good[1], "{broken json", good[2]]) + "\n")
    with pytest.raises(WorkloadError, match=r"bad\.jsonl:3: invalid JSON"):
        load_workload(bad)
    row = orjson.loads(good[0])
    del row["messages"]
    missing = tmp_path / "missing.jsonl"
    missing.write_bytes(orjson.dumps(row) + b"\n")
    with pytest.raises(WorkloadError, match=r"missing\.jsonl:1: missing key 'messages'"):
        load_workload(missing)


def test_openai_jsonl_cuts_turns_at_assistant_messages(tmp_path: Path):
    path = tmp_path / "chats.jsonl"
    conv = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a" * 400}, {"role": "user", "content": "more"},
            {"role": "assistant", "content": "b" * 40}]
    path.write_bytes(orjson.dumps({"messages": conv, "tool_delay_ms": 250}) + b"\n" + orjson.dumps(conv) + b"\n")
    w = load_workload(path)
    assert len(w.trajectories) == 2
    t0, t1 = w.trajectories[0].turns
    assert len(t0.messages) == 2 and len(t1.messages) == 4
    assert t0.target_output_tokens == 104 and t0.tool_delay_s == 0.25
    assert w.trajectories[1].turns[0].tool_delay_s == 1.0


def test_missing_workload_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(WorkloadError, match="not found"):
        load_workload(tmp_path / "nope.jsonl")


def test_synthetic_is_reproducible_and_calibrated_to_aa():
    a, b = generate_synthetic(20, seed=5), generate_synthetic(20, seed=5)
    assert a == b
    assert generate_synthetic(20, seed=6) != a
    w = generate_synthetic(300, seed=11)
    tools_chars = len(orjson.dumps(w.trajectories[0].turns[0].tools))
    inputs = [estimate_prompt_tokens(t.messages, tools_chars) for tr in w.trajectories for t in tr.turns]
    outputs = sorted(t.target_output_tokens for tr in w.trajectories for t in tr.turns)
    delays = [t.tool_delay_s for tr in w.trajectories for t in tr.turns]
    assert 20_000 <= statistics.mean(inputs) <= 34_000
    assert min(inputs) >= 4_000 and max(inputs) <= 131_072 + 64
    assert 110 <= statistics.median(outputs) <= 200
    assert 1_300 <= outputs[int(0.95 * len(outputs))] <= 3_000
    assert 0.7 <= statistics.median(delays) <= 1.4 and min(delays) >= 0.1 and max(delays) <= 5.0
    assert max(tr.turn_count for tr in w.trajectories) <= 200
    for tr in w.trajectories[:20]:
        for x, y in zip(tr.turns, tr.turns[1:], strict=False):
            assert y.messages[: len(x.messages)] == x.messages
