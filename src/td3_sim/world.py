"""SimWorld: one ego vehicle on a track; a tick = dynamics + road events, render() = its camera.

ROS-free. The frame counter never goes back: construction and every reset produce a new
frame, every step() the next one, so stamps (frame * fixed_delta_seconds) never repeat.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from td3_core.params import ParamError
from td3_sim import track as tr
from td3_sim.dynamics import Control, VehicleParams, VehicleState, step_vehicle
from td3_sim.obstacles import Obstacle, draw_obstacles, place_obstacles, vehicle_hits
from td3_sim.renderer import CameraSpec, GroundMap, Lighting, Renderer

# carla_msgs/CarlaLaneInvasionEvent marking types
LANE_MARKING_OTHER = 0
LANE_MARKING_BROKEN = 1
LANE_MARKING_SOLID = 2
BARRIER_ACTOR_ID = 0  # other_actor_id of a collision with the roadside
MAX_OBSTACLES = 50
NS_PER_S = 1_000_000_000


class ConfigError(ParamError):
    """An invalid configuration value; `name` (and `param`) names the simulator parameter."""

    @property
    def param(self) -> str:
        return self.name


@dataclass(frozen=True)
class SimConfig:
    image_width: int = 800
    image_height: int = 600
    fov: float = 90.0
    camera_pitch_deg: float = 5.0
    fixed_delta_seconds: float = 0.05
    track: str = "loop"
    seed: int = 0
    randomize_lighting: bool = False
    obstacles: int = 0
    fog_distance: float = 150.0
    vehicle: VehicleParams = field(default_factory=VehicleParams)

    def validate(self) -> SimConfig:
        checks = [
            ("image_width", 1 <= self.image_width <= 8192, "must be in [1, 8192]"),
            ("image_height", 1 <= self.image_height <= 8192, "must be in [1, 8192]"),
            ("fov", 1.0 <= self.fov <= 170.0, "must be in [1, 170] degrees"),
            ("camera_pitch_deg", -30.0 <= self.camera_pitch_deg <= 60.0, "must be in [-30, 60] degrees"),
            ("fixed_delta_seconds", 0.0 < self.fixed_delta_seconds <= 0.5, "must be in (0, 0.5] s"),
            ("track", self.track in tr.TRACK_NAMES, f"unknown track, known: {', '.join(tr.TRACK_NAMES)}"),
            ("obstacles", 0 <= self.obstacles <= MAX_OBSTACLES, f"must be in [0, {MAX_OBSTACLES}]"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ConfigError(name, f"{why}, got {getattr(self, name)!r}")
        if not all(math.isfinite(v) for v in (self.fov, self.camera_pitch_deg, self.fixed_delta_seconds)):
            raise ConfigError("fov", "fov, camera_pitch_deg and fixed_delta_seconds must be finite")
        return self

    def camera(self) -> CameraSpec:
        return CameraSpec(
            width=self.image_width,
            height=self.image_height,
            fov_deg=self.fov,
            pitch_deg=self.camera_pitch_deg,
            fog_distance=self.fog_distance,
        )


@dataclass(frozen=True)
class CollisionEvent:
    other_actor_id: int
    normal_impulse: tuple[float, float, float]  # N·s on the ego, map frame


@dataclass(frozen=True)
class LaneInvasionEvent:
    crossed_lane_markings: tuple[int, ...]


Event = CollisionEvent | LaneInvasionEvent


class SimWorld:
    """The ego vehicle, its track and route, its camera. Ready (first frame) after construction."""

    def __init__(self, config: SimConfig | None = None, spawn_offset_m: float = 0.0) -> None:
        self.config = (config or SimConfig()).validate()
        self.spawn_offset_m = spawn_offset_m  # further along the track than the seed's spawn (other vehicles)
        self.dt = float(self.config.fixed_delta_seconds)
        self.dt_ns = round(self.dt * NS_PER_S)
        self.vehicle = self.config.vehicle
        self.renderer = Renderer(self.config.camera())
        self._maps: OrderedDict[tuple[str, int], tuple[tr.Track, GroundMap]] = OrderedDict()
        self._frame = 0
        self._spawn_s = 0.0
        self.lighting = Lighting()
        self.obstacles: list[Obstacle] = []
        self.track, self.ground = self._load(self.config.seed)
        self.reset(self.config.seed)

    # ------------------------------------------------------------------ episodes

    def reset(self, seed: int | None = None) -> None:
        """Respawn at the start of the route, standing; seed >= 0 picks a new track/spawn/lighting."""
        if seed is not None and seed >= 0:
            self.track, self.ground = self._load(seed)
            if self.track.name == "loop":
                self._spawn_s = math.fmod(seed * 0.6180339887498949, 1.0) * self.track.length
            else:
                self._spawn_s = 0.0
            self._spawn_s = math.fmod(self._spawn_s + self.spawn_offset_m, self.track.length)
            self.lighting = Lighting.from_seed(seed) if self.config.randomize_lighting else Lighting()
            self.obstacles = place_obstacles(self.track, self._spawn_s, self.config.obstacles, seed)
        x, y, yaw = self.track.spawn_pose(self._spawn_s)
        self.state = VehicleState(x=x, y=y, yaw=yaw)
        self.control = Control()
        self.input_invalid = False
        self._accel_xy = (0.0, 0.0)
        self.route_points, self.route_yaws = self.track.route(self._spawn_s)
        self._proj = self.track.project(x, y)
        self.events: list[Event] = []
        self._pending_pose: tuple[float, float, float] | None = None
        self._pending_speed: float | None = None
        self._frame += 1

    def lay_obstacles_from(self, s: float, seed: int) -> None:
        """Lay the configured obstacles out again from arclength `s` (none in its first 40 m), as a
        spawn there would: for episodes that start elsewhere than the spawn point."""
        self.obstacles = place_obstacles(self.track, s, self.config.obstacles, seed)

    def _load(self, seed: int) -> tuple[tr.Track, GroundMap]:
        """Track and ground map, cached (a few procedural tracks) because the map takes a moment."""
        key = (self.config.track, 0 if self.config.track == "loop" else int(seed))
        if key not in self._maps:
            track = tr.make_track(self.config.track, key[1])
            self._maps[key] = (track, GroundMap(track))
            while len(self._maps) > 3:
                self._maps.popitem(last=False)
        self._maps.move_to_end(key)
        return self._maps[key]

    # ------------------------------------------------------------------ ticks

    def step(
        self, throttle: float, steer: float, brake: float, hand_brake: bool = False, reverse: bool = False
    ) -> None:
        """Apply one control for fixed_delta_seconds; non-finite values mean zero throttle, full brake."""
        control, self.input_invalid = Control.sanitized(throttle, steer, brake, hand_brake, reverse)
        self.control = control
        self._apply_requests()
        before = self.state
        after = step_vehicle(before, control, self.dt, self.vehicle)
        proj = self.track.project(after.x, after.y, hint=self._proj.segment)
        events: list[Event] = []

        hit = self._collision(before, after, proj)
        if hit is not None:
            events.append(hit)
            # Stopped by what it hit: the position stays, the heading may still change.
            after = VehicleState(before.x, before.y, after.yaw, 0.0, -before.speed / self.dt, 0.0)
            proj = self.track.project(after.x, after.y, hint=self._proj.segment)

        crossed = self._crossed_markings(before, self._proj, after, proj)
        if crossed:
            events.append(LaneInvasionEvent(tuple(crossed)))
        v0 = (before.speed * math.cos(before.yaw), before.speed * math.sin(before.yaw))
        v1 = (after.speed * math.cos(after.yaw), after.speed * math.sin(after.yaw))
        self._accel_xy = ((v1[0] - v0[0]) / self.dt, (v1[1] - v0[1]) / self.dt)
        self.state, self._proj, self.events = after, proj, events
        self._frame += 1

    def _collision(self, before: VehicleState, after: VehicleState, proj: tr.Projection) -> CollisionEvent | None:
        impulse = (
            -self.vehicle.mass * before.speed * math.cos(before.yaw),
            -self.vehicle.mass * before.speed * math.sin(before.yaw),
            0.0,
        )
        # Beyond the curb (centre of the car past its outer edge), still going outwards.
        if abs(proj.d) > tr.CURB_OUTER and abs(proj.d) > abs(self._proj.d):
            return CollisionEvent(BARRIER_ACTOR_ID, impulse)
        obstacle = vehicle_hits(self.obstacles, after.x, after.y, after.yaw, self.vehicle)
        if obstacle is not None and vehicle_hits([obstacle], before.x, before.y, before.yaw, self.vehicle) is None:
            return CollisionEvent(obstacle.actor_id, impulse)
        if obstacle is not None and after.speed * before.speed > 0.0 and _towards(before, after, obstacle):
            return CollisionEvent(obstacle.actor_id, impulse)
        return None

    def _crossed_markings(
        self, before: VehicleState, p0: tr.Projection, after: VehicleState, p1: tr.Projection
    ) -> list[int]:
        """Markings that a side of the car's box crossed in this tick (like CARLA's sensor)."""
        crossed: list[int] = []
        for offset, kind in tr.MARKINGS:
            for side in (-1.0, 1.0):
                e0 = p0.d + side * self._half_extent(before, p0) - offset
                e1 = p1.d + side * self._half_extent(after, p1) - offset
                if e0 * e1 < 0.0:
                    crossed.append(LANE_MARKING_BROKEN if kind == "broken" else LANE_MARKING_SOLID)
                    break
        return crossed

    def _half_extent(self, state: VehicleState, proj: tr.Projection) -> float:
        """Half of the car's extent across the road, given its heading relative to the road."""
        rel = state.yaw - proj.yaw
        return 0.5 * (self.vehicle.width * abs(math.cos(rel)) + self.vehicle.length * abs(math.sin(rel)))

    def render(self) -> np.ndarray:
        """(image_height, image_width, 4) uint8 BGRA of the front camera at the current state."""
        image = self.renderer.render(self.ground, self.state.x, self.state.y, self.state.yaw)
        if self.obstacles:
            draw_obstacles(image, self.renderer.camera, self.obstacles, self.state)
        return self.lighting.apply(image)

    # ------------------------------------------------------------------ state

    @property
    def spawn_s(self) -> float:
        """Where along the track the car spawns at a reset."""
        return self._spawn_s

    @property
    def frame(self) -> int:
        return self._frame

    @property
    def sim_time(self) -> float:
        return self._frame * self.dt

    @property
    def stamp_ns(self) -> int:
        """Sim time of the current frame in integer nanoseconds (frame * fixed_delta_seconds)."""
        return self._frame * self.dt_ns

    @property
    def pose(self) -> tuple[float, float, float]:
        return self.state.x, self.state.y, self.state.yaw

    @property
    def speed(self) -> float:
        """Signed longitudinal speed, m/s (negative when reversing)."""
        return self.state.speed

    @property
    def acceleration(self) -> float:
        """Longitudinal acceleration of the last tick, m/s²."""
        return self.state.accel

    @property
    def acceleration_xy(self) -> tuple[float, float]:
        """Map-frame acceleration of the last tick (change of the velocity vector), m/s²."""
        return self._accel_xy

    @property
    def yaw_rate(self) -> float:
        return self.state.yaw_rate

    @property
    def lateral_velocity(self) -> float:
        """Sideways speed of the vehicle centre (the rear axle does not slide), m/s, + left."""
        return self.state.yaw_rate * 0.5 * self.vehicle.wheelbase

    @property
    def lateral_offset(self) -> float:
        """Signed distance from the route (right-lane centre), + left."""
        return self._proj.d - tr.RIGHT_LANE_OFFSET

    @property
    def on_road(self) -> bool:
        """The car's centre is on the asphalt (between the curbs)."""
        return abs(self._proj.d) <= tr.ROAD_HALF_WIDTH

    @property
    def collided(self) -> bool:
        return any(isinstance(e, CollisionEvent) for e in self.events)

    @property
    def lane_invasions(self) -> list[LaneInvasionEvent]:
        return [e for e in self.events if isinstance(e, LaneInvasionEvent)]

    @property
    def collisions(self) -> list[CollisionEvent]:
        return [e for e in self.events if isinstance(e, CollisionEvent)]

    @property
    def route(self) -> tuple[np.ndarray, np.ndarray]:
        return self.route_points, self.route_yaws

    def request_transform(self, x: float, y: float, yaw: float) -> None:
        """Modelled on the bridge's control/set_transform (carla.Actor.set_transform): takes effect
        with the next tick and keeps the car's velocity (it rolls on unless its velocity is set too)."""
        self._pending_pose = (x, y, yaw)

    def request_speed(self, speed: float) -> None:
        """Like set_target_velocity (linear.x in the vehicle frame): with the next tick."""
        self._pending_speed = speed

    def _apply_requests(self) -> None:
        if self._pending_pose is not None:
            x, y, yaw = self._pending_pose
            self.state = VehicleState(x=x, y=y, yaw=yaw, speed=self.state.speed)
            self._proj = self.track.project(x, y)
        if self._pending_speed is not None:
            s = self.state
            self.state = VehicleState(x=s.x, y=s.y, yaw=s.yaw, speed=self._pending_speed)
        self._pending_pose = self._pending_speed = None

    def teleport(self, x: float, y: float, yaw: float, speed: float = 0.0) -> None:
        """Put the car somewhere (tests, tools); no events, no new frame."""
        self.state = VehicleState(x=x, y=y, yaw=yaw, speed=speed)
        self._proj = self.track.project(x, y)


def _towards(before: VehicleState, after: VehicleState, obstacle: Obstacle) -> bool:
    """Still moving into an obstacle it already touches."""
    d0 = math.hypot(before.x - obstacle.x, before.y - obstacle.y)
    d1 = math.hypot(after.x - obstacle.x, after.y - obstacle.y)
    return d1 < d0
