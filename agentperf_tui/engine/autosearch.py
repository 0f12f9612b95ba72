"""Drives the search on a live session: one phase per agent count, judged, powered, recorded.

For each count the state machine proposes, the running agents are resized (no server restart),
the phase waits until every agent has started plus the settle time, then counts only requests
sent after that. Quick mode ends a phase once every tier's verdict is settled at 95% confidence
(or at its maximum duration); certify mode applies AA's minimums (>= 10 min steady, >= 30
trajectories completed, >= 3 per agent). A phase in which the client was starved or the server
died does not count, and its reason is kept. Average power per phase comes from energy-counter
deltas, never from sampled watts.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.engine.search import PhaseJudge, SearchState
from agentperf_tui.engine.slo import request_speed, request_ttft

if TYPE_CHECKING:
    from agentperf_tui.engine.session import Session


MIN_DECISION_REQUESTS = 10  # a quick phase never ends on fewer requests than this


@dataclass(frozen=True)
class SearchSettings:
    """Phase rules for one mode."""

    mode: str = "quick"
    settle_s: float = 5.0
    min_phase_s: float = 8.0
    max_phase_s: float = 20.0
    ramp_s: float = 2.0  # new agents start staggered over this (the profile's ramp if shorter)
    start_agents: int = 8
    max_agents: int = 20_000
    resolution: float = 0.02
    min_trajectories: int = 0
    min_trajectories_per_agent: int = 0
    max_phases: int = 40

    @classmethod
    def for_mode(cls, mode: str, **overrides: Any) -> SearchSettings:
        if mode == "certify":
            base = cls(mode="certify", settle_s=30.0, min_phase_s=600.0, max_phase_s=3600.0, ramp_s=30.0,
                       min_trajectories=30, min_trajectories_per_agent=3)
        elif mode == "quick":
            base = cls()
        else:
            raise ValueError(f"unknown search mode {mode!r} (quick or certify)")
        return cls(**{**base.__dict__, **{k: v for k, v in overrides.items() if v is not None}})


class AutoSearch:
    """Runs phases on ``session`` until every tier's bracket is resolved."""

    def __init__(self, session: Session, settings: SearchSettings, gpus: int):
        self.session = session
        self.settings = settings
        self.gpus = max(1, gpus)
        self.state = SearchState(session.tiers, start=settings.start_agents, max_agents=settings.max_agents,
                                 resolution=settings.resolution)
        self.phases: list[dict[str, Any]] = []
        self.current: dict[str, Any] | None = None
        self._judge: PhaseJudge | None = None
        self._phase_start = 0.0
        self._trajectories_done: dict[int, int] = {}
        self._started_at = time.monotonic()

    # -- record hook ---------------------------------------------------------------------------
    def on_record(self, record: RequestRecord) -> None:
        if self._judge is None or record.t_send < self._phase_start:
            return
        self._judge.add(request_speed(record), request_ttft(record))
        if record.turn_index == record.turn_count - 1 and record.ok:
            self._trajectories_done[record.agent_id] = self._trajectories_done.get(record.agent_id, 0) + 1

    def view(self) -> dict[str, Any]:
        """What the Search panel shows: phases so far, brackets, the phase running, an ETA."""
        brackets = [{"name": b.tier.name, "lo": b.passing, "hi": b.failing} for b in self.state.brackets]
        remaining = 0
        for b in self.state.brackets:
            if b.failing is None:
                remaining += 4
            elif not b.resolved(self.settings.resolution):
                width = max(1, b.failing - b.passing)
                remaining += max(1, width.bit_length() - 1)
        per_phase = (sum(p["duration_s"] for p in self.phases) / len(self.phases)) if self.phases else (
            self.settings.settle_s + self.settings.max_phase_s / 2)
        return {"mode": self.settings.mode, "phases": self.phases, "brackets": brackets, "current": self.current,
                "done": self.state.done, "eta_s": remaining * (per_phase + self.settings.settle_s),
                "elapsed_s": time.monotonic() - self._started_at}

    # -- driving -------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        session = self.session
        if session.loadgen is not None:
            session.loadgen.ramp_s = min(session.loadgen.ramp_s, self.settings.ramp_s)
        session.record_sinks.append(self.on_record)
        session.search_view = self.view
        try:
            retries = 0
            while len(self.phases) < self.settings.max_phases and not session.stop_requested:
                agents = self.state.next_agents()
                if agents is None:
                    break
                phase = await self._run_phase(agents)
                self.phases.append(phase)
                session.event(self._describe(phase))
                session.on_phase(phase)
                if phase["valid"]:
                    decided = [t["decided"] or self.settings.mode == "certify" for t in phase["tiers"]]
                    for note in self.state.record(agents, [t["pass"] for t in phase["tiers"]], decided):
                        session.event(f"search: {note}")
                    retries = 0
                else:
                    retries += 1
                    if retries >= 2:
                        session.event(f"search stopped: phase at {agents} agents invalid twice ({phase['invalid']})")
                        break
        finally:
            session.record_sinks.remove(self.on_record)
            self.current = None
        return self.report()

    async def _run_phase(self, agents: int) -> dict[str, Any]:
        session = self.session
        s = self.settings
        session._set_target(agents, cancel_surplus=True)
        self.current = {"agents": agents, "stage": "ramping"}
        t_change = time.monotonic()
        while not session.stop_requested:
            steady = session.steady_since()
            if steady is not None:
                break
            await asyncio.sleep(0.2)
        self.current = {"agents": agents, "stage": "settling"}
        await self._sleep(s.settle_s)
        self._phase_start = time.monotonic()
        self._judge = PhaseJudge(session.tiers)
        self._trajectories_done = {}
        power0 = session.latest_power()
        # tiers whose bracket already settles this count (monotone) need no verdict to end the phase
        relevant = [b.passing < agents and (b.failing is None or agents < b.failing) for b in self.state.brackets]
        invalid: list[str] = []
        server_state0 = session.server_state
        self.current = {"agents": agents, "stage": "measuring", "started": self._phase_start}
        while not session.stop_requested:
            await asyncio.sleep(0.5)
            elapsed = time.monotonic() - self._phase_start
            client = session.client_health()
            if not client.valid:  # keep the first reading of each kind of problem
                for reason in client.invalid_reasons:
                    kind = reason.split(" ")[0:2]
                    if not any(r.split(" ")[0:2] == kind for r in invalid):
                        invalid.append(reason)
            if session.server_state != server_state0:
                invalid.append(f"server {session.server_state}")
                break
            if elapsed >= s.max_phase_s:
                # few agents with long outputs finish few requests: extend (up to 4x) to get enough
                if self._judge.n >= MIN_DECISION_REQUESTS or elapsed >= 4 * s.max_phase_s:
                    break
                continue
            if elapsed < s.min_phase_s:
                continue
            if s.mode == "certify":
                done = self._trajectories_done
                if (sum(done.values()) >= s.min_trajectories
                        and len(done) >= agents and min(done.values()) >= s.min_trajectories_per_agent):
                    break
            elif all(v.decided for v, needed in zip(self._judge.verdicts(MIN_DECISION_REQUESTS), relevant, strict=True)
                     if needed):
                break
        t_end = time.monotonic()
        judge, self._judge = self._judge, None
        # requests still running count for TTFT (their wait so far while no token came): ending a
        # phase must not leave out exactly the requests an overloaded server keeps waiting
        unfinished = session.unfinished_ttfts(self._phase_start, t_end)
        if judge is not None:
            for ttft in unfinished:
                judge.add(math.nan, ttft)
        results, completed, failed, tokens = session.metrics.judge_since(self._phase_start, t_end, unfinished)
        finished_tokens = session.metrics.tokens_finished_between(self._phase_start, t_end)
        power1 = session.latest_power()
        avg_power = None
        energy = None
        if power0 is not None and power1 is not None and power1 is not power0:
            from agentperf_tui.telemetry.sampler import average_power_w

            avg_power = average_power_w(power0, power1)
            if power0.total_energy_j is not None and power1.total_energy_j is not None:
                energy = power1.total_energy_j - power0.total_energy_j
        if completed + failed == 0:
            invalid.append("no requests were sent and finished within the phase")
        if s.mode == "certify" and t_end - self._phase_start < s.min_phase_s:
            invalid.append("phase shorter than the certify minimum")
        verdicts = judge.verdicts() if judge else ()
        return {
            "agents": agents, "valid": not invalid, "invalid": "; ".join(invalid),
            "ramp_s": round(self._phase_start - t_change, 2), "duration_s": round(t_end - self._phase_start, 2),
            "requests": {"completed": completed, "failed": failed, "unfinished": len(unfinished)},
            "output_tokens": tokens,
            "avg_power_w": avg_power, "energy_j": energy,
            "tokens_per_joule": (finished_tokens / energy) if energy else None,
            "tiers": [{**r.to_dict(), "decided": v.decided if verdicts else False}
                      for r, v in zip(results, verdicts or [None] * len(results), strict=True)],
        }

    async def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.session.stop_requested and time.monotonic() < end:
            await asyncio.sleep(min(0.2, end - time.monotonic()))

    @staticmethod
    def _describe(phase: dict[str, Any]) -> str:
        verdicts = ", ".join(f"{t['name']} {'pass' if t['pass'] else 'fail'}" for t in phase["tiers"])
        state = "" if phase["valid"] else f" INVALID ({phase['invalid']})"
        return (f"search phase {phase['agents']} agents, {phase['duration_s']:.0f} s, "
                f"{phase['requests']['completed']} requests: {verdicts}{state}")

    # -- report --------------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        session = self.session
        server = session.server
        boundary = server.boundary if server else "gpu"
        tiers = []
        for bracket in self.state.brackets:
            best = bracket.passing
            phase = None
            for p in self.phases:
                if p["valid"] and p["agents"] == best:
                    phase = p
            avg_power = phase["avg_power_w"] if phase else None
            tiers.append({
                "name": bracket.tier.name, "output_tps": bracket.tier.output_tps, "ttft_s": bracket.tier.ttft_s,
                "max_agents": best, "bracket": [bracket.passing, bracket.failing],
                "resolved": bracket.resolved(self.settings.resolution) or bracket.failing == 1,
                "agents_per_gpu": round(best / self.gpus, 4),
                "agents_per_mw": round(best / (avg_power / 1e6), 1) if avg_power else None,
                "avg_power_w": round(avg_power, 1) if avg_power else None,
                "tokens_per_joule": phase["tokens_per_joule"] if phase else None,
                "power_boundary": boundary,
                "power_note": "" if avg_power or not best else "no energy counters for this boundary: not guessed",
            })
        return {
            "tool": "agentperf-tui", "profile": session.profile_name, "mode": self.settings.mode,
            "gpus": self.gpus, "power_boundary": boundary,
            "server": {"url": server.base_url if server else "", "version": server.version if server else "",
                       "fingerprint": server.fingerprint if server else ""},
            "phases_run": len(self.phases), "elapsed_s": round(time.monotonic() - self._started_at, 1),
            "done": self.state.done, "tiers": tiers, "phases": self.phases,
            "settings": dict(self.settings.__dict__),
        }
