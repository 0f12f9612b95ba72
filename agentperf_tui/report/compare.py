"""Two sessions side by side (``agentperf-tui compare A B``): what each measured, and the change.

A session that ran a search is compared by its search (per tier: the answer, agents/GPU,
agents/MW, the sample it rests on); its run-level figures describe only the load left running
when the search ended (often a 1-agent probe), so they are not compared as if they were the run.
A plain run is compared by its steady window. Every row says what it is, with its unit; numbers
are printed in full (no scientific notation); what a session does not have is "n/a".
"""

from __future__ import annotations

from typing import Any

from agentperf_tui.engine.segments import segments_text

Row = tuple[str, Any, Any]
MAX_CELL = 32


def _get(d: dict[str, Any] | None, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _kind(summary: dict[str, Any]) -> str:
    mode = _get(summary, "search", "mode")
    return f"search ({mode})" if mode else "run"


def _run_rows(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [
        ("agents held (steady window)", a.get("agents"), b.get("agents")),
        ("steady window s", a.get("steady_window_s"), b.get("steady_window_s")),
        ("requests completed (window)", _get(a, "requests", "completed"), _get(b, "requests", "completed")),
        ("requests failed (window)", _get(a, "requests", "failed"), _get(b, "requests", "failed")),
        ("output tok/s (window)", a.get("output_tokens_per_s"), b.get("output_tokens_per_s")),
        ("context mean tokens", _get(a, "context_tokens", "mean"), _get(b, "context_tokens", "mean")),
        ("avg power W", _get(a, "power", "avg_power_w"), _get(b, "power", "avg_power_w")),
        ("tokens per J", _get(a, "power", "tokens_per_joule"), _get(b, "power", "tokens_per_joule")),
        ("agents per GPU", a.get("agents_per_gpu"), b.get("agents_per_gpu")),
        ("agents per MW", a.get("agents_per_mw"), b.get("agents_per_mw")),
        ("client vs server", _get(a, "reconciliation", "status"), _get(b, "reconciliation", "status")),
    ]
    tiers_b = {t["name"]: t for t in b.get("tiers") or []}
    for t in a.get("tiers") or []:
        u = tiers_b.get(t["name"], {})
        rows.append((f"{t['name']} P25 tok/s", t.get("output_tps_p25"), u.get("output_tps_p25")))
        rows.append((f"{t['name']} P95 TTFT s", t.get("ttft_p95_s"), u.get("ttft_p95_s")))
        rows.append((f"{t['name']} verdict", t.get("verdict"), u.get("verdict")))
    return rows


def _search_rows(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    sa = {t["name"]: t for t in _get(a, "search", "tiers") or []}
    sb = {t["name"]: t for t in _get(b, "search", "tiers") or []}
    rows: list[Row] = [("search status", _get(a, "search", "status"), _get(b, "search", "status")),
                       ("search phases", _get(a, "search", "phases_run"), _get(b, "search", "phases_run"))]
    for name in sorted(set(sa) | set(sb)):
        ta, tb = sa.get(name, {}), sb.get(name, {})
        rows += [
            (f"{name} max agents", ta.get("max_agents"), tb.get("max_agents")),
            (f"{name} agents per GPU", ta.get("agents_per_gpu"), tb.get("agents_per_gpu")),
            (f"{name} agents per MW", ta.get("agents_per_mw"), tb.get("agents_per_mw")),
            (f"{name} avg power W", ta.get("avg_power_w"), tb.get("avg_power_w")),
            (f"{name} sample (finished req)", _get(ta, "sample", "finished"), _get(tb, "sample", "finished")),
        ]
        why_a, why_b = ta.get("why_zero"), tb.get("why_zero")
        if why_a or why_b:
            rows.append((f"{name} why 0", why_a or "-", why_b or "-"))
    return rows


def compare_rows(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [
        ("kind", _kind(a), _kind(b)),
        ("profile", a.get("profile"), b.get("profile")),
        ("numbers from", "digital twin" if a.get("twin") else "real server",
         "digital twin" if b.get("twin") else "real server"),
        ("server version", _get(a, "server", "version"), _get(b, "server", "version")),
        ("power boundary", _get(a, "power", "boundary"), _get(b, "power", "boundary")),
    ]
    if a.get("search") or b.get("search"):
        rows += _search_rows(a, b)
        rows.append(("(run rows: each session's final load, not the answer)", "", ""))
    rows += _run_rows(a, b)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def _diff(va: Any, vb: Any) -> str:
    if isinstance(va, bool) or isinstance(vb, bool):
        return "" if va == vb else "differs"
    if isinstance(va, int | float) and isinstance(vb, int | float):
        d = vb - va
        text = f"{d:+,}" if isinstance(d, int) else (f"{d:+,.3f}" if abs(d) < 10 else f"{d:+,.1f}")
        return text + (f" ({d / va:+.1%})" if va else "")
    return "" if va == vb else "differs"


def compare_text(a: dict[str, Any], b: dict[str, Any], path_a: str, path_b: str) -> str:
    rows = compare_rows(a, b)
    width = max(len(r[0]) for r in rows)
    cells = [(name, _cell(va), _cell(vb), _diff(va, vb)) for name, va, vb in rows]
    wa = max(16, *(len(c[1]) for c in cells))
    wb = max(16, *(len(c[2]) for c in cells))
    out = [f"A: {path_a}", f"B: {path_b}", "", f"{'':{width}}  {'A':>{wa}}  {'B':>{wb}}  B - A"]
    for name, ca, cb, d in cells:
        out.append(f"{name:{width}}  {ca:>{wa}}  {cb:>{wb}}  {d}".rstrip())
    for tag, summary in (("A", a), ("B", b)):  # a retuned session: every configuration it ran under
        if summary.get("segments"):
            names = [t["name"] for t in summary.get("tiers") or []]
            out += ["", f"Segments of {tag} (Tune: one per server configuration, each over its own steady window):"]
            out += ["  " + line for line in segments_text(summary["segments"], summary.get("segment_changes") or [],
                                                          names)]
    return "\n".join(out) + "\n"
