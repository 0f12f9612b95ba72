"""compare A B: a search compared by its answers, a run by its window, every number in full."""

from __future__ import annotations

from agentperf_tui.report.compare import compare_rows, compare_text


def run_summary(agents: float, tps: float, power: float) -> dict:
    return {"profile": "twin-h200", "twin": True, "server": {"version": "twin-0.1.0"}, "agents": agents,
            "steady_window_s": 600.0, "requests": {"completed": 8680, "failed": 0}, "output_tokens_per_s": tps,
            "context_tokens": {"mean": 12000.0}, "power": {"boundary": "gpu", "avg_power_w": power,
                                                            "tokens_per_joule": tps / power},
            "agents_per_gpu": agents / 8, "agents_per_mw": agents / (power / 1e6),
            "reconciliation": {"headline": "reconciled"},
            "tiers": [{"name": "tier1", "output_tps_p25": 60.0, "ttft_p95_s": 1.2, "verdict": "pass"}]}


def test_runs_are_compared_by_their_window_with_units_and_no_scientific_notation():
    a, b = run_summary(8.0, 420.0, 3050.0), run_summary(16.0, 9100.0, 5200.0)
    text = compare_text(a, b, "recordings/a", "recordings/b")
    assert text.startswith("A: recordings/a\nB: recordings/b\n")
    assert "e+" not in text and "e-" not in text
    assert "output tok/s (window)" in text and "+8,680.0 (+2066.7%)" in text
    assert "numbers from" in text and "digital twin" in text
    assert "agents per MW" in text and "avg power W" in text and "client vs server" in text


def test_a_search_is_compared_by_its_answers_not_its_last_probe():
    search = {"mode": "quick", "status": "finished", "phases_run": 9, "tiers": [
        {"name": "tier1", "max_agents": 40, "agents_per_gpu": 5.0, "agents_per_mw": 9000.0, "avg_power_w": 4400.0,
         "sample": {"finished": 212}, "why_zero": ""},
        {"name": "tier3", "max_agents": 0, "agents_per_gpu": 0.0, "agents_per_mw": None, "avg_power_w": None,
         "sample": None, "why_zero": "even 1 agent fails"}]}
    a = {**run_summary(1.0, 60.0, 2900.0), "search": search}  # the search ended on a 1-agent probe
    b = run_summary(8.0, 420.0, 3050.0)
    rows = {name: (va, vb) for name, va, vb in compare_rows(a, b)}
    assert rows["kind"] == ("search (quick)", "run")
    assert rows["tier1 max agents"] == (40, None) and rows["tier1 sample (finished req)"] == (212, None)
    assert rows["tier3 why 0"] == ("even 1 agent fails", "-")
    text = compare_text(a, b, "a", "b")
    assert "(run rows: each session's final load, not the answer)" in text
    assert "tier1 max agents" in text.split("(run rows")[0]  # answers first, the probe after the marker
