"""Several vehicles, one learner: every vehicle starts its first episode before any takes a step."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from td3_trainer.fleet import Fleet, FleetEnv
from td3_trainer.loop import LoopHooks


class SlowStartEnv:
    """A vehicle's environment whose first reset takes `delay_s` (its simulator comes up late)
    and returns `observation` (None: it cannot start)."""

    def __init__(self, role: str, events: list, delay_s: float = 0.0, observation: object = "frame") -> None:
        self.params = SimpleNamespace(role_name=role)
        self.events, self.delay_s, self.observation = events, delay_s, observation

    def reset(self, seed: int) -> object:
        time.sleep(self.delay_s)
        self.events.append(("reset", self.params.role_name))
        return self.observation


class StepsOnce:
    """The part of TrainingLoop.run the start line is about: reset, then steps."""

    def __init__(self, hooks: LoopHooks) -> None:
        self.hooks, self.learner, self.buffer_lock, self.timing = hooks, None, threading.Lock(), None

    def run(self, env) -> None:
        if env.reset(0) is None:
            return
        env.events.append(("step", env.params.role_name))


def _run(envs: list[SlowStartEnv], stop: threading.Event | None = None) -> list[str]:
    lines: list[str] = []
    loops = [StepsOnce(LoopHooks(info=lines.append)) for _ in envs]
    fleet = Fleet(loops, SimpleNamespace(value=0), stop or threading.Event())
    thread = threading.Thread(target=fleet.run, args=(FleetEnv(envs),), daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "the fleet hung at its start line"
    return lines


def test_no_vehicle_steps_before_a_late_vehicle_has_started_and_the_wait_is_logged():
    events: list = []
    lines = _run([SlowStartEnv("car_a", events), SlowStartEnv("car_b", events, delay_s=0.5)])
    assert events.index(("reset", "car_b")) < events.index(("step", "car_a")), events
    assert ("step", "car_b") in events
    assert any("car_a: first episode started; waiting for car_b" in line for line in lines), lines


def test_a_vehicle_that_cannot_start_does_not_hold_the_others():
    events: list = []
    _run([SlowStartEnv("car_a", events), SlowStartEnv("car_b", events, delay_s=0.3, observation=None)])
    assert ("step", "car_a") in events and ("step", "car_b") not in events


def test_a_stopped_run_leaves_the_start_line():
    events: list = []
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    _run([SlowStartEnv("car_a", events), SlowStartEnv("car_b", events, delay_s=1.5)], stop)
    assert events.index(("step", "car_a")) < events.index(("reset", "car_b")), events
