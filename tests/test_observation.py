"""Vector state, route projection, frame stacking and action mapping of td3_core."""

from __future__ import annotations

import math

import numpy as np
import pytest

from td3_core.actions import ActionConfig, VehicleCommand, action_to_command
from td3_core.preprocessing import FrameStacker, PreprocessConfig
from td3_core.route import Route
from td3_core.vector_state import ObservationConfig, build_vector_state

STRAIGHT = np.stack([np.arange(0.0, 100.0, 2.0), np.zeros(50)], axis=1)


def test_projection_signs_left_is_positive():
    route = Route(STRAIGHT)
    left = route.project(10.3, 1.5)
    assert left.lateral == pytest.approx(1.5) and left.distance_along == pytest.approx(10.3)
    route.reset_progress()
    assert route.project(10.3, -0.5).lateral == pytest.approx(-0.5)
    assert left.route_yaw == pytest.approx(0.0)


def test_vector_layout_and_vehicle_frame_waypoints():
    config = ObservationConfig()
    vector, projection = build_vector_state(4.5, 0.5, math.pi / 2, 15.0, Route(STRAIGHT), config)
    assert vector.shape == (23,) and vector.dtype == np.float32
    assert vector[0] == pytest.approx(0.5)
    assert vector[1] == pytest.approx(0.5 / 3.5)
    assert vector[2] == pytest.approx(0.5)  # yaw pi/2 on an x-aligned route
    first = vector[3:5] * 50.0  # route point (6, 0) seen from (4.5, 0.5) heading +y
    assert first == pytest.approx([-0.5, -1.5], abs=1e-5)  # 0.5 m behind, 1.5 m right
    assert projection.segment == 2


def test_waypoints_pad_with_the_last_point_at_the_route_end():
    vector, _ = build_vector_state(97.0, 0.0, 0.0, 0.0, Route(STRAIGHT), ObservationConfig(num_waypoints=4))
    ahead = vector[3:].reshape(4, 2) * 50.0
    assert ahead[:, 0] == pytest.approx([1.0] * 4)


def test_pixels_only_and_zero_waypoints():
    assert ObservationConfig(use_vector_state=False).vector_dim == 0
    assert ObservationConfig(num_waypoints=0).vector_dim == 3
    vector, _ = build_vector_state(0.0, 0.0, 0.0, 1.0, Route(STRAIGHT), ObservationConfig(use_vector_state=False))
    assert vector.shape == (0,)


def test_frame_stacker_fills_with_first_frame_then_slides():
    stacker = FrameStacker(PreprocessConfig(frame_stack=4))
    frames = [np.full((84, 84), i, np.uint8) for i in range(6)]
    assert stacker.push(frames[0])[:, 0, 0].tolist() == [0, 0, 0, 0]
    for frame in frames[1:]:
        stack = stacker.push(frame)
    assert stack[:, 0, 0].tolist() == [2, 3, 4, 5]
    stacker.reset()
    assert stacker.push(frames[1])[:, 0, 0].tolist() == [1, 1, 1, 1]


def test_actions_map_to_clamped_carla_controls():
    config = ActionConfig(max_throttle=0.8)
    assert action_to_command(0.5, 0.5, config) == VehicleCommand(steer=0.5, throttle=0.4, brake=0.0)
    assert action_to_command(-3.0, -2.0, config) == VehicleCommand(steer=-1.0, throttle=0.0, brake=1.0)
    assert action_to_command(float("nan"), 1.0, config) == VehicleCommand.full_brake()
    with pytest.raises(ValueError, match="max_brake"):
        ActionConfig(max_brake=1.5)


def test_the_route_reads_its_curvature_ahead_from_its_points_alone():
    angles = np.linspace(0.0, 2.0 * np.pi, 721)
    circle = Route(np.stack([15.0 * np.cos(angles), 15.0 * np.sin(angles)], axis=1))  # closed, 15 m radius
    assert circle.closed
    for along in (0.0, 40.0, circle.length - 5.0):  # past the end of a lap it reads on from the start
        assert circle.curvature_ahead(along) == pytest.approx(1 / 15, rel=1e-3)
    assert circle.project(15.0, 0.0).curvature_ahead == pytest.approx(1 / 15, rel=1e-3)
    # 50 m straight, then a quarter circle of 20 m radius: the curvature rises as the curve comes
    # into the 20 m preview, and it is the curve's once the preview is all curve.
    straight = np.stack([np.linspace(0.0, 50.0, 51), np.zeros(51)], axis=1)
    quarter = np.linspace(0.0, np.pi / 2, 32)[1:]
    bend = np.stack([50.0 + 20.0 * np.sin(quarter), 20.0 - 20.0 * np.cos(quarter)], axis=1)
    road = Route(np.concatenate([straight, bend]))
    readings = [road.curvature_ahead(s) for s in (0.0, 25.0, 40.0, 50.0, 55.0)]
    assert readings[0] == readings[1] == 0.0
    assert 0.0 < readings[2] < readings[3]
    assert readings[3] == pytest.approx(1 / 20, rel=0.05) and readings[4] == pytest.approx(1 / 20, rel=0.05)
    assert road.curvature_ahead(road.length) == 0.0  # an open route ends: nothing ahead turns
