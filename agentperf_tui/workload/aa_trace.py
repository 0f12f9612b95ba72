"""Loader for Artificial Analysis' replay format: a manifest of tasks, one JSONL trace per task.

Each trace line is one model call with the full request history (``messages``), optional
``tools``, the output length to force (``target_output_tokens``, else the recorded completion)
and the tool time after it (``simulated_tool_delay_ms_after``). Lines group into trajectories by
``conversation_id`` and order by ``conversation_idx``. Missing trace files named by a manifest
are warnings (the rest loads); a malformed line is an error naming file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from agentperf_tui.workload.errors import WorkloadError
from agentperf_tui.workload.model import Trajectory, Turn, Workload

REQUIRED = ("conversation_id", "conversation_idx", "messages", "simulated_tool_delay_ms_after")


def _output_tokens(row: dict[str, Any], where: str) -> int:
    for key in ("target_output_tokens", "recorded_completion_tokens", "max_output_tokens"):
        value = row.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise WorkloadError(f"{where}: key '{key}' must be a positive integer, got {value!r}")
            return value
    raise WorkloadError(f"{where}: missing key 'target_output_tokens' (or 'recorded_completion_tokens')")


def load_trace(path: Path, display: str | None = None) -> tuple[list[Trajectory], list[str]]:
    """Trajectories in one AA JSONL trace file, plus warnings (e.g. a broken prefix chain)."""
    name = display or str(path)
    rows: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise WorkloadError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{name}:{lineno}"
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise WorkloadError(f"{where}: invalid JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise WorkloadError(f"{where}: expected a JSON object per line")
        for key in REQUIRED:
            if key not in row:
                raise WorkloadError(f"{where}: missing key '{key}'")
        if not isinstance(row["messages"], list) or not row["messages"]:
            raise WorkloadError(f"{where}: key 'messages' must be a non-empty list")
        if not isinstance(row["conversation_idx"], int):
            raise WorkloadError(f"{where}: key 'conversation_idx' must be an integer")
        delay = row["simulated_tool_delay_ms_after"]
        if not isinstance(delay, int | float) or delay < 0:
            raise WorkloadError(f"{where}: key 'simulated_tool_delay_ms_after' must be a number >= 0")
        row["_output"] = _output_tokens(row, where)
        rows.setdefault(str(row["conversation_id"]), []).append((row["conversation_idx"], lineno, row))
    if not rows:
        raise WorkloadError(f"{name}: no model calls in the file")
    trajectories, warnings = [], []
    for conversation, items in rows.items():
        items.sort(key=lambda item: item[0])
        turns = []
        for k, (_idx, lineno, row) in enumerate(items):
            messages = tuple(row["messages"])
            assistant = None
            if k + 1 < len(items):
                following = items[k + 1][2]["messages"]
                if following[: len(messages)] != list(messages):
                    warnings.append(f"{name}:{items[k + 1][1]}: messages do not extend line {lineno}'s messages")
                extra = following[len(messages):]
                assistant = next((m for m in extra if isinstance(m, dict) and m.get("role") == "assistant"), None)
            tools = row.get("tools")
            turns.append(Turn(messages=messages, target_output_tokens=row["_output"],
                              tool_delay_s=float(row["simulated_tool_delay_ms_after"]) / 1000.0,
                              tools=tuple(tools) if tools else None,
                              recorded_prompt_tokens=row.get("recorded_prompt_tokens"),
                              recorded_assistant=assistant))
        trajectories.append(Trajectory(conversation, tuple(turns), source=name))
    return trajectories, warnings


def load_manifest(path: Path) -> Workload:
    """All tasks of a manifest; missing traces are warnings, none loadable is an error."""
    try:
        manifest = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise WorkloadError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tasks"), list):
        raise WorkloadError(f"{path}: missing key 'tasks' (a list)")
    trajectories: list[Trajectory] = []
    warnings: list[str] = []
    for i, task in enumerate(manifest["tasks"]):
        if not isinstance(task, dict) or not isinstance(task.get("trace"), str):
            raise WorkloadError(f"{path}: tasks[{i}]: missing key 'trace'")
        trace = path.parent / task["trace"]
        if not trace.exists():
            warnings.append(f"{path.name}: task '{task.get('task_id', i)}': trace file {task['trace']} not found")
            continue
        found, notes = load_trace(trace, str(trace))
        trajectories.extend(found)
        warnings.extend(notes)
    if not trajectories:
        raise WorkloadError(f"{path}: none of the {len(manifest['tasks'])} trace files could be loaded")
    return Workload(str(manifest.get("name") or path.stem), tuple(trajectories), tuple(warnings))
