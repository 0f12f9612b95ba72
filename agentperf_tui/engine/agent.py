"""One simulated agent: works through trajectories turn by turn, sleeping the tool time between.

Replay policies (REFERENCE §1): ``exact`` (AA's) sends each turn's recorded messages with
``max_tokens`` = the recorded output length and ``ignore_eos``, so context growth follows the
trace exactly; ``free`` sends the model's own previous answer forward instead of the recorded one.
A salt unique to the run, the agent and the pass over a trajectory is put on the first message,
so runs and agents never share a prefix cache they would not share in production, while the
turns of one pass do.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from agentperf_tui.engine.client import ROUTING_HEADER, StreamResult, Timeouts, stream_chat
from agentperf_tui.engine.http_stream import StreamPool
from agentperf_tui.engine.records import FAILED, OK, RequestRecord
from agentperf_tui.tokens import estimate_prompt_tokens
from agentperf_tui.workload.model import Trajectory, Turn

QUEUED = "queued"
PREFILL = "prefill"
DECODE = "decode"
TOOL = "tool"
RETIRING = "retiring"
PAUSED = "paused"
STATES = (QUEUED, PREFILL, DECODE, TOOL, RETIRING, PAUSED)
ROLLING_REQUESTS = 5
ERROR_BACKOFF_S = 0.5
#: a request in decode that received nothing (no token, no byte) for this long is stalled
STALL_DECODE_S = 10.0
#: a request waiting for its first token is stalled past this share of the first-byte timeout...
STALL_FIRST_TOKEN_SHARE = 0.25
#: ...and never before this many seconds
STALL_FIRST_TOKEN_MIN_S = 10.0


def first_token_stall_s(first_byte_timeout_s: float) -> float:
    """How long a request may wait for its first token before it counts as stalled (75 s under
    the default 300 s first-byte timeout): long queueing under load is normal, minutes are not."""
    return max(STALL_FIRST_TOKEN_MIN_S, STALL_FIRST_TOKEN_SHARE * first_byte_timeout_s)


def is_stalled(in_flight: tuple[float, float | None] | None, last_progress: float | None, now: float,
               first_token_limit_s: float, decode_limit_s: float = STALL_DECODE_S) -> bool:
    """A request in flight that stopped making progress: in decode, no token or byte for longer
    than ``decode_limit_s``; waiting for its first token, longer than ``first_token_limit_s``
    since it was sent. No request in flight (tool time, queued, paused) is never a stall."""
    if in_flight is None:
        return False
    sent, first = in_flight
    if first is None:
        return now - sent > first_token_limit_s
    last = first if last_progress is None else max(first, last_progress)
    return now - last > decode_limit_s


class AgentState:
    """Live, mutable view of one agent, read by the frame builder (same thread, same loop)."""

    __slots__ = ("agent_id", "_state", "changed_at", "trajectory_id", "turn_index", "turn_count", "context_tokens",
                 "last_ttft_s", "last_tps", "recent_tps", "rolling_tps", "current", "retiring", "requests", "failures",
                 "passes", "started", "last_record", "ready_at")

    def __init__(self, agent_id: int):
        self.agent_id = agent_id
        self._state = QUEUED
        self.changed_at = time.monotonic()  # when ``state`` last took a new value (monotonic s)
        self.trajectory_id = ""
        self.turn_index = 0
        self.turn_count = 0
        self.context_tokens = 0
        self.last_ttft_s: float | None = None
        self.last_tps: float | None = None
        self.recent_tps: deque[float] = deque(maxlen=ROLLING_REQUESTS)
        self.rolling_tps: float | None = None  # mean of recent_tps, kept on each record (read every frame)
        self.current: StreamResult | None = None
        self.retiring = False
        self.requests = 0
        self.failures = 0
        self.passes = 0
        self.started = False
        self.last_record: RequestRecord | None = None
        self.ready_at = 0.0  # monotonic time the agent's next request was due

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        if value != self._state:
            self._state = value
            self.changed_at = time.monotonic()

    @property
    def state_since(self) -> float:
        """When the state shown (``live_state``) began, monotonic seconds: a request's prefill at
        its send, its decode at its first token, any other state at its last change."""
        current = self.current
        if current is not None:
            return current.t_send if current.t_first is None else current.t_first
        return self.changed_at

    @property
    def last_progress(self) -> float | None:
        """Latest arrival of bytes for the running request (None: none running or nothing yet)."""
        current = self.current
        return None if current is None else current.t_recv

    @property
    def live_state(self) -> str:
        """State as shown: a request in flight is prefill until its first token, then decode."""
        current = self.current
        if current is not None:
            return PREFILL if current.t_first is None else DECODE
        if self.retiring and self.started:
            return RETIRING
        return self.state

    @property
    def in_flight(self) -> tuple[float, float | None] | None:
        """(sent, first token) of the request running now, if any (monotonic seconds)."""
        current = self.current
        return None if current is None else (current.t_send, current.t_first)

    @property
    def streamed_tokens(self) -> int:
        """Tokens the running request has streamed so far (0 when none runs)."""
        current = self.current
        return 0 if current is None else current.counted_deltas

    @property
    def in_work(self) -> bool:
        """Has a request in flight or is in tool time (what effective concurrency counts)."""
        return self.current is not None or self.state == TOOL


def salted(messages: tuple[dict[str, Any], ...] | list[dict[str, Any]], salt: str) -> list[dict[str, Any]]:
    """Messages with the salt at the start of the first message (a copy; the trajectory stays
    untouched), where AA's cache isolation puts its namespace (replay/cache_isolation.py
    ``isolate_messages``): before a string content, as a leading text part of a list content,
    as the content when there is none. The message count never changes (the ``free`` policy
    splices answers in by position)."""
    out = list(messages)
    if not out:
        return [{"role": "system", "content": f"[session {salt}]"}]
    first = out[0]
    content = first.get("content")
    tag = f"[session {salt}] "
    if isinstance(content, str):
        salted_content: Any = tag + content
    elif isinstance(content, list):
        salted_content = [{"type": "text", "text": tag}, *content]
    elif content is None:
        salted_content = tag.rstrip()
    else:
        salted_content = tag + str(content)
    out[0] = {**first, "content": salted_content}
    return out


def short_output(output_tokens: int, target_tokens: int, finish_reason: str | None) -> str:
    """Under ``exact`` every response must be the forced length (max_tokens with ignore_eos), as
    AA's runner requires: a shorter one, or one that stopped for another reason, is a failed request."""
    if output_tokens < target_tokens or (finish_reason is not None and finish_reason != "length"):
        return (f"short output (server ignored ignore_eos?): {output_tokens} of {target_tokens} tokens, "
                f"finish_reason {finish_reason!r}")
    return ""


class Agent:
    """Drives one AgentState through trajectories until told to retire."""

    def __init__(self, state: AgentState, trajectories: tuple[Trajectory, ...], *, session: StreamPool,
                 url: str, model: str, policy: str, run_salt: str, seed: int, timeouts: Timeouts,
                 on_record: Callable[[RequestRecord], None], resume: asyncio.Event, extra_body: dict | None = None,
                 warm_start: bool = False, routing_header: str = ROUTING_HEADER, ordinal: int | None = None):
        self.s = state
        self.trajectories = trajectories
        self.session = session
        self.url = url
        self.model = model
        self.policy = policy
        self.run_salt = run_salt
        self.rng = random.Random(seed * 1_000_003 + state.agent_id)
        # agents start on distinct trajectories, round robin in workload order (rotated by the
        # seed), so a short run with as many agents as tasks sends every task
        self.first_index = ((state.agent_id if ordinal is None else ordinal) + random.Random(seed).randrange(max(1, len(trajectories)))) % max(
            1, len(trajectories))
        self.timeouts = timeouts
        self.on_record = on_record
        self.resume = resume
        self.extra_body = extra_body or {}
        self.warm_start = warm_start
        self.routing_header = routing_header

    async def run(self) -> None:
        s = self.s
        s.started = True
        index = self.first_index
        first = True
        while not s.retiring:
            trajectory = self.trajectories[index % len(self.trajectories)]
            index += 1
            s.passes += 1
            # warm start: the first trajectory is joined at a random turn, as if the agent had been
            # working for a while (its context is that turn's; its prefix is not cached yet)
            start = self.rng.randrange(trajectory.turn_count) if first and self.warm_start else 0
            first = False
            await self._run_trajectory(trajectory, f"{self.run_salt}-a{s.agent_id}-p{s.passes}", start)

    async def _run_trajectory(self, trajectory: Trajectory, salt: str, start_turn: int = 0) -> None:
        s = self.s
        s.trajectory_id = trajectory.trajectory_id
        s.turn_count = trajectory.turn_count
        history: list[dict[str, Any]] | None = None
        previous: Turn | None = None
        s.ready_at = time.monotonic()
        for k, turn in enumerate(trajectory.turns):
            if k < start_turn:
                continue
            if s.retiring:
                return
            if not self.resume.is_set():
                s.state = PAUSED
                await self.resume.wait()
                s.ready_at = time.monotonic()
            s.turn_index = k
            messages = self._messages(turn, previous, history, salt)
            body: dict[str, Any] = {
                "model": self.model, "messages": messages, "max_tokens": turn.target_output_tokens,
                "stream": True, "stream_options": {"include_usage": True}, **self.extra_body,
            }
            if self.policy == "exact":
                body["ignore_eos"] = True
            if turn.tools:
                body["tools"] = list(turn.tools)
            s.state = PREFILL
            result = StreamResult(t_send=time.monotonic())
            s.current = result  # filled in place: the table shows prefill until the first token, then decode
            try:
                result = await stream_chat(self.session, self.url, orjson.dumps(body), self.timeouts,
                                           keep_text=self.policy == "free", result=result, correlation_id=salt,
                                           routing_header=self.routing_header)
            finally:
                s.current = None
            self._record(trajectory, k, turn, messages, result)
            if self.policy == "free":
                history = messages + [result.assistant_message()]
            previous = turn
            if result.error:
                # AA (replay/runner.py _run_turn): a failed request produced no tool calls, so no
                # tool time follows it; a dead server must still not become a busy loop
                # (a short pause after a mid-stream failure too: a server failing every request
                # must not get them back to back)
                await asyncio.sleep(ERROR_BACKOFF_S if result.t_first is None else ERROR_BACKOFF_S / 10)
                s.ready_at = time.monotonic()
                continue
            s.state = TOOL
            s.ready_at = time.monotonic() + turn.tool_delay_s
            await asyncio.sleep(turn.tool_delay_s)

    def _messages(self, turn: Turn, previous: Turn | None, history: list[dict[str, Any]] | None,
                  salt: str) -> list[dict[str, Any]]:
        if self.policy == "free" and history is not None and previous is not None:
            # the model's own answer replaces the recorded one where the recording has its answer
            # (right after the messages this call shares with the previous one); the recorded tool
            # results and the rest of this call follow it
            shared = len(previous.messages) if turn.previous_prefix is None else turn.previous_prefix
            sent, answer = history[:-1], history[-1]
            recorded = turn.messages
            if shared < len(recorded) and recorded[shared].get("role") == "assistant" and shared <= len(sent):
                return sent[:shared] + [answer] + list(recorded[shared + 1:])
            return salted(recorded, salt)  # no recorded answer to replace: the call as recorded
        return salted(turn.messages, salt)

    def _record(self, trajectory: Trajectory, k: int, turn: Turn, messages: list[dict[str, Any]],
                result: StreamResult) -> None:
        s = self.s
        prompt = result.prompt_tokens
        if prompt is None:
            prompt = estimate_prompt_tokens(messages, len(orjson.dumps(turn.tools)) if turn.tools else 0)
        failed = result.error is not None
        cause = result.error or ""
        if not failed and self.policy == "exact":
            short = short_output(result.output_tokens, turn.target_output_tokens, result.finish_reason)
            if short:
                failed, cause = True, short
        record = RequestRecord(
            agent_id=s.agent_id, trajectory_id=trajectory.trajectory_id, turn_index=k,
            turn_count=trajectory.turn_count, prompt_tokens=prompt, cached_tokens=result.cached_tokens,
            output_tokens=result.output_tokens, target_tokens=turn.target_output_tokens, t_send=result.t_send,
            t_first=result.t_first, t_last=result.t_last, t_end=result.t_end,
            status=FAILED if failed else OK, cause=cause,
            dispatch_delay_s=max(0.0, result.t_send - s.ready_at) if s.ready_at else 0.0,
            usage=result.prompt_tokens is not None and result.completion_tokens is not None,
            request_id=result.request_id, correlation_id=result.correlation_id,
            streamed_chunks=result.counted_deltas,
        )
        s.requests += 1
        s.last_record = record
        s.context_tokens = record.context_tokens
        s.last_ttft_s = record.ttft_s
        if failed:
            s.failures += 1
            s.last_tps = None
        else:
            s.last_tps = record.output_tps
            if record.output_tps is not None:
                s.recent_tps.append(record.output_tps)
                s.rolling_tps = sum(s.recent_tps) / len(s.recent_tps)
        self.on_record(record)
