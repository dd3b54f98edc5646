"""ros2 launch td3_trainer train.launch.py [simulator:=embedded|carla] [rviz:=true] ...

Starts the TD3 trainer and, by default, the embedded simulator in synchronous mode. With
simulator:=carla it includes carla-ros-bridge (synchronous, waiting for the control command)
with the example ego vehicle when the bridge is installed, and otherwise expects one running.
The node graph itself comes from td3_bringup.graph, shared with the pip-only runner.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

from td3_bringup.carla import TRAINER_FOR_CARLA
from td3_bringup.graph import training_graph
from td3_bringup.launch_support import (
    carla_bridge_actions,
    declare_common_arguments,
    graph_actions,
    launch_value,
    rviz_action,
)

ARGUMENTS = {
    "config_file": ("", "extra trainer/simulator params file, applied after config/trainer.yaml"),
    "run_name": ("", "checkpoint sub-directory under models_dir (default: a timestamp)"),
    "resume": ("", "resume from a .pth, a run directory or 'latest'"),
    "total_steps": ("", "environment step budget (empty: the value in trainer.yaml)"),
}


def _launch_setup(context, *args, **kwargs):
    share = Path(get_package_share_directory("td3_trainer"))
    value = lambda name: launch_value(context, name)  # noqa: E731
    trainer = {"role_name": value("role_name"), "device": value("device")}
    for name in ("run_name", "resume"):
        if value(name):
            trainer[name] = value(name)
    if value("total_steps"):
        trainer["total_steps"] = int(value("total_steps"))
    simulator = value("simulator")
    if simulator == "carla":
        trainer["fixed_delta_seconds"] = float(value("fixed_delta_seconds"))
        trainer.update(TRAINER_FOR_CARLA)  # resets through set_transform + goal: the bridge has no reset service
    extra = (Path(value("config_file")),) if value("config_file") else ()
    preprocess = value("preprocess").lower() == "true"
    specs = training_graph(share / "config", simulator, trainer, {"role_name": value("role_name")}, extra, preprocess)
    actions = graph_actions(specs, Node)
    if simulator == "carla":
        actions += carla_bridge_actions(context, synchronous=True)
    if value("rviz").lower() == "true":
        actions.append(rviz_action(Node, share / "config" / "train.rviz"))
    return actions


def generate_launch_description():
    declared = declare_common_arguments(DeclareLaunchArgument)
    declared += [
        DeclareLaunchArgument(name, default_value=default, description=text)
        for name, (default, text) in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_launch_setup)])
