"""The energy account against the twin's ground-truth energy, per boundary, over the same windows.

In one process: the twin (8xH200, its dcgm-exporter and its Redfish BMC on loopback) and a live
session of agents reading them exactly as a run does (the TelemetrySampler, the energy account).
Every time the twin evaluates a reading for a scrape, the exact energy at that instant is noted
(GPU: the engines' integrals; node: GPUs plus the BMC's non-GPU model). Windows of 5 s and 30 s
are then taken from the account's own snapshots and compared with the ground truth between the
same two evaluations: energy error |account - truth| / truth, and power error, where the account
divides by the time between its receipts and the truth by the time between evaluations.
A third source, the same BMC read as watts only (``PowerWatts`` integrated at 1 s polls, what a
BMC without an energy counter gives), shows what integration costs.

    python bench/power.py                  # 16 agents, 60 s
    python bench/power.py --agents 32 --seconds 120

Last line: ``energy_error=E`` (worst window of the counter-based boundaries, gpu and node).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web  # noqa: E402

from agentperf_tui.engine.session import RunOptions, ServerHandle, Session  # noqa: E402
from agentperf_tui.engine.slo import AA_DSV4_PRO_TIERS  # noqa: E402
from agentperf_tui.telemetry.energy import EnergyAccount  # noqa: E402
from agentperf_tui.telemetry.redfish import RedfishPowerReader  # noqa: E402
from agentperf_tui.telemetry.sampler import BoundaryEnergy  # noqa: E402
from agentperf_tui.twin.config import parse_twin_args  # noqa: E402
from agentperf_tui.twin.server import TwinServer  # noqa: E402
from agentperf_tui.workload import load_workload  # noqa: E402


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def windows(snaps: list, truth: dict, account: EnergyAccount, span_s: float) -> list[tuple[float, float]]:
    """(energy error, power error) of every window of ``span_s`` between the account's snapshots."""
    out = []
    i = 0
    for j in range(len(snaps)):
        while i + 1 < j and snaps[j].t_s - snaps[i + 1].t_s >= span_s:
            i += 1  # the latest start that still gives a window of at least span_s
        if j > i and snaps[j].t_s - snaps[i].t_s >= span_s:
            a, b = snaps[i], snaps[j]
            w = account.window(a, b)
            (ta, ea), (tb, eb) = truth[id(a)], truth[id(b)]
            true_energy = eb - ea
            if w.energy_j is None or true_energy <= 0 or w.status != "ok":
                continue
            out.append((abs(w.energy_j - true_energy) / true_energy,
                        abs(w.avg_power_w - true_energy / (tb - ta)) / (true_energy / (tb - ta))))
    return out


async def main(agents: int, seconds: float) -> None:
    twin = TwinServer(parse_twin_args(["--hardware", "h200", "--tp", "8", "--enable-metrics"]))
    evaluated: list[tuple[float, float, float]] = []  # (t, gpu energy J, node energy J) at each evaluation

    original_sample = twin.dcgm.sample

    def sample_with_truth(now: float):  # the dcgm-exporter evaluation: note the exact energy at that instant
        rows = original_sample(now)
        truth = twin.bmc.readings(now)
        evaluated.append((now, sum(truth["gpus"].values()), sum(n["energy_j"] for n in truth["nodes"].values())))
        return rows

    twin.dcgm.sample = sample_with_truth  # type: ignore[method-assign]
    original_readings = twin.bmc.readings
    node_truth: list[tuple[float, float]] = []

    def readings_with_truth(now: float):
        data = original_readings(now)
        node_truth.append((now, sum(n["energy_j"] for n in data["nodes"].values())))
        return data

    twin.bmc.readings = readings_with_truth  # type: ignore[method-assign]
    api_runner, api_url = await serve(twin.app())
    tele_runner, tele_url = await serve(twin.dcgm_app())

    async def start(_session: Session) -> ServerHandle:
        return ServerHandle(base_url=api_url, model="deepseek-ai/DeepSeek-V4-Pro", gpus=8,
                            dcgm_urls=[tele_url + "/metrics"], metrics_url=None, use_nvml=False, boundary="node",
                            stop=lambda: None, twin=True, node_power_urls=[tele_url])

    gpu_snaps: list = []
    node_snaps: list = []
    gpu_truth: dict[int, tuple[float, float]] = {}
    node_truth_of: dict[int, tuple[float, float]] = {}
    options = RunOptions(agents=agents, duration_s=seconds, ramp_s=2.0, settle_s=1.0)
    session = Session(profile_name="bench-power", options=options, tiers=AA_DSV4_PRO_TIERS,
                      workload_loader=lambda: load_workload(None, seed=1, synthetic_count=32),
                      server_starter=start)
    original_on_sample = session._on_sample

    def on_sample(sample) -> None:
        original_on_sample(sample)
        if isinstance(sample, BoundaryEnergy) and sample.boundary == "node" and node_truth:
            snap = session.energy["node"].latest
            node_snaps.append(snap)
            node_truth_of[id(snap)] = node_truth[-1]
        elif hasattr(sample, "gpus") and evaluated:
            snap = session.energy["gpu"].latest
            if snap is not None and (not gpu_snaps or snap is not gpu_snaps[-1]):
                gpu_snaps.append(snap)
                t, e_gpu, _ = evaluated[-1]
                gpu_truth[id(snap)] = (t, e_gpu)

    session._on_sample = on_sample  # type: ignore[method-assign]

    # the watts-only reading of the same BMC, polled every second beside the run
    watts_reader = RedfishPowerReader(tele_url, "node", prefer_counter=False)
    watts_snaps: list = []
    watts_truth: dict[int, tuple[float, float]] = {}

    async def poll_watts() -> None:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            while True:
                snap = await watts_reader.read(http, time.monotonic())
                watts_snaps.append(snap)
                watts_truth[id(snap)] = node_truth[-1]
                await asyncio.sleep(1.0)

    poller = asyncio.create_task(poll_watts())
    t0 = time.perf_counter()
    summary = await session.run()
    poller.cancel()
    await asyncio.gather(poller, return_exceptions=True)
    await api_runner.cleanup()
    await tele_runner.cleanup()

    print(f"{agents} agents, {seconds:.0f} s ({time.perf_counter() - t0:.0f} s wall), twin 8xH200; "
          f"{len(gpu_snaps)} GPU snapshots, {len(node_snaps)} node snapshots")
    print(f"{'source':28} {'window':>7} {'n':>5} {'energy err med':>15} {'worst':>9} {'power err med':>14} {'worst':>9}")
    worst = 0.0
    for name, snaps, truth, account, counted in (
            ("gpu (dcgm-exporter)", gpu_snaps, gpu_truth, session.energy["gpu"], True),
            ("node (Redfish EnergykWh)", node_snaps, node_truth_of, session.energy["node"], True),
            ("node (Redfish watts only)", watts_snaps, watts_truth, EnergyAccount(), False)):
        for span in (5.0, 30.0):
            errs = windows(snaps, truth, account, span)
            if not errs:
                print(f"{name:28} {span:>6.0f}s {0:>5}  (no complete window)")
                continue
            e = [x for x, _ in errs]
            p = [y for _, y in errs]
            if counted:
                worst = max(worst, max(e))
            print(f"{name:28} {span:>6.0f}s {len(errs):>5} {statistics.median(e):>15.2e} {max(e):>9.2e} "
                  f"{statistics.median(p):>14.2e} {max(p):>9.2e}")
    by = summary.get("power_by_boundary", {})
    for b, d in by.items():
        print(f"summary {b}: {d['avg_power_w'] and d['avg_power_w'] / 1000:.2f} kW, status {d['status']}, "
              f"{d['agents_per_mw']} agents/MW")
    print(f"energy_error={worst:.2e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(main(args.agents, args.seconds))
