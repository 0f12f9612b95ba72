"""The Server panel: SGLang's state from /metrics, and the load generator's own health."""

from __future__ import annotations

from textual.widgets import Static

from agentperf_tui.engine.frames import Frame
from agentperf_tui.tui import format as fmt


class ServerPanel(Static):
    ALLOW_MAXIMIZE = True

    def update_frame(self, frame: Frame) -> None:
        s = frame.server
        c = frame.client
        lines = [
            f"[b]{s.state}[/b]  {s.url}  {s.version}",
            f"running {fmt.num(s.running_reqs, '.0f')} req   queued {fmt.num(s.queued_reqs, '.0f')} req",
            f"KV usage {fmt.pct(s.token_usage)} of {fmt.tokens(s.max_total_tokens)} tok",
            f"prefix-cache hit {fmt.pct(s.cache_hit_rate)}   gen {fmt.num(s.gen_throughput_tps, ',.0f', ' tok/s')}",
            f"spec accept length {fmt.num(s.spec_accept_length, '.2f', ' tok/step')}",
            f"client: loop lag {c.loop_lag_ms:.1f} ms (max {c.loop_lag_max_ms:.0f} ms)  CPU {c.cpu_pct:.0f} %  "
            f"RSS {c.rss_mib:.0f} MiB",
        ]
        if c.workers:
            lines.append(f"  {c.workers} worker processes: loop lag max {c.worker_lag_max_ms:.0f} ms  "
                         f"CPU {c.worker_cpu_pct:.0f} %  RSS {c.worker_rss_mib:.0f} MiB")
        if not c.valid:
            lines.append("[$error b]CLIENT INVALID: " + "; ".join(c.invalid_reasons) + "[/]")
        fmt.update_if_changed(self, "\n".join(lines))
        self.set_class(not c.valid, "invalid")
