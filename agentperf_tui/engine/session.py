"""One benchmark session: server, telemetry, agents and the frame clock, on one asyncio loop.

``Session.run()`` starts (or attaches to) the server the profile names, starts telemetry and the
load generator, emits a ``Frame`` to every sink at ``frame_hz``, and on the end of the duration,
a stop request or a server exit, stops everything it started and returns the summary. Front ends
(dashboard, headless printer, recorder) are only sinks; control calls are thread-safe so a UI
thread can drive a session running on its own thread (``SessionThread``).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from agentperf_tui import __version__
from agentperf_tui.engine.client import Timeouts
from agentperf_tui.engine.frames import (
    AgentRows,
    ClientView,
    ContextView,
    Frame,
    PowerView,
    ServerView,
    TierView,
)
from agentperf_tui.engine.looplag import LoopLagMeter
from agentperf_tui.engine.metrics import RunMetrics, context_stats
from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.engine.slo import Tier
from agentperf_tui.engine.workers import ShardedLoad
from agentperf_tui.telemetry.samples import HostSample, PowerReading, ServerMetrics

FrameSink = Callable[[Frame], None]
LOOP_LAG_INVALID_MS = 100.0
DISPATCH_P99_INVALID_MS = 50.0
CONCURRENCY_HELD_MIN = 0.98
TWIN_LAG_INVALID_S = 0.1  # the twin's step clock behind real time: the twin process is the bottleneck
BOUNDARY_TEXT = {
    "gpu": "GPU boards only (sum of per-GPU energy counters) - AA-AgentPerf's boundary",
    "node": "whole node(s) from BMC/Redfish",
    "rack": "whole rack from BMC/Redfish",
}


@dataclass
class RunOptions:
    """What to run: agent count, duration, workload, cadence. ``None`` duration = until stopped."""

    agents: int = 8
    duration_s: float | None = 60.0
    workload: str | None = None
    frame_hz: float = 4.0
    ramp_s: float = 5.0
    window_s: float = 60.0
    seed: int = 1
    policy: str = "exact"
    salt: bool = True
    synthetic_trajectories: int = 64
    timeouts: Timeouts = field(default_factory=Timeouts)
    recording: str = ""
    workers: int | None = None  # agent worker processes: None = automatic, 0 = all in-process
    warm_start: bool = False  # agents join their first trajectory at a random turn (steady-state contexts)


@dataclass
class ServerHandle:
    """What the session needs from a running server, however it was started."""

    base_url: str
    model: str
    gpus: int
    dcgm_urls: list[str]
    metrics_url: str | None
    use_nvml: bool
    boundary: str
    stop: Callable[[], Any]
    pids: Callable[[], list[int]] = lambda: []
    version: str = ""
    fingerprint: str = ""
    api_key: str | None = None


class Session:
    """Runs one session; see the module docstring."""

    def __init__(self, *, profile_name: str, options: RunOptions, tiers: tuple[Tier, ...],
                 workload_loader: Callable[[], Any], server_starter: Callable[[Session], Any],
                 sinks: list[FrameSink] | None = None):
        self.profile_name = profile_name
        self.options = options
        self.tiers = tiers
        self.workload_loader = workload_loader
        self.server_starter = server_starter
        self.sinks = list(sinks or [])
        self.metrics = RunMetrics(tiers, options.window_s)
        self.loadgen: ShardedLoad | None = None
        self.server: ServerHandle | None = None
        self.server_state = "starting"
        self.stop_reason = ""
        self.exit_code = 0
        self.summary: dict[str, Any] | None = None
        self.record_sinks: list[Callable[[RequestRecord], None]] = []
        self._events: deque[str] = deque(maxlen=5000)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._seq = 0
        self._t0 = time.monotonic()
        self._load_t0: float | None = None
        self._power_first: PowerReading | None = None
        self._power_recent: deque[PowerReading] = deque(maxlen=64)
        self._power_tokens0 = 0
        self._server_metrics: ServerMetrics | None = None
        self._twin_problem = ""
        self._host: HostSample | None = None
        self._lag = LoopLagMeter()
        self._proc = psutil.Process(os.getpid())
        self._proc.cpu_percent(None)
        self._last_cpu = 0.0
        self._sampler = None
        self._last_history = 0.0
        self._notes_seen: set[str] = set()
        self.search_view: Callable[[], dict[str, Any]] | None = None
        self.search_report: dict[str, Any] | None = None
        self.phase_sinks: list[Callable[[dict[str, Any]], None]] = []
        self.event_sinks: list[Callable[[str], None]] = []
        self._search_task: asyncio.Task[Any] | None = None
        self._search: Any = None
        self.search_settings: Any = None  # set to SearchSettings to run a search instead of a fixed load

    # -- thread-safe control ---------------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            if _running_loop() is loop:  # already on the engine loop: act now
                fn(*args)
            else:
                loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass

    def set_target(self, agents: int) -> None:
        self._call(self._set_target, agents)

    def change_target(self, fn: Callable[[int], int]) -> None:
        """Apply ``fn`` to the current target (e.g. lambda n: n * 2), on the engine loop."""
        self._call(lambda: self._set_target(fn(self.loadgen.target if self.loadgen else self.options.agents)))

    def toggle_pause(self) -> None:
        self._call(self._toggle_pause)

    def request_stop(self, reason: str = "stopped by operator") -> None:
        self._call(self._request_stop, reason)

    def start_search(self, settings: Any) -> None:
        """Start the auto-search on the running load (the dashboard's ``s``)."""
        self._call(self._start_search, settings, False)

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def load_running(self) -> bool:
        return self.loadgen is not None and not self._stop.is_set()

    @property
    def searching(self) -> bool:
        return self._search_task is not None and not self._search_task.done()

    def _start_search(self, settings: Any, stop_when_done: bool) -> None:
        from agentperf_tui.engine.autosearch import AutoSearch

        if self.loadgen is None or self.searching:
            self.event("search not started: " + ("already running" if self.searching else "load not running yet"))
            return
        search = AutoSearch(self, settings, self.server.gpus if self.server else 1)
        self._search = search
        self.event(f"auto-search started ({settings.mode} mode)")

        async def run() -> None:
            try:
                self.search_report = await search.run()
                self.event("auto-search finished: " + ", ".join(
                    f"{t['name']} max {t['max_agents']} agents" for t in self.search_report["tiers"]))
            except Exception as exc:  # reported, never silent
                self.event(f"auto-search failed: {type(exc).__name__}: {exc}")
                self.exit_code = 1
            if stop_when_done:
                self._request_stop("search finished")

        self._search_task = asyncio.ensure_future(run())

    def on_phase(self, phase: dict[str, Any]) -> None:
        for sink in self.phase_sinks:
            sink(phase)

    def unfinished_ttfts(self, t_from: float, now: float) -> list[float]:
        """Requests sent since ``t_from`` and still running: their TTFT, or their wait so far (a lower
        bound) while no token came. A window's judgement counts them (see RunMetrics.judge_since)."""
        out = []
        for agent in (self.loadgen.agents.values() if self.loadgen else ()):
            in_flight = agent.in_flight
            if in_flight is not None and in_flight[0] >= t_from:
                t_send, t_first = in_flight
                out.append((t_first if t_first is not None else now) - t_send)
        return out

    def latest_power(self) -> PowerReading | None:
        return self._power_recent[-1] if self._power_recent else None

    def client_health(self) -> ClientView:
        return self._client_view(sample_cpu=False)

    def _set_target(self, agents: int, cancel_surplus: bool = False) -> None:
        agents = max(0, min(100_000, int(agents)))
        self.options.agents = agents
        if self.loadgen is not None:
            self.loadgen.set_target(agents, cancel_surplus=cancel_surplus)

    def _toggle_pause(self) -> None:
        if self.loadgen is None:
            return
        if self.loadgen.paused:
            self.loadgen.resume()
        else:
            self.loadgen.pause()

    def _request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    # -- events ------------------------------------------------------------------------------------
    def event(self, message: str) -> None:
        """A line for the Log panel (engine events, server log lines, telemetry notes)."""
        self._add_event(f"{time.strftime('%H:%M:%S')} {message}")

    def on_server_log(self, name: str, line: str) -> None:
        self._add_event(f"{time.strftime('%H:%M:%S')} [{name}] {line.rstrip()}")

    def _add_event(self, line: str) -> None:
        self._events.append(line)
        for sink in self.event_sinks:
            sink(line)

    def on_server_exit(self, name: str, returncode: int | None, last_lines: list[str]) -> None:
        self.server_state = f"exited ({returncode})"
        tail = " | ".join(line.strip() for line in last_lines[-5:])
        self.event(f"server process {name} exited with code {returncode}: {tail}")
        self.exit_code = 1
        self._request_stop(f"server process {name} exited with code {returncode}")

    def _on_record(self, record: RequestRecord) -> None:
        self.metrics.add(record)
        for sink in self.record_sinks:
            sink(record)
        if not record.ok and self.metrics.failed <= 20 or (not record.ok and self.metrics.failed % 100 == 0):
            self.event(f"request failed (agent {record.agent_id}, turn {record.turn_index + 1}): {record.cause}"
                       + (" [further failures summarised every 100]" if self.metrics.failed == 20 else ""))

    def _on_sample(self, sample: Any) -> None:
        if isinstance(sample, PowerReading):
            if not sample.gpus:
                return
            if self._load_t0 is not None and self._power_first is None and sample.total_energy_j is not None:
                self._power_first = sample
                self._power_tokens0 = self.metrics.output_tokens
            self._power_recent.append(sample)
        elif isinstance(sample, ServerMetrics):
            self._note_twin_lag(sample)
            self._server_metrics = sample
        elif isinstance(sample, HostSample):
            self._host = sample

    def _note_twin_lag(self, sample: ServerMetrics) -> None:
        """The twin reports when its own process cannot keep pace with the GPUs it simulates; such a
        window measures the machine running the twin, not the modeled rack (real SGLang has no such series)."""
        lag = sample.raw.get("sglang:twin_step_lag_seconds")
        dropped = sample.raw.get("sglang:twin_dropped_seconds_total")
        previous = self._server_metrics
        dropped_before = previous.raw.get("sglang:twin_dropped_seconds_total") if previous else None
        newly_dropped = dropped - dropped_before if dropped is not None and dropped_before is not None else 0.0
        if lag is None and dropped is None:
            self._twin_problem = ""
        elif (lag or 0.0) > TWIN_LAG_INVALID_S or newly_dropped > 0:
            self._twin_problem = (f"twin behind real time by {lag or 0.0:.2f} s"
                                  + (f", {newly_dropped:.1f} s of simulated time dropped" if newly_dropped > 0 else "")
                                  + " (the twin process, not the modeled GPUs, is the bottleneck)")
        else:
            self._twin_problem = ""

    def _on_note(self, note: str) -> None:
        if note not in self._notes_seen:
            self._notes_seen.add(note)
            self.event(f"telemetry: {note}")

    # -- main ---------------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._t0 = time.monotonic()
        lag_task = asyncio.create_task(self._lag.run())
        frame_task: asyncio.Task[None] | None = None
        try:
            workload = self.workload_loader()
            for warning in getattr(workload, "warnings", ()):
                self.event(f"workload: {warning}")
            self.event(f"workload {workload.name}: {len(workload.trajectories)} trajectories")
            frame_task = asyncio.create_task(self._frame_clock())
            self.event(f"starting server for profile {self.profile_name}")
            self.server = await self._start_server()
            if self.server is None:
                return self._finish()
            self.server_state = "ready"
            self.event(f"server ready at {self.server.base_url} ({self.server.version or 'version unknown'})")
            await self._start_telemetry()
            self.loadgen = ShardedLoad(
                workload, base_url=self.server.base_url, model=self.server.model, policy=self.options.policy,
                seed=self.options.seed, ramp_s=self.options.ramp_s, timeouts=self.options.timeouts,
                api_key=self.server.api_key, on_record=self._on_record, on_event=self.event, salt=self.options.salt,
                workers=self.options.workers, warm_start=self.options.warm_start)
            self._load_t0 = time.monotonic()
            if self.search_settings is not None:
                self.loadgen.set_target(self.search_settings.start_agents)
                self._start_search(self.search_settings, True)
                await self._stop.wait()
            else:
                self.loadgen.set_target(self.options.agents)
                duration = self.options.duration_s
                timeout = None if duration is None or duration <= 0 else duration
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout)
                except TimeoutError:
                    self.stop_reason = f"duration {duration:g} s reached"
            self.event(f"stopping: {self.stop_reason}")
            return self._finish()
        finally:
            await self._shutdown()
            if frame_task is not None:
                frame_task.cancel()
                await asyncio.gather(frame_task, return_exceptions=True)
            lag_task.cancel()
            await asyncio.gather(lag_task, return_exceptions=True)
            self._emit_frame()  # the final state, stop reason included

    async def _start_server(self) -> ServerHandle | None:
        start = asyncio.ensure_future(self.server_starter(self))
        stop_wait = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({start, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if start in done:
            return start.result()  # raises the starter's error
        start.cancel()
        await asyncio.gather(start, return_exceptions=True)
        self.server_state = "not started"
        return None

    async def _start_telemetry(self) -> None:
        from agentperf_tui.telemetry.sampler import TelemetrySampler

        server = self.server
        assert server is not None
        self._sampler = TelemetrySampler(
            dcgm_urls=server.dcgm_urls, sglang_metrics_url=server.metrics_url, use_nvml=server.use_nvml,
            server_pids_fn=server.pids, on_sample=self._on_sample, on_note=self._on_note)
        await self._sampler.start()

    async def _shutdown(self) -> None:
        if self._search_task is not None and not self._search_task.done():
            self._search_task.cancel()
            await asyncio.gather(self._search_task, return_exceptions=True)
            if self._search is not None and self.search_report is None:
                self.search_report = {**self._search.report(), "partial": True,
                                      "stopped": self.stop_reason or "stopped"}
        if self.loadgen is not None:
            await self.loadgen.stop()
        if self._sampler is not None:
            await self._sampler.stop()
        if self.server is not None:
            result = self.server.stop()
            if asyncio.iscoroutine(result):
                await result
            if not self.server_state.startswith("exited"):
                self.server_state = "stopped"

    async def _frame_clock(self) -> None:
        period = 1.0 / max(0.1, self.options.frame_hz)
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while True:
            self._emit_frame()
            next_t += period
            await asyncio.sleep(max(0.0, next_t - loop.time()))

    # -- frames -----------------------------------------------------------------------------------
    def steady_since(self) -> float | None:
        lg = self.loadgen
        if lg is None:
            return None
        lg.refresh_started(time.monotonic())
        return lg.all_started_at

    def _emit_frame(self) -> None:
        frame = self.build_frame()
        for sink in self.sinks:
            sink(frame)

    def build_frame(self) -> Frame:
        now = time.monotonic()
        self._seq += 1
        lg = self.loadgen
        if lg is not None:
            lg.check_scaling(now, self._lag.mean_ms)
        agents = list(lg.agents.values()) if lg else []
        steady_at = self.steady_since()
        steady = steady_at is not None
        in_work = sum(1 for a in agents if a.in_work)
        self.metrics.sample_concurrency(now, in_work, steady)
        results, shares = self.metrics.window_results(now)
        contexts = [a.context_tokens for a in agents if a.context_tokens]
        if now - self._last_history >= 1.0:
            self._last_history = now
            self.metrics.record_history(shares, contexts)
        tier_views = tuple(
            TierView.from_result(r, share, tuple(h))
            for r, share, h in zip(results, shares, self.metrics.compliance_history, strict=True))
        mean, p50, p95, cmax = context_stats(contexts)
        context = ContextView(mean, p50, p95, cmax, tuple(self.metrics.context_history_mean),
                              tuple(self.metrics.context_history_p95), self.metrics.growth_per_turn)
        events = tuple(self._events)
        self._events.clear()
        return Frame(
            seq=self._seq, elapsed_s=now - self._t0, wall_time=time.time(), profile=self.profile_name,
            target_agents=lg.target if lg else self.options.agents, active_agents=lg.active if lg else 0,
            in_work_agents=in_work, paused=bool(lg and lg.paused), recording=self.options.recording,
            requests_completed=self.metrics.completed, requests_failed=self.metrics.failed,
            output_tokens=self.metrics.output_tokens, output_tokens_per_s=self.metrics.output_tokens_per_s(now),
            effective_concurrency=self.metrics.effective_concurrency, steady=steady, tiers=tier_views,
            context=context, power=self._power_view(lg.active if lg else 0), server=self._server_view(),
            client=self._client_view(), agents=self._agent_rows(agents), events=events,
            search=self.search_view() if self.search_view else None,
        )

    def _agent_rows(self, agents: list) -> AgentRows:
        agents.sort(key=lambda a: a.agent_id)
        tiers = self.tiers
        passes = []
        for a in agents:
            rec = a.last_record
            if rec is None:
                passes.append(tuple(None for _ in tiers))
            else:
                tps = rec.output_tps if rec.ok else 0.0
                ttft = rec.ttft_s if rec.ok else math.inf
                passes.append(tuple((tps or 0.0) >= t.output_tps and (ttft if ttft is not None else math.inf)
                                    <= t.ttft_s for t in tiers))
        return AgentRows(
            ids=tuple(a.agent_id for a in agents), states=tuple(a.live_state for a in agents),
            trajectories=tuple(a.trajectory_id for a in agents),
            turns=tuple(a.turn_index + 1 if a.turn_count else 0 for a in agents),
            turn_counts=tuple(a.turn_count for a in agents), context_tokens=tuple(a.context_tokens for a in agents),
            last_ttft_s=tuple(a.last_ttft_s for a in agents), last_tps=tuple(a.last_tps for a in agents),
            rolling_tps=tuple(a.rolling_tps for a in agents), tier_pass=tuple(passes),
            failures=tuple(a.failures for a in agents))

    def _power_view(self, active_agents: int) -> PowerView:
        server = self.server
        boundary = server.boundary if server else "gpu"
        recent = self._power_recent
        if not recent:
            note = "no power source yet" if server else ""
            if server and not server.dcgm_urls and not server.use_nvml:
                note = "no power source configured (no NVML, no dcgm_urls)"
            return PowerView(boundary=boundary, boundary_text=BOUNDARY_TEXT.get(boundary, boundary), note=note)
        from agentperf_tui.telemetry.sampler import average_power_w

        last = recent[-1]
        per_gpu = tuple(float(g.power_w or 0.0) for g in last.gpus)
        labels = tuple(f"{g.host}:{g.gpu}" for g in last.gpus)
        # current power: energy delta over the last ~5 s (falls back to the sampled watts)
        current = None
        for older in recent:
            if last.t_s - older.t_s <= 5.0 and last.t_s - older.t_s >= 0.5:
                current = average_power_w(older, last)
                break
        if current is None:
            current = last.total_power_w
        energy = avg = tpj = None
        first = self._power_first
        if first is not None and last is not first:
            if first.total_energy_j is not None and last.total_energy_j is not None:
                energy = last.total_energy_j - first.total_energy_j
            avg = average_power_w(first, last)
            tokens = self.metrics.output_tokens - self._power_tokens0
            if energy:
                tpj = tokens / energy
        apm = active_agents / (current / 1e6) if current else None
        source = last.gpus[0].source if last.gpus else ""
        return PowerView(per_gpu_w=per_gpu, gpu_labels=labels, total_w=current, energy_j=energy, avg_power_w=avg,
                         tokens_per_joule=tpj, agents_per_mw=apm, boundary=boundary,
                         boundary_text=BOUNDARY_TEXT.get(boundary, boundary), source=source)

    def _server_view(self) -> ServerView:
        m = self._server_metrics
        s = self.server
        base = {"state": self.server_state, "url": s.base_url if s else "", "version": s.version if s else "",
                "fingerprint": s.fingerprint if s else ""}
        if m is None:
            return ServerView(**base)
        return ServerView(**base, running_reqs=m.running_reqs, queued_reqs=m.queued_reqs, token_usage=m.token_usage,
                          cache_hit_rate=m.cache_hit_rate, gen_throughput_tps=m.gen_throughput_tps,
                          spec_accept_length=m.spec_accept_length, used_tokens=m.used_tokens,
                          max_total_tokens=m.max_total_tokens)

    def _client_view(self, sample_cpu: bool = True) -> ClientView:
        reasons = []
        if self._lag.max_ms > LOOP_LAG_INVALID_MS:
            reasons.append(f"client loop lag {self._lag.max_ms:.0f} ms > {LOOP_LAG_INVALID_MS:.0f} ms")
        dispatch_p99 = self.metrics.dispatch_p99_ms()
        if dispatch_p99 > DISPATCH_P99_INVALID_MS:
            reasons.append(f"dispatch delay p99 {dispatch_p99:.0f} ms > {DISPATCH_P99_INVALID_MS:.0f} ms")
        if self._twin_problem:
            reasons.append(self._twin_problem)
        lg = self.loadgen
        workers = lg.worker_health() if lg is not None else []
        if lg is not None:
            reasons.extend(lg.worker_problems(time.monotonic(), LOOP_LAG_INVALID_MS))
        if lg is not None and lg.all_started_at is not None and lg.target > 0 and not lg.paused:
            held = self.metrics.recent_concurrency / lg.target
            if held < CONCURRENCY_HELD_MIN and time.monotonic() - lg.all_started_at > 5.0:
                reasons.append(f"effective concurrency {held:.1%} of target < {CONCURRENCY_HELD_MIN:.0%}")
        try:
            cpu = self._proc.cpu_percent(None) if sample_cpu else self._last_cpu
            self._last_cpu = cpu
            rss = self._proc.memory_info().rss / 2**20
        except psutil.Error:
            cpu, rss = 0.0, 0.0
        return ClientView(loop_lag_ms=self._lag.mean_ms, loop_lag_max_ms=self._lag.max_ms, cpu_pct=cpu, rss_mib=rss,
                          valid=not reasons, invalid_reasons=tuple(reasons), workers=len(workers),
                          worker_lag_max_ms=max((w.loop_lag_max_ms for w in workers), default=0.0),
                          worker_cpu_pct=sum(w.cpu_pct for w in workers),
                          worker_rss_mib=sum(w.rss_mib for w in workers))

    # -- summary -------------------------------------------------------------------------------
    def _finish(self) -> dict[str, Any]:
        self.summary = self.build_summary()
        return self.summary

    def build_summary(self) -> dict[str, Any]:
        now = time.monotonic()
        steady_at = self.steady_since()
        start = steady_at if steady_at is not None else (self._load_t0 or now)
        results, completed, failed, tokens = self.metrics.judge_since(start, now, self.unfinished_ttfts(start, now))
        agents = list(self.loadgen.agents.values()) if self.loadgen else []
        mean, p50, p95, cmax = context_stats([a.context_tokens for a in agents if a.context_tokens])
        power = self._power_view(self.loadgen.active if self.loadgen else 0)
        window = max(0.0, now - start)
        return {
            "tool": "agentperf-tui", "version": __version__, "profile": self.profile_name,
            "server": {"url": self.server.base_url if self.server else "", "version": self.server.version
                       if self.server else "", "fingerprint": self.server.fingerprint if self.server else "",
                       "state": self.server_state},
            "agents": self.loadgen.target if self.loadgen else self.options.agents,
            "duration_s": round(now - self._load_t0, 3) if self._load_t0 else 0.0,
            "steady_window_s": round(window, 3),
            "stop_reason": self.stop_reason,
            "requests": {"completed": completed, "failed": failed,
                         "completed_all": self.metrics.completed, "failed_all": self.metrics.failed},
            "output_tokens": tokens,
            "output_tokens_per_s": round(tokens / window, 3) if window > 0 else 0.0,
            "effective_concurrency": round(self.metrics.effective_concurrency, 3),
            "context_tokens": {"mean": round(mean, 1), "p50": p50, "p95": p95, "max": cmax},
            "tiers": [r.to_dict() for r in results],
            "power": {"boundary": power.boundary, "avg_power_w": power.avg_power_w, "energy_j": power.energy_j,
                      "tokens_per_joule": power.tokens_per_joule, "source": power.source, "note": power.note},
            "failure_causes": dict(self.metrics.failure_causes),
            "client": self._client_summary(),
        }

    def _client_summary(self) -> dict[str, Any]:
        view = self._client_view(sample_cpu=False)
        return {"valid": view.valid, "invalid_reasons": list(view.invalid_reasons),
                "loop_lag_max_ms": round(self._lag.max_ms, 1), "workers": view.workers,
                "worker_loop_lag_max_ms": round(view.worker_lag_max_ms, 1)}


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class SessionThread:
    """Runs a Session on its own thread and event loop (for the dashboard)."""

    def __init__(self, session: Session):
        self.session = session
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="agentperf-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _main(self) -> None:
        try:
            self.summary = asyncio.run(self.session.run())
        except BaseException as exc:  # reported to the UI, never swallowed silently
            self.error = exc
            self.session.event(f"engine error: {type(exc).__name__}: {exc}")

    def stop(self, timeout: float = 20.0) -> None:
        self.session.request_stop()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
