"""The run's steady window and its validity account: when the load held its target, and whether it was measurable.

The steady window opens ``settle_s`` after every agent of the *last* target has started (AA
counts requests once all agents have been active >= 30 s) and closes when the run ends; a
target change closes it and a new one opens once the new target is reached and settled. If the
run ended before that, there was no steady window, and the summary says so.

A pause closes the window; it opens again ``settle_s`` after the load resumes.

Validity is kept per frame tick (4 Hz) over the whole run, so a window that was starved in the
middle is reported invalid with the seconds and reasons, not only when its last second was bad.
Power readings are taken at the window's first tick and its last, so power and tokens per joule
cover the steady window only.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SteadyWindow:
    """The window a summary judges: [start, end) in monotonic seconds, and the target it held."""

    start: float
    end: float
    target: int

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


class RunAccount:
    """Tracks target changes, the steady window and per-tick validity for one run."""

    def __init__(self, settle_s: float = 30.0):
        self.settle_s = settle_s
        self.target = 0
        self.target_since: float | None = None
        self.all_started_at: float | None = None
        self._tick_t = array("d")
        self._tick_valid = array("b")
        self._reasons: dict[str, float] = {}  # reason kind -> invalid seconds (inside the open window)
        self._reason_text: dict[str, str] = {}
        self._last_tick: float | None = None
        self._power_first: dict[str, Any] = {}  # boundary -> first energy snapshot inside the window
        self._power_last: dict[str, Any] = {}
        self._paused = False
        self._resumed_at: float | None = None

    def on_target(self, now: float, target: int) -> None:
        if target != self.target or self.target_since is None:
            self.target = target
            self.restart(now)

    def restart(self, now: float) -> None:
        """Open a new window after ``now`` at the same target (a relaunched or retuned server)."""
        self.target_since = now
        self.all_started_at = None
        self._reasons.clear()
        self._reason_text.clear()
        self._power_first = {}
        self._power_last = {}

    @property
    def steady_from(self) -> float | None:
        """When the current window opened (None: not yet; the target was not reached and settled)."""
        if self.all_started_at is None or self.target <= 0:
            return None
        return self.all_started_at + self.settle_s

    def tick(self, now: float, all_started_at: float | None, paused: bool, invalid_reasons: tuple[str, ...],
             power: dict[str, Any] | None = None) -> None:
        """One frame tick: the load's state and the client/server validity reasons right now."""
        if paused:  # a paused load holds nothing: the window restarts after it resumes
            self._paused = True
            self.all_started_at = None
            self._reasons.clear()
            self._power_first = {}
            self._power_last = {}
        elif self._paused:
            self._paused = False
            self._resumed_at = now
        if all_started_at is not None and self.all_started_at is None and not paused:
            self.all_started_at = max(all_started_at, self.target_since or all_started_at, self._resumed_at or 0.0)
        dt = 0.0 if self._last_tick is None else max(0.0, now - self._last_tick)
        self._last_tick = now
        self._tick_t.append(now)
        self._tick_valid.append(0 if invalid_reasons else 1)
        start = self.steady_from
        if start is not None and now >= start:
            for boundary, snapshot in (power or {}).items():
                if snapshot.t_s < start:
                    continue  # taken before the window opened
                self._power_first.setdefault(boundary, snapshot)
                self._power_last[boundary] = snapshot
            for reason in invalid_reasons:
                kind = " ".join(reason.split(" ")[:2])
                self._reasons[kind] = self._reasons.get(kind, 0.0) + dt
                self._reason_text.setdefault(kind, reason)

    def window(self, now: float) -> SteadyWindow | None:
        start = self.steady_from
        if start is None or now <= start:
            return None
        return SteadyWindow(start, now, self.target)

    def invalid_seconds(self, t_from: float, t_to: float) -> float:
        """Seconds in [t_from, t_to) whose tick found the client or server not measurable."""
        total = 0.0
        prev = None
        for t, ok in zip(self._tick_t, self._tick_valid, strict=True):
            if prev is not None and not ok:
                a, b = max(prev, t_from), min(t, t_to)
                if b > a:
                    total += b - a
            prev = t
        return total

    def invalid_reasons(self) -> list[dict[str, Any]]:
        """Each kind of problem seen inside the open window: its first reading and how long it lasted."""
        return [{"reason": self._reason_text[k], "seconds": round(s, 2)} for k, s in self._reasons.items()]

    def power_readings(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(first, last) energy snapshots per boundary inside the open window."""
        return dict(self._power_first), dict(self._power_last)
