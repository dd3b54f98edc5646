"""Track geometry: a closed centerline with a two-lane road around it, and the ego's route.

Map frame as in ROS REP-103 (x forward, y left, metres); the centerline runs counter-clockwise
for the built-in loop. The road is symmetric around the centerline (the broken centre line);
right-hand traffic, so the ego drives in the lane to the RIGHT of the centerline in the
direction of increasing arclength s. Lateral offsets d are signed, + LEFT of the centerline.

    d:  0          broken centre line (LANE_MARKING_BROKEN)
        ±3.5       solid edge lines (LANE_MARKING_SOLID), lane width 3.5 m
        ±3.5..4.0  asphalt shoulder
        ±4.0..4.25 curb; beyond the curb the car has left the road (a collision)
        beyond     sidewalk (some procedural tracks) then grass
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LANE_WIDTH = 3.5
LINE_WIDTH = 0.15
DASH_LENGTH = 3.0  # broken centre line: 3 m painted, 6 m gap
DASH_PERIOD = 9.0
ROAD_HALF_WIDTH = 4.0  # asphalt, edge line included
CURB_WIDTH = 0.25
CURB_OUTER = ROAD_HALF_WIDTH + CURB_WIDTH
SIDEWALK_WIDTH = 2.0
RIGHT_LANE_OFFSET = -LANE_WIDTH / 2.0  # the ego's lane centre, right of the centerline
MARKINGS = ((0.0, "broken"), (LANE_WIDTH, "solid"), (-LANE_WIDTH, "solid"))

# Surface classes of the ground texture (the renderer picks their colours); lines are painted
# LINE_WIDTH wide, centred on the offsets of MARKINGS, the broken one DASH_LENGTH of DASH_PERIOD.
GRASS, ASPHALT, LINE, CURB, SIDEWALK = 0, 1, 2, 3, 4

TRACK_NAMES = ("loop", "procedural")
SAMPLE_SPACING = 1.0  # centerline vertex spacing, metres
ROUTE_SPACING = 2.0  # like carla_waypoint_publisher's ~2 m waypoints
MIN_RADIUS = 15.0  # centerline curvature radius (the inner curb stays above 10 m)
MIN_SEPARATION = 30.0  # between parts of the track that are not neighbours along it


@dataclass(frozen=True)
class Projection:
    s: float  # arclength of the closest centerline point, [0, length)
    d: float  # signed lateral offset from the centerline, + left
    segment: int  # index of the centerline segment (vertex segment -> segment + 1)
    yaw: float  # centerline direction at that point


class Track:
    """A closed centerline resampled every ~1 m, with projection and offset curves."""

    def __init__(self, points: np.ndarray, name: str, seed: int, sidewalk: bool = False) -> None:
        points = np.asarray(points, dtype=np.float64)
        self.name = name
        self.seed = seed
        self.sidewalk = sidewalk
        self.centerline = _resample_closed(points, SAMPLE_SPACING)
        nxt = np.roll(self.centerline, -1, axis=0)
        deltas = nxt - self.centerline
        self._seg_len = np.hypot(deltas[:, 0], deltas[:, 1])
        self._seg_dir = deltas / self._seg_len[:, None]
        self._cum = np.concatenate([[0.0], np.cumsum(self._seg_len)])
        self.length = float(self._cum[-1])
        # Vertex tangents: average of the neighbouring segments, for smooth offset curves.
        tangent = self._seg_dir + np.roll(self._seg_dir, 1, axis=0)
        self._tangent = tangent / np.hypot(tangent[:, 0], tangent[:, 1])[:, None]

    @property
    def n_points(self) -> int:
        return len(self.centerline)

    # ------------------------------------------------------------------ queries

    def project(self, x: float, y: float, hint: int | None = None, window: int = 12) -> Projection:
        """Closest centerline point; searches near `hint` first, everywhere if that is ambiguous."""
        n = self.n_points
        candidates = np.arange(n) if hint is None else np.arange(hint - window, hint + window + 1) % n
        proj = self._project_on(candidates, x, y)
        if hint is not None and proj[1] in (candidates[0], candidates[-1]):
            proj = self._project_on(np.arange(n), x, y)
        along, segment, d = proj[0], int(proj[1]), proj[2]
        s = (self._cum[segment] + along) % self.length
        direction = self._seg_dir[segment]
        return Projection(s=float(s), d=float(d), segment=segment, yaw=math.atan2(direction[1], direction[0]))

    def _project_on(self, candidates: np.ndarray, x: float, y: float) -> tuple[float, int, float]:
        starts = self.centerline[candidates]
        dirs = self._seg_dir[candidates]
        rel = np.array([x, y]) - starts
        along = np.clip(rel[:, 0] * dirs[:, 0] + rel[:, 1] * dirs[:, 1], 0.0, self._seg_len[candidates])
        closest = starts + dirs * along[:, None]
        dist = np.hypot(closest[:, 0] - x, closest[:, 1] - y)
        best = int(np.argmin(dist))
        offset = np.array([x, y]) - closest[best]
        d = dirs[best, 0] * offset[1] - dirs[best, 1] * offset[0]
        return float(along[best]), int(candidates[best]), float(d)

    def frame_at(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Centerline points (..., 2) and unit tangents (..., 2) at arclengths s (wrapped)."""
        s = np.mod(np.asarray(s, dtype=np.float64), self.length)
        segment = np.searchsorted(self._cum, s, side="right") - 1
        segment = np.clip(segment, 0, self.n_points - 1)
        t = (s - self._cum[segment]) / self._seg_len[segment]
        nxt = (segment + 1) % self.n_points
        points = self.centerline[segment] + self._seg_dir[segment] * (t * self._seg_len[segment])[..., None]
        tangent = self._tangent[segment] * (1.0 - t)[..., None] + self._tangent[nxt] * t[..., None]
        tangent = tangent / np.hypot(tangent[..., 0], tangent[..., 1])[..., None]
        return points, tangent

    def curvature(self, s: np.ndarray | float, window_m: float = 6.0) -> np.ndarray:
        """|Curvature| (1/m) of the centerline at arclengths s: the turn of its tangent over
        window_m around s, divided by window_m (smooths the ~1 m resampling)."""
        s = np.asarray(s, dtype=np.float64)
        _, before = self.frame_at(s - window_m / 2.0)
        _, after = self.frame_at(s + window_m / 2.0)
        cross = before[..., 0] * after[..., 1] - before[..., 1] * after[..., 0]
        dot = before[..., 0] * after[..., 0] + before[..., 1] * after[..., 1]
        return np.abs(np.arctan2(cross, dot)) / window_m

    def offset_points(self, s: np.ndarray, d: np.ndarray | float) -> np.ndarray:
        """Map-frame points at arclength s and lateral offset d (+ left)."""
        points, tangent = self.frame_at(s)
        normal = np.stack([-tangent[..., 1], tangent[..., 0]], axis=-1)
        return points + normal * np.asarray(d, dtype=np.float64)[..., None]

    def spawn_pose(self, s0: float) -> tuple[float, float, float]:
        """(x, y, yaw) on the right-lane centre at arclength s0, facing along the track."""
        point = self.offset_points(np.array([s0]), np.array([RIGHT_LANE_OFFSET]))[0]
        _, tangent = self.frame_at(np.array([s0]))
        return float(point[0]), float(point[1]), math.atan2(tangent[0, 1], tangent[0, 0])

    def route(self, s0: float, spacing: float = ROUTE_SPACING) -> tuple[np.ndarray, np.ndarray]:
        """Right-lane centre for one lap from s0: points (N, 2) every ~spacing m (last = first), yaws (N,)."""
        dense_s = s0 + np.linspace(0.0, self.length, math.ceil(self.length / 0.25) + 1)
        dense = self.offset_points(dense_s, np.full(len(dense_s), RIGHT_LANE_OFFSET))
        steps = np.hypot(*np.diff(dense, axis=0).T)
        cum = np.concatenate([[0.0], np.cumsum(steps)])
        count = max(round(cum[-1] / spacing), 3)
        targets = np.linspace(0.0, cum[-1], count + 1)
        points = np.stack([np.interp(targets, cum, dense[:, 0]), np.interp(targets, cum, dense[:, 1])], axis=1)
        points[-1] = points[0]  # one closed lap
        deltas = np.diff(points, axis=0)
        yaws = np.arctan2(deltas[:, 1], deltas[:, 0])
        return points, np.append(yaws, yaws[0])

    def surfaces(self) -> list[tuple[float, float, int]]:
        """Signed lateral intervals (d_lo, d_hi, class) of the ground beside the grass."""
        out = [
            (-ROAD_HALF_WIDTH, ROAD_HALF_WIDTH, ASPHALT),
            (ROAD_HALF_WIDTH, CURB_OUTER, CURB),
            (-CURB_OUTER, -ROAD_HALF_WIDTH, CURB),
        ]
        if self.sidewalk:
            out += [
                (CURB_OUTER, CURB_OUTER + SIDEWALK_WIDTH, SIDEWALK),
                (-CURB_OUTER - SIDEWALK_WIDTH, -CURB_OUTER, SIDEWALK),
            ]
        return out

    def bounds(self, margin: float) -> tuple[float, float, float, float]:
        lo = self.centerline.min(axis=0) - margin
        hi = self.centerline.max(axis=0) + margin
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


# ---------------------------------------------------------------------- construction


def make_track(name: str, seed: int = 0) -> Track:
    if name == "loop":
        return Track(loop_centerline(), "loop", seed=0)
    if name == "procedural":
        points, sidewalk = procedural_centerline(seed)
        return Track(points, "procedural", seed=seed, sidewalk=sidewalk)
    raise ValueError(f"unknown track '{name}' (known: {', '.join(TRACK_NAMES)})")


def loop_centerline() -> np.ndarray:
    """A rounded rectangle with corners of 18-40 m radius and two S-bends (left and right turns).

    The top straight and the left side are solved so that the loop closes exactly.
    """

    def build(top: float, left: float) -> np.ndarray:
        return _primitives(
            [
                ("S", 40.0),
                ("A", 60.0, 20.0),
                ("A", 60.0, -20.0),  # S-bend: a right-hand curve
                ("S", 30.0),
                ("A", 25.0, 90.0),
                ("S", 50.0),
                ("A", 40.0, 90.0),
                ("S", 20.0),
                ("A", 35.0, -30.0),
                ("A", 35.0, 30.0),
                ("S", top),
                ("A", 18.0, 90.0),
                ("S", left),
                ("A", 30.0, 90.0),
            ]
        )

    open_end = build(0.0, 0.0)[-1]
    top, left = float(open_end[0]), float(open_end[1])  # west and south straights close the loop
    if top <= 0 or left <= 0:
        raise AssertionError("loop primitives do not close with positive straights")
    points = build(top, left)
    return points[:-1]


def _primitives(parts: list[tuple]) -> np.ndarray:
    """Straights ("S", length) and arcs ("A", radius, degrees, + = left) from (0, 0) heading east."""
    x = y = heading = 0.0
    out = [(x, y)]
    step = 0.25
    for part in parts:
        if part[0] == "S":
            n = max(math.ceil(part[1] / step), 1)
            for _ in range(n):
                x += math.cos(heading) * part[1] / n
                y += math.sin(heading) * part[1] / n
                out.append((x, y))
        else:
            radius, angle = part[1], math.radians(part[2])
            n = max(math.ceil(abs(angle) * radius / step), 1)
            side = 1.0 if angle > 0 else -1.0
            cx, cy = x - side * radius * math.sin(heading), y + side * radius * math.cos(heading)
            for i in range(1, n + 1):
                h = heading + angle * i / n
                out.append((cx + side * radius * math.sin(h), cy - side * radius * math.cos(h)))
            heading += angle
            x, y = out[-1]
    return np.array(out, dtype=np.float64)


def procedural_centerline(seed: int, max_attempts: int = 200) -> tuple[np.ndarray, bool]:
    """A smooth closed loop from `seed`: a polar curve r(θ) with random harmonics.

    A polar curve with r > 0 never crosses itself; candidates with too tight curves or with
    parts of the road too close together are rejected and the next draw of the same
    generator is tried, so the result depends on the seed only.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 7919]))
    theta = np.linspace(0.0, 2.0 * np.pi, 2048, endpoint=False)
    for _ in range(max_attempts):
        base = rng.uniform(55.0, 85.0)
        radius = np.ones_like(theta)
        for k in range(2, 6):
            amplitude = rng.uniform(0.0, 0.5 / k)
            radius = radius + amplitude * np.cos(k * theta + rng.uniform(0.0, 2.0 * np.pi))
        stretch = rng.uniform(0.75, 1.3)
        sidewalk = bool(rng.uniform() < 0.5)
        if radius.min() < 0.35:
            continue
        points = np.stack([base * stretch * radius * np.cos(theta), base * radius * np.sin(theta)], axis=1)
        resampled = _resample_closed(points, SAMPLE_SPACING)
        if track_is_valid(resampled):
            return points, sidewalk
    raise RuntimeError(f"no valid procedural track for seed {seed} in {max_attempts} attempts")


def track_is_valid(centerline: np.ndarray) -> bool:
    """Curvature radius >= MIN_RADIUS everywhere, distant parts >= MIN_SEPARATION apart."""
    return min_curvature_radius(centerline) >= MIN_RADIUS and min_separation(centerline) >= MIN_SEPARATION


def min_curvature_radius(centerline: np.ndarray, window: int = 3) -> float:
    """Smallest radius over arcs of 2*window segments (robust to resampling noise)."""
    deltas = np.roll(centerline, -1, axis=0) - centerline
    yaw = np.unwrap(np.arctan2(deltas[:, 1], deltas[:, 0]))
    lengths = np.hypot(deltas[:, 0], deltas[:, 1])
    total = 2.0 * np.pi * round(float(yaw[-1] - yaw[0]) / (2.0 * np.pi))  # +-2π for a simple loop
    yaw_ext = np.concatenate([yaw[-window:] - total, yaw, yaw[:window] + total])
    turn = np.abs(yaw_ext[2 * window :] - yaw_ext[: -2 * window])
    arc = 2 * window * float(np.mean(lengths))
    return float(arc / max(float(turn.max()), 1e-9))


def min_separation(centerline: np.ndarray, neighbourhood_m: float = 60.0) -> float:
    """Smallest distance between points more than neighbourhood_m apart along the loop."""
    n = len(centerline)
    step = float(np.mean(np.hypot(*np.diff(centerline, axis=0).T)))
    k = int(neighbourhood_m / step)
    sub = centerline[::2]
    idx = np.arange(0, n, 2)
    diff = sub[:, None, :] - sub[None, :, :]
    dist = np.hypot(diff[..., 0], diff[..., 1])
    gap = np.abs(idx[:, None] - idx[None, :])
    gap = np.minimum(gap, n - gap)
    dist[gap <= k] = np.inf
    return float(dist.min())


def _resample_closed(points: np.ndarray, spacing: float) -> np.ndarray:
    """Closed polyline (first point not repeated) resampled to equal steps of about `spacing`."""
    closed = np.vstack([points, points[:1]])
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(closed, axis=0).T))])
    count = max(round(cum[-1] / spacing), 8)
    targets = np.linspace(0.0, cum[-1], count, endpoint=False)
    return np.stack([np.interp(targets, cum, closed[:, 0]), np.interp(targets, cum, closed[:, 1])], axis=1)
