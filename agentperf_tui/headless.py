"""Headless front end: one progress line per second on stdout (JSONL with ``--json``), then the summary.

A sink of the same frames the dashboard shows. Progress goes to stdout; with ``--json`` every line
is a JSON object and the summary is the last line, so ``tail -n1`` of the output is the result.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

import orjson

from agentperf_tui.engine.advice import advice_for
from agentperf_tui.engine.frames import Frame
from agentperf_tui.engine.reconcile import Comparison


def _fmt_tokens(n: float) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else f"{n:.0f}"


def progress_line(frame: Frame) -> str:
    """Human progress line with units."""
    parts = [
        f"[{frame.elapsed_s:6.0f} s]",
        f"agents {frame.active_agents}/{frame.target_agents}" + (" PAUSED" if frame.paused else ""),
        f"req {frame.requests_completed} ok {frame.requests_failed} failed",
        f"{frame.output_tokens_per_s:,.0f} tok/s out",
        f"ctx mean {_fmt_tokens(frame.context.mean)} p95 {_fmt_tokens(frame.context.p95)} tok",
    ]
    for tier in frame.tiers:
        p25 = "-" if tier.output_tps_p25 is None else f"{tier.output_tps_p25:.1f}"
        p95 = "-" if tier.ttft_p95_s is None else f"{tier.ttft_p95_s:.2f}"
        verdict = "n/a" if tier.requests == 0 else tier.shown_verdict.upper()
        parts.append(f"{tier.name} P25 {p25} tok/s P95 TTFT {p95} s {verdict}")
    if frame.power.total_w is not None:
        parts.append(f"power {frame.power.total_w / 1000:.2f} kW ({frame.power.boundary})")
    parts.append(f"server {frame.server.state}")
    if frame.client.workers:
        parts.append(f"{frame.client.workers} workers lag max {frame.client.worker_lag_max_ms:.0f} ms")
    if not frame.client.valid:
        parts.append("CLIENT INVALID: " + "; ".join(frame.client.invalid_reasons))
    if frame.stalled_agents:
        parts.append(f"STALL {frame.stalled_agents} agents (request without progress)")
    return " | ".join(parts)


def frame_json(frame: Frame) -> dict[str, Any]:
    """The per-second JSONL record: the frame without the per-agent table."""
    data = frame.to_dict(include_agents=False)
    data["type"] = "progress"
    return data


class HeadlessPrinter:
    """Frame sink printing at most one progress line per ``interval_s``, and every log event (on
    stderr as text; with ``json_lines`` as ``{"type": "event"}`` lines on stdout)."""

    def __init__(self, *, json_lines: bool, out: IO[str] | None = None, interval_s: float = 1.0,
                 show_events: bool = True):
        self.json_lines = json_lines
        self.out = out or sys.stdout
        self.interval_s = interval_s
        self.show_events = show_events
        self._last = -1e9

    def __call__(self, frame: Frame) -> None:
        if self.json_lines:
            # every event is its own line, whichever frame carried it (progress lines are 1 per second)
            for event in frame.events:
                self.out.write(orjson.dumps({"type": "event", "elapsed_s": round(frame.elapsed_s, 3),
                                             "wall_time": frame.wall_time, "text": event}).decode() + "\n")
        elif self.show_events:
            for event in frame.events:
                if "[server]" not in event:  # server chatter goes to the session log, not the console
                    print(f"  . {event}", file=sys.stderr)
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        if self.json_lines:
            self.out.write(orjson.dumps(frame_json(frame)).decode() + "\n")
        else:
            self.out.write(progress_line(frame) + "\n")
        self.out.flush()

    def summary(self, summary: dict[str, Any]) -> None:
        if self.json_lines:
            self.out.write(orjson.dumps({"type": "summary", **summary}).decode() + "\n")
        else:
            self.out.write(summary_text(summary))
        self.out.flush()


def _n(value: Any, spec: str = ",.1f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def reconcile_row(c: dict[str, Any]) -> str:
    """One compared quantity from a Reconciliation.to_dict(): client, server, gap and verdict."""
    return Comparison(**{k: v for k, v in c.items() if k != "gap"}).describe() + (
        "" if c["agrees"] is None else ("  [agrees]" if c["agrees"] else "  [DISAGREES]"))


def summary_text(summary: dict[str, Any]) -> str:
    """The run summary for people: what was held, over which window, and what it shows."""
    twin = " [digital twin: simulated numbers]" if summary.get("twin") else ""
    window = summary.get("steady_window")
    held = summary.get("agents")
    target = summary.get("target_agents", held)
    if window is None and "steady_window" in summary:
        head = (f"summary: profile {summary['profile']}{twin}, target {target} agents "
                f"({_n(summary.get('held_agents_recent'), '.2f')} held over the last 10 s), {summary['duration_s']:.0f} s; "
                f"{summary.get('steady_window_note', 'no steady window')} ({summary['stop_reason']})")
    else:
        head = (f"summary: profile {summary['profile']}{twin}, {_n(held, '.2f')} agents held (target {target}), "
                f"{summary['duration_s']:.0f} s (steady window {summary['steady_window_s']:.0f} s; "
                f"{summary['stop_reason']})")
    r = summary["requests"]
    lines = [
        "", head,
        f"  requests sent in the window: {r['completed']} completed, {r['failed']} failed"
        + (f", {r['in_flight']} in flight at the end" if r.get("in_flight") else "")
        + f"; {summary['output_tokens']:,} output tokens arrived ({_n(summary['output_tokens_per_s'])} tok/s)",
    ]
    ctx = summary["context_tokens"]
    if ctx.get("mean") is not None:
        lines.append("  context tokens over the window's requests: mean {}, p50 {}, p95 {}, max {}".format(
            *(_n(ctx.get(k), ",.0f") for k in ("mean", "p50", "p95", "max")))
            + (f" (max seen in the run {ctx['max_seen']:,})" if ctx.get("max_seen") else ""))
    for tier in summary["tiers"]:
        p25 = "-" if tier["output_tps_p25"] is None else f"{tier['output_tps_p25']:.1f}"
        p95 = "inf" if tier["ttft_p95_s"] is None else f"{tier['ttft_p95_s']:.2f}"
        verdict = (tier.get("verdict") or ("pass" if tier["pass"] else "fail")).upper()
        reason = f" ({tier['reason']})" if tier.get("reason") else ""
        lines.append(f"  {tier['name']} ({tier['output_tps']:g} tok/s, {tier['ttft_s']:g} s): P25 speed {p25} tok/s, "
                     f"P95 TTFT {p95} s -> {verdict}{reason}")
    power = summary["power"]
    by_boundary = summary.get("power_by_boundary") or {}
    if by_boundary:
        for name, b in by_boundary.items():
            mark = "" if b["status"] == "ok" else f" [{b['status'].upper()}: {b['note']}]"
            head = " (the run's boundary)" if name == power["boundary"] else ""
            lines.append(f"  power at {name}{head}, steady window: average {_n(b['avg_power_w'] and b['avg_power_w'] / 1000, '.2f')} kW "
                         f"over {b['devices']} devices ({b['source']}), {_n(b['tokens_per_joule'], '.3f')} tokens/J, "
                         f"{_n(b['agents_per_mw'], ',.0f')} agents/MW{mark}")
    elif power.get("avg_power_w"):
        lines.append(f"  power ({power['boundary']}, steady window): average {power['avg_power_w'] / 1000:.2f} kW, "
                     f"{(power.get('tokens_per_joule') or 0):.3f} tokens/J")
    elif power.get("note"):
        lines.append(f"  power: {power['note']}")
    if summary.get("agents_per_gpu") is not None:
        lines.append(f"  agents per GPU {summary['agents_per_gpu']:.3f}, agents per MW {_n(summary.get('agents_per_mw'), ',.0f')}"
                     f" ({power['boundary']} boundary)")
    client = summary.get("client") or {}
    if client.get("valid") is False:
        reasons = "; ".join(f"{x['reason']} ({x['seconds']:.1f} s)" for x in client.get("invalid_reasons", []))
        lines.append(f"  INVALID: {client.get('invalid_seconds', 0):.1f} s of the window not measurable: {reasons}")
        for advice in dict.fromkeys(advice_for(x["reason"]) for x in client.get("invalid_reasons", [])):
            lines.append(f"    -> {advice}")
    minimums = summary.get("aa_minimums")
    if minimums and "steady_s" in minimums:
        lines.append(f"  AA phase minimums {'met' if minimums['met'] else 'NOT met'}: steady {minimums['steady_s']:.0f} s"
                     f" (>= 600), {minimums['trajectories']} trajectories (>= 30), "
                     f"{minimums['agents_with_3_trajectories']} agents with >= 3")
    rec = summary.get("reconciliation")
    if rec:
        lines.append(f"  client vs server over {_n(rec.get('seconds'), '.0f')} s "
                     f"({rec['scrapes']} scrapes, workers {rec['workers'] or 'n/a'}): {rec['headline']}")
        lines += [f"    {reconcile_row(c)}" for c in rec.get("comparisons", [])]
    if summary.get("failure_causes"):
        lines.append("  failure causes: " + ", ".join(f"{k} x{v}" for k, v in summary["failure_causes"].items()))
    for warning in summary.get("warnings", []):
        lines.append(f"  WARNING: {warning}")
    if summary.get("segments"):
        from agentperf_tui.engine.segments import segments_text

        names = [t["name"] for t in summary["tiers"]]
        lines.append("  segments (one per server configuration; the summary above is the last one's window):")
        lines += ["    " + line for line in segments_text(summary["segments"], summary.get("segment_changes") or [],
                                                            names)]
    return "\n".join(lines) + "\n"
