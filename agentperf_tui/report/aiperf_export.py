"""Export a recorded session in AIPerf 0.13's file layout (and as plain CSV) for the tools people already use.

AIPerf's ``aiperf plot`` treats a folder as one run when it holds ``profile_export.jsonl`` (one
``MetricRecordInfo`` per request) and ``profile_export_aiperf.json`` (aggregates); a folder of
such runs is a multi-run comparison. Written here, as AIPerf 0.13.0 writes them (read from its
wheel: post_processors/record_export_jsonl_writer.py, exporters/metrics_json_exporter.py,
exporters/metrics_csv_exporter.py, common/models/record_models.py, export_models.py):

- per request: ``{"metadata": {...}, "metrics": {tag: {"value", "unit"}}, "error"?}``, compact JSON,
  ``None`` left out; times are wall-clock integer nanoseconds, latencies in ms, speeds in
  ``tokens/sec/user``; a failed request carries ``error.message`` and only ``error_isl``.
- aggregates: ``metric tag -> {unit, avg, p1..p99, min, max, std, count, sum}`` beside
  ``schema_version`` 1.4, ``start_time``/``end_time`` (local ISO strings), ``was_cancelled``,
  ``error_summary``. AIPerf's strict ``input_config`` (its own benchmark config) is left out;
  what ran is in ``metadata`` (model, agents, profile, twin or real, the window).
- ``profile_export_aiperf.csv``: the stats table, a blank row, the ``Metric,Value`` table (CRLF).

Layout: ``OUT/run/`` holds every request of the session; for a search, ``OUT/phase_NN_Magents/``
holds each valid phase's requests (sent in its window), so ``aiperf plot OUT`` compares the
agent counts. ``OUT/requests.csv`` and ``OUT/phases.csv`` are plain CSV of every record and phase.
The numbers are ours (client-side, AA's definitions: speed = (tokens - 1) / (last - first token));
AIPerf's own extra series (HTTP trace timings, inter-chunk lists) are not invented.
"""

from __future__ import annotations

import csv
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from agentperf_tui import __version__
from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.record.reader import SessionReader

SCHEMA_VERSION = "1.4"  # AIPerf 0.13.0's JsonExportData.SCHEMA_VERSION
STAT_KEYS = ("avg", "min", "max", "sum", "p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "std")
PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
#: tag -> (unit, CSV header) for the per-request metrics we measure
RECORD_METRICS = {
    "request_latency": ("ms", "Request Latency"),
    "time_to_first_token": ("ms", "Time to First Token"),
    "inter_token_latency": ("ms", "Inter Token Latency"),
    "output_token_throughput_per_user": ("tokens/sec/user", "Output Token Throughput Per User"),
    "input_sequence_length": ("tokens", "Input Sequence Length"),
    "output_sequence_length": ("tokens", "Output Sequence Length"),
}


def _ns(wall_origin: float, mono_origin: float, t: float) -> int:
    return int(round((wall_origin + (t - mono_origin)) * 1e9))


def record_line(r: RequestRecord, wall_origin: float, mono_origin: float) -> dict[str, Any]:
    """One AIPerf ``MetricRecordInfo`` for one request (``None`` values left out, as AIPerf does)."""
    metadata: dict[str, Any] = {
        "session_num": r.agent_id, "x_request_id": r.request_id or None, "x_correlation_id": r.correlation_id or None,
        "conversation_id": r.trajectory_id, "turn_index": r.turn_index,
        "request_start_ns": _ns(wall_origin, mono_origin, r.t_send),
        "request_end_ns": _ns(wall_origin, mono_origin, r.t_end),
        "worker_id": f"agentperf-tui-agent-{r.agent_id}", "record_processor_id": "agentperf-tui",
        "benchmark_phase": "profiling", "was_cancelled": False,
    }
    line: dict[str, Any] = {"metadata": {k: v for k, v in metadata.items() if v is not None}}
    if not r.ok:
        line["metrics"] = {"error_isl": {"value": r.prompt_tokens, "unit": "tokens"}}
        line["error"] = {"message": r.cause or "failed", "type": "agentperf-tui"}
        return line
    metrics = _request_metrics(r)
    line["metrics"] = {tag: {"value": value, "unit": RECORD_METRICS[tag][0]} for tag, value in metrics.items()}
    if r.usage:
        line["metrics"]["usage_prompt_tokens"] = {"value": r.prompt_tokens, "unit": "tokens"}
        line["metrics"]["usage_completion_tokens"] = {"value": r.output_tokens, "unit": "tokens"}
    line["metrics"]["output_token_count"] = {"value": r.output_tokens, "unit": "tokens"}
    return line


def _request_metrics(r: RequestRecord) -> dict[str, float]:
    out: dict[str, float] = {"request_latency": (r.t_end - r.t_send) * 1000.0,
                             "input_sequence_length": r.prompt_tokens, "output_sequence_length": r.output_tokens}
    if r.ttft_s is not None:
        out["time_to_first_token"] = r.ttft_s * 1000.0
    if r.output_tps is not None:
        out["output_token_throughput_per_user"] = r.output_tps
        out["inter_token_latency"] = 1000.0 / r.output_tps
    return out


def _stats(values: list[float], unit: str) -> dict[str, Any]:
    """AIPerf's JsonMetricResult: numpy-style linear percentiles, population std."""
    ordered = sorted(values)
    n = len(ordered)
    mean = sum(ordered) / n

    def pct(p: float) -> float:
        k = (n - 1) * p / 100.0
        lo, hi = math.floor(k), math.ceil(k)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)

    result: dict[str, Any] = {"unit": unit, "avg": mean}
    result.update({f"p{p}": pct(p) for p in PERCENTILES})
    result.update(min=ordered[0], max=ordered[-1], std=math.sqrt(sum((v - mean) ** 2 for v in ordered) / n),
                  count=n, sum=sum(ordered))
    return result


def aggregate(records: list[RequestRecord], wall_origin: float, mono_origin: float,
              metadata: dict[str, Any]) -> dict[str, Any]:
    """``profile_export_aiperf.json`` for these requests."""
    ok = [r for r in records if r.ok]
    t0 = min((r.t_send for r in records), default=mono_origin)
    t1 = max((r.t_end for r in records), default=mono_origin)
    duration = max(t1 - t0, 1e-9)
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "agentperf_tui_version": __version__}
    per_tag: dict[str, list[float]] = {tag: [] for tag in RECORD_METRICS}
    for r in ok:
        for tag, value in _request_metrics(r).items():
            per_tag[tag].append(value)
    for tag, values in per_tag.items():
        if values:
            data[tag] = _stats(values, RECORD_METRICS[tag][0])
    output = sum(r.output_tokens for r in ok)
    data.update({
        "request_throughput": {"unit": "requests/sec", "avg": len(ok) / duration},
        "output_token_throughput": {"unit": "tokens/sec", "avg": output / duration},
        "request_count": {"unit": "requests", "avg": float(len(ok))},
        "error_request_count": {"unit": "requests", "avg": float(len(records) - len(ok))},
        "benchmark_duration": {"unit": "sec", "avg": duration},
    })
    gpus = metadata.get("gpus")
    if gpus:
        data["output_token_throughput_per_gpu"] = {"unit": "tokens/sec/gpu", "avg": output / duration / gpus}
    causes: dict[str, int] = {}
    for r in records:
        if not r.ok:
            causes[r.cause or "failed"] = causes.get(r.cause or "failed", 0) + 1
    data.update({
        "was_cancelled": False,
        "error_summary": [{"error_details": {"message": m, "type": "agentperf-tui"}, "count": c}
                          for m, c in sorted(causes.items())],
        "start_time": datetime.fromtimestamp(wall_origin + (t0 - mono_origin)).isoformat(),
        "end_time": datetime.fromtimestamp(wall_origin + (t1 - mono_origin)).isoformat(),
        "metadata": metadata,
    })
    return data


def aggregate_csv(data: dict[str, Any]) -> str:
    """``profile_export_aiperf.csv``: the stats table, a blank row, the ``Metric,Value`` table (CRLF)."""
    rows: list[list[str]] = [["Metric", *STAT_KEYS]]
    scalars: list[list[str]] = [["Metric", "Value"]]
    headers = {**{t: h for t, (_, h) in RECORD_METRICS.items()}, "request_throughput": "Request Throughput",
               "output_token_throughput": "Output Token Throughput", "request_count": "Request Count",
               "error_request_count": "Error Request Count", "benchmark_duration": "Benchmark Duration",
               "output_token_throughput_per_gpu": "Output Token Throughput Per GPU"}

    def label(tag: str, unit: str) -> str:
        return headers[tag] + ("" if unit in ("count", "requests") else f" ({unit})")

    def num(v: Any) -> str:
        return "" if v is None else (f"{v:d}" if isinstance(v, int) else f"{v:.2f}")

    for tag in sorted(k for k, v in data.items() if isinstance(v, dict) and "unit" in v and k in headers):
        m = data[tag]
        if "p50" in m:
            rows.append([label(tag, m["unit"]), *(num(m.get(k)) for k in STAT_KEYS)])
        else:
            scalars.append([label(tag, m["unit"]), num(m["avg"])])
    out: list[str] = []
    for row in rows + [[]] + scalars:
        out.append(",".join(_csv_cell(c) for c in row))
    return "\r\n".join(out) + "\r\n"


def _csv_cell(value: str) -> str:
    return f'"{value}"' if "," in value or '"' in value else value


def _write_run(directory: Path, records: list[RequestRecord], wall: float, mono: float,
               metadata: dict[str, Any]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    jsonl = directory / "profile_export.jsonl"
    with jsonl.open("wb") as f:
        for r in records:
            f.write(orjson.dumps(record_line(r, wall, mono)) + b"\n")
    data = aggregate(records, wall, mono, metadata)
    agg = directory / "profile_export_aiperf.json"
    agg.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    table = directory / "profile_export_aiperf.csv"
    table.write_bytes(aggregate_csv(data).encode())
    return [jsonl, agg, table]


PHASE_COLUMNS = ("phase", "agents", "repeat", "status", "invalid", "duration_s", "requests_finished",
                 "requests_failed", "in_flight", "output_tokens_per_s", "avg_power_w", "tokens_per_joule",
                 "reconciliation")


def export_session(session: str | Path, out: Path) -> list[Path]:
    """Write the AIPerf layout and the plain CSVs for one recorded session; returns the files written."""
    reader = SessionReader(session)
    header = reader.header
    wall, mono = float(header.get("created_unix", 0.0)), float(header.get("monotonic_origin", 0.0))
    records, phases = reader.records_and_phases()
    summary = reader.summary() or {}
    base = {"tool": "agentperf-tui", "profile": header.get("profile", ""), "gpus": header.get("gpus"),
            "twin": summary.get("twin"), "model": header.get("model") or (summary.get("server") or {}).get("model"),
            "server": summary.get("server"), "workload": header.get("workload"),
            "note": "client-side measurements by agentperf-tui (AA-AgentPerf definitions), in AIPerf's layout"}
    out.mkdir(parents=True, exist_ok=True)
    written = _write_run(out / "run", records, wall, mono,
                         {**base, "variation_label": f"{base['profile']} whole session", "agents": header.get("agents")})
    for i, phase in enumerate(phases, 1):
        t0, t1 = phase.get("window_t0"), phase.get("window_t1")
        if not phase.get("valid") or t0 is None or t1 is None:
            continue
        mine = [r for r in records if t0 <= r.t_send < t1]
        if mine:
            written += _write_run(out / f"phase_{i:02d}_{phase['agents']}agents", mine, wall, mono,
                                  {**base, "variation_label": f"{phase['agents']} agents", "agents": phase["agents"],
                                   "phase": i})
    req_csv = out / "requests.csv"
    with req_csv.open("w", newline="") as f:
        writer = csv.writer(f)
        columns = list(RequestRecord.to_row(records[0]).keys()) if records else ["agent"]
        writer.writerow(columns + ["ttft_s", "output_tps"])
        for r in records:
            row = r.to_row()
            writer.writerow([row[c] for c in columns] + [r.ttft_s, r.output_tps])
    phase_csv = out / "phases.csv"
    with phase_csv.open("w", newline="") as f:
        writer = csv.writer(f)
        tier_names = [t["name"] for t in phases[0]["tiers"]] if phases else []
        writer.writerow(list(PHASE_COLUMNS) + [f"{n}_{k}" for n in tier_names
                                               for k in ("p25_tok_s", "p95_ttft_s", "verdict")])
        for i, p in enumerate(phases, 1):
            req = p.get("requests", {})
            tiers = {t["name"]: t for t in p.get("tiers", [])}
            writer.writerow([i, p["agents"], p.get("repeat"), p.get("status"), p.get("invalid"), p.get("duration_s"),
                             req.get("finished"), req.get("failed"), req.get("in_flight"), p.get("output_tokens_per_s"),
                             p.get("avg_power_w"), p.get("tokens_per_joule"),
                             (p.get("reconciliation") or {}).get("headline", "")]
                            + [v for n in tier_names for v in (tiers.get(n, {}).get("output_tps_p25"),
                                                               tiers.get(n, {}).get("ttft_p95_s"),
                                                               tiers.get(n, {}).get("verdict"))])
    return written + [req_csv, phase_csv]
