"""The twin's HTTP face: SGLang's endpoints, OpenAI streaming format, and the DCGM exporter.

Built on aiohttp. Requests are turned into ``TwinRequest``s for the cluster; streaming handlers
wait on each request's future and write whatever tokens are pending as one SSE chunk (token
coalescing, like ``--stream-interval``), so one process keeps thousands of streams flowing.
Errors use SGLang's OpenAI-compatible error shape and never take the server down.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agentperf_tui import __version__
from agentperf_tui.server.launch_plan import mask_argv
from agentperf_tui.twin import aic_table
from agentperf_tui.twin.aic_table import StepTable
from agentperf_tui.twin.bmc import TwinBmc
from agentperf_tui.twin.config import SGLANG_VERSION, TwinConfig, TwinConfigError
from agentperf_tui.twin.costmodel import CostModel, SpeculativeConfig, acceptance_for_depth
from agentperf_tui.twin.faults import FAULT_FIELDS, FaultDice, Faults
from agentperf_tui.twin.hardware import DEEPSEEK_V4_PRO
from agentperf_tui.twin.metrics import DcgmExporter, SGLangCollector, registry_with
from agentperf_tui.twin.scheduler import Cluster, Engine, TwinRequest
from agentperf_tui.twin.textgen import filler_bytes, filler_text, tool_arguments
from agentperf_tui.twin.tokenizer import PromptTokenCounter

log = logging.getLogger("agentperf_tui.twin")
NATURAL_OUTPUT_MEDIAN = 150  # tokens, when ignore_eos is off (AA's median output per turn)
AUTH_EXEMPT = ("/health", "/ready", "/metrics", "/twin/")
ESTIMATE = PromptTokenCounter("estimate")
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def error_response(status: int, message: str, err_type: str = "BadRequestError",
                   param: str | None = None) -> web.Response:
    """SGLang's OpenAI-compatible error body."""
    body = {"object": "error", "message": message, "type": err_type, "param": param, "code": status}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def prompt_chain(messages: list[Any], tools: Any, counter: PromptTokenCounter | None = None
                 ) -> tuple[list[tuple[int, int]], int, int]:
    """(chain of (node hash, cumulative tokens), prompt tokens, routing key) for a chat prompt.

    Tokens are counted by ``counter`` (DeepSeek V4's tokenizer and template when installed, else
    the 4-characters estimate); the generation prompt's markers count toward the total only.
    """
    counter = counter or ESTIMATE
    chain: list[tuple[int, int]] = []
    total = 0
    parent = 0
    if tools:
        tools_json = orjson.dumps(tools)
        total += counter.tools_tokens(tools)
        parent = hash((0, tools_json))
        chain.append((parent, total))
    route_key = parent
    previous_role = None
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{i}] must be an object")
        content = message.get("content")
        key = (message.get("role"), content if isinstance(content, str) else orjson.dumps(content),
               orjson.dumps(message.get("tool_calls")) if message.get("tool_calls") else None,
               message.get("reasoning_content"))
        parent = hash((parent, key))
        total += (counter.cached_message_tokens(key, message, previous_role) if counter.exact
                  else counter.message_tokens(message, previous_role))
        previous_role = message.get("role")
        chain.append((parent, total))
        if i < 2:
            route_key = parent
    return chain, total + counter.generation_prompt_tokens(previous_role), route_key


class TwinServer:
    """Owns the simulated cluster and serves it over HTTP (and DCGM on its own port)."""

    def __init__(self, config: TwinConfig):
        t0 = time.perf_counter()
        self.config = config
        self.argv = list(config.argv)
        self.tokens = PromptTokenCounter(config.args.tokenizer)
        self.token_counter_name = self.tokens.name
        args = config.args
        self.model_name = args.served_model_name or args.model_path
        self.context_length = args.context_length or DEEPSEEK_V4_PRO.max_context
        self.rng = random.Random(args.seed)
        self.created = int(time.time())
        spec = SpeculativeConfig()
        if args.speculative_algorithm:
            steps = args.speculative_num_steps or 1
            draft = args.speculative_num_draft_tokens or steps + 1
            depth = min(steps, draft - 1)
            accept = args.mtp_acceptance if args.mtp_acceptance is not None else acceptance_for_depth(depth)
            spec = SpeculativeConfig(steps, draft, accept)
        self.spec = spec
        self.step_tables: dict[tuple[str, int], StepTable] = {}
        self.cluster = Cluster(self._make_engines)
        self.registry = registry_with(SGLangCollector(self.cluster, self.model_name, spec.enabled))
        self.dcgm = self._dcgm_exporter()
        self.started = time.monotonic()
        self._stats_task: asyncio.Task[None] | None = None
        self._streams: dict[TwinRequest, web.Request] = {}  # for the disconnect sweeper
        self.faults = Faults()
        self.faults.update({name: getattr(args, f"fault_{name}") for name in FAULT_FIELDS})
        self.dice = FaultDice(self.faults, args.seed)
        self.dcgm.faults = self.faults
        self.bmc = TwinBmc(self.dcgm, self.config.hardware)
        self.startup_time = round(time.perf_counter() - t0, 3)  # seconds to build the deployment

    # -- deployment ----------------------------------------------------------------------------
    def _make_engines(self, cluster: Cluster) -> tuple[list[Engine], list[Engine]]:
        cfg, args = self.config, self.config.args
        max_running = args.max_running_requests  # per worker (engine): 256 unless set, as SGLang

        def engine(index: int, role: str, gpus: int) -> Engine:
            cost = CostModel(cfg.hardware, DEEPSEEK_V4_PRO, gpus, self.spec, attention_dp=args.enable_dp_attention,
                             prefill_time_scale=cfg.prefill_time_scale if role == "prefill" else 1.0,
                             table=self._step_table(role, gpus))
            capacity = cost.kv_capacity_tokens(args.mem_fraction_static)
            if capacity <= 0:
                raise TwinConfigError(
                    f"--mem-fraction-static {args.mem_fraction_static}: {gpus} x {cfg.hardware.hbm_gb:g} GB "
                    f"cannot hold the {DEEPSEEK_V4_PRO.weight_bytes / 1e9:.0f} GB of weights")
            # attention DP: one radix cache per DP rank (DP == TP in every recipe's DP-attention worker)
            dp_ranks = min(args.dp, gpus) if args.enable_dp_attention else 1
            return Engine(index, role, cost, capacity, max_running, args.chunked_prefill_size,
                          args.stream_interval, cluster, prefix_cache=not args.disable_radix_cache,
                          dp_ranks=dp_ranks, dp_routing=args.dp_routing)

        if cfg.prefill_engines:
            prefill = [engine(i, "prefill", cfg.prefill_engine_gpus) for i in range(cfg.prefill_engines)]
            decode = [engine(cfg.prefill_engines + i, "decode", cfg.engine_gpus) for i in range(cfg.decode_engines)]
            return prefill, decode
        mixed = [engine(i, "mixed", cfg.engine_gpus) for i in range(cfg.mixed_engines)]
        return mixed, mixed

    def _step_table(self, role: str, gpus: int) -> StepTable | None:
        """``--cost-model aic``: AIConfigurator's step times for this engine shape (cached on disk)."""
        args = self.config.args
        if args.cost_model != "aic":
            return None
        key = (role, gpus)
        if key not in self.step_tables:
            ep = gpus if args.ep > 1 else 1  # the recipes' workers are TPn/EPn (or TP only)
            self.step_tables[key] = aic_table.load_or_build(
                self.config.hardware.name, tp=gpus, dp_attention=args.enable_dp_attention, ep=ep,
                nextn=self.spec.num_steps if (self.spec.enabled and role != "prefill") else 0,
                role={"mixed": "both"}.get(role, role))
        return self.step_tables[key]

    def _dcgm_exporter(self) -> DcgmExporter:
        hw = self.config.hardware
        gpu_map: list[tuple[int, str, object, float]] = []
        gpu = 0
        for engine in self.cluster.engines:
            share = self.config.prefill_power_share if engine.role == "prefill" else 1.0
            for _ in range(engine.cost.gpus):
                gpu_map.append((gpu, self._hostname(gpu), engine, share))
                gpu += 1
        while gpu < self.config.total_gpus:  # GPUs no engine uses idle at idle power
            gpu_map.append((gpu, self._hostname(gpu), None, 1.0))
            gpu += 1
        weight_mib = DEEPSEEK_V4_PRO.weight_bytes / self.config.engine_gpus / 2**20
        return DcgmExporter(gpu_map, hw.gpu_name, hw.hbm_gb * 1e9 / 2**20, hw.idle_power_w, hw.max_power_w,
                            weight_mib)

    def _hostname(self, gpu: int) -> str:
        hw = self.config.hardware
        node = gpu // hw.gpus_per_node
        return f"twin-node{node + 1}" if hw.name == "h200" else f"twin-tray{node + 1:02d}"

    # -- apps ----------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 2**20, middlewares=[self._auth_middleware])
        r = app.router
        r.add_get("/health", self.health_generate)  # SGLang: /health runs the 1-token generation too
        r.add_get("/ready", self.ready)
        r.add_get("/v1/models/{model:.+}", self.model_card)
        r.add_get("/health_generate", self.health_generate)
        r.add_get("/server_info", self.server_info)
        r.add_get("/get_server_info", self.server_info)
        r.add_get("/model_info", self.model_info)
        r.add_get("/get_model_info", self.model_info)
        r.add_route("*", "/flush_cache", self.flush_cache)
        r.add_get("/v1/models", self.models)
        r.add_post("/v1/chat/completions", self.chat_completions)
        r.add_post("/generate", self.generate)
        r.add_get("/metrics", self.metrics)
        r.add_route("POST", "/set_internal_state", self.set_internal_state)
        r.add_route("PUT", "/set_internal_state", self.set_internal_state)
        r.add_get("/twin/faults", self.get_faults)
        r.add_post("/twin/faults", self.set_faults)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    def dcgm_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self.dcgm_metrics)
        self.bmc.add_routes(app)  # the twin's BMC: Redfish node and rack power on the same port
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        self.cluster.start()
        self._stats_task = asyncio.create_task(self._log_stats())
        self._sweep_task = asyncio.create_task(self._sweep_disconnected())

    async def _on_cleanup(self, _app: web.Application) -> None:
        if self._stats_task:
            self._stats_task.cancel()
        self._sweep_task.cancel()
        await self.cluster.stop()

    async def _sweep_disconnected(self) -> None:
        """Abort requests whose client went away while they queue or prefill (SGLang checks
        ``is_disconnected`` the same way), so abandoned work does not load the simulated GPUs."""
        while True:
            await asyncio.sleep(0.5)
            for req, request in list(self._streams.items()):
                transport = request.transport
                if transport is None or transport.is_closing():
                    self.cluster.abort(req)
                    req.wake()

    async def _log_stats(self) -> None:
        """SGLang-style periodic 'Decode batch' log lines while there is work."""
        while True:
            await asyncio.sleep(5.0)
            c = self.cluster
            if c.running or c.queued:
                cap = c.kv_capacity_tokens
                log.info("Decode batch. #running-req: %d, #token: %d, token usage: %.2f, "
                         "gen throughput (token/s): %.2f, #queue-req: %d",
                         c.running, c.kv_used_tokens, c.kv_used_tokens / cap if cap else 0.0,
                         c.gen_throughput(), c.queued)

    # -- simple endpoints ---------------------------------------------------------------------
    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        """SGLang's --api-key rule (utils/auth.py decide_request_auth): every route needs
        ``Authorization: Bearer KEY`` except OPTIONS and paths under /health, /ready and /metrics
        (and the twin's own /twin/ routes, loopback-only). A bad key: 401 {"error": "Unauthorized"}."""
        key = self.config.args.api_key
        path = request.path
        if (key and request.method != "OPTIONS" and not path.startswith(AUTH_EXEMPT)
                and request.headers.get("Authorization") != f"Bearer {key}"):
            return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(request)

    async def ready(self, _request: web.Request) -> web.Response:
        """200 once serving (the twin is up as soon as it listens), no body; SGLang: 503 while not Up."""
        return web.Response(status=200)

    async def set_internal_state(self, request: web.Request) -> web.Response:
        """SGLang 0.5.23's run-time settings (scheduler_components/internal_state.py): only its handled
        keys are accepted, all or none, answered with one ``updated`` per scheduler (DP rank). The twin
        keeps the values (shown in /server_info); it models no effect of the acceptance thresholds."""
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return error_response(400, "expected a JSON body", "BadRequestError")
        requested = body.get("server_args") if isinstance(body, dict) else None
        if not isinstance(requested, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in requested.values()):
            return error_response(400, "server_args: expected an object of numbers", "BadRequestError")
        args = self.config.args
        upper = args.max_running_requests // max(1, getattr(args, "pp", 1))
        accepted = all(
            key in ("speculative_accept_threshold_single", "speculative_accept_threshold_acc")
            or (key == "pp_max_micro_batch_size" and 1 <= value <= upper)
            for key, value in requested.items())
        if accepted:
            for key, value in requested.items():
                setattr(args, key, value)
        return web.json_response([accepted] * max(1, args.dp))

    async def get_faults(self, _request: web.Request) -> web.Response:
        return web.json_response(self.faults.as_dict())

    async def set_faults(self, request: web.Request) -> web.Response:
        """Change faults at run time; only from loopback clients."""
        if request.remote not in ("127.0.0.1", "::1"):
            return error_response(403, "fault injection is accepted from loopback only", "PermissionError")
        try:
            values = orjson.loads(await request.read())
            if not isinstance(values, dict):
                raise ValueError("expected a JSON object of fault settings")
            self.faults.update(values)
        except (ValueError, orjson.JSONDecodeError) as exc:
            return error_response(400, str(exc))
        if self.faults.counter_reset:
            self.cluster.stats.reset_request_counters()
            self.faults.counter_reset = 0
        log.info("faults now %s", self.faults.as_dict())
        return web.json_response(self.faults.as_dict())

    async def health_generate(self, _request: web.Request) -> web.Response:
        """Runs a one-token generation through the scheduler, as SGLang does."""
        if self.faults.health_delay_s:
            await asyncio.sleep(self.faults.health_delay_s)
        chain = [(hash(("health", time.monotonic_ns())), 4)]
        req = TwinRequest("health-" + self.cluster.next_id(), chain, 4, 1, chain[0][0])
        self.cluster.submit(req)
        try:
            while not req.finished:
                await asyncio.wait_for(req.wait(), timeout=60)
        except TimeoutError:
            self.cluster.abort(req)
            return web.Response(status=503, text="health_generate timed out")
        return web.Response(status=200)

    def server_args(self) -> dict[str, Any]:
        """The twin's flags under SGLang 0.5.23's ServerArgs field names (resolved values)."""
        args = self.config.args
        attn_dp = args.dp if args.enable_dp_attention else 1
        return {
            "model_path": args.model_path, "served_model_name": self.model_name, "tokenizer_path": args.model_path,
            "tp_size": args.tp, "dp_size": 1 if args.enable_dp_attention else args.dp, "attn_dp_size": attn_dp,
            "enable_dp_attention": attn_dp > 1, "ep_size": args.ep, "pp_size": args.pp,
            "nnodes": args.nnodes, "node_rank": args.node_rank, "host": args.host, "port": args.port,
            "max_running_requests": args.max_running_requests, "mem_fraction_static": args.mem_fraction_static,
            "context_length": self.context_length,
            # SGLang reports the per-DP-rank chunk (parallel_hook.handle_data_parallelism divides it)
            "chunked_prefill_size": args.chunked_prefill_size // attn_dp,
            "stream_interval": args.stream_interval, "disable_radix_cache": args.disable_radix_cache,
            "enable_metrics": args.enable_metrics, "enable_cache_report": args.enable_cache_report,
            "tool_call_parser": args.tool_call_parser, "reasoning_parser": args.reasoning_parser,
            "speculative_algorithm": args.speculative_algorithm,
            "speculative_num_steps": args.speculative_num_steps,
            "speculative_eagle_topk": args.speculative_eagle_topk,
            "speculative_num_draft_tokens": args.speculative_num_draft_tokens,
            "moe_a2a_backend": args.moe_a2a_backend, "moe_runner_backend": args.moe_runner_backend,
            "disaggregation_mode": args.disaggregation_mode, "trust_remote_code": args.trust_remote_code,
            "log_level": args.log_level, "random_seed": args.random_seed,
            # set at run time through /set_internal_state (absent until then)
            **{k: getattr(args, k) for k in ("pp_max_micro_batch_size", "speculative_accept_threshold_single",
                                             "speculative_accept_threshold_acc") if hasattr(args, k)},
        }

    async def server_info(self, _request: web.Request) -> web.Response:
        """SGLang's /server_info shape (http_server.server_info), plus a ``twin`` block saying what it is."""
        cfg = self.config
        server_args = self.server_args()
        attn_dp = server_args["attn_dp_size"]
        internal_states = [{
            "engine": f"{e.role}{e.index}", "effective_max_running_requests_per_dp": e.max_running // attn_dp,
            "last_gen_throughput": self.cluster.gen_throughput(engine=e),
            "avg_spec_accept_length": self.spec.expected_accept_length,
            "memory_usage": {"token_capacity": e.kv_capacity_tokens},
        } for e in self.cluster.engines]
        body = {
            **server_args,
            "launch_command": " ".join(["python", "-m", "agentperf_tui.twin", *mask_argv(self.argv)]),
            "status": "ready",
            "max_total_num_tokens": self.cluster.kv_capacity_tokens,
            "max_req_input_len": self.context_length - 1,
            "startup_time": self.startup_time,
            "internal_states": internal_states,
            "version": f"twin-{__version__}",
            "frontend": "python",
            "twin": {
                "sglang_version": SGLANG_VERSION, "hardware": cfg.hardware.name, "gpu_name": cfg.hardware.gpu_name,
                "total_gpus": cfg.total_gpus,
                "engines": {"mixed": cfg.mixed_engines, "prefill": cfg.prefill_engines,
                            "decode": cfg.decode_engines, "gpus_per_engine": cfg.engine_gpus,
                            "gpus_per_prefill_engine": cfg.prefill_engine_gpus},
                "not_modelled_args": list(cfg.unknown_args),
                "tokens": self.token_counter_name,
                "slice": None if not cfg.slice_of else {
                    "decode_engines": cfg.decode_engines or cfg.mixed_engines, "of": cfg.slice_of,
                    "fraction": cfg.slice_fraction, "gpus_simulated": cfg.total_gpus, "full_gpus": cfg.full_gpus,
                    "prefill_engines_simulated": cfg.prefill_engines, "prefill_time_scale": cfg.prefill_time_scale,
                    "prefill_power_share": cfg.prefill_power_share},
            },
        }
        return web.Response(body=orjson.dumps(body, default=str), content_type="application/json")

    async def model_info(self, _request: web.Request) -> web.Response:
        """SGLang's /model_info fields (http_server.model_info)."""
        args = self.config.args
        body = {"model_path": args.model_path, "served_model_name": self.model_name,
                "tokenizer_path": args.model_path, "is_generation": True, "preferred_sampling_params": None,
                "weight_version": "default", "load_format": "auto", "reasoning_parser": args.reasoning_parser,
                "tool_call_parser": args.tool_call_parser, "disaggregation_mode": args.disaggregation_mode,
                "has_image_understanding": False, "has_audio_understanding": False,
                "model_type": "deepseek_v4", "architectures": ["DeepseekV4ForCausalLM"]}
        return web.json_response(body)

    def _card(self) -> dict[str, Any]:
        return {"id": self.model_name, "object": "model", "created": self.created, "owned_by": "sglang",
                "root": self.model_name, "parent": None, "max_model_len": self.context_length}

    async def models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [self._card()]})

    async def model_card(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        if name != self.model_name:
            body = {"error": {"message": f"The model '{name}' does not exist", "type": "invalid_request_error",
                              "param": "model", "code": "model_not_found"}}
            return web.json_response(body, status=404)
        return web.json_response(self._card())

    async def flush_cache(self, _request: web.Request) -> web.Response:
        if self.cluster.flush_cache():
            return web.Response(text="Cache flushed.\nPlease check backend logs for more details. "
                                "(When there are running or waiting requests, the operation will not be performed.)\n")
        return web.Response(status=400, text="Cache not flushed: there are running or waiting requests.\n")

    async def metrics(self, _request: web.Request) -> web.Response:
        if not self.config.args.enable_metrics:
            return web.Response(status=404, text="metrics are disabled; start with --enable-metrics\n")
        if self.faults.metrics_down:
            return web.Response(status=503, text="metrics endpoint down (fault injection)\n")
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def dcgm_metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.dcgm.render(), headers={"Content-Type": "text/plain; version=0.0.4"})

    # -- generation ----------------------------------------------------------------------------
    def _natural_length(self, max_tokens: int) -> int:
        value = int(self.rng.lognormvariate(0.0, 1.2) * NATURAL_OUTPUT_MEDIAN)
        return max(1, min(max_tokens, value))

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        faults, dice = self.faults, self.dice
        dice.chat_requests += 1
        if faults.crash_after and dice.chat_requests > faults.crash_after:
            log.error("fault injection: crashing after %d chat requests", faults.crash_after)
            asyncio.get_running_loop().call_soon(os._exit, 3)
        if dice.hit(faults.reset_rate) and request.transport is not None:
            request.transport.abort()
            return web.Response(status=500)
        if dice.hit(faults.http_error_rate):
            status = faults.http_status
            text = {429: "Too many requests (fault injection)", 500: "Internal server error (fault injection)"}.get(
                status, "Service unavailable (fault injection)")
            return error_response(status, text, "ServiceUnavailableError" if status != 429 else "RateLimitError")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return error_response(400, f"Invalid JSON in request body: {exc}")
        if not isinstance(body, dict):
            return error_response(400, "Request body must be a JSON object")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return error_response(400, "Field 'messages' is required and must be a non-empty list", param="messages")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                       or max_tokens <= 0):
            return error_response(400, f"max_tokens must be a positive integer, got {max_tokens!r}",
                                  param="max_tokens")
        tools = body.get("tools") or None
        try:
            if self.tokens.exact:  # the encode runs in a thread (tokenizers releases the GIL): the step loop keeps time
                chain, prompt_tokens, route_key = await asyncio.to_thread(prompt_chain, messages, tools, self.tokens)
            else:
                chain, prompt_tokens, route_key = prompt_chain(messages, tools, self.tokens)
        except ValueError as exc:
            return error_response(400, str(exc), param="messages")
        room = self.context_length - prompt_tokens
        if max_tokens is None:
            max_tokens = max(1, min(room, 32768))
        if prompt_tokens + max_tokens > self.context_length:
            return error_response(
                400,
                f"Requested token count exceeds the model's maximum context length of {self.context_length} "
                f"tokens. You requested a total of {prompt_tokens + max_tokens} tokens: {prompt_tokens} tokens "
                f"from the input messages and {max_tokens} tokens for the completion. Please reduce the number "
                f"of tokens in the input messages or the completion to fit within the limit.")
        ignore_eos = bool(body.get("ignore_eos")) and not self.dice.hit(self.faults.ignore_eos_drop_rate)
        target = max_tokens if ignore_eos else self._natural_length(max_tokens)
        plan = self._output_plan(body, tools, target, ignore_eos)
        req = TwinRequest(self.cluster.next_id(), chain, prompt_tokens, target, route_key)
        self.cluster.submit(req)
        plan["model"] = str(body.get("model") or "default")  # echoed, as SGLang's serving_chat does
        if body.get("stream"):
            return await self._stream_chat(request, body, req, plan)
        return await self._complete_chat(req, plan)

    def _output_plan(self, body: dict[str, Any], tools: Any, target: int, ignore_eos: bool) -> dict[str, Any]:
        """How the target tokens split into reasoning, content and a tool call; finish reason."""
        args = self.config.args
        kwargs = body.get("chat_template_kwargs") or {}
        thinking = bool(kwargs.get("thinking") or kwargs.get("enable_thinking") or body.get("reasoning_effort"))
        reasoning = int(target * args.reasoning_share) if thinking else 0
        tool_tokens = 0
        tool_name = None
        if tools and isinstance(tools, list) and self.rng.random() < args.tool_call_rate and target - reasoning >= 8:
            tool_tokens = min(max(8, (target - reasoning) // 3), 200)
            function = (tools[self.rng.randrange(len(tools))] or {}).get("function") or {}
            tool_name = str(function.get("name") or "tool")
        content = target - reasoning - tool_tokens
        if ignore_eos:
            finish = "length"
        else:
            finish = "tool_calls" if tool_name else "stop"
        return {"reasoning": reasoning, "separate_reasoning": thinking and bool(args.reasoning_parser),
                "content": content, "tool_tokens": tool_tokens, "tool_name": tool_name,
                "tool_args": tool_arguments(tool_tokens) if tool_name else "", "finish": finish}

    def _deltas(self, plan: dict[str, Any], start: int, count: int, rid: str) -> dict[str, Any]:
        """The delta for output tokens [start, start+count)."""
        delta: dict[str, Any] = {}
        end = start + count
        r_end = plan["reasoning"]
        c_end = r_end + plan["content"]
        if start < r_end:
            text = filler_text(start, min(end, r_end) - start)
            key = "reasoning_content" if plan["separate_reasoning"] else "content"
            delta[key] = text
        if end > r_end and start < c_end:
            text = filler_text(max(start, r_end), min(end, c_end) - max(start, r_end))
            delta["content"] = delta.get("content", "") + text if "content" in delta else text
        if end > c_end and plan["tool_name"]:
            args = plan["tool_args"]
            total = plan["tool_tokens"]
            a0 = len(args) * (max(start, c_end) - c_end) // total
            a1 = len(args) if end >= c_end + total else len(args) * (end - c_end) // total
            call: dict[str, Any] = {"index": 0, "function": {"arguments": args[a0:a1]}}
            if start <= c_end:
                call.update(id=f"call_{rid}", type="function")
                call["function"]["name"] = plan["tool_name"]
            delta["tool_calls"] = [call]
        return delta

    def _delta_bytes(self, plan: dict[str, Any], start: int, count: int, rid: str) -> bytes:
        """JSON of the delta for tokens [start, start+count); plain content skips dict and orjson."""
        r_end = plan["reasoning"]
        if start >= r_end and start + count <= r_end + plan["content"]:
            return b'{"content":"' + filler_bytes(start, count) + b'"}'
        return orjson.dumps(self._deltas(plan, start, count, rid))

    async def _stream_chat(self, request: web.Request, body: dict[str, Any], req: TwinRequest,
                           plan: dict[str, Any]) -> web.StreamResponse:
        rid = f"chatcmpl-{req.rid}"
        head = (b'data: {"id":"' + rid.encode() + b'","object":"chat.completion.chunk","created":'
                + str(int(time.time())).encode() + b',"model":' + orjson.dumps(plan["model"])
                + b',"choices":[{"index":0,"delta":')
        tail = b',"logprobs":null,"finish_reason":null,"matched_stop":null}],"usage":null}\n\n'
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        resp = web.StreamResponse(status=200, headers=SSE_HEADERS)
        sent = 0
        fault = None
        if self.faults.any_stream_fault:
            for kind in ("malformed", "truncate", "stall", "abort"):
                if self.dice.hit(getattr(self.faults, f"{kind}_rate")):
                    fault = kind
                    break
        fault_at = max(1, req.target_tokens // 2)
        self._streams[req] = request
        try:
            await resp.prepare(request)
            await resp.write(head + b'{"role":"assistant","content":""}' + tail)
            while True:
                await req.wait()
                n = req.take_pending()
                if n:
                    await resp.write(head + self._delta_bytes(plan, sent, n, req.rid) + tail)
                    sent += n
                    if fault is not None and sent >= fault_at:
                        if fault == "malformed":
                            await resp.write(b'data: {"id": "' + rid.encode() + b'", "choices": [{"delta": \n\n')
                        elif fault == "stall":
                            await asyncio.sleep(self.faults.stall_s)
                        elif fault == "abort":  # SGLang's shape: an error event, then [DONE]
                            self.cluster.abort(req)
                            error = {"error": {"object": "error", "message": "Request aborted (fault injection)",
                                               "type": "SERVICE_UNAVAILABLE", "param": None, "code": 503}}
                            await resp.write(b"data: " + orjson.dumps(error) + b"\n\ndata: [DONE]\n\n")
                            await resp.write_eof()
                            return resp
                        elif fault == "truncate":
                            if request.transport is not None:
                                request.transport.abort()
                            self.cluster.abort(req)
                            return resp
                        fault = None
                if req.finished and not req.pending:
                    break
            if req.aborted:
                return resp
            finish = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
                      "model": plan["model"],
                      "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": plan["finish"],
                                   "matched_stop": None}], "usage": None}
            chunks = [b"data: " + orjson.dumps(finish) + b"\n\n"]
            if include_usage and not self.dice.hit(self.faults.usage_drop_rate):
                usage = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
                         "model": plan["model"], "choices": [], "usage": self._usage(req)}
                chunks.append(b"data: " + orjson.dumps(usage) + b"\n\n")
            chunks.append(b"data: [DONE]\n\n")
            await resp.write(b"".join(chunks))
            await resp.write_eof()
        except ConnectionError:  # the client went away (aiohttp's ClientConnectionResetError too)
            self.cluster.abort(req)
        finally:
            self._streams.pop(req, None)
            if not req.finished:
                self.cluster.abort(req)
        return resp

    def _usage(self, req: TwinRequest) -> dict[str, Any]:
        return {"prompt_tokens": req.prompt_tokens, "completion_tokens": req.generated,
                "total_tokens": req.prompt_tokens + req.generated,
                # SGLang reports cached tokens only with --enable-cache-report (else null)
                "prompt_tokens_details": ({"cached_tokens": req.cached_tokens}
                                          if self.config.args.enable_cache_report else None),
                "reasoning_tokens": 0}

    async def _complete_chat(self, req: TwinRequest, plan: dict[str, Any]) -> web.Response:
        try:
            while not req.finished:
                await req.wait()
                req.take_pending()
        finally:
            if not req.finished:
                self.cluster.abort(req)
        delta = self._deltas(plan, 0, req.generated, req.rid)
        message: dict[str, Any] = {"role": "assistant", "content": delta.get("content", ""),
                                   "reasoning_content": delta.get("reasoning_content"), "tool_calls": None}
        if "tool_calls" in delta:
            call = delta["tool_calls"][0]
            message["tool_calls"] = [{"id": call.get("id"), "type": "function", "index": 0,
                                      "function": call["function"]}]
        body = {"id": f"chatcmpl-{req.rid}", "object": "chat.completion", "created": int(time.time()),
                "model": plan["model"],
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": plan["finish"],
                             "matched_stop": None}],
                "usage": self._usage(req)}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def generate(self, request: web.Request) -> web.Response:
        """SGLang's native /generate, non-streaming: text in, text and meta_info out."""
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return error_response(400, f"Invalid JSON in request body: {exc}")
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return error_response(400, "Field 'text' (a string) is required", param="text")
        params = body.get("sampling_params") or {}
        max_new = params.get("max_new_tokens", 128)
        if not isinstance(max_new, int) or max_new <= 0:
            return error_response(400, f"max_new_tokens must be a positive integer, got {max_new!r}")
        text = body["text"]
        tokens = self.tokens.text_tokens(text)
        key = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        target = max_new if params.get("ignore_eos") else self._natural_length(max_new)
        req = TwinRequest(self.cluster.next_id(), [(key, tokens)], tokens, target, key)
        self.cluster.submit(req)
        t0 = time.monotonic()
        while not req.finished:
            await req.wait()
            req.take_pending()
        meta = {"id": req.rid, "prompt_tokens": tokens, "completion_tokens": req.generated,
                "cached_tokens": req.cached_tokens,
                "finish_reason": {"type": "length", "length": req.generated},
                "e2e_latency": time.monotonic() - t0}
        return web.json_response({"text": filler_text(0, req.generated), "meta_info": meta})
