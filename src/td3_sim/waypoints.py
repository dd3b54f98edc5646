"""A carla_waypoint_publisher for the embedded simulator: open routes from the car to a goal.

Like the real node (carla_waypoint_publisher.py): the route runs from the car's CURRENT
position to the goal along the lane's driving direction, one point about every metre
(GlobalRoutePlanner with sampling_resolution 1); it is recomputed when the car moved more than
2 m since the previous tick (a teleport) or when a goal arrives. The real node computes in a
callback of its own, so a new route comes some ticks after its trigger: `delay_ticks` here.
The default goal, like `spawn_points[0]` of a CARLA map, is a fixed point of the track.
ROS-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from td3_sim import track as tr

REROUTE_DISTANCE_M = 2.0  # carla_waypoint_publisher.WAYPOINT_DISTANCE
ROUTE_SPACING_M = 1.0  # GlobalRoutePlanner(sampling_resolution=1)
MIN_ROUTE_M = 2.0  # a goal closer than this ahead still gives a route of two points


@dataclass(frozen=True)
class PlannedRoute:
    points: np.ndarray  # (N, 2), the first at the car's lane position, the last at the goal
    yaws: np.ndarray  # (N,)
    version: int  # 1, 2, ... in the order the routes were computed
    trigger: str  # "start", "goal" or "repositioned"


def open_route(track: tr.Track, start_s: float, goal_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Right-lane centre from arclength start_s forward to goal_s, points every ~1 m."""
    length = (goal_s - start_s) % track.length
    length = max(length, MIN_ROUTE_M)
    count = max(2, round(length / ROUTE_SPACING_M) + 1)
    s = start_s + np.linspace(0.0, length, count)
    points = track.offset_points(s, np.full(count, tr.RIGHT_LANE_OFFSET))
    deltas = np.diff(points, axis=0)
    yaws = np.arctan2(deltas[:, 1], deltas[:, 0])
    return points, np.append(yaws, yaws[-1])


class WaypointPlanner:
    """Decides when a route is computed and when it is published (after `delay_ticks` ticks)."""

    def __init__(self, track: tr.Track, goal_xy: tuple[float, float], delay_ticks: int = 0) -> None:
        self.track = track
        self.goal_xy = goal_xy
        self.delay_ticks = delay_ticks
        self.version = 0
        self._last_xy: tuple[float, float] | None = None
        self._pending: list[tuple[int, PlannedRoute]] = []  # (ticks left, route)

    def set_track(self, track: tr.Track, goal_xy: tuple[float, float]) -> None:
        self.track, self.goal_xy = track, goal_xy
        self._last_xy = None

    def on_goal(self, x: float, y: float, car_xy: tuple[float, float]) -> None:
        """A goal arrived: route from where the car is now to it."""
        self.goal_xy = (x, y)
        self._plan(car_xy, "goal")

    def on_tick(self, car_xy: tuple[float, float]) -> list[PlannedRoute]:
        """Called once per tick with the car's position; returns the routes due for publishing."""
        if self._last_xy is None:
            self._plan(car_xy, "start")
        elif math.dist(self._last_xy, car_xy) > REROUTE_DISTANCE_M:
            self._plan(car_xy, "repositioned")
        self._last_xy = car_xy
        due = [route for left, route in self._pending if left <= 0]
        self._pending = [(left - 1, route) for left, route in self._pending if left > 0]
        return due

    def _plan(self, car_xy: tuple[float, float], trigger: str) -> None:
        start = self.track.project(*car_xy)
        goal = self.track.project(*self.goal_xy)
        points, yaws = open_route(self.track, start.s, goal.s)
        self.version += 1
        delay = 0 if trigger == "start" else self.delay_ticks
        self._pending.append((delay, PlannedRoute(points, yaws, self.version, trigger)))
