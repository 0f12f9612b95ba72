"""Metric definitions against hand-computed timestamps: TTFT, output speed, P25/P95, the pass rule."""

from __future__ import annotations

import math

import pytest

from agentperf_tui.engine.metrics import RunMetrics, context_stats
from agentperf_tui.engine.records import FAILED, OK, RequestRecord
from agentperf_tui.engine.slo import Tier, judge, percentile


def rec(t_send, t_first, t_last, tokens, status=OK, agent=0, turn=0, prompt=1000, traj="t") -> RequestRecord:
    return RequestRecord(agent, traj, turn, 5, prompt, None, tokens, tokens, t_send, t_first, t_last,
                         (t_last or t_send) + 0.001, status, "" if status == OK else "HTTP 500: boom")


def test_ttft_and_output_speed_exclude_the_first_token():
    r = rec(10.0, 10.5, 12.5, 101)  # 100 tokens after the first, over 2 s
    assert r.ttft_s == pytest.approx(0.5)
    assert r.output_tps == pytest.approx(50.0)


def test_speed_undefined_for_single_token_or_zero_span():
    assert rec(0, 1, 1, 1).output_tps is None
    assert rec(0, 1, 1, 5).output_tps is None


def test_percentile_interpolates_like_numpy_linear():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(values, 25) == pytest.approx(2.0)
    assert percentile(values, 95) == pytest.approx(4.8)
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_pass_rule_p25_speed_and_p95_ttft():
    tier = Tier("t", output_tps=20.0, ttft_s=2.0)
    # speeds 10, 30, 30, 30 -> P25 = 25; TTFTs all 1 s -> pass
    records = [rec(0, 1, 1 + 100 / s, 101) for s in (10.0, 30.0, 30.0, 30.0)]
    (result,) = judge(records, [tier])
    assert result.output_tps_p25 == pytest.approx(25.0)
    assert result.passed
    # one more slow request drags P25 below 20
    records.append(rec(0, 1, 11, 101))  # 10 tok/s
    (result,) = judge(records, [tier])
    assert result.output_tps_p25 == pytest.approx(10.0)
    assert not result.passed


def test_failed_requests_count_as_failing_both_thresholds():
    tier = Tier("t", output_tps=20.0, ttft_s=2.0)
    good = [rec(0, 0.5, 0.5 + 100 / 50.0, 101) for _ in range(18)]
    bad = [rec(0, None, None, 0, status=FAILED) for _ in range(2)]
    (result,) = judge(good + bad, [tier])
    assert result.requests == 20
    assert math.isinf(result.ttft_p95_s)  # 10% failed > 5% allowed
    assert not result.passed
    assert result.speed_ok_share == pytest.approx(0.9)


def test_run_metrics_windows_growth_and_concurrency():
    m = RunMetrics([Tier("t", 20.0, 2.0)], window_s=10.0)
    m.add(rec(0.0, 0.5, 2.5, 101, agent=1, turn=0, prompt=1000))
    m.add(rec(5.0, 5.5, 7.5, 101, agent=1, turn=1, prompt=1600))
    assert m.growth_per_turn == pytest.approx(600.0)
    results, shares = m.window_results(now=8.0)
    assert results[0].requests == 2 and shares[0] == 1.0
    results, _ = m.window_results(now=30.0)
    assert results[0].requests == 0
    m.sample_concurrency(0.0, 4, True)
    m.sample_concurrency(1.0, 4, True)
    m.sample_concurrency(2.0, 2, True)
    assert m.effective_concurrency == pytest.approx(3.0)
    tiers, completed, failed, tokens = m.judge_since(4.0)
    assert (completed, failed, tokens) == (1, 0, 101)


def test_context_stats():
    assert context_stats([]) == (0.0, 0.0, 0.0, 0.0)
    mean, p50, p95, cmax = context_stats([1000, 2000, 3000])
    assert (mean, p50, cmax) == (2000.0, 2000.0, 3000.0)
    assert p95 == pytest.approx(2900.0)


def test_successful_request_with_undefined_speed_counts_for_ttft_only():
    tier = Tier("t", output_tps=20.0, ttft_s=2.0)
    timed = [rec(0, 0.5, 0.5 + 100 / 50.0, 101) for _ in range(9)]
    one_chunk = rec(0, 0.5, 0.5, 2)  # both tokens in one chunk: speed undefined, not zero
    (result,) = judge(timed + [one_chunk], [tier])
    assert result.requests == 10
    assert result.output_tps_p25 == pytest.approx(50.0)
    assert result.passed
