"""The twin's built-in cost model next to AIConfigurator's step times, on the AIC table's grid.

Needs the ``aic`` extra (``pip install -e '.[aic]'``) unless the tables are already cached (see
``agentperf_tui/twin/aic_table.py``). For each system it prints Markdown tables -- decode step
(batch x context) and prefill step (new x cached tokens): built-in ms, AIC ms, ratio AIC/built-in
(> 1: the built-in model is faster than AIC, i.e. optimistic) -- and one summary line:

    python bench/aic_compare.py [--systems h200 gb300-nvl72] [--nextn 0 1] [--cache-dir DIR]
Last lines: ``summary <system>: AIC/built-in decode nextn=0 median R (min A, max B, n N); ...; prefill ...``.

Deployments (as profiles/twin-*.toml run them): h200 = one TP8 engine doing prefill and decode;
gb300-nvl72 = a decode worker TP8/DP8/EP8 with DP attention and a prefill worker TP4/DP4/EP4.
Built-in step times are computed as the scheduler does: decode over B requests at context c with
B x ModelSpec.kv_read_bytes(c) and B x attention_flops_per_token(c); prefill of N new tokens as
one step with attention FLOPs at each request's middle position.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agentperf_tui.twin.aic_table import AICUnavailable, StepTable, load_or_build  # noqa: E402
from agentperf_tui.twin.costmodel import CostModel, SpeculativeConfig  # noqa: E402
from agentperf_tui.twin.hardware import DEEPSEEK_V4_PRO, HARDWARE  # noqa: E402


@dataclass(frozen=True)
class Worker:
    """One engine shape of a deployment and the AIC table role it is compared on."""

    label: str
    hardware: str
    tp: int
    dp_attention: bool
    ep: int
    role: str  # which grids to compare: decode | prefill | both


SYSTEMS: dict[str, list[Worker]] = {
    "h200": [Worker("8xH200, one TP8 engine", "h200", 8, False, 1, "both")],
    "gb300-nvl72": [
        Worker("GB300 decode worker, TP8/DP8/EP8 + DP attention", "gb300-nvl72", 8, True, 8, "decode"),
        Worker("GB300 prefill worker, TP4/DP4/EP4 + DP attention", "gb300-nvl72", 4, True, 4, "prefill"),
    ],
}


def builtin_cost_model(hardware: str, gpus: int, spec: SpeculativeConfig, dp_attention: bool) -> CostModel:
    """The twin's CostModel for one engine, built as TwinServer._make_engines builds it.

    Keep this the only place that constructs it: when CostModel's constructor changes, update it
    here (``prefill_time_scale`` is left at 1: it only slows a --slice run's prefill engines).
    """
    return CostModel(HARDWARE[hardware], DEEPSEEK_V4_PRO, gpus, spec, attention_dp=dp_attention)


def spec_for_nextn(nextn: int) -> SpeculativeConfig:
    """AIC's MTP depth ``nextn`` as the twin's EAGLE settings (nextn steps, nextn + 1 tokens verified)."""
    return SpeculativeConfig(nextn, nextn + 1) if nextn > 0 else SpeculativeConfig()


def builtin_decode_ms(cm: CostModel, batch: int, context: int) -> float:
    m = cm.model
    step = cm.decode_step(batch, m.kv_read_bytes(context) * batch, m.attention_flops_per_token(context) * batch)
    return step.duration_s * 1e3


def builtin_prefill_ms(cm: CostModel, new_tokens: int, cached: int, requests: int) -> float:
    """``new_tokens`` over ``requests`` equal requests (one per DP rank), each on ``cached`` tokens."""
    per_request = max(1, new_tokens // requests)
    attn = new_tokens * cm.model.attention_flops_per_token(cached + per_request // 2)
    return cm.prefill_step(new_tokens, attn).duration_s * 1e3


def ratio_summary(ratios: list[float]) -> str:
    if not ratios:
        return "—"
    return f"median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}, n {len(ratios)})"


def print_header(worker: Worker, table: StepTable, nextns: list[int]) -> None:
    print(f"\n### {worker.label}\n")
    print(f"AIC: `{table.describe()}`  ")
    line = (f"Built-in: `builtin_cost_model({worker.hardware!r}, gpus={table.parallel.get('gpus')}, "
            f"dp_attention={worker.dp_attention})`")
    if table.has_decode:
        line += "; decode: " + ", ".join(f"AIC nextn={n} vs built-in {spec_name(n)}" for n in nextns)
    print(line + ".\n")
    for note in table.substitutions:
        print(f"* {note}")
    if table.substitutions:
        print()


def spec_name(nextn: int) -> str:
    return "no speculation" if nextn == 0 else f"EAGLE {nextn}/1/{nextn + 1}"


def decode_rows(tables: dict[int, StepTable], models: dict[int, CostModel]) -> dict[int, list[float]]:
    """One row per grid point, built-in / AIC / ratio for every nextn; ratios per nextn."""
    nextns = sorted(tables)
    first = tables[nextns[0]]
    head = "".join(f" built-in ms ({spec_name(n)}) | AIC ms (nextn={n}) | ratio |" for n in nextns)
    print("| batch | context |" + head)
    print("|---:|---:|" + "---:|---:|---:|" * len(nextns))
    ratios: dict[int, list[float]] = {n: [] for n in nextns}
    for c_index, c in enumerate(first.decode_contexts):
        for b_index, b in enumerate(first.decode_batches):
            cells = []
            for n in nextns:
                aic_ms = tables[n].decode_ms[c_index][b_index]
                ours = builtin_decode_ms(models[n], int(b), int(c))
                ratios[n].append(aic_ms / ours)
                cells.append(f" {ours:.2f} | {aic_ms:.2f} | {aic_ms / ours:.2f} |")
            print(f"| {int(b)} | {int(c)} |" + "".join(cells))
    return ratios


def prefill_rows(table: StepTable, cm: CostModel) -> list[float]:
    requests = int(table.parallel.get("dp", 1) or 1)
    print(f"| new tokens{f' ({requests} requests)' if requests > 1 else ''} | cached | built-in ms | "
          "AIC ms | ratio | built-in tok/s | AIC tok/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    ratios = []
    for k, row in zip(table.prefill_cached_tokens, table.prefill_ms, strict=True):
        for n, aic_ms in zip(table.prefill_new_tokens, row, strict=True):
            ours = builtin_prefill_ms(cm, int(n), int(k), requests)
            ratios.append(aic_ms / ours)
            print(f"| {int(n)} | {int(k)} | {ours:.1f} | {aic_ms:.1f} | {aic_ms / ours:.2f} | "
                  f"{n / ours * 1e3:,.0f} | {n / aic_ms * 1e3:,.0f} |")
    return ratios


def compare_system(system: str, nextns: list[int], cache_dir: Path | None,
                   load: Callable[..., StepTable] = load_or_build) -> str:
    """Print the system's tables; return its summary line."""
    print(f"\n## {system}")
    decode: dict[int, list[float]] = {n: [] for n in nextns}
    prefill: list[float] = []
    for worker in SYSTEMS[system]:
        tables = {n: load(worker.hardware, tp=worker.tp, dp_attention=worker.dp_attention, ep=worker.ep,
                          nextn=n, role=worker.role, cache_dir=cache_dir)
                  for n in (nextns if worker.role != "prefill" else [0])}
        table = tables[min(tables)]
        gpus = int(table.parallel.get("gpus") or worker.tp)
        print_header(worker, table, nextns)
        if table.has_decode:
            print("**Decode step**\n")
            models = {n: builtin_cost_model(worker.hardware, gpus, spec_for_nextn(n), worker.dp_attention)
                      for n in tables}
            for n, values in decode_rows(tables, models).items():
                decode[n] += values
            print()
        if table.has_prefill:
            print("**Prefill step** (one step of all new tokens, no chunking)\n")
            cm = builtin_cost_model(worker.hardware, gpus, SpeculativeConfig(), worker.dp_attention)
            prefill += prefill_rows(table, cm)
            print()
    parts = [f"decode nextn={n} {ratio_summary(decode[n])}" for n in nextns]
    return f"summary {system}: AIC/built-in " + "; ".join(parts) + f"; prefill {ratio_summary(prefill)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", nargs="+", choices=sorted(SYSTEMS), default=list(SYSTEMS))
    ap.add_argument("--nextn", type=int, nargs="+", default=[0, 1],
                    help="MTP depths compared for decode; the built-in side runs EAGLE nextn/1/nextn+1")
    ap.add_argument("--cache-dir", type=Path, default=None, help="AIC table cache (default ~/.cache/agentperf-tui/aic)")
    args = ap.parse_args()
    started = time.perf_counter()
    print("# Built-in twin cost model vs NVIDIA AIConfigurator (DeepSeek-V4-Pro, SGLang)\n")
    print("Ratio = AIC / built-in: > 1 means the built-in model is faster (optimistic) than AIC.")
    nextns = sorted(set(args.nextn))
    try:
        summaries = [compare_system(system, nextns, args.cache_dir) for system in args.systems]
    except AICUnavailable as exc:  # no cached table and no AIConfigurator to build one
        raise SystemExit(f"aic_compare: {exc}") from None
    print(f"\n## Summary ({time.perf_counter() - started:.1f} s)\n")
    for line in summaries:
        print(line)


if __name__ == "__main__":
    main()
