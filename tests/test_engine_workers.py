"""Agents in worker processes: the split, records reaching the main process, starvation and crashes
flagged invalid, automatic scale-up on loop lag, and no process left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from agentperf_tui.engine import workers as workers_mod
from agentperf_tui.engine.frames import Frame
from agentperf_tui.engine.workers import ShardedLoad, plan_shards

from .test_engine_loadgen import small_workload, start_twin_server
from .test_engine_session import make_session


def test_plan_splits_the_target_evenly_and_auto_stays_in_process_for_small_loads():
    assert plan_shards(10, 0, 0, 8) == (10, [])
    assert plan_shards(10, 3, 0, 8) == (0, [4, 3, 3])
    assert plan_shards(100, None, 0, 8) == (100, [])  # small: in-process
    local, per_worker = plan_shards(4000, None, 0, 8)
    assert local == 0 and per_worker == [1000] * 4 and sum(per_worker) == 4000
    assert plan_shards(4000, None, 0, 2) == (0, [2000, 2000])  # never more processes than CPUs
    assert plan_shards(100, None, 2, 8) == (0, [50, 50])  # lag asked for 2 workers


async def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def run_session_with_workers(agents: int, workers: int):
    frames: list[Frame] = []
    session, _servers = make_session(frames, agents=agents)
    session.options.workers = workers
    task = asyncio.create_task(session.run())
    await wait_for(lambda: bool(frames) and frames[-1].requests_completed >= 2 * agents and frames[-1].steady,
                   30, "requests from the workers")
    return session, task, frames


async def test_agents_in_two_workers_report_records_and_agents_and_stop_without_orphans():
    session, task, frames = await run_session_with_workers(agents=12, workers=2)
    lg = session.loadgen
    assert lg is not None
    pids = [s.process.pid for s in lg.shards]
    frame = frames[-1]
    assert frame.client.workers == 2 and frame.client.valid, frame.client.invalid_reasons
    assert frame.active_agents == 12 and len(frame.agents) == 12
    assert frame.agents.ids == tuple(range(12))  # one dense range of ids over both workers
    assert sorted(lg.shards[0].agents) == list(range(6)) and sorted(lg.shards[1].agents) == list(range(6, 12))
    assert any(p is not None for row in frame.agents.tier_pass for p in row)  # last records reached the table
    session.request_stop("test over")
    summary = await asyncio.wait_for(task, 20)
    assert summary["requests"]["completed_all"] >= 24 and summary["requests"]["failed_all"] == 0
    assert summary["client"]["workers"] == 2
    # the shards closing at the end are not agents moving between processes
    assert not any("re-split" in r for f in frames for r in f.client.invalid_reasons)
    for shard in lg.shards:
        assert shard.said_bye and shard.process.poll() is not None
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_a_starved_worker_makes_the_window_invalid_and_it_recovers():
    session, task, frames = await run_session_with_workers(agents=6, workers=1)
    try:
        shard = session.loadgen.shards[0]
        os.kill(shard.process.pid, signal.SIGSTOP)  # starve it: no CPU at all for 1.5 s
        await asyncio.sleep(1.5)
        silent = frames[-1]
        assert not silent.client.valid
        assert any("worker 1 silent" in r for r in silent.client.invalid_reasons), silent.client.invalid_reasons
        os.kill(shard.process.pid, signal.SIGCONT)
        await wait_for(lambda: any("worker 1 loop lag" in r for r in frames[-1].client.invalid_reasons),
                       3, "the worker's own lag report after it resumes")
        await wait_for(lambda: frames[-1].client.valid, 15, "recovery (late dispatches leave the 10 s window)")
    finally:
        session.request_stop("test over")
        await asyncio.wait_for(task, 20)


async def test_a_crashed_worker_is_reported_and_invalidates_the_window():
    session, task, frames = await run_session_with_workers(agents=4, workers=1)
    try:
        shard = session.loadgen.shards[0]
        os.kill(shard.process.pid, signal.SIGKILL)
        await wait_for(lambda: any("worker 1 exited" in r for r in frames[-1].client.invalid_reasons),
                       5, "the crash to be flagged")
        assert any("exited unexpectedly" in e for f in frames for e in f.events)
        assert frames[-1].active_agents == 0
    finally:
        session.request_stop("test over")
        await asyncio.wait_for(task, 20)


async def test_auto_mode_moves_agents_to_workers_past_the_local_limit_and_adds_one_on_lag(monkeypatch):
    monkeypatch.setattr(workers_mod, "LOCAL_MAX_AGENTS", 3)
    server = await start_twin_server()
    events: list[str] = []
    load = ShardedLoad(small_workload(turns=3, target=8), base_url=str(server.make_url("/")).rstrip("/"),
                       model="m", ramp_s=0.0, on_record=lambda r: None, on_event=events.append, max_workers=2)
    try:
        load.set_target(2)
        assert load.worker_count == 0 and load.local.target == 2
        load.set_target(6)
        assert load.worker_count == 1 and load.local.target == 0 and load.shards[0].target == 6
        now = time.monotonic()
        load.check_scaling(now, engine_lag_ms=0.0)
        load.shards[0].lag_ms = 80.0  # as a lagging worker would report it
        load.check_scaling(now, engine_lag_ms=0.0)
        load.check_scaling(now + 1.0, engine_lag_ms=0.0)
        assert load.worker_count == 1  # not yet: the lag has to last
        load.check_scaling(now + 3.5, engine_lag_ms=0.0)
        assert load.worker_count == 2 and [s.target for s in load.shards] == [3, 3]
        assert any("agents now over 2 worker processes" in e for e in events)
        load.check_scaling(now + 10.0, engine_lag_ms=0.0)
        assert load.worker_count == 2  # max_workers reached
        await wait_for(lambda: load.active == 6, 20, "both workers running their agents")
    finally:
        await load.stop()
        await server.close()
    assert all(s.process.poll() is not None for s in load.shards)
