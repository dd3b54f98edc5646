"""Policy action ↔ CARLA vehicle control.

The policy outputs 2 values in [-1, 1]: steering (+1 = full right, CARLA's convention) and
longitudinal command (positive = throttle, negative = brake). Everything leaving this module
is clamped to CarlaEgoVehicleControl's ranges; a non-finite action becomes a full stop.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

ACTION_DIM = 2


@dataclass(frozen=True)
class ActionConfig:
    max_steer: float = 1.0  # |steer| sent to the car at action +-1, in 0..1
    max_throttle: float = 1.0  # throttle at action[1] = +1, in 0..1
    max_brake: float = 1.0  # brake at action[1] = -1, in 0..1

    def __post_init__(self) -> None:
        for name in ("max_steer", "max_throttle", "max_brake"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")

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


def action_to_command(steer_action: float, accel_action: float, config: ActionConfig) -> VehicleCommand:
    if not (math.isfinite(steer_action) and math.isfinite(accel_action)):
        return VehicleCommand.full_brake()
    steer_action = _clamp(steer_action, -1.0, 1.0)
    accel_action = _clamp(accel_action, -1.0, 1.0)
    return VehicleCommand(
        steer=steer_action * config.max_steer,
        throttle=max(accel_action, 0.0) * config.max_throttle,
        brake=max(-accel_action, 0.0) * config.max_brake,
    )
