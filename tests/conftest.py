"""Shared fixtures: free ports, a twin subprocess on loopback, paths to the shared AA traces."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_TRACES = REPO.parent / "shared" / "traces" / "aa-agentperf-local"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TwinProcess:
    proc: subprocess.Popen[bytes]
    port: int
    dcgm_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dcgm_url(self) -> str:
        return f"http://127.0.0.1:{self.dcgm_port}/metrics"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_twin(*extra: str, hardware: str = "h200", tp: int = 8) -> TwinProcess:
    port, dcgm_port = free_port(), free_port()
    argv = [sys.executable, "-m", "agentperf_tui.twin", "--hardware", hardware, "--tp", str(tp),
            "--host", "127.0.0.1", "--port", str(port), "--dcgm-port", str(dcgm_port), "--enable-metrics",
            "--enable-cache-report", *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    twin = TwinProcess(proc, port, dcgm_port)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"twin exited {proc.returncode}: {proc.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(f"{twin.url}/health", timeout=1) as r:
                if r.status == 200:
                    return twin
        except OSError:
            time.sleep(0.1)
    twin.stop()
    raise RuntimeError("twin did not become healthy within 20 s")


@pytest.fixture(scope="session")
def twin() -> Iterator[TwinProcess]:
    """One H200 twin (EAGLE 1/1/2, reasoning parser) shared by the HTTP contract tests."""
    t = start_twin("--speculative-algorithm", "EAGLE", "--speculative-num-steps", "1",
                   "--speculative-num-draft-tokens", "2", "--reasoning-parser", "deepseek-v4",
                   "--tool-call-parser", "deepseekv4", "--context-length", "200000")
    yield t
    t.stop()


@pytest.fixture
def shared_traces() -> Path:
    if not SHARED_TRACES.is_dir():
        pytest.skip(f"shared AA traces not found at {SHARED_TRACES}")
    return SHARED_TRACES
