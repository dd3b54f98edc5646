"""ROS-free parts of the bridge-like behaviour: start poses, settling checks, the waypoint planner,
route resampling and the world's pseudo control."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from td3_core.route import Route, resample
from td3_sim.track import make_track
from td3_sim.waypoints import WaypointPlanner, open_route
from td3_sim.world import SimConfig, SimWorld
from td3_trainer.bridge_reset import StartPoses, route_fits, settle_check


def _line(length: float, spacing: float = 1.0, x0: float = 0.0) -> np.ndarray:
    xs = np.arange(0.0, length + 1e-9, spacing)
    return np.stack([xs + x0, np.zeros_like(xs)], axis=1)


def test_start_poses_are_seeded_spread_and_never_the_same_twice():
    route = _line(300.0)
    a = StartPoses(route, spacing_m=20.0, goal_ahead_m=100.0, seed=3)
    b = StartPoses(route, spacing_m=20.0, goal_ahead_m=100.0, seed=3)
    draws_a = [a.draw().index for _ in range(50)]
    assert draws_a == [b.draw().index for _ in range(50)]  # reproducible from the seed
    assert all(x != y for x, y in itertools.pairwise(draws_a))  # a reset always moves the car
    assert len(set(draws_a)) > 5
    assert len(a.poses) == 11  # 0, 20, ..., 200: each with 100 m of route ahead
    for pose in a.poses:
        assert math.isclose(pose.goal_x - pose.x, 100.0, abs_tol=1e-6) and pose.yaw == 0.0


def test_a_short_route_still_gives_start_poses_and_an_empty_one_is_refused():
    short = StartPoses(_line(40.0), spacing_m=20.0, goal_ahead_m=200.0, seed=0)
    assert short.goal_ahead_m == 20.0 and len(short.poses) == 2
    for bad in (np.zeros((1, 2)), np.array([[0.0, 0.0], [np.inf, 0.0]]), np.array([[0.0, 0.0], [1e300, 0.0]])):
        with pytest.raises(ValueError):
            StartPoses(bad, 20.0, 100.0, 0)


def test_route_fits_only_a_route_from_the_pose_to_its_goal():
    start = StartPoses(_line(300.0), 20.0, 100.0, 0).poses[2]  # x = 40, goal x = 140
    assert route_fits(_line(100.0, x0=40.0), start, 1.0, 20.0)
    assert not route_fits(_line(100.0), start, 1.0, 20.0)  # starts elsewhere (the old position)
    assert not route_fits(_line(200.0, x0=40.0), start, 1.0, 20.0)  # to another goal
    assert not route_fits(_line(10.0, x0=40.0), start, 1.0, 5.0)  # ends short of the goal
    assert not route_fits(np.array([[np.nan, 0.0], [1.0, 0.0]]), start, 1.0, 1.0)


def test_settle_check_names_what_is_missing():
    start = StartPoses(_line(300.0), 20.0, 100.0, 0).poses[0]
    assert "start pose" in settle_check(start, 5.0, 0.0, 0.0, True, 1.0).missing
    assert "standing" in settle_check(start, 0.2, 0.0, 1.0, True, 1.0).missing
    assert "new route" in settle_check(start, 0.2, 0.0, 0.0, False, 1.0).missing
    assert settle_check(start, 0.2, 0.0, 0.05, True, 1.0).missing == ""


def test_planner_reroutes_after_a_jump_or_a_goal_with_its_delay():
    track = make_track("loop")
    goal = track.spawn_pose(400.0)[:2]
    planner = WaypointPlanner(track, goal, delay_ticks=2)
    x, y, _ = track.spawn_pose(0.0)
    (first,) = planner.on_tick((x, y))  # the start route at once
    assert first.trigger == "start" and math.dist(first.points[-1], goal) < 1.0
    assert planner.on_tick((x + 1.5, y)) == []  # 1.5 m in a tick: driving, no reroute
    jumped = track.spawn_pose(100.0)[:2]
    assert planner.on_tick(jumped) == [] and planner.on_tick(jumped) == []
    (rerouted,) = planner.on_tick(jumped)  # two ticks later
    assert rerouted.trigger == "repositioned" and math.dist(rerouted.points[0], jumped) < 0.5
    planner.on_goal(*track.spawn_pose(150.0)[:2], car_xy=jumped)
    planner.on_tick(jumped), planner.on_tick(jumped)
    (to_goal,) = planner.on_tick(jumped)
    assert to_goal.trigger == "goal" and 49 <= len(to_goal.points) <= 52


def test_open_route_points_are_about_a_metre_apart():
    track = make_track("loop")
    points, yaws = open_route(track, 10.0, 90.0)
    gaps = np.hypot(*np.diff(points, axis=0).T)
    assert len(points) == len(yaws) == 81 and gaps.min() > 0.9 and gaps.max() < 1.1


def test_resample_keeps_the_ends_and_spaces_the_points():
    points = resample(_line(21.0, 1.0), 2.0)
    assert np.allclose(points[0], [0.0, 0.0]) and np.allclose(points[-1], [21.0, 0.0])
    assert np.allclose(np.diff(points[:, 0]), 21.0 / 10)
    assert Route(points).length == pytest.approx(21.0)


def test_world_set_transform_takes_effect_with_the_next_tick_and_keeps_the_velocity():
    world = SimWorld(SimConfig(image_width=32, image_height=24))
    for _ in range(20):
        world.step(1.0, 0.0, 0.0)
    speed = world.speed
    x, y, yaw = world.track.spawn_pose(200.0)
    world.request_transform(x, y, yaw)
    assert math.dist(world.pose[:2], (x, y)) > 10.0  # not before the tick
    world.step(0.0, 0.0, 0.0)
    assert math.dist(world.pose[:2], (x, y)) < 1.0 and world.speed > 0.8 * speed
    world.request_transform(x, y, yaw)
    world.request_speed(0.0)
    world.step(0.0, 0.0, 1.0)
    assert math.dist(world.pose[:2], (x, y)) < 1e-6 and world.speed == 0.0
