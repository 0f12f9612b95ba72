"""The worker process: a LoadGenerator on its own loop, reporting to the main process over a socket.

Started by ``workers.WorkerShard`` as ``python -m agentperf_tui.engine.worker_process FD SHARD``
(a plain subprocess, never fork or multiprocessing's spawn, so no caller's ``__main__`` is
re-imported). The first message on the socket is the pickled ``WorkerSpec``; then commands
(target, pause, resume, stop) come in and, every ``TICK_S``, one orjson message goes out: the
request records finished since the last tick, and every ``SNAPSHOT_S`` the rows of the agents that
changed since the previous snapshot (and the ids of those gone) and this
process's health. The process stops by itself when the socket closes (the main process is gone).
``WorkerCore`` is that shard's side without the socket: ``ray_shards``' actor runs the same one.
"""

from __future__ import annotations

import asyncio
import pickle
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field, fields
from multiprocessing.connection import Connection
from typing import Any

import orjson
import psutil

from agentperf_tui.engine.client import ROUTING_HEADER, Timeouts
from agentperf_tui.engine.loadgen import LoadGenerator
from agentperf_tui.engine.looplag import LoopLagMeter
from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.workload.model import Workload

MAX_SHARDS = 32  # fallback agent ids are k * MAX_SHARDS + shard (the main process grants dense ones)
TICK_S = 0.1
SNAPSHOT_S = 0.25
RECORD_FIELDS = tuple(f.name for f in fields(RequestRecord))


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs to run agents (pickled once, at start)."""

    workload: Workload
    base_url: str
    model: str
    policy: str
    seed: int
    timeouts: Timeouts
    api_key: str | None
    run_salt: str
    warm_start: bool = False
    routing_header: str = ROUTING_HEADER
    extra_body: dict[str, Any] = field(default_factory=dict)


#: an agent's row in a snapshot, in order (``_agent_row``; ``shard_view.RemoteAgent.update`` reads it back)
AGENT_FIELDS = ("agent_id", "live_state", "trajectory_id", "turn_index", "turn_count", "context_tokens",
                "last_ttft_s", "last_tps", "rolling_tps", "failures", "in_work", "started", "retiring", "in_flight",
                "streamed_tokens", "state_since", "last_progress")


def _agent_row(a: Any) -> list[Any]:  # AGENT_FIELDS, written out: it runs for every agent 4 times a second
    return [a.agent_id, a.live_state, a.trajectory_id, a.turn_index, a.turn_count, a.context_tokens,
            a.last_ttft_s, a.last_tps, a.rolling_tps, a.failures, a.in_work, a.started, a.retiring, a.in_flight,
            a.streamed_tokens, a.state_since, a.last_progress]


class WorkerCore:
    """One shard's agents and what it reports, whatever carries the messages (this module's socket,
    ``ray_shards``' actor): commands in (``handle``), tick messages out (``tick``, then ``finish``)."""

    def __init__(self, shard: int, spec: WorkerSpec):
        self.records: list[list[Any]] = []
        self.lg = LoadGenerator(spec.workload, base_url=spec.base_url, model=spec.model, policy=spec.policy,
                                seed=spec.seed, timeouts=spec.timeouts, api_key=spec.api_key,
                                on_record=self._on_record, routing_header=spec.routing_header,
                                extra_body=spec.extra_body, run_salt=spec.run_salt, id_first=shard,
                                id_stride=MAX_SHARDS, warm_start=spec.warm_start)
        self.stop = asyncio.Event()
        self.generation = -1
        self.lag = LoopLagMeter()
        self._lag_task: asyncio.Task[None] | None = None
        self._proc = psutil.Process()
        self._next_snapshot = 0.0
        self._sent_rows: dict[int, list[Any]] = {}  # each agent's row as last sent

    def _on_record(self, r: RequestRecord) -> None:
        self.records.append([getattr(r, name) for name in RECORD_FIELDS])

    def start(self) -> None:
        """On the loop the agents will run on: start measuring its lag."""
        self._lag_task = asyncio.create_task(self.lag.run())
        self._proc.cpu_percent(None)

    def handle(self, msg: dict[str, Any]) -> None:
        """One command from the main process."""
        kind = msg["k"]
        if kind == "target":
            self.lg.ramp_s = msg["ramp_s"]
            self.lg.grant_ids(msg["ids"])
            self.lg.set_target(msg["n"], cancel_surplus=msg["cancel"])
            self.generation = msg["gen"]
        elif kind == "pause":
            self.lg.pause()
        elif kind == "resume":
            self.lg.resume()
        elif kind == "stop":
            self.stop.set()

    def tick(self, now: float) -> dict[str, Any]:
        """The records finished since the last tick and, every ``SNAPSHOT_S``, agents and health."""
        msg: dict[str, Any] = {"k": "tick", "records": self.records}
        self.records = []
        if now >= self._next_snapshot:
            self._next_snapshot = now + SNAPSHOT_S
            lg, lag = self.lg, self.lag
            lg.refresh_started(now)
            rows, sent = [], self._sent_rows  # only the rows that changed since the last snapshot
            for a in lg.agents.values():
                row = _agent_row(a)
                if sent.get(a.agent_id) != row:
                    sent[a.agent_id] = row
                    rows.append(row)
            gone = list(sent.keys() - lg.agents.keys())
            for agent_id in gone:
                del sent[agent_id]
            msg.update(agents=rows, gone=gone, gen=self.generation,
                       started_at=lg.all_started_at, lag_ms=lag.mean_ms, lag_max_ms=lag.max_ms,
                       cpu_pct=self._proc.cpu_percent(None), rss_mib=self._proc.memory_info().rss / 2**20)
        return msg

    async def finish(self) -> dict[str, Any]:
        """Stop every agent; the last tick (records only)."""
        if self._lag_task is not None:
            self._lag_task.cancel()
        await self.lg.stop()
        msg = {"k": "tick", "records": self.records}
        self.records = []
        return msg


async def run_worker(conn: Connection, shard: int, spec: WorkerSpec) -> None:
    """Run agents until told to stop or the socket closes; flush the last records; say bye."""
    loop = asyncio.get_running_loop()
    core = WorkerCore(shard, spec)

    def on_command() -> None:
        try:
            while conn.poll():
                core.handle(orjson.loads(conn.recv_bytes()))
        except (EOFError, OSError):  # the main process is gone: stop by ourselves
            core.stop.set()

    loop.add_reader(conn.fileno(), on_command)
    core.start()
    try:
        while not core.stop.is_set():
            await asyncio.sleep(TICK_S)
            conn.send_bytes(orjson.dumps(core.tick(time.monotonic())))
    except OSError:  # the socket broke: the main process is gone
        pass
    finally:
        loop.remove_reader(conn.fileno())
        last = await core.finish()
        try:  # the last records, then goodbye
            conn.send_bytes(orjson.dumps(last))
            conn.send_bytes(orjson.dumps({"k": "bye"}))
        except OSError:
            pass


def main(argv: list[str]) -> int:
    fd, shard = int(argv[0]), int(argv[1])
    for signum in (signal.SIGINT, signal.SIGHUP):  # the terminal's signals are the main process's to act on
        signal.signal(signum, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        spec = pickle.loads(conn.recv_bytes())  # from our own parent, over a private socketpair
        asyncio.run(run_worker(conn, shard, spec))
        return 0
    except (EOFError, OSError):
        return 0
    except Exception:  # reported to the main process, which logs it
        try:
            conn.send_bytes(orjson.dumps({"k": "error", "text": traceback.format_exc()}))
        except OSError:
            pass
        return 1
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
