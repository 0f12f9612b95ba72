"""Streaming chat client: one OpenAI-compatible SSE request, timed on arrival of each chunk.

Raw bytes are handed over as each network read lands (``http_stream.StreamPool``) and split
into SSE events here, so every timestamp is taken when the bytes land, before any JSON decoding,
and long lines (tool-call arguments) need no line buffer. TTFT is the first event carrying a
token of any kind (reasoning, content or tool call); output tokens come from the final usage
chunk, falling back to counted deltas. Every error or timeout becomes a failed result with its
cause; nothing here raises for what a server or the network does.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from agentperf_tui.engine.http_stream import ABORT, Limits, StreamPool


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-request limits (s): to the first byte of the body, between chunks, and in total."""

    first_byte_s: float = 300.0
    chunk_s: float = 60.0
    total_s: float = 600.0


@dataclass(slots=True)
class StreamResult:
    """What one streamed request produced, with arrival times (time.monotonic seconds)."""

    t_send: float
    t_first: float | None = None
    t_last: float | None = None
    t_end: float = 0.0
    t_recv: float | None = None  # arrival of the latest bytes of the body (token or not): the stall clock
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    counted_deltas: int = 0
    finish_reason: str | None = None
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    keep_text: bool = False
    request_id: str = ""
    correlation_id: str = ""

    @property
    def output_tokens(self) -> int:
        return self.completion_tokens if self.completion_tokens is not None else self.counted_deltas

    def assistant_message(self) -> dict[str, Any]:
        """The assistant message the model produced (for the ``free`` replay policy)."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content)}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.get("id") or f"call_{i}", "type": "function",
                 "function": {"name": c.get("name", ""), "arguments": c.get("arguments", "")}}
                for i, c in sorted(self.tool_calls.items())
            ]
        return message


def make_session(api_key: str | None = None) -> StreamPool:
    """The load generator's connections: keep-alive, unbounded (one per request in flight), and
    the bearer token on every request when the profile names one."""
    return StreamPool({"Authorization": f"Bearer {api_key}"} if api_key else None)


REQUEST_ID_HEADER = "X-Request-Id"
CORRELATION_HEADER = "X-Correlation-ID"
ROUTING_HEADER = CORRELATION_HEADER  # the default routing-key header ([server] routing_key_header)
MAX_EVENT_BYTES = 64 * 2**20  # an SSE event still without its end after this many bytes fails the request


async def stream_chat(session: StreamPool, url: str, body: dict[str, Any] | bytes,
                      timeouts: Timeouts = Timeouts(), keep_text: bool = False,
                      result: StreamResult | None = None, correlation_id: str = "",
                      routing_header: str = ROUTING_HEADER) -> StreamResult:
    """POST a streaming chat completion and time it. Never raises (except cancellation).

    Every request carries a fresh ``X-Request-Id`` (kept in the result, so the record joins the
    server's and the router's logs). ``correlation_id`` (one value per conversation) goes out as
    ``X-Correlation-ID`` and, when a profile names another routing-key header (smg
    ``--routing-key-headers x-session-id``), under that name too: the header a session-affine
    router hashes on (NVIDIA's agentic recipes' nginx uses X-Correlation-ID). Servers that do not
    route on them ignore them.

    ``result``, when given, is filled in place while the request runs (the agent's live view).
    Each network read is handled as it lands (``StreamPool`` calls ``feed`` from the transport),
    so every timestamp is the read's arrival time; ``t_end`` is the arrival of ``[DONE]``.
    """
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    if result is None:
        result = StreamResult(t_send=0.0)
    result.t_send = time.monotonic()
    result.keep_text = keep_text
    result.request_id = uuid.uuid4().hex
    result.correlation_id = correlation_id
    headers = {REQUEST_ID_HEADER: result.request_id}
    if correlation_id:
        headers[CORRELATION_HEADER] = correlation_id
        if routing_header and routing_header.lower() != CORRELATION_HEADER.lower():
            headers[routing_header] = correlation_id
    buffer = b""  # the start of an event whose end has not arrived yet

    def feed(data: bytes, now: float) -> object:
        nonlocal buffer
        result.t_recv = now
        if buffer:
            data = buffer + data
        if data.endswith(b"\n\n"):  # the usual read: whole events only
            buffer = b""
        else:
            end = data.rfind(b"\n\n")
            if end < 0:
                buffer = data
                if len(buffer) > MAX_EVENT_BYTES:
                    result.error = f"an SSE event longer than {MAX_EVENT_BYTES} bytes"
                    result.t_end = now
                    return ABORT  # the connection closes: the server stops generating
                return False
            data, buffer = data[: end + 2], data[end + 2:]
        if _handle_block(result, data, now):
            result.t_end = now
            return True
        return False

    reply = await session.post(url, payload, headers, feed,
                               Limits(timeouts.first_byte_s, timeouts.chunk_s, timeouts.total_s))
    if reply.timed_out:
        phase = "first byte" if result.t_first is None else "next chunk"
        result.error = f"timeout waiting for {phase}"
    elif reply.error is not None:
        result.error = reply.error
    elif reply.status != 200:
        text = reply.body[:300].decode(errors="replace")
        result.error = f"HTTP {reply.status}: {_error_message(text)}"
    elif not result.t_end:  # the reply ended without [DONE]
        if buffer.strip():
            _handle_event(result, buffer, time.monotonic())
        if result.finish_reason is None and result.error is None:
            result.error = "stream ended without a finish_reason"
    if not result.t_end:
        result.t_end = time.monotonic()
    return result


def _error_message(text: str) -> str:
    try:
        data = orjson.loads(text)
        if isinstance(data, dict):
            return str(data.get("message") or data.get("error") or text)
    except orjson.JSONDecodeError:
        pass
    return text.strip()


_SPECIAL = (b'"usage":{', b'"finish_reason":"', b'"error"', b"[DONE]")


def _handle_block(result: StreamResult, block: bytes, now: float) -> bool:
    """Apply complete SSE events that arrived together (same arrival time); True on ``[DONE]``.

    Plain token chunks (the vast majority) are counted with a few C-level substring counts, never
    parsed. A block is plain when every event is a complete object still running (as many
    ``"finish_reason":null`` as events: SGLang's and vLLM's token chunks; a finish, a usage-only
    chunk, an error or ``[DONE]`` has none) and none carries usage; otherwise the run of events
    before the first one carrying usage, a finish reason, an error or ``[DONE]`` is counted and
    the rest parsed one by one. If any event of that run is not a complete JSON object, the whole
    block is parsed so the bad event is found and reported. With ``keep_text`` every event is parsed.

    The counts cannot be fooled by text: inside a JSON string every quote is escaped, so a pattern
    that starts with an unescaped quote (``"content":"``) only matches the structure, and a raw
    newline cannot occur in a string (a pattern with ``}\\n\\n`` ends an event).
    """
    if not result.keep_text:
        events = block.count(b"data:")
        if (block.count(b'"finish_reason":null') == events == block.count(b"}\n\n")
                and b'"usage":{' not in block):
            plain = block  # the usual block: token events only
        else:
            cut = len(block)
            for marker in _SPECIAL:
                i = block.find(marker)
                if 0 <= i < cut:
                    cut = i
            split = block.rfind(b"\n\n", 0, cut)
            plain = block[: split + 2] if split >= 0 else b""
            if plain and plain.count(b"data:") != plain.count(b"}\n\n"):  # an event is not a complete object
                plain = b""
        if plain:
            block = block[len(plain):]
            tokens = (plain.count(b'"content":"') - plain.count(b'"content":""')
                      + plain.count(b'"tool_calls":['))
            if b'"reasoning_content":"' in plain:
                tokens += plain.count(b'"reasoning_content":"') - plain.count(b'"reasoning_content":""')
            if tokens > 0:
                if result.t_first is None:
                    result.t_first = now
                result.t_last = now
                result.counted_deltas += tokens
            if not block:
                return False
    return any(_handle_event(result, event, now) for event in block.split(b"\n\n") if event.strip())


def _handle_event(result: StreamResult, event: bytes, now: float) -> bool:
    """Apply one SSE event (parsed as JSON); True once ``[DONE]`` arrives."""
    for line in event.split(b"\n"):
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return True
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            result.error = f"malformed SSE data: {payload[:80]!r}"
            continue
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk and not chunk.get("choices"):
            result.error = f"server error in stream: {_error_message(orjson.dumps(chunk['error']).decode())}"
            continue
        usage = chunk.get("usage")
        if usage and isinstance(usage, dict):
            result.prompt_tokens = usage.get("prompt_tokens")
            result.completion_tokens = usage.get("completion_tokens")
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict) and details.get("cached_tokens") is not None:
                result.cached_tokens = details["cached_tokens"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            got = False
            content = delta.get("content")
            if content:
                got = True
                if result.keep_text:
                    result.content.append(content)
            reasoning = delta.get("reasoning_content")
            if reasoning:
                got = True
                if result.keep_text:
                    result.reasoning.append(reasoning)
            for call in delta.get("tool_calls") or ():
                got = True
                if result.keep_text:
                    slot = result.tool_calls.setdefault(int(call.get("index", 0)), {})
                    if call.get("id"):
                        slot["id"] = call["id"]
                    function = call.get("function") or {}
                    if function.get("name"):
                        slot["name"] = function["name"]
                    slot["arguments"] = slot.get("arguments", "") + (function.get("arguments") or "")
            if got:
                if result.t_first is None:
                    result.t_first = now
                result.t_last = now
                result.counted_deltas += 1
            if choice.get("finish_reason"):
                result.finish_reason = choice["finish_reason"]
    return False
