"""The help screen (``?``): every key, and the definition and unit of every number on screen."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from agentperf_tui.engine.advice import ADVICE
from agentperf_tui.engine.agent import (
    STALL_DECODE_S,
    STALL_FIRST_TOKEN_MIN_S,
    STALL_FIRST_TOKEN_SHARE,
    first_token_stall_s,
)
from agentperf_tui.engine.client import Timeouts

KEYS = """[b]Keys[/b]
  + / -      agents +1 / -1            ] / [      agents +10 / -10
  * / /      double / halve agents     p          pause / resume load (agents finish their turn)
  s          start the auto-search     x          abort the running search (report: stopped)
  1..7       maximize a panel (again or Esc restores)
  o / O      sort the Agents table / reverse       f    filter: all, failing, decode, tool, stalled
  ?          this help                 q          quit (asks first while load runs: y / n)
  l          Log: the run's events only (default) / with the server processes' own log lines
  ctrl+p     command palette (every action above)
  replay:    space pause · < > slower/faster · left/right seek 10 s · n / N next/previous search phase
"""

_DECODE, _SHARE, _MIN = STALL_DECODE_S, STALL_FIRST_TOKEN_SHARE, STALL_FIRST_TOKEN_MIN_S
_FIRST = first_token_stall_s(Timeouts().first_byte_s)

METRICS = f"""[b]Definitions[/b]
  TTFT (s)            time from sending a request to the first streamed token of any kind
                      (reasoning, content or tool call), timed when the bytes arrive.
  output speed        (output tokens - 1) / (time of last token - time of first token), tok/s;
                      excludes TTFT. Output tokens come from the server's usage chunk.
  P25 speed, P95 TTFT nearest-rank percentiles over the window's requests (so P95 TTFT <= L is
                      exactly ">= 95 % of requests within L"); a failed request counts as speed 0
                      and TTFT infinite.
  tier verdict        PASS: P25 speed >= tier tok/s AND P95 TTFT <= tier seconds (AA's rule) even
                      if every request still in flight turned out slow, on >= 20 finished requests.
                      FAIL: misses whatever the in-flight requests do. UNDECIDED: otherwise.
  compliance          share of the window's finished requests meeting both targets of a tier.
  window              requests sent in the last 60 s, in flight included (live); summaries: sent in
                      the steady window (30 s after every agent of the last target had started).
  in state (s)        how long an agent has been in the state shown: prefill since its request was
                      sent, decode since the first token, tool / queued / paused since they began.
  STALL               an agent whose request stopped making progress: in decode, no new token or
                      byte for > {_DECODE:.0f} s; waiting for its first token, longer than {_SHARE:.0%} of the
                      first-byte timeout (at least {_MIN:.0f} s; {_FIRST:.0f} s with the default timeout). Counted
                      beside validity (Server panel) and over the Agents table; f shows only them.
  effective concurrency  time-average of agents with a request in flight or in tool time.
  context tokens      (ctx tok) prompt + output tokens of an agent's latest call; growth = prompt increase
                      between consecutive turns (tok/turn).
  power (W)           from GPU energy counters (NVML or dcgm-exporter); average power = energy
                      delta / time. Boundary gpu = GPU boards only (what AA divides by).
  tokens/J            output tokens / energy over the same interval.
  agents/MW           agents / (power in MW); live value uses the last ~5 s of energy.
  KV usage            sglang:token_usage - share of the KV pool in use; prefix-cache hit =
                      sglang:cache_hit_rate; spec accept length = tokens accepted per verify step.
  loop lag (ms)       how late the load generator's event loop wakes; > 100 ms, dispatch p99
                      > 50 ms or concurrency < 98% of target marks the window CLIENT INVALID.
  worker processes    agents run in N worker processes once one core is not enough (--workers);
                      each one's loop lag counts too, and one silent > 1 s or dead invalidates.
  margin (+273%)      how far a tier's measured value clears its target: P25 speed / tier tok/s - 1
                      and 1 - P95 TTFT / tier seconds; negative = misses the tier by that share.
  client vs server    the client's counts (tokens, requests, TTFT) against SGLang's /metrics over
                      the same scrapes: reconciled, disagree (with sizes), undecided, unreconciled.
"""


def validity_advice() -> str:
    """Every CLIENT INVALID reason with what to do about it (engine/advice.py)."""
    lines = ["[b]When the window is CLIENT INVALID[/b]"]
    for prefix, advice in ADVICE:
        lines.append(f"  {prefix.strip():<22}{escape(advice)}")
    return "\n".join(lines) + "\n"


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss_help", "Close", id="help.close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 110; height: 44; border: thick $accent; background: $surface;
                                  padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(KEYS)
            yield Static(METRICS)
            yield Static(validity_advice())

    def action_dismiss_help(self) -> None:
        self.dismiss(None)


class ConfirmQuit(ModalScreen[bool]):
    """Asked on quit while load runs: y confirms, n or Esc cancels."""

    BINDINGS = [Binding("y", "answer(True)", "Yes, quit", id="quit.yes"),
                Binding("n,escape", "answer(False)", "No", id="quit.no")]
    DEFAULT_CSS = """
    ConfirmQuit { align: center middle; }
    ConfirmQuit > Static { width: 60; height: 5; border: thick $error; background: $surface;
                           content-align: center middle; }
    """

    def compose(self) -> ComposeResult:
        yield Static("Stop the load and the server, and quit?\n\n[b]y[/b] yes   [b]n[/b] / Esc no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
