"""The live window kept sorted as it slides gives exactly the verdicts and shares of judging the
window from scratch, and ``judge_sorted`` over sorted containers equals ``judge``."""

from __future__ import annotations

import math
import random

from sortedcontainers import SortedList

from agentperf_tui.engine.judge import RequestSet, judge, judge_sorted, kth_of_union
from agentperf_tui.engine.metrics import RunMetrics
from agentperf_tui.engine.records import FAILED, OK, RequestRecord
from agentperf_tui.engine.slo import AA_DSV4_PRO_TIERS as TIERS


def random_record(rng: random.Random, t_send: float, agent: int) -> RequestRecord:
    kind = rng.random()
    ttft = rng.choice([0.3, 1.0, 2.5, 4.0, 9.0, 30.0])
    if kind < 0.08:  # failed before its first token
        return RequestRecord(agent, "t", 0, 1, 100, None, 0, 50, t_send, None, None, t_send + 1.0, FAILED, "x")
    if kind < 0.12:  # one token: undefined speed
        return RequestRecord(agent, "t", 0, 1, 100, None, 1, 1, t_send, t_send + ttft, t_send + ttft, t_send + ttft)
    tokens = rng.choice([20, 50, 200])
    speed = rng.choice([8.0, 25.0, 40.0, 60.0, 120.0, 250.0])
    t_first = t_send + ttft
    t_last = t_first + (tokens - 1) / speed
    return RequestRecord(agent, "t", 0, 1, 100, None, tokens, tokens, t_send, t_first, t_last, t_last, OK)


def brute_force(records: list[RequestRecord], now: float, window_s: float, in_flight):
    """The window judged from scratch: every request sent in the last window_s."""
    rows = [r for r in records if r.t_send >= now - window_s and r.t_end <= now]
    running = tuple(((None if f is None else f - s), max(0.0, now - s)) for s, f in in_flight if s >= now - window_s)
    verdicts = judge(RequestSet.of(rows, running), TIERS)
    shares = []
    for tier in TIERS:
        good = 0
        for r in rows:
            speed = 0.0 if not r.ok else (math.nan if r.output_tps is None else r.output_tps)
            ttft = math.inf if not r.ok or r.ttft_s is None else r.ttft_s
            good += (math.isnan(speed) or speed >= tier.output_tps) and ttft <= tier.ttft_s
        shares.append(good / len(rows) if rows else 0.0)
    return verdicts, tuple(shares)


def test_the_sliding_live_window_equals_judging_it_from_scratch():
    rng = random.Random(7)
    metrics = RunMetrics(TIERS, window_s=20.0)
    records: list[RequestRecord] = []
    pending: list[RequestRecord] = []
    now = 0.0
    for step in range(400):
        now += rng.choice([0.05, 0.25, 1.0])
        for _ in range(rng.randrange(0, 6)):  # requests sent now, arriving at their end
            pending.append(random_record(rng, now - rng.random() * 3.0, agent=step))
        arrived = [r for r in pending if r.t_end <= now]
        pending = [r for r in pending if r.t_end > now]
        rng.shuffle(arrived)  # a worker's batch arrives in any order
        for r in arrived:
            metrics.add(r)
            records.append(r)
        in_flight = [(r.t_send, r.t_first if r.t_first is not None and r.t_first <= now else None) for r in pending]
        got = metrics.live_verdicts(now, in_flight)
        want = brute_force(records, now, 20.0, in_flight)
        assert [v.to_dict() for v in got[0]] == [v.to_dict() for v in want[0]], step
        assert got[1] == want[1], step


def test_judge_sorted_over_sorted_lists_equals_judge_and_the_union_rank_is_exact():
    rng = random.Random(11)
    for _ in range(300):
        speeds = [rng.choice([0.0, 10.0, 30.0, 55.0, math.nan, 90.0]) for _ in range(rng.randrange(0, 50))]
        ttfts = [math.inf if s == 0.0 else rng.choice([0.5, 1.5, 3.0, 8.0]) for s in speeds]
        running = tuple((rng.choice([None, 0.4, 2.0]), rng.choice([0.2, 3.5, 12.0])) for _ in range(rng.randrange(0, 8)))
        failed = sum(1 for s in speeds if s == 0.0)
        want = judge(RequestSet(tuple(speeds), tuple(ttfts), running, failed), TIERS, z=1.5)
        got = judge_sorted(SortedList(s for s in speeds if not math.isnan(s)), SortedList(ttfts), failed, running,
                           TIERS, z=1.5)
        assert [v.to_dict() for v in got] == [v.to_dict() for v in want]
        a, b = sorted(rng.sample(range(100), rng.randrange(0, 9))), sorted(rng.sample(range(100), rng.randrange(1, 9)))
        union = sorted(a + b)
        assert [kth_of_union(a, b, k) for k in range(len(union))] == union


def test_windows_over_the_detail_log_start_at_the_first_record_that_can_be_in_them():
    rng = random.Random(3)
    metrics = RunMetrics(TIERS)
    records = []
    t = 0.0
    for agent in range(3000):  # arrival order with ends out of order by up to 3 s
        t += rng.random() * 0.05
        r = random_record(rng, t - rng.random() * 3.0, agent)
        metrics.add(r)
        records.append(r)
    for t_from, t_to in ((10.0, 30.0), (0.0, 200.0), (40.5, 41.0), (-5.0, 2.0), (80.0, 70.0)):
        want = [i for i, r in enumerate(records) if t_from <= r.t_send < t_to]
        assert metrics.sent_between(t_from, t_to) == want
        expected = 0.0
        for r in records:  # each request's tokens spread evenly between its first and last token
            if r.t_first is None or r.t_last is None or r.t_last <= r.t_first:
                at = r.t_end if r.t_last is None else r.t_last
                expected += r.output_tokens if t_from <= at < t_to else 0.0
            else:
                a, b = max(r.t_first, t_from), min(r.t_last, t_to)
                expected += r.output_tokens * (b - a) / (r.t_last - r.t_first) if b > a else 0.0
        assert abs(metrics.tokens_arrived(t_from, t_to) - expected) < 1e-6
    assert metrics.first_ended_from(50.0) > 0  # the scan really skips the run's beginning
    for now in (20.0, 55.5, 90.0):  # the live tokens/s: the tokens that arrived in its 10 s
        assert abs(metrics.output_tokens_per_s(now) - metrics.tokens_arrived(now - 10.0, now) / 10.0) < 1e-9
