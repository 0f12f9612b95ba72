"""Loads AIPerf's mooncake trace JSONL (``input_length`` + ``hash_ids`` + ``output_length`` per line).

Format (AIPerf 0.13 dataset/loader/models.py ``MooncakeTrace``, mooncake_trace.py): one request per
line with exactly one of ``input_length`` (tokens; with optional ``hash_ids``, one id per
``block_size`` = 512-token KV block), ``text_input`` (a string) or ``messages`` (OpenAI messages);
optional ``output_length`` (tokens, the request's max tokens), ``timestamp`` (ms, arrival time),
``delay`` (ms to wait after the session's previous request), ``session_id`` (rows with one id form a
multi-turn session, in file order) and ``extra`` (merged into the request body; not used here).

Replayed here as closed-loop agents, like every workload: each session is a trajectory, rows
without a session id are one-turn trajectories; a session's prompt grows turn by turn (each row's
prompt added as a user turn after a synthetic answer of the recorded length; AIPerf threads the
live answers instead, which ``--policy free`` does; a ``messages`` row is the whole request); ``delay`` becomes the tool time before the
next turn; ``output_length`` is forced under ``exact`` (AIPerf sends it as a cap and warns about
ignore_eos); absolute ``timestamp`` schedules are not replayed (closed loop), which the loader says.
Prompts from hash ids are synthetic text per block (workload/blocks.py), the same id the same text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentperf_tui.workload.blocks import block_text, filler
from agentperf_tui.workload.errors import WorkloadError
from agentperf_tui.workload.jsonl import json_objects, shared_prefix
from agentperf_tui.workload.model import Trajectory, Turn, Workload

BLOCK_SIZE = 512  # AIPerf's default --isl-block-size for mooncake traces
DEFAULT_OUTPUT_TOKENS = 256
PROMPT_KEYS = ("input_length", "text_input", "messages", "payload")


def _int(row: dict[str, Any], key: str, where: str, minimum: int = 0) -> int | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise WorkloadError(f"{where}: key '{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def _prompt(row: dict[str, Any], where: str, scope: str, key: str, block_size: int) -> str | list[dict[str, Any]]:
    given = [k for k in PROMPT_KEYS if k in row]
    if len(given) != 1:
        raise WorkloadError(f"{where}: exactly one of {', '.join(PROMPT_KEYS)} is required, got "
                            f"{', '.join(given) or 'none'}")
    if given[0] == "payload":
        raise WorkloadError(f"{where}: key 'payload' (a raw request body) is not replayed by agentperf-tui")
    if "text_input" in row:
        if not isinstance(row["text_input"], str):
            raise WorkloadError(f"{where}: key 'text_input' must be a string")
        return row["text_input"]
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise WorkloadError(f"{where}: key 'messages' must be a list of chat messages with a 'role'")
        return messages
    length = _int(row, "input_length", where, minimum=1)
    assert length is not None
    hashes = row.get("hash_ids") or []
    if not isinstance(hashes, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in hashes):
        raise WorkloadError(f"{where}: key 'hash_ids' must be a list of integers")
    if len(hashes) * block_size - length >= block_size:
        raise WorkloadError(f"{where}: key 'hash_ids': {len(hashes)} blocks of {block_size} tokens are more than "
                            f"input_length {length} needs")
    parts = []
    left = length
    for h in hashes:
        take = min(block_size, left)
        parts.append(block_text(scope, h, take))
        left -= take
    if left > 0:
        parts.append(filler(scope, key, left))
    return "".join(parts)


def load_mooncake(path: Path, block_size: int = BLOCK_SIZE) -> Workload:
    scope = path.name
    sessions: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    timestamps = 0
    for lineno, where, row in json_objects(path):
        for key in ("timestamp", "delay"):
            v = row.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v < 0):
                raise WorkloadError(f"{where}: key '{key}' must be a number of milliseconds >= 0, got {v!r}")
        timestamps += "timestamp" in row
        session = row.get("session_id")
        if session is not None and not isinstance(session, str):
            raise WorkloadError(f"{where}: key 'session_id' must be a string")
        sessions.setdefault(session if session else f"line-{lineno}", []).append((lineno, row))
    if not sessions:
        raise WorkloadError(f"{path}: no requests in the file")
    trajectories = []
    for sid, rows in sessions.items():
        calls: list[tuple[tuple[dict[str, Any], ...], int, dict[str, Any]]] = []  # messages, output, answer
        history: list[dict[str, Any]] = []
        for k, (lineno, row) in enumerate(rows):
            where = f"{path}:{lineno}"
            prompt = _prompt(row, where, scope, f"{sid}:{lineno}", block_size)
            out = max(1, _int(row, "output_length", where) or DEFAULT_OUTPUT_TOKENS)
            # a messages row is the whole request, sent as it is (AIPerf's MESSAGE_ARRAY_WITH_RESPONSES)
            messages = tuple(prompt) if isinstance(prompt, list) else tuple(history + [{"role": "user", "content": prompt}])
            answer = {"role": "assistant", "content": block_text(f"{scope}:answer:{sid}", k, out)}
            calls.append((messages, out, answer))
            history = list(messages) + [answer]
        turns = tuple(
            Turn(messages, out,
                 tool_delay_s=(rows[k + 1][1].get("delay") or 0) / 1000.0 if k + 1 < len(rows) else 0.0,
                 recorded_assistant=answer if k + 1 < len(rows) else None,
                 previous_prefix=shared_prefix(calls[k - 1][0], messages) if k else None)
            for k, (messages, out, answer) in enumerate(calls))
        trajectories.append(Trajectory(sid, turns, source=str(path), metadata={"format": "mooncake"}))
    warnings = []
    if timestamps:
        warnings.append(f"{path.name}: {timestamps} rows carry an arrival timestamp; agents replay closed-loop "
                        "(each session's next request after the previous one plus its delay), not on that schedule")
    return Workload(path.stem, tuple(trajectories), tuple(warnings))
