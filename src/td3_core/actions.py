"""Policy action ↔ CARLA vehicle control.

The policy outputs 2 values in [-1, 1]: steering (+1 = full right, CARLA's convention) and
longitudinal command (positive = throttle, negative = brake). Everything leaving this module
is clamped to CarlaEgoVehicleControl's ranges; a non-finite action becomes a full stop.

Speed limit (`speed_limit_mps` > 0, a governor like a car's speed limiter): when the speed is
known, throttle fades to 0 over the last LIMITER_BAND_MPS below the limit, and above the limit
the brake is at least proportional to the excess (full brake LIMITER_BAND_MPS over it). The
trainer applies it while learning and stores it in the checkpoint, so the driver applies the
same limiter to the same policy.

Curve governor (`curve_lateral_accel_mps2` > 0, with the speed known and the route's curvature
ahead given): the limit is also at most sqrt(curve_lateral_accel_mps2 / curvature), for the
route's mean curvature over the next CURVATURE_PREVIEW_M (td3_core.route), and never below
LIMITER_BAND_MPS: slower ahead of and in tight curves, whatever the policy asks for, as a car's
curve speed assistant does. It needs the route, so a driver with it subscribes to the waypoints.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

ACTION_DIM = 2
LIMITER_BAND_MPS = 1.0  # m/s below the limit over which throttle fades out, and above it to full brake
MAX_CURVE_LATERAL_ACCEL_MPS2 = 10.0  # about 1 g: above it the curve governor would never act


@dataclass(frozen=True)
class ActionConfig:
    max_steer: float = 1.0  # |steer| sent to the car at action +-1, in 0..1
    max_throttle: float = 1.0  # throttle at action[1] = +1, in 0..1
    max_brake: float = 1.0  # brake at action[1] = -1, in 0..1
    speed_limit_mps: float = 0.0  # governor: no throttle at this speed, braking above it; 0 = none
    curve_lateral_accel_mps2: float = 0.0  # > 0: in curves the limit is at most sqrt(this / curvature); 0 = none

    def __post_init__(self) -> None:
        for name in ("max_steer", "max_throttle", "max_brake"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        limit = self.speed_limit_mps
        if not (math.isfinite(limit) and (limit == 0.0 or limit >= LIMITER_BAND_MPS)):
            raise ValueError(f"speed_limit_mps must be 0 (none) or >= {LIMITER_BAND_MPS}, got {limit}")
        lateral = self.curve_lateral_accel_mps2
        if not (math.isfinite(lateral) and 0.0 <= lateral <= MAX_CURVE_LATERAL_ACCEL_MPS2):
            raise ValueError(
                f"curve_lateral_accel_mps2 must be in [0, {MAX_CURVE_LATERAL_ACCEL_MPS2}] (0 = none), got {lateral}"
            )

    @property
    def governs_curves(self) -> bool:
        return self.curve_lateral_accel_mps2 > 0.0

    def limit_mps(self, curvature: float | None = None) -> float:
        """The limiter's speed (m/s) on road of this curvature ahead (1/m, None = unknown); 0 = none."""
        limit = self.speed_limit_mps
        if self.governs_curves and curvature is not None and math.isfinite(curvature) and curvature > 0.0:
            in_curve = max(math.sqrt(self.curve_lateral_accel_mps2 / curvature), LIMITER_BAND_MPS)
            limit = in_curve if limit == 0.0 else min(limit, in_curve)
        return limit

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ActionConfig:
        return cls(**{k: float(v) for k, v in values.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class VehicleCommand:
    steer: float
    throttle: float
    brake: float

    @classmethod
    def full_brake(cls) -> VehicleCommand:
        return cls(steer=0.0, throttle=0.0, brake=1.0)


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def action_to_command(
    steer_action: float,
    accel_action: float,
    config: ActionConfig,
    speed: float | None = None,
    curvature: float | None = None,
) -> VehicleCommand:
    """The command for an action; `speed` (m/s, None = unknown) feeds the speed limiter and
    `curvature` (the route's ahead, 1/m, None = unknown) its curve governor."""
    if not (math.isfinite(steer_action) and math.isfinite(accel_action)):
        return VehicleCommand.full_brake()
    steer_action = _clamp(steer_action, -1.0, 1.0)
    accel_action = _clamp(accel_action, -1.0, 1.0)
    throttle = max(accel_action, 0.0) * config.max_throttle
    brake = max(-accel_action, 0.0) * config.max_brake
    limit = config.limit_mps(curvature)
    if limit > 0.0 and speed is not None and math.isfinite(speed):
        throttle *= _clamp((limit - speed) / LIMITER_BAND_MPS, 0.0, 1.0)
        brake = max(brake, _clamp((speed - limit) / LIMITER_BAND_MPS, 0.0, 1.0) * config.max_brake)
    return VehicleCommand(steer=steer_action * config.max_steer, throttle=throttle, brake=brake)
