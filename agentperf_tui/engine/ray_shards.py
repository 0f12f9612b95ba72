"""Worker shards as Ray actors, for loads one client host cannot drive alone (``--ray ADDRESS``).

``RayShard`` has ``workers.WorkerShard``'s interface (``ShardView``), so ``ShardedLoad`` only
chooses the class. Each shard is one async Ray actor (``_ShardActor``, one CPU, placed with the
``SPREAD`` strategy over the cluster's nodes) running the worker process's own code
(``worker_process.WorkerCore``: the LoadGenerator, commands, tick messages) on the actor's event
loop. The main side talks to it from one thread per shard, never from the engine's loop: the
queued commands as one actor call (in order: each call is awaited before the next), then every
``TICK_S`` a ``poll`` that returns the actor's clock and its tick message (orjson, as over the
worker socket); the messages reach the engine loop through ``call_soon_threadsafe``.

Clocks: each host stamps its own requests with its own ``time.monotonic()``; monotonic clocks of
different hosts share no epoch, so every time in a message is moved to this process's clock by an
offset estimated per actor from its polls (``ClockOffset``: NTP's midpoint rule, local =
remote + (t0 + t1) / 2 - remote_now, the smallest round trip of the last ``CLOCK_KEEP_S`` wins).
A request's durations (TTFT, decode speed, end to end) are differences of one host's stamps and
stay exact; only where a request falls in a window carries the estimate's error, at most half
that round trip (well under a millisecond on one LAN). An actor on this host's own Ray node shares
CLOCK_MONOTONIC with the main process and gets offset 0.

A dead actor or a lost node (any Ray error from a call) makes the shard ``alive=False`` with an
event, the same path as a dead worker process: ``ShardedLoad.worker_problems`` reports it and the
window is invalid; an actor that stops answering is "silent" after ``STALE_AFTER_S`` the same way.
Every host needs this package installed (same version) in the Python that runs its Ray node, and
must reach the server's URL (so not 127.0.0.1 across hosts). Ray is imported here only, and only
``--ray`` imports this module.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import pickle
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

try:
    import ray
    from ray.exceptions import RayError
except ImportError as exc:  # an optional extra
    raise ImportError("--ray needs Ray on this host: pip install -e '.[ray]'") from exc

from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.engine.shard_view import ShardView, WorkerHealth
from agentperf_tui.engine.worker_process import AGENT_FIELDS, RECORD_FIELDS, TICK_S, WorkerCore

CALL_WAIT_S = 0.5  # ray.wait slices: close() never waits long behind a call to a silent actor
CLOCK_KEEP_S = 30.0  # the best clock sample gives way to newer ones after this (drift, route changes)
STOP_CALL_S = 10.0  # the actor's own stop (agents cancelled, last records) before we give up on it
TRUST_SAME_HOST_CLOCK = True  # offset 0 for an actor on this process's own Ray node (tests turn it off)
_RECORD_TIMES = tuple(RECORD_FIELDS.index(name) for name in ("t_send", "t_first", "t_last", "t_end"))
_AGENT_IN_FLIGHT = AGENT_FIELDS.index("in_flight")
_AGENT_TIMES = tuple(AGENT_FIELDS.index(name) for name in ("state_since", "last_progress"))

_connect_lock = threading.Lock()


def connect(address: str) -> int:
    """Join the Ray cluster at ``address`` (once per process; "local" starts one on this host,
    "auto" finds a running one); the cluster's CPUs (one actor per CPU at most)."""
    with _connect_lock:
        if not ray.is_initialized():
            logging.getLogger("ray").setLevel(logging.ERROR)  # its notices would land on the dashboard
            on_main = threading.current_thread() is threading.main_thread()
            handler = signal.getsignal(signal.SIGTERM) if on_main else None
            try:
                # actors' stdout stays in Ray's logs, never on the dashboard's screen
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            finally:
                if on_main and handler is not None:  # ray.init takes SIGTERM; the run stops cleanly on it
                    signal.signal(signal.SIGTERM, handler)
        return max(1, int(ray.cluster_resources().get("CPU", 1)))


class ClockOffset:
    """``local = remote + offset`` for one remote clock, from (t0, remote_now, t1) round trips."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.rtt_s = math.inf
        self.at = -math.inf
        self.samples = 0

    def update(self, t0: float, remote_now: float, t1: float) -> float:
        """The midpoint estimate of the smallest round trip (its error is at most half of it)."""
        self.samples += 1
        rtt = t1 - t0
        if rtt <= self.rtt_s or t1 - self.at > CLOCK_KEEP_S:
            self.offset, self.rtt_s, self.at = (t0 + t1) / 2 - remote_now, rtt, t1
        return self.offset


def to_local_clock(msg: dict[str, Any], offset: float) -> dict[str, Any]:
    """Move every time in a tick message by ``offset`` (in place; durations unchanged)."""
    if not offset:
        return msg
    for row in msg.get("records", ()):
        for i in _RECORD_TIMES:
            if row[i] is not None:
                row[i] += offset
    for row in msg.get("agents") or ():
        for i in _AGENT_TIMES:
            if row[i] is not None:
                row[i] += offset
        if row[_AGENT_IN_FLIGHT]:
            row[_AGENT_IN_FLIGHT] = [None if t is None else t + offset for t in row[_AGENT_IN_FLIGHT]]
    if msg.get("started_at") is not None:
        msg["started_at"] += offset
    return msg


class _ShardActor:
    """On a Ray worker of any host: one shard's ``WorkerCore`` on the actor's event loop."""

    def __init__(self, shard: int, spec_bytes: bytes):
        self._shard = shard
        self._spec = pickle.loads(spec_bytes)  # our own driver's WorkerSpec, through Ray
        self._core: WorkerCore | None = None

    async def start(self) -> dict[str, Any]:
        self._core = WorkerCore(self._shard, self._spec)
        self._core.start()
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}

    async def command(self, msgs: list[dict[str, Any]]) -> None:
        assert self._core is not None
        for msg in msgs:
            self._core.handle(msg)

    async def poll(self) -> tuple[float, bytes]:
        assert self._core is not None
        now = time.monotonic()
        return now, orjson.dumps(self._core.tick(now))

    async def finish(self) -> bytes:
        assert self._core is not None
        return orjson.dumps(await self._core.finish())


ShardActor = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_ShardActor)


class _Closed(Exception):
    """close() while a call was pending."""


class RayShard(ShardView):
    """The handle on one shard's Ray actor: its calls, its agents as last reported, its health."""

    def __init__(self, shard: int, spec_bytes: bytes, on_record: Callable[[RequestRecord], None],
                 on_event: Callable[[str], None]):
        super().__init__(shard, on_record, on_event)
        self._loop = asyncio.get_running_loop()
        self._spec_bytes = spec_bytes
        self.actor: Any = None
        self.pid = 0
        self.node = ""
        self.host = ""
        self.clock = ClockOffset()
        self._outbox: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._closing = False
        self._thread = threading.Thread(target=self._pump, name=f"agentperf-ray-shard-{shard}", daemon=True)
        self._thread.start()

    # -- commands -------------------------------------------------------------------------------
    def send(self, msg: dict[str, Any]) -> None:
        if self.alive:
            self._outbox.put(msg)

    # -- the thread that talks to the actor -----------------------------------------------------
    def _call(self, ref: Any, limit_s: float | None = None) -> Any:
        deadline = None if limit_s is None else time.monotonic() + limit_s
        while True:
            ready, _ = ray.wait([ref], timeout=CALL_WAIT_S)
            if ready:
                return ray.get(ready[0])
            if self._closing or (deadline is not None and time.monotonic() > deadline):
                raise _Closed

    def _pump(self) -> None:
        try:
            self.actor = ShardActor.options(scheduling_strategy="SPREAD").remote(self.shard, self._spec_bytes)
            info = self._call(self.actor.start.remote())
            self.pid, self.node, self.host = info["pid"], info["node"], info["host"]
            same_node = TRUST_SAME_HOST_CLOCK and self.node == ray.get_runtime_context().get_node_id()
            self._to_loop(self.on_event, f"worker {self.shard}: Ray actor pid {self.pid} on {self.host}"
                          + (" (this host's clock)" if same_node else " (clock offset per poll)"))
            next_poll = time.monotonic()
            while True:
                msgs = self._take(max(0.0, next_poll - time.monotonic()))
                if None in msgs:
                    return
                if msgs:
                    self._call(self.actor.command.remote(msgs))
                if any(m is not None and m["k"] == "stop" for m in msgs):
                    last = orjson.loads(self._call(self.actor.finish.remote(), STOP_CALL_S))
                    self._to_loop(self._handle, to_local_clock(last, 0.0 if same_node else self.clock.offset))
                    self._to_loop(self._handle, {"k": "bye"})
                    return
                if time.monotonic() >= next_poll:
                    t0 = time.monotonic()
                    remote_now, data = self._call(self.actor.poll.remote())
                    t1 = time.monotonic()
                    offset = 0.0 if same_node else self.clock.update(t0, remote_now, t1)
                    self._to_loop(self._handle, to_local_clock(orjson.loads(data), offset))
                    next_poll = t0 + TICK_S
        except _Closed:
            return
        except RayError as exc:  # the actor died, its node was lost, or our code in it raised
            lines = str(exc).strip().splitlines()
            self._to_loop(self._lost, f"{type(exc).__name__}: {lines[-1] if lines else ''}")
        except Exception as exc:  # never a silent thread: the shard is lost, the window says so
            self._to_loop(self._lost, f"{type(exc).__name__}: {exc}")

    def _take(self, wait_s: float) -> list[dict[str, Any] | None]:
        msgs: list[dict[str, Any] | None] = []
        try:
            msgs.append(self._outbox.get(timeout=wait_s) if wait_s > 0 else self._outbox.get_nowait())
            while True:
                msgs.append(self._outbox.get_nowait())
        except queue.Empty:
            return msgs

    def _to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the engine loop is closed: nobody left to tell
            pass

    # -- on the engine loop ---------------------------------------------------------------------
    def _lost(self, why: str) -> None:
        if not self.alive:
            return
        self.alive = False
        self.forget_agents()
        if not self.said_bye:
            where = f" (pid {self.pid} on {self.host})" if self.pid else ""
            self.on_event(f"worker {self.shard}: Ray actor{where} lost: {why}; its agents are gone")
        self._kill()

    def _kill(self) -> None:
        if self.actor is not None:
            try:  # its agents stop loading the server even when only our link to it broke
                ray.kill(self.actor, no_restart=True)
            except Exception:  # already gone
                pass

    def health(self, now: float) -> WorkerHealth:
        return self._health(now, self.pid, self.host)

    def close(self) -> None:
        """After stop: end the thread and the actor (it has said bye or is stuck)."""
        self.alive = False
        self._closing = True
        self._outbox.put(None)
        self._thread.join(CALL_WAIT_S + 1.0)
        self._kill()
