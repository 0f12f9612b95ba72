"""Periodically collect GPU power, SGLang metrics and host load on the engine's asyncio loop.

``TelemetrySampler`` runs two tasks on the loop that calls ``start()`` (the engine's, never a UI
loop): a power task (NVML and every dcgm-exporter URL, merged into one PowerReading per tick,
default every 0.2 s) and a metrics task (SGLang ``/metrics`` and host CPU/RSS, default every
1 s). Results go to ``on_sample(obj)``; problems go to ``on_note(str)``, once per failing source
until it recovers (then one "recovered" note). Nothing here raises into the caller's loop.

Power is integrated from the energy counters, not from sampled watts: ``average_power_w``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from urllib.parse import urlsplit

import aiohttp

from agentperf_tui.telemetry.dcgm import merge_readings, parse_dcgm
from agentperf_tui.telemetry.energy import EnergySnapshot
from agentperf_tui.telemetry.host import HostMonitor
from agentperf_tui.telemetry.nvml import NvmlReader
from agentperf_tui.telemetry.samples import HostSample, PowerReading, ServerMetrics
from agentperf_tui.telemetry.sglang_metrics import merge_worker_samples, prom_samples, scrape


class PowerSourceError(RuntimeError):
    """The profile's power boundary has no source that answers: refused, never relabelled."""


class BoundaryEnergy:
    """One poll of every Redfish source of a boundary ("node" or "rack"), merged into one snapshot."""

    __slots__ = ("boundary", "snapshot")

    def __init__(self, boundary: str, snapshot: EnergySnapshot):
        self.boundary = boundary
        self.snapshot = snapshot


Sample = PowerReading | ServerMetrics | HostSample | BoundaryEnergy


def average_power_w(first: PowerReading, last: PowerReading) -> float | None:
    """Mean total power between two readings = energy-counter delta / time delta.

    None when the readings do not cover the same GPUs, any energy counter is missing, a counter
    went backwards (driver reload) or no time passed.
    """
    dt = last.t_s - first.t_s
    if dt <= 0:
        return None
    a, b = first.energy_by_gpu(), last.energy_by_gpu()
    if not a or a.keys() != b.keys():
        return None
    total = 0.0
    for key, e1 in b.items():
        e0 = a[key]
        if e0 is None or e1 is None or e1 < e0:
            return None
        total += e1 - e0
    return total / dt


class TelemetrySampler:
    """Background collection of PowerReading, ServerMetrics and HostSample objects."""

    def __init__(
        self,
        *,
        dcgm_urls: Iterable[str] = (),
        sglang_metrics_url: str | None = None,
        sglang_metrics_sources: Sequence[tuple[str, Sequence[str]]] = (),
        use_nvml: bool = True,
        server_pids_fn: Callable[[], Iterable[int] | int | None] | None = None,
        on_sample: Callable[[Sample], None],
        on_note: Callable[[str], None],
        power_interval_s: float = 0.2,
        metrics_interval_s: float = 1.0,
        timeout_s: float = 1.0,
        nvml_reader: NvmlReader | None = None,
        host_monitor: HostMonitor | None = None,
        node_power_urls: Iterable[str] = (),
        rack_power_urls: Iterable[str] = (),
        redfish_user_env: str = "",
        redfish_password_env: str = "",
        redfish_interval_s: float = 1.0,
    ) -> None:
        from agentperf_tui.telemetry.redfish import RedfishPowerReader

        self.redfish = [RedfishPowerReader(u, b, username_env=redfish_user_env, password_env=redfish_password_env)
                        for b, urls in (("node", node_power_urls), ("rack", rack_power_urls)) for u in urls]
        self.redfish_interval_s = redfish_interval_s
        self.dcgm_urls = list(dcgm_urls)
        # (worker, its nodes' /metrics URLs): every serving process of the deployment
        self.sglang_metrics_sources = [(w, list(urls)) for w, urls in sglang_metrics_sources] or (
            [("server", [sglang_metrics_url])] if sglang_metrics_url else [])
        self.use_nvml = use_nvml
        self.power_interval_s = power_interval_s
        self.metrics_interval_s = metrics_interval_s
        self.timeout_s = timeout_s
        self._on_sample = on_sample
        self._on_note = on_note
        self._nvml = nvml_reader if nvml_reader is not None else (NvmlReader() if use_nvml else None)
        self._server_pids_fn = server_pids_fn
        self._host = host_monitor
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._failing: dict[str, bool] = {}
        self._callback_failed = False

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    # -- reporting -------------------------------------------------------------------------

    def _note(self, msg: str) -> None:
        with contextlib.suppress(Exception):  # a broken note sink must not stop sampling
            self._on_note(msg)

    def _emit(self, obj: Sample) -> None:
        try:
            self._on_sample(obj)
        except Exception as exc:
            if not self._callback_failed:
                self._callback_failed = True
                self._note(f"telemetry: on_sample raised {type(exc).__name__}: {exc}")

    def _fail(self, source: str, exc: BaseException | str) -> None:
        if not self._failing.get(source):
            self._failing[source] = True
            detail = exc if isinstance(exc, str) else (f"{type(exc).__name__}: {exc}".rstrip(": "))
            self._note(f"telemetry: {source} failing ({detail}); will keep retrying")

    def _ok(self, source: str) -> None:
        if self._failing.get(source):
            self._failing[source] = False
            self._note(f"telemetry: {source} recovered")

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open NVML and the HTTP session, then start the sampling tasks on the running loop."""
        if self._tasks:
            return
        if self._nvml is not None and self.use_nvml:
            ok = await asyncio.to_thread(self._nvml.open)
            if not ok:
                self._note(f"telemetry: {self._nvml.unavailable_reason}; continuing without NVML")
        if self._host is None:
            self._host = HostMonitor(self._server_pids_fn)
        if self.dcgm_urls or self.sglang_metrics_sources or self.redfish:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        loop = asyncio.get_running_loop()
        nvml_on = self._nvml is not None and self._nvml.available
        if nvml_on or self.dcgm_urls:
            self._tasks.append(loop.create_task(self._every(self.power_interval_s, self._power_tick)))
        self._tasks.append(loop.create_task(self._every(self.metrics_interval_s, self._metrics_tick)))
        if self.redfish:
            self._tasks.append(loop.create_task(self._every(self.redfish_interval_s, self._redfish_tick)))

    async def check_boundary(self, boundary: str) -> None:
        """At start: every source of ``boundary`` must answer once, or PowerSourceError names it."""
        if boundary == "gpu":
            return
        readers = [r for r in self.redfish if r.boundary == boundary]
        if not readers:
            raise PowerSourceError(f"power_boundary = {boundary!r} but no {boundary}_power_urls are configured")
        assert self._session is not None
        for reader in readers:
            try:
                await reader.copy().read(self._session, time.monotonic())  # a probe: own integration state
            except Exception as exc:
                raise PowerSourceError(f"telemetry.{boundary}_power_urls: {reader.url} does not answer as a "
                                       f"Redfish power source: {type(exc).__name__}: {exc}") from exc

    async def stop(self) -> None:
        """Cancel the tasks, close the HTTP session and NVML. Safe to call twice."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._nvml is not None:
            self._nvml.close()

    async def _every(self, interval_s: float, tick: Callable[[], Awaitable[None]]) -> None:
        """Run ``tick`` on a fixed grid (no drift); skip slots a slow tick overran."""
        next_t = time.monotonic()
        while True:
            try:
                await tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in a tick must not end sampling
                self._fail("sampler", exc)
            next_t += interval_s
            now = time.monotonic()
            if next_t < now:
                next_t = now + interval_s - ((now - next_t) % interval_s)
            await asyncio.sleep(next_t - now)

    # -- ticks -----------------------------------------------------------------------------

    async def _read_nvml(self) -> PowerReading | None:
        try:
            return await asyncio.to_thread(lambda: self._nvml.read(time.monotonic()))  # type: ignore[union-attr]
        except Exception as exc:
            self._fail("NVML", exc)
            return None

    async def _read_dcgm(self, url: str) -> PowerReading | None:
        source = f"dcgm {url}"
        try:
            text = await scrape(self._session, url, self.timeout_s)  # type: ignore[arg-type]
            reading = parse_dcgm(text, time.monotonic(), default_host=urlsplit(url).hostname or url)
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
            self._fail(source, exc)
            return None
        if not reading.gpus:
            self._fail(source, "no DCGM_FI_DEV_* GPU series in response")
            return None
        self._ok(source)
        return reading

    async def _power_tick(self) -> None:
        jobs = []
        if self._nvml is not None and self._nvml.available:
            jobs.append(self._read_nvml())
        jobs.extend(self._read_dcgm(u) for u in self.dcgm_urls)
        results = [r for r in await asyncio.gather(*jobs) if r is not None and r.gpus]
        if results:
            self._emit(merge_readings(results))

    async def _redfish_tick(self) -> None:
        assert self._session is not None
        for boundary in ("node", "rack"):
            readers = [r for r in self.redfish if r.boundary == boundary]
            if not readers:
                continue
            results = await asyncio.gather(*(r.read(self._session, time.monotonic()) for r in readers),
                                           return_exceptions=True)
            energy: dict[str, float | None] = {}
            power: dict[str, float | None] = {}
            for reader, result in zip(readers, results, strict=True):
                source = f"redfish {boundary} {reader.url}"
                if isinstance(result, BaseException):
                    self._fail(source, result)  # its devices go missing from the snapshot: windows are partial
                    continue
                self._ok(source)
                energy.update(result.energy_j)
                power.update(result.power_w)
            if energy:
                self._emit(BoundaryEnergy(boundary, EnergySnapshot(time.monotonic(), energy, power,
                                                                   f"redfish {boundary}")))

    async def _scrape_metrics(self, url: str) -> list | None:
        """One serving process's samples, or None (noted once) when it does not answer Prometheus text."""
        source = f"SGLang metrics {url}"
        assert self._session is not None
        try:
            samples = prom_samples(await scrape(self._session, url, self.timeout_s))
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
            self._fail(source, exc)
            return None
        self._ok(source)
        return samples

    async def _metrics_tick(self) -> None:
        if self.sglang_metrics_sources and self._session is not None:
            jobs = [(worker, url) for worker, urls in self.sglang_metrics_sources for url in urls]
            t_asked = time.monotonic()
            results = list(zip(jobs, await asyncio.gather(*(self._scrape_metrics(url) for _, url in jobs)),
                               strict=True))
            # a worker counts as answered only when every one of its nodes did
            missing = {w for (w, _), samples in results if samples is None}
            parsed = [(w, samples) for (w, _), samples in results if samples is not None and w not in missing]
            total = len(self.sglang_metrics_sources)
            now = time.monotonic()
            if parsed:
                self._emit(dataclasses.replace(merge_worker_samples(parsed, now, sources_total=total),
                                               scrape_s=now - t_asked))
            else:  # nobody answered: say so (an old sample would keep showing stale figures as current)
                self._emit(ServerMetrics(t_s=now, sources_ok=0, sources_total=total, scrape_s=now - t_asked))
        if self._host is not None:
            try:
                sample = await asyncio.to_thread(self._host.sample)
            except Exception as exc:
                self._fail("host monitor", exc)
            else:
                self._emit(sample)


__all__ = ["BoundaryEnergy", "PowerSourceError", "TelemetrySampler", "average_power_w"]
