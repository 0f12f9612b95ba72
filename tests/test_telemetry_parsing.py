"""SGLang /metrics and dcgm-exporter text parse into the right values, units and merges."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agentperf_tui.telemetry import (
    HistogramSummary,
    merge_readings,
    parse_dcgm,
    parse_sglang_metrics,
    prom_samples,
)

FIX = Path(__file__).parent / "fixtures" / "telemetry"


def fixture(name: str) -> str:
    return (FIX / name).read_text()


# -- SGLang ---------------------------------------------------------------------------------


def test_sglang_single_scheduler_values() -> None:
    m = parse_sglang_metrics(fixture("sglang_metrics.txt"), t_s=12.5)
    assert m.t_s == 12.5
    assert m.running_reqs == 37
    assert m.queued_reqs == 5
    assert m.used_tokens == 412345
    assert m.token_usage == pytest.approx(0.62)
    assert m.max_total_tokens == 665072
    assert m.gen_throughput_tps == pytest.approx(1843.72)
    assert m.cache_hit_rate == pytest.approx(0.8123)
    assert m.spec_accept_length == pytest.approx(2.71)
    assert m.retracted_reqs == 0
    # counters: prometheus_client strips _total from the family name, the sample keeps it
    assert m.prompt_tokens_total == pytest.approx(8.128902e6)
    assert m.generation_tokens_total == pytest.approx(1.523311e6)
    assert m.cached_tokens_total == pytest.approx(6.201344e6 + 110592)  # device + host cache_source
    assert m.requests_total == 1204
    assert m.aborted_requests_total == 3


def test_sglang_histograms() -> None:
    m = parse_sglang_metrics(fixture("sglang_metrics.txt"), t_s=0.0)
    assert m.ttft is not None and m.itl is not None and m.e2e_latency is not None and m.queue_time is not None
    assert m.ttft_count == 1204 and m.ttft_sum == pytest.approx(471.8326)
    assert m.ttft.mean == pytest.approx(471.8326 / 1204)
    assert m.ttft.buckets[-1] == (math.inf, 1204.0)
    assert [le for le, _ in m.ttft.buckets] == sorted(le for le, _ in m.ttft.buckets)
    # 120 + 310 = 430 of 1204 are <= 0.2 s, 832 are <= 0.4 s: the median lies in (0.2, 0.4]
    assert 0.2 < m.ttft.quantile(0.5) < 0.4
    assert m.itl.count == pytest.approx(326954)
    assert m.queue_time.count == 1204


def test_sglang_unknown_series_are_kept_raw_not_mapped() -> None:
    m = parse_sglang_metrics(fixture("sglang_metrics.txt"), t_s=0.0)
    assert m.raw["sglang:utilization"] == pytest.approx(0.91)
    assert "sglang:per_stage_req_latency_seconds_count" in m.raw
    assert not any(k.endswith("_bucket") for k in m.raw)


def test_sglang_dp_ranks_sum_counts_and_average_ratios() -> None:
    m = parse_sglang_metrics(fixture("sglang_metrics_dp2.txt"), t_s=0.0)
    # dp_rank 0 is reported by tp_rank 0 and 1 (same scheduler state): counted once
    assert m.running_reqs == 36
    assert m.queued_reqs == 6
    assert m.used_tokens == 350000
    assert m.max_total_tokens == 600000
    assert m.gen_throughput_tps == pytest.approx(1900)
    assert m.token_usage == pytest.approx(0.55)
    assert m.cache_hit_rate == pytest.approx(0.75)
    assert m.spec_accept_length == pytest.approx(2.7)
    assert m.retracted_reqs == 3  # pid label collapsed like a replica label
    assert m.prompt_tokens_total == pytest.approx(7.0e6)
    assert m.cached_tokens_total == pytest.approx(5.1e6)


def test_sglang_legacy_names_and_missing_series_give_none() -> None:
    m = parse_sglang_metrics(fixture("sglang_metrics_legacy.txt"), t_s=0.0)
    assert m.running_reqs == 12
    assert m.queued_reqs == 3
    assert m.token_usage == 0.25
    assert m.max_total_tokens == 161721
    assert m.prompt_tokens_total == 51234
    assert m.itl is not None and m.itl.count == 1000  # time_per_output_token_seconds fallback
    assert m.cache_hit_rate is None
    assert m.spec_accept_length is None
    assert m.requests_total is None
    assert m.ttft is None and m.e2e_latency is None


def test_sglang_underscore_prefix_is_accepted() -> None:
    text = fixture("sglang_metrics.txt").replace("sglang:", "sglang_")
    m = parse_sglang_metrics(text, t_s=0.0)
    assert m.running_reqs == 37
    assert m.prompt_tokens_total == pytest.approx(8.128902e6)
    assert m.ttft is not None and m.ttft.count == 1204


def test_sglang_untyped_counter_keeps_total_suffix() -> None:
    text = 'sglang:generation_tokens_total{model_name="m"} 7\nsglang:num_requests_total 2\n'
    m = parse_sglang_metrics(text, t_s=0.0)
    assert m.generation_tokens_total == 7
    assert m.requests_total == 2


def test_sglang_empty_body_is_all_none() -> None:
    m = parse_sglang_metrics("", t_s=1.0)
    assert m.running_reqs is None and m.ttft is None and m.raw == {}


@pytest.mark.parametrize(
    "junk",
    ["<html><body>502 Bad Gateway</body></html>", '{"detail": "Not Found"}', "hello world"],
)
def test_garbage_text_raises_clear_value_error(junk: str) -> None:
    with pytest.raises(ValueError, match="not Prometheus text"):
        parse_sglang_metrics(junk, t_s=0.0)
    with pytest.raises(ValueError, match="not Prometheus text"):
        parse_dcgm(junk, t_s=0.0)


def test_prom_samples_drops_nan() -> None:
    assert prom_samples("a 1\nb NaN\n") == [("a", {}, 1.0)]


def test_histogram_minus_gives_window() -> None:
    a = HistogramSummary(count=10, sum=5.0, buckets=((0.1, 4.0), (1.0, 10.0), (math.inf, 10.0)))
    b = HistogramSummary(count=30, sum=25.0, buckets=((0.1, 4.0), (1.0, 30.0), (math.inf, 30.0)))
    w = b.minus(a)
    assert w.count == 20 and w.sum == 20.0
    assert w.buckets == ((0.1, 0.0), (1.0, 20.0), (math.inf, 20.0))
    assert 0.1 < w.quantile(0.5) <= 1.0


# -- dcgm-exporter --------------------------------------------------------------------------


def test_dcgm_h200_node_values_and_units() -> None:
    r = parse_dcgm(fixture("dcgm_h200_node1.txt"), t_s=3.0)
    assert r.t_s == 3.0
    assert len(r.gpus) == 8
    g0 = r.gpus[0]
    assert (g0.source, g0.host, g0.gpu) == ("dcgm", "node1", 0)
    assert g0.uuid == "GPU-5e2f1c8a-7b3d-4f0e-9a61-2c8d0b4e7f10"
    assert g0.model_name == "NVIDIA H200"
    assert g0.power_w == pytest.approx(612.345)
    assert g0.energy_j == pytest.approx(8_512_345.678)  # mJ -> J
    assert g0.util_pct == 98
    assert g0.mem_used_mib == 132301
    assert g0.mem_total_mib == 143771  # used + free + reserved
    assert g0.temp_c == 52
    assert g0.sm_clock_mhz == 1980
    assert r.total_power_w == pytest.approx(
        sum([612.345, 598.112, 640.0, 587.75, 605.5, 621.25, 633.875, 599.0])
    )
    assert r.total_energy_j == pytest.approx(sum(8_512_345.678 + i * 1_234.567 for i in range(8)))


def test_dcgm_blank_sentinel_becomes_none() -> None:
    r = parse_dcgm(fixture("dcgm_gb300_tray07.txt"), t_s=0.0)
    assert [g.gpu for g in r.gpus] == [0, 1, 2, 3]
    assert r.gpus[3].temp_c is None  # 9223372036854775794 = DCGM blank
    assert r.gpus[2].temp_c == 49
    assert r.gpus[0].mem_total_mib == 284208
    assert r.gpus[0].power_w == pytest.approx(1180.5)


def test_dcgm_missing_energy_gives_none_total() -> None:
    text = "\n".join(
        line
        for line in fixture("dcgm_h200_node1.txt").splitlines()
        if not (line.startswith("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION") and 'gpu="5"' in line)
    )
    r = parse_dcgm(text, t_s=0.0)
    assert r.gpus[5].energy_j is None
    assert r.gpus[4].energy_j is not None
    assert r.total_energy_j is None
    assert r.total_power_w is not None


def test_dcgm_without_hostname_uses_default_host() -> None:
    text = 'DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="GPU-a",device="nvidia1"} 400.5\n'
    r = parse_dcgm(text, t_s=0.0, default_host="10.0.0.7")
    assert r.gpus[0].key == ("10.0.0.7", 1)
    assert r.gpus[0].energy_j is None and r.gpus[0].mem_total_mib is None


def test_dcgm_mig_instance_series_do_not_override_gpu_level() -> None:
    text = (
        'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",GPU_I_PROFILE="1g.18gb",GPU_I_ID="9",Hostname="n"} 100\n'
        'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",Hostname="n"} 5000\n'
        'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",GPU_I_PROFILE="1g.18gb",GPU_I_ID="10",Hostname="n"} 200\n'
    )
    assert parse_dcgm(text, t_s=0.0).gpus[0].mem_used_mib == 5000


def test_dcgm_several_trays_merge_into_one_reading() -> None:
    a = parse_dcgm(fixture("dcgm_h200_node1.txt"), t_s=1.0)
    b = parse_dcgm(fixture("dcgm_gb300_tray07.txt"), t_s=1.1)
    merged = merge_readings([a, b, a])  # the same exporter listed twice is not double-counted
    assert len(merged.gpus) == 12
    assert merged.t_s == 1.1
    assert {g.host for g in merged.gpus} == {"node1", "gb300-tray07"}
    assert merged.total_power_w == pytest.approx(a.total_power_w + b.total_power_w)


def test_merge_keeps_trays_whose_hostname_labels_collide() -> None:
    a = parse_dcgm('DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-a",Hostname="dcgm-exporter"} 100\n', 0.0)
    b = parse_dcgm('DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-b",Hostname="dcgm-exporter"} 200\n', 0.0)
    assert merge_readings([a, b]).total_power_w == 300


# -- several serving processes (PD disaggregation: prefill and decode workers, multi-node) ------


def _worker_body(engine_type: str, dp_ranks: range, running: float, queue: float, extra: str = "") -> str:
    """One SGLang process's /metrics: per DP rank, two TP ranks reporting the same scheduler state."""
    lines = []
    for name, value in (("num_running_reqs", running), ("num_queue_reqs", queue), ("token_usage", 0.5)):
        lines += [f"# TYPE sglang:{name} gauge"]
        for dp in dp_ranks:
            for tp in (2 * dp, 2 * dp + 1):
                lines.append(f'sglang:{name}{{engine_type="{engine_type}",dp_rank="{dp}",tp_rank="{tp}",'
                             f'model_name="m"}} {value}')
    return "\n".join(lines) + "\n" + extra


def test_sources_sum_workers_and_split_prefill_from_decode() -> None:
    from agentperf_tui.telemetry.sglang_metrics import parse_sglang_sources

    prefill_a = _worker_body("prefill", range(4), 2, 1, '# TYPE sglang:num_prefill_bootstrap_queue_reqs gauge\n'
                             'sglang:num_prefill_bootstrap_queue_reqs{engine_type="prefill",dp_rank="0",'
                             'tp_rank="0"} 3\n')
    prefill_b = _worker_body("prefill", range(4), 2, 1)
    # one decode worker over two nodes: DP ranks 0-3 on rank 0's node, 4-7 on rank 1's
    decode_r0 = _worker_body("decode", range(4), 50, 0, '# TYPE sglang:num_decode_transfer_queue_reqs gauge\n'
                             'sglang:num_decode_transfer_queue_reqs{engine_type="decode",dp_rank="0",'
                             'tp_rank="0"} 7\n')
    decode_r1 = _worker_body("decode", range(4, 8), 50, 0)
    m = parse_sglang_sources([("p1", prefill_a), ("p2", prefill_b), ("d1", decode_r0), ("d1", decode_r1)],
                             t_s=1.0, sources_total=3)
    assert set(m.by_engine) == {"prefill", "decode"}
    prefill, decode = m.by_engine["prefill"], m.by_engine["decode"]
    assert prefill.running_reqs == 2 * 4 * 2  # 2 workers x 4 DP ranks x 2 requests (TP copies collapsed)
    assert prefill.queued_reqs == 8
    assert prefill.prefill_bootstrap_queue_reqs == 3
    assert decode.running_reqs == 50 * 8  # both nodes' DP ranks, each once
    assert decode.decode_transfer_queue_reqs == 7
    assert decode.prefill_bootstrap_queue_reqs is None
    assert m.running_reqs == prefill.running_reqs + decode.running_reqs
    assert m.token_usage == pytest.approx(0.5)
    assert (m.sources_ok, m.sources_total) == (3, 3)


def test_same_labels_on_two_workers_are_not_collapsed_as_replicas() -> None:
    """Two single-node workers both report dp_rank 0 / tp_rank 0: they are two schedulers, not copies."""
    from agentperf_tui.telemetry.sglang_metrics import parse_sglang_sources

    body = _worker_body("unified", range(1), 5, 0)
    m = parse_sglang_sources([("a", body), ("b", body)], t_s=0.0)
    assert m.running_reqs == 10
    single = parse_sglang_metrics(body, t_s=0.0)
    assert single.running_reqs == 5 and single.by_engine["unified"].running_reqs == 5


def test_pd_request_counters_are_not_counted_twice() -> None:
    """Both the prefill and the decode server's tokenizers count every request: the total is one side's."""
    from agentperf_tui.telemetry.sglang_metrics import parse_sglang_sources

    def body(engine_type: str, prompt: float, cached: float) -> str:
        return (f'# TYPE sglang:prompt_tokens counter\nsglang:prompt_tokens_total{{engine_type="{engine_type}",'
                f'model_name="m"}} {prompt}\n# TYPE sglang:cached_tokens counter\nsglang:cached_tokens_total{{'
                f'engine_type="{engine_type}",model_name="m",cache_source="device"}} {cached}\n'
                f'# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs{{engine_type="{engine_type}",'
                f'model_name="m",tp_rank="0"}} 4\n')
    m = parse_sglang_sources([("p", body("prefill", 1000, 800)), ("d", body("decode", 1000, 0))], t_s=0.0)
    assert m.prompt_tokens_total == 1000  # not 2000
    assert m.cached_tokens_total == 800  # the prefill side's cache
    assert m.running_reqs == 8  # scheduler state: both machines' requests


def test_pd_side_missing_leaves_its_fields_unknown_not_the_other_sides() -> None:
    """Decode workers silent this scrape: generation/TTFT totals are None, never the prefill side's."""
    from agentperf_tui.telemetry.sglang_metrics import parse_sglang_sources

    prefill = ('# TYPE sglang:generation_tokens counter\nsglang:generation_tokens_total{engine_type="prefill",'
               'model_name="m"} 100\n# TYPE sglang:cached_tokens counter\nsglang:cached_tokens_total{'
               'engine_type="prefill",model_name="m"} 70\n')
    unified = ('# TYPE sglang:generation_tokens counter\nsglang:generation_tokens_total{engine_type="unified",'
               'model_name="m"} 2500\n')
    m = parse_sglang_sources([("p", prefill)], t_s=0.0, sources_total=2)
    assert m.generation_tokens_total is None and m.cached_tokens_total == 70 and m.sources_ok == 1
    # a unified worker beside a PD pair counts on both sides
    decode = prefill.replace('"prefill"', '"decode"').replace(" 100\n", " 5000\n")
    m = parse_sglang_sources([("p", prefill), ("d", decode), ("u", unified)], t_s=0.0)
    assert m.generation_tokens_total == 5000 + 2500
