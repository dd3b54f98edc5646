"""Kinematic bicycle model of the ego vehicle, with CARLA's control conventions.

Inputs are those of carla_msgs/CarlaEgoVehicleControl: throttle and brake in [0, 1], steer in
[-1, 1] where +1 turns RIGHT, i.e. the yaw (counter-clockwise positive, ROS map frame)
decreases. The state is the vehicle centre (like a CARLA actor's location); the model moves
the rear axle along the heading, so the centre also slides sideways in a turn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class VehicleParams:
    wheelbase: float = 2.9  # m
    max_steer_deg: float = 35.0  # front wheel angle at |steer| = 1
    length: float = 4.6  # m, bounding box, for lane-invasion and obstacle checks
    width: float = 1.8
    mass: float = 1500.0  # kg, for collision impulses
    max_accel: float = 4.0  # m/s² at throttle 1, standing start
    max_speed: float = 30.0  # m/s, where throttle 1 stops accelerating
    max_reverse_speed: float = 5.0
    brake_decel: float = 9.0  # m/s² at brake 1
    hand_brake_decel: float = 6.0
    rolling_decel: float = 0.15  # m/s², always against the motion
    coast_decel: float = 0.5  # m/s², engine braking with throttle 0
    drag: float = 4.0e-4  # 1/m: decel = drag * v²


@dataclass(frozen=True)
class Control:
    throttle: float = 0.0
    steer: float = 0.0
    brake: float = 0.0
    hand_brake: bool = False
    reverse: bool = False

    @staticmethod
    def sanitized(
        throttle: float, steer: float, brake: float, hand_brake: bool = False, reverse: bool = False
    ) -> tuple[Control, bool]:
        """Clamped control, and whether it was invalid (non-finite: zero throttle, full brake)."""
        values = (float(throttle), float(steer), float(brake))
        if not all(math.isfinite(v) for v in values):
            return Control(0.0, 0.0, 1.0, bool(hand_brake), bool(reverse)), True
        return (
            Control(
                throttle=min(max(values[0], 0.0), 1.0),
                steer=min(max(values[1], -1.0), 1.0),
                brake=min(max(values[2], 0.0), 1.0),
                hand_brake=bool(hand_brake),
                reverse=bool(reverse),
            ),
            False,
        )


@dataclass
class VehicleState:
    x: float = 0.0  # vehicle centre, map frame
    y: float = 0.0
    yaw: float = 0.0  # rad, CCW positive
    speed: float = 0.0  # m/s along the heading, negative when reversing
    accel: float = 0.0  # m/s², longitudinal, of the last step
    yaw_rate: float = 0.0  # rad/s of the last step


def step_vehicle(state: VehicleState, control: Control, dt: float, p: VehicleParams) -> VehicleState:
    """One fixed step; the control must already be sanitized."""
    v = state.speed
    direction = -1.0 if control.reverse else 1.0
    # Throttle pushes towards `direction`; fades out near the top speed of that direction.
    top = p.max_reverse_speed if control.reverse else p.max_speed
    drive = 0.0
    if control.throttle > 0.0 and v * direction < top:
        drive = direction * control.throttle * p.max_accel * (1.0 - max(v * direction, 0.0) / top)
    resist = p.rolling_decel + p.drag * v * v
    if control.throttle == 0.0:
        resist += p.coast_decel
    resist += control.brake * p.brake_decel + (p.hand_brake_decel if control.hand_brake else 0.0)

    if v != 0.0:
        new_v = v + (drive - math.copysign(resist, v)) * dt
        if new_v * v < 0.0:
            new_v = 0.0  # stops at zero; moving the other way starts from standing next step
    elif abs(drive) > resist:
        new_v = (drive - math.copysign(resist, drive)) * dt
    else:
        new_v = 0.0  # standing: resistances hold the car like static friction

    delta = -control.steer * math.radians(p.max_steer_deg)  # + steer = right = negative angle
    mean_v = 0.5 * (v + new_v)
    yaw_rate = mean_v * math.tan(delta) / p.wheelbase
    half = 0.5 * p.wheelbase
    # Move the rear axle along the mid-step heading, then put the centre back in front of it.
    rear_x = state.x - half * math.cos(state.yaw)
    rear_y = state.y - half * math.sin(state.yaw)
    mid_yaw = state.yaw + 0.5 * yaw_rate * dt
    rear_x += mean_v * math.cos(mid_yaw) * dt
    rear_y += mean_v * math.sin(mid_yaw) * dt
    yaw = _wrap(state.yaw + yaw_rate * dt)
    return VehicleState(
        x=rear_x + half * math.cos(yaw),
        y=rear_y + half * math.sin(yaw),
        yaw=yaw,
        speed=new_v,
        accel=(new_v - v) / dt,
        yaw_rate=yaw_rate,
    )


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi
