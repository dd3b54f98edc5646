"""Monitoring messages: what the network sees, the command as markers, and diagnostics.

Pure message builders (no node, no publishing), so they are cheap to test and the node only
decides when to publish.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Quaternion, Vector3
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from td3_core.actions import VehicleCommand

MARKER_NS = "td3_driver"
STEER_DISPLAY_RAD = math.radians(35.0)  # arrow angle drawn at |steer| = 1 (display only)
ARROW_LENGTH_M = 4.0
BAR_HEIGHT_M = 2.0
MARKER_LIFETIME = Duration(sec=1)  # markers vanish when the driver stops publishing


def network_input_image(frames: np.ndarray, header: Header) -> Image:
    """(stack, H, W) uint8 frames, oldest first → one mono8 image, frames side by side."""
    stack, height, width = frames.shape
    tiled = np.ascontiguousarray(frames.transpose(1, 0, 2).reshape(height, stack * width))
    msg = Image(header=header, height=height, width=stack * width, encoding="mono8", is_bigendian=0)
    msg.step = stack * width
    msg.data = tiled.tobytes()
    return msg


def _yaw_quaternion(yaw: float) -> Quaternion:
    return Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2.0), w=math.cos(yaw / 2.0))


def command_markers(command: VehicleCommand, frame_id: str, stamp: Time, braking_for_safety: bool) -> MarkerArray:
    """Steering arrow (+steer = right, so it turns clockwise seen from above) and a pedal bar.

    The bar grows up in green with throttle and down in red with brake; a safety brake is
    drawn magenta so it is told apart from a brake the policy chose.
    """
    header = Header(frame_id=frame_id, stamp=stamp)
    arrow = Marker(header=header, ns=MARKER_NS, id=0, type=Marker.ARROW, action=Marker.ADD, lifetime=MARKER_LIFETIME)
    arrow.pose.position = Point(x=0.0, y=0.0, z=2.5)
    arrow.pose.orientation = _yaw_quaternion(-command.steer * STEER_DISPLAY_RAD)
    arrow.scale = Vector3(x=ARROW_LENGTH_M, y=0.3, z=0.3)
    arrow.color = ColorRGBA(r=0.2, g=0.6, b=1.0, a=0.9)

    pedal = command.throttle if command.throttle > 0.0 else -command.brake
    height = max(abs(pedal) * BAR_HEIGHT_M, 0.02)
    bar = Marker(header=header, ns=MARKER_NS, id=1, type=Marker.CUBE, action=Marker.ADD, lifetime=MARKER_LIFETIME)
    bar.pose.position = Point(x=-1.0, y=0.0, z=2.5 + math.copysign(height / 2.0, pedal if pedal else 1.0))
    bar.pose.orientation = Quaternion(w=1.0)
    bar.scale = Vector3(x=0.3, y=0.3, z=height)
    if braking_for_safety:
        bar.color = ColorRGBA(r=1.0, g=0.0, b=1.0, a=0.9)
    elif pedal >= 0.0:
        bar.color = ColorRGBA(r=0.1, g=0.9, b=0.1, a=0.9)
    else:
        bar.color = ColorRGBA(r=0.9, g=0.1, b=0.1, a=0.9)

    text = Marker(header=header, ns=MARKER_NS, id=2, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
    text.lifetime = MARKER_LIFETIME
    text.pose.position = Point(x=0.0, y=0.0, z=5.0)
    text.pose.orientation = Quaternion(w=1.0)
    text.scale = Vector3(x=0.0, y=0.0, z=0.6)
    text.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=0.9)
    text.text = f"steer {command.steer:+.2f}  throttle {command.throttle:.2f}  brake {command.brake:.2f}"
    return MarkerArray(markers=[arrow, bar, text])


def diagnostics_message(
    name: str, hardware_id: str, level: bytes, message: str, values: Mapping[str, object], stamp: Time
) -> DiagnosticArray:
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=key, value=_format(value)) for key, value in values.items()]
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)
