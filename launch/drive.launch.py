"""ros2 launch td3_driver drive.launch.py checkpoint:=<.pth | run dir | latest> [rate_hz:=20] ...

Starts the driver and, by default, the embedded simulator free-running at the camera rate.
With simulator:=carla it includes carla-ros-bridge with the example ego vehicle when installed,
and otherwise expects one running. The node graph itself comes from td3_bringup.graph, shared
with the pip-only runner.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

from td3_bringup.graph import driving_graph
from td3_bringup.launch_support import (
    carla_bridge_actions,
    declare_common_arguments,
    graph_actions,
    launch_value,
    rviz_action,
)

ARGUMENTS = {
    "checkpoint": ("latest", "a .pth file, a run directory, or 'latest' (newest under models_dir)"),
    "rate_hz": ("20.0", "command publishing rate"),
    "config_file": ("", "extra driver/simulator params file, applied after config/driver.yaml"),
    "watch": ("false", "hot-reload newer checkpoints written by a running trainer"),
}


def _launch_setup(context, *args, **kwargs):
    share = Path(get_package_share_directory("td3_driver"))
    value = lambda name: launch_value(context, name)  # noqa: E731
    driver = {
        "checkpoint": value("checkpoint"),
        "rate_hz": float(value("rate_hz")),
        "device": value("device"),
        "role_name": value("role_name"),
        "watch": value("watch").lower() == "true",
    }
    simulator = value("simulator")
    extra = (Path(value("config_file")),) if value("config_file") else ()
    preprocess = value("preprocess").lower() == "true"
    specs = driving_graph(share / "config", simulator, driver, {"role_name": value("role_name")}, extra, preprocess)
    actions = graph_actions(specs, Node)
    if simulator == "carla":
        actions += carla_bridge_actions(context, synchronous=False)
    if value("rviz").lower() == "true":
        actions.append(rviz_action(Node, share / "config" / "drive.rviz"))
    return actions


def generate_launch_description():
    declared = declare_common_arguments(DeclareLaunchArgument)
    declared += [
        DeclareLaunchArgument(name, default_value=default, description=text)
        for name, (default, text) in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_launch_setup)])
