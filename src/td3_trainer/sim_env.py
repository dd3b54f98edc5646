"""The training environment in process: SimWorld ticks here, no transport.

Everything between the simulator and the learner is the trainer's own code: the simulator's
messages (td3_sim.messages), the ObservationBuilder that turns them into network inputs, the
action mapping, and StepScorer for the reward and the episode end. The values cross the same
message types as over the bridge (commands and the speedometer as float32), so for the same
actions this environment and RosEnv over the simulator node see the same observations.

Resets follow the bridge (`bridge=True`, the default): a training episode (seed < 0) starts at
the next seeded start pose of the route seen at start-up (teleport, zero velocity, one brake
tick) with an open route of ~1 m points to a goal `reset_goal_ahead_m` ahead, as the
waypoint-publisher part computes it. An evaluation episode (seed >= 0) starts at the spawn
point of that seed with an open route to the map's goal (nearly a lap). `bridge=False`: the
reset service's behaviour (respawn, the closed lap route). Events count for their own tick.
"""

from __future__ import annotations

import numpy as np
from std_msgs.msg import Header

from td3_core.actions import action_to_command
from td3_core.observation import ObservationBuilder, pose_from_odometry
from td3_core.route import wrap_angle
from td3_sim.messages import image_msg, odometry_msg, path_msg, route_msg, stamp_of
from td3_sim.waypoints import WaypointPlanner, open_route
from td3_sim.world import SimConfig, SimWorld
from td3_trainer.bridge_reset import StartPose, StartPoses
from td3_trainer.environment import EVAL_SEED_BASE, Observation, Received, Step, StepScorer
from td3_trainer.params import TrainerParams
from td3_trainer.reward import RewardFunction
from td3_trainer.tick_sync import GapKind

ROLE = "ego_vehicle"
GOAL_BEHIND_SPAWN_M = 5.0  # the simulator node's default goal (its spawn_points[0])


class SimEnv:
    def __init__(self, sim: SimConfig, params: TrainerParams, bridge: bool = True) -> None:
        self.world = SimWorld(sim)
        self.params = params
        self.bridge = bridge
        self.builder = ObservationBuilder(params.preprocess, params.observation)
        self.scorer = StepScorer(params.episode, RewardFunction(params.reward, self.world.dt))
        self.goal_xy = self._goal_behind_spawn()
        x, y, _ = self.world.pose
        startup = WaypointPlanner(self.world.track, self.goal_xy).on_tick((x, y))[0]
        spacing, ahead = float(params.start_pose_spacing_m), float(params.reset_goal_ahead_m)
        self.start_poses = StartPoses(startup.points, spacing, ahead, int(params.seed))
        self.eval_poses = StartPoses(startup.points, spacing, ahead, int(params.seed), offset_m=spacing / 2.0)
        self._current: Observation | None = None
        self._action = np.zeros(2, dtype=np.float32)

    def _goal_behind_spawn(self) -> tuple[float, float]:
        x, y, _ = self.world.track.spawn_pose(self.world._spawn_s - GOAL_BEHIND_SPAWN_M)
        return x, y

    def _open_route(self, goal_xy: tuple[float, float]) -> None:
        track, (x, y, _) = self.world.track, self.world.pose
        points, yaws = open_route(track, track.project(x, y).s, track.project(*goal_xy).s)
        self.builder.set_route_from_path(path_msg(points, yaws, stamp_of(self.world.stamp_ns)))

    def _observe(self, new_segment: bool) -> Observation:
        world = self.world
        header = Header(stamp=stamp_of(world.stamp_ns), frame_id=f"{ROLE}/rgb_front")
        frames = self.builder.push_image(image_msg(world.render(), header))
        odometry = odometry_msg(world, ROLE)
        x, y, yaw, twist_speed = pose_from_odometry(odometry)
        speed = float(np.float32(world.speed)) if self.params.use_speedometer else twist_speed
        vector, projection = self.builder.vector(odometry, speed if self.params.use_speedometer else None)
        assert projection is not None  # every episode has its route before its first frame
        return Observation(
            frames=frames,
            frame=frames[-1],
            vector=vector,
            stamp_ns=world.stamp_ns,
            x=x,
            y=y,
            speed=speed,
            projection=projection,
            heading_error=wrap_angle(yaw - projection.route_yaw),
            collisions=len(world.collisions),
            lane_invasions=len(world.lane_invasions),
            new_segment=new_segment,
            gap=GapKind.NONE,
        )

    def reset(self, seed: int = -1) -> Observation:
        """seed < 0: a training episode; >= 0: the evaluation episode of that seed."""
        if not self.bridge:
            self.world.reset(seed)
            self.builder.set_route_from_path(route_msg(self.world))
        elif seed >= 0:
            self.world.reset(seed)
            self._open_route(self._goal_behind_spawn())
        else:
            self._teleport(self.start_poses.draw())
        return self._first_observation()

    def evaluation_reset(self, k: int, count: int) -> Observation:
        """Bridge resets: the k-th of `count` start poses midway between the training ones; else the
        reset service's episode of seed EVAL_SEED_BASE + k (a procedural track of its own)."""
        if self.bridge:
            self._teleport(self.eval_poses.spread(k, count))
        else:
            self.world.reset(EVAL_SEED_BASE + k)
            self.builder.set_route_from_path(route_msg(self.world))
        return self._first_observation()

    def lap_reset(self, fraction: float, obstacles_seed: int | None = None) -> Observation:
        """An episode from the track pose `fraction` of a lap from the spawn point, through the
        bridge's teleport, with its goal GOAL_BEHIND_SPAWN_M behind it: a reached goal is a lap.
        `obstacles_seed`: the obstacles (if configured) laid out from this start with that seed,
        so that none stands in its first 40 m, as none does at the spawn point."""
        track = self.world.track
        s = self.world._spawn_s + fraction * track.length
        if obstacles_seed is not None:
            self.world.lay_obstacles_from(s, obstacles_seed)
        x, y, yaw = track.spawn_pose(s)
        goal_x, goal_y, _ = track.spawn_pose(s - GOAL_BEHIND_SPAWN_M)
        self._teleport(StartPose(x, y, yaw, goal_x, goal_y, -1))
        return self._first_observation()

    def _teleport(self, start: StartPose) -> None:
        self.world.request_transform(start.x, start.y, start.yaw)
        self.world.request_speed(0.0)
        self.world.step(0.0, 0.0, 1.0)  # the brake tick that shows the car standing there
        self._open_route((start.goal_x, start.goal_y))

    def _first_observation(self) -> Observation:
        self.builder.reset()
        self._current = self._observe(new_segment=True)
        self.scorer.start(self._current)
        return self._current

    def send(self, action: np.ndarray) -> None:
        self._action = np.asarray(action, dtype=np.float32)

    def receive(self) -> Received:
        assert self._current is not None, "reset() first"
        # the speed and the curvature ahead seen with the frame, as the driver's
        action, speed, curvature = self._action, self._current.speed, self._current.projection.curvature_ahead
        command = action_to_command(float(action[0]), float(action[1]), self.params.action, speed, curvature)
        # float32 like the fields of CarlaEgoVehicleControl
        self.world.step(*(float(np.float32(v)) for v in (command.throttle, command.steer, command.brake)))
        after = self._observe(new_segment=False)
        step = self.scorer.score(self._current, self._action, after)
        self._current = after
        return Received(after, step)

    def flush(self) -> Step | None:
        return None  # every step is complete when its tick is

    def brake(self) -> None:
        """Nothing to do: the world ticks only when asked to."""
