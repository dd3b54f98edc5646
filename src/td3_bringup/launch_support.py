"""Pieces the launch files share: common arguments, NodeSpec → launch_ros Node, bridge settings.

Kept free of launch imports at module level (classes are passed in) so it imports, and is
tested, where launch_ros is not installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from td3_bringup.graph import NodeSpec

COMMON_ARGUMENTS = {
    "simulator": ("embedded", "embedded (td3_sim) or carla (carla-ros-bridge)"),
    "device": ("auto", "torch device: auto, cuda or cpu"),
    "role_name": ("ego_vehicle", "ego vehicle role name (topic prefix /carla/<role_name>/)"),
    "rviz": ("false", "start rviz2 with this project's display config"),
    # Passed to carla-ros-bridge when simulator:=carla.
    "host": ("localhost", "CARLA server host"),
    "port": ("2000", "CARLA server port"),
    "town": ("Town01", "CARLA map"),
    "fixed_delta_seconds": ("0.05", "simulation step (must be < 0.1 for the bridge)"),
}


def declare_common_arguments(declare_launch_argument) -> list:
    return [
        declare_launch_argument(name, default_value=default, description=text)
        for name, (default, text) in COMMON_ARGUMENTS.items()
    ]


def node_kwargs(spec: NodeSpec) -> dict:
    """Keyword arguments of launch_ros.actions.Node for a NodeSpec (the runner uses ros_args())."""
    return {
        "package": spec.package,
        "executable": spec.executable,
        "name": spec.name,
        "output": "screen",
        "emulate_tty": True,
        "parameters": [str(p) for p in spec.params_files] + ([dict(spec.parameters)] if spec.parameters else []),
        "remappings": list(spec.remappings),
    }


def node_actions(specs: Sequence[NodeSpec], node_class) -> list:
    return [node_class(**node_kwargs(spec)) for spec in specs]


def rviz_action(node_class, config: Path):
    return node_class(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", str(config)], output="log")


def launch_value(context, name: str) -> str:
    """The value of a launch argument in an OpaqueFunction."""
    from launch.substitutions import LaunchConfiguration

    return LaunchConfiguration(name).perform(context)


def carla_bridge_actions(context, synchronous: bool) -> list:
    """The bridge, the example ego vehicle and carla_waypoint_publisher where installed
    (td3_bringup.carla), each missing one named in the log."""
    from td3_bringup.carla import carla_actions, installed_share

    names = ("host", "port", "town", "role_name", "fixed_delta_seconds")
    values = {name: launch_value(context, name) for name in names}
    return carla_actions(values, training=synchronous, share_of=installed_share)
