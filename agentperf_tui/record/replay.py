"""Replay: the frames of a recording delivered to the same sinks a live session feeds.

``ReplayPlayer`` runs on its own thread and paces frames by their recorded times x speed (x0.5 to
x16, or as fast as possible); it pauses, seeks +-N s or to a time or to a search phase, and in
``follow`` mode keeps polling the file for chunks a live run is still appending. The dashboard
cannot tell it from a live session: it receives the same Frame objects through the same sink.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from agentperf_tui.engine.frames import Frame
from agentperf_tui.record.format import KIND_FRAME, KIND_PHASE, KIND_RECORD
from agentperf_tui.record.reader import SessionReader

SPEEDS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 0.0)  # 0.0 = as fast as possible
FOLLOW_POLL_S = 0.25


def replay_summary(reader: SessionReader) -> tuple[dict[str, Any], list[str]]:
    """The summary the live run printed, or (truncated recording) one rebuilt from the last frame."""
    summary = reader.summary()
    warnings = list(reader.warnings)
    if summary is not None:
        return summary, warnings
    last: Frame | None = None
    records = 0
    for kind, _t, data in reader.entries():
        if kind == KIND_FRAME:
            last = Frame.from_dict(data)
        elif kind == KIND_RECORD:
            records += 1
    reader.check_complete()
    warnings = list(reader.warnings)
    warnings.append("no summary in the recording (run cut short): partial summary from its last frame")
    if last is None:
        return {"partial": True, "profile": reader.header.get("profile", ""), "requests": {}, "tiers": []}, warnings
    return {
        "partial": True, "tool": "agentperf-tui", "profile": last.profile, "agents": last.target_agents,
        "duration_s": round(last.elapsed_s, 3),
        "requests": {"completed": last.requests_completed, "failed": last.requests_failed, "recorded": records},
        "output_tokens": last.output_tokens, "effective_concurrency": round(last.effective_concurrency, 3),
        "context_tokens": {"mean": last.context.mean, "p50": last.context.p50, "p95": last.context.p95,
                           "max": last.context.max},
        "tiers": [{"name": t.name, "output_tps": t.output_tps, "ttft_s": t.ttft_s, "requests": t.requests,
                   "output_tps_p25": t.output_tps_p25, "ttft_p95_s": t.ttft_p95_s, "pass": t.passed}
                  for t in last.tiers],
    }, warnings


class ReplayPlayer:
    """Plays a recording's frames to sinks on a background thread."""

    def __init__(self, reader: SessionReader, sinks: list[Callable[[Frame], None]] | None = None, *,
                 speed: float = 1.0, follow: bool = False, start_s: float | None = None):
        self.reader = reader
        self.sinks = list(sinks or [])
        self.speed = speed
        self.follow = follow
        self.paused = False
        self.position_s = 0.0
        self.finished = False
        self.load_running = False  # the Controller protocol: a replay never has load to stop
        self._seek_to: float | None = None
        self._show_one = False  # a seek while paused shows the frame it lands on
        # --follow joins a run still being written at its live edge (the latest frame), not its start
        self._start_s = start_s if start_s is not None else (max(0.0, reader.duration_s - 1.0) if follow else 0.0)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agentperf-replay", daemon=True)

    # -- controller surface --------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        self._wake.set()

    def set_speed(self, speed: float) -> None:
        self.speed = speed
        self._wake.set()

    def faster(self) -> None:
        i = SPEEDS.index(self.speed) if self.speed in SPEEDS else 1
        self.set_speed(SPEEDS[min(i + 1, len(SPEEDS) - 1)])

    def slower(self) -> None:
        i = SPEEDS.index(self.speed) if self.speed in SPEEDS else 1
        self.set_speed(SPEEDS[max(i - 1, 0)])

    def seek(self, t: float) -> None:
        target = min(max(0.0, t), self.reader.duration_s)
        self._seek_to = target
        self.position_s = target  # so a second key press moves on from here, paused or not
        self._show_one = True
        self.finished = False
        self._wake.set()

    def seek_relative(self, delta_s: float) -> None:
        self.seek(self.position_s + delta_s)

    def seek_phase(self, direction: int = 1) -> None:
        """Jump to the next (or previous) search phase boundary."""
        times = [t for kind, t, _ in self.reader.entries() if kind == KIND_PHASE]
        if direction > 0:
            later = [t for t in times if t > self.position_s + 0.01]
            if later:
                self.seek(later[0])
        else:
            earlier = [t for t in times if t < self.position_s - 0.5]
            if earlier:
                self.seek(earlier[-1])

    def set_target(self, _agents: int) -> None:  # replay has no load to change
        pass

    def change_target(self, _fn: Callable[[int], int]) -> None:
        pass

    def force_stop(self) -> None:  # replay started no process
        self.request_stop()

    def request_stop(self, _reason: str = "") -> None:
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def duration_s(self) -> float:
        return self.reader.duration_s

    # -- loop ------------------------------------------------------------------------------------
    def _run(self) -> None:
        start_at = self._start_s
        while not self._stop.is_set():
            seeking = False
            prev: tuple[float, float] | None = None  # (recorded t, wall time) of the last frame shown
            for t, frame in self.reader.frames(start_at):
                if not self._wait_due(t, prev):
                    if self._seek_to is None:
                        return  # stopped
                    seeking = True
                    break
                self.position_s = t
                for sink in self.sinks:
                    sink(frame)
                prev = (t, time.monotonic())
                start_at = t + 1e-9
                self._show_one = False
            if seeking:
                start_at, self._seek_to = self._seek_to or 0.0, None
                continue
            if self.follow and not self._stop.is_set():
                self._wake.wait(FOLLOW_POLL_S)
                self._wake.clear()
                self.reader.refresh()
                continue
            # at the end: wait for a seek (back into the recording) or the stop
            self.finished = True
            while not self._stop.is_set() and self._seek_to is None:
                self._wake.wait(0.1)
                self._wake.clear()
            if self._seek_to is not None:
                start_at, self._seek_to = self._seek_to, None
                self.finished = False
                continue
            return

    def _wait_due(self, t: float, prev: tuple[float, float] | None) -> bool:
        """Sleep until the frame recorded at t is due (relative to the previous frame shown).

        False when stopped or when a seek was requested.
        """
        while True:
            if self._stop.is_set() or self._seek_to is not None:
                return False
            if self.paused:
                if self._show_one:  # a seek while paused: show where it landed, then stay paused
                    self._show_one = False
                    return True
                self._wake.wait(0.1)
                self._wake.clear()
                prev = (t, time.monotonic())  # resume from here without a burst
                continue
            if self.speed <= 0 or prev is None:
                return True
            due = prev[1] + (t - prev[0]) / self.speed
            delay = due - time.monotonic()
            if delay <= 0:
                return True
            self._wake.wait(min(delay, 0.1))
            self._wake.clear()
