"""Sorting and filtering of the per-agent table, as a pure function over a frame's columns.

Front ends ask for an order (list of row indices) and render only what is visible; nothing here
knows about widgets, so 5,000 agents cost one index sort per frame.
"""

from __future__ import annotations

import math

from agentperf_tui.engine.frames import AgentRows

SORT_KEYS = ("id", "state", "since", "turn", "context", "ttft", "tps", "rolling")
#: what each sort is called on screen: the table's own column headers
SORT_LABELS = {"id": "agent", "state": "state", "since": "in state", "turn": "turn", "context": "ctx tok",
               "ttft": "TTFT s", "tps": "tok/s", "rolling": "avg tok/s"}
FILTERS = ("all", "failing", "decode", "tool", "stalled")
_STATE_ORDER = {"prefill": 0, "decode": 1, "tool": 2, "queued": 3, "paused": 4, "retiring": 5}


def _num(value: float | None, missing: float) -> float:
    return missing if value is None or (isinstance(value, float) and math.isnan(value)) else value


def order_rows(rows: AgentRows, sort_key: str = "id", reverse: bool = False, filter_mode: str = "all") -> list[int]:
    """Row indices to show, filtered then sorted; missing values sort last."""
    n = len(rows)
    if filter_mode == "failing":
        # agents in trouble: a failed request, or missing even the first (loosest) tier - not every
        # agent below the strictest tier, which may be out of reach for all of them
        idx = [i for i in range(n) if (rows.tier_pass[i] and rows.tier_pass[i][0] is False) or rows.failures[i] > 0]
    elif filter_mode == "stalled":
        idx = [i for i in range(n) if rows.stalled[i]]
    elif filter_mode in ("decode", "tool"):
        idx = [i for i in range(n) if rows.states[i] == filter_mode]
    else:
        idx = list(range(n))
    if sort_key == "id":
        keyf = rows.ids.__getitem__
    elif sort_key == "state":
        keyf = lambda i: -1 if rows.stalled[i] else _STATE_ORDER.get(rows.states[i], 9)  # noqa: E731  (stalls first)
    elif sort_key == "since":
        keyf = lambda i: _num(rows.state_s[i], -math.inf if reverse else math.inf)  # noqa: E731
    elif sort_key == "turn":
        keyf = rows.turns.__getitem__
    elif sort_key == "context":
        keyf = rows.context_tokens.__getitem__
    elif sort_key == "ttft":
        keyf = lambda i: _num(rows.last_ttft_s[i], math.inf if not reverse else -math.inf)  # noqa: E731
    elif sort_key == "tps":
        keyf = lambda i: _num(rows.last_tps[i], -math.inf if reverse else math.inf)  # noqa: E731
    elif sort_key == "rolling":
        keyf = lambda i: _num(rows.rolling_tps[i], -math.inf if reverse else math.inf)  # noqa: E731
    else:
        raise ValueError(f"unknown sort key {sort_key!r}; one of {', '.join(SORT_KEYS)}")
    idx.sort(key=keyf, reverse=reverse)
    return idx
