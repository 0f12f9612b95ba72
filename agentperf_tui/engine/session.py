"""One benchmark session's lifecycle: server, telemetry, agents and the frame clock, on one asyncio loop.

``Session.run()`` starts (or attaches to) the server the profile names, starts telemetry and the
load generator, ticks the measurement account and emits a ``Frame`` to every sink at
``frame_hz``, and on the end of the duration, a stop request or a server exit, stops everything
it started and returns the summary. What a frame shows is built by engine/frame_builder.py, the
summary by engine/summary.py, the steady window and validity by engine/window.py, verdicts by
engine/judge.py, the search by engine/search_driver.py (through engine/live_sut.py). Front ends
are only sinks; control calls are thread-safe so a UI thread can drive a session running on its
own thread (``SessionThread``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from agentperf_tui.engine.client import Timeouts
from agentperf_tui.engine.frame_builder import build_frame
from agentperf_tui.engine.frames import AgentRows, ClientView, Frame
from agentperf_tui.engine.live_sut import LiveSUT
from agentperf_tui.engine.looplag import LoopLagMeter
from agentperf_tui.engine.metrics import RunMetrics
from agentperf_tui.engine.reconcile import ClientLedger, Reconciliation, ServerLedger, reconcile
from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.engine.search_driver import SearchDriver, tiers_line
from agentperf_tui.engine.segments import compare_segments, segment_band, segment_row
from agentperf_tui.engine.slo import Tier
from agentperf_tui.engine.summary import build_summary
from agentperf_tui.engine.window import RunAccount
from agentperf_tui.engine.workers import ShardedLoad
from agentperf_tui.telemetry.energy import EnergyAccount, EnergySnapshot
from agentperf_tui.telemetry.sampler import BoundaryEnergy
from agentperf_tui.telemetry.samples import HostSample, PowerReading, ServerMetrics

FrameSink = Callable[[Frame], None]
LOOP_LAG_INVALID_MS = 100.0
DISPATCH_P99_INVALID_MS = 50.0
CONCURRENCY_HELD_MIN = 0.98
TWIN_LAG_INVALID_S = 0.1  # the twin's step clock behind real time: the twin process is the bottleneck
RECONCILE_EVERY_S = 5.0
RECORD_LAG_S = 0.5  # records reach the session this long after a request ends, at most (worker batches)  # the live client-vs-server comparison (over the live window) is redone this often
SEARCH_INCOMPLETE_EXIT = 3
HOLD_DRAIN_S = 30.0  # a retune waits this long for running requests to finish before cancelling them
SEGMENT_EVERY_S = 5.0  # the live segment row is recomputed this often


class ServerStartError(RuntimeError):
    """The server never became ready (or exited while starting): nothing was measured."""
  # a search that stopped early or left a tier unresolved


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
    ray_address: str | None = None  # worker shards as Ray actors over this cluster's hosts (--ray)
    warm_start: bool = False  # agents join their first trajectory at a random turn (steady-state contexts)
    settle_s: float = 30.0  # the steady window opens this long after every agent started (AA: 30 s)
    #: sent in every request body beside messages: sampling (AA's standard preset by default) and
    #: reasoning effort, from the profile's [workload] table
    request_settings: dict[str, Any] = field(default_factory=dict)


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
    twin: bool = False  # the digital twin, not a real SGLang: its numbers are simulated
    routing_key_header: str = "X-Correlation-ID"  # each agent's conversation id goes out under it too
    context_length: int | None = None  # the server's context length (tokens), from /server_info
    launch_argv: list[list[str]] = field(default_factory=list)  # what was launched (templates, no secrets)
    node_power_urls: list[str] = field(default_factory=list)  # Redfish BMCs (node boundary)
    rack_power_urls: list[str] = field(default_factory=list)  # Redfish rack manager / PDU (rack boundary)
    redfish_user_env: str = ""
    redfish_password_env: str = ""
    twin_tokens: str = ""  # the twin only: how it counts prompt tokens (its /server_info 'twin.tokens')
    #: (worker, its nodes' /metrics URLs) for every serving process; empty: ``metrics_url`` alone
    metrics_sources: list[tuple[str, list[str]]] = field(default_factory=list)
    server_args: dict[str, Any] = field(default_factory=dict)  # /server_info's resolved arguments


class Session:
    """Runs one session; see the module docstring."""

    def __init__(self, *, profile_name: str, options: RunOptions, tiers: tuple[Tier, ...],
                 workload_loader: Callable[[], Any], server_starter: Callable[[Session], Any],
                 sinks: list[FrameSink] | None = None, tuner: Any = None):
        self.profile_name = profile_name
        self.options = options
        self.tiers = tiers
        self.workload_loader = workload_loader
        self.server_starter = server_starter
        self.sinks = list(sinks or [])
        self.metrics = RunMetrics(tiers, options.window_s)
        self.tier_pass_cache: dict[int, tuple[RequestRecord, tuple[bool, ...]]] = {}  # agent -> (last record, tiers met)
        self.agent_rows_cache: tuple[float, AgentRows] | None = None  # (taken at, rows): frame_builder
        self.account = RunAccount(options.settle_s)
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
        self._power_recent: deque[PowerReading] = deque(maxlen=64)
        # the energy account per boundary; BMC counters are coarse (EnergykWh steps of 0.001 kWh = 3.6 kJ
        # move every ~4 s at 1 kW), so they are called stale only after 15 s without a change
        self.energy = {"gpu": EnergyAccount(), "node": EnergyAccount(stale_after_s=15.0),
                       "rack": EnergyAccount(stale_after_s=15.0)}
        self._workers_seen = 0
        self._resplit_until = 0.0
        self._shutting_down = False
        self._server_metrics: ServerMetrics | None = None
        # client vs server (engine/reconcile.py): both ledgers for every window, the live one every few s
        self.client_ledger = ClientLedger()
        self.server_ledger = ServerLedger()
        self.live_reconciliation: Reconciliation | None = None
        self.workload_required_context: int | None = None
        self.context_warning = ""
        self._last_reconcile = 0.0
        self._twin_problem = ""
        self._host: HostSample | None = None
        self._lag = LoopLagMeter()
        self._proc = psutil.Process(os.getpid())
        self._proc.cpu_percent(None)
        self._last_cpu = 0.0
        self._sampler = None
        self.last_history = 0.0
        self._notes_seen: set[str] = set()
        self.search_view: Callable[[], dict[str, Any]] | None = None
        self.search_driver: Any = None
        self.search_report: dict[str, Any] | None = None
        self.phase_sinks: list[Callable[[dict[str, Any]], None]] = []
        self.event_sinks: list[Callable[[str], None]] = []
        self._search_task: asyncio.Task[Any] | None = None
        self.search_settings: Any = None  # set to SearchSettings to run a search instead of a fixed load
        # tuning (the Tune panel): ``tuner`` (runner.py's ProfileTuner) knows the knobs and relaunches;
        # the session keeps the segments, one per configuration it ran under
        self.tuner = tuner
        self.config: dict[str, str] = dict(tuner.config) if tuner is not None else {}
        self.segments: list[dict[str, Any]] = []
        self.tune_state = ""  # "" idle, else what a retune is doing now
        self._segment_started: float | None = None
        self._segment_change = "as the profile launches"
        self._live_segment: dict[str, Any] | None = None
        self._last_segment = 0.0
        self._tune_task: asyncio.Task[Any] | None = None

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

    def force_stop(self) -> None:
        """Kill every server process this session started, at once (a second signal: no clean stop)."""
        from agentperf_tui.server.supervisor import kill_all_now

        kill_all_now()

    def request_stop(self, reason: str = "stopped by operator") -> None:
        self._call(self._request_stop, reason)

    def apply_tune(self, changes: dict[str, str]) -> None:
        """Close the current segment, relaunch the server with ``changes`` (knob -> value) and resume
        the same agent target in a new segment (the Tune panel's apply)."""
        self._call(self._start_tune, dict(changes))

    def save_tuned_profile(self) -> None:
        """Write the current configuration as a new profile beside the original (the Tune panel's w)."""
        self._call(self._save_tuned)

    def start_search(self, settings: Any) -> None:
        """Start the auto-search on the running load (the dashboard's ``s``)."""
        self._call(self._start_search, settings, False)

    def abort_search(self, reason: str = "aborted by operator") -> None:
        """Stop a running search after its current poll; its report says ``stopped: <reason>``."""
        self._call(self._abort_search, reason)

    def _abort_search(self, reason: str) -> None:
        if self.search_driver is not None and self.searching:
            self.search_driver.abort(reason)
            self.event(f"auto-search abort requested: {reason}")
        else:
            self.event("no auto-search running")

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
        if self.loadgen is None or self.searching:
            self.event("search not started: " + ("already running" if self.searching else "load not running yet"))
            return
        if self.loadgen is not None:
            self.loadgen.ramp_s = min(self.loadgen.ramp_s, settings.ramp_s)
        sut = LiveSUT(self)
        driver = SearchDriver(sut, settings, self.server.gpus if self.server else 1, context=self.run_context())
        self.search_driver = driver
        self.search_view = driver.view
        self.event(f"auto-search started ({settings.mode} mode)")

        async def run() -> None:
            try:
                self.search_report = driver.report(**self._report_args())  # a report exists from the start
                await driver.run()
                self.search_report = driver.report(**self._report_args())
                if self.search_report["done"]:
                    self.event("auto-search finished: " + tiers_line(self.search_report))
                else:
                    self.event(f"auto-search {self.search_report['status']}"
                               + (f": {driver.stopped}" if driver.stopped else "") + "; " + tiers_line(self.search_report))
                    self.exit_code = self.exit_code or SEARCH_INCOMPLETE_EXIT
            except Exception as exc:  # reported, never silent
                self.event(f"auto-search failed: {type(exc).__name__}: {exc}")
                self.exit_code = 1
            if stop_when_done:
                self._request_stop("search " + ("finished" if self.search_report and self.search_report["done"]
                                                else "stopped"))

        self._search_task = asyncio.ensure_future(run())

    def _report_args(self) -> dict[str, Any]:
        server = self.server
        return {"power_boundary": server.boundary if server else "gpu", "extra": {
            "profile": self.profile_name, "twin": bool(server and server.twin),
            "server": {"url": server.base_url if server else "", "version": server.version if server else "",
                       "fingerprint": server.fingerprint if server else ""}}}

    def run_context(self) -> dict[str, Any]:
        """Everything besides the search rules that shapes an answer (kept in every report and summary)."""
        o = self.options
        server = self.server
        return {"workload": o.workload or "synthetic", "seed": o.seed, "policy": o.policy, "salt": o.salt,
                "warm_start": o.warm_start, "workers": o.workers, "synthetic_trajectories": o.synthetic_trajectories,
                "twin": bool(server and server.twin), **({"ray": o.ray_address} if o.ray_address else {}),
                "request_settings": dict(o.request_settings),
                "server_argv": server.launch_argv if server else []}

    def on_phase(self, phase: dict[str, Any]) -> None:
        for sink in self.phase_sinks:
            sink(phase)

    def in_flight(self) -> list[tuple[float, float | None]]:
        """(sent, first token) of every request running now (monotonic seconds; None: no token yet)."""
        return [running for _agent, running in self._running_requests()]

    def _running_requests(self) -> list[tuple[Any, tuple[float, float | None]]]:
        """(agent, (sent, first token)) of every request running now whose record is not in yet: a
        worker's snapshot (every 0.25 s) can still show a request whose record (every 0.1 s) is in."""
        if self.loadgen is None:
            return []
        recorded_send = self.metrics.last_send.get  # once per frame over every agent (20,000 at rack scale)
        return [(a, running) for a in self.loadgen.agents.values()
                if (running := a.in_flight) is not None and recorded_send(a.agent_id) != running[0]]

    def in_flight_tokens(self, t_from: float, now: float) -> float:
        """Tokens the running requests have streamed that arrived after ``t_from`` (each request's so
        far spread evenly since its first token, as finished ones are): the part of a window's output
        that the detail log does not hold yet."""
        total = 0.0
        for agent, running in self._running_requests():
            tokens = getattr(agent, "streamed_tokens", 0) or 0
            if running[1] is None or not tokens:
                continue
            t_first = running[1]
            if t_first >= t_from:
                total += tokens
            elif now > t_first:
                total += tokens * (now - t_from) / (now - t_first)
        return total

    def latest_power(self) -> PowerReading | None:
        return self._power_recent[-1] if self._power_recent else None

    def energy_marks(self) -> dict[str, EnergySnapshot]:
        """The latest energy snapshot of every boundary that has one (a window's start or end)."""
        return {b: acc.latest for b, acc in self.energy.items() if acc.latest is not None}

    def energy_window(self, first: dict[str, EnergySnapshot], last: dict[str, EnergySnapshot],
                      boundary: str | None = None):
        """The energy account's window between two sets of marks, at ``boundary`` (default the server's)."""
        b = boundary or (self.server.boundary if self.server else "gpu")
        return self.energy[b].window(first.get(b), last.get(b))

    def client_health(self) -> ClientView:
        return self._client_view(sample_cpu=False)

    def hold_target(self, agents: int) -> None:
        """The search's resize: surplus agents stop at once (their requests are cancelled)."""
        self._set_target(agents, cancel_surplus=True)

    def _set_target(self, agents: int, cancel_surplus: bool = False) -> None:
        agents = max(0, min(100_000, int(agents)))
        self.options.agents = agents
        self.account.on_target(time.monotonic(), agents)
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

    # -- tuning ------------------------------------------------------------------------------------
    @property
    def tuning(self) -> bool:
        return self._tune_task is not None and not self._tune_task.done()

    def _start_tune(self, changes: dict[str, str]) -> None:
        why = ("no [tune] knobs in this profile" if self.tuner is None or not self.tuner.knobs else
               "a search is running (x aborts it)" if self.searching else
               "a retune is already running" if self.tuning else
               "the load is not running yet" if self.loadgen is None or self.server is None else "")
        changed = {k: v for k, v in changes.items() if self.config.get(k) != v}
        if not why and not changed:
            why = "nothing changed"
        prepared = None
        if not why and not self.tuner.runtime_only(changed):
            try:  # a bad setting is refused here, while the server still runs
                prepared = self.tuner.prepare({**self.config, **changed})
            except Exception as exc:
                why = str(exc)
        if why:
            self.event(f"tune not applied: {why}")
            return
        self._tune_task = asyncio.ensure_future(self._retune(changed, prepared))

    async def _retune(self, changes: dict[str, str], prepared: Any) -> None:
        tuner, lg = self.tuner, self.loadgen
        assert tuner is not None and lg is not None
        label = tuner.describe(changes, self.config)
        now = time.monotonic()
        self._close_segment(now)
        self._live_segment = None  # the closed segment replaces it
        new_config = {**self.config, **changes}
        try:
            if tuner.runtime_only(changes):
                self.tune_state = f"applying live: {label}"
                self.event(f"tune: {label} on the running server (/set_internal_state, no relaunch)")
                await tuner.set_live(self, changes)
            else:
                await self._relaunch(label, prepared)
        except Exception as exc:  # the server did not come back: the run ends here, said plainly
            self.tune_state = ""
            self.server_state = "failed"
            self.exit_code = self.exit_code or 2
            self.event(f"tune failed: {type(exc).__name__}: {exc}")
            self._request_stop(f"relaunch with {label} failed: {exc}")
            return
        self.config = new_config
        self.account.restart(time.monotonic())
        self._segment_started = time.monotonic()
        self._segment_change = label
        self._live_segment = None
        self.tune_state = ""
        self.event(f"tune: segment {len(self.segments) + 1} started ({label}); the window opens "
                   f"{self.account.settle_s:g} s after every agent runs")

    async def _relaunch(self, label: str, prepared: Any) -> None:
        tuner, lg = self.tuner, self.loadgen
        assert tuner is not None and lg is not None and self.server is not None
        target = lg.target
        self.tune_state = f"holding {target} agents: {label}"
        self.event(f"tune: {label}; holding {target} agents (they finish their turn and wait, not counted)")
        lg.pause()
        deadline = time.monotonic() + HOLD_DRAIN_S
        while (running := len(self.in_flight())) and time.monotonic() < deadline and not self._stop.is_set():
            self.tune_state = (f"holding {target} agents: {label}; {running} requests finishing "
                               f"({deadline - time.monotonic():.0f} s left before they are cancelled)")
            await asyncio.sleep(0.2)
        cancelled = len(self.in_flight())
        if cancelled:  # never let a restart fail running requests: they are abandoned, not recorded
            self.event(f"tune: {cancelled} requests still running after {HOLD_DRAIN_S:g} s are cancelled "
                       "(not recorded); their agents start anew")
            self.hold_target(0)
        self.tune_state = f"relaunching: {label}"
        self.server_state = "relaunching"
        if self._sampler is not None:
            await self._sampler.stop()
            self._sampler = None
        result = self.server.stop()
        if asyncio.iscoroutine(result):
            await result
        self.server = await tuner.relaunch(self, prepared)
        self.server_state = "ready"
        self.event(f"tune: server ready again at {self.server.base_url} (fingerprint {self.server.fingerprint or '?'})")
        await self._start_telemetry()
        if cancelled:
            self._set_target(target)
        lg.resume()

    def _save_tuned(self) -> None:
        if self.tuner is None:
            self.event("no profile to save: this session has no [tune] knobs")
            return
        try:
            path = self.tuner.save(self.config)
        except Exception as exc:
            self.event(f"profile not saved: {exc}")
            return
        self.event(f"profile saved: {path} ({self.tuner.describe(self.config)})")

    def _segment_now(self, now: float) -> dict[str, Any]:
        summary = self.build_summary()
        band = segment_band(self.metrics, summary, self.in_flight(), self._load_t0)
        t0 = self._load_t0 or now
        return segment_row(len(self.segments) + 1, self.config, self._segment_change, summary,
                           started_s=(self._segment_started or t0) - t0, ended_s=now - t0,
                           argv=self.server.launch_argv if self.server else [], band=band)

    def _close_segment(self, now: float) -> None:
        if self._load_t0 is None:
            return
        self.segments.append(self._segment_now(now))

    def segments_view(self) -> list[dict[str, Any]]:
        """The closed segments and the running one (recomputed every few seconds), for frames."""
        if self.tuner is None or not self.tuner.knobs:
            return list(self.segments)
        rows = list(self.segments)
        if self._live_segment is not None:
            rows.append({**self._live_segment, "running": True})
        return rows

    def tune_view(self) -> dict[str, Any] | None:
        if self.tuner is None or not self.tuner.knobs:
            return None
        args = self.server.server_args if self.server else {}
        return {"knobs": [{**k, "current": self.config.get(k["key"], "default"),
                           "server_value": _plain(args.get(k["flag"].removeprefix("--").replace("-", "_")))}
                          for k in self.tuner.knobs],
                "state": self.tune_state, "changes": compare_segments(self.segments_view()),
                "profile": self.tuner.profile_path}

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
        self.client_ledger.add(record)
        for sink in self.record_sinks:
            sink(record)
        if not record.ok and self.metrics.failed <= 20 or (not record.ok and self.metrics.failed % 100 == 0):
            self.event(f"request failed (agent {record.agent_id}, turn {record.turn_index + 1}): {record.cause}"
                       + (" [further failures summarised every 100]" if self.metrics.failed == 20 else ""))

    def _on_sample(self, sample: Any) -> None:
        if isinstance(sample, PowerReading):
            if not sample.gpus:
                return
            self._power_recent.append(sample)
            self.energy["gpu"].add(EnergySnapshot.of_gpus(sample))
        elif isinstance(sample, BoundaryEnergy):
            self.energy[sample.boundary].add(sample.snapshot)
        elif isinstance(sample, ServerMetrics):
            self._note_twin_lag(sample)
            self._server_metrics = sample
            self.server_ledger.add(sample)
        elif isinstance(sample, HostSample):
            self._host = sample

    def _note_twin_lag(self, sample: ServerMetrics) -> None:
        """The twin reports when its own process cannot keep pace with the GPUs it simulates; such a
        window measures the machine running the twin, not the modeled rack (real SGLang has no such series)."""
        lag = sample.raw.get("agentperf_twin:step_lag_seconds")
        dropped = sample.raw.get("agentperf_twin:dropped_seconds_total")
        previous = self._server_metrics
        dropped_before = previous.raw.get("agentperf_twin:dropped_seconds_total") if previous else None
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
            self.event(f"workload {workload.name}: {workload.describe()}")
            self.workload_required_context = workload.required_context_tokens
            frame_task = asyncio.create_task(self._frame_clock())
            self.event(f"starting server for profile {self.profile_name}")
            try:
                self.server = await self._start_server()
            except Exception as exc:  # not ready in time, exited, port taken: the run never started
                self.server_state = "failed"
                known = type(exc).__name__ in ("ServerNotReady", "ServerExited", "ProbeError", "OSError")
                self.stop_reason = f"server failed to start: {exc if known else f'{type(exc).__name__}: {exc}'}"
                self.exit_code = 2
                self.event(self.stop_reason)
                raise ServerStartError(str(exc)) from exc
            if self.server is None:
                return self._finish()
            self.server_state = "ready"
            need, have = self.workload_required_context, self.server.context_length
            if need is not None and have is not None and need > have:
                self.context_warning = (f"the workload needs contexts of up to {need:,} tokens but the server's "
                                        f"context length is {have:,}: its longest calls will be refused")
                self.event(f"WARNING: {self.context_warning}")
            self.event(f"server ready at {self.server.base_url} ({self.server.version or 'version unknown'})")
            await self._start_telemetry()
            if self.options.ray_address:  # joining a Ray cluster takes seconds: not on this loop
                from agentperf_tui.engine.ray_shards import connect

                await asyncio.to_thread(connect, self.options.ray_address)
            self.loadgen = ShardedLoad(
                workload, base_url=self.server.base_url, model=self.server.model, policy=self.options.policy,
                seed=self.options.seed, ramp_s=self.options.ramp_s, timeouts=self.options.timeouts,
                api_key=self.server.api_key, on_record=self._on_record, on_event=self.event, salt=self.options.salt,
                workers=self.options.workers, warm_start=self.options.warm_start,
                routing_header=self.server.routing_key_header, extra_body=self.options.request_settings,
                ray_address=self.options.ray_address)
            self._load_t0 = time.monotonic()
            self._segment_started = self._load_t0
            if self.search_settings is not None:
                self._set_target(self.search_settings.start_agents)
                self._start_search(self.search_settings, True)
                await self._stop.wait()
            else:
                self._set_target(self.options.agents)
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
            dcgm_urls=server.dcgm_urls, sglang_metrics_url=server.metrics_url,
            sglang_metrics_sources=server.metrics_sources, use_nvml=server.use_nvml,
            server_pids_fn=server.pids, on_sample=self._on_sample, on_note=self._on_note,
            node_power_urls=server.node_power_urls, rack_power_urls=server.rack_power_urls,
            redfish_user_env=server.redfish_user_env, redfish_password_env=server.redfish_password_env)
        await self._sampler.start()
        await self._sampler.check_boundary(server.boundary)  # PowerSourceError: refused, never relabelled

    async def _shutdown(self) -> None:
        self._shutting_down = True
        if self._tune_task is not None and not self._tune_task.done():
            self._tune_task.cancel()
            await asyncio.gather(self._tune_task, return_exceptions=True)
        if self._search_task is not None and not self._search_task.done():
            # the driver sees the stop at its next poll and returns its report, "stopped: <reason>"
            try:
                await asyncio.wait_for(asyncio.shield(self._search_task), 5.0)
            except (TimeoutError, asyncio.CancelledError):
                self._search_task.cancel()
                await asyncio.gather(self._search_task, return_exceptions=True)
        if self.search_driver is not None and (self.search_report is None or not self.search_report.get("done")):
            if not self.search_driver.stopped:
                self.search_driver.stopped = self.stop_reason or "stopped"
            self.search_report = {**self.search_driver.report(**self._report_args()), "partial": True}
            self.exit_code = self.exit_code or SEARCH_INCOMPLETE_EXIT
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
            try:
                self.tick(time.monotonic())
                self._emit_frame()
            except Exception as exc:  # a broken frame must stop the run loudly, not freeze every front end
                self.event(f"engine error in the frame clock: {type(exc).__name__}: {exc}")
                self.exit_code = 1
                self._request_stop(f"engine error: {type(exc).__name__}: {exc}")
                raise
            next_t += period
            await asyncio.sleep(max(0.0, next_t - loop.time()))

    # -- measurement tick ------------------------------------------------------------------------
    def steady_since(self) -> float | None:
        """When every agent of the current target had started (None while ramping)."""
        lg = self.loadgen
        if lg is None:
            return None
        lg.refresh_started(time.monotonic())
        return lg.all_started_at

    def tick(self, now: float) -> None:
        """Advance the measurement state once per frame: worker scaling, the concurrency integral,
        the steady-window/validity account, the once-a-second history. Frames only read."""
        lg = self.loadgen
        if lg is not None:
            lg.check_scaling(now, self._lag.mean_ms)
            workers = lg.worker_count
            # shards closing at the end of the run are not agents moving between processes
            if workers != self._workers_seen and self._workers_seen and not self._shutting_down:
                self._resplit_until = now + 2.0  # agents moved between processes: not one steady load
            self._workers_seen = workers
        agents = list(lg.agents.values()) if lg else []
        steady_at = self.steady_since()
        in_work = sum(1 for a in agents if a.in_work)
        self.metrics.sample_concurrency(now, in_work, steady_at is not None, lg.target if lg else 0)
        self.account.tick(now, steady_at, bool(lg and lg.paused), tuple(self.validity_reasons(now)),
                          self.energy_marks())
        first, _ = self.account.power_readings()
        mark = first.get(self.server.boundary if self.server else "gpu")
        if mark is not None and self.metrics.tokens_since_mark()[0] != mark.t_s:
            self.metrics.mark_tokens_from(mark.t_s)  # live tokens/J over the steady window, kept incrementally
        if now - self._last_reconcile >= RECONCILE_EVERY_S and self._load_t0 is not None:
            self._last_reconcile = now
            self.live_reconciliation = self.reconcile(max(self._load_t0, now - self.options.window_s), now)
        if self.tuner is not None and self.tuner.knobs and self._load_t0 is not None and not self.tuning \
                and now - self._last_segment >= SEGMENT_EVERY_S:
            self._last_segment = now
            self._live_segment = self._segment_now(now)
        if now - self.last_history >= 1.0:
            self.last_history = now
            _, shares = self.metrics.live_verdicts(now, ())
            self.metrics.record_history(shares, [a.context_tokens for a in agents if a.context_tokens])

    def _emit_frame(self) -> None:
        frame = self.build_frame()
        for sink in self.sinks:
            sink(frame)

    def build_frame(self) -> Frame:
        self._seq += 1
        return build_frame(self, time.monotonic())

    def take_events(self) -> tuple[str, ...]:
        events = tuple(self._events)
        self._events.clear()
        return events

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def started_at(self) -> float:
        return self._t0

    @property
    def load_started_at(self) -> float | None:
        return self._load_t0

    @property
    def server_metrics(self) -> ServerMetrics | None:
        return self._server_metrics

    @property
    def power_readings(self) -> tuple[PowerReading, ...]:
        return tuple(self._power_recent)

    @property
    def loop_lag(self) -> LoopLagMeter:
        return self._lag

    def validity_reasons(self, now: float | None = None) -> list[str]:
        """Why the client or the server is not measurable right now (empty: measurable)."""
        now = time.monotonic() if now is None else now
        reasons = []
        if self._lag.max_ms > LOOP_LAG_INVALID_MS:
            reasons.append(f"client loop lag {self._lag.max_ms:.0f} ms > {LOOP_LAG_INVALID_MS:.0f} ms")
        dispatch_p99 = self.metrics.dispatch_p99_ms()
        if dispatch_p99 > DISPATCH_P99_INVALID_MS:
            reasons.append(f"dispatch delay p99 {dispatch_p99:.0f} ms > {DISPATCH_P99_INVALID_MS:.0f} ms")
        if self._twin_problem:
            reasons.append(self._twin_problem)
        lg = self.loadgen
        if lg is not None:
            reasons.extend(lg.worker_problems(now, LOOP_LAG_INVALID_MS))
            crashed_at = lg.local.last_crash_at
            if crashed_at is not None and now - crashed_at < 5.0:
                reasons.append(f"agent task crashed ({lg.local.crashes} so far; see the log)")
            if now < self._resplit_until:
                reasons.append(f"worker re-split: agents moved to {lg.worker_count} worker processes")
        if lg is not None and lg.all_started_at is not None and lg.target > 0 and not lg.paused:
            held = self.metrics.recent_held_share
            if held < CONCURRENCY_HELD_MIN and now - lg.all_started_at > 5.0:
                reasons.append(f"effective concurrency {held:.1%} of target < {CONCURRENCY_HELD_MIN:.0%}")
        return reasons

    def _client_view(self, sample_cpu: bool = True) -> ClientView:
        reasons = self.validity_reasons()
        lg = self.loadgen
        workers = lg.worker_health() if lg is not None else []
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
        if self.segments:  # retuned: every configuration it ran under, the last one ending now
            final = self._segment_now(time.monotonic())
            self.segments.append(final)
            self.summary["segments"] = list(self.segments)
            self.summary["segment_changes"] = compare_segments(self.segments)
        return self.summary

    def reconcile(self, t_from: float, t_to: float) -> Reconciliation:
        """Client vs server over [t_from, t_to] (monotonic seconds): see engine/reconcile.py.

        Scrapes of the last RECORD_LAG_S are left out: worker processes deliver records in
        batches, so a request the server counted just now may not be in the client's ledger yet.
        """
        until = min(t_to, time.monotonic() - RECORD_LAG_S)
        return reconcile(self.client_ledger, self.server_ledger, t_from, until, self.in_flight())

    def build_summary(self) -> dict[str, Any]:
        return build_summary(self, time.monotonic())


def _plain(value: Any) -> str | None:
    """A /server_info value as the Tune panel shows it (None: the server does not report it)."""
    return None if value is None or isinstance(value, dict | list) else str(value)


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
