"""The preprocessing node publishes exactly the frames the trainer would make of the camera itself.

The node runs as its own process; camera messages go to it over DDS and its output comes back
over DDS. The reference is td3_core's preprocessing applied here to the same messages as a
subscriber receives them; equality is bit for bit, headers included. A trainer (and a driver)
at image_input:=preprocessed stacks the node's frames into the same observations as the raw
camera gives at image_input:=raw, and refuses frames of another size or encoding.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from td3_bringup.graph import preprocess_node, repo_config_dir, training_graph
from td3_bringup.runner import node_command
from td3_core.image_codec import ImageError
from td3_core.observation import ObservationBuilder
from td3_core.params import ParamError
from td3_core.preprocessing import (
    PREPROCESSED_IMAGE_TOPIC,
    RAW_IMAGE_TOPIC,
    PreprocessConfig,
    frame_from_image_msg,
    frame_from_preprocessed_msg,
)
from td3_core.vector_state import ObservationConfig
from td3_preprocess.node import PreprocessParams

from .processes import node_process

CONFIG = repo_config_dir()
HANG_GUARD_S = 120.0  # only a guard against a hang
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
CHANNELS = {"bgra8": 4, "bgr8": 3, "rgb8": 3, "mono8": 1}
# (encoding, width, height, row padding): the bridge's camera, other encodings, odd sizes, a
# frame already 84x84, and rows with padding bytes (step > width * channels).
CASES = [
    ("bgra8", 800, 600, 0),
    ("bgr8", 320, 240, 0),
    ("rgb8", 160, 120, 8),
    ("mono8", 97, 61, 3),
    ("mono8", 84, 84, 0),
    ("bgra8", 1280, 720, 0),
]


def _camera(encoding: str, width: int, height: int, padding: int, seed: int) -> Image:
    rng = np.random.default_rng(seed)
    channels = CHANNELS[encoding]
    step = width * channels + padding
    yy, xx = np.mgrid[0:height, 0:width]
    base = (xx * 255 // max(width - 1, 1) + yy * 5 + seed * 31) % 256
    pixels = (base[..., None] + rng.integers(0, 60, (height, width, channels))) % 256
    rows = rng.integers(0, 256, (height, step), dtype=np.uint8)  # padding bytes are noise, never read
    rows[:, : width * channels] = pixels.reshape(height, -1)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0, step=step, data=rows.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + seed, 50_000_000 * (seed % 20)
    msg.header.frame_id = f"ego_vehicle/rgb_front_{seed}"
    return msg


def _wire(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def _stamp(msg: Image) -> tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


class Exchange:
    """A test-side node: publishes camera messages, collects the node's output by stamp."""

    def __init__(self, role: str) -> None:
        rclpy.init()
        self.node = rclpy.create_node("preprocess_test")
        self.lock = threading.Lock()
        self.received: dict[tuple[int, int], Image] = {}
        self.pub = self.node.create_publisher(Image, f"/carla/{role}/{RAW_IMAGE_TOPIC}", QOS)
        self.sub = self.node.create_subscription(
            Image, f"/carla/{role}/{PREPROCESSED_IMAGE_TOPIC}", self._on_frame, 100
        )
        self.executor = rclpy.executors.SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_frame(self, msg: Image) -> None:
        with self.lock:
            self.received[_stamp(msg)] = msg

    def wait_for(self, condition, proc, what: str, log: Path) -> None:
        deadline = time.monotonic() + HANG_GUARD_S
        while not condition():
            if proc.poll() is not None:
                raise AssertionError(f"{what}: node exited with {proc.returncode}\n{log.read_text()[-3000:]}")
            assert time.monotonic() < deadline, f"{what}: nothing after {HANG_GUARD_S} s\n{log.read_text()[-3000:]}"
            time.sleep(0.05)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown()


@pytest.mark.ros
def test_node_output_equals_the_trainers_own_preprocessing_bit_for_bit(tmp_path: Path):
    role = "prep_vehicle"
    log = tmp_path / "preprocess.log"
    config = PreprocessConfig()  # the trainer's default: 84x84
    good = [_camera(*case, seed=i) for i, case in enumerate(CASES)]
    bad = Image(height=600, width=800, encoding="bgra8", step=3200, data=b"\x00" * 100)  # truncated data
    bad.header.stamp.sec = 99
    unsupported = Image(height=2, width=2, encoding="yuv422", step=4, data=b"\x00" * 8)
    unsupported.header.stamp.sec = 98
    sequence = [good[0], bad, good[1], unsupported, *good[2:]]
    spec = preprocess_node(CONFIG, {"role_name": role})
    exchange = Exchange(role)
    try:
        with node_process(node_command(spec)[1:], log) as proc:
            exchange.wait_for(
                lambda: (
                    exchange.pub.get_subscription_count() > 0
                    and exchange.sub.get_publisher_count() > 0  # matched, not only discovered
                ),
                proc,
                "the node's subscription and publisher",
                log,
            )
            for msg in sequence:
                exchange.pub.publish(msg)
                time.sleep(0.05)
            wanted = {_stamp(m) for m in good}
            exchange.wait_for(lambda: wanted <= set(exchange.received), proc, "every good frame", log)
            time.sleep(0.5)
            assert proc.poll() is None, "the node stopped after bad input"
        text = log.read_text()
    finally:
        exchange.close()
    assert set(exchange.received) == {_stamp(m) for m in good}, "bad frames must be dropped, good ones all passed"
    assert "dropping a bad frame" in text and "data has 100 bytes" in text, text[-2000:]
    raw_builder = ObservationBuilder(config, ObservationConfig(use_vector_state=False))
    read_builder = ObservationBuilder(config, ObservationConfig(use_vector_state=False), image_input="preprocessed")
    for msg in good:
        out = exchange.received[_stamp(msg)]
        expected = frame_from_image_msg(_wire(msg), config)
        assert (out.encoding, out.width, out.height, out.step, out.is_bigendian) == ("mono8", 84, 84, 84, 0)
        assert out.header.frame_id == msg.header.frame_id
        frame = np.frombuffer(bytes(out.data), dtype=np.uint8).reshape(84, 84)
        assert np.array_equal(frame, expected), f"{msg.encoding} {msg.width}x{msg.height}: frames differ"
        # What the trainer stacks from the node's topic is what it stacks from the camera.
        assert np.array_equal(read_builder.push_image(out), raw_builder.push_image(_wire(msg)))


def test_preprocessed_input_refuses_frames_of_another_size_or_encoding():
    config = PreprocessConfig(image_size=84)
    frame = Image(height=64, width=64, encoding="mono8", step=64, data=bytes(64 * 64))
    with pytest.raises(ImageError, match="expected a preprocessed 84x84 mono8 frame, got 64x64 mono8"):
        frame_from_preprocessed_msg(frame, config)
    colour = Image(height=84, width=84, encoding="rgb8", step=252, data=bytes(84 * 252))
    with pytest.raises(ImageError, match="image_size must be 84"):
        frame_from_preprocessed_msg(colour, config)
    short = Image(height=84, width=84, encoding="mono8", step=84, data=bytes(10))
    with pytest.raises(ImageError, match="data has 10 bytes"):
        frame_from_preprocessed_msg(short, config)
    with pytest.raises(ValueError, match="image_input must be one of raw, preprocessed"):
        ObservationBuilder(config, ObservationConfig(), image_input="jpeg")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"role_name": "a/b"}, "role_name"),
        ({"image_size": 4}, "image_size"),
        ({"image_size": 84.0}, "'image_size': must be an integer"),
        ({"output_reliability": "sometimes"}, "output_reliability"),
        ({"log_throttle_s": 0}, "log_throttle_s"),
    ],
)
def test_invalid_parameters_are_named(values: dict, message: str):
    with pytest.raises(ParamError, match=message):
        PreprocessParams.validate(values)


def test_graph_puts_the_node_beside_the_simulator_and_the_trainer_on_its_topic():
    specs = training_graph(CONFIG, "embedded", {"role_name": "car_1", "preprocessing.image_size": 64}, preprocess=True)
    names = [s.name for s in specs]
    assert names == ["carla_simulator", "td3_preprocess", "td3_trainer"]
    prep, trainer = specs[1], specs[2]
    assert prep.parameters == {"role_name": "car_1", "image_size": 64}
    assert trainer.parameters["image_input"] == "preprocessed"
    assert "image_input" not in training_graph(CONFIG, "embedded", {})[1].parameters


@pytest.mark.ros
@pytest.mark.slow
def test_trainer_trains_on_the_preprocessed_topic(tmp_path: Path):
    """Simulator, preprocessing node and trainer as three processes, the trainer at
    image_input:=preprocessed (the graph of `td3-run train --preprocess`), to its budget."""
    from td3_core.checkpoint import checkpoint_name, load_checkpoint_file, read_latest_pointer

    from .test_trainer_e2e import FAST_TRAINER, SIMULATOR, only_run_dir, tail, wait_exit

    trainer_overrides = {
        "models_dir": str(tmp_path / "models"),
        "log_dir": str(tmp_path / "runs"),
        **FAST_TRAINER,
        "total_steps": 60,
        "learning_starts": 30,
        "batch_size": 16,
        "tensorboard": False,
    }
    sim, prep, trainer = training_graph(CONFIG, "embedded", trainer_overrides, SIMULATOR, preprocess=True)
    assert prep.parameters["image_size"] == FAST_TRAINER["preprocessing.image_size"]
    logs = {spec.name: tmp_path / f"{spec.name}.log" for spec in (sim, prep, trainer)}
    with (
        node_process(node_command(sim)[1:], logs[sim.name]),
        node_process(node_command(prep)[1:], logs[prep.name]),
        node_process(node_command(trainer)[1:], logs[trainer.name]) as proc,
    ):
        code = wait_exit(proc, logs[trainer.name])
    text = tail(logs[trainer.name], 100_000)
    assert code == 0, text[-4000:]
    assert f"camera /carla/ego_vehicle/{PREPROCESSED_IMAGE_TOPIC}" in text, text[-4000:]
    assert "skipping a bad frame" not in text, text[-4000:]
    latest = read_latest_pointer(only_run_dir(tmp_path / "models"))
    assert latest is not None and latest.name == checkpoint_name("scenario_0", 60)
    checkpoint = load_checkpoint_file(latest)
    assert checkpoint["total_it"] > 0
    assert checkpoint["config"]["image_input"] == "preprocessed"


def test_driver_reads_the_preprocessed_topic_into_the_same_stacks():
    from td3_driver.node import DriverInputs
    from td3_driver.params import ParamError as DriverParamError
    from td3_driver.params import validate as driver_validate
    from td3_preprocess.node import preprocessed_image

    config, observation = PreprocessConfig(), ObservationConfig(use_vector_state=False)
    raw = DriverInputs(config, observation)
    reading = DriverInputs(config, observation, image_input="preprocessed")
    for i, case in enumerate(CASES[:3]):
        msg = _wire(_camera(*case, seed=i))
        assert np.array_equal(reading.push_image(_wire(preprocessed_image(msg, config))), raw.push_image(msg))
    assert driver_validate({"image_input": "preprocessed"}).image_input == "preprocessed"
    with pytest.raises(DriverParamError, match="image_input"):
        driver_validate({"image_input": "gray"})
