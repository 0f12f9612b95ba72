"""Filler text the twin streams: exactly CHARS_PER_TOKEN characters per simulated token.

The generated text is discarded by AA's replay policy; under the ``free`` policy it goes into
the next turn, so its length must match the shared token estimate (agentperf_tui.tokens).
"""

from __future__ import annotations

import orjson

from agentperf_tui.tokens import CHARS_PER_TOKEN

_WORDS = (
    " the", " and", " for", " int", " def", " var", " let", " new", " get", " set", " run", " fix",
    " log", " key", " map", " len", " max", " min", " sum", " err", " ret", " arg", " str", " obj",
)
_TOKEN_CHARS = int(CHARS_PER_TOKEN)
assert all(len(w) == _TOKEN_CHARS for w in _WORDS)
_BLOCK_TOKENS = 4096
_BLOCK = "".join(_WORDS[(i * 7 + i // 5) % len(_WORDS)] for i in range(_BLOCK_TOKENS))


def filler_text(start_token: int, tokens: int) -> str:
    """Text of ``tokens`` tokens beginning at position ``start_token`` of an endless word stream."""
    if tokens <= 0:
        return ""
    out = []
    pos = start_token % _BLOCK_TOKENS
    left = tokens
    while left > 0:
        take = min(left, _BLOCK_TOKENS - pos)
        out.append(_BLOCK[pos * _TOKEN_CHARS : (pos + take) * _TOKEN_CHARS])
        left -= take
        pos = 0
    return "".join(out)


_BLOCK_BYTES = _BLOCK.encode()


def filler_bytes(start_token: int, tokens: int) -> bytes:
    """``filler_text`` as ASCII bytes (no JSON escaping needed: letters and spaces only)."""
    pos = start_token % _BLOCK_TOKENS
    if pos + tokens <= _BLOCK_TOKENS:
        return _BLOCK_BYTES[pos * _TOKEN_CHARS : (pos + tokens) * _TOKEN_CHARS]
    return filler_text(start_token, tokens).encode()


def tool_arguments(tokens: int) -> str:
    """A valid JSON arguments string of about ``tokens`` tokens."""
    body_tokens = max(0, tokens - 4)
    return orjson.dumps({"input": filler_text(0, body_tokens).strip()}).decode()
