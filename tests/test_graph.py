"""The node graph that both the launch files and the pip-only runner start."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from td3_bringup.graph import NodeSpec, driving_graph, repo_config_dir, training_graph
from td3_bringup.launch_support import node_kwargs
from td3_bringup.runner import node_command, parse_overrides

REPO = Path(__file__).resolve().parents[1]
CONFIG = repo_config_dir()


def _cmake_ros_packages() -> dict[str, str]:
    """td3_ros_package(<name> ...) calls of CMakeLists.txt: package name → its arguments."""
    calls = re.findall(r"^  td3_ros_package\((\w+)(.*?)\)$", (REPO / "CMakeLists.txt").read_text(), re.M | re.S)
    return {name: " ".join(arguments.split()) for name, arguments in calls}


def _all_specs() -> list[NodeSpec]:
    graphs = [
        training_graph(CONFIG),
        training_graph(CONFIG, "carla"),
        driving_graph(CONFIG, driver_overrides={"checkpoint": "latest"}),
        driving_graph(CONFIG, "carla"),
    ]
    return [spec for graph in graphs for spec in graph]


def test_embedded_graphs_have_simulator_and_carla_graphs_do_not():
    assert [s.name for s in training_graph(CONFIG)] == ["carla_simulator", "td3_trainer"]
    assert [s.name for s in training_graph(CONFIG, "carla")] == ["td3_trainer"]
    assert [s.name for s in driving_graph(CONFIG)] == ["carla_simulator", "td3_driver"]
    assert [s.name for s in driving_graph(CONFIG, "carla")] == ["td3_driver"]
    with pytest.raises(ValueError, match="simulator"):
        training_graph(CONFIG, "gazebo")


def test_simulator_runs_synchronously_for_training_and_free_for_driving():
    assert training_graph(CONFIG)[0].parameters["synchronous_mode"] is True
    assert driving_graph(CONFIG)[0].parameters["synchronous_mode"] is False


@pytest.mark.parametrize("spec", _all_specs(), ids=lambda s: s.name)
def test_every_node_has_module_executable_and_params_file(spec: NodeSpec):
    assert importlib.util.find_spec(spec.module) is not None, f"{spec.module} is not importable"
    packages = _cmake_ros_packages()
    assert f"{spec.executable}={spec.module}" in packages[spec.package], "CMakeLists.txt does not install it"
    for params_file in spec.params_files:
        content = yaml.safe_load(params_file.read_text())
        assert spec.name in content and "ros__parameters" in content[spec.name], f"{params_file} has no {spec.name}"


def test_launch_kwargs_and_runner_args_carry_the_same_parameters():
    spec = driving_graph(CONFIG, driver_overrides={"checkpoint": "models/run/td3_x_step_5.pth", "watch": True})[1]
    kwargs = node_kwargs(spec)
    assert kwargs["package"] == "td3_driver" and kwargs["executable"] == "driver_node"
    assert kwargs["name"] == "td3_driver"
    overrides = {"checkpoint": "models/run/td3_x_step_5.pth", "watch": True}
    assert kwargs["parameters"] == [str(CONFIG / "driver.yaml"), overrides]
    command = node_command(spec)
    assert command[1:3] == ["-m", "td3_driver.node"]
    args = command[3:]
    assert args[:4] == ["--ros-args", "-r", "__node:=td3_driver", "--params-file"]
    assert "checkpoint:=models/run/td3_x_step_5.pth" in args and "watch:=true" in args


def test_runner_overrides_are_typed_like_ros2_params():
    parsed = parse_overrides(["td3_trainer.total_steps:=300", "td3_trainer.device:=cpu", "carla_simulator.seed:=-1"])
    assert parsed == {"td3_trainer": {"total_steps": 300, "device": "cpu"}, "carla_simulator": {"seed": -1}}
    with pytest.raises(SystemExit):
        parse_overrides(["total_steps=3"])


def test_cmake_registers_each_ros_package_with_its_launch_file():
    """tests/test_ros2_tools.py builds it and checks the install tree."""
    packages = _cmake_ros_packages()
    assert set(packages) == {"td3_trainer", "td3_driver", "td3_sim"}
    assert "LAUNCH launch/train.launch.py" in packages["td3_trainer"]
    assert "LAUNCH launch/drive.launch.py" in packages["td3_driver"]
    assert "LAUNCH launch/sim.launch.py" in packages["td3_sim"]


@pytest.mark.parametrize("launch_file", ["train.launch.py", "drive.launch.py"])
def test_launch_files_use_the_graph_definition(launch_file: str):
    source = (REPO / "launch" / launch_file).read_text()
    ast.parse(source)
    graph_function = "training_graph" if launch_file.startswith("train") else "driving_graph"
    assert re.search(rf"from td3_bringup.graph import {graph_function}", source)
    assert "graph_actions(specs, Node)" in source


@pytest.mark.parametrize("launch_file", ["train.launch.py", "drive.launch.py"])
def test_launch_files_with_launch_ros(launch_file: str):
    pytest.importorskip(
        "launch_ros",
        reason="launch_ros is not on PyPI: ../shared/ros2-tools/install.sh (make test) or a ROS 2 install provides it",
    )
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location("launch_under_test", REPO / "launch" / launch_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    names = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert {"simulator", "device", "rviz", "role_name"} <= names


@pytest.mark.parametrize("rviz", ["train.rviz", "drive.rviz"])
def test_rviz_configs_show_camera_route_and_odometry(rviz: str):
    config = yaml.safe_load((CONFIG / rviz).read_text())
    displays = config["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays if "Topic" in d}
    role = "/carla/ego_vehicle"
    assert {f"{role}/rgb_front/image", f"{role}/waypoints", f"{role}/odometry"} <= topics
    if rviz == "drive.rviz":
        assert {"/td3_driver/network_input", "/td3_driver/command_marker"} <= topics


def test_sim_launch_file_starts_the_simulation_graph():
    source = (REPO / "launch" / "sim.launch.py").read_text()
    ast.parse(source)
    assert re.search(r"from td3_bringup.graph import simulation_graph", source)
    assert "graph_actions(specs, Node)" in source
    pytest.importorskip("launch_ros", reason="launch_ros is not on PyPI: ../shared/ros2-tools/install.sh")
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location("sim_launch_under_test", REPO / "launch" / "sim.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = {a.name for a in module.generate_launch_description().entities if isinstance(a, DeclareLaunchArgument)}
    assert {"config_file", "role_name", "simulator_processes", "preprocess"} <= names
