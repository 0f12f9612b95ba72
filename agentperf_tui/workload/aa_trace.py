"""Loads Artificial Analysis' replay format (a manifest of tasks, one JSONL trace per task) into a Workload.

Each trace line is one model call: the full recorded request history (``messages``), optional
``tools``, the output length to force (``max_output_tokens`` as a cap, else ``target_output_tokens``,
else ``recorded_completion_tokens``) and the tool time after it (``simulated_tool_delay_ms_after``).
Lines group into trajectories by ``conversation_id`` and order by ``conversation_idx``. Messages
keep the keys AA's loader keeps (role, content, name, tool_calls, tool_call_id; schema.py
``RequestMessage``). A line need not be a prefix of the next (AA does not require it: SWE-style
traces end each call with a temporary user message the next call drops); each turn records how
many leading messages it shares with the previous one (``Turn.previous_prefix``), the loader
reuses those message objects (a long trace costs memory once per message, not once per turn),
and the ``free`` policy splices the model's answer in at that point. A missing trace file named
by a manifest is a warning (the other tasks load); a malformed line is a :class:`WorkloadError`
naming file, line and key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from agentperf_tui.workload.errors import WorkloadError
from agentperf_tui.workload.jsonl import json_objects, shared_prefix
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
RUN_MAX_OUTPUT_TOKENS = 16_384  # AA's run maximum (agentperf_local client/request.py DEFAULT_MAX_OUTPUT_TOKENS)
FORMAT_VERSION = 1  # AA's manifest and trace format version (agentperf_local workload/schema.py)
REPLAY_MODES = ("single_user_agentic_replay",)


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
    recorded_tool_calls: int = 0  # len(recorded_tool_calls_after): what AA's manifest tool_calls counts


WIRE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")  # AA's RequestMessage.to_dict


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    """The message as AA sends it: only the OpenAI wire keys (``reasoning_content`` etc. dropped)."""
    if all(k in WIRE_KEYS for k in message):
        return message
    return {k: message[k] for k in WIRE_KEYS if k in message}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _output_tokens(row: dict[str, Any], where: str) -> int:
    """The output length to force, as AA's replay computes it (agentperf_local replay/runner.py
    ``_max_output_tokens``): a row's ``max_output_tokens`` is a cap that wins over its target;
    else ``target_output_tokens``, else ``recorded_completion_tokens``; never above the run
    maximum RUN_MAX_OUTPUT_TOKENS; 0 is raised to 1 (max_tokens=0 is not a request a server takes)."""
    values = {}
    for key in OUTPUT_KEYS:
        value = row.get(key)
        if value is None:
            continue
        if not _is_int(value) or value < 0:
            raise WorkloadError(f"{where}: key '{key}' must be an integer >= 0, got {value!r}")
        values[key] = value
    if "max_output_tokens" in values:
        return max(1, min(RUN_MAX_OUTPUT_TOKENS, values["max_output_tokens"]))
    for key in ("target_output_tokens", "recorded_completion_tokens"):
        if key in values:
            return max(1, min(RUN_MAX_OUTPUT_TOKENS, values[key]))
    raise WorkloadError(
        f"{where}: missing key 'target_output_tokens' (nor 'recorded_completion_tokens' or 'max_output_tokens')"
    )


def _parse_row(row: dict[str, Any], where: str, lineno: int) -> tuple[str, _Call]:
    for key in REQUIRED_KEYS:
        if key not in row:
            raise WorkloadError(f"{where}: missing key '{key}'")
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        raise WorkloadError(f"{where}: key 'messages' must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise WorkloadError(f"{where}: key 'messages': item {i} is not a chat message with a 'role'")
    messages = [_wire_message(m) for m in messages]
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
        recorded_tool_calls=len(row.get("recorded_tool_calls_after") or ()),
    )
    return str(row["conversation_id"]), call


def _trajectory(conversation: str, calls: list[_Call], name: str, warnings: list[str]) -> Trajectory:
    """One trajectory from a conversation's calls (sorted here)."""
    calls.sort(key=lambda c: c.idx)
    for a, b in zip(calls, calls[1:], strict=False):
        if a.idx == b.idx:
            raise WorkloadError(
                f"{name}:{b.lineno}: key 'conversation_idx' {b.idx} repeats line {a.lineno} "
                f"of conversation '{conversation}'"
            )
    # Share message objects between turns: line k+1's first L messages (those equal to line k's)
    # are line k's objects. L = len(line k) for a prefix trace; less where line k ended with a
    # temporary message the next line dropped.
    shared: list[tuple[dict[str, Any], ...]] = []
    prefix: list[int | None] = []
    for k, call in enumerate(calls):
        if k == 0:
            shared.append(tuple(call.messages))
            prefix.append(None)
            continue
        prev = shared[-1]
        n = shared_prefix(prev, call.messages)
        shared.append(prev[:n] + tuple(call.messages[n:]))
        prefix.append(n)
    turns = []
    for k, call in enumerate(calls):
        assistant = None
        if k + 1 < len(calls):
            n = prefix[k + 1] or 0
            following = shared[k + 1]
            # the recorded answer to call k: the first message of call k+1 after the shared part
            assistant = following[n] if n < len(following) and following[n].get("role") == "assistant" else None
        turns.append(
            Turn(
                messages=shared[k],
                target_output_tokens=call.output_tokens,
                tool_delay_s=call.tool_delay_s,
                tools=call.tools,
                recorded_prompt_tokens=call.recorded_prompt_tokens,
                recorded_assistant=assistant,
                previous_prefix=prefix[k],
            )
        )
    metadata = {"task_id": calls[0].task_id, "first_line": calls[0].lineno,
                "task_ids": sorted({c.task_id for c in calls}),
                "recorded_tool_calls": sum(c.recorded_tool_calls for c in calls)}
    return Trajectory(conversation, tuple(turns), source=name, metadata=metadata)


def load_trace(path: Path, display: str | None = None) -> tuple[list[Trajectory], list[str]]:
    """Trajectories of one AA JSONL trace file (in order of first appearance) plus warnings.

    ``display`` is how the file is named in messages (default: the path as given).
    """
    name = display or str(path)
    conversations: dict[str, list[_Call]] = {}
    for lineno, where, row in json_objects(path, name):
        conversation, call = _parse_row(row, where, lineno)
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


def _check_task(path: Path, i: int, task: dict[str, Any], task_id: str, found: list[Trajectory]) -> None:
    """AA's checks of a task against its trace before inference (agentperf_local replay/runner.py
    ``_prepare_tasks``): the rows' task_id, and the declared model and tool call counts."""
    where = f"{path}: tasks[{i}]"
    other = sorted({t for traj in found for t in traj.metadata.get("task_ids", ())} - {task_id})
    if other:
        raise WorkloadError(f"{where}: key 'task_id': task {task_id!r} but its trace's rows say {other[0]!r}")
    rows = sum(traj.turn_count for traj in found)
    declared = task.get("model_calls")
    if declared is not None and declared != rows:
        raise WorkloadError(f"{where}: key 'model_calls': the manifest records {declared} model calls but the "
                            f"trace has {rows} rows")
    tool_calls = sum(traj.metadata.get("recorded_tool_calls", 0) for traj in found)
    declared = task.get("tool_calls")
    if declared is not None and declared != tool_calls:
        raise WorkloadError(f"{where}: key 'tool_calls': the manifest records {declared} tool calls but the "
                            f"trace's recorded_tool_calls_after hold {tool_calls}")


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
    version = manifest.get("version")
    if version is not None and version != FORMAT_VERSION:
        raise WorkloadError(f"{path}: key 'version' must be {FORMAT_VERSION}, got {version!r}")
    mode = manifest.get("mode")
    if mode is not None and mode not in REPLAY_MODES:
        raise WorkloadError(f"{path}: key 'mode' must be one of {', '.join(REPLAY_MODES)}, got {mode!r}")
    if not tasks:
        raise WorkloadError(f"{path}: key 'tasks': the manifest contains no tasks")
    trajectories: list[Trajectory] = []
    warnings: list[str] = []
    seen: set[str] = set()
    root = path.parent.resolve()
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("trace"), str) or not task.get("trace"):
            raise WorkloadError(f"{path}: tasks[{i}]: missing key 'trace'")
        task_id = str(task.get("task_id", i))
        if task_id in seen:  # AA rejects it; loaded twice it would also weigh twice
            raise WorkloadError(f"{path}: tasks[{i}]: key 'task_id': duplicate task_id {task_id!r}")
        seen.add(task_id)
        relative = Path(task["trace"])
        resolved = (root / relative).resolve()
        if relative.is_absolute() or ".." in relative.parts or not resolved.is_relative_to(root):
            raise WorkloadError(f"{path}: tasks[{i}]: key 'trace': {task['trace']!r} must stay within the "
                                "manifest's folder")
        trace = path.parent / relative
        if not trace.is_file():
            # AA refuses a manifest with a missing trace; we load the rest and say so, because the
            # shared sets ship partial (agentperf-default-v1 here has 1 of its 8 traces)
            warnings.append(f"{path.name}: task '{task_id}': trace file {task['trace']} not found")
            continue
        found, notes = load_trace(trace)
        _check_task(path, i, task, task_id, found)
        required = task.get("required_context_tokens")
        if required is not None and (not _is_int(required) or required <= 0):
            raise WorkloadError(f"{path}: tasks[{i}]: key 'required_context_tokens' must be a positive integer, "
                                f"got {required!r}")
        for trajectory in found:
            trajectory.metadata.setdefault("manifest_task_id", task_id)
            if required is not None:
                trajectory.metadata["required_context_tokens"] = required
        trajectories.extend(found)
        warnings.extend(notes)
    if not trajectories:
        raise WorkloadError(f"{path}: none of the {len(tasks)} trace files could be loaded")
    return Workload(str(manifest.get("name") or path.stem), tuple(trajectories), tuple(warnings))
