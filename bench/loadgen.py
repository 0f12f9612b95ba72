"""Load generator vs a bare reference client, against a fast loopback SSE stream server.

In one run: a minimal asyncio stream server (its own process, pinned to CPU 0 where possible)
streams OpenAI-format chunks, one token each, with 0 or 10 ms between tokens (at 10 ms every
network read carries one SSE event: the realistic pacing). Against it we drive (a) this
project's load generator (LoadGenerator + agents + the streaming client, exactly the live code
path; at 4,000 streams the same agents in worker processes, ShardedLoad, as runs at scale:
records cross a socket to the main process and client CPU counts every process) and (b) a bare
asyncio + aiohttp + orjson reference client written below. Rows: 200, 1,000 and 4,000 streams at
0 and 10 ms with one-message requests, plus the agentic row: 200 agents over 20-turn
conversations whose context grows to ~27K tokens (the reference builds and sends the same
message lists). For each: streamed tokens/s per client CPU-second, effective concurrency held
(time-average of requests in flight / target) and dispatch delay (how late a request left vs
when its agent was ready), p50/p99.

    python bench/loadgen.py --quick        # every row, 8 s each (~4 min)
    python bench/loadgen.py --quick --uvloop   # both clients on uvloop (pip install uvloop; not a dependency)
    python bench/loadgen.py --quick --ours-uvloop   # also ours on uvloop vs the same asyncio reference
Last line: ``ratio=R ratio_10ms=R10 held=H``: R and R10 the medians over the 0 ms and the 10 ms
rows of ours / reference tokens per client CPU-second, H the worst effective concurrency of
ours / target. Targets (issue [scale]): R10 >= 0.9, R >= 1.0, H >= 0.98.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOKENS_PER_REQUEST = 200
AGENTIC_TURNS = 20
AGENTIC_TURN_CHARS = 5_400  # ~1,350 tokens a turn at 4 characters per token: ~27K tokens by turn 20


# ---------------------------------------------------------------------------------------------
# the stream server: raw asyncio protocol, HTTP/1.1 keep-alive, chunked SSE
# ---------------------------------------------------------------------------------------------
def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


TOKEN_EVENT = _chunk(b'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
                     b'{"content":" tok"},"finish_reason":null}]}\n\n')
TAIL = (_chunk(b'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},'
               b'"finish_reason":"length"}]}\n\n')
        + _chunk(b'data: {"id":"x","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":10,'
                 b'"completion_tokens":%d,"total_tokens":%d}}\n\n' % (TOKENS_PER_REQUEST, TOKENS_PER_REQUEST + 10))
        + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: keep-alive\r\n\r\n")


class Ticker:
    """Delayed mode: one timer per server process writes the next token to every open stream."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.streams: dict[asyncio.Transport, int] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.delay_s)
            done = []
            for t, left in self.streams.items():
                if t.is_closing():
                    done.append(t)
                elif left <= 1:
                    t.write(TOKEN_EVENT + TAIL)
                    done.append(t)
                else:
                    t.write(TOKEN_EVENT)
                    self.streams[t] = left - 1
            for t in done:
                del self.streams[t]


class StreamProtocol(asyncio.Protocol):
    def __init__(self, delay_s: float, ticker: Ticker):
        self.delay_s = delay_s
        self.ticker = ticker
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport):  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            header = self.buf[:end].lower()
            length = 0
            for line in header.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            self.respond()

    def respond(self) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(HEAD)
        if self.delay_s <= 0:
            t.write(TOKEN_EVENT * TOKENS_PER_REQUEST + TAIL)
        else:
            self.ticker.streams[t] = TOKENS_PER_REQUEST


def serve(port: int, delay_s: float, ready: mp.Event) -> None:  # type: ignore[valid-type]
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ticker = Ticker(delay_s)
        if delay_s > 0:
            loop.create_task(ticker.run())
        server = await loop.create_server(lambda: StreamProtocol(delay_s, ticker), "127.0.0.1", port,
                                          backlog=4096)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# measurement shared by both clients: warm up, then a window of tokens, CPU, in-flight, delays
# ---------------------------------------------------------------------------------------------
class Meter:
    def __init__(self) -> None:
        self.counting = False
        self.tokens = 0
        self.delays: list[float] = []

    def completed(self, tokens: int, dispatch_delay_s: float) -> None:
        if self.counting:
            self.tokens += tokens
            self.delays.append(dispatch_delay_s)


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of this process plus the given worker processes (user + system)."""
    total = time.process_time()
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


async def measure(meter: Meter, in_flight, concurrency: int, warmup_s: float, seconds: float,  # type: ignore[no-untyped-def]
                  worker_pids=lambda: []) -> dict:
    await asyncio.sleep(warmup_s)
    meter.counting = True
    cpu0, t0 = cpu_seconds(worker_pids()), time.monotonic()
    area, last = 0.0, t0
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(0.05)
        now = time.monotonic()
        area += in_flight() * (now - last)
        last = now
    meter.counting = False
    cpu, elapsed = cpu_seconds(worker_pids()) - cpu0, time.monotonic() - t0
    d = sorted(meter.delays)
    return {"tokens_per_s": meter.tokens / elapsed, "tokens_per_cpu_s": meter.tokens / cpu if cpu else 0.0,
            "held": area / elapsed / concurrency,
            "dispatch_p50_ms": 1000 * d[len(d) // 2] if d else float("nan"),
            "dispatch_p99_ms": 1000 * d[min(len(d) - 1, int(len(d) * 0.99))] if d else float("nan")}


# ---------------------------------------------------------------------------------------------
# (b) the bare reference client
# ---------------------------------------------------------------------------------------------
def agentic_messages() -> list[tuple[dict, ...]]:
    """Turn k's full message list (system, then k user/assistant pairs): the same lists for both clients."""
    system = {"role": "system", "content": "You are a coding agent. " * 40}
    history: list[dict] = [system]
    turns = []
    for k in range(AGENTIC_TURNS):
        history.append({"role": "user",
                        "content": f"tool result {k}: " + "lorem ipsum dolor sit " * (AGENTIC_TURN_CHARS // 22)})
        turns.append(tuple(history))
        history.append({"role": "assistant", "content": "ok " * TOKENS_PER_REQUEST})
    return turns


async def reference_client(url: str, concurrency: int, warmup_s: float, seconds: float,
                           agentic: bool = False) -> dict:
    """The bare client: aiohttp + orjson, no bookkeeping. Agentic: each stream walks the 20 turns,
    building each request body from the turn's messages as any client must."""
    turns = agentic_messages() if agentic else [({"role": "user", "content": "hi"},)]
    meter = Meter()
    in_flight = 0

    async def worker(session: aiohttp.ClientSession, first_turn: int) -> None:
        nonlocal in_flight
        ready_at = time.monotonic()
        turn = first_turn
        while True:
            delay = time.monotonic() - ready_at
            body = orjson.dumps({"model": "m", "messages": turns[turn % len(turns)], "stream": True,
                                 "max_tokens": TOKENS_PER_REQUEST})
            turn += 1
            in_flight += 1
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                last = b""
                async for data in resp.content.iter_any():
                    last = data
            in_flight -= 1
            start = last.rfind(b'data: {"id":"x","object":"chat.completion.chunk","choices":[],"usage"')
            if start >= 0:
                usage = orjson.loads(last[start + 6:last.index(b"\n", start)])["usage"]
                meter.completed(usage["completion_tokens"], delay)
            ready_at = time.monotonic()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(worker(session, i)) for i in range(concurrency)]
        result = await measure(meter, lambda: in_flight, concurrency, warmup_s, seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return result


# ---------------------------------------------------------------------------------------------
# (a) this project's load generator: the live code path (agents, client, records)
# ---------------------------------------------------------------------------------------------
def bench_workload(agentic: bool):  # type: ignore[no-untyped-def]
    """One-message requests, or one 20-turn trajectory whose turns carry agentic_messages()."""
    from agentperf_tui.workload.model import Trajectory, Turn, Workload

    if not agentic:
        turn = Turn(({"role": "user", "content": "hi"},), TOKENS_PER_REQUEST, 0.0)
        return Workload("bench", (Trajectory("bench", (turn,)),))
    turns = tuple(Turn(messages, TOKENS_PER_REQUEST, 0.0) for messages in agentic_messages())
    return Workload("bench-agentic", (Trajectory("agentic", turns),))


async def project_client(base_url: str, concurrency: int, warmup_s: float, seconds: float,
                         agentic: bool = False) -> dict:
    from agentperf_tui.engine.loadgen import LoadGenerator

    meter = Meter()
    lg = LoadGenerator(bench_workload(agentic), base_url=base_url, model="m", ramp_s=0.0,
                       on_record=lambda r: meter.completed(r.output_tokens, r.dispatch_delay_s))
    lg.set_target(concurrency)
    result = await measure(meter, lambda: lg.in_work, concurrency, warmup_s, seconds)
    await lg.stop()
    return result


async def project_client_workers(base_url: str, concurrency: int, warmup_s: float, seconds: float,
                                 workers: int) -> dict:
    """The same agents in ``workers`` worker processes (ShardedLoad): what runs at scale. Client CPU is
    the main process plus the workers; records cross the socket to the main process as in a live run."""
    from agentperf_tui.engine.workers import ShardedLoad

    meter = Meter()
    load = ShardedLoad(bench_workload(False), base_url=base_url, model="m", ramp_s=0.0, workers=workers,
                       on_record=lambda r: meter.completed(r.output_tokens, r.dispatch_delay_s))
    load.set_target(concurrency)
    result = await measure(meter, lambda: load.in_work, concurrency, warmup_s + 1.5, seconds,
                           worker_pids=lambda: [s.process.pid for s in load.shards])
    await load.stop()
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CELLS = (  # (streams, delay ms, agentic, worker processes for ours: 0 = in-process)
    (200, 0, False, 0), (1000, 0, False, 0), (4000, 0, False, 2),
    (200, 10, False, 0), (1000, 10, False, 0), (4000, 10, False, 2),
    (200, 10, True, 0),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 s per cell")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--max-streams", type=int, default=4000, help="skip rows with more streams than this")
    parser.add_argument("--uvloop", action="store_true", help="run both clients on uvloop (the server stays on asyncio)")
    parser.add_argument("--ours-uvloop", action="store_true",
                        help="in-process rows: also run ours on uvloop, against the same (asyncio) reference")
    args = parser.parse_args()
    run = asyncio.run
    if args.uvloop:
        import uvloop

        run = uvloop.run
    seconds = 8.0 if args.quick else args.seconds
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    rows = []
    ctx = mp.get_context("spawn")
    for delay_ms in (0, 10):
        port = free_port()
        ready = ctx.Event()
        server = ctx.Process(target=serve, args=(port, delay_ms / 1000, ready), daemon=True)
        server.start()
        ready.wait(10)
        base = f"http://127.0.0.1:{port}"
        try:
            for streams, cell_delay, agentic, workers in CELLS:
                if cell_delay != delay_ms or streams > args.max_streams:
                    continue
                # at 10 ms a request lasts 200 server ticks, and one server core ticking thousands of
                # streams ticks slower: wait for the first completions before the window opens
                warmup = (3.0 + streams * 0.004) if delay_ms else 1.0 + streams / 2000
                ref = run(reference_client(base + "/v1/chat/completions", streams, warmup, seconds, agentic))
                if workers:  # worker processes run their own loop (asyncio), whatever --uvloop says
                    ours = run(project_client_workers(base, streams, warmup, seconds, workers))
                    where = f"{workers} workers"
                else:
                    ours = run(project_client(base, streams, warmup, seconds, agentic))
                    where = "in-process"
                kind = "agentic" if agentic else "1 msg"
                rows.append((streams, delay_ms, kind, where, ref, ours))
                if args.ours_uvloop and not workers:
                    import uvloop

                    ours_uv = uvloop.run(project_client(base, streams, warmup, seconds, agentic))
                    rows.append((streams, delay_ms, kind, "uvloop", ref, ours_uv))
                print(f"  done: {streams} streams, {delay_ms} ms, {kind}, ours {where}", file=sys.stderr, flush=True)
        finally:
            server.terminate()
            server.join(5)
    print(f"{'streams':>7} {'delay':>6} {'requests':>8} {'ours runs':>10} | {'ref tok/s':>10} {'ref tok/cpu-s':>13} "
          f"{'ref held':>8} {'disp p50/p99 ms':>16} | {'ours tok/s':>10} {'ours tok/cpu-s':>14} {'ours held':>9} "
          f"{'disp p50/p99 ms':>16} {'ratio':>6}")
    ratios: dict[int, list[float]] = {0: [], 10: []}
    uv_ratios: dict[int, list[float]] = {0: [], 10: []}
    helds = []
    for streams, delay_ms, kind, where, ref, ours in rows:
        # no request finished in the window (the server could not pace that many streams): no ratio
        ratio = ours["tokens_per_cpu_s"] / ref["tokens_per_cpu_s"] if ref["tokens_per_cpu_s"] else math.nan
        if not math.isnan(ratio):
            (uv_ratios if where == "uvloop" else ratios)[delay_ms].append(ratio)
        if where != "uvloop":
            helds.append(ours["held"])
        print(f"{streams:>7} {delay_ms:>4}ms {kind:>8} {where:>10} | {ref['tokens_per_s']:>10,.0f} "
              f"{ref['tokens_per_cpu_s']:>13,.0f} {ref['held']:>8.3f} "
              f"{ref['dispatch_p50_ms']:>7.2f}/{ref['dispatch_p99_ms']:<8.2f} | "
              f"{ours['tokens_per_s']:>10,.0f} {ours['tokens_per_cpu_s']:>14,.0f} {ours['held']:>9.3f} "
              f"{ours['dispatch_p50_ms']:>7.2f}/{ours['dispatch_p99_ms']:<8.2f} {ratio:>6.2f}")
    if uv_ratios[10]:
        print(f"ours on uvloop vs the same reference: ratio={statistics.median(uv_ratios[0]):.2f} "
              f"ratio_10ms={statistics.median(uv_ratios[10]):.2f}")
    print(f"ratio={statistics.median(ratios[0]):.2f} ratio_10ms={statistics.median(ratios[10]):.2f} "
          f"held={min(helds):.3f}")


if __name__ == "__main__":
    main()
