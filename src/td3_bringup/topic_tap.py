"""Every topic of a running graph as serialized messages, for recorders and live viewers.

A TopicTap is a BackgroundNode that looks at the graph every `discovery_period_s`, subscribes
(raw: the CDR bytes, never deserialized) to each new topic that its filter selects, with a QoS
that matches its publishers (reliable only if all of them are, transient-local for latched
topics such as the route), and hands each message to its sinks. Image topics can be thinned
to at most `max_image_hz` so that a recording stays small.

A sink is any object with `add_channel(topic, type_name, definition, offered_qos)` and
`write(topic, data, log_time_ns)`; td3_bringup.recording (MCAP) and td3_bringup.live_view
(Foxglove) are the two.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from td3_bringup.message_definitions import MessageTypeError, message_class, ros2msg_definition
from td3_bringup.observer import BackgroundNode

IMAGE_TYPE = "sensor_msgs/msg/Image"
# ROS infrastructure, not the graph's data.
DEFAULT_EXCLUDE = ("/rosout", "/parameter_events", "/*/transition_event")


class Sink(Protocol):
    def add_channel(self, topic: str, type_name: str, definition: str, offered_qos: str) -> None: ...

    def write(self, topic: str, data: bytes, log_time_ns: int) -> None: ...


@dataclass(frozen=True)
class TapConfig:
    include: tuple[str, ...] = ("*",)  # fnmatch patterns of topic names
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    max_image_hz: float = 0.0  # <= 0: every image
    discovery_period_s: float = 0.5

    def selects(self, topic: str) -> bool:
        included = any(fnmatch.fnmatchcase(topic, p) for p in self.include)
        return included and not any(fnmatch.fnmatchcase(topic, p) for p in self.exclude)


def qos_matching(publishers: Sequence) -> QoSProfile:
    """A subscription QoS that matches every publisher: reliable only if all are, latched if all are."""
    reliable = bool(publishers) and all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
    latched = bool(publishers) and all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=10,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def offered_qos_yaml(publishers: Sequence) -> str:
    """The publishers' QoS as the `offered_qos_profiles` string of a ROS 2 bag's channel (YAML list)."""
    import yaml

    def duration(d) -> dict[str, int]:
        return {"sec": int(d.nanoseconds // 1_000_000_000), "nsec": int(d.nanoseconds % 1_000_000_000)}

    profiles = [
        {
            "history": p.qos_profile.history.name.lower(),
            "depth": int(p.qos_profile.depth),
            "reliability": p.qos_profile.reliability.name.lower(),
            "durability": p.qos_profile.durability.name.lower(),
            "deadline": duration(p.qos_profile.deadline),
            "lifespan": duration(p.qos_profile.lifespan),
            "liveliness": p.qos_profile.liveliness.name.lower(),
            "liveliness_lease_duration": duration(p.qos_profile.liveliness_lease_duration),
            "avoid_ros_namespace_conventions": bool(p.qos_profile.avoid_ros_namespace_conventions),
        }
        for p in publishers
    ]
    return yaml.safe_dump(profiles, sort_keys=False) if profiles else ""


class TopicTap(BackgroundNode):
    """Subscribes to the selected topics as they appear and feeds their messages to `sinks`."""

    def __init__(self, sinks: Sequence[Sink], config: TapConfig | None = None, name: str = "td3_topic_tap") -> None:
        super().__init__(name)
        self.config = config = config or TapConfig()
        self._sinks = list(sinks)
        self._lock = threading.Lock()
        self._subscriptions: dict[str, object] = {}
        self._types: dict[str, str] = {}
        self._skipped: set[str] = set()
        self._last_image_ns: dict[str, int] = {}
        self._last_log_ns = 0
        self.counts: dict[str, int] = {}
        self._discover()
        self.node.create_timer(config.discovery_period_s, self._discover)

    def topics(self) -> dict[str, str]:
        """Subscribed topic → type name."""
        with self._lock:
            return dict(self._types)

    def _discover(self) -> None:
        for topic, types in self.node.get_topic_names_and_types():
            if topic in self._subscriptions or topic in self._skipped or not self.config.selects(topic):
                continue
            publishers = self.node.get_publishers_info_by_topic(topic)
            if not publishers:
                continue  # known from a subscriber only: wait for a publisher, whose QoS decides ours (latched routes)
            if len(types) != 1:
                self._skip(topic, f"it has {len(types)} types {types}")
                continue
            try:
                msg_type = message_class(types[0])
                definition = ros2msg_definition(types[0])
            except MessageTypeError as error:
                self._skip(topic, str(error))
                continue
            for sink in self._sinks:
                sink.add_channel(topic, types[0], definition, offered_qos_yaml(publishers))
            subscription = self.node.create_subscription(
                msg_type, topic, self._callback(topic, types[0] == IMAGE_TYPE), qos_matching(publishers), raw=True
            )
            with self._lock:
                self._subscriptions[topic] = subscription
                self._types[topic] = types[0]
                self.counts[topic] = 0

    def _skip(self, topic: str, why: str) -> None:
        self._skipped.add(topic)
        self.node.get_logger().warning(f"not recording '{topic}': {why}")

    def _callback(self, topic: str, is_image: bool):
        min_gap_ns = int(1e9 / self.config.max_image_hz) if is_image and self.config.max_image_hz > 0 else 0

        def on_message(data: bytes) -> None:
            now = time.time_ns()
            if min_gap_ns and now - self._last_image_ns.get(topic, 0) < min_gap_ns:
                return
            self._last_image_ns[topic] = now
            with self._lock:
                # Strictly increasing log times: readers order by them.
                self._last_log_ns = max(now, self._last_log_ns + 1)
                log_time = self._last_log_ns
                self.counts[topic] += 1
                for sink in self._sinks:
                    sink.write(topic, data, log_time)

        return on_message
