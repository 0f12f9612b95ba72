"""Fault injection for the twin: the failures a real serving stack shows, on demand.

Set at start with ``--fault-*`` flags or at run time with ``POST /twin/faults`` (loopback clients
only). Each rate is the probability that one chat request gets that fault; they are drawn from a
seeded generator so tests are reproducible.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields
from typing import Any

FAULT_FIELDS = {
    "http_error_rate": "share of chat requests answered with --fault-http-status",
    "http_status": "status for injected HTTP errors (500, 503 or 429)",
    "malformed_rate": "share of streams that get one malformed SSE line mid-stream",
    "truncate_rate": "share of streams cut off mid-stream (connection closed)",
    "stall_rate": "share of streams that stop sending for --fault-stall-s mid-stream",
    "abort_rate": "share of streams aborted mid-stream with SGLang's error event (data: {\"error\": ...}, [DONE])",
    "stall_s": "seconds a stalled stream sends nothing",
    "reset_rate": "share of requests whose connection is reset before any byte",
    "health_delay_s": "extra seconds /health_generate takes",
    "crash_after": "exit the twin after this many chat requests (0 = never)",
    "ignore_eos_drop_rate": "share of requests whose ignore_eos is dropped (they stop at a natural length)",
    "dcgm_drop_gpus": "leave the last N GPUs out of the dcgm-exporter output (a tray's exporter gone)",
    "dcgm_refresh_s": "dcgm-exporter values refresh only every N s (its -c interval; 0 = live)",
    "usage_drop_rate": "share of streams whose final usage chunk is left out (include_usage ignored)",
    "metrics_down": "1: /metrics answers 503 (the metrics endpoint gone); 0: back",
    "counter_reset": "1: zero the request counters once (as a server restart does), then back to 0",
}


INT_FIELDS = ("http_status", "crash_after", "dcgm_drop_gpus", "metrics_down", "counter_reset")


@dataclass
class Faults:
    http_error_rate: float = 0.0
    http_status: int = 503
    malformed_rate: float = 0.0
    truncate_rate: float = 0.0
    stall_rate: float = 0.0
    abort_rate: float = 0.0
    stall_s: float = 5.0
    reset_rate: float = 0.0
    health_delay_s: float = 0.0
    crash_after: int = 0
    ignore_eos_drop_rate: float = 0.0
    dcgm_drop_gpus: int = 0
    dcgm_refresh_s: float = 0.0
    usage_drop_rate: float = 0.0
    metrics_down: int = 0
    counter_reset: int = 0

    def update(self, values: dict[str, Any]) -> None:
        """Apply ``{field: value}``; raises ValueError naming an unknown field or a bad value."""
        types = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in types:
                raise ValueError(f"unknown fault {key!r}; known: {', '.join(sorted(types))}")
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"fault {key!r} must be a number >= 0, got {value!r}")
            if key.endswith("_rate") and value > 1:
                raise ValueError(f"fault {key!r} is a probability (0..1), got {value!r}")
            if key == "http_status" and value not in (429, 500, 502, 503, 504):
                raise ValueError(f"fault 'http_status' must be 429, 500, 502, 503 or 504, got {value!r}")
            setattr(self, key, int(value) if key in INT_FIELDS else float(value))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def any_stream_fault(self) -> bool:
        return bool(self.malformed_rate or self.truncate_rate or self.stall_rate or self.abort_rate)


class FaultDice:
    """Seeded draws of which fault (if any) a request gets."""

    def __init__(self, faults: Faults, seed: int):
        self.faults = faults
        self.rng = random.Random(seed + 7919)
        self.chat_requests = 0

    def hit(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate
