"""The driver node as users run it: separate processes, real DDS, a test node as the other side.

1. With the embedded simulator (free-running and synchronous, small images): commands at about rate_hz, all in
   range, the car moves, and Ctrl-C ends the driver cleanly with a final full brake.
2. Without a simulator, the test publishes the inputs itself: full brake with the reason while
   nothing (valid) arrives, bad images/odometry are dropped without stopping the node, the car
   drives once valid inputs are there and brakes again when they go stale.
3. A policy whose output is NaN for real frames (finite weights that overflow, which the schema
   cannot refuse): full brake with the reason, driving again on frames it handles; then hot
   reload: a broken newer checkpoint is refused (still driving), a valid one is swapped in.
4. Invalid parameters: the process exits non-zero with a message naming the parameter.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path as FsPath

import numpy as np
import pytest
import rclpy
import torch
from builtin_interfaces.msg import Time
from carla_msgs.msg import CarlaEgoVehicleControl
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry, Path
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from td3_bringup.graph import driver_node, repo_config_dir, simulator_node
from td3_bringup.runner import node_command
from td3_core.actions import ActionConfig
from td3_core.checkpoint import write_latest_pointer
from td3_core.vector_state import ObservationConfig

from .checkpoint_factory import small_architecture, write_checkpoint
from .processes import node_process, stop_process

pytestmark = pytest.mark.ros
CONFIG = repo_config_dir()
ROLE = "ego_vehicle"
RATE_HZ = 20.0
STARTUP_S = 45.0  # importing torch + rclpy and discovery on a busy 2-core machine
PIXELS = ObservationConfig(use_vector_state=False)
VECTOR = ObservationConfig(num_waypoints=4)
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def topic(suffix: str) -> str:
    return f"/carla/{ROLE}/{suffix}"


class Probe:
    """The test's side of the graph: records commands, diagnostics and odometry; publishes inputs."""

    def __init__(self) -> None:
        self.node = Node("driver_probe")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.commands: list[tuple[float, CarlaEgoVehicleControl]] = []
        self.diagnostics: list[dict[str, str]] = []
        self.odometry: list[Odometry] = []
        self.node.create_subscription(CarlaEgoVehicleControl, topic("vehicle_control_cmd"), self._on_command, RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, RELIABLE)
        # Best effort matches the simulator's odometry whatever its reliability.
        self.node.create_subscription(Odometry, topic("odometry"), self.odometry.append, BEST_EFFORT)
        self.image_pub = self.node.create_publisher(Image, topic("rgb_front/image"), 10)
        self.odometry_pub = self.node.create_publisher(Odometry, topic("odometry"), 10)
        self.route_pub = self.node.create_publisher(Path, topic("waypoints"), LATCHED)

    def _on_command(self, msg: CarlaEgoVehicleControl) -> None:
        self.commands.append((time.monotonic(), msg))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("td3_driver"):
                values = {kv.key: kv.value for kv in status.values}
                level = int.from_bytes(status.level, "little")
                self.diagnostics.append({"message": status.message, "level": level, **values})

    def spin_for(self, seconds: float, every: Callable[[], None] | None = None, period: float = 0.05) -> None:
        """Spin (calling `every` each period, e.g. to publish a frame) for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if every is not None:
                every()
            tick_end = min(time.monotonic() + period, end)
            while time.monotonic() < tick_end:
                self.executor.spin_once(timeout_sec=max(0.0, tick_end - time.monotonic()))

    def spin_until(
        self, condition: Callable[[], bool], timeout: float, every: Callable[[], None] | None = None
    ) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            self.spin_for(0.1, every)
        return condition()

    def commands_since(self, start: float) -> list[CarlaEgoVehicleControl]:
        return [msg for stamp, msg in self.commands if stamp >= start]

    def last_diagnostics(self) -> dict[str, str]:
        return self.diagnostics[-1] if self.diagnostics else {}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def running_probe() -> Iterator[Probe]:
    """The body of the `probe` fixture (other test modules make theirs from it)."""
    rclpy.init()
    probe = Probe()
    try:
        yield probe
    finally:
        probe.close()
        rclpy.shutdown()


@pytest.fixture
def probe():
    yield from running_probe()


def _driver_args(checkpoint: FsPath, /, **overrides) -> list[str]:
    params = {"checkpoint": str(checkpoint), "device": "cpu", "rate_hz": RATE_HZ, "log_throttle_s": 1.0}
    params["diagnostics_period_s"] = 0.5
    return node_command(driver_node(CONFIG, {**params, **overrides}))[1:]


def _is_full_brake(msg: CarlaEgoVehicleControl) -> bool:
    return msg.brake == 1.0 and msg.throttle == 0.0 and msg.steer == 0.0


def _in_range(msg: CarlaEgoVehicleControl) -> bool:
    values = (msg.steer, msg.throttle, msg.brake)
    return (
        all(math.isfinite(v) for v in values)
        and -1 <= msg.steer <= 1
        and 0 <= msg.throttle <= 1
        and 0 <= msg.brake <= 1
    )


def _image(value: int | None = None, encoding: str = "mono8", width: int = 64, height: int = 48) -> Image:
    channels = {"mono8": 1, "rgb8": 3, "bgra8": 4}[encoding]
    rng = np.random.default_rng()
    pixels = rng.integers(0, 256, height * width * channels, dtype=np.uint8) if value is None else None
    data = pixels.tobytes() if pixels is not None else bytes([value]) * (height * width * channels)
    msg = Image(height=height, width=width, encoding=encoding, step=width * channels, data=data)
    msg.header.frame_id = f"{ROLE}/rgb_front"
    msg.header.stamp = _now()  # a new frame: its stamp advances (a repeated stamp is a frozen camera)
    return msg


def _now() -> Time:
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    return Time(sec=seconds, nanosec=nanoseconds)


def _bad_images() -> list[Image]:
    wrong_encoding = _image()
    wrong_encoding.encoding = "yuv422"
    short = _image()
    short.data = short.data[: len(short.data) // 2]
    empty = _image()
    empty.data = b""
    zero_size = Image(height=0, width=0, encoding="mono8", step=0)
    bad_step = _image()
    bad_step.step = 3
    return [wrong_encoding, short, empty, zero_size, bad_step]


def _route() -> Path:
    path = Path()
    path.header.frame_id = "map"
    for i in range(50):
        pose = PoseStamped()
        pose.pose.position.x = 2.0 * i
        path.poses.append(pose)
    return path


def _odometry(x: float = 1.0, speed: float = 3.0) -> Odometry:
    odometry = Odometry()
    odometry.header.frame_id = "map"
    odometry.header.stamp = _now()
    odometry.pose.pose.position.x = x
    odometry.pose.pose.orientation.w = 1.0
    odometry.twist.twist.linear.x = speed
    return odometry


def _log(path: FsPath) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _logged(probe: Probe, path: FsPath, text: str, times: int = 1) -> bool:
    """`text` in the log `times` times, waited for: the driver logs a change of state after it
    has published the command that shows it."""
    return probe.spin_until(lambda: _log(path).count(text) >= times, 5.0)


def _fail(message: str, log_path: FsPath) -> None:
    pytest.fail(f"{message}\n--- driver log (tail) ---\n{_log(log_path)[-4000:]}")


# ----------------------------------------------------------------------------- 1. with the simulator


def record_driving(
    probe: Probe, sim_proc: subprocess.Popen, driver: subprocess.Popen, driver_log: FsPath, seconds: float = 3.0
) -> tuple[list[CarlaEgoVehicleControl], list[Odometry], float]:
    """Wait for the first driving command, then record `seconds` of commands and odometry."""
    driving = lambda: any(msg.throttle > 0.5 for _, msg in probe.commands)  # noqa: E731
    if not probe.spin_until(driving, STARTUP_S):
        _fail(f"no driving command (simulator exit {sim_proc.poll()}, driver exit {driver.poll()})", driver_log)
    start = time.monotonic()
    first_odometry = len(probe.odometry)
    probe.spin_for(seconds)
    return probe.commands_since(start), probe.odometry[first_odometry:], time.monotonic() - start


def _simulator_available() -> str | None:
    try:
        importlib.import_module("td3_sim.node")
    except Exception as error:  # not written yet, or broken: say which
        return f"td3_sim.node cannot be imported ({type(error).__name__}: {error})"
    return None


@pytest.mark.parametrize("sync", [False, True], ids=["free-running", "synchronous"])  # the bridge-like default
def test_drives_the_embedded_simulator(tmp_path: FsPath, probe: Probe, sync: bool):
    reason = _simulator_available()
    if reason:
        pytest.skip(reason)
    # A vector-state policy: the route (latched), odometry and speedometer must come through too.
    checkpoint = write_checkpoint(
        tmp_path / "run" / "td3_s_step_1.pth", VECTOR, small_architecture(VECTOR), constant_action=(0.0, 0.8)
    )
    sim = node_command(simulator_node(CONFIG, sync=sync, overrides={"image_width": 84, "image_height": 84}))[1:]
    driver_log = tmp_path / "driver.log"
    with (
        node_process(sim, tmp_path / "simulator.log") as sim_proc,
        node_process(_driver_args(checkpoint), driver_log) as driver,
    ):
        received, moved, elapsed = record_driving(probe, sim_proc, driver, driver_log)
        achieved = len(received) / elapsed
        assert abs(achieved - RATE_HZ) <= 0.5 * RATE_HZ, f"{achieved:.1f} commands/s, configured {RATE_HZ}"
        assert all(_in_range(msg) for msg in received)
        assert sum(msg.throttle > 0.5 and msg.brake == 0.0 for msg in received) > 0.8 * len(received)
        assert len(moved) >= 2, "no odometry from the simulator"
        start_p, end_p = moved[0].pose.pose.position, moved[-1].pose.pose.position
        distance = math.hypot(end_p.x - start_p.x, end_p.y - start_p.y)
        assert distance > 0.5, f"the car moved {distance:.2f} m in 3 s with throttle 0.8"

        stop_time = time.monotonic()
        assert stop_process(driver) == 0
        probe.spin_for(3.0)  # the final brake can be slow to arrive on a loaded machine
        after = probe.commands_since(stop_time)
        assert after and _is_full_brake(after[-1]), "the driver did not leave the car braking"
    assert "Traceback" not in _log(driver_log)


# ----------------------------------------------------------------------------- 2. inputs published by the test


def test_brakes_without_valid_inputs_and_survives_bad_messages(tmp_path: FsPath, probe: Probe):
    checkpoint = write_checkpoint(
        tmp_path / "run" / "td3_s_step_1.pth", VECTOR, small_architecture(VECTOR), constant_action=(0.1, 0.7)
    )
    log = tmp_path / "driver.log"
    with node_process(_driver_args(checkpoint, stale_timeout=0.3), log) as driver:
        # Nothing published: full brake, and the reason on /diagnostics and in the log.
        said_why = lambda: probe.last_diagnostics().get("brake_reason") == "no_frame"  # noqa: E731
        if not probe.spin_until(lambda: len(probe.commands) > 5 and said_why(), STARTUP_S):
            _fail(f"no braking commands/diagnostics (exit {driver.poll()})", log)
        assert all(_is_full_brake(msg) for _, msg in probe.commands)
        assert "no camera frame" in probe.last_diagnostics()["message"]
        assert "full brake: no camera frame received yet" in _log(log)

        # Malformed images: dropped, counted, logged; the node keeps running and braking.
        start = time.monotonic()
        bad = _bad_images()
        probe.spin_for(1.0, lambda: [probe.image_pub.publish(msg) for msg in bad])
        dropped = lambda: int(probe.last_diagnostics().get("dropped_image", "0")) >= len(bad)  # noqa: E731
        assert probe.spin_until(dropped, 5.0), probe.last_diagnostics()
        assert driver.poll() is None, "a bad image stopped the driver"
        assert all(_is_full_brake(msg) for msg in probe.commands_since(start))
        assert "dropped a bad message on /carla/ego_vehicle/rgb_front/image" in _log(log)

        # Valid frames, but this policy also needs the route and odometry.
        start = time.monotonic()
        probe.spin_for(1.0, lambda: probe.image_pub.publish(_image()))
        assert probe.last_diagnostics().get("brake_reason") == "no_route"
        assert all(_is_full_brake(msg) for msg in probe.commands_since(start))

        # Everything valid: the policy drives (steer 0.1, throttle 0.7).
        probe.route_pub.publish(_route())

        def publish_all() -> None:
            probe.odometry_pub.publish(_odometry())
            probe.image_pub.publish(_image(encoding="bgra8", width=80, height=60))

        def driving_again() -> Callable[[], bool]:
            since = time.monotonic()
            return lambda: any(m.throttle > 0.6 for m in probe.commands_since(since))

        assert probe.spin_until(driving_again(), 10.0, publish_all), probe.last_diagnostics()
        start = time.monotonic()
        probe.spin_for(1.0, publish_all)
        recent = probe.commands_since(start)
        assert recent and all(m.brake == 0.0 and abs(m.throttle - 0.7) < 1e-4 for m in recent), recent[:3]
        assert all(abs(m.steer - 0.1) < 1e-4 for m in recent)
        assert _logged(probe, log, "inputs valid again"), _log(log)[-3000:]

        # Odometry with NaN: dropped; once the last valid one is stale, full brake with that reason.
        def publish_nan_odometry() -> None:
            probe.odometry_pub.publish(_odometry(speed=math.nan))
            probe.image_pub.publish(_image())

        stale = lambda: probe.last_diagnostics().get("brake_reason") == "stale_odometry"  # noqa: E731
        assert probe.spin_until(stale, 10.0, publish_nan_odometry), probe.last_diagnostics()
        assert int(probe.last_diagnostics()["dropped_odometry"]) > 0
        assert _is_full_brake(probe.commands[-1][1]) and driver.poll() is None

        # Valid again, then the camera stops: stale frames → full brake.
        assert probe.spin_until(driving_again(), 10.0, publish_all), probe.last_diagnostics()
        assert _logged(probe, log, "inputs valid again", times=2), _log(log)[-3000:]
        frames_stale = lambda: probe.last_diagnostics().get("brake_reason") == "stale_frame"  # noqa: E731
        assert probe.spin_until(frames_stale, 5.0), probe.last_diagnostics()
        assert _is_full_brake(probe.commands[-1][1])
        assert "camera frames stale" in _log(log)

        assert stop_process(driver) == 0
    assert "Traceback" not in _log(log)


def test_one_command_per_frame_sends_each_frames_action_once_and_brakes_at_rate_without_frames(
    tmp_path: FsPath, probe: Probe
):
    # A synchronous world waits for the command: with one_command_per_frame the driver answers each
    # frame once (its header carries that frame's stamp) and sends nothing more until the next.
    checkpoint = write_checkpoint(
        tmp_path / "run" / "td3_s_step_1.pth", PIXELS, small_architecture(PIXELS), constant_action=(0.0, 0.7)
    )
    log = tmp_path / "driver.log"
    args = _driver_args(checkpoint, one_command_per_frame=True, stale_timeout=10.0, watchdog_timeout=10.0)
    with node_process(args, log) as driver:
        driving = lambda: any(m.throttle > 0.5 for _, m in probe.commands)  # noqa: E731
        if not probe.spin_until(driving, STARTUP_S, lambda: probe.image_pub.publish(_image())):
            _fail(f"no driving command (exit {driver.poll()})", log)
        probe.spin_for(1.0)  # the frames published until now are answered
        start = time.monotonic()
        sent: list[Time] = []

        def one_frame() -> None:
            frame = _image()
            sent.append(frame.header.stamp)
            probe.image_pub.publish(frame)

        probe.spin_for(3.0, one_frame, period=0.25)  # 4 frames a second against 20 commands a second
        probe.spin_for(1.0)
        answered = [m for m in probe.commands_since(start) if m.throttle > 0.5]
        stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in answered]
        assert len(stamps) == len(set(stamps)), "a frame's action was sent twice"
        assert set(stamps) <= {(t.sec, t.nanosec) for t in sent}, "a driving command for a frame never sent"
        assert len(answered) >= len(sent) - 2, (len(answered), len(sent))  # a frame may be replaced in flight
        assert int(probe.last_diagnostics()["lockstep_waits"]) > 0

        # No frame any more: once stale, full brake at the command rate, not once.
        stale = lambda: probe.last_diagnostics().get("brake_reason") == "stale_frame"  # noqa: E731
        assert probe.spin_until(stale, 30.0), probe.last_diagnostics()
        start = time.monotonic()
        probe.spin_for(2.0)
        braking = probe.commands_since(start)
        assert len(braking) >= 10 and all(_is_full_brake(m) for m in braking), len(braking)
        assert stop_process(driver) == 0
    assert "Traceback" not in _log(log)


def _drive_a_limited_checkpoint(
    tmp_path: FsPath,
    probe: Probe,
    action: ActionConfig,
    waiting_for: str,
    speeds: tuple[tuple[float, tuple[float, float]], ...],
    route: Path | None = None,
    x: float = 1.0,
) -> None:
    """A pixel-only policy asking for throttle 0.7 from a checkpoint with this action mapping:
    full brake for `waiting_for` (a brake reason) until odometry and `route` are published, then
    at each speed the (throttle, brake) expected."""
    checkpoint = write_checkpoint(
        tmp_path / "run" / "td3_s_step_1.pth",
        PIXELS,
        small_architecture(PIXELS),
        constant_action=(0.0, 0.7),
        action=action,
    )
    log = tmp_path / "driver.log"
    speed = {"now": None if route is None else speeds[0][0]}

    def inputs() -> None:
        probe.image_pub.publish(_image())
        if speed["now"] is not None:
            probe.odometry_pub.publish(_odometry(x=x, speed=speed["now"]))

    with node_process(_driver_args(checkpoint, use_speedometer=False), log) as driver:
        waiting = lambda: probe.last_diagnostics().get("brake_reason") == waiting_for  # noqa: E731
        if not probe.spin_until(waiting, STARTUP_S, inputs):
            _fail(f"no '{waiting_for}' brake (exit {driver.poll()}): {probe.last_diagnostics()}", log)
        if route is not None:
            probe.route_pub.publish(route)
        for value, expected in speeds:
            speed["now"] = value
            probe.spin_for(1.0, inputs)
            start = time.monotonic()
            probe.spin_for(1.0, inputs)
            got = [(round(m.throttle, 3), round(m.brake, 3)) for m in probe.commands_since(start)]
            assert len(got) >= 10 and all(c == pytest.approx(expected, abs=0.02) for c in got), (value, got)
        assert stop_process(driver) == 0
    assert "Traceback" not in _log(log)


def test_a_checkpoints_speed_limit_holds_the_car_below_it_and_needs_odometry(tmp_path: FsPath, probe: Probe):
    # Trained with a 10 m/s limiter: the driver subscribes to odometry for the speed; none yet:
    # full brake and why; below the limit: the action; in the last 1 m/s: less throttle; above it: brake.
    speeds = ((5.0, (0.7, 0.0)), (9.5, (0.35, 0.0)), (12.0, (0.0, 1.0)))
    _drive_a_limited_checkpoint(tmp_path, probe, ActionConfig(speed_limit_mps=10.0), "no_odometry", speeds)


def _circle_route(radius: float) -> Path:
    path = Path()
    path.header.frame_id = "map"
    for i in range(64):
        pose = PoseStamped()
        pose.pose.position.x = radius * math.cos(i * math.pi / 32)
        pose.pose.position.y = radius * math.sin(i * math.pi / 32)
        path.poses.append(pose)
    return path


def test_a_checkpoints_curve_governor_slows_the_car_in_a_curve_and_needs_the_route(tmp_path: FsPath, probe: Probe):
    # Trained with a 10 m/s limiter and a 2 m/s^2 curve governor: the driver subscribes to the
    # waypoints too; none yet: full brake and why; on a 12.5 m circle the limit is
    # sqrt(2 * 12.5) = 5 m/s: the action at 3 m/s, brake at 7 m/s.
    governed = ActionConfig(speed_limit_mps=10.0, curve_lateral_accel_mps2=2.0)
    speeds = ((3.0, (0.7, 0.0)), (7.0, (0.0, 1.0)))
    _drive_a_limited_checkpoint(tmp_path, probe, governed, "no_route", speeds, route=_circle_route(12.5), x=12.5)


# ----------------------------------------------------------------------------- 3. NaN from the network


def _nan_on_bright_frames(policy) -> None:
    """Weights within the schema's magnitude bound (1e6): activations are 0 on black frames and
    grow layer by layer to inf otherwise, then inf - inf = NaN."""
    with torch.no_grad():
        cnn = policy.actor_cnn
        for conv in (cnn.features[0], cnn.features[3], cnn.features[6]):
            conv.weight.fill_(1e6)
            conv.bias.zero_()
        cnn.fc.weight.fill_(1e6)
        cnn.fc.bias.zero_()
        policy.actor.fc1.weight.fill_(1e6)
        policy.actor.fc2.weight[:, 0::2] = 1.0
        policy.actor.fc2.weight[:, 1::2] = -1.0


def test_nan_output_brakes_with_the_reason_and_hot_reload_swaps_policies(tmp_path: FsPath, probe: Probe):
    run = tmp_path / "run"
    write_checkpoint(run / "td3_s_step_1.pth", PIXELS, small_architecture(PIXELS), edit_policy=_nan_on_bright_frames)
    log = tmp_path / "driver.log"
    args = _driver_args(run, watch=True, watch_period_s=0.5)
    with node_process(args, log) as driver:
        nan = lambda: probe.last_diagnostics().get("brake_reason") == "non_finite_action"  # noqa: E731
        if not probe.spin_until(nan, STARTUP_S, lambda: probe.image_pub.publish(_image(value=200))):
            _fail(f"no NaN brake reported: {probe.last_diagnostics()} (exit {driver.poll()})", log)
        assert int(probe.last_diagnostics()["non_finite_actions"]) > 0
        assert _is_full_brake(probe.commands[-1][1])
        assert "network output is NaN or inf" in _log(log)
        black = lambda: probe.image_pub.publish(_image(value=0))  # noqa: E731
        driving = lambda: probe.last_diagnostics().get("state") == "driving"  # noqa: E731
        assert probe.spin_until(driving, 10.0, black), probe.last_diagnostics()

        # Hot reload: a broken newer file is refused and the car keeps driving on the old policy...
        broken = run / "td3_s_step_2.pth"
        broken.write_bytes(b"PK\x03\x04 half a checkpoint")
        write_latest_pointer(run, broken)
        refused = lambda: "not switching to" in _log(log)  # noqa: E731
        assert probe.spin_until(refused, 10.0, black), _log(log)[-2000:]
        assert "td3_s_step_2.pth" in _log(log) and driving()
        # ...then a valid one is swapped in: its constant action shows in the commands.
        write_checkpoint(run / "td3_s_step_3.pth", PIXELS, small_architecture(PIXELS), constant_action=(-0.3, 0.6))
        since = time.monotonic()
        new_policy = lambda: any(  # noqa: E731
            abs(m.steer + 0.3) < 1e-4 and abs(m.throttle - 0.6) < 1e-4 for m in probe.commands_since(since)
        )
        assert probe.spin_until(new_policy, 15.0, black), _log(log)[-2000:]
        assert probe.spin_until(lambda: probe.last_diagnostics().get("reloads") == "1", 5.0)
        assert probe.last_diagnostics()["checkpoint"].endswith("td3_s_step_3.pth")
        assert probe.last_diagnostics()["rejected_reloads"] == "1"
        assert all(_in_range(msg) for _, msg in probe.commands)
        assert stop_process(driver) == 0


# ----------------------------------------------------------------------------- 4. invalid parameters


def test_invalid_parameters_stop_the_node_naming_the_parameter(tmp_path: FsPath):
    checkpoint = write_checkpoint(tmp_path / "run" / "td3_s_step_1.pth", PIXELS, small_architecture(PIXELS))
    cases = {
        "rate_hz": {"rate_hz": -1.0},
        "device": {"device": "tpu"},
        "checkpoint": {"checkpoint": str(tmp_path / "missing.pth")},
        "stale_timeout": {"stale_timeout": 0.0},
    }
    if not torch.cuda.is_available():
        cases["device_cuda"] = {"device": "cuda"}
    with contextlib.ExitStack() as stack:
        procs = {
            name: stack.enter_context(node_process(_driver_args(checkpoint, **params), tmp_path / f"{name}.log"))
            for name, params in cases.items()
        }
        for name, proc in procs.items():
            try:
                code = proc.wait(timeout=STARTUP_S)
            except subprocess.TimeoutExpired:
                _fail(f"{name}: the node kept running with an invalid parameter", tmp_path / f"{name}.log")
            parameter = name.split("_cuda")[0]
            log = _log(tmp_path / f"{name}.log")
            assert code == 2, f"{name}: exit code {code}\n{log}"
            assert f"parameter '{parameter}'" in log, log
            assert "Traceback" not in log, log


# ----------------------------------------------------------------------------- 5. remapping


def test_topics_are_remappable(tmp_path: FsPath):
    from rclpy.parameter import Parameter

    from td3_driver.node import DriverNode

    checkpoint = write_checkpoint(tmp_path / "run" / "td3_s_step_1.pth", VECTOR, small_architecture(VECTOR))
    remaps = {topic("rgb_front/image"): "/cam/image", topic("vehicle_control_cmd"): "/control", "/diagnostics": "/diag"}
    args = ["--ros-args", *[arg for old, new in remaps.items() for arg in ("-r", f"{old}:={new}")]]
    context = rclpy.Context()
    rclpy.init(args=args, context=context)
    try:
        overrides = [Parameter("checkpoint", value=str(checkpoint)), Parameter("cpu_threads", value=0)]
        node = DriverNode(context=context, parameter_overrides=overrides)
        names = {name for name, _ in node.get_topic_names_and_types()}
        assert {"/cam/image", "/control", "/diag", topic("odometry"), topic("waypoints")} <= names
        assert not names & {topic("rgb_front/image"), topic("vehicle_control_cmd")}
        assert node.topics["image"] == "/cam/image" and node.gate.frame_topic == "/cam/image"
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_driver_starts_from_best(tmp_path: FsPath):
    from rclpy.parameter import Parameter

    from td3_core.checkpoint import BEST_POINTER, write_pointer
    from td3_driver.node import DriverNode

    models = tmp_path / "models"
    best = write_checkpoint(models / "run" / "td3_s_step_1.pth", VECTOR, small_architecture(VECTOR))
    write_pointer(models / "run", best, BEST_POINTER)
    write_checkpoint(models / "run" / "td3_s_step_2.pth", VECTOR, small_architecture(VECTOR))  # the latest
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        overrides = [
            Parameter("checkpoint", value="best"),
            Parameter("models_dir", value=str(models)),
            Parameter("cpu_threads", value=0),
        ]
        node = DriverNode(context=context, parameter_overrides=overrides)
        assert node.checkpoint.path == best.resolve()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
