"""The search against ground truth: found vs true max agents per tier, phases and phase-minutes.

Runs the real search driver (engine/search_driver.py, the code the CLI and dashboard use) on the
ground-truth harness (engine/synthetic_sut.py: virtual clock, request TTFT and speed drawn from
known distributions of the agent count, so each tier's true maximum is known). Cases span an
H200-like node (tier 1 ~ a dozen agents), a mid-size server and a rack-slice-like one (hundreds),
each with two seeds. For each mode it prints found vs true per tier, phases run, phase-minutes
(ramp + settle + window + drain, virtual time), and the phase-minutes a linear sweep at the same
resolution would need (counts 1, 2, ... stepping by max(1, 2 % of n) up to the largest true max,
each phase run by the same rules, so costing this search's mean phase-minutes).

    python bench/search.py            # quick and certify
    python bench/search.py --mode quick

Last line (quick): ``search_error=E phases=P minutes_ratio=R``: E = worst relative error over
cases and tiers, counting |found - true| <= 1 agent as 0; P = worst phases per tier (phases of
one search / its number of tiers); R = median over cases of sweep / search phase-minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentperf_tui.engine.search_driver import SearchDriver, SearchSettings  # noqa: E402
from agentperf_tui.engine.slo import AA_DSV4_PRO_TIERS  # noqa: E402
from agentperf_tui.engine.synthetic_sut import GroundTruth, SyntheticSUT  # noqa: E402

CASES = {
    # realistic decode dispersion (all requests of a batch decode at one speed; prefill interference
    # and MTP acceptance spread it ~10 %), TTFT tails from queueing
    "h200-like": GroundTruth(speed_1=95.0, capacity=14.0, speed_sigma=0.10, ttft_1=1.2, ttft_knee=18.0,
                             tail_share=0.02),
    "mid": GroundTruth(speed_1=250.0, capacity=100.0, speed_sigma=0.12, ttft_1=0.8, ttft_knee=400.0,
                       tail_share=0.02),
    "rack-slice-like": GroundTruth(speed_1=300.0, capacity=180.0, speed_sigma=0.10, ttft_1=1.0, ttft_knee=1000.0,
                                   tail_share=0.01),
}
SEEDS = (1, 2, 3)


def sweep_phases(top: int, resolution: float = 0.02) -> int:
    """Phases of a linear sweep 1, 2, ... stepping by max(1, 2 % of n) until one count past ``top``."""
    n, phases = 1, 0
    while n <= top + 1:
        phases += 1
        n += max(1, int(resolution * n))
    return phases


def error(found: int, true: int) -> float:
    return 0.0 if abs(found - true) <= 1 else abs(found - true) / max(1, true)


def run_mode(mode: str) -> tuple[float, float, float]:
    settings = SearchSettings.for_mode(mode)
    worst_error, worst_phases_per_tier, ratios = 0.0, 0.0, []
    print(f"\n== {mode} ==")
    print(f"{'case':16} {'seed':>4} {'tier':6} {'found':>6} {'true':>6} {'above':>12} {'err':>6} "
          f"{'phases':>6} {'min':>7} {'sweep min':>9} {'ratio':>6} {'wall s':>6}")
    for name, truth in CASES.items():
        for seed in SEEDS:
            t0 = time.perf_counter()
            sut = SyntheticSUT(truth, AA_DSV4_PRO_TIERS, seed=seed)
            report = asyncio.run(SearchDriver(sut, settings).run())
            wall = time.perf_counter() - t0
            trues = [truth.true_max(t) for t in AA_DSV4_PRO_TIERS]
            # the sweep runs the same phases (same rules), so each costs this search's mean phase-minutes
            sweep = sweep_phases(max(trues)) * report["phase_minutes"] / max(1, report["phases_run"])
            ratio = sweep / max(1e-9, report["phase_minutes"])
            ratios.append(ratio)
            worst_phases_per_tier = max(worst_phases_per_tier, report["phases_run"] / len(AA_DSV4_PRO_TIERS))
            for tier, row, true in zip(AA_DSV4_PRO_TIERS, report["tiers"], trues, strict=True):
                e = error(row["max_agents"], true)
                worst_error = max(worst_error, e)
                above = f"{row['fail_above_verdict']}@{row['fail_above']}" if row["fail_above"] else "-"
                print(f"{name:16} {seed:>4} {tier.name:6} {row['max_agents']:>6} {true:>6} {above:>12} {e:>6.3f} "
                      f"{report['phases_run']:>6} {report['phase_minutes']:>7.1f} {sweep:>9.1f} {ratio:>6.1f} "
                      f"{wall:>6.1f}")
            if not report["done"]:
                print(f"  search not finished: {report['status']} {report['stopped']}")
    return worst_error, worst_phases_per_tier, statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("quick", "certify", "both"), default="both")
    args = parser.parse_args()
    results = {}
    for mode in (("certify", "quick") if args.mode == "both" else (args.mode,)):
        results[mode] = run_mode(mode)
        e, p, r = results[mode]
        print(f"{mode}: search_error={e:.3f} phases_per_tier={p:.1f} minutes_ratio={r:.1f}")
    e, p, r = results.get("quick", next(iter(results.values())))
    print(f"search_error={e:.3f} phases={p:.1f} minutes_ratio={r:.1f}")


if __name__ == "__main__":
    main()
