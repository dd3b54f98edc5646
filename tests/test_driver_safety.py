"""The driver's safety rules, ROS-free, with an injected clock (no sleeping, no timing).

Covers the gate (stale/missing inputs → full brake with the reason, NaN/inf actions → brake,
clamping, recovery), the rate-limited logging decisions, NaN detection of the policy runner,
device selection, parameter validation, and the checks the driver's inputs apply to messages.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from geometry_msgs.msg import PoseStamped
from hypothesis import given
from hypothesis import strategies as st
from nav_msgs.msg import Odometry, Path
from std_msgs.msg import Float32

from td3_core.actions import ActionConfig, VehicleCommand, action_to_command
from td3_core.checkpoint import CheckpointMeta
from td3_core.networks import Policy
from td3_core.preprocessing import PreprocessConfig
from td3_core.vector_state import ObservationConfig
from td3_driver.node import DriverInputs, InvalidMessageError, twist_from_command
from td3_driver.params import PARAMS, ParamError, validate
from td3_driver.policy_runner import PolicyError, PolicyRunner
from td3_driver.safety import (
    Arrival,
    BrakeReason,
    LogEvent,
    SafetyGate,
    StateLog,
    ThrottledLog,
    limited_action_config,
)

from .checkpoint_factory import small_architecture

TIMEOUT = 0.3
BRAKE = VehicleCommand.full_brake()


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _gate(clock: FakeClock, needs_vector: bool = False, **kwargs) -> SafetyGate:
    return SafetyGate(stale_timeout=TIMEOUT, needs_vector=needs_vector, clock=clock, frame_topic="/cam", **kwargs)


# ----------------------------------------------------------------------------- the gate


def test_before_the_first_frame_the_car_brakes_and_says_why():
    clock = FakeClock()
    gate = _gate(clock)
    decision = gate.decide([0.0, 1.0])
    assert decision.command == BRAKE and decision.reason is BrakeReason.NO_FRAME
    assert "/cam" in decision.detail and "no camera frame" in decision.describe()
    clock.advance(10.0)
    assert gate.decide([0.0, 1.0]).reason is BrakeReason.NO_FRAME


def test_fresh_frame_and_finite_action_drive():
    clock = FakeClock()
    gate = _gate(clock)
    gate.frame_received()
    decision = gate.decide(np.array([0.25, 0.5], dtype=np.float32))
    assert decision.reason is None and not decision.braking_for_safety
    assert decision.command == VehicleCommand(steer=0.25, throttle=0.5, brake=0.0)


def test_stale_frame_brakes_then_recovers_with_the_next_frame():
    clock = FakeClock()
    gate = _gate(clock)
    gate.frame_received()
    clock.advance(TIMEOUT)  # exactly the timeout is still fresh
    assert gate.decide([0.0, 0.5]).reason is None
    clock.advance(0.01)
    stale = gate.decide([0.0, 0.5])
    assert stale.command == BRAKE and stale.reason is BrakeReason.STALE_FRAME
    assert "0.31 s ago" in stale.detail and "stale_timeout 0.3 s" in stale.detail
    gate.frame_received()
    assert gate.decide([0.0, 0.5]).command == VehicleCommand(steer=0.0, throttle=0.5, brake=0.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_action_brakes(bad: float):
    clock = FakeClock()
    gate = _gate(clock)
    gate.frame_received()
    for action in ([bad, 0.5], [0.0, bad], np.array([bad, bad], dtype=np.float32)):
        decision = gate.decide(action)
        assert decision.command == BRAKE and decision.reason is BrakeReason.NON_FINITE_ACTION


def test_missing_action_and_inference_error_brake():
    clock = FakeClock()
    gate = _gate(clock)
    gate.frame_received()
    assert gate.decide(None).reason is BrakeReason.NO_ACTION
    failed = gate.decide([0.0, 1.0], inference_error="RuntimeError: out of memory")
    assert failed.reason is BrakeReason.INFERENCE_ERROR and "out of memory" in failed.describe()


def test_actions_are_clamped_to_carla_ranges_and_scaled():
    clock = FakeClock()
    gate = _gate(clock, action_config=ActionConfig(max_steer=0.5, max_throttle=0.6, max_brake=0.8))
    gate.frame_received()
    assert gate.decide([3.0, 5.0]).command == VehicleCommand(steer=0.5, throttle=0.6, brake=0.0)
    assert gate.decide([-3.0, -5.0]).command == VehicleCommand(steer=-0.5, throttle=0.0, brake=0.8)


@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True))
def test_every_command_is_finite_and_in_range(steer: float, accel: float):
    clock = FakeClock()
    gate = _gate(clock)
    gate.frame_received()
    command = gate.decide([steer, accel]).command
    values = (command.steer, command.throttle, command.brake)
    assert all(math.isfinite(v) for v in values)
    assert -1.0 <= command.steer <= 1.0 and 0.0 <= command.throttle <= 1.0 and 0.0 <= command.brake <= 1.0
    assert command.throttle == 0.0 or command.brake == 0.0


def test_vector_policy_needs_route_and_fresh_odometry():
    clock = FakeClock()
    gate = _gate(clock, needs_vector=True, odometry_topic="/odom", route_topic="/route")
    gate.frame_received()
    assert gate.decide([0.0, 1.0]).reason is BrakeReason.NO_ROUTE
    gate.route_received()
    assert gate.decide([0.0, 1.0]).reason is BrakeReason.NO_ODOMETRY
    gate.odometry_received()
    assert gate.decide([0.0, 1.0]).reason is None
    clock.advance(0.2)
    gate.frame_received()
    clock.advance(0.2)  # odometry 0.4 s old, frame 0.2 s
    decision = gate.decide([0.0, 1.0])
    assert decision.reason is BrakeReason.STALE_ODOMETRY and "/odom" in decision.detail
    gate.odometry_received()
    assert gate.decide([0.0, 1.0]).reason is None


def test_a_stale_camera_is_reported_before_odometry():
    clock = FakeClock()
    gate = _gate(clock, needs_vector=True)
    assert gate.decide([0.0, 1.0]).reason is BrakeReason.NO_FRAME


def test_gate_refuses_a_non_positive_timeout():
    with pytest.raises(ValueError, match="stale_timeout"):
        SafetyGate(stale_timeout=0.0, needs_vector=False)


# ----------------------------------------------------------------------------- stamps and simulation time


def test_a_frozen_camera_is_stale_although_its_frames_keep_arriving():
    clock = FakeClock()
    gate = _gate(clock)
    assert gate.frame_received(10.0) is Arrival.FIRST
    for _ in range(20):  # the same frame, re-sent at 20 Hz for a second
        clock.advance(0.05)
        assert gate.frame_received(10.0) is Arrival.REPEATED
    decision = gate.decide([0.0, 0.5])
    assert decision.reason is BrakeReason.STALE_FRAME
    assert "20 repeated its stamp" in decision.detail and "1.00 s ago" in decision.detail
    assert gate.frame_received(10.05) is Arrival.ADVANCED  # it moves again: fresh at once
    assert gate.decide([0.0, 0.5]).reason is None


def test_stamps_that_go_back_or_jump_start_a_new_history_and_count_as_new():
    clock = FakeClock()
    gate = _gate(clock)
    gate.frame_received(50.0)
    assert gate.frames.classify(50.05) is Arrival.ADVANCED
    assert gate.frames.classify(2.0) is Arrival.BACKWARDS  # a restarted simulator
    assert gate.frames.classify(50.0 + TIMEOUT + 0.01) is Arrival.JUMPED  # frames lost in between
    clock.advance(0.2)
    assert gate.frame_received(2.0) is Arrival.BACKWARDS
    assert gate.decide([0.0, 0.5]).reason is None and gate.frames.last_stamp == 2.0


def test_a_slow_simulator_is_judged_in_simulation_time_not_wall_time():
    """0.1x real time: a tick (dt 0.05 s) every 0.5 s of wall time, each with its frame."""
    clock = FakeClock()
    gate = _gate(clock)
    sim = 100.0
    for _ in range(20):
        gate.clock_received(sim)
        gate.frame_received(sim)
        assert gate.decide([0.0, 0.5]).reason is None
        clock.advance(0.45)  # older than stale_timeout in wall time, 0 s old in simulation time
        assert gate.decide([0.0, 0.5]).reason is None, gate.decide([0.0, 0.5]).detail
        sim += 0.05
    assert gate.on_sim_time()


def test_with_clock_alive_a_frozen_camera_is_stale_in_simulation_time():
    clock = FakeClock()
    gate = _gate(clock)
    gate.clock_received(100.0)
    gate.frame_received(100.0)
    for tick in range(1, 8):  # the simulator goes on (real time), the camera repeats its frame
        clock.advance(0.05)
        gate.clock_received(100.0 + 0.05 * tick)
        gate.frame_received(100.0)
    decision = gate.decide([0.0, 0.5])
    assert decision.reason is BrakeReason.STALE_FRAME and "simulation time" in decision.detail


def test_the_wall_clock_watchdog_catches_what_simulation_time_cannot():
    clock = FakeClock()
    gate = _gate(clock, watchdog_timeout=1.0)
    gate.clock_received(100.0)
    gate.frame_received(100.0)
    for _ in range(11):  # /clock keeps coming, but neither it nor the camera advance
        clock.advance(0.1)
        gate.clock_received(100.0)
        gate.frame_received(100.0)
    decision = gate.decide([0.0, 0.5])
    assert decision.reason is BrakeReason.STALE_FRAME and "watchdog_timeout 1 s" in decision.detail
    # /clock stops altogether (the simulator died): back to wall time since the last new stamp.
    gate2 = _gate(clock)
    gate2.clock_received(5.0)
    gate2.frame_received(5.0)
    clock.advance(1.5)
    assert not gate2.on_sim_time() and gate2.decide([0.0, 0.5]).reason is BrakeReason.STALE_FRAME


def test_frozen_odometry_is_stale_too():
    clock = FakeClock()
    gate = _gate(clock, needs_vector=True)
    gate.route_received()
    gate.odometry_received(7.0)
    for step in range(1, 10):
        clock.advance(0.05)
        gate.frame_received(7.0 + 0.05 * step)
        gate.odometry_received(7.0)
    decision = gate.decide([0.0, 0.5])
    assert decision.reason is BrakeReason.STALE_ODOMETRY and "repeated its stamp" in decision.detail


def test_another_commander_brakes_first_and_names_it():
    clock = FakeClock()
    gate = _gate(clock)
    gate.frame_received(1.0)
    gate.other_commanders = ("/teleop also publishes on /carla/ego_vehicle/vehicle_control_cmd",)
    decision = gate.decide([0.0, 0.5])
    assert decision.reason is BrakeReason.OTHER_COMMANDER and "/teleop" in decision.detail
    gate.other_commanders = ()
    assert gate.decide([0.0, 0.5]).reason is None


# ----------------------------------------------------------------------------- rate-limited logging


def test_state_log_logs_each_change_once_then_throttled():
    clock = FakeClock()
    log = StateLog(period_s=5.0, clock=clock)
    assert log.update(BrakeReason.NO_FRAME) is LogEvent.CHANGED  # the first state
    clock.advance(0.05)
    assert log.update(BrakeReason.NO_FRAME) is LogEvent.QUIET  # 20 Hz repeats stay quiet
    clock.advance(4.9)
    assert log.update(BrakeReason.NO_FRAME) is LogEvent.QUIET
    clock.advance(0.1)
    assert log.update(BrakeReason.NO_FRAME) is LogEvent.REMINDER  # still braking: reminded every period
    assert log.update(None) is LogEvent.CHANGED  # recovery is logged at once
    assert log.update(None) is LogEvent.QUIET
    assert log.update(BrakeReason.STALE_FRAME) is LogEvent.CHANGED  # a new problem at once, whatever the period
    assert log.update(BrakeReason.STALE_FRAME) is LogEvent.QUIET
    assert log.changes == 3


def test_throttled_log_counts_what_it_suppressed_per_key():
    clock = FakeClock()
    log = ThrottledLog(period_s=1.0, clock=clock)
    assert log.should_log("image") == (True, 0)
    assert log.should_log("image") == (False, 0)
    assert log.should_log("image") == (False, 0)
    assert log.should_log("odometry") == (True, 0)  # keys are independent
    clock.advance(1.0)
    assert log.should_log("image") == (True, 2)
    assert log.should_log("image") == (False, 0)


# ----------------------------------------------------------------------------- NaN from the network


def _runner(edit=None) -> PolicyRunner:
    observation = ObservationConfig(use_vector_state=False)
    arch = small_architecture(observation)
    torch.manual_seed(0)
    policy = Policy(arch)
    if edit is not None:
        with torch.no_grad():
            edit(policy)
    meta = CheckpointMeta(None, 2, arch, PreprocessConfig(36, 4), observation, ActionConfig(), 0)
    return PolicyRunner(policy, meta, torch.device("cpu"))


def _overflow_to_nan(policy: Policy) -> None:
    """Finite weights (a checkpoint may hold them) whose activations overflow: inf - inf = NaN."""
    for conv in (policy.actor_cnn.features[0], policy.actor_cnn.features[3], policy.actor_cnn.features[6]):
        conv.weight.fill_(0.01)
        conv.bias.zero_()
    policy.actor_cnn.fc.weight.fill_(0.01)
    policy.actor_cnn.fc.bias.zero_()
    policy.actor.fc1.weight.fill_(3e38)
    policy.actor.fc2.weight[:, 0::2] = 1.0
    policy.actor.fc2.weight[:, 1::2] = -1.0


def test_runner_flags_nan_output_and_the_gate_brakes():
    runner = _runner(_overflow_to_nan)
    assert runner.warm_up(2).finite  # black frames: all activations zero, the output is finite
    frames = np.full((4, 36, 36), 200, dtype=np.uint8)
    result = runner.infer(frames, np.zeros(0, dtype=np.float32))
    assert not result.finite and np.isnan(result.action).any()
    clock = FakeClock()
    gate = _gate(clock)
    gate.frame_received()
    decision = gate.decide(result.action)
    assert decision.command == BRAKE and decision.reason is BrakeReason.NON_FINITE_ACTION


def test_warm_up_refuses_a_policy_that_is_nan_on_a_neutral_observation():
    runner = _runner(lambda policy: policy.actor.fc3.bias.fill_(math.nan))
    with pytest.raises(PolicyError, match="neutral observation"):
        runner.warm_up(1)


def test_runner_gives_the_policy_output_and_checks_shapes():
    runner = _runner()
    frames = np.random.default_rng(0).integers(0, 256, (4, 36, 36), dtype=np.uint8)
    result = runner.infer(frames, np.zeros(0, dtype=np.float32))
    with torch.no_grad():
        expected = runner.policy(torch.from_numpy(frames)[None], torch.zeros(1, 0))[0].numpy()
    assert result.finite and result.seconds > 0
    np.testing.assert_array_equal(result.action, expected)
    with pytest.raises(ValueError, match="frames"):
        runner.infer(frames[:, :30], np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="vector"):
        runner.infer(frames, np.zeros(3, dtype=np.float32))


# ----------------------------------------------------------------------------- start-up checks


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("rate_hz", -1.0, "must be > 0"),
        ("rate_hz", 0, "must be > 0"),
        ("rate_hz", math.inf, "must be > 0"),
        ("rate_hz", "fast", "must be a double"),
        ("rate_hz", True, "must be a double"),
        ("stale_timeout", 0.0, "must be > 0"),
        ("stale_timeout", -0.3, "must be > 0"),
        ("device", "tpu", "'auto', 'cpu', 'cuda'"),
        ("checkpoint", " ", "must not be empty"),
        ("role_name", "ego/vehicle", "ROS name"),
        ("watch_period_s", 0.0, "must be > 0"),
        ("warmup_iterations", -1, "must be >= 0"),
        ("watch", 1, "must be a boolean"),
    ],
)
def test_invalid_parameters_are_refused_by_name(name: str, value, message: str):
    with pytest.raises(ParamError, match=message) as info:
        validate({name: value})
    assert info.value.name == name and f"parameter '{name}'" in str(info.value)


def test_defaults_are_valid_and_integers_are_accepted_for_doubles():
    params = validate({"rate_hz": 10})
    assert params.rate_hz == 10.0 and isinstance(params.rate_hz, float)
    assert params.stale_timeout == 0.3 and params.device == "auto" and params.checkpoint == "latest"
    assert params.topic("rgb_front/image") == "/carla/ego_vehicle/rgb_front/image"
    assert {p.name for p in PARAMS} >= {"checkpoint", "rate_hz", "stale_timeout", "device", "watch", "publish_twist"}


# ----------------------------------------------------------------------------- input messages


def test_non_finite_odometry_and_speed_are_refused():
    inputs = DriverInputs(PreprocessConfig(36, 4), ObservationConfig(), clock=FakeClock())
    bad = Odometry()
    bad.twist.twist.linear.x = math.nan
    with pytest.raises(InvalidMessageError, match="non-finite"):
        inputs.set_odometry(bad)
    bad = Odometry()
    bad.pose.pose.position.y = math.inf
    with pytest.raises(InvalidMessageError):
        inputs.set_odometry(bad)
    assert inputs.odometry is None
    with pytest.raises(InvalidMessageError, match="speed"):
        inputs.set_speed(Float32(data=math.nan))


def test_speedometer_is_used_only_while_fresh():
    clock = FakeClock()
    inputs = DriverInputs(PreprocessConfig(36, 4), ObservationConfig(), speed_timeout=0.3, clock=clock)
    assert inputs.speed() is None  # nothing yet: the odometry twist
    inputs.set_speed(Float32(data=7.5))
    assert inputs.speed() == 7.5
    clock.advance(0.31)
    assert inputs.speed() is None
    off = DriverInputs(PreprocessConfig(36, 4), ObservationConfig(), use_speedometer=False, clock=clock)
    off.set_speed(Float32(data=7.5))
    assert off.speed() is None


def test_twist_output_follows_carla_twist_to_control():
    twist = twist_from_command(VehicleCommand(steer=0.5, throttle=0.4, brake=0.0), max_steering_angle=1.2)
    assert twist.linear.x == pytest.approx(4.0) and twist.angular.z == pytest.approx(-0.6)  # right = negative yaw
    stop = twist_from_command(BRAKE, max_steering_angle=1.2)
    assert (stop.linear.x, stop.linear.y, stop.angular.z) == (0.0, 0.0, 0.0)  # zero Twist = full brake


# ----------------------------------------------------------------------------- speed limiter


def test_the_speed_limiter_fades_throttle_below_the_limit_and_brakes_above_it():
    limited = ActionConfig(speed_limit_mps=10.0)
    assert action_to_command(0.1, 1.0, limited, 5.0) == VehicleCommand(steer=0.1, throttle=1.0, brake=0.0)
    assert action_to_command(0.0, 1.0, limited, 9.5).throttle == pytest.approx(0.5)
    assert action_to_command(0.0, 1.0, limited, 10.0) == VehicleCommand(steer=0.0, throttle=0.0, brake=0.0)
    assert action_to_command(0.0, 1.0, limited, 10.5) == VehicleCommand(steer=0.0, throttle=0.0, brake=0.5)
    assert action_to_command(0.0, 1.0, limited, 15.0).brake == 1.0
    # The policy's own brake stays when it asks for more; the speed unknown: no limiter.
    assert action_to_command(0.0, -0.8, limited, 10.2).brake == pytest.approx(0.8)
    assert action_to_command(0.0, 1.0, limited, None).throttle == 1.0
    assert action_to_command(0.0, 1.0, ActionConfig(), 50.0).throttle == 1.0  # no limit
    for bad in (-1.0, 0.5, math.inf, math.nan):
        with pytest.raises(ValueError, match="speed_limit_mps"):
            ActionConfig(speed_limit_mps=bad)


@given(st.floats(0.0, 1.0), st.floats(-1.0, 1.0), st.floats(0.0, 40.0))
def test_with_a_limit_no_command_accelerates_at_or_above_it(steer: float, accel: float, speed: float):
    command = action_to_command(steer, accel, ActionConfig(speed_limit_mps=10.0), speed)
    if speed >= 10.0:
        assert command.throttle == 0.0
    if speed >= 11.0:
        assert command.brake == 1.0
    assert 0.0 <= command.throttle <= 1.0 and 0.0 <= command.brake <= 1.0


def test_a_pixel_policy_with_a_speed_limit_needs_odometry_and_is_limited_by_it():
    clock = FakeClock()
    gate = _gate(clock, action_config=ActionConfig(speed_limit_mps=10.0), odometry_topic="/odom")
    gate.frame_received()
    decision = gate.decide([0.0, 1.0], speed=None)
    assert decision.reason is BrakeReason.NO_ODOMETRY and "speed limiter" in decision.detail
    gate.odometry_received()
    assert gate.decide([0.0, 1.0], speed=9.5).command.throttle == pytest.approx(0.5)
    assert gate.decide([0.0, 1.0], speed=12.0).command == VehicleCommand(steer=0.0, throttle=0.0, brake=1.0)
    clock.advance(0.4)
    gate.frame_received()
    assert gate.decide([0.0, 1.0], speed=5.0).reason is BrakeReason.STALE_ODOMETRY


def test_the_drivers_speed_limit_tightens_the_checkpoints_never_loosens_it():
    assert limited_action_config(ActionConfig(), 0.0).speed_limit_mps == 0.0
    assert limited_action_config(ActionConfig(), 7.0).speed_limit_mps == 7.0
    assert limited_action_config(ActionConfig(speed_limit_mps=10.0), 0.0).speed_limit_mps == 10.0
    assert limited_action_config(ActionConfig(speed_limit_mps=10.0), 7.0).speed_limit_mps == 7.0
    assert limited_action_config(ActionConfig(speed_limit_mps=10.0), 20.0).speed_limit_mps == 10.0
    with pytest.raises(ValueError, match="speed_limit_mps"):
        limited_action_config(ActionConfig(), 0.5)


def test_driver_inputs_give_the_limiter_the_speedometer_when_fresh_else_the_twist():
    clock = FakeClock()
    inputs = DriverInputs(PreprocessConfig(), ObservationConfig(use_vector_state=False), True, 0.3, clock)
    assert inputs.current_speed() is None
    odometry = Odometry()
    odometry.pose.pose.orientation.w = 1.0
    odometry.twist.twist.linear.x = 3.0
    inputs.set_odometry(odometry)
    assert inputs.current_speed() == pytest.approx(3.0)
    inputs.set_speed(Float32(data=4.0))
    assert inputs.current_speed() == pytest.approx(4.0)
    clock.advance(1.0)
    assert inputs.current_speed() == pytest.approx(3.0)


def test_the_curve_governor_limits_the_speed_to_the_lateral_acceleration_in_curves():
    governed = ActionConfig(speed_limit_mps=10.0, curve_lateral_accel_mps2=2.0)
    assert governed.limit_mps(None) == 10.0 and governed.limit_mps(0.0) == 10.0  # straight, or unknown
    assert governed.limit_mps(0.005) == 10.0  # sqrt(2 / 0.005) = 20 m/s: the speed limit is lower
    assert governed.limit_mps(0.08) == pytest.approx(5.0)  # a 12.5 m radius: sqrt(2 * 12.5)
    assert governed.limit_mps(100.0) == 1.0  # never below the limiter's band
    assert ActionConfig(curve_lateral_accel_mps2=2.0).limit_mps(0.08) == pytest.approx(5.0)  # without a speed limit
    assert ActionConfig(curve_lateral_accel_mps2=2.0).limit_mps(0.0) == 0.0
    assert ActionConfig(speed_limit_mps=10.0).limit_mps(0.08) == 10.0  # no governor
    # In the curve: full throttle at 3 m/s, less in the last 1 m/s below 5 m/s, braking above it.
    assert action_to_command(0.0, 1.0, governed, 3.0, 0.08).throttle == 1.0
    assert action_to_command(0.0, 1.0, governed, 4.5, 0.08).throttle == pytest.approx(0.5)
    assert action_to_command(0.0, 1.0, governed, 5.5, 0.08) == VehicleCommand(steer=0.0, throttle=0.0, brake=0.5)
    assert action_to_command(0.0, 1.0, governed, 5.5, 0.0).throttle == 1.0  # the same speed on a straight
    assert action_to_command(0.0, 1.0, governed, 5.5, math.nan).throttle == 1.0  # curvature unknown: the speed limit
    for bad in (-0.1, 10.5, math.inf, math.nan):
        with pytest.raises(ValueError, match="curve_lateral_accel_mps2"):
            ActionConfig(curve_lateral_accel_mps2=bad)


@given(st.floats(-1.0, 1.0), st.floats(0.0, 40.0), st.floats(0.0, 1.0))
def test_with_the_curve_governor_no_command_accelerates_at_or_above_the_curve_speed(
    accel: float, speed: float, curvature: float
):
    governed = ActionConfig(speed_limit_mps=10.0, curve_lateral_accel_mps2=2.0)
    command = action_to_command(0.0, accel, governed, speed, curvature)
    if curvature > 0.0 and speed >= max(math.sqrt(2.0 / curvature), 1.0):
        assert command.throttle == 0.0
    assert 0.0 <= command.throttle <= 1.0 and 0.0 <= command.brake <= 1.0


def test_a_pixel_policy_with_a_curve_governor_needs_the_route_and_is_slowed_in_curves():
    clock = FakeClock()
    governed = ActionConfig(curve_lateral_accel_mps2=2.0)
    gate = _gate(clock, action_config=governed, odometry_topic="/odom")
    gate.frame_received()
    gate.odometry_received()
    decision = gate.decide([0.0, 1.0], speed=3.0, curvature=None)
    assert decision.reason is BrakeReason.NO_ROUTE and "curve governor" in decision.detail
    gate.route_received()
    assert gate.decide([0.0, 1.0], speed=3.0, curvature=0.08).command.throttle == 1.0
    assert gate.decide([0.0, 1.0], speed=7.0, curvature=0.08).command == VehicleCommand(0.0, 0.0, 1.0)
    assert gate.decide([0.0, 1.0], speed=7.0, curvature=0.0).command.throttle == 1.0


def test_driver_inputs_give_the_governor_the_routes_curvature_ahead_of_the_car():
    inputs = DriverInputs(PreprocessConfig(), ObservationConfig(use_vector_state=False), False, 0.3, FakeClock())
    assert inputs.current_curvature() is None
    circle = Path()
    for i in range(64):
        pose = PoseStamped()
        pose.pose.position.x, pose.pose.position.y = (
            12.5 * math.cos(i * math.pi / 32),
            12.5 * math.sin(i * math.pi / 32),
        )
        circle.poses.append(pose)
    inputs.set_route(circle)
    assert inputs.current_curvature() is None  # no odometry yet
    odometry = Odometry()
    odometry.pose.pose.position.x = 12.5
    odometry.pose.pose.orientation.w = 1.0
    inputs.set_odometry(odometry)
    assert inputs.current_curvature() == pytest.approx(0.08, rel=0.05)
