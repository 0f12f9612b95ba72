"""The synthetic generator: reproducible, shaped like AA-AgentPerf, cheap, and exact-replay structured."""

from __future__ import annotations

import statistics
import time
import tracemalloc

import orjson
import pytest

from agentperf_tui.tokens import estimate_message_tokens, estimate_prompt_tokens
from agentperf_tui.workload import Workload, generate_synthetic, load_workload


@pytest.fixture(scope="module")
def big() -> Workload:
    return generate_synthetic(300, seed=11)


def request_inputs(w: Workload) -> list[int]:
    """Each request's input tokens as the engine estimates them (messages + tool schemas)."""
    out = []
    for traj in w.trajectories:
        tools_chars = len(orjson.dumps(traj.turns[0].tools))
        out += [estimate_prompt_tokens(t.messages, tools_chars) for t in traj.turns]
    return out


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_same_seed_same_workload_other_seed_other_workload():
    a, b = generate_synthetic(12, seed=5), generate_synthetic(12, seed=5)
    assert a == b
    other = generate_synthetic(12, seed=6)
    assert other != a
    assert [t.turn_count for t in other.trajectories] != [t.turn_count for t in a.trajectories]
    # trajectory i does not depend on how many were asked for
    assert generate_synthetic(4, seed=5).trajectories == a.trajectories[:4]


def test_input_lengths_match_aa(big: Workload):
    inputs = request_inputs(big)
    assert len(inputs) > 3_000
    assert 20_000 <= statistics.mean(inputs) <= 34_000
    assert min(inputs) >= 4_000
    assert max(inputs) <= 131_072
    assert max(inputs) >= 100_000  # the long tail reaches the context cap
    for traj in big.trajectories:
        first = request_inputs(Workload("one", (traj,)))[0]
        assert 5_000 <= first <= 8_500


def test_output_lengths_match_aa(big: Workload):
    outputs = [t.target_output_tokens for tr in big.trajectories for t in tr.turns]
    assert 110 <= statistics.median(outputs) <= 200
    assert 1_300 <= quantile(outputs, 0.95) <= 3_000
    assert min(outputs) >= 1 and max(outputs) <= 8_192


def test_tool_delays_match_aa(big: Workload):
    delays = [t.tool_delay_s for tr in big.trajectories for t in tr.turns]
    assert 0.7 <= statistics.median(delays) <= 1.4
    assert min(delays) >= 0.1 and max(delays) <= 5.0


def test_turn_counts(big: Workload):
    counts = [tr.turn_count for tr in big.trajectories]
    assert min(counts) >= 1 and max(counts) <= 200
    assert 10 <= statistics.median(counts) <= 25
    assert max(counts) >= 60
    capped = generate_synthetic(50, seed=3, max_turns=5)
    assert max(tr.turn_count for tr in capped.trajectories) <= 5


def test_exact_replay_structure(big: Workload):
    tool_names = {"read_file", "edit_file", "run_tests", "grep"}
    for traj in big.trajectories[:40]:
        first = traj.turns[0]
        assert [m["role"] for m in first.messages] == ["system", "user"]
        assert {t["function"]["name"] for t in first.tools or ()} == tool_names
        for a, b in zip(traj.turns, traj.turns[1:], strict=False):
            assert len(b.messages) == len(a.messages) + 2
            assert b.messages[: len(a.messages)] == a.messages
            assistant, result = b.messages[-2:]
            assert assistant is a.recorded_assistant and assistant["role"] == "assistant"
            (call,) = assistant["tool_calls"]
            assert call["function"]["name"] in tool_names
            assert isinstance(orjson.loads(call["function"]["arguments"]), dict)
            assert result["role"] == "tool" and result["tool_call_id"] == call["id"]
        assert traj.turns[-1].recorded_assistant is not None


def test_text_lengths_match_the_intended_tokens(big: Workload):
    checked = 0
    for traj in big.trajectories[:40]:
        for t in traj.turns:
            assert t.recorded_assistant is not None
            tokens = estimate_message_tokens(t.recorded_assistant)
            if t.target_output_tokens >= 30:  # below that a tool call alone costs more
                assert tokens == t.target_output_tokens
                checked += 1
            else:
                assert tokens <= 30
    assert checked > 400


def test_system_prompt_shared_first_user_message_distinct(big: Workload):
    systems = {id(tr.turns[0].messages[0]) for tr in big.trajectories}
    assert len(systems) == 1
    users = {tr.turns[0].messages[1]["content"] for tr in big.trajectories}
    assert len(users) == len(big.trajectories)


def test_turns_share_message_objects(big: Workload):
    for traj in big.trajectories[:40]:
        last = traj.turns[-1].messages
        for t in traj.turns:
            assert all(m is last[i] for i, m in enumerate(t.messages))


def test_64_trajectories_are_fast_and_small():
    generate_synthetic(1, seed=0)  # builds the shared text block
    start = time.perf_counter()
    generate_synthetic(64, seed=2)
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    try:
        w = generate_synthetic(64, seed=2)
        retained, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(w.trajectories) == 64
    assert elapsed < 1.0
    assert retained < 40_000_000


def test_loader_spec_none_or_synthetic_generates():
    w = load_workload(None, seed=4, synthetic_count=7)
    assert len(w.trajectories) == 7
    assert load_workload("synthetic", seed=4, synthetic_count=7) == w
    assert w == generate_synthetic(7, seed=4)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="at least one"):
        generate_synthetic(0, seed=1)
    with pytest.raises(ValueError, match="max_context_tokens"):
        generate_synthetic(1, seed=1, max_context_tokens=1_000)
