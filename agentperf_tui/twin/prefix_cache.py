"""A radix-like prefix cache at chat-message granularity with LRU eviction.

A request's prompt is a chain of messages; each chain node is identified by a hash of (parent
hash, message) and holds the tokens that message adds. A request that extends an earlier
conversation finds its longest cached chain prefix and pays prefill only for the rest, as
SGLang's radix cache does at token granularity. Eviction drops least-recently-used nodes until
the cached tokens fit the KV memory left over by running requests.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixCache:
    """LRU map from chain-node hash to the tokens that node adds."""

    def __init__(self, capacity_tokens: int):
        self.capacity_tokens = max(0, capacity_tokens)
        self._nodes: OrderedDict[int, int] = OrderedDict()
        self.cached_tokens = 0
        self.evicted_tokens = 0

    def __len__(self) -> int:
        return len(self._nodes)

    def match(self, chain: Sequence[tuple[int, int]]) -> int:
        """Tokens of the longest cached prefix of ``chain`` ((node hash, cumulative tokens) pairs).

        Matched nodes become most recently used.
        """
        matched = 0
        nodes = self._nodes
        for node_hash, cumulative in chain:
            if node_hash not in nodes:
                break
            nodes.move_to_end(node_hash)
            matched = cumulative
        return matched

    def insert(self, chain: Sequence[tuple[int, int]], limit_tokens: int | None = None) -> None:
        """Add every node of ``chain``; then evict LRU nodes to fit ``limit_tokens`` (or capacity)."""
        nodes = self._nodes
        previous = 0
        for node_hash, cumulative in chain:
            if node_hash in nodes:
                nodes.move_to_end(node_hash)
            else:
                added = max(0, cumulative - previous)
                nodes[node_hash] = added
                self.cached_tokens += added
            previous = cumulative
        self.evict_to(self.capacity_tokens if limit_tokens is None else limit_tokens)

    def evict_to(self, limit_tokens: int) -> None:
        """Drop least-recently-used nodes until at most ``limit_tokens`` stay cached."""
        limit = max(0, limit_tokens)
        nodes = self._nodes
        while self.cached_tokens > limit and nodes:
            _, tokens = nodes.popitem(last=False)
            self.cached_tokens -= tokens
            self.evicted_tokens += tokens

    def clear(self) -> None:
        self._nodes.clear()
        self.cached_tokens = 0
