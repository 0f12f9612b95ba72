"""The one energy account: energy and power over a window from cumulative counters keyed by device.

Every power figure the tool reports (phases, summaries, the dashboard, reports) is an
``EnergyWindow`` from here. A window's energy is the sum, over the devices present at both of
its ends, of each device's counter delta; power is that energy over the time between the two
readings. What could make it wrong is named on the window, never hidden:

- a device missing at either end (an exporter missed a scrape, a BMC did not answer): the
  window is ``partial`` and lists the device; its energy covers the devices present only;
- a counter that went backwards (driver reload, BMC reset, wrap): that device contributes its
  count since the reset (a lower bound) and the window is ``partial``;
- a counter that did not move for >= ``stale_after_s`` while its device reported drawing power
  (dcgm-exporter refreshes its fields every 30 s by default): the window is ``stale``, with the
  fix in the message (run dcgm-exporter with ``-c 1000``).

Devices are keyed by what identifies them globally: GPU UUID (else host:index), BMC chassis URL.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from agentperf_tui.telemetry.samples import PowerReading

OK = "ok"
PARTIAL = "partial"
STALE = "stale"
NONE = "none"
STALE_HINT = "dcgm-exporter refreshes every 30 s by default: run it with -c 1000"


@dataclass(frozen=True, slots=True)
class EnergySnapshot:
    """Cumulative energy (J) and instantaneous power (W) per device at one instant (monotonic s)."""

    t_s: float
    energy_j: dict[str, float | None]
    power_w: dict[str, float | None] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def of_gpus(cls, reading: PowerReading) -> EnergySnapshot:
        energy, power = {}, {}
        for g in reading.gpus:
            key = g.uuid or f"{g.host}:{g.gpu}"
            energy[key] = g.energy_j
            power[key] = g.power_w
        source = reading.gpus[0].source if reading.gpus else ""
        return cls(reading.t_s, energy, power, source)

    @property
    def total_power_w(self) -> float | None:
        values = list(self.power_w.values())
        if not values or any(v is None for v in values):
            return None
        return float(sum(values))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class EnergyWindow:
    """Energy and average power between two snapshots, and why it might not be the whole truth."""

    t_from: float
    t_to: float
    energy_j: float | None
    devices: int  # devices counted (present with a counter at both ends)
    devices_seen: int  # devices present at either end
    status: str  # ok | partial | stale | none
    note: str = ""
    missing: tuple[str, ...] = ()
    reset: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    source: str = ""

    @property
    def seconds(self) -> float:
        return max(0.0, self.t_to - self.t_from)

    @property
    def avg_power_w(self) -> float | None:
        if self.energy_j is None or self.seconds <= 0:
            return None
        return self.energy_j / self.seconds

    @property
    def measured(self) -> bool:
        """Whole and current: the only status agents/MW is computed from."""
        return self.status == OK

    def to_dict(self) -> dict:
        return {"energy_j": None if self.energy_j is None else round(self.energy_j, 3),
                "avg_power_w": None if self.avg_power_w is None else round(self.avg_power_w, 3),
                "seconds": round(self.seconds, 3), "devices": self.devices, "devices_seen": self.devices_seen,
                "status": self.status, "note": self.note, "missing": list(self.missing), "reset": list(self.reset),
                "stale": list(self.stale), "source": self.source}


class EnergyAccount:
    """Keeps each device's counter history just long enough to tell stale counters apart."""

    def __init__(self, stale_after_s: float = 2.0, min_power_w: float = 1.0):
        self.stale_after_s = stale_after_s
        self.min_power_w = min_power_w
        self._last: dict[str, tuple[float, float]] = {}  # device -> (counter value, time it last changed)
        self._stale: dict[str, list[list[float]]] = {}  # device -> [[start, end], ...] stale intervals
        self.latest: EnergySnapshot | None = None
        self.recent: deque[EnergySnapshot] = deque(maxlen=128)

    def add(self, snap: EnergySnapshot) -> None:
        for key, energy in snap.energy_j.items():
            if energy is None:
                continue
            last = self._last.get(key)
            if last is None or energy != last[0]:
                self._last[key] = (energy, snap.t_s)
                continue
            power = snap.power_w.get(key)
            unchanged_s = snap.t_s - last[1]
            if unchanged_s >= self.stale_after_s and power is not None and power >= self.min_power_w:
                spans = self._stale.setdefault(key, [])
                if spans and spans[-1][1] >= last[1]:
                    spans[-1][1] = snap.t_s
                else:
                    spans.append([last[1], snap.t_s])
        self.latest = snap
        self.recent.append(snap)

    def recent_window(self, span_s: float = 5.0) -> EnergyWindow:
        """Power now: the window from the oldest snapshot within ``span_s`` of the latest (at least
        0.5 s before it) to the latest."""
        last = self.latest
        if last is None:
            return self.window(None, None)
        for older in self.recent:
            if 0.5 <= last.t_s - older.t_s <= span_s:
                return self.window(older, last)
        return self.window(None, last)

    def silent_for(self, now: float, min_gap_s: float = 3.0) -> float | None:
        """Seconds since the latest snapshot when that is longer than 5 poll intervals (and
        ``min_gap_s``): the source went quiet, so a window ending at its last reading is short."""
        if self.latest is None or len(self.recent) < 2:
            return None
        snaps = list(self.recent)[-10:]
        gaps = sorted(b.t_s - a.t_s for a, b in zip(snaps, snaps[1:], strict=False))
        interval = gaps[len(gaps) // 2] if gaps else 1.0
        gap = now - self.latest.t_s
        return gap if gap > max(min_gap_s, 5 * interval) else None

    def stale_between(self, t_from: float, t_to: float) -> list[str]:
        return sorted(k for k, spans in self._stale.items() if any(a < t_to and b > t_from for a, b in spans))

    def window(self, first: EnergySnapshot | None, last: EnergySnapshot | None) -> EnergyWindow:
        if first is None or last is None or last.t_s <= first.t_s:
            t0 = first.t_s if first else 0.0
            return EnergyWindow(t0, last.t_s if last else t0, None, 0, 0, NONE, "no two energy readings yet")
        a, b = first.energy_j, last.energy_j
        seen = set(a) | set(b)
        missing = sorted(k for k in seen if a.get(k) is None or b.get(k) is None)
        total = 0.0
        counted = 0
        reset = []
        for key in sorted(seen - set(missing)):
            e0, e1 = a[key], b[key]
            assert e0 is not None and e1 is not None
            if e1 < e0:  # reset or wrap: what it counted since
                reset.append(key)
                total += e1
            else:
                total += e1 - e0
            counted += 1
        stale = self.stale_between(first.t_s, last.t_s)
        notes = []
        if missing:
            notes.append(f"{len(missing)} of {len(seen)} devices missing at a window end ({', '.join(missing[:3])}"
                         + (", ..." if len(missing) > 3 else "") + "): energy covers the rest only")
        if reset:
            notes.append(f"counter reset on {', '.join(reset[:3])}: counted from the reset")
        if stale:
            notes.append(f"energy counter not moving on {len(stale)} device(s) while drawing power ({STALE_HINT})")
        if counted == 0:
            status = NONE
        elif stale:
            status = STALE
        elif missing or reset:
            status = PARTIAL
        else:
            status = OK
        return EnergyWindow(first.t_s, last.t_s, total if counted else None, counted, len(seen), status,
                            "; ".join(notes), tuple(missing), tuple(reset), tuple(stale), last.source or first.source)


def silent_window(window: EnergyWindow, silent_s: float) -> EnergyWindow:
    """``window`` marked stale because its source has been silent for ``silent_s`` since its end."""
    from dataclasses import replace

    note = f"no reading for the last {silent_s:.0f} s (source silent): power covers only up to its last reading"
    return replace(window, status=STALE if window.status in (OK, STALE) else window.status,
                   note="; ".join(x for x in (window.note, note) if x))
