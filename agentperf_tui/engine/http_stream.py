"""HTTP/1.1 streaming POSTs on asyncio protocols: the load generator's per-read hot path.

aiohttp hands every network read to its caller through a StreamReader, a future and a task
wake-up before the caller's coroutine resumes: at one SSE event a read (a server pacing tokens)
that is most of a stream's client cost. Here a read goes from the transport's ``data_received``
through httptools (llhttp, the parser uvicorn uses) straight to the caller's sink, synchronously,
with its arrival time; the request's coroutine wakes once, when the sink says the stream is done
or the exchange fails.

Connections are kept alive and pooled per (scheme, host, port); an idle one is reused for at most
``IDLE_KEEP_S`` (below uvicorn's 5 s keep-alive, so a reused connection is not one the server is
closing at that moment; a POST is never retried). TLS is asyncio's. Each request has one timer,
re-armed lazily when it fires (nothing per read): the first body byte within ``first_byte_s``,
then a gap between reads of at most ``chunk_s``, and ``total_s`` in all. A network failure is
returned as text in the ``Reply``, never raised; cancelling ``post`` closes the connection (the
server sees the disconnect and aborts the request, as SGLang does).

aiohttp stays for everything that is not a stream of tokens (probes, scrapes, the twin's server).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import httptools

# (body bytes of one read, arrival time) -> falsy to go on, True when the stream is done, ABORT when
# it is done and the connection must close (the server stops the request when the client leaves)
Sink = Callable[[bytes, float], object]
ABORT = "abort"
IDLE_KEEP_S = 4.0  # s an idle keep-alive connection may wait for its next request
ERROR_BODY_MAX = 4096  # bytes of a non-200 reply's body kept for its error message
USER_AGENT = "agentperf-tui"
CLOSED_BY_CLIENT = "client closed the connection (the load generator stopped)"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-request limits (s): to the first body byte, between reads of the body, and in total."""

    first_byte_s: float
    chunk_s: float
    total_s: float


@dataclass(slots=True)
class Reply:
    """How one exchange ended. ``error`` is set for a transport failure (connect, disconnect, a
    timeout, a malformed reply); a non-200 reply is not an error here: its status and the start
    of its body are returned for the caller to word."""

    status: int = 0
    error: str | None = None
    timed_out: bool = False
    body: bytes = b""


def _header_lines(headers: Mapping[str, str]) -> bytes:
    """``Name: value\\r\\n`` lines; a CR or LF in a name or value (header injection) is refused."""
    out = []
    for name, value in headers.items():
        if any(c in name or c in value for c in "\r\n") or not name or ":" in name:
            raise ValueError(f"invalid HTTP header {name!r}")
        out.append(f"{name}: {value}\r\n")
    return "".join(out).encode("latin-1")


@dataclass(frozen=True, slots=True)
class _Target:
    key: tuple[str, str, int]
    host: str
    port: int
    tls: bool
    head: bytes  # request line and fixed headers, up to the Content-Length value


class _Exchange:
    """One request on one connection, from the write to the end of its reply."""

    __slots__ = ("sink", "limits", "future", "reply", "t_start", "t_recv", "finished", "timer", "framed", "raised")

    def __init__(self, sink: Sink, limits: Limits, future: asyncio.Future[None], t_start: float):
        self.sink = sink
        self.limits = limits
        self.future = future
        self.reply = Reply()
        self.t_start = t_start  # when ``post`` was called: connecting counts against the limits
        self.raised: BaseException | None = None  # the sink's own exception, re-raised by ``post``
        self.t_recv: float | None = None  # arrival of the latest body bytes
        self.finished = False  # the caller has its answer (the connection may still be reading the reply's end)
        self.timer: asyncio.TimerHandle | None = None
        self.framed = False  # the reply has a length or chunked framing (so EOF before its end is a truncation)

    def finish(self, error: str | None = None, timed_out: bool = False) -> None:
        if self.finished:
            return
        self.finished = True
        if error is not None:
            self.reply.error = error
            self.reply.timed_out = timed_out
        if not self.future.done():
            self.future.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: feeds each read to httptools and the body to the exchange's sink."""

    def __init__(self, pool: StreamPool, key: tuple[str, str, int]):
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.exchange: _Exchange | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.pieces: list[bytes] = []
        self.complete = False  # the current reply's end was parsed
        self.keep_alive = False  # the current reply lets the connection serve another request
        self.interim = False  # the message being parsed is a 1xx (100 Continue, 103 Early Hints): not the reply
        self.surplus = False  # bytes after the reply's end: the connection is out of step, never reused
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # bytes on an idle connection: the server is confused; do not reuse it
            self.close()
            return
        now = time.monotonic()
        try:
            self.parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserUpgrade:
            exchange.finish(f"HTTP {exchange.reply.status}: the server switched protocols")
            self.close()
            return
        except httptools.HttpParserError as exc:
            exchange.finish(f"malformed HTTP reply: {exc}")
            self.close()
            return
        pieces = self.pieces
        if pieces:
            block = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            pieces.clear()
            if exchange.t_recv is None:  # from now on the limit is the gap between reads: it can only move later
                exchange.t_recv = now
                if exchange.timer is not None:
                    exchange.timer.cancel()
                    self._check_time()
            exchange.t_recv = now
            reply = exchange.reply
            if reply.status == 200:
                if not exchange.finished:
                    try:
                        verdict = exchange.sink(block, now)
                    except Exception as exc:  # the caller's bug: surfaces from post(), not as a network cause
                        exchange.raised = exc
                        verdict = ABORT
                    if verdict:
                        exchange.finish()
                        if verdict is ABORT:
                            self.close()
                            return
            elif len(reply.body) < ERROR_BODY_MAX:
                reply.body += block[: ERROR_BODY_MAX - len(reply.body)]
        if self.complete:
            self._reply_ended(exchange)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            return
        if exchange.timer is not None:
            exchange.timer.cancel()
        if self.pool.closing:
            exchange.finish(CLOSED_BY_CLIENT)
        elif exchange.reply.status == 0:
            exchange.finish("server disconnected" + (f": {exc}" if exc else ""))
        elif exchange.framed:
            exchange.finish("truncated stream: the connection closed before the reply ended")
        else:  # a reply delimited by the end of the connection: this is its end
            exchange.finish()

    # -- httptools callbacks (only those defined are called) -----------------------------------
    def on_message_begin(self) -> None:
        if self.complete:  # a second message after the reply, in the same read
            self.surplus = True

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self.exchange.framed = True  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        parser = self.parser
        status = parser.get_status_code()  # type: ignore[union-attr]
        self.interim = 100 <= status < 200 and status != 101
        if self.interim:
            return
        self.exchange.reply.status = status  # type: ignore[union-attr]
        self.keep_alive = parser.should_keep_alive()  # type: ignore[union-attr]  # (reset once the reply ends)

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.pieces.append(body)

    def on_message_complete(self) -> None:
        if self.interim:  # the real reply follows on the same connection
            self.interim = False
            if self.exchange is not None:
                self.exchange.framed = False
            return
        self.complete = True

    # -- the exchange's life -----------------------------------------------------------------
    def start(self, exchange: _Exchange, request: bytes) -> None:
        self.exchange = exchange
        self.parser = httptools.HttpResponseParser(self)
        self.complete = self.keep_alive = self.interim = False
        self._check_time()  # arms the timer for what is left of the first-byte and total limits
        if not exchange.finished:  # (connecting may have used them up)
            self.transport.write(request)  # type: ignore[union-attr]

    def _reply_ended(self, exchange: _Exchange) -> None:
        keep = self.keep_alive and not self.surplus
        self.exchange = None
        if exchange.timer is not None:
            exchange.timer.cancel()
        exchange.finish()
        if keep and not self.closed and not self.transport.is_closing():  # type: ignore[union-attr]
            self.pool._release(self)
        else:
            self.close()

    def _check_time(self) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        limits = exchange.limits
        limit = min(exchange.t_start + limits.total_s,
                    exchange.t_start + limits.first_byte_s if exchange.t_recv is None
                    else exchange.t_recv + limits.chunk_s)
        left = limit - time.monotonic()
        if left > 0.001:
            exchange.timer = asyncio.get_running_loop().call_later(left, self._check_time)
            return
        exchange.timer = None
        exchange.finish("timeout", timed_out=True)  # a no-op when the caller already has its answer
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class StreamPool:
    """Keep-alive connections for streamed POSTs, with headers every request carries."""

    def __init__(self, headers: Mapping[str, str] | None = None, ssl_context: ssl.SSLContext | None = None):
        self._fixed = _header_lines({"User-Agent": USER_AGENT, "Accept": "text/event-stream",
                                     "Content-Type": "application/json", **(headers or {})})
        self._ssl = ssl_context
        self.closing = False  # close() was called: nothing is pooled or opened from now on
        self._targets: dict[str, _Target] = {}
        self._idle: dict[tuple[str, str, int], dict[_Connection, None]] = {}
        self._all: set[_Connection] = set()
        self.connections_opened = 0

    async def __aenter__(self) -> StreamPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {url!r}")
            tls = parts.scheme == "https"
            port = parts.port or (443 if tls else 80)
            path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~") + (
                f"?{quote(parts.query, safe='/%:@!$&()*+,;=-._~?')}" if parts.query else "")
            host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
            if ":" in parts.hostname:  # IPv6 literal
                host_header = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
            auth = b""
            if parts.username is not None and b"Authorization:" not in self._fixed:  # user:password@ (aiohttp's rule)
                token = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
                auth = _header_lines({"Authorization": f"Basic {token}"})
            head = b"POST %s HTTP/1.1\r\nHost: %s\r\n%s%s" % (path.encode("ascii"), host_header.encode("idna"),
                                                             self._fixed, auth)
            target = _Target((parts.scheme, parts.hostname, port), parts.hostname, port, tls, head)
            self._targets[url] = target
        return target

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], sink: Sink, limits: Limits) -> Reply:
        """Send one POST and feed its 200 body to ``sink`` as it arrives; return how it ended.

        The limits count from this call (connecting included). An exception the sink raises is
        raised here, after the connection is closed."""
        loop = asyncio.get_running_loop()
        t_start = time.monotonic()
        if self.closing:
            return Reply(error=CLOSED_BY_CLIENT)
        try:
            target = self._target(url)
            request = b"%s%sContent-Length: %d\r\n\r\n%s" % (target.head, _header_lines(headers), len(body), body)
        except ValueError as exc:
            return Reply(error=str(exc))
        connection = self._reuse(target.key)
        if connection is None:
            try:
                async with asyncio.timeout(min(limits.first_byte_s, limits.total_s)):
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self, target.key), target.host, target.port,
                        ssl=self._tls_context() if target.tls else None)
            except TimeoutError:
                return Reply(error="timeout", timed_out=True)
            except OSError as exc:
                return Reply(error=f"connect failed: {exc}")
            if self.closing:  # close() ran while this connection was being opened
                connection.close()
                return Reply(error=CLOSED_BY_CLIENT)
            self.connections_opened += 1
            self._all.add(connection)
        exchange = _Exchange(sink, limits, loop.create_future(), t_start)
        connection.start(exchange, request)
        try:
            await exchange.future
        except asyncio.CancelledError:
            connection.close()  # mid-reply: never reused
            raise
        if exchange.raised is not None:
            raise exchange.raised
        return exchange.reply

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()  # once: loading the CA store takes milliseconds
        return self._ssl

    def _reuse(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection, _ = idle.popitem()
            if not connection.closed and now - connection.idle_since < IDLE_KEEP_S:
                return connection
            connection.close()
        return None

    def _release(self, connection: _Connection) -> None:
        if self.closing:
            connection.close()
            return
        now = time.monotonic()
        connection.idle_since = now
        idle = self._idle.setdefault(connection.key, {})
        while idle:  # the oldest idle ones past their keep-alive are closed, not left to the server
            oldest = next(iter(idle))
            if now - oldest.idle_since < IDLE_KEEP_S:
                break
            del idle[oldest]
            oldest.close()
        idle[connection] = None

    def _forget(self, connection: _Connection) -> None:
        self._all.discard(connection)
        idle = self._idle.get(connection.key)
        if idle is not None:
            idle.pop(connection, None)

    async def close(self) -> None:
        """Close every connection, idle or mid-reply (a request still running fails with its cause)."""
        self.closing = True
        for connection in list(self._all):
            connection.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run connection_lost
