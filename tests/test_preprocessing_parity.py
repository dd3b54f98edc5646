"""The driver feeds its network exactly what the trainer's network was fed for the same messages.

The reference is td3_core's ObservationBuilder used the way the trainer uses it (set the route,
push each image, vector from odometry + speedometer). The driver side is its own path: the
DriverInputs of the node, and the node itself (in-process, its subscription callbacks called
with the messages, the runner's inputs recorded). Messages go through rclpy serialization first,
so the driver sees them as they come off the wire. Equality is bit-for-bit, not approximate.
"""

from __future__ import annotations

import math
from pathlib import Path as FsPath

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry, Path
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Float32

from td3_core.observation import ObservationBuilder, pose_from_odometry
from td3_core.preprocessing import PreprocessConfig
from td3_core.vector_state import ObservationConfig
from td3_driver.node import DriverInputs, DriverNode

from .checkpoint_factory import small_architecture, write_checkpoint

ENCODINGS = {"bgra8": 4, "rgb8": 3, "mono8": 1}
CASES = [("bgra8", 800, 600), ("rgb8", 800, 600), ("rgb8", 320, 240), ("mono8", 84, 84), ("mono8", 97, 61)]


class FakeClock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _wire(msg):
    """The message as a subscriber receives it (data as array.array, not the bytes we built)."""
    return deserialize_message(serialize_message(msg), type(msg))


def _image(encoding: str, width: int, height: int, seed: int, padding: int = 0) -> Image:
    channels = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    step = width * channels + padding
    # Smooth structure plus noise, so area resampling has real work to do.
    yy, xx = np.mgrid[0:height, 0:width]
    base = (xx * 255 // max(width - 1, 1) + yy * 3 + seed * 17) % 256
    pixels = (base[..., None] + rng.integers(0, 40, (height, width, channels))) % 256
    rows = np.zeros((height, step), dtype=np.uint8)
    rows[:, : width * channels] = pixels.reshape(height, -1)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0, step=step)
    msg.header.frame_id = "ego_vehicle/rgb_front"
    msg.header.stamp.sec = seed
    msg.data = rows.tobytes()
    return msg


def _route() -> Path:
    path = Path()
    path.header.frame_id = "map"
    for i in range(60):
        pose = PoseStamped()
        pose.pose.position.x = 2.0 * i
        pose.pose.position.y = 8.0 * math.sin(i / 10.0)
        path.poses.append(pose)
    return path


def _odometry(step: int) -> Odometry:
    odometry = Odometry()
    odometry.header.frame_id = "map"
    odometry.pose.pose.position.x = 1.5 * step + 0.3
    odometry.pose.pose.position.y = 8.0 * math.sin(0.075 * step) + 0.4
    yaw = 0.1 + 0.02 * step
    odometry.pose.pose.orientation.z = math.sin(yaw / 2.0)
    odometry.pose.pose.orientation.w = math.cos(yaw / 2.0)
    odometry.twist.twist.linear.x = 4.0 + 0.25 * step
    odometry.twist.twist.linear.y = 0.1
    return odometry


class TrainerReference:
    """ObservationBuilder driven like td3_trainer's environment client."""

    def __init__(self, preprocess: PreprocessConfig, observation: ObservationConfig, use_speedometer: bool) -> None:
        self.builder = ObservationBuilder(preprocess, observation)
        self.use_speedometer = use_speedometer

    def step(self, image: Image, odometry: Odometry, speed: float | None) -> tuple[np.ndarray, np.ndarray]:
        frames = self.builder.push_image(image)
        twist_speed = pose_from_odometry(odometry)[3]
        speed = speed if speed is not None else twist_speed
        vector, _ = self.builder.vector(odometry, speed if self.use_speedometer else None)
        return frames, vector


def _assert_identical(driver: tuple[np.ndarray, np.ndarray], trainer: tuple[np.ndarray, np.ndarray]) -> None:
    for ours, theirs, name in zip(driver, trainer, ("frames", "vector"), strict=True):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name
        assert ours.tobytes() == theirs.tobytes(), f"{name} differ"


@pytest.mark.parametrize(("encoding", "width", "height"), CASES, ids=[f"{e}-{w}x{h}" for e, w, h in CASES])
@pytest.mark.parametrize("use_vector_state", [True, False], ids=["vector", "pixels"])
def test_driver_inputs_match_the_trainer_bit_for_bit(encoding: str, width: int, height: int, use_vector_state: bool):
    preprocess = PreprocessConfig(image_size=84, frame_stack=4)
    observation = ObservationConfig(use_vector_state=use_vector_state, num_waypoints=10)
    trainer = TrainerReference(preprocess, observation, use_speedometer=True)
    clock = FakeClock()
    driver = DriverInputs(preprocess, observation, use_speedometer=True, speed_timeout=0.5, clock=clock)
    route = _route()
    trainer.builder.set_route_from_path(route)
    driver.set_route(_wire(route))
    for step in range(7):  # more frames than the stack holds: sliding, not only the initial fill
        image, odometry = _image(encoding, width, height, seed=step, padding=step % 2 * 8), _odometry(step)
        speed = None if step % 3 == 0 else 5.0 + step  # the speedometer is not always there
        clock.now += 1.0  # older readings are stale: without one this step, the twist speed is used
        driver.set_odometry(_wire(odometry))
        if speed is not None:
            driver.set_speed(_wire(Float32(data=speed)))
        wire_speed = None if speed is None else float(_wire(Float32(data=speed)).data)
        reference = trainer.step(image, odometry, wire_speed)
        ours = (driver.push_image(_wire(image)), driver.vector())
        _assert_identical(ours, reference)
        assert ours[1].shape == (observation.vector_dim,)


def test_a_changed_pixel_changes_the_network_input():
    """The comparison above can fail: one pixel's difference reaches the frames."""
    preprocess, observation = PreprocessConfig(84, 4), ObservationConfig(use_vector_state=False)
    a, b = DriverInputs(preprocess, observation), DriverInputs(preprocess, observation)
    image = _image("mono8", 84, 84, seed=1)
    changed = _image("mono8", 84, 84, seed=1)
    data = bytearray(changed.data)
    data[84 * 40 + 40] ^= 0xFF
    changed.data = bytes(data)
    assert a.push_image(image).tobytes() != b.push_image(changed).tobytes()


@pytest.fixture
def ros_context():
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.mark.ros
def test_driver_node_feeds_its_runner_what_the_trainer_builds(tmp_path: FsPath, ros_context):
    observation = ObservationConfig(num_waypoints=10)
    arch = small_architecture(observation, image_size=84)
    checkpoint = write_checkpoint(tmp_path / "run" / "td3_s_step_1.pth", observation, arch)
    node = DriverNode(
        parameter_overrides=[
            Parameter("checkpoint", value=str(checkpoint)),
            Parameter("device", value="cpu"),
            Parameter("stale_timeout", value=1e6),  # no timing in this test
            Parameter("warmup_iterations", value=1),
            Parameter("cpu_threads", value=0),  # leave this test process's torch threads alone
        ]
    )
    try:
        recorded: list[tuple[np.ndarray, np.ndarray]] = []
        infer = node.runner.infer
        node.runner.infer = lambda frames, vector: (
            recorded.append((frames.copy(), vector.copy())) or infer(frames, vector)
        )
        trainer = TrainerReference(PreprocessConfig(84, 4), observation, use_speedometer=True)
        route = _route()
        trainer.builder.set_route_from_path(route)
        node._on_route(_wire(route))
        for step in range(6):
            image, odometry, speed = _image("bgra8", 800, 600, seed=step), _odometry(step), 6.0 + step
            node._on_odometry(_wire(odometry))
            node._on_speed(_wire(Float32(data=speed)))
            node._on_image(_wire(image))
            assert len(recorded) == step + 1, "the node did not run the policy on a valid frame"
            _assert_identical(recorded[-1], trainer.step(image, odometry, speed))
            assert node._pending is not None and node._pending.action.shape == (2,)
    finally:
        node.destroy_node()
