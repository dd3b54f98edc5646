"""One learner fed by several ego vehicles (trainer role_name 'a,b,...'), ROS-free.

Each vehicle has its own environment (its /carla/<role>/ topics), its own TrainingLoop on a
thread of its own (its own episodes, resets through the bridge path, exploration noise) and its
own stream of the replay buffer, so a frame stack never mixes vehicles. One BackgroundLearner
samples all streams and makes `updates_per_step` updates per transition any vehicle collects.
Vehicles that share a synchronous world step together because the world waits for each one's
command; separate simulators step independently. Every vehicle starts its first episode before
any takes a step (a start line: a vehicle whose simulator came up late would otherwise find the
shared budget spent by the others, and a run meant to learn from all would learn from some);
one that cannot start (its loop ends) no longer holds the others. Evaluation runs on the first
vehicle.

`Fleet` and `FleetEnv` present the loop and the environment the trainer node knows (step and
episode counts, counters, brake), so the node's monitoring and checkpoints stay as they are.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from td3_trainer.replay_buffer import Batch, FrameReplayBuffer

STATE_FORMAT = 1


class VehicleReplay:
    """Per-vehicle FrameReplayBuffer streams sampled as one buffer (in proportion to their sizes)."""

    def __init__(self, streams: Sequence[FrameReplayBuffer], seed: int = 0) -> None:
        self.streams = list(streams)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return sum(len(s) for s in self.streams)

    def sample(self, batch_size: int) -> Batch:
        sizes = np.array([len(s) for s in self.streams], dtype=np.float64)
        if sizes.sum() == 0:
            raise RuntimeError("sample() from an empty replay buffer")
        counts = self.rng.multinomial(batch_size, sizes / sizes.sum())
        parts = [stream.sample(int(n)) for stream, n in zip(self.streams, counts, strict=True) if n > 0]
        return Batch(*(torch.cat(field) for field in zip(*parts, strict=True)))

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self.streams)

    def state_dict(self) -> dict:
        return {"format": STATE_FORMAT, "streams": [s.state_dict() for s in self.streams]}

    def load_state_dict(self, state: dict) -> None:
        streams = state.get("streams") if isinstance(state, dict) else None
        if not isinstance(streams, list) or len(streams) != len(self.streams):
            have = len(streams) if isinstance(streams, list) else "no"
            raise ValueError(f"saved with {have} vehicle streams, this run has {len(self.streams)}")
        for stream, saved in zip(self.streams, streams, strict=True):
            stream.load_state_dict(saved)


class FleetCounters:
    def __init__(self, envs: Sequence[Any]) -> None:
        self.envs = envs

    def as_dict(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for env in self.envs:
            for key, value in env.counters.as_dict().items():
                total[key] = total.get(key, 0) + value
        return total


class FleetEnv:
    """The vehicles' environments, as the node sees one."""

    def __init__(self, envs: Sequence[Any]) -> None:
        self.envs = list(envs)
        self.counters = FleetCounters(self.envs)

    @property
    def waiting_for(self) -> str:
        return "; ".join(f"{e.params.role_name}: {e.waiting_for}" for e in self.envs if e.waiting_for)

    @property
    def gave_up(self) -> bool:
        return any(e.gave_up for e in self.envs)

    @property
    def image_topic(self) -> str:
        return ", ".join(e.image_topic for e in self.envs)

    @property
    def command_topic(self) -> str:
        return ", ".join(e.command_topic for e in self.envs)

    def brake(self) -> None:
        for env in self.envs:
            env.brake()


class StartLine:
    """Holds each vehicle after its first reset until every vehicle has reset once, or has
    dropped out, or the run is stopped."""

    def __init__(self, roles: Sequence[str], stop: threading.Event, info: Callable[[str], None]) -> None:
        self.roles = list(roles)
        self.stop = stop
        self.info = info
        self.settled: set[str] = set()  # started once, or dropped out: none waits for these
        self._changed = threading.Condition()

    def _open(self) -> bool:
        return len(self.settled) >= len(self.roles) or self.stop.is_set()

    def arrive(self, role: str) -> None:
        self.settle(role)
        with self._changed:
            if not self._open():
                waiting = [r for r in self.roles if r not in self.settled]
                self.info(f"{role}: first episode started; waiting for {', '.join(waiting)} to start theirs")
            while not self._open():
                self._changed.wait(0.5)

    def settle(self, role: str) -> None:
        """The role started or ended: none waits for it any longer."""
        with self._changed:
            self.settled.add(role)
            self._changed.notify_all()


class _StartTogether:
    """A vehicle's environment whose first successful reset waits at the start line."""

    def __init__(self, env: Any, line: StartLine) -> None:
        self._env = env
        self._line = line
        self._role = str(env.params.role_name)
        self._started = False

    def reset(self, seed: int) -> Any:
        observation = self._env.reset(seed)
        if not self._started and observation is not None:
            self._started = True
            self._line.arrive(self._role)
        return observation

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


class Fleet:
    """The vehicles' loops, as the node sees one: the first loop's evaluation, counts of all."""

    def __init__(self, loops: Sequence[Any], shared_steps, stop: threading.Event) -> None:
        self.loops = list(loops)
        self.shared_steps = shared_steps
        self.stop = stop
        self.learner = self.loops[0].learner
        self.buffer_lock = self.loops[0].buffer_lock
        self.timing = self.loops[0].timing
        self.errors: list[BaseException] = []

    @property
    def env_steps(self) -> int:
        return self.shared_steps.value

    @env_steps.setter
    def env_steps(self, value: int) -> None:  # a resumed run's count: the first loop's evaluation schedule
        self.shared_steps.value = value
        self.loops[0].env_steps = value

    @property
    def episodes(self) -> int:
        return sum(loop.episodes for loop in self.loops)

    @episodes.setter
    def episodes(self, value: int) -> None:
        self.loops[0].episodes = value

    @property
    def steps_this_run(self) -> int:
        return sum(loop.steps_this_run for loop in self.loops)

    def budget_spent(self) -> bool:
        return self.loops[0].budget_spent()

    def run(self, env: FleetEnv) -> None:
        """Every vehicle's loop on its own thread, until the budget is spent or one fails."""

        line = StartLine([e.params.role_name for e in env.envs], self.stop, self.loops[0].hooks.info)

        def run_one(loop, vehicle_env) -> None:
            try:
                loop.run(_StartTogether(vehicle_env, line))
            except BaseException as error:  # one failing vehicle stops all, then the node reports it
                self.errors.append(error)
                self.stop.set()
            finally:
                line.settle(vehicle_env.params.role_name)  # ended, started or not

        threads = [
            threading.Thread(target=run_one, args=(loop, e), name=f"vehicle-{e.params.role_name}", daemon=True)
            for loop, e in zip(self.loops, env.envs, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.errors:
            raise self.errors[0]
