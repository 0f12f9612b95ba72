"""Launch plans: the exact argv per launcher (local, srun, ssh), placeholders, masking, golden files."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from agentperf_tui.profile import load_profile, parse_profile
from agentperf_tui.server.launch_plan import (
    build_launch_plan,
    expand_argv,
    format_launch_plan,
    is_secret,
    mask_argv,
)

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"  # UPDATE_GOLDEN=1 pytest tests/test_launch_plan.py


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if UPDATE:
        path.write_text(text + "\n")
    assert path.exists(), f"missing golden {path}; run with UPDATE_GOLDEN=1"
    assert text + "\n" == path.read_text(), f"launch plan for {name} differs from {path}"


@pytest.mark.parametrize("name", ["h200", "gb300-nvl72", "gb300-nvl72-ssh", "twin-h200"])
def test_golden_plans(name: str) -> None:
    check_golden(
        f"launch_plan_{name}", format_launch_plan(build_launch_plan(load_profile(name), python="python"))
    )


def test_h200_plan_is_the_cookbook_command() -> None:
    [cmd] = build_launch_plan(load_profile("h200"), python="python")
    assert cmd.argv[:3] == ["python", "-m", "sglang.launch_server"]
    line = format_launch_plan([cmd]).splitlines()[1]
    assert line.startswith("python -m sglang.launch_server ")  # SGLANG_ENABLE_SPEC_V2: 0.5.23 reads it no more
    for part in (
        "--tp 8",
        "--moe-runner-backend flashinfer_mxfp4",
        "--tool-call-parser deepseekv4",
        "--reasoning-parser deepseek-v4",
        "--enable-metrics",
        "--enable-cache-report",
        "--mem-fraction-static 0.88",
        "--speculative-num-draft-tokens 2",
        "--host 127.0.0.1 --port 30000",
    ):
        assert part in line
    assert cmd.env == {}


def test_python_placeholder_is_the_interpreter() -> None:
    [cmd] = build_launch_plan(
        load_profile("twin-h200"), python="/opt/venv/bin/python", port=1234, dcgm_port=5678
    )
    assert cmd.argv[0] == "/opt/venv/bin/python"
    assert cmd.argv[cmd.argv.index("--port") + 1] == "1234"
    assert cmd.argv[cmd.argv.index("--dcgm-port") + 1] == "5678"
    assert "free port" not in format_launch_plan([cmd])


def test_unresolved_free_ports_are_said_so() -> None:
    text = format_launch_plan(build_launch_plan(load_profile("twin-h200"), python="python"))
    assert "--port '{port}'" in text and text.endswith(
        "# {port}/{dcgm_port}: a free port is chosen at launch"
    )


def test_gb300_plan_has_srun_workers_and_a_local_router() -> None:
    plan = build_launch_plan(load_profile("gb300-nvl72"), python="python")
    text = format_launch_plan(plan)
    srun = [c for c in plan if c.argv[0] == "srun"]
    assert len(srun) == 18
    assert sum("--disaggregation-mode prefill" in shlex.join(c.argv) for c in srun) == 8
    assert sum("--disaggregation-mode decode" in shlex.join(c.argv) for c in srun) == 10
    first = srun[0].argv
    assert first[:6] == [
        "srun",
        "--nodes=1",
        "--ntasks=1",
        "--gpus-per-node=4",
        "--nodelist=tray01",
        "--job-name=agentperf-prefill1",
    ]
    export = dict(kv.split("=", 1) for kv in first[6].removeprefix("--export=ALL,").split(","))
    # the cookbook's mooncake-over-NVLink block, and the recipe's MegaMoE tokens per rank (shown, not masked)
    assert {k: export[k] for k in ("NCCL_MNNVL_ENABLE", "NCCL_CUMEM_ENABLE", "MC_FORCE_MNNVL",
                                   "SGLANG_MOONCAKE_CUSTOM_MEM_POOL")} == {
        "NCCL_MNNVL_ENABLE": "1", "NCCL_CUMEM_ENABLE": "1", "MC_FORCE_MNNVL": "1",
        "SGLANG_MOONCAKE_CUSTOM_MEM_POOL": "True"}
    assert "SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK=9216" in text
    assert "SGLANG_ENABLE_SPEC_V2" not in text
    assert first[7:10] == ["python3", "-m", "sglang.launch_server"]
    # capacity settings of NVIDIA's srt-slurm 8p1d recipe, spelled for the profile's SGLang 0.5.23
    prefill_line, decode_line = shlex.join(srun[0].argv), shlex.join(srun[8].argv)
    for part in ("--attn-dp-size 4", "--max-running-requests 1024", "--cuda-graph-max-bs-decode 1024",
                 "--chunked-prefill-size 32768", "--mem-fraction-static 0.9", "--stream-interval 60",
                 "--enable-cache-report"):
        assert part in prefill_line
    for part in ("--attn-dp-size 8", "--max-running-requests 8192", "--cuda-graph-max-bs-decode 1280",
                 "--mem-fraction-static 0.85", "--stream-interval 60", "--enable-cache-report"):
        assert part in decode_line
    assert "--enable-dp-attention" not in text and " --dp " not in text
    [router] = [c for c in plan if c.role == "router"]
    assert router.argv[:4] == ["python", "-m", "smg.launch_router", "--pd-disaggregation"]
    a = router.argv
    prefill = [a[i + 1] for i, x in enumerate(a) if x == "--prefill"]
    decode = [a[i + 1] for i, x in enumerate(a) if x == "--decode"]
    assert prefill == [f"http://tray{i:02d}:{30000 + i}" for i in range(1, 9)]
    assert decode == [f"http://tray{9 + 2 * d:02d}:{30011 + d}" for d in range(5)]
    assert a[a.index("--host"):a.index("--host") + 4] == ["--host", "127.0.0.1", "--port", "30000"]
    # benchmarking: a failure is a failure (no retries), overload is measured (no breaker)
    assert "--disable-retries" in a and "--disable-circuit-breaker" in a
    assert int(a[a.index("--worker-startup-timeout-secs") + 1]) >= load_profile("gb300-nvl72").server.ready_timeout_s
    assert "# router (router) on localhost" in text


def test_ssh_remote_command_round_trips_through_a_shell() -> None:
    text = """
[server]
[[server.processes]]
name = "w"
launcher = "ssh"
node = "tray01"
ssh_args = ["-o", "BatchMode=yes"]
argv = ["python3", "-c", "print('a b'); import sys", "it's $HOME;", "{node}"]
env = { NOTE = "two words", API_KEY = "s3cret" }
[[server.processes]]
name = "r"
role = "router"
argv = ["x"]
"""
    cmd = build_launch_plan(parse_profile(text), python="python")[0]
    assert cmd.argv[:5] == ["ssh", "-o", "BatchMode=yes", "tray01", "--"]
    # what the remote shell receives is the words joined by spaces; it must split back exactly
    remote = shlex.split(" ".join(cmd.argv[5:]))
    assert remote == [
        "env",
        "NOTE=two words",
        "API_KEY=s3cret",
        "python3",
        "-c",
        "print('a b'); import sys",
        "it's $HOME;",
        "tray01",
    ]
    shown = format_launch_plan([cmd])
    assert "s3cret" not in shown and "API_KEY=***" in shown


def test_secrets_masked_in_env_and_flags_but_not_in_real_argv() -> None:
    text = """
[server]
[[server.processes]]
name = "srv"
argv = ["python", "--api-key", "sk-1", "--hf-token=hf-2", "--speculative-num-draft-tokens", "2"]
env = { HF_TOKEN = "hf-3", MY_PASSWORD = "pw", PLAIN = "ok" }
"""
    [cmd] = build_launch_plan(parse_profile(text), python="python")
    line = format_launch_plan([cmd]).splitlines()[1]
    for secret in ("sk-1", "hf-2", "hf-3", "pw"):
        assert secret not in line
    assert line.startswith(
        "HF_TOKEN='***' MY_PASSWORD='***' PLAIN=ok python --api-key '***' '--hf-token=***'"
    )
    assert line.endswith("--speculative-num-draft-tokens 2")
    assert "sk-1" in cmd.argv and cmd.env["HF_TOKEN"] == "hf-3"  # the real command keeps them
    assert mask_argv(["--admin-api-key", "x"]) == ["--admin-api-key", "***"]


@pytest.mark.parametrize(("name", "secret"), [
    ("HF_TOKEN", True), ("OPENAI_API_KEY", True), ("APIKEY", True), ("AWS_SECRET_ACCESS_KEY", True),
    ("DB_PASSWORD", True), ("token", True), ("NGROK_AUTHTOKEN", True), ("CLIENTSECRET", True),
    ("PRIVATEKEY", True), ("MINIO_SECRETKEY", True), ("DB_PASS", True),
    ("SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK", False), ("SGLANG_CLIP_MAX_NEW_TOKENS_ESTIMATION", False),
    ("NCCL_MNNVL_ENABLE", False), ("SGLANG_OPT_DEEPGEMM_MEGA_MOE_USE_FP4_ACTS", False),
])
def test_secret_env_names(name: str, secret: bool) -> None:
    """A capacity setting such as ..._MAX_TOKENS_PER_RANK is shown; anything token-, key- or secret-like is not."""
    assert is_secret(name) is secret


def test_dp_attention_respelled_in_both_argv_forms() -> None:
    from agentperf_tui.server.launch_plan import attn_dp_spelling

    assert attn_dp_spelling(["--tp", "8", "--dp", "8", "--enable-dp-attention"]) == ["--tp", "8", "--attn-dp-size", "8"]
    assert attn_dp_spelling(["--tp", "8", "--dp-size=4", "--enable-dp-attention"]) == ["--tp", "8", "--attn-dp-size", "4"]
    assert attn_dp_spelling(["--tp", "8", "--dp", "8"]) == ["--tp", "8", "--dp", "8"]  # DP replicas stay


def test_list_placeholders_repeat_the_flag_or_expand_or_join() -> None:
    lists = {"prefill_urls": ["http://a:1", "http://b:2"], "decode_urls": ["http://c:3"]}
    assert expand_argv(["--prefill", "{prefill_urls}"], {}, lists) == [
        "--prefill",
        "http://a:1",
        "--prefill",
        "http://b:2",
    ]
    assert expand_argv(["x", "{prefill_urls}"], {}, lists) == ["x", "http://a:1", "http://b:2"]
    assert expand_argv(["--urls={prefill_urls}"], {}, lists) == ["--urls=http://a:1,http://b:2"]
    assert expand_argv(['{"k": "{model}"}'], {"model": "m"}, lists) == ['{"k": "m"}']


def test_local_worker_urls_use_the_server_host() -> None:
    text = """
[server]
host = "0.0.0.0"
port = 8000
[[server.processes]]
name = "p"
role = "prefill"
port = 9001
argv = ["w", "--port", "9001"]
[[server.processes]]
name = "d"
role = "decode"
port = 9002
host = "10.0.0.5"
argv = ["w"]
[[server.processes]]
name = "router"
role = "router"
argv = ["r", "--prefill", "{prefill_urls}", "--decode", "{decode_urls}", "--host", "{host}", "--port", "{port}"]
"""
    router = build_launch_plan(parse_profile(text), python="python")[-1]
    assert router.argv == [
        "r",
        "--prefill",
        "http://127.0.0.1:9001",
        "--decode",
        "http://10.0.0.5:9002",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
