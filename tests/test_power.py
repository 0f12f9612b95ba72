"""The energy account (missing devices, resets, stale counters) and node/rack power over Redfish from the twin's BMC."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from agentperf_tui.telemetry.energy import NONE, OK, PARTIAL, STALE, EnergyAccount, EnergySnapshot
from agentperf_tui.telemetry.redfish import RedfishPowerReader
from agentperf_tui.twin.config import parse_twin_args
from agentperf_tui.twin.server import TwinServer


def snap(t, energy, power=None):
    return EnergySnapshot(t, dict(energy), dict(power or {k: 500.0 for k in energy}))


def test_energy_is_the_sum_of_per_device_deltas_over_the_time_between_readings():
    acc = EnergyAccount()
    a, b = snap(10.0, {"g0": 1000.0, "g1": 5000.0}), snap(20.0, {"g0": 6000.0, "g1": 9000.0})
    acc.add(a)
    acc.add(b)
    w = acc.window(a, b)
    assert w.status == OK and w.energy_j == 9000.0 and w.avg_power_w == 900.0 and w.devices == 2


def test_a_device_missing_at_either_end_makes_the_window_partial_never_negative():
    acc = EnergyAccount()
    a = snap(0.0, {"g0": 4.0e9, "g1": 4.0e9})
    b = snap(5.0, {"g0": 4.0e9 + 2500.0})  # g1's exporter missed the scrape
    w = acc.window(a, b)
    assert w.status == PARTIAL and w.missing == ("g1",) and w.energy_j == 2500.0 and not w.measured
    assert "1 of 2 devices missing" in w.note
    c = snap(5.0, {"g0": 4.0e9 + 2500.0, "g1": None})  # present with a blank counter
    assert acc.window(a, c).status == PARTIAL


def test_a_counter_reset_counts_from_the_reset_and_is_named():
    acc = EnergyAccount()
    w = acc.window(snap(0.0, {"g0": 9.0e6}), snap(10.0, {"g0": 3000.0}))
    assert w.status == PARTIAL and w.reset == ("g0",) and w.energy_j == 3000.0


def test_a_counter_that_does_not_move_while_the_device_draws_power_is_stale():
    acc = EnergyAccount(stale_after_s=2.0)
    readings = [snap(t, {"g0": 1000.0 if t < 30 else 16000.0}, {"g0": 500.0}) for t in (0.0, 1.0, 2.0, 3.0, 30.0)]
    for r in readings:
        acc.add(r)
    w = acc.window(readings[0], readings[3])
    assert w.status == STALE and w.stale == ("g0",) and "-c 1000" in w.note
    idle = EnergyAccount()
    for r in [snap(t, {"g0": 1000.0}, {"g0": 0.0}) for t in (0.0, 1.0, 2.0, 3.0)]:
        idle.add(r)  # a device reporting no draw whose counter does not move is not stale
    assert idle.stale_between(0.0, 3.0) == []


def test_no_two_readings_is_no_power():
    assert EnergyAccount().window(None, snap(1.0, {"g0": 1.0})).status == NONE


@pytest.fixture
async def twin_bmc():
    twin = TwinServer(parse_twin_args(["--hardware", "gb300-nvl72", "--tp", "8", "--nnodes", "2"]))
    server = TestServer(twin.dcgm_app(), host="127.0.0.1")
    await server.start_server()
    yield twin, str(server.make_url("/")).rstrip("/")
    await server.close()


async def test_node_and_rack_power_over_redfish_from_the_twins_bmc(twin_bmc):
    twin, url = twin_bmc
    async with aiohttp.ClientSession() as session:
        nodes = RedfishPowerReader(url, "node")
        rack = RedfishPowerReader(url, "rack")
        n0 = await nodes.read(session, time.monotonic())
        await rack.read(session, time.monotonic())
        # 2 s, not 0.5: the counters' timestamps and steps make a short window's average noisy (>5 %)
        await asyncio.sleep(2.0)
        n1 = await nodes.read(session, time.monotonic())
        r1 = await rack.read(session, time.monotonic())
    assert sorted(k.rsplit("/", 1)[1] for k in n1.energy_j) == [f"twin-tray{i:02d}" for i in range(1, 19)]
    assert [k.rsplit("/", 1)[1] for k in r1.energy_j] == ["Rack"]
    acc = EnergyAccount()
    node_w = acc.window(n0, n1)
    assert node_w.status == OK and node_w.devices == 18
    truth = twin.bmc.readings(time.monotonic())
    gpu_w = sum(n["gpu_power_w"] for n in truth["nodes"].values())
    node_now = n1.total_power_w
    assert node_now > gpu_w  # node power includes CPUs, NICs, fans
    assert r1.total_power_w > node_now  # the rack adds its switch trays' share
    assert node_w.avg_power_w == pytest.approx(node_now, rel=0.05)  # idle twin: steady draw


async def test_a_redfish_source_is_named_by_its_root_and_a_silent_one_fails_loudly(twin_bmc):
    _twin, url = twin_bmc
    with pytest.raises(ValueError, match="service is named by its root"):
        RedfishPowerReader(url + "/redfish/v1/Chassis", "node")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(Exception, match="Redfish request failed"):
            await RedfishPowerReader("http://127.0.0.1:9", "node", timeout_s=0.5).read(session, 0.0)


def twin_session(frames, boundary: str = "node", agents: int = 2, settle_s: float = 1.0):
    from agentperf_tui.engine.session import RunOptions, ServerHandle, Session
    from agentperf_tui.engine.slo import AA_DSV4_PRO_TIERS

    from .test_engine_loadgen import small_workload

    twin = TwinServer(parse_twin_args(["--hardware", "h200", "--tp", "8"]))
    servers: list[TestServer] = []

    async def start(_session) -> ServerHandle:
        api = TestServer(twin.app(), host="127.0.0.1")
        tele = TestServer(twin.dcgm_app(), host="127.0.0.1")
        for s in (api, tele):
            await s.start_server()
            servers.append(s)
        root = str(tele.make_url("/")).rstrip("/")

        async def stop() -> None:
            for s in servers:
                await s.close()

        return ServerHandle(base_url=str(api.make_url("/")).rstrip("/"), model="m", gpus=8,
                            dcgm_urls=[root + "/metrics"], metrics_url=None, use_nvml=False, boundary=boundary,
                            stop=stop, twin=True, node_power_urls=[root], rack_power_urls=[root])

    options = RunOptions(agents=agents, duration_s=None, frame_hz=10, ramp_s=0.1, settle_s=settle_s)
    session = Session(profile_name="test", options=options, tiers=AA_DSV4_PRO_TIERS,
                      workload_loader=lambda: small_workload(turns=3, target=40, delay=0.05),
                      server_starter=start, sinks=[frames.append])
    return session, twin


async def test_node_boundary_run_reports_node_power_above_gpu_power_and_agents_per_mw_for_both():
    frames: list = []
    session, _twin = twin_session(frames, "node")
    task = asyncio.create_task(session.run())
    await asyncio.sleep(6.0)
    session.request_stop("test over")
    summary = await asyncio.wait_for(task, 20)
    by = summary["power_by_boundary"]
    assert set(by) == {"gpu", "node", "rack"}
    assert by["gpu"]["status"] == by["node"]["status"] == "ok"
    assert by["node"]["avg_power_w"] > by["gpu"]["avg_power_w"] > 0
    assert by["gpu"]["devices"] == 8 and by["node"]["devices"] == 1
    assert summary["power"]["boundary"] == "node" and summary["power"]["avg_power_w"] == by["node"]["avg_power_w"]
    assert summary["agents_per_mw"] == by["node"]["agents_per_mw"] < by["gpu"]["agents_per_mw"]
    live = frames[-2].power
    assert live.boundary == "node" and live.boundary_w > live.total_w


async def test_a_dcgm_exporter_losing_gpus_mid_run_gives_partial_power_never_negative():
    frames: list = []
    session, twin = twin_session(frames, "gpu", settle_s=0.5)
    task = asyncio.create_task(session.run())
    await asyncio.sleep(3.0)
    twin.faults.update({"dcgm_drop_gpus": 2})  # a tray's exporter gone
    await asyncio.sleep(2.0)
    session.request_stop("test over")
    summary = await asyncio.wait_for(task, 20)
    gpu = summary["power_by_boundary"]["gpu"]
    assert gpu["status"] == "partial" and len(gpu["missing"]) == 2 and gpu["energy_j"] > 0
    assert summary["agents_per_mw"] is None  # never from a partial denominator
    assert frames[-2].power.status == "partial"
    assert all((f.power.energy_j or 0) >= 0 for f in frames)


async def test_a_stale_dcgm_counter_marks_the_window_stale_with_the_fix():
    frames: list = []
    session, twin = twin_session(frames, "gpu", settle_s=0.5)
    twin.faults.update({"dcgm_refresh_s": 30.0})  # dcgm-exporter's default -c 30000
    task = asyncio.create_task(session.run())
    await asyncio.sleep(5.0)
    session.request_stop("test over")
    summary = await asyncio.wait_for(task, 20)
    gpu = summary["power_by_boundary"]["gpu"]
    assert gpu["status"] == "stale" and "-c 1000" in gpu["note"]
    assert summary["agents_per_mw"] is None


async def test_summary_tokens_are_the_tokens_that_arrived_in_the_window_close_to_the_servers_count():
    frames: list = []
    session, twin = twin_session(frames, "gpu", agents=8, settle_s=1.0)
    samples: list[tuple[float, int]] = []
    tick = session.tick

    def counting_tick(now: float) -> None:  # the twin counts each token as generated (SGLang counts at finish)
        tick(now)
        samples.append((now, twin.cluster.stats.decoded_tokens_total))

    session.tick = counting_tick  # type: ignore[method-assign]
    task = asyncio.create_task(session.run())
    await asyncio.sleep(10.0)
    session.request_stop("test over")
    summary = await asyncio.wait_for(task, 20)
    t0 = session.account.steady_from
    t1 = t0 + summary["steady_window"]["seconds"]

    def counter_at(t: float) -> int:
        return min(samples, key=lambda p: abs(p[0] - t))[1]

    server_tokens = counter_at(t1) - counter_at(t0)
    assert server_tokens > 1000
    assert abs(summary["output_tokens"] - server_tokens) / server_tokens < 0.015, (summary["output_tokens"], server_tokens)


async def test_bmc_credentials_come_from_named_env_vars_and_are_sent_only_over_https(twin_bmc, monkeypatch):
    _twin, url = twin_bmc
    reader = RedfishPowerReader(url, "node", username_env="BMC_USER_T", password_env="BMC_PASS_T")
    monkeypatch.delenv("BMC_USER_T", raising=False)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(RuntimeError, match="set the environment variables BMC_USER_T and BMC_PASS_T"):
            await reader.read(session, 0.0)
        monkeypatch.setenv("BMC_USER_T", "admin")
        monkeypatch.setenv("BMC_PASS_T", "not-in-any-file")
        with pytest.raises(ValueError, match="HTTPS"):  # the DMTF client refuses Basic auth over http
            await reader.read(session, 0.0)
