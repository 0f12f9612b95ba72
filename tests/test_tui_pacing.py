"""The dashboard's repaint pacing: within its CPU budget, full rate after a key, said in the header."""

from __future__ import annotations

from agentperf_tui.tui.app import AgentPerfApp
from agentperf_tui.tui.controller import NullController
from agentperf_tui.tui.pacing import BOOST_S, MAX_INTERVAL_S, DisplayPacer

from .tui_frames import make_frame


class Clocks:
    """A wall clock and a UI-thread CPU clock the test advances."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0


def simulate(pacer: DisplayPacer, clocks: Clocks, seconds: float, cost_per_repaint_s: float,
             idle_cpu_share: float = 0.0) -> int:
    """Frames every 0.25 s, ticks every 0.25 s; each repaint costs cost_per_repaint_s of CPU."""
    repaints = 0
    for _ in range(int(seconds / 0.25)):
        clocks.wall += 0.25
        clocks.cpu += 0.25 * idle_cpu_share
        pacer.tick()
        if pacer.due():
            pacer.applied()
            clocks.cpu += cost_per_repaint_s
            repaints += 1
    return repaints


def make_pacer(budget: float, clocks: Clocks) -> DisplayPacer:
    return DisplayPacer(4.0, budget, clock=lambda: clocks.wall, cpu_clock=lambda: clocks.cpu)


def test_an_expensive_display_is_slowed_until_its_cpu_share_meets_the_budget():
    clocks = Clocks()
    pacer = make_pacer(0.03, clocks)
    simulate(pacer, clocks, 60, cost_per_repaint_s=0.035)  # 14 % of a core at 4 Hz
    assert pacer.paced
    cpu0, wall0 = clocks.cpu, clocks.wall
    repaints = simulate(pacer, clocks, 30, cost_per_repaint_s=0.035)
    share = (clocks.cpu - cpu0) / (clocks.wall - wall0)
    assert 0.02 <= share <= 0.036, share  # within the budget, not far below it (repaints are 0.25 s quanta)
    assert repaints >= 20  # still repainting about once a second or more
    assert "display every" in pacer.describe() and "3 % of a core" in pacer.describe()


def test_a_cheap_display_keeps_full_rate_and_a_budget_of_zero_never_paces():
    clocks = Clocks()
    cheap = make_pacer(0.03, clocks)
    assert simulate(cheap, clocks, 20, cost_per_repaint_s=0.002) == 80  # 0.8 % of a core: every frame
    assert not cheap.paced
    clocks = Clocks()
    off = make_pacer(0.0, clocks)
    assert simulate(off, clocks, 20, cost_per_repaint_s=0.2) == 80
    assert not off.paced


def test_the_interval_has_a_ceiling_and_comes_back_when_the_cost_falls():
    clocks = Clocks()
    pacer = make_pacer(0.03, clocks)
    simulate(pacer, clocks, 60, cost_per_repaint_s=0.5)  # far over any budget
    assert pacer.interval_s == MAX_INTERVAL_S
    simulate(pacer, clocks, 60, cost_per_repaint_s=0.001)
    assert not pacer.paced


def test_a_key_press_brings_full_rate_back_for_a_while_and_is_not_held_against_the_budget():
    clocks = Clocks()
    pacer = make_pacer(0.03, clocks)
    simulate(pacer, clocks, 60, cost_per_repaint_s=0.035)
    interval = pacer.interval_s
    assert interval > 0.5
    pacer.boost()
    assert simulate(pacer, clocks, BOOST_S - 0.25, cost_per_repaint_s=0.035) == int((BOOST_S - 0.25) / 0.25)
    assert pacer.interval_s == interval  # the boost's repaints did not move the budget's interval
    clocks.wall += 0.5
    pacer.applied()
    assert not pacer.due()  # after the boost: the paced interval again
    simulate(pacer, clocks, 0.5, cost_per_repaint_s=0.035)
    assert pacer.interval_s == interval  # the boost's CPU did not close a window of its own
    simulate(pacer, clocks, 2.0, cost_per_repaint_s=0.035)  # the first window after the boost
    assert abs(pacer.interval_s - interval) <= 0.3, (pacer.interval_s, interval)


def test_the_start_up_is_not_measured():
    clocks = Clocks()
    pacer = make_pacer(0.03, clocks)
    clocks.cpu += 1.5  # the app's start-up: CSS, compose, the first layout
    assert simulate(pacer, clocks, 3.0, cost_per_repaint_s=0.002) == 12  # full rate from the start
    assert not pacer.paced
    simulate(pacer, clocks, 4.0, cost_per_repaint_s=0.002)
    assert not pacer.paced  # the start-up's CPU never entered a window


async def test_the_header_says_when_the_display_is_paced_and_a_key_repaints_at_once():
    app = AgentPerfApp(NullController(target=8), ui_budget=0.03)
    async with app.run_test(size=(200, 50)) as pilot:
        app.apply_frame(make_frame(8, seq=1))
        header = str(app.query_one("#header").render())
        assert "display every" not in header
        app.pacer.interval_s = 1.5  # as the pacer sets it once repaints cost more than the budget
        app.pacer.applied()
        app.frame_sink(make_frame(8, seq=2))
        await pilot.pause()
        assert app.frame.seq == 1  # held: due in 1.5 s
        await pilot.press("plus")  # a key: full rate, the held frame shows now
        await pilot.pause(0.3)
        assert app.frame.seq == 2
        assert "display every 1.5 s (UI budget 3 % of a core)" in str(app.query_one("#header").render())
