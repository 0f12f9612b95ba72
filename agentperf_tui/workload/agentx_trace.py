"""Loads InferenceX AgentX traces (Weka / SemiAnalysis cc-traces: one Claude Code session per record).

Format (AIPerf 0.13 dataset/loader/weka_trace_models.py): a record has ``id``, ``models``,
``block_size`` (tokens per KV block, 64 in cc-traces), ``hash_id_scope`` ("local") and
``requests``; a request has ``t`` (s from session start), ``type`` ("n" or "s"), ``model``, ``in``
and ``out`` (tokens), optional ``hash_ids`` (one per block, possibly only a prefix of ``in``),
``api_time`` (s the server took), ``think_time``, ``ttft``, ``stop``; ``type: "subagent"`` entries
nest their own ``requests``. A file is one record (``.json``) or one record per line (``.jsonl``).

Replay as AIPerf's reconstruction does (dataset/loader/weka_trace.py): prompts are synthetic text
per hash id (workload/blocks.py, scoped per trace so traces never share a prefix); turn k sends
turn k-1's messages, a synthetic assistant answer of turn k-1's ``out`` tokens and a user message
with the blocks not shared with turn k-1 (plus any tokens beyond the hashed blocks), so prompt
sizes follow ``in``; where a turn shares fewer blocks than the previous one held, the history is
started again from its own blocks. ``out`` is forced (the AgentX scenario sets ``ignore_eos``);
the wait before turn k is ``t_k - t_{k-1} - api_time_{k-1}`` (end of one request to the start of
the next). Not replayed: subagents (counted in the loader's report), the scenario's random start
point inside a trace and its 10 s idle cap. The scenario sets no sampling (server defaults:
``[workload] sampling = "server"``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson

from agentperf_tui.workload.blocks import block_text, filler
from agentperf_tui.workload.errors import WorkloadError
from agentperf_tui.workload.model import Trajectory, Turn, Workload

REQUEST_TYPES = ("n", "s")


def looks_like(row: object) -> bool:
    return isinstance(row, dict) and "requests" in row and "block_size" in row


def _number(req: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = req.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise WorkloadError(f"{where}: key '{key}' must be a number >= 0, got {value!r}")
    return float(value)


def _trace(record: object, where: str) -> tuple[Trajectory | None, int]:
    """One trajectory from a trace record, and how many subagent entries it left out."""
    if not isinstance(record, dict):
        raise WorkloadError(f"{where}: expected a trace object")
    for key in ("id", "block_size", "requests"):
        if key not in record:
            raise WorkloadError(f"{where}: missing key '{key}'")
    tid = str(record["id"])
    bs = record["block_size"]
    if isinstance(bs, bool) or not isinstance(bs, int) or bs <= 0:
        raise WorkloadError(f"{where}: key 'block_size' must be a positive integer, got {bs!r}")
    if not isinstance(record["requests"], list):
        raise WorkloadError(f"{where}: key 'requests' must be a list")
    subagents = 0
    main = []
    for i, req in enumerate(record["requests"]):
        at = f"{where}: requests[{i}]"
        if not isinstance(req, dict):
            raise WorkloadError(f"{at}: expected an object")
        if req.get("type") == "subagent":
            subagents += 1
            continue
        if req.get("type") not in REQUEST_TYPES:
            raise WorkloadError(f"{at}: key 'type' must be 'n', 's' or 'subagent', got {req.get('type')!r}")
        hashes = req.get("hash_ids") or []
        if not isinstance(hashes, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in hashes):
            raise WorkloadError(f"{at}: key 'hash_ids' must be a list of integers")
        main.append((at, _number(req, "t", at), int(_number(req, "in", at)), int(_number(req, "out", at)),
                     hashes, _number(req, "api_time", at, 0.0)))
    if not main:
        return None, subagents
    turns: list[Turn] = []
    messages: list[dict[str, Any]] = []
    prev_hashes: list[int] = []
    prev_tokens = 0  # tokens the history holds
    for k, (_at, t, tokens_in, out, hashes, _api) in enumerate(main):
        shared = 0
        while shared < min(len(hashes), len(prev_hashes)) and hashes[shared] == prev_hashes[shared]:
            shared += 1
        previous_prefix: int | None = None
        if k and shared == len(prev_hashes):
            # the prompt extends the previous one: its answer, then the new blocks
            answer_tokens = bs * math.ceil(main[k - 1][3] / bs) if main[k - 1][3] else 0
            answer = {"role": "assistant", "content": block_text(f"{tid}:answer", k - 1, max(1, answer_tokens))}
            turns[-1] = Turn(turns[-1].messages, turns[-1].target_output_tokens, turns[-1].tool_delay_s,
                             recorded_assistant=answer, previous_prefix=turns[-1].previous_prefix)
            previous_prefix = len(messages)
            messages = messages + [answer]
            have = prev_tokens + answer_tokens
            new_blocks = list(hashes[shared:])
        else:  # a shorter or different prefix: the history starts again from this turn's blocks
            messages, have, new_blocks = [], 0, list(hashes)
        need = tokens_in - have
        text = "".join(block_text(tid, h, bs) for h in new_blocks)[: max(0, need) * 4]
        rest = max(0, need - len(text) // 4)
        if rest:
            text += filler(tid, f"turn-{k}", rest)
        messages = messages + [{"role": "user", "content": text or block_text(tid, -1 - k, 1)}]
        delay = 0.0
        if k + 1 < len(main):
            delay = max(0.0, main[k + 1][1] - t - main[k][5])
        turns.append(Turn(tuple(messages), max(1, out), delay, previous_prefix=previous_prefix))
        prev_hashes, prev_tokens = list(hashes), max(tokens_in, have)
    return Trajectory(tid, tuple(turns), metadata={"format": "agentx-weka", "subagents_skipped": subagents}), subagents


def load_agentx(path: Path) -> Workload:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    records: list[tuple[str, object]] = []
    if path.suffix.lower() == ".jsonl":
        for lineno, raw in enumerate(data.splitlines(), 1):
            if raw.strip():
                try:
                    records.append((f"{path}:{lineno}", orjson.loads(raw)))
                except orjson.JSONDecodeError as exc:
                    raise WorkloadError(f"{path}:{lineno}: invalid JSON: {exc}") from exc
    else:
        try:
            records.append((str(path), orjson.loads(data)))
        except orjson.JSONDecodeError as exc:
            raise WorkloadError(f"{path}: invalid JSON: {exc}") from exc
    trajectories = []
    skipped = 0
    for where, record in records:
        trajectory, subagents = _trace(record, where)
        skipped += subagents
        if trajectory is not None:
            trajectories.append(trajectory)
    if not trajectories:
        raise WorkloadError(f"{path}: no trace with a main-timeline request")
    warnings = [f"{path.name}: {skipped} subagent entries not replayed (only each trace's main timeline)"] if skipped else []
    return Workload(path.stem, tuple(trajectories), tuple(warnings))
