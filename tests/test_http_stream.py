"""The load generator's HTTP/1.1 transport (engine/http_stream.py) against a raw loopback server
that writes exactly the bytes each test wants: keep-alive reuse and its limits, framing, reads
split anywhere, truncation, stalls, cancellation, errors and header safety."""

from __future__ import annotations

import asyncio
import base64
import random
import shutil
import ssl
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentperf_tui.engine import http_stream
from agentperf_tui.engine.client import StreamResult, Timeouts, make_session, stream_chat
from agentperf_tui.engine.http_stream import Limits, StreamPool

LIMITS = Limits(first_byte_s=5, chunk_s=5, total_s=10)


def token_event(text: str = "tok") -> bytes:
    return (b'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"%s"},'
            b'"finish_reason":null}]}\n\n' % text.encode())


def sse_body(tokens: int) -> bytes:
    return (token_event() * tokens
            + b'data: {"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n'
            + b'data: {"id":"x","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":%d}}\n\n' % tokens
            + b"data: [DONE]\n\n")


def chunked(body: bytes, pieces: int = 4) -> bytes:
    step = max(1, len(body) // pieces)
    parts = [body[i:i + step] for i in range(0, len(body), step)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


class RawServer:
    """Loopback server: reads one request head + body, then runs ``reply(writer, request, n)``."""

    def __init__(self, reply):  # type: ignore[no-untyped-def]
        self.reply = reply
        self.connections = 0
        self.open = 0  # connections the client has not closed yet
        self.requests: list[bytes] = []
        self.disconnected = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if await self.reply(writer, request, len(self.requests)) == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            self.disconnected.set()
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


async def ok_reply(writer, request, n):  # type: ignore[no-untyped-def]
    writer.write(OK_HEAD + chunked(sse_body(20)))
    await writer.drain()


async def tokens_forever(writer, request, n):  # type: ignore[no-untyped-def]
    writer.write(OK_HEAD)
    while True:
        writer.write(b"%x\r\n%s\r\n" % (len(token_event()), token_event()))
        await writer.drain()
        await asyncio.sleep(0.01)


async def test_keep_alive_reuses_one_connection_and_sends_the_headers():
    server = RawServer(ok_reply)
    async with server as url, make_session(api_key="sekrit") as pool:
        for _ in range(3):
            result = await stream_chat(pool, url, {"messages": []}, correlation_id="conv-1")
            assert result.error is None and result.completion_tokens == 20 and result.counted_deltas == 20
            assert result.t_send < result.t_first <= result.t_last <= result.t_end
    assert server.connections == 1 and pool.connections_opened == 1
    head = server.requests[0].split(b"\r\n\r\n")[0].decode()
    assert "POST /v1/chat/completions HTTP/1.1" in head and "Host: 127.0.0.1:" in head
    assert "Authorization: Bearer sekrit" in head and "X-Correlation-ID: conv-1" in head
    body_length = len(b'{"messages":[]}')
    assert head.endswith(f"Content-Length: {body_length}")


async def test_an_idle_connection_past_its_keep_alive_is_not_reused(monkeypatch):
    monkeypatch.setattr(http_stream, "IDLE_KEEP_S", 0.05)
    server = RawServer(ok_reply)
    async with server as url, make_session() as pool:
        assert (await stream_chat(pool, url, b"{}")).error is None
        await asyncio.sleep(0.1)
        assert (await stream_chat(pool, url, b"{}")).error is None
    assert server.connections == 2


async def test_connection_close_reply_and_a_reply_ended_by_eof_both_succeed():
    async def close_after(writer, request, n):  # type: ignore[no-untyped-def]
        if n == 1:  # chunked, then Connection: close
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + chunked(sse_body(5)))
        else:  # no length at all: the body ends with the connection
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + sse_body(5)[:-len(b"data: [DONE]\n\n")])
        await writer.drain()
        return "close"

    server = RawServer(close_after)
    async with server as url, make_session() as pool:
        first = await stream_chat(pool, url, b"{}")
        second = await stream_chat(pool, url, b"{}")
    assert first.error is None and first.completion_tokens == 5
    assert second.error is None and second.completion_tokens == 5 and second.finish_reason == "length"
    assert server.connections == 2


async def test_a_chunked_reply_cut_mid_stream_is_a_truncation():
    async def cut(writer, request, n):  # type: ignore[no-untyped-def]
        writer.write(OK_HEAD + b"%x\r\n%s\r\n" % (len(token_event() * 3), token_event() * 3))
        await writer.drain()
        return "close"

    async with RawServer(cut) as url, make_session() as pool:
        result = await stream_chat(pool, url, b"{}")
    assert result.error is not None and result.error.startswith("truncated stream")
    assert result.counted_deltas == 3


async def test_a_disconnect_before_any_reply_is_server_disconnected():
    async def hang_up(writer, request, n):  # type: ignore[no-untyped-def]
        return "close"

    async with RawServer(hang_up) as url, make_session() as pool:
        result = await stream_chat(pool, url, b"{}")
    assert result.error == "server disconnected"


async def test_a_stall_between_reads_times_out_and_the_connection_is_not_reused():
    async def stall(writer, request, n):  # type: ignore[no-untyped-def]
        if n == 1:
            writer.write(OK_HEAD + b"%x\r\n%s\r\n" % (len(token_event()), token_event()))
            await writer.drain()
            await asyncio.sleep(3)
        else:
            await ok_reply(writer, request, n)

    server = RawServer(stall)
    async with server as url, make_session() as pool:
        stalled = await stream_chat(pool, url, b"{}", Timeouts(first_byte_s=5, chunk_s=0.3, total_s=10))
        after = await stream_chat(pool, url, b"{}")
    assert stalled.error == "timeout waiting for next chunk"
    assert 0.3 <= stalled.t_end - stalled.t_recv < 1.5
    assert after.error is None and server.connections == 2


async def test_the_first_byte_limit_and_the_total_limit():
    async def slow(writer, request, n):  # type: ignore[no-untyped-def]
        if n == 1:
            await asyncio.sleep(2)
        else:  # a token every 0.1 s: never a gap over chunk_s, but past the total
            writer.write(OK_HEAD)
            for _ in range(30):
                writer.write(b"%x\r\n%s\r\n" % (len(token_event()), token_event()))
                await writer.drain()
                await asyncio.sleep(0.1)
        return "close"

    async with RawServer(slow) as url, make_session() as pool:
        no_byte = await stream_chat(pool, url, b"{}", Timeouts(first_byte_s=0.3, chunk_s=0.3, total_s=10))
        too_long = await stream_chat(pool, url, b"{}", Timeouts(first_byte_s=5, chunk_s=0.5, total_s=0.8))
    assert no_byte.error == "timeout waiting for first byte"
    assert too_long.error == "timeout waiting for next chunk" and 0.8 <= too_long.t_end - too_long.t_send < 1.5
    assert too_long.counted_deltas >= 5


async def test_an_error_status_keeps_its_message_and_the_connection():
    async def refuse(writer, request, n):  # type: ignore[no-untyped-def]
        body = b'{"object":"error","message":"context too long","code":400}'
        if n == 1:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        else:
            await ok_reply(writer, request, n)
        await writer.drain()

    server = RawServer(refuse)
    async with server as url, make_session() as pool:
        bad = await stream_chat(pool, url, b"{}")
        good = await stream_chat(pool, url, b"{}")
    assert bad.error == "HTTP 400: context too long"
    assert good.error is None and server.connections == 1


async def test_a_malformed_reply_and_a_refused_connection_are_causes():
    async def garbage(writer, request, n):  # type: ignore[no-untyped-def]
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async with RawServer(garbage) as url, make_session() as pool:
        bad = await stream_chat(pool, url, b"{}")
        refused = await stream_chat(pool, "http://127.0.0.1:9/v1/chat/completions", b"{}")
    assert bad.error is not None and bad.error.startswith("malformed HTTP reply")
    assert refused.error is not None and refused.error.startswith("connect failed")


async def test_cancelling_a_request_closes_its_connection():
    server = RawServer(tokens_forever)
    async with server as url, make_session() as pool:
        result = StreamResult(t_send=0.0)
        task = asyncio.create_task(stream_chat(pool, url, b"{}", result=result))
        while result.counted_deltas < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.disconnected.wait(), 5)  # the server saw the client leave


async def test_closing_the_pool_fails_a_running_request_instead_of_hanging():
    async def forever(writer, request, n):  # type: ignore[no-untyped-def]
        writer.write(OK_HEAD)
        await writer.drain()
        await asyncio.sleep(30)

    async with RawServer(forever) as url:
        pool = make_session()
        task = asyncio.create_task(stream_chat(pool, url, b"{}"))
        await asyncio.sleep(0.2)
        await pool.close()
        result = await asyncio.wait_for(task, 5)
    assert result.error is not None


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent():
    server = RawServer(ok_reply)
    async with server as url, StreamPool() as pool:
        reply = await pool.post(url, b"{}", {"X-Session": "a\r\nX-Evil: 1"}, lambda data, now: False, LIMITS)
    assert reply.error is not None and "invalid HTTP header" in reply.error
    assert server.requests == []
    with pytest.raises(ValueError):
        StreamPool({"Authorization": "Bearer x\nInjected: y"})


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), tokens=st.integers(1, 60), chunks=st.integers(1, 12))
def test_any_split_of_the_bytes_gives_the_same_result(seed, tokens, chunks):
    """Whatever the HTTP chunking and however the bytes are cut into writes (inside an event, a
    chunk header, the CRLFs), the tokens, usage and finish are the same."""
    wire = OK_HEAD + chunked(sse_body(tokens), chunks)
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(wire)), min(len(wire) - 1, rng.randint(1, 25))))

    async def split(writer, request, n):  # type: ignore[no-untyped-def]
        for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
            writer.write(wire[a:b])
            await writer.drain()
            await asyncio.sleep(0)

    async def run() -> StreamResult:
        async with RawServer(split) as url, make_session() as pool:
            return await stream_chat(pool, url, b"{}")

    result = asyncio.run(run())
    assert result.error is None
    assert (result.counted_deltas, result.completion_tokens, result.prompt_tokens, result.finish_reason) == (
        tokens, tokens, 7, "length")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
async def test_https_streams_over_asyncio_tls_and_checks_the_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server = RawServer(ok_reply)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=server_tls)
    url = f"https://127.0.0.1:{listener.sockets[0].getsockname()[1]}/v1/chat/completions"
    try:
        async with StreamPool(ssl_context=ssl.create_default_context(cafile=str(cert))) as pool:
            results = [await stream_chat(pool, url, b"{}") for _ in range(2)]
        async with StreamPool() as untrusting:  # the system's CAs do not know a self-signed certificate
            refused = await stream_chat(untrusting, url, b"{}")
    finally:
        listener.close()
    assert all(r.error is None and r.completion_tokens == 20 for r in results)
    assert server.connections == 1  # one kept alive for both (the refused one never finished its handshake)
    assert refused.error is not None and "CERTIFICATE_VERIFY_FAILED" in refused.error


def slow_connect(monkeypatch, seconds: float) -> None:
    """Every new connection takes ``seconds`` longer to open."""
    loop = asyncio.get_running_loop()
    real = loop.create_connection

    async def create_connection(*args, **kwargs):  # type: ignore[no-untyped-def]
        await asyncio.sleep(seconds)
        return await real(*args, **kwargs)

    monkeypatch.setattr(loop, "create_connection", create_connection)


async def test_connecting_counts_against_the_total_limit(monkeypatch):
    async def steady(writer, request, n):  # type: ignore[no-untyped-def]
        writer.write(OK_HEAD)
        for _ in range(8):  # 0.8 s of tokens, a gap of 0.1 s each
            writer.write(b"%x\r\n%s\r\n" % (len(token_event()), token_event()))
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.write(chunked(sse_body(0)))
        await writer.drain()

    slow_connect(monkeypatch, 0.6)
    async with RawServer(steady) as url, make_session() as pool:
        result = await stream_chat(pool, url, b"{}", Timeouts(first_byte_s=5, chunk_s=0.5, total_s=1.0))
    assert result.error == "timeout waiting for next chunk"
    assert 1.0 <= result.t_end - result.t_send < 1.4


async def test_closing_the_pool_while_a_connection_opens_leaves_nothing_open(monkeypatch):
    slow_connect(monkeypatch, 0.3)
    server = RawServer(ok_reply)
    async with server as url:
        pool = make_session()
        task = asyncio.create_task(stream_chat(pool, url, b"{}"))
        await asyncio.sleep(0.1)
        await pool.close()
        result = await asyncio.wait_for(task, 5)
        await asyncio.sleep(0.1)
        assert result.error is not None and "client closed" in result.error
        assert server.open == 0 and not pool._all and not any(pool._idle.values())


async def test_an_exception_in_the_sink_is_raised_from_post_and_closes_the_connection():
    def sink(data: bytes, now: float) -> bool:
        raise ZeroDivisionError("the caller's bug")

    server = RawServer(tokens_forever)
    async with server as url, StreamPool() as pool:
        with pytest.raises(ZeroDivisionError):
            await pool.post(url, b"{}", {}, sink, LIMITS)
        await asyncio.wait_for(server.disconnected.wait(), 5)


async def test_interim_1xx_replies_are_skipped_and_the_connection_stays_in_step():
    async def with_interim(writer, request, n):  # type: ignore[no-untyped-def]
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the interim reply arrives in a read of its own
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + OK_HEAD + chunked(sse_body(4)))
        await writer.drain()

    server = RawServer(with_interim)
    async with server as url, make_session() as pool:
        results = [await stream_chat(pool, url, b"{}") for _ in range(2)]
    assert [(r.error, r.completion_tokens) for r in results] == [(None, 4), (None, 4)]
    assert server.connections == 1


async def test_a_protocol_switch_is_a_cause_not_a_crash():
    async def upgrade(writer, request, n):  # type: ignore[no-untyped-def]
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with RawServer(upgrade) as url, make_session() as pool:
        result = await stream_chat(pool, url, b"{}")
    assert result.error == "HTTP 101: the server switched protocols"


async def test_idle_connections_past_their_keep_alive_are_closed_not_kept(monkeypatch):
    monkeypatch.setattr(http_stream, "IDLE_KEEP_S", 0.2)
    server = RawServer(ok_reply)
    async with server as url, make_session() as pool:
        await asyncio.gather(*(stream_chat(pool, url, b"{}") for _ in range(5)))  # a burst: 5 connections
        assert server.open == 5
        for _ in range(8):  # then one request at a time: the newest connection serves them
            assert (await stream_chat(pool, url, b"{}")).error is None
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)
        assert server.open == 1


async def test_an_endless_event_aborts_the_request(monkeypatch):
    from agentperf_tui.engine import client

    monkeypatch.setattr(client, "MAX_EVENT_BYTES", 10_000)

    async def endless(writer, request, n):  # type: ignore[no-untyped-def]
        writer.write(OK_HEAD)
        writer.write(b"%x\r\n%s\r\n" % (14, b'data: {"id":"x'))
        while True:
            writer.write(b"%x\r\n%s\r\n" % (1000, b"x" * 1000))
            await writer.drain()
            await asyncio.sleep(0.001)

    server = RawServer(endless)
    async with server as url, make_session() as pool:
        result = await stream_chat(pool, url, b"{}")
        await asyncio.wait_for(server.disconnected.wait(), 5)  # the server saw the client leave
    assert result.error is not None and "longer than 10000 bytes" in result.error


async def test_the_path_is_percent_encoded_and_userinfo_becomes_basic_auth():
    server = RawServer(ok_reply)
    async with server as url, make_session() as pool:
        spaced = url.replace("http://", "http://user:p%40ss@").replace("/v1/chat/completions", "/v1/a b?x=1 2")
        assert (await stream_chat(pool, spaced, b"{}")).error is None
    head = server.requests[0].split(b"\r\n\r\n")[0].decode()
    assert head.startswith("POST /v1/a%20b?x=1%202 HTTP/1.1\r\n")
    assert "Authorization: Basic " + base64.b64encode(b"user:p@ss").decode() in head


async def test_a_usage_chunk_of_the_wrong_shape_does_not_crash_the_agent():
    async def odd_usage(writer, request, n):  # type: ignore[no-untyped-def]
        body = (token_event() * 3 + b'data: {"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
                b'"usage":{"prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":[1]}}\n\n'
                + b"data: [DONE]\n\n")
        writer.write(OK_HEAD + chunked(body))
        await writer.drain()

    async with RawServer(odd_usage) as url, make_session() as pool:
        result = await stream_chat(pool, url, b"{}")
    assert result.error is None and result.completion_tokens == 3 and result.cached_tokens is None
