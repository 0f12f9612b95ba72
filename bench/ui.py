"""Dashboard frame handling time at 100, 1,000 and 5,000 agents (headless Textual, 200x50).

For each size: synthetic frames posted to a running app through ``frame_sink`` at 4 Hz, as the
engine does. Per frame we take the CPU time the process spent from posting the frame until the
next one (message handling, apply_frame, layout, render of every visible panel, idle ticks), so
the figure is what one frame costs the UI. Median and p95 over 20 frames per size; the reference
is the same app fed frames with no agents, measured in the same run.

    python bench/ui.py
Last line: ``ui_ms_5000=X ratio_vs_empty=R`` (target: X <= 20 ms at 4 Hz).
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


async def measure(agents: int) -> list[float]:
    frames = [make_frame(agents, seq=i, elapsed_s=i * 0.25) for i in range(FRAMES + 3)]
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


def main() -> None:
    results = {}
    for agents in (0, 100, 1000, 5000):
        times = sorted(asyncio.run(measure(agents)))
        results[agents] = (statistics.median(times), times[int(len(times) * 0.95) - 1])
        label = "reference (no agents)" if agents == 0 else f"{agents:,} agents"
        print(f"{label:>22}: median {results[agents][0]:6.1f} ms  p95 {results[agents][1]:6.1f} ms per frame")
    ref = results[0][0]
    print(f"ui_ms_5000={results[5000][0]:.1f} ratio_vs_empty={results[5000][0] / ref:.2f}")


if __name__ == "__main__":
    main()
