"""AIC step tables: interpolation, extrapolation, JSON, the disk cache, and the missing-extra error.

Everything but the last test runs without AIConfigurator; that one builds a tiny real table and is
skipped where the ``aic`` extra is not installed (CI).
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest

from agentperf_tui.twin import aic_table
from agentperf_tui.twin.aic_table import (
    INSTALL_HINT,
    AICUnavailable,
    StepTable,
    TableGrid,
    aic_parallel,
    build_table,
    load_or_build,
)

BATCHES = (1, 4, 16, 64)
CONTEXTS = (1024, 8192, 65536)
NEW = (128, 1024, 8192)
CACHED = (0, 8192, 65536)


def decode_value(batch: float, context: float) -> float:
    return 10.0 + 0.1 * batch + 1e-4 * context


def prefill_value(new: float, cached: float) -> float:
    return 5.0 + 0.05 * new + 1e-3 * cached


def make_table(**overrides: object) -> StepTable:
    kw: dict[str, object] = {
        "decode_batches": BATCHES, "decode_contexts": CONTEXTS,
        "decode_ms": tuple(tuple(decode_value(b, c) for b in BATCHES) for c in CONTEXTS),
        "prefill_new_tokens": NEW, "prefill_cached_tokens": CACHED,
        "prefill_ms": tuple(tuple(prefill_value(n, k) for n in NEW) for k in CACHED),
        "hardware": "h200", "role": "both", "system": "h200_sxm", "aic_version": "0.12.0",
        "parallel": {"tp": 8, "aic_tp_size": 8}, "quant": {"moe": "w4a16_mxfp4_cutlass"},
        "substitutions": ("database_mode HYBRID",), "database_mode": "HYBRID", "moe_backend": "fused",
    }
    kw.update(overrides)
    return StepTable(**kw)  # type: ignore[arg-type]


def test_grid_points_are_exact() -> None:
    table = make_table()
    for c in CONTEXTS:
        for b in BATCHES:
            assert table.decode_s(b, c) * 1e3 == pytest.approx(decode_value(b, c), rel=1e-12)
    for k in CACHED:
        for n in NEW:
            assert table.prefill_s(n, k) * 1e3 == pytest.approx(prefill_value(n, k), rel=1e-12)


def test_monotone_and_bounded_between_points() -> None:
    table = make_table()
    steps = [math.exp(math.log(1) + i * (math.log(64) - math.log(1)) / 60) for i in range(61)]
    for c in (1024, 3000, 8192, 20000, 65536):
        values = [table.decode_s(b, c) for b in steps]
        assert values == sorted(values)
    for b in (1, 3, 10, 64):
        values = [table.decode_s(b, c) for c in range(1024, 65537, 997)]
        assert values == sorted(values)
    # inside one cell the value lies between the cell's corners
    lo, hi = decode_value(4, 8192) / 1e3, decode_value(16, 65536) / 1e3
    assert lo < table.decode_s(9, 20000) < hi
    news = [128 * 1.1**i for i in range(42)]
    for k in (0, 100, 8192, 30000, 65536):
        values = [table.prefill_s(n, k) for n in news if n <= 8192]
        assert values == sorted(values)
    values = [table.prefill_s(2048, k) for k in range(0, 65537, 511)]
    assert values == sorted(values)


def test_log_interpolation_midpoint() -> None:
    table = make_table()
    # batch 2 is the log-midpoint of 1 and 4: half way between their values
    expected = (decode_value(1, 8192) + decode_value(4, 8192)) / 2
    assert table.decode_s(2, 8192) * 1e3 == pytest.approx(expected)
    # cached 2^k - 1 vs log(cached + 1): cached = sqrt(8193) - 1 is the midpoint of 0 and 8192
    mid = math.sqrt(8193) - 1
    expected = (prefill_value(1024, 0) + prefill_value(1024, 8192)) / 2
    assert table.prefill_s(1024, mid) * 1e3 == pytest.approx(expected)


def test_extrapolation_is_positive_and_sensible() -> None:
    table = make_table()
    # beyond the last batch: linear with the last segment's slope
    slope = (decode_value(64, 8192) - decode_value(16, 8192)) / (64 - 16)
    assert table.decode_s(1000, 8192) * 1e3 == pytest.approx(decode_value(64, 8192) + slope * (1000 - 64))
    # below the first batch and outside the context range: clamped
    assert table.decode_s(0.5, 8192) == table.decode_s(1, 8192)
    assert table.decode_s(0, 8192) > 0 and table.decode_s(-5, 10) > 0
    assert table.decode_s(16, 10) == table.decode_s(16, 1024)
    assert table.decode_s(16, 10**7) == table.decode_s(16, 65536)
    assert table.prefill_s(1, 0) == table.prefill_s(128, 0)
    assert table.prefill_s(10**6, 10**7) > table.prefill_s(8192, 65536) > 0
    # a last segment that goes down (AIC table artefact) never extrapolates below its last value
    rows = tuple(tuple([20.0, 30.0, 40.0, 35.0]) for _ in CONTEXTS)
    dipping = make_table(decode_ms=rows)
    assert dipping.decode_s(10**6, 8192) == pytest.approx(35.0e-3)


def test_json_round_trip() -> None:
    table = make_table(op_sources={"generation_attention": "silicon"}, warnings=("fmha fallback",),
                       build_args={"hardware": "h200", "grid": {"decode_batches": [1, 4]}, "dp": None})
    data = table.to_json()
    again = StepTable.from_json(data)
    assert again == table
    assert StepTable.from_json(data.decode()) == table
    assert again.decode_s(7, 12345) == table.decode_s(7, 12345)
    assert again.prefill_s(3000, 20000) == table.prefill_s(3000, 20000)
    with pytest.raises(ValueError, match="format"):
        StepTable.from_json(b'{"format": 999}')


def test_tables_validate_their_grids() -> None:
    decode_only = make_table(prefill_new_tokens=(), prefill_cached_tokens=(), prefill_ms=(), role="decode")
    assert decode_only.has_decode and not decode_only.has_prefill
    with pytest.raises(ValueError, match="no prefill grid"):
        decode_only.prefill_s(1024, 0)
    with pytest.raises(ValueError, match="shape"):
        make_table(decode_ms=((1.0, 2.0),))
    with pytest.raises(ValueError, match="increasing"):
        make_table(decode_batches=(1, 16, 4, 64))
    with pytest.raises(ValueError, match="increasing"):
        make_table(decode_contexts=(0, 8192, 65536))  # log(context) needs context > 0
    assert make_table(prefill_cached_tokens=(0, 10, 20)).prefill_s(128, 5) > 0  # log(cached + 1) takes 0
    with pytest.raises(ValueError, match="> 0"):
        make_table(decode_ms=tuple(tuple(0.0 for _ in BATCHES) for _ in CONTEXTS))


def test_parallel_mapping() -> None:
    h200 = aic_parallel(8, False, 1)
    assert (h200.tp_size, h200.attention_dp_size, h200.moe_tp_size, h200.moe_ep_size) == (8, 1, 8, 1)
    decode = aic_parallel(8, True, 8)
    assert (decode.tp_size, decode.attention_dp_size, decode.moe_tp_size, decode.moe_ep_size) == (1, 8, 1, 8)
    prefill = aic_parallel(4, True, 4)
    assert (prefill.tp_size, prefill.attention_dp_size, prefill.moe_ep_size, prefill.gpus) == (1, 4, 4, 4)
    partial = aic_parallel(8, True, 8, dp=2)
    assert (partial.tp_size, partial.attention_dp_size) == (4, 2)
    with pytest.raises(ValueError):
        aic_parallel(8, False, 3)


def test_cache_reuses_a_built_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[dict[str, object]] = []

    def fake_build(hardware: str, **kw: object) -> StepTable:
        calls.append(kw)
        args = aic_table.table_build_args(hardware, **{k: v for k, v in kw.items() if k != "cache_dir"})
        return make_table(build_args=args, nextn=kw["nextn"])

    monkeypatch.setattr(aic_table, "build_table", fake_build)
    monkeypatch.setattr(aic_table, "installed_aic_version", lambda: "0.12.0")
    first = load_or_build("h200", tp=8, dp_attention=False, ep=1, role="both", cache_dir=tmp_path)
    second = load_or_build("h200", tp=8, dp_attention=False, ep=1, role="both", cache_dir=tmp_path)
    assert len(calls) == 1 and first == second
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1 and files[0].name.startswith("h200-both-") and files[0].name.endswith("-aic0.12.0.json")
    assert not list(tmp_path.glob(".*.tmp"))
    # other arguments are another table
    load_or_build("h200", tp=8, dp_attention=False, ep=1, role="both", nextn=1, cache_dir=tmp_path)
    assert len(calls) == 2
    # without AIConfigurator installed the table built earlier is still found
    monkeypatch.setattr(aic_table, "installed_aic_version", lambda: None)
    third = load_or_build("h200", tp=8, dp_attention=False, ep=1, role="both", cache_dir=tmp_path)
    assert len(calls) == 2 and third == first
    # a damaged file is rebuilt, not trusted
    files[0].write_bytes(b"{not json")
    monkeypatch.setattr(aic_table, "installed_aic_version", lambda: "0.12.0")
    load_or_build("h200", tp=8, dp_attention=False, ep=1, role="both", cache_dir=tmp_path)
    assert len(calls) == 3


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert aic_table.default_cache_dir() == tmp_path / "agentperf-tui" / "aic"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert aic_table.default_cache_dir() == Path.home() / ".cache" / "agentperf-tui" / "aic"


def test_build_without_aiconfigurator_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "aiconfigurator", None)  # makes `import aiconfigurator` fail
    with pytest.raises(AICUnavailable, match=re.escape(INSTALL_HINT)) as err:
        build_table("h200", tp=8, dp_attention=False, ep=1, nextn=0, role="decode", cache_dir=tmp_path)
    assert isinstance(err.value, ImportError)
    monkeypatch.setattr(aic_table, "installed_aic_version", lambda: None)
    with pytest.raises(AICUnavailable):  # nothing cached either
        load_or_build("h200", tp=8, dp_attention=False, ep=1, cache_dir=tmp_path)


def test_overlay_tree_links_everything_but_the_replaced_path(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "data" / "gb300" / "moe" / "sglang" / "0.5.14").mkdir(parents=True)
    (src / "data" / "h200").mkdir(parents=True)
    (src / "gb300.yaml").write_text("data_dir: data/gb300\n")
    (src / "data" / "gb300" / "moe" / "sglang" / "0.5.14" / "moe_perf.parquet").write_text("x")
    dst = tmp_path / "dst"
    aic_table._overlay_tree(src, dst, ("data", "gb300", "moe", "sglang", "0.5.14"))
    assert (dst / "gb300.yaml").is_symlink() and (dst / "data" / "h200").is_symlink()
    assert not (dst / "data" / "gb300").is_symlink() and not (dst / "data" / "gb300" / "moe").is_symlink()
    assert not (dst / "data" / "gb300" / "moe" / "sglang" / "0.5.14").exists()


@pytest.mark.skipif(importlib.util.find_spec("aiconfigurator") is None,
                    reason=f"AIConfigurator not installed ({INSTALL_HINT})")
def test_real_tiny_table(tmp_path: Path) -> None:
    grid = TableGrid(decode_batches=(4, 8, 16), decode_contexts=(4096, 8192),
                     prefill_new_tokens=(512, 1024), prefill_cached_tokens=(0, 8192))
    table = load_or_build("gb300-nvl72", tp=8, dp_attention=True, ep=8, nextn=0, role="both",
                          grid=grid, cache_dir=tmp_path)
    assert table.system == "gb300" and table.parallel["aic_attention_dp_size"] == 8
    assert table.decode_batches == (8, 16)  # 4 requests cannot fill 8 DP ranks
    assert all(v > 0 for row in table.decode_ms + table.prefill_ms for v in row)
    assert table.decode_s(16, 8192) >= table.decode_s(8, 8192)
    assert any("MegaMoE" in s or "fused" in s for s in table.substitutions)
    again = load_or_build("gb300-nvl72", tp=8, dp_attention=True, ep=8, nextn=0, role="both",
                          grid=grid, cache_dir=tmp_path)
    assert again == table


def test_cost_model_takes_step_durations_from_the_table_and_power_from_the_roofline() -> None:
    from agentperf_tui.twin.costmodel import CostModel, SpeculativeConfig
    from agentperf_tui.twin.hardware import DEEPSEEK_V4_PRO, H200

    table = make_table()
    builtin = CostModel(H200, DEEPSEEK_V4_PRO, 8, SpeculativeConfig())
    measured = CostModel(H200, DEEPSEEK_V4_PRO, 8, SpeculativeConfig(), table=table)
    kv = DEEPSEEK_V4_PRO.kv_read_bytes(8192) * 16
    step = measured.decode_step(16, kv, 0.0, context_tokens=16 * 8192)
    assert math.isclose(step.duration_s, decode_value(16, 8192) / 1000.0, rel_tol=1e-9)
    assert step.activity == builtin.decode_step(16, kv, 0.0).activity  # the power split stays the model's
    prefill = measured.prefill_step(1024, 0.0, cached_tokens=8192)
    assert math.isclose(prefill.duration_s, prefill_value(1024, 8192) / 1000.0, rel_tol=1e-9)
    sliced = CostModel(H200, DEEPSEEK_V4_PRO, 8, SpeculativeConfig(), prefill_time_scale=1.25, table=table)
    assert math.isclose(sliced.prefill_step(1024, 0.0, 8192).duration_s, 1.25 * prefill.duration_s)


def test_twin_with_cost_model_aic_uses_a_cached_table_for_each_engine_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentperf_tui.twin.config import parse_twin_args
    from agentperf_tui.twin.server import TwinServer

    asked: list[dict] = []

    def fake_load(hardware: str, **kw: object) -> StepTable:
        asked.append({"hardware": hardware, **kw})
        return make_table(role=str(kw["role"]))

    monkeypatch.setattr(aic_table, "load_or_build", fake_load)
    server = TwinServer(parse_twin_args(["--hardware", "gb300-nvl72", "--tp", "8", "--dp", "8", "--ep", "8",
                                         "--enable-dp-attention", "--prefill-gpus", "32", "--prefill-tp", "4",
                                         "--speculative-algorithm", "EAGLE", "--speculative-num-steps", "1",
                                         "--speculative-num-draft-tokens", "2", "--cost-model", "aic"]))
    shapes = sorted((a["role"], a["tp"], a["ep"], a["dp_attention"], a["nextn"]) for a in asked)
    assert shapes == [("decode", 8, 8, True, 1), ("prefill", 4, 4, True, 0)]  # one load per shape, not per engine
    assert all(engine.cost.table is not None for engine in server.cluster.engines)
