"""The trainer's environment without the transport: SimWorld ticks in this process.

Everything between the simulator and the learner is the trainer's own code: the simulator's
messages (td3_sim.messages), the ObservationBuilder that turns them into network inputs, the
reward, the episode rules and the action mapping. Only DDS is left out, so that a learning
benchmark measures learning, not the transport (bench_end_to_end measures that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from std_msgs.msg import Header

from td3_core.actions import action_to_command
from td3_core.observation import ObservationBuilder
from td3_core.route import RouteProjection, wrap_angle
from td3_sim.messages import image_msg, odometry_msg, route_msg, stamp_of
from td3_sim.world import SimConfig, SimWorld
from td3_trainer.episode import Outcome, classify_step
from td3_trainer.params import TrainerParams
from td3_trainer.reward import RewardFunction, StepState

ROLE = "ego_vehicle"


@dataclass(frozen=True)
class Step:
    frames: np.ndarray  # (stack, H, W) uint8
    vector: np.ndarray  # float32
    reward: float
    outcome: Outcome
    projection: RouteProjection


class DrivingEnv:
    def __init__(self, sim: SimConfig, params: TrainerParams) -> None:
        self.world = SimWorld(sim)
        self.params = params
        self.builder = ObservationBuilder(params.preprocess, params.observation)
        self.reward_fn = RewardFunction(params.reward, self.world.dt)
        self.steps = 0

    def _observe(self) -> tuple[np.ndarray, np.ndarray, RouteProjection]:
        world = self.world
        header = Header(stamp=stamp_of(world.stamp_ns), frame_id=f"{ROLE}/rgb_front")
        frames = self.builder.push_image(image_msg(world.render(), header))
        vector, projection = self.builder.vector(odometry_msg(world, ROLE), world.speed)
        return frames, vector, projection

    def reset(self, seed: int = -1) -> Step:
        self.world.reset(seed)
        self.builder.reset()
        self.builder.set_route_from_path(route_msg(self.world))
        frames, vector, projection = self._observe()
        self.reward_fn.reset(projection.distance_along, self.world.speed)
        self.steps = 0
        return Step(frames, vector, 0.0, Outcome(), projection)

    def step(self, action: np.ndarray) -> Step:
        command = action_to_command(float(action[0]), float(action[1]), self.params.action)
        self.world.step(command.throttle, command.steer, command.brake)
        self.steps += 1
        frames, vector, projection = self._observe()
        _, _, yaw = self.world.pose
        outcome = classify_step(
            self.params.episode,
            episode_steps=self.steps,
            lateral_m=projection.lateral,
            remaining_m=projection.remaining,
            collisions=len(self.world.collisions),
        )
        state = StepState.after(
            projection,
            outcome,
            speed=self.world.speed,
            heading_error=wrap_angle(yaw - projection.route_yaw),
            action=action,
            lane_invasions=len(self.world.lane_invasions),
        )
        result = self.reward_fn.step(state)
        return Step(frames, vector, result.total, outcome, projection)


def path_length(xs: list[float], ys: list[float]) -> float:
    return float(sum(math.hypot(x1 - x0, y1 - y0) for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:], strict=False)))
