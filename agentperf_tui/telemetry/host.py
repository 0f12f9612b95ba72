"""Sample CPU% and RSS of this process and of the serving process tree with psutil.

The server tree is the root pid(s) returned by ``server_pids_fn`` plus all their descendants,
re-walked at every sample; processes that vanish or deny access between walks are skipped.
psutil's ``cpu_percent`` is a delta since the previous call on the same Process object, so
objects are cached per (pid, create_time): a process seen for the first time counts 0% once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import psutil

from agentperf_tui.telemetry.samples import HostSample

_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)
_MIB = 1048576.0


class HostMonitor:
    """CPU and memory of this process and, summed, of the server's process tree."""

    def __init__(self, server_pids_fn: Callable[[], Iterable[int] | int | None] | None = None) -> None:
        self._server_pids_fn = server_pids_fn
        self._me = psutil.Process()
        self._me.cpu_percent(None)  # prime the delta
        self._cache: dict[int, psutil.Process] = {}

    def _cached(self, proc: psutil.Process) -> psutil.Process:
        old = self._cache.get(proc.pid)
        if old is not None:
            try:
                if old.create_time() == proc.create_time():
                    return old
            except _GONE:
                pass
        self._cache[proc.pid] = proc
        return proc

    def _server_tree(self) -> list[psutil.Process]:
        if self._server_pids_fn is None:
            return []
        try:
            roots = self._server_pids_fn()
        except Exception:
            return []
        if roots is None:
            return []
        if isinstance(roots, int):
            roots = [roots]
        procs: dict[int, psutil.Process] = {}
        for pid in roots:
            try:
                root = psutil.Process(int(pid))
                tree = [root, *root.children(recursive=True)]
            except (*_GONE, ValueError, TypeError):
                continue
            for p in tree:
                procs.setdefault(p.pid, p)
        return [self._cached(p) for p in procs.values()]

    def sample(self, t_s: float | None = None) -> HostSample:
        """One HostSample; ``t_s`` defaults to ``time.monotonic()``."""
        if t_s is None:
            t_s = time.monotonic()
        try:
            with self._me.oneshot():
                cpu: float | None = self._me.cpu_percent(None)
                rss: float | None = self._me.memory_info().rss / _MIB
        except _GONE:
            cpu = rss = None

        server_cpu = server_rss = None
        alive = 0
        tree = self._server_tree()
        if tree:
            c_sum = r_sum = 0.0
            for p in tree:
                try:
                    with p.oneshot():
                        c = p.cpu_percent(None)
                        r = p.memory_info().rss
                except _GONE:
                    continue
                c_sum += c
                r_sum += r
                alive += 1
            if alive:
                server_cpu, server_rss = c_sum, r_sum / _MIB
        live = {p.pid for p in tree}
        for pid in list(self._cache):
            if pid not in live:
                del self._cache[pid]
        return HostSample(
            t_s=t_s,
            cpu_pct=cpu,
            rss_mib=rss,
            server_cpu_pct=server_cpu,
            server_rss_mib=server_rss,
            server_procs=alive,
        )
