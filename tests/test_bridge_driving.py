"""The driver on the bridge-like simulator (its default: ticks from launch, events a tick late,
open 1 m routes), in synchronous mode (each command ticks, as with the bridge's
synchronous_mode_wait_for_vehicle_control_command) and free-running."""

from __future__ import annotations

import math
import time
from pathlib import Path as FsPath

import pytest

from td3_bringup.graph import simulator_node
from td3_bringup.runner import node_command

from .checkpoint_factory import small_architecture, write_checkpoint
from .processes import node_process, stop_process
from .test_driver_node import CONFIG, STARTUP_S, VECTOR, Probe, _driver_args, _fail, _in_range, _is_full_brake
from .test_driver_node import probe as probe

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("sync", [True, False], ids=["synchronous", "free-running"])
def test_drives_the_bridge_like_simulator(tmp_path: FsPath, probe: Probe, sync: bool):
    checkpoint = write_checkpoint(
        tmp_path / "run" / "td3_s_step_1.pth", VECTOR, small_architecture(VECTOR), constant_action=(0.0, 0.8)
    )
    overrides = {"image_width": 84, "image_height": 84}
    sim = node_command(simulator_node(CONFIG, sync=sync, overrides=overrides))[1:]
    driver_log = tmp_path / "driver.log"
    with (
        node_process(sim, tmp_path / "simulator.log") as sim_proc,
        node_process(_driver_args(checkpoint), driver_log) as driver,
    ):
        driving = lambda: any(msg.throttle > 0.5 for _, msg in probe.commands)  # noqa: E731
        if not probe.spin_until(driving, STARTUP_S):
            _fail(f"no driving command (simulator exit {sim_proc.poll()}, driver exit {driver.poll()})", driver_log)
        start = time.monotonic()
        first_odometry = len(probe.odometry)
        probe.spin_for(3.0)
        received = probe.commands_since(start)
        assert received and all(_in_range(msg) for msg in received)
        assert sum(msg.throttle > 0.5 and msg.brake == 0.0 for msg in received) > 0.8 * len(received)
        moved = probe.odometry[first_odometry:]
        assert len(moved) >= 2, "no odometry from the simulator"
        start_p, end_p = moved[0].pose.pose.position, moved[-1].pose.pose.position
        distance = math.hypot(end_p.x - start_p.x, end_p.y - start_p.y)
        assert distance > 0.5, f"the car moved {distance:.2f} m in 3 s with throttle 0.8"
        stop_time = time.monotonic()
        assert stop_process(driver) == 0
        probe.spin_for(3.0)
        after = probe.commands_since(stop_time)
        assert after and _is_full_brake(after[-1]), "the driver did not leave the car braking"
    assert "Traceback" not in driver_log.read_text(errors="replace")
