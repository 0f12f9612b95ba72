"""Loads Artificial Analysis' replay format (a manifest of tasks, one JSONL trace per task) into a Workload.

Each trace line is one model call: the full recorded request history (``messages``), optional
``tools``, the output length to force (``target_output_tokens``, else ``recorded_completion_tokens``,
else ``max_output_tokens``) and the tool time after it (``simulated_tool_delay_ms_after``). Lines
group into trajectories by ``conversation_id`` and order by ``conversation_idx``. Each line's
messages should be an exact prefix of the next line's; where that holds the loader reuses the
earlier line's message objects, so a long trace costs memory once per message, not once per turn.
A broken prefix chain is a warning; a missing trace file named by a manifest is a warning (the
other tasks load); a malformed line is a :class:`WorkloadError` naming file, line and key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from agentperf_tui.workload.errors import WorkloadError
from agentperf_tui.workload.model import Trajectory, Turn, Workload

REQUIRED_KEYS = (
    "version",
    "turn_id",
    "task_id",
    "conversation_id",
    "conversation_idx",
    "messages",
    "simulated_tool_delay_ms_after",
)
OUTPUT_KEYS = ("target_output_tokens", "recorded_completion_tokens", "max_output_tokens")


@dataclass(slots=True)
class _Call:
    """One parsed trace line, before it is grouped into a trajectory."""

    lineno: int
    idx: int
    task_id: str
    messages: list[dict[str, Any]]
    output_tokens: int
    tool_delay_s: float
    tools: tuple[dict[str, Any], ...] | None
    recorded_prompt_tokens: int | None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _output_tokens(row: dict[str, Any], where: str) -> int:
    """The output length to force: the first present of OUTPUT_KEYS (0 is raised to 1)."""
    for key in OUTPUT_KEYS:
        value = row.get(key)
        if value is None:
            continue
        if not _is_int(value) or value < 0:
            raise WorkloadError(f"{where}: key '{key}' must be an integer >= 0, got {value!r}")
        return max(1, value)  # max_tokens=0 is not a request a server accepts
    raise WorkloadError(
        f"{where}: missing key 'target_output_tokens' (nor 'recorded_completion_tokens' or 'max_output_tokens')"
    )


def _parse_line(raw: bytes, where: str, lineno: int) -> tuple[str, _Call]:
    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise WorkloadError(f"{where}: invalid JSON: {exc}") from exc
    if not isinstance(row, dict):
        raise WorkloadError(f"{where}: expected one JSON object per line, got {type(row).__name__}")
    for key in REQUIRED_KEYS:
        if key not in row:
            raise WorkloadError(f"{where}: missing key '{key}'")
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        raise WorkloadError(f"{where}: key 'messages' must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise WorkloadError(f"{where}: key 'messages': item {i} is not a chat message with a 'role'")
    if not _is_int(row["conversation_idx"]):
        raise WorkloadError(f"{where}: key 'conversation_idx' must be an integer")
    delay = row["simulated_tool_delay_ms_after"]
    if not isinstance(delay, int | float) or isinstance(delay, bool) or delay < 0:
        raise WorkloadError(f"{where}: key 'simulated_tool_delay_ms_after' must be a number >= 0")
    tools = row.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise WorkloadError(f"{where}: key 'tools' must be a list of tool schemas")
    prompt = row.get("recorded_prompt_tokens")
    if prompt is not None and not _is_int(prompt):
        raise WorkloadError(f"{where}: key 'recorded_prompt_tokens' must be an integer")
    call = _Call(
        lineno=lineno,
        idx=row["conversation_idx"],
        task_id=str(row["task_id"]),
        messages=messages,
        output_tokens=_output_tokens(row, where),
        tool_delay_s=float(delay) / 1000.0,
        tools=tuple(tools) if tools else None,
        recorded_prompt_tokens=prompt,
    )
    return str(row["conversation_id"]), call


def _trajectory(conversation: str, calls: list[_Call], name: str, warnings: list[str]) -> Trajectory:
    """One trajectory from a conversation's calls (sorted here); prefix breaks become warnings."""
    calls.sort(key=lambda c: c.idx)
    for a, b in zip(calls, calls[1:], strict=False):
        if a.idx == b.idx:
            raise WorkloadError(
                f"{name}:{b.lineno}: key 'conversation_idx' {b.idx} repeats line {a.lineno} "
                f"of conversation '{conversation}'"
            )
    # Share message objects between turns: where line k+1 extends line k, its first len(k)
    # messages are replaced by line k's (equal) objects.
    shared: list[tuple[dict[str, Any], ...]] = []
    for k, call in enumerate(calls):
        if k == 0:
            shared.append(tuple(call.messages))
            continue
        prev = shared[-1]
        n = len(prev)
        if len(call.messages) >= n and call.messages[:n] == list(prev):
            shared.append(prev + tuple(call.messages[n:]))
        else:
            warnings.append(
                f"{name}:{call.lineno}: messages do not extend the previous call's "
                f"(line {calls[k - 1].lineno}) as an exact prefix"
            )
            shared.append(tuple(call.messages))
    turns = []
    for k, call in enumerate(calls):
        assistant = None
        if k + 1 < len(calls):
            added = shared[k + 1][len(shared[k]) :]
            assistant = next((m for m in added if m.get("role") == "assistant"), None)
        turns.append(
            Turn(
                messages=shared[k],
                target_output_tokens=call.output_tokens,
                tool_delay_s=call.tool_delay_s,
                tools=call.tools,
                recorded_prompt_tokens=call.recorded_prompt_tokens,
                recorded_assistant=assistant,
            )
        )
    metadata = {"task_id": calls[0].task_id, "first_line": calls[0].lineno}
    return Trajectory(conversation, tuple(turns), source=name, metadata=metadata)


def load_trace(path: Path, display: str | None = None) -> tuple[list[Trajectory], list[str]]:
    """Trajectories of one AA JSONL trace file (in order of first appearance) plus warnings.

    ``display`` is how the file is named in messages (default: the path as given).
    """
    name = display or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkloadError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    conversations: dict[str, list[_Call]] = {}
    for lineno, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        conversation, call = _parse_line(raw, f"{name}:{lineno}", lineno)
        conversations.setdefault(conversation, []).append(call)
    if not conversations:
        raise WorkloadError(f"{name}: no model calls in the file")
    warnings: list[str] = []
    trajectories = [_trajectory(c, calls, name, warnings) for c, calls in conversations.items()]
    return trajectories, warnings


def load_trace_workload(path: Path) -> Workload:
    """A single AA trace file on its own, as a Workload named after the file."""
    trajectories, warnings = load_trace(path)
    return Workload(path.stem, tuple(trajectories), tuple(warnings))


def load_manifest(path: Path) -> Workload:
    """Every task of an AA manifest. Missing trace files are warnings; none loadable is an error."""
    try:
        manifest = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise WorkloadError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise WorkloadError(f"{path}: expected a JSON object with key 'tasks'")
    tasks = manifest.get("tasks")
    if not isinstance(tasks, list):
        raise WorkloadError(f"{path}: missing key 'tasks' (a list)")
    trajectories: list[Trajectory] = []
    warnings: list[str] = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("trace"), str):
            raise WorkloadError(f"{path}: tasks[{i}]: missing key 'trace'")
        task_id = str(task.get("task_id", i))
        trace = path.parent / task["trace"]
        if not trace.is_file():
            warnings.append(f"{path.name}: task '{task_id}': trace file {task['trace']} not found")
            continue
        found, notes = load_trace(trace)
        for trajectory in found:
            trajectory.metadata.setdefault("manifest_task_id", task_id)
        trajectories.extend(found)
        warnings.extend(notes)
    if not trajectories:
        raise WorkloadError(f"{path}: none of the {len(tasks)} trace files could be loaded")
    return Workload(str(manifest.get("name") or path.stem), tuple(trajectories), tuple(warnings))
