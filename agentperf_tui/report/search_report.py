"""The search report: JSON (the record of truth), Markdown for people, SVG charts beside it."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from agentperf_tui.report.charts import line_chart


def _fmt(value: Any, spec: str = ",.1f", unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:{spec}}{unit}"


def chart_context(report: dict[str, Any]) -> str:
    """What every chart title carries: profile, run date and, for the twin, that it is simulated."""
    run = report.get("run") or {}
    date = (run.get("started_utc") or "")[:10] or "date unknown"
    return f"{report.get('profile') or 'profile unknown'}, {date}" + (" (digital twin)" if report.get("twin") else "")


def charts(report: dict[str, Any]) -> dict[str, str]:
    """name -> SVG text: measured P25 speed, P95 TTFT and power against agents, each tier's limit
    dashed and each tier's answer (max agents) marked on the speed and TTFT charts."""
    valid = [p for p in report["phases"] if p["valid"]]
    tiers = report["tiers"]
    speed = [(p["agents"], p["tiers"][0]["output_tps_p25"] or 0.0) for p in valid] if tiers else []
    ttft = [(p["agents"], p["tiers"][0]["ttft_p95_s"]) for p in valid
            if tiers and p["tiers"][0]["ttft_p95_s"] is not None]
    power = [(p["agents"], (p["avg_power_w"] or 0.0) / 1000.0) for p in valid if p["avg_power_w"]]
    answers = [(f"{t['name']} max {t['max_agents']}", float(t["max_agents"])) for t in tiers]
    context = chart_context(report)
    return {
        "speed_vs_agents.svg": line_chart(
            f"P25 output speed vs agents - {context}", "agents", "P25 output speed (tok/s)",
            [("measured P25 speed", speed)],
            [(f"{t['name']} limit {t['output_tps']:g} tok/s", t["output_tps"]) for t in tiers], markers=answers),
        "ttft_vs_agents.svg": line_chart(
            f"P95 TTFT vs agents - {context}", "agents", "P95 TTFT (s)", [("measured P95 TTFT", ttft)],
            [(f"{t['name']} limit {t['ttft_s']:g} s", t["ttft_s"]) for t in tiers], markers=answers),
        "power_vs_agents.svg": line_chart(
            f"Average power vs agents ({report['power_boundary']} boundary) - {context}", "agents",
            "average power (kW)", [("measured average power", power)]),
    }


def headline(report: dict[str, Any]) -> str:
    """What kind of answer this is, in one line: stopped / unresolved / finished, estimate, twin."""
    status = report.get("status") or ("finished" if report.get("done") else "stopped")
    if status == "stopped":
        head = f"**Stopped: {report.get('stopped') or 'stopped'}** - the maximums below are what was shown before it stopped."
    elif status == "unresolved":
        head = "**Unresolved** - not every tier's bracket was narrowed to the resolution."
    else:
        head = "Finished: every tier resolved."
    if report.get("estimate", report.get("mode") == "quick"):
        head += " Quick mode: an estimate on short windows, not AA's certify rules."
    if report.get("mode") == "custom":
        head += f" Custom rules (from {report.get('base_mode')}): see settings."
    if report.get("twin"):
        head += " Simulated: these numbers come from the digital twin, not real GPUs."
    return head


def _answer(t: dict[str, Any]) -> str:
    hi = t.get("fail_above", t["bracket"][1])
    verdict = t.get("fail_above_verdict") or "fail"
    above = f"{verdict} at {hi}" if hi is not None else "no failing count found"
    why = f"; {t['why_zero']}" if t.get("why_zero") else ""
    return f"{t['max_agents']} ({above}{why})"


def _sample(t: dict[str, Any]) -> str:
    s = t.get("sample")
    if not s:
        return "n/a"
    return f"{s['finished']} req / {s['duration_s']:.0f} s" + (f" (+{s['in_flight']} in flight)" if s["in_flight"] else "")


def _power_cell(t: dict[str, Any]) -> str:
    """Average power with the boundary, the source and how many devices answered beside it."""
    if not t.get("avg_power_w"):
        return "n/a" + (f" ({t['power_note']})" if t.get("power_note") else "")
    where = ", ".join(str(x) for x in (t.get("power_boundary"), t.get("power_source"),
                                       f"{t['power_devices']} devices" if t.get("power_devices") else None) if x)
    return f"{t['avg_power_w']:,.0f} W ({where})"


def reconciliation_section(report: dict[str, Any]) -> list[str]:
    """Client vs server for each phase a tier's answer rests on: every quantity, both sides."""
    answers = sorted({t["answer_phase"] for t in report["tiers"] if t.get("answer_phase")})
    out: list[str] = []
    for number in answers:
        rec = report["phases"][number - 1].get("reconciliation")
        if not rec:
            continue
        out += ["", f"## Client vs server, phase {number} ({report['phases'][number - 1]['agents']} agents)", "",
                f"{rec['headline']} - over {_fmt(rec.get('seconds'), '.0f')} s, {rec['scrapes']} scrapes, "
                f"workers {rec['workers'] or 'n/a'}.", "",
                "| quantity | client | server | gap | tolerance | agrees | note |", "|---|---|---|---|---|---|---|"]
        for c in rec["comparisons"]:
            spec = ".3f" if c["unit"] == "s" else ",.0f"
            agrees = "-" if c["agrees"] is None else ("yes" if c["agrees"] else "**no**")
            out.append(f"| {c['quantity']} | {_fmt(c['client'], spec, ' ' + c['unit'])} | "
                       f"{_fmt(c['server'], spec, ' ' + c['unit'])} | {_fmt(c['gap'], '+' + spec)} | "
                       f"{_fmt(c['tolerance'], spec)} | {agrees} | {c['note'].replace('|', '/')} |")
    return out


UNKNOWN = "unknown"
MODE_TEXT = {
    "quick": "**quick** - an ESTIMATE: short windows, verdicts at 95 % confidence, not AA's certify rules",
    "certify": "**certify** - AA-AgentPerf's rules (>= 600 s per phase, >= 30 trajectories, >= 3 per agent)",
}
BOUNDARY_WORDS = {"gpu": "GPU boards only (sum of per-GPU energy counters, AA's boundary)",
                  "node": "whole node(s), from BMC/Redfish", "rack": "whole rack, from BMC/Redfish"}


def _mode_text(report: dict[str, Any]) -> str:
    mode = report.get("mode") or UNKNOWN
    if mode == "custom":
        base = report.get("base_mode") or UNKNOWN
        kind = "an ESTIMATE" if base == "quick" else "not AA's rules either" if base == "certify" else UNKNOWN
        return f"**custom** (rules changed from {base}; {kind}; see settings in report.json)"
    return MODE_TEXT.get(mode, f"**{mode}**")


def _hardware_text(report: dict[str, Any]) -> str:
    gpus = report.get("gpus")
    model = (report.get("run") or {}).get("gpu_model") or ""
    count = str(gpus) if gpus else "unknown count of"
    if not model:
        return f"{count} GPUs, kind unknown"
    return f"{count} x {model}" + (" (simulated)" if report.get("twin") else "")


def _server_text(report: dict[str, Any]) -> str:
    server = report.get("server") or {}
    version = server.get("version") or UNKNOWN
    fingerprint = server.get("fingerprint") or UNKNOWN
    if report.get("twin"):
        return (f"**digital twin** (simulated SGLang, {version}, fingerprint {fingerprint}): "
                "simulated numbers, not measured on GPUs")
    if "twin" not in report:
        return f"unknown whether real or twin (server {version}, fingerprint {fingerprint})"
    return f"**real server** {version}, fingerprint {fingerprint}" + (f" at {server['url']}" if server.get("url") else "")


def _samples_text(report: dict[str, Any]) -> str:
    parts = []
    for t in report["tiers"]:
        sample, number = t.get("sample"), t.get("answer_phase")
        if sample:
            phase = report["phases"][number - 1] if number and number <= len(report["phases"]) else {}
            where = f"phase {number}, {phase['agents']} agents" if phase else "answer phase unknown"
            parts.append(f"{t['name']} {sample['finished']:,} finished requests in {sample['duration_s']:.0f} s "
                         f"({where})")
        elif t.get("max_agents"):
            parts.append(f"{t['name']} {UNKNOWN} (recorded before samples were kept)")
        else:
            parts.append(f"{t['name']} none: 0 agents" + (f" ({t['why_zero']})" if t.get("why_zero") else ""))
    return "; ".join(parts) or UNKNOWN


def title_block(report: dict[str, Any]) -> list[str]:
    """The report's first lines: what was measured, on what, how, when, and on how much data.
    Anything the report does not know is written "unknown", never guessed."""
    run = report.get("run") or {}
    boundary = report.get("power_boundary") or UNKNOWN
    return [
        f"# Agent capacity: {report.get('profile') or UNKNOWN}"
        + (" (digital twin)" if report.get("twin") else ""),
        "",
        f"- **Profile:** {report.get('profile') or UNKNOWN}",
        f"- **Hardware:** {_hardware_text(report)}",
        f"- **Numbers from:** {_server_text(report)}",
        f"- **Mode:** {_mode_text(report)}",
        f"- **Run date (UTC):** {run.get('started_utc') or UNKNOWN}",
        f"- **Power boundary:** {boundary}" + (f" - {BOUNDARY_WORDS[boundary]}" if boundary in BOUNDARY_WORDS else ""),
        f"- **Sample per tier answer:** {_samples_text(report)}",
    ]


def markdown(report: dict[str, Any]) -> str:
    server = report.get("server") or {}
    lines = [
        *title_block(report),
        "",
        headline(report),
        "",
        f"{report['phases_run']} phases in {report['elapsed_s'] / 60:.1f} min. Server {server.get('url') or UNKNOWN} "
        f"{server.get('version') or UNKNOWN} (fingerprint {server.get('fingerprint') or UNKNOWN}).",
        "",
        "| tier | target | max agents (first count above) | sample | agents/GPU | agents/MW | avg power | tokens/J |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in report["tiers"]:
        lines.append(
            f"| {t['name']} | {t['output_tps']:g} tok/s, {t['ttft_s']:g} s | {_answer(t)} | {_sample(t)} | "
            f"{t['agents_per_gpu']:.2f} | {_fmt(t['agents_per_mw'], ',.0f')} | {_power_cell(t)} | "
            f"{_fmt(t['tokens_per_joule'], '.3f')} |")
    notes = [f"- {t['name']}: non-monotone: {'; '.join(t['non_monotone'])}" for t in report["tiers"]
             if t.get("non_monotone")]
    if notes:
        lines += ["", *notes]
    lines += ["", "## Phases", "", "| # | agents | s | requests | " +
              " | ".join(f"{t['name']} P25 tok/s / P95 TTFT s" for t in report["tiers"])
              + " | power | client vs server | valid |",
              "|---|---|---|---|" + "---|" * len(report["tiers"]) + "---|---|---|"]
    for i, p in enumerate(report["phases"], 1):
        cells = [f"{_fmt(t['output_tps_p25'])} / {_fmt(t['ttft_p95_s'], '.2f')} "
                 f"{(t.get('verdict') or ('pass' if t['pass'] else 'fail')).upper()}" for t in p["tiers"]]
        r = p["requests"]
        finished = r.get("finished", r["completed"] + r.get("failed", 0))
        lines.append(f"| {i} | {p['agents']} | {p['duration_s']:.0f} | {finished}"
                     + (f" +{r['in_flight']} in flight" if r.get("in_flight") else "") + " | "
                     + " | ".join(cells) + f" | {_fmt(p['avg_power_w'], ',.0f', ' W')} | "
                     + ((p.get("reconciliation") or {}).get("headline") or "n/a").replace("|", "/") + " | "
                     + ("yes" if p["valid"] else f"{p.get('status', 'invalid')}: {p['invalid']}") + " |")
    lines += reconciliation_section(report)
    lines += ["", "Charts: speed_vs_agents.svg, ttft_vs_agents.svg, power_vs_agents.svg.", ""]
    return "\n".join(lines)


def _write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (0600), as every session file is."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as f:
        f.write(data)


def run_facts(directory: Path) -> dict[str, Any]:
    """What the recording in ``directory`` knows about the run that a search report does not: when it
    started (the header's wall clock, UTC) and the GPU model (NVML / dcgm-exporter, from the first
    frames that have one). {} without a readable recording; a fact not found is left out."""
    from agentperf_tui.record.format import KIND_FRAME, RecordingError
    from agentperf_tui.record.reader import SessionReader

    try:
        reader = SessionReader(directory)
    except (RecordingError, OSError):
        return {}
    facts: dict[str, Any] = {"source": "recording", "profile": reader.header.get("profile") or ""}
    created = reader.header.get("created_unix")
    if isinstance(created, int | float):
        facts["started_utc"] = datetime.fromtimestamp(created, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    frames = 0
    for kind, _t, data in reader.entries():
        if kind != KIND_FRAME:
            continue
        model = ((data or {}).get("power") or {}).get("gpu_model")
        if model:
            facts["gpu_model"] = model
            break
        frames += 1
        if frames >= FACT_FRAMES:  # power readings come within seconds; older recordings have none
            break
    return facts


FACT_FRAMES = 400


def with_run_facts(report: dict[str, Any], directory: Path) -> dict[str, Any]:
    """The report with ``run`` (date, GPU model) from the recording beside it, unless it has one or
    the recording there is another profile's (a report written into some other session's folder)."""
    if report.get("run"):
        return report
    facts = run_facts(directory)
    recorded, reported = facts.pop("profile", ""), report.get("profile") or ""
    if recorded and reported and recorded != reported:
        return report
    return {**report, "run": facts} if facts else report


def write_report(report: dict[str, Any], directory: Path, json_path: Path | None = None) -> list[Path]:
    """Write report.json, report.md and the charts into ``directory`` (and JSON to json_path)."""
    directory.mkdir(parents=True, exist_ok=True)
    report = with_run_facts(report, directory)
    written = []
    data = orjson.dumps(report, option=orjson.OPT_INDENT_2)
    for path in [directory / "report.json"] + ([json_path] if json_path else []):
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, data)
        written.append(path)
    _write_private(directory / "report.md", markdown(report).encode())
    written.append(directory / "report.md")
    for name, svg in charts(report).items():
        _write_private(directory / name, svg.encode())
        written.append(directory / name)
    return written
