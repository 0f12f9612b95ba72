"""Synthetic prompt text for hash-id traces (mooncake, AgentX/Weka): one fixed text per KV block.

Hash-id traces record which KV-cache blocks a prompt shares with earlier prompts, not the text.
As AIPerf does, each hash id becomes ``block_size`` tokens of text drawn by a generator seeded
with (scope, hash id): the same id gives the same text within a scope (so shared prefixes hit the
server's prefix cache), different scopes give different text. The text is made of 4-character
words (``" tab"``, ``" rin"``...), one token each in BPE vocabularies of this size and exactly
``CHARS_PER_TOKEN`` characters for the shared estimate, so a block of N tokens is about N tokens
on a real server too (the summary shows the server's own count).
"""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache

from agentperf_tui.tokens import CHARS_PER_TOKEN

_CONSONANTS = "bcdfghklmnprstvw"
_VOWELS = "aeiou"
_WORDS = tuple(f" {a}{v}{b}" for a in _CONSONANTS for v in _VOWELS for b in "nrst")
assert all(len(w) == int(CHARS_PER_TOKEN) for w in _WORDS)


@lru_cache(maxsize=65536)
def block_text(scope: str, hash_id: int, tokens: int) -> str:
    """``tokens`` tokens of text for block ``hash_id`` of ``scope`` (deterministic)."""
    seed = int.from_bytes(hashlib.sha256(f"{scope}:{hash_id}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    return "".join(rng.choice(_WORDS) for _ in range(max(0, tokens)))


def filler(scope: str, key: str, tokens: int) -> str:
    """Text no other prompt shares (``key`` names this prompt): the part of a prompt beyond its blocks."""
    return block_text(f"{scope}:uncached:{key}", 0, tokens)
