"""Parameters of the driver node: one table, declared with descriptors, validated at start-up.

`validate(values)` is ROS-free and raises ParamError naming the first bad parameter; the node
turns that into a one-line fatal message and a non-zero exit. Parameters are read-only: they
are read once at start-up, so changing one at runtime is refused instead of silently ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from td3_core.device import device_name_problem

Value = bool | int | float | str
Check = Callable[[Any], str | None]  # what is wrong with a value, or None


class ParamError(ValueError):
    """An unusable parameter value; `name` is the parameter."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"parameter '{name}': {problem}")
        self.name = name


def _positive(v: float) -> str | None:
    return None if math.isfinite(v) and v > 0 else "must be > 0"


def _at_least(low: int) -> Check:
    return lambda v: None if v >= low else f"must be >= {low}"


def _rate(v: float) -> str | None:
    return None if math.isfinite(v) and 0 < v <= 1000 else "must be > 0 (and at most 1000)"


def _ros_name(v: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", v) else "must be a ROS name (letters, digits, '_')"


def _reliability(v: str) -> str | None:
    return None if v in ("best_effort", "reliable") else "must be 'best_effort' or 'reliable'"


def _non_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty (a .pth path, a run directory, 'latest' or 'best')"


@dataclass(frozen=True)
class Param:
    name: str
    default: Value
    description: str
    check: Check | None = None


PARAMS: tuple[Param, ...] = (
    Param("checkpoint", "latest", "a .pth file, a run directory (its newest one), 'latest' or 'best'", _non_empty),
    Param("models_dir", "models", "where 'latest' and 'best' look for runs"),
    Param("device", "auto", "torch device: auto (cuda when available), cuda, cuda:<index> or cpu", device_name_problem),
    Param("role_name", "ego_vehicle", "ego vehicle role name: topics are /carla/<role_name>/...", _ros_name),
    Param("rate_hz", 20.0, "command publishing rate (Hz)", _rate),
    Param(
        "image_reliability", "reliable", "camera QoS: reliable or best_effort (sensor data); depth 1", _reliability
    ),
    Param(
        "stale_timeout",
        0.3,
        "age of the newest frame (or odometry) before full brake: simulation seconds while /clock is "
        "published, else wall seconds since its stamp last advanced",
        _positive,
    ),
    Param(
        "watchdog_timeout",
        1.0,
        "wall seconds without a frame (or odometry) with a new stamp before full brake, whatever /clock says",
        _positive,
    ),
    Param("max_image_bytes", 16 * 1024 * 1024, "larger camera images are dropped with a log line", _at_least(1)),
    Param("max_route_points", 20000, "longer routes (waypoints) are dropped with a log line", _at_least(2)),
    Param("use_speedometer", True, "vector policies: speed from the speedometer when fresh, else odometry twist"),
    Param("publish_twist", False, "also publish geometry_msgs/Twist on /carla/<role>/twist"),
    Param(
        "twist_max_steering_angle", 1.2217, "rad at steer 1 for the Twist output (carla_twist_to_control)", _positive
    ),
    Param("watch", False, "hot-reload a newer checkpoint (for 'latest' and run directories, or a replaced file)"),
    Param("watch_period_s", 5.0, "seconds between checks for a newer checkpoint", _positive),
    Param("warmup_iterations", 5, "forward passes before the first command (0 = none)", _at_least(0)),
    Param("cpu_threads", 1, "torch CPU threads for inference; 0 = torch's default (one per core)", _at_least(0)),
    Param("publish_network_input", True, "publish the stacked frames on ~/network_input"),
    Param("diagnostics_period_s", 1.0, "seconds between /diagnostics messages", _positive),
    Param("log_throttle_s", 5.0, "a condition that persists is logged again at most this often (s)", _positive),
)
PARAM_NAMES = tuple(p.name for p in PARAMS)
_BY_NAME = {p.name: p for p in PARAMS}


@dataclass(frozen=True)
class DriverParams:
    checkpoint: str
    models_dir: str
    device: str
    role_name: str
    rate_hz: float
    image_reliability: str
    stale_timeout: float
    watchdog_timeout: float
    max_image_bytes: int
    max_route_points: int
    use_speedometer: bool
    publish_twist: bool
    twist_max_steering_angle: float
    watch: bool
    watch_period_s: float
    warmup_iterations: int
    cpu_threads: int
    publish_network_input: bool
    diagnostics_period_s: float
    log_throttle_s: float

    def topic(self, suffix: str) -> str:
        return f"/carla/{self.role_name}/{suffix}"


def coerce(param: Param, value: Any) -> Value:
    """The value with the default's type; an integer is accepted for a float, nothing else."""
    expected = type(param.default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not expected:
        kind = {float: "a double", int: "an integer", bool: "a boolean", str: "a string"}[expected]
        raise ParamError(param.name, f"must be {kind}, got {value!r}")
    return value


def validate(raw: Mapping[str, Any]) -> DriverParams:
    """Type-check and validate every parameter; missing ones take their default."""
    values: dict[str, Value] = {}
    for param in PARAMS:
        value = coerce(param, raw.get(param.name, param.default))
        problem = param.check(value) if param.check else None
        if problem:
            raise ParamError(param.name, f"{problem}, got {value!r}")
        values[param.name] = value
    return DriverParams(**values)


def declare(node) -> DriverParams:
    """Declare every parameter on `node` (with descriptors) and validate what it was given."""
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import ParameterException

    raw: dict[str, Any] = {}
    for param in PARAMS:
        descriptor = ParameterDescriptor(
            description=param.description,
            read_only=True,
            # Doubles accept an integer on the command line (-p rate_hz:=20); coerce() converts it.
            dynamic_typing=isinstance(param.default, float),
        )
        try:
            raw[param.name] = node.declare_parameter(param.name, param.default, descriptor).value
        except ParameterException as error:  # wrong type given: name it instead of a traceback
            raise ParamError(param.name, f"cannot be declared: {error}") from error
    return validate(raw)


def describe(name: str) -> str:
    return _BY_NAME[name].description
