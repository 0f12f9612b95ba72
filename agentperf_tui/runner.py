"""Wiring: a profile plus run options become a Session (server starter, workload, tiers).

The one place where profile (server/), workload/, telemetry/ and engine/ meet; the CLI front
ends (headless, dashboard, search) all build their session here, so live runs against the twin
and against real SGLang take the same path with only the launch target different.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from agentperf_tui.engine.client import Timeouts
from agentperf_tui.engine.session import FrameSink, RunOptions, ServerHandle, Session
from agentperf_tui.engine.slo import Tier
from agentperf_tui.profile import Profile


def options_from_profile(profile: Profile, **overrides: Any) -> RunOptions:
    """Run options from the profile's [run] and [workload] tables, then explicit overrides."""
    run = profile.run
    options = RunOptions(
        agents=run.agents, duration_s=run.duration_s, frame_hz=run.frame_hz, ramp_s=run.ramp_s,
        seed=profile.workload.seed, policy=profile.workload.policy, salt=profile.workload.salt,
        synthetic_trajectories=profile.workload.trajectories,
        request_settings=profile.workload.request_settings(),
        timeouts=Timeouts(first_byte_s=run.first_byte_timeout_s, chunk_s=run.chunk_timeout_s,
                          total_s=run.request_timeout_s),
    )
    for key, value in overrides.items():
        if value is not None:
            setattr(options, key, value)
    return options


def workload_spec(profile: Profile, options: RunOptions) -> str | None:
    """The workload to load: --workload wins, else the profile's source (relative to the profile)."""
    if options.workload:
        return options.workload
    source = profile.workload.source
    if source in ("", "synthetic"):
        return None
    path = Path(source)
    if not path.is_absolute() and profile.path is not None:
        path = Path(profile.path).parent / path
    return str(path)


def _context_length(info: dict[str, Any]) -> int | None:
    """The server's context length from /server_info (SGLang: ``context_length`` when set at launch,
    always ``max_req_input_len`` = context - 1)."""
    value = info.get("context_length")
    if isinstance(value, int) and value > 0:
        return value
    limit = info.get("max_req_input_len")
    return limit + 1 if isinstance(limit, int) and limit > 0 else None


class ProfileTuner:
    """What the session's Tune controls need from a profile: its knobs, the configuration running,
    a relaunch with other values (same ports, so agents keep their URL), a live change where
    SGLang allows one, and saving a tuned profile (tune.py does the profile editing)."""

    def __init__(self, profile: Profile, relaunch: Any):
        from agentperf_tui import tune

        self.profile = profile
        self.knobs = [{"key": k.key, "flag": k.flag, "values": list(k.values), "roles": list(k.roles),
                       "runtime": k.flag in tune.RUNTIME_SETTABLE} for k in tune.knobs(profile)]
        self.config = tune.current_values(profile)
        self.profile_path = str(profile.path) if profile.path else ""
        self._relaunch = relaunch

    def describe(self, changes: dict[str, str], before: dict[str, str] | None = None) -> str:
        from agentperf_tui import tune

        return tune.describe(changes, before)

    def runtime_only(self, changes: dict[str, str]) -> bool:
        from agentperf_tui import tune

        return tune.runtime_only(self.profile, changes)

    def prepare(self, config: dict[str, str]) -> Profile:
        """The profile a configuration launches (raises ProfileError before anything stops)."""
        from agentperf_tui import tune

        base = tune.current_values(self.profile)
        return tune.with_changes(self.profile, {k: v for k, v in config.items() if base.get(k) != v})

    async def relaunch(self, session: Session, prepared: Profile) -> ServerHandle:
        return await self._relaunch(session, prepared)

    async def set_live(self, session: Session, changes: dict[str, str]) -> None:
        """POST /set_internal_state to every serving process; raises unless each says updated."""
        from agentperf_tui import tune
        from agentperf_tui.server.probe import set_internal_state

        server = session.server
        assert server is not None
        roots = sorted({u.rsplit("/metrics", 1)[0] for _, urls in server.metrics_sources for u in urls}) or [
            server.base_url]
        body = {"server_args": tune.runtime_args(self.profile, changes)}
        for root in roots:
            await set_internal_state(root, body, server.api_key)

    def save(self, config: dict[str, str]) -> Path:
        from agentperf_tui import tune

        base = tune.current_values(self.profile)
        return tune.write_tuned_profile(self.profile, {k: v for k, v in config.items() if base.get(k) != v})


def build_session(profile: Profile, options: RunOptions, sinks: list[FrameSink] | None = None,
                  log_dir: Path | None = None) -> Session:
    from agentperf_tui.workload import load_workload

    tiers = tuple(Tier(t.name, t.output_tps, t.ttft_s) for t in profile.tiers)
    spec = workload_spec(profile, options)
    launched = {"profile": profile, "ports": None}  # what the server runs with now (a retune changes it)

    def load() -> Any:
        return load_workload(spec, seed=options.seed, synthetic_count=options.synthetic_trajectories)

    async def relaunch(session: Session, tuned: Profile) -> ServerHandle:
        port, dcgm_port = launched["ports"] or (0, 0)
        launched["profile"] = replace(tuned, server=replace(tuned.server, port=port or tuned.server.port,
                                                           dcgm_port=dcgm_port or tuned.server.dcgm_port))
        return await start_server(session)

    async def start_server(session: Session) -> ServerHandle:
        from agentperf_tui.server.probe import get_server_info, server_fingerprint
        from agentperf_tui.server.supervisor import Supervisor

        profile = launched["profile"]
        supervisor = Supervisor(profile, log_dir=log_dir, on_log=session.on_server_log,
                                on_exit=session.on_server_exit, on_progress=session.event)
        try:
            await supervisor.start()
        except BaseException:
            await supervisor.stop()
            raise
        base_url = supervisor.base_url
        launched["ports"] = (supervisor.port, supervisor.dcgm_port)  # a relaunch keeps them
        try:
            info = await get_server_info(base_url, supervisor.api_key)
        except Exception as exc:  # a server without /server_info still runs
            session.event(f"/server_info unavailable: {exc}")
            info = {}
        telemetry = profile.telemetry
        dcgm_urls = [supervisor.resolve(u) for u in telemetry.dcgm_urls]
        node_urls = [supervisor.resolve(u) for u in telemetry.node_power_urls]
        rack_urls = [supervisor.resolve(u) for u in telemetry.rack_power_urls]
        api_key = supervisor.api_key
        # each worker named by its rank-0 URL (the label that tells workers apart when merged)
        metrics_sources = [(resolved[0], resolved) for resolved in ([supervisor.resolve(u) for u in urls]
                                                                     for urls in telemetry.sglang_metrics_urls)]
        return ServerHandle(
            base_url=base_url, model=profile.server.model, gpus=profile.server.gpus, dcgm_urls=dcgm_urls,
            metrics_url=base_url.rstrip("/") + "/metrics" if telemetry.sglang_metrics else None,
            use_nvml=telemetry.nvml, boundary=telemetry.power_boundary, stop=supervisor.stop,
            pids=lambda: list(supervisor.pids), version=str(info.get("version", "")),
            fingerprint=server_fingerprint(info) if info else "", api_key=api_key,
            # launched as the twin, or attached to one (its /server_info carries a "twin" block)
            twin=any("agentperf_tui.twin" in arg for proc in profile.server.processes for arg in proc.argv)
            or isinstance(info.get("twin"), dict),
            launch_argv=[list(proc.argv) for proc in profile.server.processes],
            routing_key_header=profile.server.routing_key_header,
            context_length=_context_length(info),
            server_args={k: v for k, v in info.items() if not isinstance(v, dict | list)}
            if isinstance(info, dict) else {},
            node_power_urls=node_urls, rack_power_urls=rack_urls,
            redfish_user_env=telemetry.redfish_user_env, redfish_password_env=telemetry.redfish_password_env,
            metrics_sources=metrics_sources if telemetry.sglang_metrics else [],
            twin_tokens=str(twin_info.get("tokens") or "") if isinstance(twin_info := info.get("twin"), dict) else "")

    tuner = ProfileTuner(profile, relaunch) if profile.tune and profile.server.mode == "launch" else None
    return Session(profile_name=profile.name, options=options, tiers=tiers, workload_loader=load,
                   server_starter=start_server, sinks=sinks, tuner=tuner)
