"""What a run with a real CARLA needs from the carla-ros-bridge packages, started only where installed.

From carla-simulator/ros-bridge (master, CARLA 0.9.13), without their launch file that also
starts carla_manual_control (a pygame window; its manual override would take the car):
- carla_ros_bridge/carla_ros_bridge.launch.py: synchronous_mode True, passive False (the bridge
  ticks), synchronous_mode_wait_for_vehicle_control_command True for training (one command, one
  tick) and False for driving, fixed_delta_seconds, town.
- carla_spawn_objects/carla_example_ego_vehicle.launch.py: the ego vehicle of the example
  objects.json - the rgb_front camera, collision and lane-invasion sensors, odometry,
  speedometer and the actor.pseudo.control `control` (control/set_transform and
  control/set_target_velocity, what the trainer's reset uses) - and set_initial_pose.
- carla_waypoint_publisher/carla_waypoint_publisher.launch.py: the route on /carla/<role>/waypoints,
  recomputed for each goal the trainer's reset sends.
The role name must be one of the bridge's ego_vehicle_role_name defaults (hero, ego_vehicle,
hero0..hero9) for it to be treated as an ego vehicle. No launch import at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from td3_bringup.graph import ParamValue, format_param


@dataclass(frozen=True)
class CarlaPiece:
    package: str
    launch_file: str
    arguments: dict[str, str]
    purpose: str


# The trainer's parameters with a real bridge: no reset service, it resets through set_transform.
TRAINER_FOR_CARLA: dict[str, ParamValue] = {"reset_service": ""}


def carla_pieces(values: Mapping[str, str], training: bool) -> list[CarlaPiece]:
    """The bridge, the ego vehicle and the waypoint publisher with their launch arguments.

    `values`: host, port, town, role_name, fixed_delta_seconds (the launch files' arguments)."""
    host, port, role = values["host"], values["port"], values["role_name"]
    return [
        CarlaPiece(
            "carla_ros_bridge",
            "carla_ros_bridge.launch.py",
            {
                "host": host,
                "port": port,
                "town": values["town"],
                "fixed_delta_seconds": values["fixed_delta_seconds"],
                "passive": "False",
                "synchronous_mode": "True",
                # One control command, one tick: what the trainer's synchronous loop expects.
                "synchronous_mode_wait_for_vehicle_control_command": format_param(training).capitalize(),
            },
            "the bridge (synchronous)",
        ),
        CarlaPiece(
            "carla_spawn_objects",
            "carla_example_ego_vehicle.launch.py",
            {"host": host, "port": port, "role_name": role},
            "the ego vehicle with rgb_front and the pseudo control (objects.json)",
        ),
        CarlaPiece(
            "carla_waypoint_publisher",
            "carla_waypoint_publisher.launch.py",
            {"host": host, "port": port, "role_name": role},
            "the route (/carla/<role>/waypoints)",
        ),
    ]


def carla_actions(values: Mapping[str, str], training: bool, share_of: Callable[[str], Path | None]) -> list:
    """Launch actions: each installed piece included, each missing one named in the log."""
    from launch.actions import IncludeLaunchDescription, LogInfo
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    actions: list = []
    for piece in carla_pieces(values, training):
        share = share_of(piece.package)
        if share is None:
            flags = " ".join(f"{k}:={v}" for k, v in piece.arguments.items())
            actions.append(
                LogInfo(
                    msg=f"{piece.package} is not installed here: start {piece.purpose} yourself "
                    f"(ros2 launch {piece.package} {piece.launch_file} {flags}), see README"
                )
            )
            continue
        source = PythonLaunchDescriptionSource(str(share / piece.launch_file))
        actions.append(IncludeLaunchDescription(source, launch_arguments=piece.arguments.items()))
    return actions


def installed_share(package: str) -> Path | None:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        return Path(get_package_share_directory(package))
    except PackageNotFoundError:
        return None
