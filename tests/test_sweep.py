"""sweep: one search per configuration on the twin, resumable after Ctrl-C, with the frontier report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from agentperf_tui.profile import ProfileError, load_profile
from agentperf_tui.sweep import configurations, label

REPO = Path(__file__).resolve().parents[1]


def _profile(tmp_path: Path) -> Path:
    lines = []
    for i in range(8):
        messages = [{"role": "system", "content": f"agent {i}: keep answers short."}]
        for k in range(4):
            messages += [{"role": "user", "content": f"step {k} of task {i}: list the files " * 4},
                         {"role": "assistant", "content": "ok " * 12}]
        lines.append(orjson.dumps({"messages": messages, "max_tokens": 16, "tool_delay_ms": 50}).decode())
    (tmp_path / "short.jsonl").write_text("\n".join(lines) + "\n")
    path = tmp_path / "sweepme.toml"
    path.write_text("""
[profile]
name = "sweepme"
[server]
ready_timeout_s = 60.0
gpus = 8
[[server.processes]]
name = "twin"
argv = ["{python}", "-m", "agentperf_tui.twin", "--hardware", "h200", "--tp", "8", "--host", "{host}",
        "--port", "{port}", "--dcgm-port", "{dcgm_port}", "--enable-metrics", "--enable-cache-report"]
[workload]
source = "short.jsonl"
[telemetry]
nvml = false
dcgm_urls = ["http://{host}:{dcgm_port}/metrics"]
[[tiers]]
name = "tier1"
output_tps = 20.0
ttft_s = 5.0
[tune]
max-running-requests = [2, 256]
""")
    return path


def test_configurations_are_a_grid_or_a_listed_set_and_unknown_knobs_are_checked(tmp_path):
    profile = load_profile(_profile(tmp_path))
    _, grid = configurations(profile, ["max-running-requests=2,256", "stream-interval=1,50"], [])
    assert [label(c) for c in grid] == ["max-running-requests=2, stream-interval=1", "max-running-requests=2, "
                                        "stream-interval=50", "max-running-requests=256, stream-interval=1",
                                        "max-running-requests=256, stream-interval=50"]
    with_knob, listed = configurations(profile, [], ["max-running-requests=2;chunked-prefill-size=4096"])
    assert listed == [{"max-running-requests": "2", "chunked-prefill-size": "4096"}]
    assert any(k.key == "chunked-prefill-size" for k in with_knob.tune)
    with pytest.raises(ProfileError, match="not a flag SGLang"):
        configurations(profile, ["max-runing-requests=1,2"], [])
    with pytest.raises(ProfileError, match="one kind"):
        configurations(profile, [], [])
    with pytest.raises(ProfileError, match="listed twice"):
        configurations(profile, [], ["max-running-requests=2", "max-running-requests=2"])


def _sweep(profile: Path, record_dir: Path) -> list[str]:
    return [sys.executable, "-m", "agentperf_tui", "sweep", str(profile), "--vary", "max-running-requests=2,256",
            "--mode", "quick", "--headless", "--record-dir", str(record_dir), "--start", "4", "--max-agents", "8",
            "--phase", "6", "--max-phase", "6", "--settle", "0.5", "--workers", "0"]


def test_a_sweep_on_the_twin_resumes_after_ctrl_c_without_redoing_finished_configurations(tmp_path):
    profile = _profile(tmp_path)
    record_dir = tmp_path / "rec"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(_sweep(profile, record_dir), cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        state = None
        while time.monotonic() < deadline:  # wait for the first configuration to finish, then Ctrl-C
            states = list(record_dir.glob("sweep-*/sweep.json"))
            if states:
                state = orjson.loads(states[0].read_bytes())
                if state["configs"][0]["status"] in ("finished", "unresolved") and state["configs"][1]["status"] == "running":
                    break
            if first.poll() is not None:
                break
            time.sleep(0.5)
        assert first.poll() is None, first.stdout.read().decode()[-3000:]
        time.sleep(2.0)
        os.killpg(first.pid, signal.SIGINT)
        out, _ = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    text = out.decode()
    assert first.returncode == 130, text[-3000:]
    assert "run the same command again to resume" in text
    (state_path,) = record_dir.glob("sweep-*/sweep.json")
    state = orjson.loads(state_path.read_bytes())
    assert [c["status"] for c in state["configs"]] == ["finished", "stopped"], state
    finished_session = state["configs"][0]["session"]
    sessions_before = sorted(p.name for p in state_path.parent.iterdir() if p.is_dir())

    second = subprocess.run(_sweep(profile, record_dir), cwd=REPO, env=env, capture_output=True, timeout=180)
    text = second.stdout.decode() + second.stderr.decode()
    assert second.returncode == 0, text[-3000:]
    assert "resuming" in text and "1 of 2 configurations done" in text
    state = orjson.loads(state_path.read_bytes())
    assert [c["status"] for c in state["configs"]] == ["finished", "finished"]
    assert state["configs"][0]["session"] == finished_session  # read back, not rerun
    sessions_after = sorted(p.name for p in state_path.parent.iterdir() if p.is_dir())
    assert len(sessions_after) == len(sessions_before) + 1  # only the stopped configuration ran again

    report = orjson.loads((state_path.parent / "sweep_report.json").read_bytes())
    (best,) = report["best_per_tier"]
    assert best["tier"] == "tier1" and best["config"] in ("max-running-requests=2", "max-running-requests=256")
    assert best["max_agents"] >= 1 and best["sample"]["finished"] >= 20
    speeds = [r["speed"] for r in report["frontier"]]
    assert speeds[0] == 10 and speeds[-1] == 200
    held = {lab: [r["held"][lab]["agents"] if r["held"][lab] else 0 for r in report["frontier"]]
            for lab in ("max-running-requests=2", "max-running-requests=256")}
    for counts in held.values():  # a higher required speed never holds more agents
        assert counts == sorted(counts, reverse=True)
    # 2 running requests at most: at 8 agents most requests wait, so it cannot hold more than 256 at 10 tok/s
    assert held["max-running-requests=2"][0] <= held["max-running-requests=256"][0]
    assert report["twin"] is True and report["estimate"] is True
    md = (state_path.parent / "sweep_report.md").read_text()
    assert "Simulated" in md and "Quick mode" in md and "## Frontier" in md
    svg = (state_path.parent / "frontier.svg").read_text()
    assert "(digital twin)" in svg and "max-running-requests=256" in svg and "Pareto-best" in svg


def test_a_tier_no_configuration_held_has_no_best_configuration_and_stopped_answers_say_so():
    from agentperf_tui.sweep import _answer, sweep_markdown

    tiers = [{"name": "tier1", "output_tps": 30.0, "ttft_s": 5.0, "max_agents": 12, "agents_per_gpu": 1.5,
              "agents_per_mw": 3000.0, "avg_power_w": 4000.0, "sample": {"finished": 300, "duration_s": 60.0}},
             {"name": "tier3", "output_tps": 200.0, "ttft_s": 2.0, "max_agents": 0, "agents_per_gpu": 0.0,
              "agents_per_mw": None, "avg_power_w": None, "sample": None}]
    assert _answer({"tiers": tiers}, "finished") == "tier1 12; tier3 none held"
    assert _answer({"tiers": tiers}, "stopped").startswith("stopped before the answer (so far: ")
    report = {"profile": "p", "mode": "quick", "estimate": True, "twin": True, "frontier": [], "frontier_note": "n",
              "configs": [{"label": "a=1", "status": "finished", "tiers": tiers, "session": "s"}],
              "best_per_tier": [
                  {"tier": "tier1", "output_tps": 30.0, "ttft_s": 5.0, "config": "a=1", "max_agents": 12,
                   "agents_per_gpu": 1.5, "agents_per_mw": 3000.0, "avg_power_w": 4000.0,
                   "sample": {"finished": 300, "duration_s": 60.0}, "by": "agents per MW"},
                  {"tier": "tier3", "output_tps": 200.0, "ttft_s": 2.0, "config": None, "max_agents": 0,
                   "agents_per_gpu": None, "agents_per_mw": None, "avg_power_w": None, "sample": None,
                   "by": "no configuration held this tier"}]}
    text = sweep_markdown(report)
    assert "| a=1 | finished | 12 (3,000 /MW) | none held | s |" in text
    assert "| tier3 (200 tok/s, 2 s) | none held |" in text
