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
    "preprocess": ("false", "true: + the preprocessing node (td3_preprocess), read at image_input:=preprocessed"),
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


class GraphNodeFailedError(RuntimeError):
    """A node of the graph exited with an error status; launch answers it with exit status 1."""


def end_graph_on_exit(node_action, name: str):
    """td3-run's rule in launch terms: when one node of the graph exits, the whole launch ends.

    Exit 0 (the trainer's step budget reached): Shutdown, and `ros2 launch` exits 0. Any other
    status: an error that launch logs, shuts the graph down for, and exits 1 with (launch has no
    other way to carry a status out). Exits during a shutdown already under way (Ctrl-C, or
    another node that ended the graph) are that shutdown's consequence and change nothing.
    """
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.events import Shutdown

    def on_exit(event, context):
        if context.is_shutdown:
            return None
        if event.returncode == 0:
            return [EmitEvent(event=Shutdown(reason=f"{name} finished: stopping the graph"))]
        raise GraphNodeFailedError(f"{name} exited with code {event.returncode}: stopping the graph")

    return RegisterEventHandler(OnProcessExit(target_action=node_action, on_exit=on_exit))


def graph_actions(specs: Sequence[NodeSpec], node_class) -> list:
    """The graph's nodes, each with the handler that ends the launch when it exits."""
    nodes = node_actions(specs, node_class)
    return nodes + [end_graph_on_exit(node, spec.name) for node, spec in zip(nodes, specs, strict=True)]


def rviz_action(node_class, config: Path):
    """rviz2 with this project's display config; where rviz2 is not installed, a notice instead
    (a missing viewer must not stop training or driving)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    from launch.actions import LogInfo

    try:
        get_package_prefix("rviz2")
    except PackageNotFoundError:
        return LogInfo(msg=f"rviz:=true but rviz2 is not installed here: no viewer (its config: {config})")
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
