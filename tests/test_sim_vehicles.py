"""Several ego vehicles in one embedded world: one tick for all, one command of each per tick.

The simulator runs as its own process with role_name a list, like carla-ros-bridge with several
ego vehicles in synchronous mode with synchronous_mode_wait_for_vehicle_control_command: it
ticks once every vehicle has sent a command (a second command of one vehicle only replaces its
control), and after command_wait_timeout_s with the last controls. Every vehicle has its own
topics, spawn point and teleport; the stamps of a tick are the same for all.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest
from carla_msgs.msg import CarlaEgoVehicleControl
from geometry_msgs.msg import Pose
from nav_msgs.msg import Odometry
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from td3_bringup.graph import repo_config_dir, simulation_graph, simulator_node
from td3_bringup.observer import BackgroundNode
from td3_bringup.runner import node_command
from td3_sim.node import ParamError, role_names

from .processes import command_process, node_process

pytestmark = pytest.mark.ros
CONFIG = repo_config_dir()
HANG_GUARD_S = 120.0  # only a guard against a hang
ROLES = ("car_a", "car_b")
SMALL = {"image_width": 64, "image_height": 48}


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class Vehicles(BackgroundNode):
    """Per role: the image stamps and odometry received; a command and a teleport publisher."""

    def __init__(self) -> None:
        super().__init__("vehicles_probe")
        self.lock = threading.Lock()
        self.stamps: dict[str, list[int]] = {role: [] for role in ROLES}
        self.odometry: dict[str, list[Odometry]] = {role: [] for role in ROLES}
        self.commands = {}
        self.teleports = {}
        for role in ROLES:
            prefix = f"/carla/{role}"
            self.node.create_subscription(Image, f"{prefix}/rgb_front/image", lambda m, r=role: self._image(r, m), 100)
            self.node.create_subscription(Odometry, f"{prefix}/odometry", lambda m, r=role: self._odom(r, m), 100)
            self.commands[role] = self.node.create_publisher(
                CarlaEgoVehicleControl, f"{prefix}/vehicle_control_cmd", 10
            )
            self.teleports[role] = self.node.create_publisher(Pose, f"{prefix}/control/set_transform", 10)

    def _image(self, role: str, msg: Image) -> None:
        with self.lock:
            self.stamps[role].append(_ns(msg.header.stamp))

    def _odom(self, role: str, msg: Odometry) -> None:
        with self.lock:
            self.odometry[role].append(msg)

    def counts(self) -> tuple[int, ...]:
        with self.lock:
            return tuple(len(self.stamps[r]) for r in ROLES)

    def command(self, role: str, throttle: float = 0.5) -> None:
        self.commands[role].publish(CarlaEgoVehicleControl(throttle=throttle))

    def first_frames(self, proc, log: Path) -> None:
        """A frame of every vehicle: the start-up one may have gone out before this node was
        discovered (volatile), so a command of each makes a tick when none came."""
        deadline = time.monotonic() + HANG_GUARD_S
        self.wait(lambda: all(p.get_subscription_count() for p in self.commands.values()), proc, log, "matching")
        while min(self.counts()) < 1:
            assert time.monotonic() < deadline, f"no frame of every vehicle\n{log.read_text()[-3000:]}"
            for role in ROLES:
                self.command(role, throttle=0.0)
            time.sleep(1.0)
        time.sleep(1.0)  # the ticks of the last commands are in

    def wait(self, condition, proc, log: Path, what: str) -> None:
        deadline = time.monotonic() + HANG_GUARD_S
        while not condition():
            if proc.poll() is not None:
                raise AssertionError(f"{what}: simulator exited {proc.returncode}\n{log.read_text()[-3000:]}")
            assert time.monotonic() < deadline, f"{what}: not after {HANG_GUARD_S} s\n{log.read_text()[-3000:]}"
            time.sleep(0.02)


def _start(tmp_path: Path, overrides: dict):
    spec = simulator_node(CONFIG, sync=True, overrides={**SMALL, "role_name": ",".join(ROLES), **overrides})
    log = tmp_path / "simulator.log"
    return node_process(node_command(spec)[1:], log), log


def test_one_tick_for_all_vehicles_once_each_has_sent_a_command(tmp_path: Path):
    started, log = _start(tmp_path, {"command_wait_timeout_s": 0.0})  # no timeout ticks: every tick is ours
    with Vehicles() as probe, started as proc:
        probe.first_frames(proc, log)
        start = probe.counts()
        first = {role: probe.stamps[role][-1] for role in ROLES}
        assert first["car_a"] == first["car_b"], "one clock for all vehicles"

        probe.command("car_a")
        probe.command("car_a", throttle=1.0)  # a second command of car_a: replaces its control, no tick
        time.sleep(1.5)
        assert probe.counts() == start, "ticked before every vehicle had sent a command"
        probe.command("car_b")
        probe.wait(lambda: probe.counts() == (start[0] + 1, start[1] + 1), proc, log, "one tick for both")
        time.sleep(1.0)
        assert probe.counts() == (start[0] + 1, start[1] + 1), "more than one tick for one command of each"
        second = {role: probe.stamps[role][-1] for role in ROLES}
        assert second["car_a"] == second["car_b"] == first["car_a"] + 50_000_000

        for _ in range(5):  # each vehicle drives on its own control, in lockstep
            before = probe.counts()
            probe.command("car_b", throttle=0.0)
            probe.command("car_a", throttle=1.0)
            probe.wait(lambda b=before: probe.counts() == (b[0] + 1, b[1] + 1), proc, log, "the next tick")

        with probe.lock:
            a, b = probe.odometry["car_a"][-1], probe.odometry["car_b"][-1]
        # Own spawn points (vehicle_spacing_m apart along the track), own speeds.
        apart = (
            (a.pose.pose.position.x - b.pose.pose.position.x) ** 2
            + (a.pose.pose.position.y - b.pose.pose.position.y) ** 2
        ) ** 0.5
        assert apart > 10.0, apart
        assert a.twist.twist.linear.x > b.twist.twist.linear.x + 0.5
        assert a.child_frame_id == "car_a" and b.child_frame_id == "car_b"

        # A teleport of car_b moves car_b only.
        pose = Pose()
        pose.position.x, pose.position.y = b.pose.pose.position.x + 3.0, b.pose.pose.position.y
        pose.orientation = b.pose.pose.orientation
        probe.teleports["car_b"].publish(pose)
        time.sleep(0.5)
        before = probe.counts()
        probe.command("car_a")
        probe.command("car_b")
        probe.wait(lambda: probe.counts() == (before[0] + 1, before[1] + 1), proc, log, "the teleport tick")
        time.sleep(0.3)
        with probe.lock:
            a2, b2 = probe.odometry["car_a"][-1], probe.odometry["car_b"][-1]
        assert abs(b2.pose.pose.position.x - pose.position.x) < 0.5, "car_b was not teleported"
        assert abs(a2.pose.pose.position.x - a.pose.pose.position.x) < 3.0, "car_a moved with car_b's teleport"


def test_a_silent_vehicle_holds_the_world_to_the_command_timeout_and_is_named(tmp_path: Path):
    started, log = _start(tmp_path, {"command_wait_timeout_s": 0.3})
    with Vehicles() as probe, started as proc:
        probe.wait(lambda: all(p.get_subscription_count() for p in probe.commands.values()), proc, log, "matching")
        probe.wait(lambda: min(probe.counts()) >= 1, proc, log, "the start-up frame")
        start = probe.counts()
        for _ in range(3):  # only car_a answers: the world still ticks, on the timeout
            probe.command("car_a")
            time.sleep(0.2)
        probe.wait(lambda: min(probe.counts()) >= start[0] + 2, proc, log, "timeout ticks")
    text = log.read_text()
    # Before car_a's first command both may be named (a loaded machine); once it answers, car_b alone.
    named = [line.split("(waiting on ", 1)[1] for line in text.splitlines() if "(waiting on " in line]
    assert "/carla/car_b/vehicle_control_cmd)" in named, text[-3000:]


def test_role_names_and_their_refusals():
    assert role_names("ego_vehicle") == ("ego_vehicle",)
    assert role_names("hero1, hero2") == ("hero1", "hero2")
    assert role_names(["hero1", "hero2", "hero3"]) == ("hero1", "hero2", "hero3")
    for bad, message in (("", "ROS name"), ("a,a", "twice"), (["a/b"], "ROS name"), ([], "a list")):
        with pytest.raises(ParamError, match=message):
            role_names(bad)


def test_several_vehicles_refuse_the_single_vehicle_reset_service(tmp_path: Path):
    started, log = _start(tmp_path, {"reset_service": True})
    with started as proc:
        code = proc.wait(timeout=HANG_GUARD_S)
    assert code == 2
    assert "reset_service" in log.read_text()


def test_graph_of_one_simulator_process_per_vehicle(tmp_path: Path):
    extra = tmp_path / "two.yaml"
    extra.write_text("carla_simulator:\n  ros__parameters:\n    role_name: [car_a, car_b]\n    image_width: 64\n")
    specs = simulation_graph(CONFIG, True, {"seed": 3}, (extra,), processes=True, preprocess=True)
    assert [s.name for s in specs] == [
        "carla_simulator_car_a",
        "carla_simulator_car_b",
        "td3_preprocess_car_a",
        "td3_preprocess_car_b",
    ]
    car_a = specs[0]
    assert car_a.params_files == ()
    assert car_a.parameters["role_name"] == "car_a" and car_a.parameters["image_width"] == 64
    assert car_a.parameters["seed"] == 3 and car_a.parameters["fov"] == 90.0  # yaml, extra file, override
    assert ("/clock", "/car_a/clock") in car_a.remappings
    assert specs[3].parameters == {**specs[3].parameters, "role_name": "car_b", "image_size": 84}
    # One vehicle, or one world: the one simulator node of today, with its params files.
    assert simulation_graph(CONFIG, True, {}, ()) == [simulator_node(CONFIG, True, {})]
    one_world = simulation_graph(CONFIG, True, {}, (extra,))
    assert len(one_world) == 1 and one_world[0].params_files == (CONFIG / "simulator.yaml", extra)


def test_td3_run_starts_one_simulator_process_per_vehicle_from_a_params_file(tmp_path: Path):
    """`td3-run sim --simulator-processes`: each vehicle ticks on its own commands (N servers)."""
    extra = tmp_path / "two.yaml"
    extra.write_text(
        "carla_simulator:\n  ros__parameters:\n    role_name: [car_a, car_b]\n"
        "    image_width: 64\n    image_height: 48\n    command_wait_timeout_s: 0.0\n"
    )
    log = tmp_path / "runner.log"
    argv = [sys.executable, "-m", "td3_bringup.runner", "sim", "--simulator-processes", "--params-file", str(extra)]
    argv += ["--log-dir", str(tmp_path / "logs")]
    with Vehicles() as probe, command_process(argv, log, dict(os.environ)) as proc:
        clocks = {role: [] for role in ROLES}
        for role in ROLES:
            probe.node.create_subscription(Clock, f"/{role}/clock", lambda m, r=role: clocks[r].append(m), 100)
        probe.first_frames(proc, log)
        start = probe.counts()
        for _ in range(3):  # car_a alone: only car_a's simulator ticks
            before = probe.counts()
            probe.command("car_a")
            probe.wait(lambda b=before: probe.counts()[0] == b[0] + 1, proc, log, "car_a's tick")
        time.sleep(0.5)
        assert probe.counts() == (start[0] + 3, start[1]), "a command of car_a ticked car_b's simulator"
        assert clocks["car_a"] and clocks["car_b"], "each simulator's /clock under its role"
        assert probe.node.count_publishers("/clock") == 0
        with probe.lock:
            assert probe.stamps["car_a"][-1] == probe.stamps["car_b"][-1] + 3 * 50_000_000
    for role in ROLES:
        text = (tmp_path / "logs" / f"carla_simulator_{role}.log").read_text()
        assert "camera 64x48" in text and f"topics under /carla/{role}" in text, text[-2000:]
