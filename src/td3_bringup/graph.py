"""The node graph of td3-drive, defined once.

`launch/train.launch.py` and `launch/drive.launch.py` turn these NodeSpecs into launch_ros
Nodes; `td3_bringup.runner` (no launch_ros needed) starts the same specs as processes with the
same parameter files, parameters and remappings. Tests check this definition directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

SIMULATORS = ("embedded", "carla")
ParamValue = bool | int | float | str


@dataclass(frozen=True)
class NodeSpec:
    name: str  # node name, also the key in its parameter file
    package: str  # ROS package that installs the executable (lib/<package>/<executable>)
    executable: str
    module: str  # Python module with main(), for `python -m` in the pip-only runner
    params_files: tuple[Path, ...] = ()
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()

    def ros_args(self) -> list[str]:
        """The `--ros-args ...` a process of this node gets (same as launch_ros passes)."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        for params_file in self.params_files:
            args += ["--params-file", str(params_file)]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={format_param(value)}"]
        for source, target in self.remappings:
            args += ["-r", f"{source}:={target}"]
        return args


def format_param(value: ParamValue | list) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_param(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value == "":
        return "''"
    return str(value)


def file_parameters(params_file: Path, node_name: str) -> dict[str, ParamValue]:
    """A node's parameters in a ROS params file, nested groups as dotted names (as ROS reads them);
    KeyError when the file has no section for the node."""
    import yaml

    def flatten(tree: Mapping, prefix: str = "") -> dict[str, ParamValue]:
        flat: dict[str, ParamValue] = {}
        for key, value in tree.items():
            if isinstance(value, Mapping):
                flat.update(flatten(value, f"{prefix}{key}."))
            else:
                flat[f"{prefix}{key}"] = value
        return flat

    return flatten(yaml.safe_load(Path(params_file).read_text())[node_name]["ros__parameters"])


def repo_config_dir() -> Path:
    """config/ of a source checkout (pip -e install); launch files pass the share dir instead."""
    return Path(__file__).resolve().parents[2] / "config"


def simulator_node(
    config_dir: Path, sync: bool, overrides: Mapping[str, ParamValue] | None = None, extra_files: tuple[Path, ...] = ()
) -> NodeSpec:
    return NodeSpec(
        name="carla_simulator",
        package="td3_sim",
        executable="simulator_node",
        module="td3_sim.node",
        params_files=(config_dir / "simulator.yaml", *extra_files),
        parameters={"synchronous_mode": sync, **(overrides or {})},
    )


# The simulator's global topics (the bridge's, one per server), moved under /<role>/ when each
# vehicle has a simulator process of its own: N servers side by side in one ROS domain.
SIMULATOR_GLOBAL_TOPICS = ("/clock", "/carla/status", "/carla/control", "/initialpose")


def simulator_roles(
    config_dir: Path, overrides: Mapping[str, ParamValue] | None = None, extra_files: tuple[Path, ...] = ()
) -> list[str]:
    """The simulator's role_name as a list: from the overrides, else the last params file that sets it."""
    from td3_sim.node import role_names

    value = (overrides or {}).get("role_name")
    if value is None:
        value = _merged_file_parameters((config_dir / "simulator.yaml", *extra_files), "carla_simulator")["role_name"]
    return list(role_names(value))


def _merged_file_parameters(files: tuple[Path, ...], node_name: str) -> dict[str, ParamValue]:
    merged: dict[str, ParamValue] = {}
    for params_file in files:
        try:
            merged.update(file_parameters(params_file, node_name))
        except KeyError:
            continue  # no section for this node
    return merged


def simulator_processes(
    config_dir: Path, sync: bool, overrides: Mapping[str, ParamValue] | None = None, extra_files: tuple[Path, ...] = ()
) -> list[NodeSpec]:
    """One simulator process per role name (as N CARLA servers, each with its own bridge): node
    carla_simulator_<role>, the simulator's params files' values passed as parameters (a params
    file section names one node), its global topics under /<role>/. One role: simulator_node."""
    roles = simulator_roles(config_dir, overrides, extra_files)
    if len(roles) == 1:
        return [simulator_node(config_dir, sync, overrides, extra_files)]
    files = (config_dir / "simulator.yaml", *extra_files)
    shared = {**_merged_file_parameters(files, "carla_simulator"), "synchronous_mode": sync, **(overrides or {})}
    return [
        NodeSpec(
            name=f"carla_simulator_{role}",
            package="td3_sim",
            executable="simulator_node",
            module="td3_sim.node",
            parameters={**shared, "role_name": role},
            remappings=tuple((topic, f"/{role}{topic}") for topic in SIMULATOR_GLOBAL_TOPICS),
        )
        for role in roles
    ]


def simulation_graph(
    config_dir: Path,
    sync: bool = True,
    simulator_overrides: Mapping[str, ParamValue] | None = None,
    extra_files: tuple[Path, ...] = (),
    processes: bool = False,
    preprocess: bool = False,
) -> list[NodeSpec]:
    """The simulator alone, for learners and drivers started elsewhere: its role_name list as N
    vehicles in one world, or (processes) one process per vehicle; `preprocess`: + a
    preprocessing node per vehicle (td3_preprocess_<role> with several)."""
    if processes:
        nodes = simulator_processes(config_dir, sync, simulator_overrides, extra_files)
    else:
        nodes = [simulator_node(config_dir, sync, simulator_overrides, extra_files)]
    if preprocess:
        roles = simulator_roles(config_dir, simulator_overrides, extra_files)
        for role in roles:
            spec = preprocess_node(config_dir, {"role_name": role}, extra_files)
            if len(roles) > 1:  # a params file section names one node: its values as parameters
                values = _merged_file_parameters(spec.params_files, "td3_preprocess") | {"role_name": role}
                spec = replace(spec, name=f"td3_preprocess_{role}", params_files=(), parameters=values)
            nodes.append(spec)
    return nodes


def _configured_node(
    name: str, package: str, executable: str, module: str, params_file: Path, overrides, extra_files: tuple[Path, ...]
) -> NodeSpec:
    return NodeSpec(
        name=name,
        package=package,
        executable=executable,
        module=module,
        params_files=(params_file, *extra_files),
        parameters=dict(overrides or {}),
    )


def trainer_node(
    config_dir: Path, overrides: Mapping[str, ParamValue] | None = None, extra_files: tuple[Path, ...] = ()
) -> NodeSpec:
    return _configured_node(
        "td3_trainer",
        "td3_trainer",
        "trainer_node",
        "td3_trainer.node",
        config_dir / "trainer.yaml",
        overrides,
        extra_files,
    )


def driver_node(
    config_dir: Path, overrides: Mapping[str, ParamValue] | None = None, extra_files: tuple[Path, ...] = ()
) -> NodeSpec:
    return _configured_node(
        "td3_driver", "td3_driver", "driver_node", "td3_driver.node", config_dir / "driver.yaml", overrides, extra_files
    )


def preprocess_node(
    config_dir: Path, overrides: Mapping[str, ParamValue] | None = None, extra_files: tuple[Path, ...] = ()
) -> NodeSpec:
    """The preprocessing node (td3_preprocess), installed with the simulator's ROS package."""
    params_file = config_dir / "preprocess.yaml"
    return _configured_node(
        "td3_preprocess", "td3_sim", "preprocess_node", "td3_preprocess.node", params_file, overrides, extra_files
    )


def _with_preprocessing(
    nodes: list[NodeSpec], consumer: NodeSpec, config_dir: Path, extra_files: tuple[Path, ...]
) -> list[NodeSpec]:
    """The graph with the preprocessing node beside the simulator and `consumer` reading its frames
    (image_input:=preprocessed); role_name and image_size follow the consumer's overrides."""
    shared = {k: consumer.parameters[k] for k in ("role_name",) if k in consumer.parameters}
    if "preprocessing.image_size" in consumer.parameters:
        shared["image_size"] = consumer.parameters["preprocessing.image_size"]
    reading = NodeSpec(**{**consumer.__dict__, "parameters": {**consumer.parameters, "image_input": "preprocessed"}})
    index = nodes.index(consumer)
    return [*nodes[:index], preprocess_node(config_dir, shared, extra_files), reading, *nodes[index + 1 :]]


def _check_simulator(simulator: str) -> None:
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, got '{simulator}'")


def training_graph(
    config_dir: Path,
    simulator: str = "embedded",
    trainer_overrides: Mapping[str, ParamValue] | None = None,
    simulator_overrides: Mapping[str, ParamValue] | None = None,
    extra_files: tuple[Path, ...] = (),
    preprocess: bool = False,
) -> list[NodeSpec]:
    """Trainer + (embedded) simulator in synchronous mode; with CARLA the bridge is the simulator.
    `preprocess`: + the preprocessing node, the trainer reading its frames."""
    _check_simulator(simulator)
    trainer = trainer_node(config_dir, trainer_overrides, extra_files)
    nodes = [trainer]
    if simulator == "embedded":
        nodes.insert(0, simulator_node(config_dir, sync=True, overrides=simulator_overrides, extra_files=extra_files))
    return _with_preprocessing(nodes, trainer, config_dir, extra_files) if preprocess else nodes


def driving_graph(
    config_dir: Path,
    simulator: str = "embedded",
    driver_overrides: Mapping[str, ParamValue] | None = None,
    simulator_overrides: Mapping[str, ParamValue] | None = None,
    extra_files: tuple[Path, ...] = (),
    preprocess: bool = False,
) -> list[NodeSpec]:
    """Driver + (embedded) simulator free-running at the camera rate.
    `preprocess`: + the preprocessing node, the driver reading its frames."""
    _check_simulator(simulator)
    driver = driver_node(config_dir, driver_overrides, extra_files)
    nodes = [driver]
    if simulator == "embedded":
        nodes.insert(0, simulator_node(config_dir, sync=False, overrides=simulator_overrides, extra_files=extra_files))
    return _with_preprocessing(nodes, driver, config_dir, extra_files) if preprocess else nodes
