"""Start, watch and stop the server processes of a profile (or, in attach mode, only probe the URL).

Each process of the launch plan runs in its own session / process group
(``create_subprocess_exec(..., start_new_session=True)``, never a shell), its merged
stdout/stderr streamed line by line to ``on_log`` and to ``log_dir/<name>.log``. An exit that
:meth:`Supervisor.stop` did not ask for is reported through ``on_exit(name, returncode,
last_lines)`` as soon as the process is reaped (well within 2 s). ``stop()`` sends SIGTERM to
every group, waits up to ``stop_timeout_s``, then SIGKILLs what is left. An ``atexit`` hook and
:func:`kill_all_now` SIGKILL every group still alive, so a crash of the tool leaves no orphan.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import importlib.util
import os
import signal
import socket
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar
from urllib.parse import urlsplit

from agentperf_tui.profile import API_KEY_FALLBACK_ENVS, Profile
from agentperf_tui.server.launch_plan import LaunchCommand, build_launch_plan, connect_host, substitute
from agentperf_tui.server.launch_plan import worker_urls as plan_worker_urls
from agentperf_tui.server.probe import wait_ready

T = TypeVar("T")
LAST_LINES = 20
READ_CHUNK = 64 * 1024
MAX_LINE = 64 * 1024  # longer lines are cut (a server printing a megabyte of JSON on one line)

LogCallback = Callable[[str, str], None]
ExitCallback = Callable[[str, "int | None", list[str]], None]


class ServerExited(RuntimeError):
    """A launched process exited while the server was starting."""


#: Modules a local process may run with this interpreter, and the extra that installs each.
EXTRAS = {"smg": "router", "sglang_router": "router", "sglang": "sglang"}


def _safe_for_a_key(url: str) -> bool:
    """A fallback key (one the profile did not name) goes only over https or to this machine, as
    aa-agentperf-local refuses to send a key over plain http to another host."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.hostname or "") in ("127.0.0.1", "localhost", "::1")


def missing_module_check(command: LaunchCommand, python: str) -> None:
    """Refuse, before anything starts, a local ``python -m MODULE`` this interpreter cannot import.

    (A router that dies with ModuleNotFoundError after 18 workers spent an hour loading is the
    failure this prevents.) Only this interpreter is checked: a tray's python3 is not ours to see.
    """
    argv = command.argv
    if (command.launcher != "local" or len(argv) < 3 or argv[0] != python or argv[1] != "-m"
            or python != sys.executable):  # find_spec answers for this interpreter only
        return
    top = argv[2].split(".")[0]
    if importlib.util.find_spec(top) is None:
        extra = EXTRAS.get(top)
        hint = f"pip install -e '.[{extra}]'" if extra else f"install {top} into {python}"
        raise ServerExited(f"{command.name}: module {argv[2]!r} is not installed for {python} ({hint})")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (bind port 0 and read it back)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class _Child:
    command: LaunchCommand
    proc: asyncio.subprocess.Process
    pgid: int
    last: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=LAST_LINES))
    log: IO[str] | None = None
    reader: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None
    returncode: int | None = None


_LIVE: weakref.WeakSet[Supervisor] = weakref.WeakSet()


def kill_all_now() -> None:
    """SIGKILL the process groups of every live supervisor (synchronous; last-resort cleanup)."""
    for sup in list(_LIVE):
        sup.kill_all_now()


atexit.register(kill_all_now)


class Supervisor:
    """Runs a profile's server processes (launch mode) or checks an existing server (attach mode)."""

    def __init__(
        self,
        profile: Profile,
        *,
        log_dir: Path | None = None,
        on_log: LogCallback | None = None,
        on_exit: ExitCallback | None = None,
        on_progress: Callable[[str], None] | None = None,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ):
        self.profile = profile
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.on_log = on_log or (lambda _name, _line: None)
        self.on_exit = on_exit or (lambda _name, _rc, _lines: None)
        self.on_progress = on_progress or (lambda _msg: None)
        self.python = python
        self.base_env = dict(os.environ if env is None else env)
        self.commands: list[LaunchCommand] = []
        self.served_model: str | None = None
        self._children: list[_Child] = []
        self._host = profile.server.host
        self._port = profile.server.port
        self._dcgm_port = profile.server.dcgm_port
        self._stopping = False
        self._stopped = False
        self._exited: asyncio.Queue[_Child] | None = None

    # -- properties -------------------------------------------------------------------------------
    @property
    def attach(self) -> bool:
        return self.profile.server.mode == "attach"

    @property
    def port(self) -> int:
        return self._port

    @property
    def dcgm_port(self) -> int:
        return self._dcgm_port

    @property
    def base_url(self) -> str:
        """The URL load goes to: [server] url with {host}/{port} filled in (the router's, if any)."""
        return self.resolve(self.profile.server.url).rstrip("/")

    @property
    def pids(self) -> list[int]:
        """PIDs of the launched processes still running (for host telemetry); empty in attach mode."""
        return [c.proc.pid for c in self._children if c.returncode is None and c.proc.returncode is None]

    @property
    def api_key(self) -> str | None:
        """The key from the variable the profile names; attached with none named, the first of
        ``SGLANG_API_KEY`` / ``OPENAI_API_KEY`` that is set (what OpenAI clients and SGLang read)."""
        name = self.profile.server.api_key_env
        if name:
            return self.base_env.get(name) or os.environ.get(name) or None
        if self.attach and _safe_for_a_key(self.base_url):
            return next((os.environ[n] for n in API_KEY_FALLBACK_ENVS if os.environ.get(n)), None)
        return None

    def resolve(self, template: str) -> str:
        """Fill {host} (as a connect address), {port} and {dcgm_port} into a URL template."""
        values = {"host": connect_host(self._host)}
        if self._port:
            values["port"] = str(self._port)
        if self._dcgm_port:
            values["dcgm_port"] = str(self._dcgm_port)
        return substitute(template, values)

    # -- start ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Launch every process, then wait until the server answers; raises ServerNotReady/ServerExited."""
        server = self.profile.server
        if self.attach:
            self.on_progress(f"attaching to {self.base_url}")
            self.served_model = await wait_ready(
                self.base_url, server.model, server.ready_timeout_s, self.on_progress, api_key=self.api_key
            )
            return
        if self._children:
            raise RuntimeError("Supervisor.start() called twice")
        uses_dcgm = any("{dcgm_port}" in a for p in self.profile.processes for a in p.argv) or any(
            "{dcgm_port}" in u for u in self.profile.telemetry.dcgm_urls
        )
        bind = connect_host(self._host)
        if not self._port:
            self._port = free_port(bind)
        if not self._dcgm_port and uses_dcgm:
            self._dcgm_port = free_port(bind)
        self.commands = build_launch_plan(
            self.profile,
            python=self.python,
            host=self._host,
            port=self._port,
            dcgm_port=self._dcgm_port or None,
        )
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        self._exited = asyncio.Queue()
        _LIVE.add(self)
        for command in self.commands:
            missing_module_check(command, self.python)
        started = time.monotonic()
        workers = [c for c in self.commands if c.role != "router"]
        routers = [c for c in self.commands if c.role == "router"]
        for command in workers:
            await self._spawn(command)
        worker_urls = [u for role in ("prefill", "decode") for u in plan_worker_urls(self.profile, role, self._host)]
        if routers and worker_urls:
            # the router starts only once every worker it is given answers: a router started first
            # marks slow-loading workers failed (its start-up timeout) or serves errors meanwhile
            self.on_progress(f"waiting for {len(worker_urls)} workers before starting the router")
            checks = [asyncio.ensure_future(wait_ready(
                url, server.model, server.ready_timeout_s,
                lambda msg, url=url: self.on_progress(f"{url}: {msg}"), api_key=self.api_key)) for url in worker_urls]
            try:
                await self._until_ready(asyncio.gather(*checks))
            finally:  # one failed or a worker exited: the other checks stop polling too
                for check in checks:
                    check.cancel()
                await asyncio.gather(*checks, return_exceptions=True)
            self.on_progress(f"all {len(worker_urls)} workers ready")
        for command in routers:
            await self._spawn(command)
        left_s = max(1.0, server.ready_timeout_s - (time.monotonic() - started))  # one budget for the whole start
        self.served_model = await self._until_ready(
            wait_ready(self.base_url, server.model, left_s, self.on_progress, api_key=self.api_key))

    async def _until_ready(self, waiting: Awaitable[T]) -> T:
        """Await ``waiting`` unless a launched process exits first (then ServerExited, naming it)."""
        ready = asyncio.ensure_future(waiting)
        died = asyncio.create_task(self._exited.get())
        try:
            done, _ = await asyncio.wait({ready, died}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            ready.cancel()
            died.cancel()
            raise
        if ready in done:
            died.cancel()
            return ready.result()
        ready.cancel()
        with contextlib.suppress(BaseException):
            await ready
        child = died.result()
        tail = " | ".join(line.strip() for line in list(child.last)[-5:]) or "(no output)"
        raise ServerExited(f"{child.command.name} exited with code {child.returncode} while starting: {tail}")

    async def _spawn(self, command: LaunchCommand) -> None:
        env = {**self.base_env, **command.env, "PYTHONUNBUFFERED": "1"}
        log = None
        if self.log_dir is not None:
            fd = os.open(self.log_dir / f"{command.name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            log = open(fd, "a", encoding="utf-8", buffering=1)  # noqa: SIM115  (0600: logs may hold paths)
            log.write(
                f"# {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {command.display_argv or command.argv}\n"
            )
        try:
            proc = await asyncio.create_subprocess_exec(
                *command.argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            if log:
                log.write(f"# cannot start: {exc}\n")
                log.close()
            raise ServerExited(f"{command.name}: cannot start {command.argv[0]!r}: {exc}") from exc
        child = _Child(command, proc, pgid=proc.pid, log=log)  # start_new_session: pgid == pid
        self._children.append(child)
        self.on_progress(f"started {command.name} ({command.role}) on {command.node}, pid {proc.pid}")
        child.reader = asyncio.create_task(self._read(child))
        child.watcher = asyncio.create_task(self._watch(child))

    async def _read(self, child: _Child) -> None:
        stream = child.proc.stdout
        assert stream is not None
        pending = b""
        while True:
            chunk = await stream.read(READ_CHUNK)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_LINE:
                lines.append(pending[:MAX_LINE])
                pending = b""
            for raw in lines:
                self._line(child, raw)
        if pending:
            self._line(child, pending)

    def _line(self, child: _Child, raw: bytes) -> None:
        line = raw[:MAX_LINE].decode("utf-8", errors="replace").rstrip("\r\n").replace("\r", "")
        child.last.append(line)
        if child.log:
            child.log.write(line + "\n")
        try:
            self.on_log(child.command.name, line)
        except Exception as exc:  # a broken sink must not stop the log pump
            print(f"agentperf-tui: on_log failed: {exc!r}", file=sys.stderr)

    async def _watch(self, child: _Child) -> None:
        rc = await child.proc.wait()
        child.returncode = rc
        # Let the reader drain what the process wrote last; a grandchild still holding the pipe
        # must not delay the report.
        if child.reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(child.reader), timeout=0.5)
        if child.log:
            child.log.write(f"# exited with code {rc}\n")
        if self._stopping:
            return
        if self._exited is not None:
            self._exited.put_nowait(child)
        try:
            self.on_exit(child.command.name, rc, list(child.last))
        except Exception as exc:
            print(f"agentperf-tui: on_exit failed: {exc!r}", file=sys.stderr)

    # -- stop -------------------------------------------------------------------------------------
    async def stop(self) -> None:
        """SIGTERM every process group, wait up to stop_timeout_s, SIGKILL the rest. Idempotent."""
        if self.attach or self._stopped:
            return
        self._stopping = True
        children = list(self._children)
        for child in children:
            _signal_group(child.pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.profile.server.stop_timeout_s
        while time.monotonic() < deadline and any(_group_alive(c.pgid) for c in children):
            await asyncio.sleep(0.05)
        killed = False
        for child in children:
            if _group_alive(child.pgid):
                self.on_progress(f"{child.command.name}: still running after SIGTERM, sending SIGKILL")
                _signal_group(child.pgid, signal.SIGKILL)
                killed = True
        # Orphaned group members killed above linger as zombies until init reaps them.
        deadline = time.monotonic() + 2.0
        while killed and time.monotonic() < deadline and any(_group_alive(c.pgid) for c in children):
            await asyncio.sleep(0.02)
        for child in children:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(child.proc.wait(), timeout=5.0)
        for child in children:
            for task in (child.reader, child.watcher):
                if task is not None and not task.done():
                    with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                        await asyncio.wait_for(task, timeout=1.0)
            if child.log:
                child.log.close()
                child.log = None
        self._stopped = True
        _LIVE.discard(self)

    def kill_all_now(self) -> None:
        """SIGKILL every group this supervisor started (synchronous; for atexit and crash paths)."""
        if self.attach:
            return
        self._stopping = True
        for child in self._children:
            _signal_group(child.pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """True while any process of the group exists (a zombie leader not yet reaped counts)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
