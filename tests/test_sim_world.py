"""The simulator's ROS-free core: determinism, tracks, vehicle conventions, events, images."""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pytest

from td3_sim import track as tr
from td3_sim.dynamics import Control
from td3_sim.snapshot import png_bytes
from td3_sim.world import (
    LANE_MARKING_BROKEN,
    LANE_MARKING_SOLID,
    CollisionEvent,
    ConfigError,
    LaneInvasionEvent,
    SimConfig,
    SimWorld,
)

SMALL = {"image_width": 84, "image_height": 84}
COMMANDS = [(0.8, 0.0, 0.0)] * 10 + [(0.5, 0.4, 0.0)] * 8 + [(0.0, -0.3, 0.5)] * 5 + [(math.nan, 0.0, 0.0)]


def _run(world: SimWorld, commands) -> list[np.ndarray]:
    frames = [world.render()]
    for throttle, steer, brake in commands:
        world.step(throttle, steer, brake)
        frames.append(world.render())
    return frames


def _world(**config) -> SimWorld:
    return SimWorld(SimConfig(**{**SMALL, **config}))


@pytest.fixture(scope="module")
def shared_world() -> SimWorld:
    return _world()


@pytest.fixture
def world(shared_world: SimWorld) -> SimWorld:
    """The 84x84 loop world, respawned: tests that need no fresh instance share its ground map."""
    shared_world.reset(0)
    return shared_world


def _yaw_change(world: SimWorld, steer: float, steps: int = 20) -> float:
    world.reset(0)
    for _ in range(30):
        world.step(0.6, 0.0, 0.0)
    start = world.pose[2]
    for _ in range(steps):
        world.step(0.3, steer, 0.0)
    return math.remainder(world.pose[2] - start, math.tau)


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("config", [{"track": "loop"}, {"track": "procedural", "seed": 11, "obstacles": 3}])
def test_same_seed_same_commands_give_bit_identical_frames(config):
    first = _run(_world(**config), COMMANDS)
    second = _run(_world(**config), COMMANDS)
    assert len(first) == len(second) == len(COMMANDS) + 1
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(first[0], first[-1]), "the car moved: the picture must change"


def test_reset_replays_the_same_episode():
    world = _world(track="procedural", seed=4)
    world.reset(4)
    frames = _run(world, COMMANDS)
    world.reset(9)
    world.reset(4)
    again = _run(world, COMMANDS)
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))


def test_different_seeds_give_different_procedural_tracks_and_images():
    a, b = tr.make_track("procedural", 1), tr.make_track("procedural", 2)
    assert a.centerline.shape != b.centerline.shape or not np.allclose(a.centerline, b.centerline)
    assert np.array_equal(tr.make_track("procedural", 1).centerline, a.centerline)
    world = _world(track="procedural", seed=1)
    image_1 = world.render()
    world.reset(2)
    assert not np.array_equal(image_1, world.render())


@pytest.mark.parametrize("seed", range(6))
def test_procedural_tracks_are_valid_loops(seed):
    track = tr.make_track("procedural", seed)
    assert tr.min_curvature_radius(track.centerline) >= tr.MIN_RADIUS
    assert tr.min_separation(track.centerline) >= tr.MIN_SEPARATION
    assert 200.0 < track.length < 2000.0


def test_route_is_one_lap_of_the_right_lane_from_the_spawn_point(world: SimWorld):
    points, yaws = world.route
    assert points.shape[1] == 2 and len(points) == len(yaws) > 100
    steps = np.hypot(*np.diff(points, axis=0).T)
    assert np.all(np.abs(steps - tr.ROUTE_SPACING) < 0.2)
    assert np.allclose(points[0], points[-1])
    x, y, yaw = world.pose
    assert math.hypot(points[0][0] - x, points[0][1] - y) < 0.5
    assert abs(math.remainder(yaws[0] - yaw, math.tau)) < 0.05
    # Right lane: the centerline (the broken line) is 1.75 m to the LEFT of the route.
    assert abs(world.lateral_offset) < 0.05 and world.on_road
    proj = world.track.project(x, y)
    assert proj.d == pytest.approx(tr.RIGHT_LANE_OFFSET, abs=0.05)


# ----------------------------------------------------------------------------- vehicle


def test_steer_plus_one_turns_right_minus_one_left(world: SimWorld):
    assert _yaw_change(world, +1.0) < -0.1  # yaw decreases: right
    assert _yaw_change(world, -1.0) > 0.1  # yaw increases: left
    assert abs(_yaw_change(world, 0.0)) < 1e-6


def test_throttle_accelerates_brake_stops_and_never_reverses(world: SimWorld):
    speeds = []
    for _ in range(40):
        world.step(1.0, 0.0, 0.0)
        speeds.append(world.speed)
    assert all(b > a for a, b in itertools.pairwise(speeds))
    assert world.acceleration > 0
    for _ in range(60):
        world.step(0.0, 0.0, 1.0)
    assert world.speed == 0.0
    world.step(0.0, 0.0, 1.0)
    assert world.speed == 0.0
    for _ in range(10):
        world.step(1.0, 0.0, 0.0, reverse=True)
    assert world.speed < 0.0  # only with the reverse flag


def test_inputs_are_clamped_and_non_finite_means_full_brake(world: SimWorld):
    assert Control.sanitized(2.0, -3.0, -1.0) == (Control(1.0, -1.0, 0.0), False)
    for bad in (math.nan, math.inf, -math.inf):
        control, invalid = Control.sanitized(0.5, bad, 0.0)
        assert invalid and control.throttle == 0.0 and control.brake == 1.0
    for _ in range(20):
        world.step(1.0, 0.0, 0.0)
    moving = world.speed
    world.step(math.nan, 0.0, 0.0)
    assert world.input_invalid and world.speed < moving and world.control.brake == 1.0


def test_frames_and_stamps_only_go_forward(world: SimWorld):
    first = world.frame
    world.step(0.0, 0.0, 0.0)
    world.reset(None)
    world.reset(3)
    assert world.frame == first + 3
    assert world.stamp_ns == world.frame * 50_000_000
    assert world.sim_time == pytest.approx(world.frame * 0.05)
    assert world.speed == 0.0


# ----------------------------------------------------------------------------- events


def test_leaving_the_road_crosses_the_edge_line_then_hits_the_curb(world: SimWorld):
    for _ in range(20):
        world.step(0.6, 0.0, 0.0)
    events = []
    for _ in range(80):
        world.step(0.4, 0.7, 0.0)  # hard right, off the road
        events += world.events
        if world.collided:
            break
    invasions = [e for e in events if isinstance(e, LaneInvasionEvent)]
    assert any(LANE_MARKING_SOLID in e.crossed_lane_markings for e in invasions), events
    collisions = [e for e in events if isinstance(e, CollisionEvent)]
    assert collisions, "no collision after leaving the road"
    assert np.linalg.norm(collisions[0].normal_impulse) > 0
    assert world.speed == 0.0 and not world.on_road


def test_changing_lanes_crosses_the_broken_line(world: SimWorld):
    for _ in range(20):
        world.step(0.6, 0.0, 0.0)
    crossed = []
    for _ in range(40):
        world.step(0.3, -0.4, 0.0)  # drift left, into the other lane
        crossed += [m for e in world.lane_invasions for m in e.crossed_lane_markings]
        if crossed:
            break
    assert crossed == [LANE_MARKING_BROKEN]
    assert not world.collided and world.on_road


def test_driving_into_an_obstacle_is_a_collision():
    world = _world(obstacles=1)
    ob = world.obstacles[0]
    world.teleport(ob.x - 10.0 * math.cos(ob.yaw), ob.y - 10.0 * math.sin(ob.yaw), ob.yaw)
    hits = []
    for _ in range(100):
        world.step(0.6, 0.0, 0.0)
        hits += world.collisions
        if hits:
            break
    assert hits and hits[0].other_actor_id == ob.actor_id


# ----------------------------------------------------------------------------- images


def test_render_shape_and_dtype_84x84(world: SimWorld):
    image = world.render()
    assert image.shape == (84, 84, 4) and image.dtype == np.uint8
    assert np.all(image[..., 3] == 255)
    # Sky on top is brighter/bluer than the road at the bottom centre.
    sky, road = image[2, 42, :3].astype(int), image[80, 42, :3].astype(int)
    assert sky[0] > road[0] + 40 and sky[0] > sky[2]


def test_render_800x600_once():
    image = SimWorld(SimConfig()).render()
    assert image.shape == (600, 800, 4) and image.dtype == np.uint8


def test_lighting_randomisation_changes_the_image_and_is_deterministic(world: SimWorld):
    world.reset(5)
    plain = world.render()
    lit_world = _world(seed=5, randomize_lighting=True)
    lit = lit_world.render()
    lit_world.reset(6)
    assert not np.array_equal(lit, lit_world.render())
    lit_world.reset(5)
    assert np.array_equal(lit, lit_world.render()) and not np.array_equal(plain, lit)


@pytest.mark.parametrize(
    ("field", "value"),
    [("image_width", 0), ("image_height", -4), ("fixed_delta_seconds", 0.0), ("track", "moon"), ("obstacles", -1)],
)
def test_invalid_config_names_the_parameter(field, value):
    with pytest.raises(ConfigError, match=field):
        SimConfig(**{field: value}).validate()


def test_png_writer_produces_a_decodable_file():
    image = np.zeros((3, 5, 4), dtype=np.uint8)
    image[..., 2] = 200  # red in BGRA
    data = png_bytes(image)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(3, 1 + 5 * 4)
    assert np.all(raw[:, 0] == 0) and np.all(raw[:, 1::4] == 200)  # filter byte, then R first
