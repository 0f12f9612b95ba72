"""The run summary: what happened over the steady window, every number measured there.

Built from the detail log (engine/metrics.py), the window account (engine/window.py) and the
judge (engine/judge.py). The window is reported as it was: from when the last target was
reached and settled to the end of the run, or "no steady window" (then nothing is judged);
``agents`` is the concurrency actually held there, not the target; tokens are those that
arrived in the window; power and tokens/J cover the window only; validity covers every second
of it; context statistics cover every request sent in it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentperf_tui import __version__
from agentperf_tui.engine.judge import RequestSet, judge
from agentperf_tui.engine.metrics import context_stats
from agentperf_tui.telemetry.energy import silent_window

if TYPE_CHECKING:
    from agentperf_tui.engine.session import Session

AA_MIN_STEADY_S = 600.0
AA_MIN_TRAJECTORIES = 30
AA_MIN_PER_AGENT = 3
SHORT_OUTPUT = "short output"


def build_summary(session: Session, now: float) -> dict[str, Any]:
    m = session.metrics
    account = session.account
    window = account.window(now)
    server = session.server
    gpus = server.gpus if server else 1
    boundary = server.boundary if server else "gpu"
    load_t0 = session.load_started_at
    summary: dict[str, Any] = {
        "tool": "agentperf-tui", "version": __version__, "profile": session.profile_name,
        "twin": bool(server and server.twin),
        "server": {"url": server.base_url if server else "", "version": server.version if server else "",
                   "fingerprint": server.fingerprint if server else "", "state": session.server_state},
        "target_agents": account.target,
        "duration_s": round(now - load_t0, 3) if load_t0 else 0.0,
        "stop_reason": session.stop_reason,
        "failure_causes": dict(m.failure_causes),
        "context": session.run_context(),
        "held_agents_recent": _round(m.concurrency_between(now - 10.0, now), 2),  # last 10 s, any window
    }
    short = sum(v for k, v in m.failure_causes.items() if k.startswith(SHORT_OUTPUT))
    warnings = [session.context_warning] if session.context_warning else []
    summary["requests_per_task"] = dict(sorted(m.completed_per_trajectory.items()))  # whole run, completed
    if short:
        warnings.append(f"{short} responses were shorter than the forced length (max_tokens with ignore_eos): "
                        "the server ignored ignore_eos? They count as failed requests.")
    if window is None:
        reason = ("the load never reached its target" if account.all_started_at is None else
                  f"the run ended within {account.settle_s:g} s of the last target change ({account.target} agents)")
        verdicts = [dict(v.to_dict(), verdict="undecided", reason="no steady window")
                    for v in judge(RequestSet(), session.tiers)]
        summary.update({
            "agents": None, "steady_window": None, "steady_window_s": 0.0,
            "steady_window_note": f"no steady window: {reason}",
            "requests": {"completed": 0, "failed": 0, "in_flight": 0,
                         "completed_all": m.completed, "failed_all": m.failed},
            "output_tokens": 0, "output_tokens_per_s": None, "effective_concurrency": None,
            "context_tokens": {"mean": None, "p50": None, "p95": None, "max": None, "requests": 0,
                               "max_seen": m.max_context_tokens},
            "tiers": verdicts,
            "power": {"boundary": boundary, "avg_power_w": None, "energy_j": None, "tokens_per_joule": None,
                      "source": "", "note": "no steady window"},
            "agents_per_gpu": None, "agents_per_mw": None,
            "client": {"valid": None, "invalid_seconds": None, "invalid_reasons": [],
                       **_client_tail(session)},
            "aa_minimums": {"met": False, "why": "no steady window"},
            "reconciliation": None,
            "warnings": warnings,
        })
        return summary
    t0, t1 = window.start, window.end
    requests = m.request_set(t0, t1, session.in_flight(), now)
    tokens = m.tokens_arrived(t0, t1) + session.in_flight_tokens(t0, t1)  # finished + still streaming
    held = m.concurrency_between(t0, t1)
    invalid_s = account.invalid_seconds(t0, t1)
    contexts = m.contexts_sent_between(t0, t1)
    mean, p50, p95, cmax = context_stats(contexts)
    first, last = account.power_readings()
    by_boundary = {}
    for b in sorted(set(first) & set(last)):
        w = session.energy_window(first, last, b)
        silent = session.energy[b].silent_for(now)
        if silent is not None:
            w = silent_window(w, silent)
        tokens_in = m.tokens_arrived(w.t_from, w.t_to) if w.energy_j and w.measured else 0.0
        by_boundary[b] = {**w.to_dict(),
                          "tokens_per_joule": round(tokens_in / w.energy_j, 5) if w.energy_j and w.measured else None,
                          "agents_per_mw": round(held / (w.avg_power_w / 1e6), 1)
                          if held is not None and w.measured and w.avg_power_w else None}
    headline = by_boundary.get(boundary)
    avg_power = headline["avg_power_w"] if headline else None
    energy = headline["energy_j"] if headline else None
    tpj = headline["tokens_per_joule"] if headline else None
    done = m.trajectories_between(t0, t1)
    per_agent_ok = sum(1 for v in done.values() if v >= AA_MIN_PER_AGENT)
    minimums = {
        "steady_s": round(window.seconds, 1), "steady_ok": window.seconds >= AA_MIN_STEADY_S,
        "trajectories": sum(done.values()), "trajectories_ok": sum(done.values()) >= AA_MIN_TRAJECTORIES,
        "agents_with_3_trajectories": per_agent_ok, "per_agent_ok": per_agent_ok >= window.target > 0,
    }
    minimums["met"] = minimums["steady_ok"] and minimums["trajectories_ok"] and minimums["per_agent_ok"]
    summary.update({
        "agents": None if held is None else round(held, 2),
        "steady_window": {"start_s": round(t0 - load_t0, 3) if load_t0 else None, "seconds": round(window.seconds, 3),
                          "settle_s": account.settle_s, "target": window.target,
                          "held": None if held is None else round(held, 3)},
        "steady_window_s": round(window.seconds, 3),
        "steady_window_note": f"from {account.settle_s:g} s after all {window.target} agents had started to the end",
        "requests": {"completed": requests.finished - requests.failed, "failed": requests.failed,
                     "in_flight": len(requests.in_flight), "completed_all": m.completed, "failed_all": m.failed},
        "output_tokens": round(tokens),
        "output_tokens_per_s": round(tokens / window.seconds, 3) if window.seconds > 0 else None,
        "effective_concurrency": None if held is None else round(held, 3),
        "context_tokens": {"mean": round(mean, 1), "p50": p50, "p95": p95, "max": cmax, "requests": len(contexts),
                           "max_seen": m.max_context_tokens},
        "tiers": [v.to_dict() for v in judge(requests, session.tiers)],
        "power": {"boundary": boundary, "avg_power_w": avg_power, "energy_j": energy, "tokens_per_joule": tpj,
                  "window_s": headline["seconds"] if headline else None,
                  "status": headline["status"] if headline else "none",
                  "devices": headline["devices"] if headline else 0,
                  "source": headline["source"] if headline else "",
                  "note": (headline["note"] if headline else "no energy readings covering the steady window")},
        "power_by_boundary": by_boundary,
        "agents_per_gpu": None if held is None else round(held / max(1, gpus), 4),
        "agents_per_mw": headline["agents_per_mw"] if headline else None,
        "client": {"valid": invalid_s == 0.0, "invalid_seconds": round(invalid_s, 2),
                   "invalid_reasons": account.invalid_reasons(), **_client_tail(session)},
        "aa_minimums": minimums,
        # client vs server over the steady window (engine/reconcile.py)
        "reconciliation": session.reconcile(t0, t1).to_dict(),
        "warnings": warnings,
    })
    if summary["reconciliation"]["status"] != "reconciled":
        warnings.append(f"client and server {summary['reconciliation']['headline']}")
    return summary


def _client_tail(session: Session) -> dict[str, Any]:
    view = session.client_health()
    return {"loop_lag_max_ms": round(session.loop_lag.max_ms, 1), "workers": view.workers,
            "worker_loop_lag_max_ms": round(view.worker_lag_max_ms, 1)}


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
