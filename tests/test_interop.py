"""Fitting the ecosystem: attaching by URL (root or /v1), API key fallbacks, request and correlation ids."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agentperf_tui.engine.client import make_session, stream_chat
from agentperf_tui.profile import ProfileError, attached, load_profile, parse_profile, server_root
from agentperf_tui.server.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("url, root", [
    ("http://127.0.0.1:30000/v1", "http://127.0.0.1:30000"),
    ("http://127.0.0.1:30000/v1/", "http://127.0.0.1:30000"),
    ("http://host:8000/", "http://host:8000"),
    ("https://gw.example/sglang/v1", "https://gw.example/sglang"),
    ("http://host:8000", "http://host:8000"),
])
def test_a_server_root_or_an_openai_base_url_is_the_same_server(url, root):
    assert server_root(url) == root


def test_a_profile_url_ending_in_v1_is_read_as_its_root():
    text = '[server]\nmode = "attach"\nurl = "http://127.0.0.1:30000/v1"\n'
    assert parse_profile(text).server.url == "http://127.0.0.1:30000"


def test_attached_keeps_the_workload_and_drops_the_launched_processes_telemetry():
    base = load_profile("twin-h200")
    p = attached(base, "http://10.0.0.5:30000/v1", model="m", api_key_env="MY_KEY")
    assert p.server.mode == "attach" and p.server.url == "http://10.0.0.5:30000" and not p.server.processes
    assert p.server.model == "m" and p.server.api_key_env == "MY_KEY"
    assert all("{" not in u for u in p.telemetry.dcgm_urls + p.telemetry.node_power_urls)
    assert p.tiers == base.tiers and p.workload == base.workload
    with pytest.raises(ProfileError, match="--url: expected an http"):
        attached(base, "10.0.0.5:30000")
    with pytest.raises(ProfileError, match="NAME of an environment variable"):
        attached(base, "http://h:1", api_key_env="sk-live-123456")


def test_an_attached_server_without_a_named_key_variable_falls_back_to_sglang_then_openai(monkeypatch):
    profile = attached(load_profile("attach-example"), "http://127.0.0.1:1", api_key_env="")
    monkeypatch.delenv("SGLANG_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "openai-key")
    assert Supervisor(profile).api_key == "openai-key"
    # a key nobody named never goes over plain http to another host (aa-agentperf-local refuses it too)
    assert Supervisor(attached(profile, "http://10.0.0.5:30000", api_key_env="")).api_key is None
    assert Supervisor(attached(profile, "https://gw.example/v1", api_key_env="")).api_key == "openai-key"
    monkeypatch.setenv("SGLANG_API_KEY", "sglang-key")
    assert Supervisor(profile).api_key == "sglang-key"
    monkeypatch.setenv("MY_KEY", "mine")
    assert Supervisor(attached(profile, "http://h:1", api_key_env="MY_KEY")).api_key == "mine"
    assert Supervisor(load_profile("twin-h200")).api_key is None  # a launched server gets no stray key


async def test_every_request_carries_a_request_id_and_the_conversation_under_both_headers():
    seen: list = []  # case-insensitive header views

    async def chat(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.copy())
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
                         b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
                         b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\ndata: [DONE]\n\n')
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with TestServer(app, host="127.0.0.1") as server:
        async with make_session() as http:
            url = str(server.make_url("/v1/chat/completions"))
            first = await stream_chat(http, url, {"messages": []}, correlation_id="traj-7", routing_header="x-session-id")
            second = await stream_chat(http, url, {"messages": []}, correlation_id="traj-7")
    assert first.error is None and first.request_id and first.request_id != second.request_id, first.error
    assert seen[0]["X-Request-Id"] == first.request_id and seen[1]["X-Request-Id"] == second.request_id
    assert seen[0]["X-Correlation-ID"] == "traj-7" and seen[0]["x-session-id"] == "traj-7"
    assert "x-session-id" not in seen[1]  # only when the profile names it


def test_search_and_run_take_url_model_and_key_variable():
    from agentperf_tui.cli import _load_profile, build_parser

    for command in ("search", "run"):
        args = build_parser().parse_args([command, "twin-h200", "--url", "http://127.0.0.1:30000/v1",
                                          "--model", "m", "--api-key-env", "MY_KEY"])
        profile = _load_profile(args.profile, args)
        assert profile.server.mode == "attach" and profile.server.url == "http://127.0.0.1:30000"
        assert profile.server.model == "m" and profile.server.api_key_env == "MY_KEY"


def test_attach_flags_without_a_url_are_an_error_not_ignored():
    from agentperf_tui.cli import UsageError, _load_profile, build_parser

    args = build_parser().parse_args(["search", "twin-h200", "--ready-timeout", "5"])
    with pytest.raises(UsageError, match="go with --url"):
        _load_profile(args.profile, args)


def test_routing_key_header_is_checked():
    with pytest.raises(ProfileError, match="routing_key_header"):
        parse_profile('[server]\nmode = "attach"\nurl = "http://h:1"\nrouting_key_header = "X Bad"\n')
    with pytest.raises(ProfileError, match="set by the client itself"):
        parse_profile('[server]\nmode = "attach"\nurl = "http://h:1"\nrouting_key_header = "Authorization"\n')


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "agentperf_tui", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_attach_to_a_dead_port_is_one_line_and_exit_2():
    port = free_port()
    done = cli("attach", f"http://127.0.0.1:{port}/v1", "--headless", "--duration", "5", "--no-record",
               "--ready-timeout", "1.5")
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("agentperf-tui: error: server at http://127.0.0.1:") and "connection refused" in last
    assert "Traceback" not in done.stderr + done.stdout


def test_attach_to_a_running_twin_by_its_v1_url_measures_and_labels_it_the_twin(tmp_path: Path):
    port = free_port()
    twin = subprocess.Popen([sys.executable, "-m", "agentperf_tui", "twin", "--port", str(port), "--hardware", "h200",
                             "--tp", "8", "--enable-metrics", "--tokenizer", "estimate"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        done = cli("attach", f"http://127.0.0.1:{port}/v1", "--headless", "--json", "--duration", "12",
                   "--settle", "2", "--agents", "4", "--no-record", "--ready-timeout", "20")
    finally:
        twin.terminate()
        twin.wait(10)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert summary["profile"] == "attach" and summary["twin"] is True
    assert summary["server"]["url"] == f"http://127.0.0.1:{port}"
    assert summary["requests"]["completed_all"] > 0
    assert summary["reconciliation"]["status"] in ("reconciled", "undecided"), summary["reconciliation"]["headline"]


# -- export in AIPerf's layout -------------------------------------------------------------------------

def recorded_search(tmp_path: Path) -> Path:
    """A recording with requests over two search phases (8 and 16 agents), written by the real recorder."""
    from agentperf_tui.engine.records import FAILED, RequestRecord
    from agentperf_tui.record.writer import SessionRecorder

    clock = [100.0]
    (tmp_path / "s").mkdir()
    rec = SessionRecorder(tmp_path / "s", {"profile": "twin-h200", "gpus": 8, "agents": 8}, clock=lambda: clock[0])
    for phase, (agents, t0) in enumerate(((8, 110.0), (16, 150.0)), 1):
        for i in range(30):
            t_send = t0 + i
            status = FAILED if i == 29 else "ok"
            rec.on_record(RequestRecord(i % agents, f"traj-{i}", 0, 3, 1000 + i, 800, 100, 100, t_send, t_send + 0.2,
                                        t_send + 2.2, t_send + 2.21, status, "HTTP 503: busy" if status == FAILED else "",
                                        0.0, True, 100, f"req-{phase}-{i}", f"corr-{i}"))
        rec.on_phase({"agents": agents, "repeat": 0, "status": "valid", "valid": True, "window_t0": t0,
                      "window_t1": t0 + 30, "invalid": "", "duration_s": 30.0,
                      "requests": {"finished": 30, "failed": 1, "in_flight": 0},
                      "tiers": [{"name": "tier1", "output_tps_p25": 50.0, "ttft_p95_s": 0.2, "verdict": "pass"}],
                      "reconciliation": {"headline": "reconciled"}})
    rec.close()
    return tmp_path / "s"


def test_export_writes_aiperf_run_folders_for_the_session_and_each_phase(tmp_path: Path):
    session = recorded_search(tmp_path)
    done = cli("export", str(session), "--format", "aiperf", "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    runs = sorted(p.name for p in out.iterdir() if (p / "profile_export.jsonl").exists())
    assert runs == ["phase_01_8agents", "phase_02_16agents", "run"]
    lines = [orjson.loads(x) for x in (out / "phase_01_8agents" / "profile_export.jsonl").read_bytes().splitlines()]
    assert len(lines) == 30
    ok, failed = lines[0], lines[-1]
    meta = ok["metadata"]
    for key in ("session_num", "request_start_ns", "request_end_ns", "worker_id", "record_processor_id"):
        assert key in meta
    assert meta["benchmark_phase"] == "profiling" and isinstance(meta["request_start_ns"], int)
    assert meta["x_request_id"] == "req-1-0" and meta["x_correlation_id"] == "corr-0"
    assert meta["request_end_ns"] - meta["request_start_ns"] == pytest.approx(2.21e9, rel=1e-6)
    assert ok["metrics"]["time_to_first_token"] == {"value": pytest.approx(200.0), "unit": "ms"}
    assert ok["metrics"]["output_token_throughput_per_user"]["unit"] == "tokens/sec/user"
    assert ok["metrics"]["output_token_throughput_per_user"]["value"] == pytest.approx(99 / 2.0)
    assert failed["error"]["message"] == "HTTP 503: busy" and list(failed["metrics"]) == ["error_isl"]
    agg = orjson.loads((out / "run" / "profile_export_aiperf.json").read_bytes())
    assert agg["schema_version"] == "1.4" and agg["request_count"]["avg"] == 58.0
    assert agg["time_to_first_token"]["p50"] == pytest.approx(200.0) and agg["time_to_first_token"]["count"] == 58
    assert agg["error_summary"] == [{"error_details": {"message": "HTTP 503: busy", "type": "agentperf-tui"}, "count": 2}]
    assert isinstance(agg["start_time"], str) and agg["metadata"]["profile"] == "twin-h200"
    table = (out / "run" / "profile_export_aiperf.csv").read_bytes()
    assert table.startswith(b"Metric,avg,min,max,sum,p1,p5,p10,p25,p50,p75,p90,p95,p99,std\r\n")
    assert b"\r\n\r\nMetric,Value\r\n" in table
    phases = (out / "phases.csv").read_text().splitlines()
    assert phases[0].startswith("phase,agents") and phases[1].split(",")[1] == "8" and "reconciled" in phases[1]
    assert len((out / "requests.csv").read_text().splitlines()) == 61


def test_the_export_loads_with_aiperfs_own_models(tmp_path: Path):
    models = pytest.importorskip("aiperf.common.models", reason="AIPerf 0.13 not installed (pip install aiperf==0.13.0)")
    from agentperf_tui.report.aiperf_export import export_session

    export_session(recorded_search(tmp_path), tmp_path / "out")
    for line in (tmp_path / "out" / "run" / "profile_export.jsonl").read_bytes().splitlines():
        models.MetricRecordInfo.model_validate_json(line)
    from aiperf.common.models.export_models import JsonExportData

    JsonExportData.model_validate_json((tmp_path / "out" / "run" / "profile_export_aiperf.json").read_bytes())


# -- live metrics for Prometheus --------------------------------------------------------------------------

def test_a_live_run_serves_its_own_metrics_to_prometheus_on_loopback(tmp_path: Path):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen([sys.executable, "-m", "agentperf_tui", "run", "twin-h200", "--headless", "--duration", "25",
                            "--agents", "4", "--settle", "2", "--no-record", "--prometheus-port", str(port)],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: dict[str, list] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                time.sleep(0.5)
                continue
            samples = {f.name: f.samples for f in text_string_to_metric_families(text)}
            if samples.get("agentperf_requests") and samples["agentperf_requests"][0].value > 0 \
                    and samples.get("agentperf_tier_ttft_p95_seconds"):
                break
            time.sleep(0.5)
    finally:
        run.terminate()
        _, err = run.communicate(timeout=30)
    assert samples, f"no metrics served; stderr: {err[-1500:]}"
    target = samples["agentperf_agents_target"][0]
    assert target.value == 4 and target.labels == {"profile": "twin-h200", "twin": "true"}
    assert {s.labels["tier"] for s in samples["agentperf_tier_ttft_p95_seconds"]} == {"tier1", "tier2", "tier3"}
    verdicts = [s for s in samples["agentperf_tier_verdict"] if s.labels["tier"] == "tier1"]
    assert sorted(s.labels["verdict"] for s in verdicts) == ["fail", "pass", "undecided"]
    assert sum(s.value for s in verdicts) == 1.0  # exactly the current one
    assert "agentperf_client_valid" in samples and "agentperf_output_tokens_per_second" in samples
    assert f"prometheus: the run's metrics at http://127.0.0.1:{port}/metrics" in err


# -- command-line defects ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["run", "twin-h200", "--headless", "--duration", "-5"], "--duration -5: must be > 0 seconds"),
    (["run", "twin-h200", "--headless", "--duration", "0"], "a headless run needs a length > 0 s"),
    (["run", "twin-h200", "--headless", "--agents", "0"], "--agents 0: must be >= 1"),
])
def test_run_refuses_durations_and_agent_counts_that_measure_nothing(args, message):
    done = cli(*args, timeout=30)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_every_positional_argument_and_the_search_modes_have_help():
    from agentperf_tui.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if not action.option_strings and name != "twin":
                assert action.help, f"{name} {action.dest}: no help text"
    text = subparsers.choices["search"].format_help()
    assert "quick    an ESTIMATE" in text and "certify  AA-AgentPerf's rules" in text


def test_a_run_started_under_nohup_ignores_sighup(tmp_path: Path):
    import signal

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(["nohup", sys.executable, "-m", "agentperf_tui", "run", "twin-h200", "--headless",
                             "--json", "--duration", "8", "--agents", "2", "--settle", "1", "--no-record"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(4.0)
    proc.send_signal(signal.SIGHUP)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    summary = orjson.loads(out.strip().splitlines()[-1])
    assert summary["stop_reason"].startswith("duration 8 s reached")
