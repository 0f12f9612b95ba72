"""Whether one twin process holds a whole rack's agentic load in real time on one core.

Starts the twin from a profile (default ``twin-gb300-nvl72``: the full 72-GPU rack, 8 prefill +
5 decode workers; argv from the same launch plan ``run`` uses) pinned to CPU 0, with
``--stream-interval N`` (NVIDIA's recipes run 50-60), and a bare aiohttp + orjson client pinned to
CPU 1 (the product's LoadGenerator holds ~750 agents per core, bench/scale.py, so it cannot drive
a rack from one core; this client does the same requests with nothing else). Each agent replays
a trajectory of the product's synthetic AA-shaped workload under the ``exact`` policy (recorded
history, ``ignore_eos`` at the target length, tools sent, tool time between calls), salted per
agent and pass as the product salts (engine/agent.py ``salted``). Agents start at turn 0 and are
added over ``--ramp`` seconds, as ``run`` ramps them; the settle lets contexts grow to their
steady mix (a trajectory takes ~3 minutes). ``--warm-start`` starts each at a random turn instead,
which floods the prefill workers with whole cold contexts at once (every agent's salt is new):
a burst, not the steady state.

The agent count steps up (agents already running keep running); at each step, after a settle,
over a window: requests/s, P25 output speed and P95 TTFT of the requests that finished in it (as
AA's tier 1 reads them, nearest rank, speed after the first chunk; a check that the load is the
tier-1 load, not a verdict), the twin's decoded tokens/s (its live counter) and CPU, and, polled
every second from its /metrics, its step lag and the simulated time it dropped. **Real time**
means the twin dropped no simulated time and its step lag stayed <= 100 ms at every poll (its
clock kept up with the GPUs it simulates); the client's own loop lag is shown beside it, and a
step where the client lagged > 100 ms says the client, not the twin, limited it.

    python bench/twin_rack.py --agents 3040,4140 --twin-flag=--dp-routing --twin-flag=sticky
    python bench/twin_rack.py --agents 3040 --seconds 60 --tokenizer estimate
Last line: ``profile=P stream_interval=N largest_real_time_agents=A twin_cpu_pct=C`` (C at A).
3,040 is the twin's own tier-1 answer for the rack with a DP-aware router, 4,140 AA's published
57.5 agents/GPU x 72 (docs/twin.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from twin_streams import free_port, scrape, stop_twin, wait_healthy  # noqa: E402

from agentperf_tui.engine.agent import salted  # noqa: E402
from agentperf_tui.profile import load_profile  # noqa: E402
from agentperf_tui.server.launch_plan import build_launch_plan  # noqa: E402
from agentperf_tui.workload.synthetic import generate_synthetic  # noqa: E402

LAG_LIMIT_S = 0.1


def twin_argv(profile_name: str, port: int, stream_interval: int, tokenizer: str | None,
              extra: list[str]) -> list[str]:
    """The profile's twin command as ``run`` would start it, on our port, with the stream cadence."""
    profile = load_profile(profile_name)
    plan = build_launch_plan(profile, host="127.0.0.1", port=port, dcgm_port=free_port())
    twins = [c for c in plan if "agentperf_tui.twin" in c.argv]
    if len(twins) != 1:
        raise SystemExit(f"{profile_name}: expected one twin process in the launch plan, found {len(twins)}")
    argv = [*twins[0].argv, "--stream-interval", str(stream_interval), *extra]
    if tokenizer:
        argv += ["--tokenizer", tokenizer]
    return argv


class Client:
    """A bare agentic client: agents replaying trajectories, counting what they get back."""

    def __init__(self, session: aiohttp.ClientSession, url: str, model: str, trajectories, seed: int,  # type: ignore[no-untyped-def]
                 warm_start: bool):
        self.session, self.url, self.model = session, url, model
        self.trajectories = trajectories
        self.rng = random.Random(seed)
        self.warm_start = warm_start
        self.tasks: list[asyncio.Task] = []
        self.finished = 0
        self.failed = 0
        self.in_flight = 0
        self.stop = asyncio.Event()
        self.samples: list[tuple[float, float]] = []  # (TTFT s, output tok/s) of finished requests

    def add(self, count: int, ramp_s: float) -> None:
        for k in range(count):
            i = len(self.tasks)
            trajectory = self.trajectories[i % len(self.trajectories)]
            start = self.rng.randrange(trajectory.turn_count) if self.warm_start else 0
            self.tasks.append(asyncio.create_task(self.agent(i, trajectory, start, ramp_s * k / max(1, count))))

    async def agent(self, i: int, trajectory, start: int, delay_s: float) -> None:  # type: ignore[no-untyped-def]
        await asyncio.sleep(delay_s)  # the ramp
        run = 0
        while not self.stop.is_set():
            salt = f"rack-{i}-{run}"
            for turn in trajectory.turns[start:]:
                body = {"model": self.model, "messages": salted(turn.messages, salt),
                        "max_tokens": turn.target_output_tokens, "ignore_eos": True, "stream": True,
                        "stream_options": {"include_usage": True}}
                if turn.tools:
                    body["tools"] = list(turn.tools)
                self.in_flight += 1
                t_send = time.monotonic()
                t_first = t_last = None
                try:
                    async with self.session.post(self.url, data=orjson.dumps(body),
                                                 headers={"Content-Type": "application/json"}) as resp:
                        ok = resp.status == 200
                        async for _chunk in resp.content.iter_any():
                            t_last = time.monotonic()
                            t_first = t_first or t_last
                            if self.stop.is_set():
                                return
                    if ok:
                        self.finished += 1
                        if t_first is not None and t_last > t_first:  # speed over the stream after the first chunk
                            self.samples.append((t_first - t_send,
                                                 (turn.target_output_tokens - 1) / (t_last - t_first)))
                    else:
                        self.failed += 1
                except aiohttp.ClientError:
                    self.failed += 1
                finally:
                    self.in_flight -= 1
                if self.stop.is_set():
                    return
                await asyncio.sleep(turn.tool_delay_s)
            start, run = 0, run + 1

    async def close(self) -> None:
        self.stop.set()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t = time.monotonic()
        await asyncio.sleep(0.1)
        samples.append(time.monotonic() - t - 0.1)


async def measure_step(client: Client, session: aiohttp.ClientSession, base: str, twin: psutil.Process,
                       agents: int, ramp_s: float, settle_s: float, seconds: float) -> dict:
    client.add(agents - len(client.tasks), ramp_s)
    await asyncio.sleep(ramp_s + settle_s)
    lags: list[float] = []
    stop = asyncio.Event()
    lag_task = asyncio.create_task(loop_lag(lags, stop))
    twin.cpu_percent(None)
    own = psutil.Process()
    own.cpu_percent(None)
    m0 = await scrape(session, base)
    finished0, failed0, samples0 = client.finished, client.failed, len(client.samples)
    t0 = time.monotonic()
    step_lag_max, in_flight = 0.0, []
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(1.0)
        m = await scrape(session, base)
        step_lag_max = max(step_lag_max, m.get("agentperf_twin:step_lag_seconds", 0.0))
        in_flight.append(client.in_flight)
    elapsed = time.monotonic() - t0
    m1 = await scrape(session, base)
    stop.set()
    await lag_task
    dropped = m1.get("agentperf_twin:dropped_seconds_total", 0.0) - m0.get("agentperf_twin:dropped_seconds_total", 0.0)
    decoded = (m1["agentperf_twin:decoded_tokens_total"] - m0["agentperf_twin:decoded_tokens_total"]) / elapsed
    client_lag = max(lags) if lags else 0.0
    window = client.samples[samples0:]
    ttfts = sorted(t for t, _ in window)
    speeds = sorted(v for _, v in window)
    return {
        "agents": agents, "in_flight": sum(in_flight) / max(1, len(in_flight)),
        "requests_per_s": (client.finished - finished0) / elapsed, "failed": client.failed - failed0,
        "decoded_tps": decoded, "twin_cpu": twin.cpu_percent(None), "client_cpu": own.cpu_percent(None),
        "ttft_p95_s": ttfts[int(0.95 * (len(ttfts) - 1))] if ttfts else float("nan"),
        "speed_p25": speeds[int(0.25 * (len(speeds) - 1))] if speeds else float("nan"),
        "step_lag_max_ms": step_lag_max * 1000, "dropped_s": dropped, "client_lag_max_ms": client_lag * 1000,
        "real_time": dropped == 0 and step_lag_max <= LAG_LIMIT_S, "client_limited": client_lag > LAG_LIMIT_S,
    }


async def main_async(args: argparse.Namespace) -> None:
    port = free_port()
    argv = twin_argv(args.profile, port, args.stream_interval, args.tokenizer, args.twin_flag)
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        argv = ["taskset", "-c", "0", *argv]
        os.sched_setaffinity(0, {1})
    profile = load_profile(args.profile)
    workload = generate_synthetic(args.trajectories, args.seed)
    twin = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    rows = []
    try:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
            await wait_healthy(session, base, 60.0)
            async with session.get(base + "/server_info") as r:
                info = await r.json()
            tokens = (info.get("twin") or {}).get("tokens", "?")
            print(f"twin: {args.profile} {' '.join(args.twin_flag)}, tokens by {tokens}, "
                  f"stream interval {args.stream_interval}; "
                  f"workload {workload.describe()}", file=sys.stderr, flush=True)
            client = Client(session, base + "/v1/chat/completions", profile.server.model, workload.trajectories,
                            args.seed, args.warm_start)
            proc = psutil.Process(twin.pid)
            try:
                for agents in args.agents:
                    row = await measure_step(client, session, base, proc, agents, args.ramp, args.settle,
                                             args.seconds)
                    rows.append(row)
                    print(f"  {agents:,} agents: {row['requests_per_s']:.0f} req/s, {row['decoded_tps']:,.0f} tok/s, "
                          f"P25 {row['speed_p25']:.1f} tok/s, P95 TTFT {row['ttft_p95_s']:.2f} s, "
                          f"twin CPU {row['twin_cpu']:.0f} %, step lag max {row['step_lag_max_ms']:.0f} ms, "
                          f"dropped {row['dropped_s']:.2f} s, client lag max {row['client_lag_max_ms']:.0f} ms",
                          file=sys.stderr, flush=True)
                    if not row["real_time"] and not args.keep_going:
                        break
            finally:
                await client.close()
    finally:
        stop_twin(twin)
    print(f"{'agents':>7} {'in flight':>9} {'req/s':>6} {'tok/s':>8} {'P25 tok/s':>9} {'P95 TTFT':>8} "
          f"{'failed':>6} {'twin CPU':>8} "
          f"{'step lag':>9} {'dropped':>8} {'client lag':>10} {'client CPU':>10} {'real time':>9}")
    for r in rows:
        verdict = "yes" if r["real_time"] else ("client" if r["client_limited"] else "no")
        print(f"{r['agents']:>7,} {r['in_flight']:>9.0f} {r['requests_per_s']:>6.0f} {r['decoded_tps']:>8,.0f} "
              f"{r['speed_p25']:>9.1f} {r['ttft_p95_s']:>7.2f}s "
              f"{r['failed']:>6} {r['twin_cpu']:>7.0f}% {r['step_lag_max_ms']:>7.0f}ms {r['dropped_s']:>7.2f}s "
              f"{r['client_lag_max_ms']:>8.0f}ms {r['client_cpu']:>9.0f}% {verdict:>9}")
    held = [r for r in rows if r["real_time"]]
    best = max(held, key=lambda r: r["agents"]) if held else None
    print(f"profile={args.profile} stream_interval={args.stream_interval} "
          f"largest_real_time_agents={best['agents'] if best else 0} "
          f"twin_cpu_pct={best['twin_cpu'] if best else float('nan'):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="twin-gb300-nvl72", help="a twin profile (its twin process is started)")
    parser.add_argument("--agents", type=lambda s: [int(x) for x in s.split(",")], default=[3040, 4140],
                        help="comma-separated agent counts, ascending (default 3040,4140)")
    parser.add_argument("--stream-interval", type=int, default=60, help="the twin's --stream-interval (default 60)")
    parser.add_argument("--tokenizer", choices=("auto", "deepseek-v4", "estimate"), default=None,
                        help="the twin's --tokenizer (default: the profile's, i.e. auto)")
    parser.add_argument("--seconds", type=float, default=45.0, help="each step's measuring window (s)")
    parser.add_argument("--ramp", type=float, default=60.0, help="seconds over which a step's new agents start")
    parser.add_argument("--settle", type=float, default=150.0,
                        help="seconds after a step's ramp before its window (contexts grow to their steady mix)")
    parser.add_argument("--warm-start", action="store_true", help="agents start at a random turn (a cold burst)")
    parser.add_argument("--twin-flag", action="append", default=[],
                        help="an extra twin argument, one per use (e.g. --twin-flag=--dp-routing --twin-flag=sticky)")
    parser.add_argument("--trajectories", type=int, default=256, help="synthetic trajectories (the profiles' 256)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-going", action="store_true", help="run every step even after one is not real time")
    args = parser.parse_args()
    if args.agents != sorted(args.agents):
        parser.error("--agents must be ascending (agents already running keep running)")
    # SIGTERM unwinds like Ctrl-C, so the twin (started in its own session) is stopped, not orphaned
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
