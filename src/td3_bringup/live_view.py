"""Watching a running graph without rviz: Foxglove's WebSocket server (foxglove-sdk, from PyPI).

    td3-run drive --view            (or td3-demo --view, td3-run train --view)
    then open Foxglove (app or https://app.foxglove.dev) → "Open connection" → ws://localhost:8765

Every topic of the graph (camera, the driver's ~/network_input, route, odometry, commands and
their marker, /diagnostics, the trainer's episode and training statistics) is forwarded as the
publishers serialized it (ROS 2 CDR with its `ros2msg` definition), so Foxglove's Image, 3D,
Plot and Raw Message panels show them as they would from a ROS bridge. Images can be thinned
(`--view-image-hz`) to keep a remote browser fluent. With a full ROS install, rviz and the
configs in config/*.rviz work as before.
"""

from __future__ import annotations

import threading

import foxglove
from foxglove import Channel, Schema

from td3_bringup.topic_tap import TapConfig, TopicTap

DEFAULT_PORT = 8765


class FoxgloveSink:
    """One Foxglove channel per topic, on a WebSocket server of its own context."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self.context = foxglove.Context()
        self.server = foxglove.start_server(name="td3_drive", host=host, port=port, context=self.context)
        self._channels: dict[str, Channel] = {}
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return self.server.port

    def add_channel(self, topic: str, type_name: str, definition: str, offered_qos: str = "") -> None:
        with self._lock:
            if topic not in self._channels:
                schema = Schema(name=type_name, encoding="ros2msg", data=definition.encode())
                self._channels[topic] = Channel(topic, schema=schema, message_encoding="cdr", context=self.context)

    def write(self, topic: str, data: bytes, log_time_ns: int) -> None:
        with self._lock:
            channel = self._channels.get(topic)
        if channel is not None:
            channel.log(bytes(data), log_time=log_time_ns)

    def close(self) -> None:
        self.server.stop()


class LiveViewer:
    """A TopicTap feeding a FoxgloveSink, from construction until close()."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, config: TapConfig | None = None) -> None:
        self.sink = FoxgloveSink(host, port)
        self.tap = TopicTap([self.sink], config or TapConfig(), name="td3_live_view")

    @property
    def url(self) -> str:
        return f"ws://localhost:{self.sink.port}"

    def close(self) -> None:
        self.tap.close()
        self.sink.close()
