"""Records a live session: frames, request records, log lines, operator actions, the summary.

A sink of the engine (``on_frame``, ``on_record``, ``on_event``); entries go through a queue to a
writer thread that wakes once a second, takes everything queued, and appends it as chunks of at
most one recorded second each, flushed, so the engine loop never waits on the disk and a killed
run loses at most the last second. (Waking per entry, as it first did, cost a thread switch per
request record: hundreds a second at thousands of agents.) Files are created 0600; nothing secret
is written (the profile's API key is only ever an env-var *name*).

**Agent rows are thinned by volume**: a frame's Agents-table rows are written when they changed
(a new rows object) and at least ``agent_rows_period(n)`` after the last rows written - every
frame up to 1,000 agents, then 0.25 s per 1,000 agents (1.25 s at 5,000, 5 s at 20,000), about
4,000 rows per recorded second. A frame written without them says ``"agents_kept": true``; every
frame of a thinned recording carries the row period in ``agents_refresh_s``; the reader gives it the last rows
written (record/reader.py). Every other field of every frame is written. At 5,000 agents the rows
were ~90 % of a frame's bytes and most of the recorder's CPU.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import zstandard

from agentperf_tui import __version__
from agentperf_tui.engine.frames import Frame
from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.record.format import (
    KIND_ACTION,
    KIND_EVENT,
    KIND_FRAME,
    KIND_HEADER,
    KIND_PHASE,
    KIND_RECORD,
    KIND_SUMMARY,
    SCHEMA_VERSION,
    encode_chunk,
)

FLUSH_INTERVAL_S = 1.0
SESSION_FILE = "session.aprec"
AGENT_ROWS_EVERY_FRAME_UP_TO = 1000
AGENT_ROWS_PERIOD_PER_1K_S = 0.25


def agent_rows_period(agents: int) -> float:
    """Seconds between the Agents-table rows a recording keeps: 0 (every frame) up to 1,000 agents,
    then 0.25 s per 1,000 agents, so a recording holds ~4,000 agent rows per second at any size."""
    if agents <= AGENT_ROWS_EVERY_FRAME_UP_TO:
        return 0.0
    return AGENT_ROWS_PERIOD_PER_1K_S * agents / 1000.0


def new_session_dir(root: Path, profile_name: str) -> Path:
    """``root/<UTC timestamp>-<profile>/``, created 0700."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in profile_name)
    path = root / f"{stamp}-{safe}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{safe}-{n}"
    path.mkdir(parents=True, mode=0o700)
    return path


class SessionRecorder:
    """Appends a session to ``<dir>/session.aprec``; close() writes the last chunk."""

    def __init__(self, directory: Path, header: dict[str, Any], clock: Any = time.monotonic):
        self.directory = directory
        self.path = directory / SESSION_FILE
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._queue: queue.SimpleQueue[tuple[str, float, Any] | None] = queue.SimpleQueue()
        self._compressor = zstandard.ZstdCompressor(level=3)
        self._closed = False
        self._closing = threading.Event()
        self._rows_written: object = None  # the AgentRows last written, and when (recorded time)
        self._rows_written_t = float("-inf")
        self.bytes_written = 0
        self.entries_written = 0
        self._clock = clock
        self._t0 = clock()
        self._thread = threading.Thread(target=self._run, name="agentperf-recorder", daemon=True)
        self._put(KIND_HEADER, {"schema_version": SCHEMA_VERSION, "tool_version": __version__,
                                "created_unix": time.time(), "monotonic_origin": self._t0, **header})
        self._thread.start()

    # -- sinks (any thread) ------------------------------------------------------------------
    def _put(self, kind: str, data: Any) -> None:
        if not self._closed:
            self._queue.put((kind, self._clock() - self._t0, data))

    def on_frame(self, frame: Frame) -> None:
        self._put(KIND_FRAME, frame)  # converted to a dict on the writer thread, off the engine loop

    def on_record(self, record: RequestRecord) -> None:
        self._put(KIND_RECORD, record)

    def on_event(self, line: str) -> None:
        self._put(KIND_EVENT, line)

    def on_action(self, action: str, **detail: Any) -> None:
        self._put(KIND_ACTION, {"action": action, **detail})

    def on_phase(self, phase: dict[str, Any]) -> None:
        self._put(KIND_PHASE, phase)

    def write_summary(self, summary: dict[str, Any]) -> None:
        self._put(KIND_SUMMARY, summary)

    # -- writer thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            closing = self._closing.wait(FLUSH_INTERVAL_S)
            batch: list[tuple[str, float, Any]] = []
            done = False
            while True:  # everything queued until now, in order
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    done = True
                    break
                batch.append(self._convert(item))
            # a chunk spans at most one second of recorded time (seeks read whole chunks)
            start = 0
            for i in range(1, len(batch) + 1):
                if i == len(batch) or batch[i][1] - batch[start][1] >= FLUSH_INTERVAL_S:
                    self._write(batch[start:i])
                    start = i
            if done or (closing and self._queue.empty()):
                return

    def _convert(self, item: tuple[str, float, Any]) -> tuple[str, float, Any]:
        """An entry as written: frames and records as dicts, a frame's agent rows thinned."""
        kind, t, data = item
        if isinstance(data, Frame):
            period = agent_rows_period(len(data.agents))
            keep = data.agents is self._rows_written or (period > 0 and t - self._rows_written_t < period)
            out = data.to_dict(include_agents=not keep)
            if period > 0:  # every frame of a thinned stretch says so (the replay's table header)
                out["agents_refresh_s"] = max(data.agents_refresh_s, period)
            if keep:
                out["agents_kept"] = True
            else:
                self._rows_written, self._rows_written_t = data.agents, t
            return kind, t, out
        if isinstance(data, RequestRecord):
            return kind, t, data.to_row()
        return item

    def _write(self, entries: list[tuple[str, float, Any]]) -> None:
        if not entries:
            return
        chunk = encode_chunk(entries, self._compressor)
        self._file.write(chunk)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.bytes_written += len(chunk)
        self.entries_written += len(entries)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._closing.set()
        self._thread.join(30)
        self._file.close()
