"""The Server panel: SGLang's state from /metrics, and the load generator's own health."""

from __future__ import annotations

from rich.markup import escape
from textual.widgets import Static

from agentperf_tui.engine.advice import advice_for
from agentperf_tui.engine.agent import STALL_DECODE_S
from agentperf_tui.engine.frames import EngineView, Frame
from agentperf_tui.tui import format as fmt


def engine_line(e: EngineView) -> str:
    """One engine type's line: its queues (PD queues included) and its own rates."""
    head = f"{e.engine_type:<7} run {fmt.num(e.running_reqs, '.0f')} queue {fmt.num(e.queued_reqs, '.0f')} req"
    if e.engine_type == "prefill":
        return (head + f"  bootstrap {fmt.num(e.bootstrap_queue_reqs, '.0f')} sending {fmt.num(e.inflight_queue_reqs, '.0f')}"
                + f"  cache hit {fmt.pct(e.cache_hit_rate)}  KV {fmt.pct(e.token_usage)}"
                + (f"  KV xfer {fmt.num(e.kv_transfer_ms_mean, '.0f', ' ms')} "
                   f"{fmt.num(e.kv_transfer_gb_s_mean, '.0f', ' GB/s')} (mean since start)"
                   if e.kv_transfer_ms_mean is not None else ""))
    if e.engine_type == "decode":
        return (head + f"  prealloc {fmt.num(e.prealloc_queue_reqs, '.0f')} receiving {fmt.num(e.transfer_queue_reqs, '.0f')}"
                + f"  gen {fmt.num(e.gen_throughput_tps, ',.0f', ' tok/s')}  accept {fmt.num(e.spec_accept_length, '.2f')}"
                + f"  KV {fmt.pct(e.token_usage)}")
    return head + f"  gen {fmt.num(e.gen_throughput_tps, ',.0f', ' tok/s')}  KV {fmt.pct(e.token_usage)}"


SHORT_NAMES = {"output tokens": "out", "prompt tokens": "prompt", "requests finished": "req",
               "cached tokens": "cached", "TTFT P50": "TTFT P50", "TTFT P95": "TTFT P95"}


def reconcile_lines(s) -> list[str]:
    """Client vs server over the live window: the outcome, then client / server per quantity."""
    if not s.reconcile_status:
        return []
    span = f" (last {s.reconcile_seconds:.0f} s)" if s.reconcile_seconds else ""
    if s.reconcile_status == "reconciled":
        head = f"client vs server{span}: [$success]reconciled[/]"
    elif s.reconcile_status == "disagree":
        head = f"client vs server{span}: [$error b]DISAGREE[/] " + escape(s.reconcile_reason[:160])
    elif s.reconcile_status == "undecided":
        head = f"client vs server{span}: undecided ({escape(s.reconcile_reason)})"
    else:
        head = f"client vs server: [$warning]{escape(s.reconcile_status + ': ' + s.reconcile_reason)}[/]"
    cells = []
    for row in s.reconcile_rows:
        name = SHORT_NAMES.get(row.quantity)
        if name is None or row.server is None or row.client is None:
            continue
        value = (f"{row.client:.2f}/{row.server:.2f} s" if row.unit == "s" else
                 f"{fmt.tokens(row.client)}/{fmt.tokens(row.server)}")
        mark = "" if row.agrees is None else ("[$success]ok[/]" if row.agrees else "[$error]X[/]")
        cells.append(f"{name} {value} {mark}".rstrip())
    return [head] + (["  " + "  ".join(cells)] if cells else [])


class ServerPanel(Static):
    ALLOW_MAXIMIZE = True
    compact = False  # set by the app on small terminals: validity right under the state line

    def update_frame(self, frame: Frame) -> None:
        s = frame.server
        c = frame.client
        state = f"[$error b]{s.state.upper()}[/]" if s.state == "failed" else f"[b]{s.state}[/b]"
        lines = [f"{state}  {s.url}  {s.version}"]
        if s.twin_tokens:
            lines.append(f"twin tokens: {s.twin_tokens}")
        if s.metrics_sources_total > 1 or s.metrics_sources_ok < s.metrics_sources_total:
            partial = s.metrics_sources_ok < s.metrics_sources_total
            lines.append(("[$warning]" if partial else "")
                         + f"metrics from {s.metrics_sources_ok} of {s.metrics_sources_total} workers"
                         + (" (totals partial)[/]" if partial else ""))
        if len(s.engines) > 1:  # PD disaggregation: prefill and decode are different machines' work
            lines += [engine_line(e) for e in s.engines]
            lines.append(f"KV usage {fmt.pct(s.token_usage)} (mean of the workers') of {fmt.tokens(s.max_total_tokens)} tok"
                         " (all workers)")
        else:
            lines += [
                f"running {fmt.num(s.running_reqs, '.0f')} req   queued {fmt.num(s.queued_reqs, '.0f')} req",
                f"KV usage {fmt.pct(s.token_usage)} of {fmt.tokens(s.max_total_tokens)} tok",
                f"prefix-cache hit {fmt.pct(s.cache_hit_rate)}   gen {fmt.num(s.gen_throughput_tps, ',.0f', ' tok/s')}",
                f"spec accept length {fmt.num(s.spec_accept_length, '.2f', ' tok/step')}",
            ]
        lines += reconcile_lines(s)
        lines += [
            f"client: loop lag {c.loop_lag_ms:.1f} ms (max {c.loop_lag_max_ms:.0f} ms)  CPU {c.cpu_pct:.0f} %  "
            f"RSS {c.rss_mib:.0f} MiB",
        ]
        if c.workers:
            lines.append(f"  {c.workers} worker processes: loop lag max {c.worker_lag_max_ms:.0f} ms  "
                         f"CPU {c.worker_cpu_pct:.0f} %  RSS {c.worker_rss_mib:.0f} MiB")
        validity: list[str] = []
        if not c.valid:
            validity = ["[$error b]CLIENT INVALID: " + escape("; ".join(c.invalid_reasons)) + "[/]"]
            validity += [f"  -> {escape(a)}" for a in dict.fromkeys(advice_for(r) for r in c.invalid_reasons)]
        if frame.stalled_agents:  # beside validity: requests the server stopped answering
            validity.append(f"[$error b]STALL: {frame.stalled_agents} agent(s)[/] - request without progress "
                            f"(no token for > {STALL_DECODE_S:.0f} s, or no first token for long; ? explains)")
        if validity:
            if self.compact:  # the panel is short: what decides the window's validity comes first
                lines[1:1] = validity
            else:
                lines += validity
        fmt.update_if_changed(self, "\n".join(lines))
        self.set_class(not c.valid, "invalid")
