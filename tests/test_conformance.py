"""The SGLang / router conformance data files and the argv checker over them."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from agentperf_tui.server import conformance
from agentperf_tui.server.conformance import check_argv, load, metric_names

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "agentperf_tui" / "server" / "conformance_data"
TOOL = REPO / "tools" / "sglang_conformance.py"

SGLANG = ("sglang", "0.5.23")
ROUTERS = [("smg", "1.13.0"), ("sglang-router", "0.3.2")]
DATA_FILES = [SGLANG, *ROUTERS]

COOKBOOK = [
    "python3",
    "-m",
    "sglang.launch_server",
    "--model-path",
    "deepseek-ai/DeepSeek-V4-Pro",
    "--tp",
    "8",
    "--moe-runner-backend",
    "flashinfer_mxfp4",
    "--mem-fraction-static",
    "0.88",
    "--speculative-algorithm",
    "EAGLE",
    "--speculative-num-steps",
    "1",
    "--speculative-eagle-topk",
    "1",
    "--speculative-num-draft-tokens",
    "2",
    "--tool-call-parser",
    "deepseekv4",
    "--reasoning-parser",
    "deepseek-v4",
    "--enable-metrics",
    "--trust-remote-code",
    "--host",
    "127.0.0.1",
    "--port",
    "30000",
]


def _wheel_dirs() -> list[Path]:
    """Where a downloaded wheel may be cached (AGENTPERF_WHEEL_CACHE: extra dirs, os.pathsep-separated)."""
    extra = [Path(p) for p in os.environ.get("AGENTPERF_WHEEL_CACHE", "").split(os.pathsep) if p]
    return [
        *extra,
        Path("/tmp/sglang-wheel"),
        Path("/tmp/smg-wheel"),
        Path("/tmp/router-wheel"),
        Path.home() / ".cache" / "agentperf-tui" / "wheels",
    ]


def _cached_wheel(name: str, sha256: str) -> Path | None:
    for d in _wheel_dirs():
        path = d / name
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return path
    return None


def _tool():
    spec = importlib.util.spec_from_file_location("sglang_conformance_tool", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sglang_data() -> conformance.ConformanceData:
    return load(*SGLANG)


def kinds(problems: list[conformance.Problem]) -> list[tuple[str, str]]:
    return [(p.kind, p.flag) for p in problems]


def test_conformance_accepts_cookbook_argv(sglang_data):
    assert check_argv(COOKBOOK, sglang_data) == []


def test_conformance_flags_misspelt_flag(sglang_data):
    argv = COOKBOOK[:3] + ["--model-path", "X", "--tp-sizee", "8", "--port", "30000"]
    problems = check_argv(argv, sglang_data)
    assert kinds(problems) == [("unknown_flag", "--tp-sizee")]
    assert "--tp-sizee" in problems[0].message and "--tp-size" in problems[0].message


def test_conformance_flags_bad_choice(sglang_data):
    flag = sglang_data.flag("--moe-a2a-backend")
    assert flag is not None and flag.choices and "deepep" in flag.choices
    problems = check_argv(COOKBOOK + ["--moe-a2a-backend", "nope"], sglang_data)
    assert kinds(problems) == [("bad_choice", "--moe-a2a-backend")]
    assert "nope" in problems[0].message and "deepep" in problems[0].message


def test_conformance_flags_deprecated_flag(sglang_data):
    problems = check_argv(COOKBOOK + ["--dp-size", "8", "--enable-dp-attention"], sglang_data)
    assert kinds(problems) == [("deprecated", "--enable-dp-attention")]
    assert "--attn-dp-size" in problems[0].message


def test_conformance_flags_deprecated_value(sglang_data):
    problems = check_argv(COOKBOOK + ["--attention-backend", "nsa"], sglang_data)
    assert kinds(problems) == [("deprecated", "--attention-backend")]
    assert "dsa" in problems[0].message


def test_conformance_missing_and_unexpected_values(sglang_data):
    problems = check_argv(
        ["sglang", "serve", "--model-path", "X", "--enable-metrics=true", "--port"], sglang_data
    )
    assert kinds(problems) == [("unexpected_value", "--enable-metrics"), ("missing_value", "--port")]


def test_conformance_equals_placeholders_and_negative_values(sglang_data):
    argv = [
        "{python}",
        "-m",
        "sglang.launch_server",
        "--model-path={model}",
        "--tp-size",
        "{tp}",
        "--moe-a2a-backend",
        "{a2a}",
        "--chunked-prefill-size",
        "-1",
        "--port={port}",
    ]
    assert check_argv(argv, sglang_data) == []


def test_conformance_ambiguous_abbreviation_is_unknown(sglang_data):
    problems = check_argv(COOKBOOK + ["--cuda-graph-max-bs", "256"], sglang_data)
    assert kinds(problems) == [("unknown_flag", "--cuda-graph-max-bs")]
    assert "--cuda-graph-max-bs-decode" in problems[0].message


def test_conformance_sglang_serve_positional_model(sglang_data):
    assert check_argv(["sglang", "serve", "deepseek-ai/DeepSeek-V4-Pro", "--tp-size", "8"], sglang_data) == []


@pytest.mark.parametrize(("package", "version"), DATA_FILES)
def test_conformance_data_file_has_the_version_it_claims(package, version):
    path = DATA_DIR / f"{package}-{version}.json"
    raw = json.loads(path.read_text())
    assert (raw["package"], raw["version"]) == (package, version)
    assert raw["source_wheel"]["file"].startswith(f"{package.replace('-', '_')}-{version}-")
    assert len(raw["source_wheel"]["sha256"]) == 64
    assert version in conformance.available_versions(package)
    data = load(package, version)
    assert data.flags and "--help" in data.flags
    names = [f["name"] for f in raw["flags"]]
    assert names == sorted(names)


def test_conformance_sglang_metrics_include_pd_queues(sglang_data):
    names = metric_names(sglang_data)
    for gauge in (
        "num_prefill_bootstrap_queue_reqs",
        "num_prefill_inflight_queue_reqs",
        "num_decode_prealloc_queue_reqs",
        "num_decode_transfer_queue_reqs",
    ):
        assert f"sglang:{gauge}" in names
    assert "sglang:kv_transfer_latency_ms" in names
    by_name = {m["name"]: m for m in sglang_data.metrics}
    assert by_name["sglang:num_running_reqs"]["type"] == "gauge"
    assert "model_name" in by_name["sglang:num_running_reqs"]["labels"]
    assert by_name["sglang:time_to_first_token_seconds"]["buckets"]


def test_conformance_sglang_dsv4_overrides_recorded(sglang_data):
    entries = sglang_data.model_overrides["DeepseekV4ForCausalLM"]
    hook = next(e for e in entries if e["function"] == "apply_deepseek_v4_defaults")
    assert hook["source"].endswith("deepseek_v4_hook.py")
    assert {"field": "max_running_requests", "value": "256"}.items() <= next(
        s for s in hook["sets"] if s["field"] == "max_running_requests"
    ).items()


@pytest.mark.parametrize(("package", "version"), ROUTERS)
def test_conformance_router_pd_argv_passes(package, version):
    data = load(package, version)
    module = "smg.launch_router" if package == "smg" else "sglang_router.launch_router"
    argv = [
        "{python}",
        "-m",
        module,
        "--pd-disaggregation",
        "--prefill",
        "http://a:1",
        "--prefill",
        "http://b:2",
        "8998",
        "--decode",
        "http://c:3",
    ]
    assert check_argv(argv, data) == []
    # --decode takes exactly one URL: a second one is a stray positional.
    assert kinds(check_argv(argv + ["http://d:4"], data)) == [("unknown_flag", "http://d:4")]
    for flag in ("--disable-retries", "--disable-circuit-breaker"):
        assert data.flags[flag].takes_value is False
    for flag in ("--worker-startup-timeout-secs", "--prometheus-port", "--prometheus-host", "--policy"):
        assert data.flags[flag].takes_value is True
    assert "cache_aware" in (data.flags["--policy"].choices or ())


@pytest.mark.parametrize(("package", "version"), DATA_FILES)
def test_conformance_regenerating_from_the_wheel_gives_the_same_file(package, version, tmp_path):
    committed = DATA_DIR / f"{package}-{version}.json"
    source = json.loads(committed.read_text())["source_wheel"]
    wheel = _cached_wheel(source["file"], source["sha256"])
    if wheel is None:
        pytest.skip(
            f"{source['file']} is not in a wheel cache dir ({', '.join(map(str, _wheel_dirs()))}); "
            f"`pip download {package}=={version} --no-deps -d /tmp/...` to run this"
        )
    tool = _tool()
    filename, data = tool.generate(wheel)
    assert filename == committed.name
    assert tool.dump(data) == committed.read_text()
