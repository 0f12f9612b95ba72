"""``agentperf-tui sweep PROFILE --vary KNOB=V1,V2 ...``: one search per server configuration, resumable.

For each configuration (the grid of every ``--vary``, or the ``--config`` sets listed) the
profile is relaunched with those values (tune.py) and the search runs on it headless, recorded
in its own session folder under the sweep's folder. ``sweep.json`` there is the sweep's state,
rewritten after every configuration: a configuration whose search finished or ended unresolved
is done and is read back, never rerun; one that was stopped (Ctrl-C, a crash, a server that did
not start) runs again from the start on the next invocation of the same command. The sweep's
folder is named from the profile, the mode and the configurations, so the same command finds
its own state.

The report (``sweep_report.json`` / ``.md``, ``frontier.svg``): per tier the best configuration
(most agents per MW, else most agents) with its agents/GPU and agents/MW; and the frontier
(report/frontier.py) over every required per-agent speed from 10 to 200 tok/s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

DONE = ("finished", "unresolved")
STATE_FILE = "sweep.json"


def add_parser(sub: Any, default_profile: str) -> None:
    p = sub.add_parser(
        "sweep", help="search several server configurations (relaunching for each) and report the frontier",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Runs the search (see `search --help`) once per configuration: the grid of every --vary, or\n"
                    "the --config sets listed. Each configuration relaunches the server with its values.\n"
                    "Resumable: run the same command again after Ctrl-C or a crash and finished configurations\n"
                    "are read back from their recordings, not rerun.\n\n"
                    "Exit codes: 0 every configuration done, 2 bad input, 3 some configuration stopped.")
    p.add_argument("profile", nargs="?", default=default_profile,
                   help=f"profile name in profiles/ or a path to a TOML file (default {default_profile})")
    p.add_argument("--vary", action="append", default=[], metavar="KNOB=V1,V2,...",
                   help="an SGLang flag (a [tune] knob or any flag SGLang takes with a value) and its values; "
                        "repeat for a grid")
    p.add_argument("--config", action="append", default=[], metavar="KNOB=V[;KNOB=V]",
                   help="one configuration to run (repeat for a listed set instead of a grid)")
    p.add_argument("--mode", choices=("quick", "certify"), default="quick",
                   help="quick: an estimate in minutes per configuration; certify: AA's rules, hours")
    p.add_argument("--headless", action="store_true", help="progress lines on stdout (the sweep always runs headless)")
    p.add_argument("--json", action="store_true", help="JSONL progress; the sweep report is the last line")
    p.add_argument("--report", type=Path, default=None, help="also write the sweep report JSON here")
    p.add_argument("--record-dir", type=Path, default=None,
                   help="where the sweep's folder is made (default ./recordings)")
    p.add_argument("--start", type=int, default=None, help="first agent count of every search (default 8)")
    p.add_argument("--phase", type=float, default=None, help="quick: seconds of the first look ('custom' mode)")
    p.add_argument("--max-phase", type=float, default=None, help="seconds: the last look / certify's cap ('custom')")
    p.add_argument("--settle", type=float, default=None, help="seconds of settle before counting ('custom')")
    p.add_argument("--max-agents", type=int, default=None, help="largest agent count any search may try")
    p.add_argument("--workers", type=int, default=None, help="agent worker processes (default: automatic)")


def configurations(profile: Any, vary: list[str], listed: list[str]) -> tuple[Any, list[dict[str, str]]]:
    """(the profile with every varied knob known, the configurations in run order)."""
    from agentperf_tui import tune
    from agentperf_tui.profile import ProfileError

    if bool(vary) == bool(listed):
        raise ProfileError("sweep: give --vary KNOB=V1,V2 (a grid) or --config KNOB=V;KNOB=V (a listed set), one kind")
    if vary:
        pairs = tune.parse_vary(profile, vary)
        configs = tune.grid(pairs)
    else:
        configs, pairs = [], []
        for item in listed:
            config: dict[str, str] = {}
            for part in item.split(";"):
                key, sep, value = part.partition("=")
                if not sep or not key.strip() or not value.strip():
                    raise ProfileError(f"--config {item!r}: expected KNOB=V;KNOB=V")
                config[key.strip()] = value.strip()
            configs.append(config)
            pairs += [(k, (v,)) for k, v in config.items()]
    extra = []
    for key, values in pairs:
        try:
            tune.knob(profile, key)
        except ProfileError:
            extra.append(tune._ad_hoc_knob(profile, key, values))
    profile = tune.with_knobs(profile, extra)
    # configurations name knobs by their [tune] key
    configs = [{tune.knob(profile, k).key: v for k, v in c.items()} for c in configs]
    if len({label(c) for c in configs}) != len(configs):
        raise ProfileError("sweep: a configuration is listed twice")
    return profile, configs


def label(config: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def sweep_dir(root: Path, profile: Any, mode: str, configs: list[dict[str, str]], rules: dict[str, Any]) -> Path:
    """The sweep's folder: the same command (profile, mode, rules, configurations) gives the same folder."""
    blob = orjson.dumps({"profile": str(profile.path or profile.name), "mode": mode, "configs": configs,
                         "rules": rules}, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(blob).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in profile.name)
    return root / f"sweep-{safe}-{mode}-{digest}"


def _load_state(path: Path) -> dict[str, Any]:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except orjson.JSONDecodeError as exc:
        raise RuntimeError(f"{path}: not valid JSON ({exc}); move it away to start the sweep over") from exc


def _save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as f:
        f.write(orjson.dumps(state, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)  # never a half-written state file


def cmd_sweep(args: argparse.Namespace, load_profile: Any) -> int:
    from agentperf_tui.engine.search_driver import SearchSettings
    from agentperf_tui.headless import HeadlessPrinter

    profile, configs = configurations(load_profile(args.profile, None), args.vary, args.config)
    if profile.server.mode != "launch":
        from agentperf_tui.profile import ProfileError

        raise ProfileError(f"{profile.name}: sweep relaunches the server; an attached server cannot be swept")
    settings = SearchSettings.for_mode(args.mode, start_agents=args.start, max_phase_s=args.max_phase,
                                       settle_s=args.settle, phase_s=args.phase, max_agents=args.max_agents)
    rules = {k: v for k, v in settings.to_dict().items() if k not in ("mode",)}
    folder = sweep_dir(args.record_dir or Path("recordings"), profile, args.mode, configs, rules)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    state_path = folder / STATE_FILE
    state = _load_state(state_path) or {"profile": profile.name, "profile_path": str(profile.path or ""),
                                        "mode": args.mode, "created_unix": time.time(),
                                        "configs": [{"config": c, "label": label(c), "status": "pending",
                                                     "session": None} for c in configs]}
    entries = state["configs"]
    say = _progress(args)
    done_before = [e["label"] for e in entries if e["status"] in DONE]
    if done_before:
        say(f"sweep: resuming {folder}: {len(done_before)} of {len(entries)} configurations done, read back "
            f"({'; '.join(done_before)})")
    else:
        say(f"sweep: {len(entries)} configurations in {folder}")
    interrupted = 0
    for i, entry in enumerate(entries, 1):
        if entry["status"] in DONE:
            continue
        say(f"sweep: configuration {i}/{len(entries)}: {entry['label']} ({args.mode} search, relaunching the server)")
        entry["status"] = "running"
        entry["started_unix"] = time.time()
        _save_state(state_path, state)
        printer = HeadlessPrinter(json_lines=args.json)
        outcome = _run_one(profile, entry["config"], settings, args, folder, printer)
        entry.update(outcome)
        _save_state(state_path, state)
        say(f"sweep: configuration {i}/{len(entries)} {entry['status']}: {entry.get('answer', '')}")
        if outcome.get("signal"):
            interrupted = outcome["signal"]
            break
    report = build_report(state, folder)
    written = write_sweep_report(report, folder, args.report)
    if args.json:
        sys.stdout.write(orjson.dumps({"type": "sweep_report", **report}).decode() + "\n")
    else:
        print(sweep_markdown(report))
        print("written: " + ", ".join(str(p) for p in written), file=sys.stderr)
    if interrupted:
        print(f"agentperf-tui: sweep stopped; run the same command again to resume ({folder})", file=sys.stderr)
        return interrupted
    return 0 if all(e["status"] in DONE for e in entries) else 3


def _progress(args: argparse.Namespace) -> Any:
    def say(message: str) -> None:
        if args.json:
            sys.stdout.write(orjson.dumps({"type": "event", "message": message}).decode() + "\n")
            sys.stdout.flush()
        else:
            print(message, flush=True)
    return say


def _run_one(profile: Any, config: dict[str, str], settings: Any, args: argparse.Namespace, folder: Path,
             printer: Any) -> dict[str, Any]:
    """One configuration's search, recorded in its own session folder; what sweep.json keeps of it."""
    import asyncio
    import signal

    from agentperf_tui import tune
    from agentperf_tui.record.writer import SessionRecorder, new_session_dir
    from agentperf_tui.report.search_report import write_report
    from agentperf_tui.runner import build_session, options_from_profile
    from agentperf_tui.server.launch_plan import build_launch_plan, format_launch_plan

    base = tune.current_values(profile)
    tuned = tune.with_changes(profile, {k: v for k, v in config.items() if base.get(k) != v})
    options = options_from_profile(tuned, duration_s=0.0, agents=settings.start_agents, workers=args.workers)
    directory = new_session_dir(folder, tuned.name)
    header = {"profile": tuned.name, "profile_path": str(tuned.path or ""),
              "server_commands": format_launch_plan(build_launch_plan(tuned)), "server_mode": "launch",
              "gpus": tuned.server.gpus, "sweep_config": config,
              "tiers": [{"name": t.name, "output_tps": t.output_tps, "ttft_s": t.ttft_s} for t in tuned.tiers],
              "agents": options.agents, "workload": options.workload or tuned.workload.source}
    options.recording = str(directory)
    recorder = SessionRecorder(directory, header)
    session = build_session(tuned, options, sinks=[printer, recorder.on_frame], log_dir=directory)
    session.record_sinks.append(recorder.on_record)
    session.phase_sinks.append(recorder.on_phase)
    session.search_settings = settings
    received: list[int] = []

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            if received:
                raise SystemExit(128 + sig.value)
            received.append(128 + sig.value)
            session.request_stop(f"signal {sig.name}")

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        return await session.run()

    summary = None
    error = ""
    try:
        summary = asyncio.run(main())
    except Exception as exc:  # a server that did not start: this configuration stopped, the sweep goes on
        error = f"{type(exc).__name__}: {exc}"
    finally:
        report = session.search_report
        if summary is not None and report is not None:
            summary["search"] = report
        if summary is not None:
            recorder.write_summary(summary)
        recorder.close()
    if report is not None:
        write_report({**report, "sweep_config": config}, directory)
    status = (report.get("status") if report else None) or "stopped"
    if received or error:
        status = "stopped"
    return {"status": status, "session": str(directory), "signal": received[0] if received else 0,
            "error": error or (report.get("stopped", "") if report else session.stop_reason),
            "answer": _answer(report, status) if report else error,
            "ended_unix": time.time()}


def _answer(report: dict[str, Any], status: str) -> str:
    """Each tier's largest count held, as the search reported it; a stopped search's is only what it
    had found so far (a tier with no count held says so, never 0 agents)."""
    text = "; ".join(f"{t['name']} {t['max_agents'] or 'none held'}" for t in report["tiers"])
    return text if status == "finished" else f"stopped before the answer (so far: {text})"


def build_report(state: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The sweep report from its state and each configuration's recorded search."""
    from agentperf_tui.report.frontier import frontier, phase_requests

    configs = []
    for entry in state["configs"]:
        if entry["status"] not in DONE or not entry.get("session"):
            configs.append({**entry, "tiers": [], "phases": []})
            continue
        report = orjson.loads((Path(entry["session"]) / "report.json").read_bytes())
        configs.append({**entry, "tiers": report["tiers"], "gpus": report.get("gpus"), "twin": report.get("twin"),
                        "phases": phase_requests(entry["session"]), "phases_run": report.get("phases_run")})
    done = [c for c in configs if c["status"] in DONE]
    best = []
    tier_names = [t["name"] for t in done[0]["tiers"]] if done else []
    for i, name in enumerate(tier_names):
        ranked = sorted(done, key=lambda c: (c["tiers"][i].get("agents_per_mw") or -1.0, c["tiers"][i]["max_agents"]),
                        reverse=True)
        top = ranked[0]["tiers"][i]
        if not any(c["tiers"][i]["max_agents"] for c in done):  # no configuration held it: no best one
            best.append({"tier": name, "output_tps": top["output_tps"], "ttft_s": top["ttft_s"], "config": None,
                         "max_agents": 0, "agents_per_gpu": None, "agents_per_mw": None, "avg_power_w": None,
                         "sample": None, "by": "no configuration held this tier"})
            continue
        best.append({"tier": name, "output_tps": top["output_tps"], "ttft_s": top["ttft_s"],
                     "config": ranked[0]["label"], "max_agents": top["max_agents"],
                     "agents_per_gpu": top["agents_per_gpu"], "agents_per_mw": top["agents_per_mw"],
                     "avg_power_w": top["avg_power_w"], "sample": top.get("sample"),
                     "by": "agents per MW" if top.get("agents_per_mw") is not None else "agents (no power measured)"})
    rows = frontier([c for c in done])
    return {
        "tool": "agentperf-tui", "kind": "sweep", "profile": state["profile"], "mode": state["mode"],
        "estimate": state["mode"] == "quick", "twin": any(c.get("twin") for c in done), "folder": str(folder),
        "configs": [{k: v for k, v in c.items() if k != "phases"} for c in configs],
        "best_per_tier": best, "frontier": rows,
        "frontier_note": "largest count held per required P25 speed, from each phase's recorded requests "
                         "(speed only; TTFT limits apply at the tiers); agents/MW at that count's phase power",
    }


def sweep_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Sweep: {report['profile']} ({report['mode']})", ""]
    notes = []
    if report.get("estimate"):
        notes.append("Quick mode: each answer is an estimate on short windows, not AA's certify rules.")
    if report.get("twin"):
        notes.append("Simulated: these numbers come from the digital twin, not real GPUs.")
    lines += [" ".join(notes), ""] if notes else []
    lines += ["| configuration | status | " + " | ".join(t["tier"] for t in report["best_per_tier"]) + " | session |",
              "|---|---|" + "---|" * len(report["best_per_tier"]) + "---|"]
    for c in report["configs"]:
        cells = [f"{t['max_agents']} ({_mw(t.get('agents_per_mw'))})" if t["max_agents"] else "none held"
                 for t in c.get("tiers") or []]
        cells += ["-"] * (len(report["best_per_tier"]) - len(cells))
        lines.append(f"| {c['label']} | {c['status']} | " + " | ".join(cells) + f" | {c.get('session') or '-'} |")
    lines += ["", "## Best configuration per tier", "",
              "| tier | configuration | max agents | agents/GPU | agents/MW | power | sample | ranked by |",
              "|---|---|---|---|---|---|---|---|"]
    for b in report["best_per_tier"]:
        s = b.get("sample")
        sample = f"{s['finished']} req / {s['duration_s']:.0f} s" if s else "n/a"
        power = f"{b['avg_power_w'] / 1000:,.2f} kW" if b.get("avg_power_w") else "n/a"
        if b["config"] is None:
            lines.append(f"| {b['tier']} ({b['output_tps']:g} tok/s, {b['ttft_s']:g} s) | none held | - | - | - | "
                         f"- | - | {b['by']} |")
            continue
        lines.append(f"| {b['tier']} ({b['output_tps']:g} tok/s, {b['ttft_s']:g} s) | {b['config']} | "
                     f"{b['max_agents']} | {b['agents_per_gpu']} | {_mw(b['agents_per_mw'])} | {power} | {sample} | "
                     f"{b['by']} |")
    labels = [c["label"] for c in report["configs"] if c["status"] in DONE]
    lines += ["", "## Frontier", "", report["frontier_note"] + ".", "", "![frontier](frontier.svg)", "",
              "| speed (tok/s) | " + " | ".join(labels) + " | best |", "|---|" + "---|" * (len(labels) + 1)]
    for r in report["frontier"]:
        cells = []
        for lab in labels:
            cell = r["held"].get(lab)
            cells.append(f"{cell['agents']} ({_mw(cell['agents_per_mw'])})" if cell else "none held")
        lines.append(f"| {r['speed']} | " + " | ".join(cells) + f" | {', '.join(r['best']) or '-'} |")
    return "\n".join(lines) + "\n"


def _mw(value: Any) -> str:
    return "n/a /MW" if value is None else f"{value:,.0f} /MW"


def write_sweep_report(report: dict[str, Any], folder: Path, json_path: Path | None) -> list[Path]:
    from agentperf_tui.report.frontier import frontier_chart

    written = []
    data = orjson.dumps(report, option=orjson.OPT_INDENT_2)
    for path in [folder / "sweep_report.json"] + ([json_path] if json_path else []):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    (folder / "sweep_report.md").write_text(sweep_markdown(report), encoding="utf-8")
    written.append(folder / "sweep_report.md")
    labels = [c["label"] for c in report["configs"] if c["status"] in DONE]
    title = (f"Frontier: {report['profile']}, {report['mode']} mode"
             + (" (digital twin)" if report.get("twin") else "")
             + f", {time.strftime('%Y-%m-%d', time.gmtime())}")
    (folder / "frontier.svg").write_text(frontier_chart(title, report["frontier"], labels), encoding="utf-8")
    written.append(folder / "frontier.svg")
    return written
