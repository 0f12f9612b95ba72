"""How late an asyncio loop wakes up: the load generator's own health signal.

A task sleeps a fixed interval and measures how much later than asked it woke. A loop that is
starved (CPU-bound callbacks, a busy core, a blocked pipe) wakes late, and every timestamp it
takes is late by as much, so this lag decides whether a measurement window can be trusted.
"""

from __future__ import annotations

import asyncio
from collections import deque


class LoopLagMeter:
    """Mean and max wake-up lag (ms) over the last ``window`` intervals (1 s by default)."""

    def __init__(self, interval_s: float = 0.1, window: int = 10):
        self.interval_s = interval_s
        self._window: deque[float] = deque(maxlen=window)
        self.mean_ms = 0.0
        self.max_ms = 0.0

    def add(self, lag_ms: float) -> None:
        self._window.append(max(0.0, lag_ms))
        self.mean_ms = sum(self._window) / len(self._window)
        self.max_ms = max(self._window)

    async def run(self) -> None:
        """Measure until cancelled (run it as a task on the loop being watched)."""
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.interval_s)
            self.add((loop.time() - t - self.interval_s) * 1000.0)
