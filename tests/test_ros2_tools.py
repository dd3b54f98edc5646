"""The README's ROS commands for real: `colcon build` of a fresh copy of this repository in a
temporary workspace, then `ros2 launch`, `ros2 run` and `ros2 param get` from its install tree.

Every tool runs as its own process (own process group, SIGINT at its default disposition as a
terminal gives it) in this run's ROS_DOMAIN_ID, and is always stopped. Needs ros2 and colcon in
the venv: `make test` installs them from ../shared/ros2-tools when that folder exists.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .processes import command_process, stop_process
from .test_trainer_e2e import FAST_TRAINER, SIMULATOR

VENV_BIN = Path(sys.executable).parent
VENV = VENV_BIN.parent
REPO = Path(__file__).resolve().parents[1]
ROS2 = VENV_BIN / "ros2"
COLCON = VENV_BIN / "colcon"
HANG_GUARD_S = 240.0  # only a guard against a hang, never a performance expectation
RATE_HZ = 15.0
COMMAND_TOPIC = "/carla/ego_vehicle/vehicle_control_cmd"


def _missing_tools() -> str | None:
    missing = [str(tool) for tool in (ROS2, COLCON) if not tool.is_file()]
    missing += [name for name in ("launch", "launch_ros") if importlib.util.find_spec(name) is None]
    if missing:
        return (
            f"ROS 2 command-line tools not installed ({', '.join(missing)} missing): "
            f"run ../shared/ros2-tools/install.sh {VENV} (make test does when ../shared/ros2-tools exists)"
        )
    if shutil.which("cmake") is None:
        return "cmake not found on PATH: colcon builds td3_drive (ament_cmake) with it"
    return None


pytestmark = [
    pytest.mark.ros,
    pytest.mark.slow,
    pytest.mark.skipif(_missing_tools() is not None, reason=str(_missing_tools())),
]

# Small and fast (the end-to-end trainer test's settings), 84x84 camera.
FAST_PARAMS = {
    "td3_trainer": {**FAST_TRAINER, "tensorboard": False},
    "carla_simulator": SIMULATOR,
    "td3_driver": {"warmup_iterations": 1, "stale_timeout": 1.0},
}


def _venv_env() -> dict[str, str]:
    """What any pip-installed ROS 2 in a venv needs, and nothing more: the venv activated
    (VIRTUAL_ENV, PATH) and its prefix in AMENT_PREFIX_PATH (colcon passes it on to CMake)."""
    # Not this process's: its ROS wheels' bootstrap (library path set, then marked complete) would
    # make the children skip theirs.
    inherited = ("AMENT_", "COLCON_", "CMAKE_PREFIX", "_ROS_WHEELS_", "PYTHONPATH", "LD_LIBRARY_PATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
    env.update(
        VIRTUAL_ENV=str(VENV),
        PATH=f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        AMENT_PREFIX_PATH=str(VENV),
        PYTHONUNBUFFERED="1",
    )
    return env


def _sourced_env(workspace: Path) -> dict[str, str]:
    """The environment after `source install/setup.bash`, as a user's shell has it."""
    out = subprocess.run(
        ["bash", "-c", "source install/setup.bash && env -0"],
        cwd=workspace,
        env=_venv_env(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def _copy_clone(target: Path) -> None:
    """The files a fresh clone has: tracked and not ignored (the working tree's, committed or not)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


class Workspace:
    def __init__(self, root: Path, build: subprocess.CompletedProcess):
        self.root = root
        self.install = root / "install" / "td3_drive"
        self.build = build
        self.env = _sourced_env(root) if build.returncode == 0 else {}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("ws")
    _copy_clone(root / "src" / "td3-drive")
    build = subprocess.run(
        [str(COLCON), "build"], cwd=root, env=_venv_env(), capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    return Workspace(root, build)


def _built(workspace: Workspace) -> Workspace:
    if workspace.build.returncode != 0:
        pytest.fail(f"colcon build failed:\n{workspace.build.stdout}\n{workspace.build.stderr}")
    return workspace


def _params_file(path: Path, models_dir: Path) -> Path:
    params = {node: {"ros__parameters": dict(values)} for node, values in FAST_PARAMS.items()}
    params["td3_trainer"]["ros__parameters"].update(models_dir=str(models_dir), log_dir=str(models_dir / "runs"))
    params["td3_driver"]["ros__parameters"]["models_dir"] = str(models_dir)
    path.write_text(yaml.safe_dump(params))
    return path


@contextlib.contextmanager
def _launch(ws: Workspace, tmp: Path, package: str, launch_file: str, *arguments: str):
    """`ros2 launch <package> <launch_file> <arguments> config_file:=<the fast settings>`."""
    params = _params_file(tmp / "fast.yaml", tmp / "models")
    log = tmp / f"{launch_file}.log"
    argv = [str(ROS2), "launch", package, launch_file, *arguments, f"config_file:={params}"]
    with command_process(argv, log, ws.env) as proc:
        yield proc, log


def _wait(proc: subprocess.Popen, log: Path, timeout: float = HANG_GUARD_S) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        pytest.fail(f"still running after {timeout:.0f} s (guard):\n{log.read_text()[-4000:]}")


def _ctrl_c(proc: subprocess.Popen, log: Path) -> int:
    """What Ctrl-C in a terminal does: SIGINT to the whole foreground process group."""
    os.killpg(proc.pid, signal.SIGINT)
    return _wait(proc, log, 60.0)


def _param(env: dict[str, str], node: str, name: str, proc: subprocess.Popen, log: Path) -> str:
    """`ros2 param get` on a running node (asked again until it answers: the node may be starting)."""
    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        result = subprocess.run(
            [str(ROS2), "param", "get", "--no-daemon", "--hide-type", node, name],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode == 0:
            return result.stdout.strip()
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"ros2 param get {node} {name}: {result.stdout}{result.stderr}\n{log.read_text()[-4000:]}")
        time.sleep(1.0)


# ------------------------------------------------------------------------------ colcon build


def test_colcon_build_of_a_fresh_clone_installs_the_three_ros_packages(workspace: Workspace):
    ws = _built(workspace)
    # The one warning every pip-installed ROS gives: the venv prefix has no colcon setup files.
    venv_prefix_notice = f"The path '{VENV}' in the environment variable AMENT_PREFIX_PATH"
    warnings = [line for line in ws.build.stderr.splitlines() if "WARN" in line and venv_prefix_notice not in line]
    assert not warnings, ws.build.stderr
    index = ws.install / "share" / "ament_index" / "resource_index" / "packages"
    executables = {
        "td3_trainer": ["trainer_node"],
        "td3_driver": ["driver_node", "export_policy"],
        "td3_sim": ["simulator_node", "preprocess_node"],
    }
    launch_files = {"td3_trainer": ["train.launch.py"], "td3_driver": ["drive.launch.py"], "td3_sim": ["sim.launch.py"]}
    for package, names in executables.items():
        assert (index / package).is_file(), f"no ament index entry for {package}"
        share = ws.install / "share" / package
        # Its own manifest, not a copy of td3_drive's.
        assert f"<name>{package}</name>" in (share / "package.xml").read_text()
        for config in ("trainer.yaml", "driver.yaml", "simulator.yaml"):
            assert (share / "config" / config).is_file(), f"{package}: config/{config} not installed"
        for launch_file in launch_files[package]:
            assert (share / "launch" / launch_file).is_file(), f"{package}: launch/{launch_file} not installed"
        for name in names:
            exe = ws.install / "lib" / package / name
            assert os.access(exe, os.X_OK), f"{exe} not executable"
            # The interpreter that built it, not whatever python3 comes first on PATH.
            assert exe.read_text().splitlines()[0] == f"#!{VENV_BIN / 'python3'}"
    # The generated interfaces, importable from the install tree alone (not the venv's copy).
    check = (
        "import td3_drive, pathlib; from td3_drive.srv import ResetEpisode;"
        " from td3_drive.msg import Episode, Evaluation, TrainStats;"
        " print(pathlib.Path(td3_drive.__file__).resolve());"
        " print(ResetEpisode.Request(seed=7).seed, Episode(end_reason=Episode.END_GOAL).end_reason,"
        " TrainStats(loop_s=1.5).loop_s, Evaluation(best_score=2.0).best_score)"
    )
    out = subprocess.run([sys.executable, "-c", check], env=ws.env, capture_output=True, text=True, check=True).stdout
    location, values = out.strip().splitlines()
    assert Path(location).is_relative_to(ws.install.resolve()), location
    assert values == "7 goal 1.5 2.0"
    for name in ("Episode", "TrainStats", "Evaluation"):  # the definitions, for ros2 topic echo and bag readers
        assert (ws.install / "share" / "td3_drive" / "msg" / f"{name}.msg").is_file()


# ------------------------------------------------------------------------------ ros2 launch: training


@pytest.fixture(scope="module")
def trained(workspace: Workspace, tmp_path_factory) -> tuple[int, Path, Path]:
    """`ros2 launch td3_trainer train.launch.py total_steps:=150`, to its end: status, checkpoint, log."""
    tmp = tmp_path_factory.mktemp("train")
    with _launch(_built(workspace), tmp, "td3_trainer", "train.launch.py", "total_steps:=150", "run_name:=ci") as (
        proc,
        log,
    ):
        status = _wait(proc, log)
    return status, tmp / "models" / "ci" / "td3_scenario_0_step_150.pth", log


def test_train_launch_trains_and_exits_by_itself_at_the_budget(trained: tuple[int, Path, Path]):
    status, checkpoint, log = trained
    text = log.read_text()
    assert status == 0, text[-4000:]
    assert checkpoint.is_file(), text[-4000:]
    assert "step budget of 150 reached" in text
    # The simulator was stopped by the launch, not left running.
    assert "sending signal 'SIGINT' to process[simulator_node" in text, text[-4000:]


def test_train_launch_ends_with_status_1_when_the_trainer_fails(workspace: Workspace, tmp_path: Path):
    with _launch(_built(workspace), tmp_path, "td3_trainer", "train.launch.py", "total_steps:=-1") as (proc, log):
        status = _wait(proc, log)
    text = log.read_text()
    assert status == 1, text[-4000:]
    assert "invalid parameter 'total_steps'" in text and "td3_trainer exited with code" in text, text[-4000:]
    assert "sending signal 'SIGINT' to process[simulator_node" in text, text[-4000:]


def test_train_launch_passes_its_arguments_to_the_node_parameters(
    workspace: Workspace, trained: tuple[int, Path, Path], tmp_path: Path
):
    ws = _built(workspace)
    _, checkpoint, _ = trained
    arguments = [
        "total_steps:=100000",
        "run_name:=resumed",
        f"resume:={checkpoint}",
        "device:=cpu",
        "simulator:=embedded",
        "rviz:=false",
    ]
    with _launch(ws, tmp_path, "td3_trainer", "train.launch.py", *arguments) as (proc, log):
        expected = {
            ("/td3_trainer", "total_steps"): "100000",
            ("/td3_trainer", "run_name"): "resumed",
            ("/td3_trainer", "resume"): str(checkpoint),
            ("/td3_trainer", "device"): "cpu",
            ("/td3_trainer", "role_name"): "ego_vehicle",
            ("/td3_trainer", "batch_size"): "32",  # from config_file
            ("/carla_simulator", "image_width"): "84",  # from config_file
            ("/carla_simulator", "synchronous_mode"): "True",  # simulator:=embedded, for training
        }
        seen = {key: _param(ws.env, *key, proc, log) for key in expected}
        assert seen == expected
        status = _ctrl_c(proc, log)
    assert status == 0, log.read_text()[-4000:]


def test_train_launch_with_carla_passes_the_tick_and_starts_no_embedded_simulator(workspace: Workspace, tmp_path: Path):
    """simulator:=carla where no bridge is installed: the trainer alone, told the bridge's tick."""
    ws = _built(workspace)
    arguments = ["simulator:=carla", "fixed_delta_seconds:=0.04", "role_name:=hero", "total_steps:=100"]
    with _launch(ws, tmp_path, "td3_trainer", "train.launch.py", *arguments) as (proc, log):
        assert _param(ws.env, "/td3_trainer", "fixed_delta_seconds", proc, log) == "0.04"
        assert _param(ws.env, "/td3_trainer", "role_name", proc, log) == "hero"
        assert "simulator_node" not in log.read_text()
        assert _ctrl_c(proc, log) == 0, log.read_text()[-4000:]


# ------------------------------------------------------------------------------ ros2 launch: driving


class CommandProbe:
    """An independent subscriber to the driver's commands (its own rclpy context)."""

    def __init__(self) -> None:
        import rclpy
        from carla_msgs.msg import CarlaEgoVehicleControl
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("command_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.commands: list[tuple[float, CarlaEgoVehicleControl]] = []
        self.node.create_subscription(
            CarlaEgoVehicleControl, COMMAND_TOPIC, lambda msg: self.commands.append((time.monotonic(), msg)), 10
        )

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def spin_until(self, condition, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not condition() and time.monotonic() < end:
            self.spin_for(0.1)
        return condition()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture
def commands() -> Iterator[CommandProbe]:
    probe = CommandProbe()
    yield probe
    probe.close()


def _driving(probe: CommandProbe) -> bool:
    """Commands that come from the policy: not the full brake of a driver still waiting for inputs."""
    return any(msg.brake < 1.0 for _, msg in probe.commands[-5:])


def test_drive_launch_commands_at_its_rate_answers_param_get_and_brakes_on_ctrl_c(
    workspace: Workspace, trained: tuple[int, Path, Path], tmp_path: Path, commands: CommandProbe
):
    ws = _built(workspace)
    _, checkpoint, _ = trained
    arguments = [
        f"checkpoint:={checkpoint}",
        f"rate_hz:={RATE_HZ}",
        "device:=cpu",
        "watch:=true",
        "role_name:=ego_vehicle",
        "rviz:=true",
    ]
    with _launch(ws, tmp_path, "td3_driver", "drive.launch.py", *arguments) as (proc, log):
        assert commands.spin_until(lambda: _driving(commands) or proc.poll() is not None, HANG_GUARD_S), (
            log.read_text()[-4000:]
        )
        expected = {
            ("/td3_driver", "rate_hz"): str(RATE_HZ),
            ("/td3_driver", "checkpoint"): str(checkpoint),
            ("/td3_driver", "device"): "cpu",
            ("/td3_driver", "watch"): "True",
            ("/td3_driver", "role_name"): "ego_vehicle",
            ("/td3_driver", "stale_timeout"): "1.0",  # from config_file
            ("/carla_simulator", "synchronous_mode"): "False",  # simulator:=embedded, free-running
        }
        seen = {key: _param(ws.env, *key, proc, log) for key in expected}
        assert seen == expected
        window_start = time.monotonic()
        commands.spin_for(3.0)
        window = time.monotonic() - window_start
        received = sum(1 for stamp, _ in commands.commands if stamp >= window_start)
        rate = received / window
        print(f"commands: {rate:.1f} Hz measured over {window:.1f} s, rate_hz {RATE_HZ}")
        # Loose: a loaded CI machine may delay deliveries, but the rate must be the driver's, not another.
        assert 0.5 * RATE_HZ <= rate <= 1.5 * RATE_HZ, f"{rate:.1f} Hz for rate_hz {RATE_HZ}"
        status = _ctrl_c(proc, log)
        commands.spin_for(1.0)
    assert status == 0, log.read_text()[-4000:]
    assert "rviz:=true but rviz2 is not installed here" in log.read_text()  # no rviz2 here: a notice, not a stop
    last = commands.commands[-1][1]
    assert last.brake == 1.0 and last.throttle == 0.0, f"last command is not a full brake: {last}"


# ------------------------------------------------------------------------------ ros2 run


def test_ros2_run_works_with_a_path_without_the_venv(
    workspace: Workspace, trained: tuple[int, Path, Path], tmp_path: Path, commands: CommandProbe
):
    ws = _built(workspace)
    _, checkpoint, _ = trained
    env = dict(ws.env)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(VENV)))
    env.pop("VIRTUAL_ENV", None)
    assert shutil.which("python3", path=env["PATH"]) != str(VENV_BIN / "python3")
    sim_args = ["run", "td3_sim", "simulator_node", "--ros-args", "-p", "image_width:=84", "-p", "image_height:=84"]
    driver_args = [
        "run",
        "td3_driver",
        "driver_node",
        "--ros-args",
        "-p",
        f"checkpoint:={checkpoint}",
        "-p",
        "device:=cpu",
        "-p",
        "stale_timeout:=1.0",
    ]
    sim_log, driver_log = tmp_path / "sim.log", tmp_path / "driver.log"
    with (
        command_process([str(ROS2), *sim_args], sim_log, env) as sim,
        command_process([str(ROS2), *driver_args], driver_log, env) as driver,
    ):
        ok = commands.spin_until(
            lambda: _driving(commands) or sim.poll() is not None or driver.poll() is not None, HANG_GUARD_S
        )
        assert ok and sim.poll() is None and driver.poll() is None, (
            f"simulator:\n{sim_log.read_text()[-3000:]}\ndriver:\n{driver_log.read_text()[-3000:]}"
        )
        assert _ctrl_c(driver, driver_log) == 0, driver_log.read_text()[-3000:]
        assert _ctrl_c(sim, sim_log) == 0, sim_log.read_text()[-3000:]
