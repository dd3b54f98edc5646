"""Episode resets through the bridge's own interfaces, without a reset service (ROS-free core).

The real carla-ros-bridge has no reset: the trainer puts the car somewhere itself with
`control/set_transform` (the actor.pseudo.control of the example objects.json), zeroes its
velocity with `control/set_target_velocity`, sends a goal on `/carla/<role>/goal` so that
carla_waypoint_publisher computes a route from there, and brakes tick by tick until the car
stands where it was put and that new route has arrived. Start poses are points of the route
seen at start-up (any CARLA town, no hand work), drawn with a seeded generator; each episode's
goal lies `goal_ahead_m` further along that route.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STANDING_MPS = 0.1  # a car slower than this stands
MAX_START_POSES = 10_000
SPAWN_LIFT_M = 0.3  # above the route's height, so that the car is not put into the road surface


@dataclass(frozen=True)
class StartPose:
    x: float
    y: float
    yaw: float
    goal_x: float
    goal_y: float
    index: int  # which start pose of the start-up route
    z: float = 0.0  # height of the route there (CARLA needs it; a little lift avoids the ground)


class StartPoses:
    """Points every `spacing_m` of the start-up route (from `offset_m`) that still have `goal_ahead_m`
    before its end. Evaluation uses offset_m = spacing_m / 2: start poses training never had."""

    def __init__(
        self,
        route_points: np.ndarray,
        spacing_m: float,
        goal_ahead_m: float,
        seed: int,
        z: np.ndarray | None = None,
        offset_m: float = 0.0,
    ) -> None:
        points = np.asarray(route_points, dtype=np.float64)
        heights = np.zeros(len(points)) if z is None else np.asarray(z, dtype=np.float64)
        if len(points) < 2 or not np.isfinite(points).all():
            raise ValueError(f"the start-up route has {len(points)} point(s) or non-finite ones: no start poses")
        with np.errstate(over="ignore"):
            steps = np.hypot(*np.diff(points, axis=0).T)
            along = np.concatenate([[0.0], np.cumsum(steps)])
        if not np.isfinite(along[-1]) or along[-1] / spacing_m > MAX_START_POSES:
            raise ValueError(f"the start-up route is {along[-1]:.3g} m long: not a road")
        ahead = min(goal_ahead_m, 0.5 * along[-1])  # a short route still gives some poses
        candidates = np.arange(offset_m, along[-1] - ahead + 1e-9, spacing_m)
        if len(candidates) == 0:
            raise ValueError(f"the start-up route is {along[-1]:.1f} m long: too short for start poses")
        self.poses: list[StartPose] = []
        for i, s in enumerate(candidates):
            k = min(int(np.searchsorted(along, s, side="right")) - 1, len(points) - 2)
            x, y = points[k] + (points[k + 1] - points[k]) * ((s - along[k]) / max(steps[k], 1e-9))
            yaw = math.atan2(*(points[k + 1] - points[k])[::-1])
            gx = float(np.interp(s + ahead, along, points[:, 0]))
            gy = float(np.interp(s + ahead, along, points[:, 1]))
            height = float(np.interp(s, along, heights)) + SPAWN_LIFT_M
            self.poses.append(StartPose(float(x), float(y), yaw, gx, gy, i, height))
        self.route_length_m = float(along[-1])
        self.goal_ahead_m = float(ahead)
        self._rng = np.random.default_rng(seed)
        self._last: int | None = None

    def spread(self, k: int, count: int) -> StartPose:
        """The k-th of `count` poses spread evenly along the route (the same ones every time)."""
        return self.poses[(k * len(self.poses)) // max(count, 1) % len(self.poses)]

    def draw(self) -> StartPose:
        """A seeded random start pose, never the previous one (so a reset always moves the car)."""
        if len(self.poses) == 1:
            return self.poses[0]
        while True:
            index = int(self._rng.integers(len(self.poses)))
            if index != self._last:
                self._last = index
                return self.poses[index]


@dataclass(frozen=True)
class SettleCheck:
    """One tick of a reset: what is still missing ('' = nothing, the episode can start)."""

    at_pose: bool
    standing: bool
    route_ready: bool
    distance_m: float
    speed: float

    @property
    def missing(self) -> str:
        if not self.at_pose:
            return f"the car at its start pose (it is {self.distance_m:.1f} m away)"
        if not self.standing:
            return f"the car standing (speed {self.speed:.2f} m/s)"
        if not self.route_ready:
            return "a new route from the start pose to the goal"
        return ""


def route_fits(route_points: np.ndarray, start: StartPose, tolerance_m: float, min_length_m: float) -> bool:
    """A route computed for this reset: from the start pose to its goal, not too short."""
    points = np.asarray(route_points, dtype=np.float64)
    if len(points) < 2 or not np.isfinite(points).all():
        return False
    length = float(np.hypot(*np.diff(points, axis=0).T).sum())
    starts_here = math.dist(points[0], (start.x, start.y)) <= tolerance_m + 2.0  # planner snaps to the lane
    ends_at_goal = math.dist(points[-1], (start.goal_x, start.goal_y)) <= tolerance_m + 2.0
    return starts_here and ends_at_goal and length >= min_length_m


def settle_check(
    start: StartPose, x: float, y: float, speed: float, route_ready: bool, tolerance_m: float
) -> SettleCheck:
    distance = math.dist((x, y), (start.x, start.y))
    return SettleCheck(distance <= tolerance_m, abs(speed) < STANDING_MPS, route_ready, distance, speed)
