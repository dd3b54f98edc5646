"""Parameters of the driver node: its table in td3_core.params' system, and DriverParams.

`validate(values)` is ROS-free and raises ParamError naming the first bad parameter; the node
turns that into a one-line fatal message and a non-zero exit. Parameters are read-only: they
are read once at start-up, so changing one at runtime is refused instead of silently ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from td3_core.device import device_name_problem
from td3_core.params import Param, ParamError, ParamTable, at_least, one_of, positive, ros_name
from td3_core.preprocessing import IMAGE_INPUTS

__all__ = ["PARAMS", "TABLE", "DriverParams", "ParamError", "declare", "validate"]


def _rate(v: float) -> str | None:
    return None if math.isfinite(v) and 0 < v <= 1000 else "must be > 0 (and at most 1000)"


def _non_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty (a .pth path, a run directory, 'latest' or 'best')"


PARAMS: tuple[Param, ...] = (
    Param("checkpoint", "latest", "a .pth file, a run directory (its newest one), 'latest' or 'best'", _non_empty),
    Param("models_dir", "models", "where 'latest' and 'best' look for runs"),
    Param("device", "auto", "torch device: auto (cuda when available), cuda, cuda:<index> or cpu", device_name_problem),
    Param("role_name", "ego_vehicle", "ego vehicle role name: topics are /carla/<role_name>/...", ros_name),
    Param(
        "image_input",
        "raw",
        "raw: the camera (rgb_front/image); preprocessed: the 84x84 mono8 frames of td3_preprocess "
        "(rgb_front/preprocessed)",
        one_of(*IMAGE_INPUTS),
    ),
    Param("rate_hz", 20.0, "command publishing rate (Hz)", _rate),
    Param(
        "one_command_per_frame",
        False,
        "for a synchronous simulator (it waits for the command): each frame's action is sent once, at rate_hz at "
        "most, and the next command waits for the next frame; braking commands still go out at rate_hz",
    ),
    Param(
        "image_reliability",
        "reliable",
        "camera QoS: reliable or best_effort (sensor data); depth 1",
        one_of("best_effort", "reliable"),
    ),
    Param(
        "stale_timeout",
        0.3,
        "age of the newest frame (or odometry) before full brake: simulation seconds while /clock is "
        "published, else wall seconds since its stamp last advanced",
        positive,
    ),
    Param(
        "watchdog_timeout",
        1.0,
        "wall seconds without a frame (or odometry) with a new stamp before full brake, whatever /clock says",
        positive,
    ),
    Param("max_image_bytes", 16 * 1024 * 1024, "larger camera images are dropped with a log line", at_least(1)),
    Param("max_route_points", 20000, "longer routes (waypoints) are dropped with a log line", at_least(2)),
    Param("use_speedometer", True, "vector policies: speed from the speedometer when fresh, else odometry twist"),
    Param(
        "speed_limit_mps",
        0.0,
        "speed limiter (m/s); 0 = the checkpoint's (action.speed_limit_mps, none if it has none); a lower "
        "value than the checkpoint's tightens it. With a limit, odometry is needed (no odometry: full brake)",
        at_least(0.0),
    ),
    Param("publish_twist", False, "also publish geometry_msgs/Twist on /carla/<role>/twist"),
    Param("twist_max_steering_angle", 1.2217, "rad at steer 1 for the Twist output (carla_twist_to_control)", positive),
    Param("watch", False, "hot-reload a newer checkpoint (for 'latest' and run directories, or a replaced file)"),
    Param("watch_period_s", 5.0, "seconds between checks for a newer checkpoint", positive),
    Param("warmup_iterations", 5, "forward passes before the first command (0 = none)", at_least(0)),
    Param("cpu_threads", 1, "torch CPU threads for inference; 0 = torch's default (one per core)", at_least(0)),
    Param("publish_network_input", True, "publish the stacked frames on ~/network_input"),
    Param("diagnostics_period_s", 1.0, "seconds between /diagnostics messages", positive),
    Param("log_throttle_s", 5.0, "a condition that persists is logged again at most this often (s)", positive),
)
TABLE = ParamTable(PARAMS)


@dataclass(frozen=True)
class DriverParams:
    checkpoint: str
    models_dir: str
    device: str
    role_name: str
    image_input: str
    rate_hz: float
    one_command_per_frame: bool
    image_reliability: str
    stale_timeout: float
    watchdog_timeout: float
    max_image_bytes: int
    max_route_points: int
    use_speedometer: bool
    speed_limit_mps: float
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


def validate(given: Mapping[str, Any]) -> DriverParams:
    """Type-check and validate every parameter; missing ones take their default."""
    return DriverParams(**TABLE.validate(given))


def declare(node: Any) -> DriverParams:
    """Declare every parameter on `node` (with descriptors) and validate what it was given."""
    return validate(TABLE.declare(node))
