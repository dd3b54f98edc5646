"""Every parameter in config/*.yaml is declared by its node: no silently ignored settings.

Each node is started as its own process with its parameter file, exactly as the launch files
and the runner start it, and asked over DDS for its parameter list and their descriptors: all
three declare through td3_core.params, each parameter read-only and described.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rcl_interfaces.srv import DescribeParameters, ListParameters

from td3_bringup.graph import (
    NodeSpec,
    driver_node,
    file_parameters,
    preprocess_node,
    repo_config_dir,
    simulator_node,
    trainer_node,
)
from td3_bringup.runner import node_command

from .processes import node_process

pytestmark = pytest.mark.ros
CONFIG = repo_config_dir()


def _yaml_parameters(spec: NodeSpec) -> set[str]:
    names: set[str] = set()
    for params_file in spec.params_files:
        names |= set(file_parameters(params_file, spec.name))
    return names


def _declared_parameters(node_name: str, timeout_s: float = 60.0) -> dict[str, ParameterDescriptor]:
    """The node's parameters (ROS's own ones included) with their descriptors."""
    rclpy.init()
    node = rclpy.create_node("param_probe")
    try:
        client = node.create_client(ListParameters, f"/{node_name}/list_parameters")
        describe = node.create_client(DescribeParameters, f"/{node_name}/describe_parameters")
        deadline = time.monotonic() + timeout_s
        while not (client.wait_for_service(timeout_sec=0.5) and describe.wait_for_service(timeout_sec=0.5)):
            assert time.monotonic() < deadline, f"/{node_name}/list_parameters never appeared"
        future = client.call_async(ListParameters.Request(depth=ListParameters.Request.DEPTH_RECURSIVE))
        rclpy.spin_until_future_complete(node, future, timeout_sec=20.0)
        assert future.done(), "list_parameters did not answer"
        names = list(future.result().result.names)
        future = describe.call_async(DescribeParameters.Request(names=names))
        rclpy.spin_until_future_complete(node, future, timeout_sec=20.0)
        assert future.done(), "describe_parameters did not answer"
        return dict(zip(names, future.result().descriptors, strict=True))
    finally:
        node.destroy_node()
        rclpy.shutdown()


def _check(spec: NodeSpec, tmp_path: Path) -> None:
    expected = _yaml_parameters(spec)
    assert expected, f"no parameters in {spec.params_files}"
    with node_process(node_command(spec)[1:], tmp_path / f"{spec.name}.log") as proc:
        try:
            declared = _declared_parameters(spec.name)
        except AssertionError:
            proc.poll()
            log = (tmp_path / f"{spec.name}.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"{spec.name} (exit {proc.returncode}) did not list its parameters:\n{log}") from None
    ignored = sorted(expected - set(declared))
    assert not ignored, f"{spec.name} ignores parameters of its yaml: {ignored}"
    # Declared with descriptors: described, and read-only (read once at start-up).
    undescribed = sorted(name for name in expected if not declared[name].description)
    assert not undescribed, f"{spec.name}: parameters without a description: {undescribed}"
    writable = sorted(name for name in expected if not declared[name].read_only)
    assert not writable, f"{spec.name}: parameters that could be changed at runtime and be ignored: {writable}"


def test_simulator_declares_every_parameter_of_its_yaml(tmp_path: Path):
    _check(simulator_node(CONFIG, sync=True, overrides={"image_width": 84, "image_height": 84}), tmp_path)


def test_trainer_declares_every_parameter_of_its_yaml(tmp_path: Path):
    _check(trainer_node(CONFIG, {"models_dir": str(tmp_path / "models"), "log_dir": str(tmp_path / "runs")}), tmp_path)


def test_driver_declares_every_parameter_of_its_yaml(tmp_path: Path):
    from .checkpoint_factory import write_checkpoint

    checkpoint = write_checkpoint(tmp_path / "run" / "td3_test_step_1.pth")
    _check(driver_node(CONFIG, {"checkpoint": str(checkpoint)}), tmp_path)


def test_preprocess_node_declares_every_parameter_of_its_yaml(tmp_path: Path):
    _check(preprocess_node(CONFIG), tmp_path)
