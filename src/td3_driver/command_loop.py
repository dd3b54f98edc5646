"""A fixed-rate loop on a thread of its own: the driver's command clock.

The commands do not run on the ROS executor. rclpy's MultiThreadedExecutor busy-waits while an
entity is ready whose callback group is still busy (a frame arriving while the previous one is
being handled): its spinning thread then holds the GIL almost all the time, every callback gets
slower, more entities wait, and the command rate collapses (measured: 20 Hz → 2-7 Hz on 2 cores,
the spinning thread at 100% CPU). The inputs therefore run on a SingleThreadedExecutor, and this
loop publishes the commands whatever the executor is doing; a stalled executor shows up as
stale inputs, which the safety gate turns into full brake.

ROS-free: `tick` is any callable, `clock` any monotonic clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class FixedRateLoop:
    """Calls `tick()` every `period_s` seconds of `clock` until `stop()`.

    Deadlines are start + k·period, so the rate does not drift with the time `tick` takes. A tick
    that overruns its period does not cause a burst: the missed deadlines are skipped (counted in
    `skipped`) and the loop waits for the next one, as rcl timers do. An exception from `tick`
    goes to `on_error` and the loop carries on: one failed publication must not end the commands.
    """

    def __init__(
        self,
        period_s: float,
        tick: Callable[[], None],
        on_error: Callable[[BaseException], None],
        name: str = "fixed-rate-loop",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(period_s) and period_s > 0):
            raise ValueError(f"period must be > 0 s, got {period_s}")
        self.period_s = period_s
        self._tick, self._on_error, self._clock = tick, on_error, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.ticks = 0
        self.skipped = 0  # deadlines missed because a tick (or the machine) was late
        self.errors = 0

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Ask the loop to end and wait (bounded) for the tick in progress; True once it has ended."""
        self._stop.set()
        if self._thread.ident is None or self._thread is threading.current_thread():
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        deadline = self._clock()
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as error:  # reported, and the next command is still due
                self.errors += 1
                self._on_error(error)
            self.ticks += 1
            deadline += self.period_s
            late = self._clock() - deadline
            if late >= self.period_s:  # whole periods missed: skip them, then fire once at once
                missed = math.floor(late / self.period_s)
                self.skipped += missed
                deadline += missed * self.period_s
            self._wait(max(0.0, deadline - self._clock()))

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)  # stop() ends the wait at once
