"""Loads plain OpenAI-messages JSONL (one whole conversation per line) and cuts it into turns.

A line is ``{"messages": [...], "tools"?, "max_tokens"?, "tool_delay_ms"?, "trajectory_id"?}`` or a
bare list of messages. Turn k's request is every message before the k-th assistant message; its
output length is that assistant message's estimated tokens (agentperf_tui.tokens, at least 1)
unless ``max_tokens`` is given; the assistant message is the turn's ``recorded_assistant`` and,
as under AA's replay policy, goes into the next turn's request. Every turn but the last is
followed by ``tool_delay_ms`` (default 1 s) of simulated tool time; the last answer ends the
conversation, so nothing follows it. Errors name file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentperf_tui.tokens import estimate_message_tokens
from agentperf_tui.workload.errors import WorkloadError
from agentperf_tui.workload.jsonl import json_lines
from agentperf_tui.workload.model import Trajectory, Turn, Workload

DEFAULT_TOOL_DELAY_S = 1.0


def _conversation(row: Any, where: str, lineno: int, default_id: str, source: str) -> Trajectory:
    """One trajectory from one parsed line."""
    if isinstance(row, list):
        row = {"messages": row}
    if not isinstance(row, dict):
        raise WorkloadError(f"{where}: expected an object with key 'messages' or a list of messages")
    if "messages" not in row:
        raise WorkloadError(f"{where}: missing key 'messages'")
    messages = row["messages"]
    if not isinstance(messages, list):
        raise WorkloadError(f"{where}: key 'messages' must be a list of chat messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise WorkloadError(f"{where}: key 'messages': item {i} is not a chat message with a 'role'")
    max_tokens = row.get("max_tokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        raise WorkloadError(f"{where}: key 'max_tokens' must be a positive integer")
    delay_ms = row.get("tool_delay_ms", DEFAULT_TOOL_DELAY_S * 1000.0)
    if not isinstance(delay_ms, int | float) or isinstance(delay_ms, bool) or delay_ms < 0:
        raise WorkloadError(f"{where}: key 'tool_delay_ms' must be a number >= 0")
    tools = row.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise WorkloadError(f"{where}: key 'tools' must be a list of tool schemas")
    tool_schemas = tuple(tools) if tools else None
    cuts = [i for i, m in enumerate(messages) if m["role"] == "assistant" and i > 0]
    if not cuts:
        raise WorkloadError(f"{where}: no assistant message after the first message, so nothing to replay")
    shared = tuple(messages)  # every turn's request is a slice of this one tuple (same dicts)
    turns = []
    for k, i in enumerate(cuts):
        assistant = messages[i]
        turns.append(
            Turn(
                messages=shared[:i],
                target_output_tokens=max_tokens or max(1, estimate_message_tokens(assistant)),
                tool_delay_s=float(delay_ms) / 1000.0 if k + 1 < len(cuts) else 0.0,
                tools=tool_schemas,
                recorded_assistant=assistant,
            )
        )
    trajectory_id = row.get("trajectory_id")
    return Trajectory(
        str(trajectory_id) if trajectory_id else default_id,
        tuple(turns),
        source=source,
        metadata={"line": lineno},
    )


def load_openai_jsonl(path: Path) -> Workload:
    """Every conversation of an OpenAI-messages JSONL file, one trajectory per non-empty line."""
    name = str(path)
    trajectories = []
    for lineno, where, row in json_lines(path, name):  # a line may be a bare list of messages
        trajectories.append(_conversation(row, where, lineno, f"{path.stem}-{lineno}", name))
    if not trajectories:
        raise WorkloadError(f"{name}: no conversations in the file")
    return Workload(path.stem, tuple(trajectories))
