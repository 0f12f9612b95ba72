"""The search's bookkeeping: answers are counts that ran, non-monotone and undecided verdicts."""

from __future__ import annotations

from agentperf_tui.engine.judge import FAIL, PASS, UNDECIDED
from agentperf_tui.engine.search import UNDECIDED_RETRIES, SearchState
from agentperf_tui.engine.slo import Tier

T = Tier("t", 60, 5)


def drive(state: SearchState, verdict_at, limit: int = 60) -> list[int]:
    ran = []
    for _ in range(limit):
        n = state.next_agents()
        if n is None:
            break
        ran.append(n)
        state.record(n, [verdict_at(n, len(ran))])
    return ran


def test_the_answer_is_a_count_that_ran_and_passed_never_n_minus_one():
    state = SearchState([T], start=8)
    # a confident fail below a known pass used to produce "n - 1": now the answer must have run
    state.record(40, [PASS])
    state.record(64, [FAIL])
    state.record(39, [FAIL])  # contradicts the pass at 40
    (row,) = state.result()
    assert row["max_agents"] == 0 or str(row["max_agents"]) in row["measured"]
    assert row["max_agents"] != 38
    # the contradiction is re-measured at the failing count before anything else
    assert state.next_agents() == 39


def test_monotone_capacity_resolves_to_the_exact_count():
    capacity = 53
    state = SearchState([T], start=8)
    ran = drive(state, lambda n, _: PASS if n <= capacity else FAIL)
    (row,) = state.result()
    assert row["max_agents"] == capacity and row["fail_above"] == capacity + 1 and row["resolved"]
    assert len(ran) <= 12 and capacity in ran and capacity + 1 in ran


def test_non_monotone_verdicts_are_remeasured_once_then_reported():
    # tier a holds 100 agents, tier b 20; b's bisection visits 24, where a fails (twice): a pass at 32
    # and 64 above a fail at 24 is re-measured once, then the answer stays below the lowest fail
    a, b = Tier("a", 20, 10), Tier("b", 60, 5)
    state = SearchState([a, b], start=8)
    ran = []
    for _ in range(60):
        n = state.next_agents()
        if n is None:
            break
        ran.append(n)
        state.record(n, [FAIL if n == 24 or n > 100 else PASS, PASS if n <= 20 else FAIL])
    row_a, row_b = state.result()
    assert row_b["max_agents"] == 20
    assert row_a["fail_above"] == 24 and row_a["max_agents"] < 24 and str(row_a["max_agents"]) in row_a["measured"]
    assert row_a["non_monotone"] and "above fail at 24" in row_a["non_monotone"][0]
    assert ran.count(24) == 2  # re-measured exactly once


def test_an_undecided_count_is_remeasured_then_bounds_the_answer():
    state = SearchState([T], start=8)
    ran = drive(state, lambda n, _: PASS if n <= 20 else (UNDECIDED if n <= 24 else FAIL))
    (row,) = state.result()
    assert row["max_agents"] == 20 and row["fail_above"] == 21 and row["fail_above_verdict"] == UNDECIDED
    assert ran.count(21) == 1 + UNDECIDED_RETRIES == 3 and row["resolved"]  # measured, then re-measured twice (2x, 4x longer)


def test_one_agent_failing_resolves_to_zero_with_the_reason_on_record():
    state = SearchState([T], start=8)
    drive(state, lambda n, _: FAIL)
    (row,) = state.result()
    assert row["max_agents"] == 0 and row["fail_above"] == 1 and row["resolved"]


def test_a_count_is_never_measured_forever():
    # two tiers; tier b stays undecided at 12 whatever happens, below tier a's passes (non-monotone for b)
    a, b = Tier("a", 20, 10), Tier("b", 60, 5)
    state = SearchState([a, b], start=8)
    verdicts = {8: (PASS, PASS), 16: (PASS, FAIL), 32: (FAIL, FAIL)}
    ran = []
    for _ in range(80):
        n = state.next_agents()
        if n is None:
            break
        ran.append(n)
        va, vb = verdicts.get(n, (PASS if n < 32 else FAIL, UNDECIDED if n >= 12 else PASS))
        state.record(n, [va, vb])
    assert state.done and max(ran.count(n) for n in set(ran)) <= 4, ran


def test_an_undecided_rerun_never_erases_a_fail():
    state = SearchState([T], start=8)
    state.record(8, [PASS])
    state.record(16, [PASS])
    state.record(32, [FAIL])
    state.record(12, [FAIL])  # a fail below passes: non-monotone
    assert state.next_agents() == 12
    state.record(12, [UNDECIDED])  # the re-measure is undecided: the fail stands
    (row,) = state.result()
    assert row["fail_above"] == 12 and row["max_agents"] < 12 and row["measured"]["12"] == FAIL
