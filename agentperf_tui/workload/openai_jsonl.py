"""Loader for plain OpenAI-messages JSONL: one whole conversation per line, cut into turns.

A line is ``{"messages": [...], "tools"?, "max_tokens"?, "tool_delay_ms"?, "trajectory_id"?}`` or a
bare list of messages. Turn k's request is everything before the k-th assistant message; its
output length is that message's estimated tokens (or ``max_tokens``); the recorded assistant
message goes into the next turn, as AA's replay policy does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from agentperf_tui.tokens import estimate_message_tokens
from agentperf_tui.workload.errors import WorkloadError
from agentperf_tui.workload.model import Trajectory, Turn, Workload

DEFAULT_TOOL_DELAY_S = 1.0


def load_openai_jsonl(path: Path) -> Workload:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    trajectories = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row: Any = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise WorkloadError(f"{where}: invalid JSON: {exc}") from exc
        if isinstance(row, list):
            row = {"messages": row}
        if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
            raise WorkloadError(f"{where}: missing key 'messages' (a list of chat messages)")
        messages = row["messages"]
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m:
                raise WorkloadError(f"{where}: messages[{i}]: each message needs a 'role'")
        max_tokens = row.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise WorkloadError(f"{where}: key 'max_tokens' must be a positive integer")
        delay = float(row.get("tool_delay_ms", DEFAULT_TOOL_DELAY_S * 1000)) / 1000.0
        tools = tuple(row["tools"]) if row.get("tools") else None
        turns = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant" or i == 0:
                continue
            target = max_tokens or max(1, estimate_message_tokens(m))
            turns.append(Turn(tuple(messages[:i]), target, delay, tools, None, m))
        if not turns:
            raise WorkloadError(f"{where}: no assistant message to replay")
        trajectories.append(Trajectory(str(row.get("trajectory_id") or f"{path.stem}-{lineno}"), tuple(turns),
                                       source=str(path)))
    if not trajectories:
        raise WorkloadError(f"{path}: no conversations in the file")
    return Workload(path.stem, tuple(trajectories))
