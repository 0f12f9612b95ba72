"""How often the dashboard repaints: at ``--fps``, unless that would take more than its CPU budget.

The dashboard shares its process (and the GIL) with the engine, and its host's cores with the
load generator's workers, so every repaint is CPU the load generator does not get. A repaint of
the 200x50 layout costs Textual ~30-40 ms of CPU whatever the agent count (every panel's
numbers change every frame), i.e. ~13-15 % of a core at 4 Hz. ``DisplayPacer`` measures the UI
thread's own CPU time (``time.thread_time`` on the thread that runs the app) over windows of
``WINDOW_S`` and stretches the interval between repaints until that share is within the budget
(``--ui-budget``, a share of one core; 0 = repaint at ``--fps`` always), never beyond
``MAX_INTERVAL_S``. A key press brings back the full rate for ``BOOST_S``, so what the operator
just did shows at once. Frames are not dropped upstream: the engine, the recorder and headless
output still get every frame; the dashboard always shows the latest one.
"""

from __future__ import annotations

import time

#: the dashboard's default CPU budget, a share of one core: at 5,000 agents its repaints cost the
#: load generator sharing its core <= 5 % of its throughput (bench/scale.py's ui_cost)
DEFAULT_UI_BUDGET = 0.03
WINDOW_S = 2.0  # the UI thread's CPU share is measured over this much wall time
MAX_INTERVAL_S = 2.0  # the slowest the display gets, whatever it costs
BOOST_S = 3.0  # full rate for this long after a key press


class DisplayPacer:
    """The minimum interval between two repaints, adapted to the UI thread's measured CPU share."""

    def __init__(self, fps: float, budget: float, *, clock=time.monotonic, cpu_clock=time.thread_time) -> None:  # type: ignore[no-untyped-def]
        self.min_interval_s = 1.0 / max(0.5, fps)
        self.budget = max(0.0, budget)
        self.interval_s = self.min_interval_s
        self.share: float | None = None  # the UI thread's CPU share over the last whole window
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._last_apply = float("-inf")
        # the first BOOST_S run at full rate, like after a key: the app's start-up (CSS, first
        # layout) is not what a repaint costs, and is not measured
        self._boost_until = clock() + BOOST_S
        self._window_t0 = clock()
        self._window_cpu0 = cpu_clock()

    @property
    def paced(self) -> bool:
        """The display is slower than --fps because of the budget."""
        return self.interval_s > self.min_interval_s * 1.05

    def due(self) -> bool:
        """A repaint now would respect the interval (always during a boost)."""
        now = self._clock()
        interval = self.min_interval_s if now < self._boost_until else self.interval_s
        return now - self._last_apply >= interval

    def applied(self) -> None:
        self._last_apply = self._clock()

    def boost(self) -> None:
        """The operator pressed a key: repaint at --fps for BOOST_S; that CPU is not held against the budget."""
        now = self._clock()
        self._boost_until = now + BOOST_S
        self._window_t0, self._window_cpu0 = now, self._cpu_clock()

    def tick(self) -> None:
        """Called on the UI thread at least every repaint interval: closes a measuring window and
        sets the interval to the one whose CPU share would meet the budget."""
        if self.budget <= 0:
            return
        now = self._clock()
        if now < self._boost_until:  # boosted: the window starts when the boost ends
            self._window_t0, self._window_cpu0 = now, self._cpu_clock()
            return
        if now - self._window_t0 < WINDOW_S:
            return
        cpu = self._cpu_clock()
        self.share = max(0.0, cpu - self._window_cpu0) / (now - self._window_t0)
        self._window_t0, self._window_cpu0 = now, cpu
        if self.share > 0:
            # the interval at which this window's cost per repaint would meet the budget. With a
            # share of idle + cost / interval the steps shrink geometrically (by idle / budget) onto
            # cost / (budget - idle), from one side, so a steady cost settles in a window or two
            wanted = self.interval_s * self.share / self.budget
            self.interval_s = min(MAX_INTERVAL_S, max(self.min_interval_s, wanted))

    def describe(self) -> str:
        """The header's note while paced, e.g. "display every 1.2 s (UI budget 3 % of a core)"."""
        return f"display every {self.interval_s:.1f} s (UI budget {self.budget * 100:g} % of a core)"
