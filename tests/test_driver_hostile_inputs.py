"""Inputs that are valid message by message but hostile as a stream, at a live driver over DDS:
a frozen camera (one frame re-sent with its stamp at full rate), a second node commanding the
car, and a simulator slower than real time (tools/slow_sim.py). Large messages and frozen
stamps among random ones are tools/fuzz_driver.py's (tests/test_fuzz_driver.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from carla_msgs.msg import CarlaEgoVehicleControl
from diagnostic_msgs.msg import DiagnosticStatus

from tools.slow_sim import main as slow_sim_main

from .checkpoint_factory import small_architecture, write_checkpoint
from .processes import node_process, stop_process
from .test_driver_node import (
    PIXELS,
    RELIABLE,
    STARTUP_S,
    Probe,
    _driver_args,
    _fail,
    _image,
    _is_full_brake,
    _log,
    running_probe,
    topic,
)

pytestmark = pytest.mark.ros


@pytest.fixture(name="probe")
def probe_fixture():
    yield from running_probe()


def _driving(probe: Probe) -> bool:
    return probe.last_diagnostics().get("state") == "driving"


def test_a_frozen_camera_brakes_although_its_frames_keep_arriving(tmp_path: Path, probe: Probe):
    checkpoint = write_checkpoint(
        tmp_path / "run" / "td3_s_step_1.pth", PIXELS, small_architecture(PIXELS), constant_action=(0.1, 0.7)
    )
    log = tmp_path / "driver.log"
    with node_process(_driver_args(checkpoint), log) as driver:
        if not probe.spin_until(lambda: _driving(probe), STARTUP_S, lambda: probe.image_pub.publish(_image())):
            _fail(f"never drove (exit {driver.poll()})", log)
        frozen = _image()  # from now on the camera re-sends this frame, stamp and all, at 20 Hz
        stale = lambda: probe.last_diagnostics().get("brake_reason") == "stale_frame"  # noqa: E731
        assert probe.spin_until(stale, 10.0, lambda: probe.image_pub.publish(frozen)), probe.last_diagnostics()
        since = time.monotonic()
        probe.spin_for(1.0, lambda: probe.image_pub.publish(frozen))
        assert all(_is_full_brake(m) for m in probe.commands_since(since)), "drove on a frozen camera"
        assert int(probe.last_diagnostics()["repeated_frames"]) > 10
        assert "repeated its stamp" in probe.last_diagnostics()["message"]
        # New stamps again: it drives again.
        assert probe.spin_until(lambda: _driving(probe), 10.0, lambda: probe.image_pub.publish(_image()))
        assert stop_process(driver) == 0
    assert "Traceback" not in _log(log)


def test_a_second_commander_is_reported_at_error_and_the_driver_brakes(tmp_path: Path, probe: Probe):
    checkpoint = write_checkpoint(
        tmp_path / "run" / "td3_s_step_1.pth", PIXELS, small_architecture(PIXELS), constant_action=(0.1, 0.7)
    )
    log = tmp_path / "driver.log"
    publish = lambda: probe.image_pub.publish(_image())  # noqa: E731
    with node_process(_driver_args(checkpoint), log) as driver:
        if not probe.spin_until(lambda: _driving(probe), STARTUP_S, publish):
            _fail(f"never drove (exit {driver.poll()})", log)
        intruder = probe.node.create_publisher(CarlaEgoVehicleControl, topic("vehicle_control_cmd"), RELIABLE)
        reported = lambda: probe.last_diagnostics().get("brake_reason") == "other_commander"  # noqa: E731
        assert probe.spin_until(reported, 10.0, publish), probe.last_diagnostics()
        diagnostics = probe.last_diagnostics()
        assert diagnostics["level"] == int.from_bytes(DiagnosticStatus.ERROR, "little")
        assert "/driver_probe also publishes on /carla/ego_vehicle/vehicle_control_cmd" in diagnostics["message"]
        since = time.monotonic()
        probe.spin_for(1.0, publish)
        assert all(_is_full_brake(m) for m in probe.commands_since(since))
        assert "another node publishes vehicle control commands" in _log(log)
        probe.node.destroy_publisher(intruder)
        assert probe.spin_until(lambda: _driving(probe), 10.0, publish), probe.last_diagnostics()
        assert stop_process(driver) == 0


@pytest.mark.slow
def test_a_simulator_at_a_tenth_of_real_time_is_driven_without_staleness_brakes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    code = slow_sim_main(["--sim-rate-hz", "2", "--seconds", "5", "--work-dir", str(tmp_path)])
    out = capsys.readouterr().out
    result = json.loads(out[: out.rindex("}") + 1])
    assert code == 0, result
    assert result["frames"] > 0 and result["safety_brakes"] == 0 and result["stale_events"] == 0
    assert result["staleness_clock"] == "simulation (/clock)"
