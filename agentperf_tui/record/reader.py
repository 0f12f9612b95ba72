"""Reads a recording: header, chunk index (for seeking), entries, frames, the summary.

Tolerant by design: a truncated or corrupt file is read up to its last whole chunk and the
problem is reported in ``warnings``; a newer schema version is a RecordingError. ``refresh()``
picks up chunks appended since (following a session that is still being written).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import zstandard

from agentperf_tui.engine.frames import AgentRows, Frame
from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.record.format import (
    CHUNK_HEADER,
    KIND_FRAME,
    KIND_HEADER,
    KIND_PHASE,
    KIND_RECORD,
    KIND_SUMMARY,
    MAGIC,
    SCHEMA_VERSION,
    RecordingError,
    decode_payload,
)
from agentperf_tui.record.writer import SESSION_FILE

#: chunks searched back for a seek's agent rows: rows are written at least every 5 s up to 20,000
#: agents (writer.agent_rows_period) and a chunk holds up to 1 s, so 30 covers 120,000 agents
ROWS_LOOKBACK_CHUNKS = 30


@dataclass(frozen=True, slots=True)
class ChunkIndex:
    offset: int
    length: int
    crc: int
    t_first: float
    t_last: float
    count: int


def resolve_session_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / SESSION_FILE
    if not p.exists():
        raise RecordingError(f"{path}: no recording found (expected a session folder or a {SESSION_FILE} file)")
    return p


class SessionReader:
    """Random access to one recording file."""

    def __init__(self, path: str | Path):
        self.path = resolve_session_path(path)
        self.chunks: list[ChunkIndex] = []
        self.warnings: list[str] = []
        self.header: dict[str, Any] = {}
        self._scanned_to = 0
        self._dctx = zstandard.ZstdDecompressor()
        self._bad_at: int | None = None
        self.refresh()
        if not self.chunks:
            raise RecordingError(f"{self.path}: empty or not an agentperf-tui recording")
        first = self._load(self.chunks[0])
        if not first or first[0][0] != KIND_HEADER:
            raise RecordingError(f"{self.path}: first chunk has no header entry")
        self.header = first[0][2]
        version = self.header.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise RecordingError(
                f"{self.path}: schema version {version} is newer than this tool reads ({SCHEMA_VERSION}); "
                "upgrade agentperf-tui")

    def refresh(self) -> int:
        """Index chunks appended since the last scan; returns how many were added."""
        added = 0
        size = self.path.stat().st_size
        with self.path.open("rb") as f:
            offset = self._scanned_to
            while offset + CHUNK_HEADER.size <= size:
                f.seek(offset)
                raw = f.read(CHUNK_HEADER.size)
                magic, length, crc, t_first, t_last, count = CHUNK_HEADER.unpack(raw)
                if magic != MAGIC:
                    self._warn_once(offset, f"corrupt data at byte {offset}: replaying up to there")
                    break
                end = offset + CHUNK_HEADER.size + length
                if end > size:
                    break  # a chunk still being written, or a truncated file
                self.chunks.append(ChunkIndex(offset + CHUNK_HEADER.size, length, crc, t_first, t_last, count))
                offset = end
                added += 1
            self._scanned_to = offset
        return added

    def check_complete(self) -> None:
        """Warn if bytes remain past the last whole chunk (truncation)."""
        size = self.path.stat().st_size
        if size > self._scanned_to and self._bad_at is None:
            self._warn_once(self._scanned_to, f"truncated recording: {size - self._scanned_to} bytes after "
                                              f"the last whole chunk were ignored")

    def _warn_once(self, offset: int, message: str) -> None:
        if self._bad_at is None:
            self._bad_at = offset
            self.warnings.append(f"{self.path}: {message}")

    def _load(self, chunk: ChunkIndex) -> list[list]:
        with self.path.open("rb") as f:
            f.seek(chunk.offset)
            payload = f.read(chunk.length)
        try:
            return decode_payload(payload, chunk.crc, self._dctx)
        except Exception as exc:  # corrupt payload: stop here, keep what was good
            self._warn_once(chunk.offset, f"corrupt chunk at byte {chunk.offset} ({exc}): replaying up to there")
            return []

    @property
    def duration_s(self) -> float:
        return self.chunks[-1].t_last if self.chunks else 0.0

    def _chunk_at(self, t: float) -> int:
        """The index of the first chunk that holds entries at or after ``t`` (by its last entry's time)."""
        return bisect.bisect_left(self.chunks, t, key=lambda c: c.t_last)

    def entries(self, from_t: float = 0.0) -> Iterator[tuple[str, float, Any]]:
        """All entries with t >= from_t, in order; stops at the first corrupt chunk."""
        for chunk in self.chunks[self._chunk_at(from_t):]:
            if self._bad_at is not None and chunk.offset >= self._bad_at:
                return
            rows = self._load(chunk)
            if not rows:
                return
            for kind, t, data in rows:
                if t >= from_t:
                    yield kind, t, data

    def frames(self, from_t: float = 0.0) -> Iterator[tuple[float, Frame]]:
        """Frames with t >= from_t, each with its Agents-table rows: a frame the recorder wrote
        without them (``agents_kept``, record/writer.py) gets the last rows written before it,
        looked up in earlier chunks when from_t lands after them (a seek)."""
        rows = self._rows_before(from_t)
        for kind, t, data in self.entries(from_t):
            if kind == KIND_FRAME:
                frame = Frame.from_dict(data)
                if data.get("agents_kept"):
                    if rows is not None:
                        frame = replace(frame, agents=rows)
                else:
                    rows = frame.agents
                yield t, frame

    def _rows_before(self, from_t: float) -> AgentRows | None:
        """The agent rows of the last frame written with rows before ``from_t`` (None: none)."""
        if from_t <= 0.0:
            return None
        end = self._chunk_at(from_t)
        for chunk in reversed(self.chunks[:end + 1][-ROWS_LOOKBACK_CHUNKS:]):
            for kind, t, data in reversed(self._load(chunk)):
                if kind == KIND_FRAME and t < from_t and not data.get("agents_kept"):
                    return Frame.from_dict(data).agents
        return None

    def records_and_phases(self) -> tuple[list[RequestRecord], list[dict[str, Any]]]:
        """Every request record and every search phase of the session, in recorded order."""
        records: list[RequestRecord] = []
        phases: list[dict[str, Any]] = []
        for kind, _t, data in self.entries():
            if kind == KIND_RECORD:
                records.append(data if isinstance(data, RequestRecord) else RequestRecord.from_row(data))
            elif kind == KIND_PHASE:
                phases.append(data)
        return records, phases

    def summary(self) -> dict[str, Any] | None:
        """The summary the live run wrote last, if the recording got that far."""
        for chunk in reversed(self.chunks[-3:]):
            for kind, _t, data in reversed(self._load(chunk)):
                if kind == KIND_SUMMARY:
                    return data
        return None
