"""The client at rack scale: agents per client core, the main process per 1,000 agents, and what the
dashboard and the recorder cost the load generator.

Three measurements, one run:

1. **agents per client core** (``agents_per_core``): real agents (LoadGenerator, the live code
   path) on one pinned core against a loopback SSE server paced like AA tier 1 (first token after
   1 s, 200 tokens at 20 ms apart = 50 tok/s, 5 s of tool time between calls; the twin itself
   cannot serve thousands of streams in real time on this machine, so bench/loadgen.py's stream
   server stands in for its slice). The agent count doubles until the client is no longer valid
   by the Session's own rules (loop lag max <= 100 ms, dispatch p99 <= 50 ms, effective
   concurrency >= 98 % of the target); the figure is the largest valid count.
2. **main process per 1,000 agents** (``main_cpu_per_1k``): a headless Session whose worker
   processes run simulated agents (bench/scale_worker.py: the real WorkerCore and socket, only
   the HTTP replaced by a clock), at 1,000 / 5,000 / 20,000 agents; the main process's CPU (all
   its threads) over a steady window / (agents / 1,000). The figure is the one at 20,000.
3. **dashboard and recorder as lost throughput** (``ui_cost``, ``record_cost``): the same
   Session at 5,000 simulated agents, and a load generator of 50 real agents streaming flat out
   (0 ms pacing) from the loopback server in its own process on the main process's core (as
   worker processes share a host's cores with the dashboard). Its tokens/s with the Textual
   dashboard attached to the Session (run_test, 200x50, the engine on its thread as in `run`) or
   with the recorder on, against the same run with neither: cost = 1 - with / without, medians
   over interleaved repeats, signed (a negative cost is noise; the bare runs' spread is printed as
   the method's resolution), with the same cost from CPU accounting beside it (the load
   generator's share of the core, with / without; the two agree when the core is saturated).
   The dashboard runs with the product's default ``--ui-budget``
   (tui/pacing.py), so ui_cost is what a default dashboard costs; it is started and settled
   (6 s) before the load generator starts, so its start-up is not counted; ``bench/ui.py``
   measures what one repaint costs.

    python bench/scale.py --quick     # ~4 min
Last line: ``agents_per_core=A main_cpu_per_1k=C ui_cost=U record_cost=W frames_per_s_20k=F``
(targets, issue [scale]: C <= 0.05, U <= 0.05, W <= 0.02; F below 4 means the main process could
not keep its frame clock at 20,000 agents, so C understates what it needs).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import loadgen as stream_bench  # noqa: E402

from agentperf_tui.engine import workers as workers_mod  # noqa: E402
from agentperf_tui.engine.client import Timeouts  # noqa: E402
from agentperf_tui.engine.loadgen import LoadGenerator  # noqa: E402
from agentperf_tui.engine.session import (  # noqa: E402
    CONCURRENCY_HELD_MIN,
    DISPATCH_P99_INVALID_MS,
    LOOP_LAG_INVALID_MS,
    RunOptions,
    ServerHandle,
    Session,
    SessionThread,
)
from agentperf_tui.engine.slo import AA_DSV4_PRO_TIERS  # noqa: E402
from agentperf_tui.workload.model import Trajectory, Turn, Workload  # noqa: E402

SIM_WORKER = [sys.executable, str(ROOT / "bench" / "scale_worker.py")]
CLIENT_CPU = 1  # the main process / the client under test
OTHER_CPU = 0  # stream server and simulated workers


def pin(pid: int, cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(pid, {cpu})


# ---------------------------------------------------------------------------------------------
# 1. agents per client core
# ---------------------------------------------------------------------------------------------
class StreamServer:
    """A loopback stream server in its own process: ``serve(port, *args, ready)``."""

    def __init__(self, serve, *args) -> None:  # type: ignore[no-untyped-def]
        self.port = stream_bench.free_port()
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        self.process = ctx.Process(target=serve, args=(self.port, *args, ready), daemon=True)
        self.process.start()
        ready.wait(10)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.process.terminate()
        self.process.join(5)


def serve_paced(port: int, ready) -> None:  # type: ignore[no-untyped-def]
    """bench/loadgen.py's server with tier-1 pacing: 1 s to the first token, then 20 ms a token."""
    pin(0, OTHER_CPU)

    class FirstTokenDelay(stream_bench.StreamProtocol):
        def respond(self) -> None:
            t = self.transport
            if t is not None and not t.is_closing():
                asyncio.get_running_loop().call_later(1.0, self._start, t)

        def _start(self, t) -> None:  # type: ignore[no-untyped-def]
            if not t.is_closing():
                t.write(stream_bench.HEAD)
                self.ticker.streams[t] = stream_bench.TOKENS_PER_REQUEST

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ticker = stream_bench.Ticker(0.02)
        loop.create_task(ticker.run())
        server = await loop.create_server(lambda: FirstTokenDelay(0.02, ticker), "127.0.0.1", port, backlog=8192)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def paced_workload() -> Workload:
    """16 one-call trajectories whose tool time spreads 3..7 s (agents fall out of step at once)."""
    return Workload("bench-paced", tuple(
        Trajectory(f"paced-{i}", (Turn(({"role": "user", "content": "hi"},), stream_bench.TOKENS_PER_REQUEST,
                                       3.0 + 4.0 * i / 15),)) for i in range(16)))


async def client_validity(base_url: str, agents: int, seconds: float) -> dict:
    """Real agents in this process (pinned core): loop lag, dispatch p99, effective concurrency."""
    from agentperf_tui.engine.looplag import LoopLagMeter

    delays: list[float] = []
    counting = False

    def on_record(r) -> None:  # type: ignore[no-untyped-def]
        if counting:
            delays.append(r.dispatch_delay_s)

    lag = LoopLagMeter()
    lag_task = asyncio.create_task(lag.run())
    lg = LoadGenerator(paced_workload(), base_url=base_url, model="m", ramp_s=min(10.0, agents / 200),
                       on_record=on_record, timeouts=Timeouts(first_byte_s=30, chunk_s=10, total_s=60))
    lg.set_target(agents)
    await asyncio.sleep(lg.ramp_s + 12.0)  # ramp, then every agent through a call and a tool wait
    counting = True
    cpu0, t0 = time.process_time(), time.monotonic()
    worst_lag = 0.0
    held_samples = []  # agents in a request or in tool time / target (the Session's effective concurrency)
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(0.25)
        worst_lag = max(worst_lag, lag.max_ms)
        held_samples.append(lg.in_work / agents)
    cpu = (time.process_time() - cpu0) / (time.monotonic() - t0)
    counting = False
    await lg.stop()
    lag_task.cancel()
    d = sorted(delays)
    p99 = 1000 * d[min(len(d) - 1, int(len(d) * 0.99))] if d else float("inf")
    held = statistics.mean(held_samples) if held_samples else 0.0
    valid = worst_lag <= LOOP_LAG_INVALID_MS and p99 <= DISPATCH_P99_INVALID_MS and held >= CONCURRENCY_HELD_MIN
    return {"agents": agents, "cpu": cpu, "lag_max_ms": worst_lag, "dispatch_p99_ms": p99, "held": held,
            "requests": len(d), "valid": valid}


def agents_per_core(seconds: float, sizes: list[int]) -> tuple[int, list[dict]]:
    """Double the agent count until the client is invalid, then try the midpoint once."""
    server = StreamServer(serve_paced)
    rows = []
    best, failed_at = 0, None

    def run(n: int) -> bool:
        row = asyncio.run(client_validity(server.base_url, n, seconds))
        rows.append(row)
        print(f"  agents/core: {n} agents cpu {row['cpu']:.0%} lag max {row['lag_max_ms']:.0f} ms "
              f"dispatch p99 {row['dispatch_p99_ms']:.1f} ms held {row['held']:.3f} "
              f"{'valid' if row['valid'] else 'INVALID'}", file=sys.stderr, flush=True)
        return row["valid"]

    try:
        for n in sizes:
            if not run(n):
                failed_at = n
                break
            best = n
        if failed_at is not None and best and failed_at - best > 1:
            middle = (best + failed_at) // 2
            if run(middle):
                best = middle
    finally:
        server.close()
    return best, rows


# ---------------------------------------------------------------------------------------------
# 2 and 3. a Session fed by simulated workers
# ---------------------------------------------------------------------------------------------
class SimulatedWorkerShard(workers_mod.WorkerShard):
    command = SIM_WORKER

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        pin(self.process.pid, OTHER_CPU)


def make_session(agents: int, workers: int, record_dir: Path | None) -> tuple[Session, object | None]:
    async def start(_session: Session) -> ServerHandle:
        # nothing listens here: the simulated workers never call it, and no telemetry is configured
        return ServerHandle(base_url="http://127.0.0.1:9", model="m", gpus=8, dcgm_urls=[], metrics_url=None,
                            use_nvml=False, boundary="gpu", stop=lambda: None, twin=True)

    options = RunOptions(agents=agents, duration_s=None, frame_hz=4.0, ramp_s=0.0, settle_s=5.0, workers=workers)
    session = Session(profile_name="bench-scale", options=options, tiers=AA_DSV4_PRO_TIERS,
                      workload_loader=lambda: paced_workload(), server_starter=start, sinks=[])
    recorder = None
    if record_dir is not None:
        from agentperf_tui.record.writer import SessionRecorder

        recorder = SessionRecorder(record_dir, {"profile": "bench-scale", "agents": agents})
        session.sinks.append(recorder.on_frame)
        session.record_sinks.append(recorder.on_record)
    return session, recorder


def start_session(session: Session) -> SessionThread:
    engine = SessionThread(session)
    engine.start()
    return engine


def wait_steady(session: Session, agents: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lg = session.loadgen
        if lg is not None and len(lg.agents) >= agents and session.metrics.completed >= agents // 2:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the simulated workers did not bring up {agents} agents in {timeout:.0f} s")


def main_process_cpu(agents: int, workers: int, seconds: float) -> dict:
    session, _ = make_session(agents, workers, None)
    engine = start_session(session)
    try:
        wait_steady(session, agents)
        time.sleep(3.0)
        proc = psutil.Process()
        c0, t0, n0, s0 = time.process_time(), time.monotonic(), session.metrics.completed, session.seq
        time.sleep(seconds)
        cpu = (time.process_time() - c0) / (time.monotonic() - t0)
        records = (session.metrics.completed - n0) / seconds
        frames = (session.seq - s0) / seconds
        rss = proc.memory_info().rss / 2**20
    finally:
        engine.stop()
    return {"agents": agents, "workers": workers, "cpu": cpu, "per_1k": cpu / (agents / 1000),
            "records_per_s": records, "frames_per_s": frames, "rss_mib": rss}


def load_generator_process(url: str, streams: int, warmup_s: float, seconds: float, conn) -> None:  # type: ignore[no-untyped-def]
    """The load generator whose throughput the dashboard / recorder take from: real agents streaming
    flat out (0 ms pacing) in their own process, on the main process's core (as a worker process
    shares a host's cores with the dashboard). Sends back tokens/s over the window."""
    pin(0, CLIENT_CPU)

    async def run() -> dict:
        tokens = 0
        counting = False

        def on_record(r) -> None:  # type: ignore[no-untyped-def]
            nonlocal tokens
            if counting:
                tokens += r.output_tokens

        lg = LoadGenerator(stream_bench.bench_workload(False), base_url=url, model="m", ramp_s=0.0,
                           on_record=on_record)
        lg.set_target(streams)
        await asyncio.sleep(warmup_s)
        counting = True
        t0, own0, main0 = time.monotonic(), time.process_time(), cpu_seconds(main)
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        result = {"tokens_per_s": tokens / elapsed, "loadgen_cpu": (time.process_time() - own0) / elapsed,
                  "main_cpu": (cpu_seconds(main) - main0) / elapsed}
        await lg.stop()
        return result

    main = psutil.Process(os.getppid())  # the Session's process (and the dashboard's, in ui mode)
    conn.send(asyncio.run(run()))


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def lost_throughput_run(mode: str, agents: int, workers: int, stream_url: str, seconds: float) -> dict:
    """The load generator's tokens/s beside a Session of ``agents`` simulated agents on the same core,
    with ``mode`` = bare (headless engine) | record (and the recorder) | ui (and the dashboard)."""
    with tempfile.TemporaryDirectory() as tmp:
        record_dir = Path(tmp) / "rec"
        record_dir.mkdir()
        session, recorder = make_session(agents, workers, record_dir if mode == "record" else None)
        engine = start_session(session)
        try:
            wait_steady(session, agents)
            ctx = mp.get_context("spawn")
            parent, child = ctx.Pipe()
            load = ctx.Process(target=load_generator_process, args=(stream_url, 50, 2.0, seconds, child), daemon=True)
            if mode == "ui":  # the dashboard is up and settled before the load generator starts
                run_dashboard(session, load.start, lambda: parent.poll(0))
            else:
                load.start()
            if not parent.poll(seconds + 30.0):
                raise RuntimeError("the load generator process did not report")
            result = parent.recv()
            load.join(10)
        finally:
            engine.stop()
            if recorder is not None:
                recorder.close()  # type: ignore[attr-defined]
    return result


UI_SETTLE_S = 6.0  # the dashboard's start (imports, CSS, first layout) and the pacer's first windows


def run_dashboard(session: Session, start_load, load_done) -> None:  # type: ignore[no-untyped-def]
    """The real dashboard on this (main) thread, fed the session's frames, with the product's default
    CPU budget (tui/pacing.py): ``start_load()`` once it has run UI_SETTLE_S (its start-up is not
    what a running dashboard costs), until ``load_done()``; prints the repaint interval it settled at."""
    from agentperf_tui.tui.app import AgentPerfApp
    from agentperf_tui.tui.pacing import DEFAULT_UI_BUDGET

    app = AgentPerfApp(session, title="bench", fps=4.0, search_available=True, ui_budget=DEFAULT_UI_BUDGET)
    session.sinks.append(app.frame_sink)

    async def drive() -> None:
        async with app.run_test(size=(200, 50)):
            await asyncio.sleep(UI_SETTLE_S)
            applied, t0 = app.frames_applied, time.monotonic()
            start_load()
            while not load_done():
                await asyncio.sleep(0.25)
            seconds = time.monotonic() - t0
        share = "-" if app.pacer.share is None else f"{app.pacer.share:.1%}"
        print(f"  dashboard: {(app.frames_applied - applied) / seconds:.2f} repaints/s, interval {app.pacer.interval_s:.2f} s, "
              f"UI thread {share} of a core (budget {DEFAULT_UI_BUDGET:.0%})", file=sys.stderr, flush=True)

    try:
        asyncio.run(drive())
    finally:
        session.sinks.remove(app.frame_sink)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter windows, fewer sizes (~4 min)")
    parser.add_argument("--seconds", type=float, default=20.0, help="each measurement window (s)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the lost-throughput runs")
    parser.add_argument("--lost-only", action="store_true",
                        help="only the dashboard / recorder lost-throughput runs (3.); the last line says - for the rest")
    args = parser.parse_args()
    seconds = 8.0 if args.quick else args.seconds
    repeats = args.repeats if args.lost_only or not args.quick else 2
    pin(0, CLIENT_CPU)
    workers_mod.WorkerShard = SimulatedWorkerShard  # type: ignore[misc]  # ShardedLoad spawns simulated workers

    per_core, core_rows = (None, []) if args.lost_only else agents_per_core(
        seconds, [250, 500, 1000, 2000, 4000] if not args.quick else [500, 1000, 2000, 4000])

    cpu_rows = []
    for agents, workers in () if args.lost_only else ((1000, 2), (5000, 2), (20000, 4)):
        row = main_process_cpu(agents, workers, seconds)
        cpu_rows.append(row)
        print(f"  main process: {agents} agents over {workers} workers: {row['cpu']:.1%} of a core "
              f"({row['per_1k']:.3f} per 1k), {row['records_per_s']:.0f} records/s, "
              f"{row['frames_per_s']:.1f} frames/s", file=sys.stderr, flush=True)

    stream_server = StreamServer(stream_bench.serve, 0.0)  # flat out (0 ms), for the lost-throughput runs
    url = stream_server.base_url
    runs: dict[str, list[float]] = {"bare": [], "record": [], "ui": []}
    shares: dict[str, list[float]] = {mode: [] for mode in runs}  # the load generator's share of its core
    try:
        for _ in range(repeats):
            for mode in runs:
                run = lost_throughput_run(mode, 5000, 2, url, seconds)
                runs[mode].append(run["tokens_per_s"])
                shares[mode].append(run["loadgen_cpu"])
                print(f"  lost throughput: {mode}: {run['tokens_per_s']:,.0f} tok/s in-process, load generator "
                      f"{run['loadgen_cpu']:.1%} of a core, main process {run['main_cpu']:.1%}", file=sys.stderr,
                      flush=True)
    finally:
        stream_server.close()

    print(f"{'agents':>7} {'cpu%':>6} {'lag ms':>7} {'disp p99':>9} {'held':>6} {'valid':>6}   (agents per client core)")
    for r in core_rows:
        print(f"{r['agents']:>7} {r['cpu']:>6.0%} {r['lag_max_ms']:>7.0f} {r['dispatch_p99_ms']:>9.1f} "
              f"{r['held']:>6.3f} {str(r['valid']):>6}")
    print(f"{'agents':>7} {'workers':>7} {'main cpu':>9} {'per 1k':>7} {'records/s':>10} {'frames/s':>9} "
          f"{'rss MiB':>8}   (main process, simulated workers)")
    for r in cpu_rows:
        print(f"{r['agents']:>7} {r['workers']:>7} {r['cpu']:>9.1%} {r['per_1k']:>7.3f} {r['records_per_s']:>10.0f} "
              f"{r['frames_per_s']:>9.1f} {r['rss_mib']:>8.0f}")
    bare = statistics.median(runs["bare"])
    print(f"{'mode':>7} {'tok/s (median)':>15} {'runs':>30}   (in-process streams beside 5,000 agents)")
    for mode, values in runs.items():
        print(f"{mode:>7} {statistics.median(values):>15,.0f} {', '.join(f'{v:,.0f}' for v in values):>30}")
    # signed: a negative cost is noise, shown as it came out, not clamped to 0; the spread of the bare
    # runs is the method's resolution, and the load generator's CPU share is the same cost by accounting
    ui_cost = 1 - statistics.median(runs["ui"]) / bare
    record_cost = 1 - statistics.median(runs["record"]) / bare
    spread = (max(runs["bare"]) - min(runs["bare"])) / bare
    bare_share = statistics.median(shares["bare"])
    print(f"lost throughput: ui {ui_cost:+.3f}, record {record_cost:+.3f} (bare runs spread {spread:.3f}); "
          f"by the load generator's CPU share ({bare_share:.1%} bare): "
          f"ui {1 - statistics.median(shares['ui']) / bare_share:+.3f}, "
          f"record {1 - statistics.median(shares['record']) / bare_share:+.3f}")
    # a main process that cannot keep the 4 Hz frame clock is saturated: its CPU per 1k understates it
    main_1k = f"{cpu_rows[-1]['per_1k']:.3f}" if cpu_rows else "-"
    frames_20k = f"{cpu_rows[-1]['frames_per_s']:.1f}" if cpu_rows else "-"
    print(f"agents_per_core={per_core if per_core is not None else '-'} main_cpu_per_1k={main_1k} "
          f"ui_cost={ui_cost:.3f} record_cost={record_cost:.3f} frames_per_s_20k={frames_20k}")


if __name__ == "__main__":
    main()
