"""Where the training loop's wall time goes: cumulative seconds per phase.

act     choosing the action (policy forward pass, or a random draw)
learn   gradient updates run by the loop itself (not those of async_updates' thread)
wait    from sending the command until the next frame is there: the simulator's tick
        plus the transport both ways (minus whatever overlapped with `learn`)
store   reward, replay buffer, monitoring, checkpoints
reset   episode resets (service call and the first frame)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

PHASES = ("act", "learn", "wait", "store", "reset")


class LoopTiming:
    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.started = time.perf_counter()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def as_dict(self) -> dict[str, float]:
        """Cumulative `<phase>_s` and the wall time since start, `loop_s`."""
        return {f"{name}_s": value for name, value in self.seconds.items()} | {
            "loop_s": time.perf_counter() - self.started
        }
