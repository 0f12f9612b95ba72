"""Command line of the twin: SGLang's own launch flags plus a few twin settings, validated.

Flags SGLang has but the twin ignores are still accepted (an operator can paste a real launch
line) and reported in /server_info as ``unknown_args``. Flags that contradict the hardware
(e.g. ``--tp 16`` on one H200 node) stop the twin at start with a clear message.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import random
from dataclasses import dataclass

from agentperf_tui.twin.hardware import HARDWARE, HardwareSpec


class TwinConfigError(ValueError):
    """A twin flag that cannot describe a real deployment on the chosen hardware."""


@dataclass(frozen=True)
class TwinConfig:
    """Validated twin settings: the parsed namespace plus the derived deployment shape."""

    args: argparse.Namespace
    unknown_args: tuple[str, ...]
    hardware: HardwareSpec
    total_gpus: int
    engine_gpus: int  # GPUs per decode (or mixed) engine = --tp
    mixed_engines: int  # engines doing both prefill and decode (aggregated)
    prefill_engines: int
    decode_engines: int
    prefill_engine_gpus: int
    # --slice K: K of the deployment's ``slice_of`` identical decode (or mixed) engines are simulated,
    # with prefill capacity in exact proportion: ceil(share) prefill engines whose steps take
    # ``prefill_time_scale`` x longer and whose power is reported x ``prefill_power_share``
    slice_of: int = 0
    full_gpus: int = 0  # GPUs of the whole deployment (= total_gpus when not sliced)
    prefill_time_scale: float = 1.0
    prefill_power_share: float = 1.0
    argv: tuple[str, ...] = ()  # the command line it came from (/server_info's launch_command)

    @property
    def slice_fraction(self) -> float:
        """Share of the deployment simulated (1.0 = all of it)."""
        if not self.slice_of:
            return 1.0
        return (self.decode_engines or self.mixed_engines) / self.slice_of


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentperf-tui twin",
        description="Digital twin of SGLang serving DeepSeek V4 Pro (no GPU needed).",
        allow_abbrev=False,
    )
    sg = p.add_argument_group("SGLang flags")
    sg.add_argument("--model-path", default="deepseek-ai/DeepSeek-V4-Pro")
    sg.add_argument("--served-model-name", default=None)
    sg.add_argument("--tp", "--tp-size", "--tensor-parallel-size", dest="tp", type=int, default=1)
    sg.add_argument("--dp", "--dp-size", "--data-parallel-size", dest="dp", type=int, default=1)
    sg.add_argument("--ep", "--ep-size", "--expert-parallel-size", dest="ep", type=int, default=1)
    sg.add_argument("--pp", "--pp-size", dest="pp", type=int, default=1)
    sg.add_argument("--nnodes", type=int, default=1)
    sg.add_argument("--node-rank", type=int, default=0)
    sg.add_argument("--enable-dp-attention", action="store_true",
                    help="deprecated in SGLang 0.5.23: --dp N --enable-dp-attention is --attn-dp-size N")
    sg.add_argument("--attn-dp-size", type=int, default=1,
                    help="attention data-parallel groups (SGLang 0.5.23's spelling of DP attention)")
    sg.add_argument("--host", default="127.0.0.1")
    sg.add_argument("--port", type=int, default=30000)
    sg.add_argument("--enable-metrics", action="store_true")
    sg.add_argument("--max-running-requests", type=int, default=None,
                    help="per worker; unset: 256, as SGLang's DeepSeek-V4 hook sets it")
    sg.add_argument("--mem-fraction-static", type=float, default=0.88)
    sg.add_argument("--context-length", type=int, default=None)
    sg.add_argument("--chunked-prefill-size", type=int, default=None,
                    help="unset: by GPU memory as SGLang resolves it (8192 below 160 GiB: H200; 16384 above: B300)")
    sg.add_argument("--enable-cache-report", action="store_true",
                    help="report usage.prompt_tokens_details.cached_tokens (SGLang sends null without it)")
    sg.add_argument("--random-seed", type=int, default=None,
                    help="reported in /server_info; unset: drawn per launch, as SGLang does")
    sg.add_argument("--stream-interval", type=int, default=1)
    sg.add_argument("--disable-radix-cache", action="store_true")
    sg.add_argument("--tool-call-parser", default=None)
    sg.add_argument("--reasoning-parser", default=None)
    sg.add_argument("--speculative-algorithm", default=None)
    sg.add_argument("--speculative-num-steps", type=int, default=None)
    sg.add_argument("--speculative-eagle-topk", type=int, default=None)
    sg.add_argument("--speculative-num-draft-tokens", type=int, default=None)
    sg.add_argument("--moe-a2a-backend", default=None)
    sg.add_argument("--moe-runner-backend", default=None)
    sg.add_argument("--disaggregation-mode", default="null")
    sg.add_argument("--trust-remote-code", action="store_true")
    sg.add_argument("--api-key", default=None)
    sg.add_argument("--log-level", default="info")
    tw = p.add_argument_group("twin settings")
    tw.add_argument("--hardware", choices=sorted(HARDWARE), default="h200")
    tw.add_argument("--dcgm-port", type=int, default=9400,
                    help="port of the simulated dcgm-exporter (0 disables it)")
    tw.add_argument("--prefill-gpus", type=int, default=0,
                    help="GPUs given to dedicated prefill workers (PD disaggregation); 0 = aggregated")
    tw.add_argument("--prefill-tp", type=int, default=4, help="GPUs per prefill worker")
    tw.add_argument("--cost-model", choices=("builtin", "aic"), default="builtin",
                    help="step times from the built-in roofline, or from NVIDIA AIConfigurator's measured "
                         "kernel data (tables cached on disk; building one needs pip install -e '.[aic]')")
    tw.add_argument("--slice", type=int, default=0,
                    help="simulate only this many of the deployment's identical decode engines, prefill "
                         "capacity and reported power in proportion (0 = all); scale agents by the share")
    tw.add_argument("--mtp-acceptance", type=float, default=None,
                    help="per drafted token acceptance probability (default: from DeepSeek-V4-Pro's measured "
                         "accept lengths at this draft depth: 1.79/2.27/2.49/2.54 at 1-4 steps)")
    tw.add_argument("--tool-call-rate", type=float, default=0.5,
                    help="share of tool-offering requests the simulated model answers with a tool call")
    tw.add_argument("--reasoning-share", type=float, default=0.5,
                    help="share of output tokens streamed as reasoning when thinking is requested")
    tw.add_argument("--seed", type=int, default=0)
    tw.add_argument("--dp-routing", choices=("sglang", "sticky"), default="sglang",
                    help="with attention DP, which DP rank's radix cache a prompt meets: SGLang's own choice "
                         "(PD prefill: the router's random bootstrap_room %% dp; otherwise round robin) or "
                         "'sticky', a DP-aware router keeping each conversation on one rank")
    tw.add_argument("--tokenizer", choices=("auto", "deepseek-v4", "estimate"), default="auto",
                    help="prompt token counts: DeepSeek V4's tokenizer and chat template (auto: when installed) "
                         "or the 4-characters-per-token estimate")
    ft = p.add_argument_group("fault injection (also POST /twin/faults from loopback)")
    from agentperf_tui.twin.faults import FAULT_FIELDS, INT_FIELDS, Faults

    defaults = Faults()
    for name, help_text in FAULT_FIELDS.items():
        kind = int if name in INT_FIELDS else float
        ft.add_argument(f"--fault-{name.replace('_', '-')}", dest=f"fault_{name}", type=kind,
                        default=getattr(defaults, name), help=help_text)
    return p


SGLANG_VERSION = "0.5.23"  # the SGLang the twin answers as (flags, endpoints, metrics)
DSV4_DEFAULT_MAX_RUNNING = 256  # arg_groups/deepseek_v4_hook.apply_deepseek_v4_defaults, per worker
log = logging.getLogger("agentperf_tui.twin")


def _check_against_sglang(unknown: list[str]) -> None:
    """Flags the twin does not model: refused if SGLang 0.5.23 refuses them too, else accepted with
    a warning (the twin runs as if they were not given) - so a profile that starts the twin starts
    real SGLang, and the other way round."""
    if not unknown:
        return
    from agentperf_tui.server import conformance

    data = conformance.load_cached("sglang", SGLANG_VERSION)
    problems = conformance.check_argv(["python", "-m", "sglang.launch_server", *unknown], data)
    refused = [p for p in problems if p.kind != "deprecated"]
    if refused:
        raise TwinConfigError("; ".join(p.message for p in refused))
    for p in problems:
        log.warning("%s", p.message)
    log.warning("not modelled by the twin (accepted, as SGLang %s would): %s", SGLANG_VERSION, " ".join(unknown))


def parse_twin_args(argv: list[str] | None) -> TwinConfig:
    """The validated deployment for a twin command line (SGLang's flags plus the twin's own)."""
    return dataclasses.replace(_parse_twin_args(argv), argv=tuple(argv or ()))


def _parse_twin_args(argv: list[str] | None) -> TwinConfig:
    """Parse and validate; raises TwinConfigError naming the flag that does not fit."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    _check_against_sglang(unknown)
    if args.max_running_requests is None:
        args.max_running_requests = DSV4_DEFAULT_MAX_RUNNING
    if args.random_seed is None:
        args.random_seed = random.randrange(2**30)
    if args.attn_dp_size < 1:
        raise TwinConfigError("--attn-dp-size must be >= 1")
    if args.attn_dp_size > 1:
        # SGLang's resolution (parallel_hook.handle_deprecated_dp_attention), read backwards: the
        # twin models attention DP as --dp N with DP attention on
        args.enable_dp_attention, args.dp = True, args.attn_dp_size
    hw = HARDWARE[args.hardware]
    if args.chunked_prefill_size is None:  # memory_hook.handle_gpu_memory_settings' tiers
        args.chunked_prefill_size = 8192 if hw.hbm_gb * 1e9 < 160 * 2**30 else 16384
    total = hw.gpus_per_node * args.nnodes if args.hardware == "h200" else hw.nvlink_domain_gpus
    if args.nnodes < 1 or args.nnodes > hw.max_nodes:
        raise TwinConfigError(f"--nnodes {args.nnodes}: {hw.name} allows 1..{hw.max_nodes}")
    for flag in ("tp", "dp", "ep", "pp"):
        if getattr(args, flag) < 1:
            raise TwinConfigError(f"--{flag} must be >= 1")
    if args.tp * args.pp > total:
        raise TwinConfigError(
            f"--tp {args.tp} x --pp {args.pp} needs {args.tp * args.pp} GPUs but {hw.name} with "
            f"--nnodes {args.nnodes} has {total}"
        )
    if args.tp > hw.nvlink_domain_gpus:
        raise TwinConfigError(f"--tp {args.tp} exceeds the {hw.nvlink_domain_gpus}-GPU NVLink domain of {hw.name}")
    if not args.enable_dp_attention and args.tp * args.dp * args.pp > total:
        raise TwinConfigError(
            f"--tp {args.tp} x --dp {args.dp} needs {args.tp * args.dp * args.pp} GPUs but {hw.name} "
            f"with --nnodes {args.nnodes} has {total}"
        )
    if args.dp > args.tp and args.enable_dp_attention:
        raise TwinConfigError(f"--dp {args.dp} with --enable-dp-attention must not exceed --tp {args.tp}")
    if args.ep > 1 and args.tp % args.ep:
        raise TwinConfigError(f"--ep {args.ep} must divide --tp {args.tp}")
    if not 0.05 <= args.mem_fraction_static <= 0.99:
        raise TwinConfigError(f"--mem-fraction-static {args.mem_fraction_static} outside 0.05..0.99")
    if args.prefill_gpus < 0 or args.prefill_gpus >= total:
        raise TwinConfigError(f"--prefill-gpus {args.prefill_gpus} must leave decode GPUs out of {total}")
    if args.prefill_gpus and args.prefill_gpus % args.prefill_tp:
        raise TwinConfigError(f"--prefill-gpus {args.prefill_gpus} is not a multiple of --prefill-tp {args.prefill_tp}")
    if args.stream_interval < 1:
        raise TwinConfigError("--stream-interval must be >= 1")
    if args.mtp_acceptance is not None and not 0.0 <= args.mtp_acceptance <= 1.0:
        raise TwinConfigError("--mtp-acceptance must be within 0..1")
    engine_gpus = args.tp * args.pp
    decode_gpus = total - args.prefill_gpus
    engines = decode_gpus // engine_gpus
    if engines < 1:
        raise TwinConfigError(f"--tp {args.tp} leaves no room for a decode engine on {decode_gpus} GPUs")
    prefill_engines = args.prefill_gpus // args.prefill_tp if args.prefill_gpus else 0
    if args.slice:
        return _sliced(args, tuple(unknown), hw, total, engine_gpus, engines, prefill_engines)
    if args.prefill_gpus:
        return TwinConfig(args, tuple(unknown), hw, total, engine_gpus, 0, prefill_engines, engines,
                          args.prefill_tp, full_gpus=total)
    return TwinConfig(args, tuple(unknown), hw, total, engine_gpus, engines, 0, 0, engine_gpus, full_gpus=total)


def _sliced(args: argparse.Namespace, unknown: tuple[str, ...], hw: HardwareSpec, total: int, engine_gpus: int,
            engines: int, prefill_engines: int) -> TwinConfig:
    """K of ``engines`` decode engines, and the same share of the prefill pool's capacity.

    The prefill share is rarely a whole number of engines (8 prefill x 4 GPUs for 5 decode engines
    gives 1.6 per decode engine): the slice runs ceil(share) prefill engines, each step slowed by
    ceil(share) / share so their capacity is exactly the share, and their energy counted at
    share / ceil(share) so the slice reports exactly its share of the deployment's power.
    """
    k = args.slice
    if k < 0 or k > engines:
        raise TwinConfigError(f"--slice {k}: the deployment has {engines} decode engines (1..{engines})")
    if not prefill_engines:
        return TwinConfig(args, unknown, hw, k * engine_gpus, engine_gpus, k, 0, 0, engine_gpus,
                          slice_of=engines, full_gpus=total)
    share = prefill_engines * k / engines
    simulated = math.ceil(share - 1e-9)
    return TwinConfig(args, unknown, hw, k * engine_gpus + simulated * args.prefill_tp, engine_gpus, 0, simulated,
                      k, args.prefill_tp, slice_of=engines, full_gpus=total, prefill_time_scale=simulated / share,
                      prefill_power_share=share / simulated)
