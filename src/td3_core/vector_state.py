"""The vector half of the observation: speed, lane offset, heading error, waypoints ahead.

Layout (size 3 + 2 * num_waypoints, 23 with the default 10 waypoints):
    [speed / speed_scale, lateral / lateral_scale, heading_error / pi,
     x_1 / lookahead, y_1 / lookahead, ..., x_N / lookahead, y_N / lookahead]
where (x_i, y_i) are the next route points in the vehicle frame (x forward, y left), padded
with the last route point. `use_vector_state: false` gives an empty vector (pixels only).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from td3_core.route import Route, RouteProjection, wrap_angle


@dataclass(frozen=True)
class ObservationConfig:
    use_vector_state: bool = True
    num_waypoints: int = 10
    speed_scale: float = 30.0  # m/s
    lateral_scale: float = 3.5  # m, one lane width
    lookahead_m: float = 50.0

    def __post_init__(self) -> None:
        if not 0 <= self.num_waypoints <= 100:
            raise ValueError(f"num_waypoints must be in 0..100, got {self.num_waypoints}")
        for name in ("speed_scale", "lateral_scale", "lookahead_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

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
        cast = {"bool": bool, "int": int, "float": float}
        return cls(**{k: cast[str(typed[k])](v) for k, v in known.items()})


def vehicle_frame(points: np.ndarray, x: float, y: float, yaw: float) -> np.ndarray:
    """Map-frame points → vehicle frame (x forward, y left)."""
    cos_yaw, sin_yaw = math.cos(yaw), math.sin(yaw)
    dx, dy = points[:, 0] - x, points[:, 1] - y
    return np.stack([cos_yaw * dx + sin_yaw * dy, -sin_yaw * dx + cos_yaw * dy], axis=1)


def build_vector_state(
    x: float, y: float, yaw: float, speed: float, route: Route, config: ObservationConfig
) -> tuple[np.ndarray, RouteProjection]:
    """The observation vector (float32) and the route projection it was computed from."""
    projection = route.project(x, y)
    if not config.use_vector_state:
        return np.zeros(0, dtype=np.float32), projection
    heading_error = wrap_angle(yaw - projection.route_yaw)
    ahead = vehicle_frame(route.points_ahead(projection.segment, config.num_waypoints), x, y, yaw)
    vector = np.concatenate(
        [
            [speed / config.speed_scale, projection.lateral / config.lateral_scale, heading_error / math.pi],
            (ahead / config.lookahead_m).reshape(-1),
        ]
    ).astype(np.float32)
    return vector, projection
