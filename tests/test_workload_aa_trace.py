"""AA replay manifests and JSONL traces: the shared traces load, bad input names file, line and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from agentperf_tui.workload import WorkloadError, load_workload
from agentperf_tui.workload.aa_trace import REQUIRED_KEYS, load_manifest, load_trace

AA_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces" / "aa-agentperf-local"
MINI = AA_TRACES / "aa-mini-v1" / "manifest.json"
DEFAULT = AA_TRACES / "agentperf-default-v1" / "manifest-x86_64.json"
K8S = AA_TRACES / "agentperf-default-v1" / "traces" / "task_k8s_debugging.jsonl"

needs_shared = pytest.mark.skipif(
    not (MINI.is_file() and DEFAULT.is_file() and K8S.is_file()),
    reason=f"shared AA traces not found under {AA_TRACES} (they live outside the repo, in /work/shared)",
)


def row(idx: int, messages: list[dict[str, Any]], conversation: str = "c1", **extra: Any) -> dict[str, Any]:
    """One valid AA trace line."""
    base = {
        "version": 1,
        "turn_id": f"{conversation}:{idx:04d}",
        "task_id": conversation,
        "conversation_id": conversation,
        "conversation_idx": idx,
        "messages": messages,
        "simulated_tool_delay_ms_after": 100,
        "target_output_tokens": 10 + idx,
    }
    base.update(extra)
    return base


def chain(turns: int, conversation: str = "c1") -> list[dict[str, Any]]:
    """A valid conversation: each line's messages extend the previous line's."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": f"task {conversation}"},
    ]
    rows = []
    for k in range(turns):
        rows.append(row(k, list(messages), conversation))
        messages += [
            {"role": "assistant", "content": f"answer {k}", "tool_calls": [{"id": f"t{k}", "type": "function",
                                                                            "function": {"name": "ls", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": f"t{k}", "content": f"result {k}"},
        ]  # fmt: skip
    return rows


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


@needs_shared
def test_aa_mini_loads_one_trajectory_of_six_turns():
    w = load_workload(MINI, seed=1)
    assert w.name == "AA bundled mini replay v1"
    assert w.warnings == ()
    (traj,) = w.trajectories
    assert traj.trajectory_id == "aa-mini-library-01"
    assert traj.turn_count == 6
    assert [t.target_output_tokens for t in traj.turns] == [256] * 6
    assert [t.tool_delay_s for t in traj.turns] == pytest.approx([0.05] * 5 + [0.0])
    assert [len(t.messages) for t in traj.turns] == [2, 5, 8, 11, 14, 17]
    names = [tool["function"]["name"] for tool in traj.turns[0].tools or ()]
    assert len(names) == 4 and names[0] == "search_catalog"
    for a, b in zip(traj.turns, traj.turns[1:], strict=False):
        assert b.messages[: len(a.messages)] == a.messages
        assert a.recorded_assistant is not None
        assert a.recorded_assistant["role"] == "assistant"
        assert a.recorded_assistant is b.messages[len(a.messages)]
    assert traj.turns[-1].recorded_assistant is None


@needs_shared
def test_k8s_manifest_loads_the_one_present_trace_and_warns_about_seven_missing():
    w = load_workload(DEFAULT, seed=1)
    (traj,) = w.trajectories
    assert traj.trajectory_id == "task_k8s_debugging"
    assert traj.turn_count == 5
    assert [t.target_output_tokens for t in traj.turns] == [53, 733, 43, 71, 212]
    assert [t.recorded_prompt_tokens for t in traj.turns] == [6888, 7353, 7951, 8426, 8529]
    assert traj.turns[0].tool_delay_s == pytest.approx(0.053162134)
    assert all(t.recorded_assistant is not None for t in traj.turns[:-1])
    assert len(w.warnings) == 7
    assert w.warnings[0] == (
        "manifest-x86_64.json: task 'task_meeting_council_budget': "
        "trace file traces/task_meeting_council_budget.jsonl not found"
    )
    assert all("not found" in m and "k8s" not in m for m in w.warnings)


@needs_shared
def test_trace_file_alone_is_sniffed_as_aa_and_shares_message_objects():
    w = load_workload(K8S, seed=1)
    assert w.name == "task_k8s_debugging" and w.warnings == ()
    turns = w.trajectories[0].turns
    assert len(turns) == 5
    system = turns[0].messages[0]
    assert system["role"] == "system" and len(system["content"]) > 30_000
    assert all(t.messages[0] is system for t in turns)  # one copy of the 30K-char prompt, not five


def test_manifest_skips_a_missing_trace_and_loads_the_rest(tmp_path: Path):
    write_jsonl(tmp_path / "a.jsonl", chain(3, "a"))
    write_jsonl(tmp_path / "b.jsonl", chain(2, "b"))
    manifest = {"name": "m", "tasks": [{"task_id": "a", "trace": "a.jsonl"}, {"task_id": "b", "trace": "b.jsonl"},
                                       {"task_id": "gone", "trace": "traces/gone.jsonl"}]}  # fmt: skip
    (tmp_path / "manifest.json").write_bytes(orjson.dumps(manifest))
    w = load_workload(tmp_path / "manifest.json", seed=1)
    assert [t.trajectory_id for t in w.trajectories] == ["a", "b"]
    assert [t.turn_count for t in w.trajectories] == [3, 2]
    assert w.warnings == ("manifest.json: task 'gone': trace file traces/gone.jsonl not found",)


@pytest.mark.parametrize(("change", "key", "message"), [
    ({"model_calls": 4}, "tasks[0]: key 'model_calls'", "records 4 model calls but the trace has 3 rows"),
    ({"tool_calls": 2}, "tasks[0]: key 'tool_calls'", "records 2 tool calls but the trace's recorded_tool_calls_after hold 0"),
    ({"task_id": "other"}, "tasks[0]: key 'task_id'", "task 'other' but its trace's rows say 'a'"),
    ({"trace": "../outside.jsonl"}, "tasks[0]: key 'trace'", "must stay within the manifest's folder"),
    ({"trace": "/etc/passwd"}, "tasks[0]: key 'trace'", "must stay within the manifest's folder"),
])
def test_manifest_defects_are_refused_before_inference(tmp_path: Path, change: dict, key: str, message: str):
    """AA's own pre-inference checks (agentperf_local replay/runner.py _prepare_tasks)."""
    write_jsonl(tmp_path / "a.jsonl", chain(3, "a"))
    manifest = {"version": 1, "mode": "single_user_agentic_replay",
                "tasks": [{"task_id": "a", "trace": "a.jsonl", "model_calls": 3, "tool_calls": 0, **change}]}
    (tmp_path / "m.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(WorkloadError) as err:
        load_manifest(tmp_path / "m.json")
    assert f"m.json: {key}" in str(err.value) and message in str(err.value)


@pytest.mark.parametrize(("top", "message"), [
    ({"version": 2}, "key 'version' must be 1, got 2"),
    ({"mode": "multi_user"}, "key 'mode' must be one of single_user_agentic_replay"),
    ({"tasks": []}, "the manifest contains no tasks"),
])
def test_manifest_version_mode_and_empty_tasks_are_refused(tmp_path: Path, top: dict, message: str):
    write_jsonl(tmp_path / "a.jsonl", chain(2, "a"))
    manifest = {"tasks": [{"task_id": "a", "trace": "a.jsonl"}], **top}
    (tmp_path / "m.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(WorkloadError, match=message):
        load_manifest(tmp_path / "m.json")


def test_duplicate_task_is_refused_not_loaded_twice(tmp_path: Path):
    write_jsonl(tmp_path / "a.jsonl", chain(2, "a"))
    manifest = {"tasks": [{"task_id": "a", "trace": "a.jsonl"}, {"task_id": "a", "trace": "a.jsonl"}]}
    (tmp_path / "m.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(WorkloadError, match=r"tasks\[1\]: key 'task_id': duplicate task_id 'a'"):
        load_manifest(tmp_path / "m.json")


def test_max_output_tokens_caps_the_target_as_aa_does(tmp_path: Path):
    rows = chain(3)
    rows[0]["target_output_tokens"], rows[0]["max_output_tokens"] = 53, 10  # AA sends 10
    rows[1]["target_output_tokens"] = 20_000  # above AA's run maximum of 16,384
    (traj,), _ = load_trace(write_jsonl(tmp_path / "t.jsonl", rows))
    assert [t.target_output_tokens for t in traj.turns][:2] == [10, 16_384]


def test_manifest_with_every_trace_missing_is_an_error(tmp_path: Path):
    manifest = {"tasks": [{"task_id": "a", "trace": "traces/a.jsonl"}, {"task_id": "b", "trace": "b.jsonl"}]}
    (tmp_path / "m.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(WorkloadError, match=r"m\.json: none of the 2 trace files could be loaded"):
        load_manifest(tmp_path / "m.json")


def test_manifest_without_tasks_or_trace_key_is_an_error(tmp_path: Path):
    (tmp_path / "m.json").write_text('{"name": "x"}')
    with pytest.raises(WorkloadError, match="missing key 'tasks'"):
        load_workload(tmp_path / "m.json", seed=1)
    (tmp_path / "m.json").write_text('{"tasks": [{"task_id": "x"}]}')
    with pytest.raises(WorkloadError, match=r"tasks\[0\]: missing key 'trace'"):
        load_workload(tmp_path / "m.json", seed=1)


def test_malformed_json_line_names_file_and_line(tmp_path: Path):
    lines = [orjson.dumps(r).decode() for r in chain(3)]
    bad = tmp_path / "file.jsonl"
    bad.write_text("\n".join([lines[0], lines[1], "{broken json", lines[2]]) + "\n")
    with pytest.raises(WorkloadError, match=r"file\.jsonl:3: invalid JSON"):
        load_trace(bad)


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_required_key_names_key_and_line(tmp_path: Path, key: str):
    rows = chain(3)
    del rows[1][key]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(WorkloadError, match=rf"t\.jsonl:2: missing key '{key}'"):
        load_trace(path)


def test_output_length_falls_back_to_recorded_then_max_then_errors(tmp_path: Path):
    rows = chain(3)
    del rows[1]["target_output_tokens"]
    rows[1]["recorded_completion_tokens"] = 77
    del rows[2]["target_output_tokens"]
    rows[2]["max_output_tokens"] = 512
    (traj,), _ = load_trace(write_jsonl(tmp_path / "t.jsonl", rows))
    assert [t.target_output_tokens for t in traj.turns] == [10, 77, 512]
    del rows[2]["max_output_tokens"]
    with pytest.raises(WorkloadError, match=r"t\.jsonl:3: missing key 'target_output_tokens'"):
        load_trace(write_jsonl(tmp_path / "t.jsonl", rows))
    rows[2]["target_output_tokens"] = "many"
    with pytest.raises(WorkloadError, match=r"t\.jsonl:3: key 'target_output_tokens' must be an integer"):
        load_trace(write_jsonl(tmp_path / "t.jsonl", rows))


def test_lines_group_by_conversation_and_order_by_idx(tmp_path: Path):
    a, b = chain(4, "a"), chain(3, "b")
    shuffled = [a[2], b[1], a[0], b[2], a[3], b[0], a[1]]
    trajectories, warnings = load_trace(write_jsonl(tmp_path / "t.jsonl", shuffled))
    assert warnings == []
    assert [(t.trajectory_id, t.turn_count) for t in trajectories] == [("a", 4), ("b", 3)]
    ta = trajectories[0]
    assert [len(t.messages) for t in ta.turns] == [2, 4, 6, 8]
    assert [t.target_output_tokens for t in ta.turns] == [10, 11, 12, 13]
    assert [t.tool_delay_s for t in ta.turns] == [0.1] * 4
    assert ta.turns[0].recorded_assistant == {**ta.turns[1].messages[2]}
    assert (
        ta.turns[2].recorded_assistant is not None and ta.turns[2].recorded_assistant["content"] == "answer 2"
    )
    assert ta.metadata["task_id"] == "a"


def swe_style(turns: int) -> list[dict[str, Any]]:
    """SWE-style rows: each call ends with a temporary user message the next call does not carry."""
    history: list[dict[str, Any]] = [{"role": "system", "content": "sys"}, {"role": "user", "content": "fix the bug"}]
    rows = []
    for k in range(turns):
        rows.append(row(k, history + [{"role": "user", "content": f"Tool-call turn {k + 1} of 100"}]))
        history = history + [
            {"role": "assistant", "content": None, "reasoning_content": "thinking",
             "tool_calls": [{"id": f"c{k}", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": f"c{k}", "content": f"output {k}"},
        ]
    return rows


def test_a_non_prefix_swe_style_trace_loads_without_warnings_and_knows_what_it_shares(tmp_path: Path):
    trajectories, warnings = load_trace(write_jsonl(tmp_path / "t.jsonl", swe_style(4)))
    assert warnings == []
    turns = trajectories[0].turns
    assert [len(t.messages) for t in turns] == [3, 5, 7, 9]
    assert [t.previous_prefix for t in turns] == [None, 2, 4, 6]  # the temporary user message is dropped
    assert turns[1].messages[0] is turns[0].messages[0]  # shared objects, not copies
    assert turns[0].recorded_assistant is not None and turns[0].recorded_assistant["tool_calls"][0]["id"] == "c0"
    # only AA's wire keys go out: reasoning_content is dropped as AA's RequestMessage does
    assert "reasoning_content" not in turns[1].messages[2] and turns[1].messages[2]["content"] is None


def test_an_edited_history_shares_only_the_unchanged_messages(tmp_path: Path):
    rows = chain(3)
    rows[2]["messages"][1] = {"role": "user", "content": "edited history"}
    trajectories, warnings = load_trace(write_jsonl(tmp_path / "t.jsonl", rows))
    assert trajectories[0].turn_count == 3 and warnings == []
    assert trajectories[0].turns[2].messages[1]["content"] == "edited history"
    assert trajectories[0].turns[2].previous_prefix == 1


def test_repeated_conversation_idx_is_an_error(tmp_path: Path):
    rows = chain(2)
    rows[1]["conversation_idx"] = 0
    with pytest.raises(WorkloadError, match=r"t\.jsonl:2: key 'conversation_idx' 0 repeats line 1"):
        load_trace(write_jsonl(tmp_path / "t.jsonl", rows))


def test_bad_field_types_name_the_key(tmp_path: Path):
    rows = chain(2)
    rows[0]["simulated_tool_delay_ms_after"] = -5
    with pytest.raises(WorkloadError, match=r"t\.jsonl:1: key 'simulated_tool_delay_ms_after'"):
        load_trace(write_jsonl(tmp_path / "t.jsonl", rows))
    rows = chain(2)
    rows[1]["messages"] = []
    with pytest.raises(WorkloadError, match=r"t\.jsonl:2: key 'messages' must be a non-empty list"):
        load_trace(write_jsonl(tmp_path / "t.jsonl", rows))
    with pytest.raises(WorkloadError, match=r"t\.jsonl:1: expected one JSON object per line"):
        load_trace(write_jsonl(tmp_path / "t.jsonl", [[1, 2]]))


def test_missing_workload_path_is_an_error_naming_it(tmp_path: Path):
    with pytest.raises(WorkloadError, match=r"nope\.jsonl: workload file not found"):
        load_workload(tmp_path / "nope.jsonl", seed=1)
    with pytest.raises(WorkloadError, match="unknown workload format"):
        load_workload(write_jsonl(tmp_path / "x.txt", []), seed=1)
