"""Seeded synthetic agentic trajectories calibrated to AA-AgentPerf's published workload shape.

Shape (REFERENCE §1): input per request ~5K-131K tokens with mean ~27K; output per turn median
~150 and P95 ~2K tokens; up to 200 turns; tool time 0.1-5 s with median ~1 s. Each trajectory is
a coding-agent session: system prompt + task, then turns of (assistant output with a tool call,
tool result). Turn k+1's messages are turn k's plus those two, so context grows and prefixes are
shared exactly as under AA's ``exact`` replay. Reproducible: only ``random.Random(seed)`` is used.
Text lengths follow agentperf_tui.tokens, so the twin counts the tokens intended here.
"""

from __future__ import annotations

import math
import random

from agentperf_tui.tokens import CHARS_PER_TOKEN, MESSAGE_OVERHEAD_TOKENS
from agentperf_tui.workload.model import Trajectory, Turn, Workload

MAX_TURNS = 200
MAX_CONTEXT_TOKENS = 131_072
OUTPUT_MEDIAN = 150
OUTPUT_SIGMA = math.log(2000 / 150) / 1.645  # P95 = 2,000 tokens for a lognormal
TOOL_RESULT_MEDIAN = 450
TOOL_RESULT_SIGMA = 1.0
TURNS_MEDIAN = 16
TURNS_SIGMA = 0.75
TOOL_DELAY_MEDIAN_S = 1.0
TOOL_DELAY_SIGMA = 0.9

TOOLS = tuple(
    {"type": "function", "function": {"name": name, "description": desc, "parameters": {
        "type": "object", "properties": {arg: {"type": "string"}}, "required": [arg]}}}
    for name, desc, arg in (
        ("read_file", "Read a file from the repository.", "path"),
        ("edit_file", "Apply an edit to a file.", "patch"),
        ("run_tests", "Run the test suite or one test.", "selector"),
        ("grep", "Search the repository for a pattern.", "pattern"),
    )
)
_WORDS = ("def", "class", "return", "import", "self", "value", "index", "result", "error", "config", "node",
          "buffer", "request", "handler", "test", "assert", "yield", "async", "await", "lambda", "tuple")
_BLOCK = " ".join(random.Random(7).choice(_WORDS) for _ in range(60_000))


def _text(rng: random.Random, tokens: int) -> str:
    """Text whose message costs ``tokens`` under the shared estimate (content + overhead)."""
    chars = max(0, int((tokens - MESSAGE_OVERHEAD_TOKENS) * CHARS_PER_TOKEN))
    if chars <= 0:
        return ""
    start = rng.randrange(0, len(_BLOCK) - min(chars, len(_BLOCK) - 1))
    piece = _BLOCK[start:start + chars]
    while len(piece) < chars:
        piece += _BLOCK[: chars - len(piece)]
    return piece


def _lognormal(rng: random.Random, median: float, sigma: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, rng.lognormvariate(math.log(median), sigma)))


def generate_trajectory(rng: random.Random, index: int) -> Trajectory:
    system_tokens = rng.randint(4_000, 7_000)
    task_tokens = rng.randint(150, 1_500)
    messages: list[dict] = [
        {"role": "system", "content": "You are a coding agent working in a repository. " + _text(rng, system_tokens)},
        {"role": "user", "content": f"Task {index}: " + _text(rng, task_tokens)},
    ]
    context = system_tokens + task_tokens + 60  # + tool schemas
    turn_count = int(_lognormal(rng, TURNS_MEDIAN, TURNS_SIGMA, 3, MAX_TURNS))
    turns: list[Turn] = []
    for k in range(turn_count):
        output = int(_lognormal(rng, OUTPUT_MEDIAN, OUTPUT_SIGMA, 1, 8_192))
        if context + output > MAX_CONTEXT_TOKENS:
            break
        delay = _lognormal(rng, TOOL_DELAY_MEDIAN_S, TOOL_DELAY_SIGMA, 0.1, 5.0)
        tool = TOOLS[rng.randrange(len(TOOLS))]["function"]["name"]
        call_id = f"call_{index}_{k}"
        assistant = {"role": "assistant", "content": _text(rng, max(MESSAGE_OVERHEAD_TOKENS, output - 12)),
                     "tool_calls": [{"id": call_id, "type": "function",
                                     "function": {"name": tool, "arguments": '{"path": "src/module.py"}'}}]}
        turns.append(Turn(tuple(messages), output, delay, TOOLS, None, assistant))
        result_tokens = int(_lognormal(rng, TOOL_RESULT_MEDIAN, TOOL_RESULT_SIGMA, 20, 8_000))
        messages.append(assistant)
        messages.append({"role": "tool", "tool_call_id": call_id, "content": _text(rng, result_tokens)})
        context += output + result_tokens
    return Trajectory(f"synthetic-{index:04d}", tuple(turns), source="synthetic")


def generate_synthetic(count: int = 64, seed: int = 1) -> Workload:
    """``count`` trajectories from ``seed`` (same seed, same workload)."""
    if count < 1:
        raise ValueError("synthetic workload needs at least one trajectory")
    rng = random.Random(seed)
    return Workload(f"synthetic (seed {seed}, {count} trajectories)",
                    tuple(generate_trajectory(rng, i) for i in range(count)))
