"""Builds the immutable Frame a front end shows from a Session's state. Reads only: measurement
state (concurrency integral, window account, history) is advanced by ``Session.tick``."""

from __future__ import annotations

import math
from itertools import repeat
from operator import add, attrgetter, sub
from typing import TYPE_CHECKING

from agentperf_tui.engine.agent import first_token_stall_s, is_stalled
from agentperf_tui.engine.frames import (
    AgentRows,
    ContextView,
    EngineView,
    Frame,
    PowerView,
    ServerView,
    TierView,
)
from agentperf_tui.engine.metrics import context_stats
from agentperf_tui.engine.records import RequestRecord

if TYPE_CHECKING:
    from agentperf_tui.engine.session import Session

BOUNDARY_TEXT = {
    "gpu": "GPU boards only (sum of per-GPU energy counters) - AA-AgentPerf's boundary",
    "node": "whole node(s) from BMC/Redfish",
    "rack": "whole rack from BMC/Redfish",
}


def build_frame(session: Session, now: float) -> Frame:
    import time

    lg = session.loadgen
    agents = list(lg.agents.values()) if lg else []
    steady = lg is not None and lg.all_started_at is not None
    in_work = sum(1 for a in agents if a.in_work)
    verdicts, shares = session.metrics.live_verdicts(now, session.in_flight())
    contexts = [a.context_tokens for a in agents if a.context_tokens]
    m = session.metrics
    tier_views = tuple(TierView.from_verdict(v, share, tuple(h))
                       for v, share, h in zip(verdicts, shares, m.compliance_history, strict=True))
    mean, p50, p95, cmax = context_stats(contexts)
    refresh_s = agent_rows_period(len(agents))
    cached = session.agent_rows_cache
    if cached is not None and now - cached[0] < refresh_s - 0.05 and len(cached[1]) == len(agents):
        rows = cached[1]  # a large population's table: the rows taken at most refresh_s ago
    else:
        rows = agent_rows(session, agents, now)
        session.agent_rows_cache = (now, rows)
    context = ContextView(mean, p50, p95, cmax, tuple(m.context_history_mean), tuple(m.context_history_p95),
                          m.growth_per_turn)
    return Frame(
        seq=session.seq, elapsed_s=now - session.started_at, wall_time=time.time(), profile=session.profile_name,
        target_agents=lg.target if lg else session.options.agents, active_agents=lg.active if lg else 0,
        in_work_agents=in_work, paused=bool(lg and lg.paused), recording=session.options.recording,
        requests_completed=m.completed, requests_failed=m.failed, output_tokens=m.output_tokens,
        output_tokens_per_s=m.output_tokens_per_s(now), effective_concurrency=m.effective_concurrency,
        steady=steady, tiers=tier_views, context=context, power=power_view(session, lg.active if lg else 0),
        server=server_view(session), client=session._client_view(), agents=rows,
        events=session.take_events(), search=session.search_view() if session.search_view else None,
        segments=tuple(session.segments_view()), tune=session.tune_view(),
        stalled_agents=sum(rows.stalled), agents_refresh_s=refresh_s,
    )


ROWS_EVERY_S = 0.25  # the Agents table's rows are taken every frame (4 Hz) ...
ROWS_STEP_AGENTS = 5_000  # ... up to this many agents, then 0.25 s more per as many again


def agent_rows_period(agents: int) -> float:
    """How often the Agents table's rows are taken: every frame up to 5,000 agents, every 1 s at
    20,000 (every panel and count still comes every frame; the table header names the period)."""
    return ROWS_EVERY_S * max(1, math.ceil(agents / ROWS_STEP_AGENTS))


def agent_rows(session: Session, agents: list, now: float) -> AgentRows:
    """The Agents table, column-wise, in agent-id order. Per agent only attribute reads (C-level
    ``attrgetter`` maps) and, when its last request changed, that request's tier passes (cached per
    agent in ``session.tier_pass_cache``): at 20,000 agents a frame must not cost a core."""
    agents.sort(key=_AGENT_ID)
    first_token_limit = first_token_stall_s(session.options.timeouts.first_byte_s)
    tiers = session.tiers
    unknown = tuple(None for _ in tiers)
    cache = session.tier_pass_cache
    passes = []
    for a in agents:
        rec = a.last_record
        if rec is None:
            passes.append(unknown)
            continue
        hit = cache.get(a.agent_id)
        if hit is None or hit[0] is not rec:
            hit = cache[a.agent_id] = (rec, _tier_pass(rec, tiers))
        passes.append(hit[1])
    return AgentRows(
        ids=tuple(map(_AGENT_ID, agents)), states=tuple(map(_STATE, agents)),
        trajectories=tuple(map(_TRAJECTORY, agents)),
        # turn shown = index + 1, or 0 before a trajectory (turn_count 0): min(count, index + 1)
        turns=tuple(map(min, map(_TURN_COUNT, agents), map(add, map(_TURN_INDEX, agents), repeat(1)))),
        turn_counts=tuple(map(_TURN_COUNT, agents)), context_tokens=tuple(map(_CONTEXT, agents)),
        last_ttft_s=tuple(map(_LAST_TTFT, agents)), last_tps=tuple(map(_LAST_TPS, agents)),
        rolling_tps=tuple(map(_ROLLING_TPS, agents)), tier_pass=tuple(passes),
        failures=tuple(map(_FAILURES, agents)),
        state_s=tuple(map(round, map(max, repeat(0.0), map(sub, repeat(now), map(_STATE_SINCE, agents))), repeat(1))),
        stalled=_stalled(agents, now, first_token_limit))


def _stalled(agents: list, now: float, first_token_limit: float) -> tuple[bool, ...]:
    """Per agent: a request in flight that stopped making progress (only those in flight are checked)."""
    flags = [False] * len(agents)
    for i, running in enumerate(map(_IN_FLIGHT, agents)):
        if running is not None and is_stalled(running, agents[i].last_progress, now, first_token_limit):
            flags[i] = True
    return tuple(flags)


_AGENT_ID, _STATE, _TRAJECTORY = attrgetter("agent_id"), attrgetter("live_state"), attrgetter("trajectory_id")
_TURN_COUNT, _CONTEXT, _LAST_TTFT = attrgetter("turn_count"), attrgetter("context_tokens"), attrgetter("last_ttft_s")
_LAST_TPS, _ROLLING_TPS, _FAILURES = attrgetter("last_tps"), attrgetter("rolling_tps"), attrgetter("failures")
_STATE_SINCE, _TURN_INDEX, _IN_FLIGHT = attrgetter("state_since"), attrgetter("turn_index"), attrgetter("in_flight")


def _tier_pass(rec: RequestRecord, tiers) -> tuple[bool, ...]:  # type: ignore[no-untyped-def]
    """Whether one request met each tier (a failed request meets none)."""
    tps = (rec.output_tps or 0.0) if rec.ok else 0.0
    ttft = rec.ttft_s if rec.ok and rec.ttft_s is not None else math.inf
    return tuple(tps >= t.output_tps and ttft <= t.ttft_s for t in tiers)


GPU_LIMIT_W = {"H200": 700.0, "H100": 700.0, "B200": 1000.0, "B300": 1400.0, "GB200": 1200.0, "GB300": 1400.0}


def gpu_limit_w(model_name: str) -> float | None:
    """Board power limit by GPU model (the bars' full scale); None for a model not in the table."""
    upper = model_name.upper()
    for name, watts in sorted(GPU_LIMIT_W.items(), key=lambda kv: -len(kv[0])):
        if name in upper:
            return watts
    return None


def power_view(session: Session, active_agents: int) -> PowerView:
    """GPU power now (one ~5 s energy window for the total and the per-GPU average), the boundary's
    power now, and energy / average power / tokens per joule over the steady window so far."""
    server = session.server
    boundary = server.boundary if server else "gpu"
    text = BOUNDARY_TEXT.get(boundary, boundary)
    recent = session.power_readings
    load = bool(session.loadgen is not None and session.loadgen.active > 0)
    if not recent:
        note = "no power source yet" if server else ""
        if server and not server.dcgm_urls and not server.use_nvml:
            note = "no power source configured (no NVML, no dcgm_urls)"
        return PowerView(boundary=boundary, boundary_text=text, note=note, load=load)
    last = recent[-1]
    gpu_now = session.energy["gpu"].recent_window()
    per_gpu = tuple(float(g.power_w or 0.0) for g in last.gpus)
    labels = tuple(f"{g.host}:{g.gpu}" for g in last.gpus)
    total = gpu_now.avg_power_w if gpu_now.energy_j is not None else last.total_power_w
    if boundary == "gpu":
        boundary_w, status, note = total, gpu_now.status, gpu_now.note
    else:
        now_w = session.energy[boundary].recent_window()
        boundary_w, status, note = now_w.avg_power_w, now_w.status, now_w.note
    energy = avg = tpj = None
    first, latest_marks = session.account.power_readings()
    if boundary in first and boundary in latest_marks:
        w = session.energy_window(first, latest_marks, boundary)
        if w.energy_j:
            energy, avg = w.energy_j, w.avg_power_w
            mark_t, tokens = session.metrics.tokens_since_mark()
            if w.measured and mark_t == w.t_from:  # never from a partial or stale denominator
                tpj = tokens / w.energy_j
        if w.status != "ok":
            status, note = w.status, w.note
    apm = active_agents / (boundary_w / 1e6) if boundary_w and status in ("ok", "") else None
    if energy is None:
        note = note or "energy and tokens/J start with the steady window"
    return PowerView(per_gpu_w=per_gpu, gpu_labels=labels, total_w=total, energy_j=energy, avg_power_w=avg,
                     tokens_per_joule=tpj, agents_per_mw=apm, boundary=boundary, boundary_text=text,
                     source=last.gpus[0].source if last.gpus else "", note=note, status=status,
                     boundary_w=boundary_w, gpu_limit_w=gpu_limit_w(last.gpus[0].model_name if last.gpus else ""),
                     load=load, gpu_model=last.gpus[0].model_name if last.gpus else "")


ENGINE_ORDER = {"prefill": 0, "decode": 1, "unified": 2}


def server_view(session: Session) -> ServerView:
    m = session.server_metrics
    s = session.server
    base = {"state": session.server_state, "url": s.base_url if s else "", "version": s.version if s else "",
            "fingerprint": s.fingerprint if s else "", "twin_tokens": s.twin_tokens if s else ""}
    rec = session.live_reconciliation
    if rec is not None:
        base.update(reconcile_status=rec.status, reconcile_reason=rec.reason, reconcile_rows=rec.comparisons,
                    reconcile_seconds=None if rec.t_from is None or rec.t_to is None else rec.t_to - rec.t_from)
    if m is None:
        return ServerView(**base)
    engines = tuple(
        EngineView(engine_type=kind, running_reqs=e.running_reqs, queued_reqs=e.queued_reqs,
                   token_usage=e.token_usage, cache_hit_rate=e.cache_hit_rate,
                   gen_throughput_tps=e.gen_throughput_tps, spec_accept_length=e.spec_accept_length,
                   bootstrap_queue_reqs=e.prefill_bootstrap_queue_reqs,
                   inflight_queue_reqs=e.prefill_inflight_queue_reqs,
                   prealloc_queue_reqs=e.decode_prealloc_queue_reqs,
                   transfer_queue_reqs=e.decode_transfer_queue_reqs,
                   kv_transfer_ms_mean=e.kv_transfer_latency_ms.mean if e.kv_transfer_latency_ms else None,
                   kv_transfer_gb_s_mean=e.kv_transfer_speed_gb_s.mean if e.kv_transfer_speed_gb_s else None)
        for kind, e in sorted(m.by_engine.items(), key=lambda kv: ENGINE_ORDER.get(kv[0], 9)))
    return ServerView(**base, running_reqs=m.running_reqs, queued_reqs=m.queued_reqs, token_usage=m.token_usage,
                      cache_hit_rate=m.cache_hit_rate, gen_throughput_tps=m.gen_throughput_tps,
                      spec_accept_length=m.spec_accept_length, used_tokens=m.used_tokens,
                      max_total_tokens=m.max_total_tokens, engines=engines,
                      metrics_sources_ok=m.sources_ok, metrics_sources_total=m.sources_total)
