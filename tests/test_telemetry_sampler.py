"""TelemetrySampler against a loopback exporter; average_power_w; HostMonitor on real processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from agentperf_tui.telemetry import (
    GpuSample,
    HostMonitor,
    HostSample,
    NvmlReader,
    PowerReading,
    ServerMetrics,
    TelemetrySampler,
    average_power_w,
)

FIX = Path(__file__).parent / "fixtures" / "telemetry"


def _reading(t_s: float, *energies: float | None) -> PowerReading:
    return PowerReading(
        t_s=t_s,
        gpus=tuple(
            GpuSample(source="dcgm", host="n", gpu=i, uuid=f"GPU-{i}", power_w=1.0, energy_j=e)
            for i, e in enumerate(energies)
        ),
    )


# -- average_power_w ------------------------------------------------------------------------


def test_average_power_is_energy_delta_over_time() -> None:
    first = _reading(10.0, 1000.0, 2000.0)
    last = _reading(12.0, 2400.0, 3200.0)  # 1400 J + 1200 J over 2 s
    assert average_power_w(first, last) == pytest.approx(1300.0)


@pytest.mark.parametrize(
    "first,last",
    [
        (_reading(0.0, 1.0, None), _reading(1.0, 2.0, 3.0)),  # energy missing
        (_reading(0.0, 1.0), _reading(1.0, 2.0, 3.0)),  # different GPU sets
        (_reading(0.0, 5.0), _reading(1.0, 2.0)),  # counter went backwards
        (_reading(1.0, 1.0), _reading(1.0, 2.0)),  # no time passed
        (_reading(0.0), _reading(1.0)),  # no GPUs
    ],
)
def test_average_power_none_when_not_integrable(first: PowerReading, last: PowerReading) -> None:
    assert average_power_w(first, last) is None


# -- sampler --------------------------------------------------------------------------------


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def exporter():
    app = web.Application()
    texts = {name: (FIX / name).read_text() for name in ("dcgm_h200_node1.txt", "sglang_metrics.txt")}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=texts[request.match_info["name"]], content_type="text/plain")

    app.router.add_get("/{name}", handler)
    runner, port = await _serve(app)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _wait_for(pred, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not pred():
        assert loop.time() < end, "timed out waiting for samples"
        await asyncio.sleep(0.02)


async def test_sampler_delivers_all_sample_kinds(exporter: str) -> None:
    samples: list[object] = []
    notes: list[str] = []
    s = TelemetrySampler(
        dcgm_urls=[f"{exporter}/dcgm_h200_node1.txt"],
        sglang_metrics_url=f"{exporter}/sglang_metrics.txt",
        use_nvml=False,
        server_pids_fn=lambda: [os.getpid()],
        on_sample=samples.append,
        on_note=notes.append,
        power_interval_s=0.05,
        metrics_interval_s=0.1,
    )
    await s.start()
    try:
        await _wait_for(
            lambda: (
                sum(isinstance(x, PowerReading) for x in samples) >= 3
                and any(isinstance(x, ServerMetrics) for x in samples)
                and any(isinstance(x, HostSample) for x in samples)
            )
        )
    finally:
        await s.stop()
    power = [x for x in samples if isinstance(x, PowerReading)]
    assert len(power[0].gpus) == 8 and power[0].gpus[0].host == "node1"
    assert all(a.t_s < b.t_s for a, b in zip(power, power[1:], strict=False))
    metrics = next(x for x in samples if isinstance(x, ServerMetrics))
    assert metrics.running_reqs == 37
    host = next(x for x in samples if isinstance(x, HostSample))
    assert host.server_procs >= 1 and host.server_rss_mib > 0
    assert notes == []
    assert not s.running


async def test_dead_urls_give_one_note_each_and_no_crash(exporter: str) -> None:
    samples: list[object] = []
    notes: list[str] = []
    dead = f"http://127.0.0.1:{_dead_port()}/metrics"
    s = TelemetrySampler(
        dcgm_urls=[f"{exporter}/dcgm_h200_node1.txt", dead],
        sglang_metrics_url=dead,
        use_nvml=False,
        on_sample=samples.append,
        on_note=notes.append,
        power_interval_s=0.03,
        metrics_interval_s=0.03,
        timeout_s=0.5,
    )
    await s.start()
    try:
        await _wait_for(lambda: sum(isinstance(x, PowerReading) for x in samples) >= 5)
        assert s.running  # still sampling after repeated failures
    finally:
        await s.stop()
    assert len(notes) == 2, notes
    assert any(f"dcgm {dead}" in n for n in notes)
    assert any(f"SGLang metrics {dead}" in n for n in notes)
    # the live tray still arrives
    assert all(len(x.gpus) == 8 for x in samples if isinstance(x, PowerReading))


async def test_nvml_unavailable_is_noted_once_and_sampling_continues() -> None:
    class NoNvml(NvmlReader):
        def open(self) -> bool:
            self.unavailable_reason = "NVML unavailable: NVML Shared Library Not Found"
            return False

    samples: list[object] = []
    notes: list[str] = []
    s = TelemetrySampler(
        dcgm_urls=[],
        sglang_metrics_url=None,
        use_nvml=True,
        nvml_reader=NoNvml(),
        on_sample=samples.append,
        on_note=notes.append,
        metrics_interval_s=0.02,
    )
    await s.start()
    try:
        await _wait_for(lambda: sum(isinstance(x, HostSample) for x in samples) >= 2)
    finally:
        await s.stop()
    assert len(notes) == 1 and "NVML Shared Library Not Found" in notes[0]


async def test_failing_on_sample_callback_is_noted_once(exporter: str) -> None:
    notes: list[str] = []
    calls = 0

    def boom(obj: object) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("sink broke")

    s = TelemetrySampler(
        dcgm_urls=[f"{exporter}/dcgm_h200_node1.txt"],
        sglang_metrics_url=None,
        use_nvml=False,
        on_sample=boom,
        on_note=notes.append,
        power_interval_s=0.02,
        metrics_interval_s=0.02,
    )
    await s.start()
    try:
        await _wait_for(lambda: calls >= 4)
    finally:
        await s.stop()
    assert len(notes) == 1 and "sink broke" in notes[0]


async def test_stop_ends_tasks_and_is_idempotent(exporter: str) -> None:
    s = TelemetrySampler(
        dcgm_urls=[f"{exporter}/dcgm_h200_node1.txt"],
        sglang_metrics_url=f"{exporter}/sglang_metrics.txt",
        use_nvml=False,
        on_sample=lambda obj: None,
        on_note=lambda msg: None,
    )
    await s.start()
    tasks = list(s._tasks)
    assert len(tasks) == 2 and s.running
    await s.stop()
    assert all(t.done() for t in tasks) and not s.running
    await s.stop()


# -- host monitor ---------------------------------------------------------------------------


def test_host_monitor_sums_a_process_tree_and_tolerates_vanished_pids() -> None:
    child = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "-c", "import time; x = bytearray(30 * 2**20); time.sleep(30)"],
    )
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: S603
        dead.wait()
        mon = HostMonitor(lambda: [child.pid, dead.pid])
        first = mon.sample(t_s=1.0)
        second = mon.sample(t_s=2.0)
        assert second.t_s == 2.0
        assert first.cpu_pct is not None and first.rss_mib > 0
        assert second.server_procs == 1
        assert second.server_rss_mib > 5
    finally:
        child.kill()
        child.wait()
    gone = mon.sample(t_s=3.0)
    assert gone.server_procs == 0 and gone.server_cpu_pct is None


def test_host_monitor_without_server_and_with_raising_pid_fn() -> None:
    assert HostMonitor().sample().server_cpu_pct is None

    def broken() -> list[int]:
        raise RuntimeError("server not started")

    assert HostMonitor(broken).sample().server_procs == 0


async def test_sampler_merges_every_worker_and_says_when_one_is_missing(exporter: str) -> None:
    """Two workers configured, one answers: the sample says 1 of 2 (partial), and the dead URL is noted."""
    samples: list[object] = []
    notes: list[str] = []
    dead = f"http://127.0.0.1:{_dead_port()}/metrics"
    s = TelemetrySampler(
        sglang_metrics_sources=[("w1", [f"{exporter}/sglang_metrics.txt"]),
                                ("w2", [f"{exporter}/sglang_metrics.txt", dead])],
        use_nvml=False, on_sample=samples.append, on_note=notes.append, metrics_interval_s=0.05,
    )
    await s.start()
    try:
        await _wait_for(lambda: any(isinstance(x, ServerMetrics) for x in samples))
    finally:
        await s.stop()
    metrics = next(x for x in samples if isinstance(x, ServerMetrics))
    assert (metrics.sources_ok, metrics.sources_total) == (1, 2)
    assert metrics.running_reqs == 37  # w1 alone: w2's rank-0 answered but its rank-1 did not
    assert len([n for n in notes if dead in n]) == 1
