"""OpenAI-messages JSONL: one conversation per line, cut into turns at assistant messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from agentperf_tui.tokens import estimate_message_tokens
from agentperf_tui.workload import WorkloadError, load_workload
from agentperf_tui.workload.openai_jsonl import load_openai_jsonl

CONV: list[dict[str, Any]] = [
    {"role": "system", "content": "s"},
    {"role": "user", "content": "u"},
    {"role": "assistant", "content": "a" * 400},
    {"role": "user", "content": "more"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "grep", "arguments": '{"pattern": "x"}'}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "r" * 80},
    {"role": "assistant", "content": "b" * 40},
]  # fmt: skip


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines))
    return path


def test_conversation_is_cut_at_each_assistant_message(tmp_path: Path):
    w = load_workload(write_lines(tmp_path / "chats.jsonl", [{"messages": CONV}]), seed=1)
    assert w.name == "chats" and w.warnings == ()
    (traj,) = w.trajectories
    assert traj.trajectory_id == "chats-1"
    assert [len(t.messages) for t in traj.turns] == [2, 4, 6]
    assert [t.recorded_assistant for t in traj.turns] == [CONV[2], CONV[4], CONV[6]]
    # 400 chars = 100 tokens + 4 overhead; the tool call: "grep" 1 + arguments 4 + overhead 4
    assert [t.target_output_tokens for t in traj.turns] == [104, 9, 14]
    assert [t.target_output_tokens for t in traj.turns] == [estimate_message_tokens(m) for m in CONV[2::2]]
    assert [t.tool_delay_s for t in traj.turns] == [1.0, 1.0, 0.0]
    assert all(t.tools is None and t.recorded_prompt_tokens is None for t in traj.turns)
    for a, b in zip(traj.turns, traj.turns[1:], strict=False):
        assert b.messages[: len(a.messages)] == a.messages
        assert b.messages[len(a.messages)] is a.recorded_assistant


def test_line_options_and_bare_lists(tmp_path: Path):
    tools = [{"type": "function", "function": {"name": "grep", "parameters": {"type": "object"}}}]
    lines = [
        {
            "messages": CONV[:3],
            "max_tokens": 64,
            "tool_delay_ms": 250,
            "trajectory_id": "mine",
            "tools": tools,
        },
        CONV,
        {"messages": CONV[:5], "tool_delay_ms": 0},
    ]
    w = load_openai_jsonl(write_lines(tmp_path / "c.jsonl", lines))
    first, second, third = w.trajectories
    assert first.trajectory_id == "mine" and second.trajectory_id == "c-2" and third.trajectory_id == "c-3"
    assert [(t.target_output_tokens, t.tool_delay_s) for t in first.turns] == [(64, 0.0)]
    assert first.turns[0].tools == tuple(tools)
    assert second.turn_count == 3 and second.turns[0].tool_delay_s == 1.0
    assert [t.tool_delay_s for t in third.turns] == [0.0, 0.0]


def test_empty_assistant_message_still_asks_for_at_least_one_token(tmp_path: Path):
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]
    (traj,) = load_openai_jsonl(write_lines(tmp_path / "c.jsonl", [conv])).trajectories
    assert traj.turns[0].target_output_tokens == estimate_message_tokens(conv[1]) >= 1


def test_jsonl_with_messages_is_not_mistaken_for_an_aa_trace(tmp_path: Path):
    path = write_lines(tmp_path / "c.jsonl", [{"messages": CONV, "trajectory_id": "x"}])
    w = load_workload(path, seed=1)
    assert w.trajectories[0].trajectory_id == "x" and w.trajectories[0].turn_count == 3


def test_invalid_json_names_file_and_line(tmp_path: Path):
    path = write_lines(tmp_path / "file.jsonl", [CONV, b"", b"[{not json"])
    with pytest.raises(WorkloadError, match=r"file\.jsonl:3: invalid JSON"):
        load_openai_jsonl(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"msgs": CONV}, r"c\.jsonl:2: missing key 'messages'"),
        ({"messages": "hello"}, r"c\.jsonl:2: key 'messages' must be a list"),
        ({"messages": [{"content": "no role"}]}, r"c\.jsonl:2: key 'messages': item 0"),
        ({"messages": CONV[:2]}, r"c\.jsonl:2: no assistant message"),
        ({"messages": CONV, "max_tokens": 0}, r"c\.jsonl:2: key 'max_tokens'"),
        ({"messages": CONV, "tool_delay_ms": "1s"}, r"c\.jsonl:2: key 'tool_delay_ms'"),
        ({"messages": CONV, "tools": {"a": 1}}, r"c\.jsonl:2: key 'tools'"),
        (42, r"c\.jsonl:2: expected an object"),
    ],
)
def test_bad_lines_name_file_line_and_key(tmp_path: Path, line: Any, message: str):
    with pytest.raises(WorkloadError, match=message):
        load_openai_jsonl(write_lines(tmp_path / "c.jsonl", [CONV, line]))


def test_empty_file_is_an_error(tmp_path: Path):
    with pytest.raises(WorkloadError, match="no conversations"):
        load_workload(write_lines(tmp_path / "c.jsonl", [b"", b"  "]), seed=1)
