"""The one judge against hand-computed samples: nearest-rank rule, censoring, sample size, confidence."""

from __future__ import annotations

import math

import pytest

from agentperf_tui.engine.judge import (
    FAIL,
    MIN_FINISHED,
    PASS,
    UNDECIDED,
    RequestSet,
    judge,
    speed_p25,
    ttft_p95,
    wilson_lower,
    wilson_upper,
    z_for_looks,
)
from agentperf_tui.engine.metrics import RunMetrics, context_stats
from agentperf_tui.engine.records import FAILED, OK, RequestRecord
from agentperf_tui.engine.slo import Tier, percentile

TIER = Tier("t", output_tps=20.0, ttft_s=2.0)


def rec(t_send, t_first, t_last, tokens, status=OK, agent=0, turn=0, prompt=1000, traj="t", turns=5) -> RequestRecord:
    return RequestRecord(agent, traj, turn, turns, prompt, None, tokens, tokens, t_send, t_first, t_last,
                         (t_last or t_send) + 0.001, status, "" if status == OK else "HTTP 500: boom")


def sample(speeds, ttfts, in_flight=()) -> RequestSet:
    return RequestSet(tuple(speeds), tuple(ttfts), tuple(in_flight), sum(1 for s in speeds if s == 0.0))


def test_ttft_and_output_speed_exclude_the_first_token():
    r = rec(10.0, 10.5, 12.5, 101)  # 100 tokens after the first, over 2 s
    assert r.ttft_s == pytest.approx(0.5)
    assert r.output_tps == pytest.approx(50.0)
    assert rec(0, 1, 1, 1).output_tps is None and rec(0, 1, 1, 5).output_tps is None


def test_nearest_rank_percentiles_agree_with_the_share_rule_at_exactly_five_percent():
    # 19 of 20 within the limit = exactly 95 %: the share rule passes, and so does the percentile
    ttfts = [1.0] * 19 + [math.inf]
    assert ttft_p95(sorted(ttfts)) == 1.0
    (v,) = judge(sample([50.0] * 20, ttfts), [TIER])
    assert v.verdict == PASS and v.ttft_ok_share == pytest.approx(0.95)
    # 18 of 20 (90 %) fails on TTFT
    (v,) = judge(sample([50.0] * 20, [1.0] * 18 + [math.inf] * 2), [TIER])
    assert v.verdict == FAIL and "P95 TTFT" in v.reason
    # P25 speed: the largest speed that 75 % of requests reach
    assert speed_p25([10.0, 30.0, 30.0, 30.0]) == 30.0
    assert speed_p25([10.0, 10.0, 30.0, 30.0]) == 10.0


def test_a_pass_needs_the_minimum_of_finished_requests():
    (v,) = judge(sample([50.0] * (MIN_FINISHED - 1), [1.0] * (MIN_FINISHED - 1)), [TIER])
    assert v.verdict == UNDECIDED and "fewer than the 20" in v.reason
    (v,) = judge(sample([50.0] * MIN_FINISHED, [1.0] * MIN_FINISHED), [TIER])
    assert v.verdict == PASS and v.finished == MIN_FINISHED


def test_requests_waiting_for_their_first_token_are_censored_not_dropped():
    done = sample([50.0] * 11, [1.0] * 11, in_flight=[(None, 1.5)] * 21)
    (v,) = judge(done, [TIER])
    # 11 finished fast, 21 still waiting 1.5 s (below the 2 s limit): they could still be slow
    assert v.verdict == UNDECIDED and v.in_flight == 21 and v.waiting == 21
    assert math.isinf(v.ttft_p95_bounds[1]) and v.to_dict()["ttft_p95_bounds"][1] is None  # upper bound infinite
    # the same requests waiting past the limit are known misses: a certain FAIL
    (v,) = judge(sample([50.0] * 11, [1.0] * 11, in_flight=[(None, 2.5)] * 21), [TIER])
    assert v.verdict == FAIL
    assert v.ttft_p95_s == pytest.approx(2.5)  # the lower bound: their wait so far


def test_a_decoding_request_has_a_known_ttft_and_unknown_speed():
    finished = sample([50.0] * 30, [1.0] * 30, in_flight=[(0.5, 3.0)] * 5)
    (v,) = judge(finished, [TIER])
    # 30 of 35 fast even if the 5 decoding ones end slow: 85.7 % >= 75 %: PASS
    assert v.verdict == PASS and "5 in flight counted as misses" in v.reason
    assert v.output_tps_p25_bounds[0] == pytest.approx(50.0)
    # with 10 slow finished requests the 5 unknown ones decide the tier: UNDECIDED
    (v,) = judge(sample([50.0] * 24 + [10.0] * 6, [1.0] * 30, in_flight=[(0.5, 3.0)] * 5), [TIER])
    assert v.verdict == UNDECIDED and "in flight" in v.reason


def test_failed_requests_count_as_failing_both_thresholds():
    records = [rec(0, 0.5, 0.5 + 100 / 50.0, 101) for _ in range(18)] + [
        rec(0, None, None, 0, status=FAILED) for _ in range(2)]
    (v,) = judge(RequestSet.of(records), [TIER])
    assert v.failed == 2 and v.verdict == FAIL
    assert v.speed_ok_share == pytest.approx(0.9)


def test_confidence_turns_a_marginal_point_pass_into_undecided_but_keeps_clear_ones():
    z = z_for_looks(0.05, 3)
    assert z == pytest.approx(2.128, abs=1e-3)
    marginal = sample([50.0] * 77 + [10.0] * 23, [1.0] * 100)  # 77 % fast: point pass
    assert judge(marginal, [TIER])[0].verdict == PASS
    assert judge(marginal, [TIER], z=z)[0].verdict == UNDECIDED
    clear = sample([50.0] * 400, [1.0] * 400)
    assert judge(clear, [TIER], z=z)[0].verdict == PASS
    assert judge(sample([10.0] * 100, [1.0] * 100), [TIER], z=z)[0].verdict == FAIL


def test_wilson_bounds_bracket_the_share_and_narrow_with_n():
    z = 1.645
    assert wilson_lower(8, 10, z) < 0.8 < wilson_upper(8, 10, z)
    assert wilson_upper(800, 1000, z) - wilson_lower(800, 1000, z) < wilson_upper(8, 10, z) - wilson_lower(8, 10, z)
    assert wilson_lower(0, 0, z) == 0.0


def test_undefined_speed_counts_for_ttft_only():
    records = [rec(0, 0.5, 0.5 + 100 / 50.0, 101) for _ in range(20)] + [rec(0, 0.5, 0.5, 2)]
    (v,) = judge(RequestSet.of(records), [TIER])
    assert v.finished == 21 and v.output_tps_p25 == pytest.approx(50.0) and v.verdict == PASS


def test_detail_log_windows_tokens_where_they_arrived_and_concurrency():
    m = RunMetrics([TIER], window_s=10.0)
    m.add(rec(0.0, 0.5, 2.5, 101, agent=1, turn=0, prompt=1000))
    m.add(rec(5.0, 5.5, 7.5, 101, agent=1, turn=1, prompt=1600))
    assert m.growth_per_turn == pytest.approx(600.0)
    verdicts, shares = m.live_verdicts(now=8.0, in_flight=[(7.9, None)])
    assert verdicts[0].finished == 2 and verdicts[0].in_flight == 1 and shares[0] == 1.0
    verdicts, _ = m.live_verdicts(now=30.0)
    assert verdicts[0].finished == 0
    # tokens spread over each stream: [1.5, 6.5) holds half of the first and half of the second
    assert m.tokens_arrived(1.5, 6.5) == pytest.approx(101.0)
    requests = m.request_set(4.0, 10.0)
    assert requests.finished == 1
    for t, n in ((0.0, 4), (1.0, 4), (2.0, 2), (3.0, 2)):
        m.sample_concurrency(t, n, True)
    assert m.concurrency_between(0.0, 3.0) == pytest.approx((4 + 4 + 2) / 3)
    assert m.contexts_sent_between(0.0, 10.0) == [1101, 1701]


def test_context_stats_and_descriptive_percentile():
    assert context_stats([]) == (0.0, 0.0, 0.0, 0.0)
    mean, p50, p95, cmax = context_stats([1000, 2000, 3000])
    assert (mean, p50, cmax) == (2000.0, 2000.0, 3000.0)
    assert p95 == pytest.approx(2900.0)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)


def test_the_steady_window_restarts_after_a_pause():
    from agentperf_tui.engine.window import RunAccount

    account = RunAccount(settle_s=30.0)
    account.on_target(0.0, 8)
    account.tick(1.0, 5.0, False, ())
    assert account.steady_from == 35.0
    account.tick(100.0, 5.0, True, ())  # paused: the load generator keeps its own start time
    assert account.window(150.0) is None
    account.tick(200.0, 5.0, False, ())  # resumed: the window opens 30 s after the resume
    assert account.steady_from == 230.0
