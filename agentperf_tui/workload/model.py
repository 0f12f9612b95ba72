"""What a workload is: trajectories of turns, each turn one model call followed by tool time.

Loaders (AA traces, OpenAI-messages JSONL) and the synthetic generator all produce these frozen
dataclasses; the engine's agents consume them. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Turn:
    """One model call of a trajectory.

    ``messages`` is the full recorded request history for this call (OpenAI chat format); under
    the ``exact`` replay policy turn k+1's messages start with turn k's messages followed by the
    recorded assistant message (and tool results).
    """

    messages: tuple[dict[str, Any], ...]
    target_output_tokens: int
    tool_delay_s: float = 0.0
    tools: tuple[dict[str, Any], ...] | None = None
    recorded_prompt_tokens: int | None = None
    recorded_assistant: dict[str, Any] | None = None
    #: How many leading messages this call shares with the previous call's (None: the whole
    #: previous call, plus its answer, as in a prefix trace). Less where the previous call ended
    #: with a temporary message this one dropped (SWE-style traces).
    previous_prefix: int | None = None


@dataclass(frozen=True, slots=True)
class Trajectory:
    """A recorded (or generated) agent task: an ordered list of turns."""

    trajectory_id: str
    turns: tuple[Turn, ...]
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def turn_count(self) -> int:
        return len(self.turns)


@dataclass(frozen=True, slots=True)
class Workload:
    """A set of trajectories plus what went wrong loading it (missing files are warnings)."""

    name: str
    trajectories: tuple[Trajectory, ...]
    warnings: tuple[str, ...] = ()

    @property
    def required_context_tokens(self) -> int | None:
        """The largest context a call needs: a manifest's ``required_context_tokens`` where given, else
        recorded prompt + forced output over the turns that record their prompt; None if unknown."""
        best: int | None = None
        for t in self.trajectories:
            declared = t.metadata.get("required_context_tokens")
            recorded = [turn.recorded_prompt_tokens + turn.target_output_tokens for turn in t.turns
                        if turn.recorded_prompt_tokens is not None]
            for value in ([declared] if isinstance(declared, int) else []) + recorded:
                best = value if best is None else max(best, value)
        return best

    def describe(self) -> str:
        """What was loaded, in one line: tasks, turns, tool time, the largest context needed."""
        turns = sum(t.turn_count for t in self.trajectories)
        tool_s = sum(turn.tool_delay_s for t in self.trajectories for turn in t.turns)
        need = self.required_context_tokens
        text = (f"{len(self.trajectories)} trajectories, {turns:,} model calls, {tool_s:,.0f} s of tool time, "
                f"largest context needed {f'{need:,} tokens' if need is not None else 'unknown'}")
        partial = sum(1 for t in self.trajectories for prev, turn in zip(t.turns, t.turns[1:], strict=False)
                      if turn.previous_prefix is not None and turn.previous_prefix < len(prev.messages))
        if partial:
            text += f"; {partial} calls drop part of the previous call's messages (non-prefix trace)"
        return text
