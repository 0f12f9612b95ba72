"""Client vs server on the twin at several loads: does what the client measured match SGLang's counters?

For each agent count, a headless run on a twin profile (the twin as its own process, scraped at
1 s like any SGLang), then the summary's reconciliation over the steady window: per quantity the
client's figure, the server's, the gap and whether it is within tolerance (engine/reconcile.py).
The reference is the server's own counter from the same run; the gaps are the result.

    python bench/reconcile.py        # twin-h200 at 8 and 48 agents, the GB300 slice at 500; 60 s each
    python bench/reconcile.py --runs twin-h200:8,twin-h200:64 --seconds 40

Last line: ``worst_token_gap=G worst_ttft_gap_s=T`` (G: the largest |client - server| / server
over output, prompt and cached tokens; T: the largest |client - server| TTFT quantile, seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentperf_tui.headless import reconcile_row  # noqa: E402
from agentperf_tui.profile import load_profile  # noqa: E402
from agentperf_tui.runner import build_session, options_from_profile  # noqa: E402

TOKENS = ("output tokens", "prompt tokens", "cached tokens")


async def one_run(profile_name: str, agents: int, seconds: float, settle_s: float) -> dict:
    profile = load_profile(profile_name)
    options = options_from_profile(profile, agents=agents, duration_s=seconds, settle_s=settle_s,
                                   ramp_s=min(10.0, settle_s))
    session = build_session(profile, options, sinks=[])
    return await session.run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="twin-h200:8,twin-h200:48,twin-gb300-nvl72-slice:500",
                        help="comma-separated PROFILE:AGENTS")
    parser.add_argument("--seconds", type=float, default=60.0, help="run length per count")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds from full load to the window")
    args = parser.parse_args()
    worst_tokens = 0.0
    worst_ttft = 0.0
    statuses = []
    for run in [r.strip() for r in args.runs.split(",") if r.strip()]:
        profile, _, count = run.rpartition(":")
        agents = int(count)
        summary = asyncio.run(one_run(profile, agents, args.seconds, args.settle))
        rec = summary.get("reconciliation")
        print(f"\n{profile}, {agents} agents (held {summary.get('agents')}), "
              f"{summary['requests']['completed']} requests in the window:")
        if not rec:
            print(f"  no reconciliation: {summary.get('steady_window_note')}")
            statuses.append("none")
            continue
        print(f"  over {rec['seconds']} s, {rec['scrapes']} scrapes: {rec['headline']}")
        for c in rec["comparisons"]:
            print(f"    {reconcile_row(c)}")
            if c["gap"] is None or not c["server"]:
                continue
            if c["quantity"] in TOKENS:
                worst_tokens = max(worst_tokens, abs(c["gap"]) / c["server"])
            elif c["quantity"].startswith("TTFT") and c["agrees"] is not None:
                worst_ttft = max(worst_ttft, abs(c["gap"]))
        statuses.append(rec["status"])
    print(f"\nstatuses: {', '.join(statuses)}")
    print(f"worst_token_gap={worst_tokens:.5f} worst_ttft_gap_s={worst_ttft:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
