"""Runs the search: one phase per agent count on a system under test, judged, recorded, reported.

The driver talks to whatever runs the agents through ``SystemUnderTest`` (a small protocol):
the live session (engine/live_sut.py) or the ground-truth harness (engine/synthetic_sut.py),
so the same phase rules are what the tests and bench/search.py check.

A phase: set the count, wait until every agent has started, settle, then count the requests
*sent* in the measurement window [t0, T). At T the load keeps running while the window's
requests drain (up to ``drain_s``); the judge (engine/judge.py) then decides each tier over
them, the ones still running counted as censored. So a TTFT longer than the phase is seen.

Modes:
- certify: AA-AgentPerf's rules. Settle 30 s (every agent active >= 30 s), window >= 10 min,
  then extended until >= 30 trajectories completed and >= 3 per agent (a phase that reaches its
  cap without them is ``insufficient``, never valid); AA's point rule, no confidence margin.
- quick: the same judge on shorter windows, an estimate. Looks at a fixed schedule (phase_s x
  1, 2, 4); at each look a phase may end early only if every tier it decides is settled at
  one-sided confidence 1 - alpha / looks (Bonferroni over the fixed looks, valid under repeated
  looks); the verdict itself also needs that confidence. A tier can pass only in a window at
  least as long as its TTFT limit.
- custom: either mode with a rule changed on the command line (settle, phase lengths, ...).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from agentperf_tui.engine.judge import (
    MIN_FINISHED,
    PASS,
    UNDECIDED,
    RequestSet,
    TierVerdict,
    judge,
    z_for_looks,
)
from agentperf_tui.engine.search import SearchState
from agentperf_tui.engine.slo import Tier

RULE_FIELDS = ("settle_s", "phase_s", "looks", "min_phase_s", "max_phase_s", "drain_s", "alpha",
               "min_trajectories", "min_trajectories_per_agent")
POLL_S = 0.5


@dataclass(frozen=True)
class SearchSettings:
    """Every rule that shapes a search's answer (all of it goes into the report)."""

    mode: str = "quick"  # quick | certify | custom
    base_mode: str = "quick"  # the mode the custom rules started from
    settle_s: float = 5.0  # after every agent started, before the window opens
    phase_s: float = 20.0  # quick: first look; later looks at 2x, 4x ...
    looks: int = 3
    min_phase_s: float = 0.0  # certify: the window lasts at least this
    max_phase_s: float = 80.0  # quick: last look; certify: cap while waiting for the trajectory minimums
    drain_s: float = 60.0  # after the window, wait this long at most for its requests to finish
    alpha: float = 0.05  # quick: overall chance per verdict of passing a count that fails in the long run
    ramp_s: float = 2.0  # new agents start staggered over this (the profile's ramp if shorter)
    start_agents: int = 8
    max_agents: int = 20_000
    resolution: float = 0.02
    min_trajectories: int = 0
    min_trajectories_per_agent: int = 0
    max_phases: int = 40
    require_reconciled: bool = False  # a phase whose client and server do not agree is invalid

    @property
    def confident(self) -> bool:
        return self.base_mode == "quick"

    @property
    def z(self) -> float | None:
        return z_for_looks(self.alpha, self.looks) if self.confident else None

    def look_times(self, repeat: int = 0) -> list[float]:
        """Seconds after the window opens at which the phase is looked at (the last ends it)."""
        if not self.confident:
            return [self.min_phase_s]
        scale = 2 ** repeat
        times = [min(self.phase_s * 2 ** k * scale, self.max_phase_s * scale) for k in range(self.looks)]
        return sorted(set(times))

    @classmethod
    def for_mode(cls, mode: str, **overrides: Any) -> SearchSettings:
        if mode == "certify":
            base = cls(mode="certify", base_mode="certify", settle_s=30.0, min_phase_s=600.0, max_phase_s=3600.0,
                       ramp_s=30.0, drain_s=300.0, looks=1, min_trajectories=30, min_trajectories_per_agent=3)
        elif mode == "quick":
            base = cls()
        else:
            raise ValueError(f"unknown search mode {mode!r} (quick or certify)")
        given = {k: v for k, v in overrides.items() if v is not None}
        settings = replace(base, **given)
        if any(getattr(settings, k) != getattr(base, k) for k in RULE_FIELDS):
            settings = replace(settings, mode="custom")
        return settings

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "z": None if self.z is None else round(self.z, 4), "min_finished": MIN_FINISHED}


class SystemUnderTest(Protocol):
    """What the driver needs from whatever runs the agents. Times are the SUT's clock (seconds)."""

    tiers: tuple[Tier, ...]

    def now(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...
    def stop_reason(self) -> str: ...  # non-empty once the search must stop (operator abort, session end)
    def set_agents(self, agents: int) -> None: ...
    def all_started(self) -> bool: ...  # every agent of the target is running
    def in_flight(self) -> list[tuple[float, float | None]]: ...  # (sent, first token) of running requests
    def request_set(self, t_from: float, t_to: float, now: float) -> RequestSet: ...
    def problems(self) -> list[str]: ...  # why the load or the server is not measurable right now
    def trajectories_done(self, t_from: float, t_to: float) -> dict[int, int]: ...  # agent -> completed
    def power_mark(self) -> object: ...  # the latest energy reading at the power boundary (opaque)
    def power_between(self, first: object, last: object) -> dict[str, Any]: ...  # EnergyWindow.to_dict()
    def tokens_arrived(self, t_from: float, t_to: float) -> float: ...
    def event(self, message: str) -> None: ...
    def on_phase(self, phase: dict[str, Any]) -> None: ...  # each finished phase, for recorders
    def reconcile(self, t_from: float, t_to: float) -> dict[str, Any] | None: ...  # client vs server; None: no server


class SearchDriver:
    """Runs phases on ``sut`` until every tier's bracket is resolved or the search must stop."""

    def __init__(self, sut: SystemUnderTest, settings: SearchSettings, gpus: int = 1,
                 context: dict[str, Any] | None = None):
        self.sut = sut
        self.settings = settings
        self.gpus = max(1, gpus)
        self.context = dict(context or {})  # what else shaped the answer: workload, seed, warm start, server flags
        self.state = SearchState(sut.tiers, start=settings.start_agents, max_agents=settings.max_agents,
                                 resolution=settings.resolution)
        self.phases: list[dict[str, Any]] = []
        self.current: dict[str, Any] | None = None
        self.stopped = ""
        self._started_at = time.monotonic()
        self._phase_seconds = 0.0
        self._aborted = ""
        self._phase_started: float | None = None

    def abort(self, reason: str = "aborted by operator") -> None:
        self._aborted = reason

    def _stop_reason(self) -> str:
        return self._aborted or self.sut.stop_reason()

    # -- driving ---------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        s = self.settings
        invalid_in_a_row = 0
        try:
            while True:
                if self._stop_reason():
                    self.stopped = self._stop_reason()
                    break
                agents = self.state.next_agents()
                if agents is None:
                    break
                if len(self.phases) >= s.max_phases:
                    self.stopped = f"phase limit reached ({s.max_phases} phases)"
                    break
                phase = await self._run_phase(agents, self.state.repeats(agents))
                if phase is None:  # stopped mid-phase
                    self.stopped = self._stop_reason() or "stopped"
                    break
                self.phases.append(phase)
                self.sut.event(describe(phase))
                self.sut.on_phase(phase)
                if phase["status"] == "valid":
                    invalid_in_a_row = 0
                    for note in self.state.record(agents, [t["verdict"] for t in phase["tiers"]]):
                        self.sut.event(f"search: {note}")
                else:
                    invalid_in_a_row += 1
                    if invalid_in_a_row >= 2:
                        self.stopped = f"phase at {agents} agents {phase['status']} twice ({phase['invalid']})"
                        break
        finally:
            self.current = None
        if self.stopped:
            self.sut.event(f"search stopped: {self.stopped}")
        return self.report()

    async def _run_phase(self, agents: int, repeat: int) -> dict[str, Any] | None:
        sut, s = self.sut, self.settings
        # the tiers this phase decides: count inside the open bracket, or the bracket's failing count itself
        # (a re-measure); the others are settled by monotonicity and do not hold the phase open
        relevant = [log.passing < agents and (log.failing is None or agents <= log.failing) for log in self.state.logs]
        sut.set_agents(agents)
        t_change = sut.now()
        self.current = {"agents": agents, "stage": "ramping", "repeat": repeat}
        self._phase_started = time.monotonic()
        while not sut.all_started():
            if self._stop_reason():
                return None
            await sut.sleep(0.2)
        self.current = {**self.current, "stage": "settling"}
        if not await self._wait_until(sut.now() + s.settle_s, []):
            return None
        t0 = sut.now()
        power0 = sut.power_mark()
        invalid: list[str] = []
        looks = s.look_times(repeat)
        self.current = {**self.current, "stage": "measuring", "started": t0, "looks": looks}
        z = s.z
        look_used = len(looks)
        for k, look in enumerate(looks):
            if not await self._wait_until(t0 + look, invalid):
                return None
            if invalid and s.confident:
                break
            if k < len(looks) - 1 and s.confident:
                early = judge(sut.request_set(t0, sut.now(), sut.now()), sut.tiers, z=z)
                if all(v.decided for v, need in zip(early, relevant, strict=True) if need):
                    look_used = k + 1
                    break
        insufficient = ""
        if not s.confident and not invalid:  # certify: wait for AA's trajectory minimums, up to the cap
            while True:
                done = sut.trajectories_done(t0, sut.now())
                short = self._trajectory_shortfall(done, agents)
                if not short:
                    break
                if sut.now() - t0 >= s.max_phase_s:
                    insufficient = f"{short} after {sut.now() - t0:.0f} s (cap {s.max_phase_s:.0f} s)"
                    break
                if not await self._wait_until(sut.now() + POLL_S * 4, invalid):
                    return None
        t_end = sut.now()
        power1 = sut.power_mark()
        # drain: the window's requests finish while the load keeps running (same concurrency)
        self.current = {**self.current, "stage": "draining"}
        drain_end = t_end + s.drain_s
        while any(t0 <= t_send < t_end for t_send, _ in sut.in_flight()) and sut.now() < drain_end:
            if not await self._wait_until(min(drain_end, sut.now() + POLL_S), invalid):
                return None
        requests = sut.request_set(t0, t_end, sut.now())
        # client vs server over the window and its drain: both sides' counts of the same requests
        reconciliation = sut.reconcile(t0, sut.now())
        if s.require_reconciled and (reconciliation is None or reconciliation["status"] != "reconciled"):
            invalid.append("--require-reconciled: client and server "
                           + (reconciliation["headline"] if reconciliation else "unreconciled: no server metrics"))
        verdicts = judge(requests, sut.tiers, z=z)
        window = t_end - t0
        verdicts = tuple(_too_short(v, window) for v in verdicts)
        self._phase_seconds += sut.now() - t_change
        status = "insufficient" if insufficient else ("invalid" if invalid else "valid")
        if requests.size == 0 and status == "valid":
            status, invalid = "invalid", ["no requests were sent within the phase"]
        power = sut.power_between(power0, power1)
        measured = power.get("status") == "ok" and bool(power.get("energy_j"))
        avg_power, energy = (power["avg_power_w"], power["energy_j"]) if measured else (None, None)
        tokens = sut.tokens_arrived(t0, t_end)
        done = sut.trajectories_done(t0, t_end)
        return {
            "agents": agents, "repeat": repeat, "status": status, "valid": status == "valid",
            "window_t0": t0, "window_t1": t_end,  # the SUT's clock (monotonic s): which records were the phase's
            "invalid": "; ".join(invalid) or insufficient,
            "ramp_s": round(t0 - t_change - s.settle_s, 2), "settle_s": s.settle_s,
            "duration_s": round(window, 2), "drain_s": round(sut.now() - t_end, 2),
            "looks_s": looks, "look_used": look_used,
            "requests": {"completed": requests.finished - requests.failed, "failed": requests.failed,
                         "in_flight": len(requests.in_flight), "finished": requests.finished},
            "trajectories": {"completed": sum(done.values()), "agents_with_3": sum(1 for v in done.values() if v >= 3)},
            "output_tokens": round(tokens),
            "output_tokens_per_s": round(tokens / window, 2) if window > 0 else None,
            "avg_power_w": avg_power, "energy_j": energy, "power": power,
            "tokens_per_joule": tokens / energy if energy else None,
            "relevant": relevant,
            "tiers": [v.to_dict() for v in verdicts],
            "reconciliation": reconciliation,
        }

    def _trajectory_shortfall(self, done: dict[int, int], agents: int) -> str:
        s = self.settings
        total = sum(done.values())
        per_agent = [done.get(a, 0) for a in done] if done else []
        if total < s.min_trajectories:
            return f"{total} trajectories completed (< {s.min_trajectories})"
        if s.min_trajectories_per_agent and (len(done) < agents or min(per_agent) < s.min_trajectories_per_agent):
            short = agents - sum(1 for v in done.values() if v >= s.min_trajectories_per_agent)
            return f"{short} of {agents} agents completed < {s.min_trajectories_per_agent} trajectories"
        return ""

    async def _wait_until(self, t: float, invalid: list[str]) -> bool:
        """Sleep until SUT time ``t``, collecting the first reading of each kind of problem; False if stopped."""
        sut = self.sut
        while sut.now() < t:
            if self._stop_reason():
                return False
            for reason in sut.problems():
                kind = reason.split(" ")[0:2]
                if not any(r.split(" ")[0:2] == kind for r in invalid):
                    invalid.append(reason)
            await sut.sleep(min(POLL_S, max(0.0, t - sut.now())))
        return not self._stop_reason()

    # -- views --------------------------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """What the Search panel shows: phases so far, brackets, the phase running, an ETA."""
        brackets = []
        remaining = 0
        for log in self.state.logs:
            brackets.append({"name": log.tier.name, "lo": log.passing, "hi": log.failing,
                             "hi_verdict": log.fail_verdict(), "resolved": self.state.tier_done(log)})
            if log.failing is None:
                remaining += 4
            elif not self.state.tier_done(log):
                remaining += max(1, max(1, log.failing - log.passing).bit_length() - 1)
        per_phase = (self._phase_seconds / len(self.phases)) if self.phases else (
            self.settings.settle_s + self.settings.look_times()[-1] / 2 + 10.0)
        status = "stopped" if self.stopped else ("finished" if self.state.done else "running")
        # a countdown: the phases still needed, less the time the current one has already run
        in_phase = time.monotonic() - self._phase_started if self._phase_started is not None else 0.0
        eta = max(0.0, remaining * per_phase - min(in_phase, per_phase)) if status == "running" else 0.0
        return {"mode": self.settings.mode, "phases": self.phases, "brackets": brackets, "current": self.current,
                "done": self.state.done, "stopped": self.stopped, "status": status,
                "eta_s": eta, "elapsed_s": time.monotonic() - self._started_at}

    def report(self, power_boundary: str = "gpu", extra: dict[str, Any] | None = None) -> dict[str, Any]:
        tiers = []
        for info, tier in zip(self.state.result(), self.sut.tiers, strict=True):
            best = info["max_agents"]
            phase = None
            for p in self.phases:  # the latest valid phase that passed this tier at the answer
                if p["status"] == "valid" and p["agents"] == best and _tier_of(p, tier.name)["verdict"] == PASS:
                    phase = p
            avg_power = phase["avg_power_w"] if phase else None
            sample = _tier_of(phase, tier.name) if phase else None
            if best:
                why = ""
            elif info["fail_above"] == 1:
                why = "even 1 agent " + ("fails" if info["fail_above_verdict"] == "fail" else "stays undecided")
            elif info["fail_above"]:
                why = f"no count below {info['fail_above']} run yet"
            else:
                why = "no count passed"
            tiers.append({
                **info, "output_tps": tier.output_tps, "ttft_s": tier.ttft_s,
                "status": "resolved" if info["resolved"] else "unresolved",
                "answer_phase": self.phases.index(phase) + 1 if phase else None,
                "sample": {"finished": sample["finished"], "in_flight": sample["in_flight"],
                           "duration_s": phase["duration_s"]} if sample else None,
                "why_zero": why,
                "agents_per_gpu": round(best / self.gpus, 4),
                "agents_per_mw": round(best / (avg_power / 1e6), 1) if avg_power else None,
                "avg_power_w": round(avg_power, 1) if avg_power else None,
                "tokens_per_joule": phase["tokens_per_joule"] if phase else None,
                "power_boundary": power_boundary,
                "power_source": (phase.get("power") or {}).get("source", "") if phase else "",
                "power_devices": (phase.get("power") or {}).get("devices") if phase else None,
                "power_status": (phase.get("power") or {}).get("status") if phase else None,
                "power_note": "" if avg_power or not best else (
                    f"power {phase['power'].get('status')}: {phase['power'].get('note')}" if phase and phase.get("power")
                    else "no energy counter at this boundary: not guessed"),
            })
        complete = not self.stopped and self.state.done
        return {
            "tool": "agentperf-tui", "mode": self.settings.mode, "base_mode": self.settings.base_mode,
            "estimate": self.settings.base_mode == "quick",
            "gpus": self.gpus, "power_boundary": power_boundary,
            "status": "finished" if complete else "stopped" if self.stopped else "unresolved",
            "stopped": self.stopped, "done": complete,
            "phases_run": len(self.phases), "phase_minutes": round(self._phase_seconds / 60.0, 2),
            "elapsed_s": round(time.monotonic() - self._started_at, 1),
            "tiers": tiers, "phases": self.phases, "settings": self.settings.to_dict(), "context": self.context,
            **(extra or {}),
        }


def _tier_of(phase: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in phase["tiers"] if t["name"] == name)


def _too_short(verdict: TierVerdict, window_s: float) -> TierVerdict:
    """A pass in a window shorter than the tier's TTFT limit could not have seen a TTFT at the limit."""
    if verdict.verdict == PASS and window_s < verdict.tier.ttft_s:
        return replace(verdict, verdict=UNDECIDED,
                       reason=f"window {window_s:.0f} s shorter than the TTFT limit {verdict.tier.ttft_s:g} s")
    return verdict


def describe(phase: dict[str, Any]) -> str:
    verdicts = ", ".join(f"{t['name']} {t['verdict']}" for t in phase["tiers"])
    state = "" if phase["status"] == "valid" else f" {phase['status'].upper()} ({phase['invalid']})"
    r = phase["requests"]
    return (f"search phase {phase['agents']} agents, {phase['duration_s']:.0f} s + {phase['drain_s']:.0f} s drain, "
            f"{r['finished']} finished / {r['in_flight']} in flight: {verdicts}{state}")


def tiers_line(report: dict[str, Any]) -> str:
    """One line naming each tier's answer as measured."""
    parts = []
    for t in report["tiers"]:
        hi = t["fail_above"]
        above = f" ({t['fail_above_verdict']} at {hi})" if hi is not None else " (no failing count found)"
        parts.append(f"{t['name']} max {t['max_agents']} agents{above}")
    return ", ".join(parts)
