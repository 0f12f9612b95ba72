"""Deterministic synthetic frames for dashboard tests and bench/ui.py (no clock, no randomness)."""

from __future__ import annotations

from agentperf_tui.engine.frames import (
    AgentRows,
    ClientView,
    ContextView,
    Frame,
    PowerView,
    ServerView,
    TierView,
)

STATES = ("decode", "decode", "tool", "prefill", "decode", "tool", "queued")


def make_frame(agents: int = 40, seq: int = 1, elapsed_s: float = 75.0, valid: bool = True,
               search: dict | None = None) -> Frame:
    ids = tuple(range(agents))
    tps = tuple(None if i % 11 == 3 else 12.0 + (i * 37 % 90) for i in ids)
    ttft = tuple(None if i % 11 == 3 else 0.2 + (i * 13 % 40) / 10 for i in ids)
    passes = tuple(
        (None, None, None) if tps[i] is None else
        (tps[i] >= 20 and ttft[i] <= 10, tps[i] >= 60 and ttft[i] <= 5, tps[i] >= 180 and ttft[i] <= 3)
        for i in ids)
    rows = AgentRows(
        ids=ids, states=tuple(STATES[i % len(STATES)] for i in ids),
        trajectories=tuple(f"synthetic-{i % 64:04d}" for i in ids), turns=tuple(1 + i % 17 for i in ids),
        turn_counts=tuple(20 + i % 9 for i in ids), context_tokens=tuple(5000 + (i * 977) % 60000 for i in ids),
        last_ttft_s=ttft, last_tps=tps, rolling_tps=tuple(None if t is None else t * 0.97 for t in tps),
        tier_pass=passes, failures=tuple(i % 5 == 0 for i in ids),
        # agent 4 stalled in decode (~100 s on turn 5), agent 17 waiting 140 s for a first token
        state_s=tuple(97.0 if i == 4 else 140.0 if i == 17 else float(1 + i * 7 % 50) for i in ids),
        stalled=tuple(i in (4, 17) for i in ids))
    history = tuple((k % 10) / 10 for k in range(60))
    tiers = (
        TierView("tier1", 20.0, 10.0, 412, 44.5, 2.9, True, 1.225, 0.71, 0.93, history),
        TierView("tier2", 60.0, 5.0, 412, 44.5, 2.9, False, -0.258, 0.42, 0.41, history[::-1]),
        TierView("tier3", 180.0, 3.0, 412, 44.5, 2.9, False, -0.753, 0.03, 0.02, history),
    )
    return Frame(
        seq=seq, elapsed_s=elapsed_s, wall_time=1_790_000_000.0, profile="twin-h200", target_agents=agents,
        active_agents=agents, in_work_agents=agents - 1, paused=False, recording="recordings/20261124T000000Z-twin-h200",
        requests_completed=1234, requests_failed=3, output_tokens=456_789, output_tokens_per_s=2345.0,
        effective_concurrency=agents - 0.5, steady=True, tiers=tiers,
        context=ContextView(27_100.0, 25_000.0, 61_000.0, 98_000.0, tuple(20000 + 100 * k for k in range(60)),
                            tuple(50000 + 100 * k for k in range(60)), 1_150.0),
        power=PowerView(tuple(300.0 + 10 * g for g in range(8)), tuple(f"twin-node1:{g}" for g in range(8)),
                        2_680.0, 201_000.0, 2_650.0, 2.27, 14_900.0, "gpu",
                        "GPU boards only (sum of per-GPU energy counters) - AA-AgentPerf's boundary", "dcgm",
                        status="ok", boundary_w=2_680.0, gpu_limit_w=700.0, load=True),
        server=ServerView("ready", "http://127.0.0.1:30000", "twin-0.1.0", "dd95be0c807c", 31.0, 2.0, 0.12, 0.91,
                          2_480.0, 1.71, 412_000.0, 14_226_293.0),
        client=ClientView(0.8, 3.0, 23.0, 180.0, valid, () if valid else ("client loop lag 240 ms > 100 ms",)),
        agents=rows, events=(f"12:00:{seq % 60:02d} agents target 8 -> {agents}",), search=search,
        stalled_agents=sum(rows.stalled),
    )
