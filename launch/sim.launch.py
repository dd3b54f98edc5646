"""ros2 launch td3_sim sim.launch.py config_file:=vehicles.yaml [simulator_processes:=true] [preprocess:=true]

Starts the embedded simulator alone, for trainers and drivers started elsewhere: the role_name
list of its params files (config/simulator.yaml, then config_file) as that many ego vehicles in
one world, or with simulator_processes:=true one simulator process per vehicle (as N servers,
their global topics under /<role>/); preprocess:=true adds a preprocessing node per vehicle.
The same graph as `td3-run sim`, from td3_bringup.graph (docs/scale-out.md).
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

from td3_bringup.graph import simulation_graph
from td3_bringup.launch_support import graph_actions, launch_value

ARGUMENTS = {
    "config_file": ("", "extra simulator/preprocessing params file (e.g. role_name: [hero1, hero2])"),
    "role_name": ("", "the vehicles' role names, 'a,b' (empty: the params files' role_name)"),
    "simulator_processes": ("false", "true: one simulator process per vehicle, else one world with all"),
    "preprocess": ("false", "true: + a preprocessing node (td3_preprocess) per vehicle"),
    "synchronous_mode": ("true", "tick on commands (true) or on a timer (false)"),
}


def _launch_setup(context, *args, **kwargs):
    share = Path(get_package_share_directory("td3_sim"))
    value = lambda name: launch_value(context, name)  # noqa: E731
    overrides = {"role_name": value("role_name")} if value("role_name") else {}
    extra = (Path(value("config_file")),) if value("config_file") else ()
    specs = simulation_graph(
        share / "config",
        value("synchronous_mode").lower() == "true",
        overrides,
        extra,
        processes=value("simulator_processes").lower() == "true",
        preprocess=value("preprocess").lower() == "true",
    )
    return graph_actions(specs, Node)


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=text)
        for name, (default, text) in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_launch_setup)])
