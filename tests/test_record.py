"""Recording and replay: round trip, crash safety (truncation, corruption), schema, follow mode."""

from __future__ import annotations

import os
import stat
import struct
import threading
import time
from pathlib import Path

import pytest
import zstandard

from agentperf_tui.engine.records import RequestRecord
from agentperf_tui.record.format import CHUNK_HEADER, MAGIC, RecordingError, encode_chunk
from agentperf_tui.record.reader import SessionReader
from agentperf_tui.record.replay import ReplayPlayer, replay_summary
from agentperf_tui.record.writer import SessionRecorder, new_session_dir
from tests.tui_frames import make_frame


def record_session(directory: Path, frames: int = 30, summary: bool = True, pause_every: int = 0) -> SessionRecorder:
    rec = SessionRecorder(directory, {"profile": "twin-h200"})
    for i in range(frames):
        rec.on_frame(make_frame(seq=i + 1, elapsed_s=i * 0.25, agents=50))
        rec.on_record(RequestRecord(i % 5, "t", i, 10, 1000 + i, 900, 150, 150, float(i), i + 0.5, i + 2.0,
                                    i + 2.01))
        rec.on_event(f"event {i}")
        if pause_every and i % pause_every == pause_every - 1:
            time.sleep(1.1)  # let the writer flush a chunk
    if summary:
        rec.write_summary({"agents": 5, "requests": {"completed": frames, "failed": 0}})
    rec.close()
    return rec


def test_round_trip_frames_records_summary_and_file_mode(tmp_path: Path):
    directory = new_session_dir(tmp_path, "twin-h200")
    record_session(directory)
    path = directory / "session.aprec"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    reader = SessionReader(directory)
    assert reader.header["schema_version"] == 1 and reader.header["profile"] == "twin-h200"
    frames = [f for _, f in reader.frames()]
    assert [f.seq for f in frames] == list(range(1, 31))
    assert len(frames[0].agents) == 50
    assert frames[3] == make_frame(seq=4, elapsed_s=0.75, agents=50)  # survives the round trip intact
    kinds = [k for k, _, _ in reader.entries()]
    assert kinds.count("record") == 30 and kinds.count("event") == 30
    summary, warnings = replay_summary(reader)
    assert summary == {"agents": 5, "requests": {"completed": 30, "failed": 0}}
    assert warnings == []


def test_truncated_copy_replays_to_last_good_chunk_with_warning(tmp_path: Path):
    directory = new_session_dir(tmp_path, "p")
    record_session(directory, frames=12, summary=True, pause_every=3)
    data = (directory / "session.aprec").read_bytes()
    cut = tmp_path / "cut.aprec"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    reader = SessionReader(cut)
    frames = [f for _, f in reader.frames()]
    assert 0 < len(frames) < 12
    summary, warnings = replay_summary(reader)
    assert summary["partial"] is True
    assert any("truncated" in w for w in warnings)


def test_corrupt_chunk_stops_there_with_warning(tmp_path: Path):
    directory = new_session_dir(tmp_path, "p")
    record_session(directory, frames=9, pause_every=3)
    path = directory / "session.aprec"
    chunks = SessionReader(path).chunks
    assert len(chunks) >= 3
    data = bytearray(path.read_bytes())
    middle = chunks[2].offset + chunks[2].length // 2  # flip bytes inside the third chunk's payload
    data[middle] ^= 0xFF
    data[middle + 1] ^= 0xFF
    path.write_bytes(bytes(data))
    reader = SessionReader(path)
    frames = [f for _, f in reader.frames()]
    assert 0 < len(frames) < 9
    assert any("corrupt" in w for w in reader.warnings)


def test_newer_schema_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "session.aprec"
    path.write_bytes(encode_chunk([("header", 0.0, {"schema_version": 99})], zstandard.ZstdCompressor()))
    with pytest.raises(RecordingError, match="schema version 99 is newer"):
        SessionReader(path)


def test_not_a_recording_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "x.aprec"
    path.write_bytes(b"hello world, not a recording at all" * 3)
    with pytest.raises(RecordingError):
        SessionReader(path)
    assert CHUNK_HEADER.size == struct.calcsize("<4sIIddI") and MAGIC == b"APR\x01"


def test_follow_mode_sees_frames_written_after_it_started(tmp_path: Path):
    directory = new_session_dir(tmp_path, "p")
    rec = SessionRecorder(directory, {"profile": "p"})
    rec.on_frame(make_frame(seq=1, elapsed_s=0.0, agents=3))
    time.sleep(1.2)  # first chunk on disk
    seen: list[int] = []
    player = ReplayPlayer(SessionReader(directory), [lambda f: seen.append(f.seq)], speed=0.0, follow=True)
    player.start()
    try:
        for i in range(2, 6):
            rec.on_frame(make_frame(seq=i, elapsed_s=i * 0.25, agents=3))
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and (not seen or seen[-1] < 5):
            time.sleep(0.1)
    finally:
        player.stop()
        rec.close()
    assert seen[0] == 1 and seen[-1] == 5


def test_player_paces_pauses_and_seeks(tmp_path: Path):
    directory = new_session_dir(tmp_path, "p")
    record_session(directory, frames=40)  # recorded within a fraction of a second
    reader = SessionReader(directory)
    seen: list[int] = []
    player = ReplayPlayer(reader, [lambda f: seen.append(f.seq)], speed=0.0)
    player.start()
    deadline = time.monotonic() + 5
    while not player.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen == list(range(1, 41))
    assert threading.active_count() >= 1


def recorded_at(directory: Path, frames: list, step_s: float) -> SessionRecorder:
    """Frames recorded step_s apart on the recorder's clock (a fake one: no sleeping)."""
    now = [0.0]
    rec = SessionRecorder(directory, {"profile": "p"}, clock=lambda: now[0])
    for frame in frames:
        rec.on_frame(frame)
        now[0] += step_s
    rec.close()
    return rec


def test_agent_rows_are_thinned_by_volume_and_every_frame_reads_back_with_rows(tmp_path: Path):
    from dataclasses import replace

    from agentperf_tui.record.writer import agent_rows_period

    assert agent_rows_period(1000) == 0.0 and agent_rows_period(5000) == 1.25 and agent_rows_period(20000) == 5.0
    base = make_frame(agents=5000)
    # each frame its own rows (a new object whose first agent's turn is the frame's seq)
    frames = [replace(base, seq=i, elapsed_s=i * 0.25, agents=replace(base.agents, turns=(i,) + base.agents.turns[1:]))
              for i in range(20)]
    directory = new_session_dir(tmp_path, "p")
    recorded_at(directory, frames, 0.25)
    reader = SessionReader(directory)
    raw = [d for k, _t, d in reader.entries() if k == "frame"]
    written = [d["seq"] for d in raw if not d.get("agents_kept")]
    assert written == [0, 5, 10, 15]  # rows at t = 0, 1.25, 2.5, 3.75 s: one frame in five
    assert all(d["agents_refresh_s"] == 1.25 for d in raw)  # the replay's table header says it, every frame
    got = [f for _t, f in reader.frames()]
    assert [f.seq for f in got] == list(range(20))
    assert [f.agents.turns[0] for f in got] == [i - i % 5 for i in range(20)]  # the last rows written
    assert all(len(f.agents) == 5000 for f in got)
    # a seek that lands between row frames still shows rows: those written before it
    seeked = [f for _t, f in reader.frames(from_t=2.0)]
    assert seeked[0].seq == 8 and seeked[0].agents.turns[0] == 5 and len(seeked[0].agents) == 5000
    # each chunk holds at most one second of recorded time
    assert all(c.t_last - c.t_first < 1.0 for c in reader.chunks)


def test_small_sessions_keep_every_frames_rows_and_identical_rows_are_written_once(tmp_path: Path):
    from dataclasses import replace

    base = make_frame(agents=50)
    fresh = [replace(base, seq=i, agents=replace(base.agents)) for i in range(4)]
    same = [replace(base, seq=10 + i) for i in range(3)]  # one rows object shared by three frames
    directory = new_session_dir(tmp_path, "p")
    recorded_at(directory, fresh + same, 0.25)
    raw = [d for k, _t, d in SessionReader(directory).entries() if k == "frame"]
    assert [bool(d.get("agents_kept")) for d in raw] == [False] * 5 + [True, True]
    assert all(f.agents == base.agents for _t, f in SessionReader(directory).frames())
