"""The live session as the search driver's system under test (engine/search_driver.py's protocol).

Only public Session methods are used: the target, whether every agent has started, the requests
in flight, the detail log (engine/metrics.py), the client/server validity reasons and the
latest energy marks.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from agentperf_tui.engine.judge import RequestSet
from agentperf_tui.engine.slo import Tier

if TYPE_CHECKING:
    from agentperf_tui.engine.session import Session


class LiveSUT:
    """Adapts a running Session to ``SystemUnderTest``."""

    def __init__(self, session: Session):
        self.session = session
        self.tiers: tuple[Tier, ...] = tuple(session.tiers)
        self._server_state0 = session.server_state

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def stop_reason(self) -> str:
        return (self.session.stop_reason or "session stopping") if self.session.stop_requested else ""

    def set_agents(self, agents: int) -> None:
        self.session.hold_target(agents)

    def all_started(self) -> bool:
        return self.session.steady_since() is not None

    def in_flight(self) -> list[tuple[float, float | None]]:
        return self.session.in_flight()

    def request_set(self, t_from: float, t_to: float, now: float) -> RequestSet:
        return self.session.metrics.request_set(t_from, t_to, self.session.in_flight(), now)

    def problems(self) -> list[str]:
        reasons = list(self.session.client_health().invalid_reasons)
        if self.session.server_state != self._server_state0:
            reasons.append(f"server {self.session.server_state}")
        return reasons

    def trajectories_done(self, t_from: float, t_to: float) -> dict[int, int]:
        return self.session.metrics.trajectories_between(t_from, t_to)

    def power_mark(self) -> object:
        return self.session.energy_marks()

    def power_between(self, first: object, last: object) -> dict:
        """The energy account's window at the run's boundary (EnergyWindow.to_dict())."""
        return self.session.energy_window(first, last).to_dict()  # type: ignore[arg-type]

    def tokens_arrived(self, t_from: float, t_to: float) -> float:
        return self.session.metrics.tokens_arrived(t_from, t_to)

    def reconcile(self, t_from: float, t_to: float) -> dict | None:
        return self.session.reconcile(t_from, t_to).to_dict()

    def on_phase(self, phase: dict) -> None:
        self.session.on_phase(phase)

    def event(self, message: str) -> None:
        self.session.event(message)
