"""The search's bookkeeping: which agent counts ran, what each tier's verdict was there, what to run next.

Pure logic, no I/O. Every answer is a count that ran: a tier's answer is the largest count
with a valid PASS below the smallest count not shown to pass (a valid FAIL, or a count still
UNDECIDED after it was re-measured); nothing is interpolated. Counts are proposed by an
exponential ramp until every tier has failed somewhere, then by bisection of the widest open
bracket, until every bracket is narrower than the resolution (max(1, 2 % of the answer)).

Non-monotone verdicts (a pass above a fail) are re-measured once at the failing count; if they
persist, the answer stays the largest pass below the lowest fail and the contradiction is
reported. A FAIL is only ever replaced by a PASS (a later UNDECIDED does not erase it). An
undecided count is re-measured twice (quick: 2x, then 4x longer); undecided three times, it is
not shown to pass and bounds the answer as such. No count runs more than ``MAX_RUNS`` times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agentperf_tui.engine.judge import FAIL, PASS, UNDECIDED
from agentperf_tui.engine.slo import Tier

UNDECIDED_RETRIES = 2  # an undecided count is measured at most 1 + this many times (2x, then 4x longer)
MAX_RUNS = 4  # no count is measured more often than this, whatever the verdicts


@dataclass
class TierLog:
    """Everything measured for one tier: the latest verdict per count and how often each was run."""

    tier: Tier
    latest: dict[int, str] = field(default_factory=dict)
    undecided_runs: dict[int, int] = field(default_factory=dict)
    remeasured: set[int] = field(default_factory=set)

    def add(self, agents: int, verdict: str) -> None:
        if self.failing == agents and self.non_monotone():
            self.remeasured.add(agents)  # this run is the re-measure of a contradicted fail
        if not (self.latest.get(agents) == FAIL and verdict == UNDECIDED):  # only a PASS overrides a FAIL
            self.latest[agents] = verdict
        if verdict == UNDECIDED:
            self.undecided_runs[agents] = self.undecided_runs.get(agents, 0) + 1

    def not_passing(self) -> list[int]:
        """Counts not shown to pass: a FAIL, or UNDECIDED with no re-measure left."""
        return sorted(n for n, v in self.latest.items() if v == FAIL or (
            v == UNDECIDED and self.undecided_runs.get(n, 0) > UNDECIDED_RETRIES))

    @property
    def failing(self) -> int | None:
        """The smallest count not shown to pass (None: every count run so far passed or is pending)."""
        bad = self.not_passing()
        return bad[0] if bad else None

    @property
    def passing(self) -> int:
        """The largest count with a PASS below ``failing`` (0: none)."""
        hi = self.failing
        return max((n for n, v in self.latest.items() if v == PASS and (hi is None or n < hi)), default=0)

    def non_monotone(self) -> list[tuple[int, int]]:
        """(pass count, lower failing count) pairs that contradict monotonicity."""
        hi = self.failing
        if hi is None:
            return []
        return [(n, hi) for n, v in sorted(self.latest.items()) if v == PASS and n > hi]

    def pending_undecided(self) -> list[int]:
        """Counts inside the open bracket that are undecided and may be re-measured."""
        lo, hi = self.passing, self.failing
        return sorted(n for n, v in self.latest.items() if v == UNDECIDED
                      and self.undecided_runs.get(n, 0) <= UNDECIDED_RETRIES and n > lo and (hi is None or n < hi))

    def resolved(self, resolution: float, max_agents: int) -> bool:
        hi = self.failing
        if hi is None:
            return self.passing >= max_agents
        lo = self.passing
        return hi - lo <= max(1, int(resolution * lo))

    def fail_verdict(self) -> str | None:
        hi = self.failing
        return None if hi is None else self.latest[hi]


@dataclass
class SearchState:
    """Per-tier logs and the choice of the next agent count."""

    tiers: Sequence[Tier]
    start: int = 1
    max_agents: int = 100_000
    resolution: float = 0.02
    logs: list[TierLog] = field(default_factory=list)
    history: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.logs:
            self.logs = [TierLog(t) for t in self.tiers]

    def record(self, agents: int, verdicts: Sequence[str]) -> list[str]:
        """Apply one valid phase's verdicts (pass / fail / undecided per tier). Returns notes for the log."""
        self.history.append((agents, tuple(verdicts)))
        notes = []
        for log, verdict in zip(self.logs, verdicts, strict=True):
            before = log.latest.get(agents)
            log.add(agents, verdict)
            if before is not None and before != verdict:
                notes.append(f"{log.tier.name}: {agents} agents re-measured: {before} -> {verdict}")
            for hi_pass, lo_fail in log.non_monotone():
                if lo_fail in log.remeasured:
                    notes.append(f"{log.tier.name}: non-monotone: pass at {hi_pass} above {log.latest[lo_fail]} "
                                 f"at {lo_fail} (re-measured); answer kept below {lo_fail}")
        return notes

    def tier_done(self, log: TierLog) -> bool:
        pending = self._remeasure_of(log)
        return log.resolved(self.resolution, self.max_agents) and (pending is None or self.repeats(pending) >= MAX_RUNS)

    @property
    def done(self) -> bool:
        return all(self.tier_done(log) for log in self.logs)

    def _remeasure_of(self, log: TierLog) -> int | None:
        for _, lo_fail in log.non_monotone():
            if lo_fail not in log.remeasured:
                return lo_fail
        pending = log.pending_undecided()
        return pending[0] if pending else None

    def next_agents(self) -> int | None:
        """The next count to run, or None when every tier is resolved."""
        if not self.history:
            return max(1, min(self.start, self.max_agents))
        for log in self.logs:
            n = self._remeasure_of(log)
            if n is not None and self.repeats(n) < MAX_RUNS:
                return n
        if self.done:
            return None
        open_ramp = [log for log in self.logs if log.failing is None and log.passing < self.max_agents]
        if open_ramp:
            base = max(log.passing for log in open_ramp) or max(a for a, _ in self.history)
            return min(self.max_agents, max(base * 2, base + 1))
        candidates = [log for log in self.logs if not log.resolved(self.resolution, self.max_agents)]
        widest = max(candidates, key=lambda log: (log.failing or 0) - log.passing)
        hi = widest.failing
        assert hi is not None
        return max(1, (widest.passing + hi) // 2)

    def repeats(self, agents: int) -> int:
        """How many times ``agents`` has run already (the driver lengthens a repeated phase)."""
        return sum(1 for a, _ in self.history if a == agents)

    def result(self) -> list[dict]:
        out = []
        for log in self.logs:
            out.append({
                "name": log.tier.name, "max_agents": log.passing, "fail_above": log.failing,
                "fail_above_verdict": log.fail_verdict(), "bracket": [log.passing, log.failing],
                "resolved": self.tier_done(log),
                "non_monotone": [f"pass at {p} above {log.latest[f]} at {f}" for p, f in log.non_monotone()],
                "measured": {str(n): v for n, v in sorted(log.latest.items())},
            })
        return out
