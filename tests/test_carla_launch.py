"""The CARLA pieces of the launch files: the bridge's flags, the ego vehicle, the waypoint publisher."""

from __future__ import annotations

from pathlib import Path

import pytest

from td3_bringup.carla import TRAINER_FOR_CARLA, carla_actions, carla_pieces
from td3_bringup.graph import repo_config_dir, training_graph

VALUES = {"host": "carla", "port": "2000", "town": "Town03", "role_name": "ego_vehicle", "fixed_delta_seconds": "0.05"}


def test_training_waits_for_each_command_and_driving_does_not():
    train = {p.package: p for p in carla_pieces(VALUES, training=True)}
    drive = {p.package: p for p in carla_pieces(VALUES, training=False)}
    assert set(train) == {"carla_ros_bridge", "carla_spawn_objects", "carla_waypoint_publisher"}
    bridge = train["carla_ros_bridge"].arguments
    assert bridge["synchronous_mode"] == "True" and bridge["passive"] == "False"
    assert bridge["synchronous_mode_wait_for_vehicle_control_command"] == "True"
    assert drive["carla_ros_bridge"].arguments["synchronous_mode_wait_for_vehicle_control_command"] == "False"
    assert (bridge["town"], bridge["fixed_delta_seconds"], bridge["host"]) == ("Town03", "0.05", "carla")
    assert train["carla_spawn_objects"].launch_file == "carla_example_ego_vehicle.launch.py"  # camera + pseudo control
    assert train["carla_waypoint_publisher"].arguments["role_name"] == "ego_vehicle"


def test_installed_pieces_are_included_and_missing_ones_named():
    pytest.importorskip("launch.actions")  # ROS 2 launch (not the launch/ folder here)
    from launch.actions import IncludeLaunchDescription, LogInfo

    shares = {"carla_ros_bridge": Path("/opt/bridge")}
    actions = carla_actions(VALUES, training=True, share_of=shares.get)
    assert isinstance(actions[0], IncludeLaunchDescription)
    missing = [a for a in actions if isinstance(a, LogInfo)]
    assert len(missing) == 2
    text = " ".join(getattr(part, "text", str(part)) for a in missing for part in a.msg)
    assert "carla_spawn_objects" in text and "carla_waypoint_publisher" in text


def test_the_trainer_for_carla_has_no_reset_service():
    specs = training_graph(repo_config_dir(), "carla", TRAINER_FOR_CARLA)
    (trainer,) = specs
    assert trainer.parameters["reset_service"] == ""
