"""Fuzzing the non-image inputs (hypothesis): odometry, speedometer and route messages with any
float in any field. The driver's input path either builds a finite observation vector or
refuses the message with a ValueError (which the node logs and drops); nothing else escapes."""

from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import PoseStamped
from hypothesis import given, settings
from hypothesis import strategies as st
from nav_msgs.msg import Odometry, Path
from std_msgs.msg import Float32

from td3_core.preprocessing import PreprocessConfig
from td3_core.vector_state import ObservationConfig
from td3_driver.node import DriverInputs

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=64)
TAME_FLOAT = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False)
OBSERVATION = ObservationConfig(num_waypoints=3)


def _path(points: list[tuple[float, float]]) -> Path:
    path = Path()
    for x, y in points:
        pose = PoseStamped()
        pose.pose.position.x, pose.pose.position.y = x, y
        path.poses.append(pose)
    return path


def _odometry(values: list[float]) -> Odometry:
    msg = Odometry()
    p, q, t = msg.pose.pose.position, msg.pose.pose.orientation, msg.twist.twist.linear
    p.x, p.y, p.z, q.x, q.y, q.z, q.w, t.x, t.y, t.z = values
    return msg


def _inputs() -> DriverInputs:
    return DriverInputs(PreprocessConfig(image_size=36), OBSERVATION, speed_timeout=10.0)


@settings(max_examples=300, deadline=None)
@given(
    route=st.lists(st.tuples(ANY_FLOAT, ANY_FLOAT), max_size=8),
    odometry=st.lists(ANY_FLOAT, min_size=10, max_size=10),
    speed=ANY_FLOAT,
)
def test_any_float_anywhere_gives_a_finite_vector_or_a_refusal(route, odometry, speed):
    inputs = _inputs()
    accepted = {}
    for name, feed in (
        ("route", lambda: inputs.set_route(_path(route))),
        ("odometry", lambda: inputs.set_odometry(_odometry(odometry))),
        ("speed", lambda: inputs.set_speed(Float32(data=speed))),
    ):
        try:
            feed()
            accepted[name] = True
        except ValueError:
            accepted[name] = False
    if not (accepted["route"] and accepted["odometry"]):
        return
    try:
        vector = inputs.vector()
    except ValueError:
        return
    assert vector.dtype == np.float32 and vector.shape == (OBSERVATION.vector_dim,)
    assert np.isfinite(vector).all()


@settings(max_examples=200, deadline=None)
@given(
    route=st.lists(st.tuples(TAME_FLOAT, TAME_FLOAT), min_size=2, max_size=8),
    position=st.tuples(TAME_FLOAT, TAME_FLOAT),
    yaw=st.floats(min_value=-math.pi, max_value=math.pi),
)
def test_plausible_messages_always_give_a_vector(route, position, yaw):
    inputs = _inputs()
    try:
        inputs.set_route(_path(route))
    except ValueError:
        return  # e.g. all points equal: refused with a reason
    values = [*position, 0.0, 0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2), 3.0, 0.0, 0.0]
    inputs.set_odometry(_odometry(values))
    vector = inputs.vector()
    assert np.isfinite(vector).all() and abs(vector[2]) <= 1.0  # heading error / pi
