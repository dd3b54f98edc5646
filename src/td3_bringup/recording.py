"""Recordings of a node graph in the ROS 2 bag format: MCAP with `ros2msg` schemas and CDR messages.

    td3-run drive --record runs/drive.mcap [--record-image-hz 5]
    td3-demo                                (records the drive, the report is made from it)

What `ros2 bag record -s mcap` writes: profile `ros2`, one schema per message type (its full
definition, td3_bringup.message_definitions), one channel per topic, the messages as the
publishers serialized them (never decoded and re-encoded), zstd-compressed chunks with an
index, and each channel's `offered_qos_profiles` (the publishers' QoS, as rosbag2 stores it).
`ros2 bag info/play` (rosbag2_storage_mcap) and Foxglove open it; the `mcap` +
`mcap-ros2-support` libraries read it back in Python (read_messages below).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcap.reader import make_reader
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType, Writer
from mcap_ros2.decoder import DecoderFactory

from td3_bringup.topic_tap import TapConfig, TopicTap

LIBRARY = "td3_drive recorder (mcap)"


class McapSink:
    """Writes channels and serialized messages to one MCAP file; thread-safe; close() finishes it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._writer = Writer(self._file, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library=LIBRARY)
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._sequence: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False

    def add_channel(self, topic: str, type_name: str, definition: str, offered_qos: str = "") -> None:
        with self._lock:
            if self._closed or topic in self._channels:
                return
            if type_name not in self._schemas:
                self._schemas[type_name] = self._writer.register_schema(
                    type_name, SchemaEncoding.ROS2, definition.encode()
                )
            self._channels[topic] = self._writer.register_channel(
                topic, MessageEncoding.CDR, self._schemas[type_name], metadata={"offered_qos_profiles": offered_qos}
            )
            self._sequence[topic] = 0

    def write(self, topic: str, data: bytes, log_time_ns: int) -> None:
        with self._lock:
            if self._closed:
                return
            self._sequence[topic] += 1
            self._writer.add_message(
                self._channels[topic], log_time_ns, bytes(data), log_time_ns, sequence=self._sequence[topic]
            )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._writer.finish()
            self._file.close()


class Recorder:
    """A TopicTap writing to an McapSink, from construction until close()."""

    def __init__(self, path: Path | str, config: TapConfig | None = None) -> None:
        self.sink = McapSink(path)
        self.tap = TopicTap([self.sink], config or TapConfig(), name="td3_recorder")

    @property
    def path(self) -> Path:
        return self.sink.path

    def close(self) -> None:
        self.tap.close()
        self.sink.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class RecordedMessage:
    topic: str
    type_name: str
    log_time_ns: int
    message: Any  # decoded by mcap-ros2-support: attributes named like the ROS fields


def read_messages(path: Path | str, topics: list[str] | None = None) -> Iterator[RecordedMessage]:
    """Every message of a recording (or of `topics`), decoded, in log-time order."""
    with open(path, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages(topics=topics, log_time_order=True):
            yield RecordedMessage(channel.topic, schema.name if schema else "", message.log_time, decoded)


def topic_types(path: Path | str) -> dict[str, str]:
    """Topic → type name, from the recording's summary."""
    with open(path, "rb") as stream:
        summary = make_reader(stream).get_summary()
    if summary is None:
        return {}
    return {c.topic: summary.schemas[c.schema_id].name for c in summary.channels.values()}
