"""Dashboard frame handling time at 100, 1,000 and 5,000 agents (headless Textual, 200x50).

For each size: synthetic frames posted to a running app through ``frame_sink`` at 4 Hz, as the
engine does. Per frame we take the CPU time the process spent from posting the frame until the
next one (message handling, apply_frame, layout, render of every visible panel, idle ticks), so
the figure is what one frame costs the UI. Median and p95 over 20 frames per size; the reference
is the same app fed frames with no agents, measured in the same run.

    python bench/ui.py           # synthetic frames (tests/tui_frames.make_frame)
    python bench/ui.py --real    # also frames a live Session built at 5,000 simulated agents
Last line: ``ui_ms_5000=X ratio_vs_empty=R`` (target: X <= 20 ms at 4 Hz), with ``--real`` also
``ui_ms_real_5000=Y``. Synthetic frames change little from one to the next, so most panels skip
their update; a live session's frames change every panel every frame (counts, tokens/s, the
clock, the agents' states), which is what ``--real`` measures.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentperf_tui.tui.app import AgentPerfApp  # noqa: E402
from agentperf_tui.tui.controller import NullController  # noqa: E402
from tests.tui_frames import make_frame  # noqa: E402

FRAMES = 20


async def measure(agents: int, frames: list | None = None) -> list[float]:
    frames = frames or [make_frame(agents, seq=i, elapsed_s=i * 0.25) for i in range(FRAMES + 3)]
    app = AgentPerfApp(NullController(), fps=4)
    times = []
    async with app.run_test(size=(200, 50)):
        await asyncio.sleep(0.5)
        for i, frame in enumerate(frames):
            c0 = time.process_time()
            app.frame_sink(frame)
            await asyncio.sleep(0.25)
            if i >= 3:  # warm-up frames excluded
                times.append((time.process_time() - c0) * 1000)
        assert app.frame is not None and app.frame.seq == frames[-1].seq
    return times


def live_frames(agents: int, count: int) -> list:
    """Frames of a headless Session at ``agents`` simulated agents (bench/scale.py's workers)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import scale

    from agentperf_tui.engine import workers as workers_mod

    workers_mod.WorkerShard = scale.SimulatedWorkerShard  # type: ignore[misc]
    session, _ = scale.make_session(agents, 2, None)
    frames: list = []
    session.sinks.append(frames.append)
    engine = scale.start_session(session)
    try:
        scale.wait_steady(session, agents)
        time.sleep(2.0)
        first = len(frames)
        while len(frames) < first + count:
            time.sleep(0.25)
    finally:
        engine.stop()
    return frames[first:first + count]


def main() -> None:
    real = "--real" in sys.argv[1:]
    results = {}
    for agents in (0, 100, 1000, 5000):
        times = sorted(asyncio.run(measure(agents)))
        results[agents] = (statistics.median(times), times[int(len(times) * 0.95) - 1])
        label = "reference (no agents)" if agents == 0 else f"{agents:,} agents"
        print(f"{label:>22}: median {results[agents][0]:6.1f} ms  p95 {results[agents][1]:6.1f} ms per frame")
    ref = results[0][0]
    last = f"ui_ms_5000={results[5000][0]:.1f} ratio_vs_empty={results[5000][0] / ref:.2f}"
    if real:
        times = sorted(asyncio.run(measure(5000, live_frames(5000, FRAMES + 3))))
        median, p95 = statistics.median(times), times[int(len(times) * 0.95) - 1]
        print(f"{'5,000 agents, live':>22}: median {median:6.1f} ms  p95 {p95:6.1f} ms per frame")
        last += f" ui_ms_real_5000={median:.1f}"
    print(last)


if __name__ == "__main__":
    main()
