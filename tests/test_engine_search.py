"""The search state machine against synthetic capacity functions with known truth."""

from __future__ import annotations

import math
import random

import pytest

from agentperf_tui.engine.search import PhaseJudge, SearchState, wilson_bounds
from agentperf_tui.engine.slo import Tier

TIERS = (Tier("tier1", 20, 10), Tier("tier2", 60, 5), Tier("tier3", 180, 3))


def run_search(truth: dict[str, int], noise: float = 0.0, seed: int = 0, max_phases: int = 60) -> SearchState:
    rng = random.Random(seed)
    state = SearchState(TIERS, start=1)
    for _ in range(max_phases):
        n = state.next_agents()
        if n is None:
            break
        passed = []
        for tier in TIERS:
            capacity = truth[tier.name]
            margin = (capacity - n) / max(1.0, capacity)
            flip = noise and abs(margin) < noise and rng.random() < 0.3
            passed.append((n <= capacity) != bool(flip))
        state.record(n, passed)
    return state


@pytest.mark.parametrize("truth", [
    {"tier1": 11, "tier2": 3, "tier3": 0},
    {"tier1": 4140, "tier2": 900, "tier3": 37},
    {"tier1": 1, "tier2": 1, "tier3": 1},
    {"tier1": 250, "tier2": 250, "tier3": 120},
])
def test_monotone_capacities_found_within_resolution_in_bounded_phases(truth):
    state = run_search(truth)
    assert state.done
    for row in state.result():
        true = truth[row["name"]]
        assert row["max_agents"] <= true
        assert true - row["max_agents"] <= max(1, math.floor(0.02 * true))
    linear = max(truth.values()) + 1
    bound = 2 * math.ceil(math.log2(max(2, max(truth.values())))) + 3 * 8
    assert len(state.history) <= bound
    if max(truth.values()) > 100:
        assert len(state.history) < linear / 5


def test_noisy_capacity_still_lands_near_truth():
    truth = {"tier1": 500, "tier2": 120, "tier3": 10}
    for seed in range(5):
        state = run_search(truth, noise=0.03, seed=seed)
        assert state.done
        for row in state.result():
            assert abs(row["max_agents"] - truth[row["name"]]) <= max(2, 0.06 * truth[row["name"]])


def test_wilson_bounds_contain_the_share_and_narrow_with_n():
    lo10, hi10 = wilson_bounds(8, 10)
    lo1k, hi1k = wilson_bounds(800, 1000)
    assert lo10 < 0.8 < hi10 and lo1k < 0.8 < hi1k
    assert hi1k - lo1k < hi10 - lo10
    assert wilson_bounds(0, 0) == (0.0, 1.0)


def test_phase_judge_decides_clear_cases_early_and_waits_on_close_ones():
    judge = PhaseJudge([Tier("t", 20, 10)])
    for _ in range(40):
        judge.add(50.0, 1.0)
    (v,) = judge.verdicts()
    assert v.passed and not v.decided  # 40/40 cannot yet prove >= 95% at 95% confidence
    for _ in range(60):
        judge.add(50.0, 1.0)
    (v,) = judge.verdicts()
    assert v.passed and v.decided
    close = PhaseJudge([Tier("t", 20, 10)])
    for i in range(40):
        close.add(50.0 if i % 4 else 10.0, 1.0)  # exactly 75% fast: on the line
    (v,) = close.verdicts()
    assert not v.decided
    failing = PhaseJudge([Tier("t", 20, 10)])
    for _ in range(30):
        failing.add(0.0, math.inf)
    (v,) = failing.verdicts()
    assert v.decided and not v.passed


def test_undecided_contradicting_verdicts_are_ignored_as_noise():
    state = SearchState([Tier("t", 60, 5)], start=8)
    state.record(16, [True], [True])
    state.record(32, [False], [True])
    notes = state.record(4, [False], [False])  # a noisy small phase
    assert notes and "ignored as noise" in notes[0]
    assert (state.brackets[0].passing, state.brackets[0].failing) == (16, 32)
    state.record(4, [False], [True])  # a confident contradiction is believed
    assert state.brackets[0].failing == 4
