"""Generates seeded synthetic coding-agent trajectories calibrated to AA-AgentPerf's workload shape.

Shape (REFERENCE §1): input per request ~5K-131K tokens with mean ~27K; output per turn median
~150 and P95 ~2K tokens; up to 200 turns per trajectory; tool time 0.1-5 s with median ~1 s.

Each trajectory is one agent session: a system prompt shared by every trajectory (one agent
harness), a distinct task message from the user, then turns. Turn k+1's request is turn k's
messages plus the assistant message turn k produced (``target_output_tokens`` tokens of text and a
tool call) and the tool's result, so context grows and prefixes are reused exactly as under AA's
``exact`` replay. A trajectory ends at its drawn turn count or when the next request plus its
output would no longer fit in ``max_context_tokens``.

Distributions (all lognormal, clamped): output median 150, sigma ln(2000/150)/1.645 so P95 = 2000,
in [1, 8192]; tool result median 500 tokens (sigma 1.0) in [16, 16000]; turns median 15
(sigma 0.75) in [1, max_turns]; tool delay median 1.0 s (sigma 0.8) in [0.1, 5.0] s. The system
prompt is 4,500 tokens and the task message 500-3,500, so the first request is ~5.2K-8.2K tokens
with the tool schemas. With these the mean request input is ~27K tokens.

Reproducible: only ``random.Random`` seeded from ``seed`` is used (each trajectory draws from its own
generator seeded by the master one, so the first n trajectories do not depend on ``count``).
Text lengths are exact under agentperf_tui.tokens, so everything that estimates tokens (the twin,
the engine) counts what was intended. Text is sliced from one pre-built pseudo-random word string,
and message dicts are shared between the turns of a trajectory (each turn's tuple references the
same objects), so 64 trajectories take tens of milliseconds and a few MB.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from agentperf_tui.tokens import (
    CHARS_PER_TOKEN,
    MESSAGE_OVERHEAD_TOKENS,
    TOOLS_OVERHEAD_TOKENS,
    estimate_message_tokens,
)
from agentperf_tui.workload.model import Trajectory, Turn, Workload

MAX_TURNS = 200
MAX_CONTEXT_TOKENS = 131_072
OUTPUT_MEDIAN = 150
OUTPUT_P95 = 2_000
OUTPUT_MAX = 8_192
TOOL_RESULT_MEDIAN = 500
TOOL_RESULT_SIGMA = 1.0
TOOL_RESULT_RANGE = (16, 16_000)
TURNS_MEDIAN = 15.0
TURNS_SIGMA = 0.75
TOOL_DELAY_MEDIAN_S = 1.0
TOOL_DELAY_SIGMA = 0.8
TOOL_DELAY_RANGE_S = (0.1, 5.0)
SYSTEM_PROMPT_TOKENS = 4_500
TASK_TOKENS_RANGE = (500, 3_500)
Z95 = 1.6448536269514722  # standard normal quantile of 0.95

Message = dict[str, Any]


def _tool(name: str, description: str, arg: str, arg_description: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {arg: {"type": "string", "description": arg_description}},
                "required": [arg],
            },
        },
    }


TOOLS: tuple[dict[str, Any], ...] = (
    _tool("read_file", "Read a file of the repository.", "path", "Path relative to the repository root."),
    _tool("edit_file", "Replace a region of a file with new text.", "path", "Path of the file to edit."),
    _tool("run_tests", "Run the test suite, or the tests matching a selector.", "selector", "Test selector."),
    _tool("grep", "Search the repository for a regular expression.", "pattern", "Regular expression."),
)
TOOLS_TOKENS = TOOLS_OVERHEAD_TOKENS + int(len(orjson.dumps(list(TOOLS))) / CHARS_PER_TOKEN)
_ARGUMENTS = {
    "read_file": ("path", "src/{word}/{word2}.py"),
    "edit_file": ("path", "src/{word}/{word2}.py"),
    "run_tests": ("selector", "tests/test_{word}.py::test_{word2}"),
    "grep": ("pattern", "def {word}_{word2}"),
}
_WORDS = (
    "def", "class", "return", "import", "self", "value", "index", "result", "error", "config", "node",
    "buffer", "request", "handler", "test", "assert", "yield", "async", "await", "lambda", "tuple",
    "parse", "token", "cache", "state", "queue", "stream", "schema", "client", "server", "for", "in",
    "if", "else", "None", "True", "False", "raise", "with", "len", "dict", "list", "str", "int",
)  # fmt: skip


#: Between words: mostly a space, sometimes code punctuation. The mix is what makes the text cost
#: CHARS_PER_TOKEN characters per token under DeepSeek V4's own tokenizer (4.03 over the block,
#: 3.8-4.2 over 2,000-character slices; bare words joined by spaces cost 5.8), so a message sized
#: with the 4-characters estimate has that many real tokens (tests/test_twin_tokenizer.py checks).
_SEPARATORS = ("(", ")", ".", ",", ":", "=", "_", "[", "]", " = ", ", ", "):", "\n    ", "\n", " == ",
               "0", "1", "2", "42")
_PUNCTUATION_SHARE = 0.55


@cache
def _block() -> str:
    """~430K characters of pseudo-random code-ish text, built once; all text is sliced from it."""
    rng = random.Random(0x5EED)
    out: list[str] = []
    for _ in range(70_000):
        out.append(rng.choice(_WORDS))
        out.append(rng.choice(_SEPARATORS) if rng.random() < _PUNCTUATION_SHARE else " ")
    return "".join(out)


def _filler(rng: random.Random, chars: int) -> str:
    """``chars`` characters of filler text starting at a random point of the block."""
    if chars <= 0:
        return ""
    block = _block()
    if chars >= len(block):
        block = block * (chars // len(block) + 2)
    start = rng.randrange(len(block) - chars)
    return block[start : start + chars]


def _content_for(tokens: int, prefix: str, rng: random.Random) -> str:
    """Message content that costs exactly ``tokens`` (overhead included) when ``prefix`` fits."""
    chars = int((tokens - MESSAGE_OVERHEAD_TOKENS) * CHARS_PER_TOKEN)
    return prefix + _filler(rng, chars - len(prefix))


def _lognormal(rng: random.Random, median: float, sigma: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, rng.lognormvariate(math.log(median), sigma)))


@dataclass(frozen=True, slots=True)
class _Shape:
    max_turns: int
    max_context_tokens: int
    turns_median: float
    output_median: float
    output_sigma: float
    tool_result_median: float
    tool_delay_median_s: float


def _assistant(rng: random.Random, tokens: int, call_id: str) -> Message:
    """An assistant message with a tool call that costs ``tokens`` (or its minimum, if larger)."""
    name = TOOLS[rng.randrange(len(TOOLS))]["function"]["name"]
    arg, template = _ARGUMENTS[name]
    value = template.format(word=rng.choice(_WORDS), word2=rng.choice(_WORDS))
    arguments = orjson.dumps({arg: value}).decode()
    message: Message = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        ],
    }
    room = tokens - estimate_message_tokens(message)
    if room > 0:
        message["content"] = _filler(rng, int(room * CHARS_PER_TOKEN))
    return message


def _trajectory(rng: random.Random, index: int, system: Message, shape: _Shape) -> Trajectory:
    task_tokens = rng.randint(*TASK_TOKENS_RANGE)
    task = {"role": "user", "content": _content_for(task_tokens, f"Task {index}: ", rng)}
    messages: list[Message] = [system, task]
    context = TOOLS_TOKENS + estimate_message_tokens(system) + estimate_message_tokens(task)
    turn_count = round(_lognormal(rng, shape.turns_median, TURNS_SIGMA, 1, shape.max_turns))
    turns: list[Turn] = []
    for k in range(turn_count):
        output = round(_lognormal(rng, shape.output_median, shape.output_sigma, 1, OUTPUT_MAX))
        if turns and context + output > shape.max_context_tokens:
            break
        delay = _lognormal(rng, shape.tool_delay_median_s, TOOL_DELAY_SIGMA, *TOOL_DELAY_RANGE_S)
        call_id = f"call_{index}_{k}"
        assistant = _assistant(rng, output, call_id)
        turns.append(Turn(tuple(messages), output, delay, TOOLS, None, assistant))
        result_tokens = round(
            _lognormal(rng, shape.tool_result_median, TOOL_RESULT_SIGMA, *TOOL_RESULT_RANGE)
        )
        result = {"role": "tool", "tool_call_id": call_id, "content": _content_for(result_tokens, "", rng)}
        messages += (assistant, result)
        context += estimate_message_tokens(assistant) + estimate_message_tokens(result)
    metadata = {"drawn_turns": turn_count, "final_context_tokens": context}
    return Trajectory(f"synthetic-{index:04d}", tuple(turns), source="synthetic", metadata=metadata)


def generate_synthetic(
    count: int,
    seed: int,
    *,
    max_turns: int = MAX_TURNS,
    max_context_tokens: int = MAX_CONTEXT_TOKENS,
    turns_median: float = TURNS_MEDIAN,
    output_median: float = OUTPUT_MEDIAN,
    output_p95: float = OUTPUT_P95,
    tool_result_median: float = TOOL_RESULT_MEDIAN,
    tool_delay_median_s: float = TOOL_DELAY_MEDIAN_S,
) -> Workload:
    """``count`` synthetic trajectories drawn from ``seed`` (same arguments, equal Workload).

    Turns carry no ``recorded_prompt_tokens`` (nothing was recorded); their input is what
    agentperf_tui.tokens estimates for the messages and tool schemas.
    """
    if count < 1:
        raise ValueError("a synthetic workload needs at least one trajectory")
    if max_turns < 1:
        raise ValueError("max_turns must be at least 1")
    if not 0 < output_median < output_p95:
        raise ValueError("need 0 < output_median < output_p95")
    floor = TOOLS_TOKENS + SYSTEM_PROMPT_TOKENS + TASK_TOKENS_RANGE[1] + OUTPUT_MAX
    if max_context_tokens < floor:
        raise ValueError(f"max_context_tokens must be at least {floor}")
    shape = _Shape(
        max_turns=max_turns,
        max_context_tokens=max_context_tokens,
        turns_median=turns_median,
        output_median=output_median,
        output_sigma=math.log(output_p95 / output_median) / Z95,
        tool_result_median=tool_result_median,
        tool_delay_median_s=tool_delay_median_s,
    )
    master = random.Random(seed)
    system = {
        "role": "system",
        "content": _content_for(
            SYSTEM_PROMPT_TOKENS, "You are a coding agent working in a repository. ", master
        ),
    }
    seeds = [master.getrandbits(64) for _ in range(count)]
    trajectories = tuple(_trajectory(random.Random(s), i, system, shape) for i, s in enumerate(seeds))
    return Workload(f"synthetic (seed {seed}, {count} trajectories)", trajectories)
