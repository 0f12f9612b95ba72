"""Replay controls an operator relies on: follow joins at the live edge, seeks land while paused and
after the end, phase navigation goes both ways, the header says PLAYING / PAUSED / END."""

from __future__ import annotations

import time
from pathlib import Path

from agentperf_tui.record.reader import SessionReader
from agentperf_tui.record.replay import ReplayPlayer
from agentperf_tui.record.writer import SessionRecorder, new_session_dir
from tests.tui_frames import make_frame


def timed_recording(tmp_path: Path, seconds: int = 20, phases: tuple[float, ...] = (5.0, 10.0, 15.0)) -> Path:
    """A recording with a frame per second at recorded times 0..seconds-1 and phases at the given times."""
    directory = new_session_dir(tmp_path, "p")
    clock = [0.0]
    rec = SessionRecorder(directory, {"profile": "p"}, clock=lambda: clock[0])
    for i in range(seconds):
        clock[0] = float(i)
        rec.on_frame(make_frame(seq=i + 1, elapsed_s=float(i), agents=4))
        if float(i) in phases:
            rec.on_phase({"agents": i, "status": "valid", "valid": True})
    rec.close()
    return directory


def wait_for(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_follow_joins_a_run_at_its_live_edge_not_its_start(tmp_path: Path):
    seen: list[int] = []
    player = ReplayPlayer(SessionReader(timed_recording(tmp_path)), [lambda f: seen.append(f.seq)], speed=1.0,
                          follow=True)
    player.start()
    try:
        assert wait_for(lambda: seen)
    finally:
        player.stop()
    assert seen[0] >= 19  # the last second of the recording, not frame 1


def test_a_seek_while_paused_shows_where_it_lands_and_stays_paused(tmp_path: Path):
    seen: list[int] = []
    player = ReplayPlayer(SessionReader(timed_recording(tmp_path)), [lambda f: seen.append(f.seq)], speed=1.0)
    player.start()
    try:
        assert wait_for(lambda: seen)
        player.toggle_pause()
        time.sleep(0.3)
        before = len(seen)
        player.seek(12.0)
        assert wait_for(lambda: len(seen) > before)
        assert seen[-1] == 13 and player.position_s == 12.0
        time.sleep(1.5)
        assert seen[-1] == 13 and player.paused  # still paused on the frame it landed on
    finally:
        player.stop()


def test_seeking_after_the_end_plays_again_and_phases_go_both_ways(tmp_path: Path):
    seen: list[int] = []
    player = ReplayPlayer(SessionReader(timed_recording(tmp_path)), [lambda f: seen.append(f.seq)], speed=0.0)
    player.start()
    try:
        assert wait_for(lambda: player.finished)
        player.seek_phase(-1)  # from the end back to the last phase (t=15)
        assert wait_for(lambda: player.finished and seen[-1] == 20 and seen.count(16) == 2)
        player.toggle_pause()
        player.seek(15.0)
        player.seek_phase(-1)  # 15 -> 10
        player.seek_phase(-1)  # 10 -> 5: positions move on while paused
        assert player.position_s == 5.0
        player.seek_phase(1)
        assert player.position_s == 10.0
    finally:
        player.stop()


async def test_the_replay_header_says_paused_without_waiting_for_a_frame(tmp_path: Path):
    from agentperf_tui.tui.app import AgentPerfApp

    player = ReplayPlayer(SessionReader(timed_recording(tmp_path)), speed=1.0)
    app = AgentPerfApp(player, replay=True)
    player.sinks.append(app.frame_sink)
    async with app.run_test(size=(200, 50)) as pilot:
        player.start()
        await pilot.pause(0.6)
        assert "REPLAY PLAYING x1" in str(app.query_one("#header").render())
        await pilot.press("space")
        await pilot.pause(0.6)
        assert "REPLAY PAUSED x1" in str(app.query_one("#header").render())
        from agentperf_tui.tui.panels.search import SearchPanel

        assert "no search in this recording" in str(app.query_one(SearchPanel).render())
    player.stop()
