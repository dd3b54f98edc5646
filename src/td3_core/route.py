"""Where the car is relative to its route: projection, lateral offset, heading error.

The route is the nav_msgs/Path of carla_waypoint_publisher (or of the embedded simulator),
as an (N, 2) array of map-frame points. Conventions: lateral offset is positive when the car
is LEFT of the route, heading error = car yaw - route yaw wrapped to (-pi, pi].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_RESAMPLED_POINTS = 100_000  # 200 km at 2 m: longer "routes" are bad input, not resampled
START_TOLERANCE_M = 1.0  # a closed route's end is this close to its start; a car this close to it is at the start
CURVATURE_PREVIEW_M = 20.0  # the road read ahead for its curvature: about the braking distance from 10 m/s


def resample(points: np.ndarray, spacing: float) -> np.ndarray:
    """The polyline with a point every `spacing` m along it (first and last point kept).

    Publishers space their waypoints differently (carla_waypoint_publisher ~1 m); resampled, the
    waypoints of the vector state always cover the same distance ahead."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[-1] != 2 or len(points) < 2 or not np.isfinite(points).all():
        return points  # Route() says what is wrong with it
    with np.errstate(over="ignore", invalid="ignore"):
        steps = np.hypot(*np.diff(points, axis=0).T)
        along = np.concatenate([[0.0], np.cumsum(steps)])
    if not np.isfinite(along[-1]) or along[-1] / spacing > MAX_RESAMPLED_POINTS:
        return points  # no road is that long: left as it came, Route() measures or refuses it
    count = max(round(along[-1] / spacing), 1) + 1
    targets = np.linspace(0.0, along[-1], count)
    return np.stack([np.interp(targets, along, points[:, 0]), np.interp(targets, along, points[:, 1])], axis=1)


def wrap_angle(angle: float) -> float:
    return float((angle + np.pi) % (2.0 * np.pi) - np.pi)


@dataclass(frozen=True)
class RouteProjection:
    segment: int  # index of the route segment the car is on (points segment, segment + 1)
    distance_along: float  # metres from the route start to the projection point
    lateral: float  # signed offset, + left of the route
    route_yaw: float  # direction of the route at the projection point
    remaining: float  # metres left to the end of the route
    distance: float = 0.0  # metres from the car to the nearest route point (= |lateral| inside a segment)
    curvature_ahead: float = 0.0  # 1/m: the route's mean |curvature| over the next CURVATURE_PREVIEW_M


class Route:
    """A polyline with a progress-aware projection (searches near the last segment first)."""

    def __init__(self, points: np.ndarray, search_window: int = 20) -> None:
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
            raise ValueError(f"route needs at least 2 points of shape (N, 2), got {points.shape}")
        if not np.isfinite(points).all():
            raise ValueError("route has non-finite points")
        self.points = points
        with np.errstate(over="ignore"):
            deltas = np.diff(points, axis=0)
            self._seg_len = np.maximum(np.hypot(deltas[:, 0], deltas[:, 1]), 1e-9)
            cumulative = np.concatenate([[0.0], np.cumsum(self._seg_len)])
        if not np.isfinite(cumulative).all():
            raise ValueError("route is too long to measure (coordinates overflow)")
        self._seg_dir = deltas / self._seg_len[:, None]
        self._cum = cumulative
        self.length = float(self._cum[-1])
        self.closed = bool(np.hypot(*(points[-1] - points[0])) < START_TOLERANCE_M)  # a lap: end = start
        # |turn| from each segment into the next (the last one's next is the first on a closed route,
        # none on an open one), summed from the start: the turn over any stretch is a difference, so
        # its mean curvature needs no per-point noise filter.
        following = np.roll(self._seg_dir, -1, axis=0)
        cross = self._seg_dir[:, 0] * following[:, 1] - self._seg_dir[:, 1] * following[:, 0]
        turn = np.abs(np.arctan2(cross, np.einsum("ij,ij->i", self._seg_dir, following)))
        if not self.closed:
            turn[-1] = 0.0
        self._cum_turn = np.concatenate([[0.0], np.cumsum(turn)])
        self._search_window = search_window
        self._last_segment: int | None = None

    def reset_progress(self) -> None:
        self._last_segment = None

    def project(self, x: float, y: float) -> RouteProjection:
        n_seg = len(self._seg_len)
        if self._last_segment is None:
            candidates = np.arange(n_seg)
        else:
            lo = max(0, self._last_segment - 2)
            candidates = np.arange(lo, min(n_seg, self._last_segment + self._search_window))
        rel = np.array([x, y]) - self.points[candidates]
        along = np.clip(np.einsum("ij,ij->i", rel, self._seg_dir[candidates]), 0.0, self._seg_len[candidates])
        closest = self.points[candidates] + self._seg_dir[candidates] * along[:, None]
        dist = np.hypot(closest[:, 0] - x, closest[:, 1] - y)
        best = int(np.argmin(dist))
        if self._last_segment is None and self.closed and dist[0] <= dist[best] + START_TOLERANCE_M:
            # A closed route passes its start twice: a car at (or a hair behind) the start is at
            # the start, not at the goal.
            best = 0
        segment = int(candidates[best])
        self._last_segment = segment
        direction = self._seg_dir[segment]
        offset = np.array([x, y]) - closest[best]
        lateral = float(direction[0] * offset[1] - direction[1] * offset[0])
        distance_along = float(self._cum[segment] + along[best])
        return RouteProjection(
            segment=segment,
            distance_along=distance_along,
            lateral=lateral,
            route_yaw=float(np.arctan2(direction[1], direction[0])),
            remaining=self.length - distance_along,
            distance=float(dist[best]),
            curvature_ahead=self.curvature_ahead(distance_along),
        )

    def curvature_ahead(self, distance_along: float, preview_m: float = CURVATURE_PREVIEW_M) -> float:
        """Mean |curvature| (1/m) of the route from `distance_along` over the next `preview_m`: its
        total turn there over preview_m. A closed route goes on past its end; an open one ends (a
        curve that far ahead counts for the part of it within the route)."""
        turned = self._turn_between(distance_along, distance_along + preview_m)
        if self.closed and distance_along + preview_m > self.length:
            turned += self._turn_between(0.0, distance_along + preview_m - self.length)
        return float(turned / preview_m)

    def _turn_between(self, start: float, end: float) -> float:
        start, end = min(max(start, 0.0), self.length), min(max(end, 0.0), self.length)
        return float(np.interp(end, self._cum, self._cum_turn) - np.interp(start, self._cum, self._cum_turn))

    def points_ahead(self, segment: int, count: int) -> np.ndarray:
        """The `count` route points after `segment`, padded with the last point."""
        idx = np.minimum(np.arange(segment + 1, segment + 1 + count), len(self.points) - 1)
        return self.points[idx]
