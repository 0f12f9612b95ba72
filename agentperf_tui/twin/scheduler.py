"""Continuous batching in simulated real time: requests, engines and the cluster that routes.

An ``Engine`` is one SGLang scheduler over one tensor-parallel group: it admits queued requests
while KV memory and ``--max-running-requests`` allow, runs chunked prefill steps (prefill first,
as SGLang's default scheduler does) or decode steps over its whole running batch, and sleeps for
each step's duration from the cost model. A ``Cluster`` is the deployment: one or more engines
(data parallel replicas, or prefill and decode pools when disaggregated) plus the router that
sends each conversation to the engine holding its prefix. Streams are woken through a per-request
future; the HTTP layer turns pending tokens into SSE chunks.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agentperf_tui.twin.costmodel import CostModel, StepCost
from agentperf_tui.twin.histogram import (
    E2E_BUCKETS,
    ITL_BUCKETS,
    KV_TRANSFER_GB_S_BUCKETS,
    KV_TRANSFER_MS_BUCKETS,
    QUEUE_BUCKETS,
    TTFT_BUCKETS,
    Histogram,
)
from agentperf_tui.twin.prefix_cache import PrefixCache

KV_REFRESH_TOKENS = 64  # recompute a request's per-step KV read cost every this many tokens
DECODE_RESERVE_TOKENS = 256  # KV reserved at admission for tokens still to be generated
MAX_CATCHUP_S = 0.5  # simulated time the twin may owe real time before it drops the debt


class TwinRequest:
    """One generation request moving through queue -> prefill -> decode -> finished."""

    __slots__ = (
        "rid", "chain", "prompt_tokens", "cached_tokens", "t_last_token", "dp_rank", "target_tokens", "route_key",
        "prefilled", "context", "generated", "pending", "finished", "finish_reason", "aborted",
        "waiter", "t_arrival", "t_admitted", "t_first_token", "t_finished", "kv_read",
        "attn_flops", "kv_ctx", "engine", "reserved",
    )

    def __init__(self, rid: str, chain: Sequence[tuple[int, int]], prompt_tokens: int,
                 target_tokens: int, route_key: int):
        self.rid = rid
        self.chain = chain
        self.prompt_tokens = prompt_tokens
        self.cached_tokens = 0
        self.target_tokens = max(1, target_tokens)
        self.route_key = route_key
        self.prefilled = 0  # uncached prompt tokens computed so far
        self.context = 0
        self.generated = 0
        self.pending = 0  # generated but not yet streamed
        self.finished = False
        self.finish_reason = ""
        self.aborted = False
        self.waiter: asyncio.Future[None] | None = None
        self.t_arrival = time.monotonic()
        self.t_admitted = 0.0
        self.t_first_token = 0.0
        self.t_last_token = 0.0
        self.dp_rank = 0  # the DP rank whose cache the prompt was matched against
        self.t_finished = 0.0
        self.kv_read = 0.0
        self.attn_flops = 0.0
        self.kv_ctx = -KV_REFRESH_TOKENS
        self.engine: Engine | None = None
        self.reserved = 0

    @property
    def uncached_tokens(self) -> int:
        return max(0, self.prompt_tokens - self.cached_tokens)

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Wait until the scheduler adds tokens or finishes the request."""
        if self.pending or self.finished:
            return
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def take_pending(self) -> int:
        n, self.pending = self.pending, 0
        return n


@dataclass
class ClusterStats:
    """Counters and recent-window figures the /metrics endpoints expose."""

    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0  # counted when a request finishes, as SGLang does
    decoded_tokens_total: int = 0  # twin only: counted as each token is generated (live throughput)
    cached_tokens_total: int = 0
    requests_total: int = 0
    aborted_total: int = 0
    retracted: int = 0
    spec_accepted_tokens: int = 0
    spec_verify_steps: int = 0
    step_lag_s: float = 0.0  # how far the twin's own clock fell behind (honesty about the twin)
    dropped_s: float = 0.0  # simulated time dropped because the process could not keep up
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    itl: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))  # once per token
    e2e: Histogram = field(default_factory=lambda: Histogram(E2E_BUCKETS))
    queue_time: Histogram = field(default_factory=lambda: Histogram(QUEUE_BUCKETS))
    kv_transfer_ms: Histogram = field(default_factory=lambda: Histogram(KV_TRANSFER_MS_BUCKETS))  # PD, per request
    kv_transfer_gb_s: Histogram = field(default_factory=lambda: Histogram(KV_TRANSFER_GB_S_BUCKETS))

    def reset_request_counters(self) -> None:
        """Zero the per-request counters and histograms, as a restarted server's start from zero."""
        self.prompt_tokens_total = self.generation_tokens_total = self.cached_tokens_total = 0
        self.requests_total = self.aborted_total = 0
        for hist in (self.ttft, self.itl, self.e2e, self.queue_time):
            hist.clear()


class Engine:
    """One worker: its KV pool, its prefix cache(s) and step loop.

    With attention DP (``dp_ranks`` > 1) each DP rank has its own radix cache over its share of
    the pool, and a prompt is matched only against the cache of the rank it lands on. The rank is
    chosen as SGLang 0.5.23 chooses it (``dp_routing="sglang"``): on a PD prefill worker
    ``bootstrap_room % dp`` (data_parallel_controller.follow_bootstrap_room_scheduler, the PD
    prefill default) with the room the router draws at random, else round robin (the default
    load-balance method) - so consecutive turns of one conversation land on different ranks'
    caches. ``dp_routing="sticky"`` models a DP-aware router keeping a conversation on one rank.
    """

    def __init__(self, index: int, role: str, cost: CostModel, kv_capacity_tokens: int,
                 max_running: int, chunked_prefill_size: int, stream_interval: int,
                 cluster: Cluster, prefix_cache: bool = True, dp_ranks: int = 1, dp_routing: str = "sglang"):
        self.index = index
        self.role = role  # "mixed" | "prefill" | "decode"
        self.cost = cost
        self.kv_capacity_tokens = kv_capacity_tokens
        self.max_running = max_running
        self.chunk = max(1, chunked_prefill_size)
        self.stream_interval = max(1, stream_interval)
        self.cluster = cluster
        self.dp_ranks = max(1, dp_ranks)
        self.dp_routing = dp_routing
        self.caches = [PrefixCache(kv_capacity_tokens // self.dp_ranks) for _ in range(self.dp_ranks)]
        self._round_robin = 0
        self.prefix_cache = prefix_cache  # False: --disable-radix-cache, every prompt is prefilled whole
        self.waiting: deque[TwinRequest] = deque()
        self.prefilling: list[TwinRequest] = []
        self.running: list[TwinRequest] = []
        self.kv_used = 0
        self.energy_j_per_gpu = 0.0
        self._energy_t = time.monotonic()
        self._busy_until = 0.0
        self.busy_power_w = 0.0
        self._wake: asyncio.Future[None] | None = None
        self._clock = 0.0
        self._rng = random.Random(index)
        self.steps = 0
        self.busy_s = 0.0
        # per-engine views for /metrics (SGLang reports these per scheduler, labelled engine_type);
        # the cluster's figures are their sums
        self.recent_gen: deque[tuple[float, int]] = deque(maxlen=4096)
        self.last_batch_hit_rate = 0.0  # cached / prompt tokens of the last prefill batch (SGLang's cache_hit_rate)
        self.kv_sending = 0  # prefill: requests whose KV is on its way to a decode engine
        self.kv_receiving = 0  # decode: requests whose KV is arriving here

    # -- intake ------------------------------------------------------------------------------
    def enqueue(self, req: TwinRequest) -> None:
        req.engine = self
        self.waiting.append(req)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def abort(self, req: TwinRequest) -> None:
        """Drop a request whose client went away, freeing its KV."""
        if req.finished:
            return
        req.aborted = True
        req.finished = True
        req.finish_reason = "abort"
        for pool in (self.running, self.prefilling):
            if req in pool:
                pool.remove(req)
                self._release(req)
                break
        else:
            try:
                self.waiting.remove(req)
            except ValueError:
                pass
        self.cluster.stats.aborted_total += 1

    @property
    def queued(self) -> int:
        return len(self.waiting)

    @property
    def active(self) -> int:
        return len(self.running) + len(self.prefilling)

    # -- loop --------------------------------------------------------------------------------
    async def run(self) -> None:
        # the simulated clock follows time.monotonic(), not loop.time(): uvloop caches its clock
        # per loop iteration, which would make every step oversleep under load
        loop = asyncio.get_running_loop()
        self._clock = time.monotonic()
        while True:
            self._admit()
            if self.role != "decode" and self.prefilling:
                batch, cost = self._plan_prefill()
                await self._sleep(cost)
                self._finish_prefill(batch)
            elif self.running:
                cost = self._plan_decode()
                await self._sleep(cost)
                self._advance_decode()
            else:
                self._wake = loop.create_future()
                try:
                    await self._wake
                finally:
                    self._wake = None
                self._clock = time.monotonic()

    async def _sleep(self, cost: StepCost) -> None:
        """Advance the simulated clock by one step and sleep until real time reaches it.

        When the process wakes late (CPU busy with streams) the clock is *not* reset: the next
        steps run back to back until real time catches up, so simulated GPU time is not lost.
        Only a debt beyond MAX_CATCHUP_S is dropped (and reported as step lag).
        """
        now = time.monotonic()
        behind = now - self._clock
        self.cluster.stats.step_lag_s = max(0.0, behind)
        if behind > MAX_CATCHUP_S:
            self.cluster.stats.dropped_s += behind
            self._clock = now
        self._clock += cost.duration_s
        self._account_energy(now, cost)
        self.steps += 1
        self.busy_s += cost.duration_s
        delay = self._clock - time.monotonic()
        await asyncio.sleep(delay if delay > 0 else 0)

    def _admit(self) -> None:
        while self.waiting and self.active < self.max_running:
            req = self.waiting[0]
            if req.finished:
                self.waiting.popleft()
                continue
            need = req.prompt_tokens + min(DECODE_RESERVE_TOKENS, req.target_tokens)
            if self.kv_used + need > self.kv_capacity_tokens and self.active > 0:
                break
            self.waiting.popleft()
            req.reserved = need
            self.kv_used += need
            req.t_admitted = time.monotonic()
            free_per_rank = (self.kv_capacity_tokens - self.kv_used) // self.dp_ranks
            for cache in self.caches:
                cache.evict_to(free_per_rank)
            if self.role == "decode":
                req.context = req.prompt_tokens + req.generated
                self.running.append(req)
            else:
                req.dp_rank = self._dp_rank(req)
                matched = self.caches[req.dp_rank].match(req.chain) if self.prefix_cache else 0
                req.cached_tokens = min(matched, max(0, req.prompt_tokens - 1))
                req.context = req.cached_tokens
                self.prefilling.append(req)

    def _dp_rank(self, req: TwinRequest) -> int:
        """The DP rank (its radix cache) a prompt lands on; see the class docstring."""
        if self.dp_ranks == 1:
            return 0
        if self.dp_routing == "sticky":
            return req.route_key % self.dp_ranks
        if self.role == "prefill":  # bootstrap_room % dp, the room drawn at random by the router
            return self._rng.randrange(self.dp_ranks)
        self._round_robin = (self._round_robin + 1) % self.dp_ranks
        return self._round_robin

    def _plan_prefill(self) -> tuple[list[tuple[TwinRequest, int]], StepCost]:
        budget = self.chunk
        batch: list[tuple[TwinRequest, int]] = []
        attn = 0.0
        cached_weighted = 0.0
        model = self.cost.model
        for req in self.prefilling:
            if budget <= 0:
                break
            todo = req.uncached_tokens - req.prefilled
            take = min(todo, budget)
            if take <= 0:
                take = 0
            mid = req.cached_tokens + req.prefilled + take // 2
            attn += take * model.attention_flops_per_token(mid)
            cached_weighted += take * (req.cached_tokens + req.prefilled)
            batch.append((req, take))
            budget -= take
        new_tokens = sum(take for _, take in batch)
        cached = cached_weighted / new_tokens if new_tokens else 0.0
        return batch, self.cost.prefill_step(max(1, new_tokens), attn, cached)

    def _finish_prefill(self, batch: list[tuple[TwinRequest, int]]) -> None:
        now = time.monotonic()
        stats = self.cluster.stats
        batch_prompt = batch_cached = 0
        for req, take in batch:  # a request's prefix hit counts with its first chunk
            first_chunk = req.prefilled == 0
            batch_cached += req.cached_tokens if first_chunk else 0
            batch_prompt += take + (req.cached_tokens if first_chunk else 0)
        if batch_prompt:
            self.last_batch_hit_rate = batch_cached / batch_prompt
        for req, take in batch:
            if req.finished:
                continue
            req.prefilled += take
            req.context = req.cached_tokens + req.prefilled
            if req.prefilled < req.uncached_tokens:
                continue
            self.prefilling.remove(req)
            if self.prefix_cache:
                self.caches[req.dp_rank].insert(req.chain, (self.kv_capacity_tokens - self.kv_used) // self.dp_ranks)
            # the prefill forward pass yields the first output token
            req.t_first_token = req.t_last_token = now
            req.generated = 1
            req.pending += 1
            req.context = req.prompt_tokens + 1
            stats.decoded_tokens_total += 1
            self.recent_gen.append((now, 1))
            stats.ttft.observe(now - req.t_arrival)
            stats.queue_time.observe(req.t_admitted - req.t_arrival)
            if req.generated >= req.target_tokens:
                self._release(req)
                self._complete(req, now)
            elif self.role == "prefill":
                self._release(req)
                self.cluster.transfer(req)
            else:
                self.running.append(req)
            req.wake()

    def _plan_decode(self) -> StepCost:
        model = self.cost.model
        kv = 0.0
        attn = 0.0
        contexts = 0
        for req in self.running:
            if req.context - req.kv_ctx >= KV_REFRESH_TOKENS:
                req.kv_ctx = req.context
                req.kv_read = model.kv_read_bytes(req.context)
                req.attn_flops = model.attention_flops_per_token(req.context)
            kv += req.kv_read
            attn += req.attn_flops
            contexts += req.context
        return self.cost.decode_step(len(self.running), kv, attn, contexts)

    def _advance_decode(self) -> None:
        """One decode (verify) step: every running request gains 1 + accepted drafts.

        Inter-token latency is observed once per generated token, as SGLang's tokenizer does per
        chunk: a request that got n tokens observes (time since its previous tokens) / n, n times -
        so prefill steps that stalled its decode count, as they do on a real server.
        """
        now = time.monotonic()
        spec = self.cost.spec
        depth = min(spec.num_steps, spec.num_draft_tokens - 1) if spec.enabled else 0
        accept_p = spec.acceptance
        rand = self._rng.random
        interval = self.stream_interval
        stats = self.cluster.stats
        emitted = 0
        batch = len(self.running)
        still: list[TwinRequest] = []
        for req in self.running:
            if req.finished:
                continue
            n = 1
            for _ in range(depth):
                if rand() < accept_p:
                    n += 1
                else:
                    break
            left = req.target_tokens - req.generated
            if n > left:
                n = left
            req.generated += n
            req.pending += n
            req.context += n
            emitted += n
            stats.itl.observe((now - req.t_last_token) / n, n)
            req.t_last_token = now
            if req.generated >= req.target_tokens:
                self._release(req)
                self._complete(req, now)
                req.wake()
            else:
                still.append(req)
                if req.pending >= interval:
                    req.wake()
        self.running = still
        if depth:
            stats.spec_verify_steps += batch
            stats.spec_accepted_tokens += emitted
        stats.decoded_tokens_total += emitted
        self.recent_gen.append((now, emitted))

    def _release(self, req: TwinRequest) -> None:
        self.kv_used -= req.reserved
        req.reserved = 0

    def _complete(self, req: TwinRequest, now: float) -> None:
        req.finished = True
        req.finish_reason = req.finish_reason or "length"
        req.t_finished = now
        stats = self.cluster.stats
        # SGLang's tokenizer manager counts a request's tokens once, when it finishes
        # (metrics_collector.observe_one_finished_request), not as they are generated
        stats.prompt_tokens_total += req.prompt_tokens
        stats.cached_tokens_total += req.cached_tokens
        stats.generation_tokens_total += req.generated
        stats.requests_total += 1
        stats.e2e.observe(now - req.t_arrival)

    # -- power -------------------------------------------------------------------------------
    def _account_energy(self, now: float, cost: StepCost) -> None:
        """Integrate this engine's per-GPU energy: idle until now, then the step's power."""
        self.energy_up_to(now)
        power = self.cost.power_w(cost.activity)
        self.energy_j_per_gpu += power * cost.duration_s
        self._energy_t = now + cost.duration_s
        self._busy_until = self._energy_t
        self.busy_power_w = power

    def energy_up_to(self, now: float) -> float:
        """Energy counter per GPU (J) at ``now``, adding idle draw for time with no step."""
        if now > self._energy_t:
            self.energy_j_per_gpu += self.cost.hardware.idle_power_w * (now - self._energy_t)
            self._energy_t = now
        return self.energy_j_per_gpu

    def utilization(self, now: float) -> float:
        return 1.0 if now < self._busy_until else 0.0


class Cluster:
    """The deployment: engines plus the router (prefix affinity; PD hand-off when disaggregated)."""

    def __init__(self, engines_factory: Callable[[Cluster], tuple[list[Engine], list[Engine]]]):
        self.stats = ClusterStats()
        self.first_stage, self.decode_stage = engines_factory(self)
        self.engines = self.first_stage + [e for e in self.decode_stage if e not in self.first_stage]
        self._route: dict[int, Engine] = {}
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(e.run(), name=f"twin-engine-{e.index}") for e in self.engines]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def next_id(self) -> str:
        return f"{next(self._ids):x}"

    def submit(self, req: TwinRequest) -> None:
        engine = self._route.get(req.route_key)
        if engine is None:
            engine = min(self.first_stage, key=lambda e: e.active + e.queued)
            if len(self._route) > 200_000:
                self._route.clear()
            self._route[req.route_key] = engine
        engine.enqueue(req)

    def transfer(self, req: TwinRequest) -> None:
        """Disaggregation: move a prefilled request's KV to the least loaded decode engine."""
        target = min(self.decode_stage, key=lambda e: e.active + e.queued + e.kv_receiving)
        source = req.engine
        delay = target.cost.kv_transfer_s(req.context)
        self.stats.kv_transfer_ms.observe(delay * 1000.0)
        self.stats.kv_transfer_gb_s.observe(target.cost.kv_transfer_bytes(req.context) / delay / 1e9)
        target.kv_receiving += 1
        if source is not None:
            source.kv_sending += 1
        asyncio.get_running_loop().call_later(delay, self._arrive, source, target, req)

    @staticmethod
    def _arrive(source: Engine | None, target: Engine, req: TwinRequest) -> None:
        target.kv_receiving -= 1
        if source is not None:
            source.kv_sending -= 1
        if not req.finished:
            target.enqueue(req)

    def abort(self, req: TwinRequest) -> None:
        if req.engine is not None:
            req.engine.abort(req)
        elif not req.finished:
            req.finished = True
            req.aborted = True

    # -- views for /metrics and /server_info -------------------------------------------------
    @property
    def running(self) -> int:
        return sum(len(e.running) + len(e.prefilling) for e in self.engines)

    @property
    def queued(self) -> int:
        return sum(e.queued for e in self.engines)

    @property
    def kv_used_tokens(self) -> int:
        return sum(e.kv_used for e in self.engines)

    @property
    def kv_capacity_tokens(self) -> int:
        return sum(e.kv_capacity_tokens for e in self.engines)

    def gen_throughput(self, window_s: float = 5.0, engine: Engine | None = None) -> float:
        """Tokens generated per second over the last ``window_s`` (by ``engine`` alone if given)."""
        if engine is None:
            return sum(self.gen_throughput(window_s, e) for e in self.engines)
        now = time.monotonic()
        return sum(n for t, n in engine.recent_gen if now - t <= window_s) / window_s

    def flush_cache(self) -> bool:
        """Empty every prefix cache; refused (False) while requests run or wait, as in SGLang."""
        if self.running or self.queued:
            return False
        for engine in self.engines:
            for cache in engine.caches:
                cache.clear()
        return True
