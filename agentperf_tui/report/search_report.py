"""The search report: JSON (the record of truth), Markdown for people, SVG charts beside it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from agentperf_tui.report.charts import line_chart


def _fmt(value: Any, spec: str = ",.1f", unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:{spec}}{unit}"


def charts(report: dict[str, Any]) -> dict[str, str]:
    """name -> SVG text: per-tier P25 speed, P95 TTFT and power against agents."""
    valid = [p for p in report["phases"] if p["valid"]]
    tiers = report["tiers"]
    speed = [(t["name"], [(p["agents"], p["tiers"][i]["output_tps_p25"] or 0.0) for p in valid])
             for i, t in enumerate(tiers)][:1]
    ttft = [("P95 TTFT", [(p["agents"], p["tiers"][0]["ttft_p95_s"] or 0.0) for p in valid
                          if p["tiers"][0]["ttft_p95_s"] is not None])]
    power = [("average power", [(p["agents"], (p["avg_power_w"] or 0.0) / 1000.0) for p in valid
                                if p["avg_power_w"]])]
    return {
        "speed_vs_agents.svg": line_chart("P25 output speed vs agents", "agents", "P25 output speed (tok/s)",
                                          [("P25 speed", speed[0][1] if speed else [])],
                                          [(t["name"], t["output_tps"]) for t in tiers]),
        "ttft_vs_agents.svg": line_chart("P95 TTFT vs agents", "agents", "P95 TTFT (s)", ttft,
                                         [(t["name"], t["ttft_s"]) for t in tiers]),
        "power_vs_agents.svg": line_chart(f"Average power vs agents ({report['power_boundary']} boundary)",
                                          "agents", "average power (kW)", power),
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


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Agent capacity: {report.get('profile', '')}",
        "",
        headline(report),
        "",
        f"Mode **{report['mode']}**, {report['gpus']} GPUs, power boundary **{report['power_boundary']}**, "
        f"{report['phases_run']} phases in {report['elapsed_s'] / 60:.1f} min. Server {report['server']['url']} "
        f"{report['server']['version']} (fingerprint {report['server']['fingerprint'] or 'n/a'}).",
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


def write_report(report: dict[str, Any], directory: Path, json_path: Path | None = None) -> list[Path]:
    """Write report.json, report.md and the charts into ``directory`` (and JSON to json_path)."""
    directory.mkdir(parents=True, exist_ok=True)
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
