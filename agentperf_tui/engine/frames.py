"""Frames: immutable snapshots of everything a front end shows, emitted at a fixed cadence.

The dashboard, the headless printer and the recorder all consume these; replay produces them
again from a recording. Per-agent data is columnar (one tuple per column) so a 5,000-agent table
costs a few tuple builds per frame. ``to_dict``/``from_dict`` give a JSON-safe form for
recordings and ``--json`` output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from agentperf_tui.engine.judge import TierVerdict
from agentperf_tui.engine.reconcile import Comparison
from agentperf_tui.engine.slo import Tier


@dataclass(frozen=True, slots=True)
class AgentRows:
    """Columns of the Agents table, one entry per agent, sorted by agent id."""

    ids: tuple[int, ...] = ()
    states: tuple[str, ...] = ()
    trajectories: tuple[str, ...] = ()
    turns: tuple[int, ...] = ()  # 1-based turn in progress (or last done)
    turn_counts: tuple[int, ...] = ()
    context_tokens: tuple[int, ...] = ()
    last_ttft_s: tuple[float | None, ...] = ()
    last_tps: tuple[float | None, ...] = ()
    rolling_tps: tuple[float | None, ...] = ()
    tier_pass: tuple[tuple[bool | None, ...], ...] = ()  # per agent, per tier: last request met it
    failures: tuple[int, ...] = ()
    # seconds in the state shown (None: unknown), and whether the agent's request stalled
    # (engine/agent.py is_stalled); recordings made before these columns read as unknown / not stalled
    state_s: tuple[float | None, ...] = ()
    stalled: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(self.state_s) != n:
            object.__setattr__(self, "state_s", (self.state_s + (None,) * n)[:n])
        if len(self.stalled) != n:
            object.__setattr__(self, "stalled", (self.stalled + (False,) * n)[:n])

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class TierView:
    """A tier's live judgement (requests sent in the rolling window, in flight included) and its
    compliance history (share per second). ``verdict`` is the judge's pass / fail / undecided."""

    name: str
    output_tps: float
    ttft_s: float
    requests: int
    output_tps_p25: float | None
    ttft_p95_s: float | None
    passed: bool
    speed_margin: float | None
    ttft_margin: float | None
    compliance: float  # share of window requests meeting both targets
    history: tuple[float, ...] = ()
    verdict: str = ""  # pass | fail | undecided ("" in recordings made before the judge had it)
    reason: str = ""
    in_flight: int = 0

    @classmethod
    def from_verdict(cls, result: TierVerdict, compliance: float, history: tuple[float, ...]) -> TierView:
        ttft_margin = result.ttft_margin
        if ttft_margin is not None and ttft_margin == float("-inf"):
            ttft_margin = -1.0
        p95 = result.ttft_p95_s
        return cls(result.tier.name, result.tier.output_tps, result.tier.ttft_s, result.finished + result.in_flight,
                   result.output_tps_p25, None if p95 is None or p95 == float("inf") else p95, result.passed,
                   result.speed_margin, ttft_margin, compliance, history, result.verdict, result.reason,
                   result.in_flight)

    @property
    def shown_verdict(self) -> str:
        """pass / fail / undecided, also for recordings made before verdicts had three values."""
        return self.verdict or ("pass" if self.passed else "fail")

    @property
    def tier(self) -> Tier:
        return Tier(self.name, self.output_tps, self.ttft_s)


@dataclass(frozen=True, slots=True)
class ContextView:
    """Context length over agents now (tokens), its history, and mean growth per turn."""

    mean: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    max: float = 0.0
    history_mean: tuple[float, ...] = ()
    history_p95: tuple[float, ...] = ()
    growth_per_turn: float = 0.0  # mean prompt-token increase between consecutive turns


@dataclass(frozen=True, slots=True)
class PowerView:
    """GPU power now (per GPU and total over the same ~5 s window), power at the run's boundary, and
    energy / average / tokens per joule over the steady window, with the energy account's status."""

    per_gpu_w: tuple[float, ...] = ()  # last sample per GPU (W)
    gpu_labels: tuple[str, ...] = ()
    total_w: float | None = None  # all GPUs, energy delta over the last ~5 s
    energy_j: float | None = None  # steady window, at the boundary
    avg_power_w: float | None = None  # steady window, at the boundary
    tokens_per_joule: float | None = None
    agents_per_mw: float | None = None  # live: active agents / boundary power now
    boundary: str = "gpu"
    boundary_text: str = ""
    source: str = ""
    note: str = ""
    status: str = ""  # ok | partial | stale | none (energy account, boundary power now)
    boundary_w: float | None = None  # the boundary's power now (= total_w for gpu)
    gpu_limit_w: float | None = None  # board power limit per GPU (bars are drawn against it)
    load: bool = False  # agents are running (readings before that are idle draw, not load)
    gpu_model: str = ""  # the first GPU's model name as NVML / dcgm-exporter report it ("" unknown)


@dataclass(frozen=True, slots=True)
class EngineView:
    """One SGLang engine type's share of the deployment (``engine_type`` prefill / decode / unified),
    summed over its workers and DP ranks."""

    engine_type: str
    running_reqs: float | None = None
    queued_reqs: float | None = None
    token_usage: float | None = None
    cache_hit_rate: float | None = None
    gen_throughput_tps: float | None = None
    spec_accept_length: float | None = None
    bootstrap_queue_reqs: float | None = None  # prefill: waiting for the decode side's handshake
    inflight_queue_reqs: float | None = None  # prefill: KV being sent
    prealloc_queue_reqs: float | None = None  # decode: waiting for a KV slot
    transfer_queue_reqs: float | None = None  # decode: KV arriving
    kv_transfer_ms_mean: float | None = None  # prefill: mean KV transfer latency since the server started
    kv_transfer_gb_s_mean: float | None = None


@dataclass(frozen=True, slots=True)
class ServerView:
    """SGLang's own view (from /metrics) plus the server process state."""

    state: str = "starting"
    url: str = ""
    version: str = ""
    fingerprint: str = ""
    running_reqs: float | None = None
    queued_reqs: float | None = None
    token_usage: float | None = None
    cache_hit_rate: float | None = None
    gen_throughput_tps: float | None = None
    spec_accept_length: float | None = None
    used_tokens: float | None = None
    max_total_tokens: float | None = None
    engines: tuple[EngineView, ...] = ()  # per engine_type, when the server labels them (PD: prefill, decode)
    metrics_sources_ok: int = 0  # serving processes whose /metrics answered the last scrape
    metrics_sources_total: int = 0
    twin_tokens: str = ""  # the twin: how its prompt token counts are made (tokenizer or estimate)
    # client vs server over the live window (engine/reconcile.py); "" before the first comparison
    reconcile_status: str = ""
    reconcile_reason: str = ""
    reconcile_seconds: float | None = None
    reconcile_rows: tuple[Comparison, ...] = ()


@dataclass(frozen=True, slots=True)
class ClientView:
    """Health of the load generator itself: is the client fast enough to be trusted?"""

    loop_lag_ms: float = 0.0
    loop_lag_max_ms: float = 0.0
    cpu_pct: float = 0.0
    rss_mib: float = 0.0
    valid: bool = True
    invalid_reasons: tuple[str, ...] = ()
    workers: int = 0  # worker processes running agents (0 = all agents in the engine's process)
    worker_lag_max_ms: float = 0.0  # worst loop lag over the workers, last second
    worker_cpu_pct: float = 0.0  # sum over the workers (100 = one core)
    worker_rss_mib: float = 0.0


@dataclass(frozen=True, slots=True)
class Frame:
    """One snapshot. ``events`` are the log lines new since the previous frame."""

    seq: int
    elapsed_s: float
    wall_time: float
    profile: str
    target_agents: int
    active_agents: int
    in_work_agents: int
    paused: bool
    recording: str
    requests_completed: int
    requests_failed: int
    output_tokens: int
    output_tokens_per_s: float
    effective_concurrency: float
    steady: bool
    tiers: tuple[TierView, ...] = ()
    context: ContextView = field(default_factory=ContextView)
    power: PowerView = field(default_factory=PowerView)
    server: ServerView = field(default_factory=ServerView)
    client: ClientView = field(default_factory=ClientView)
    agents: AgentRows = field(default_factory=AgentRows)
    events: tuple[str, ...] = ()
    search: dict | None = None
    #: one row per server configuration the session ran under (engine/segments.py); the running one last
    segments: tuple[dict, ...] = ()
    tune: dict | None = None  # the Tune panel: knobs, current values, what a retune is doing
    stalled_agents: int = 0  # agents whose request stalled (AgentRows.stalled); 0 in older recordings
    #: how often the Agents table's rows are taken (s): every frame up to 5,000 agents, then
    #: 0.25 s per 5,000 (frame_builder.agent_rows_period); 0.25 in older recordings
    agents_refresh_s: float = 0.25

    def to_dict(self, include_agents: bool = True) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("context", "power", "server", "client"):
            data[key] = asdict(data[key])
        data["tiers"] = [asdict(t) for t in self.tiers]
        # shallow on purpose: the columns are tuples orjson writes as they are (asdict would copy
        # every element of every column, which dominates recording cost at thousands of agents)
        data["agents"] = {f.name: getattr(self.agents, f.name) for f in fields(self.agents)} if include_agents else None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Frame:
        def tup(value):
            return tuple(tuple(v) if isinstance(v, list) else v for v in value)

        agents = data.get("agents") or {}
        return cls(
            **{k: data[k] for k in ("seq", "elapsed_s", "wall_time", "profile", "target_agents", "active_agents",
                                    "in_work_agents", "paused", "recording", "requests_completed",
                                    "requests_failed", "output_tokens", "output_tokens_per_s",
                                    "effective_concurrency", "steady")},
            tiers=tuple(TierView(**{**t, "history": tuple(t["history"])}) for t in data["tiers"]),
            context=ContextView(**{k: tuple(v) if isinstance(v, list) else v for k, v in data["context"].items()}),
            power=PowerView(**{k: tuple(v) if isinstance(v, list) else v for k, v in data["power"].items()}),
            server=ServerView(**{**data["server"],
                                 "engines": tuple(EngineView(**e) for e in data["server"].get("engines") or ()),
                                 "reconcile_rows": tuple(Comparison(**r)
                                                         for r in data["server"].get("reconcile_rows") or ())}),
            client=ClientView(**{k: tuple(v) if isinstance(v, list) else v for k, v in data["client"].items()}),
            agents=AgentRows(**{k: tup(v) for k, v in agents.items()}) if agents else AgentRows(),
            events=tuple(data.get("events") or ()),
            search=data.get("search"),
            stalled_agents=int(data.get("stalled_agents") or 0),
            agents_refresh_s=float(data.get("agents_refresh_s") or 0.25),
            segments=tuple(data.get("segments") or ()),
            tune=data.get("tune"),
        )
