"""The one cheap token-count estimate shared by the twin and the workload generator.

Neither side has DeepSeek V4 Pro's tokenizer (it is a multi-GB download we refuse to need), so
both estimate: one token per ``CHARS_PER_TOKEN`` characters of text, plus a fixed overhead per
chat message for the role and template markers. ~4 characters per token is the usual figure for
English prose and code with BPE tokenizers of this size (128K vocabulary); it is an estimate and
is documented as such in docs/twin.md. A real SGLang server reports true counts in ``usage``;
the engine always prefers the server's numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CHARS_PER_TOKEN = 4.0
MESSAGE_OVERHEAD_TOKENS = 4
TOOLS_OVERHEAD_TOKENS = 8


def estimate_text_tokens(text: str) -> int:
    """Tokens in a piece of text: ceil(len / CHARS_PER_TOKEN), 0 for empty text."""
    if not text:
        return 0
    return int((len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        parts = []
        for part in content:
            if isinstance(part, Mapping):
                parts.append(str(part.get("text") or ""))
            else:
                parts.append(str(part))
        return "".join(parts)
    return str(content)


def estimate_message_tokens(message: Mapping[str, Any]) -> int:
    """Tokens of one chat message: content, reasoning, tool calls and a fixed template overhead."""
    total = MESSAGE_OVERHEAD_TOKENS + estimate_text_tokens(_content_text(message.get("content")))
    reasoning = message.get("reasoning_content")
    if reasoning:
        total += estimate_text_tokens(str(reasoning))
    for call in message.get("tool_calls") or ():
        if isinstance(call, Mapping):
            function = call.get("function") or {}
            total += estimate_text_tokens(str(function.get("name") or ""))
            total += estimate_text_tokens(str(function.get("arguments") or ""))
    return total


def estimate_prompt_tokens(
    messages: Iterable[Mapping[str, Any]], tools_json_chars: int = 0
) -> int:
    """Tokens of a whole chat request: every message plus the serialized tool schemas."""
    total = sum(estimate_message_tokens(m) for m in messages)
    if tools_json_chars:
        total += TOOLS_OVERHEAD_TOKENS + int(tools_json_chars / CHARS_PER_TOKEN)
    return total
