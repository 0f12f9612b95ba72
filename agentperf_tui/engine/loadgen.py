"""Closed-loop load: N agents kept working, N changeable at any moment.

Raising the target starts new agents staggered over the ramp window; lowering it marks the
surplus (newest first) as retiring, and they leave after their current turn. Pausing lets every
agent finish its turn and wait. Runs on the engine's asyncio loop; never on a UI loop.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from agentperf_tui.engine.agent import Agent, AgentState
from agentperf_tui.engine.client import ROUTING_HEADER, Timeouts, make_session
from agentperf_tui.engine.http_stream import StreamPool
from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.workload.model import Workload


class LoadGenerator:
    """Owns the agents, their tasks and the HTTP session they share."""

    def __init__(self, workload: Workload, *, base_url: str, model: str, policy: str = "exact", seed: int = 1,
                 ramp_s: float = 5.0, timeouts: Timeouts = Timeouts(), api_key: str | None = None,
                 on_record: Callable[[RequestRecord], None], on_event: Callable[[str], None] | None = None,
                 salt: bool = True, run_salt: str | None = None, id_first: int = 0, id_stride: int = 1,
                 warm_start: bool = False, routing_header: str = ROUTING_HEADER,
                 extra_body: dict[str, Any] | None = None):
        if not workload.trajectories:
            raise ValueError(f"workload {workload.name!r} has no trajectories")
        self.workload = workload
        self.url = base_url.rstrip("/") + "/v1/chat/completions"
        self.model = model
        self.policy = policy
        self.seed = seed
        self.ramp_s = ramp_s
        self.timeouts = timeouts
        self.api_key = api_key
        self.on_record = on_record
        self.on_event = on_event or (lambda _msg: None)
        self.routing_header = routing_header
        self.extra_body = dict(extra_body or {})  # sampling settings etc., sent in every request
        self.warm_start = warm_start  # each agent joins its first trajectory at a random turn
        self.run_salt = run_salt or (uuid.uuid4().hex[:12] if salt else "nosalt")
        self.agents: dict[int, AgentState] = {}
        self.agents_version = 0  # bumped when an agent joins or leaves ``agents``
        self.target = 0
        self.target_changed_at = time.monotonic()
        self.all_started_at: float | None = None
        self.crashes = 0
        self.last_crash_at: float | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._granted_ids: deque[int] = deque()  # ids handed out by whoever shards the run (grant_ids)
        self._next_id = id_first  # else ids first, first + stride, ...: shards of one run never collide
        self._id_stride = id_stride
        self._id_first = id_first
        self._resume = asyncio.Event()
        self._resume.set()
        self._session: StreamPool | None = None

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    @property
    def active(self) -> int:
        """Agents started and not retiring."""
        return sum(1 for a in self.agents.values() if a.started and not a.retiring)

    @property
    def in_work(self) -> int:
        return sum(1 for a in self.agents.values() if a.in_work)

    @property
    def retiring(self) -> int:
        """Agents told to leave whose last turn is still running."""
        return sum(1 for a in self.agents.values() if a.retiring)

    def _ensure_session(self) -> StreamPool:
        if self._session is None:
            self._session = make_session(self.api_key)
        return self._session

    def set_target(self, target: int, cancel_surplus: bool = False) -> None:
        """Change the number of agents (call on the engine loop).

        Surplus agents retire after their current turn; with ``cancel_surplus`` (the search's
        resizes) their in-flight request is abandoned at once instead (the client disconnects and
        the server aborts it, as SGLang does), so the next phase is not loaded by the last one.
        """
        target = max(0, int(target))
        if target == self.target:
            return
        previous, self.target = self.target, target
        self.target_changed_at = time.monotonic()
        self.all_started_at = None
        live = sorted(aid for aid, a in self.agents.items() if not a.retiring)
        if target < len(live):
            for aid in live[target:]:
                self.agents[aid].retiring = True
                if cancel_surplus and aid in self._tasks:
                    self._tasks[aid].cancel()
        else:
            # un-retire the newest retiring agents first, then start new ones
            retiring = sorted((aid for aid, a in self.agents.items() if a.retiring), reverse=False)
            need = target - len(live)
            for aid in retiring[:need]:
                self.agents[aid].retiring = False
            need -= min(need, len(retiring))
            session = self._ensure_session()
            stagger = self.ramp_s / need if need else 0.0
            for i in range(need):
                self._spawn(session, delay=i * stagger)
        self.on_event(f"agents target {previous} -> {target}")

    def grant_ids(self, ids: list[int]) -> None:
        """Ids for the next agents started (a sharded run hands out one dense global range)."""
        self._granted_ids.extend(ids)

    def _spawn(self, session: StreamPool, delay: float) -> None:
        if self._granted_ids:
            aid = self._granted_ids.popleft()
            ordinal = aid  # a sharded run's ids are one dense global range
        else:
            aid = self._next_id
            ordinal = (aid - self._id_first) // self._id_stride
            self._next_id += self._id_stride
        state = AgentState(aid)
        self.agents[aid] = state
        self.agents_version += 1
        agent = Agent(state, self.workload.trajectories, session=session, url=self.url, model=self.model,
                      policy=self.policy, run_salt=self.run_salt, seed=self.seed, timeouts=self.timeouts,
                      on_record=self.on_record, resume=self._resume, warm_start=self.warm_start,
                      routing_header=self.routing_header, ordinal=ordinal, extra_body=self.extra_body)
        task = asyncio.create_task(self._run(agent, delay), name=f"agent-{aid}")
        self._tasks[aid] = task

    async def _run(self, agent: Agent, delay: float) -> None:
        aid = agent.s.agent_id
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            if agent.s.retiring:
                return
            await agent.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an agent that raises is reported and invalidates the window, never silent
            self.crashes += 1
            self.last_crash_at = time.monotonic()
            self.on_event(f"agent {aid} crashed: {type(exc).__name__}: {exc} (its slot is not refilled)")
        finally:
            self.agents.pop(aid, None)
            self.agents_version += 1
            self._tasks.pop(aid, None)

    def refresh_started(self, now: float) -> None:
        """Note when the steady state begins: every agent of the target has started and every
        retiring agent has left (their last requests no longer load the server)."""
        if self.all_started_at is None and self.active >= self.target and \
                not any(a.retiring for a in self.agents.values()):
            self.all_started_at = now

    def pause(self) -> None:
        self._resume.clear()
        self.on_event("load paused: agents finish their turn and wait")

    def resume(self) -> None:
        self._resume.set()
        self.on_event("load resumed")

    async def stop(self) -> None:
        """Cancel every agent now (in-flight requests are abandoned) and close the session."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
