"""Loads MLCommons Endpoints' Agentic Inference JSONL: one row per message, a conversation per id.

Format (mlcommons/endpoints scripts/agentic_inference_dataset_schema.json and
dataset_manager/agentic_inference_dataset.py): every row has ``conversation_id``, ``turn`` (1..N
without gaps, a conversation's rows together) and ``role`` (user, assistant or tool); ``system``
(the conversation's system prompt, first non-empty wins), ``content``, ``tools``, ``tool_calls``
(assistant), ``tool_results`` (tool rows: ``[{tool_call_id, content}]``, one tool message each),
``reasoning_content`` and ``delay_seconds`` (wait before a user/tool row) are optional; rows with
``"_type": "dataset_metadata"`` are skipped.

Replay as MLPerf's strategy builds requests (load_generator/agentic_inference_strategy.py): only
user and tool rows are requests; each carries the system prompt and every earlier row as recorded
(recorded assistant turns, never the model's live answers), then the row itself; one request in
flight per conversation; ``delay_seconds`` is the time before the row (here: the tool time after
the previous request). MLPerf sets no per-turn output length (``max_completion_tokens`` 8192 and
the model's own stop); here each request's length is the recorded answer that follows it
(estimated tokens, at most 8,192), forced under ``exact`` as AA does, so runs compare. MLPerf's
salt (a tag around the system prompt) is this tool's own per-pass salt; its sampling comes from its
YAMLs (temperature 1.0 and top_p 1.0 for Kimi K3; 1.0 / top_k 20 / top_p 0.95 for Qwen3.6): set
them in the profile's ``[workload]`` (``sampling = "custom"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from agentperf_tui.tokens import estimate_message_tokens
from agentperf_tui.workload.errors import WorkloadError
from agentperf_tui.workload.jsonl import json_objects
from agentperf_tui.workload.model import Trajectory, Turn, Workload

ROLES = ("user", "assistant", "tool")
MAX_OUTPUT_TOKENS = 8192  # MLPerf's max_new_tokens in the official agentic configs
LAST_TURN_OUTPUT_TOKENS = 256  # a conversation ending on a client row: no recorded answer to size it by


def looks_like(row: object) -> bool:
    """A first line in this format: per-message rows keyed by conversation and turn."""
    return isinstance(row, dict) and {"conversation_id", "turn", "role"} <= row.keys()


def _messages(row: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The chat messages one row stands for (a tool row: one per result)."""
    role = row["role"]
    if role == "user":
        content = row.get("content")
        if not isinstance(content, str) or not content:
            raise WorkloadError(f"{where}: key 'content': a user row needs non-empty text")
        return [{"role": "user", "content": content}]
    if role == "assistant":
        message: dict[str, Any] = {"role": "assistant", "content": row.get("content")}
        calls = row.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
                raise WorkloadError(f"{where}: key 'tool_calls' must be a list of tool calls")
            message["tool_calls"] = [
                {**c, "function": {**c["function"], "arguments": orjson.dumps(c["function"]["arguments"]).decode()}}
                if isinstance(c.get("function"), dict) and isinstance(c["function"].get("arguments"), dict) else c
                for c in calls]
        if message["content"] is None and not calls:
            raise WorkloadError(f"{where}: an assistant row needs 'content' or 'tool_calls'")
        if isinstance(row.get("reasoning_content"), str):
            message["reasoning_content"] = row["reasoning_content"]
        return [message]
    results = row.get("tool_results")
    if not isinstance(results, list) or not results:
        raise WorkloadError(f"{where}: key 'tool_results': a tool row needs a non-empty list")
    out = []
    for i, r in enumerate(results):
        if not isinstance(r, dict) or not isinstance(r.get("tool_call_id"), str):
            raise WorkloadError(f"{where}: key 'tool_results': item {i} needs a 'tool_call_id'")
        content = r.get("content")
        out.append({"role": "tool", "tool_call_id": r["tool_call_id"],
                    "content": content if isinstance(content, str) else orjson.dumps(content).decode()})
    return out


def _conversation(cid: str, rows: list[tuple[int, dict[str, Any]]], path: Path) -> Trajectory:
    system = next((r["system"] for _, r in rows if isinstance(r.get("system"), str) and r["system"]), None)
    history: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    tools: tuple[dict[str, Any], ...] | None = None
    requests: list[tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...] | None, float]] = []
    answers: dict[int, dict[str, Any]] = {}  # request index -> the recorded answer that followed it
    previous_role = ""
    for n, (lineno, row) in enumerate(rows, 1):
        where = f"{path}:{lineno}"
        if row.get("turn") != n:
            raise WorkloadError(f"{where}: key 'turn': expected {n} (turns of conversation {cid!r} run 1..N "
                                f"without gaps), got {row.get('turn')!r}")
        role = row.get("role")
        if role not in ROLES:
            raise WorkloadError(f"{where}: key 'role' must be one of {', '.join(ROLES)}, got {role!r}")
        if role == "tool" and previous_role != "assistant":
            raise WorkloadError(f"{where}: key 'role': a tool row must follow an assistant row with tool_calls")
        if isinstance(row.get("tools"), list):
            tools = tuple(t for t in row["tools"] if isinstance(t, dict)) or None
        messages = _messages(row, where)
        history.extend(messages)
        if role == "assistant":
            if requests and len(requests) - 1 not in answers:
                answers[len(requests) - 1] = messages[0]
        else:
            delay = row.get("delay_seconds") or 0.0
            if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
                raise WorkloadError(f"{where}: key 'delay_seconds' must be a number >= 0")
            requests.append((tuple(history), tools, float(delay)))
        previous_role = role
    if not requests:
        raise WorkloadError(f"{path}:{rows[0][0]}: conversation {cid!r} has no user or tool row to send")
    turns = []
    for k, (messages, turn_tools, _delay) in enumerate(requests):
        answer = answers.get(k)
        target = (min(MAX_OUTPUT_TOKENS, max(1, estimate_message_tokens(answer) - 4)) if answer
                  else LAST_TURN_OUTPUT_TOKENS)
        turns.append(Turn(messages, target,
                          tool_delay_s=requests[k + 1][2] if k + 1 < len(requests) else 0.0,
                          tools=turn_tools, recorded_assistant=answer,
                          previous_prefix=len(requests[k - 1][0]) if k else None))
    return Trajectory(cid, tuple(turns), source=str(path), metadata={"format": "mlperf-agentic"})


def load_mlperf_agentic(path: Path) -> Workload:
    conversations: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    last = None
    for lineno, where, row in json_objects(path):
        if row.get("_type") == "dataset_metadata":
            continue
        cid = row.get("conversation_id")
        if not isinstance(cid, str) or not cid:
            raise WorkloadError(f"{where}: missing key 'conversation_id'")
        if cid in conversations and cid != last:
            raise WorkloadError(f"{where}: key 'conversation_id': rows of {cid!r} must be together in the file")
        conversations.setdefault(cid, []).append((lineno, row))
        last = cid
    if not conversations:
        raise WorkloadError(f"{path}: no conversations in the file")
    trajectories = tuple(_conversation(cid, rows, path) for cid, rows in conversations.items())
    return Workload(path.stem, trajectories)
