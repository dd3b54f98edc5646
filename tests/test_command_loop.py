"""The driver's command clock (td3_driver.command_loop), ROS-free, on a clock the test moves."""

from __future__ import annotations

import threading

import pytest

from td3_driver.command_loop import FixedRateLoop


class SteppedClock:
    """Time moves only when a tick says how long it took, or when the loop waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SteppedLoop(FixedRateLoop):
    def _wait(self, seconds: float) -> None:
        self._clock.now += seconds


def run_ticks(durations: list[float], period: float = 0.05, fail_at: set[int] = frozenset()):
    clock = SteppedClock()
    ticks: list[float] = []
    errors: list[BaseException] = []
    done = threading.Event()
    loop: SteppedLoop

    def tick() -> None:
        index = len(ticks)
        ticks.append(clock.now)
        clock.now += durations[index]
        if index + 1 == len(durations):
            loop._stop.set()
            done.set()
        if index in fail_at:
            raise RuntimeError(f"tick {index}")

    loop = SteppedLoop(period, tick, errors.append, clock=clock)
    loop.start()
    assert done.wait(30.0), "the loop stopped ticking"
    assert loop.stop(30.0)
    return loop, ticks, errors


def test_ticks_on_deadlines_whatever_each_tick_takes():
    # Each tick takes a fraction of the period: the next starts on its deadline (k·period), no drift.
    loop, ticks, _ = run_ticks([0.01, 0.049, 0.0, 0.03, 0.02])
    assert ticks == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert loop.skipped == 0 and loop.ticks == 5


def test_an_overrun_skips_the_missed_deadlines_instead_of_bursting():
    # The second tick (at 0.05) takes 3.5 periods and ends at 0.225: the deadlines 0.1 and 0.15
    # are skipped, the one of 0.2 is served once, late, and the rate resumes on the grid.
    loop, ticks, _ = run_ticks([0.0, 0.175, 0.0, 0.0])
    assert loop.skipped == 2
    assert ticks[:2] == pytest.approx([0.0, 0.05])
    assert ticks[2] == pytest.approx(0.225)  # late, once: no burst of the missed ones
    assert ticks[3] == pytest.approx(0.25)  # back on the k·period grid


def test_an_error_in_a_tick_is_reported_and_the_next_tick_still_comes():
    loop, ticks, errors = run_ticks([0.0] * 4, fail_at={1, 2})
    assert len(ticks) == 4
    assert [str(e) for e in errors] == ["tick 1", "tick 2"] and loop.errors == 2


def test_stop_ends_a_loop_waiting_for_its_next_deadline():
    started = threading.Event()
    loop = FixedRateLoop(3600.0, started.set, lambda error: None)
    loop.start()
    assert started.wait(30.0)
    assert loop.stop(30.0) and not loop.running


def test_stop_before_start_and_bad_periods():
    assert FixedRateLoop(1.0, lambda: None, lambda error: None).stop()
    for period in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="period"):
            FixedRateLoop(period, lambda: None, lambda error: None)
