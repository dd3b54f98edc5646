"""The vector half of the observation: speed, lane offset, heading error, waypoints ahead.

Layout (size 3 + 2 * num_waypoints, 23 with the default 10 waypoints):
    [speed / speed_scale, lateral / lateral_scale, heading_error / pi,
     x_1 / lookahead, y_1 / lookahead, ..., x_N / lookahead, y_N / lookahead]
where (x_i, y_i) are the next route points in the vehicle frame (x forward, y left), padded
with the last route point. `use_vector_state: false` gives an empty vector (pixels only).

The conventions are part of a checkpoint's profile, so that a network reads what it was trained
with. Ours are the defaults. The original system (td3_core.legacy_formats) used the CARLA frame
(y right, yaw clockwise: lateral offset, heading error and waypoint y change sign), waypoints
starting with the first route point ahead that is 5 m or more from the car, (0, 0) for slots past
the route end or beyond the lookahead, and, before its last versions, a lateral offset from the
line through the previous and the first waypoint and a heading error against the bearing of the
first waypoint; its last versions use the unsigned distance to the route and its direction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from td3_core.route import Route, RouteProjection, wrap_angle

_CHOICES = {
    "frame": ("ros", "carla"),
    "lateral": ("signed", "unsigned"),
    "lateral_reference": ("projection", "waypoint_segment"),
    "heading_reference": ("route", "waypoint_bearing"),
    "beyond_lookahead": ("keep", "zero"),
    "past_route_end": ("last_point", "zero"),
}


# Set by a checkpoint's metadata, never by a parameter: the conventions its networks were trained with.
PROFILE_FIELDS = (
    "frame",
    "lateral",
    "lateral_reference",
    "heading_reference",
    "waypoint_reach_m",
    "beyond_lookahead",
    "past_route_end",
)


@dataclass(frozen=True)
class ObservationConfig:
    use_vector_state: bool = True
    num_waypoints: int = 10
    speed_scale: float = 30.0  # m/s
    lateral_scale: float = 3.5  # m, one lane width
    lookahead_m: float = 50.0
    frame: str = "ros"  # ros: y left, yaw counter-clockwise; carla: y right, yaw clockwise
    lateral: str = "signed"  # signed offset, or unsigned distance to the route
    lateral_reference: str = "projection"  # projection on the route, or waypoint_segment (previous → first)
    heading_reference: str = "route"  # the route's direction, or waypoint_bearing (car → first waypoint)
    waypoint_reach_m: float = 0.0  # the first waypoint is the first one ahead at least this far from the car
    beyond_lookahead: str = "keep"  # keep, or zero: (0, 0) for waypoints farther than lookahead_m
    past_route_end: str = "last_point"  # slots past the route end: last_point, or zero

    def __post_init__(self) -> None:
        if not 0 <= self.num_waypoints <= 100:
            raise ValueError(f"num_waypoints must be in 0..100, got {self.num_waypoints}")
        for name in ("speed_scale", "lateral_scale", "lookahead_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.waypoint_reach_m <= 1000:
            raise ValueError(f"waypoint_reach_m must be in 0..1000, got {self.waypoint_reach_m}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

    @property
    def vector_dim(self) -> int:
        return 3 + 2 * self.num_waypoints if self.use_vector_state else 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ObservationConfig:
        fields = cls.__dataclass_fields__
        known = {k: v for k, v in values.items() if k in fields}
        typed = {k: fields[k].type for k in known}
        cast = {"bool": bool, "int": int, "float": float, "str": str}
        return cls(**{k: cast[str(typed[k])](v) for k, v in known.items()})


def vehicle_frame(points: np.ndarray, x: float, y: float, yaw: float) -> np.ndarray:
    """Map-frame points → vehicle frame (x forward, y left)."""
    cos_yaw, sin_yaw = math.cos(yaw), math.sin(yaw)
    dx, dy = points[:, 0] - x, points[:, 1] - y
    return np.stack([cos_yaw * dx + sin_yaw * dy, -sin_yaw * dx + cos_yaw * dy], axis=1)


def first_waypoint(x: float, y: float, route: Route, projection: RouteProjection, config: ObservationConfig) -> int:
    """Index of the first route point the vector shows: the next one after the car's segment, or
    with waypoint_reach_m the first of those at least that far from the car (never past the last)."""
    first = projection.segment + 1
    if config.waypoint_reach_m > 0:
        ahead = route.points[first:]
        near = np.hypot(ahead[:, 0] - x, ahead[:, 1] - y) < config.waypoint_reach_m
        first += int(np.argmin(near)) if not near.all() else len(near)
    return min(first, len(route.points) - 1)


def _lateral_and_heading(
    x: float, y: float, yaw: float, route: Route, projection: RouteProjection, first: int, config: ObservationConfig
) -> tuple[float, float]:
    """(lateral offset, heading error) in our frame (+ left, counter-clockwise)."""
    start, end = route.points[max(first - 1, 0)], route.points[first]
    lateral = projection.lateral
    if config.lateral_reference == "waypoint_segment":
        dx, dy = end[0] - start[0], end[1] - start[1]
        length = math.hypot(dx, dy)
        lateral = (dx * (y - start[1]) - dy * (x - start[0])) / length if length >= 1e-3 else 0.0
    target = projection.route_yaw
    if config.heading_reference == "waypoint_bearing":
        target = math.atan2(end[1] - y, end[0] - x)
    return lateral, wrap_angle(yaw - target)


def build_vector_state(
    x: float, y: float, yaw: float, speed: float, route: Route, config: ObservationConfig
) -> tuple[np.ndarray, RouteProjection]:
    """The observation vector (float32) and the route projection it was computed from."""
    projection = route.project(x, y)
    if not config.use_vector_state:
        return np.zeros(0, dtype=np.float32), projection
    first = first_waypoint(x, y, route, projection, config)
    lateral, heading_error = _lateral_and_heading(x, y, yaw, route, projection, first, config)
    idx = np.arange(first, first + config.num_waypoints)
    ahead = vehicle_frame(route.points[np.minimum(idx, len(route.points) - 1)], x, y, yaw)
    if config.frame == "carla":  # y right and yaw clockwise: the lateral axis and angles flip sign
        heading_error, lateral = -heading_error, -lateral
        ahead[:, 1] = -ahead[:, 1]
    if config.lateral == "unsigned":  # the distance to the route, also past a corner's vertex
        lateral = projection.distance if config.lateral_reference == "projection" else abs(lateral)
    empty = idx >= len(route.points) if config.past_route_end == "zero" else np.zeros(len(idx), dtype=bool)
    if config.beyond_lookahead == "zero":
        empty |= np.hypot(ahead[:, 0], ahead[:, 1]) > config.lookahead_m
    ahead[empty] = 0.0
    vector = np.concatenate(
        [
            [speed / config.speed_scale, lateral / config.lateral_scale, heading_error / math.pi],
            (ahead / config.lookahead_m).reshape(-1),
        ]
    ).astype(np.float32)
    return vector, projection
