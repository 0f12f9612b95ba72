"""End to end: ``agentperf-tui run --headless`` on the twin, with both shared traces; bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psutil
import pytest

from .conftest import REPO


def run_cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentperf_tui", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def last_json(stdout: str) -> dict:
    return orjson.loads(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("workload", [None, "aa-mini-v1/manifest.json"])
def test_headless_run_summary_on_twin(workload, shared_traces: Path, tmp_path: Path):
    args = ["run", "profiles/twin-h200.toml", "--headless", "--agents", "4", "--duration", "10", "--ramp", "1",
            "--settle", "2", "--json", "--record-dir", str(tmp_path), "--summary", str(tmp_path / "s.json")]
    if workload:
        args += ["--workload", str(shared_traces / workload)]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [orjson.loads(line) for line in proc.stdout.strip().splitlines()]
    assert sum(r["type"] == "progress" for r in records) >= 8  # one progress line per second
    # every event is its own JSONL line (server ready, target changes, the stop reason)
    events = [r["text"].split(" ", 1)[1] for r in records if r["type"] == "event"]  # "HH:MM:SS text"
    assert any(e.startswith("server ready at ") for e in events)
    assert "agents target 0 -> 4" in events and any(e.startswith("stopping: duration 10 s") for e in events)
    summary = last_json(proc.stdout)
    assert summary["type"] == "summary"
    assert summary["requests"]["completed"] > 0 and summary["requests"]["failed"] == 0
    assert abs(summary["effective_concurrency"] - 4) <= 0.2
    assert summary["agents"] == summary["effective_concurrency"] and summary["target_agents"] == 4
    assert summary["twin"] is True and summary["client"]["valid"] is True
    window = summary["steady_window"]
    assert window["settle_s"] == 2.0 and 5.0 <= window["seconds"] <= 8.5  # 10 s less ramp and settle
    assert summary["aa_minimums"]["met"] is False and summary["aa_minimums"]["steady_ok"] is False
    assert summary["agents_per_gpu"] == pytest.approx(summary["agents"] / 8, abs=1e-3)
    assert summary["context_tokens"]["max_seen"] >= summary["context_tokens"]["max"] > 0
    assert [t["name"] for t in summary["tiers"]] == ["tier1", "tier2", "tier3"]
    assert all(t["output_tps_p25"] is not None for t in summary["tiers"])
    assert summary["power"]["avg_power_w"] > 0 and summary["power"]["boundary"] == "gpu"
    written = orjson.loads((tmp_path / "s.json").read_bytes())
    assert written["requests"] == summary["requests"]
    # the recording replays to the same summary
    (session,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in session.iterdir()} == {
        "session.aprec": "0o600", "summary.json": "0o600", "twin.log": "0o600"}
    replay = run_cli("replay", str(session), "--headless", "--json")
    assert replay.returncode == 0, replay.stderr
    replayed = last_json(replay.stdout)
    replayed.pop("type")
    summary.pop("type")
    assert replayed == summary


def test_bad_profile_exits_2_naming_file_and_key(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    good = (REPO / "profiles" / "twin-h200.toml").read_text()
    assert "\nagents = 8\n" in good
    bad.write_text(good.replace("\nagents = 8\n", '\nagents = "many"\n'))
    proc = run_cli("run", str(bad), "--headless")
    assert proc.returncode == 2
    assert "bad.toml" in proc.stderr and "run.agents" in proc.stderr
    assert proc.stdout == ""


def test_malformed_workload_exits_2_naming_line(tmp_path: Path):
    bad = tmp_path / "w.jsonl"
    bad.write_text('{"conversation_id": "c", "conversation_idx": 0}\n')
    proc = run_cli("run", "twin-h200", "--headless", "--workload", str(bad), "--no-record", "--duration", "5")
    assert proc.returncode == 2
    assert "w.jsonl:1" in proc.stderr and "missing key" in proc.stderr


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_signal_stops_load_and_twin_and_exits_with_its_code(sig, code, tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-m", "agentperf_tui", "run", "twin-h200", "--headless", "--agents", "2",
                             "--duration", "120", "--json", "--record-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if '"state":"ready"' in line.replace(" ", ""):
                break
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the twin should be running"
        os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code
    assert orjson.loads(out.strip().splitlines()[-1])["type"] == "summary"
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive


def test_twin_killed_mid_run_exits_nonzero_fast_with_cause_and_replayable_recording(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-m", "agentperf_tui", "run", "twin-h200", "--headless", "--agents", "2",
                             "--duration", "120", "--json", "--record-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if '"requests_completed":' in line and '"requests_completed":0' not in line.replace(" ", ""):
                break
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children
        for child in children:
            child.kill()
        t_kill = time.monotonic()
        out, err = proc.communicate(timeout=20)
        elapsed = time.monotonic() - t_kill
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert elapsed < 5
    summary = orjson.loads(out.strip().splitlines()[-1])
    assert "exited" in summary["stop_reason"] and "-9" in summary["stop_reason"]
    assert summary["server"]["state"].startswith("exited")
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive
    (session,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    replay = run_cli("replay", str(session), "--headless", "--json")
    assert replay.returncode == 0
    replayed = last_json(replay.stdout)
    assert replayed["stop_reason"] == summary["stop_reason"]
