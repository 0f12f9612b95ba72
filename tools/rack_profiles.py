"""Write the real-rack launch profiles (profiles/gb300-*.toml) from the published recipes they follow.

A GB300 profile is 10-20 near-identical processes (one per worker node-rank) plus a router;
writing them by hand is how a flag ends up on 17 of 18 workers. This script holds each recipe
once - the per-worker flags and environment copied from the recipe file it cites - and lays the
workers out over the rack's trays. The profiles it writes are plain TOML an operator can read
and edit; ``tests/test_rack_profiles.py`` fails when a committed profile differs from what this
script writes (edit the recipe here, then run it)::

    python tools/rack_profiles.py          # rewrite profiles/gb300-*.toml
    python tools/rack_profiles.py --check  # exit 1 if any differs

Every argv is then checked flag by flag against SGLang's and smg's own argument parsers by the
conformance tests (agentperf_tui/server/conformance_data/).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "profiles"

SRT_SLURM = ("NVIDIA/srt-slurm@c88ef731636890ff6385a783e152c1790e15b194:"
             "recipes/dsv4-pro/sglang/gb300-fp4/8k1k/disagg/disagg-high-conc-8p1d-dep4-dep8-mtp.yaml")
AGENTX_GB300 = ("SemiAnalysisAI/InferenceX@843c6254ff69b567f772f6a5fd97675af3d04431:"
                "benchmarks/multi_node/srt-slurm-recipes/sglang/deepseek-v4/agentic/"
                "disagg-gb300-12p4d-dep8-dep16-c1536-mtp-kvoffload.yaml")
COOKBOOK = "sgl-project/sglang: docs/cookbook/autoregressive/DeepSeek/DeepSeek-V4.mdx (GB300 mooncake env)"

# The cookbook's GB200/GB300 mooncake block: NVLink (MNNVL) transport with its memory pool.
MOONCAKE_ENV = {
    "NCCL_MNNVL_ENABLE": "1",
    "NCCL_CUMEM_ENABLE": "1",
    "SGLANG_MOONCAKE_CUSTOM_MEM_POOL": "True",
    "MC_FORCE_MNNVL": "1",
}
SGLANG = ["python3", "-m", "sglang.launch_server", "--model-path", "{model}", "--trust-remote-code",
          "--tool-call-parser", "deepseekv4", "--reasoning-parser", "deepseek-v4",
          "--enable-metrics", "--enable-cache-report"]
GPUS_PER_TRAY = 4


@dataclass
class Role:
    """One kind of worker in a recipe: how many, how many trays each, its flags and environment."""

    role: str  # prefill | decode
    workers: int
    trays_per_worker: int
    flags: list[str]
    env: dict[str, str]
    first_port: int


@dataclass
class Recipe:
    name: str
    description: str
    header: str  # the comment block on top of the profile
    roles: list[Role]
    router_flags: list[str]
    agents: int
    extra_telemetry: str = ""
    notes: list[str] = field(default_factory=list)


def router_argv(flags: list[str]) -> list[str]:
    # smg (the SGLang model gateway, successor of sglang-router): no retries (a failed request is
    # a failure, not a hidden 5x), no circuit breaker (it turns overload into 503s for 60 s),
    # start-up timeout >= ready_timeout_s; its own Prometheus on loopback.
    return ["{python}", "-m", "smg.launch_router", "--pd-disaggregation",
            "--prefill", "{prefill_urls}", "--decode", "{decode_urls}",
            "--host", "{host}", "--port", "{port}",
            "--disable-retries", "--disable-circuit-breaker", "--worker-startup-timeout-secs", "3600",
            "--prometheus-host", "127.0.0.1", "--prometheus-port", "29000", *flags]


# ---- NVIDIA srt-slurm 8p1d DEP4/DEP8 MTP, laid out over the whole rack ---------------------------
SRT_ENV = {**MOONCAKE_ENV,  # both roles' environment in the recipe; each role adds its own below
           "SGLANG_JIT_DEEPGEMM_FAST_WARMUP": "1",
           "SGLANG_OPT_SWA_SPLIT_LEAF_ON_INSERT": "1", "SGLANG_OPT_SWA_EVICT_DROP_PAGE_MARGIN": "1",
           "SGLANG_OPT_SWA_RELEASE_LEAF_LOCK_AFTER_WINDOW": "1",
           "SGLANG_OPT_DEEPGEMM_MEGA_MOE_USE_FP4_ACTS": "1", "SGLANG_OPT_DEEPGEMM_MEGA_MOE_USE_MXF4_KIND": "1",
           "SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT": "100000", "SGLANG_DISAGGREGATION_WAITING_TIMEOUT": "100000"}
PREFILL_8P1D = Role(
    "prefill", workers=8, trays_per_worker=1, first_port=30001,
    flags=["--disaggregation-mode", "prefill", "--disaggregation-transfer-backend", "mooncake",
           "--tp", "4", "--dp", "4", "--ep", "4", "--enable-dp-attention", "--enable-dp-lm-head",
           "--moe-a2a-backend", "megamoe",
           "--mem-fraction-static", "0.9", "--max-running-requests", "1024", "--cuda-graph-max-bs", "1024",
           "--chunked-prefill-size", "32768", "--stream-interval", "60"],
    env={**SRT_ENV,
         "SGLANG_OPT_USE_CUSTOM_ALL_REDUCE_V2": "1",  # single-tray workers only (the recipe: corrupts across nodes)
         "SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK": "9216"},  # > chunk 32768 / 4 ranks = 8192
)
DECODE_8P1D = Role(
    "decode", workers=5, trays_per_worker=2, first_port=30011,
    flags=["--disaggregation-mode", "decode", "--disaggregation-transfer-backend", "mooncake",
           "--tp", "8", "--dp", "8", "--ep", "8", "--enable-dp-attention", "--enable-dp-lm-head",
           "--moe-a2a-backend", "megamoe",
           "--speculative-algorithm", "EAGLE", "--speculative-num-steps", "1",
           "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", "2",
           "--mem-fraction-static", "0.85", "--max-running-requests", "8192", "--cuda-graph-max-bs", "1280",
           "--swa-full-tokens-ratio", "0.1", "--stream-interval", "60"],
    env={**SRT_ENV, "SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK": "4096"},
)
GB300_HEADER = f"""\
Real SGLang on a GB300 NVL72 rack (18 compute trays x 4 B300 GPUs = 72 GPUs, one NVLink domain),
disaggregated prefill/decode. GENERATED by tools/rack_profiles.py: edit the recipe there.

Per-worker flags and environment: NVIDIA's srt-slurm recipe
  {SRT_SLURM}
(8 prefill DEP4 + 1 decode DEP8 with MTP), plus the cookbook's mooncake env ({COOKBOOK}).
Deviations from that file, each on purpose:
  - 5 decode workers instead of 1, so the split fills the rack: 8 x 4 + 5 x 8 = 72 GPUs
    (the recipe's 8p1d uses 10 of the 18 trays). Agentic traffic is mostly prefix-cache hits
    (~27K-token prompts, ~150-token outputs), so 0.8 prefill GPU per decode GPU suffices.
  - no --context-length 9216 (the recipe's 8K/1K benchmark): agent contexts grow past 100K.
  - no SGLANG_RADIX_DISABLE_REUSE=1: prefix reuse is what an agent's next turn lives on.
  - no SGLANG_DEFAULT_THINKING / SGLANG_DSV4_REASONING_EFFORT: the workload's requests decide.
  - --enable-cache-report (so usage.prompt_tokens_details.cached_tokens is reported),
    --enable-metrics, the DeepSeek V4 tool-call/reasoning parsers.
  - the recipe runs workers under Dynamo (python3 -m dynamo.sglang); here they are plain
    sglang.launch_server behind smg, the SGLang model gateway.
--enable-dp-attention is written with --dp N; the launch plan rewrites the pair to
--attn-dp-size N when the profile's sglang_version has that flag (0.5.23 deprecates the old one).

Layout: prefillN on trayN (N = 1..8); decodeN spans tray(07+2N) and tray(08+2N), ONE process
PER NODE-RANK (one srun with --nodes=2 would run the same argv on both trays, and getting the
rank from $SLURM_NODEID needs a shell wrapper, which this tool never builds): same argv but
--node-rank, both with --nnodes 2 --dist-init-addr <rank-0 tray>:5000. Only rank 0 is the
worker's URL; rank 1 serves /health and /metrics on the same port (scraped too).
Workers run "python3" from each tray's PATH (the container Slurm starts there); {{python}}
(this interpreter, with the [router] extra) runs the router here. See docs/rack.md."""

AGENTX_HEADER = f"""\
The InferenceX AgentX recipe for DeepSeek-V4-Pro on GB300: 6 prefill workers DEP8 (2 trays each)
+ 1 decode worker DEP16 (4 trays), HiCache KV offload on the prefill side, session affinity.
GENERATED by tools/rack_profiles.py: edit the recipe there. Per-worker flags and environment:
  {AGENTX_GB300}
Deviations, each on purpose:
  - the recipe's router is Dynamo's frontend behind nginx hashing X-Dynamo-Session-ID; here it
    is smg with --policy consistent_hashing on X-Session-ID, which agentperf-tui sends with one
    value per conversation ([server] routing_key_header) (the same affinity: every turn of an agent on one prefill worker).
  - --kv-events-config (Dynamo's KV router feed) and --model-loader-extra-config left out.
  - SGLANG_SIMULATE_ACC_* (the recipe's simulated MTP acceptance on decode) left out: a benchmark
    measures the real acceptance.
  - no SGLANG_DEFAULT_THINKING / SGLANG_DSV4_REASONING_EFFORT: the workload's requests decide.
  - --enable-cache-report, --reasoning-parser/--tool-call-parser (the newer AgentX revision has them).
Uses 16 of the 18 trays (64 GPUs); tray17-18 stay idle and out of the GPU count."""

AGENTX_COMMON = ["--watchdog-timeout", "86400", "--stream-interval", "60", "--enable-dp-lm-head",
                 "--moe-dense-tp-size", "1", "--moe-a2a-backend", "megamoe",
                 "--disaggregation-transfer-backend", "mooncake", "--load-balance-method", "total_tokens",
                 "--mem-fraction-static", "0.9", "--swa-full-tokens-ratio", "0.02",
                 "--disable-flashinfer-autotune",
                 "--speculative-algorithm", "EAGLE", "--speculative-num-steps", "3",
                 "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", "4"]
AGENTX_ENV = {**MOONCAKE_ENV,
              "SGLANG_DISAGGREGATION_WAITING_TIMEOUT": "900", "SGLANG_DISABLE_TP_MEMORY_INBALANCE_CHECK": "1",
              "SGLANG_JIT_DEEPGEMM_PRECOMPILE": "1", "SGLANG_JIT_DEEPGEMM_FAST_WARMUP": "1",
              "SGLANG_OPT_SWA_SPLIT_LEAF_ON_INSERT": "1", "SGLANG_OPT_UNIFIED_CACHE_FREE_OUT_OF_WINDOW_SLOTS": "1",
              "SGLANG_OPT_DEEPGEMM_MEGA_MOE_USE_FP4_ACTS": "1", "SGLANG_OPT_DEEPGEMM_MEGA_MOE_USE_MXF4_KIND": "1",
              "SGLANG_OPT_USE_ONLINE_COMPRESS": "0", "NCCL_TIMEOUT": "100000",
              "NCCL_MNNVL_UUID_QUERY_TIMEOUT": "100000", "SGLANG_OPT_SWA_RELEASE_LEAF_LOCK_AFTER_WINDOW": "1",
              "SGLANG_REQUEST_STATE_WAIT_TIMEOUT": "60", "SGLANG_ENABLE_UNIFIED_RADIX_TREE": "1"}
PREFILL_AGENTX = Role(
    "prefill", workers=6, trays_per_worker=2, first_port=30001,
    flags=["--disaggregation-mode", "prefill", "--tp", "8", "--dp", "8", "--ep", "8", "--enable-dp-attention",
           *AGENTX_COMMON, "--max-running-requests", "1024", "--cuda-graph-max-bs", "1024",
           "--chunked-prefill-size", "32768",
           "--enable-hierarchical-cache", "--hicache-write-policy", "write_back", "--hicache-ratio", "1",
           "--hicache-io-backend", "direct"],
    env={**AGENTX_ENV, "SGLANG_DSV4_MHC_PREWARM": "1", "SGLANG_OPT_USE_DEEPGEMM_MEGA_MOE": "1",
         "SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK": "9216"},
    # (the recipe's SGLANG_OPT_USE_CUSTOM_ALL_REDUCE_V2=1 is dropped: these workers span 2 trays,
    #  and srt-slurm's own note says CAR v2 corrupts results across nodes)
)
DECODE_AGENTX = Role(
    "decode", workers=1, trays_per_worker=4, first_port=30011,
    flags=["--disaggregation-mode", "decode", "--tp", "16", "--dp", "16", "--ep", "16", "--enable-dp-attention",
           *AGENTX_COMMON, "--max-running-requests", "3072", "--cuda-graph-max-bs", "1024"],
    env={**AGENTX_ENV, "SGLANG_OPT_DEEPGEMM_MEGA_MOE": "1",
         "SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK": "4096",
         "SGLANG_CLIP_MAX_NEW_TOKENS_ESTIMATION": "8"},
)

RECIPES = [
    Recipe("gb300-nvl72", "Real SGLang: DeepSeek V4 Pro on GB300 NVL72, srt-slurm 8p1d recipe as 8 prefill "
           "DEP4 + 5 decode DEP8 (MTP), srun, smg router", GB300_HEADER, [PREFILL_8P1D, DECODE_8P1D],
           router_flags=[], agents=512),
    Recipe("gb300-agentx", "Real SGLang: DeepSeek V4 Pro on GB300, InferenceX AgentX recipe: 6 prefill DEP8 "
           "(HiCache) + 1 decode DEP16, session affinity, srun, smg router", AGENTX_HEADER,
           [PREFILL_AGENTX, DECODE_AGENTX],
           router_flags=["--policy", "consistent_hashing", "--routing-key-headers", "x-session-id"], agents=1536),
]


# ---- layout and TOML ------------------------------------------------------------------------------
def q(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's for these ASCII values)."""
    return json.dumps(value)


def qlist(values: list[str]) -> str:
    return "[" + ", ".join(q(v) for v in values) + "]"


def wrap_argv(argv: list[str], indent: str = "  ") -> str:
    """argv as a TOML array, a flag and its value on one line, ~100 columns per line."""
    groups: list[list[str]] = []
    for a in argv:
        if groups and not a.startswith("-") and groups[-1][-1].startswith("-") and len(groups[-1]) == 1:
            groups[-1].append(a)
        else:
            groups.append([a])
    lines, line = [], ""
    for g in groups:
        piece = ", ".join(q(a) for a in g) + ","
        if line and len(line) + len(piece) + 1 > 100:
            lines.append(line)
            line = ""
        line = f"{line} {piece}" if line else indent + piece
    lines.append(line)
    return "[\n" + "\n".join(lines) + "\n]"


def env_table(env: dict[str, str]) -> str:
    """The process's env as a sub-table of the [[server.processes]] entry just above it."""
    return "\n".join(["[server.processes.env]", *(f"{k} = {q(v)}" for k, v in env.items())])


def processes(recipe: Recipe, launcher: str) -> tuple[str, list[str], list[list[str]]]:
    """The [[server.processes]] tables, the trays used, and the metrics URLs per worker."""
    out, trays, metrics = [], [], []
    tray = 1
    for role in recipe.roles:
        for w in range(1, role.workers + 1):
            port = role.first_port + w - 1
            nodes = [f"tray{tray + r:02d}" for r in range(role.trays_per_worker)]
            tray += role.trays_per_worker
            trays += nodes
            metrics.append([f"http://{n}:{port}/metrics" for n in nodes])
            for rank, node in enumerate(nodes):
                multi = role.trays_per_worker > 1
                name = f"{role.role}{w}" + (f"-r{rank}" if multi else "")
                argv = [*SGLANG, *role.flags]
                if multi:
                    argv += ["--nnodes", str(role.trays_per_worker), "--node-rank", str(rank),
                             "--dist-init-addr", f"{nodes[0]}:5000"]
                argv += ["--host", "0.0.0.0", "--port", str(port)]
                lines = ["[[server.processes]]", f"name = {q(name)}", f"role = {q(role.role)}",
                         f"launcher = {q(launcher)}", f"node = {q(node)}"]
                if launcher == "srun":
                    lines.append('srun_args = ["--nodes=1", "--ntasks=1", "--gpus-per-node=4"]')
                else:
                    lines.append('ssh_args = ["-o", "BatchMode=yes", "-o", "ServerAliveInterval=15", "-tt"]')
                if rank == 0:
                    lines.append(f"port = {port}")
                else:
                    lines.append("# no port: rank 0 is the worker's URL (this rank serves /health and /metrics only)")
                lines += [f"argv = {wrap_argv(argv)}", env_table(role.env), ""]
                out.append("\n".join(lines))
    return "\n".join(out), trays, metrics


def render(recipe: Recipe, launcher: str = "srun") -> str:
    name = recipe.name if launcher == "srun" else f"{recipe.name}-{launcher}"
    body, trays, metrics = processes(recipe, launcher)
    gpus = len(trays) * GPUS_PER_TRAY
    header = recipe.header
    if launcher == "ssh":
        header += ("\n\nThis variant starts every worker over ssh instead of srun (a rack without Slurm):\n"
                   "each element is shell-quoted for the remote shell, env goes through `env K=V ...`;\n"
                   "-tt gives each remote process a pty, so killing the local ssh hangs it up (SIGHUP\n"
                   "stops the remote worker too); BatchMode fails instead of prompting.")
    comment = "\n".join(("# " + line).rstrip() for line in header.splitlines())
    flags = recipe.router_flags
    routing = (f'routing_key_header = {q(flags[flags.index("--routing-key-headers") + 1])}   # the header the router '
               "hashes on: each agent's conversation id goes out under it\n"
               if "--routing-key-headers" in flags else "")
    metric_lines = "\n".join(f"  {qlist(urls) if len(urls) > 1 else q(urls[0])}," for urls in metrics)
    dcgm = "\n".join(f'  "http://{t}:9400/metrics",' for t in trays)
    return f"""{comment}

[profile]
name = {q(name)}
description = {q(recipe.description.replace(", srun,", ", ssh,") if launcher == "ssh" else recipe.description)}

[server]
mode = "launch"
host = "127.0.0.1"     # the router, on this host
port = 30000
model = "deepseek-ai/DeepSeek-V4-Pro"
gpus = {gpus}
sglang_version = "0.5.23"   # what the trays' container runs: picks flag spellings, checked by conformance
ready_timeout_s = 3600.0
stop_timeout_s = 60.0
{routing}
{body}
# ---- router: runs here after every worker is ready; {{prefill_urls}} -> --prefill URL per worker ---
[[server.processes]]
name = "router"
role = "router"
launcher = "local"
argv = {wrap_argv(router_argv(recipe.router_flags))}

[workload]
source = "synthetic"
policy = "exact"
trajectories = 1024

[telemetry]
nvml = false           # the GPUs are on the trays, not here: read each tray's dcgm-exporter (run it with -c 1000)
dcgm_urls = [
{dcgm}
]
# every serving process, one entry per worker (a multi-node worker lists each node-rank)
sglang_metrics_urls = [
{metric_lines}
]
power_boundary = "gpu"

[run]
agents = {recipe.agents}
duration_s = 900.0
ramp_s = 60.0
"""


def outputs() -> dict[Path, str]:
    files = {}
    for recipe in RECIPES:
        files[PROFILES / f"{recipe.name}.toml"] = render(recipe, "srun")
    files[PROFILES / "gb300-nvl72-ssh.toml"] = render(RECIPES[0], "ssh")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed profile differs")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("out of date (run python tools/rack_profiles.py): " + ", ".join(str(p.relative_to(ROOT)) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
