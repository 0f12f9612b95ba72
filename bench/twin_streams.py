"""How many concurrent streams one twin process keeps flowing on one core.

Starts the twin (pinned to CPU 0 where taskset exists) and a bare aiohttp client in this process
(pinned to CPU 1), opens N long ``ignore_eos`` streams at once, and over a measuring window
reports: streams that received tokens in every second ("flowing"), tokens/s received vs what the
twin's own cost model predicts for that batch (the reference, computed in the same run; ratio
1.0 = the twin's Python keeps up with its simulated GPUs), the twin's CPU and its step lag.

    python bench/twin_streams.py --streams 2000 --seconds 15
    python bench/twin_streams.py --streams 2000 --stream-interval 60   # NVIDIA's recipes' cadence

With ``--stream-interval N`` the twin sends a chunk per N tokens (the first at once), as SGLang
does; "flowing" then means a chunk in every window of 1.5 x N / (model tokens/s per stream).
Last line: ``streams=N flowing=F ratio=R twin_cpu_pct=C tokens_per_twin_core_s=T``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import psutil
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agentperf_tui.twin.costmodel import CostModel, SpeculativeConfig, decode_tokens_per_s  # noqa: E402
from agentperf_tui.twin.hardware import DEEPSEEK_V4_PRO, H200  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summed_by_name(text: str) -> dict[str, float]:
    """Every sample name's value summed over its label sets (engines, engine types)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def stop_twin(twin: subprocess.Popen) -> None:
    """SIGTERM the twin a bench started; SIGKILL it if it has not gone in 10 s."""
    twin.terminate()
    try:
        twin.wait(10)
    except subprocess.TimeoutExpired:
        twin.kill()
        twin.wait(5)


async def scrape(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """The twin's /metrics, every sample name summed over its label sets."""
    async with session.get(base + "/metrics") as r:
        return summed_by_name(await r.text())


async def wait_healthy(session: aiohttp.ClientSession, base: str, timeout_s: float = 60.0) -> None:
    """Until the twin answers /health with 200 (it runs SGLang's 1-token generation), or timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with session.get(base + "/health") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"the twin at {base} did not become healthy in {timeout_s:.0f} s")


async def one_stream(session: aiohttp.ClientSession, url: str, i: int, counts: list[int], stop: asyncio.Event) -> None:
    body = orjson.dumps({"messages": [{"role": "user", "content": f"stream {i} " * 25}], "max_tokens": 30000,
                         "ignore_eos": True, "stream": True})
    while not stop.is_set():
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
            async for chunk in resp.content.iter_any():
                counts[i] += chunk.count(b"data: ")
                if stop.is_set():
                    return


async def main_async(args: argparse.Namespace) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "agentperf_tui.twin", "--hardware", "h200", "--tp", "8", "--port", str(port),
            "--dcgm-port", "0", "--enable-metrics", "--max-running-requests", str(args.streams + 10),
            "--stream-interval", str(args.stream_interval)]
    if shutil.which("taskset") and os.cpu_count() and os.cpu_count() >= 2:
        argv = ["taskset", "-c", "0", *argv]
        os.sched_setaffinity(0, {1})
    twin = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await wait_healthy(session, base, 20.0)
            counts = [0] * args.streams
            stop = asyncio.Event()
            tasks = [asyncio.create_task(one_stream(session, base + "/v1/chat/completions", i, counts, stop))
                     for i in range(args.streams)]
            # measure only once every stream is decoding: 2,000 prompts arriving at once take the
            # simulated prefill several seconds (prefill runs before decode), a fixed warm-up cut into it
            deadline = time.monotonic() + 120
            while min(counts) < 2 and time.monotonic() < deadline:  # the role chunk, then a token
                await asyncio.sleep(0.5)
            await asyncio.sleep(args.warmup)
            proc = psutil.Process(twin.pid)
            proc.cpu_percent(None)
            flowing_every_second = set(range(args.streams))
            model = CostModel(H200, DEEPSEEK_V4_PRO, 8, SpeculativeConfig())
            per_stream_tps = decode_tokens_per_s(model, args.streams, 150)
            window_s = max(1.0, 1.5 * args.stream_interval / per_stream_tps)
            start_counts = list(counts)
            values0 = await scrape(session, base)
            t0 = time.monotonic()
            prev = list(counts)
            for _ in range(max(1, int(args.seconds / window_s))):
                await asyncio.sleep(window_s)
                now = list(counts)
                flowing_every_second &= {i for i in range(args.streams) if now[i] > prev[i]}
                prev = now
            elapsed = time.monotonic() - t0
            twin_cpu = proc.cpu_percent(None)
            values = await scrape(session, base)
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        stop_twin(twin)
    chunks = sum(counts) - sum(start_counts)
    # the twin's live counter: sglang:generation_tokens_total counts a request only when it finishes
    generated = values["agentperf_twin:decoded_tokens_total"] - values0["agentperf_twin:decoded_tokens_total"]
    # reference: what the cost model says this batch decodes at (no speculative flags here)
    expected = per_stream_tps * args.streams
    received = chunks / elapsed
    tokens_per_s = generated / elapsed
    ratio = tokens_per_s / expected
    per_core = tokens_per_s / max(0.01, twin_cpu / 100.0)
    print(f"streams             {args.streams}  (stream interval {args.stream_interval})")
    print(f"flowing every {window_s:.1f} s  {len(flowing_every_second)}")
    print(f"chunks/s received   {received:,.0f}  (several tokens per chunk when a stream's writer lags)")
    print(f"tokens/s generated  {tokens_per_s:,.0f}  (twin's own counter)")
    print(f"model tokens/s      {expected:,.0f}  (cost model, batch {args.streams})")
    print(f"twin CPU            {twin_cpu:.0f} %")
    print(f"twin step lag       {values.get('agentperf_twin:step_lag_seconds', float('nan')) * 1000:.1f} ms (last)")
    print(f"tokens per twin core {per_core:,.0f} tok/s")
    print(f"streams={args.streams} flowing={len(flowing_every_second)} ratio={ratio:.2f} twin_cpu_pct={twin_cpu:.0f} "
          f"tokens_per_twin_core_s={per_core:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=3, help="seconds after every stream got its first token")
    parser.add_argument("--stream-interval", type=int, default=1, help="the twin's --stream-interval (SGLang's)")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the twin (started in its own session) is stopped, not orphaned
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
