"""Talk to a running SGLang server (or the twin) over HTTP: readiness, /server_info, fingerprint, flush.

All helpers are async (aiohttp) and never raise on an unreachable server except where stated:
``wait_ready`` raises :class:`ServerNotReady` with the last error once its timeout is spent;
``get_server_info`` raises :class:`ProbeError` when neither endpoint answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

# /server_info keys that change from run to run or while serving: not part of the fingerprint.
VOLATILE_KEYS = frozenset(
    {
        "internal_states",
        "memory_usage",
        "last_gen_throughput",
        "avg_spec_accept_length",
        "load",
        "status",
        "host",
        "port",
        "dcgm_port",
        "api_key",
        "admin_api_key",
        "pid",
        "uptime",
        "start_time",
        "startup_time",  # per launch
        "random_seed",  # SGLang 0.5.23 draws a new one at every launch when none is set
        "max_total_num_tokens",
        "unknown_args",
        "launch_command",  # the command line: carries the ports chosen at launch (the args themselves count)
        "version",  # a server's own; the fingerprint is of its configuration
        "frontend",
    }
)


class ProbeError(RuntimeError):
    """A probe that got no usable answer."""


class ServerNotReady(ProbeError):
    """wait_ready ran out of time; the message carries the last error seen."""


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _describe(exc: BaseException) -> str:
    """A short human reason for a failed request ("connection refused", "timeout after 5 s")."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        if isinstance(err, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect ({err.strerror or err})" if err else "cannot connect"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "no answer (timeout)"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def wait_ready(
    base_url: str,
    model: str,
    timeout_s: float,
    on_progress: Callable[[str], None] | None = None,
    api_key: str | None = None,
    *,
    poll_s: float = 0.25,
    progress_every_s: float = 1.0,
) -> str:
    """Poll until /health_generate answers 200 and /v1/models lists ``model``; return the served id.

    A server that serves exactly one model under another id (``--served-model-name``) is accepted
    with a note through ``on_progress``; several models without ``model`` among them is an error
    that keeps being retried (and is the final error). Progress lines come about every second:
    ``waiting for server: /health_generate -> connection refused (12 s / 900 s)``.
    """
    base = base_url.rstrip("/")
    report = on_progress or (lambda _msg: None)
    start = time.monotonic()
    deadline = start + timeout_s
    last_error = "no attempt yet"
    last_report = -progress_every_s
    stage = "/health_generate"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=2.0)
    async with aiohttp.ClientSession(timeout=timeout, headers=_headers(api_key)) as session:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerNotReady(
                    f"server at {base} not ready after {timeout_s:g} s: {stage} -> {last_error}"
                )
            per_request = aiohttp.ClientTimeout(total=max(0.1, min(5.0, remaining)), sock_connect=2.0)
            try:
                stage = "/health_generate"
                async with session.get(base + stage, timeout=per_request) as r:
                    body = await r.text()
                    if r.status != 200:
                        raise ProbeError(f"HTTP {r.status} {_short(body)}".rstrip())
                stage = "/v1/models"
                async with session.get(base + stage, timeout=per_request) as r:
                    body = await r.text()
                    if r.status != 200:
                        raise ProbeError(f"HTTP {r.status} {_short(body)}".rstrip())
                try:
                    ids = [m["id"] for m in orjson.loads(body)["data"]]
                except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                    raise ProbeError(f"unexpected body {_short(body)!r}") from exc
                if model in ids:
                    return model
                if len(ids) == 1:
                    report(
                        f"server lists model {ids[0]!r}, not {model!r}; it is the only one served, using it"
                    )
                    return ids[0]
                raise ProbeError(f"model {model!r} not served (served: {', '.join(ids) or 'none'})")
            except ProbeError as exc:
                last_error = str(exc)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                last_error = _describe(exc)
            now = time.monotonic()
            if now - last_report >= progress_every_s:
                last_report = now
                report(
                    f"waiting for server: {stage} -> {last_error} ({now - start:.0f} s / {timeout_s:.0f} s)"
                )
            await asyncio.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))


async def get_server_info(
    base_url: str, api_key: str | None = None, timeout_s: float = 10.0
) -> dict[str, Any]:
    """The server's arguments and state: /server_info, falling back to /get_server_info (older SGLang)."""
    base = base_url.rstrip("/")
    errors = []
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, headers=_headers(api_key)) as session:
        for path in ("/server_info", "/get_server_info"):
            try:
                async with session.get(base + path) as r:
                    body = await r.read()
                    if r.status != 200:
                        errors.append(f"{path} -> HTTP {r.status}")
                        continue
                info = orjson.loads(body)
                if isinstance(info, dict):
                    return info
                errors.append(f"{path} -> not a JSON object")
            except orjson.JSONDecodeError:
                errors.append(f"{path} -> not JSON")
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                errors.append(f"{path} -> {_describe(exc)}")
    raise ProbeError(f"no server info at {base}: " + "; ".join(errors))


def server_fingerprint(info: Mapping[str, Any]) -> str:
    """Short sha256 (12 hex) of the server's arguments, sorted; ports, memory and live state left out.

    Two runs with the same fingerprint ran the same server configuration.
    """
    args = info.get("server_args") if isinstance(info.get("server_args"), Mapping) else info
    stable = {k: v for k, v in args.items() if k not in VOLATILE_KEYS}
    blob = orjson.dumps(stable, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.sha256(blob).hexdigest()[:12]


async def flush_cache(base_url: str, api_key: str | None = None, timeout_s: float = 30.0) -> tuple[bool, str]:
    """POST /flush_cache (empties the radix/prefix cache). SGLang refuses while requests run."""
    base = base_url.rstrip("/")
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s), headers=_headers(api_key)
        ) as session:
            async with session.post(base + "/flush_cache") as r:
                text = _short(await r.text(), 200)
                return r.status == 200, text or f"HTTP {r.status}"
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return False, f"/flush_cache -> {_describe(exc)}"


async def set_internal_state(base_url: str, body: dict[str, Any], api_key: str | None = None,
                             timeout_s: float = 30.0) -> None:
    """POST /set_internal_state (SGLang 0.5.23: ``{"server_args": {key: number}}``, answered with one
    ``updated`` bool per scheduler); raises ProbeError unless every scheduler says it updated."""
    base = base_url.rstrip("/")
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s), headers=_headers(api_key)
        ) as session:
            async with session.post(base + "/set_internal_state", json=body) as r:
                text = await r.text()
                if r.status != 200:
                    raise ProbeError(f"{base}/set_internal_state -> HTTP {r.status}: {_short(text)}")
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise ProbeError(f"{base}/set_internal_state -> {_describe(exc)}") from exc
    try:
        updated = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProbeError(f"{base}/set_internal_state -> not JSON: {_short(text)}") from None
    flags = updated if isinstance(updated, list) else [updated.get("updated")] if isinstance(updated, dict) else []
    if not flags or not all(flag is True for flag in flags):
        raise ProbeError(f"{base}/set_internal_state refused {body['server_args']} (answer {_short(text)}); "
                         "SGLang logs why")
