"""Client vs server reconciliation: agreement within the thresholds, and every way it must not agree."""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from agentperf_tui.engine.frames import Frame
from agentperf_tui.engine.reconcile import ClientLedger, ServerLedger, reconcile
from agentperf_tui.engine.records import FAILED, RequestRecord
from agentperf_tui.engine.session import RunOptions, ServerHandle, Session
from agentperf_tui.engine.slo import AA_DSV4_PRO_TIERS
from agentperf_tui.headless import summary_text
from agentperf_tui.telemetry.samples import HistogramSummary, ServerMetrics
from agentperf_tui.twin.config import parse_twin_args
from agentperf_tui.twin.server import TwinServer

from .test_engine_loadgen import small_workload

BOUNDS = (0.1, 0.2, 0.4, 0.8, 1.6, float("inf"))


def record(t_end: float, ttft: float = 0.15, output: int = 100, prompt: int = 1000, cached: int | None = 800,
           usage: bool = True, chunks: int | None = None, status: str = "ok") -> RequestRecord:
    t_send = t_end - ttft - 1.0
    return RequestRecord(agent_id=0, trajectory_id="t", turn_index=0, turn_count=1, prompt_tokens=prompt,
                         cached_tokens=cached, output_tokens=output, target_tokens=output, t_send=t_send,
                         t_first=t_send + ttft, t_last=t_end - 0.01, t_end=t_end, status=status,
                         usage=usage, streamed_chunks=output if chunks is None else chunks)


def histogram(values: list[float]) -> HistogramSummary:
    return HistogramSummary(count=len(values), sum=sum(values),
                            buckets=tuple((b, float(sum(1 for v in values if v <= b))) for b in BOUNDS))


class World:
    """A server that counts what the client saw, scraped every second: the ledgers of both sides."""

    def __init__(self) -> None:
        self.client = ClientLedger()
        self.server = ServerLedger()
        self.records: list[RequestRecord] = []
        self.counted: list[RequestRecord] = []  # what the server has counted so far

    def request(self, r: RequestRecord, counted_by_server: bool = True) -> None:
        self.records.append(r)
        self.client.add(r, arrived=r.t_end + 0.02)
        if counted_by_server:
            self.counted.append(r)

    def scrape(self, t: float, **override) -> None:
        done = [r for r in self.counted if r.t_end <= t]
        firsts = [r.ttft_s for r in self.counted if r.t_first is not None and r.t_first <= t]
        m = ServerMetrics(t_s=t, scrape_s=0.01, generation_tokens_total=sum(r.output_tokens for r in done),
                          prompt_tokens_total=sum(r.prompt_tokens for r in done),
                          cached_tokens_total=sum(r.cached_tokens or 0 for r in done),
                          requests_total=len(done), aborted_requests_total=0, ttft=histogram(firsts))
        self.server.add(dataclasses.replace(m, **override))


def steady_world(seconds: int = 30, per_second: int = 4, **request_kw) -> World:
    w = World()
    for s in range(seconds):
        for k in range(per_second):
            w.request(record(s + (k + 0.5) / per_second, ttft=0.05 + 0.1 * ((s * per_second + k) % 7), **request_kw))
    for s in range(seconds + 1):
        w.scrape(float(s))
    return w


def by_name(rec, quantity: str):
    return next(c for c in rec.comparisons if c.quantity == quantity)


def test_matching_sides_reconcile_and_say_over_what():
    w = steady_world()
    rec = reconcile(w.client, w.server, 0.0, 30.0)
    assert rec.status == "reconciled", rec.reason
    assert rec.scrapes == 31 and rec.scrape_interval_s == pytest.approx(1.0)
    out = by_name(rec, "output tokens")
    assert out.client == out.server == 120 * 100 and out.agrees
    assert by_name(rec, "requests finished").server == 120
    assert by_name(rec, "cached tokens").agrees
    assert by_name(rec, "TTFT P95").agrees and by_name(rec, "TTFT P50").agrees
    assert rec.to_dict()["headline"] == "reconciled"


def test_a_server_that_counts_two_percent_more_tokens_disagrees_with_the_size():
    w = steady_world()
    last = w.server.snapshots[-1]
    w.server.snapshots[-1] = dataclasses.replace(last, generation_tokens_total=last.generation_tokens_total * 1.02)
    rec = reconcile(w.client, w.server, 0.0, 30.0)
    assert rec.status == "disagree"
    out = by_name(rec, "output tokens")
    assert out.agrees is False and out.gap == pytest.approx(-0.02 * 12000)
    assert "output tokens" in rec.reason and "-1.96%" in rec.reason
    assert by_name(rec, "prompt tokens").agrees  # only what disagrees is listed


def test_dropped_usage_chunks_are_flagged_never_reconciled():
    w = steady_world()
    w.request(record(10.3, usage=False))  # the server counted it, the client has only its stream
    rec = reconcile(w.client, w.server, 0.0, 30.0)
    assert rec.status == "disagree"
    assert by_name(rec, "responses with usage").agrees is False
    assert "had no usage chunk" in by_name(rec, "responses with usage").note


def test_usage_below_the_streamed_events_is_a_usage_that_lies():
    w = steady_world()
    w.request(record(12.3, output=10, chunks=14))
    rec = reconcile(w.client, w.server, 0.0, 30.0)
    assert by_name(rec, "usage covers the stream").agrees is False


def test_requests_at_the_edges_widen_the_tolerance_instead_of_disagreeing():
    w = World()
    for s in range(20):
        w.request(record(s + 0.5))
    # finished on the server just before the last scrape, its last byte reached the client just after
    w.request(record(19.995))
    for s in range(20):
        w.scrape(float(s))
    w.scrape(20.0)
    late = dataclasses.replace(w.records[-1], t_end=20.03)
    w.client = ClientLedger()
    for r in w.records[:-1] + [late]:
        w.client.add(r, arrived=r.t_end + 0.01)
    rec = reconcile(w.client, w.server, 0.0, 20.0)
    out = by_name(rec, "output tokens")
    assert out.client == 20 * 100 and out.server == 21 * 100
    assert out.agrees and "at the window's edges" in out.note


def test_failed_requests_without_usage_are_an_unknown_not_a_disagreement():
    w = steady_world()
    w.request(record(8.2, usage=False, status=FAILED, output=30), counted_by_server=False)
    rec = reconcile(w.client, w.server, 0.0, 30.0)
    assert rec.status == "reconciled", rec.reason
    assert "failed requests without usage" in by_name(rec, "output tokens").note
    assert by_name(rec, "requests failed / aborted").client == 1


@pytest.mark.parametrize("override, reason", [
    ({"generation_tokens_total": None}, "sglang:generation_tokens_total missing"),
    ({"ttft": None}, "sglang:time_to_first_token_seconds missing"),
    ({"sources_ok": 0}, "metrics missing (/metrics did not answer"),
    ({"sources_ok": 3, "sources_total": 4}, "metrics from 3 of 4 workers"),
])
def test_a_missing_or_partial_server_side_is_unreconciled(override, reason):
    w = World()
    for s in range(10):
        w.request(record(s + 0.5))
    for s in range(11):
        w.scrape(float(s), **(override if s == 6 else {}))
    rec = reconcile(w.client, w.server, 0.0, 10.0)
    assert rec.status == "unreconciled" and rec.reason.startswith(reason), rec.reason
    assert rec.headline.startswith("unreconciled: ")


def test_a_counter_reset_is_unreconciled_and_a_window_after_it_reconciles():
    w = steady_world(seconds=20)
    # the server restarted at t=10: its counters start again from zero
    w.server.snapshots = [s if s.t_s < 10 else dataclasses.replace(
        s, generation_tokens_total=s.generation_tokens_total - w.server.snapshots[10].generation_tokens_total)
        for s in w.server.snapshots]
    rec = reconcile(w.client, w.server, 0.0, 20.0)
    assert rec.status == "unreconciled" and "counter reset" in rec.reason
    assert "sglang:generation_tokens_total" in rec.reason
    assert reconcile(w.client, w.server, 10.0, 20.0).status == "reconciled"


def test_a_scrape_gap_or_stale_metrics_are_unreconciled():
    w = steady_world(seconds=30)
    gap = ServerLedger()
    for s in w.server.snapshots:
        if not 5 < s.t_s < 20:
            gap.add(ServerMetrics(t_s=s.t_s, scrape_s=s.scrape_s, generation_tokens_total=s.generation_tokens_total,
                                  prompt_tokens_total=s.prompt_tokens_total, requests_total=s.requests_total,
                                  ttft=s.ttft))
    assert "metrics missing for 15.0 s" in reconcile(w.client, gap, 0.0, 30.0).reason
    assert "metrics stale" in reconcile(w.client, gap, 0.0, 19.0).reason
    assert "fewer than 2" in reconcile(w.client, w.server, 3.5, 4.5).reason
    late = ServerLedger()
    for snap in w.server.snapshots[12:]:
        late.snapshots.append(snap)
        late._t.append(snap.t_s)
    assert "metrics missing for the window's first 12.0 s" in reconcile(w.client, late, 0.0, 30.0).reason


def test_client_ttft_above_the_servers_bucket_is_time_in_front_of_the_server():
    w = World()
    for s in range(40):
        r = record(s + 0.5, ttft=0.15)
        w.request(r, counted_by_server=False)
        # the server saw the request 0.6 s after the client sent it (a router's queue): TTFT 0.15 there
        w.counted.append(r)
    client = ClientLedger()
    for r in w.records:
        client.add(dataclasses.replace(r, t_send=r.t_send - 0.6), arrived=r.t_end + 0.01)
    for s in range(41):
        w.scrape(float(s))
    rec = reconcile(client, w.server, 0.0, 40.0)
    p50 = by_name(rec, "TTFT P50")
    assert p50.agrees is False and p50.client == pytest.approx(0.75) and "in front of the server" in p50.note
    assert by_name(rec, "output tokens").agrees  # the counts still agree: only the latency differs


def test_a_window_where_nothing_finished_is_undecided_not_reconciled():
    w = World()
    for s in range(10):
        w.scrape(float(s))
    rec = reconcile(w.client, w.server, 0.0, 9.0)
    assert rec.status == "undecided" and "nothing to compare" in rec.reason


def test_a_window_where_every_request_failed_is_undecided_not_reconciled():
    w = World()
    for s in range(20):
        for k in range(4):
            w.request(record(s + k / 4 + 0.1, usage=False, status=FAILED), counted_by_server=False)
    for s in range(21):
        w.scrape(float(s))
    rec = reconcile(w.client, w.server, 0.0, 20.0)
    assert rec.status == "undecided" and "all failed" in rec.reason and rec.requests == 80


def test_failed_requests_widen_the_cached_tolerance_by_their_prompt_never_below_zero():
    w = steady_world()
    for k in range(10):
        w.request(record(5.3 + k, usage=False, status=FAILED, cached=None))  # the server counted them in full
    rec = reconcile(w.client, w.server, 0.0, 30.0)
    cached = by_name(rec, "cached tokens")
    assert cached.tolerance is not None and cached.tolerance > 0 and cached.agrees, cached.describe()
    assert "up to 10,000" in cached.note


def test_under_pd_cached_tokens_are_shown_not_compared():
    w = steady_world()
    pd = ServerLedger()
    for snap in w.server.snapshots:
        pd.snapshots.append(dataclasses.replace(snap, pd=True))
        pd._t.append(snap.t_s)
    cached = by_name(reconcile(w.client, pd, 0.0, 30.0), "cached tokens")
    assert cached.agrees is None and "under PD" in cached.note


def test_too_few_first_tokens_are_not_compared():
    w = steady_world(seconds=3, per_second=2)
    p95 = by_name(reconcile(w.client, w.server, 0.0, 3.0), "TTFT P95")
    assert p95.agrees is None and "not compared" in p95.note


# -- against the twin ---------------------------------------------------------------------------------

def twin_session(frames: list[Frame], agents: int = 6) -> tuple[Session, list[TestServer]]:
    servers: list[TestServer] = []

    async def start(_session: Session) -> ServerHandle:
        args = parse_twin_args(["--hardware", "h200", "--tp", "8", "--enable-cache-report", "--enable-metrics",
                                "--tokenizer", "estimate"])
        server = TestServer(TwinServer(args).app(), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        base = str(server.make_url("/")).rstrip("/")
        return ServerHandle(base_url=base, model="m", gpus=8, dcgm_urls=[], metrics_url=base + "/metrics",
                            use_nvml=False, boundary="gpu", stop=server.close)

    options = RunOptions(agents=agents, duration_s=None, frame_hz=10, ramp_s=0.1, settle_s=1.0, workers=0)
    session = Session(profile_name="test", options=options, tiers=AA_DSV4_PRO_TIERS,
                      workload_loader=lambda: small_workload(turns=4, target=24, delay=0.05),
                      server_starter=start, sinks=[frames.append])
    return session, servers


async def set_faults(server: TestServer, **faults) -> None:
    async with aiohttp.ClientSession() as http, http.post(server.make_url("/twin/faults"), json=faults) as resp:
        assert resp.status == 200, await resp.text()


async def test_twin_run_reconciles_then_each_fault_is_flagged():
    frames: list[Frame] = []
    session, servers = twin_session(frames)
    task = asyncio.create_task(session.run())
    try:
        while session.load_started_at is None or not servers:
            await asyncio.sleep(0.05)
        await asyncio.sleep(7.0)
        t = asyncio.get_running_loop().time()
        rec = session.reconcile(session.load_started_at, t)
        assert rec.status == "reconciled", rec.reason
        assert by_name(rec, "requests finished").server >= 20
        assert by_name(rec, "cached tokens").agrees  # the twin runs with --enable-cache-report
        assert frames[-1].server.reconcile_status == "reconciled"  # the live comparison, in the frame

        await set_faults(servers[0], usage_drop_rate=1.0)
        t_drop = asyncio.get_running_loop().time()
        await asyncio.sleep(4.0)
        rec = session.reconcile(t_drop, asyncio.get_running_loop().time())
        assert rec.status == "disagree" and "responses with usage" in rec.reason
        await set_faults(servers[0], usage_drop_rate=0.0, counter_reset=1)
        await asyncio.sleep(3.0)
        rec = session.reconcile(t_drop, asyncio.get_running_loop().time())
        assert rec.status == "unreconciled" and "counter reset" in rec.reason

        await set_faults(servers[0], metrics_down=1)
        t_down = asyncio.get_running_loop().time()
        await asyncio.sleep(3.0)
        rec = session.reconcile(t_down, asyncio.get_running_loop().time())
        assert rec.headline.startswith("unreconciled: metrics missing"), rec.headline
    finally:
        session.request_stop("test over")
        summary = await asyncio.wait_for(task, 20)
    assert summary["reconciliation"]["status"] == "unreconciled"  # the steady window spans the faults
    assert "client vs server over" in summary_text(summary)


# -- in search phases ---------------------------------------------------------------------------------

def test_require_reconciled_makes_a_phase_without_server_metrics_invalid():
    from agentperf_tui.engine.search_driver import SearchDriver, SearchSettings
    from agentperf_tui.engine.synthetic_sut import GroundTruth, SyntheticSUT

    sut = SyntheticSUT(GroundTruth(capacity=40), AA_DSV4_PRO_TIERS[:1], seed=1)  # no server: nothing to reconcile
    settings = SearchSettings.for_mode("quick", require_reconciled=True, max_phases=3)
    report = asyncio.run(SearchDriver(sut, settings).run())
    assert report["phases"] and all(p["status"] == "invalid" for p in report["phases"])
    assert all("--require-reconciled" in p["invalid"] and "no server metrics" in p["invalid"] for p in report["phases"])
    assert report["tiers"][0]["max_agents"] == 0  # an invalid phase answers nothing


async def test_a_live_search_phase_carries_its_reconciliation_into_the_report():
    from agentperf_tui.engine.search_driver import SearchSettings
    from agentperf_tui.engine.slo import Tier
    from agentperf_tui.report.search_report import markdown

    frames: list[Frame] = []
    session, _ = twin_session(frames, agents=4)
    session.tiers = (Tier("easy", 1.0, 5.0),)
    session.metrics = type(session.metrics)(session.tiers, 60.0)
    session.search_settings = SearchSettings.for_mode(
        "quick", start_agents=4, max_agents=4, settle_s=0.2, phase_s=6.0, looks=1, max_phase_s=6.0, drain_s=5.0,
        ramp_s=0.1, require_reconciled=True)
    await asyncio.wait_for(session.run(), 90)
    report = session.search_report
    phase = report["phases"][0]
    assert phase["reconciliation"]["status"] == "reconciled", phase["reconciliation"]["headline"]
    assert phase["status"] == "valid"
    text = markdown({**report, "profile": "test", "server": {"url": "u", "version": "v", "fingerprint": ""}})
    assert "## Client vs server, phase 1 (4 agents)" in text and "| output tokens |" in text


def test_the_server_panel_lines_show_outcome_and_both_sides():
    from agentperf_tui.engine.frames import ServerView
    from agentperf_tui.tui.panels.server import reconcile_lines

    w = steady_world()
    last = w.server.snapshots[-1]
    w.server.snapshots[-1] = dataclasses.replace(last, generation_tokens_total=last.generation_tokens_total * 1.05)
    rec = reconcile(w.client, w.server, 0.0, 30.0)
    view = ServerView(reconcile_status=rec.status, reconcile_reason=rec.reason, reconcile_seconds=30.0,
                      reconcile_rows=rec.comparisons)
    head, cells = reconcile_lines(view)
    assert "(last 30 s)" in head and "DISAGREE" in head and "output tokens" in head
    assert "out 12.0k/12.6k [$error]X[/]" in cells and "prompt 120.0k/120.0k [$success]ok[/]" in cells
    assert reconcile_lines(ServerView()) == []


def test_frames_with_a_reconciliation_survive_the_recording_round_trip():
    import orjson

    from agentperf_tui.engine.frames import ServerView

    rec = reconcile(*(lambda w: (w.client, w.server))(steady_world()), 0.0, 30.0)
    frame = Frame(seq=1, elapsed_s=1.0, wall_time=0.0, profile="p", target_agents=1, active_agents=1,
                  in_work_agents=1, paused=False, recording="", requests_completed=0, requests_failed=0,
                  output_tokens=0, output_tokens_per_s=0.0, effective_concurrency=0.0, steady=False,
                  server=ServerView(reconcile_status=rec.status, reconcile_rows=rec.comparisons))
    back = Frame.from_dict(orjson.loads(orjson.dumps(frame.to_dict())))
    assert back.server == frame.server and back.server.reconcile_rows[0].quantity == "output tokens"
