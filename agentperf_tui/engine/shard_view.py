"""The main process's view of one shard of agents running elsewhere, built from its tick messages.

A shard (a worker process of ``workers.py``, a Ray actor of ``ray_shards.py``) reports what
``worker_process.WorkerCore.tick`` builds: finished request records as compact rows, and every
``SNAPSHOT_S`` the rows of its agents that changed (and the ids of those gone) and its own health.
``ShardView`` applies those messages: each record
goes to the run's ``on_record``, the agents become ``RemoteAgent``s (AgentState's fields as last
reported), the health fields feed ``WorkerHealth``. Whatever carries the messages subclasses it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentperf_tui.engine.records import RequestRecord


class RemoteAgent:
    """An agent running in a worker process, as its last snapshot described it (AgentState's fields)."""

    __slots__ = ("agent_id", "live_state", "trajectory_id", "turn_index", "turn_count", "context_tokens",
                 "last_ttft_s", "last_tps", "rolling_tps", "failures", "in_work", "started", "retiring",
                 "in_flight", "last_record", "streamed_tokens", "state_since", "last_progress")

    def __init__(self, row: list[Any]):
        self.last_record: RequestRecord | None = None
        self.update(row)

    def update(self, row: list[Any]) -> None:
        (self.agent_id, self.live_state, self.trajectory_id, self.turn_index, self.turn_count,
         self.context_tokens, self.last_ttft_s, self.last_tps, self.rolling_tps, self.failures,
         self.in_work, self.started, self.retiring, in_flight, self.streamed_tokens, self.state_since,
         self.last_progress) = row
        self.in_flight = tuple(in_flight) if in_flight else None  # (sent, first token) of the running request


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    """One worker's own view of itself (from its last snapshot)."""

    shard: int
    pid: int
    agents: int
    loop_lag_ms: float
    loop_lag_max_ms: float
    cpu_pct: float
    rss_mib: float
    silent_s: float  # since its last message
    alive: bool
    node: str = ""  # the host it runs on ("" = this one)


class ShardView:
    """One shard's agents as last reported, its health, and the target it was given."""

    def __init__(self, shard: int, on_record: Callable[[RequestRecord], None], on_event: Callable[[str], None]):
        self.shard = shard
        self.on_record = on_record
        self.on_event = on_event
        self.agents: dict[int, RemoteAgent] = {}
        self.active_count = 0  # agents started and not retiring, as of the last snapshot
        self.in_work_count = 0  # agents in a request or in tool time, as of the last snapshot
        self.version = 0  # bumped whenever ``agents`` changes
        self._last_records: dict[int, RequestRecord] = {}
        self.target = 0
        self.reported_gen = -1
        self.started_at: float | None = None
        self.lag_ms = self.lag_max_ms = self.cpu_pct = self.rss_mib = 0.0
        self.last_message = time.monotonic()
        self.alive = True
        self.said_bye = False

    # what the transport provides
    def send(self, msg: dict[str, Any]) -> None:
        raise NotImplementedError

    def health(self, now: float) -> WorkerHealth:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def set_target(self, n: int, gen: int, ramp_s: float, cancel_surplus: bool, ids: list[int]) -> None:
        self.target = n
        self.send({"k": "target", "n": n, "gen": gen, "ramp_s": ramp_s, "cancel": cancel_surplus, "ids": ids})

    def _handle(self, msg: dict[str, Any]) -> None:
        self.last_message = time.monotonic()
        if msg["k"] == "bye":
            self.said_bye = True
            return
        if msg["k"] == "error":
            self.on_event(f"worker process {self.shard} failed: {msg['text'].strip().splitlines()[-1]}")
            return
        for row in msg["records"]:
            record = RequestRecord(*row)
            self._last_records[record.agent_id] = record
            agent = self.agents.get(record.agent_id)
            if agent is not None:
                agent.last_record = record
            self.on_record(record)
        rows = msg.get("agents")
        if rows is None:
            return
        # a snapshot carries only the rows that changed since the previous one, and the agents gone
        agents = self.agents
        for row in rows:
            agent = agents.get(row[0])
            if agent is None:
                agent = agents[row[0]] = RemoteAgent(row)
                agent.last_record = self._last_records.get(row[0])
            else:
                agent.update(row)
        for agent_id in msg.get("gone", ()):
            agents.pop(agent_id, None)
        self.active_count = sum(1 for a in agents.values() if a.started and not a.retiring)
        self.in_work_count = sum(1 for a in agents.values() if a.in_work)
        self.version += 1
        if len(self._last_records) > 2 * len(agents) + 64:
            self._last_records = {k: v for k, v in self._last_records.items() if k in agents}
        self.reported_gen = msg["gen"]
        self.started_at = msg["started_at"]
        self.lag_ms, self.lag_max_ms = msg["lag_ms"], msg["lag_max_ms"]
        self.cpu_pct, self.rss_mib = msg["cpu_pct"], msg["rss_mib"]

    def forget_agents(self) -> None:
        """The shard is gone: none of its agents runs any more."""
        self.agents = {}
        self.active_count = self.in_work_count = 0
        self.version += 1

    def _health(self, now: float, pid: int, node: str = "") -> WorkerHealth:
        return WorkerHealth(self.shard, pid, len(self.agents), self.lag_ms, self.lag_max_ms, self.cpu_pct,
                            self.rss_mib, max(0.0, now - self.last_message), self.alive, node)
