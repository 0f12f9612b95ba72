"""A worker process whose agents are simulated (no HTTP), for measuring the main process at scale.

Run by bench/scale.py in place of ``agentperf_tui.engine.worker_process``: the same transport
and the same ``WorkerCore`` (records every 0.1 s, agents and health every 0.25 s, over the same
socket, in the same orjson rows), but the LoadGenerator is replaced by ``SimulatedLoad``, whose
agents cycle through TTFT -> decode -> tool time on a clock and emit a RequestRecord per call.
So the main process receives exactly what it would from real workers holding that many agents,
and what it spends on them can be measured at 20,000 agents on a 2-core machine.

Pacing (AA tier-1-like): TTFT ~1 s, 200 output tokens at ~50 tok/s, ~5 s of tool time: one
request per agent every ~10 s; contexts grow 1,350 tokens a turn over 20-turn trajectories.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentperf_tui.engine import worker_process  # noqa: E402
from agentperf_tui.engine.agent import DECODE, PREFILL, TOOL  # noqa: E402
from agentperf_tui.engine.records import RequestRecord  # noqa: E402

TTFT_S = 1.0
OUTPUT_TOKENS = 200
DECODE_TPS = 50.0
TOOL_S = 5.0
TURNS = 20
TURN_TOKENS = 1_350


class SimAgent:
    """AgentState's reported fields, advanced by SimulatedLoad's clock."""

    __slots__ = ("agent_id", "live_state", "trajectory_id", "turn_index", "turn_count", "context_tokens",
                 "last_ttft_s", "last_tps", "rolling_tps", "failures", "in_work", "started", "retiring",
                 "in_flight", "streamed_tokens", "state_since", "last_progress", "t_send", "t_first", "passes")

    def __init__(self, agent_id: int, now: float):
        self.agent_id = agent_id
        self.live_state = TOOL
        self.trajectory_id = f"sim-{agent_id % 64}"
        self.turn_index = 0
        self.turn_count = TURNS
        self.context_tokens = 0
        self.last_ttft_s = self.last_tps = self.rolling_tps = None
        self.failures = 0
        self.in_work = False
        self.started = True
        self.retiring = False
        self.in_flight = None
        self.streamed_tokens = 0
        self.state_since = self.last_progress = now
        self.t_send = self.t_first = 0.0
        self.passes = 0


class SimulatedLoad:
    """The LoadGenerator interface WorkerCore uses, with simulated agents (see the module docstring)."""

    def __init__(self, _workload: Any, *, on_record: Any, id_first: int = 0, id_stride: int = 1, **_kwargs: Any):
        self.on_record = on_record
        self.agents: dict[int, SimAgent] = {}
        self.ramp_s = 0.0
        self.paused = False
        self.target = 0
        self.all_started_at: float | None = None
        self._ids: list[int] = []
        self._fallback = id_first
        self._stride = id_stride
        self._rng = random.Random(id_first)
        self._events: list[tuple[float, int, int]] = []  # (time, agent id, step) heap
        self._task: asyncio.Task[None] | None = None

    def grant_ids(self, ids: list[int]) -> None:
        self._ids.extend(ids)

    def set_target(self, n: int, cancel_surplus: bool = False) -> None:
        now = time.monotonic()
        self.target = n
        while len(self.agents) < n:
            if self._ids:
                aid = self._ids.pop(0)
            else:
                aid, self._fallback = self._fallback, self._fallback + self._stride
            agent = SimAgent(aid, now)
            self.agents[aid] = agent
            # first requests spread over one cycle, as a ramp would leave them
            heapq.heappush(self._events, (now + self._rng.uniform(0, TOOL_S), aid, 0))
        for aid in list(self.agents)[n:]:
            del self.agents[aid]
        self.all_started_at = now
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def refresh_started(self, now: float) -> None:
        pass

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        rng = self._rng
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            events = self._events
            while events and events[0][0] <= now:
                at, aid, step = heapq.heappop(events)
                agent = self.agents.get(aid)
                if agent is None:
                    continue
                if step == 0:  # send
                    if self.paused:
                        heapq.heappush(events, (at + 0.5, aid, 0))
                        continue
                    agent.live_state, agent.in_work, agent.state_since = PREFILL, True, at
                    agent.t_send = at
                    agent.in_flight = (at, None)
                    heapq.heappush(events, (at + TTFT_S * rng.uniform(0.7, 1.4), aid, 1))
                elif step == 1:  # first token
                    agent.live_state, agent.state_since, agent.t_first = DECODE, at, at
                    agent.in_flight = (agent.t_send, at)
                    heapq.heappush(events, (at + OUTPUT_TOKENS / (DECODE_TPS * rng.uniform(0.8, 1.25)), aid, 2))
                else:  # last token: the record, then tool time
                    prompt = 4_000 + agent.turn_index * TURN_TOKENS
                    record = RequestRecord(aid, agent.trajectory_id, agent.turn_index, TURNS, prompt,
                                           prompt - TURN_TOKENS, OUTPUT_TOKENS, OUTPUT_TOKENS, agent.t_send,
                                           agent.t_first, at, at, usage=True, streamed_chunks=OUTPUT_TOKENS,
                                           request_id=f"{aid}-{agent.passes}-{agent.turn_index}",
                                           correlation_id=f"sim-{aid}-{agent.passes}")
                    agent.last_ttft_s = agent.t_first - agent.t_send
                    agent.last_tps = (OUTPUT_TOKENS - 1) / (at - agent.t_first)
                    agent.rolling_tps = agent.last_tps
                    agent.context_tokens = prompt + OUTPUT_TOKENS
                    agent.turn_index = (agent.turn_index + 1) % TURNS
                    if agent.turn_index == 0:
                        agent.passes += 1
                    agent.live_state, agent.in_work, agent.in_flight, agent.state_since = TOOL, False, None, at
                    agent.last_progress = at
                    self.on_record(record)
                    heapq.heappush(events, (at + TOOL_S * rng.uniform(0.5, 1.5), aid, 0))


if __name__ == "__main__":
    worker_process.LoadGenerator = SimulatedLoad  # type: ignore[misc,assignment]
    sys.exit(worker_process.main(sys.argv[1:]))
