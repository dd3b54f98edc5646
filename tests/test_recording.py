"""Recordings (MCAP, the ROS 2 bag format) and the Foxglove live view of a running graph.

The DDS test runs `td3-run drive --record ... --view` as a user would (simulator + driver as
separate processes, the recorder and the viewer in td3-run's process), stops it with Ctrl-C,
and reads the file back with the `mcap` + `mcap-ros2-support` libraries.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from carla_msgs.msg import CarlaEgoVehicleControl
from mcap_ros2._dynamic import generate_dynamic

from td3_bringup.message_definitions import MessageTypeError, ros2msg_definition, split_type_name
from td3_bringup.observer import BackgroundNode
from td3_bringup.recording import read_messages, topic_types
from td3_core.vector_state import ObservationConfig

from .checkpoint_factory import small_architecture, write_checkpoint
from .processes import stop_process

ROLE = "/carla/ego_vehicle"
# What a drive must put in the recording, with the type each topic must have.
EXPECTED = {
    f"{ROLE}/rgb_front/image": "sensor_msgs/msg/Image",
    f"{ROLE}/odometry": "nav_msgs/msg/Odometry",
    f"{ROLE}/waypoints": "nav_msgs/msg/Path",
    f"{ROLE}/vehicle_control_cmd": "carla_msgs/msg/CarlaEgoVehicleControl",
    f"{ROLE}/speedometer": "std_msgs/msg/Float32",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    "/td3_driver/network_input": "sensor_msgs/msg/Image",
    "/td3_driver/command_marker": "visualization_msgs/msg/MarkerArray",
}
IMAGE_HZ = 4.0
STARTUP_S = 90.0
RECORD_S = 6.0


@pytest.mark.parametrize(
    "type_name",
    [
        *sorted(set(EXPECTED.values())),
        "td3_drive/msg/Episode",  # the trainer's monitoring topics
        "td3_drive/msg/TrainStats",
        "td3_drive/msg/Evaluation",
        "carla_msgs/msg/CarlaCollisionEvent",
        "carla_msgs/msg/CarlaLaneInvasionEvent",
        "rosgraph_msgs/msg/Clock",
    ],
)
def test_every_definition_is_complete_for_the_ros2_decoder(type_name: str):
    definition = ros2msg_definition(type_name)
    decoders = generate_dynamic(type_name, definition)
    assert type_name in decoders
    nested = [line for line in definition.splitlines() if line.startswith("MSG: ")]
    assert len(nested) == len(set(nested)), "each nested type once"
    assert split_type_name(type_name)[1] not in {line.rsplit("/", 1)[1] for line in nested}


def test_an_unknown_type_is_a_clear_error():
    with pytest.raises(MessageTypeError, match="no definition file"):
        ros2msg_definition("std_msgs/msg/NoSuchThing")
    with pytest.raises(MessageTypeError, match="not a message type name"):
        ros2msg_definition("Odometry")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _foxglove_advertised(port: int, timeout_s: float) -> dict[str, str]:
    """Connect like the Foxglove app does; topic → schema name of the channels advertised."""
    import websockets

    channels: dict[str, str] = {}
    async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=["foxglove.sdk.v1"]) as ws:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not set(EXPECTED) <= set(channels):
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=1.0)
            except TimeoutError:
                continue
            if isinstance(raw, str):
                message = json.loads(raw)
                if message.get("op") == "advertise":
                    for channel in message["channels"]:
                        assert channel["encoding"] == "cdr" and channel["schemaEncoding"] == "ros2msg"
                        channels[channel["topic"]] = channel["schemaName"]
    return channels


@pytest.mark.ros
@pytest.mark.slow
def test_td3_run_records_a_drive_that_reads_back_and_serves_it_to_foxglove(tmp_path: Path):
    vector = ObservationConfig(use_vector_state=True, num_waypoints=10)
    checkpoint = write_checkpoint(tmp_path / "run" / "td3_s_step_1.pth", vector, small_architecture(vector))
    recording = tmp_path / "drive.mcap"
    port = _free_port()
    command = [
        *(sys.executable, "-m", "td3_bringup.runner", "drive", "--checkpoint", str(checkpoint)),
        *("-p", "carla_simulator.image_width:=84", "-p", "carla_simulator.image_height:=84"),
        *("-p", "td3_driver.device:=cpu", "-p", "td3_driver.diagnostics_period_s:=0.5"),
        *("--record", str(recording), "--record-image-hz", str(IMAGE_HZ), "--view", "--view-port", str(port)),
        *("--log-dir", str(tmp_path / "logs")),
    ]
    commands: list[float] = []
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy()
    )
    try:
        with BackgroundNode("recording_probe") as probe:
            probe.node.create_subscription(
                CarlaEgoVehicleControl, f"{ROLE}/vehicle_control_cmd", lambda _m: commands.append(time.monotonic()), 10
            )
            deadline = time.monotonic() + STARTUP_S
            while not commands and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
            assert commands, f"no command from the driver (td3-run exit {proc.poll()})"
            advertised = asyncio.run(_foxglove_advertised(port, timeout_s=RECORD_S))
            time.sleep(max(0.0, RECORD_S - (time.monotonic() - commands[0])))
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a user stops td3-run
        out, _ = proc.communicate(timeout=60)
    finally:
        stop_process(proc, grace_s=30.0)  # SIGINT first: td3-run stops its nodes
    log = out.decode(errors="replace")
    assert "Traceback" not in log, log[-3000:]

    # The live view advertised every topic with its ROS 2 type.
    assert {t: advertised.get(t) for t in EXPECTED} == EXPECTED, advertised

    # The file's summary: each expected topic, with its type.
    types = topic_types(recording)
    assert {t: types.get(t) for t in EXPECTED} == EXPECTED, types

    # Every message decodes; log times strictly increase; stamps of each stamped topic never go back.
    counts: Counter[str] = Counter()
    first_log = last_log = 0
    stamps: dict[str, list[int]] = defaultdict(list)
    for record in read_messages(recording):
        counts[record.topic] += 1
        assert record.log_time_ns > last_log
        first_log, last_log = first_log or record.log_time_ns, record.log_time_ns
        assert record.type_name == types[record.topic]
        header = getattr(record.message, "header", None)
        if header is not None:
            stamps[record.topic].append(header.stamp.sec * 1_000_000_000 + header.stamp.nanosec)
    assert all(counts[t] >= 1 for t in EXPECTED), counts
    for topic in (f"{ROLE}/odometry", f"{ROLE}/rgb_front/image", "/td3_driver/network_input"):
        assert len(stamps[topic]) >= 2 and stamps[topic] == sorted(stamps[topic]), topic
    assert stamps[f"{ROLE}/odometry"][-1] > stamps[f"{ROLE}/odometry"][0]

    # The camera is thinned to IMAGE_HZ (of wall-clock time, as the recorder receives); the odometry is not.
    span_s = (last_log - first_log) / 1e9
    assert counts[f"{ROLE}/rgb_front/image"] <= IMAGE_HZ * (span_s + 1.0) + 2, (counts, span_s)
    assert counts[f"{ROLE}/odometry"] > 2 * counts[f"{ROLE}/rgb_front/image"], counts


def test_a_recording_that_cannot_be_written_stops_with_the_reason_and_a_taken_port_only_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    import argparse

    from td3_bringup.watching import add_watch_arguments, watching

    parser = argparse.ArgumentParser()
    add_watch_arguments(parser)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with (
        pytest.raises(SystemExit, match=r"cannot record to .*file/x\.mcap"),
        watching(parser.parse_args(["--record", str(blocker / "x.mcap")])),
    ):
        pass
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with watching(parser.parse_args(["--view", "--view-port", str(taken.getsockname()[1])])):
            pass
    assert "no live view on port" in capsys.readouterr().err
