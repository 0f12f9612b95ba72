"""A Session against an in-process twin: frames flow, a starved client is flagged invalid, stop is clean."""

from __future__ import annotations

import asyncio
import time

from aiohttp.test_utils import TestServer

from agentperf_tui.engine.frames import Frame
from agentperf_tui.engine.session import RunOptions, ServerHandle, Session
from agentperf_tui.engine.slo import AA_DSV4_PRO_TIERS
from agentperf_tui.twin.config import parse_twin_args
from agentperf_tui.twin.server import TwinServer

from .test_engine_loadgen import small_workload


def make_session(frames: list[Frame], agents: int = 2, twin_args: tuple[str, ...] = (), settle_s: float = 30.0,
                 target: int = 8) -> tuple[Session, list]:
    servers: list[TestServer] = []

    async def start(_session: Session) -> ServerHandle:
        # in-process twin on the client's own loop (a deployment never shares one): its tokenizer's
        # start-up read would show up as client loop lag, so these session tests count by estimate
        args = parse_twin_args(["--hardware", "h200", "--tp", "8", "--enable-cache-report", "--tokenizer", "estimate",
                                *twin_args])
        server = TestServer(TwinServer(args).app(), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return ServerHandle(base_url=str(server.make_url("/")).rstrip("/"), model="m", gpus=8, dcgm_urls=[],
                            metrics_url=None, use_nvml=False, boundary="gpu", stop=server.close)

    options = RunOptions(agents=agents, duration_s=None, frame_hz=10, ramp_s=0.1, settle_s=settle_s)
    session = Session(profile_name="test", options=options, tiers=AA_DSV4_PRO_TIERS,
                      workload_loader=lambda: small_workload(turns=3, target=target, delay=0.05),
                      server_starter=start, sinks=[frames.append])
    return session, servers


async def test_starved_client_is_flagged_invalid_then_recovers_and_stop_is_clean():
    frames: list[Frame] = []
    session, servers = make_session(frames)
    task = asyncio.create_task(session.run())
    while not frames or frames[-1].requests_completed < 3:
        await asyncio.sleep(0.1)
    assert frames[-1].client.valid, frames[-1].client.invalid_reasons
    for _ in range(3):  # starve the engine loop: 300 ms without yielding
        time.sleep(0.3)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    starved = frames[-1]
    assert not starved.client.valid
    assert any("loop lag" in r for r in starved.client.invalid_reasons)
    session.request_stop("test over")
    summary = await asyncio.wait_for(task, 15)
    assert summary["stop_reason"] == "test over"
    assert summary["requests"]["completed_all"] >= 3
    assert frames[-1].server.state == "stopped"
    assert servers[0].runner is None or servers[0].runner.server is None  # the server was closed


async def test_target_changes_through_the_session_api():
    frames: list[Frame] = []
    session, _ = make_session(frames, agents=1)
    task = asyncio.create_task(session.run())
    while session.loadgen is None:
        await asyncio.sleep(0.05)
    session.change_target(lambda n: n * 4)
    await asyncio.sleep(0.6)
    assert frames[-1].target_agents == 4 and frames[-1].active_agents == 4
    session.set_target(2)
    await asyncio.sleep(0.8)
    assert frames[-1].target_agents == 2
    session.request_stop()
    await asyncio.wait_for(task, 15)
    assert any("agents target 1 -> 4" in e for f in frames for e in f.events)


def test_a_twin_that_falls_behind_real_time_makes_the_window_invalid():
    from agentperf_tui.telemetry.samples import ServerMetrics

    session, _ = make_session([])

    def scrape(t: float, lag_s: float, dropped_s: float) -> list[str]:
        session._on_sample(ServerMetrics(t_s=t, raw={"agentperf_twin:step_lag_seconds": lag_s,
                                                     "agentperf_twin:dropped_seconds_total": dropped_s}))
        return list(session._client_view(sample_cpu=False).invalid_reasons)

    assert scrape(1.0, 0.01, 0.0) == []
    assert any("twin behind real time by 0.30 s" in r for r in scrape(2.0, 0.30, 0.0))
    dropped = scrape(3.0, 0.02, 1.5)  # caught up, but 1.5 s of simulated GPU time was lost
    assert any("1.5 s of simulated time dropped" in r for r in dropped), dropped
    assert scrape(4.0, 0.02, 1.5) == []  # nothing new dropped: valid again
    session._on_sample(ServerMetrics(t_s=5.0, raw={}))  # real SGLang has no such series
    assert list(session._client_view(sample_cpu=False).invalid_reasons) == []


async def test_requests_still_waiting_at_the_end_count_for_ttft_instead_of_vanishing():
    from aiohttp import web

    calls = []

    async def never_answers(_request: web.Request) -> web.StreamResponse:
        calls.append(1)
        if len(calls) <= 3:  # each agent's first request fails fast (sent before the steady window) ...
            return web.Response(status=500)
        await asyncio.sleep(30)  # ... then the server is so overloaded no first token comes in time
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", never_answers)
    servers: list[TestServer] = []

    async def start(_session: Session) -> ServerHandle:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return ServerHandle(base_url=str(server.make_url("/")).rstrip("/"), model="m", gpus=8, dcgm_urls=[],
                            metrics_url=None, use_nvml=False, boundary="gpu", stop=server.close)

    frames: list[Frame] = []
    session = Session(profile_name="test", options=RunOptions(agents=3, duration_s=2.0, frame_hz=10, ramp_s=0.0,
                                                              settle_s=0.0),
                      tiers=AA_DSV4_PRO_TIERS, workload_loader=lambda: small_workload(turns=2),
                      server_starter=start, sinks=[frames.append])
    summary = await asyncio.wait_for(session.run(), 20)
    assert summary["requests"]["completed_all"] == 0 and summary["requests"]["failed_all"] == 3
    tier1 = summary["tiers"][0]
    assert tier1["requests"] == 3 and tier1["in_flight"] == 3  # still waiting at the end: judged ...
    assert tier1["ttft_p95_s"] >= 1.0  # ... by how long they had waited (sent ~0.5 s in), not left out
    assert not tier1["pass"] and tier1["verdict"] == "undecided"  # waited 1.5 s of 10: could still pass


async def test_a_target_changed_just_before_the_end_reports_no_steady_window_and_what_was_held():
    frames: list[Frame] = []
    session, _ = make_session(frames, agents=2, settle_s=2.0)
    task = asyncio.create_task(session.run())
    while not frames or frames[-1].requests_completed < 6:
        await asyncio.sleep(0.1)
    session.set_target(14)
    await asyncio.sleep(1.0)
    session.request_stop("test over")
    summary = await asyncio.wait_for(task, 15)
    assert summary["steady_window"] is None and summary["steady_window_note"].startswith("no steady window")
    assert summary["agents"] is None and summary["target_agents"] == 14
    assert summary["held_agents_recent"] is not None and summary["held_agents_recent"] < 14
    assert all(t["verdict"] == "undecided" and t["reason"] == "no steady window" for t in summary["tiers"])
    from agentperf_tui.headless import summary_text

    text = summary_text(summary)
    assert "no steady window" in text and "14 agents held" not in text


async def test_short_outputs_under_exact_are_failed_requests_with_their_cause():
    frames: list[Frame] = []
    session, _ = make_session(frames, agents=2, twin_args=("--fault-ignore-eos-drop-rate", "1.0"), settle_s=0.2,
                              target=400)
    task = asyncio.create_task(session.run())
    while session.metrics.failed < 2:
        await asyncio.sleep(0.1)
    session.request_stop("test over")
    summary = await asyncio.wait_for(task, 15)
    cause = "short output (server ignored ignore_eos?)"
    assert summary["failure_causes"].get(cause, 0) >= 2 and summary["requests"]["completed_all"] == 0
    assert any("ignore_eos" in w for w in summary["warnings"])


def search_session(frames: list[Frame], settings) -> Session:
    from agentperf_tui.engine.slo import Tier

    session, _ = make_session(frames, agents=settings.start_agents, settle_s=0.2)
    session.tiers = (Tier("easy", 1.0, 5.0),)
    session.metrics = type(session.metrics)(session.tiers, 60.0)
    session.search_settings = settings
    return session


async def test_live_search_runs_phases_on_the_session_and_answers_with_a_count_that_ran():
    from agentperf_tui.engine.search_driver import SearchSettings

    settings = SearchSettings.for_mode("quick", start_agents=4, max_agents=8, settle_s=0.2, phase_s=6.0, looks=1,
                                       max_phase_s=6.0, drain_s=5.0, ramp_s=0.1)
    frames: list[Frame] = []
    session = search_session(frames, settings)
    phases: list[dict] = []
    session.phase_sinks.append(phases.append)
    await asyncio.wait_for(session.run(), 90)
    report = session.search_report
    assert report is not None and report["done"] and report["status"] == "finished", report["stopped"]
    assert report["mode"] == "custom" and report["settings"]["phase_s"] == 6.0
    (tier,) = report["tiers"]
    assert tier["max_agents"] == 8 and report["phases"][tier["answer_phase"] - 1]["agents"] == 8
    assert tier["sample"]["finished"] >= 20
    assert [p["agents"] for p in phases] == [p["agents"] for p in report["phases"]]
    assert all(p["status"] == "valid" and p["duration_s"] >= 6.0 for p in report["phases"])
    assert session.exit_code == 0 and frames[-1].search["status"] == "finished"


async def test_aborting_a_live_search_reports_stopped_and_a_nonzero_exit():
    from agentperf_tui.engine.search_driver import SearchSettings

    settings = SearchSettings.for_mode("quick", start_agents=2, max_agents=64, settle_s=0.2, phase_s=3.0,
                                       ramp_s=0.1)
    frames: list[Frame] = []
    session = search_session(frames, settings)
    task = asyncio.create_task(session.run())
    while not frames or not (frames[-1].search and frames[-1].search["current"]
                             and frames[-1].search["current"]["stage"] == "measuring"):
        await asyncio.sleep(0.1)
    session.abort_search("aborted by operator")
    await asyncio.wait_for(task, 30)
    report = session.search_report
    assert report["status"] == "stopped" and report["stopped"] == "aborted by operator" and not report["done"]
    assert session.exit_code == 3
    assert session.stop_reason == "search stopped"
    assert frames[-1].search["status"] == "stopped"
