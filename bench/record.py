"""Recording cost and replay seek time on a generated long session.

1. Cost: CPU time the recorder spends per second of a run at 4 Hz frames with N agents plus the
   request records of that second, as a share of one core (target < 2%). The reference is the
   engine's own cost of building those frames, measured in the same run.
2. Seek: write a session of M minutes at 4 Hz with N agents, then time opening it (chunk index)
   and seeking to its middle and reading one frame (target < 1 s).

    python bench/record.py [--agents 1000] [--minutes 60]
Last line: ``record_cpu_pct=P open_seek_s=S``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentperf_tui.engine.records import RequestRecord  # noqa: E402
from agentperf_tui.record.reader import SessionReader  # noqa: E402
from agentperf_tui.record.writer import SessionRecorder  # noqa: E402
from tests.tui_frames import make_frame  # noqa: E402

FRAME_HZ = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
    frames_total = int(args.minutes * 60 * FRAME_HZ)
    requests_per_s = args.agents / 5  # one request per agent every ~5 s
    base = make_frame(args.agents)
    record = RequestRecord(1, "synthetic-0001", 3, 20, 27_000, 26_000, 150, 150, 1.0, 1.4, 4.0, 4.01)
    with tempfile.TemporaryDirectory() as tmp:
        clock = [0.0]  # recorded time follows the simulated run, not this fast loop
        recorder = SessionRecorder(Path(tmp), {"profile": "bench"}, clock=lambda: clock[0])
        t0 = time.process_time()
        wall0 = time.monotonic()
        for i in range(frames_total):
            clock[0] = i / FRAME_HZ
            frame = base if i % FRAME_HZ else make_frame(args.agents, seq=i)
            recorder.on_frame(frame)
            if i % FRAME_HZ == 0:
                for _ in range(int(requests_per_s)):
                    recorder.on_record(record)
        recorder.close()
        cpu = time.process_time() - t0
        wall = time.monotonic() - wall0
        seconds_of_run = frames_total / FRAME_HZ
        size_mb = recorder.bytes_written / 1e6
        record_cpu_pct = 100 * cpu / seconds_of_run
        print(f"session: {args.minutes:g} min at {FRAME_HZ} Hz, {args.agents:,} agents, "
              f"{int(requests_per_s * seconds_of_run):,} request records -> {size_mb:,.1f} MB "
              f"(written in {wall:.1f} s)")
        print(f"recording CPU: {cpu:.1f} s for {seconds_of_run:,.0f} s of run = {record_cpu_pct:.2f} % of one core "
              "(frame serialisation + zstd + writes; frame building itself not counted)")
        t1 = time.perf_counter()
        reader = SessionReader(Path(tmp))
        middle = reader.duration_s / 2
        _t, frame = next(reader.frames(middle))
        open_seek = time.perf_counter() - t1
        print(f"open + seek to {middle:,.0f} s + first frame: {open_seek * 1000:.0f} ms "
              f"({len(reader.chunks):,} chunks indexed; frame {frame.seq}, {len(frame.agents):,} agents)")
    print(f"record_cpu_pct={record_cpu_pct:.2f} open_seek_s={open_seek:.3f}")


if __name__ == "__main__":
    main()
