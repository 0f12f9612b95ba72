"""Worker shards as Ray actors (``--ray``) on a local Ray cluster this module starts and stops:
two actors against the twin give the in-process run's records, a killed actor invalidates the
window, the clock offset rule, and the clear error without Ray. Skipped where Ray is not
installed (``pip install -e '.[ray]'``; CI installs ``.[dev]`` only)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Iterator

import psutil
import pytest

from agentperf_tui import cli
from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.engine.workers import ShardedLoad

from .test_engine_loadgen import small_workload, start_twin_server
from .test_engine_workers import wait_for

AGENTS = 12
TOOL_DELAY_S = 1.0  # between turns: every agent is idle at the pause, whichever shard it runs in


def _cluster_processes(temp_dir: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A fresh local Ray cluster (2 CPUs, no dashboard) in its own temp dir; none of it left after."""
    ray = pytest.importorskip("ray")
    temp_dir = tempfile.mkdtemp(prefix="apray", dir="/tmp")  # short: Ray's socket paths have a length limit
    t0 = time.monotonic()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    print(f"local Ray cluster up in {time.monotonic() - t0:.1f} s")
    try:
        yield temp_dir
    finally:
        ray.shutdown()
        deadline = time.monotonic() + 15
        while (left := _cluster_processes(temp_dir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes left behind: {[p.pid for p in left]}"


async def _paused_run(workers: int, ray_address: str | None) -> tuple[list[RequestRecord], ShardedLoad, float]:
    """AGENTS agents start paused, run exactly two turns each, pause; their records."""
    server = await start_twin_server()
    records: list[RequestRecord] = []
    load = ShardedLoad(small_workload(turns=3, target=12, delay=TOOL_DELAY_S),
                       base_url=str(server.make_url("/")).rstrip("/"), model="m", ramp_s=0.0, salt=False,
                       on_record=records.append, workers=workers, ray_address=ray_address)

    def all_paused() -> bool:
        agents = load.agents
        return len(agents) == AGENTS and all(a.live_state == "paused" for a in agents.values())

    try:
        load.pause()
        load.set_target(AGENTS)
        await wait_for(all_paused, 60, "every agent started and waiting (paused)")
        assert not records
        t_resume = time.monotonic()
        load.resume()
        await wait_for(lambda: len(records) >= 2 * AGENTS, 30, "two turns of every agent")
        load.pause()  # all are in their 1 s tool time now: they finish it and wait
        await wait_for(all_paused, 30, "every agent paused after its second turn")
        await asyncio.sleep(0.3)  # a tick more: nothing else arrives
        assert load.worker_problems(time.monotonic(), lag_limit_ms=1e9) == []
    finally:
        await load.stop()
        await server.close()
    return records, load, t_resume


def _counts(records: list[RequestRecord]) -> dict[str, object]:
    return {"ok": sum(r.ok for r in records), "failed": sum(not r.ok for r in records),
            "agents": sorted({r.agent_id for r in records}), "turns": Counter(r.turn_index for r in records),
            "per_agent": Counter(Counter(r.agent_id for r in records).values()),
            "output_tokens": sum(r.output_tokens for r in records),
            "prompt_tokens": sum(r.prompt_tokens for r in records)}


async def test_two_ray_actors_against_the_twin_give_the_in_process_runs_records(ray_cluster, monkeypatch):
    from agentperf_tui.engine import ray_shards

    monkeypatch.setattr(ray_shards, "TRUST_SAME_HOST_CLOCK", False)  # estimate the offset as across hosts
    local, _, _ = await _paused_run(workers=0, ray_address=None)
    remote, load, t_resume = await _paused_run(workers=2, ray_address="auto")
    assert _counts(local)["ok"] == 2 * AGENTS and _counts(local)["failed"] == 0
    assert _counts(remote) == _counts(local)
    assert [type(s).__name__ for s in load.shards] == ["RayShard", "RayShard"]
    assert all(s.said_bye for s in load.shards)
    for shard in load.shards:  # two actor processes of this host, their clocks estimated per poll
        assert shard.pid not in (0, os.getpid()) and shard.host == socket.gethostname()
        assert shard.clock.samples > 5 and shard.clock.rtt_s < 0.1 and abs(shard.clock.offset) < 0.05
    # the records are on this process's clock: sent after the resume, finished by now
    assert all(t_resume - 0.05 <= r.t_send <= r.t_end <= time.monotonic() for r in remote)
    ttft = sorted(r.ttft_s for r in remote)
    assert all(t is not None and 0 < t < 5 for t in ttft)


async def test_a_killed_ray_actor_is_reported_and_invalidates_the_window(ray_cluster):
    import ray

    server = await start_twin_server()
    events: list[str] = []
    load = ShardedLoad(small_workload(turns=3, target=8), base_url=str(server.make_url("/")).rstrip("/"),
                       model="m", ramp_s=0.0, on_record=lambda r: None, on_event=events.append,
                       workers=1, ray_address="auto")
    try:
        load.set_target(4)
        await wait_for(lambda: load.active == 4, 60, "the actor running its agents")
        shard = load.shards[0]
        assert load.worker_problems(time.monotonic(), lag_limit_ms=1e9) == []
        health = load.worker_health()[0]
        assert health.pid == shard.pid and health.node == socket.gethostname() and health.alive
        pid = shard.pid
        ray.kill(shard.actor)
        await wait_for(lambda: "worker 1 exited" in load.worker_problems(time.monotonic(), lag_limit_ms=1e9),
                       20, "the lost actor to be flagged")
        assert any("Ray actor" in e and "lost" in e for e in events), events
        assert load.active == 0 and not shard.alive
        await wait_for(lambda: not psutil.pid_exists(pid), 10, "the actor's process to be gone")
    finally:
        await load.stop()
        await server.close()


def test_clock_offset_keeps_the_shortest_round_trip_and_shifts_only_times():
    pytest.importorskip("ray")
    from agentperf_tui.engine import ray_shards
    from agentperf_tui.engine.shard_view import RemoteAgent
    from agentperf_tui.engine.worker_process import RECORD_FIELDS

    clock = ray_shards.ClockOffset()
    assert clock.update(100.0, 5.0, 100.010) == pytest.approx(95.005)  # rtt 10 ms
    assert clock.update(101.0, 6.1, 101.002) == pytest.approx(94.901)  # 2 ms: better, wins
    assert clock.update(102.0, 6.0, 102.050) == pytest.approx(94.901)  # 50 ms: ignored
    assert clock.update(102.0 + ray_shards.CLOCK_KEEP_S + 1, 40.0, 133.05) != pytest.approx(94.901)  # aged out
    record = dict.fromkeys(RECORD_FIELDS, 1)
    record.update(t_send=10.0, t_first=10.5, t_last=None, t_end=12.0, status="ok", trajectory_id="t")
    agent_row = [7, "decode", "t", 1, 3, 100, 0.2, 50.0, 50.0, 0, True, True, False, [10.0, 10.5], 3, 10.5, 11.0]
    msg = {"k": "tick", "records": [list(record.values())], "agents": [agent_row], "started_at": 9.0}
    shifted = ray_shards.to_local_clock(msg, 100.0)
    r = RequestRecord(*shifted["records"][0])
    assert (r.t_send, r.t_first, r.t_last, r.t_end) == (110.0, 110.5, None, 112.0)
    assert r.ttft_s == pytest.approx(0.5) and r.prompt_tokens == 1  # durations and counts unchanged
    a = RemoteAgent(shifted["agents"][0])
    assert a.in_flight == (110.0, 110.5) and (a.state_since, a.last_progress) == (110.5, 111.0)
    assert (a.context_tokens, a.streamed_tokens, shifted["started_at"]) == (100, 3, 109.0)


def test_ray_without_ray_installed_is_a_clear_usage_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(cli.UsageError, match=r"pip install -e '\.\[ray\]'"):
        cli._ray_address(argparse.Namespace(ray="auto", workers=None))
    assert cli._ray_address(argparse.Namespace(ray=None, workers=None)) is None
