"""What one request measured: the immutable record every metric, frame and recording is built from."""

from __future__ import annotations

from dataclasses import dataclass

OK = "ok"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One model call of one agent, timed on arrival (monotonic seconds).

    ``t_first`` is the arrival of the first streamed token of any kind (reasoning, content or
    tool call); ``t_last`` the arrival of the last one. Failed requests keep whatever they got
    and a ``cause``.
    """

    agent_id: int
    trajectory_id: str
    turn_index: int
    turn_count: int
    prompt_tokens: int
    cached_tokens: int | None
    output_tokens: int
    target_tokens: int
    t_send: float
    t_first: float | None
    t_last: float | None
    t_end: float
    status: str = OK
    cause: str = ""
    dispatch_delay_s: float = 0.0  # how late the request left vs when its agent was ready
    #: True when prompt_tokens / output_tokens are the server's own usage figures (its final usage
    #: chunk arrived); False when they are the client's estimate / count of streamed deltas.
    usage: bool = False
    streamed_chunks: int = 0  # SSE events that carried a token (each carries at least one)
    request_id: str = ""  # sent as X-Request-Id: joins this record to the server's and router's logs
    correlation_id: str = ""  # sent as X-Correlation-ID: the agent's trajectory instance (one conversation)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def ttft_s(self) -> float | None:
        return None if self.t_first is None else self.t_first - self.t_send

    @property
    def output_tps(self) -> float | None:
        """(tokens - 1) / (t_last - t_first): decode speed excluding TTFT, AA's definition."""
        if self.t_first is None or self.t_last is None or self.output_tokens < 2:
            return None
        span = self.t_last - self.t_first
        if span <= 0:
            return None
        return (self.output_tokens - 1) / span

    @property
    def context_tokens(self) -> int:
        """Context the agent holds after this call: prompt plus what was generated."""
        return self.prompt_tokens + self.output_tokens

    def to_row(self) -> dict:
        return {
            "agent": self.agent_id, "trajectory": self.trajectory_id, "turn": self.turn_index,
            "turns": self.turn_count, "prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens,
            "output_tokens": self.output_tokens, "target_tokens": self.target_tokens, "t_send": self.t_send,
            "t_first": self.t_first, "t_last": self.t_last, "t_end": self.t_end, "status": self.status,
            "cause": self.cause, "dispatch_delay_s": self.dispatch_delay_s, "usage": self.usage,
            "streamed_chunks": self.streamed_chunks, "request_id": self.request_id,
            "correlation_id": self.correlation_id,
        }

    @classmethod
    def from_row(cls, row: dict) -> RequestRecord:
        return cls(row["agent"], row["trajectory"], row["turn"], row["turns"], row["prompt_tokens"],
                   row["cached_tokens"], row["output_tokens"], row["target_tokens"], row["t_send"],
                   row["t_first"], row["t_last"], row["t_end"], row["status"], row["cause"],
                   row.get("dispatch_delay_s", 0.0), row.get("usage", False), row.get("streamed_chunks", 0),
                   row.get("request_id", ""), row.get("correlation_id", ""))
