"""The twin's cost model: how long one scheduler step takes and how much power it draws.

A roofline model per engine (one tensor-parallel group of GPUs holding one copy of the weights):
a step takes max(memory time, compute time) + communication + a fixed per-layer overhead, where
memory time counts the weights the step touches (dense part always, routed experts as the
expected number of distinct experts its tokens select) and the compressed KV it reads, and
compute time counts 2 FLOP per active parameter per token plus attention. Every constant lives
in hardware.py with its source; docs/twin.md walks through the model.

With a ``StepTable`` (``--cost-model aic``: AIConfigurator's measured step times, twin/aic_table.py)
the step *durations* come from the table instead; the roofline still splits each step into
memory and compute time, which sets the power draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentperf_tui.twin.hardware import HardwareSpec, ModelSpec

if TYPE_CHECKING:
    from agentperf_tui.twin.aic_table import StepTable

# Fixed CPU-side scheduling cost per step and per request in it (uncertain; SGLang's overlap
# scheduler hides most of it).
STEP_OVERHEAD_S = 0.0005
PER_REQUEST_OVERHEAD_S = 2e-6
# Share of the power range drawn when the step is compute- or memory-bound (uncertain).
POWER_WEIGHT_COMPUTE = 1.0
POWER_WEIGHT_MEMORY = 0.65
ACTIVATION_BYTES = 2  # BF16 activations on the wire


@dataclass(frozen=True, slots=True)
class StepCost:
    """Duration of one step and the GPU activity that sets its power draw (0..1)."""

    duration_s: float
    activity: float
    memory_s: float
    compute_s: float
    comm_s: float


@dataclass(frozen=True, slots=True)
class SpeculativeConfig:
    """EAGLE/MTP settings: steps drafted, tokens verified, per-token acceptance probability."""

    num_steps: int = 0
    num_draft_tokens: int = 0
    acceptance: float = 0.7  # per drafted token (see acceptance_for_depth: from measured accept lengths)

    @property
    def enabled(self) -> bool:
        return self.num_steps > 0 and self.num_draft_tokens > 1

    @property
    def expected_accept_length(self) -> float:
        """Tokens emitted per verify step: 1 + a + a^2 + ... over the drafted chain."""
        if not self.enabled:
            return 1.0
        depth = min(self.num_steps, self.num_draft_tokens - 1)
        return sum(self.acceptance**i for i in range(depth + 1))

    @property
    def tokens_per_request(self) -> int:
        return self.num_draft_tokens if self.enabled else 1


#: DeepSeek-V4-Pro's own MTP head, thinking on: mean accepted length (bonus token included) per
#: verify step at 1..4 draft steps. InferenceX golden_al_distribution/dsv4_mtp.yaml (commit
#: ab51b061, SPEED-Bench coding set, temperature 1.0, 4,096-token outputs, B300).
MEASURED_ACCEPT_LENGTH = {1: 1.79, 2: 2.27, 3: 2.49, 4: 2.54}


def acceptance_for_depth(depth: int) -> float:
    """The per-draft acceptance probability a whose chain 1 + a + ... + a^depth has the measured
    mean accept length at this depth (deeper than measured: the deepest measurement's a)."""
    if depth < 1:
        return 0.0
    measured = min(depth, max(MEASURED_ACCEPT_LENGTH))
    target = MEASURED_ACCEPT_LENGTH[measured]
    lo, hi = 0.0, 1.0
    for _ in range(60):  # bisection: the chain length grows monotonically with a
        mid = (lo + hi) / 2
        if sum(mid**i for i in range(measured + 1)) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


class CostModel:
    """Step times and power for one engine of ``gpus`` GPUs of ``hardware`` serving ``model``."""

    def __init__(self, hardware: HardwareSpec, model: ModelSpec, gpus: int, spec: SpeculativeConfig,
                 attention_dp: bool = False, prefill_time_scale: float = 1.0, table: StepTable | None = None):
        self.hardware = hardware
        self.model = model
        self.gpus = gpus
        self.spec = spec
        # DeepSeek V4 has one shared (latent) KV head: under tensor-parallel attention every GPU
        # stores and reads the KV of every request; with DP attention (--enable-dp-attention) each
        # GPU holds only its own requests' KV, so the engine's KV is spread over its GPUs.
        self.attention_dp = attention_dp
        self.prefill_time_scale = prefill_time_scale  # > 1 only for a slice's prefill engines (twin/config.py)
        self.table = table  # measured step times (AIConfigurator) replacing the roofline's durations
        self._kv_gpus = gpus if attention_dp else 1
        self._mem_bw = gpus * hardware.hbm_bw_tbs * 1e12 * hardware.memory_efficiency
        self._kv_bw = self._kv_gpus * hardware.hbm_bw_tbs * 1e12 * hardware.attention_memory_efficiency
        self._decode_flops = gpus * hardware.prefill_tflops * 1e12 * hardware.compute_efficiency
        self._prefill_flops = gpus * hardware.prefill_tflops * 1e12 * hardware.prefill_efficiency
        self._always_bytes = model.always_active_params * model.dense_bytes_per_param
        self._expert_layer_bytes = model.expert_params * model.expert_bytes_per_param * model.moe_layers
        self._fixed_s = model.layers * (
            hardware.layer_overhead_us + 2 * hardware.allreduce_latency_us
        ) * 1e-6 + STEP_OVERHEAD_S
        self._link_bw = hardware.nvlink_gbs * 1e9

    # -- memory ------------------------------------------------------------------------------
    def kv_capacity_tokens(self, mem_fraction_static: float) -> int:
        """Context tokens the KV pool holds: per GPU, memory x fraction - its share of the weights,
        over KV per token; summed over the GPUs only with DP attention (else every GPU holds all)."""
        per_gpu = self.hardware.hbm_gb * 1e9 * mem_fraction_static - self.model.weight_bytes / self.gpus
        if per_gpu <= 0:
            return 0
        return int(self._kv_gpus * per_gpu / self.model.kv_bytes_per_token())

    def distinct_experts(self, tokens: int) -> float:
        """Expected distinct routed experts per layer touched by ``tokens`` tokens (top-k uniform)."""
        m = self.model
        miss = (1.0 - m.experts_per_token / m.routed_experts) ** max(0, tokens)
        return m.routed_experts * (1.0 - miss)

    # -- steps -------------------------------------------------------------------------------
    def decode_step(self, batch: int, kv_read_bytes: float, attn_flops: float,
                    context_tokens: float = 0.0) -> StepCost:
        """One decode (or speculative verify) step over ``batch`` requests.

        ``kv_read_bytes`` and ``attn_flops`` are sums over the batch of ModelSpec.kv_read_bytes
        and attention_flops_per_token at each request's context; ``context_tokens`` the sum of the
        contexts (read only with a table).
        """
        if batch <= 0:
            return StepCost(0.0, 0.0, 0.0, 0.0, 0.0)
        per_req = self.spec.tokens_per_request
        tokens = batch * per_req
        weight_bytes = self._always_bytes + self.distinct_experts(tokens) * self._expert_layer_bytes
        # attention and the GEMMs/MoE are separate kernels, one after the other in every layer: each
        # is bound by its own memory or compute time, and the step is their sum (as AIConfigurator
        # sums its ops), not one roofline over the whole step
        kv_s = kv_read_bytes / self._kv_bw
        attention_s = max(kv_s, attn_flops * per_req / self._decode_flops)
        weights_s = weight_bytes / self._mem_bw
        gemm_s = max(weights_s, tokens * 2.0 * self.model.active_params / self._decode_flops)
        memory_s = weights_s + kv_s
        compute_s = (tokens * 2.0 * self.model.active_params + attn_flops * per_req) / self._decode_flops
        comm_s = self._fixed_s + self._activation_comm_s(tokens)
        draft_s = 0.0
        if self.spec.enabled:
            # one MTP layer per drafted step: ~1/layers of the main step's fixed cost and reads
            draft_s = self.spec.num_steps * (comm_s + gemm_s + attention_s) / self.model.layers
        busy = gemm_s + attention_s
        duration = busy + comm_s + draft_s + batch * PER_REQUEST_OVERHEAD_S
        activity = self._activity(memory_s, compute_s, duration)
        if self.table is not None and self.table.has_decode:
            duration = self.table.decode_s(batch, context_tokens / batch if context_tokens else 1.0)
        return StepCost(duration, activity, memory_s, compute_s, comm_s)

    def prefill_step(self, new_tokens: int, attn_flops: float, cached_tokens: float = 0.0) -> StepCost:
        """One (chunked) prefill step computing ``new_tokens`` uncached prompt tokens.

        ``attn_flops`` is the sum over those tokens of attention FLOPs at their positions;
        ``cached_tokens`` the (token-weighted mean) prefix already in the KV (read only with a table).
        """
        if new_tokens <= 0:
            return StepCost(0.0, 0.0, 0.0, 0.0, 0.0)
        weight_bytes = self._always_bytes + self.distinct_experts(new_tokens) * self._expert_layer_bytes
        memory_s = weight_bytes / self._mem_bw
        compute_s = (new_tokens * 2.0 * self.model.active_params + attn_flops) / self._prefill_flops
        comm_s = self._fixed_s + self._activation_comm_s(new_tokens)
        duration = max(memory_s, compute_s) + comm_s
        activity = self._activity(memory_s, compute_s, duration)
        if self.table is not None and self.table.has_prefill:
            duration = self.table.prefill_s(new_tokens, cached_tokens)
        return StepCost(duration * self.prefill_time_scale, activity, memory_s, compute_s, comm_s)

    def kv_transfer_bytes(self, context_tokens: int) -> float:
        """A request's KV as it moves from a prefill to a decode worker."""
        return context_tokens * self.model.kv_bytes_per_token() + self.model.kv_window_bytes()

    def kv_transfer_s(self, context_tokens: int) -> float:
        """Moving a request's KV from a prefill to a decode worker (disaggregation) over NVLink."""
        return 0.002 + self.kv_transfer_bytes(context_tokens) / self._link_bw

    def _activation_comm_s(self, tokens: int) -> float:
        # two all-reduces (or dispatch+combine) of the hidden state per layer
        if self.gpus <= 1:
            return 0.0
        bytes_ = tokens * self.model.hidden * ACTIVATION_BYTES * 2 * self.model.layers
        return bytes_ / self._link_bw

    # -- power -------------------------------------------------------------------------------
    def _activity(self, memory_s: float, compute_s: float, duration_s: float) -> float:
        if duration_s <= 0:
            return 0.0
        value = (POWER_WEIGHT_COMPUTE * compute_s + POWER_WEIGHT_MEMORY * memory_s) / duration_s
        return min(1.0, value)

    def power_w(self, activity: float) -> float:
        """Per-GPU power at an activity level: idle plus a share of the range up to max power."""
        hw = self.hardware
        return hw.idle_power_w + (hw.max_power_w - hw.idle_power_w) * min(1.0, max(0.0, activity))


def decode_tokens_per_s(model: CostModel, batch: int, context: int) -> float:
    """Per-request decode speed at a uniform batch and context (for docs, benches and tests)."""
    kv = model.model.kv_read_bytes(context) * batch
    attn = model.model.attention_flops_per_token(context) * batch
    step = model.decode_step(batch, kv, attn)
    return model.spec.expected_accept_length / step.duration_s if step.duration_s > 0 else math.inf
