"""A deterministic synthetic Frame for record tests (no clock, no randomness)."""

from __future__ import annotations

from agentperf_tui.engine.frames import AgentRows, ContextView, Frame, PowerView, ServerView, TierView


def make_frame(*, seq: int = 1, elapsed_s: float = 1.0, agents: int = 10) -> Frame:
    ids = tuple(range(agents))
    return Frame(
        seq=seq, elapsed_s=elapsed_s, wall_time=1_790_000_000.0 + elapsed_s, profile="twin-h200",
        target_agents=agents, active_agents=agents, in_work_agents=agents, paused=False, recording="rec",
        requests_completed=seq * 3, requests_failed=0, output_tokens=seq * 450, output_tokens_per_s=123.0,
        effective_concurrency=float(agents), steady=True,
        tiers=(TierView("tier1", 20.0, 10.0, 30, 55.5, 0.8, True, 1.775, 0.92, 0.97, (0.9, 0.97)),),
        context=ContextView(12000.0, 11000.0, 20000.0, 25000.0, (1.0, 2.0), (3.0, 4.0), 800.0),
        power=PowerView((500.0, 510.0), ("n:0", "n:1"), 1010.0, 5000.0, 990.0, 1.5, 9900.0, "gpu", "GPU boards", "dcgm"),
        server=ServerView("ready", "http://127.0.0.1:1", "twin-0.1.0", "abc", 3.0, 0.0, 0.1, 0.8, 900.0, 1.7, 10.0, 100.0),
        agents=AgentRows(ids, tuple("decode" for _ in ids), tuple("t" for _ in ids), tuple(1 for _ in ids),
                         tuple(5 for _ in ids), tuple(1000 * i for i in ids), tuple(0.5 for _ in ids),
                         tuple(40.0 for _ in ids), tuple(41.0 for _ in ids), tuple((True,) for _ in ids),
                         tuple(0 for _ in ids)),
        events=(f"event {seq}",),
    )
