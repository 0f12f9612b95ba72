"""Records a live session: frames, request records, log lines, operator actions, the summary.

A sink of the engine (``on_frame``, ``on_record``, ``on_event``); entries go through a queue to a
writer thread that compresses and appends a chunk at most every second and flushes it, so the
engine loop never waits on the disk. Files are created 0600; nothing secret is written (the
profile's API key is only ever an env-var *name*).
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
        pending: list[tuple[str, float, Any]] = []
        next_flush = time.monotonic() + FLUSH_INTERVAL_S
        while True:
            timeout = max(0.0, next_flush - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = ()  # type: ignore[assignment]
            if item is None:
                self._write(pending)
                return
            if item:
                kind, t, data = item  # type: ignore[misc]
                if isinstance(data, Frame):
                    data = data.to_dict()
                elif isinstance(data, RequestRecord):
                    data = data.to_row()
                pending.append((kind, t, data))
            # a chunk per second of wall time, and at most one second of recorded time per chunk
            if time.monotonic() >= next_flush or (pending and pending[-1][1] - pending[0][1] >= FLUSH_INTERVAL_S):
                self._write(pending)
                pending = []
                next_flush = time.monotonic() + FLUSH_INTERVAL_S

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
        self._thread.join(30)
        self._file.close()
