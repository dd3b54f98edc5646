"""td3_preprocess: the camera of one ego vehicle → the 84x84 grayscale frame the learner needs.

    python -m td3_preprocess.node --ros-args -p role_name:=ego_vehicle [-p image_size:=84]

Runs next to the simulator or the bridge, so that only what the networks see crosses the link
to a remote learner: an 800x600 bgra8 frame is 1.9 MB, its preprocessed frame 7 KB
(docs/scale-out.md). Subscribes to /carla/<role_name>/rgb_front/image (sensor_msgs/Image, any
encoding td3_core.image_codec reads), turns each frame into the image_size x image_size uint8
frame with td3_core.preprocessing.frame_from_image_msg, the very function the trainer and the
driver use, and publishes it as mono8 on /carla/<role_name>/rgb_front/preprocessed with the
camera's header (stamp and frame_id). A trainer or driver with image_input:=preprocessed reads
that topic. A bad camera message is logged (at most every log_throttle_s) and dropped; the next
good one is processed as usual.
"""

from __future__ import annotations

import array
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from td3_bringup.node_main import spin_node
from td3_core.image_codec import ImageError
from td3_core.params import Param, ParamTable, build, one_of, positive, ros_name
from td3_core.preprocessing import PREPROCESSED_IMAGE_TOPIC, RAW_IMAGE_TOPIC, PreprocessConfig, frame_from_image_msg

NODE_NAME = "td3_preprocess"
RELIABILITIES = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}


PARAMS = ParamTable(
    (
        Param("role_name", "ego_vehicle", "ego vehicle role name: topics are /carla/<role_name>/...", ros_name),
        Param("image_size", 84, "output frame side, pixels: the trainer's / driver's preprocessing.image_size"),
        Param(
            "output_reliability",
            "reliable",
            "QoS of the output: reliable, or best_effort for a lossy link (a lost frame is a gap, never a stall)",
            one_of(*RELIABILITIES),
        ),
        Param("log_throttle_s", 5.0, "a bad input is logged at most this often (s)", positive),
    )
)


@dataclass(frozen=True)
class PreprocessParams:
    role_name: str
    image_size: int
    output_reliability: str
    log_throttle_s: float

    @classmethod
    def validate(cls, values: Mapping[str, Any]) -> PreprocessParams:
        """Typed, checked parameters (td3_core.params); ParamError names the first bad one."""
        params = cls(**PARAMS.validate(values))
        build(PreprocessConfig, {"image_size": params.image_size})
        return params


def preprocessed_image(msg: Image, config: PreprocessConfig) -> Image:
    """The preprocessed frame of a camera message, as mono8 with the camera's header; ImageError if bad."""
    frame = frame_from_image_msg(msg, config)
    size = config.image_size
    # array.array: the message's own type for uint8[] (bytes would be checked element by element).
    data = array.array("B", frame.tobytes())
    return Image(header=msg.header, height=size, width=size, encoding="mono8", is_bigendian=0, step=size, data=data)


class PreprocessNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.params = PreprocessParams.validate(PARAMS.declare(self))
        p = self.params
        self.config = PreprocessConfig(image_size=p.image_size)
        self.input_topic = f"/carla/{p.role_name}/{RAW_IMAGE_TOPIC}"
        self.output_topic = f"/carla/{p.role_name}/{PREPROCESSED_IMAGE_TOPIC}"
        self.frames = 0
        self.dropped = 0
        self._next_log = 0.0
        # Like the bridge's sensor publishers (and the trainer's subscriptions): reliable, depth 10.
        camera_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        output_qos = QoSProfile(
            depth=10, reliability=RELIABILITIES[p.output_reliability], history=HistoryPolicy.KEEP_LAST
        )
        self._pub = self.create_publisher(Image, self.output_topic, output_qos)
        self.create_subscription(Image, self.input_topic, self._on_image, camera_qos)
        self.get_logger().info(
            f"{self.input_topic} → {self.output_topic}: {p.image_size}x{p.image_size} mono8 ({p.output_reliability})"
        )

    def _on_image(self, msg: Image) -> None:
        try:
            out = preprocessed_image(msg, self.config)
        except ImageError as error:
            self.dropped += 1
            now = time.monotonic()
            if now >= self._next_log:
                self._next_log = now + self.params.log_throttle_s
                self.get_logger().error(
                    f"dropping a bad frame from {self.input_topic} ({self.dropped} so far): {error}"
                )
            return
        self.frames += 1
        self._pub.publish(out)


def main(args: list[str] | None = None) -> int:
    return spin_node(PreprocessNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
