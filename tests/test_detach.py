"""``run --detach`` leaves a headless run behind in its own session (no terminal, SIGHUP ignored,
output in the session folder) and ``attach-ui SESSION`` watches it live until it ends."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import orjson
import psutil

from .test_headless_run import run_cli


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_detached_run_survives_hangups_records_and_attach_ui_follows_it_to_the_end(tmp_path: Path):
    started = run_cli("run", "twin-h200", "--agents", "2", "--duration", "3", "--ramp", "0.5",
                      "--record-dir", str(tmp_path), "--detach", timeout=60)
    assert started.returncode == 0, started.stderr
    pid = int(re.search(r"^detached: PID (\d+)$", started.stdout, re.M).group(1))
    session = Path(re.search(r"^session: (.+)$", started.stdout, re.M).group(1))
    try:
        assert f"agentperf-tui attach-ui {session}" in started.stdout and f"kill -TERM {pid}" in started.stdout
        assert session.parent == tmp_path and session.is_dir()
        # the background run: stdin from /dev/null, output to the session's log, its own session, SIGHUP ignored
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
        assert os.readlink(f"/proc/{pid}/fd/1") == str(session / "detached.log")
        assert os.getsid(pid) == pid != os.getsid(0)
        ignored = int(re.search(r"^SigIgn:\s+([0-9a-f]+)$", Path(f"/proc/{pid}/status").read_text(), re.M).group(1), 16)
        assert ignored & (1 << 0), "SIGHUP (1) must be ignored"
        assert "--headless" in psutil.Process(pid).cmdline()

        watched = run_cli("attach-ui", str(session), "--headless", "--json", timeout=120)
        assert watched.returncode == 0, watched.stderr
        lines = [orjson.loads(line) for line in watched.stdout.strip().splitlines()]
        assert any(line.get("type") == "progress" or "elapsed_s" in line for line in lines[:-1])
        summary = lines[-1]
        assert summary["type"] == "summary" and summary["stop_reason"].startswith("duration 3 s")

        deadline = time.monotonic() + 60
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _gone(pid), "the detached run stops by itself at the end of its duration"
        recorded = orjson.loads((session / "summary.json").read_bytes())
        summary.pop("type")
        assert recorded == summary
        assert {"session.aprec", "summary.json", "detached.log"} <= {p.name for p in session.iterdir()}
        assert f"recorded: {session}" in (session / "detached.log").read_text()
        assert [p for p in tmp_path.iterdir()] == [session]  # the detached copy did not detach again
    finally:
        if not _gone(pid):
            os.kill(pid, 15)


def test_detach_needs_a_recording_and_the_help_says_how_to_watch(tmp_path: Path):
    refused = run_cli("run", "twin-h200", "--detach", "--no-record", "--duration", "3")
    assert refused.returncode == 2 and "--detach records the session" in refused.stderr
    for command in ("run", "search"):
        text = run_cli(command, "--help").stdout
        assert "--detach" in text and "attach-ui" in text and "SIGHUP" in text
        assert "--session-dir" not in text  # internal: the folder the detached copy records into
    text = run_cli("attach-ui", "--help").stdout
    assert "replay SESSION --follow" in text and "printed by --detach" in text
