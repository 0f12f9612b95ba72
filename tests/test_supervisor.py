"""Supervisor: launches through local/srun/ssh, reports crashes fast, stops whole process groups,
never touches an attached server; probe helpers against a stand-in server; no shell=True anywhere."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from agentperf_tui.profile import Profile, load_profile, parse_profile
from agentperf_tui.server import supervisor as supervisor_module
from agentperf_tui.server.probe import (
    ServerNotReady,
    flush_cache,
    get_server_info,
    server_fingerprint,
    wait_ready,
)
from agentperf_tui.server.supervisor import ServerExited, Supervisor, free_port

REPO = Path(__file__).resolve().parents[1]
FAKEBIN = REPO / "tests" / "fakebin"
FAKE = str(FAKEBIN / "fake_sglang.py")


def fake_env(tmp_path: Path) -> dict[str, str]:
    """PATH with the fake srun/ssh first (and this venv's python3 for their shebang)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(FAKEBIN), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["FAKE_LAUNCH_LOG"] = str(tmp_path / "launches.jsonl")
    return env


# a PD router stand-in: the fake server, given every worker's URL as sglang_router/smg would be
FAKE_ROUTER = f"""[[server.processes]]
name = "router"
role = "router"
argv = ["{{python}}", "{FAKE}", "--host", "{{host}}", "--port", "{{port}}",
        "--prefill", "{{prefill_urls}}", "--decode", "{{decode_urls}}"]
"""


def profile_text(processes: str, server: str = "", stop_timeout_s: float = 3.0) -> str:
    return f"""
[profile]
name = "test"
description = "supervisor test"
[server]
ready_timeout_s = 10.0
stop_timeout_s = {stop_timeout_s}
{server}
{processes}
"""


def local_server(*extra: str) -> str:
    args = ", ".join(
        json.dumps(a) for a in ["{python}", FAKE, "--host", "{host}", "--port", "{port}", *extra]
    )
    return f'[[server.processes]]\nname = "srv"\nargv = [{args}]\n'


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


class Recorder:
    def __init__(self) -> None:
        self.logs: list[tuple[str, str]] = []
        self.exits: list[tuple[str, int | None, list[str], float]] = []
        self.progress: list[str] = []
        self.exited = asyncio.Event()

    def on_log(self, name: str, line: str) -> None:
        self.logs.append((name, line))

    def on_exit(self, name: str, rc: int | None, lines: list[str]) -> None:
        self.exits.append((name, rc, lines, time.monotonic()))
        self.exited.set()

    def supervisor(self, profile: Profile, tmp_path: Path, **kw) -> Supervisor:
        return Supervisor(
            profile,
            log_dir=tmp_path / "logs",
            on_log=self.on_log,
            on_exit=self.on_exit,
            on_progress=self.progress.append,
            env=fake_env(tmp_path),
            **kw,
        )


async def test_local_server_ready_logged_and_stopped(tmp_path: Path) -> None:
    rec = Recorder()
    sup = rec.supervisor(parse_profile(profile_text(local_server("--spawn-child"))), tmp_path)
    try:
        await sup.start()
        assert sup.port > 0 and sup.base_url == f"http://127.0.0.1:{sup.port}"
        [pid] = sup.pids
        info = await get_server_info(sup.base_url)
        assert info["pid"] == pid and info["argv"][:4] == ["--host", "127.0.0.1", "--port", str(sup.port)]
        assert ("srv", "The server is fired up and ready to roll!") in rec.logs
    finally:
        await sup.stop()
    assert group_gone(pid)
    assert rec.exits == []  # an expected stop is not a crash
    log = (tmp_path / "logs" / "srv.log").read_text()
    assert "fired up" in log and "exited with code" in log
    assert sup.pids == []
    await sup.stop()  # idempotent


async def test_sigkill_of_server_is_reported_within_2s_with_last_lines(tmp_path: Path) -> None:
    rec = Recorder()
    sup = rec.supervisor(parse_profile(profile_text(local_server())), tmp_path)
    try:
        await sup.start()
        [pid] = sup.pids
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(rec.exited.wait(), timeout=2.0)
        name, rc, lines, when = rec.exits[0]
        assert (name, rc) == ("srv", -9)
        assert when - killed_at < 2.0
        assert any("fired up" in line for line in lines) and len(lines) <= 20
        assert sup.pids == []
    finally:
        await sup.stop()
    assert len(rec.exits) == 1


async def test_stop_sigkills_a_group_that_ignores_sigterm(tmp_path: Path) -> None:
    rec = Recorder()
    text = profile_text(
        local_server("--ignore-sigterm", "--spawn-child", "--child-ignores-sigterm"), stop_timeout_s=0.5
    )
    sup = rec.supervisor(parse_profile(text), tmp_path)
    await sup.start()
    [pid] = sup.pids
    child_pid = (await get_server_info(sup.base_url))["child_pid"]
    assert os.getpgid(child_pid) == pid  # the child is in the server's group
    t0 = time.monotonic()
    await sup.stop()
    assert time.monotonic() - t0 < 3.0
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert rec.exits == []
    assert any("SIGKILL" in m for m in rec.progress)


async def test_exit_during_start_raises_with_code_and_output(tmp_path: Path) -> None:
    text = profile_text(
        '[[server.processes]]\nname = "srv"\n'
        'argv = ["{python}", "-c", "import sys; print(\'boom: bad flag\'); sys.exit(3)"]\n'
    )
    rec = Recorder()
    sup = rec.supervisor(parse_profile(text), tmp_path)
    with pytest.raises(ServerExited, match=r"srv exited with code 3 while starting: boom: bad flag"):
        await sup.start()
    await sup.stop()
    assert rec.exits[0][:2] == ("srv", 3)


async def test_missing_executable_is_a_clear_error(tmp_path: Path) -> None:
    text = profile_text('[[server.processes]]\nname = "srv"\nargv = ["/nonexistent/sglang-binary"]\n')
    sup = Recorder().supervisor(parse_profile(text), tmp_path)
    with pytest.raises(ServerExited, match="cannot start '/nonexistent/sglang-binary'"):
        await sup.start()
    await sup.stop()


async def test_srun_and_ssh_launchers_with_router(tmp_path: Path) -> None:
    """Workers via the fake srun and ssh, a local router: argv, env and quoting all arrive intact."""
    p1, d1 = free_port(), free_port()
    worker = '"{python}", "%s", "--host", "127.0.0.1", "--port", "%d", "--echo-env", "ROLE_ENV", "--note", "it\'s a b"'
    processes = f"""
[[server.processes]]
name = "prefill1"
role = "prefill"
launcher = "srun"
node = "tray01"
host = "127.0.0.1"
port = {p1}
srun_args = ["--nodes=1", "--ntasks=1", "--gpus-per-node=4"]
argv = [{worker % (FAKE, p1)}]
env = {{ ROLE_ENV = "prefill-env" }}

[[server.processes]]
name = "decode1"
role = "decode"
launcher = "ssh"
node = "tray09"
host = "127.0.0.1"
port = {d1}
ssh_args = ["-o", "BatchMode=yes"]
argv = [{worker % (FAKE, d1)}]
env = {{ ROLE_ENV = "decode env; $HOME" }}

{FAKE_ROUTER}"""
    rec = Recorder()
    sup = rec.supervisor(parse_profile(profile_text(processes)), tmp_path)
    try:
        await sup.start()
        assert len(sup.pids) == 3
        launches = [json.loads(line) for line in (tmp_path / "launches.jsonl").read_text().splitlines()]
        srun = next(a for a in launches if a[0] == "srun")
        assert srun[1:6] == [
            "--nodes=1",
            "--ntasks=1",
            "--gpus-per-node=4",
            "--nodelist=tray01",
            "--job-name=agentperf-prefill1",
        ]
        assert srun[6] == "--export=ALL,ROLE_ENV=prefill-env"
        ssh = next(a for a in launches if a[0] == "ssh")
        assert ssh[1:5] == ["-o", "BatchMode=yes", "tray09", "--"]
        pinfo = await get_server_info(f"http://127.0.0.1:{p1}")
        dinfo = await get_server_info(f"http://127.0.0.1:{d1}")
        assert pinfo["env"] == {"ROLE_ENV": "prefill-env"}
        assert dinfo["env"] == {"ROLE_ENV": "decode env; $HOME"}  # through the remote shell, unexpanded
        assert dinfo["extra"] == ["--note", "it's a b"]
        rinfo = await get_server_info(sup.base_url)
        assert rinfo["extra"] == ["--prefill", f"http://127.0.0.1:{p1}", "--decode", f"http://127.0.0.1:{d1}"]
        pids = list(sup.pids)
    finally:
        await sup.stop()
    assert all(group_gone(p) for p in pids)
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "decode1.log",
        "prefill1.log",
        "router.log",
    ]


async def test_router_starts_only_after_every_worker_is_ready(tmp_path: Path) -> None:
    """A slow-loading worker (503 for 1 s): the router is spawned after it answers, never before."""
    p1, d1 = free_port(), free_port()
    processes = f"""
[[server.processes]]
name = "prefill1"
role = "prefill"
host = "127.0.0.1"
port = {p1}
argv = ["{{python}}", "{FAKE}", "--host", "127.0.0.1", "--port", "{p1}", "--health-delay", "1.0"]

[[server.processes]]
name = "decode1"
role = "decode"
host = "127.0.0.1"
port = {d1}
argv = ["{{python}}", "{FAKE}", "--host", "127.0.0.1", "--port", "{d1}"]

{FAKE_ROUTER}"""
    rec = Recorder()
    sup = rec.supervisor(parse_profile(profile_text(processes)), tmp_path)
    try:
        await sup.start()
        started = [i for i, line in enumerate(rec.progress) if line.startswith("started ")]
        ready = rec.progress.index("all 2 workers ready")
        router = next(i for i, line in enumerate(rec.progress) if line.startswith("started router"))
        assert len(started) == 3 and ready < router
        assert any("503" in line for line in rec.progress if line.startswith(f"http://127.0.0.1:{p1}"))
    finally:
        await sup.stop()


async def test_router_module_missing_is_refused_before_anything_starts(tmp_path: Path) -> None:
    processes = '''
[[server.processes]]
name = "router"
role = "router"
argv = ["{python}", "-m", "smg_not_installed_here.launch_router", "--port", "{port}"]
'''
    rec = Recorder()
    sup = rec.supervisor(parse_profile(profile_text(processes)), tmp_path)
    with pytest.raises(ServerExited, match="router: module 'smg_not_installed_here.launch_router' is not installed"):
        await sup.start()
    assert not sup.pids and not any(line.startswith("started ") for line in rec.progress)


async def test_attach_only_probes_and_never_signals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, FAKE, "--port", str(port)], stdout=subprocess.DEVNULL, start_new_session=True
    )
    signals: list[tuple[int, int]] = []
    try:
        text = f'[server]\nmode = "attach"\nurl = "http://127.0.0.1:{port}"\nready_timeout_s = 10\n'
        rec = Recorder()
        sup = rec.supervisor(parse_profile(text), tmp_path)
        monkeypatch.setattr(os, "killpg", lambda pgid, sig: signals.append((pgid, sig)))
        monkeypatch.setattr(os, "kill", lambda pid, sig: signals.append((pid, sig)))
        await sup.start()
        assert sup.base_url == f"http://127.0.0.1:{port}" and sup.pids == []
        await sup.stop()
        sup.kill_all_now()
        supervisor_module.kill_all_now()
        monkeypatch.undo()
        assert signals == []
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


async def test_kill_all_now_is_synchronous_last_resort(tmp_path: Path) -> None:
    sup = Recorder().supervisor(parse_profile(profile_text(local_server("--spawn-child"))), tmp_path)
    await sup.start()
    [pid] = sup.pids
    supervisor_module.kill_all_now()  # what the atexit hook runs
    deadline = time.monotonic() + 2.0
    while not group_gone(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert group_gone(pid)
    await sup.stop()


# -- probe ------------------------------------------------------------------------------------------


async def test_wait_ready_times_out_with_last_error_and_progress() -> None:
    port = free_port()
    messages: list[str] = []
    t0 = time.monotonic()
    with pytest.raises(ServerNotReady, match=r"/health_generate -> connection refused"):
        await wait_ready(f"http://127.0.0.1:{port}", "m", 0.6, messages.append, progress_every_s=0.25)
    assert time.monotonic() - t0 < 1.5
    assert len(messages) >= 2
    assert messages[0].startswith("waiting for server: /health_generate -> connection refused (0 s / 1 s)")


async def test_wait_ready_waits_for_health_then_accepts_single_other_model(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, FAKE, "--port", str(port), "--model", "served-name", "--health-delay", "0.5"],
        stdout=subprocess.DEVNULL,
    )
    try:
        messages: list[str] = []
        served = await wait_ready(
            f"http://127.0.0.1:{port}", "deepseek-ai/DeepSeek-V4-Pro", 10, messages.append
        )
        assert served == "served-name"
        assert any("only one served" in m for m in messages)
        ok, msg = await flush_cache(f"http://127.0.0.1:{port}")
        assert ok and "flushed" in msg
    finally:
        proc.kill()
        proc.wait()


async def test_get_server_info_falls_back_and_fingerprint_ignores_ports() -> None:
    from aiohttp import web

    async def legacy(_request: web.Request) -> web.Response:
        return web.json_response({"tp_size": 8, "port": 1, "internal_states": [{"x": 1}]})

    app = web.Application()
    app.router.add_get("/get_server_info", legacy)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        info = await get_server_info(f"http://127.0.0.1:{port}")
        assert info["tp_size"] == 8
    finally:
        await runner.cleanup()
    fp = server_fingerprint(info)
    assert len(fp) == 12
    assert fp == server_fingerprint({"internal_states": [], "port": 2, "tp_size": 8})
    assert fp != server_fingerprint({"tp_size": 4})
    # per-launch values of real SGLang do not split identical configurations
    assert server_fingerprint({"tp_size": 8, "random_seed": 1, "startup_time": 10.0}) == server_fingerprint(
        {"tp_size": 8, "random_seed": 987654, "startup_time": 99.0})
    ok, msg = await flush_cache(f"http://127.0.0.1:{port}")
    assert not ok and "connection refused" in msg
    with pytest.raises(Exception, match="no server info"):
        await get_server_info(f"http://127.0.0.1:{port}")


# -- the real twin ------------------------------------------------------------------------------------


def twin_available() -> bool:
    try:
        return importlib.util.find_spec("agentperf_tui.twin.__main__") is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.skipif(not twin_available(), reason="agentperf_tui.twin not written yet")
@pytest.mark.parametrize("name", ["twin-h200", "twin-gb300-nvl72"])
async def test_twin_profile_starts_answers_and_stops(tmp_path: Path, name: str) -> None:
    rec = Recorder()
    profile = load_profile(name)
    sup = rec.supervisor(profile, tmp_path)
    try:
        await sup.start()
        assert sup.dcgm_port > 0 and sup.port > 0
        info = await get_server_info(sup.base_url)
        assert info.get("tp") == 8 or info.get("tp_size") == 8
        assert info.get("total_gpus", profile.server.gpus) == profile.server.gpus
        assert len(server_fingerprint(info)) == 12
        dcgm_url = sup.resolve(profile.telemetry.dcgm_urls[0])
        assert dcgm_url == f"http://127.0.0.1:{sup.dcgm_port}/metrics"
        async with aiohttp.ClientSession() as s, s.get(dcgm_url) as r:
            assert r.status == 200 and "DCGM_FI_DEV_POWER_USAGE" in await r.text()
        ok, _msg = await flush_cache(sup.base_url)
        assert ok
        [pid] = sup.pids
    finally:
        await sup.stop()
    assert group_gone(pid)
    assert rec.exits == []


# -- hygiene -------------------------------------------------------------------------------------------


def test_no_shell_true_anywhere_in_the_package() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "agentperf_tui").rglob("*.py")
        if "shell=True" in p.read_text(encoding="utf-8").replace(" ", "")
    ]
    assert offenders == []
