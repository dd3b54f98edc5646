"""The trainer's environment without the transport: SimWorld ticks in this process.

Everything between the simulator and the learner is the trainer's own code: the simulator's
messages (td3_sim.messages), the ObservationBuilder that turns them into network inputs, the
reward, the episode rules and the action mapping. Only DDS is left out, so that a learning
benchmark measures learning, not the transport (bench_end_to_end measures that).

Resets follow the bridge (the default, `bridge=True`): like the trainer without a reset service,
a training episode starts at a seeded start pose of the route seen at start-up (teleport, zero
velocity, one brake tick) with an OPEN route of ~1 m points to a goal `reset_goal_ahead_m`
ahead, as the waypoint-publisher part computes it. An evaluation episode (seed >= 0) starts at
the spawn point of that seed with an open route to the map's goal (nearly a lap). Events count
for their own tick, as the trainer attributes late ones. `bridge=False`: the reset service's
behaviour (respawn, the closed lap route).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from std_msgs.msg import Header

from td3_core.actions import action_to_command
from td3_core.observation import ObservationBuilder
from td3_core.route import RouteProjection, wrap_angle
from td3_sim.messages import image_msg, odometry_msg, path_msg, route_msg, stamp_of
from td3_sim.waypoints import WaypointPlanner, open_route
from td3_sim.world import SimConfig, SimWorld
from td3_trainer.bridge_reset import StartPoses
from td3_trainer.episode import Outcome, classify_step
from td3_trainer.params import TrainerParams
from td3_trainer.reward import RewardFunction, StepState

ROLE = "ego_vehicle"
GOAL_BEHIND_SPAWN_M = 5.0  # the simulator node's default goal (its spawn_points[0])


@dataclass(frozen=True)
class Step:
    frames: np.ndarray  # (stack, H, W) uint8
    vector: np.ndarray  # float32
    reward: float
    outcome: Outcome
    projection: RouteProjection


class DrivingEnv:
    def __init__(self, sim: SimConfig, params: TrainerParams, bridge: bool = True) -> None:
        self.world = SimWorld(sim)
        self.params = params
        self.bridge = bridge
        self.builder = ObservationBuilder(params.preprocess, params.observation)
        self.reward_fn = RewardFunction(params.reward, self.world.dt)
        self.steps = 0
        self.goal_xy = self._goal_behind_spawn()
        x, y, _ = self.world.pose
        startup = WaypointPlanner(self.world.track, self.goal_xy).on_tick((x, y))[0]
        self.start_poses = StartPoses(
            startup.points, float(params.start_pose_spacing_m), float(params.reset_goal_ahead_m), int(params.seed)
        )

    def _goal_behind_spawn(self) -> tuple[float, float]:
        x, y, _ = self.world.track.spawn_pose(self.world._spawn_s - GOAL_BEHIND_SPAWN_M)
        return x, y

    def _open_route(self, goal_xy: tuple[float, float]) -> None:
        track, (x, y, _) = self.world.track, self.world.pose
        points, yaws = open_route(track, track.project(x, y).s, track.project(*goal_xy).s)
        self.builder.set_route_from_path(path_msg(points, yaws, stamp_of(self.world.stamp_ns)))

    def _observe(self) -> tuple[np.ndarray, np.ndarray, RouteProjection]:
        world = self.world
        header = Header(stamp=stamp_of(world.stamp_ns), frame_id=f"{ROLE}/rgb_front")
        frames = self.builder.push_image(image_msg(world.render(), header))
        vector, projection = self.builder.vector(odometry_msg(world, ROLE), world.speed)
        return frames, vector, projection

    def reset(self, seed: int = -1) -> Step:
        """seed < 0: a training episode; >= 0: the evaluation episode of that seed."""
        if not self.bridge:
            self.world.reset(seed)
            self.builder.set_route_from_path(route_msg(self.world))
        elif seed >= 0:
            self.world.reset(seed)
            self._open_route(self._goal_behind_spawn())
        else:
            start = self.start_poses.draw()
            self.world.request_transform(start.x, start.y, start.yaw)
            self.world.request_speed(0.0)
            self.world.step(0.0, 0.0, 1.0)  # the brake tick that shows the car standing there
            self._open_route((start.goal_x, start.goal_y))
        self.builder.reset()
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
