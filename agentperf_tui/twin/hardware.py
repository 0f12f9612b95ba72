"""Hardware and model constants the twin's cost model is built from, each with its source.

Two machines (8xH200 HGX node, GB300 NVL72 rack) and one model (DeepSeek V4 Pro). Figures come
from ../shared/REFERENCE.md §2 and §4b (vendor datasheets and spec write-ups) unless marked
(uncertain): those are settings with a documented default, listed in docs/twin.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    """One GPU type and how many of them a deployment of this kind has."""

    name: str
    gpu_name: str
    gpus_per_node: int  # GPUs in one host (tray) -- REFERENCE §4b
    max_nodes: int  # nodes in one NVLink domain the twin accepts
    nvlink_domain_gpus: int  # GPUs reachable over NVLink without leaving the domain
    hbm_gb: float  # usable HBM per GPU, GB (1e9 bytes)
    hbm_bw_tbs: float  # HBM bandwidth per GPU, TB/s
    dense_fp8_tflops: float  # dense FP8 tensor throughput per GPU
    dense_bf16_tflops: float
    dense_fp4_tflops: float | None  # None: no FP4 tensor cores (Hopper)
    nvlink_gbs: float  # NVLink bandwidth per GPU, GB/s
    max_power_w: float  # board power limit per GPU
    idle_power_w: float  # (uncertain) GPU idle draw with a model loaded
    memory_efficiency: float  # achieved / peak HBM bandwidth in decode kernels (weights, experts)
    compute_efficiency: float  # achieved / peak tensor FLOP/s in large GEMMs (decode)
    attention_memory_efficiency: float  # achieved / peak HBM bandwidth reading compressed KV in decode
    prefill_efficiency: float  # achieved / peak FLOP/s of a whole prefill (attention, MoE, mHC)
    allreduce_latency_us: float  # (uncertain) one small all-reduce / all-to-all over NVLink
    layer_overhead_us: float  # (uncertain) fixed per-layer time of a step: kernel launches, syncs
    # Beyond the GPUs (the twin's BMC, docs/twin.md "Node and rack power"), all (uncertain):
    node_other_idle_w: float = 0.0  # CPUs, memory, NICs, fans, storage of one node/tray at idle
    node_other_gpu_share: float = 0.0  # extra node draw per GPU watt (fans, VRM and PSU losses)
    rack_extra_w: float = 0.0  # a full rack's draw outside its nodes (NVSwitch trays, power shelves)
    rack_gpus: int = 0  # GPUs in that rack

    @property
    def prefill_tflops(self) -> float:
        """Tensor throughput used for prefill GEMMs with FP4 experts.

        Hopper has no FP4 units: SGLang runs the FP4 experts as W4A16 (flashinfer_mxfp4), i.e.
        at BF16 rate. Blackwell runs them at FP4 rate; attention/dense stays FP8 -- we take
        FP8 as the blended rate there (uncertain; experts are ~half the active FLOPs).
        """
        if self.dense_fp4_tflops is None:
            return self.dense_bf16_tflops
        return self.dense_fp8_tflops


H200 = HardwareSpec(
    name="h200",
    gpu_name="NVIDIA H200",
    gpus_per_node=8,
    max_nodes=4,
    nvlink_domain_gpus=8,
    hbm_gb=141.0,
    hbm_bw_tbs=4.8,
    dense_fp8_tflops=1979.0,
    dense_bf16_tflops=989.0,
    dense_fp4_tflops=None,
    nvlink_gbs=900.0,
    max_power_w=700.0,
    idle_power_w=90.0,
    # a device-to-device copy measured ~4.3 of 4.8 TB/s on one H200 (REFERENCE §4b): 0.90 is the
    # ceiling. The W4A16 expert kernels reach less: AIConfigurator 0.12 (h200_sxm, HYBRID data for
    # W4A16-MXFP4 MoE at TP8) 0.33 of peak at batch 8 rising to 0.54 at 256; 0.50 for the batches
    # agentic tiers run at (the FP8 silicon kernels reach 0.45 -> 0.82 over the same batches).
    memory_efficiency=0.50,
    # A bf16 matmul 8192^3 measured ~790 of 989 TFLOP/s (REFERENCE §4b) = 0.80, but the FP4 experts
    # run as W4A16 (dequantised in the kernel): AIConfigurator 0.12's h200_sxm decode steps (HYBRID
    # data for the W4A16 MoE) cost 59.6 us per extra token at batch 2048 -> 4096 = 0.21 of the BF16
    # peak for 2 x 49 B FLOP per token.
    compute_efficiency=0.21,
    # AIConfigurator 0.12, h200_sxm / SGLang 0.5.14, DeepSeek-V4 generation attention at TP8, batch
    # 256: 8K -> 131K context adds 33.95 ms for 35.07 GB of KV read per GPU = 0.22 of 4.8 TB/s.
    attention_memory_efficiency=0.22,
    # AIConfigurator 0.12, h200_sxm, static prefill 8K -> 32K new tokens at TP8: 62.0 us per token
    # for 2 x 49 B FLOP = 0.20 of the BF16 peak (attention ~half of it); docs/twin.md.
    prefill_efficiency=0.20,
    allreduce_latency_us=20.0,
    # AIConfigurator's batch-1 decode step at 27K (11.2 ms = attention 5.1 + MoE 4.0 + mHC 1.7 + rest)
    # is the floor; 113 us per layer puts the built-in batch-1 step there (was 150, uncertain).
    layer_overhead_us=113.0,
    # HGX/DGX H200: 10.2 kW max input (REFERENCE §4b) with 8 x 700 W GPUs leaves 4.6 kW for two
    # CPUs, 4 NVSwitches, NICs, fans and PSU losses at full load; split as a fixed 1.8 kW plus
    # 0.5 W per GPU watt (fans and losses track the GPUs), so 5.6 kW of GPUs -> 10.2 kW.
    node_other_idle_w=1800.0,
    node_other_gpu_share=0.5,
    rack_extra_w=0.0,  # one node: the rack boundary is the node's PDU outlet
    rack_gpus=8,
)

GB300 = HardwareSpec(
    name="gb300-nvl72",
    gpu_name="NVIDIA GB300",
    gpus_per_node=4,
    max_nodes=18,
    nvlink_domain_gpus=72,
    hbm_gb=279.0,
    hbm_bw_tbs=8.0,
    dense_fp8_tflops=5000.0,
    dense_bf16_tflops=2500.0,
    dense_fp4_tflops=15000.0,
    nvlink_gbs=1800.0,
    max_power_w=1400.0,
    idle_power_w=180.0,
    memory_efficiency=0.75,  # same kernel family as Hopper (uncertain)
    compute_efficiency=0.70,  # (uncertain) no published matmul measurement here
    # AIConfigurator 0.12, gb300 / SGLang 0.5.14, DP8 attention, batch 256: 8K -> 131K context adds
    # 0.68 ms for each rank's own requests' KV = 0.80 of 8 TB/s.
    attention_memory_efficiency=0.80,
    # AIConfigurator 0.12, gb300, prefill worker TP4/DP4/EP4 (MegaMoE): 14.9 us per token per
    # 4-GPU worker for 2 x 49 B FLOP = 0.33 of the 5 PFLOP/s FP8 peak.
    prefill_efficiency=0.33,
    allreduce_latency_us=15.0,
    # AIConfigurator's smallest DP8 decode step (8 requests, 27K: 16.4 ms = attention 6.8 + MegaMoE
    # 7.0 + mHC 1.9) is the floor; 189 us per layer puts the built-in step there (was 100, uncertain).
    layer_overhead_us=189.0,
    # GB300 compute tray ~6.5 kW with 4 x 1,400 W GPUs (REFERENCE §4b): 0.9 kW for 2 Grace CPUs,
    # LPDDR, 4 NICs and pumps at full load = 500 W + 0.07 W per GPU watt. Rack 120-140 kW: 18
    # trays (~117 kW) + 9 NVSwitch trays at ~1.2 kW each (10.8 kW) -> ~128 kW.
    node_other_idle_w=500.0,
    node_other_gpu_share=0.07,
    rack_extra_w=10800.0,
    rack_gpus=72,
)

HARDWARE: dict[str, HardwareSpec] = {"h200": H200, "gb300-nvl72": GB300}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """DeepSeek V4 Pro as the cost model needs it (REFERENCE §2)."""

    name: str = "deepseek-ai/DeepSeek-V4-Pro"
    total_params: float = 1.6e12
    active_params: float = 49e9
    layers: int = 61
    csa_layers: int = 30  # AIConfigurator's model config: 30 CSA + 31 HCA (REFERENCE §6)
    hca_layers: int = 31
    moe_layers: int = 58  # (uncertain) 61 minus 3 leading dense layers, as in V3
    hidden: int = 7168
    routed_experts: int = 384
    experts_per_token: int = 6
    expert_width: int = 3072
    csa_compression: int = 4
    csa_topk: int = 1024
    hca_compression: int = 128
    sliding_window: int = 128
    kv_entry_bytes: int = 640  # 512-dim compressed KV in FP8 + 64-dim RoPE part in BF16 (uncertain)
    indexer_key_bytes: int = 128  # CSA lightning-indexer key per compressed entry, FP8 (uncertain)
    expert_bytes_per_param: float = 0.53  # FP4 (MXFP4: 4 bits + one 8-bit scale per 32)
    dense_bytes_per_param: float = 1.0  # FP8 attention / dense / shared expert
    max_context: int = 1_048_576

    @property
    def expert_params(self) -> float:
        """Parameters of one routed expert in one layer (gate, up, down)."""
        return 3.0 * self.hidden * self.expert_width

    @property
    def routed_expert_params_total(self) -> float:
        return self.expert_params * self.routed_experts * self.moe_layers

    @property
    def always_active_params(self) -> float:
        """Active parameters that every token reads: attention, dense layers, shared expert."""
        return self.active_params - self.experts_per_token * self.moe_layers * self.expert_params

    @property
    def weight_bytes(self) -> float:
        """Bytes of the whole checkpoint: FP4 routed experts + FP8 everything else."""
        dense = self.total_params - self.routed_expert_params_total
        return (
            self.routed_expert_params_total * self.expert_bytes_per_param
            + dense * self.dense_bytes_per_param
        )

    def kv_bytes_per_token(self) -> float:
        """Stored KV per context token, beyond the fixed sliding windows.

        CSA layers keep one compressed entry per 4 tokens plus its indexer key; HCA layers one
        entry per 128 tokens.
        """
        csa = self.csa_layers * (self.kv_entry_bytes + self.indexer_key_bytes) / self.csa_compression
        hca = self.hca_layers * self.kv_entry_bytes / self.hca_compression
        return csa + hca

    def kv_window_bytes(self) -> float:
        """Fixed per-request KV of the 128-token sliding windows in every layer."""
        return self.layers * self.sliding_window * self.kv_entry_bytes

    def kv_read_bytes(self, context_tokens: int) -> float:
        """KV bytes one decode step reads for one request at this context length.

        CSA: top-k selected compressed entries + window, and the indexer scans every compressed
        key; HCA: every compressed entry + window.
        """
        ctx = max(1, context_tokens)
        window = min(self.sliding_window, ctx)
        csa_entries = ctx / self.csa_compression
        csa = self.csa_layers * (
            (min(self.csa_topk, csa_entries) + window) * self.kv_entry_bytes
            + csa_entries * self.indexer_key_bytes
        )
        hca = self.hca_layers * (ctx / self.hca_compression + window) * self.kv_entry_bytes
        return csa + hca

    def attention_flops_per_token(self, context_tokens: int) -> float:
        """Attention FLOPs for one new token at this context (sparse CSA, compressed HCA).

        128 query heads of dim 512 against one shared KV head: 2 (QK and PV) x 2 FLOP x 128 x
        512 per attended entry, plus the indexer's dot products over all CSA entries.
        """
        ctx = max(1, context_tokens)
        per_entry = 2 * 2 * 128 * 512
        window = min(self.sliding_window, ctx)
        csa_entries = ctx / self.csa_compression
        csa = self.csa_layers * ((min(self.csa_topk, csa_entries) + window) * per_entry + csa_entries * 2 * 64 * 128)
        hca = self.hca_layers * (ctx / self.hca_compression + window) * per_entry
        return csa + hca


DEEPSEEK_V4_PRO = ModelSpec()
