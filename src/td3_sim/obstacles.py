"""Static obstacles on the road (traffic cones and crates): placement, contact test, drawing.

Obstacles are upright boxes. Placement depends only on the track, the spawn point and the
seed; they stand in either lane, never in the first 40 m of the route. Drawing ray-casts the
pixels around each box (slab test) on top of the rendered ground, nearest box wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from td3_sim import track as tr
from td3_sim.dynamics import VehicleParams, VehicleState
from td3_sim.renderer import FOG_RGB, CameraSpec

FIRST_OBSTACLE_ID = 1000
KINDS = {
    # kind: (length, width, height, RGB)
    "cone": (0.45, 0.45, 0.75, (235, 110, 30)),
    "crate": (1.2, 1.0, 1.0, (150, 105, 60)),
}
SUN = np.array([0.35, 0.55, 0.76])  # map-frame direction towards the light, for face shading


@dataclass(frozen=True)
class Obstacle:
    actor_id: int
    kind: str
    x: float
    y: float
    yaw: float
    length: float
    width: float
    height: float
    rgb: tuple[int, int, int]


def place_obstacles(track: tr.Track, spawn_s: float, count: int, seed: int) -> list[Obstacle]:
    if count <= 0:
        return []
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 3571]))
    usable = track.length - 60.0
    spacing = usable / count
    out = []
    for i in range(count):
        s = spawn_s + 40.0 + spacing * (i + rng.uniform(0.2, 0.8))
        kind = "cone" if rng.uniform() < 0.5 else "crate"
        lane = tr.RIGHT_LANE_OFFSET if rng.uniform() < 0.6 else -tr.RIGHT_LANE_OFFSET
        d = lane + rng.uniform(-0.8, 0.8)
        point = track.offset_points(np.array([s]), np.array([d]))[0]
        _, tangent = track.frame_at(np.array([s]))
        yaw = math.atan2(tangent[0, 1], tangent[0, 0]) + rng.uniform(-0.4, 0.4)
        length, width, height, rgb = KINDS[kind]
        out.append(
            Obstacle(FIRST_OBSTACLE_ID + i, kind, float(point[0]), float(point[1]), yaw, length, width, height, rgb)
        )
    return out


def _corners(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], dtype=np.float64) * [length / 2, width / 2]
    return np.stack([x + c * local[:, 0] - s * local[:, 1], y + s * local[:, 0] + c * local[:, 1]], axis=1)


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex quads (4, 2)."""
    for quad in (a, b):
        for i in range(4):
            edge = quad[(i + 1) % 4] - quad[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def vehicle_hits(obstacles: list[Obstacle], x: float, y: float, yaw: float, p: VehicleParams) -> Obstacle | None:
    """The first obstacle the vehicle's footprint overlaps, if any."""
    if not obstacles:
        return None
    body = _corners(x, y, yaw, p.length, p.width)
    reach = 0.5 * math.hypot(p.length, p.width)
    for ob in obstacles:
        if math.hypot(ob.x - x, ob.y - y) > reach + 0.5 * math.hypot(ob.length, ob.width):
            continue
        if _overlap(body, _corners(ob.x, ob.y, ob.yaw, ob.length, ob.width)):
            return ob
    return None


@lru_cache(maxsize=4)
def _body_rays(cam: CameraSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit ray directions of the output pixels in the vehicle frame (x fwd, y left, z up)."""
    fx, fy, cx, cy = cam.intrinsics()
    u = (np.arange(cam.width) + 0.5 - cx) / fx
    v = (np.arange(cam.height) + 0.5 - cy) / fy
    bx = np.ones((cam.height, cam.width))
    by = np.broadcast_to(-u[None, :], bx.shape)
    bz = np.broadcast_to(-v[:, None], bx.shape)
    p = math.radians(cam.pitch_deg)
    dx = bx * math.cos(p) + bz * math.sin(p)
    dz = -bx * math.sin(p) + bz * math.cos(p)
    norm = np.sqrt(dx * dx + by * by + dz * dz)
    return dx / norm, by / norm, dz / norm


def _window(cam: CameraSpec, ob: Obstacle, ox: float, oy: float, yaw: float) -> tuple[slice, slice] | None:
    """Pixel rectangle that contains the obstacle, None when it is behind the camera."""
    base = _corners(ob.x, ob.y, ob.yaw, ob.length, ob.width)
    c, s = math.cos(yaw), math.sin(yaw)
    rel_x, rel_y = base[:, 0] - ox, base[:, 1] - oy
    fwd = np.concatenate([c * rel_x + s * rel_y] * 2)
    left = np.concatenate([-s * rel_x + c * rel_y] * 2)
    up = np.concatenate([np.full(4, -cam.z), np.full(4, ob.height - cam.z)])
    p = math.radians(cam.pitch_deg)
    depth = fwd * math.cos(p) - up * math.sin(p)
    cam_up = fwd * math.sin(p) + up * math.cos(p)
    if (depth <= 0.05).all():
        return None
    if (depth <= 0.05).any():  # straddles the image plane: test every pixel
        return slice(0, cam.height), slice(0, cam.width)
    fx, fy, cx, cy = cam.intrinsics()
    u = cx - fx * left / depth
    v = cy - fy * cam_up / depth
    u0, u1 = max(math.floor(u.min()) - 1, 0), min(math.ceil(u.max()) + 1, cam.width)
    v0, v1 = max(math.floor(v.min()) - 1, 0), min(math.ceil(v.max()) + 1, cam.height)
    if u0 >= u1 or v0 >= v1:
        return None
    return slice(v0, v1), slice(u0, u1)


def draw_obstacles(image: np.ndarray, cam: CameraSpec, obstacles: list[Obstacle], state: VehicleState) -> None:
    """Paint the visible obstacles into `image` (H, W, 4 BGRA) in place, nearest in front."""
    rays = _body_rays(cam)
    c, s = math.cos(state.yaw), math.sin(state.yaw)
    ox, oy = state.x + c * cam.x, state.y + s * cam.x
    depth = np.full(rays[0].shape, np.inf)
    for ob in obstacles:
        if math.hypot(ob.x - ox, ob.y - oy) > 250.0:
            continue
        window = _window(cam, ob, ox, oy, state.yaw)
        if window is not None:
            _draw_one(image[window], depth[window], cam, ob, [r[window] for r in rays], ox, oy, state.yaw)


def _draw_one(
    image: np.ndarray,
    depth: np.ndarray,
    cam: CameraSpec,
    ob: Obstacle,
    rays: list[np.ndarray],
    ox: float,
    oy: float,
    yaw: float,
) -> None:
    rx, ry, rz = rays
    c, s = math.cos(yaw), math.sin(yaw)
    # Ray directions and origin in the obstacle's frame (box from z = 0 to its height).
    wdx, wdy = c * rx - s * ry, s * rx + c * ry
    co, so = math.cos(-ob.yaw), math.sin(-ob.yaw)
    lx, ly = co * wdx - so * wdy, so * wdx + co * wdy
    px, py = co * (ox - ob.x) - so * (oy - ob.y), so * (ox - ob.x) + co * (oy - ob.y)
    slabs = ((px, lx, ob.length / 2), (py, ly, ob.width / 2), (cam.z - ob.height / 2, rz, ob.height / 2))
    t_near = np.full(rx.shape, -np.inf)
    t_far = np.full(rx.shape, np.inf)
    axis = np.zeros(rx.shape, dtype=np.int8)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, (origin, direction, half) in enumerate(slabs):
            t1 = (-half - origin) / direction
            t2 = (half - origin) / direction
            lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
            inside = abs(origin) <= half
            lo = np.where(direction == 0.0, -np.inf if inside else np.inf, lo)
            hi = np.where(direction == 0.0, np.inf if inside else -np.inf, hi)
            axis = np.where(lo > t_near, k, axis).astype(np.int8)
            t_near = np.maximum(t_near, lo)
            t_far = np.minimum(t_far, hi)
    hit = (t_near <= t_far) & (t_near > 0.0) & (t_near < depth)
    if not hit.any():
        return
    depth[hit] = t_near[hit]
    # Shade by the face that was entered: its normal (map frame) against the light.
    sign = np.where(axis == 0, -np.sign(lx), np.where(axis == 1, -np.sign(ly), -np.sign(rz)))[hit]
    face = axis[hit]
    normals = (
        (math.cos(ob.yaw), math.sin(ob.yaw), 0.0),
        (-math.sin(ob.yaw), math.cos(ob.yaw), 0.0),
        (0.0, 0.0, 1.0),
    )
    shade = np.zeros(len(face))
    for k, n in enumerate(normals):
        facing = float(np.dot(n, SUN))
        shade = np.where(
            face == k, np.where(sign > 0, 0.55 + 0.45 * max(0.0, facing), 0.55 + 0.45 * max(0.0, -facing)), shade
        )
    rgb = np.asarray(ob.rgb, dtype=np.float64)[None, :] * shade[:, None]
    if ob.kind == "cone":  # a white reflective band
        z = cam.z + rz[hit] * t_near[hit]
        band = (z > 0.35 * ob.height) & (z < 0.6 * ob.height)
        rgb[band] = 235.0 * shade[band][:, None]
    if cam.fog_distance > 0:
        w = 1.0 - np.exp(-t_near[hit] / cam.fog_distance)
        rgb = rgb * (1.0 - w[:, None]) + np.asarray(FOG_RGB, dtype=np.float64)[None, :] * w[:, None]
    q = np.rint(np.clip(rgb, 0.0, 255.0)).astype(np.uint8)
    image[hit, 0], image[hit, 1], image[hit, 2], image[hit, 3] = q[:, 2], q[:, 1], q[:, 0], 255
