"""The one parameter system (td3_core.params) as trainer, driver and simulator use it, ROS-free:
the same types, the same error naming the parameter, the same tables as their YAML files."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest

from td3_bringup.graph import file_parameters, repo_config_dir
from td3_core.params import Param, ParamError, ParamTable, at_least, build, in_range, positive
from td3_driver import params as driver_params
from td3_sim import node as sim_node
from td3_trainer import params as trainer_params

CONFIG = repo_config_dir()
# node name, its YAML, its table, its validate (values -> the frozen typed result)
NODES: dict[str, tuple[str, ParamTable, Callable[[dict[str, Any]], Any]]] = {
    "td3_trainer": ("trainer.yaml", trainer_params.TABLE, trainer_params.validate),
    "td3_driver": ("driver.yaml", driver_params.TABLE, driver_params.validate),
    "carla_simulator": ("simulator.yaml", sim_node.TABLE, sim_node.validate),
}
# A double parameter of each node whose own check passes any finite value >= its default.
DOUBLES = {"td3_trainer": "frame_timeout_s", "td3_driver": "stale_timeout", "carla_simulator": "goal_behind_spawn_m"}


@pytest.mark.parametrize("node", NODES)
def test_each_node_declares_exactly_its_yaml_with_the_same_types(node: str):
    yaml_name, table, _ = NODES[node]
    values = file_parameters(CONFIG / yaml_name, node)
    assert set(values) == set(table.names)
    for param in table:
        assert type(values[param.name]) is type(param.default), param.name


@pytest.mark.parametrize("node", NODES)
def test_defaults_are_valid_and_the_result_is_frozen(node: str):
    _, table, validate = NODES[node]
    result = validate({})
    name = DOUBLES[node]
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        setattr(result, name, 1.0)
    assert table.validate({})[name] == table[name].default
    with pytest.raises(TypeError):
        table.validate({})[name] = 1.0  # type: ignore[index]


@pytest.mark.parametrize("node", NODES)
@pytest.mark.parametrize(
    ("value", "problem"),
    [("fast", "must be a double"), (True, "must be a double"), (math.nan, None), (math.inf, None)],
)
def test_a_bad_double_is_refused_by_name_by_every_node(node: str, value: Any, problem: str | None):
    _, _, validate = NODES[node]
    name = DOUBLES[node]
    with pytest.raises(ParamError, match=problem) as info:
        validate({name: value})
    assert info.value.name == name and f"parameter '{name}'" in str(info.value)


@pytest.mark.parametrize("node", NODES)
def test_an_integer_is_a_double_but_nothing_else_converts(node: str):
    _, table, validate = NODES[node]
    name = DOUBLES[node]
    assert isinstance(table.validate({name: 7})[name], float)
    validate({name: 7})
    with pytest.raises(ParamError, match="role_name"):
        validate({"role_name": 7})
    with pytest.raises(ParamError, match="must be a string"):
        validate({"role_name": 7})


@pytest.mark.parametrize("node", NODES)
@pytest.mark.parametrize("role", ["", "ego/vehicle", "1ego", "ego vehicle"])
def test_every_node_checks_the_role_name_alike(node: str, role: str):
    with pytest.raises(ParamError, match="ROS name") as info:
        NODES[node][2]({"role_name": role})
    assert info.value.name == "role_name"


@pytest.mark.parametrize("node", NODES)
def test_an_unknown_parameter_is_an_error_naming_it(node: str):
    with pytest.raises(ParamError, match="unknown parameter") as info:
        NODES[node][2]({"no_such_parameter": 1})
    assert info.value.name == "no_such_parameter"


def test_the_device_parameter_is_checked_alike_by_trainer_and_driver():
    for node in ("td3_trainer", "td3_driver"):
        validate = NODES[node][2]
        for good in ("auto", "cpu", "cuda", "cuda:1"):
            validate({"device": good})
        with pytest.raises(ParamError, match="'auto', 'cpu', 'cuda'") as info:
            validate({"device": "tpu"})
        assert info.value.name == "device"


def test_errors_of_config_classes_name_the_parameter():
    # the trainer's groups and the simulator's SimConfig go through the same error type
    with pytest.raises(ParamError) as info:
        trainer_params.validate({"reward.collision_penalty": 5.0})
    assert info.value.name == "reward.collision_penalty" and "penalty" in info.value.problem
    with pytest.raises(ParamError) as info:
        trainer_params.validate({"max_episode_steps": 0})
    assert info.value.name == "max_episode_steps"
    with pytest.raises(ParamError) as info:
        sim_node.validate({"fov": 500.0})
    assert info.value.name == "fov"


def test_the_table_itself():
    table = ParamTable([Param("rate", 2.0, "Hz", positive), Param("n", 1, "count", at_least(1))])
    assert dict(table.validate({"rate": 3})) == {"rate": 3.0, "n": 1}
    with pytest.raises(ParamError, match=r"parameter 'rate': must be > 0, got -1.0"):
        table.validate({"rate": -1.0})
    with pytest.raises(ParamError, match=r"parameter 'n': must be an integer, got 1.5"):
        table.validate({"n": 1.5})
    with pytest.raises(ValueError, match="twice"):
        ParamTable([Param("a", 1, ""), Param("a", 2, "")])
    assert in_range(0, 1, low_open=True)(0) == "must be in (0, 1]"
    assert in_range(0, 1, high_open=True)(0) is None


def test_build_names_the_field_of_a_config_class():
    @dataclasses.dataclass(frozen=True)
    class Speed:
        limit: float = 1.0

        def __post_init__(self) -> None:
            if self.limit <= 0:
                raise ValueError(f"limit must be > 0, got {self.limit}")

    assert build(Speed, {"limit": 2.0}, "speed.").limit == 2.0
    with pytest.raises(ParamError) as info:
        build(Speed, {"limit": -1.0}, "speed.")
    assert info.value.name == "speed.limit" and info.value.problem == "must be > 0, got -1.0"
    with pytest.raises(ParamError) as info:
        build(Speed, {"limit": -1.0}, "", limit="top_speed")
    assert info.value.name == "top_speed"


@pytest.mark.parametrize("node", ["td3_trainer", "carla_simulator"])
def test_the_unseen_roads_setting_is_valid_and_declared_for_each_of_its_nodes(node: str):
    yaml_name, table, validate = NODES[node]
    setting = file_parameters(CONFIG / "trainer_unseen_roads.yaml", node)
    assert setting and set(setting) <= set(table.names)
    for name, value in setting.items():
        assert type(value) is type(table[name].default), name
    validate(file_parameters(CONFIG / yaml_name, node) | setting)
