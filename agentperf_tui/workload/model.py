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
