"""Every validity reason comes with what to do about it, on the dashboard, in the summary and in help."""

from __future__ import annotations

import dataclasses

import pytest

from agentperf_tui.engine.advice import ADVICE, GENERAL, advice_for
from agentperf_tui.headless import summary_text

from .tui_frames import make_frame


@pytest.mark.parametrize("reason, word", [
    ("client loop lag 240 ms > 100 ms", "--workers"),
    ("dispatch delay p99 80 ms > 50 ms", "CPU bound"),
    ("twin behind real time by 0.30 s (the twin process, not the modeled GPUs, is the bottleneck)", "slice"),
    ("worker 2 silent for 1.4 s", "worker process"),
    ("effective concurrency 91.0% of target < 98%", "failure causes"),
    ("agent task crashed (1 so far; see the log)", "traceback"),
    ("--require-reconciled: client and server unreconciled: metrics missing", "client-vs-server"),
])
def test_each_reason_has_its_own_advice(reason, word):
    advice = advice_for(reason)
    assert advice != GENERAL and word in advice


def test_an_unknown_reason_still_gets_advice():
    assert advice_for("something new") == GENERAL


def test_the_server_panel_and_the_summary_show_the_advice():
    from agentperf_tui.tui.panels.server import ServerPanel

    frame = make_frame(8)
    frame = dataclasses.replace(frame, client=dataclasses.replace(
        frame.client, valid=False, invalid_reasons=("client loop lag 240 ms > 100 ms",)))
    panel = ServerPanel()
    panel.update_frame(frame)
    text = str(panel.render())
    assert "CLIENT INVALID" in text and "-> the load generator's own loop is late" in text
    summary = {"profile": "p", "twin": True, "agents": 8.0, "target_agents": 8, "duration_s": 60.0,
               "steady_window_s": 30.0, "stop_reason": "x", "requests": {"completed": 1, "failed": 0, "in_flight": 0},
               "output_tokens": 1, "output_tokens_per_s": 1.0, "tiers": [], "power": {"boundary": "gpu"},
               "context_tokens": {"mean": 1.0, "p50": 1, "p95": 1, "max": 1, "requests": 1, "max_seen": 1},
               "client": {"valid": False, "invalid_seconds": 3.0,
                          "invalid_reasons": [{"reason": "dispatch delay p99 80 ms > 50 ms", "seconds": 3.0}]}}
    text = summary_text(summary)
    assert "-> requests leave late after their agent is ready" in text


def test_help_lists_every_reason():
    from agentperf_tui.tui.help import validity_advice

    text = validity_advice()
    assert all(prefix.strip() in text for prefix, _ in ADVICE)
