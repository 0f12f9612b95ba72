"""Command line: ``agentperf-tui run | search | replay | attach-ui | compare | report | twin | profiles | launch-plan``.

Each sub-command parses its own flags and hands over to the package that does the work; this
module only chooses the front end (dashboard when stdout is a terminal, headless otherwise),
maps bad input to exit code 2 with one clear message, and signals to exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

from agentperf_tui import __version__
from agentperf_tui.tui.pacing import DEFAULT_UI_BUDGET

DEFAULT_PROFILE = "twin-h200"
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


class UsageError(Exception):
    """Bad input from the operator: printed as one line, exit code 2."""


def _twin(argv: list[str]) -> int:
    from agentperf_tui.twin.__main__ import main as twin_main

    return twin_main(argv)


def _prometheus_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prometheus-port", type=int, default=None, metavar="PORT",
                   help="serve the run's own metrics (agents, per-tier P25 speed / P95 TTFT / verdict, tokens/s, "
                        "power, agents/MW, validity) as Prometheus text on PORT (0: any free port)")
    p.add_argument("--prometheus-addr", default="127.0.0.1", metavar="ADDR",
                   help="address for --prometheus-port (default 127.0.0.1, loopback only)")


def _attach_arguments(p: argparse.ArgumentParser, with_url: bool = True) -> None:
    """--url/--model/--api-key-env/--ready-timeout: point a profile at a server that already runs."""
    if with_url:
        p.add_argument("--url", default=None,
                       help="attach to the server at URL instead of launching the profile's (a root or .../v1)")
    p.add_argument("--model", default=None, help="model id to request (default: the profile's)")
    p.add_argument("--api-key-env", default=None, metavar="VAR",
                   help="NAME of the environment variable holding the API key (attached with none named: "
                        "$SGLANG_API_KEY, then $OPENAI_API_KEY)")
    p.add_argument("--ready-timeout", type=float, default=None, metavar="S",
                   help="seconds to wait for an attached server to answer (default: the profile's, 60 when it "
                        "launches)")


UI_BUDGET_HELP = ("the dashboard's CPU budget in %% of one core (default %(default)s): while repainting at --fps "
                  "would cost more, it repaints less often and its header says so; a key press repaints at "
                  "--fps for 3 s; 0 = always --fps. Frames, recordings and headless output are not affected")


def percent_of_core(text: str) -> float:
    """``--ui-budget 3`` -> 0.03 (a share of one core)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (percent of one core)") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text}: must be 0 to 100 (percent of one core)")
    return value / 100.0


def _ui_budget_argument(p: argparse.ArgumentParser) -> None:
    """``--ui-budget PCT``, the same on every command that opens the dashboard."""
    p.add_argument("--ui-budget", type=percent_of_core, metavar="PCT", default=f"{DEFAULT_UI_BUDGET * 100:g}",
                   help=UI_BUDGET_HELP)


RAY_HELP = ("run the worker shards as Ray actors over a Ray cluster's hosts (host:port of `ray start --head`, "
            "'auto' or 'local'; needs pip install -e '.[ray]'; docs/scale.md)")


def _run_arguments(run: argparse.ArgumentParser, profile_help: str = "") -> None:
    """The arguments of ``run`` (and ``attach``, whose URL comes first)."""
    if profile_help:
        run.add_argument("--profile", dest="profile", default="attach-example", help=profile_help)
    else:
        run.add_argument("profile", nargs="?", default=DEFAULT_PROFILE,
                         help=f"profile name in profiles/ or a path to a TOML file (default {DEFAULT_PROFILE})")
    run.add_argument("--headless", action="store_true",
                     help="no dashboard: progress lines on stdout (automatic when stdout is not a terminal). "
                          "SIGINT/SIGTERM/SIGHUP stop it cleanly with a summary; started under nohup, SIGHUP is "
                          "ignored, so `nohup agentperf-tui run ... &` survives a dropped SSH connection "
                          "(watch it with `replay --follow SESSION`)")
    run.add_argument("--agents", type=int, default=None, help="concurrent agents (default: the profile's)")
    run.add_argument("--duration", type=float, default=None,
                     help="seconds of load (default: the profile's headless, until quit in the dashboard)")
    run.add_argument("--workload", default=None,
                     help="AA manifest (.json), AA trace or OpenAI-messages JSONL, or 'synthetic'")
    run.add_argument("--json", action="store_true", help="headless: JSONL progress, summary as the last line")
    run.add_argument("--summary", type=Path, default=None, help="also write the summary JSON here")
    run.add_argument("--fps", type=float, default=None, help="frames per second (default: the profile's, 4)")
    _ui_budget_argument(run)
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--policy", choices=("exact", "free"), default=None)
    run.add_argument("--ramp", type=float, default=None, help="seconds over which new agents start")
    run.add_argument("--settle", type=float, default=None,
                     help="seconds after every agent started before the summary's steady window opens "
                          "(default 30, AA's rule)")
    run.add_argument("--warm-start", action="store_true", default=None,
                     help="agents join their first trajectory at a random turn (skip the short-context start)")
    run.add_argument("--workers", type=int, default=None,
                     help="agent worker processes (default: automatic from the target and loop lag; 0 = in-process)")
    run.add_argument("--ray", metavar="ADDRESS", default=None, help=RAY_HELP)

    run.add_argument("--no-record", action="store_true", help="do not record the session")
    run.add_argument("--record-dir", type=Path, default=None,
                     help="where sessions are recorded (default ./recordings)")
    _detach_arguments(run)
    _attach_arguments(run, with_url=not profile_help)
    _prometheus_arguments(run)


def _detach_arguments(p: argparse.ArgumentParser) -> None:
    """--detach (and the hidden --session-dir the detached copy records into)."""
    p.add_argument("--detach", action="store_true",
                   help="start the same command headless in the background (its own session, stdin from "
                        "/dev/null, output to detached.log in the session folder, SIGHUP ignored: it survives "
                        "a dropped SSH connection), print its PID, session folder and the attach-ui command to "
                        "watch it, and return at once; stop it with kill -TERM PID")
    p.add_argument("--session-dir", type=Path, default=None, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentperf-tui",
        description="How many AI agents can this machine serve, and at what power? (AA-AgentPerf style)",
    )
    parser.add_argument("--version", action="version", version=f"agentperf-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="start the profile's server and run agents (dashboard or headless)")
    _run_arguments(run)
    attach = sub.add_parser("attach", help="attach to a server that already runs at URL and run agents (nothing is launched)")
    attach.add_argument("url", help="the server root or its OpenAI base URL, e.g. http://127.0.0.1:30000 or .../v1")
    _run_arguments(attach, profile_help="profile whose workload, tiers and run settings to use (default attach-example)")

    search = sub.add_parser(
        "search", help="auto-find the largest agent count per SLO tier (agents/GPU, /MW)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Runs phases at agent counts (doubling, then bisecting) until every tier's largest passing "
                    "count is found.\n\n"
                    "  quick    an ESTIMATE: 5 s settle, looks at 20/40/80 s, verdicts at 95 % confidence over the\n"
                    "           looks; minutes per tier. Good for tuning, not for publishing.\n"
                    "  certify  AA-AgentPerf's rules: 30 s settle, >= 600 s per phase, >= 30 trajectories and\n"
                    "           >= 3 per agent, the point rule; hours. What to compare with AA's results.\n\n"
                    "Exit codes: 0 finished, 2 bad input or server not ready, 3 stopped or a tier unresolved.")
    search.add_argument("profile", nargs="?", default=DEFAULT_PROFILE,
                        help=f"profile name in profiles/ or a path to a TOML file (default {DEFAULT_PROFILE})")
    search.add_argument("--headless", action="store_true", help="no dashboard: progress lines on stdout")
    _ui_budget_argument(search)
    search.add_argument("--json", action="store_true", help="JSONL progress and events; the report is the last line")
    search.add_argument("--mode", choices=("quick", "certify"), default="quick",
                        help="quick: an estimate in minutes; certify: AA's rules, hours (see above)")
    search.add_argument("--tiers", default=None, help="comma-separated tier names to search (default all)")
    search.add_argument("--report", type=Path, default=None, help="also write the report JSON here")
    search.add_argument("--start", type=int, default=None, help="first agent count (default 8)")
    search.add_argument("--phase", type=float, default=None,
                        help="quick: seconds of the first look (later looks at 2x, 4x); makes the mode 'custom'")
    search.add_argument("--max-phase", type=float, default=None,
                        help="seconds: quick's last look / certify's cap while waiting for AA's minimums ('custom')")
    search.add_argument("--settle", type=float, default=None,
                        help="seconds after every agent started before counting (makes the mode 'custom')")
    search.add_argument("--require-reconciled", action="store_true", default=None,
                        help="a phase whose client and server counts (tokens, requests, TTFT) do not agree, or "
                             "whose server metrics are missing, is invalid (see docs/measurement.md)")
    search.add_argument("--workload", default=None,
                        help="AA manifest (.json), a trace (.jsonl: AA, MLPerf agentic, AgentX, mooncake, OpenAI "
                             "messages) or 'synthetic'")
    search.add_argument("--warm-start", action="store_true", default=None,
                        help="agents join their first trajectory at a random turn, so short phases see "
                             "steady-state contexts (quick estimates; AA's own runs start at turn 1)")
    search.add_argument("--workers", type=int, default=None,
                        help="agent worker processes (default: automatic; 0 = in-process)")
    search.add_argument("--ray", metavar="ADDRESS", default=None, help=RAY_HELP)
    search.add_argument("--no-record", action="store_true", help="do not record the session")
    search.add_argument("--record-dir", type=Path, default=None,
                        help="where sessions are recorded (default ./recordings)")
    _detach_arguments(search)
    _attach_arguments(search)
    _prometheus_arguments(search)

    replay = sub.add_parser("replay", help="replay a recorded session in the dashboard (or headless)")
    replay.add_argument("session", help="a recordings/<session> folder or its session.aprec file")
    replay.add_argument("--headless", action="store_true", help="no dashboard: print the recorded run's lines")
    replay.add_argument("--json", action="store_true", help="headless: JSONL frames, the summary last")
    replay.add_argument("--follow", action="store_true", help="keep up with a session still being written")
    replay.add_argument("--speed", type=float, default=1.0, help="0.5 .. 16; 0 = as fast as possible")
    _ui_budget_argument(replay)

    attach_ui = sub.add_parser(
        "attach-ui", help="watch a run being recorded (e.g. one started with --detach): the dashboard at its "
                          "live edge, as replay SESSION --follow; q leaves it running",
        description="Watch a run or search that is being recorded - one started with --detach, or under nohup - "
                    "as replay SESSION --follow does: the dashboard joins at the live edge and follows until the "
                    "run ends; quitting it (q) leaves the run running. Waits up to a minute for a run that has "
                    "only just started to write its recording.")
    attach_ui.add_argument("session", help="the run's recordings/<session> folder (printed by --detach)")
    attach_ui.add_argument("--headless", action="store_true", help="no dashboard: print its progress lines")
    attach_ui.add_argument("--json", action="store_true", help="headless: JSONL frames, the summary last")

    compare = sub.add_parser("compare", help="two sessions side by side")
    compare.add_argument("a", help="the first session (a recordings/<session> folder or its .aprec file)")
    compare.add_argument("b", help="the second session")

    export = sub.add_parser("export", help="write a recorded session in AIPerf 0.13's layout (and plain CSV)")
    export.add_argument("session", help="a recordings/<session> folder or its session.aprec file")
    export.add_argument("--format", choices=("aiperf",), default="aiperf",
                        help="aiperf: profile_export.jsonl + profile_export_aiperf.json/.csv per run (the whole "
                             "session, and each valid search phase), plus requests.csv and phases.csv")
    export.add_argument("--output", type=Path, required=True, help="folder to write (created if missing)")

    from agentperf_tui.sweep import add_parser as add_sweep_parser

    add_sweep_parser(sub, DEFAULT_PROFILE)
    report = sub.add_parser("report", help="rebuild a search report from a recording")
    report.add_argument("session", help="a recordings/<session> folder holding a search")
    report.add_argument("--out", type=Path, default=None, help="folder for the report (default: the session)")

    sub.add_parser("twin", help="start the digital twin of SGLang serving DeepSeek V4 Pro (SGLang flags)",
                   add_help=False)
    sub.add_parser("profiles", help="list profiles with a one-line description")
    plan = sub.add_parser("launch-plan", help="print every command a profile would run, without running it")
    plan.add_argument("profile", help="profile name in profiles/ or a path to a TOML file")
    return parser


def _load_profile(name: str, args: argparse.Namespace | None = None) -> Any:
    """The profile by name or path; with ``--url`` (or ``attach URL``) pointed at that server instead."""
    import dataclasses

    from agentperf_tui.profile import ProfileError, attached, load_profile

    try:
        profile = load_profile(name)
        url = getattr(args, "url", None)
        if url:
            profile = attached(profile, url, model=args.model, api_key_env=args.api_key_env,
                               ready_timeout_s=args.ready_timeout)
            if args.command == "attach":
                profile = dataclasses.replace(profile, name="attach", description=f"attached to {profile.server.url}")
        elif args is not None and (getattr(args, "model", None) or getattr(args, "api_key_env", None)
                                   or getattr(args, "ready_timeout", None)):
            raise UsageError("--model, --api-key-env and --ready-timeout go with --url "
                             "(or set them in the profile's [server])")
        return profile
    except ProfileError as exc:
        raise UsageError(str(exc)) from exc


def cmd_profiles() -> int:
    from agentperf_tui.profile import list_profiles, profiles_dir

    for name, description, _path in list_profiles(profiles_dir()):
        print(f"{name:24s} {description}")
    return 0


def cmd_launch_plan(args: argparse.Namespace) -> int:
    from agentperf_tui.server.launch_plan import build_launch_plan, format_launch_plan

    profile = _load_profile(args.profile)
    if profile.server.mode == "attach":
        print(f"# attach mode: nothing is launched; probing {profile.server.url}")
        return 0
    print(format_launch_plan(build_launch_plan(profile)))
    return 0


def _ray_address(args: argparse.Namespace) -> str | None:
    """--ray's address, once Ray is known to be installed (it is an optional extra)."""
    if args.ray is None:
        return None
    import importlib.util

    if not args.ray.strip():
        raise UsageError("--ray: give the cluster's address (host:port of `ray start --head`, 'auto' or 'local')")
    if importlib.util.find_spec("ray") is None:
        raise UsageError("--ray needs Ray on this host: pip install -e '.[ray]'")
    if args.workers == 0:
        raise UsageError("--ray with --workers 0: every agent would stay in this process "
                         "(give --workers N or leave it out)")
    return args.ray.strip()


def cmd_run(args: argparse.Namespace) -> int:
    from agentperf_tui.runner import options_from_profile
    from agentperf_tui.workload import WorkloadError

    profile = _load_profile(args.profile, args)
    headless = args.headless or args.json or args.detach or not sys.stdout.isatty()
    duration = args.duration
    if duration is None and not headless:
        duration = 0.0  # the dashboard runs until the operator quits
    options = options_from_profile(profile, agents=args.agents, duration_s=duration, workload=args.workload,
                                   frame_hz=args.fps, seed=args.seed, policy=args.policy, ramp_s=args.ramp,
                                   workers=args.workers, warm_start=args.warm_start, settle_s=args.settle,
                                   ray_address=_ray_address(args))
    if options.settle_s < 0:
        raise UsageError(f"--settle {options.settle_s:g}: must be >= 0")
    if args.duration is not None and args.duration < 0:
        raise UsageError(f"--duration {args.duration:g}: must be > 0 seconds")
    if headless and options.duration_s is not None and options.duration_s <= 0:
        raise UsageError(f"--duration {options.duration_s:g}: a headless run needs a length > 0 s "
                         "(only the dashboard runs until quit)")
    if options.agents < 0 or (headless and options.agents == 0):
        raise UsageError(f"--agents {options.agents}: must be >= 1" + ("" if headless else " (or 0 in the dashboard)"))
    if options.workers is not None and not 0 <= options.workers <= 31:
        raise UsageError(f"--workers {options.workers}: must be 0 (in-process) to 31")
    if args.workload and args.workload != "synthetic" and not Path(args.workload).exists():
        raise UsageError(f"--workload {args.workload}: file not found")
    if args.workload == "synthetic":
        options.workload = None
    if args.detach and args.session_dir is None:  # (the detached copy itself never detaches again)
        return _detach(args, profile)
    try:
        if headless:
            return _run_headless(profile, options, args)
        return _run_dashboard(profile, options, args)
    except WorkloadError as exc:
        raise UsageError(str(exc)) from exc


def _write_summary(path: Path | None, summary: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))


def _start_recording(profile: Any, options: Any, args: argparse.Namespace) -> Any:
    """A SessionRecorder in a new session folder, or None with --no-record."""
    if getattr(args, "no_record", False):
        return None
    from agentperf_tui.record.writer import SessionRecorder, new_session_dir
    from agentperf_tui.server.launch_plan import build_launch_plan, format_launch_plan

    root = args.record_dir or Path("recordings")
    directory = getattr(args, "session_dir", None) or new_session_dir(root, profile.name)
    commands = "" if profile.server.mode == "attach" else format_launch_plan(build_launch_plan(profile))
    header = {"profile": profile.name, "profile_path": str(profile.path or ""), "server_commands": commands,
              "server_mode": profile.server.mode, "gpus": profile.server.gpus,
              "tiers": [{"name": t.name, "output_tps": t.output_tps, "ttft_s": t.ttft_s} for t in profile.tiers],
              "agents": options.agents, "workload": options.workload or profile.workload.source}
    options.recording = str(directory)
    return SessionRecorder(directory, header)


def _attach_sinks(session: Any, recorder: Any, args: argparse.Namespace) -> Any:
    """The recorder's sinks, and the Prometheus exporter with --prometheus-port (returned, or None)."""
    if recorder is not None:
        session.sinks.append(recorder.on_frame)
        session.record_sinks.append(recorder.on_record)
        session.phase_sinks.append(recorder.on_phase)
    port = getattr(args, "prometheus_port", None)
    if port is None:
        return None
    from agentperf_tui.prometheus import PrometheusExporter

    try:
        exporter = PrometheusExporter(port, args.prometheus_addr)
    except OSError as exc:
        if recorder is not None:
            recorder.close()
        raise UsageError(f"--prometheus-port {port}: cannot listen on {args.prometheus_addr}:{port}: "
                         f"{exc.strerror or exc}") from exc
    session.sinks.append(exporter.on_frame)
    print(f"prometheus: the run's metrics at {exporter.url}", file=sys.stderr)
    return exporter


def _finish_recording(recorder: Any, summary: dict[str, Any] | None, exporter: Any = None) -> None:
    if exporter is not None:
        exporter.close()
    if recorder is None:
        return
    if summary is not None:
        recorder.write_summary(summary)
        fd = os.open(recorder.directory / "summary.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as f:
            f.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    recorder.close()


def _run_async_with_signals(session: Any) -> tuple[dict[str, Any], list[int]]:
    """Run a session on this thread; SIGINT/SIGTERM/SIGHUP stop it cleanly, a second one forces."""
    received: list[int] = []

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            if received:  # a second signal forces
                raise SystemExit(SIGNAL_EXIT.get(sig, 1))
            received.append(SIGNAL_EXIT.get(sig, 1))
            session.request_stop(f"signal {sig.name}")

        for sig in SIGNAL_EXIT:
            if sig == signal.SIGHUP and signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
                continue  # started under nohup: a dropped SSH connection must not stop the run
            loop.add_signal_handler(sig, on_signal, sig)
        return await session.run()

    return asyncio.run(main()), received


def _run_headless(profile: Any, options: Any, args: argparse.Namespace) -> int:
    from agentperf_tui.headless import HeadlessPrinter
    from agentperf_tui.runner import build_session

    printer = HeadlessPrinter(json_lines=args.json)
    recorder = _start_recording(profile, options, args)
    session = build_session(profile, options, sinks=[printer],
                            log_dir=recorder.directory if recorder else None)
    exporter = _attach_sinks(session, recorder, args)
    summary: dict[str, Any] | None = None
    try:
        summary, received = _run_async_with_signals(session)
    finally:
        _finish_recording(recorder, summary, exporter)
    printer.summary(summary)
    _write_summary(args.summary, summary)
    if recorder is not None and not args.json:
        print(f"recorded: {recorder.directory}", file=sys.stderr)
    if received:
        return received[0]
    return session.exit_code


def _run_dashboard(profile: Any, options: Any, args: argparse.Namespace, search_settings: Any = None) -> int:
    from agentperf_tui.engine.session import SessionThread
    from agentperf_tui.headless import summary_text
    from agentperf_tui.runner import build_session
    from agentperf_tui.tui.app import AgentPerfApp

    recorder = _start_recording(profile, options, args)
    session = build_session(profile, options, log_dir=recorder.directory if recorder else None)
    session.search_settings = search_settings
    exporter = _attach_sinks(session, recorder, args)
    app = AgentPerfApp(session, title=f"agentperf-tui - {profile.name}", fps=options.frame_hz,
                       search_available=True, handle_signals=True, ui_budget=args.ui_budget)
    session.sinks.append(app.frame_sink)
    engine = SessionThread(session)
    engine.start()
    try:
        app.run()
    finally:
        engine.stop()
        if engine.summary is not None and session.search_report is not None:
            engine.summary["search"] = session.search_report  # `report SESSION` rebuilds it from the recording
        _finish_recording(recorder, engine.summary, exporter)
    if engine.error is not None and not isinstance(engine.error, SystemExit):
        from agentperf_tui.engine.session import ServerStartError
        from agentperf_tui.telemetry.sampler import PowerSourceError

        if isinstance(engine.error, PowerSourceError | ServerStartError):
            print(f"agentperf-tui: error: {engine.error}", file=sys.stderr)
            return 2
        print(f"agentperf-tui: engine error: {engine.error}", file=sys.stderr)
        return 1
    if engine.summary:
        print(summary_text(engine.summary), end="")
        _write_summary(args.summary, engine.summary)
    if session.search_report:
        _write_search_report(session.search_report, recorder, None)
    return app.return_code or session.exit_code


def _write_search_report(report: dict[str, Any], recorder: Any, json_path: Path | None) -> list[Path]:
    from agentperf_tui.report.search_report import write_report

    directory = recorder.directory if recorder is not None else Path(json_path or "report.json").parent
    return write_report(report, directory, json_path)


def cmd_search(args: argparse.Namespace) -> int:
    from agentperf_tui.engine.search_driver import SearchSettings
    from agentperf_tui.headless import HeadlessPrinter
    from agentperf_tui.runner import build_session, options_from_profile

    profile = _load_profile(args.profile, args)
    if args.tiers:
        wanted = [t.strip() for t in args.tiers.split(",") if t.strip()]
        known = {t.name for t in profile.tiers}
        unknown = [t for t in wanted if t not in known]
        if unknown:
            raise UsageError(f"--tiers: unknown tier(s) {', '.join(unknown)}; the profile has {', '.join(sorted(known))}")
        import dataclasses

        profile = dataclasses.replace(profile, tiers=tuple(t for t in profile.tiers if t.name in wanted))
    settings = SearchSettings.for_mode(args.mode, start_agents=args.start, max_phase_s=args.max_phase,
                                       settle_s=args.settle, phase_s=args.phase,
                                       require_reconciled=args.require_reconciled)
    headless = args.headless or args.json or not sys.stdout.isatty()
    options = options_from_profile(profile, duration_s=0.0, workload=args.workload, agents=settings.start_agents,
                                   workers=args.workers, warm_start=args.warm_start, ray_address=_ray_address(args))
    if args.detach and args.session_dir is None:
        return _detach(args, profile)
    if not headless:
        options.agents = settings.start_agents
        return _run_dashboard_search(profile, options, settings, args)
    printer = HeadlessPrinter(json_lines=args.json)
    recorder = _start_recording(profile, options, args)
    session = build_session(profile, options, sinks=[printer], log_dir=recorder.directory if recorder else None)
    session.search_settings = settings
    exporter = _attach_sinks(session, recorder, args)
    summary: dict[str, Any] | None = None
    try:
        summary, received = _run_async_with_signals(session)
        if summary is not None and session.search_report is not None:
            summary["search"] = session.search_report
    finally:
        _finish_recording(recorder, summary, exporter)
    report = session.search_report
    if report is None:
        print("agentperf-tui: search produced no report: " + (session.stop_reason or "unknown"), file=sys.stderr)
        return received[0] if received else 1
    written = _write_search_report(report, recorder, args.report)
    if args.json:
        sys.stdout.write(orjson.dumps({"type": "report", **report}).decode() + "\n")
    else:
        from agentperf_tui.report.search_report import markdown

        print(markdown(report))
        print("written: " + ", ".join(str(p) for p in written), file=sys.stderr)
    if not report.get("done"):
        print(f"agentperf-tui: search {report.get('status', 'stopped')}: "
              f"{report.get('stopped') or 'some tiers unresolved'}", file=sys.stderr)
    if received:
        return received[0]
    return session.exit_code


def _run_dashboard_search(profile: Any, options: Any, settings: Any, args: argparse.Namespace) -> int:
    """The dashboard with the search started as soon as the load is up (``search`` in a terminal)."""
    options.duration_s = 0.0
    run_args = argparse.Namespace(**{**vars(args), "summary": None})
    return _run_dashboard(profile, options, run_args, search_settings=settings)


def cmd_replay(args: argparse.Namespace) -> int:
    from agentperf_tui.record.format import RecordingError
    from agentperf_tui.record.reader import SessionReader
    from agentperf_tui.record.replay import ReplayPlayer, replay_summary

    try:
        reader = SessionReader(args.session)
    except RecordingError as exc:
        raise UsageError(str(exc)) from exc
    headless = args.headless or args.json or not sys.stdout.isatty()
    if headless:
        from agentperf_tui.headless import HeadlessPrinter, summary_text

        printer = HeadlessPrinter(json_lines=args.json, interval_s=0.0 if args.json else 1.0, show_events=False)
        if args.follow:
            player = ReplayPlayer(reader, [printer], speed=args.speed, follow=True)
            player.start()
            try:
                while player._thread.is_alive():
                    player._thread.join(0.5)
                    if reader.summary() is not None:
                        player.stop()
            except KeyboardInterrupt:
                player.stop()
        elif not args.json:
            from agentperf_tui.headless import progress_line

            next_second = 0.0
            for _t, frame in reader.frames():  # one line per recorded second, as the live run printed
                if frame.elapsed_s >= next_second:
                    print(progress_line(frame))
                    next_second = float(int(frame.elapsed_s) + 1)
        summary, warnings = replay_summary(reader)
        for warning in warnings:
            print(f"agentperf-tui: warning: {warning}", file=sys.stderr)
        if args.json:
            sys.stdout.write(orjson.dumps({"type": "summary", **summary}).decode() + "\n")
        elif summary.get("tiers") is not None and "steady_window_s" in summary:
            print(summary_text(summary), end="")
        else:
            print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
        return 0
    from agentperf_tui.tui.app import AgentPerfApp

    player = ReplayPlayer(reader, speed=args.speed, follow=args.follow)
    app = AgentPerfApp(player, title=f"agentperf-tui replay - {reader.header.get('profile', '')}", replay=True,
                       ui_budget=args.ui_budget)
    player.sinks.append(app.frame_sink)
    player.start()
    try:
        app.run()
    finally:
        player.stop()
    for warning in reader.warnings:
        print(f"agentperf-tui: warning: {warning}", file=sys.stderr)
    return 0


DETACHED_LOG = "detached.log"


def _detach(args: argparse.Namespace, profile: Any) -> int:
    """Re-run this very command headless in the background, recording into a session folder made
    here, and return: the PID, the folder and how to watch it (``attach-ui``)."""
    import subprocess

    if args.no_record:
        raise UsageError("--detach records the session (attach-ui watches the recording): drop --no-record")
    from agentperf_tui.record.writer import new_session_dir

    directory = new_session_dir(args.record_dir or Path("recordings"), profile.name)
    argv = [a for a in args.argv if not (len(a) > 3 and "--detach".startswith(a))]  # argparse takes --det too
    command = [sys.executable, "-m", "agentperf_tui", *argv, "--headless", "--session-dir", str(directory)]
    log = os.open(directory / DETACHED_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # inherited across exec: the run ignores hangups
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    finally:
        signal.signal(signal.SIGHUP, hup)
        os.close(log)
    child.returncode = 0  # not waited for here: no "still running" warning when this process exits
    watch = f"agentperf-tui attach-ui {directory}"
    if args.json:
        print(orjson.dumps({"type": "detached", "pid": child.pid, "session": str(directory),
                            "log": str(directory / DETACHED_LOG), "attach": watch}).decode())
    else:
        print(f"detached: PID {child.pid}\nsession: {directory}\nlog: {directory / DETACHED_LOG}\n"
              f"watch it: {watch}\nstop it: kill -TERM {child.pid}")
    return 0


ATTACH_WAIT_S = 60.0


def cmd_attach_ui(args: argparse.Namespace) -> int:
    """attach-ui SESSION: replay SESSION --follow (the dashboard joins at the live edge), once the
    run has written its recording's first chunk (a run detached a moment ago may not have yet)."""
    import time

    from agentperf_tui.record.format import RecordingError
    from agentperf_tui.record.reader import SessionReader

    deadline = time.monotonic() + ATTACH_WAIT_S
    while True:
        try:
            SessionReader(args.session)
            break
        except RecordingError as exc:
            log = Path(args.session) / DETACHED_LOG
            if time.monotonic() > deadline or not Path(args.session).is_dir():
                raise UsageError(f"{exc}" + (f" (see {log})" if log.exists() else "")) from exc
            time.sleep(0.25)
    return cmd_replay(argparse.Namespace(session=args.session, headless=args.headless, json=args.json,
                                         follow=True, speed=1.0))


def _session_summary(path: str) -> dict[str, Any]:
    from agentperf_tui.record.format import RecordingError
    from agentperf_tui.record.reader import SessionReader
    from agentperf_tui.record.replay import replay_summary

    try:
        summary, warnings = replay_summary(SessionReader(path))
    except RecordingError as exc:
        raise UsageError(str(exc)) from exc
    for warning in warnings:
        print(f"agentperf-tui: warning: {warning}", file=sys.stderr)
    return summary


def cmd_compare(args: argparse.Namespace) -> int:
    from agentperf_tui.report.compare import compare_text

    sys.stdout.write(compare_text(_session_summary(args.a), _session_summary(args.b), args.a, args.b))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from agentperf_tui.report.search_report import write_report

    summary = _session_summary(args.session)
    report = summary.get("search")
    if not report:
        raise UsageError(f"{args.session}: the recording holds no search (run `agentperf-tui search`)")
    out = args.out or (Path(args.session) if Path(args.session).is_dir() else Path(args.session).parent)
    for path in write_report(report, out):
        print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from agentperf_tui.record.format import RecordingError
    from agentperf_tui.report.aiperf_export import export_session

    try:
        written = export_session(args.session, args.output)
    except RecordingError as exc:
        raise UsageError(str(exc)) from exc
    runs = sorted({p.parent for p in written if p.name == "profile_export.jsonl"})
    print(f"wrote {len(runs)} AIPerf run folder(s) and requests.csv, phases.csv under {args.output} "
          f"(aiperf plot {args.output})")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from agentperf_tui.profile import ProfileError
    from agentperf_tui.sweep import cmd_sweep as run_sweep

    try:
        return run_sweep(args, _load_profile)
    except ProfileError as exc:
        raise UsageError(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "twin":
        return _twin(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # --detach re-runs the command as given
    try:
        if args.command in ("run", "attach"):
            return cmd_run(args)
        if args.command == "profiles":
            return cmd_profiles()
        if args.command == "launch-plan":
            return cmd_launch_plan(args)
        if args.command == "search":
            return cmd_search(args)
        if args.command == "replay":
            return cmd_replay(args)
        if args.command == "attach-ui":
            return cmd_attach_ui(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "sweep":
            return cmd_sweep(args)
    except UsageError as exc:
        print(f"agentperf-tui: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from agentperf_tui.engine.session import ServerStartError
        from agentperf_tui.telemetry.sampler import PowerSourceError

        if not isinstance(exc, PowerSourceError | ServerStartError):
            raise
        print(f"agentperf-tui: error: {exc}", file=sys.stderr)  # the server was stopped on the way out
        return 2
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
