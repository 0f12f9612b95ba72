"""Agents sharded over worker processes, for loads one core cannot stream alone.

``ShardedLoad`` has the LoadGenerator interface the Session drives (``set_target``, ``pause``,
``resume``, ``stop``, ``agents``, ``target``, ``active``, ``all_started_at``...). Shard 0 is an
in-process LoadGenerator; shards 1..N are worker processes (``spawn``), each running its own
LoadGenerator on its own asyncio loop (``worker_process.py``), reporting over a socketpair:
request records as compact rows every 0.1 s, agents and its own health (loop lag, CPU, RSS)
every 0.25 s. Records
keep the worker's ``time.monotonic()`` stamps: CLOCK_MONOTONIC is one clock for every process
of the machine, so all metrics are computed in the main process exactly as for local agents.
Agent ids come from one dense range the main process hands out with each target change.

How many processes (``plan_shards``): ``workers=0`` keeps every agent in-process; ``workers=N``
puts them all into N processes; ``None`` (auto) keeps loads up to ``LOCAL_MAX_AGENTS``
in-process, then uses ceil(target / ``AGENTS_PER_WORKER``) processes (at most one per CPU), and
adds one more whenever the loop running agents lags > ``SCALE_UP_LAG_MS`` for
``SCALE_UP_AFTER_S``. A worker that stops reporting for ``STALE_AFTER_S`` or dies makes the
window invalid (``worker_problems``). Workers stop by themselves when the main process goes away
(their pipe closes), so none is ever orphaned.

With ``ray_address``, the worker shards are Ray actors instead of local processes
(``ray_shards.RayShard``, the same interface and the same worker code), spread over the cluster's
hosts; automatic mode then counts the cluster's CPUs, not this host's.
"""

from __future__ import annotations

import asyncio
import math
import os
import pickle
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import orjson

from agentperf_tui.engine.client import ROUTING_HEADER, Timeouts
from agentperf_tui.engine.loadgen import LoadGenerator
from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.engine.shard_view import RemoteAgent, ShardView, WorkerHealth  # noqa: F401 (RemoteAgent: re-exported)
from agentperf_tui.engine.worker_process import MAX_SHARDS, WorkerSpec
from agentperf_tui.workload.model import Workload

LOCAL_MAX_AGENTS = 256
AGENTS_PER_WORKER = 1000
SCALE_UP_LAG_MS = 50.0
SCALE_UP_AFTER_S = 3.0
STALE_AFTER_S = 1.0
STOP_WAIT_S = 5.0


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def plan_shards(target: int, workers: int | None, escalated: int, max_workers: int) -> tuple[int, list[int]]:
    """(agents in-process, agents per worker process) for a target.

    ``workers``: 0 = all in-process, N = exactly N processes, None = automatic; ``escalated``:
    the process count measured loop lag asked for (auto only).
    """
    target = max(0, target)
    if workers == 0:
        return target, []
    if workers is None:
        if target <= LOCAL_MAX_AGENTS and escalated == 0:
            return target, []
        count = min(max(1, escalated, math.ceil(target / AGENTS_PER_WORKER)), max(1, max_workers))
    else:
        count = min(workers, MAX_SHARDS - 1)
    base, extra = divmod(target, count)
    return 0, [base + (1 if i < extra else 0) for i in range(count)]


# ---------------------------------------------------------------------------------------------
# the main process's side
# ---------------------------------------------------------------------------------------------
class WorkerShard(ShardView):
    """The handle on one worker process: its pipe, its agents as last reported, its health."""

    #: the worker program (bench/scale.py runs simulated agents behind the same socket)
    command: list[str] = [sys.executable, "-m", "agentperf_tui.engine.worker_process"]

    def __init__(self, shard: int, spec_bytes: bytes, on_record: Callable[[RequestRecord], None],
                 on_event: Callable[[str], None]):
        super().__init__(shard, on_record, on_event)
        parent_end, child_end = socket.socketpair()
        self._stderr = tempfile.TemporaryFile()  # a crash's traceback, for the log line
        # a fresh interpreter (not fork: the dashboard runs the engine on a thread)
        self.process = subprocess.Popen(
            [*self.command, str(child_end.fileno()), str(shard)],
            pass_fds=(child_end.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self._stderr, close_fds=True)
        child_end.close()
        self.conn = Connection(parent_end.detach())
        # every send goes through one thread, in order: the spec (tens of MB for a large workload)
        # and commands never block the engine loop while the child starts or is slow to read
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._send_failed = False
        self._sender = threading.Thread(target=self._send_loop, name=f"agentperf-worker-{shard}-send", daemon=True)
        self._sender.start()
        self._outbox.put(spec_bytes)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.conn.fileno(), self._on_readable)

    # -- commands -------------------------------------------------------------------------------
    def send(self, msg: dict[str, Any]) -> None:
        if self.alive and not self._send_failed:
            self._outbox.put(orjson.dumps(msg))

    def _send_loop(self) -> None:
        while (data := self._outbox.get()) is not None:
            try:
                self.conn.send_bytes(data)
            except OSError:  # the process is gone; the reader notices the closed socket
                self._send_failed = True
                return

    # -- messages -------------------------------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            while self.conn.poll():
                self._handle(orjson.loads(self.conn.recv_bytes()))
        except (EOFError, OSError):
            self._lost()

    def _lost(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self._loop.remove_reader(self.conn.fileno())
        self.forget_agents()
        if not self.said_bye:
            try:
                code = self.process.wait(0.5)
            except subprocess.TimeoutExpired:
                code = None
            self.on_event(f"worker process {self.shard} (pid {self.process.pid}) exited unexpectedly "
                          f"(code {code}){self._stderr_tail()}; its agents are gone")

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f": {lines[-1]}" if lines else ""

    def health(self, now: float) -> WorkerHealth:
        return self._health(now, self.process.pid)

    def close(self) -> None:
        """After stop: reap the process (it has said bye or is stuck), never leave it behind."""
        if self.alive:
            self._loop.remove_reader(self.conn.fileno())
            self.alive = False
        self._outbox.put(None)
        for signal_it, wait_s in ((None, 0.5), (self.process.terminate, 2.0), (self.process.kill, 2.0)):
            if signal_it is not None:
                signal_it()
            try:
                self.process.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        self._sender.join(1.0)
        self.conn.close()
        self._stderr.close()


class ShardedLoad:
    """N agents over an in-process LoadGenerator and worker processes; see the module docstring."""

    def __init__(self, workload: Workload, *, base_url: str, model: str, policy: str = "exact", seed: int = 1,
                 ramp_s: float = 5.0, timeouts: Timeouts = Timeouts(), api_key: str | None = None,
                 on_record: Callable[[RequestRecord], None], on_event: Callable[[str], None] | None = None,
                 salt: bool = True, workers: int | None = None, max_workers: int | None = None,
                 warm_start: bool = False, routing_header: str = ROUTING_HEADER,
                 extra_body: dict[str, Any] | None = None, ray_address: str | None = None):
        if workers is not None and workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = in-process), got {workers}")
        self._shard_class: Callable[..., ShardView] = WorkerShard
        self.ray_cpus: int | None = None
        if ray_address is not None and workers != 0:  # shards are Ray actors, over the cluster's hosts
            from agentperf_tui.engine.ray_shards import RayShard, connect

            self.ray_cpus = connect(ray_address)
            self._shard_class = RayShard
        self.on_record = on_record
        self.on_event = on_event or (lambda _msg: None)
        self.local = LoadGenerator(workload, base_url=base_url, model=model, policy=policy, seed=seed,
                                   ramp_s=ramp_s, timeouts=timeouts, api_key=api_key, on_record=on_record,
                                   salt=salt, id_first=0, id_stride=MAX_SHARDS, warm_start=warm_start,
                                   routing_header=routing_header, extra_body=extra_body)
        spec = WorkerSpec(workload, base_url, model, policy, seed, timeouts, api_key, self.local.run_salt, warm_start,
                          routing_header, dict(extra_body or {}))
        # pickled once, up front (tens of ms for a large workload), not on the loop while agents run
        self._spec_bytes = pickle.dumps(spec) if workers != 0 else b""
        self.workers_setting = workers
        self.max_workers = max_workers or (min(self.ray_cpus, MAX_SHARDS - 1) if self.ray_cpus else usable_cpus())
        self.shards: list[ShardView] = []
        self.target = 0
        self.target_changed_at = time.monotonic()
        self.all_started_at: float | None = None
        self._gen = 0
        self._next_agent_id = 0
        self._escalated = 0
        self._lag_high_since: float | None = None
        self._merged: dict[int, Any] = {}
        self._merged_key: tuple[Any, ...] | None = None

    # -- the LoadGenerator interface ------------------------------------------------------------
    @property
    def ramp_s(self) -> float:
        return self.local.ramp_s

    @ramp_s.setter
    def ramp_s(self, value: float) -> None:
        self.local.ramp_s = value

    @property
    def paused(self) -> bool:
        return self.local.paused

    @property
    def agents(self) -> dict[int, Any]:
        """Every agent by id (in-process and in the shards); the merged view is rebuilt only when a
        shard's snapshot or the in-process agents changed since the last call."""
        if not self.shards:
            return self.local.agents
        key = (self.local.agents_version, tuple(s.version for s in self.shards))
        if key != self._merged_key:
            merged: dict[int, Any] = dict(self.local.agents)
            for shard in self.shards:
                merged.update(shard.agents)
            self._merged, self._merged_key = merged, key
        return self._merged

    @property
    def active(self) -> int:
        return self.local.active + sum(s.active_count for s in self.shards)

    @property
    def in_work(self) -> int:
        return self.local.in_work + sum(s.in_work_count for s in self.shards)

    @property
    def worker_count(self) -> int:
        """Worker processes holding agents now (0 = everything runs in-process)."""
        return sum(1 for s in self.shards if s.target > 0 and s.alive)

    def set_target(self, target: int, cancel_surplus: bool = False) -> None:
        target = max(0, int(target))
        if target == self.target:
            return
        previous, self.target = self.target, target
        self.target_changed_at = time.monotonic()
        self._apply(cancel_surplus)
        kind = "Ray actors" if self.ray_cpus else "worker processes"
        where = f" over {self.worker_count} {kind}" if self.worker_count else ""
        self.on_event(f"agents target {previous} -> {target}{where}")

    def _apply(self, cancel_surplus: bool) -> None:
        """Split the target over the shards (spawning processes as needed) and tell each one."""
        self.all_started_at = None
        self._gen += 1
        local_n, per_worker = plan_shards(self.target, self.workers_setting, self._escalated, self.max_workers)
        while len(self.shards) < len(per_worker):
            shard = self._shard_class(len(self.shards) + 1, self._spec_bytes, self.on_record, self.on_event)
            if self.paused:
                shard.send({"k": "pause"})
            self.shards.append(shard)
        self.local.grant_ids(self._new_ids(local_n - self.local.target))
        self.local.set_target(local_n, cancel_surplus=cancel_surplus)
        for i, shard in enumerate(self.shards):
            n = per_worker[i] if i < len(per_worker) else 0
            shard.set_target(n, self._gen, self.ramp_s, cancel_surplus, self._new_ids(n - shard.target))

    def _new_ids(self, count: int) -> list[int]:
        """One dense range of agent ids for the whole run, whichever shard starts the agent."""
        if count <= 0:
            return []
        first, self._next_agent_id = self._next_agent_id, self._next_agent_id + count
        return list(range(first, first + count))

    def refresh_started(self, now: float) -> None:
        """Steady once every shard has started all agents of the current split and lost its retirees."""
        if self.all_started_at is not None:
            return
        self.local.refresh_started(now)
        if self.local.all_started_at is None:
            return
        times = [self.local.all_started_at]
        for shard in self.shards:
            if not shard.alive:
                continue
            if shard.reported_gen != self._gen or shard.started_at is None:
                return
            times.append(shard.started_at)
        self.all_started_at = max(times)

    def pause(self) -> None:
        self.local.pause()
        for shard in self.shards:
            shard.send({"k": "pause"})
        self.on_event("load paused: agents finish their turn and wait")

    def resume(self) -> None:
        self.local.resume()
        for shard in self.shards:
            shard.send({"k": "resume"})
        self.on_event("load resumed")

    async def stop(self) -> None:
        """Stop every agent (in-flight requests abandoned), collect the workers' last records, reap them."""
        for shard in self.shards:
            shard.send({"k": "stop"})
        await self.local.stop()
        deadline = time.monotonic() + STOP_WAIT_S
        while any(s.alive and not s.said_bye for s in self.shards) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for shard in self.shards:
            shard.close()

    # -- health and scaling ---------------------------------------------------------------------
    def worker_health(self, now: float | None = None) -> list[WorkerHealth]:
        now = time.monotonic() if now is None else now
        return [s.health(now) for s in self.shards if (s.target > 0 or s.agents) and not s.said_bye]

    def worker_problems(self, now: float, lag_limit_ms: float) -> list[str]:
        """Reasons the workers make this window untrustworthy (empty when they are fine)."""
        reasons = []
        for h in self.worker_health(now):
            if not h.alive:
                reasons.append(f"worker {h.shard} exited")
            elif h.silent_s > STALE_AFTER_S:
                reasons.append(f"worker {h.shard} silent for {h.silent_s:.1f} s")
            elif h.loop_lag_max_ms > lag_limit_ms:
                reasons.append(f"worker {h.shard} loop lag {h.loop_lag_max_ms:.0f} ms > {lag_limit_ms:.0f} ms")
        return reasons

    def check_scaling(self, now: float, engine_lag_ms: float) -> None:
        """Auto mode: one more worker process when the loop running agents lags for a while."""
        if self.workers_setting is not None or self.target == 0 or self.paused:
            self._lag_high_since = None
            return
        running = self.worker_count
        lags = [engine_lag_ms] if self.local.target > 0 else []
        lags += [s.lag_ms for s in self.shards if s.target > 0 and s.alive]
        if max(lags, default=0.0) <= SCALE_UP_LAG_MS or running >= self.max_workers:
            self._lag_high_since = None
            return
        if self._lag_high_since is None:
            self._lag_high_since = now
        elif now - self._lag_high_since >= SCALE_UP_AFTER_S:
            self._lag_high_since = None
            self._escalated = running + 1
            self._apply(False)
            self.on_event(f"client loop lag {max(lags):.0f} ms > {SCALE_UP_LAG_MS:.0f} ms for "
                          f"{SCALE_UP_AFTER_S:.0f} s: agents now over {self.worker_count} worker processes")
