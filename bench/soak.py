"""Soak: many agents on the twin for a long time; memory, file descriptors and tasks must stay flat.

Runs ``agentperf-tui run --headless --json`` as a child process and samples its RSS and open file
descriptors (psutil) every 10 s; the engine's own frames give asyncio task counts indirectly
(agents in work). Default is the issue's 1,000 agents for 30 minutes; ``--quick`` is 200 agents
for 3 minutes. Growth is measured from the end of the first minute (warm-up) to the end.

    python bench/soak.py [--agents N] [--minutes M] [--quick]
Last line: ``rss_growth_mb=G fd_growth=F requests=R failed=X``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psutil

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--profile", default="twin-gb300-nvl72")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.minutes = 200, 3.0
    duration = args.minutes * 60
    proc = subprocess.Popen([sys.executable, "-m", "agentperf_tui", "run", args.profile, "--headless", "--json",
                             "--agents", str(args.agents), "--duration", str(duration), "--ramp", "20",
                             "--no-record"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    client = psutil.Process(proc.pid)
    samples = []
    t0 = time.monotonic()
    last_line = ""
    next_sample = t0
    assert proc.stdout is not None
    for line in proc.stdout:
        last_line = line
        now = time.monotonic()
        if '"type":"progress"' not in line:  # events and the summary are lines too
            continue
        if now >= next_sample:
            next_sample = now + 10
            try:
                samples.append((now - t0, client.memory_info().rss / 2**20, client.num_fds()))
            except psutil.Error:
                break
            frame = orjson.loads(line)
            print(f"{now - t0:6.0f} s  rss {samples[-1][1]:7.1f} MiB  fds {samples[-1][2]:5d}  "
                  f"agents {frame.get('active_agents')}/{frame.get('target_agents')}  "
                  f"requests {frame.get('requests_completed')} failed {frame.get('requests_failed')}  "
                  f"lag max {frame['client']['loop_lag_max_ms']:.0f} ms", flush=True)
    proc.wait()
    summary = orjson.loads(last_line)
    warm = [s for s in samples if s[0] >= 60] or samples
    rss_growth = warm[-1][1] - warm[0][1]
    fd_growth = warm[-1][2] - warm[0][2]
    print(f"rss_growth_mb={rss_growth:.1f} fd_growth={fd_growth} requests={summary['requests']['completed_all']} "
          f"failed={summary['requests']['failed_all']}")


if __name__ == "__main__":
    main()
